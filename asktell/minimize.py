"""``asktell.minimize``: black-box minimisation in one call, for people who think in losses."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from asktell._memory import MemoryContext, check_memory
from asktell._minimize_args import check_arguments, check_budget_fits, check_evaluator_task
from asktell.config_base import short_repr
from asktell.constraints import total_violation
from asktell.errors import ConfigError
from asktell.loop import Budget, GenerationRecord, GenerationStep, center_returns
from asktell.registry import EVALUATORS, STRATEGIES
from asktell.tasks import FunctionTask

__all__ = ["minimize", "MinimizeResult", "auto_strategy", "AUTO_FULL_COVARIANCE_MAX"]

#: ``strategy="auto"`` picks full-covariance CMA-ES up to this many dimensions and
#: sep-CMA-ES beyond: CMA-ES's ``O(d**2)`` per candidate and ``O(d**3)`` eigendecomposition
#: cost more per evaluation than they save past about a thousand parameters (and its
#: ``d x d`` factor must fit ``max_factor_bytes``).
AUTO_FULL_COVARIANCE_MAX = 1000


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
        message: why it stopped (``stop_reason`` is the same text).
        success: ``False`` when no evaluation gave a finite loss (every value NaN or
            infinite): then ``fun`` is NaN, ``x`` is ``x0`` and ``message`` says how many
            evaluations failed. A loss is never reported for a search that never measured
            one. ``False`` too, with ``constraints``, when no feasible point was found: ``x``
            is then the least infeasible point and ``message`` says so.
        strategy: the strategy that ran (what ``strategy="auto"`` chose).
    """

    x: np.ndarray
    fun: float
    center: np.ndarray
    center_fun: float
    nfev: int
    generations: int
    history: list[dict[str, float]]
    message: str
    success: bool = True
    strategy: str = ""

    @property
    def stop_reason(self) -> str:
        """Why the search stopped (pycma users' name for :attr:`message`)."""
        return self.message

    def __repr__(self) -> str:
        failed = "" if self.success else "success=False, "
        return (
            f"MinimizeResult({failed}fun={self.fun:.6g}, center_fun={self.center_fun:.6g}, "
            f"nfev={self.nfev}, generations={self.generations}, message={self.message!r})"
        )


