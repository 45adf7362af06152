"""Behaviour of the NES, mirrored, PGPE, ARS and CMA-ES strategies beyond the conformance
suite: exports and configs, bad input, and each method's defining rule."""

from __future__ import annotations

import importlib
import inspect
import math
import re

import numpy as np
import pytest
import asktell.strategies as strategies
from asktell.config import RunConfig, config_from_dict
from asktell.config_base import option_names
from asktell.errors import ConfigError
from asktell.registry import STRATEGIES
from asktell.strategies import ARS, CMAES, PGPE, SNES, XNES, MirroredES, OpenAIES, SepCMAES
from asktell.strategies._common import expm_sym, fold_by_key, noise_moments
from asktell.strategies.cma_es import cma_parameters, cma_rank_weights
from asktell.testing.strategy_suite import SUITE_NOISE, make, roundtrip_state

NEW = {
    "snes": SNES,
    "xnes": XNES,
    "mirrored_es": MirroredES,
    "pgpe": PGPE,
    "ars": ARS,
    "cma_es": CMAES,
    "sep_cma_es": SepCMAES,
}


def sphere_returns(X: np.ndarray) -> np.ndarray:
    return -np.sum((X - 1.0) ** 2, axis=1)


# ---------------------------------------------------------------- exports and configs
@pytest.mark.parametrize("name,cls", sorted(NEW.items()))
def test_registered_exported_and_configured(name, cls):
    assert STRATEGIES.get(name) is cls
    assert cls.__name__ in strategies.__all__ and getattr(strategies, cls.__name__) is cls
    config_class = cls.config_class
    assert config_class.__name__ == cls.__name__ + "Config"
    assert config_class.__name__ in strategies.__all__
    config = config_class()
    assert config.kind == name
    es = config.build(num_params=6, seed=3, noise=SUITE_NOISE)
    assert isinstance(es, cls) and es.num_params == 6 and es.seed == 3
    module_doc = importlib.import_module(cls.__module__).__doc__
    assert re.search(r"(19|20)\d\d", module_doc), "the module docstring must cite its paper"


@pytest.mark.parametrize("name", sorted(NEW))
def test_run_config_builds_each_strategy(name):
    cfg = RunConfig.model_validate(
        {
            "strategy": {"kind": name},
            "task": {"kind": "function", "name": "sphere", "num_params": 4},
            "noise": {"size": 4096},
            "budget": {"generations": 2},
        }
    )
    with cfg.build() as built:
        assert isinstance(built.strategy, NEW[name])
        assert built.strategy.num_params == 4


def test_default_population_follows_the_papers():
    # 4 + floor(3 ln d): 10 for d = 10, 17 for d = 100.
    assert SNES(num_params=10).population_size == 10
    assert CMAES(num_params=100).population_size == 17
    assert MirroredES(num_params=10).population_size == 10
    assert MirroredES(num_params=100).population_size == 18  # rounded up to even pairs
    assert MirroredES(num_params=10, sequential=True).population_size == 1


# ---------------------------------------------------------------- options
def test_signature_lists_exactly_the_declared_options():
    # The signature is written from the Config, so help(), IDEs and the run-file keys agree.
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        params = inspect.signature(cls).parameters
        options = [p for p in params if p not in ("num_params", "seed", "x0", "noise")]
        assert sorted(options) == sorted(option_names(cls.config_class)), name
        for option in options:
            field = cls.config_class.model_fields[option]
            assert params[option].default == field.get_default(call_default_factory=True)
        assert f"Options (declared by :class:`{cls.config_class.__name__}`" in cls.__doc__


def test_positional_options_keep_their_order():
    a = SNES(4, 6, 0.3, noise=SUITE_NOISE)
    assert (a.population_size, a.sigma[0]) == (6, 0.3)
    b = ARS(4, 8, 0.05, 0.2, noise=SUITE_NOISE)
    assert (b.population_size, b.learning_rate, b.sigma) == (8, 0.05, 0.2)
    with pytest.raises(ConfigError, match="'sigma' both by position and by name"):
        CMAES(4, 6, 0.3, sigma=0.2)


def _run_config(strategy: dict, num_params: int = 4) -> dict:
    return {
        "strategy": strategy,
        "task": {"kind": "function", "name": "sphere", "num_params": num_params},
        "noise": {"size": 4096},
        "budget": {"generations": 1},
    }


