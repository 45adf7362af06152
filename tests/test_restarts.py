"""Restarts (IPOP, BIPOP) over any strategy: what users rely on."""

from __future__ import annotations

import math

import re

import numpy as np
import pytest

from asktell.errors import CheckpointError, ConfigError
from asktell.functions import rastrigin, sphere
from asktell.noise import NoiseTable
from asktell.strategies import CMAES, Restarts
from asktell.testing.strategy_suite import roundtrip_state
from asktell.testing.dask_cluster import loopback_cluster

NOISE = NoiseTable(seed=0, size=1 << 16)


def _make(**kw):
    options = {"num_params": 4, "strategy": {"kind": "cma_es", "sigma": 2.0}, "seed": 1,
               "noise": NOISE}
    options.update(kw)
    return Restarts(**options)


def _step(es):
    return es.tell(-rastrigin(es.distribution.decode(es.ask())))


def _until_restart(es, number, limit=5000):
    for _ in range(limit):
        if es.restart >= number:
            return
        _step(es)
    raise AssertionError(f"no restart {number} in {limit} generations")


def test_before_the_first_restart_it_is_its_inner_strategy_bitwise():
    es = _make()
    plain = CMAES(num_params=4, sigma=2.0, seed=1, noise=NOISE)
    for _ in range(20):
        seeds = es.ask()
        assert np.array_equal(seeds, plain.ask())
        r = -rastrigin(es.distribution.decode(seeds))
        es.tell(r)
        plain.tell(r)
    assert es.restart == 0 and es.center.tobytes() == plain.center.tobytes()


def test_a_restarted_run_is_a_fresh_run_bitwise():
    # A restart hands the next run its population, sigma, x0 and seed and nothing else (no
    # path, covariance or stopping history), so IPOP's run at a large population is a single
    # run at that population: what docs/from-pycma.md compares with pycma's single runs.
    es = _make(mode="ipop")
    _until_restart(es, 2)
    fresh = CMAES(num_params=4, sigma=2.0, seed=es._run_seed(2), noise=NOISE,
                  population_size=es.population_size)
    for _ in range(15):
        seeds = es.ask()
        assert np.array_equal(seeds, fresh.ask())
        r = -rastrigin(es.distribution.decode(seeds))
        es.tell(r)
        fresh.tell(r)
    assert es.restart == 2 and es.center.tobytes() == fresh.center.tobytes()
    assert es.inner.sigma == fresh.sigma and es.inner.C.tobytes() == fresh.C.tobytes()


def test_ipop_doubles_the_population_at_each_restart():
    es = _make(mode="ipop")
    seen = []
    for _ in range(2000):
        metrics = _step(es)
        if metrics["restart_event"]:
            seen.append(es.population_size)
        if len(seen) == 3:
            break
    # pycma's fmin: multiples of the unrounded default 4 + 3 ln n, floored (8.16 in 4-D).
    base = 4 + 3 * math.log(4)
    assert CMAES(num_params=4).population_size == 8
    assert seen == [math.floor(base * 2**k) for k in (1, 2, 3)] == [16, 32, 65]
    assert es.ask().shape == (65,)


def test_a_given_population_is_doubled_exactly():
    for options in ({"population_size": 8}, {"population_base": 8.0}):
        es = _make(mode="ipop", **options)
        seen = []
        for _ in range(2000):
            if _step(es)["restart_event"]:
                seen.append(es.population_size)
            if len(seen) == 3:
                break
        assert seen == [16, 32, 64], options


def test_bipop_interleaves_small_and_large_regimes():
    es = _make(mode="bipop")
    regimes = []
    for _ in range(4000):
        if _step(es)["restart_event"]:
            regimes.append((es.regime, es.population_size, es.restart_sigma))
        if len(regimes) == 5:
            break
    kinds = [r[0] for r in regimes]
    assert kinds[0] == "large" and "small" in kinds
    base = 4 + 3 * math.log(4)
    last_large = base
    for regime, population, sigma in regimes:
        if regime == "small":  # pycma: up to the last large population
            assert math.floor(base) <= population <= last_large and 0.02 <= sigma <= 2.0
        else:
            assert sigma == 2.0 and population >= 2 * math.floor(base)
            last_large = population


