"""The search distribution of one generation, as shipped to evaluators."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from asktell._decode import _F32, _F64, _decode_plain, _gathered_pairs
from asktell.bounds import Bounds
from asktell.config_base import short_repr
from asktell.errors import ConfigError
from asktell.noise import NoiseSource, NoiseTable, split_seeds

__all__ = ["Distribution", "INJECT_BASE"]

#: Seeds ``INJECT_BASE + i`` name the ``i``-th explicit (injected) candidate of a
#: distribution. No noise source issues keys this large (a table's keys are below its size,
#: CounterNoise's below 2**62), so the range never collides with a sampled candidate.
INJECT_BASE = 1 << 62

_I64 = np.dtype(np.int64)

# Floats of the factor applied to every candidate at a time (1 MiB: fits in L2 caches).
_FACTOR_BLOCK_FLOATS = 1 << 17


def _readonly(a: np.ndarray) -> np.ndarray:
    """``a`` as a read-only float64 array the snapshot can keep: shared when it is already a
    read-only float64 array owning its data (a strategy that replaces its centre each
    generation instead of writing into it, like OpenAI-ES, hands out such an array, so no
    copy is made per generation); otherwise a read-only copy."""
    if (
        type(a) is np.ndarray
        and a.dtype is _F64  # numpy's own float64 descriptor (any other: copied below)
        and a.base is None
        and not a.flags.writeable
    ):
        return a
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


def seed_array(seeds: Any, owner: str = "decode()") -> np.ndarray:
    """``seeds`` as a 1-D int64 array, strictly: integers only (``1.5``, ``"1"`` and
    ``True`` used to decode as seed 1; a 2-D array was flattened), in the int64 range.
    ``owner`` names the caller in the :class:`ConfigError` (``"SerialEvaluator.evaluate()"``)."""
    if type(seeds) is np.ndarray and seeds.dtype is _I64 and seeds.ndim == 1:
        return seeds  # what ask() returns: nothing to check or convert
    try:
        arr = np.atleast_1d(np.asarray(seeds))
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise ConfigError(f"{owner} expects a 1-D array of integer seeds; {exc}") from None
    if arr.ndim == 1 and arr.size == 0 and arr.dtype.kind in "iuf":
        return np.zeros(0, dtype=np.int64)  # [] (numpy reads it as float64): no seed
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        what = f"dtype {arr.dtype}" if arr.dtype.kind not in "iu" else f"shape {arr.shape}"
        raise ConfigError(
            f"{owner} expects a 1-D array of integer seeds (int64); got {what}: "
            f"{short_repr(seeds)}"
        )
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ConfigError(f"{owner} seeds must fit in int64; got {short_repr(seeds)}")
    return arr.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Distribution:
    """A frozen, picklable snapshot of a search distribution for one generation.

    A candidate named by ``seed`` (see :mod:`asktell.noise`) has parameters::

        x = center + sigma * sign * (factor @ eps(key))    # factor omitted when None

    where ``sigma`` is a scalar or a per-parameter vector and ``factor`` an optional
    ``(num_params, num_params)`` matrix for small full-covariance strategies.

    With ``bounds`` (:class:`~asktell.bounds.Bounds`), each decoded row is then repaired
    into the box, elementwise, so every process computes the same bounded candidate.

    ``context`` carries per-generation facts an evaluator must apply identically everywhere
    (for example frozen observation-normalisation statistics); strategies leave it empty.

    Each row is computed with the same per-element arithmetic whatever the batch, so a
    candidate decodes bitwise identically alone or among others.
    """

    center: np.ndarray
    sigma: float | np.ndarray
    noise: NoiseSource
    generation: int = 0
    factor: np.ndarray | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Box bounds applied to every decoded candidate (``None``: unbounded, and decode's
    #: arithmetic is exactly the unbounded one).
    bounds: Bounds | None = None
    #: Explicit candidates ``(k, num_params)`` named by seeds ``INJECT_BASE + i`` (points
    #: injected into the strategy); ``None`` when there are none.
    injected: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Checked here, where a caller builds one by hand (strategies build theirs through
        # _plain or with values they have checked); each check is O(num_params).
        try:
            center = _readonly(self.center)
        except (TypeError, ValueError):
            raise ConfigError(
                f"Distribution 'center' must be a 1-D array of numbers; got {short_repr(self.center)}"
            ) from None
        if center.ndim != 1 or center.size == 0 or not np.isfinite(center).all():
            raise ConfigError(
                "Distribution 'center' must be a non-empty 1-D array of finite numbers; got "
                f"shape {center.shape}: {short_repr(self.center)}"
            )
        object.__setattr__(self, "center", center)
        d = center.shape[0]
        if type(self.sigma) is float:
            sigma: Any = self.sigma
        elif np.ndim(self.sigma) == 0 and not isinstance(self.sigma, (bool, np.bool_, str, bytes)):
            try:
                sigma = float(self.sigma)
            except (TypeError, ValueError):
                sigma = None
        else:
            try:
                sigma = _readonly(self.sigma)
            except (TypeError, ValueError):
                sigma = None
            if sigma is not None and sigma.shape != (d,):
                sigma = None
        if sigma is None or not np.all(np.isfinite(sigma)) or np.any(np.asarray(sigma) < 0):
            raise ConfigError(
                f"Distribution 'sigma' must be a finite number >= 0 or {d} of them (one per "
                f"parameter); got {short_repr(self.sigma)}"
            )
        object.__setattr__(self, "sigma", sigma)
        if not isinstance(self.noise, NoiseSource):
            raise ConfigError(
                "Distribution 'noise' must be a noise source (NoiseTable, CounterNoise, ...); "
                f"got {type(self.noise).__name__}"
            )
        if isinstance(self.generation, (bool, np.bool_)) or not isinstance(
            self.generation, (int, np.integer)
        ) or self.generation < 0:
            raise ConfigError(
                f"Distribution 'generation' must be an int >= 0; got {short_repr(self.generation)}"
            )
        if not isinstance(self.context, Mapping):
            raise ConfigError(
                f"Distribution 'context' must be a mapping; got {type(self.context).__name__}"
            )
        if self.factor is not None:
            factor = _readonly(self.factor)
            if factor.shape != (d, d):
                raise ConfigError(
                    f"Distribution 'factor' must have shape ({d}, {d}); got {factor.shape}"
                )
            object.__setattr__(self, "factor", factor)
        if self.injected is not None:
            injected = _readonly(self.injected)
            if injected.ndim != 2 or injected.shape[1] != self.center.shape[0]:
                raise ConfigError(
                    f"Distribution 'injected' must have shape (k, {self.center.shape[0]}); "
                    f"got {injected.shape}"
                )
            object.__setattr__(self, "injected", injected)

    @classmethod
    def _plain(
        cls, center: np.ndarray, sigma: Any, noise: NoiseSource, generation: int
    ) -> Distribution:
        """``Distribution(center, sigma, noise, generation)``, built without the dataclass's
        generic ``__init__`` when ``sigma`` is a Python float (every field then gets what
        ``__init__`` and ``__post_init__`` would give it: no factor, context, bounds or
        injected points); a strategy builds one every generation."""
        if type(sigma) is not float:
            return cls(center, sigma, noise, generation)
        if not (
            type(center) is np.ndarray
            and center.dtype is _F64
            and center.base is None
            and not center.flags.writeable
        ):
            center = _readonly(center)  # (the same test: what _readonly shares as it is)
        dist = object.__new__(cls)
        # Frozen: assignment is refused, so the fields go into the instance dict directly.
        dist.__dict__.update({
            "center": center, "sigma": sigma, "noise": noise, "generation": generation,
            "factor": None, "context": {}, "bounds": None, "injected": None,
        })
        return dist

    @property
    def num_params(self) -> int:
        return int(self.center.shape[0])

    def replace(self, **changes: Any) -> Distribution:
        """A copy with some fields changed (e.g. ``context``)."""
        return dataclasses.replace(self, **changes)

    def _unit_rows(self, keys: np.ndarray) -> np.ndarray:
        z = self.noise.rows(keys, self.num_params).astype(np.float64)
        if self.factor is not None:
            # Stacked matrix-vector products: one gemv per row, so a row's arithmetic does
            # not depend on how many rows share the call (unlike one big gemm). The factor is
            # applied in blocks of its rows (a block set by num_params only, never by the
            # batch), so each block stays in cache for every candidate instead of the whole
            # d x d matrix streaming from memory once per candidate (benchmarks/functions.py runs
            # d = 1000), bitwise the same per row.
            factor, d = self.factor, self.num_params
            out = np.empty_like(z)
            step = max(1, _FACTOR_BLOCK_FLOATS // d)
            for start in range(0, d, step):
                block = factor[start : start + step]
                out[:, start : start + step] = np.matmul(block, z[:, :, None])[:, :, 0]
            z = out
        return z

    def decode(
        self, seeds: np.ndarray, *, dtype: Any = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Candidate parameters for ``seeds``, shape ``(len(seeds), num_params)`` (repaired
        into ``bounds`` when the distribution has bounds).

        Args:
            seeds: 1-D integer seeds.
            dtype: ``np.float64`` (the default, or ``out``'s dtype when ``out`` is given) or
                ``np.float32``. Float64 rows are ``center + (sign * sigma) * float64(eps)``,
                bitwise the same however they are computed. Float32 rows, for callers that
                feed a float32 model (a worker's policy forward pass), are the same formula
                in float32 arithmetic, ``float32(center) + float32(sign * sigma) * eps``, for
                scalar or per-parameter ``sigma``; with a ``factor``, ``bounds`` or injected
                candidates they are the float64 rows rounded to float32.
            out: a C-contiguous ``(len(seeds), num_params)`` array of that dtype to write
                into (returned); reusing one buffer per worker avoids a large allocation
                per generation.
        """
        if type(seeds) is not np.ndarray or seeds.dtype is not _I64 or seeds.ndim != 1:
            seeds = seed_array(seeds)
        noise = self.noise
        if (
            type(out) is np.ndarray
            and type(noise) is NoiseTable
            and self.injected is None
            and self.factor is None
            and self.bounds is None
            and type(self.sigma) is float
        ):
            # The driver's common call: the very seeds the table last issued for this dim
            # (compared by value: one copy of their bytes; interleaved pairs, every key in
            # range), short rows, into a reused buffer that _decode_dtype would accept as
            # it is. Nothing to check or convert: the gathered pair form directly.
            center = self.center
            dim = center.shape[0]
            issued = noise._issued
            kind = out.dtype
            if (
                issued is not None
                and issued[0] == dim
                and dim < _ROW_BY_ROW_MIN
                and (kind is _F32 or kind is _F64)
                and (dtype is None or dtype is kind.type)
                and out.shape == (seeds.size, dim)
            ):
                flags = out.flags
                if flags.c_contiguous and flags.writeable and seeds.tobytes() == issued[1]:
                    _gathered_pairs(noise, seeds[0::2], center, self.sigma, out)
                    return out
        dtype = self._decode_dtype(seeds.size, dtype, out)
        if self.injected is not None or self.factor is not None or (
            self.bounds is not None
        ):
            if self.injected is not None:
                result = self._decode_with_injected(seeds)
            else:
                keys, signs = split_seeds(seeds)
                z = self._unit_rows(keys)
                # x = center + (sign * sigma) * z: sign is +-1, so this is bitwise the same
                # as center + sign * (sigma * z), whichever rows share the call.
                if np.ndim(self.sigma) == 0:
                    z *= (signs * self.sigma)[:, None]
                else:
                    z *= signs[:, None] * self.sigma
                z += self.center
                result = z if self.bounds is None else self.bounds.repair(z)
            if out is None and dtype == _F64:
                return result
            out = np.empty(result.shape, dtype) if out is None else out
            np.copyto(out, result, casting="same_kind")
            return out
        if out is None:
            out = np.empty((seeds.size, self.num_params), dtype)
        _decode_plain(self.noise, seeds, self.center, self.sigma, out, _ROW_BY_ROW_MIN)
        return out

    def _decode_dtype(self, count: int, dtype: Any, out: np.ndarray | None) -> np.dtype:
        if type(out) is np.ndarray:
            # The common call (a reused buffer, dtype omitted or given as its type): every
            # check below passes, in fewer steps; anything else takes the full checks.
            kind = out.dtype
            if (kind is _F32 or kind is _F64) and (dtype is None or dtype is kind.type):
                flags = out.flags
                if flags.c_contiguous and flags.writeable and out.shape == (
                    count, self.center.shape[0]
                ):
                    return kind
        if dtype is None:
            dtype = _F64 if out is None else out.dtype
        elif dtype is np.float32:
            dtype = _F32  # np.dtype(np.float32), without the call
        elif dtype is not np.float64:
            try:
                dtype = np.dtype(dtype)
            except TypeError:
                # Not a dtype at all ('x'), refused here: set to None it would pass the
                # check below, numpy reading dtype == None as float64.
                raise ConfigError(
                    f"decode() 'dtype' must be float64 or float32; got {dtype!r}"
                ) from None
        else:
            dtype = _F64
        if dtype not in (_F64, _F32):
            raise ConfigError(f"decode() 'dtype' must be float64 or float32; got {dtype!r}")
        if out is not None:
            shape = (count, self.center.shape[0])
            flags = getattr(out, "flags", None)
            if (
                not isinstance(out, np.ndarray)
                or out.dtype != dtype
                or out.shape != shape
                or not flags.c_contiguous
                or not flags.writeable
            ):
                what = (
                    f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray)
                    else type(out).__name__
                )
                raise ConfigError(
                    f"decode() 'out' must be a writeable C-contiguous {dtype} array of shape "
                    f"{shape}; got {what}"
                )
        return dtype

    def _decode_with_injected(self, seeds: np.ndarray) -> np.ndarray:
        """Rows of injected seeds are the explicit vectors; the others decode as usual (a
        row's arithmetic is per row, so the split changes no bit)."""
        index = self.injected_index(seeds)
        out = np.empty((seeds.size, self.num_params))
        plain = index < 0
        out[plain] = self.replace(injected=None).decode(seeds[plain])
        if not plain.all():
            rows = np.array(self.injected[index[~plain]])  # type: ignore[index]
            out[~plain] = rows if self.bounds is None else self.bounds.repair(rows)
        return out

    def injected_index(self, seeds: np.ndarray) -> np.ndarray:
        """For each seed, the row of ``injected`` it names, or -1 for a sampled seed."""
        seeds = np.asarray(seeds, dtype=np.int64)
        count = 0 if self.injected is None else self.injected.shape[0]
        marked = seeds >= INJECT_BASE
        index = np.where(marked, seeds - INJECT_BASE, -1)
        if np.any(index >= count):
            bad = int(seeds[index >= count][0])
            raise ConfigError(
                f"decode() seed {bad} names injected candidate {bad - INJECT_BASE}, but this "
                f"distribution carries {count}"
            )
        return index

    def decode_unbounded(self, seeds: np.ndarray) -> np.ndarray:
        """The samples before any bounds repair (what a strategy's update learns from)."""
        return self.decode(seeds) if self.bounds is None else self.replace(bounds=None).decode(seeds)

    def decode_one(self, seed: int) -> np.ndarray:
        """Parameters of one candidate, ``(num_params,)``."""
        return self.decode([seed])[0]


#: Rows at least this long decode row by row straight from table views (no gathered copy of
#: the noise rows; decode hands it to :func:`asktell._decode._decode_plain`); shorter rows
#: are gathered with one fancy index, which costs fewer Python-level calls. The two meet
#: near 2048 values for 256 seeds (``python benchmarks/overhead.py --switch-points``);
#: either path gives the same bits.
_ROW_BY_ROW_MIN = 2048
