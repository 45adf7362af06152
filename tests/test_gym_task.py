"""GymTask: construction, seeds, normalisation, step caps, runner hooks, failures."""

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from asktell.distribution import Distribution
from asktell.errors import CandidateFailedError, CheckpointError, ConfigError
from asktell.evaluators import SerialEvaluator
from asktell.gym import GymTask, GymTaskConfig
from asktell.gym.seeding import episode_seeds
from asktell.noise import NoiseTable, mirrored
from asktell.registry import TASKS
from asktell.testing.gym_envs import DRIFT_ID, DRIFT_UNLIMITED_ID

NOISE = NoiseTable(0, 1 << 16)


def cartpole(**kwargs):
    kwargs.setdefault("policy", "linear")
    return GymTask("CartPole-v1", **kwargs)


def dist_for(task, generation=0, sigma=1.0, context=None):
    return Distribution(np.zeros(task.num_params), sigma, NOISE, generation, context=context or {})


SEEDS = mirrored(np.arange(0, 120, 10))


def test_importing_asktell_gym_does_not_import_gymnasium():
    code = "import sys, asktell.gym, asktell.tasks; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registered_as_gym_and_built_from_its_config():
    assert TASKS.get("gym") is GymTask
    task = GymTaskConfig(env_id="CartPole-v1", policy="linear", episodes=2).build()
    assert isinstance(task, GymTask) and task.episodes == 2 and task.num_params == 10


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"step_cap": "fixed"}, "step_cap='fixed' needs max_episode_steps"),
        ({"max_episode_steps": 10}, "step_cap='fixed' or 'adaptive'"),
        ({"policy": "linear", "hidden_sizes": [8]}, "no hidden layers"),
        ({"obs_stats_fraction": 1.5}, r"obs_stats_fraction: Input should be less than or equal to 1; got 1.5"),
        ({"episodes": 0}, r"episodes: Input should be greater than or equal to 1; got 0"),
        ({"episodes": True}, r"episodes: Input should be an integer; got True"),
        ({"epsiodes": 2}, r"epsiodes: unknown key .*did you mean 'episodes'"),
    ],
)
def test_constructor_and_run_file_refuse_the_same_settings_in_the_same_words(fields, message):
    """GymTaskConfig is the one declaration of GymTask's options: Python keywords and run
    files meet the same rules, and the error names the field, the rule and the value."""
    with pytest.raises(ConfigError, match=message):
        GymTask("CartPole-v1", **fields)
    from asktell.config import config_from_dict

    run = {"strategy": {"kind": "openai_es"}, "budget": {"generations": 1}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**run, "task": {"kind": "gym", "env_id": "CartPole-v1", **fields}})


def test_the_signature_lists_every_declared_option():
    import inspect

    params = inspect.signature(GymTask).parameters
    assert list(params)[0] == "env_id"  # a class signature, as help() shows it: no self
    assert params["episodes"].default == 1 and params["step_cap"].default == "default"
    assert set(GymTaskConfig.model_fields) - {"kind"} <= set(params)


def test_unknown_env_id_suggests_the_right_one():
    with pytest.raises(ConfigError, match="Did you mean: `CartPole`"):
        GymTask("CartPol-v1")


def test_env_without_time_limit_needs_a_cap():
    with pytest.raises(ConfigError, match="no time limit"):
        GymTask(DRIFT_UNLIMITED_ID)
    assert GymTask(DRIFT_UNLIMITED_ID, step_cap="fixed", max_episode_steps=7).time_limit == 7


def test_pickles_without_its_environment_and_evaluates_the_same_after():
    task = cartpole()
    dist = dist_for(task)
    before = task.evaluate(dist.decode(SEEDS), SEEDS, dist)
    clone = pickle.loads(pickle.dumps(task))
    assert clone._env is None
    after = clone.evaluate(dist.decode(SEEDS), SEEDS, dist)
    assert np.array_equal(before.returns, after.returns)
    assert np.array_equal(before.steps, after.steps)


def test_episode_seeds_follow_run_seed_generation_and_mirror_pairs():
    seeds = np.array([5, ~5, 6, ~6])
    shared = episode_seeds(0, 3, seeds, 2, mirrored=True)
    assert np.array_equal(shared[0], shared[1]) and np.array_equal(shared[2], shared[3])
    assert not np.array_equal(shared[0], shared[2]) and shared[0, 0] != shared[0, 1]
    separate = episode_seeds(0, 3, seeds, 2, mirrored=False)
    assert not np.array_equal(separate[0], separate[1])
    assert not np.array_equal(episode_seeds(1, 3, seeds, 2), shared)  # run seed
    assert not np.array_equal(episode_seeds(0, 4, seeds, 2), shared)  # generation
    assert shared.min() >= 0 and shared.max() < 2**31


