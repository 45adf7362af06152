"""The evaluator conformance suite: checks every registered evaluator must pass.

Each check takes ``make(task, **options)``, a factory that builds the evaluator under test
for ``task`` (accepting at least ``on_failure`` and ``retries``). Every check runs a
Gymnasium task (the small deterministic ``Drift`` environment of
:mod:`asktell.testing.gym_envs`) and, unless the evaluator declares ``needs_batch_runner``,
a function task too. Tasks used here are module-level, so they pickle to worker processes.

Expected values come from the rule, computed here, never from another evaluator: for a
function, ``f`` of each decoded candidate; for a Gym task, the task's own serial rollout
(``task.evaluate`` of one candidate at a time, in this process) and, where the dynamics
make it possible, the return the environment's equations give.

Capabilities are read from the evaluator **instance** (``ev.capabilities``, default none),
so one class may declare different ones per configuration:

* ``bitwise_serial``: returns and observation statistics equal the reference bit for bit;
  otherwise they must agree to ``rtol=1e-12``.
* ``needs_batch_runner``: the evaluator runs only tasks with a batch runner
  (:meth:`~asktell.protocol.TaskHooks.batch_runner`): the function checks are left out.
* ``candidate_timeout``: the evaluator takes ``candidate_timeout_seconds``; a candidate that
  never returns must fail alone under it, its batch-mates keeping their rule values.

(Past 400 lines on purpose: one short check per property, kept in one module so a plugin
author reads the whole suite in one place.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import CandidateFailedError
from asktell.noise import NoiseTable, mirrored
from asktell.protocol import Evaluation
from asktell.tasks import FunctionTask

__all__ = [
    "EVALUATOR_CHECKS",
    "HangsOn",
    "RaisesOn",
    "SUITE_NOISE",
    "capabilities",
    "drift_task",
    "first_coordinate",
]

SUITE_NOISE = NoiseTable(seed=0, size=1 << 20)

Factory = Callable[..., Any]

#: The Gym generation's frozen context: normalisation statistics and a step cap below the
#: time limit (40), so every evaluator must apply both.
_GYM_CONTEXT = {"obs_mean": np.array([0.05, -0.01]), "obs_std": np.array([0.3, 0.08]), "step_cap": 30}
_CRASH = "Drift: simulated environment crash"


def capabilities(ev: Any) -> frozenset[str]:
    """What an evaluator instance declares (none when it has no ``capabilities``)."""
    return frozenset(getattr(ev, "capabilities", ()))


# --------------------------------------------------------------------------- tasks
def first_coordinate(x: np.ndarray) -> float:
    """A return that identifies the candidate (its first parameter)."""
    return float(x[0])


def rastrigin_return(x: np.ndarray) -> float:
    return -float(10 * x.size + np.sum(x * x - 10 * np.cos(2 * np.pi * x)))


class RaisesOn:
    """A function that raises for candidates whose first coordinate exceeds ``threshold``."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, x: np.ndarray) -> float:
        if x[0] > self.threshold:
            raise ValueError(f"refusing x[0]={x[0]:.3f}")
        return float(x[0])


