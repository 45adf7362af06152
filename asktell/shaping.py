"""Fitness shaping: pure functions from raw returns to update weights.

Every function returns float64 weights of the same length, larger for better candidates
(returns are maximised), and exactly zero everywhere when all returns are equal, so a
generation without information moves nothing. Ties share the average of their weights, so
the result does not depend on the order candidates arrived in.

Huge finite returns never overflow: the shapings that do arithmetic on return values
(``z_score``, ``raw``) first bring returns larger than :data:`TAME_LIMIT` down by an exact
power of two (:func:`tame`), so a return near the float64 limit gives finite weights.
Ordinary returns are untouched (bitwise the same weights as before).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from asktell.errors import ConfigError

__all__ = [
    "average_ranks",
    "rank_weights",
    "centered_ranks",
    "centered_ranks_sorted",
    "SortedReturns",
    "z_score",
    "nes_utilities",
    "raw",
    "SHAPINGS",
    "ShapingChoice",
    "get_shaping",
    "tame",
    "TAME_LIMIT",
]

#: Largest magnitude of values that shaping arithmetic uses as they are: far beyond any
#: real return, yet small enough that squares, sums over a population, the step sizes they
#: make and an optimiser's second moment all stay finite in float64.
TAME_LIMIT = 2.0**200


def tame(values: np.ndarray, limit: float = TAME_LIMIT) -> np.ndarray:
    """``values`` scaled by an exact power of two so that the largest magnitude is at most
    ``limit``; returned unchanged (the same array) when already within it.

    A power of two keeps every value's order, ties and relative size (only values
    ``2**-1000`` times smaller than the largest can underflow, which no ranking between
    returns of ~1e300 can notice), so scale-invariant arithmetic gives the same result.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    if largest <= limit:
        return values
    exponent = math.frexp(largest)[1] - math.frexp(limit)[1] + 1  # largest * 2**-exponent < limit
    return np.ldexp(values, -exponent)


def _tie_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order of ``x`` and, per sorted position, the start and end of its run of ties."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    new_run = np.empty(x.size, dtype=bool)
    new_run[:1] = True
    np.not_equal(sorted_x[1:], sorted_x[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], x.size)
    run_id = np.cumsum(new_run) - 1
    return order, starts[run_id], ends[run_id]


def rank_weights(x: np.ndarray, by_rank: np.ndarray) -> np.ndarray:
    """Give the element of rank ``i`` (0 = smallest) the weight ``by_rank[i]``.

    Tied elements share the mean of the weights of the ranks they span, so the result does
    not depend on the order in which tied candidates arrived.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order, start, end = _tie_groups(x)
    csum = np.concatenate(([0.0], np.cumsum(np.asarray(by_rank, dtype=np.float64))))
    out = np.empty(x.size, dtype=np.float64)
    out[order] = (csum[end] - csum[start]) / (end - start)
    return out


def average_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks (0 = smallest); tied values get the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    # Without ties every sort gives the same order, so the faster unstable sort serves the
    # check; with ties, _tie_groups sorts stably.
    order = np.argsort(x)
    sorted_x = x[order]
    if np.all(sorted_x[1:] != sorted_x[:-1]):  # no ties: the common case, one scatter
        ranks = np.empty(x.size, dtype=np.float64)
        ranks[order] = np.arange(x.size, dtype=np.float64)
        return ranks
    order, start, end = _tie_groups(x)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = (start + end - 1) / 2.0
    return ranks


def _all_equal(x: np.ndarray) -> bool:
    return x.size == 0 or bool(np.all(x == x[0]))


_LINEAR_CACHE: dict[int, np.ndarray] = {}


def _centered_linear(n: int) -> np.ndarray:
    """``arange(n) / (n - 1) - 0.5``, read-only, computed once per ``n`` (a few sizes per
    process: the populations in use)."""
    cached = _LINEAR_CACHE.get(n)
    if cached is None:
        cached = np.arange(n, dtype=np.float64) / (n - 1) - 0.5
        cached.flags.writeable = False
        if len(_LINEAR_CACHE) < 64:
            _LINEAR_CACHE[n] = cached
    return cached


def centered_ranks(returns: np.ndarray) -> np.ndarray:
    """The paper's centred ranks: ranks scaled to ``[-0.5, 0.5]`` (Salimans et al. 2017)."""
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if r.size < 2:
        return np.zeros(r.size)
    order = r.argsort()
    return centered_ranks_sorted(r, order, r[order])


