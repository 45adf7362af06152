"""Stopping rules (es.stop()), best-so-far, num_params from x0, vector sigma, and the run
loops acting on a fired rule. Each rule fires on a problem built to trigger it and not on
one that is still improving."""

import tempfile

import numpy as np
import pytest

import asktell
from asktell import ConfigError
from asktell.config import config_from_dict
from asktell.functions import ellipsoid, rosenbrock, sphere
from asktell.noise import NoiseTable
from asktell.registry import STRATEGIES
from asktell.runner import run
from asktell.strategies import ARS, CMAES, PGPE, SNES, XNES, MirroredES, OpenAIES, SepCMAES

NOISE = NoiseTable(0, 1 << 16)
ALL_OFF = dict(tolfun=None, tolfunhist=None, tolx=None, tolstagnation=0, tolflatfitness=None)


#: Strategies whose stop() applies the rules to their own search (a wrapper's inner strategy
#: applies them instead: tests/test_restarts.py).
OWN_RULES = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).wraps_strategy]


def _tell(es, returns):
    es.ask()
    return es.tell(np.asarray(returns, dtype=np.float64))


def _drive(es, f, generations):
    """Run ``generations`` generations of ``-f``; return the first generation any rule fired."""
    for _ in range(generations):
        es.tell(-f(es.distribution.decode(es.ask())))
        if es.stop():
            return es.generation
    return None


def _strategy(name, **options):
    cls = STRATEGIES.get(name)
    kw = dict(getattr(cls, "suite_options", {}))
    kw.update(options)
    return cls(num_params=4, population_size=8, noise=NOISE, seed=0, **kw)


@pytest.mark.parametrize("name", OWN_RULES)
def test_no_rule_fires_while_the_search_improves(name):
    es = _strategy(name)
    assert es.stop() == {}
    for _ in range(15):
        es.tell(-sphere(es.distribution.decode(es.ask()) - 3.0))
        assert es.stop() == {}, name


def test_a_population_of_one_is_not_stopped_by_its_own_lack_of_spread():
    """The sequential mirrored ES tells one return a generation: that has no spread, so
    neither tolfun (at generation 1) nor tolflatfitness (at 2) may fire on it; tolfun
    reads its history of best returns once it holds 10, and then stops a converged run."""
    es = MirroredES(x0=np.ones(5), sigma=0.3, variant="comma", sequential=True, noise=NOISE, seed=0)
    assert es.population_size == 1
    assert _drive(es, sphere, 30) is None
    res = asktell.minimize(sphere, np.ones(5), strategy="mirrored_es", variant="comma",
                           sequential=True, sigma=0.3, budget=3000, seed=0, vectorized=True)
    assert res.fun < 1e-12 and res.stop_reason.startswith("strategy stopped: tolfun")
    constant = MirroredES(x0=np.ones(5), sigma=0.3, variant="comma", sequential=True, noise=NOISE)
    for generation in range(1, 12):
        _tell(constant, [2.0])
        assert ("tolfun" in constant.stop()) == (generation >= 10), generation
        assert "tolflatfitness" not in constant.stop()


@pytest.mark.parametrize("name", OWN_RULES)
def test_flat_fitness_fires_on_a_plateau(name):
    """pycma's rule: more than tolflatfitness (1) generations in a row whose best return
    ties the 75th-percentile one."""
    es = _strategy(name)
    _tell(es, np.full(es.population_size, 2.0))
    assert "tolflatfitness" not in es.stop()  # one flat generation is tolerated
    _tell(es, np.full(es.population_size, 2.0))
    assert list(es.stop()) == ["tolflatfitness"] or "tolflatfitness" in es.stop()
    off = _strategy(name, tolflatfitness=None)
    for _ in range(3):
        _tell(off, np.full(off.population_size, 2.0))
    assert "tolflatfitness" not in off.stop()