def _refused_both_ways(cls, values: dict, match: str, num_params: int = 4) -> None:
    """The same rule refuses the same value, in the same words, from Python and a run file."""
    with pytest.raises(ConfigError, match=match):
        cls(num_params=num_params, noise=SUITE_NOISE, **values)
    with pytest.raises(ConfigError, match=match):
        cfg = config_from_dict(_run_config({"kind": cls.name, **values}, num_params))
        cfg.build().close()


_GT0 = "Input should be greater than 0; got "
_EVEN = r"population_size must be even \(candidates come in mirrored pairs\); got "

#: (strategy, options, what the error must say: the field, the rule and the value)
BAD_VALUES = [
    (SNES, {"center_learning_rate": -0.1}, "center_learning_rate: " + _GT0 + "-0.1"),
    (SNES, {"sigma_learning_rate": 0.0}, "sigma_learning_rate: " + _GT0 + "0.0"),
    (SNES, {"population_size": 1}, "population_size: .* greater than or equal to 2; got 1"),
    (SNES, {"sigma": True}, "sigma: Input should be a number; got True"),
    (XNES, {"shape_learning_rate": -1.0}, "shape_learning_rate: " + _GT0 + "-1.0"),
    (XNES, {"sigma": 0.0}, "sigma: " + _GT0 + "0.0"),
    (XNES, {"max_factor_bytes": 4}, "max_factor_bytes: .* greater than or equal to 8; got 4"),
    (CMAES, {"sigma": -0.5}, "sigma: " + _GT0 + "-0.5"),
    (CMAES, {"sigma": float("nan")}, "sigma: Input should be a finite number; got nan"),
    (CMAES, {"population_size": 1}, "population_size: .* greater than or equal to 2; got 1"),
    (CMAES, {"active": "yes"}, "active: Input should be true or false; got 'yes'"),
    (SepCMAES, {"population_size": 0}, "population_size: .* greater than or equal to 2; got 0"),
    (PGPE, {"center_learning_rate": -0.01}, "center_learning_rate: " + _GT0 + "-0.01"),
    (PGPE, {"max_sigma_change": 1.5}, "max_sigma_change: Input should be less than 1; got 1.5"),
    (PGPE, {"max_sigma_change": 1.0}, "max_sigma_change: Input should be less than 1; got 1.0"),
    (PGPE, {"population_size": 7}, _EVEN + "7"),
    (PGPE, {"population_size": "32"}, "population_size: Input should be an integer; got '32'"),
    (PGPE, {"optimizer": "adma"}, "optimizer: Input should be 'sgd', 'momentum', .*; got 'adma'"),
    (PGPE, {"optimizer_options": {"momentum": 1.5}},
     "optimizer_options.momentum: Input should be less than 1; got 1.5"),
    (OpenAIES, {"optimizer_options": {"betta1": 0.9}},
     "optimizer_options.betta1: unknown key .*; did you mean 'beta1'"),
    (OpenAIES, {"optimizer": "sgd", "optimizer_options": {"momentum": 0.9}},
     "optimizer_options.momentum: unknown key .*'sgd' optimizer has no settings"),
    (PGPE, {"shaping": "ranks"}, "shaping: Input should be 'centered_ranks', .*; got 'ranks'"),
    (ARS, {"learning_rate": -0.02}, "learning_rate: " + _GT0 + "-0.02"),
    (ARS, {"population_size": 9}, _EVEN + "9"),
    (ARS, {"top_directions": 0}, "top_directions: .* greater than or equal to 1; got 0"),
    (ARS, {"population_size": 8, "top_directions": 5},
     r"top_directions must be <= the number of directions \(population_size / 2 = 4\); got 5"),
    (ARS, {"version": "v3"}, "version must be 'v1' or 'v2' .*; got 'v3'"),
    (MirroredES, {"learning_rate": -1.0}, "learning_rate: " + _GT0 + "-1.0"),
    (MirroredES, {"population_size": 5}, _EVEN + "5"),
    (MirroredES, {"variant": "plus"}, "variant: Input should be 'comma' or 'gradient'; got 'plus'"),
    (MirroredES, {"variant": "gradient", "sequential": True},
     "sequential selection needs variant='comma'; got 'gradient'"),
    (MirroredES, {"sequential": True, "num_offspring": 6, "population_size": 4},
     "num_offspring must be even and a multiple of population_size=4 .*; got 6"),
    (MirroredES, {"sequential": True, "population_size": 3},
     "num_offspring must be even and a multiple of population_size=3 .*; got 4"),
    (MirroredES, {"num_offspring": 4}, "num_offspring is only used with sequential=true .*got 4"),
    (OpenAIES, {"population_size": 7}, _EVEN + "7"),
    (OpenAIES, {"weight_decay": -0.1}, "weight_decay: .* greater than or equal to 0; got -0.1"),
]


