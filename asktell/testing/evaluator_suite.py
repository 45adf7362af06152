"""The evaluator conformance suite: checks every registered evaluator must pass.

Each check takes ``make(task, **options)``, a factory that builds the evaluator under test
for ``task`` (accepting at least ``on_failure`` and ``retries``). Tasks used here are
module-level, so they pickle to worker processes.

``capabilities`` on the evaluator class: ``bitwise_serial`` means its returns equal
:class:`~asktell.evaluators.SerialEvaluator`'s bit for bit; otherwise they must agree to
``rtol=1e-12``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from asktell.errors import CandidateFailedError
from asktell.noise import NoiseTable, mirrored
from asktell.tasks import FunctionTask

__all__ = ["EVALUATOR_CHECKS", "RaisesOn", "first_coordinate", "SUITE_NOISE"]

SUITE_NOISE = NoiseTable(seed=0, size=1 << 20)

Factory = Callable[..., Any]


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


def _dist_and_seeds(n: int = 24, dim: int = 6):
    from asktell.distribution import Distribution

    rng = np.random.default_rng(0)
    dist = Distribution(rng.standard_normal(dim), 0.3, SUITE_NOISE, generation=5)
    seeds = mirrored(SUITE_NOISE.sample_keys(rng, n // 2, dim))
    return dist, seeds


def _serial(task, dist, seeds):
    from asktell.evaluators import SerialEvaluator

    with SerialEvaluator(task) as ev:
        return ev.evaluate(dist, seeds)


def check_matches_serial(make: Factory) -> None:
    dist, seeds = _dist_and_seeds()
    task = FunctionTask(rastrigin_return)
    expected = _serial(task, dist, seeds)
    with make(task) as ev:
        got = ev.evaluate(dist, seeds)
        bitwise = "bitwise_serial" in getattr(type(ev), "capabilities", ())
    if bitwise:
        assert np.array_equal(got.returns, expected.returns), "returns differ from serial"
    else:
        np.testing.assert_allclose(got.returns, expected.returns, rtol=1e-12)
    assert np.array_equal(got.steps, expected.steps)


def check_matches_serial_full_covariance(make: Factory) -> None:
    """Per-parameter sigma and a factor matrix (SNES, CMA-ES, xNES distributions) decode
    the same on every evaluator: candidates travel as seeds for every strategy."""
    from asktell.distribution import Distribution

    base, seeds = _dist_and_seeds()
    dim = base.num_params
    rng = np.random.default_rng(1)
    factor = np.linalg.qr(rng.standard_normal((dim, dim)))[0] * rng.uniform(0.5, 2.0, dim)
    for dist in (
        Distribution(base.center, rng.uniform(0.1, 0.5, dim), SUITE_NOISE, generation=5),
        Distribution(base.center, 0.3, SUITE_NOISE, generation=5, factor=factor),
    ):
        task = FunctionTask(rastrigin_return)
        expected = _serial(task, dist, seeds)
        with make(task) as ev:
            got = ev.evaluate(dist, seeds)
            bitwise = "bitwise_serial" in getattr(type(ev), "capabilities", ())
        if bitwise:
            assert np.array_equal(got.returns, expected.returns), "returns differ from serial"
        else:
            np.testing.assert_allclose(got.returns, expected.returns, rtol=1e-12)


def check_keeps_seed_order(make: Factory) -> None:
    dist, seeds = _dist_and_seeds(n=40)
    task = FunctionTask(first_coordinate)
    with make(task) as ev:
        got = ev.evaluate(dist, seeds)
        shuffled = seeds[::-1].copy()
        got_rev = ev.evaluate(dist, shuffled)
    assert np.array_equal(got.returns, dist.decode(seeds)[:, 0])
    assert np.array_equal(got_rev.returns, got.returns[::-1])


def check_empty_batch(make: Factory) -> None:
    dist, _ = _dist_and_seeds()
    with make(FunctionTask(first_coordinate)) as ev:
        got = ev.evaluate(dist, np.zeros(0, dtype=np.int64))
    assert got.returns.shape == (0,) and got.steps.shape == (0,) and got.failures == []


def check_failure_raises_naming_candidate(make: Factory) -> None:
    dist, seeds = _dist_and_seeds()
    X = dist.decode(seeds)
    threshold = float(np.sort(X[:, 0])[-2])  # exactly one candidate exceeds it
    bad = int(np.argmax(X[:, 0]))
    with make(FunctionTask(RaisesOn(threshold)), on_failure="raise") as ev:
        try:
            ev.evaluate(dist, seeds)
        except CandidateFailedError as exc:
            assert exc.index == bad and exc.seed == int(seeds[bad]) and exc.generation == 5
            assert f"candidate {bad}" in str(exc) and "refusing" in str(exc)
        else:
            raise AssertionError("a failing candidate must raise CandidateFailedError")


def check_failure_marked(make: Factory) -> None:
    dist, seeds = _dist_and_seeds()
    X = dist.decode(seeds)
    threshold = float(np.sort(X[:, 0])[-3])  # two candidates exceed it
    bad = sorted(np.argsort(X[:, 0])[-2:].tolist())
    with make(FunctionTask(RaisesOn(threshold)), on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
    assert [f.index for f in got.failures] == bad
    assert [f.seed for f in got.failures] == [int(seeds[i]) for i in bad]
    assert np.all(np.isnan(got.returns[bad]))
    good = np.setdiff1d(np.arange(seeds.size), bad)
    assert np.array_equal(got.returns[good], X[good, 0])


def check_close_twice(make: Factory) -> None:
    ev = make(FunctionTask(first_coordinate))
    ev.close()
    ev.close()


EVALUATOR_CHECKS = [
    check_matches_serial,
    check_matches_serial_full_covariance,
    check_keeps_seed_order,
    check_empty_batch,
    check_failure_raises_naming_candidate,
    check_failure_marked,
    check_close_twice,
]