class HangsOn:
    """A function that never returns (an hour's sleep) for candidates whose first coordinate
    exceeds ``threshold``; the others return it."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, x: np.ndarray) -> float:
        if x[0] > self.threshold:
            time.sleep(3600)
        return float(x[0])


def drift_task(fail_mode: str | None = None, **options: Any):
    """A linear policy on ``Drift`` with random starts: 2 episodes per candidate, mirrored
    episode seeds, observation statistics from half the candidates."""
    from asktell.gym import GymTask
    from asktell.testing.gym_envs import DRIFT_ID

    env_kwargs = {"fail_mode": fail_mode, "fail_above": 0.5} if fail_mode else {}
    settings = dict(policy="linear", episodes=2, obs_stats_fraction=0.5, seed=3)
    settings.update(options)
    return GymTask(DRIFT_ID, env_kwargs=env_kwargs, **settings)


def _runs_functions(make: Factory) -> bool:
    with make(drift_task()) as ev:
        return "needs_batch_runner" not in capabilities(ev)


# --------------------------------------------------------------------------- generations
def _dist_and_seeds(n: int = 24, dim: int = 6, sigma: Any = 0.3, context=None):
    rng = np.random.default_rng(0)
    dist = Distribution(
        rng.standard_normal(dim), sigma, SUITE_NOISE, generation=5, context=context or {}
    )
    seeds = mirrored(SUITE_NOISE.sample_keys(rng, n // 2, dim))
    return dist, seeds


def _distributions(n: int, dim: int, scale: float = 1.0, context=None):
    """Isotropic, per-parameter and full-covariance (factor) distributions, and ``n`` seeds:
    candidates travel as seeds for every strategy, whatever its distribution."""
    base, seeds = _dist_and_seeds(n=n, dim=dim, sigma=0.3 * scale, context=context)
    rng = np.random.default_rng(1)
    factor = np.linalg.qr(rng.standard_normal((dim, dim)))[0] * rng.uniform(0.5, 2.0, dim)
    dists = [
        base,
        base.replace(sigma=rng.uniform(0.1, 0.5, dim) * scale),
        base.replace(factor=factor),
    ]
    return dists, seeds


def _gym_generation(task, n: int = 16, sigma: float = 0.8):
    return _dist_and_seeds(n=n, dim=task.num_params, sigma=sigma, context=_GYM_CONTEXT)


# --------------------------------------------------------------------------- the rule
def _reference(task, dist: Distribution, seeds: np.ndarray) -> dict[str, Any]:
    """The serial rule: each candidate evaluated alone by the task, in this process, in seed
    order; observation statistics merged in seed order; failures recorded by index."""
    n = seeds.size
    out: dict[str, Any] = {
        "returns": np.full(n, np.nan),
        "steps": np.zeros(n, dtype=np.int64),
        "episodes": np.zeros(n, dtype=np.int64),
        "truncated": np.zeros(n, dtype=np.int64),
        "failed": [],
        "obs_stats": None,
    }
    X = dist.decode(seeds)
    for i in range(n):
        try:
            r = task.evaluate(X[i : i + 1], seeds[i : i + 1], dist)
        except Exception as exc:  # noqa: BLE001 - the failure is what the rule records
            out["failed"].append((i, str(exc)))
            continue
        out["returns"][i] = r.returns[0]
        out["steps"][i] = r.steps[0]
        for key in ("episodes", "truncated"):
            if getattr(r, key) is not None:
                out[key][i] = getattr(r, key)[0]
        if r.obs_stats is not None:
            if out["obs_stats"] is None:
                out["obs_stats"] = r.obs_stats
            else:
                out["obs_stats"].merge(r.obs_stats)
    return out


def _same(got: np.ndarray, expected: np.ndarray, bitwise: bool, what: str) -> None:
    if bitwise:
        assert np.array_equal(got, expected, equal_nan=True), (
            f"{what} differ from the serial rule (the evaluator declares bitwise_serial): "
            f"max difference {np.nanmax(np.abs(np.asarray(got) - expected))}"
        )
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"{what} differ from the serial rule")


def _assert_gym_matches(got: Evaluation, ref: dict[str, Any], bitwise: bool) -> None:
    ok = np.ones(ref["returns"].size, dtype=bool)
    ok[[i for i, _ in ref["failed"]]] = False
    _same(got.returns[ok], ref["returns"][ok], bitwise, "Gym returns")
    assert np.array_equal(got.steps[ok], ref["steps"][ok]), "environment steps differ"
    for key in ("episodes", "truncated"):
        value = getattr(got, key)
        assert value is not None, f"the evaluation does not report {key}"
        assert np.array_equal(value[ok], ref[key][ok]), f"{key} per candidate differ"
    stats = ref["obs_stats"]
    if stats is not None:
        assert got.obs_stats is not None, "observation statistics were not returned"
        assert got.obs_stats.count == stats.count, (
            f"observation statistics count {got.obs_stats.count} instead of {stats.count}"
        )
        _same(got.obs_stats.sum, stats.sum, bitwise, "observation sums")
        _same(got.obs_stats.sumsq, stats.sumsq, bitwise, "observation sums of squares")


# --------------------------------------------------------------------------- checks
def check_function_returns_follow_the_rule(make: Factory) -> None:
    """Function tasks: the return of each candidate is ``f`` of its decoded parameters, for
    isotropic, per-parameter and factor distributions; one step per candidate."""
    if not _runs_functions(make):
        return
    task = FunctionTask(rastrigin_return)
    dists, seeds = _distributions(n=24, dim=6)
    for dist in dists:
        expected = np.array([rastrigin_return(x) for x in dist.decode(seeds)])
        with make(task) as ev:
            got = ev.evaluate(dist, seeds)
            bitwise = "bitwise_serial" in capabilities(ev)
        _same(got.returns, expected, bitwise, "function returns")
        assert np.array_equal(got.steps, np.ones(seeds.size, dtype=np.int64))


def check_gym_matches_serial_rule(make: Factory) -> None:
    """Gym tasks: returns, steps, episodes, truncations and merged observation statistics
    equal the task's own serial rollouts, for isotropic, per-parameter and factor
    distributions, with the generation's normalisation and step cap applied."""
    task = drift_task()
    dists, seeds = _distributions(n=16, dim=task.num_params, scale=2.5, context=_GYM_CONTEXT)
    for dist in dists:
        ref = _reference(task, dist, seeds)
        assert not ref["failed"] and ref["obs_stats"] is not None
        assert len(set(ref["steps"].tolist())) > 2, "suite: episodes of one length test little"
        with make(task) as ev:
            got = ev.evaluate(dist, seeds)
            bitwise = "bitwise_serial" in capabilities(ev)
        assert got.failures == [], f"unexpected failures: {got.failures}"
        _assert_gym_matches(got, ref, bitwise)


