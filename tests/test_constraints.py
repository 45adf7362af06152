"""Constraints g(x) <= 0: Deb's feasibility-first order (from the rule), violations carried
by every evaluator, and a constrained optimum found where the unconstrained one is
infeasible."""

from __future__ import annotations

import numpy as np
import pytest

import asktell
from asktell.constraints import feasibility_first, total_violation
from asktell.distribution import Distribution
from asktell.errors import ConfigError, ReturnsError
from asktell.evaluators import SerialEvaluator
from asktell.noise import NoiseTable, mirrored
from asktell.protocol import Evaluation
from asktell.strategies import CMAES
from asktell.tasks import FunctionTask
from asktell.testing.dask_cluster import loopback_cluster


def sphere(x):
    return float(np.sum(x**2))


def halfplane(x):
    """x0 + x1 >= 1: infeasible at the unconstrained optimum 0; the constrained optimum is
    (0.5, 0.5, 0, ...) with loss 0.5."""
    return [1.0 - x[0] - x[1]]


def two_constraints(x):
    return np.array([1.0 - x[0], x[1] - 2.0])


def test_deb_order_feasible_first_then_return_then_violation():
    returns = np.array([5.0, 1.0, 9.0, 8.0, 7.0])
    g = np.array([[0.0], [-1.0], [2.0], [0.5], [np.nan]])
    learned = feasibility_first(returns, g)
    order = list(np.argsort(-learned))  # best first
    # Feasible by return (0: 5, 1: 1), then infeasible by violation (3: 0.5, 2: 2), then the
    # candidate whose g failed (NaN) last, whatever their returns.
    assert order == [0, 1, 3, 2, 4]
    assert learned[0] == 5.0 and learned[1] == 1.0  # feasible returns untouched


def test_total_violation_sums_the_positive_parts():
    v = total_violation(np.array([[-1.0, 0.5, 2.0], [-3.0, -1.0, 0.0]]))
    assert np.array_equal(v, [2.5, 0.0])


def test_a_break_in_the_order_is_caught():
    """The ranking check above fails on a known break: ranking infeasible candidates by
    return ignores the rule."""
    returns = np.array([5.0, 9.0])
    g = np.array([[-1.0], [3.0]])
    assert np.argmax(returns) == 1  # the break's choice
    assert np.argmax(feasibility_first(returns, g)) == 0


def test_function_task_reports_violations_beside_returns():
    task = FunctionTask(sphere, minimize=True, constraints=two_constraints)
    out = task.evaluate(np.array([[0.0, 3.0], [2.0, 1.0]]), np.array([0, 1]), None)
    assert np.array_equal(out.returns, [-9.0, -5.0])
    assert np.array_equal(out.violations, [[1.0, 1.0], [-1.0, -1.0]])
    vec = FunctionTask(lambda X: np.sum(X**2, axis=1), vectorized=True,
                       constraints=lambda X: 1.0 - X[:, 0])
    assert vec.evaluate(np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([0, 1]), None).violations.shape == (2, 1)


def test_bad_constraint_values_are_refused_clearly():
    with pytest.raises(ConfigError, match="'constraints' must be callable"):
        FunctionTask(sphere, constraints=3)
    task = FunctionTask(sphere, constraints=lambda x: "no")
    with pytest.raises(ReturnsError, match="constraints function must return real numbers"):
        task.evaluate(np.zeros((1, 2)), np.array([0]), None)


def test_evaluators_carry_violations_in_seed_order():
    distributed = pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator

    noise = NoiseTable(0, 1 << 16)
    dist = Distribution(np.zeros(3), 1.0, noise, 1)
    seeds = mirrored(np.arange(0, 1000, 50))
    task = FunctionTask(sphere, constraints=two_constraints)
    with SerialEvaluator(task) as ev:
        serial = ev.evaluate(dist, seeds)
    expected = np.stack([two_constraints(x) for x in dist.decode(seeds)])
    assert np.array_equal(serial.violations, expected)
    with loopback_cluster(1) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with DaskEvaluator(task, client=client, chunks_per_worker=3) as ev:
            dask = ev.evaluate(dist, seeds)
    assert np.array_equal(dask.violations, expected)
    assert np.array_equal(dask.returns, serial.returns)


def test_place_merges_violations_and_leaves_nan_where_nothing_came():
    out = Evaluation.empty(3)
    part = Evaluation(np.array([1.0]), np.array([1]), violations=np.array([[0.5, -1.0]]))
    out.place(1, part)
    assert np.array_equal(out.violations, [[np.nan, np.nan], [0.5, -1.0], [np.nan, np.nan]],
                          equal_nan=True)


def test_tell_takes_violations_and_checks_their_count():
    es = CMAES(2, sigma=0.5)
    es.ask()
    with pytest.raises(ReturnsError, match="tell\\(\\) violations returned shape"):
        es.tell(np.zeros(es.population_size), violations=np.zeros((3, 1)))
    es.tell(np.zeros(es.population_size), violations=np.zeros((es.population_size, 1)))


@pytest.mark.parametrize("name", sorted(asktell.registry.STRATEGIES.names()))
def test_every_strategy_takes_violations_and_dropped_in_tell(name):
    """One tell for all: a strategy overriding tell() must keep its keywords (the mirrored
    ES once took returns alone, so tell(r, violations=v) was a TypeError)."""
    import inspect

    cls = asktell.registry.STRATEGIES.get(name)
    assert {"violations", "dropped"} <= set(inspect.signature(cls.tell).parameters), name


def test_the_mirrored_es_never_takes_an_infeasible_offspring_over_a_feasible_one():
    from asktell.strategies import MirroredES

    es = MirroredES(3, population_size=4, sigma=0.5, seed=0)
    seeds, asked = es.ask(), es.distribution
    returns = np.array([10.0, 9.0, 1.0, 0.0])  # the two best are infeasible
    violations = np.array([[1.0], [2.0], [-1.0], [-1.0]])
    metrics = es.tell(returns, violations=violations)
    assert metrics["concluded"]
    assert np.array_equal(es.center, asked.decode_one(int(seeds[2])))


@pytest.mark.parametrize("strategy", ["cma_es", "snes", "mirrored_es"])
def test_the_result_is_feasible_and_near_the_constrained_optimum(strategy):
    x0 = np.array([2.0, 2.0, 1.0])
    res = asktell.minimize(sphere, x0, strategy=strategy, sigma=0.5, budget=4000, seed=0,
                           constraints=halfplane)
    assert halfplane(res.x)[0] <= 0  # feasible
    assert abs(res.fun - 0.5) < 2e-2
    assert np.allclose(res.x, [0.5, 0.5, 0.0], atol=0.1)
    # Without the constraint the search goes to the infeasible unconstrained optimum.
    free = asktell.minimize(sphere, x0, strategy=strategy, sigma=0.5, budget=4000, seed=0)
    assert halfplane(free.x)[0] > 0


def test_minimize_says_when_no_feasible_point_was_found():
    res = asktell.minimize(sphere, np.zeros(2), strategy="cma_es", sigma=0.1, budget=200,
                           constraints=lambda x: [1.0 + x[0] ** 2])  # never feasible
    assert "no feasible point found" in res.message
    assert res.success is False  # x is the least infeasible point, not an answer