def test_bipop_small_populations_reach_the_last_large_one():
    """pycma draws floor(lambda_def * (lambda_l / lambda_def)**(U**2)): over many draws the
    small populations span up to the last large one; 'paper' halves that reach."""
    def small_sizes(rule):
        es = _make(mode="bipop", small_population=rule)
        es.large_runs = 3  # as after three large restarts: lambda_l = floor(8.16 * 8) = 65
        es.evals_large = 10**6
        sizes = []
        for _ in range(300):
            es._restart(["test"])
            es.large_runs = 3
            sizes.append(es.population_size)
        return sizes
    pycma, paper = small_sizes("pycma"), small_sizes("paper")
    assert min(pycma) == 8 and 50 < max(pycma) <= 65
    assert min(paper) == 8 and 25 < max(paper) <= 32


def test_a_run_resumed_mid_second_restart_equals_the_straight_run_bitwise():
    straight = _make(mode="bipop")
    _until_restart(straight, 2)
    for _ in range(3):  # into the second restart
        _step(straight)
    stopped_at = straight.generation
    straight.ask()
    state = roundtrip_state(straight.state_dict())
    for _ in range(40):
        _step(straight)
    resumed = _make(mode="bipop", seed=5)  # everything must come from the state
    resumed.load_state_dict(state)
    assert resumed.generation == stopped_at and resumed.restart == 2
    for _ in range(40):
        _step(resumed)
    assert resumed.generation == straight.generation
    assert resumed.restart == straight.restart
    assert resumed.center.tobytes() == straight.center.tobytes()
    assert np.array_equal(resumed.ask(), straight.ask())


def test_a_vector_sigma_keeps_its_shape_across_restarts_and_resumes_bitwise():
    """One step per coordinate (pycma's CMA_stds): every run's steps are the first run's
    scaled by one factor (the global step, restart_sigma), and a resume mid-run is exact."""
    steps = [0.5, 1.0, 2.0, 4.0]
    straight = _make(mode="bipop", strategy={"kind": "cma_es", "sigma": steps})
    _until_restart(straight, 3)
    ratios = straight.inner.config.sigma
    assert np.allclose(np.asarray(ratios) / max(ratios), np.asarray(steps) / 4.0)
    assert max(ratios) == straight.restart_sigma
    straight.ask()
    state = roundtrip_state(straight.state_dict())
    for _ in range(30):
        _step(straight)
    resumed = _make(mode="bipop", strategy={"kind": "cma_es", "sigma": steps}, seed=5)
    resumed.load_state_dict(state)
    for _ in range(30):
        _step(resumed)
    assert resumed.center.tobytes() == straight.center.tobytes()


def test_an_inner_strategys_bounds_hold_where_runs_start():
    """No x0: the first run starts in the middle of the inner strategy's box (zeros lie
    outside [1, 3] and were refused); uniform restarts start inside the box."""
    es = _make(strategy={"kind": "cma_es", "sigma": 0.5, "bounds": {"lower": 1.0, "upper": 3.0}},
               restart_from="uniform", start_half_width=5.0, mode="bipop")
    assert np.array_equal(es.center, np.full(4, 2.0))
    starts = []
    for _ in range(300):
        es.tell(np.zeros(es.ask().size))  # flat returns: each run stops at once
        if es.inner.generation == 0:
            starts.append(es.inner.center)
    assert len(starts) >= 5
    assert all(np.all((1.0 <= s) & (s <= 3.0)) for s in starts), starts


def test_mirrored_es_inside_restarts_gets_its_even_default_population():
    from asktell.strategies import MirroredES

    es = _make(num_params=3, strategy={"kind": "mirrored_es"})  # 4 + floor(3 ln 3) = 7
    assert es.population_size == MirroredES(num_params=3).population_size == 8
    assert MirroredES.config_class().population_for(3) == 8  # the memory estimate's too


def test_a_state_from_another_run_size_is_refused_whole():
    es = _make()
    _until_restart(es, 1)
    state = es.state_dict()
    fresh = _make()
    before = fresh.state_dict()
    bad = {**state, "inner.C": np.eye(3)}
    with pytest.raises(CheckpointError, match=r"Restarts state refused.*'inner.C'"):
        fresh.load_state_dict(bad)
    assert fresh.state_dict().keys() == before.keys() and fresh.population_size == before["population_size"]


def test_restarts_reach_what_one_run_does_not_on_rastrigin():
    plain = CMAES(num_params=4, sigma=2.0, seed=1, noise=NOISE)
    es = _make(mode="ipop")
    best_plain = best = -np.inf
    for _ in range(700):
        best_plain = max(best_plain, float(plain.tell(-rastrigin(plain.distribution.decode(plain.ask())))["return_max"]))
        best = max(best, float(_step(es)["return_max"]))
    assert best > -1e-6 > best_plain


