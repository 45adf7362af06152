"""VectorEnvEvaluator returns what SerialEvaluator returns, in every mode it can.

Bitwise equality holds wherever the arithmetic is the same: ``sync`` and ``async`` vector
envs reset every episode with its own seed and step the very environments ``gym.make``
builds, and the policy's per-row arithmetic does not depend on the batch. A
``vector_entry_point`` environment is another implementation that seeds itself: it is
compared on the test env ``Drift`` with deterministic starts (where it must be bitwise equal
too), and on CartPole only for properties (a return is its episode's length).
"""

import numpy as np
import pytest
from pydantic import ValidationError

from asktell.distribution import Distribution
from asktell.errors import CandidateFailedError, ConfigError
from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator, VectorEnvEvaluatorConfig
from asktell.gym import GymTask
from asktell.noise import NoiseTable, mirrored
from asktell.registry import EVALUATORS
from asktell.testing.gym_envs import DRIFT_ID
from asktell.testing.dask_cluster import loopback_cluster

NOISE = NoiseTable(0, 1 << 18)
SEEDS = mirrored(np.arange(0, 1400, 100))  # 28 candidates


def serial(task, dist, seeds, **options):
    with SerialEvaluator(task, **options) as ev:
        return ev.evaluate(dist, seeds)


def vector(task, dist, seeds, **options):
    with VectorEnvEvaluator(task, **options) as ev:
        return ev.evaluate(dist, seeds)


def assert_same(a, b, stats=True):
    assert np.array_equal(a.returns, b.returns, equal_nan=True)
    assert np.array_equal(a.steps, b.steps)
    assert np.array_equal(a.episodes, b.episodes)
    assert np.array_equal(a.truncated, b.truncated)
    assert [(f.index, f.seed, f.error, f.generation) for f in a.failures] == [
        (f.index, f.seed, f.error, f.generation) for f in b.failures
    ]
    if stats and a.obs_stats is not None:
        # Same observations, grouped differently (one chunk vs per slot and per worker):
        # the statistics are exact, so the totals are bitwise the same.
        assert a.obs_stats.count == b.obs_stats.count
        assert np.array_equal(a.obs_stats.sum, b.obs_stats.sum)
        assert np.array_equal(a.obs_stats.sumsq, b.obs_stats.sumsq)


def generation_of(task, generation=3, sigma=0.5, x0=None):
    """A distribution as the runner would ship it: frozen normaliser and cap in the context."""
    task.obs_stat.push(np.random.default_rng(1).standard_normal((30, task.obs_spec.dim)))
    center = task.initial_params(1) if x0 is None else x0
    return Distribution(center, sigma, NOISE, generation, context=task.context())


@pytest.fixture(scope="module")
def cartpole():
    return GymTask("CartPole-v1", policy="linear", episodes=2, obs_stats_fraction=0.5)


@pytest.fixture(scope="module")
def pendulum():
    task = GymTask(
        "Pendulum-v1", hidden_sizes=(16, 16), step_cap="adaptive", obs_stats_fraction=0.3
    )
    task.load_state_dict({**task.state_dict(), "step_cap": 57})
    return task


@pytest.mark.parametrize("num_envs", [1, 5, 28])
def test_sync_matches_serial_bitwise_on_cartpole(cartpole, num_envs):
    dist = generation_of(cartpole)
    assert_same(serial(cartpole, dist, SEEDS), vector(cartpole, dist, SEEDS, num_envs=num_envs))


@pytest.mark.parametrize("num_envs", [5, 28])
def test_large_policies_run_the_tail_in_runs_of_slots_and_match_serial(
    cartpole, num_envs, monkeypatch
):
    """Large networks (Atari) step the busy slots of a batch's tail as runs of
    consecutive slots instead of gathering their weights; CartPole's episodes end at very
    different times, so the runs fragment and every path is taken."""
    from asktell.gym import _slot_loop as _slots

    monkeypatch.setattr(_slots, "RUNS_ONLY_PARAMS", 0)
    dist = generation_of(cartpole)
    assert_same(serial(cartpole, dist, SEEDS), vector(cartpole, dist, SEEDS, num_envs=num_envs))


def test_sync_matches_serial_bitwise_with_mlp_normaliser_and_adaptive_cap(pendulum):
    dist = generation_of(pendulum)
    assert dist.context["step_cap"] == 57
    expected = serial(pendulum, dist, SEEDS)
    assert expected.truncated.sum() == SEEDS.size  # every episode cut by the cap
    assert_same(expected, vector(pendulum, dist, SEEDS, num_envs=6))


def test_a_candidates_return_is_the_same_alone_and_in_any_batch(pendulum):
    dist = generation_of(pendulum, generation=8)
    with VectorEnvEvaluator(pendulum, num_envs=7) as ev:
        full = ev.evaluate(dist, SEEDS).returns
        for i in (0, 5, 27):
            assert ev.evaluate(dist, SEEDS[i : i + 1]).returns[0] == full[i]
        assert np.array_equal(ev.evaluate(dist, SEEDS[3:17]).returns, full[3:17])


