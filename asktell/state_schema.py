"""Declared state schemas: what a ``state_dict`` may hold, checked before anything is assigned.

A strategy or optimiser declares its state as a table of :class:`Entry` rules, one per key
(kind, dtype, shape in terms of ``n`` = num_params, ``p`` = population_size, range, an
optional extra rule). :func:`check_state` checks a whole state against the table and
raises one :class:`~asktell.errors.CheckpointError` listing every key that breaks its rule,
with the rule and the value received; ``load_state_dict`` calls it first and assigns only
when it passes, so a refused state changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Literal

import numpy as np

from asktell.config_base import short_repr
from asktell.errors import CheckpointError

__all__ = ["Entry", "check_state", "describe"]

Kind = Literal["int", "float", "bool", "str", "array"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """The rule for one key of a state.

    Args:
        kind: ``int``, ``float``, ``bool``, ``str`` (numbers never pass as strings nor
            booleans as numbers), or ``array`` (a numpy array of exactly ``dtype``).
        dtype: an array's dtype (``float64``, ``int64``).
        shape: an array's shape; ``"n"`` is num_params, ``"p"`` the population size,
            ``None`` any length (a history that grows; ``check`` may bound it).
        low: every value ``>= low``.
        positive: every value ``> 0``.
        finite: no NaN or infinity (NaN is refused in any case).
        check: an extra rule ``check(value, sizes) -> problem or None``.
    """

    kind: Kind
    dtype: str = "float64"
    shape: tuple[str | int | None, ...] = ()
    low: float | None = None
    positive: bool = False
    finite: bool = True
    check: Callable[[Any, Mapping[str, Any]], str | None] | None = None

    def rule(self, sizes: Mapping[str, int]) -> str:
        if self.kind == "array":
            dims = ", ".join("any" if d is None else str(d) for d in self._shape(sizes))
            text = f"a {self.dtype} array of shape ({dims}{',' if len(self.shape) == 1 else ''})"
        else:
            text = f"a{'n' if self.kind == 'int' else ''} {self.kind}"
        if self.positive:
            text += " > 0"
        elif self.low is not None:
            text += f" >= {self.low:g}"
        if self.finite and self.kind in ("float", "array") and self.dtype.startswith("float"):
            text += ", finite"
        return text

    def _shape(self, sizes: Mapping[str, int]) -> tuple[int | None, ...]:
        return tuple(sizes[s] if isinstance(s, str) else s for s in self.shape)

    def _fits(self, shape: tuple[int, ...], sizes: Mapping[str, int]) -> bool:
        want = self._shape(sizes)
        return len(shape) == len(want) and all(w is None or w == d for w, d in zip(want, shape))

    def problem(self, value: Any, sizes: Mapping[str, int]) -> str | None:
        """Why ``value`` breaks this rule, or None."""
        if self.kind == "bool":
            ok = isinstance(value, (bool, np.bool_))
        elif self.kind == "int":
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        elif self.kind == "float":
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            )
        elif self.kind == "str":
            ok = isinstance(value, str)
        else:
            ok = (
                isinstance(value, np.ndarray)
                and value.dtype == np.dtype(self.dtype)
                and self._fits(value.shape, sizes)
            )
        if not ok:
            return "wrong type, dtype or shape"
        if self.kind in ("int", "float", "array") and not self._in_range(value):
            return "out of range"
        return self.check(value, sizes) if self.check is not None else None

    def _in_range(self, value: Any) -> bool:
        if self.kind == "int" and not -(1 << 63) <= int(value) < (1 << 63):
            return False  # every integer of a state is an int64
        a = np.asarray(value)
        if a.dtype.kind == "f":
            if np.isnan(a).any() or (self.finite and not np.isfinite(a).all()):
                return False
        if self.positive and not (a > 0).all():
            return False
        return self.low is None or bool((a >= self.low).all())


def describe(value: Any) -> str:
    """A short account of a value for an error message (type, dtype, shape, contents)."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}: {short_repr(value)}"
    return f"{type(value).__name__} {short_repr(value)}"


def check_state(
    owner: str,
    state: Any,
    schema: Mapping[str, Entry],
    sizes: Mapping[str, int],
    *,
    prefix: str = "",
    exact: bool = True,
    undeclared: frozenset[str] = frozenset(),
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has the keys of ``schema`` (with
    ``prefix``; no others when ``exact``, except the ``undeclared`` keys an owner without
    a full schema still writes), each obeying its rule. Every problem is listed."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{owner} state must be a dict; got {type(state).__name__}")
    problems = []
    if exact:
        known = {prefix + key for key in schema} | set(undeclared)
        problems += [f"{k!r} is not part of this state" for k in state if k not in known]
    for key, entry in schema.items():
        full = prefix + key
        if full not in state:
            problems.append(f"{full!r} is missing (must be {entry.rule(sizes)})")
            continue
        why = entry.problem(state[full], sizes)
        if why is not None:
            problems.append(
                f"{full!r} must be {entry.rule(sizes)} ({why}); got {describe(state[full])}"
            )
    if problems:
        raise CheckpointError(
            f"{owner} state refused, nothing was loaded: " + "; ".join(problems)
        )