def check_gym_episodes_follow_the_dynamics(make: Factory) -> None:
    """Gym tasks, from the environment's equations alone: with every candidate at the zero
    policy the action is 0, so the point rests at its start ``p0`` (drawn from the episode's
    reset seed) and an episode returns ``T (1 - p0^2)`` over ``T = step cap`` steps. An
    evaluator that resets an episode with another seed, or skews a return, fails here."""
    from gymnasium.utils import seeding

    task = drift_task()
    dist, seeds = _gym_generation(task)
    dist = dist.replace(center=np.zeros(task.num_params), sigma=0.0)
    cap = _GYM_CONTEXT["step_cap"]
    reset_seeds = task.episode_seeds(dist.generation, seeds)
    expected = np.empty(seeds.size)
    for i, row in enumerate(reset_seeds):
        episode_returns = []
        for s in row:
            p0 = float(seeding.np_random(int(s))[0].uniform(-0.5, 0.5))
            total = 0.0
            for _ in range(cap):
                total += 1.0 - p0 * p0
            episode_returns.append(total)
        expected[i] = np.mean(episode_returns)
    assert len(set(expected.tolist())) > seeds.size // 3, "suite: starts should differ"
    with make(task) as ev:
        got = ev.evaluate(dist, seeds)
    np.testing.assert_allclose(
        got.returns, expected, rtol=1e-12, err_msg="returns differ from the Drift dynamics"
    )
    assert np.array_equal(got.steps, np.full(seeds.size, cap * task.episodes))
    assert np.array_equal(got.truncated, np.full(seeds.size, task.episodes))


def check_keeps_seed_order(make: Factory) -> None:
    """Results come back in seed order, whatever order the seeds are given in."""
    if _runs_functions(make):
        dist, seeds = _dist_and_seeds(n=40)
        with make(FunctionTask(first_coordinate)) as ev:
            got = ev.evaluate(dist, seeds)
            got_rev = ev.evaluate(dist, seeds[::-1].copy())
        assert np.array_equal(got.returns, dist.decode(seeds)[:, 0])
        assert np.array_equal(got_rev.returns, got.returns[::-1])
    task = drift_task()
    dist, seeds = _gym_generation(task)
    with make(task) as ev:
        got = ev.evaluate(dist, seeds)
        got_rev = ev.evaluate(dist, seeds[::-1].copy())
    assert np.array_equal(got_rev.returns, got.returns[::-1]), "Gym returns not in seed order"
    assert np.array_equal(got_rev.steps, got.steps[::-1]), "Gym steps not in seed order"


def check_empty_batch(make: Factory) -> None:
    tasks = [drift_task()] + ([FunctionTask(first_coordinate)] if _runs_functions(make) else [])
    for task in tasks:
        dist, _ = _dist_and_seeds(dim=task.num_params or 6)
        with make(task) as ev:
            got = ev.evaluate(dist, np.zeros(0, dtype=np.int64))
        assert got.returns.shape == (0,) and got.steps.shape == (0,) and got.failures == []


def _function_failures(k: int):
    """A generation in which exactly the ``k`` candidates with the largest first coordinate
    raise (the rule), and the task that raises."""
    dist, seeds = _dist_and_seeds()
    X = dist.decode(seeds)
    threshold = float(np.sort(X[:, 0])[-(k + 1)])
    bad = sorted(np.argsort(X[:, 0])[-k:].tolist())
    return FunctionTask(RaisesOn(threshold)), dist, seeds, bad, X[:, 0]


def _gym_failures(fail_mode: str):
    task = drift_task(fail_mode)
    dist, seeds = _gym_generation(task, n=16, sigma=1.0)
    ref = _reference(task, dist, seeds)
    assert 0 < len(ref["failed"]) < seeds.size, "suite: the generation must mix failures"
    return task, dist, seeds, ref


