"""What ``tell`` is given, checked: the returns, the violations and the candidates dropped
(:class:`ToldMixin`), the non-finite policy (:func:`rank_nonfinite_worst`), and what the
update learns from (the bounds penalty and the feasibility-first order applied)."""

from __future__ import annotations

from typing import Any

import numpy as np

from asktell.constraints import as_violations, feasibility_first
from asktell.errors import AskTellOrderError, ReturnsError
from asktell.protocol import Evaluation, as_returns

__all__ = ["ToldMixin", "rank_nonfinite_worst"]


class ToldMixin:
    """``tell``'s argument checks and its screening of the returns (see
    :class:`~strategies._base.BaseStrategy` for the attributes they read: ``_pending``,
    ``generation``, ``nonfinite``, ``capabilities``, ``bounds``)."""

    def _tell_inputs(self, returns: Any, violations: Any, dropped: Any) -> tuple:
        """``tell``'s arguments checked: ``(seeds, returns, violations, told)`` of the
        candidates told (``told``: the mask over the asked ones, ``None`` when none was
        dropped by name)."""
        if self._pending is None:
            what = "before ask()" if self.generation == 0 else "twice for one ask()"
            raise AskTellOrderError(
                f"tell() called {what} (generation {self.generation}); call ask() first"
            )
        r = as_returns(returns, expected=self._pending.size, generation=self.generation)
        if violations is None and isinstance(returns, Evaluation):
            violations = returns.violations
        if violations is not None:
            violations = as_violations(violations, self._pending.size, "tell() violations")
        if dropped is None and isinstance(returns, Evaluation):
            dropped = returns.dropped
        told = None if dropped is None else self._told_mask(dropped)
        seeds = self._pending
        if told is not None and not told.all():
            seeds, r = seeds[told], r[told]
            violations = None if violations is None else violations[told]
        return seeds, r, violations, told

    def _screen_nonfinite(
        self, seeds: np.ndarray, r: np.ndarray, order: np.ndarray, ordered: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """``tell``'s path for a generation whose sorted returns do not end finite: the
        non-finite ones ranked worst (or refused, by ``nonfinite``), the best so far noted
        among the finite ones, and the finite returns with their own sort:
        ``(r, finite returns, order, ordered, number non-finite)``."""
        finite = np.isfinite(r)
        num_bad = r.size - int(np.count_nonzero(finite))
        if num_bad:
            r = self._nonfinite_worst(seeds, r, finite, num_bad)
        self._note_best(seeds, r, finite, num_bad)
        fin = r
        if num_bad:
            fin = r[finite]
            order = fin.argsort()
            ordered = fin[order]
        return r, fin, order, ordered, num_bad

    def _learning_returns(
        self, r: np.ndarray, seeds: np.ndarray, violations: np.ndarray | None
    ) -> np.ndarray:
        """What the update learns from: the returns, penalised by the repaired distance
        under ``bounds`` method ``"penalty"``, in Deb's feasibility-first order when
        constraint values came with them; ``r`` itself when neither applies."""
        learn = r
        if self.bounds is not None and self.bounds.method == "penalty":
            learn = self._penalised(r, seeds)
        if violations is not None:
            learn = feasibility_first(learn, violations)
        return learn

    def _nonfinite_worst(
        self, seeds: np.ndarray, r: np.ndarray, finite: np.ndarray, num_bad: int
    ) -> np.ndarray:
        """Returns with ``num_bad`` non-finite ones: ranked worst (``nonfinite="worst"``), or
        a :class:`~asktell.errors.ReturnsError` naming them (``"raise"``)."""
        if self.nonfinite == "raise":
            bad = np.flatnonzero(~finite)
            shown = ", ".join(f"#{i} (seed {int(seeds[i])}): {r[i]}" for i in bad[:10])
            more = f" and {bad.size - 10} more" if bad.size > 10 else ""
            where = " (indices among the told candidates)" if seeds is not self._pending else ""
            raise ReturnsError(
                f"tell() got {num_bad} non-finite returns in generation {self.generation}"
                f"{where}: {shown}{more}; pass nonfinite='worst' to rank them last instead"
            )
        return rank_nonfinite_worst(r, finite)

    def _told_mask(self, dropped: Any) -> np.ndarray:
        """The candidates told (``~dropped``), validated: one bool per asked seed, at least
        one told, and a dropped one only for a strategy with ``"partial_tell"``."""
        n, name = self._pending.size, type(self).__name__  # type: ignore[union-attr]
        mask = np.asarray(dropped)
        if mask.dtype != bool or mask.shape != (n,):
            raise ReturnsError(
                f"tell() 'dropped' must be a bool array of shape ({n},), one per asked seed "
                f"(generation {self.generation}); got dtype {mask.dtype}, shape {mask.shape}"
            )
        if mask.all():
            raise ReturnsError(
                f"tell() got 'dropped' marking all {n} candidates of generation "
                f"{self.generation}; at least one must be told"
            )
        if mask.any() and "partial_tell" not in self.capabilities:
            raise ReturnsError(
                f"{name} cannot learn from a subset of its population (it lacks the "
                f"'partial_tell' capability) but tell() got {int(mask.sum())} dropped "
                f"candidate(s) of {n} in generation {self.generation}; use a strategy that "
                "has it (e.g. openai_es) or turn off the evaluator's 'stragglers' option"
            )
        return ~mask


def rank_nonfinite_worst(returns: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Replace non-finite returns by a value strictly below every finite one.

    With no finite return at all, every candidate gets the same value, so rank-based and
    centred shapings give an exact zero update.
    """
    r = returns.copy()
    if not finite.any():
        r[:] = 0.0
        return r
    lo, hi = float(r[finite].min()), float(r[finite].max())
    gap = max(hi - lo, abs(lo) * 1e-6, 1e-6)
    r[~finite] = lo - gap
    return r
