"""Integer coordinates (``integer_variables``, pycma's option): rounded inside ``decode`` so
every process evaluates the same integers, kept inside the box, learned from unrounded; their
steps kept above pycma's floor so the search does not freeze on one integer; exact resume;
bad input refused by name."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import asktell
from asktell.errors import ConfigError
from asktell.noise import NoiseTable
from asktell.strategies import CMAES, SepCMAES
from asktell.strategies._options import integer_step_floor
from asktell.strategies._stopping import coordinate_stds

NOISE = NoiseTable(0, 1 << 16)
CMA = [CMAES, SepCMAES]

# A mixed-integer sphere: integer targets off the start in the first five coordinates,
# non-integer ones in the last five, which weigh a million times more, so the continuous
# part drives the step size down long before the integers are settled.
TARGET = np.array([3.0, -2.0, 4.0, 1.0, -3.0, 0.5, 1.5, -0.7, 2.2, 0.1])
WEIGHT = np.array([1.0] * 5 + [1e6] * 5)
INTEGERS = [0, 1, 2, 3, 4]


def mixed_sphere(X):
    return np.sum(WEIGHT * (X - TARGET) ** 2, axis=-1)


def evaluated_center(es):
    return es.distribution.replace(sigma=0.0, factor=None).decode_one(0)


def solve(cls, seed, generations, floor=True):
    """Generations until the evaluated centre is optimal (None: not within ``generations``)."""
    es = cls(10, sigma=0.5, seed=seed, integer_variables=INTEGERS, stop_rules=False, noise=NOISE)
    if not floor:
        es.step_floor = 0.0  # the known break: pycma's integer handling without its floor
    for g in range(generations):
        X = es.distribution.decode(es.ask())
        es.tell(-mixed_sphere(X))
        if mixed_sphere(evaluated_center(es)) < 1e-8:
            return g + 1
    return None


# ----------------------------------------------------------------- decode
@pytest.mark.parametrize("cls", CMA)
def test_decode_gives_integers_there_and_the_unrounded_sample_elsewhere(cls):
    es = cls(5, sigma=2.0, seed=1, integer_variables=[0, 3], noise=NOISE)
    seeds = es.ask()
    dist = es.distribution
    x, raw = dist.decode(seeds), dist.decode_unbounded(seeds)
    assert np.array_equal(x[:, [0, 3]], np.round(raw[:, [0, 3]]))
    assert x[:, [1, 2, 4]].tobytes() == raw[:, [1, 2, 4]].tobytes()
    assert not np.array_equal(raw[:, [0, 3]], np.round(raw[:, [0, 3]]))  # rounding did work
    assert not np.any(np.signbit(x[:, [0, 3]]) & (x[:, [0, 3]] == 0))  # 0.0, never -0.0
    # The same bits decoded again, alone, in reverse order.
    assert dist.decode(seeds).tobytes() == x.tobytes()
    assert dist.decode(seeds[::-1])[::-1].tobytes() == x.tobytes()
    for i, s in enumerate(seeds):
        assert dist.decode_one(s).tobytes() == x[i].tobytes()


_CHILD = """
import sys, numpy as np
from asktell.noise import NoiseTable
from asktell.strategies import CMAES
es = CMAES(5, sigma=1.5, seed=4, integer_variables=[1, 4], noise=NoiseTable(0, 1 << 16))
for _ in range(6):
    X = es.distribution.decode(es.ask())
    es.tell(-np.sum((X - 0.3) ** 2, axis=1))