# Each problem of the inner table is one line that names its path once, from the
# constructor's arguments (a run file adds its section's path: see the next test).
@pytest.mark.parametrize("options, line", [
    ({"strategy": {"kind": "cma_ess"}}, "strategy.kind: unknown strategy 'cma_ess'; did you mean 'cma_es'?"),
    ({"strategy": {"kind": "restarts"}}, "strategy.kind: restarts cannot wrap restarts"),
    ({"strategy": {"kind": "cma_es", "sigma": -1}}, "strategy.sigma: Input should be greater than 0; got -1"),
    ({"strategy": {"kind": "cma_es", "sigmaa": 1}}, "strategy.sigmaa: unknown key (not a setting here); did you mean 'sigma'?"),
    ({"strategy": {"sigma": 1.0}}, "strategy.kind: missing; name the inner strategy"),
    ({"strategy": {"kind": 3}}, "strategy.kind: must be a strategy name"),
    ({"population_factor": 1.0}, "population_factor: Input should be greater than 1"),
    ({"population_size": 6, "strategy": {"kind": "cma_es", "population_size": 8}},
     "strategy.population_size: 8 differs from the restarts' population_size 6; set one of them"),
    ({"strategy": {"kind": "openai_es", "optimizer_options": {"beta3": 0.9}}},
     "strategy.optimizer_options.beta3: unknown key (not a setting here); did you mean 'beta2'?"),
])
def test_bad_options_are_named(options, line):
    with pytest.raises(ConfigError, match="\n  " + re.escape(line)):
        _make(**options)


_SPHERE = {"task": {"kind": "function", "name": "sphere", "num_params": 5},
           "budget": {"generations": 10}}


@pytest.mark.parametrize("inner, outer, lines", [
    ({"kind": "cma_es", "sigmaa": 1.0}, {},
     ["strategy.strategy.sigmaa: unknown key (not a setting here); did you mean 'sigma'?"]),
    ({"kind": "cma_es", "sigma": -1, "tolfun": -1}, {},
     ["strategy.strategy.tolfun: Input should be greater than or equal to 0; got -1",
      "strategy.strategy.sigma: Input should be greater than 0; got -1"]),
    ({"kind": "cma"}, {}, ["strategy.strategy.kind: unknown strategy 'cma'; did you mean 'cma_es'?"]),
    ({"kind": "restarts"}, {}, ["strategy.strategy.kind: restarts cannot wrap restarts"]),
    ({"kind": "cma_es", "sigma": 1.0}, {"sigma": 2.0},
     ["strategy.strategy.sigma: 1.0 differs from the restarts' sigma 2.0; set one of them"]),
    ({"kind": "cma_es", "recombination_weights": [1.0]}, {},
     ["strategy.strategy.recombination_weights: fixes the population"]),
    ({"kind": "openai_es", "optimizer": "sgd", "optimizer_options": {"beta3": 1.0}}, {},
     ["strategy.strategy.optimizer_options.beta3: unknown key (not a setting here); the 'sgd' "
      "optimizer has no settings"]),
])
def test_a_run_file_names_each_inner_path_once(inner, outer, lines):
    """The issue's report: `strategy: strategy.sigmaa: ...` named the section twice, half
    before the colon and half after; each problem is now one line with its whole path."""
    from asktell.config import config_from_dict

    with pytest.raises(ConfigError) as info:
        config_from_dict({**_SPHERE, "strategy": {"kind": "restarts", "strategy": inner, **outer}})
    got = str(info.value).splitlines()[1:]
    assert len(got) == len(lines), got
    for text, line in zip(got, lines):
        assert text.startswith("  " + line), (text, line)


def test_minimize_with_restarts_names_the_inner_option():
    """minimize's options go to the inner strategy's table: the error names it once."""
    import asktell

    with pytest.raises(ConfigError, match=r"\n  strategy\.sigma: Input should be greater than 0; got -1"):
        asktell.minimize(lambda x: float(x @ x), np.zeros(3), restarts="ipop", sigma=-1.0)