def test_mirrored_candidates_share_their_start_states():
    # With sigma=0 every candidate is the centre: mirror pairs then face the same episodes
    # and get equal returns, while different pairs generally do not.
    task = cartpole()
    dist = dist_for(task, sigma=0.0)
    r = task.evaluate(dist.decode(SEEDS), SEEDS, dist).returns
    assert np.array_equal(r[0::2], r[1::2])
    assert len(set(r[0::2].tolist())) > 1
    unshared = cartpole(mirrored_episode_seeds=False)
    r2 = unshared.evaluate(dist.decode(SEEDS), SEEDS, dist).returns
    assert not np.array_equal(r2[0::2], r2[1::2])


def test_obs_stats_come_from_a_deterministic_subset_and_merge_in_observe():
    task = cartpole(obs_stats_fraction=0.5)
    dist = dist_for(task, generation=2)
    with SerialEvaluator(task) as ev:
        evaluation = ev.evaluate(dist, SEEDS)
    record = task.record_mask(2, SEEDS)
    assert 0 < record.sum() < SEEDS.size
    # Every step of a recorded candidate contributes one observation.
    assert evaluation.obs_stats.count == evaluation.steps[record].sum()
    assert np.array_equal(record, task.record_mask(2, SEEDS))
    task.observe(evaluation)
    ctx = task.context()
    np.testing.assert_allclose(ctx["obs_mean"], evaluation.obs_stats.mean)
    assert np.all(ctx["obs_std"] >= task.obs_std_floor)
    assert not ctx["obs_mean"].flags.writeable
    none = cartpole(obs_norm=False)
    assert none.context() == {}
    assert none.evaluate(dist.decode(SEEDS), SEEDS, dist).obs_stats is None


def test_the_normaliser_in_the_context_is_what_the_policy_sees():
    task = cartpole()
    dist = dist_for(task)
    raw = task.evaluate(dist.decode(SEEDS), SEEDS, dist).returns
    identity = {"obs_mean": np.zeros(4), "obs_std": np.ones(4)}
    same = task.evaluate(dist.decode(SEEDS), SEEDS, dist.replace(context=identity)).returns
    assert np.array_equal(raw, same)  # |CartPole observations| < 5: clipping never bites
    shifted = {"obs_mean": np.full(4, 0.3), "obs_std": np.full(4, 0.2)}
    other = task.evaluate(dist.decode(SEEDS), SEEDS, dist.replace(context=shifted)).returns
    assert not np.array_equal(raw, other)


def test_adaptive_cap_truncates_and_follows_twice_the_mean_episode_length():
    task = cartpole(step_cap="adaptive", adaptive_cap_min=5, episodes=2)
    assert task.context()["step_cap"] == 500  # starts at the time limit
    task.load_state_dict({**task.state_dict(), "step_cap": 12})
    dist = dist_for(task, context=task.context())
    with SerialEvaluator(task) as ev:
        evaluation = ev.evaluate(dist, SEEDS)
    assert evaluation.steps.max() <= 2 * 12
    assert evaluation.truncated.sum() > 0
    assert np.array_equal(evaluation.episodes, np.full(SEEDS.size, 2))
    task.observe(evaluation)
    mean_length = evaluation.steps.sum() / evaluation.episodes.sum()
    assert task.current_step_cap == max(5, math.ceil(2.0 * mean_length))


def test_fixed_cap_replaces_the_time_limit():
    task = GymTask("Pendulum-v1", policy="linear", step_cap="fixed", max_episode_steps=30)
    dist = dist_for(task)
    result = task.evaluate(dist.decode(SEEDS[:4]), SEEDS[:4], dist)
    assert result.steps.tolist() == [30] * 4 and result.truncated.tolist() == [1] * 4


def test_evaluate_center_is_noise_free_and_uses_its_own_episode_seeds():
    task = cartpole()
    x0 = np.random.default_rng(0).standard_normal(task.num_params)
    dist = Distribution(x0, 0.5, NOISE, generation=4)
    returns = task.evaluate_center(dist, 5)
    assert returns.shape == (5,)
    assert np.array_equal(returns, task.evaluate_center(dist.replace(sigma=2.0), 5))
    assert np.array_equal(returns, task.evaluate_center(dist, 5))