sys.stdout.write(es.distribution.decode(es.ask()).tobytes().hex())
"""


def test_another_process_decodes_the_same_integers_bitwise():
    es = CMAES(5, sigma=1.5, seed=4, integer_variables=[1, 4], noise=NoiseTable(0, 1 << 16))
    for _ in range(6):
        X = es.distribution.decode(es.ask())
        es.tell(-np.sum((X - 0.3) ** 2, axis=1))
    here = es.distribution.decode(es.ask())
    assert np.all(here[:, [1, 4]] == np.round(here[:, [1, 4]]))
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout == here.tobytes().hex()


@pytest.mark.parametrize("method", ["clip", "mirror", "transform", "penalty"])
def test_rounded_values_stay_inside_the_box(method):
    # [0.3, 4.6] holds the integers 1..4 only: rounding 0.4 to 0 or 4.6 to 5 would leave it.
    es = CMAES(2, sigma=3.0, seed=0, integer_variables=[0], noise=NOISE,
               bounds={"lower": [0.3, -1], "upper": [4.6, 1], "method": method})
    x = es.distribution.decode(np.arange(-200, 200))
    assert set(np.unique(x[:, 0])) == {1.0, 2.0, 3.0, 4.0}
    assert np.all(np.abs(x[:, 1]) <= 1)


def test_the_update_learns_from_the_unrounded_sample():
    """Told the same returns, a strategy with integer coordinates moves exactly like one
    without (while the step floor is not binding): rounding changes what is evaluated only."""
    plain = CMAES(4, sigma=1.0, seed=2, noise=NOISE)
    integer = CMAES(4, sigma=1.0, seed=2, integer_variables=[0, 1], noise=NOISE)
    for _ in range(5):
        seeds = integer.ask()
        assert np.array_equal(seeds, plain.ask())
        X = integer.distribution.decode(seeds)
        returns = -np.sum((X - 2.6) ** 2, axis=1)
        plain.tell(returns), integer.tell(returns)
        assert coordinate_stds(integer.distribution)[:2].min() > integer.step_floor
    assert integer.center.tobytes() == plain.center.tobytes()
    assert integer.C.tobytes() == plain.C.tobytes()


# ----------------------------------------------------------------- the search
@pytest.mark.parametrize("cls", CMA)
def test_a_mixed_integer_problem_is_solved_and_the_floor_is_what_solves_it(cls):
    """With the floor every seed finds the integer targets; without it (the same runs with
    the floor set to 0) the continuous part shrinks the steps and the integers freeze."""
    with_floor = [solve(cls, seed, 400) for seed in range(4)]
    assert all(g is not None for g in with_floor), with_floor
    without = [solve(cls, seed, 400, floor=False) for seed in range(4)]
    assert sum(g is not None for g in without) <= 1, without


@pytest.mark.parametrize("cls, num_params", [(CMAES, 6), (SepCMAES, 6), (CMAES, 30)])
def test_the_step_floor_holds_every_generation(cls, num_params):
    """Checked on the distribution candidates are drawn from (at 30 dimensions CMA-ES
    refreshes its eigendecomposition only every few generations, so the factor lags C)."""
    es = cls(num_params, sigma=0.5, seed=3, integer_variables=[1, 4], stop_rules=False,
             noise=NOISE)
    floor = es.step_floor
    assert floor == integer_step_floor(num_params, es.params.mu_eff, 2)
    continuous = np.setdiff1d(np.arange(num_params), [1, 4])
    for _ in range(300 if num_params < 10 else 600):
        stds = coordinate_stds(es.distribution)  # what candidates are drawn with
        assert np.all(stds[[1, 4]] >= floor * (1 - 1e-9)), (es.generation, stds)
        X = es.distribution.decode(es.ask())
        es.tell(-np.sum((X - 0.4) ** 2, axis=1))
    # The continuous coordinates converged far below the floor meanwhile.
    assert np.all(coordinate_stds(es.distribution)[continuous] < 1e-2 * floor)


def test_a_stale_factor_below_the_floor_is_refreshed():
    """CMA-ES refreshes B D lazily: when C's diagonal meets the floor but the factor the
    candidates are drawn from (older, with the new smaller sigma) does not, it is refreshed."""
    es = CMAES(30, sigma=0.5, seed=0, integer_variables=[1, 4], noise=NOISE)
    floor = es.step_floor
    es.sigma = floor / 2  # the factor (identity) now draws steps of floor / 2
    es.C[[1, 4], [1, 4]] = 4.01  # while C's diagonal gives floor * sqrt(4.01) / 2
    es._floor_integer_steps(es.generation)
    es._changed()
    assert np.all(coordinate_stds(es.distribution)[[1, 4]] >= floor)


def test_the_floor_is_pycmas():
    cma = pytest.importorskip("cma")
    bound = cma.options_parameters.integer_std_lower_bound
    for n, mu_eff, count in [(2, 1.65, 1), (10, 2.9, 3), (50, 5.0, 10), (200, 8.0, 100),
                             (200, 150.0, 100), (1000, 600.0, 1000)]:
        # pycma approximates the normal quantile; the two agree to its stated accuracy.
        assert integer_step_floor(n, mu_eff, count) == pytest.approx(
            bound(n, mu_eff, count), rel=0.02)
    assert integer_step_floor(10, 2.9, 3) == 0.2 and integer_step_floor(50, 5.0, 10) == 0.1


def test_an_initial_sigma_below_the_floor_is_raised_on_integer_coordinates_only():
    for cls in CMA:
        es = cls(3, sigma=0.01, integer_variables=[2], noise=NOISE)
        stds = coordinate_stds(es.distribution)
        assert stds[2] == pytest.approx(0.2) and np.allclose(stds[:2], 0.01)


def test_minimize_takes_integer_variables_and_returns_integers():
    x0 = np.zeros(10)
    res = asktell.minimize(lambda x: float(mixed_sphere(x)), x0, sigma=0.5, budget=8000,
                           seed=0, integer_variables=INTEGERS, stop_rules=False)
    assert res.fun < 1e-8 and np.array_equal(res.x[:5], TARGET[:5])
    assert np.array_equal(res.center[:5], TARGET[:5])
    res = asktell.minimize(lambda x: float(mixed_sphere(x)), x0, sigma=0.5, budget=3000,
                           seed=0, integer_variables=INTEGERS, restarts="ipop")
    assert np.all(res.x[:5] == np.round(res.x[:5]))


# ----------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["cma_es", "sep_cma_es"])
def test_a_run_file_run_resumes_bitwise_with_the_floor_active(kind, tmp_path):
    from asktell.runner import resume, run

    def config(generations):
        return {
            "seed": 3,
            "strategy": {"kind": kind, "sigma": 0.3, "integer_variables": [0, 2],
                         "stop_rules": False},
            "task": {"kind": "function", "name": "sphere", "num_params": 4},
            "noise": {"size": 4096},
            "budget": {"generations": generations},
            "output": {"log_format": "none", "checkpoint_every": 5},
        }

    straight = run(config(40), out=tmp_path / "straight")
    run(config(20), out=tmp_path / "resumed")
    resumed = resume(tmp_path / "resumed", overrides=["budget.generations=40"])
    assert resumed.generation == straight.generation == 40
    assert resumed.center.tobytes() == straight.center.tobytes()


@pytest.mark.parametrize("cls", CMA)
def test_state_dict_mid_run_resumes_bitwise(cls):
    def fresh():
        return cls(5, sigma=0.3, seed=7, integer_variables=[0, 3], stop_rules=False, noise=NOISE)

    def step(es):
        X = es.distribution.decode(es.ask())
        es.tell(-np.sum((X - [2.0, 0.3, -0.2, -1.0, 0.7]) ** 2, axis=1))

    es = fresh()
    for _ in range(60):
        step(es)
    assert np.isclose(coordinate_stds(es.distribution)[[0, 3]], es.step_floor).any()
    copy = fresh()
    copy.load_state_dict(es.state_dict())
    for _ in range(30):
        step(es), step(copy)
    assert copy.center.tobytes() == es.center.tobytes()
    seeds = es.ask()
    assert copy.distribution.decode(seeds).tobytes() == es.distribution.decode(seeds).tobytes()


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("value, match", [
    ([4], r"integer_variables must be indices in \[0, num_params=4\); got 4"),
    ([-1], r"integer_variables must be indices in \[0, num_params=4\); got -1"),
    ([1, 2, 1], r"integer_variables must be distinct; 1 repeats in \[1, 2, 1\]"),
    ([1.0], r"integer_variables\.0.*integer"),
    ([True], r"integer_variables\.0.*integer"),
    (["1"], r"integer_variables\.0.*integer"),
    (3, r"integer_variables.*list"),
])
@pytest.mark.parametrize("cls", CMA)
def test_bad_integer_variables_are_refused_by_name(cls, value, match):
    with pytest.raises(ConfigError, match=match):
        cls(4, integer_variables=value)


def test_a_box_with_no_integer_in_an_integer_coordinate_is_refused():
    with pytest.raises(ConfigError, match=r"coordinate 1 has bounds \[0.2, 0.8\], which hold no integer"):
        CMAES(3, integer_variables=[1], bounds=([-1, 0.2, -1], [1, 0.8, 1]))
    from asktell.bounds import Bounds

    with pytest.raises(ConfigError, match="hold no integer"):
        Bounds(np.array([0.2]), np.array([0.8]), "clip", np.array([0]))


def test_minimize_and_run_files_check_integer_variables_by_name():
    with pytest.raises(ConfigError, match=r"'integer_variables' is an option of cma_es, sep_cma_es"):
        asktell.minimize(lambda x: float(x @ x), np.zeros(3), strategy="snes",
                         integer_variables=[0])
    with pytest.raises(ConfigError, match="integer_variables must be distinct"):
        asktell.minimize(lambda x: float(x @ x), np.zeros(3), integer_variables=[0, 0])
    from asktell.config import RunConfig

    cfg = RunConfig.model_validate({
        "strategy": {"kind": "sep_cma_es", "integer_variables": [1]},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
        "budget": {"generations": 2},
    })
    es = cfg.strategy.build(num_params=3, seed=0, noise=NOISE)
    x = es.distribution.decode(es.ask())
    assert np.array_equal(x[:, 1], np.round(x[:, 1]))
    with pytest.raises(ValueError, match=r"integer_variables\.1\n.*Input should be an integer.*input_value=True"):
        RunConfig.model_validate({
            "strategy": {"kind": "cma_es", "integer_variables": [0, True]},
            "task": {"kind": "function", "name": "sphere", "num_params": 3},
            "budget": {"generations": 2},
        })