def test_a_run_file_logs_every_restart(tmp_path):
    from asktell.runner import read_log, run

    config = {
        "strategy": {"kind": "restarts", "mode": "ipop",
                     "strategy": {"kind": "cma_es", "sigma": 2.0}},
        "task": {"kind": "function", "name": "rastrigin", "num_params": 3},
        "noise": {"size": 65536},
        "budget": {"generations": 400},
        "output": {"log_format": "none"},
        "seed": 2,
    }
    result = run(config, out=tmp_path / "run", log_format="none")
    rows = read_log(tmp_path / "run")
    events = [r for r in rows if r["restart_event"]]
    assert events, "no restart in 400 generations"
    assert all({"restart", "regime", "inner_population_size"} <= set(r) for r in rows)
    after = rows[rows.index(events[0]) + 1]
    assert after["restart"] == 1 and after["inner_population_size"] > rows[0]["inner_population_size"]
    assert after["generation_steps"] == after["inner_population_size"]
    assert result.generation == 400


def test_restarts_through_dask_equal_serial():
    distributed = pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator, SerialEvaluator
    from asktell.loop import Budget, GenerationStep
    from asktell.tasks import FunctionTask

    task = FunctionTask.named("rastrigin", num_params=3)
    centres = []
    with loopback_cluster(1, processes=False) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        for make_ev in (lambda: SerialEvaluator(task), lambda: DaskEvaluator(task, client=client)):
            es = _make(num_params=3, mode="ipop", seed=2)
            with make_ev() as ev:
                step = GenerationStep(es, ev, task, budget=Budget(generations=300))
                while not step.stop_reasons():
                    step()
            assert es.restart >= 1
            centres.append(es.center.tobytes())
    assert centres[0] == centres[1]


def test_a_growing_population_through_the_vector_evaluator_equals_serial():
    """What a restart asks of a Gym evaluator: generations of different sizes, each
    evaluated exactly as the serial evaluator does."""
    pytest.importorskip("gymnasium")
    from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator
    from asktell.gym.task import GymTask

    task = GymTask("CartPole-v1", policy="linear")
    es = Restarts(num_params=task.num_params, strategy={"kind": "cma_es", "sigma": 0.5},
                  noise=NOISE)
    dist = es.distribution
    with SerialEvaluator(task) as serial, VectorEnvEvaluator(task, num_envs=4) as vector:
        for size in (6, 24, 10):
            seeds = np.arange(size, dtype=np.int64)
            want = serial.evaluate(dist, seeds).returns
            got = vector.evaluate(dist, seeds).returns
            assert got.shape == (size,) and np.array_equal(got, want)


def test_it_says_it_is_done_when_no_restart_is_left():
    es = _make(mode="ipop", max_restarts=1)
    for _ in range(3000):
        _step(es)
        if es.stop():
            break
    assert es.restart == 1 and list(es.stop()) == ["max_restarts"]


def test_the_display_line_shows_a_restart():
    from asktell._progress import summary

    row = {"generation": 3, "env_steps": 10, "return_mean": 1.0, "return_max": 2.0,
           "best_return": 2.0, "seconds_ask": 0.0, "seconds_evaluate": 0.0, "seconds_tell": 0.0,
           "restart_event": "restart 1 (ipop, large): tolx; population 16, sigma 2"}
    assert "restart 1 (ipop, large)" in summary(row)
    assert "restart" not in summary({**row, "restart_event": ""})


def test_large_restart_populations_keep_the_covariance_positive_definite():
    """With lambda = 128 in 5-D, c_1 + c_mu is about 0.8: a decomposition kept for several
    generations is too stale to normalise the active (negative) update, C turned indefinite
    and tolconditioncov ended IPOP/BIPOP's large runs early (BBOB f3, f15 in 5-D). The
    decomposition is refreshed before half of C is renewed."""
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((5, 5)))
    scale = np.sqrt(10.0) ** (np.arange(5) / 4)

    def f(x):  # a rotated, scaled Rastrigin
        return rastrigin(((x - 0.7) @ q.T) * scale)

    es = CMAES(num_params=5, population_size=128, sigma=2.0, seed=0, noise=NOISE)
    p = es.params
    assert es._eigen_gap == 1 and p.c_1 + p.c_mu > 0.5
    for _ in range(200):
        es.tell(-f(es.distribution.decode(es.ask())))
        assert np.linalg.eigvalsh(es.C).min() > 0, es.generation
        if es.stop():
            break
    assert list(es.stop()) == ["tolfun"] and es.generation < 100
    # Small populations keep the lazy gap (the golden logs' CMA-ES case: 6-D, lambda 9).
    golden = CMAES(num_params=6, parameters="tutorial", noise=NOISE)
    assert golden._eigen_gap == 2