def minimize(
    f: Callable[[np.ndarray], float],
    x0: Any,
    *,
    strategy: str = "auto",
    budget: int = 10_000,
    seed: int = 0,
    population_size: int | None = None,
    vectorized: bool = False,
    target: float | None = None,
    evaluator: str | Any = "serial",
    callback: Callable[[dict[str, float]], Any] | None = None,
    bounds: Any = None,
    constraints: Callable[[np.ndarray], Any] | None = None,
    restarts: str | None = None,
    **strategy_options: Any,
) -> MinimizeResult:
    """Minimise ``f`` from ``x0`` with an evolution strategy.

    Args:
        f: the loss, ``f(x) -> float``; or ``f(X) -> (n,)`` with ``vectorized=True``.
        x0: the starting point (its length sets the dimension).
        strategy: a registered strategy name (``asktell list`` shows them), or ``"auto"``
            (the default): CMA-ES up to :data:`AUTO_FULL_COVARIANCE_MAX` dimensions (and while
            its factor fits ``max_factor_bytes``), sep-CMA-ES beyond.
        budget: the number of function evaluations allowed: the candidates, ``x0`` and the
            centre after each generation all count (the shared budget's ``env_steps``); the
            search stops when another generation would not fit.
        seed: seed of the strategy; the same seed gives the same result.
        population_size: candidates per generation (default: the strategy's own default).
        vectorized: ``f`` takes a batch of rows.
        target: stop once the best evaluated loss (x0, a candidate or a centre; feasible
            with ``constraints``) is at or below this value, as pycma's ``ftarget``.
        evaluator: ``"serial"``, another registered evaluator name, or an evaluator instance
            built for ``FunctionTask(f, minimize=True)`` of this very ``f`` and the same
            ``constraints`` (one built for another task is refused). Every evaluation runs
            through it, ``x0`` and the centres included.
        callback: called with each generation's history row; return ``True`` (a Python
            or numpy bool) to stop.
        bounds: box bounds, ``(lower, upper)`` (numbers or one per coordinate) or a dict
            ``{lower, upper, method}``: the strategy's ``bounds`` option (see
            docs/bounds-and-constraints.md); ``x0`` must lie inside.
        constraints: ``g(x) -> (m,)`` (``g(X) -> (n, m)`` with ``vectorized``): feasible
            where every value is ``<= 0``. The strategy ranks by Deb's feasibility-first
            rules; ``x``/``fun`` are the best feasible point when one was seen.
        restarts: ``"ipop"`` or ``"bipop"`` to restart the strategy when its stopping rules
            fire (Auger & Hansen 2005; Hansen 2009; see ``docs/strategies.md``), with a
            larger population (IPOP) or alternating large and small ones (BIPOP), until the
            budget is spent; ``None`` (the default): one run.
        **strategy_options: passed to the strategy (``sigma``, ``learning_rate``,
            ``integer_variables=[0, 3]`` for CMA-ES and sep-CMA-ES: those coordinates of
            every evaluated point, ``x`` and ``center`` are integers, see
            docs/bounds-and-constraints.md, ...);
            an unknown name is refused with a did-you-mean. The strategy's stopping rules
            (``tolfun``, ``tolx``, ... see ``docs/strategies.md``) are on unless
            ``stop_rules=False``; a fired rule ends the search with ``stop_reason``
            ``strategy stopped: <rule> (<why>)``.

    Returns:
        A :class:`MinimizeResult` (its ``success`` says when no finite or no feasible loss
        was found). ``f`` must return a real number (an int or float, numpy's too, or
        anything with ``__float__`` but a bool or a string): ``"1.5"`` and ``True`` fail the
        candidate instead of being coerced.

    Example:
        >>> import numpy as np
        >>> import asktell
        >>> res = asktell.minimize(lambda x: float(np.sum((x - 1) ** 2)), np.zeros(5),
        ...                        budget=4000, sigma=0.5, seed=0)
        >>> bool(res.fun < 1e-8), res.strategy
        (True, 'cma_es')
    """
    x0 = check_arguments(x0, budget, vectorized, target, callback)
    fixed = {"population_size": population_size, "bounds": bounds}
    es = _strategy(strategy, dict(strategy_options), fixed, restarts, x0, seed)
    check_budget_fits(es.population_size, budget)
    task = FunctionTask(f, vectorized=vectorized, minimize=True, constraints=constraints)
    with _evaluator_for(evaluator, task) as ev:
        return _search(es, ev, task, budget, target, callback)


@contextlib.contextmanager
def _evaluator_for(evaluator: str | Any, task: FunctionTask) -> Iterator[Any]:
    """The evaluator the search runs through: built for ``task`` from a registered name and
    closed after the search, or the caller's own instance, left open for the caller."""
    if not isinstance(evaluator, str):
        check_evaluator_task(getattr(evaluator, "task", None), task)
        yield evaluator
        return
    ev = EVALUATORS.get(evaluator)(task)
    try:
        yield ev
    finally:
        ev.close()


def _strategy(
    strategy: str, options: dict[str, Any], fixed: dict[str, Any], restarts: Any,
    x0: np.ndarray, seed: int,
) -> Any:
    """The strategy ``minimize`` runs: ``"auto"`` resolved, every option name checked,
    stopping rules on unless turned off, wrapped in restarts when asked, and the memory its
    options need checked before it allocates anything (CMA-ES sizes its weights by the
    population in its constructor)."""
    if strategy == "auto":
        strategy = auto_strategy(x0.size, options.get("max_factor_bytes"))
    cls = STRATEGIES.get(strategy)
    _check_option_names(cls, strategy, options)
    options.update({k: v for k, v in fixed.items() if v is not None})
    if options.get("stop_rules") is None:
        options["stop_rules"] = True  # a search that has converged stops (pycma's habit)
    if restarts is not None:
        cls, strategy, options = _with_restarts(restarts, strategy, options)
    cfg = cls.config_class.validate_options(cls.__name__, options, context={"num_params": x0.size})
    check_memory(cfg.estimate_bytes(_memory_context(x0.size, cfg.population_for(x0.size))), "minimize")
    return cls(num_params=x0.size, seed=seed, x0=x0, **options)


