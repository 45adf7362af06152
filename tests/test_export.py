"""asktell export / asktell.load_policy: the exported policy acts exactly as the run's."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import asktell
from asktell.cli import main
from asktell.errors import ConfigError
from asktell.export import export_policy, load_policy
from asktell.playback import load_run, evaluate_run
from asktell.protocol import hooks_of
from asktell.runner import run


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """A short Pendulum run: continuous actions (tanh into [-2, 2]), an MLP and a normaliser
    with real statistics, so any difference in arithmetic shows in the returns."""
    out = tmp_path_factory.mktemp("export") / "pendulum"
    run({"strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1},
         "evaluator": {"kind": "serial"},
         "task": {"kind": "gym", "env_id": "Pendulum-v1", "policy": "mlp", "hidden_sizes": [8]},
         "noise": {"size": 100_000}, "budget": {"generations": 3},
         "output": {"log_format": "none", "eval_every": 1, "eval_episodes": 2}}, out=out)
    return out


def test_file_has_no_pickle_and_says_what_it_is(pendulum_run, tmp_path):
    path = export_policy(pendulum_run, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        meta = json.loads(str(data["metadata"]))
    assert keys == {"params", "metadata", "obs_mean", "obs_std", "action_low", "action_high"}
    assert meta["env_id"] == "Pendulum-v1"
    assert meta["policy"] == {"kind": "mlp", "hidden_sizes": [8], "activation": "tanh",
                              "bias": True, "dtype": "float32", "num_params": 3 * 8 + 8 + 8 + 1}
    assert meta["action"]["mode"] == "tanh" and meta["source"]["generation"] == 3


def test_exported_policy_reproduces_the_runs_centre_return(pendulum_run, tmp_path):
    for best in (False, True):
        policy = asktell.load_policy(export_policy(pendulum_run, tmp_path / "p.npz", best=best))
        seeds = policy.metadata["source"]["center_episode_seeds"]
        report = evaluate_run(pendulum_run, episodes=2, best=best)
        returns = policy.rollout(episodes=2, seeds=seeds)
        np.testing.assert_array_equal(returns, report.returns)  # bitwise
        if best:  # and the very number the run logged for that centre
            assert returns.mean() == report.logged_return


def test_actions_are_bitwise_the_tasks(pendulum_run, tmp_path):
    policy = load_policy(export_policy(pendulum_run, tmp_path / "p.npz"))
    _, task, strategy = load_run(pendulum_run, None)
    weights = task.policy.allocate(1)
    task.policy.load(weights, slice(0, 1), strategy.center[None, :])
    normalize = task.normalizer(hooks_of(task).context())
    assert normalize.active
    env = policy.make_env()
    obs, _ = env.reset(seed=7)
    for _ in range(50):
        mine = policy.act(obs)
        theirs = task.policy.act(weights, normalize(task.obs_spec.to_array(obs, 1)))[0]
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
        obs, *_ = env.step(mine)
    env.close()


def test_a_perturbed_normaliser_is_caught(pendulum_run, tmp_path):
    """The reproduction check fails on a known break: a normaliser off by 1e-9."""
    path = export_policy(pendulum_run, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["obs_mean"] = arrays["obs_mean"] + 1e-9
    np.savez(tmp_path / "bad.npz", **arrays)
    good, bad = load_policy(path), load_policy(tmp_path / "bad.npz")
    seeds = good.metadata["source"]["center_episode_seeds"]
    assert not np.array_equal(good.rollout(episodes=2, seeds=seeds),
                              bad.rollout(episodes=2, seeds=seeds))


def test_bad_input_is_named(pendulum_run, tmp_path):
    fn = tmp_path / "fn"
    run({"strategy": {"kind": "openai_es", "population_size": 4},
         "task": {"kind": "function", "name": "sphere", "num_params": 2},
         "noise": {"size": 1024}, "budget": {"generations": 1},
         "output": {"log_format": "none"}}, out=fn)
    with pytest.raises(ConfigError, match="export supports Gymnasium runs.*'function'"):
        export_policy(fn, tmp_path / "f.npz")
    with pytest.raises(ConfigError, match="must end in .npz"):
        export_policy(pendulum_run, tmp_path / "p.pkl")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ConfigError, match="not a policy file"):
        load_policy(tmp_path / "other.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.npz")
    policy = load_policy(export_policy(pendulum_run, tmp_path / "p.npz"))
    with pytest.raises(ConfigError, match="2 seeds for 3 episodes"):
        policy.rollout(episodes=3, seeds=[1, 2])
    # Pendulum observes 3 numbers: a wrong size or a NaN is named (a raw reshape error, or a
    # NaN action, before)
    for bad in (np.zeros(2), [0.0, np.nan, 1.0], ["a", "b", "c"]):
        with pytest.raises(ConfigError, match=r"Policy.act expects an observation of Pendulum-v1: "
                           r"3 finite numbers \(shape \(3,\)\); got"):
            policy.act(bad)
    assert policy.act(np.zeros(3)).shape == (1,)
    assert main(["export", str(fn), "-o", str(tmp_path / "f.npz")]) == 2
    assert main(["export", str(pendulum_run), "-o", str(tmp_path / "cli.npz"), "--best"]) == 0
