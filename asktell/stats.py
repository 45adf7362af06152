"""Running statistics that merge exactly across workers (counts, sums, sums of squares)."""

from __future__ import annotations

import numpy as np

__all__ = ["RunningStat"]

# Every finite float64 is an integer multiple of 2**-1074 (the smallest subnormal), so sums
# kept as Python integers in those units are exact.
_SCALE_BITS = 1074


def _to_units(values: np.ndarray) -> list[int]:
    """Finite float64 values as exact integers in units of ``2**-1074``."""
    out = []
    for v in values.tolist():
        if v != v or v in (np.inf, -np.inf):
            raise ValueError(
                f"RunningStat: a sum or sum of squares of one push is {v!r} (observations "
                "beyond about 1e154 overflow float64 when squared)"
            )
        p, q = float(v).as_integer_ratio()  # q is a power of two
        out.append(p << (_SCALE_BITS - q.bit_length() + 1))
    return out


def _to_float(units: list[int], divisor: int = 1) -> np.ndarray:
    """``units * 2**-1074 / divisor`` correctly rounded to float64 (int division is)."""
    d = divisor << _SCALE_BITS
    out = np.empty(len(units), dtype=np.float64)
    for i, u in enumerate(units):
        try:
            out[i] = u / d
        except OverflowError:  # beyond float64: as float arithmetic would say
            out[i] = np.inf if u > 0 else -np.inf
    return out


def _expansion(units: list[int]) -> np.ndarray:
    """Exact units as rows of non-overlapping float64 components (their sum is exact).

    How exact totals travel in ``.npz`` checkpoints: no pickle, no big-integer strings.
    """
    rows = []
    for u in units:
        parts = []
        while u:
            f = float(_to_float([u])[0])
            if f == 0.0:  # below the smallest subnormal: cannot happen for sums of floats
                break
            parts.append(f)
            u -= _to_units(np.array([f]))[0]
        rows.append(parts)
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), max(width, 1)), dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class RunningStat:
    """Mean and standard deviation of vectors, mergeable across processes, exactly.

    ``count``, ``sum`` and ``sumsq`` are kept exactly (the sums as integers in units of
    ``2**-1074``, which every float64 is a multiple of), so totals do not depend on how the
    pushes were grouped or ordered: the statistics of a generation are bitwise the same
    whether one process gathered them or several workers' chunks were merged, in any order.
    A push adds one float64 sum over its rows (numpy's, rounded once); evaluators push one
    episode at a time, so the same episodes give the same totals in every evaluator.

    Args:
        shape: shape of one observation.
        std_floor: the smallest standard deviation reported (avoids dividing by ~0).
    """

    def __init__(self, shape: tuple[int, ...], std_floor: float = 1e-2):
        self.shape = tuple(shape)
        self.std_floor = float(std_floor)
        self._n = int(np.prod(self.shape, dtype=np.int64))
        self._count = 0
        self._sum = [0] * self._n
        self._sumsq = [0] * self._n

    def push(self, x: np.ndarray) -> None:
        """Add one observation, or a batch whose leading axis is the batch."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape == self.shape:
            x = x[None]
        if not np.isfinite(x).all():
            bad = float(x[~np.isfinite(x)].reshape(-1)[0])
            raise ValueError(f"RunningStat takes finite observations; got {bad!r}")
        rows = x.reshape(x.shape[0], self._n)
        with np.errstate(over="ignore"):  # an overflow is reported by _to_units
            sums = (rows.sum(axis=0), np.square(rows).sum(axis=0))
        units = [_to_units(v) for v in sums]  # all checked before anything is added
        for acc, add in zip((self._sum, self._sumsq), units):
            for i, u in enumerate(add):
                acc[i] += u
        self._count += int(x.shape[0])

    def merge(self, other: RunningStat) -> None:
        """Add another worker's statistics to these (exact: any order gives the same)."""
        for acc, add in ((self._sum, other._sum), (self._sumsq, other._sumsq)):
            for i, u in enumerate(add):
                acc[i] += u
        self._count += other._count

    @property
    def count(self) -> float:
        return float(self._count)

    @property
    def sum(self) -> np.ndarray:
        """The exact sum, rounded once to float64."""
        return _to_float(self._sum).reshape(self.shape)

    @property
    def sumsq(self) -> np.ndarray:
        return _to_float(self._sumsq).reshape(self.shape)

    @property
    def mean(self) -> np.ndarray:
        return _to_float(self._sum, max(self._count, 1)).reshape(self.shape)

    @property
    def std(self) -> np.ndarray:
        ex2 = _to_float(self._sumsq, max(self._count, 1)).reshape(self.shape)
        var = ex2 - np.square(self.mean)
        return np.sqrt(np.maximum(var, self.std_floor**2))

    def state_dict(self) -> dict[str, np.ndarray | float]:
        """``count``, ``sum`` and ``sumsq`` (rounded, for reading) and the exact sums as
        float64 expansions (``sum_exact``, ``sumsq_exact``: each row adds up exactly)."""
        return {
            "count": self.count,
            "sum": self.sum,
            "sumsq": self.sumsq,
            "sum_exact": _expansion(self._sum),
            "sumsq_exact": _expansion(self._sumsq),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; without the exact entries (older checkpoints) the
        rounded sums are taken as exact."""
        count = float(state["count"])
        if not (count >= 0 and count == int(count)):
            raise ValueError(f"RunningStat 'count' must be a whole number >= 0; got {count!r}")
        totals = {}
        for name in ("sum", "sumsq"):
            exact = state.get(f"{name}_exact")
            if exact is not None:
                parts = np.asarray(exact, dtype=np.float64).reshape(self._n, -1)
            else:
                parts = np.asarray(state[name], dtype=np.float64).reshape(self._n, 1)
            if not np.isfinite(parts).all():
                raise ValueError(f"RunningStat '{name}' must be finite")
            totals[name] = [sum(_to_units(row)) for row in parts]
        if any(u < 0 for u in totals["sumsq"]):
            raise ValueError("RunningStat 'sumsq' must be >= 0 (a sum of squares)")
        # All checked: assign together, so a refused state leaves these statistics as they were.
        self._count, self._sum, self._sumsq = int(count), totals["sum"], totals["sumsq"]