def test_async_matches_serial_bitwise(cartpole):
    dist = generation_of(cartpole)
    assert_same(serial(cartpole, dist, SEEDS), vector(cartpole, dist, SEEDS, mode="async", num_envs=2))


def test_worker_processes_match_serial_bitwise(pendulum):
    dist = generation_of(pendulum)
    with VectorEnvEvaluator(pendulum, num_workers=2, num_envs=4) as ev:
        assert_same(serial(pendulum, dist, SEEDS), ev.evaluate(dist, SEEDS))
        second = generation_of(pendulum, generation=4)
        assert_same(serial(pendulum, second, SEEDS[:9]), ev.evaluate(second, SEEDS[:9]))


@pytest.mark.parametrize("autoreset", ["NextStep", "SameStep", "Disabled"])
@pytest.mark.parametrize("cap", [None, 9])
def test_self_resetting_vector_envs_leak_nothing_across_episodes(autoreset, cap):
    # Deterministic starts make every episode a function of the candidate alone, so the
    # env's own vectorised implementation must give the serial returns exactly: any reward
    # of a reset step, or of a neighbour's episode, credited to a candidate would show.
    task = GymTask(
        DRIFT_ID,
        env_kwargs={"random_start": False, "autoreset_mode": autoreset},
        hidden_sizes=(4,),
        episodes=2,
        step_cap="adaptive" if cap else "default",
    )
    if cap:
        task.load_state_dict({**task.state_dict(), "step_cap": cap})
    dist = generation_of(task, sigma=1.0)
    expected = serial(task, dist, SEEDS)
    assert len(set(expected.steps.tolist())) > 3  # episodes of many lengths
    got = vector(task, dist, SEEDS, mode="vector_entry_point", num_envs=4)
    assert_same(expected, got)


def test_vector_entry_point_with_per_episode_seeds_matches_serial():
    task = GymTask(DRIFT_ID, env_kwargs={"autoreset_mode": "Disabled"}, hidden_sizes=(4,))
    dist = generation_of(task, sigma=1.0)
    assert_same(serial(task, dist, SEEDS), vector(task, dist, SEEDS, mode="vector_entry_point", num_envs=5))


def test_cartpole_vector_entry_point_returns_are_episode_lengths(cartpole):
    dist = generation_of(cartpole)
    with VectorEnvEvaluator(cartpole, mode="vector_entry_point", num_envs=8) as ev:
        got = ev.evaluate(dist, SEEDS)
        again = ev.evaluate(dist, SEEDS)
    # CartPole pays 1 per step: a return is exactly its episodes' mean length.
    assert np.array_equal(got.returns, got.steps / 2.0)
    assert got.steps.min() >= 2 and got.steps.max() <= 1000
    assert np.array_equal(got.returns, again.returns)  # reproducible for a given setup


