"""Constraints ``g(x) <= 0``, handled by feasibility-first ranking (Deb's rules).

Deb, K. (2000). "An efficient constraint handling method for genetic algorithms." Computer
Methods in Applied Mechanics and Engineering 186: 311-338. Between two candidates:

1. a feasible one (every ``g_j(x) <= 0``) beats an infeasible one;
2. of two feasible ones, the better return wins;
3. of two infeasible ones, the smaller total violation ``sum_j max(g_j(x), 0)`` wins.

Why this method and not an augmented Lagrangian (pycma's ``AugmentedLagrangian``): the
ranking needs no state (nothing to checkpoint, so resume stays exact without new keys), no
multipliers or penalty coefficients to tune, and it works with every strategy because every
built-in strategy learns from the ranks of its returns (centred ranks, CMA weights). The
price: near an active constraint, a strategy sees no gradient across the boundary, so it
converges there more slowly than a well-tuned Lagrangian would.

The rule is applied as a transform of the returns a strategy learns from: feasible returns
are kept; infeasible ones are placed below the worst feasible return of the generation, in
order of their total violation. A task reports the violations beside its returns
(:attr:`asktell.protocol.Evaluation.violations`); a failed candidate's violation is NaN and
it stays ranked last.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asktell.errors import ReturnsError

__all__ = ["total_violation", "feasibility_first", "as_violations"]


def total_violation(violations: np.ndarray) -> np.ndarray:
    """``sum_j max(g_j, 0)`` per row (0 for a feasible candidate; inf where a value is NaN)."""
    v = np.asarray(violations, dtype=np.float64)
    total = np.sum(np.maximum(v, 0.0), axis=1)
    return np.where(np.isnan(v).any(axis=1), np.inf, total)


def feasibility_first(returns: np.ndarray, violations: np.ndarray) -> np.ndarray:
    """Returns whose order is Deb's: feasible ones unchanged, infeasible ones below every
    feasible one (and below every finite return), ordered by total violation.

    Non-finite returns stay as they are (the non-finite policy has ranked them already).
    """
    r = np.array(returns, dtype=np.float64)
    total = total_violation(violations)
    infeasible = total > 0
    if not infeasible.any():
        return r
    ok = np.isfinite(r)
    feasible_finite = r[ok & ~infeasible]
    floor = float(feasible_finite.min()) if feasible_finite.size else float(np.min(r[ok], initial=0.0))
    spread = float(np.ptp(r[ok])) if ok.any() else 0.0
    # One unit below the floor per unit of violation, in units of the returns' spread so
    # magnitude-using shapings see a sensible scale; the order is what matters.
    unit = max(spread, 1e-12 * (1.0 + abs(floor)), 1e-300)
    bad = infeasible & ok
    finite_total = np.where(np.isfinite(total), total, np.nan)
    worst = np.nanmax(finite_total[bad]) if np.isfinite(finite_total[bad]).any() else 0.0
    # A NaN violation (a failed g) ranks below every measured violation.
    t = np.where(np.isfinite(total), total, 2 * worst + 1)
    r[bad] = floor - unit * (1.0 + t[bad])
    return r


def as_violations(values: Any, n: int, what: str = "constraints") -> np.ndarray:
    """``values`` as a float64 ``(n, m)`` array of constraint values (``m >= 1``)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise ReturnsError(
            f"{what} must return real numbers (g(x) <= 0 is feasible); got dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64)
    if arr.ndim == 0 or (arr.ndim == 1 and n == 1):
        arr = arr.reshape(1, -1)  # one candidate's values
    elif arr.ndim == 1 and arr.size == n:
        arr = arr.reshape(n, 1)  # one constraint, a value per candidate
    if arr.shape[0] != n or arr.ndim != 2 or arr.shape[1] < 1:
        raise ReturnsError(f"{what} returned shape {np.shape(values)} for {n} candidates")
    return arr