@pytest.mark.parametrize("cls,values,match", BAD_VALUES,
                         ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_bad_values_are_refused_by_one_rule_from_python_and_run_files(cls, values, match):
    _refused_both_ways(cls, values, match)


@pytest.mark.parametrize("cls", [XNES, CMAES])
def test_full_covariance_refuses_a_factor_too_large_for_memory(cls):
    with pytest.raises(ConfigError) as info:
        cls(num_params=6000)  # 8 * 6000**2 bytes = 275 MiB > the 256 MiB default
    message = str(info.value)
    assert "num_params" in message and "<= 5792" in message and "6000" in message
    assert "max_factor_bytes" in message
    _refused_both_ways(
        cls, {"max_factor_bytes": 8 * 99 * 99}, "num_params must be <= 99 .*; got 100",
        num_params=100,
    )
    cls(num_params=99, max_factor_bytes=8 * 99 * 99, noise=SUITE_NOISE)  # at the limit: fine


def test_constructor_only_arguments_are_validated_too():
    with pytest.raises(ConfigError, match="num_params: .* greater than or equal to 1; got 0"):
        SNES(num_params=0)
    with pytest.raises(ConfigError, match="num_params: Input should be an integer; got 2.0"):
        CMAES(num_params=2.0)
    with pytest.raises(ConfigError, match="seed: .* greater than or equal to 0; got -1"):
        PGPE(num_params=3, seed=-1)


@pytest.mark.parametrize("name", sorted(STRATEGIES.names()))
def test_a_typo_is_refused_with_the_option_it_resembles(name):
    cls = STRATEGIES.get(name)
    _refused_both_ways(cls, {"sgima": 0.1}, "sgima: unknown key .*did you mean 'sigma'")


def test_ars_reads_the_retired_keys_of_older_files():
    with pytest.warns(DeprecationWarning, match="num_directions"):
        es = ARS(num_params=3, num_directions=4, top_directions=2, noise=SUITE_NOISE)
    assert (es.population_size, es.num_directions, es.top_directions) == (8, 4, 2)
    with pytest.warns(DeprecationWarning) as caught:
        cfg = config_from_dict(_run_config({"kind": "ars", "num_directions": 4, "version": "v2"}))
    assert any("'version' is ignored" in str(w.message) for w in caught)
    assert cfg.strategy.population_size == 8 and "version" not in cfg.strategy.options()
    with pytest.raises(ConfigError, match="population_size or num_directions"):
        ARS(num_params=3, num_directions=4, population_size=8)


def test_an_ars_run_written_with_the_retired_keys_resumes(tmp_path):
    import json

    from asktell.checkpoint import state_digest
    from asktell.runner import resume, run

    config = {**_run_config({"kind": "ars", "population_size": 8, "top_directions": 2}),
              "seed": 3, "budget": {"generations": 6},
              "output": {"log_format": "none", "checkpoint_every": 2}}
    straight = run(config, out=tmp_path / "straight")
    run({**config, "budget": {"generations": 4}}, out=tmp_path / "old")
    # Rewrite the run directory as the previous release wrote it (num_directions, version).
    old = tmp_path / "old"
    toml = (old / "config.toml").read_text()
    assert "population_size = 8" in toml
    (old / "config.toml").write_text(
        toml.replace("population_size = 8", 'num_directions = 4\nversion = "v1"'))
    for meta in old.glob("**/gen-*.json"):
        data = json.loads(meta.read_text())
        strategy = data["config"]["strategy"]
        del strategy["population_size"]
        strategy.update(num_directions=4, version="v1")
        with np.load(meta.with_suffix(".npz")) as npz:  # sealed as that release sealed it
            data["state_sha256"] = state_digest(data, {k: npz[k] for k in npz.files})
        meta.write_text(json.dumps(data))
    with pytest.warns(DeprecationWarning):
        resumed = resume(old, overrides=["budget.generations=6"])
    assert resumed.center.tobytes() == straight.center.tobytes()


# ---------------------------------------------------------------- shared helpers
def test_expm_sym_matches_the_series():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 4)) * 0.3
    m = m + m.T
    series, term = np.eye(4), np.eye(4)
    for k in range(1, 30):
        term = term @ m / k
        series = series + term
    assert np.allclose(expm_sym(m), series, rtol=1e-12, atol=1e-12)


