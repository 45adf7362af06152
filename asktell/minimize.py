"""``asktell.minimize``: black-box minimisation in one call, for people who think in losses."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from asktell.errors import ConfigError
from asktell.registry import EVALUATORS, STRATEGIES
from asktell.tasks import FunctionTask

__all__ = ["minimize", "MinimizeResult"]


@dataclasses.dataclass
class MinimizeResult:
    """What :func:`minimize` found.

    Attributes:
        x: the best point seen (a candidate or a centre), as float64.
        fun: the loss at ``x``.
        center: the final centre of the search distribution.
        center_fun: the loss at the final centre.
        nfev: function evaluations used (candidates plus centre evaluations).
        generations: generations run.
        history: one dict per generation: ``generation``, ``nfev``, ``best_fun`` (so far),
            ``mean_fun`` (population mean), ``center_fun``, ``seconds``.
        message: why it stopped.
    """

    x: np.ndarray
    fun: float
    center: np.ndarray
    center_fun: float
    nfev: int
    generations: int
    history: list[dict[str, float]]
    message: str

    def __repr__(self) -> str:
        return (
            f"MinimizeResult(fun={self.fun:.6g}, center_fun={self.center_fun:.6g}, "
            f"nfev={self.nfev}, generations={self.generations}, message={self.message!r})"
        )


def minimize(
    f: Callable[[np.ndarray], float],
    x0: Any,
    *,
    strategy: str = "openai_es",
    budget: int = 10_000,
    seed: int = 0,
    population_size: int | None = None,
    vectorized: bool = False,
    target: float | None = None,
    evaluator: str | Any = "serial",
    callback: Callable[[dict[str, float]], Any] | None = None,
    **strategy_options: Any,
) -> MinimizeResult:
    """Minimise ``f`` from ``x0`` with an evolution strategy.

    Args:
        f: the loss, ``f(x) -> float``; or ``f(X) -> (n,)`` with ``vectorized=True``.
        x0: the starting point (its length sets the dimension).
        strategy: a registered strategy name (``asktell list`` shows them).
        budget: the number of function evaluations allowed (centre evaluations included).
        seed: seed of the strategy; the same seed gives the same result.
        population_size: candidates per generation (default: the strategy's own default).
        vectorized: ``f`` takes a batch of rows.
        target: stop once the centre's loss is at or below this value.
        evaluator: ``"serial"``, another registered evaluator name, or an evaluator instance
            built for a ``FunctionTask`` of ``f`` (then ``vectorized`` is the task's business).
        callback: called with each generation's history row; return ``True`` to stop.
        **strategy_options: passed to the strategy (``sigma``, ``learning_rate``, ...).

    Returns:
        A :class:`MinimizeResult`.

    Example:
        >>> import numpy as np
        >>> import asktell
        >>> res = asktell.minimize(lambda x: float(np.sum((x - 1) ** 2)), np.zeros(5),
        ...                        budget=4000, sigma=0.1, learning_rate=0.05, seed=0)
        >>> bool(res.fun < 1e-2)
        True
    """
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if x0.size == 0:
        raise ConfigError("minimize 'x0' must have at least one value; got an empty array")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"minimize 'budget' must be an int >= 1; got {budget!r}")
    cls = STRATEGIES.get(strategy)
    options = dict(strategy_options)
    if population_size is not None:
        options["population_size"] = population_size
    es = cls(num_params=x0.size, seed=seed, x0=x0, **options)
    if es.population_size + 1 > budget:
        raise ConfigError(
            f"minimize 'budget' must allow one generation of population_size="
            f"{es.population_size} plus one centre evaluation; got {budget}"
        )
    task = FunctionTask(f, vectorized=vectorized, minimize=True)
    owns_evaluator = isinstance(evaluator, str)
    ev = EVALUATORS.get(evaluator)(task) if owns_evaluator else evaluator

    def loss_at(x: np.ndarray) -> float:
        value = float(np.asarray(f(x[None] if vectorized else x)).reshape(-1)[0])
        return value if math.isfinite(value) else math.inf

    best_x, best_fun = x0.copy(), loss_at(x0)
    nfev, history, message = 1, [], f"budget of {budget} evaluations used"
    center_fun = best_fun
    start = time.perf_counter()
    try:
        while nfev + es.population_size + 1 <= budget:
            seeds = es.ask()
            evaluation = ev.evaluate(es.distribution, seeds)
            losses = -evaluation.returns
            finite = np.isfinite(losses)
            if finite.any():
                i = int(np.argmin(np.where(finite, losses, np.inf)))
                if losses[i] < best_fun:
                    best_fun, best_x = float(losses[i]), es.distribution.decode_one(seeds[i])
            es.tell(evaluation)
            center = es.center
            center_fun = loss_at(center)
            nfev += seeds.size + 1
            if center_fun < best_fun:
                best_fun, best_x = center_fun, center
            row = {
                "generation": es.generation,
                "nfev": nfev,
                "best_fun": best_fun,
                "mean_fun": float(losses[finite].mean()) if finite.any() else math.nan,
                "center_fun": center_fun,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            if target is not None and center_fun <= target:
                message = f"target {target} reached"
                break
            if callback is not None and callback(row) is True:
                message = "stopped by callback"
                break
    finally:
        if owns_evaluator:
            ev.close()
    return MinimizeResult(
        x=np.asarray(best_x, dtype=np.float64),
        fun=best_fun,
        center=es.center,
        center_fun=center_fun,
        nfev=nfev,
        generations=es.generation,
        history=history,
        message=message,
    )
