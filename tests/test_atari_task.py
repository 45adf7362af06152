"""AtariTask with the emulator: preprocessing, seeding, the VBN reference batch's lifecycle,
evaluators, runs and errors. Small games of a few hundred frames and tiny networks."""

import math
import pickle

import numpy as np
import pytest

pytest.importorskip("ale_py")

from asktell.atari import AtariTask, AtariTaskConfig, resolve_env_id  # noqa: E402
from asktell.atari._env import _taps, area_matrix, area_resize  # noqa: E402
from asktell.distribution import Distribution  # noqa: E402
from asktell.errors import CheckpointError, ConfigError, EvaluationError, MissingDependencyError  # noqa: E402
from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator  # noqa: E402
from asktell.noise import NoiseTable  # noqa: E402

TINY = dict(
    conv_layers=[[4, 8, 4]],
    dense_size=8,
    screen_size=42,
    reference_batch_size=8,
    reference_probability=0.25,
    max_episode_frames=400,
)


def tiny_task(seed=3, **kw):
    return AtariTask("Pong", seed=seed, **{**TINY, **kw})


@pytest.fixture(scope="module")
def task():
    return tiny_task()


def distribution(task, generation=0, sigma=0.5):
    noise = NoiseTable(0, 1 << 16)
    return Distribution(
        center=task.initial_params(0), sigma=sigma, noise=noise, generation=generation,
        context=task.context(),
    )


SEEDS = np.array([0, ~0, 7, ~7, 12], dtype=np.int64)


def test_observations_are_stacked_resized_grayscale_frames_and_the_frame_cap_ends_episodes(task):
    env = task.make_env()
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, 42, 42) and obs.dtype == np.uint8
    assert env.spec.max_episode_steps == task.time_limit == math.ceil(400 / 4)
    steps, truncated = 0, False
    while True:
        obs, reward, terminated, truncated, _ = env.step(0)
        steps += 1
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert steps <= 100 and steps * 4 + 30 >= 400  # the cap counts frames, no-ops included
    env.close()


def test_area_resize_averages_areas_and_keeps_flat_images_flat():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (210, 160)).astype(np.float32)
    dense = area_matrix(210, 84) @ image @ area_matrix(160, 84).T
    np.testing.assert_allclose(area_resize(image, _taps(210, 84), _taps(160, 84)), dense, atol=1e-3)
    flat = area_resize(np.full((210, 160), 17.0, np.float32), _taps(210, 84), _taps(160, 84))
    np.testing.assert_allclose(flat, 17.0, rtol=1e-6)
    assert np.allclose(area_matrix(210, 84).sum(axis=1), 1.0)


def test_an_episode_is_a_function_of_its_seed_and_restarting_equals_a_fresh_emulator(task):
    def episode(env, seed):
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for t in range(40):
            frames.append(env.step(t % 6)[0])
        return np.stack(frames)

    env = task.make_env()
    first = episode(env, 11)
    episode(env, 12)  # other play in between
    again = episode(env, 11)
    fresh = episode(task.make_env(), 11)  # a new emulator, seeded on its first reset
    assert np.array_equal(first, again) and np.array_equal(first, fresh)
    assert not np.array_equal(first, episode(env, 13))  # another seed: other no-op starts


def test_the_reference_batch_comes_from_the_run_seed(task):
    ref = task.reference_batch
    assert ref.shape == (8, 4, 42, 42) and ref.dtype == np.uint8
    assert len({r.tobytes() for r in ref}) > 1  # spread over the episode, not one frame
    assert np.array_equal(tiny_task(seed=3).reference_batch, ref)
    assert not np.array_equal(tiny_task(seed=4).reference_batch, ref)
    assert task.context()["vbn_reference_crc"] == task.policy.reference_crc


def test_the_reference_batch_travels_in_the_pickled_task_and_the_checkpoint(task):
    copy = pickle.loads(pickle.dumps(task))
    assert np.array_equal(copy.reference_batch, task.reference_batch)
    state = task.state_dict()
    assert state["vbn_reference"].dtype == np.uint8
    other = tiny_task(seed=4)
    other.load_state_dict(state)
    assert np.array_equal(other.reference_batch, task.reference_batch)
    assert other.context()["vbn_reference_crc"] == task.context()["vbn_reference_crc"]


