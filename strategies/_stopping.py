"""Stopping rules ("termination criteria") of every strategy, after pycma's.

:class:`StoppingConfig` declares the thresholds once; every strategy's Config inherits
them through :class:`~asktell.strategies.StrategyConfig`. :class:`StopHistory` keeps the
little history the rules need (recent generations' best and median returns, the best
return so far and when it last improved); it is part of the strategy's ``state_dict``, so
a resumed run stops at exactly the generation an uninterrupted one does.

The rules (returns are maximised; pycma's names and meaning, its defaults where they
carry over; ``None`` or 0 switches one off):

* ``tolfun``: the spread of this generation's returns *and* of the best returns of the
  last ``10 + floor(30 n / lambda)`` generations (all of them, early in a run) is below
  ``tolfun`` (pycma keeps that many: it drops the oldest once more than
  ``10 + 30 n / lambda`` are held; like pycma's, the rule reads a history not yet full).
* ``tolfunhist``: the spread of those best returns alone is below ``tolfunhist``, once at
  least 10 are held (pycma's ``len(hist) > 9``).
* ``tolflatfitness``: the best return of a generation equalled its 75th-percentile one
  (at least a quarter of the candidates tie with the best) in more than
  ``tolflatfitness`` consecutive generations (a plateau the ranking cannot see across;
  pycma's rule and count).
* ``tolstagnation`` (``T``, default ``100 + 100 n**1.5 / lambda``, pycma's), pycma's rule
  in full: every 5th generation's best and median return are kept (the last 20,000 of
  each); the rule fires once more than 100 are kept (more than 500 generations), the
  generation is past ``n (5 + 100 / lambda)``, the best so far has not improved in more
  than ``T / 2`` generations, and over the newest ``l = max(T / 10, kept / 10)`` kept
  values neither the median of the medians nor the median of the bests is above that of
  the ``l`` before them. (Reading "the best so far has not improved in ``T``
  generations" alone ends rugged runs that are still converging, e.g. on BBOB f23
  Katsuura, where pycma's run on and solve more.)
* ``tolx``: every coordinate's standard deviation of the search distribution is below
  ``tolx``; for the CMA-ES strategies also every coordinate of ``sigma * p_c`` (pycma's
  rule, a signed comparison as pycma's: a run still moving along its evolution path is not
  stopped), with the standard deviations from the current ``diag(C)``.
* CMA-ES only (:class:`~._cma_stopping.CMAStoppingConfig`, in :mod:`._cma_stopping`): ``tolconditioncov`` (condition number of the
  covariance above it), ``noeffectaxis`` (adding a tenth of a standard deviation along a
  principal axis leaves the centre unchanged), ``noeffectcoord`` (adding a fifth of a
  coordinate's standard deviation leaves that coordinate unchanged), ``tolupsigma``
  (sigma over the largest axis of the covariance's square root grew past ``tolupsigma``
  times the initial sigma: a creeping run; pycma's rule, which ends such runs early and so
  leaves restarts more of the budget, e.g. on BBOB f19).

Whether a run *acts* on a fired rule is the ``stop_rules`` option (see
``docs/strategies.md``): ``es.stop()`` always reports.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from asktell.config_base import Bool, Float, Int, PluginConfig
from asktell.errors import CheckpointError
from asktell.state_schema import Entry

__all__ = ["StoppingConfig", "StopHistory", "StopMixin", "coordinate_stds", "history_length"]

#: pycma's stagnation history: every ``SPARSE_EVERY``-th generation's best and median return,
#: the newest ``SPARSE_CAP`` of them, and more than ``SPARSE_MIN`` before the rule may fire.
SPARSE_EVERY = 5
SPARSE_CAP = 20_000
SPARSE_MIN = 100


class StoppingConfig(PluginConfig):
    """The stopping-rule thresholds every strategy takes (pycma's names and defaults)."""

    stop_rules: Bool | None = Field(
        None,
        description="Whether a run stops when a stopping rule fires (the runner, gym.train "
        "and minimize check es.stop() after every generation). null: the strategy's own "
        "default (on for CMA-ES, sep-CMA-ES, SNES and xNES; off for the policy-search "
        "strategies OpenAI-ES, PGPE, ARS and mirrored ES); minimize turns it on unless "
        "false. es.stop() reports the rules that fired either way.",
    )
    tolfun: Float | None = Field(
        1e-11,
        ge=0,
        description="Stop when the spread of the generation's returns and of the recent "
        "generations' best returns (10 + floor(30 num_params / population_size) of them) is "
        "below this (pycma's tolfun). null or 0: off.",
    )
    tolfunhist: Float | None = Field(
        1e-12,
        ge=0,
        description="Stop when the spread of the recent generations' best returns is below "
        "this (pycma's tolfunhist). null or 0: off.",
    )
    tolx: Float | None = Field(
        1e-11,
        ge=0,
        description="Stop when every coordinate's standard deviation of the search "
        "distribution is below this (pycma's tolx). null or 0: off.",
    )
    tolstagnation: Int | None = Field(
        None,
        ge=0,
        description="pycma's tolstagnation T: stop, after more than 500 generations, when "
        "the best return has not improved for T / 2 generations and the newest tenth of the "
        "sampled history (every 5th generation's best and median return; at least T / 10 of "
        "them) improves on neither median of the tenth before it. null: 100 + 100 "
        "num_params**1.5 / population_size (pycma's default); 0: off.",
    )
    tolflatfitness: Int | None = Field(
        1,
        ge=0,
        description="Generations tolerated with a flat fitness: stop after more than this "
        "many consecutive generations whose best return equals the 75th-percentile one "
        "(pycma's tolflatfitness and rule). null or 0: off.",
    )


def history_length(num_params: int, population_size: int) -> int:
    """Generations the tolfun/tolfunhist rules look back over: pycma's history drops its
    oldest value once it holds more than ``10 + 30 n / lambda``, so it holds the floor of
    that (one more, the ceiling, kept every run going a generation longer than pycma's)."""
    return 10 + math.floor(30 * num_params / population_size)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D float array, bitwise: the same partition call (numpy adds the
    last index to check for NaN) and the same mean of the middle slice, without its generic
    layers, since it runs every generation."""
    half = values.size // 2
    if values.size % 2:
        middle = np.partition(values, [half, -1])[half : half + 1]
    else:
        middle = np.partition(values, [half - 1, half, -1])[half - 1 : half + 1]
    return float(np.add.reduce(middle, axis=0) / middle.size)


class StopHistory:
    """The history the stopping rules read; its arrays are a strategy's state.

    ``best`` and ``median`` hold the last :func:`history_length` generations' values in a
    ring (``count`` values written so far, the newest at ``(count - 1) % length``);
    ``sparse_best`` and ``sparse_median`` every 5th generation's, oldest first, for
    ``tolstagnation`` (``num_params`` and ``population_size`` set its generation floor).
    """

    def __init__(self, length: int, num_params: int = 1, population_size: int = 1):
        self.length = length
        self.floor = num_params * (5 + 100 / population_size)  # pycma's N (5 + 100 / lambda)
        self.population_size = population_size
        self.sparse_best: list[float] = []
        self.sparse_median: list[float] = []
        self.best = np.zeros(length)
        self.median = np.zeros(length)
        self.count = 0
        self.spread = math.inf  # the last generation's max - min return
        self.flat = 0  # consecutive generations whose best ties the 75th-percentile return
        self.best_ever = -math.inf
        self.best_generation = 0  # the generation the best so far was last improved in
        self.best_after = 0  # candidates told after the best in its generation (pycma's evals)

    def record(
        self, returns: np.ndarray, generation: int, ordered: np.ndarray | None = None
    ) -> tuple[float, float]:
        """Take one generation's (finite, worst-ranked) returns; ``generation`` counts from 1.

        Returns their max and min (``tell`` reports them in its metrics).

        ``ordered``: ``returns`` sorted ascending when the caller has already sorted them
        (``tell`` sorts once for this and the centred ranks); any ascending arrangement
        serves, since the values read below do not depend on how equal values are ordered.

        One sort gives the max, the min, the median and pycma's flat-fitness entry. They
        are bitwise what ``max()``, ``min()`` and :func:`_median` give: finite values that
        compare equal have the same bits except +0.0 and -0.0, so where a zero is the
        value read, the generic call (whose choice between the two zeros this keeps)
        gives it instead. The median of an even count is ``(a + b) / 2`` in Python floats:
        numpy's sum of a two-value slice adds the two (neither zero here) and divides by
        2, the same IEEE operations.
        """
        if ordered is None:
            ordered = np.sort(returns)
        n = ordered.size
        # .item(): Python floats straight from the buffer, with no numpy scalar between.
        best, worst = ordered.item(-1), ordered.item(0)
        if best == 0.0:
            best = float(returns.max())
        if worst == 0.0:
            worst = float(returns.min())
        half = n // 2
        if n % 2:
            median = ordered.item(half)
            zero = median == 0.0
        else:
            low, high = ordered.item(half - 1), ordered.item(half)
            zero = low == 0.0 or high == 0.0
            median = (low + high) / 2
        if zero:
            median = _median(returns)
        slot = self.count % self.length
        self.best[slot], self.median[slot] = best, median
        self.count += 1
        self.spread = best - worst
        # pycma: sorted losses f, flat when f[0] == f[int(0.75 lambda)] (the returns in
        # descending order; a comparison, so the sign of a zero does not matter).
        quantile = ordered.item(n - 1 - int(0.75 * n))
        # One return has no spread: it is never "flat" (else a population of one, the
        # sequential mirrored ES, would stop on it at its second generation).
        self.flat = self.flat + 1 if n > 1 and best <= quantile else 0
        if best > self.best_ever:
            self.best_ever, self.best_generation = best, generation
            self.best_after = returns.size - 1 - int(returns.argmax())
        if generation % SPARSE_EVERY == 0:
            self.sparse_best.append(best)
            self.sparse_median.append(median)
            if len(self.sparse_best) > SPARSE_CAP:
                del self.sparse_best[0], self.sparse_median[0]
        return best, worst

    def recent_best(self) -> np.ndarray:
        return self.best[: min(self.count, self.length)]

    def fired(
        self, cfg: Any, generation: int, stds: np.ndarray, default_stagnation: int,
        path: np.ndarray | None = None,
    ) -> dict[str, str]:
        """The generic rules that fired, ``{name: why}`` (pycma's order).

        ``path``: ``sigma * p_c`` for the CMA-ES strategies, which ``tolx`` also reads
        (``None``: a strategy without that path).
        """
        out: dict[str, str] = {}
        if self.count == 0:
            return out
        held = min(self.count, self.length)  # pycma's history early in a run: what it has
        hist = float(np.ptp(self.recent_best()))
        # A population of one has no spread of its own (0): its history of best returns
        # alone decides, once it holds 10 generations (as tolfunhist), not at the first.
        enough = self.population_size > 1 or held > 9
        if cfg.tolfun and enough and max(hist, self.spread) < cfg.tolfun:
            out["tolfun"] = (
                f"returns spread {max(hist, self.spread):.3g} < tolfun={cfg.tolfun:g} "
                f"over {held} generations"
            )
        if cfg.tolfunhist and held > 9 and hist < cfg.tolfunhist:
            out["tolfunhist"] = (
                f"best returns of the last {held} generations spread {hist:.3g} "
                f"< tolfunhist={cfg.tolfunhist:g}"
            )
        if cfg.tolx and float(stds.max()) < cfg.tolx and (
            path is None or bool(np.all(path < cfg.tolx))
        ):
            out["tolx"] = f"largest standard deviation {float(stds.max()):.3g} < tolx={cfg.tolx:g}"
        if cfg.tolflatfitness and self.flat > cfg.tolflatfitness:
            out["tolflatfitness"] = (
                f"best == 75th-percentile return in {self.flat} consecutive generations "
                f"(> tolflatfitness={cfg.tolflatfitness})"
            )
        limit = default_stagnation if cfg.tolstagnation is None else cfg.tolstagnation
        if limit and self._stagnated(limit, generation):
            out["tolstagnation"] = (
                f"best return {self.best_ever:.6g} not improved since generation "
                f"{self.best_generation}, and the recent medians of every 5th generation's "
                f"best and median returns no better than the earlier ones (tolstagnation={limit})"
            )
        return out

    def _stagnated(self, limit: int, generation: int) -> bool:
        """pycma's ``tolstagnation`` test (its order; the cheap conditions first)."""
        kept = len(self.sparse_best)
        # pycma counts evaluations since the best one: its generation's later candidates too.
        since = (generation - self.best_generation) * self.population_size + self.best_after
        if not (generation > self.floor and since / self.population_size > limit / 2
                and kept > SPARSE_MIN):
            return False
        window = max(limit / 10, kept / 10)  # pycma: max(T / 5 / 2, len / 10)
        if window > generation:
            return False
        window = int(window)
        if not 2 * window < kept:
            return False
        # Returns are maximised: "no better" is a median not above the earlier one.
        for values in (self.sparse_median, self.sparse_best):
            recent = np.median(values[kept - window :])
            earlier = np.median(values[kept - 2 * window : kept - window])
            if recent > earlier:
                return False
        return True

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "stop.best": self.best.copy(),
            "stop.median": self.median.copy(),
            "stop.count": self.count,
            "stop.spread": self.spread,
            "stop.flat": self.flat,
            "stop.best_ever": self.best_ever,
            "stop.best_generation": self.best_generation,
            "stop.best_after": self.best_after,
            "stop.sparse_best": np.array(self.sparse_best, dtype=np.float64),
            "stop.sparse_median": np.array(self.sparse_median, dtype=np.float64),
        }

    def schema(self) -> dict[str, Entry]:
        # Before the first generation best_ever is -inf and spread +inf: not finite.
        return {
            "stop.best": Entry("array", shape=(self.length,)),
            "stop.median": Entry("array", shape=(self.length,)),
            "stop.count": Entry("int", low=0),
            "stop.spread": Entry("float", low=0, finite=False),
            "stop.flat": Entry("int", low=0),
            "stop.best_ever": Entry("float", finite=False),
            "stop.best_generation": Entry("int", low=0),
            "stop.best_after": Entry("int", low=0),
            "stop.sparse_best": Entry("array", shape=(None,), check=_sparse_length),
            "stop.sparse_median": Entry("array", shape=(None,), check=_sparse_length),
        }

    def load(self, state: dict[str, Any]) -> None:
        sparse = state["stop.sparse_best"].size, state["stop.sparse_median"].size
        if sparse[0] != sparse[1]:
            raise CheckpointError(
                "'stop.sparse_best' and 'stop.sparse_median' must be as long as each other "
                f"(one value each per 5th generation); got {sparse[0]} and {sparse[1]}"
            )
        self.best = np.array(state["stop.best"], dtype=np.float64)
        self.median = np.array(state["stop.median"], dtype=np.float64)
        self.count = int(state["stop.count"])
        self.spread = float(state["stop.spread"])
        self.flat = int(state["stop.flat"])
        self.best_ever = float(state["stop.best_ever"])
        self.best_generation = int(state["stop.best_generation"])
        self.best_after = int(state["stop.best_after"])
        self.sparse_best = [float(v) for v in state["stop.sparse_best"]]
        self.sparse_median = [float(v) for v in state["stop.sparse_median"]]


def _sparse_length(value: np.ndarray, sizes: Any) -> str | None:
    if value.size > SPARSE_CAP:
        return f"more than {SPARSE_CAP} values (the history keeps the newest {SPARSE_CAP})"
    return None


class StopMixin:
    """``stop()`` and ``stop_rules`` of every strategy (see
    :class:`~strategies._base.BaseStrategy` for the attributes they read: ``config``,
    ``stops_by_default``, ``_stop_history``, ``generation``, ``distribution``)."""

    @property
    def stop_rules(self) -> bool:
        """Whether a run acts on :meth:`stop` (the ``stop_rules`` option, or the
        strategy's default when it is null)."""
        chosen = self.config.stop_rules
        return self.stops_by_default if chosen is None else bool(chosen)

    def stop(self) -> dict[str, str]:
        """The stopping rules that fired, ``{name: why}`` (empty: none), pycma's names.

        Read after ``tell``; the thresholds are the Config's ``tol*`` options. It reports
        whatever ``stop_rules`` says; the runner, ``gym.train`` and ``minimize`` act on it
        only when ``stop_rules`` is on.
        """
        fired = self._stop_history.fired(
            self.config, self.generation, self._coordinate_stds(), self._default_stagnation(),
            self._tolx_path(),
        )
        fired.update(self._stop_extra())
        return fired

    def _coordinate_stds(self) -> np.ndarray:
        """Each coordinate's standard deviation of the current search distribution."""
        return coordinate_stds(self.distribution)

    def _tolx_path(self) -> np.ndarray | None:
        """What ``tolx`` reads beside the standard deviations (CMA-ES: ``sigma * p_c``)."""
        return None

    def _default_stagnation(self) -> int:
        """pycma's ``tolstagnation`` default, ``100 + 100 n**1.5 / lambda``."""
        return int(100 + 100 * self.num_params**1.5 / self.population_size)

    def _stop_extra(self) -> dict[str, str]:
        """Rules of the strategy's own (CMA-ES adds its covariance rules)."""
        return {}


def coordinate_stds(distribution: Any) -> np.ndarray:
    """Each coordinate's standard deviation of a distribution ``center + sigma * F z``."""
    sigma = np.asarray(distribution.sigma, dtype=np.float64)
    factor = getattr(distribution, "factor", None)
    if factor is None:
        return np.broadcast_to(np.abs(sigma), distribution.center.shape)
    return np.abs(sigma) * np.sqrt(np.sum(np.asarray(factor) ** 2, axis=1))