class SortedReturns(NamedTuple):
    """A 1-D float64 array of returns with its ``values.argsort()`` (``order``) and
    ``values[order]`` (``ordered``), computed once per generation and shared."""

    values: np.ndarray
    order: np.ndarray
    ordered: np.ndarray


def centered_ranks_sorted(r: np.ndarray, order: np.ndarray, sorted_r: np.ndarray) -> np.ndarray:
    """:func:`centered_ranks` of a 1-D float64 ``r`` whose ``r.argsort()`` (``order``) and
    ``r[order]`` (``sorted_r``) the caller already has (``tell`` sorts the returns once for
    this and the stopping history); bitwise the same.
    """
    n = r.size
    if n < 2:
        return np.zeros(n)  # one candidate (a partial tell): no ranking, no step
    # No two neighbours equal: the first True of the comparison (argmax, one C method call;
    # .any() and np.count_nonzero add Python layers) is not True.
    equal = np.equal(sorted_r[1:], sorted_r[:-1])
    if not equal.item(equal.argmax()):
        # No ties (the common case): rank i gets i / (n - 1) - 0.5, the same arithmetic as
        # below, done on the ranks before they are scattered (one pass fewer per generation;
        # the values per n are computed once and kept).
        linear = _LINEAR_CACHE.get(n)
        out = np.empty(n)
        out[order] = linear if linear is not None else _centered_linear(n)
        return out
    if _all_equal(r):
        return np.zeros(r.size)
    return average_ranks(r) / (r.size - 1) - 0.5


def z_score(returns: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """``(r - mean) / (std + eps)`` (scale-free: huge returns are tamed first)."""
    r = tame(np.asarray(returns, dtype=np.float64).reshape(-1))
    if _all_equal(r):
        return np.zeros(r.size)
    return (r - r.mean()) / (r.std() + eps)


def nes_utilities(returns: np.ndarray) -> np.ndarray:
    """NES utilities (Wierstra et al. 2014, eq. 11), summing to zero.

    ``u_k = max(0, log(n/2 + 1) - log k) / sum_j max(0, log(n/2 + 1) - log j) - 1/n`` for the
    candidate of rank ``k`` (1 = best).
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    n = r.size
    if n < 2 or _all_equal(r):
        return np.zeros(n)
    k = np.arange(1, n + 1)
    u = np.maximum(0.0, np.log(n / 2.0 + 1.0) - np.log(k))
    u = u / u.sum() - 1.0 / n
    # u is indexed best-first; rank_weights indexes smallest-first.
    return rank_weights(r, u[::-1])


def raw(returns: np.ndarray) -> np.ndarray:
    """The returns themselves, centred (mean subtracted) so equal returns give zero.

    Returns beyond :data:`TAME_LIMIT` are scaled down by a power of two first (the weights
    keep their direction and proportions; a step of their true size would not be finite).
    """
    r = tame(np.asarray(returns, dtype=np.float64).reshape(-1))
    if _all_equal(r):
        return np.zeros(r.size)
    return r - r.mean()


SHAPINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "centered_ranks": centered_ranks,
    "z_score": z_score,
    "nes_utilities": nes_utilities,
    "raw": raw,
}

#: What a strategy's ``shaping`` option accepts: a name from :data:`SHAPINGS`.
ShapingChoice = Literal[tuple(SHAPINGS)]  # type: ignore[valid-type]


def get_shaping(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Look a shaping function up by name, with a did-you-mean on typos."""
    try:
        return SHAPINGS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, SHAPINGS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown fitness shaping {name!r}{hint} (known: {', '.join(SHAPINGS)})"
        ) from None