def test_a_reference_batch_that_does_not_match_the_observations_is_rejected(task):
    state = task.state_dict()
    before = task.reference_batch.copy()
    state["vbn_reference"] = np.zeros((8, 4, 84, 84), dtype=np.uint8)
    with pytest.raises(CheckpointError, match=r"'vbn_reference' must have shape \(N >= 2, 4, 42, 42\).*\(8, 4, 84, 84\)"):
        task.load_state_dict(state)
    state["vbn_reference"] = np.zeros((8, 4, 42, 42), dtype=np.float64)
    with pytest.raises(CheckpointError, match="must be uint8"):
        task.load_state_dict(state)
    assert np.array_equal(task.reference_batch, before)  # a rejected state changes nothing
    with pytest.raises(ConfigError, match=r"reference batch must have shape"):
        tiny_task(reference_batch=np.zeros((8, 3, 42, 42), dtype=np.uint8))
    missing = {k: v for k, v in task.state_dict().items() if k != "vbn_reference"}
    with pytest.raises(CheckpointError, match="no 'vbn_reference'"):
        task.load_state_dict(missing)


def test_a_worker_with_another_reference_batch_refuses_to_evaluate(task):
    dist = distribution(task)
    dist = dist.replace(context={**dist.context, "vbn_reference_crc": 12345})
    with pytest.raises(EvaluationError, match="VBN reference batch"):
        task.evaluate(dist.decode(SEEDS[:1]), SEEDS[:1], dist)


def test_serial_and_vectorised_evaluators_agree_bitwise():
    # Space Invaders: the score depends on the policy within a few hundred frames, so equal
    # returns mean equal action sequences (in Pong the first points are lost whatever it does).
    invaders = AtariTask("SpaceInvaders", seed=5, **{**TINY, "max_episode_frames": 600})
    dist = distribution(invaders, generation=2)
    seeds = np.array([0, ~0, 7, ~7, 12, 13], dtype=np.int64)
    with SerialEvaluator(invaders) as ev:
        serial = ev.evaluate(dist, seeds)
    assert np.all(serial.steps > 0) and len(set(serial.returns.tolist())) >= 3
    with VectorEnvEvaluator(invaders, num_envs=4) as ev:
        vector = ev.evaluate(dist, seeds)
    assert np.array_equal(serial.returns, vector.returns)
    assert np.array_equal(serial.steps, vector.steps)
    with VectorEnvEvaluator(invaders, num_envs=2, num_workers=1) as ev:  # the task pickled to a process
        worker = ev.evaluate(dist, seeds)
    assert np.array_equal(serial.returns, worker.returns)


def test_the_dask_evaluator_returns_the_serial_returns(task):
    from asktell.registry import EVALUATORS

    if "dask" not in EVALUATORS.names():
        pytest.skip("the Dask evaluator is not registered in this build")
    pytest.importorskip("distributed")
    dist = distribution(task, generation=2)
    with SerialEvaluator(task) as ev:
        serial = ev.evaluate(dist, SEEDS)
    with EVALUATORS.get("dask").config_class(num_workers=1).build(task) as ev:
        remote = ev.evaluate(dist, SEEDS)  # the task, reference batch included, is shipped
    assert np.array_equal(serial.returns, remote.returns)


def test_ales_own_vector_env_runs_the_same_task(task):
    dist = distribution(task)
    with VectorEnvEvaluator(task, num_envs=2, mode="vector_entry_point") as ev:
        out = ev.evaluate(dist, SEEDS[:3])
    assert np.all(np.isfinite(out.returns)) and np.all(out.steps > 0)


def test_unknown_games_name_the_closest_ids():
    with pytest.raises(ConfigError, match=r"'ALE/Pongg-v5' is not a registered ALE environment; the closest ids: ALE/Pong-v5"):
        resolve_env_id("ALE/Pongg-v5")
    with pytest.raises(ConfigError, match="closest ids: .*ALE/Breakout-v5"):
        AtariTask("Breakot")
    with pytest.raises(ConfigError, match="not an Atari .* kind 'gym'"):
        resolve_env_id("CartPole-v1")
    assert resolve_env_id("Pong") == "ALE/Pong-v5"
    assert resolve_env_id("space_invaders") == "ALE/SpaceInvaders-v5"
    assert resolve_env_id("PongNoFrameskip-v4") == "PongNoFrameskip-v4"


def test_a_missing_rom_says_where_it_looked_and_how_to_fix_it(tmp_path, monkeypatch):
    (tmp_path / "breakout.bin").write_bytes(b"")
    monkeypatch.setenv("ALE_ROMS_DIR", str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"ROM of 'pong' .*ALE_ROMS_DIR") as info:
        AtariTask("Pong", **TINY)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("env_kwargs, words", [
    ({"frameskip": 4}, r"sets 'frameskip', which the task sets itself; set the task's own 'frame_skip'"),
    ({"mode": 99}, r"'env_kwargs' \{'mode': 99\} were rejected by ALE/Pong-v5: RuntimeError"),
    ({"difficulty": "x"}, r"'env_kwargs' \{'difficulty': 'x'\} were rejected by ALE/Pong-v5: TypeError"),
])
def test_an_env_kwargs_mistake_is_named_not_taken_for_a_missing_rom(env_kwargs, words):
    with pytest.raises(ConfigError, match=words):
        AtariTask("Pong", env_kwargs=env_kwargs, **TINY)