def test_fold_by_key_matches_the_unfolded_sums():
    noise = SUITE_NOISE
    rng = np.random.default_rng(1)
    keys = noise.sample_keys(rng, 5, 7)
    for seeds in (np.array([k for k in keys] + [~keys[0]]), np.ravel(np.c_[keys, ~keys])):
        w, u = rng.standard_normal(seeds.size), rng.standard_normal(seeds.size)
        k, a, b = fold_by_key(seeds, w, u)
        first, second = noise_moments(noise, k, a, b, 7)
        eps = noise.rows(np.where(seeds < 0, ~seeds, seeds), 7).astype(np.float64)
        signs = np.where(seeds < 0, -1.0, 1.0)
        assert np.allclose(first, (w * signs) @ eps)
        assert np.allclose(second, u @ eps**2)


# ---------------------------------------------------------------- NES
def test_xnes_factor_keeps_unit_determinant_and_decodes_through_it():
    es = XNES(num_params=4, sigma=0.5, noise=SUITE_NOISE, shape_learning_rate=0.5)
    for _ in range(20):
        es.tell(sphere_returns(es.distribution.decode(es.ask())))
    assert abs(np.linalg.det(es.B) - 1.0) < 1e-9
    assert not np.allclose(es.B, np.eye(4))  # the shape did adapt
    seeds = es.ask()
    dist = es.distribution
    eps = SUITE_NOISE.rows(np.where(seeds < 0, ~seeds, seeds), 4).astype(np.float64)
    signs = np.where(seeds < 0, -1.0, 1.0)[:, None]
    expected = dist.center + es.sigma * signs * (eps @ es.B.T)
    assert np.allclose(dist.decode(seeds), expected, rtol=1e-12, atol=1e-12)


def test_snes_learns_per_parameter_scales():
    # Loss 1e4 * x0**2 + x1**2: the first coordinate's step size must end far smaller.
    es = SNES(num_params=2, sigma=1.0, noise=SUITE_NOISE, x0=[1.0, 1.0])
    for _ in range(100):
        X = es.distribution.decode(es.ask())
        es.tell(-(1e4 * X[:, 0] ** 2 + X[:, 1] ** 2))
    assert es.sigma[0] < 0.1 * es.sigma[1]


# ---------------------------------------------------------------- CMA-ES
@pytest.mark.parametrize("cls", [CMAES, SepCMAES])
def test_cma_mean_is_the_weighted_mean_of_the_decoded_candidates(cls):
    es = cls(num_params=6, sigma=0.5, noise=SUITE_NOISE, seed=2)
    for _ in range(15):  # off the identity covariance
        es.tell(sphere_returns(es.distribution.decode(es.ask())))
    seeds = es.ask()
    dist = es.distribution
    X = dist.decode(seeds)
    r = sphere_returns(X)
    _, w_pos = cma_rank_weights(r, es.params.weights)
    expected = dist.center + w_pos @ (X - dist.center)
    es.tell(r)
    assert np.allclose(es.center, expected, rtol=1e-12, atol=1e-12)