@pytest.mark.parametrize("name", ["cma_es", "snes"])
def test_flat_fitness_needs_three_quarters_tied_with_the_best(name):
    """Best tied with the median but not with the 75th-percentile return is no plateau
    (the ranking still sees the worst quarter); with rank int(0.75 lambda) tied it is."""
    half = _strategy(name)  # population 8: the 75th percentile is rank 6 (best first)
    for _ in range(3):
        _tell(half, [2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0, -1.0])
    assert "tolflatfitness" not in half.stop()
    most = _strategy(name)
    for _ in range(2):
        _tell(most, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, -1.0])
    assert "tolflatfitness" in most.stop()


@pytest.mark.parametrize("name", OWN_RULES)
def test_tolfunhist_fires_when_the_best_return_stays_put(name):
    es = _strategy(name, **{**ALL_OFF, "tolfunhist": 1e-12})
    rng = np.random.default_rng(0)
    length = es._stop_history.length
    assert length > 10
    for g in range(length + 3):
        returns = rng.normal(size=es.population_size) - 10.0
        returns[g % es.population_size] = 5.0  # the same best every generation
        _tell(es, returns)
        assert (es.stop() != {}) == (g >= 9)  # pycma's: once it holds 10 values
    assert list(es.stop()) == ["tolfunhist"]


@pytest.mark.parametrize("name", OWN_RULES)
def test_tolstagnation_waits_for_pycmas_history_then_fires_on_a_worsening_run(name):
    """pycma's rule reads every 5th generation's best and median and needs more than 100 of
    them: a run getting worse every generation stops at generation 505, however small
    tolstagnation is; 0 switches it off."""
    es = _strategy(name, **{**ALL_OFF, "tolstagnation": 5})
    off = _strategy(name, **ALL_OFF)
    rng = np.random.default_rng(1)
    for g in range(1, 511):
        returns = rng.normal(size=es.population_size) - g  # every generation worse
        _tell(es, returns)
        _tell(off, returns)
        assert ("tolstagnation" in es.stop()) == (g >= 505), g
        assert "tolstagnation" not in off.stop()
    assert "not improved since generation 1" in es.stop()["tolstagnation"]


def _pycma_and_asktell_stagnation(losses_of, tolstagnation, generations=700):
    """The generations at which pycma's and asktell's CMA-ES report tolstagnation when both
    are told the same losses (3-D, population 7; every other rule off)."""
    cma = pytest.importorskip("cma")
    options = {"popsize": 7, "seed": 1, "verbose": -9, "maxiter": 10**6, "tolfun": 0,
               "tolfunhist": 0, "tolx": 0, "tolflatfitness": 0, "tolconditioncov": 0,
               "tolupsigma": np.inf, "tolfacupx": np.inf, "tolxstagnation": None}
    if tolstagnation is not None:
        options["tolstagnation"] = tolstagnation
    theirs = cma.CMAEvolutionStrategy(np.zeros(3), 1.0, options)
    ours = CMAES(num_params=3, population_size=7, noise=NOISE, seed=0,
                 **{**ALL_OFF, "tolstagnation": tolstagnation}, tolconditioncov=None,
                 tolupsigma=None, noeffectaxis=False, noeffectcoord=False)
    rng = np.random.default_rng(0)
    fired = ([], [])
    for g in range(1, generations + 1):
        losses = losses_of(rng, g)
        theirs.tell(theirs.ask(), list(losses))
        _tell(ours, -losses)
        for where, es in zip(fired, (theirs, ours)):
            if "tolstagnation" in es.stop():
                where.append(g)
    return fired


@pytest.mark.parametrize(
    "case,tolstagnation",
    [("flat", None), ("plateaus", None), ("improving slowly", 20)],
)
def test_tolstagnation_fires_in_the_generations_pycmas_does(case, tolstagnation):
    """The same losses told to pycma 4.5 and to asktell: tolstagnation fires in exactly the
    same generations (its history's medians, the >100-value wait, the generation floor and
    pycma's count of evaluations since the best, which includes the best's generation's
    later candidates)."""
    if case == "plateaus":  # losses 0, 1 or 2: equal medians, which count as no better
        def losses_of(rng, g):
            return np.round(2 * rng.random(7))
    else:
        slope = {"flat": 0.0, "improving slowly": 1e-3}[case]

        def losses_of(rng, g):
            return rng.random(7) - slope * g
    theirs, ours = _pycma_and_asktell_stagnation(losses_of, tolstagnation)
    assert theirs, "the case must make pycma's rule fire"
    assert ours == theirs