@pytest.mark.parametrize("fail_mode", ["raise", "nan_reward", "nan_obs"])
def test_environment_failures_match_serial_and_the_env_is_rebuilt(fail_mode):
    task = GymTask(DRIFT_ID, env_kwargs={"fail_mode": fail_mode, "fail_above": 0.5}, policy="linear")
    dist = Distribution(np.zeros(task.num_params), 1.0, NOISE, generation=7)
    seeds = np.arange(16)
    expected = serial(task, dist, seeds, on_failure="mark")
    assert 0 < len(expected.failures) < seeds.size
    with VectorEnvEvaluator(task, num_envs=4, on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
        assert (ev.rebuilds > 0) == (fail_mode == "raise")
        assert_same(expected, ev.evaluate(dist, seeds))  # and it still works afterwards
    assert_same(expected, got)
    with pytest.raises(CandidateFailedError, match="generation 7 failed"):
        vector(task, dist, seeds, num_envs=4)


def test_a_worker_killed_by_its_env_fails_only_that_candidate():
    killer = GymTask(DRIFT_ID, env_kwargs={"fail_mode": "exit", "fail_above": 0.9}, policy="linear")
    raiser = GymTask(DRIFT_ID, env_kwargs={"fail_mode": "raise", "fail_above": 0.9}, policy="linear")
    dist = Distribution(np.zeros(killer.num_params), 1.0, NOISE, generation=2)
    seeds = np.arange(40, 52)
    expected = serial(raiser, dist, seeds, on_failure="mark")
    bad = [f.index for f in expected.failures]
    assert 1 <= len(bad) <= 2
    with VectorEnvEvaluator(killer, num_workers=2, num_envs=3, on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
    assert [f.index for f in got.failures] == bad
    assert all("worker process died" in f.error for f in got.failures)
    good = ~expected.failed_mask
    assert np.array_equal(got.returns[good], expected.returns[good])


def test_halfcheetah_matches_serial_bitwise():
    # Chaotic dynamics: any difference in one action would show in the returns.
    task = GymTask("HalfCheetah-v5", step_cap="fixed", max_episode_steps=150)
    dist = generation_of(task, sigma=0.1)
    seeds = SEEDS[:6]
    assert_same(serial(task, dist, seeds), vector(task, dist, seeds, num_envs=4))


def test_config_validation_and_registry():
    assert EVALUATORS.get("vector") is VectorEnvEvaluator
    config = VectorEnvEvaluatorConfig(num_envs=3, on_failure="mark")
    task = GymTask("CartPole-v1", policy="linear")
    with config.build(task) as ev:
        assert ev.num_envs == 3 and ev.on_failure == "mark" and ev.mode == "sync"
    with pytest.raises(ValidationError, match="num_workers=0"):
        VectorEnvEvaluatorConfig(mode="async", num_workers=2)
    with pytest.raises(ConfigError, match="one process per environment; use num_workers=0"):
        VectorEnvEvaluator(task, mode="async", num_workers=2)  # the same rule, declared once
    with pytest.raises(ValidationError, match="mode"):
        VectorEnvEvaluatorConfig(mode="subproc")
    with pytest.raises(ConfigError, match="num_envs: Input should be greater than or equal to 1; got 0"):
        VectorEnvEvaluator(task, num_envs=0)


def test_closed_evaluator_refuses_work():
    task = GymTask("CartPole-v1", policy="linear")
    ev = VectorEnvEvaluator(task)
    ev.close()
    ev.close()
    with pytest.raises(RuntimeError, match="after close"):
        ev.evaluate(Distribution(np.zeros(task.num_params), 1.0, NOISE), SEEDS)


def test_discrete_observations_and_stochastic_dynamics_match_serial():
    # FrozenLake: one-hot observations, a slippery (seeded) transition, episodes of any length.
    task = GymTask("FrozenLake-v1", hidden_sizes=(8,), episodes=3)
    dist = generation_of(task, sigma=1.0)
    expected = serial(task, dist, SEEDS)
    assert len(set(expected.steps.tolist())) > 3
    assert_same(expected, vector(task, dist, SEEDS, num_envs=6))
    assert_same(expected, vector(task, dist, SEEDS, num_envs=40))


@pytest.mark.parametrize(
    "options",
    [
        {"num_envs": 3},
        {"mode": "async", "num_envs": 2},
        {"mode": "vector_entry_point", "num_envs": 4},
        {"mode": "vector_entry_point", "num_envs": 4, "num_workers": 2},
    ],
    ids=["sync", "async", "vector_entry_point", "vector_entry_point_workers"],
)
def test_the_centre_plan_gives_evaluate_centres_returns_in_every_mode(cartpole, options):
    """The runner measures the centre through the run's evaluator: bitwise what the task's
    own evaluate_center gives, even where generations are other episodes
    (vector_entry_point)."""
    dist = generation_of(cartpole, generation=5)
    expected = cartpole.evaluate_center(dist, 5)
    with VectorEnvEvaluator(cartpole, **options) as ev:
        first = ev.evaluate(*cartpole.center_plan(dist, 5))  # before any generation
        ev.evaluate(dist, SEEDS[:6])  # a generation: the engine keeps its env
        got = ev.evaluate(*cartpole.center_plan(dist, 5))
    assert np.array_equal(first.returns, expected)
    assert np.array_equal(got.returns, expected)
    assert got.episodes.tolist() == [1] * 5 and np.array_equal(got.steps, expected)


def test_the_centre_plan_through_dask_gives_evaluate_centres_returns(cartpole):
    distributed = pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator

    dist = generation_of(cartpole, generation=5)
    expected = cartpole.evaluate_center(dist, 5)
    with loopback_cluster(1) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with DaskEvaluator(cartpole, client) as ev:
            got = ev.evaluate(*cartpole.center_plan(dist, 5))
    assert np.array_equal(got.returns, expected)


def test_tasks_without_a_batch_runner_are_refused_naming_what_to_use():
    from asktell import FunctionTask
    from asktell.config import RunConfig

    with pytest.raises(ConfigError, match="FunctionTask has none.*'serial'.*'dask'"):
        VectorEnvEvaluator(FunctionTask.named("sphere", num_params=3))
    run = {
        "strategy": {"kind": "openai_es"},
        "evaluator": {"kind": "vector"},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
        "budget": {"generations": 1},
    }
    with pytest.raises(ValidationError, match="evaluator: .*kind 'function' has none.*'serial'"):
        RunConfig.model_validate(run)


def test_capabilities_say_where_returns_equal_the_serial_evaluators(cartpole):
    with VectorEnvEvaluator(cartpole) as ev:
        assert ev.capabilities == {"bitwise_serial", "needs_batch_runner", "candidate_timeout", "progress"}
    with VectorEnvEvaluator(cartpole, mode="vector_entry_point") as ev:
        assert ev.capabilities == {"needs_batch_runner", "candidate_timeout", "progress"}
