"""Injected points: evaluated in the next generation by every evaluator (they travel in the
distribution), learned from with a clipped step, kept in state_dict, refused clearly where a
strategy cannot use them."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from asktell.distribution import INJECT_BASE
from asktell.errors import ConfigError
from asktell.evaluators import SerialEvaluator
from asktell.strategies import CMAES, SNES, OpenAIES
from asktell.tasks import FunctionTask

OPTIMUM = np.array([2.5, -1.0, 0.5, 3.0])


def neg_sphere(x):
    return -float(np.sum((x - OPTIMUM) ** 2))


def test_an_injected_optimum_is_found_at_once():
    es = CMAES(4, sigma=0.3, seed=0)
    es.inject(OPTIMUM)
    seeds = es.ask()
    assert seeds[0] == INJECT_BASE
    with SerialEvaluator(FunctionTask(neg_sphere)) as ev:
        returns = ev.evaluate(es.distribution, seeds).returns
    assert returns.max() == 0.0 and np.argmax(returns) == 0
    # A worker gets the same point from the shipped distribution.
    shipped = pickle.loads(pickle.dumps(es.distribution))
    assert np.array_equal(shipped.decode(seeds[:1])[0], OPTIMUM)
    before = np.linalg.norm(es.center - OPTIMUM)
    es.tell(returns)
    assert np.linalg.norm(es.center - OPTIMUM) < before  # the update moved towards it


def test_more_points_than_a_population_wait_for_the_next_generations():
    es = CMAES(2, sigma=0.3, population_size=4)
    es.inject(*[np.full(2, float(i)) for i in range(6)])
    first = es.ask()
    assert np.array_equal(first - INJECT_BASE, np.arange(4))
    es.tell(np.zeros(4))
    second = es.ask()
    assert np.array_equal(second[:2] - INJECT_BASE, [0, 1])
    assert np.all(second[2:] < INJECT_BASE)
    assert np.array_equal(es.distribution.decode(second[:2]), [[4.0, 4.0], [5.0, 5.0]])


def test_a_far_injected_point_moves_the_centre_by_a_clipped_step():
    es = CMAES(3, sigma=0.5, seed=1)
    es.inject(np.full(3, 1e6))
    seeds = es.ask()
    returns = np.zeros(seeds.size)
    returns[0] = 1.0  # the far point ranks best
    es.tell(returns)
    n = 3
    limit = math.sqrt(n) + 2 * n / (n + 2)
    # The mean moves by sigma * sum(w_i y_i), every |y_i| <= limit (sampled ones are
    # rarely longer); never towards 1e6.
    assert np.linalg.norm(es.center) < 0.5 * (limit + 6)
    assert np.isfinite(es.sigma) and es.sigma < 5


def test_state_dict_mid_generation_keeps_injected_and_queued_points():
    es = CMAES(4, sigma=0.3, seed=2, population_size=6)
    es.inject(OPTIMUM, OPTIMUM + 1, *[OPTIMUM - k for k in range(1, 7)])
    seeds = es.ask()
    state = es.state_dict()
    twin = CMAES(4, sigma=0.3, seed=99, population_size=6)
    twin.load_state_dict(state)
    assert np.array_equal(twin.ask(), seeds)
    assert np.array_equal(twin.distribution.decode(seeds), es.distribution.decode(seeds))
    for strategy in (es, twin):
        x = strategy.distribution.decode(strategy.ask())
        strategy.tell([neg_sphere(row) for row in x])
        x = strategy.distribution.decode(strategy.ask())  # the queued two come now
        strategy.tell([neg_sphere(row) for row in x])
    assert np.array_equal(es.center, twin.center)
    assert np.array_equal(es.ask(), twin.ask())


def test_injected_points_are_bounded_like_every_candidate():
    es = CMAES(2, sigma=0.3, bounds=(-1, 1), x0=[0, 0])
    es.inject([5.0, 0.5])
    seeds = es.ask()
    x = es.distribution.decode(seeds[:1])[0]
    assert np.all(np.abs(x) <= 1) and x[1] == 0.5


@pytest.mark.parametrize("cls", [OpenAIES, SNES])
def test_strategies_that_cannot_use_points_refuse_them_clearly(cls):
    with pytest.raises(ConfigError, match=f"{cls.__name__} cannot use injected points"):
        cls(4).inject(np.zeros(4))


def test_bad_points_are_refused():
    with pytest.raises(ConfigError, match=r"inject\(\) points must be 4 finite numbers"):
        CMAES(4).inject(np.zeros(3))
    with pytest.raises(ConfigError, match=r"inject\(\) points must be 4 finite numbers"):
        CMAES(4).inject([0, 0, np.nan, 0])


def test_sep_cma_es_finds_an_injected_optimum_at_once_and_moves_towards_it():
    from asktell.strategies import SepCMAES

    es = SepCMAES(4, sigma=0.3, seed=0)
    es.inject(OPTIMUM)
    seeds = es.ask()
    x = es.distribution.decode(seeds)
    returns = np.array([neg_sphere(row) for row in x])
    assert returns[0] == 0.0 and returns.max() == 0.0
    before = np.linalg.norm(es.center - OPTIMUM)
    es.tell(returns)
    assert np.linalg.norm(es.center - OPTIMUM) < before
    assert np.all(np.isfinite(es.C)) and np.isfinite(es.sigma)