def _pycma_and_asktell_fired(losses_of, rules, generations=60):
    """The generations at which pycma's and asktell's CMA-ES report each of ``rules`` when
    both are told the same losses (3-D, population 7; tolx, the covariance rules and
    tolstagnation off, the rest at their defaults)."""
    cma = pytest.importorskip("cma")
    options = {"popsize": 7, "seed": 1, "verbose": -9, "maxiter": 10**6, "tolx": 0,
               "tolconditioncov": 0, "tolupsigma": np.inf, "tolfacupx": np.inf,
               "tolxstagnation": None, "tolstagnation": 0}
    theirs = cma.CMAEvolutionStrategy(np.zeros(3), 1.0, options)
    ours = CMAES(num_params=3, population_size=7, noise=NOISE, seed=0, tolx=None,
                 tolstagnation=0, tolconditioncov=None, tolupsigma=None,
                 noeffectaxis=False, noeffectcoord=False)
    rng = np.random.default_rng(0)
    fired = ({r: [] for r in rules}, {r: [] for r in rules})
    for g in range(1, generations + 1):
        losses = losses_of(rng, g)
        theirs.tell(theirs.ask(), list(losses))
        _tell(ours, -losses)
        for where, es in zip(fired, (theirs, ours)):
            now = es.stop()
            for r in rules:
                if r in now:
                    where[r].append(g)
    return fired


@pytest.mark.parametrize("case", ["flat from the start", "converging", "flat after a drop"])
def test_tolfun_and_tolfunhist_fire_in_the_generations_pycmas_do(case):
    """The same losses told to pycma 4.5 and to asktell: tolfun and tolfunhist fire in the
    same generations, including early in a run, when pycma's history of best values holds
    fewer than its ``10 + 30 n / lambda`` (tolfun reads what it holds; tolfunhist waits
    for 10)."""
    def losses_of(rng, g):
        if case == "flat from the start":
            return np.full(7, 3.0)
        if case == "converging":  # the spread shrinks by 10x every 2 generations
            return 3.0 + rng.random(7) * 10.0 ** (-g / 2)
        return np.full(7, 3.0) if g > 4 else 3.0 + rng.random(7)

    theirs, ours = _pycma_and_asktell_fired(losses_of, ("tolfun", "tolfunhist"))
    assert theirs["tolfun"] and theirs["tolfunhist"], "the case must make pycma's rules fire"
    assert ours == theirs


def test_tolx_waits_while_the_evolution_path_is_long():
    """pycma's tolx also needs every coordinate of sigma * p_c below tolx: a CMA-ES run
    whose steps are tiny but whose path still points somewhere is not stopped."""
    for cls in (CMAES, SepCMAES):
        es = cls(num_params=3, sigma=1e-13, seed=0, noise=NOISE, **{**ALL_OFF, "tolx": 1e-11},
                 **({"noeffectaxis": False, "noeffectcoord": False}))
        _tell(es, np.arange(es.population_size, dtype=float))
        assert list(es.stop()) == ["tolx"]
        es.path_c = np.array([0.0, 1e3, 0.0])  # sigma * p_c = 1e-10 in one coordinate
        assert "tolx" not in es.stop(), cls.__name__
        es.path_c = np.array([0.0, -1e3, 0.0])  # pycma's comparison is signed
        assert list(es.stop()) == ["tolx"]


@pytest.mark.parametrize("name", OWN_RULES)
def test_tolx_fires_when_the_steps_are_tiny(name):
    small = {"sigma": 1e-13} if "sigma" in STRATEGIES.get(name).config_class.model_fields else {}
    es = _strategy(name, **{**ALL_OFF, "tolx": 1e-11, **small})
    _tell(es, np.arange(es.population_size, dtype=float))
    assert list(es.stop()) == ["tolx"]


