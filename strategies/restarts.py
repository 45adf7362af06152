"""Restarts over any strategy: IPOP (Auger & Hansen 2005, "A Restart CMA Evolution Strategy
With Increasing Population Size", CEC 2005) and BIPOP (Hansen 2009, "Benchmarking a
BI-Population CMA-ES on the BBOB-2009 Function Testbed", GECCO workshop).

A :class:`Restarts` strategy asks and tells through an inner strategy (any registered one
with ``population_size`` and ``sigma`` options; CMA-ES by default) and rebuilds it when the
inner strategy says it is done:

* **IPOP**: every restart multiplies the population by ``population_factor`` (2 in the
  paper) and keeps the initial step size.
* **BIPOP**: two interleaved regimes, chosen at each restart by the evaluations each has
  spent (the first run counts as a small one, as in pycma): the *large* regime is IPOP's
  (``lambda_def * factor**i`` after ``i`` large restarts, the initial ``sigma``); the
  *small* regime draws ``lambda_s = floor(lambda_def * (lambda_l / lambda_def)**(U**2))``
  (``small_population = "pycma"``; ``"paper"``: Hansen 2009's ``lambda_l / 2`` in place of
  ``lambda_l``) and ``sigma_s = sigma_0 * 10**(-2 U')`` (``lambda_l``: the last large
  population, ``lambda_def`` for none yet; U, U' uniform in [0, 1]) and may spend at most
  half the large regime's evaluations per run (``ceil(evals_large / (2 lambda_s))``
  generations). A small restart runs while the small regime has spent fewer evaluations
  than the large.

Populations are ``floor(lambda_def * factor**k)`` with ``lambda_def`` the
``population_base`` option; by default the first run's population, except that the CMA
family's default ``4 + floor(3 ln n)`` is taken unrounded, ``4 + 3 ln n``, as pycma's
``fmin`` does (so in 5-D: 8, then 17, 35, 70, 141, ... rather than 16, 32, 64, 128).

Each run restarts from ``x0`` (``restart_from = "x0"``, what pycma does with a fixed
``x0``) or, as the papers' BBOB experiments do, from a point drawn uniformly in the box of
half-width ``start_half_width`` around ``x0`` (``"uniform"``; default half-width twice the
initial ``sigma``: [-4, 4] around 0 for ``sigma = 2``). The first run always starts at x0.

Seeds: run 0 uses the strategy's seed, so until the first restart this strategy asks and
learns exactly as its inner strategy alone; run ``r`` uses a seed derived from
``(seed, r)``; the regime draws and random starts come from a stream of their own. The
whole state (restart index, regime budgets, the streams and the inner strategy's state
under ``inner.``) is in :meth:`state_dict`, so a run resumes bit for bit mid-restart.

The population changes between generations; the runner, the evaluators and the log take
any number of seeds per generation. Each generation's metrics carry ``restart``,
``regime``, ``inner_population_size`` and ``restart_event`` (a message on the generation
that triggered a restart, empty otherwise).

Its options (the inner strategy's table checked as that strategy's Config) are
:class:`~._restarts_config.RestartsConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from asktell.config_base import NestedConfigError, declare_options
from asktell.distribution import Distribution
from asktell.errors import CheckpointError, ConfigError
from asktell.registry import STRATEGIES
from asktell.state_schema import Entry, check_state

from ._base import BaseStrategy
from ._restarts_config import RestartsConfig
from ._state import state_rows

__all__ = ["Restarts", "RestartsConfig"]

_DERIVED = ("generation", "num_nonfinite", "return_mean", "return_std", "return_max", "return_min")
_REGIMES = ("first", "large", "small")
#: "No return yet" as a finite float (a state holds no infinities: checkpoints are JSON).


def _inner_stop(inner: Any) -> list[str]:
    """The names of the stopping rules the inner strategy reports (empty: keep going)."""
    return list(inner.stop())


@STRATEGIES.register("restarts")
@declare_options(RestartsConfig)
class Restarts(BaseStrategy):
    """IPOP / BIPOP restarts of an inner strategy (CMA-ES by default).

    Use it for multimodal problems (Rastrigin, Schwefel, ...) where one run of CMA-ES
    converges to a local optimum: larger populations smooth the landscape (IPOP), small
    ones with small steps search locally (BIPOP).

    Example:
        >>> import numpy as np
        >>> from asktell.functions import sphere
        >>> es = Restarts(num_params=3, strategy={"kind": "cma_es", "sigma": 0.5}, seed=0)
        >>> for _ in range(30):
        ...     _ = es.tell(-sphere(es.distribution.decode(es.ask())))
        >>> bool(sphere(es.center) < 1e-3)
        True
    """

    name = "restarts"
    wraps_strategy = True
    stops_by_default = True  # no restart left: the search is over
    suite_options = {"strategy": {"kind": "cma_es", "sigma": 0.5}}

    def _default_population_size(self) -> int:
        return self.config.inner_config().population_for(self.num_params)

    def _setup(self, cfg: RestartsConfig) -> None:
        first = self._inner_config(self.population_size)
        self.base_population = self._population_base(cfg)
        # A vector sigma (one step per coordinate) keeps its shape; restarts scale its
        # largest value, the global step, which restart_sigma records.
        if np.ndim(first.sigma) == 0:
            self.sigma0: float | np.ndarray = float(first.sigma)
        else:
            self.sigma0 = np.asarray(first.sigma, dtype=np.float64)
        self._peak = float(np.max(self.sigma0))
        #: The box the candidates keep to (the restarts' own bounds, which its distribution
        #: applies, else the inner strategy's; ``None``: unbounded): where runs start.
        self._box = self.bounds
        if self._box is None and first.bounds is not None:
            self._box = first.bounds.build(self.num_params, "Restarts")
        if self._box is not None and not self._x0_given:
            self._center = (self._box.lower + self._box.upper) / 2  # as a bounded strategy
        self.x0 = self._center.copy()
        # The regime draws and random starts: a stream apart from every run's own seed.
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1 << 20,)))
        self.restart = 0
        self.regime = "first"
        self.large_runs = 0
        self.evals_large = 0
        self.evals_small = 0
        self.max_generations = 0  # a small run's cap (0: none)
        self.restart_sigma = self._peak
        self.done = ""
        self.inner = self._build_inner(self.population_size, self._peak, self.x0, self.seed)
        # its _update tells the inner strategy a full population: no partial tell
        self.capabilities = self.inner.capabilities - {"partial_tell"}

    # ------------------------------------------------------------------ runs
    def _population_base(self, cfg: RestartsConfig) -> float:
        """lambda_def: the option, else the first population (unrounded CMA default)."""
        if cfg.population_base is not None:
            return float(cfg.population_base)
        n = self.num_params
        given = cfg.population_size is not None or cfg.strategy.get("population_size") is not None
        cma_default = 4 + math.floor(3 * math.log(n)) if n > 1 else None
        if not given and self.population_size == cma_default:
            return 4.0 + 3.0 * math.log(n)
        return float(self.population_size)

    def _run_seed(self, restart: int) -> int:
        if restart == 0:
            return self.seed
        state = np.random.SeedSequence(self.seed, spawn_key=(restart,)).generate_state(1, np.uint64)
        return int(state[0] >> np.uint64(1))

    def _inner_config(self, population: int | None, sigma: Any = None) -> Any:
        """The inner strategy's Config; a problem with it is a :class:`ConfigError` naming
        ``Restarts`` and the inner option (``strategy.population_size``)."""
        try:
            return self.config.inner_config(population, sigma, context={"num_params": self.num_params})
        except NestedConfigError as exc:
            raise ConfigError(f"Restarts arguments: {exc}") from None

    def _sigma_for(self, step: float) -> float | np.ndarray:
        """The inner sigma of a run whose global step is ``step`` (``restart_sigma``)."""
        if isinstance(self.sigma0, float):
            return step
        return self.sigma0 * (step / self._peak)

    def _build_inner(self, population: int, step: float, x0: np.ndarray, seed: int) -> Any:
        sigma = self._sigma_for(step)
        cfg = self._inner_config(population, sigma if isinstance(sigma, float) else sigma.tolist())
        cls = STRATEGIES.get(cfg.kind)
        return cls(num_params=self.num_params, seed=seed, x0=x0, noise=self.noise, **cfg.options())

    def _fit_population(self, size: int) -> int:
        """At least the inner strategy's minimum, even when its candidates come in pairs."""
        size = max(int(size), STRATEGIES.get(self.config.strategy["kind"]).min_population_size)
        if "antithetic" in self.inner.capabilities and size % 2:
            size += 1
        return size

    def _restart(self, fired: list[str]) -> str:
        """Rebuild the inner strategy for the next run; returns the log message."""
        cfg, base = self.config, self.base_population
        small = cfg.mode == "bipop" and self.evals_small < max(1, self.evals_large)
        if small:
            u_size, u_sigma = self.rng.random(2)
            reach = cfg.population_factor**self.large_runs  # lambda_l / lambda_def
            if cfg.small_population == "paper":
                reach *= 0.5
            population = math.floor(base * reach ** (u_size**2))
            sigma = self._peak * 10.0 ** (-2.0 * u_sigma)
            regime = "small"
        else:
            self.large_runs += 1
            population = math.floor(base * cfg.population_factor**self.large_runs)
            sigma, regime = self._peak, "large"
        population = self._fit_population(population)
        start = self.x0
        if cfg.restart_from == "uniform":
            half = cfg.start_half_width or 2.0 * self.sigma0
            if self._box is None:
                start = self.x0 + self.rng.uniform(-half, half, self.num_params)
            else:  # uniform in the part of the start box inside the bounds
                low = np.maximum(self.x0 - half, self._box.lower)
                high = np.minimum(self.x0 + half, self._box.upper)
                start = self.rng.uniform(low, high, self.num_params)
        self.restart += 1
        self.inner = self._build_inner(population, sigma, start, self._run_seed(self.restart))
        self.regime, self.population_size, self.restart_sigma = regime, population, sigma
        # Hansen 2009: a small run may spend at most half of the large regime's evaluations
        # (pycma's maxiter = evals_large / (2 lambda_s), a run stops once it reaches it).
        self.max_generations = (
            max(1, math.ceil(0.5 * self.evals_large / population)) if small else 0
        )
        return (
            f"restart {self.restart} ({cfg.mode}, {regime}): {', '.join(fired)}; "
            f"population {population}, sigma {sigma:.3g}"
        )

    # ------------------------------------------------------------------ hooks
    def _sample(self, count: int) -> np.ndarray:
        return self.inner.ask()

    def _make_distribution(self) -> Distribution:
        # The outer generation keys centre episodes, so each run's episodes are new ones.
        return self.inner.distribution.replace(generation=self.generation)

    @property
    def center(self) -> np.ndarray:
        return self.inner.center

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        metrics = {k: v for k, v in self.inner.tell(returns).items() if k not in _DERIVED}
        if self.regime != "large":  # the first run counts as small (pycma's accounting)
            self.evals_small += int(seeds.size)
        else:
            self.evals_large += int(seeds.size)
        metrics.update(
            restart=self.restart, regime=self.regime,
            inner_population_size=int(seeds.size), inner_generation=self.inner.generation,
        )
        fired = _inner_stop(self.inner)
        if self.max_generations and self.inner.generation >= self.max_generations:
            fired.append("small_budget")
        event = ""
        if fired:
            large_left = self.large_runs < self.config.max_restarts
            small_next = self.config.mode == "bipop" and self.evals_small < max(1, self.evals_large)
            if large_left or small_next:
                event = self._restart(fired)
            else:
                self.done = ", ".join(fired)
        self._center = self.inner.center
        metrics["restart_event"] = event
        return metrics

    def stop(self) -> dict[str, str]:
        """``{name: why}`` once the last run stopped with no restart left (empty otherwise);
        the inner strategy's criteria that ended it are in the message."""
        if not self.done:
            return {}
        return {"max_restarts": f"no restart left after {self.restart} restarts; the last "
                f"run stopped on {self.done}"}

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        own = {
            "restart": self.restart, "regime": self.regime, "large_runs": self.large_runs,
            "evals_large": self.evals_large, "evals_small": self.evals_small,
            "max_generations": self.max_generations, "restart_sigma": self.restart_sigma,
            "done": self.done,
        }
        own.update(self._prefixed("inner", self.inner.state_dict()))
        return own

    def _own_schema(self) -> dict[str, Entry]:
        return {
            "population_size": Entry("int", low=1),
            "restart": Entry("int", low=0),
            "regime": Entry("str", check=lambda v, s: None if v in _REGIMES else f"not one of {_REGIMES}"),
            "large_runs": Entry("int", low=0),
            "evals_large": Entry("int", low=0),
            "evals_small": Entry("int", low=0),
            "max_generations": Entry("int", low=0),
            "restart_sigma": Entry("float", positive=True),
            "done": Entry("str"),
        }

    def _state_schema(self) -> dict[str, Entry]:
        schema = self._own_schema()
        schema.update(self._prefixed("inner", self.inner.state_schema()))
        return schema

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """All or nothing: the outer keys are checked, an inner strategy for the saved run
        (its population and step size) is built and checks its ``inner.`` keys, and only
        then is anything assigned. ``strict``: as for every strategy, a state saved with
        other options (this wrapper's or the inner strategy's) is refused unless off."""
        owner = type(self).__name__
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{owner} state must be a dict; got {type(state).__name__}")
        state = self._with_options(state, strict)
        # The common keys and this wrapper's own; the inner strategy's keys are checked
        # below against an inner strategy built for the saved run, not the current one.
        outer = {
            k: v
            for k, v in super().state_schema().items()
            if k != "population_size" and not k.startswith("inner.")
        }
        outer.update(self._own_schema())
        asked = isinstance(state.get("has_pending"), (bool, np.bool_)) and bool(state["has_pending"])
        saved_pop = state.get("population_size")
        pop = int(saved_pop) if isinstance(saved_pop, (int, np.integer)) and saved_pop >= 1 else 0
        sizes = {"n": self.num_params, "p": pop, "k": pop if asked else 0,
                 "q": state_rows(state.get("inject_queue")), "i": state_rows(state.get("injected"))}
        check_state(owner, state, outer, sizes, exact=False)
        try:
            probe = self._build_inner(pop, float(state["restart_sigma"]), self.x0,
                                      self._run_seed(int(state["restart"])))
        except (ConfigError, ValueError) as exc:
            raise CheckpointError(f"{owner} state refused, nothing was loaded: {exc}") from None
        if not strict or "inner.options" not in state:
            state = {**state, "inner.options": probe._options_json()}
        schema = dict(outer)
        schema.update(self._prefixed("inner", probe.state_schema()))
        check_state(owner, state, schema, sizes)
        try:
            probe.load_state_dict(self._unprefixed("inner", dict(state)), strict=strict)
        except CheckpointError as exc:
            raise CheckpointError(f"{owner} state refused, nothing was loaded: inner: {exc}") from None
        self.inner = probe
        self.population_size = pop
        # The common keys (generation, centre, generator, pending seeds, best-so-far,
        # stopping history, injected points) as every strategy assigns them; _load_state
        # then assigns this wrapper's own.
        self._assign_state(state)

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.restart, self.regime = int(state["restart"]), str(state["regime"])
        self.large_runs = int(state["large_runs"])
        self.evals_large, self.evals_small = int(state["evals_large"]), int(state["evals_small"])
        self.max_generations = int(state["max_generations"])
        self.restart_sigma = float(state["restart_sigma"])
        self.done = str(state["done"])
