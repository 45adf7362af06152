"""The conformance suites are trusted because they fail: each test here applies a known break
to a plugin (or to the library under it) and asserts that the suite catches it, naming the
check that does.

These are also the pattern for a plugin author who wants to know that running the suites on
their plugin means something: break your plugin on purpose, the way a real bug would, and
run the suite programmatically (:func:`caught_by`).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import asktell.strategies._base as strategy_base
import asktell.strategies._told as strategy_told
from asktell.evaluators import SerialEvaluator
from asktell.registry import EVALUATORS, STRATEGIES
from asktell.testing.evaluator_suite import EVALUATOR_CHECKS
from asktell.testing.strategy_suite import STRATEGY_CHECKS

#: What the vector evaluator runs to step its environments (patched to raise in one test).
SLOT_ENGINE_RUN = "asktell.gym.slots.SlotEngine.run"

#: The Gym checks: each one alone must catch an evaluator whose Gym episodes are wrong.
GYM_CHECKS = {"check_gym_matches_serial_rule", "check_gym_episodes_follow_the_dynamics"}


def caught_by(checks, subject) -> dict[str, BaseException]:
    """Run every check on ``subject``; the checks that failed, with what they raised."""
    failed = {}
    for check in checks:
        try:
            check(subject)
        except Exception as exc:  # noqa: BLE001 - an error is a failed check too
            failed[check.__name__] = exc
    return failed


def assert_caught(checks, subject, by: set[str]) -> dict[str, BaseException]:
    failed = caught_by(checks, subject)
    missed = by - set(failed)
    assert not missed, f"the suite did not catch the break in {sorted(missed)} (failed: {sorted(failed)})"
    return failed


# --------------------------------------------------------------------------- strategies
def _rank_failed_best(returns: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """The break: failed candidates get a value above every finite return."""
    r = returns.copy()
    if not finite.any():
        r[:] = 0.0
        return r
    lo, hi = float(r[finite].min()), float(r[finite].max())
    r[~finite] = hi + max(hi - lo, 1e-6)
    return r


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_suite_catches_failed_candidates_ranked_best(name, monkeypatch):
    cls = STRATEGIES.get(name)
    monkeypatch.setattr(strategy_told, "rank_nonfinite_worst", _rank_failed_best)
    if cls.tell is not strategy_base.BaseStrategy.tell:
        # A strategy that guards its own selection (the mirrored ES never lets a failed
        # candidate replace its parent, whatever the library ranks it at) is immune to the
        # library's break: break its guard as well, the way a bug in it would.
        monkeypatch.setattr(cls, "tell", strategy_base.BaseStrategy.tell)
    failed = assert_caught(STRATEGY_CHECKS, cls, by={"check_nonfinite_returns"})
    assert "treated failed candidates" in str(failed["check_nonfinite_returns"])


def test_the_mirrored_es_guard_alone_keeps_the_suite_passing(monkeypatch):
    # The converse of the exemption above: with only the library broken, the mirrored ES
    # still never moves to a failed candidate, and the suite says so.
    monkeypatch.setattr(strategy_told, "rank_nonfinite_worst", _rank_failed_best)
    from asktell.testing.strategy_suite import check_nonfinite_returns

    check_nonfinite_returns(STRATEGIES.get("mirrored_es"))


# --------------------------------------------------------------------------- evaluators
def _is_gym(task) -> bool:
    from asktell.gym import GymTask

    return isinstance(task, GymTask)


class _Wrapper:
    """A third-party evaluator built on SerialEvaluator (right on functions)."""

    def __init__(self, task, capabilities=frozenset({"bitwise_serial"}), **options):
        self.capabilities = capabilities
        self.task = task
        self.inner = SerialEvaluator(self.gym_task(task) if _is_gym(task) else task, **options)

    def gym_task(self, task):
        return task

    def evaluate(self, distribution, seeds):
        return self.inner.evaluate(distribution, seeds)

    def close(self):
        self.inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SkewsGymReturns(_Wrapper):
    """Adds 1e-6 to every Gym return (a float32 accumulation, say)."""

    def evaluate(self, distribution, seeds):
        evaluation = self.inner.evaluate(distribution, seeds)
        if _is_gym(self.task):
            evaluation.returns = evaluation.returns + 1e-6
        return evaluation


class ResetsWithSeedZero(_Wrapper):
    """Plans its own episodes: every episode is reset with seed 0."""

    def gym_task(self, task):
        mine = copy.copy(task)
        mine.episode_seeds = lambda generation, seeds: np.zeros((np.size(seeds), task.episodes), np.int64)
        return mine


@pytest.mark.parametrize("capabilities", [frozenset({"bitwise_serial"}), frozenset()])
def test_evaluator_suite_catches_gym_returns_skewed_by_1e_6(capabilities):
    make = lambda task, **o: SkewsGymReturns(task, capabilities, **o)  # noqa: E731
    failed = assert_caught(EVALUATOR_CHECKS, make, by=GYM_CHECKS | {"check_failure_marked"})
    assert "check_function_returns_follow_the_rule" not in failed  # right on functions


def test_evaluator_suite_catches_episodes_reset_with_seed_zero():
    make = lambda task, **o: ResetsWithSeedZero(task, **o)  # noqa: E731
    failed = assert_caught(EVALUATOR_CHECKS, make, by=GYM_CHECKS)
    assert "check_function_returns_follow_the_rule" not in failed  # right on functions
    assert "Drift dynamics" in str(failed["check_gym_episodes_follow_the_dynamics"])


def test_evaluator_suite_catches_a_vector_slot_engine_that_raises(monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("slot engine broken on purpose")

    monkeypatch.setattr(SLOT_ENGINE_RUN, broken)
    make = lambda task, **o: EVALUATORS.get("vector")(task, num_envs=4, **o)  # noqa: E731
    failed = assert_caught(
        EVALUATOR_CHECKS,
        make,
        by=GYM_CHECKS | {"check_keeps_seed_order", "check_failure_marked", "check_failure_raises_naming_candidate"},
    )
    assert "slot engine broken" in str(failed["check_gym_matches_serial_rule"])


def test_the_unbroken_wrapper_passes_the_suite():
    # The control: the wrappers above differ from a correct evaluator only by their break.
    assert caught_by(EVALUATOR_CHECKS, lambda task, **o: _Wrapper(task, **o)) == {}


class GymOnly(_Wrapper):
    """Refuses tasks without environments, as an evaluator that needs a batch runner does."""

    def __init__(self, task, capabilities=frozenset({"bitwise_serial", "needs_batch_runner"}), **options):
        if not _is_gym(task):
            from asktell.errors import ConfigError

            raise ConfigError(f"GymOnly evaluates Gym tasks only; got {type(task).__name__}")
        super().__init__(task, capabilities, **options)


def test_needs_batch_runner_is_read_from_the_instance():
    # Declared: the function checks are left out and the Gym checks pass.
    assert caught_by(EVALUATOR_CHECKS, lambda task, **o: GymOnly(task, **o)) == {}
    # Not declared: the suite asks for function tasks and the refusal fails those checks.
    undeclared = lambda task, **o: GymOnly(task, frozenset({"bitwise_serial"}), **o)  # noqa: E731
    failed = caught_by(EVALUATOR_CHECKS, undeclared)
    assert "check_function_returns_follow_the_rule" in failed
    assert not GYM_CHECKS & set(failed)
