"""Box bounds ``lower <= x <= upper``, applied inside :meth:`Distribution.decode`.

A strategy still samples in the unbounded space (its seeds name unbounded offsets); the
bounded candidate is a pure function of the unbounded one, computed in ``decode``. So every
evaluator and every process (serial, vector, Dask workers) computes the same bounded
parameters bit for bit: the bounds travel in the :class:`~asktell.distribution.Distribution`.

Repair methods (the ones pycma users know; see pycma's ``BoundTransform`` and
``BoundPenalty`` documentation, and Hansen, "The CMA Evolution Strategy: A Tutorial", on
boundary handling). Each is written here from its formula:

* ``clip``: ``x`` is set to the nearest point of the box.
* ``mirror``: ``x`` is reflected at the bounds (periodically, so any distance lands inside).
* ``transform``: pycma's periodic quadratic-linear transformation: the identity in the
  interior, a quadratic that bends smoothly onto the bound within a margin of each bound,
  and periodic mirroring beyond. Smooth, so the search sees no kinks at the bound.
* ``penalty``: the candidate is clipped for evaluation, and the strategy learns from
  ``return - gamma * mean((x - clip(x))**2)``, with ``gamma`` set each generation from the
  spread of the returns (twice their interquartile range over the mean squared step, the
  scale pycma's ``BoundPenalty`` starts from), so an infeasible sample ranks below the
  feasible one it was clipped to.

With every method the strategy's update uses the unrepaired samples (its seeds), which is
what pycma does with CMA-ES: the repair changes what is evaluated, never the sample.

Integer coordinates (the ``integer_variables`` option of CMA-ES and sep-CMA-ES, pycma's
option of that name) are one more elementwise step of the same repair: after the box repair
they are rounded to the nearest integer (``np.round``, halves to even, as pycma rounds) and
kept within ``[ceil(lower), floor(upper)]``, so a rounded value never leaves the box. A box
that holds no integer in an integer coordinate is refused. Without box bounds, a
:class:`Bounds` with infinite limits and only integer coordinates does the rounding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from asktell.config_base import Float, StrictModel, short_repr
from asktell.errors import ConfigError

__all__ = ["Bounds", "BoundsConfig", "BOUND_METHODS"]

BOUND_METHODS = ("clip", "mirror", "transform", "penalty")


#: What a one-sided box (pycma's ``None`` or ``inf``) needs here.
_ONE_SIDED = "; a side without a bound takes a far value (e.g. 1e6): None and inf are not bounds"


def _finite_number_problem(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        return "must be a number"
    return None if math.isfinite(value) else "must be a finite number"


def _one_sided(value: Any) -> str:
    infinite = isinstance(value, (float, np.floating)) and math.isinf(value)
    return _ONE_SIDED if value is None or infinite else ""


def _number_or_numbers(value: Any) -> Any:
    """One number, or one per coordinate: a bad value is one error naming its coordinate
    (the union would otherwise report each member's complaint, the first misleading)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        values = list(np.asarray(value).tolist() if isinstance(value, np.ndarray) else value)
        for i, v in enumerate(values):
            problem = _finite_number_problem(v)
            if problem is not None:
                raise ValueError(f"coordinate {i} {problem}; got {short_repr(v)}{_one_sided(v)}")
        return [float(v) for v in values]
    problem = _finite_number_problem(value)
    if problem is not None:
        raise ValueError(
            f"{problem} or a list of numbers; got {short_repr(value)}{_one_sided(value)}"
        )
    return float(value)


#: One number for every coordinate, or one per coordinate.
NumberOrNumbers = Annotated[Float | list[Float], BeforeValidator(_number_or_numbers)]


class BoundsConfig(StrictModel):
    """Box bounds on the parameters (the ``bounds`` option of every strategy)."""

    lower: NumberOrNumbers = Field(
        description="Lower bound: one number for every coordinate, or one per coordinate."
    )
    upper: NumberOrNumbers = Field(
        description="Upper bound: one number for every coordinate, or one per coordinate."
    )
    method: Literal["clip", "mirror", "transform", "penalty"] = Field(
        "transform",
        description="How a candidate outside the box is repaired: 'clip' (nearest point), "
        "'mirror' (reflect at the bounds), 'transform' (pycma's smooth periodic "
        "quadratic-linear map, the default), 'penalty' (clip for evaluation, the strategy "
        "learns from the return minus a penalty on the clipped distance).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Any:
        """`lower` must be below `upper` in every coordinate (an empty interval leaves
        nothing to search)."""
        lo, up = np.atleast_1d(self.lower), np.atleast_1d(self.upper)
        if lo.size != up.size and lo.size != 1 and up.size != 1:
            raise ValueError(
                f"lower has {lo.size} values and upper {up.size}; give one number or one "
                "per coordinate for each"
            )
        lo, up = np.broadcast_arrays(lo, up)
        bad = np.flatnonzero(~(lo < up))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"lower must be < upper in every coordinate; coordinate {i} has "
                f"lower={lo[i]} and upper={up[i]}"
            )
        return self

    def build(self, num_params: int, owner: str = "bounds") -> Bounds:
        """The live :class:`Bounds` for ``num_params`` coordinates."""
        arrays = []
        for name in ("lower", "upper"):
            a = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            if a.size == 1:
                a = np.full(num_params, a[0])
            if a.size != num_params:
                raise ConfigError(
                    f"{owner} 'bounds.{name}' must be one number or num_params={num_params} "
                    f"numbers; got {a.size}"
                )
            arrays.append(a)
        return Bounds(arrays[0], arrays[1], self.method)


def bounds_from(value: Any) -> Any:
    """Accept ``(lower, upper)`` (a pair) as well as a mapping or a :class:`BoundsConfig`."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return {"lower": _plain(value[0]), "upper": _plain(value[1])}
    return value


def _plain(v: Any) -> Any:
    return np.asarray(v).tolist() if isinstance(v, np.ndarray) else v


@dataclasses.dataclass(frozen=True, eq=False)
class Bounds:
    """Validated per-coordinate bounds and a repair method (frozen, picklable)."""

    lower: np.ndarray
    upper: np.ndarray
    method: str = "transform"
    #: Indices of the integer coordinates, rounded after the box repair (empty: none).
    integer: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            a = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        if self.method not in BOUND_METHODS:
            raise ConfigError(f"bounds 'method' must be one of {BOUND_METHODS}; got {self.method!r}")
        # A box at all (an infinite one only carries integer coordinates; its repair is the
        # identity, so the box arithmetic is skipped and no bit of x changes).
        boxed = bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())
        object.__setattr__(self, "_boxed", boxed)
        self._set_integer()
        # pycma's margins of the quadratic pieces: a twentieth of (1 + |bound|), at most half
        # the width, so both pieces fit in the interval.
        half = (self.upper - self.lower) / 2
        object.__setattr__(self, "_al", np.minimum(half, (1 + np.abs(self.lower)) / 20))
        object.__setattr__(self, "_au", np.minimum(half, (1 + np.abs(self.upper)) / 20))

    def _set_integer(self) -> None:
        """Validate the integer indices and the integer range each one keeps."""
        index = np.array(self.integer, dtype=np.int64).reshape(-1)
        n = self.lower.size
        if index.size and (index.min() < 0 or index.max() >= n or np.unique(index).size != index.size):
            raise ConfigError(
                f"'integer_variables' must be distinct indices in [0, {n}); got {index.tolist()}"
            )
        index.flags.writeable = False
        object.__setattr__(self, "integer", index)
        low, high = np.ceil(self.lower[index]), np.floor(self.upper[index])
        empty = np.flatnonzero(low > high)
        if empty.size:
            i = int(index[empty[0]])
            raise ConfigError(
                f"'integer_variables' coordinate {i} has bounds [{self.lower[i]}, "
                f"{self.upper[i]}], which hold no integer; widen them or drop the coordinate"
            )
        object.__setattr__(self, "_integer_low", low)
        object.__setattr__(self, "_integer_high", high)

    @classmethod
    def with_integer(cls, bounds: Bounds | None, integer: Any, num_params: int) -> Bounds | None:
        """``bounds`` (``None``: no box) with the coordinates ``integer`` rounded as well;
        ``bounds`` itself when ``integer`` is empty."""
        if integer is None or len(integer) == 0:
            return bounds
        if bounds is None:
            inf = np.full(num_params, np.inf)
            return cls(-inf, inf, "clip", integer)
        return cls(bounds.lower, bounds.upper, bounds.method, integer)

    def check_point(self, x: np.ndarray, owner: str, name: str = "x0") -> None:
        """Refuse a point outside the box, naming the first coordinate that is."""
        outside = np.flatnonzero((x < self.lower) | (x > self.upper))
        if outside.size:
            i = int(outside[0])
            raise ConfigError(
                f"{owner} '{name}' must lie within bounds; coordinate {i} is {x[i]}, outside "
                f"[{self.lower[i]}, {self.upper[i]}] ({outside.size} coordinates outside)"
            )

    def repair(self, x: np.ndarray) -> np.ndarray:
        """The bounded rows of ``x`` (n, num_params), integer coordinates rounded;
        elementwise, so a row's value never depends on the other rows of the batch. ``x``
        may be changed in place."""
        if self._boxed:
            x = self._repair_box(x)
        if self.integer.size:
            i = self.integer
            # + 0.0 turns the -0.0 that rounding gives (-0.3 -> -0.0) into 0.0.
            x[..., i] = np.clip(np.round(x[..., i]), self._integer_low, self._integer_high) + 0.0
        return x

    def _repair_box(self, x: np.ndarray) -> np.ndarray:
        lo, up = self.lower, self.upper
        if self.method in ("clip", "penalty"):
            return np.clip(x, lo, up, out=x)
        if self.method == "mirror":
            width = up - lo
            y = np.mod(x - lo, 2 * width)
            # Points inside keep their exact value (the modulo would round their last bit).
            inside = (x >= lo) & (x <= up)
            return np.where(inside, x, lo + np.where(y > width, 2 * width - y, y))
        return self._transform(x)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        lo, up, al, au = self.lower, self.upper, self._al, self._au
        # Shift periodically into [lo - al, up + au] mirrored: period 2 (up - lo + al + au).
        start = lo - al
        period = 2 * (up - lo + al + au)
        y = np.mod(x - start, period)
        half = period / 2
        inside = (x >= start) & (x <= up + au)
        y = np.where(inside, x, start + np.where(y > half, period - y, y))
        # Quadratic near each bound, identity between: continuous with continuous slope.
        below = y < lo + al
        above = y > up - au
        out = np.where(below, lo + (y - (lo - al)) ** 2 / (4 * al), y)
        return np.where(above, up - (y - (up + au)) ** 2 / (4 * au), out)

    def penalty(self, raw: np.ndarray, returns: np.ndarray, step_variance: float) -> np.ndarray:
        """Penalties (>= 0, one per row of the unrepaired ``raw``) for ``method='penalty'``."""
        distance = np.mean((raw - np.clip(raw, self.lower, self.upper)) ** 2, axis=1)
        finite = returns[np.isfinite(returns)]
        spread = float(np.subtract(*np.percentile(finite, [75, 25]))) if finite.size else 0.0
        # A floor keeps the order right when every return is equal (all clipped to one
        # point): ranking strategies need only a positive gamma.
        scale = max(spread, 1e-12 * (1.0 + float(np.max(np.abs(finite), initial=0.0))))
        return (2.0 * scale / max(step_variance, 1e-300)) * distance

    def spec(self) -> dict[str, Any]:
        spec = {"lower": self.lower.tolist(), "upper": self.upper.tolist(), "method": self.method}
        if self.integer.size:
            spec["integer"] = self.integer.tolist()
        return spec