def test_cma_parameters_follow_the_tutorial():
    p = cma_parameters(10, 10)
    assert p.mu == 5
    assert np.isclose(p.weights[p.weights > 0].sum(), 1.0)
    assert np.all(np.diff(p.weights) < 0)  # best first, strictly decreasing
    assert np.isclose(p.mu_eff, 3.1672, atol=1e-4)
    assert np.isclose(p.c_1, 2 / ((10 + 1.3) ** 2 + p.mu_eff))
    # Active weights sum to at most the posdef bound (tutorial eq. 53).
    negative = -p.weights[p.weights < 0].sum()
    assert negative <= (1 - p.c_1 - p.c_mu) / (10 * p.c_mu) + 1e-12
    sep = cma_parameters(10, 10, cov_scale=4.0)
    assert np.isclose(sep.c_1, 4.0 * p.c_1)


def test_cma_covariance_learns_the_ellipsoid_axes():
    es = CMAES(num_params=3, sigma=0.5, noise=SUITE_NOISE, x0=[1.0, 1.0, 1.0])
    scales = np.array([1.0, 10.0, 100.0])
    for _ in range(150):
        X = es.distribution.decode(es.ask())
        es.tell(-np.sum((scales * X) ** 2, axis=1))
    # The learned standard deviations follow the inverse scales 1 : 1/10 : 1/100.
    sd = np.sqrt(np.diag(es.C))
    assert 3 < sd[0] / sd[1] < 30 and 3 < sd[1] / sd[2] < 30, sd


# ---------------------------------------------------------------- mirrored ES
def _sequential(**kw):
    return MirroredES(num_params=3, sigma=0.5, sequential=True, noise=SUITE_NOISE, **kw)


def test_sequential_selection_asks_the_mirror_only_when_needed():
    es = _sequential()
    start = es.distribution
    # Iteration 0: the initial centre has no return, so all 4 offspring are evaluated.
    first = []
    for _ in range(4):
        (s,) = es.ask()
        first.append(int(s))
        es.tell([-float(len(first))])  # returns -1, -2, -3, -4: the first is best
    assert first[1] == ~first[0] and first[3] == ~first[2] and first[0] >= 0 and first[2] >= 0
    assert es.iteration == 1 and es.generation == 4
    assert np.array_equal(es.center, start.decode_one(first[0]))
    parent = -1.0

    # An offspring better than the parent ends the iteration: the next ask is a fresh key.
    (s1,) = es.ask()
    es.tell([parent + 0.5])
    (s2,) = es.ask()
    assert s1 >= 0 and s2 >= 0 and s2 != ~s1
    assert es.iteration == 2

    # One worse than the parent: its mirror comes next.
    parent = parent + 0.5
    es.tell([parent - 1.0])
    (s3,) = es.ask()
    assert s3 == ~s2

    # A failed candidate never beats the parent, whatever its rank value.
    es.tell([np.nan])
    (s4,) = es.ask()
    assert s4 >= 0 and es.iteration == 2  # a new pair of the same iteration


def test_sequential_selection_without_improvement_takes_the_best_offspring():
    es = _sequential()
    for value in (-1.0, -2.0, -3.0, -4.0):  # iteration 0: the parent's return becomes -1
        es.ask()
        es.tell([value])
    parent_center = es.center
    told = []
    for value in (-5.0, -3.0, -6.0, -7.0):  # none beats the parent (-1)
        (s,) = es.ask()
        told.append((value, int(s)))
        dist = es.distribution
        es.tell([value])
    best = max(told)[1]
    assert es.iteration == 2
    assert np.array_equal(es.center, dist.decode_one(best))
    assert not np.array_equal(es.center, parent_center)


def test_sequential_batches_and_resume_mid_iteration():
    def drive(es, n):
        out = []
        for _ in range(n):
            s = es.ask()
            out.append(s)
            es.tell(sphere_returns(es.distribution.decode(s)))
        return out

    straight = _sequential(population_size=2, num_offspring=4, seed=5)
    drive(straight, 12)
    first = _sequential(population_size=2, num_offspring=4, seed=5)
    drive(first, 5)
    first.ask()
    resumed = _sequential(population_size=2, num_offspring=4, seed=9)
    resumed.load_state_dict(roundtrip_state(first.state_dict()))
    drive(resumed, 7)
    assert np.array_equal(resumed.center, straight.center)
    assert resumed.iteration == straight.iteration
    assert np.array_equal(resumed.ask(), straight.ask())


