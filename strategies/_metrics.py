"""The dict ``tell`` returns, with some entries computed when first read.

At small dimensions a generation costs microseconds, and the metrics ``tell`` reports (the
gradient's, update's and centre's norms; the returns' mean and standard deviation) are a
noticeable part of it (docs/benchmarks-overhead.md). :class:`Metrics` is a ``dict`` whose
deferred entries are computed together, once, the first time anything reads a value: a
caller who ignores the metrics does not pay for them, and one who reads them gets the same
values (the same bits) the eager computation gives, since the deferred computation reads
arrays that nothing writes into afterwards (the caller that defers makes sure of it).

Until then a deferred key is present, in its place in the key order, with a placeholder
value in the dict's own storage. Every dict method that reads or writes values computes
them first: ``m[key]``, ``get``, iteration, ``keys``/``values``/``items``, ``==``,
``repr``, ``copy``, ``pop``, ``update``, ``|``, pickling and copying; ``dict(m)``,
``{**m}``, ``f(**m)`` and ``json.dumps(m)`` go through those methods (CPython takes its
fast path over the storage only for a dict whose ``__iter__`` is dict's own). C code that
walks a dict's storage directly (``PyDict_Next``: some third-party serialisers) sees the
placeholders: read a value first, or pass ``dict(m)``.

While something is deferred the object's class is :class:`_DeferredMetrics`, which holds
those methods; the first read computes the values and switches it back to a plain
:class:`Metrics`, whose reads are ``dict``'s own (the runner and loggers read every
generation's metrics several times).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Metrics", "deferred"]


class Metrics(dict):
    """A ``dict`` of metrics whose deferred entries are computed on first read.

    ``defer(keys, compute, *args)`` adds ``keys`` now (in order) and their values later:
    ``compute(*args)`` returns one value per key, called once, the first time any value of
    the dict is read or any entry written.

    While something is deferred the instance is a :class:`_DeferredMetrics` (whose reads
    and writes compute the values first); once computed it is a plain ``Metrics`` again,
    whose reads are ``dict``'s own, at ``dict``'s speed.
    """

    #: The deferred ``(keys, compute, args)`` not computed yet (a class default, so that
    #: building a Metrics runs no Python-level ``__init__``).
    _later: list[tuple[tuple[str, ...], Callable[..., Any], tuple]] | None = None

    def defer(self, keys: tuple[str, ...], compute: Callable[..., Any], *args: Any) -> None:
        """Add ``keys`` with values ``compute(*args)`` (a sequence, one per key) computed
        when first needed (a key already present keeps its place in the order)."""
        kind = type(self)
        if kind is not Metrics and kind is not _DeferredMetrics:
            # The deferral works by switching the instance's class (to _DeferredMetrics
            # and back), which would drop a subclass's own.
            raise TypeError(f"defer() needs a Metrics itself, not a {kind.__name__}")
        dict.update(self, dict.fromkeys(keys))
        later = self._later
        if later is None:
            self._later = [(keys, compute, args)]
            self.__class__ = _DeferredMetrics
        else:
            later.append((keys, compute, args))

    def _settle(self) -> None:
        later = self._later
        while later:
            keys, compute, args = later[0]
            values = tuple(compute(*args))  # if it raises, the entry stays deferred
            # dict.update from (key, value) pairs: dict's own stores, in order.
            dict.update(self, zip(keys, values))
            del later[0]
        self._later = None
        if type(self) is _DeferredMetrics:
            self.__class__ = Metrics  # every value computed: dict's own reads from now on

    # Copies are Metrics too (dict's would be plain dicts) -------------------------------
    def copy(self) -> Metrics:
        if self._later is not None:
            self._settle()
        return Metrics(dict.items(self))

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, dict):
            return NotImplemented
        new = self.copy()
        new.update(other)
        return new

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, dict):
            return NotImplemented
        if self._later is not None:
            self._settle()
        new = Metrics(other)
        dict.update(new, dict.items(self))
        return new

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickling, copy.copy and copy.deepcopy: a plain Metrics of the computed values (the
        # deferred computation itself is never pickled).
        if self._later is not None:
            self._settle()
        return (Metrics, (dict(dict.items(self)),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metrics) and other._later is not None:
            other._settle()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]


class _DeferredMetrics(Metrics):
    """A :class:`Metrics` with deferred entries: every method that reads or writes values
    computes them first (and the instance then becomes a plain ``Metrics``)."""

    # Reads ------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if self._later is not None:
            self._settle()
        return dict.__getitem__(self, key)

    def get(self, key: Any, default: Any = None) -> Any:
        if self._later is not None:
            self._settle()
        return dict.get(self, key, default)

    def __iter__(self):  # type: ignore[no-untyped-def]
        # Overridden (even though keys need no values) so that CPython's dict(m), {**m} and
        # f(**m) take the generic path through keys() and m[key] instead of copying the
        # storage with its placeholders.
        if self._later is not None:
            self._settle()
        return dict.__iter__(self)

    def keys(self):  # type: ignore[no-untyped-def]
        if self._later is not None:
            self._settle()
        return dict.keys(self)

    def values(self):  # type: ignore[no-untyped-def]
        if self._later is not None:
            self._settle()
        return dict.values(self)

    def items(self):  # type: ignore[no-untyped-def]
        if self._later is not None:
            self._settle()
        return dict.items(self)

    def __eq__(self, other: object) -> bool:
        if self._later is not None:
            self._settle()
        return Metrics.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._settle()
        return dict.__repr__(self)

    # Writes (the values first, so a later computation cannot overwrite what was written) ---
    def __setitem__(self, key: Any, value: Any) -> None:
        if self._later is not None:
            self._settle()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        if self._later is not None:
            self._settle()
        dict.__delitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        if self._later is not None:
            self._settle()
        dict.update(self, *args, **kwargs)

    def __ior__(self, other: Any) -> Metrics:
        self.update(other)
        return self

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if self._later is not None:
            self._settle()
        return dict.setdefault(self, key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        if self._later is not None:
            self._settle()
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        if self._later is not None:
            self._settle()
        return dict.popitem(self)

    def clear(self) -> None:
        self._later = None
        dict.clear(self)
        self.__class__ = Metrics


def deferred(keys: tuple[str, ...], compute: Callable[..., Any], *args: Any) -> Metrics:
    """A new :class:`Metrics` holding ``keys`` whose values are ``compute(*args)``,
    deferred: ``Metrics().defer(keys, compute, *args)`` in fewer steps (a strategy's update
    makes one every generation)."""
    metrics = _DeferredMetrics(dict.fromkeys(keys))
    metrics._later = [(keys, compute, args)]
    return metrics
