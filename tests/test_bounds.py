"""Box bounds: each repair method's rule, the seed contract (every evaluator decodes the same
bounded candidate), bad bounds refused naming the coordinate, and convergence to an optimum
that lies on a bound."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import asktell
from asktell.bounds import Bounds
from asktell.distribution import Distribution
from asktell.errors import ConfigError
from asktell.evaluators import SerialEvaluator
from asktell.noise import NoiseTable, mirrored
from asktell.strategies import CMAES, SNES, OpenAIES, SepCMAES
from asktell.tasks import FunctionTask
from asktell.testing.dask_cluster import loopback_cluster

NOISE = NoiseTable(0, 1 << 18)
METHODS = ["clip", "mirror", "transform", "penalty"]


def weighted_sum(x):
    """A return that changes with the last bit of any coordinate."""
    return float(np.sum(x * np.sqrt(np.arange(2.0, 2.0 + x.size))))


# ----------------------------------------------------------------- the repair rules
def test_clip_and_mirror_follow_their_rules():
    x = np.array([[-0.25, 1.25, 2.25, 0.5, -3.5]])
    lo, up = np.zeros(5), np.ones(5)
    assert np.array_equal(Bounds(lo, up, "clip").repair(x.copy()), [[0, 1, 1, 0.5, 0]])
    # Reflection at 0 and 1, periodically: -0.25 -> 0.25, 1.25 -> 0.75, 2.25 -> 0.25,
    # -3.5 -> 3.5 -> (period 2) 1.5 -> 0.5.
    assert np.allclose(Bounds(lo, up, "mirror").repair(x.copy()), [[0.25, 0.75, 0.25, 0.5, 0.5]])


def test_transform_is_the_identity_inside_smooth_and_onto_the_box():
    b = Bounds(np.full(1, -1.0), np.full(1, 2.0), "transform")
    # Margins: (1 + |bound|) / 20 -> 0.1 below, 0.15 above; identity between them.
    inside = np.linspace(-0.9, 1.85, 50)[:, None]
    assert np.array_equal(b.repair(inside.copy()), inside)
    x = np.linspace(-30, 30, 200_001)[:, None]
    y = b.repair(x.copy())[:, 0]
    assert y.min() >= -1.0 and y.max() <= 2.0
    assert np.isclose(y.min(), -1.0) and np.isclose(y.max(), 2.0)
    # Continuous with a continuous slope (no jump, no kink): steps between neighbours stay
    # within one grid step and the slope changes by little.
    h = x[1, 0] - x[0, 0]
    slope = np.diff(y) / h
    assert np.max(np.abs(slope)) <= 1 + 1e-6
    assert np.max(np.abs(np.diff(slope))) < 1e-2


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lands_in_the_box(method):
    rng = np.random.default_rng(0)
    lo, up = rng.uniform(-5, 0, 6), rng.uniform(0.1, 5, 6)
    x = rng.standard_normal((500, 6)) * 20
    y = Bounds(lo, up, method).repair(x)
    assert np.all((y >= lo) & (y <= up))


def test_penalty_grows_with_the_distance_outside_and_is_zero_inside():
    b = Bounds(np.zeros(2), np.ones(2), "penalty")
    raw = np.array([[0.5, 0.5], [1.5, 0.5], [3.0, 0.5], [3.0, -2.0]])
    p = b.penalty(raw, np.array([1.0, 2.0, 3.0, 4.0]), step_variance=1.0)
    assert p[0] == 0 and 0 < p[1] < p[2] < p[3]


# ----------------------------------------------------------------- the seed contract
def test_no_bounds_leaves_decode_arithmetic_unchanged_bitwise():
    rng = np.random.default_rng(1)
    center, sigma = rng.standard_normal(7), np.abs(rng.standard_normal(7))
    seeds = mirrored(np.arange(0, 800, 100))
    keys = np.abs(np.where(seeds < 0, ~seeds, seeds))
    signs = np.where(seeds < 0, -1.0, 1.0)
    expected = center + (signs[:, None] * sigma) * NOISE.rows(keys, 7).astype(np.float64)
    assert np.array_equal(Distribution(center, sigma, NOISE, 2).decode(seeds), expected)


def bounded_distribution(dim=6, method="mirror", generation=3):
    rng = np.random.default_rng(generation)
    bounds = Bounds(np.full(dim, -0.4), np.full(dim, 0.3), method)
    return Distribution(rng.uniform(-0.3, 0.2, dim), 0.5, NOISE, generation, bounds=bounds)


@pytest.mark.parametrize("method", METHODS)
def test_a_bounded_candidate_decodes_the_same_alone_in_a_batch_and_after_pickling(method):
    dist = bounded_distribution(method=method)
    seeds = mirrored(np.arange(0, 2000, 97))
    batch = dist.decode(seeds)
    alone = np.stack([dist.decode_one(int(s)) for s in seeds])
    shipped = pickle.loads(pickle.dumps(dist)).decode(seeds)
    assert np.array_equal(batch, alone) and np.array_equal(batch, shipped)
    assert not np.array_equal(batch, dist.decode_unbounded(seeds))  # the bounds did act


def test_serial_and_dask_evaluate_the_same_bounded_candidates_bitwise():
    distributed = pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator

    dist = bounded_distribution(method="transform")
    seeds = mirrored(np.arange(0, 3000, 101))
    task = FunctionTask(weighted_sum)
    with SerialEvaluator(task) as ev:
        serial = ev.evaluate(dist, seeds).returns
    with loopback_cluster(1) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        with DaskEvaluator(task, client=client) as ev:
            dask = ev.evaluate(dist, seeds).returns
    assert np.array_equal(serial, dask)
    expected = [weighted_sum(x) for x in dist.decode(seeds)]
    assert np.array_equal(serial, expected)


def test_serial_and_vector_evaluate_the_same_bounded_gym_candidates_bitwise():
    pytest.importorskip("gymnasium")
    from asktell.evaluators import VectorEnvEvaluator
    from asktell.gym import GymTask

    task = GymTask("CartPole-v1", policy="linear", episodes=1)
    d = task.num_params
    bounds = Bounds(np.full(d, -0.2), np.full(d, 0.25), "mirror")
    center = np.random.default_rng(0).uniform(-0.1, 0.1, d)
    dist = Distribution(center, 1.0, NOISE, 2, context=task.context(), bounds=bounds)
    seeds = mirrored(np.arange(0, 1200, 100))
    with SerialEvaluator(task) as ev:
        serial = ev.evaluate(dist, seeds)
    with VectorEnvEvaluator(task, num_envs=5) as ev:
        vector = ev.evaluate(dist, seeds)
    assert np.array_equal(serial.returns, vector.returns)
    assert np.array_equal(serial.steps, vector.steps)


# ----------------------------------------------------------------- bad bounds
@pytest.mark.parametrize(
    "bounds, x0, match",
    [
        (([0, 0, 2], 1), None, "coordinate 2 has lower=2.0 and upper=1.0"),
        (([0, 0], 1), None, "bounds.lower' must be one number or num_params=3 numbers; got 2"),
        (([0, 0, float("nan")], 1), None,
         r"invalid CMAES arguments:\n  bounds.lower: coordinate 2 must be a finite number; got nan$"),
        ((0, [1, 1, float("inf")]), None,
         r"invalid CMAES arguments:\n  bounds.upper: coordinate 2 must be a finite number; got inf; "
         r"a side without a bound takes a far value \(e.g. 1e6\): None and inf are not bounds$"),
        ((0, None), None,  # pycma's one-sided box: what to do instead is said
         r"bounds.upper: must be a number or a list of numbers; got None; a side without a bound"),
        ((0, 1), [0.5, 1.5, 0.5], "'x0' must lie within bounds; coordinate 1 is 1.5"),
        ({"lower": 0, "upper": 1, "method": "reflect"}, None, "bounds.method"),
    ],
)
def test_bad_bounds_are_refused_naming_the_coordinate(bounds, x0, match):
    with pytest.raises(ConfigError, match=match):
        CMAES(3, x0=x0, bounds=bounds)


def test_minimize_refuses_bad_bounds_by_name():
    with pytest.raises(ConfigError, match="coordinate 0 is 5.0"):
        asktell.minimize(lambda x: float(x @ x), [5.0, 0.0], strategy="cma_es", bounds=(-1, 1))


def test_without_x0_a_bounded_strategy_starts_in_the_middle_of_the_box():
    es = SNES(2, bounds=([1, 2], [3, 6]))
    assert np.array_equal(es.center, [2.0, 4.0])


def test_bounds_in_a_run_file_section():
    from asktell.config import RunConfig

    cfg = RunConfig.model_validate({
        "strategy": {"kind": "cma_es", "sigma": 0.3,
                     "bounds": {"lower": -1, "upper": [1, 2], "method": "clip"}},
        "task": {"kind": "function", "name": "sphere", "num_params": 2},
        "budget": {"generations": 2},
    })
    assert cfg.strategy.bounds.method == "clip"


# ----------------------------------------------------------------- optimum on a bound
def shifted_sphere(x):
    """Optimum at 3 in every coordinate: outside the box [-1, 1]; on the box, at 1."""
    return float(np.sum((x - 3.0) ** 2))


@pytest.mark.parametrize("strategy", ["cma_es", "sep_cma_es", "snes"])
@pytest.mark.parametrize("method", METHODS)
def test_an_optimum_on_the_bound_is_found_with_every_method(strategy, method):
    res = asktell.minimize(
        shifted_sphere, np.zeros(4), strategy=strategy, sigma=0.5, budget=2500, seed=1,
        bounds={"lower": -1, "upper": 1, "method": method},
    )
    assert np.all(res.x <= 1) and np.all(res.x >= -1)
    assert np.max(np.abs(res.x - 1.0)) < 1e-3
    assert res.fun < 16.0 + 1e-2


def test_the_strategy_learns_from_the_unrepaired_sample():
    """With clip, many samples map to one bounded point; CMA-ES's mean follows the samples
    (the seeds), so it may leave the box while every evaluated point stays inside."""
    es = CMAES(2, x0=[0.9, 0.9], sigma=0.5, bounds={"lower": -1, "upper": 1, "method": "clip"},
               seed=0)
    for _ in range(15):
        seeds = es.ask()
        x = es.distribution.decode(seeds)
        assert np.all(np.abs(x) <= 1)
        es.tell(-np.sum((x - 3.0) ** 2, axis=1))
    assert np.any(es.center > 1)


def test_the_penalty_pulls_the_mean_back_where_clip_lets_it_drift():
    """What 'penalty' adds over 'clip' (same evaluated points): the strategy learns from the
    penalised return, so its mean converges onto the bound instead of wandering outside."""
    centres = {}
    for method in ("clip", "penalty"):
        es = CMAES(2, x0=[0.9, 0.9], sigma=0.5, seed=0,
                   bounds={"lower": -1, "upper": 1, "method": method})
        for _ in range(40):
            x = es.distribution.decode(es.ask())
            es.tell(-np.sum((x - 3.0) ** 2, axis=1))
        centres[method] = es.center
    assert np.max(np.abs(centres["penalty"] - 1.0)) < 1e-2
    assert np.max(centres["clip"]) > 1.2