def test_mirrored_comma_moves_the_parent_to_the_best_offspring():
    es = MirroredES(num_params=3, population_size=6, sigma=0.5, noise=SUITE_NOISE)
    seeds = es.ask()
    X = es.distribution.decode(seeds)
    r = sphere_returns(X)
    es.tell(r)
    assert np.array_equal(es.center, X[np.argmax(r)])


def test_mirrored_gradient_is_the_plain_nes_utility_step():
    from asktell.shaping import nes_utilities

    es = MirroredES(num_params=3, population_size=6, sigma=0.2, variant="gradient",
                    learning_rate=0.1, noise=SUITE_NOISE)
    seeds = es.ask()
    dist = es.distribution
    X = dist.decode(seeds)
    r = sphere_returns(X)
    es.tell(r)
    expected = dist.center + 0.1 / 0.2 * nes_utilities(r) @ (X - dist.center) / 0.2
    assert np.allclose(es.center, expected, atol=1e-6)
    assert es.sigma == 0.2


# ---------------------------------------------------------------- PGPE and ARS
def test_pgpe_bounds_each_sigma_change():
    es = PGPE(num_params=4, population_size=8, sigma=0.5, sigma_learning_rate=100.0,
              max_sigma_change=0.2, noise=SUITE_NOISE)
    start = es.sigma.copy()
    for _ in range(5):
        before = es.sigma.copy()
        es.tell(sphere_returns(es.distribution.decode(es.ask())))
        ratio = es.sigma / before
        assert np.all(ratio >= 0.8 - 1e-12) and np.all(ratio <= 1.2 + 1e-12)
    assert not np.allclose(es.sigma, start)


def test_ars_top_direction_step():
    es = ARS(num_params=5, population_size=8, learning_rate=0.1, sigma=0.05, top_directions=1,
             noise=SUITE_NOISE)
    seeds = es.ask()
    r = np.zeros(8)
    r[4], r[5] = 2.0, -1.0  # direction 2 is the best by max(r+, r-)
    r[0], r[1] = 0.5, 1.5  # direction 0 is second best
    start = es.center
    es.tell(r)
    step = es.center - start
    eps = SUITE_NOISE.rows(seeds[4:5], 5)[0].astype(np.float64)
    # alpha / (b * std of the 2b returns used) * (r+ - r-) * delta
    expected = 0.1 / (1 * np.std([2.0, -1.0])) * 3.0 * eps
    assert np.allclose(step, expected, rtol=1e-6)


def test_ars_equal_returns_do_not_move():
    es = ARS(num_params=3, noise=SUITE_NOISE)
    es.ask()
    es.tell(np.ones(es.population_size))
    assert np.array_equal(es.center, np.zeros(3))


def test_large_dimension_strategies_accept_counter_noise():
    from asktell.noise import CounterNoise

    for cls in (SNES, SepCMAES, PGPE, ARS, MirroredES):
        es = cls(num_params=20000, noise=CounterNoise(seed=1), population_size=4)
        es.tell(-np.abs(es.distribution.decode(es.ask())).sum(axis=1))
        assert np.all(np.isfinite(es.center))