def test_tolfun_fires_on_a_converged_run_and_stops_it_early():
    es = CMAES(num_params=5, sigma=0.5, seed=0, x0=np.ones(5), **{**ALL_OFF, "tolfun": 1e-11})
    fired_at = _drive(es, sphere, 2000)
    assert fired_at is not None and fired_at < 400
    assert list(es.stop()) == ["tolfun"]
    assert es.best.value > -1e-10  # it stopped because it had converged


@pytest.mark.parametrize("cls", [CMAES, SepCMAES])
def test_condition_rule_fires_on_a_badly_conditioned_covariance(cls):
    es = cls(x0=np.zeros(3), sigma=[1.0, 1.0, 1e-8], noeffectaxis=False, noeffectcoord=False)
    assert list(es.stop()) == ["tolconditioncov"]  # (1 / 1e-8)**2 = 1e16 > 1e14
    assert cls(x0=np.zeros(3), sigma=[1.0, 1.0, 1e-6]).stop() == {}


@pytest.mark.parametrize("cls", [CMAES, SepCMAES])
def test_no_effect_rules_fire_when_steps_vanish_against_the_centre(cls):
    es = cls(x0=np.full(3, 1e10), sigma=1e-10, **ALL_OFF)
    assert set(es.stop()) == {"noeffectaxis", "noeffectcoord"}
    assert cls(x0=np.full(3, 1.0), sigma=1e-10, **ALL_OFF).stop() == {}


def test_rules_are_options_with_their_defaults_documented():
    cfg = CMAES.config_class
    defaults = {k: cfg.model_fields[k].default for k in
                ("tolfun", "tolfunhist", "tolx", "tolflatfitness", "tolconditioncov")}
    assert defaults == {"tolfun": 1e-11, "tolfunhist": 1e-12, "tolx": 1e-11,
                        "tolflatfitness": 1, "tolconditioncov": 1e14}
    with pytest.raises(ConfigError, match="tolfun"):
        CMAES(num_params=3, tolfun=-1.0)
    assert "tolconditioncov" not in OpenAIES.config_class.model_fields


def test_stop_rules_default_per_family():
    on = {n for n in STRATEGIES.names() if _strategy(n).stop_rules}
    assert on == {"cma_es", "sep_cma_es", "snes", "xnes", "restarts"}
    assert _strategy("openai_es", stop_rules=True).stop_rules
    assert not _strategy("cma_es", stop_rules=False).stop_rules


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize(
    "cls,rule", [(CMAES, {"tolstagnation": 0}), (SNES, {"tolstagnation": 0}),
                 (OpenAIES, {"tolstagnation": 20, "learning_rate": 0.05})])
