"""The argument checks of :func:`asktell.minimize`: every argument's type and rule, before
anything (a cluster, a strategy's arrays) is built, each refusal naming the argument, the
rule and the value received."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from asktell.config_base import short_repr
from asktell.errors import ConfigError
from asktell.tasks import FunctionTask

__all__ = ["check_arguments", "check_budget_fits", "check_evaluator_task"]


def check_arguments(x0: Any, budget: Any, vectorized: Any, target: Any, callback: Any):
    """``x0`` as float64; every argument's type and rule checked (no coercion)."""
    arr = np.asarray(x0)
    if arr.dtype.kind not in "iuf":
        raise ConfigError(
            f"minimize 'x0' must be real numbers; got {short_repr(x0)} (dtype {arr.dtype})"
        )
    if arr.ndim > 1:
        raise ConfigError(
            f"minimize 'x0' must be a 1-D array (one value per parameter); got shape {arr.shape}"
        )
    x0 = arr.astype(np.float64).reshape(-1)
    if x0.size == 0:
        raise ConfigError("minimize 'x0' must have at least one value; got an empty array")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"minimize 'budget' must be an int >= 1; got {short_repr(budget)}")
    if not isinstance(vectorized, (bool, np.bool_)):
        raise ConfigError(f"minimize 'vectorized' must be True or False; got {short_repr(vectorized)}")
    if target is not None and (
        isinstance(target, (bool, np.bool_))
        or not isinstance(target, (int, float, np.integer, np.floating))
        or not math.isfinite(target)
    ):
        raise ConfigError(f"minimize 'target' must be a finite number or None; got {short_repr(target)}")
    if callback is not None and not callable(callback):
        raise ConfigError(f"minimize 'callback' must be callable; got {type(callback).__name__}")
    return x0


def check_budget_fits(population_size: int, budget: int) -> None:
    """Refuse a budget without room for one generation and its centre (before an evaluator,
    perhaps a cluster, is started for a search that cannot run)."""
    if population_size + 1 > budget:
        raise ConfigError(
            f"minimize 'budget' must allow one generation of population_size="
            f"{population_size} plus one centre evaluation; got {budget}"
        )


def check_evaluator_task(theirs: Any, task: FunctionTask) -> None:
    """A caller's evaluator must evaluate this ``f`` as a loss (with these constraints):
    its task is what it runs, whatever ``f`` says. An evaluator that does not show its task
    (no ``task`` attribute) is the caller's business."""
    if theirs is None:
        return
    want = "FunctionTask(f, minimize=True" + (", constraints=constraints)" if task.constraints else ")")
    if not isinstance(theirs, FunctionTask) or theirs.f is not task.f:
        got = type(theirs).__name__ if not isinstance(theirs, FunctionTask) else "another function"
        raise ConfigError(
            f"minimize 'evaluator' must be built for {want} of the f being minimised (it "
            f"evaluates its own task, not f); got one built for {got}"
        )
    if not theirs.minimize:
        raise ConfigError(
            f"minimize 'evaluator' must be built for {want}: its FunctionTask has "
            "minimize=False, so it would return f itself and the search would maximise the loss"
        )
    if theirs.constraints is not task.constraints:
        def name(g: Any) -> str:
            return "none" if g is None else getattr(g, "__name__", type(g).__name__)

        raise ConfigError(
            f"minimize 'evaluator' must be built for {want}: its FunctionTask's constraints "
            f"are {name(theirs.constraints)}, minimize was given {name(task.constraints)}"
        )