def auto_strategy(num_params: int, max_factor_bytes: Any = None) -> str:
    """What ``strategy="auto"`` runs for ``num_params`` dimensions: ``"cma_es"`` up to
    :data:`AUTO_FULL_COVARIANCE_MAX` while its ``d x d`` factor fits ``max_factor_bytes``
    (default 256 MiB), else ``"sep_cma_es"`` (diagonal covariance, linear cost)."""
    from asktell.strategies._common import max_dim_for_bytes
    from asktell.strategies._options import DEFAULT_MAX_FACTOR_BYTES

    cap = DEFAULT_MAX_FACTOR_BYTES
    if isinstance(max_factor_bytes, (int, np.integer)) and not isinstance(max_factor_bytes, bool):
        cap = int(max_factor_bytes)
    fits = num_params <= max_dim_for_bytes(cap)
    return "cma_es" if num_params <= AUTO_FULL_COVARIANCE_MAX and fits else "sep_cma_es"


def _with_restarts(mode: Any, strategy: str, options: dict[str, Any]):
    """The ``restarts`` strategy over ``strategy``: its options (bounds included, which shape
    the inner strategy's candidates) go to the inner table; ``stop_rules`` stays outside,
    where it ends the search once no restart is left."""
    if mode not in ("ipop", "bipop"):
        raise ConfigError(
            f"minimize 'restarts' must be 'ipop', 'bipop' or None; got {short_repr(mode)}"
        )
    inner = {"kind": strategy, **{k: v for k, v in options.items() if k != "stop_rules"}}
    outer = {"mode": mode, "strategy": inner, "stop_rules": options["stop_rules"]}
    return STRATEGIES.get("restarts"), "restarts", outer