def check_failure_raises_naming_candidate(make: Factory) -> None:
    """``on_failure="raise"``: a CandidateFailedError naming the first failed candidate's
    index, seed and generation, and the task's own error."""
    cases = []
    if _runs_functions(make):
        task, dist, seeds, bad, _ = _function_failures(1)
        cases.append((task, dist, seeds, bad[0], "refusing"))
    task, dist, seeds, ref = _gym_failures("raise")
    cases.append((task, dist, seeds, ref["failed"][0][0], _CRASH))
    for task, dist, seeds, first, words in cases:
        with make(task, on_failure="raise") as ev:
            try:
                ev.evaluate(dist, seeds)
            except CandidateFailedError as exc:
                assert exc.index == first and exc.seed == int(seeds[first]), (
                    f"named candidate {exc.index} (seed {exc.seed}); the first to fail is "
                    f"{first} (seed {int(seeds[first])})"
                )
                assert exc.generation == dist.generation
                assert f"candidate {first}" in str(exc) and words in str(exc)
            else:
                raise AssertionError("a failing candidate must raise CandidateFailedError")


def check_failure_marked(make: Factory) -> None:
    """``on_failure="mark"``: exactly the failed candidates are named (index, seed), get NaN,
    and every other candidate keeps its rule value."""
    if _runs_functions(make):
        task, dist, seeds, bad, first = _function_failures(2)
        with make(task, on_failure="mark") as ev:
            got = ev.evaluate(dist, seeds)
        assert [f.index for f in got.failures] == bad
        assert [f.seed for f in got.failures] == [int(seeds[i]) for i in bad]
        assert np.all(np.isnan(got.returns[bad]))
        good = np.setdiff1d(np.arange(seeds.size), bad)
        assert np.array_equal(got.returns[good], first[good])
    for fail_mode in ("raise", "nan_reward"):
        task, dist, seeds, ref = _gym_failures(fail_mode)
        bad = [i for i, _ in ref["failed"]]
        with make(task, on_failure="mark") as ev:
            got = ev.evaluate(dist, seeds)
            bitwise = "bitwise_serial" in capabilities(ev)
        assert [f.index for f in got.failures] == bad, (
            f"{fail_mode}: failures {[f.index for f in got.failures]}, the rule says {bad}"
        )
        assert [f.seed for f in got.failures] == [int(seeds[i]) for i in bad]
        assert np.all(np.isnan(got.returns[bad]))
        _assert_gym_matches(got, ref, bitwise)


#: The time limit of the hang check: far above a candidate's compute time here (about a
#: millisecond), short enough to keep the check fast.
HANG_LIMIT = 0.5


def check_hung_candidate_fails_alone(make: Factory) -> None:
    """``candidate_timeout_seconds``: a candidate that never returns fails alone (NaN, named
    by index and seed, the limit in its error), every other candidate keeps its rule value,
    and the evaluator is usable afterwards. Only for evaluators declaring
    ``candidate_timeout``. Eight candidates: a batch may take the limit per candidate it
    holds before it is isolated, so a small batch keeps the check short."""
    with make(drift_task()) as ev:
        if "candidate_timeout" not in capabilities(ev):
            return
    if _runs_functions(make):
        dist, seeds = _dist_and_seeds(n=8)
        first = dist.decode(seeds)[:, 0]
        task = FunctionTask(HangsOn(float(np.sort(first)[-2])))
        bad, expected = [int(np.argmax(first))], first
    else:
        dist, seeds = _gym_generation(drift_task(), n=8, sigma=1.0)
        ref = _reference(drift_task("raise"), dist, seeds)  # the same candidates hang
        assert 0 < len(ref["failed"]) < seeds.size, "suite: the generation must mix hangs"
        task = drift_task("hang")
        bad, expected = [i for i, _ in ref["failed"]], ref["returns"]
    good = np.setdiff1d(np.arange(seeds.size), bad)
    with make(task, on_failure="mark", candidate_timeout_seconds=HANG_LIMIT) as ev:
        got = ev.evaluate(dist, seeds)
        bitwise = "bitwise_serial" in capabilities(ev)
        assert [f.index for f in got.failures] == bad, (
            f"failures {[f.index for f in got.failures]}; only {bad} hang"
        )
        assert [f.seed for f in got.failures] == [int(seeds[i]) for i in bad]
        assert all(f"candidate_timeout_seconds={HANG_LIMIT:g}" in f.error for f in got.failures)
        assert np.all(np.isnan(got.returns[bad]))
        _same(got.returns[good], np.asarray(expected)[good], bitwise, "innocent returns")
        again = ev.evaluate(dist, seeds[good])
        assert again.failures == [], "the evaluator must be usable after a hang"
        _same(again.returns, np.asarray(expected)[good], bitwise, "returns after a hang")


def check_close_twice(make: Factory) -> None:
    ev = make(drift_task())
    ev.close()
    ev.close()


EVALUATOR_CHECKS = [
    check_function_returns_follow_the_rule,
    check_gym_matches_serial_rule,
    check_gym_episodes_follow_the_dynamics,
    check_keeps_seed_order,
    check_empty_batch,
    check_failure_raises_naming_candidate,
    check_failure_marked,
    check_hung_candidate_fails_alone,
    check_close_twice,
]