def test_a_resumed_strategy_stops_where_an_uninterrupted_one_does(cls, rule):
    kw = dict(num_params=4, sigma=0.5, seed=2, noise=NOISE, x0=np.ones(4), **rule)
    whole = cls(**kw)
    stopped = _drive(whole, sphere, 3000)
    assert stopped is not None
    first = cls(**kw)
    _drive(first, sphere, stopped // 2)
    state = first.state_dict()
    resumed = cls(**kw)
    resumed.load_state_dict(state)
    assert _drive(resumed, sphere, 3000) == stopped
    assert resumed.stop() == whole.stop()
    a, b = resumed.state_dict(), whole.state_dict()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_a_stagnation_history_of_mismatched_lengths_is_refused_and_nothing_is_loaded():
    es = CMAES(num_params=3, noise=NOISE, seed=0)
    for _ in range(10):
        es.tell(-sphere(es.distribution.decode(es.ask())))
    before = es.state_dict()
    state = dict(before)
    state["stop.sparse_best"] = np.zeros(3)  # 2 medians kept (generations 5 and 10)
    with pytest.raises(asktell.errors.CheckpointError, match="sparse_best.*sparse_median.*3 and 2"):
        es.load_state_dict(state)
    after = es.state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_a_bad_history_is_refused_by_name():
    es = CMAES(num_params=3)
    state = es.state_dict()
    state["stop.best"] = np.zeros(2)
    with pytest.raises(asktell.errors.CheckpointError, match="stop.best"):
        es.load_state_dict(state)


# --------------------------------------------------------------------------- best so far
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_best_so_far_is_the_best_told_candidate_and_is_restored(name):
    es = _strategy(name)
    assert es.best is None
    best_value, best_x = -np.inf, None
    for _ in range(4):
        seeds = es.ask()
        X = es.distribution.decode(seeds)
        r = -ellipsoid(X - 1.0)
        r[0] = np.nan  # a failed candidate is never the best
        i = int(np.nanargmax(r))
        if r[i] > best_value:
            best_value, best_x, best_seed, gen = r[i], X[i], seeds[i], es.generation
        es.tell(r)
    assert es.best.value == best_value and np.array_equal(es.best.parameters, best_x)
    assert (es.best.seed, es.best.generation) == (best_seed, gen)
    other = _strategy(name)
    other.load_state_dict(es.state_dict())
    assert np.array_equal(other.best.parameters, es.best.parameters)
    assert (other.best.seed, other.best.value, other.best.generation) == (
        es.best.seed, es.best.value, es.best.generation)


# --------------------------------------------------------------------------- construction
def test_num_params_comes_from_x0():
    es = SNES(x0=np.arange(7.0))
    assert es.num_params == 7 and np.array_equal(es.center, np.arange(7.0))
    with pytest.raises(ConfigError, match="needs 'num_params' or 'x0'"):
        SNES()
    with pytest.raises(ConfigError, match="'x0' must have num_params=5 values; got 7 values"):
        SNES(num_params=5, x0=np.zeros(7))


@pytest.mark.parametrize("cls", [CMAES, SepCMAES, SNES, PGPE])
def test_a_vector_sigma_sets_each_coordinates_initial_step(cls):
    steps = np.array([2.0, 0.5, 1e-3])
    es = cls(x0=np.zeros(3), sigma=steps, population_size=2000, noise=NOISE)
    spread = es.distribution.decode(es.ask()).std(axis=0)
    assert np.allclose(spread / steps, 1.0, rtol=0.1)
    with pytest.raises(ConfigError, match="sigma: sigma must be one number or num_params=3 values; got 2"):
        cls(x0=np.zeros(3), sigma=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"sigma: Input should be greater than 0 \(coordinate 1\)"):
        cls(x0=np.zeros(3), sigma=[1.0, 0.0, 2.0])


def test_strategies_without_per_coordinate_steps_refuse_a_vector_sigma():
    for cls in (XNES, OpenAIES, ARS, MirroredES):
        with pytest.raises(ConfigError, match="sigma"):
            cls(x0=np.zeros(3), sigma=[1.0, 1.0, 1.0], population_size=8)


# --------------------------------------------------------------------------- run loops
def test_minimize_stops_on_a_rule_and_says_which():
    res = asktell.minimize(sphere, np.ones(10), sigma=0.5, vectorized=True, budget=100_000)
    assert res.strategy == "cma_es" and res.success
    assert res.stop_reason.startswith("strategy stopped: tolfun")
    assert res.stop_reason == res.message and res.nfev < 20_000 and res.fun < 1e-10
    full = asktell.minimize(sphere, np.ones(10), sigma=0.5, vectorized=True, budget=3000,
                            stop_rules=False)
    assert full.message.startswith("budget")


def test_minimize_auto_picks_by_dimension():
    from asktell.minimize import AUTO_FULL_COVARIANCE_MAX, auto_strategy

    assert auto_strategy(10) == "cma_es"
    assert auto_strategy(AUTO_FULL_COVARIANCE_MAX) == "cma_es"
    assert auto_strategy(AUTO_FULL_COVARIANCE_MAX + 1) == "sep_cma_es"
    assert auto_strategy(100, max_factor_bytes=8 * 99 * 99) == "sep_cma_es"
    res = asktell.minimize(rosenbrock, np.zeros(1200), vectorized=True, budget=60, sigma=0.1)
    assert res.strategy == "sep_cma_es"


def test_minimize_refuses_unknown_options_with_a_did_you_mean():
    with pytest.raises(ConfigError, match="unknown option 'budgte'.*did you mean 'budget'"):
        asktell.minimize(sphere, np.ones(3), budgte=100)
    with pytest.raises(ConfigError, match="did you mean 'tolfun'"):
        asktell.minimize(sphere, np.ones(3), tolfnu=1e-3)
    with pytest.raises(ConfigError, match="'learning_rate' is an option of .*openai_es"):
        asktell.minimize(sphere, np.ones(3), learning_rate=0.1)


def _run(strategy, **budget):
    cfg = config_from_dict({
        "strategy": strategy,
        "task": {"kind": "function", "name": "sphere", "num_params": 4, "shift": 1.0},
        "noise": {"size": 4096},
        "budget": {"generations": 2000, **budget},
        "output": {"log_format": "none"},
    })
    return run(cfg, out=tempfile.mkdtemp())


def test_the_runner_stops_on_a_rule_where_the_strategy_says_so():
    res = _run({"kind": "cma_es", "sigma": 0.5})
    assert res.stop_reason.startswith("strategy stopped: tolfun") and res.generation < 2000
    res = _run({"kind": "cma_es", "sigma": 0.5, "stop_rules": False}, generations=300)
    assert res.stop_reason == "generations budget reached (300)"
    # Policy-search strategies act on their rules only when asked to.
    flat = {"kind": "openai_es", "sigma": 1e-13, "learning_rate": 0.1, "population_size": 8}
    assert _run(flat, generations=5).generation == 5
    # Steps of 1e-13 leave the returns within tolfun too, which pycma's rule reads after
    # one generation as well.
    stopped = _run({**flat, "stop_rules": True}, generations=5)
    assert stopped.generation == 1
    assert stopped.stop_reason.startswith("strategy stopped: tolfun") and "; tolx (" in stopped.stop_reason


@pytest.mark.parametrize("dim, popsize", [(5, 8), (5, 141), (10, 10), (3, 7)])
def test_tolfun_looks_back_as_many_generations_as_pycma_keeps(dim, popsize):
    """pycma's tolfun/tolfunhist history holds 10 + floor(30 n / lambda) best values (it drops
    the oldest once it holds more than 10 + 30 n / lambda); one more kept every run going a
    generation longer than pycma's, at every restart."""
    cma = pytest.importorskip("cma")
    es = cma.CMAEvolutionStrategy(np.ones(dim), 1.0, {"popsize": popsize, "verbose": -9,
                                                      "seed": 1})
    for _ in range(60):
        X = es.ask()
        es.tell(X, [float(np.sum(np.square(x))) for x in X])
    ours = CMAES(num_params=dim, population_size=popsize, seed=0)
    assert ours._stop_history.length == len(es.fit.hist)


def test_tolupsigma_fires_when_sigma_grows_while_the_covariance_shrinks():
    """pycma's tolupsigma: sigma / (largest axis of C^1/2) above tolupsigma x sigma0 is a
    creeping run; it fires for CMA-ES and sep-CMA-ES and not on a run that is fine."""
    for cls in (CMAES, SepCMAES):
        es = cls(num_params=3, sigma=0.5, seed=0, **{**ALL_OFF, "tolupsigma": 1e3})
        _tell(es, -sphere(es.distribution.decode(es.ask())))
        assert "tolupsigma" not in es.stop()
        es.sigma = 0.5 * 1e3 * 2.0 * float(np.sqrt(np.max(es.C)))  # past the limit
        assert "tolupsigma" in es.stop(), cls
        assert "tolupsigma" not in cls(num_params=3, sigma=0.5, seed=0, tolupsigma=None).stop()