def _reference_center_returns(task, dist, episodes):
    """The centre's returns as evaluate_center computed them before the centre became a
    plan: the centre's weights, the centre's own episode seeds, full episodes, the
    context's normaliser (the task's current one when the context has none)."""
    from asktell.gym.seeding import center_episode_seeds

    context = dist.context if dist.context.get("obs_mean") is not None else task.context()
    normalize = task.normalizer(context)
    weights = task.policy.allocate(1)
    task.policy.load(weights, slice(0, 1), dist.center[None])
    env = task.make_env()
    seeds = center_episode_seeds(task.seed, dist.generation, episodes)
    return np.array([task.rollout(env, weights, normalize, None, s, e)[0] for e, s in enumerate(seeds)])


@pytest.mark.parametrize("with_context", [False, True])
def test_the_centre_plan_is_the_centre_on_its_own_full_episodes(with_context):
    task = GymTask("Pendulum-v1", hidden_sizes=(8,), step_cap="adaptive", episodes=3, seed=5)
    task.obs_stat.push(np.random.default_rng(2).standard_normal((40, 3)))
    context = {**task.context(), "step_cap": 7} if with_context else {}
    x0 = task.initial_params(3)
    dist = Distribution(x0, 0.5, NOISE, generation=6, context=context)
    center, seeds = task.center_plan(dist, 4)
    assert center.sigma == 0.0 and np.array_equal(seeds, np.arange(4))
    assert np.array_equal(center.decode(seeds), np.repeat(x0[None], 4, axis=0))
    expected = _reference_center_returns(task, dist, 4)
    assert np.array_equal(task.evaluate_center(dist, 4), expected)
    result = SerialEvaluator(task).evaluate(center, seeds)
    assert np.array_equal(result.returns, expected)
    assert result.steps.tolist() == [200] * 4  # full episodes: no adaptive cap
    assert result.obs_stats is None  # the centre's observations feed no statistics
    with pytest.raises(ConfigError, match="'episodes' must be an int >= 1; got 0"):
        task.center_plan(dist, 0)


def test_state_dict_round_trip_and_mismatch():
    task = cartpole(step_cap="adaptive")
    task.obs_stat.push(np.random.default_rng(0).standard_normal((20, 4)))
    task.load_state_dict({**task.state_dict(), "step_cap": 77})
    state = task.state_dict()
    assert all(isinstance(v, (float, int, np.ndarray)) for v in state.values())
    other = cartpole(step_cap="adaptive")
    other.load_state_dict(state)
    for key in ("obs_mean", "obs_std"):
        assert np.array_equal(other.context()[key], task.context()[key])
    assert other.context()["step_cap"] == 77
    pendulum = GymTask("Pendulum-v1", policy="linear")
    with pytest.raises(CheckpointError, match="shape"):
        pendulum.load_state_dict(state)


def test_state_dict_keeps_the_exact_statistics():
    """A resumed run must normalise exactly as the uninterrupted one: the checkpointed
    statistics are the exact totals, not sums rounded to float64."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((50, 4)) * 10.0 ** rng.integers(-8, 9, 4) for _ in range(6)]
    task = cartpole()
    for b in batches[:3]:
        task.obs_stat.push(b)
    resumed = cartpole()
    resumed.load_state_dict(task.state_dict())
    for b in batches[3:]:
        task.obs_stat.push(b)
        resumed.obs_stat.push(b)
    for key in ("obs_mean", "obs_std"):
        assert np.array_equal(resumed.context()[key], task.context()[key])
    # Checkpoints written before the exact entries existed still load.
    old = {k: v for k, v in task.state_dict().items() if not k.endswith("_exact")}
    cartpole().load_state_dict(old)


@pytest.mark.parametrize("fail_mode, text", [
    ("raise", "simulated environment crash"),
    ("nan_reward", "non-finite reward"),
    ("nan_obs", "non-finite observation"),
])
def test_environment_failures_become_failed_candidates(fail_mode, text):
    task = GymTask(DRIFT_ID, env_kwargs={"fail_mode": fail_mode, "fail_above": 0.5}, policy="linear")
    dist = dist_for(task, generation=7)
    seeds = np.arange(12)
    with SerialEvaluator(task, on_failure="mark") as ev:
        evaluation = ev.evaluate(dist, seeds)
    assert 0 < len(evaluation.failures) < seeds.size
    for f in evaluation.failures:
        assert f.generation == 7 and f.seed == seeds[f.index] and text in f.error
        assert np.isnan(evaluation.returns[f.index])
    good = ~evaluation.failed_mask
    assert np.all(np.isfinite(evaluation.returns[good]))
    with pytest.raises(CandidateFailedError, match=f"generation 7 failed: .*{text}"):
        SerialEvaluator(task).evaluate(dist, seeds)


def test_evaluate_checks_parameter_count():
    task = cartpole()
    with pytest.raises(ConfigError, match="num_params=10"):
        task.evaluate(np.zeros((2, 3)), np.arange(2), None)