def _check_option_names(cls: type, strategy: str, options: dict[str, Any]) -> None:
    """Refuse a keyword neither ``minimize`` nor the strategy takes, with a did-you-mean
    over both (a typo of ``budget`` must not read as a strategy option)."""
    from asktell.config_base import option_names

    own = [p for p in inspect.signature(minimize).parameters if p not in ("strategy_options",)]
    theirs = option_names(cls.config_class)
    for name in options:
        if name in theirs:
            continue
        close = difflib.get_close_matches(name, own + theirs, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        others = sorted(
            key for key, other in STRATEGIES.items() if name in option_names(other.config_class)
        )
        elsewhere = f" ({name!r} is an option of {', '.join(others)})" if others else ""
        raise ConfigError(
            f"minimize got an unknown option {name!r} for strategy {strategy!r}{hint}{elsewhere}; "
            f"minimize takes {', '.join(own)}, and {strategy} takes {', '.join(theirs)}"
        )


def _memory_context(num_params: int, population_size: int) -> MemoryContext:
    return MemoryContext(
        num_params=num_params, num_params_field="x0", num_params_value=f"<{num_params} values>",
        population_size=population_size,
    )


def _target_met(best: Any, target: float | None) -> str | None:
    """pycma's ``ftarget``: the best evaluated feasible loss (a candidate, a centre or x0)
    at or below ``target``."""
    if target is None or best.violation > 0 or not best.fun <= target:
        return None
    return f"target {target} reached (best evaluated loss {best.fun:.6g})"


def _asks_to_stop(answer: Any) -> bool:
    """A callback stops the search by returning True (numpy's True too)."""
    return isinstance(answer, (bool, np.bool_)) and bool(answer)


def _why_stop(reasons: dict[str, str], target: float | None) -> str | None:
    """The message a stop check gives (``None``: go on; ``""``: the budget's message)."""
    if not reasons:
        return None
    if "target_return" in reasons:
        return f"target {target} reached"
    if "strategy" in reasons:
        return reasons["strategy"]
    return ""


def _evaluated_center(es: Any) -> np.ndarray:
    """The centre as evaluated: repaired into the strategy's box bounds when it has some
    (the strategy's own centre may lie outside; its evaluation decodes into the box)."""
    dist = es.distribution  # a wrapper's (restarts) carries its inner strategy's bounds
    if dist.bounds is None:
        return np.array(es.center, dtype=np.float64)
    return dist.replace(sigma=0.0, factor=None).decode_one(0)


def _center_violation(task: FunctionTask, x: np.ndarray) -> float:
    """The centre's total constraint violation (0 without constraints). Computed here, not
    through the evaluator: the centre's evaluation reports returns only, and ``g`` is the
    caller's cheap side of the problem."""
    if task.constraints is None:
        return 0.0
    return float(total_violation(task._violations(x[None]))[0])


def _loss(returns: np.ndarray) -> float:
    """The loss of a one-value evaluation: ``-return``; NaN or +-inf kept (never ranked)."""
    return -float(returns[0])


class _BestPoint:
    """The best point seen: Deb's order with constraints (least total violation first,
    then least loss), plain least loss without. A non-finite loss is never the best."""

    def __init__(self, x: np.ndarray, fun: float, violation: float):
        self.x, self.violation = x, violation
        self.fun = fun if math.isfinite(fun) else math.inf

    def offer(self, x: Any, fun: float, violation: float) -> None:
        if math.isfinite(fun) and (violation, fun) < (self.violation, self.fun):
            self.x, self.fun, self.violation = x, float(fun), float(violation)

    def offer_generation(self, record: GenerationRecord) -> np.ndarray:
        """Offer a generation's best candidate; returns the generation's losses."""
        losses = -record.evaluation.returns
        finite = np.isfinite(losses)
        violations = record.evaluation.violations
        violation = np.zeros(losses.size) if violations is None else total_violation(violations)
        if finite.any():
            i = int(np.lexsort((np.where(finite, losses, np.inf), np.where(finite, violation, np.inf)))[0])
            if (violation[i], losses[i]) < (self.violation, self.fun):
                self.offer(record.distribution.decode_one(record.seeds[i]), losses[i], violation[i])
        return losses


def _search(
    es: Any, ev: Any, task: FunctionTask, budget: int, target: float | None, callback: Any
) -> MinimizeResult:
    # Losses in the shared budget's terms: every function evaluation (candidates, x0 and
    # each centre) is an env_step, the target is a return of -target, and the search stops
    # once another generation (its population and its centre) would not fit in ``budget``.
    limits = Budget(
        env_steps=budget - es.population_size,
        target_return=None if target is None else -float(target),
        target_episodes=1,
    )
    # The target is judged on the centre's loss; a function is deterministic, so a
    # confirmation would only repeat that value (and spend an evaluation).
    step = GenerationStep(es, ev, task, budget=limits, judge_center=True, confirm=False)
    x0 = _evaluated_center(es)
    center_fun = _loss(center_returns(ev, task, es.distribution, 1))
    best = _BestPoint(x0, center_fun, _center_violation(task, x0))
    step.progress.env_steps = 1
    history: list[dict[str, float]] = []
    message = f"budget of {budget} evaluations used"
    # The strategy's rules are checked before the first generation too (a sigma below tolx),
    # and the target on x0 itself.
    stop = _target_met(best, target) or _why_stop(step.stop_reasons(), target)
    while stop is None:
        record = step(center_episodes=1)
        step.progress.env_steps += 1  # the centre's evaluation
        losses = best.offer_generation(record)
        center_fun = _loss(record.center_returns)
        if math.isfinite(center_fun):
            x_center = _evaluated_center(es)
            best.offer(x_center, center_fun, _center_violation(task, x_center))
        finite = losses[np.isfinite(losses)]
        row = {
            "generation": es.generation,
            "nfev": step.progress.env_steps,
            "best_fun": best.fun,
            "mean_fun": float(finite.mean()) if finite.size else math.nan,
            "center_fun": center_fun,
            "seconds": step.progress.wall(),
        }
        history.append(row)
        stop = _target_met(best, target) or _why_stop(step.stop_reasons(), target)
        if stop is None and step.progress.env_steps + es.population_size + 1 > budget:
            stop = ""  # a restart may have grown the population past what the budget has left
        if stop is None and callback is not None and _asks_to_stop(callback(row)):
            stop = "stopped by callback"
    message = stop or message
    best_fun, best_x, best_violation = best.fun, best.x, best.violation
    finite = math.isfinite(best_fun)
    # x is then the least infeasible point, not an answer
    success = finite and best_violation <= 0
    if finite and best_violation > 0:
        message = f"no feasible point found (least total violation {best_violation:.3g}); " + message
    if not finite:
        nfev = step.progress.env_steps
        message = (
            f"failed: all {nfev} evaluations returned NaN or an infinite loss (x0, every "
            f"candidate and every centre); check the objective (e.g. at x0); " + message
        )
        best_fun = math.nan
    return MinimizeResult(
        success=success,
        x=np.asarray(best_x, dtype=np.float64),
        fun=best_fun,
        center=_evaluated_center(es),
        center_fun=center_fun,
        nfev=step.progress.env_steps,
        generations=es.generation,
        history=history,
        message=message,
        strategy=es.name,
    )