@pytest.mark.parametrize("module", ["nes", "mirrored_es", "pgpe", "ars", "cma_es", "sep_cma_es"])
def test_docstring_examples_run(module):
    import doctest

    mod = importlib.import_module(f"asktell.strategies.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


RUNNER_STRATEGIES = [
    {"kind": "snes", "sigma": 0.5},
    {"kind": "xnes", "sigma": 0.5},
    {"kind": "cma_es", "sigma": 0.5},
    {"kind": "sep_cma_es", "sigma": 0.5},
    {"kind": "mirrored_es", "sigma": 0.5},
    {"kind": "mirrored_es", "sigma": 0.5, "sequential": True},
    {"kind": "mirrored_es", "sigma": 0.1, "variant": "gradient"},
    {"kind": "pgpe", "population_size": 8},
    {"kind": "ars", "population_size": 8, "top_directions": 2},
]


@pytest.mark.parametrize("strategy", RUNNER_STRATEGIES, ids=lambda s: "-".join(map(str, s.values())))
def test_runner_checkpoints_and_resumes_each_strategy_exactly(strategy, tmp_path):
    from asktell.runner import resume, run

    def config(generations):
        return {
            "seed": 3,
            "strategy": strategy,
            "task": {"kind": "function", "name": "rosenbrock", "num_params": 4},
            "noise": {"size": 4096},
            "budget": {"generations": generations},
            "output": {"log_format": "none", "checkpoint_every": 2},
        }

    straight = run(config(9), out=tmp_path / "straight")
    run(config(5), out=tmp_path / "resumed")
    resumed = resume(tmp_path / "resumed", overrides=["budget.generations=9"])
    assert resumed.generation == straight.generation == 9
    assert resumed.center.tobytes() == straight.center.tobytes()


# ---------------------------------------------------------------- overflow-safe updates
_OVERFLOW_CASES = [(n, {}) for n in STRATEGIES.names()] + [
    (n, {"shaping": s}) for n in ("openai_es", "pgpe") for s in ("raw", "z_score")
] + [("openai_es", {"shaping": "raw", "optimizer": o}) for o in ("sgd", "momentum", "clipup")]


@pytest.mark.parametrize("name, options", _OVERFLOW_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("scale", [1e39, 1e300, 1.7e308])
def test_returns_near_the_float64_limit_keep_the_centre_finite(name, options, scale):
    """Huge finite returns once overflowed a float32 cast (and float64 sums) into a NaN
    centre; now every step stays finite, without a single overflow warning."""
    import warnings

    es = make(STRATEGIES.get(name), num_params=4, seed=2, **options)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow anywhere fails the test
        for _ in range(3):
            seeds = es.ask()
            metrics = es.tell(rng.uniform(-1.0, 1.0, seeds.size) * scale)
            assert np.isfinite(metrics["return_mean"]) and np.isfinite(metrics["return_std"])
    assert np.isfinite(es.center).all()


def test_tame_keeps_ordinary_returns_bitwise_and_scales_huge_ones_exactly():
    from asktell.shaping import TAME_LIMIT, raw, tame, z_score

    r = np.array([1.5, -2.0, 3e10])
    assert tame(r) is r
    huge = np.array([1.7e308, -1.7e308, 1e300, 0.0])
    t = tame(huge)
    assert np.abs(t).max() <= TAME_LIMIT and np.array_equal(np.argsort(t), np.argsort(huge))
    nonzero = huge != 0
    ratios = t[nonzero] / huge[nonzero]
    assert np.all(ratios == ratios[0]) and math.log2(ratios[0]).is_integer()  # one power of two
    assert np.isfinite(raw(huge)).all() and np.isfinite(z_score(huge)).all()


def test_weighted_sum_takes_weights_beyond_float32_without_overflow():
    """The float32 product scales weights by a power of two first: 1e39 (beyond float32's
    3.4e38) gives the float64 reference, where a plain cast gave inf."""
    keys = np.array([0, 7, 19])
    weights = np.array([1e39, -3e38, 2.5])
    exact = weights @ SUITE_NOISE.rows(keys, 5).astype(np.float64)
    got = SUITE_NOISE.weighted_sum(weights, keys, 5)
    assert np.isfinite(got).all() and np.allclose(got, exact, rtol=1e-6)
    with np.errstate(over="ignore", invalid="ignore"):  # the known break: a plain cast
        assert not np.isfinite(weights.astype(np.float32) @ SUITE_NOISE.rows(keys, 5)).all()


@pytest.mark.parametrize(
    "returns, pattern",
    [
        (["1.5", "2.0", "0", "1"], r"candidate #0 returned a str: '1.5'"),
        ([1.0, 2.0, 3.0, True], r"candidate #3 returned a bool: True"),
        (np.array([True, False, True, False]), r"candidate #0 returned a bool: True"),
        ([0.5, None, 1.0, 2.0], r"candidate #1 returned a NoneType: None"),
    ],
    ids=["string", "bool-in-list", "bool-array", "none"],
)
def test_returns_are_never_coerced(returns, pattern):
    from asktell.errors import ReturnsError

    es = make(STRATEGIES.get("openai_es"), num_params=3, population_size=4)
    seeds = es.ask()
    before = es.state_dict()
    with pytest.raises(ReturnsError, match=r"tell\(\) expects 4 real numbers \(generation 0\); " + pattern):
        es.tell(returns)
    assert np.array_equal(es.ask(), seeds) and before["center"].tobytes() == es.center.tobytes()
