"""A candidate that never returns must not block a run (``candidate_timeout_seconds``).

Every test has one candidate hang (an hour's sleep) and checks what users rely on: the batch
finishes within a bound, only that candidate fails (``mark``) or is named with its seed and
the limit (``raise``), every other candidate gets exactly the serial evaluator's return, and
the evaluator (and its task) goes on working. The conformance suite runs the same check over
every evaluator declaring ``candidate_timeout`` (:mod:`asktell.testing.evaluator_suite`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from asktell import CandidateFailedError, EvaluationError, FunctionTask
from asktell.errors import ConfigError
from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator
from asktell.protocol import Evaluation
from asktell.testing.evaluator_suite import (
    HangsOn,
    _dist_and_seeds,
    _gym_generation,
    check_hung_candidate_fails_alone,
    drift_task,
)

LIMIT = 1.0


def _function_hang(n: int = 8):
    """``n`` candidates; the one with the largest first coordinate hangs."""
    dist, seeds = _dist_and_seeds(n=n)
    first = dist.decode(seeds)[:, 0]
    bad = int(np.argmax(first))
    return FunctionTask(HangsOn(float(np.sort(first)[-2]))), dist, seeds, bad, first


def _gym_hang():
    """Eight Drift candidates; those whose action passes 0.5 hang (the same ones raise in
    ``drift_task("raise")``, whose serial run gives the innocent candidates' returns)."""
    dist, seeds = _gym_generation(drift_task(), n=8, sigma=1.0)
    with SerialEvaluator(drift_task("raise"), on_failure="mark") as ev:
        ref = ev.evaluate(dist, seeds)
    bad = [f.index for f in ref.failures]
    assert 0 < len(bad) < seeds.size
    return drift_task("hang"), dist, seeds, bad, ref


def _timed(ev, dist, seeds) -> tuple[Evaluation, float]:
    start = time.monotonic()
    got = ev.evaluate(dist, seeds)
    return got, time.monotonic() - start


def _assert_only(got: Evaluation, bad: list[int], seeds, expected) -> None:
    assert [f.index for f in got.failures] == bad
    assert [f.seed for f in got.failures] == [int(seeds[i]) for i in bad]
    assert all(f"candidate_timeout_seconds={LIMIT:g}" in f.error for f in got.failures)
    good = np.setdiff1d(np.arange(seeds.size), bad)
    assert np.array_equal(got.returns[good], np.asarray(expected)[good])  # bitwise
    assert np.all(np.isnan(got.returns[bad]))


# ------------------------------------------------------------------------------- serial


def test_serial_hung_candidate_fails_alone_and_the_task_goes_on():
    task, dist, seeds, bad, ref = _gym_hang()
    with SerialEvaluator(task, on_failure="mark", candidate_timeout_seconds=LIMIT) as ev:
        got, seconds = _timed(ev, dist, seeds)
        _assert_only(got, bad, seeds, ref.returns)
        assert seconds < LIMIT * len(bad) + 5
        # The environment interrupted mid-step was dropped and is rebuilt: exact again.
        good = np.setdiff1d(np.arange(seeds.size), bad)
        again = ev.evaluate(dist, seeds[good])
        assert np.array_equal(again.returns, ref.returns[good])
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no timer left behind
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL


def test_raise_names_the_hung_candidate_its_seed_and_the_limit():
    task, dist, seeds, bad, _ = _function_hang()
    with SerialEvaluator(task, candidate_timeout_seconds=LIMIT) as ev:
        with pytest.raises(
            CandidateFailedError,
            match=rf"candidate {bad} \(seed {int(seeds[bad])}\) of generation 5 failed: did "
            rf"not return within candidate_timeout_seconds=1",
        ):
            ev.evaluate(dist, seeds)


def test_no_limit_sets_no_timer(monkeypatch):
    """Without the option nothing changes: no SIGALRM timer is ever set."""

    def refuse(*args):
        raise AssertionError("a timer was set without candidate_timeout_seconds")

    monkeypatch.setattr(signal, "setitimer", refuse)
    dist, seeds = _dist_and_seeds(n=8)
    with SerialEvaluator(FunctionTask(lambda x: float(x[0]))) as ev:
        assert ev.evaluate(dist, seeds).failures == []


def test_a_limit_outside_the_main_thread_is_refused_clearly():
    task, dist, seeds, _, _ = _function_hang()
    errors = []

    def run():
        with SerialEvaluator(task, candidate_timeout_seconds=LIMIT) as ev:
            try:
                ev.evaluate(dist, seeds)
            except EvaluationError as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert errors and "needs the main thread" in errors[0] and "num_workers > 0" in errors[0]


def test_the_limit_must_be_positive():
    with pytest.raises(ConfigError, match="candidate_timeout_seconds.*greater than 0; got 0"):
        SerialEvaluator(FunctionTask(lambda x: 0.0), candidate_timeout_seconds=0)


def test_the_conformance_check_catches_an_evaluator_that_fails_chunk_mates():
    """A known break: an evaluator that fails the hung candidate's neighbour too (as the
    Dask deadline used to fail a whole chunk) must fail the suite's check."""

    class FailsNeighbours(SerialEvaluator):
        def evaluate(self, distribution, seeds):
            got = super().evaluate(distribution, seeds)
            for f in list(got.failures):
                j = (f.index + 1) % len(seeds)
                got.returns[j] = np.nan
                got.failures.append(type(f)(j, int(seeds[j]), f.error, f.generation))
            got.failures.sort(key=lambda f: f.index)
            return got

    with pytest.raises(AssertionError, match="only"):
        check_hung_candidate_fails_alone(FailsNeighbours)


# ------------------------------------------------------------------------------- vector


@pytest.mark.parametrize("num_workers", [0, 2])
def test_vector_hung_candidate_fails_alone(num_workers):
    """In process: interrupted and the engine rebuilt; with workers: the worker past its
    deadline is killed and its candidates re-run one per batch. Innocent returns equal the
    serial evaluator's bit for bit, including those that shared the hung worker."""
    task, dist, seeds, bad, ref = _gym_hang()
    with VectorEnvEvaluator(
        task, num_envs=4, num_workers=num_workers, on_failure="mark",
        candidate_timeout_seconds=LIMIT,
    ) as ev:
        good = np.setdiff1d(np.arange(seeds.size), bad)
        ev.evaluate(dist, seeds[good[:2]])  # workers started before timing
        got, seconds = _timed(ev, dist, seeds)
        _assert_only(got, bad, seeds, ref.returns)
        # Each worker may take the limit per candidate it holds, then each one alone.
        assert seconds < LIMIT * (seeds.size + len(bad)) + 30
        assert np.array_equal(ev.evaluate(dist, seeds[good]).returns, ref.returns[good])


# --------------------------------------------------------------------------------- dask


def test_dask_hung_candidate_fails_alone_and_does_not_block_the_next_generation():
    """Embedded cluster: the worker stuck in the candidate is restarted; its chunk-mates run
    again alone; the next generation is not queued behind the hung thread."""
    pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator

    task, dist, seeds, bad, first = _function_hang(n=16)
    with DaskEvaluator(
        task, num_workers=2, chunks_per_worker=2, on_failure="mark",
        candidate_timeout_seconds=LIMIT,
    ) as ev:
        ev.evaluate(dist, seeds[:2])  # workers up and the task shipped before timing
        got, seconds = _timed(ev, dist, seeds)
        _assert_only(got, [bad], seeds, first)
        assert seconds < LIMIT * seeds.size + 20
        good = np.setdiff1d(np.arange(seeds.size), [bad])
        again, seconds = _timed(ev, dist.replace(generation=6), seeds[good])
        assert again.failures == [] and np.array_equal(again.returns, first[good])
        assert seconds < LIMIT * good.size / 2 + 10


# ------------------------------------------------------------------------ bad Dask address


@pytest.mark.parametrize(
    "address, error, words",
    [
        ("nonsense", "ConfigError", "'address' must be a scheduler address like"),
        ("tcp://127.0.0.1:1", "EvaluationError", "could not reach the Dask scheduler at"),
    ],
)
def test_bad_dask_address_is_one_clear_error(address, error, words):
    """A malformed address is a ConfigError, an unreachable one an EvaluationError; both name
    the address and what to do, and no Client.__del__ traceback follows at exit."""
    pytest.importorskip("distributed")
    code = (
        "from asktell import FunctionTask\n"
        "from asktell.evaluators import DaskEvaluator\n"
        "try:\n"
        f"    DaskEvaluator(FunctionTask.named('sphere'), address={address!r}, connect_timeout=1)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.startswith(error), done.stdout + done.stderr
    assert words in done.stdout and repr(address) in done.stdout
    assert "leave 'address' unset" in done.stdout
    assert "Traceback" not in done.stderr and "__del__" not in done.stderr, done.stderr


def test_an_engine_rebuilt_after_a_hang_keeps_its_size():
    """The rebuilt environment is sized like the first batch's, not like the one-candidate
    batch that rebuilt it (later generations keep their speed)."""
    task, dist, seeds, bad, _ = _gym_hang()
    good = np.setdiff1d(np.arange(seeds.size), bad)
    with VectorEnvEvaluator(task, on_failure="mark", candidate_timeout_seconds=LIMIT) as ev:
        ev.evaluate(dist, seeds[good])
        size = ev._engine.num_envs
        assert size > 1
        ev.evaluate(dist, seeds)  # hangs, rebuilt on one-candidate batches
        ev.evaluate(dist, seeds[good[:1]])
        assert ev._engine.num_envs == size