def test_config_checks_the_network_fits_the_screen_and_builds_the_task():
    with pytest.raises(ValueError, match="conv layer 1 .* needs an input of at least 4x4"):
        AtariTaskConfig(screen_size=10)
    cfg = AtariTaskConfig(env_id="Pong", seed=3, **TINY)
    built = cfg.build()
    assert isinstance(built, AtariTask) and built.env_id == "ALE/Pong-v5"
    assert np.array_equal(built.reference_batch, tiny_task(seed=3).reference_batch)
    no_vbn = AtariTaskConfig(vbn=False, **TINY).build()
    assert no_vbn.reference_batch is None and "vbn_reference_crc" not in no_vbn.context()
    assert "vbn_reference" not in no_vbn.state_dict()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"frame_skip": 0}, r"frame_skip: Input should be greater than or equal to 1; got 0"),
        ({"reference_probability": 0.0}, r"reference_probability: Input should be greater than 0; got 0.0"),
        ({"network": "resnet"}, r"network: Input should be 'a3c' or 'nature'; got 'resnet'"),
        ({"screen_size": 6}, r"conv layer 0 \(kernel 8, stride 4\) needs an input of at least 8x8; it gets 6x6"),
        ({"framestack": 2}, r"framestack: unknown key .*did you mean 'frame_stack'"),
    ],
)
def test_constructor_and_run_file_refuse_the_same_settings_in_the_same_words(fields, message):
    from pydantic import ValidationError

    from asktell.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        AtariTask("Pong", **fields)
    from asktell.config import config_from_dict

    run = {"strategy": {"kind": "openai_es"}, "budget": {"generations": 1}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**run, "task": {"kind": "atari", "env_id": "Pong", **TINY, **fields}})


def test_a_run_with_vbn_checkpoints_the_reference_batch_and_resumes_exactly(tmp_path):
    from asktell.checkpoint import load_checkpoint
    from asktell.config import config_from_dict
    from asktell.runner import resume, run

    def cfg(generations):
        return config_from_dict({
            "seed": 3,
            "strategy": {"kind": "openai_es", "population_size": 4, "sigma": 0.05,
                         "learning_rate": 0.05},
            "task": {"kind": "atari", "env_id": "SpaceInvaders", **TINY, "max_episode_frames": 300},
            "noise": {"size": 1 << 16},
            "budget": {"generations": generations},
            "output": {"log_format": "none", "eval_every": 0, "checkpoint_every": 1},
        })

    straight = run(cfg(3), out=tmp_path / "straight")
    run(cfg(2), out=tmp_path / "split")
    state = load_checkpoint(tmp_path / "split").state
    assert any(
        np.asarray(v).shape == (8, 4, 42, 42) for v in _leaves(state)
    ), "the reference batch is in the checkpoint"
    resumed = resume(tmp_path / "split", overrides=["budget.generations=3"])
    assert resumed.generation == 3
    assert np.array_equal(resumed.center, straight.center)


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


_BLAS_PROBE = """
import json, sys
from threadpoolctl import threadpool_info
from asktell.runner import run
seen = []
cfg = {
    "strategy": {"kind": "openai_es", "population_size": 2, "sigma": 0.02},
    "task": {"kind": "atari", "env_id": "Pong", "conv_layers": [[4, 8, 4]], "dense_size": 8,
             "screen_size": 42, "reference_batch_size": 4, "reference_probability": 1.0,
             "max_episode_frames": 40},
    "noise": {"size": 1 << 16},
    "budget": {"generations": 1},
    "output": {"log_format": "none", "eval_every": 0},
}
run(cfg, out=sys.argv[1],
    callback=lambda row: seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
print(json.dumps(seen))
"""


def _blas_threads_during_a_run(tmp_path, env):
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")} | env
    out = subprocess.run([sys.executable, "-c", _BLAS_PROBE, str(tmp_path / "run")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_atari_run_uses_one_blas_thread_in_the_main_process(tmp_path):
    threads = _blas_threads_during_a_run(tmp_path, {})
    assert threads and set(threads) == {1}


def test_a_blas_thread_count_the_user_set_is_kept(tmp_path):
    threads = _blas_threads_during_a_run(tmp_path, {"OPENBLAS_NUM_THREADS": "2"})
    assert threads and set(threads) == {2}
