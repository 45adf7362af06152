"""The arithmetic of a plain decode: ``center + (sign * sigma) * eps(key)`` written into a
buffer, for a distribution with no factor, bounds or injected rows.

:meth:`asktell.distribution.Distribution.decode` checks its arguments and sets the row
length from which rows are read row by row (its ``_ROW_BY_ROW_MIN``); the forms here
compute the rows. Interleaved mirrored pairs ``(k, ~k)`` (what ``ask()`` produces) cost one
product per pair: gathered in one fancy index for short rows (:func:`_gathered_pairs`),
read row by row from table views for long ones (:func:`_pairs_by_rows`); other seeds are
decoded each with its own sign (:func:`_signed_rows`). Every form gives the same bits for a
row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asktell.noise import NoiseSource, NoiseTable, split_seeds

#: The two dtypes decode writes (dtype objects: comparing with them skips numpy's
#: conversion of a type argument on every call).
_F64, _F32 = np.dtype(np.float64), np.dtype(np.float32)

#: ``sigma`` as read-only 0-d float32 arrays, by value (numpy multiplies by a 0-d array
#: faster than by a numpy scalar; the same products). A few entries per process.
_SIGMA32: dict[float, np.ndarray] = {}


def _gathered_pairs(
    noise: NoiseTable, first: np.ndarray, center: np.ndarray, sigma: float, out: np.ndarray
) -> None:
    """``out[2j] = center + sigma * eps(first[j])`` and ``out[2j + 1] = center - sigma *
    eps(first[j])`` in ``out``'s dtype (float32 or float64), for a Python float ``sigma``
    and keys ``first`` known to lie in ``[0, size - dim]``: one gather of the rows, one
    product per pair (``_decode_plain``'s arithmetic)."""
    dim = center.shape[0]
    windows = noise._windows
    if windows is None or windows.shape[1] != dim:
        windows = noise.windows(dim)
    p = windows[first]  # a new float32 array: the gathered rows
    kind = out.dtype
    if kind is _F32 or kind == _F32:
        c = center.astype(_F32)
        s = _SIGMA32.get(sigma)
        if s is None:
            s = np.array(sigma, dtype=_F32)
            s.flags.writeable = False
            if len(_SIGMA32) < 64:
                _SIGMA32[sigma] = s
        np.multiply(p, s, p)  # float32 x float32 in place: the same products
    else:
        c = center
        p = np.multiply(p, np.float64(sigma), dtype=_F64)
    np.add(p, c, out[0::2])
    np.subtract(c, p, out[1::2])


def _decode_plain(
    noise: NoiseSource,
    seeds: np.ndarray,
    center: np.ndarray,
    sigma: float | np.ndarray,
    out: np.ndarray,
    row_by_row_min: int,
) -> None:
    """``out[i] = center + (sign_i * sigma) * eps(key_i)`` in ``out``'s dtype, no factor,
    bounds or injected rows; a table's rows at least ``row_by_row_min`` long are read row by
    row from its views, shorter ones gathered.

    Float64: each element is ``float64(eps) * (sign * sigma) + center``, exactly the
    arithmetic of the gathered form (``sign * sigma`` is ``sigma`` or ``-sigma``, exact; a
    mirrored row ``center - sigma * eps`` is the same number as ``(-sigma) * eps + center``).
    Float32: the same formula with every operand rounded to float32 first.
    """
    dtype = out.dtype
    scalar = isinstance(sigma, float)  # __post_init__ makes a scalar sigma a float
    if dtype == _F32:
        c = center.astype(_F32)
        s = np.float32(sigma) if scalar else np.asarray(sigma, dtype=np.float32)
    else:
        c = center
        s = np.float64(sigma) if scalar else np.asarray(sigma, dtype=np.float64)
    dim = center.shape[0]
    table = noise.table if isinstance(noise, NoiseTable) and dim >= row_by_row_min else None
    first = seeds[0::2]
    # The very seeds the table last issued for this dim (compared by value: one copy of
    # their bytes) are interleaved pairs with every key in range; no check is repeated.
    vetted = type(noise) is NoiseTable and noise.issued_pairs(seeds, dim)
    # Pairs (k, ~k): (seeds[1::2] == ~first).all() answered by comparing the two halves'
    # bytes (native int64 both: equal bytes, equal values), one ufunc call and a memcmp
    # instead of three numpy calls (this runs every generation).
    pairs = vetted or bool(
        seeds.size
        and seeds.size % 2 == 0
        and first.tobytes() == np.invert(seeds[1::2]).tobytes()
    )
    if (
        pairs
        and table is None
        and type(noise) is NoiseTable
        and (vetted or int(np.maximum.reduce(first.view(np.uint64))) <= noise.size - dim)
    ):
        # Interleaved mirrored pairs of short rows, every key in [0, size - dim] (one
        # unsigned max: a negative key reads as 2**63 or more): the table gather
        # NoiseTable.rows makes after its own min and max check, then the pair form.
        if scalar:
            _gathered_pairs(noise, first, center, sigma, out)
            return
        p = noise.windows(dim)[first]  # a new float32 array: the gathered rows
        if dtype is _F32:
            np.multiply(p, s, out=p)  # float32 x float32 in place: the same products
        else:
            p = np.multiply(p, s, dtype=dtype)
        np.add(p, c, out=out[0::2])
        np.subtract(c, p, out=out[1::2])
        return
    if pairs and int(first.min()) >= 0:
        # Interleaved mirrored pairs (what ask() produces): one product per pair,
        # ``center + p`` and ``center - p``.
        if table is None:
            p = np.multiply(noise.rows(first, dim), s, dtype=dtype)
            np.add(p, c, out=out[0::2])
            np.subtract(c, p, out=out[1::2])
            return
        checked = first if vetted else noise._checked(first, dim)  # type: ignore[attr-defined]
        _pairs_by_rows(table, checked, c, s, out)
        return
    _signed_rows(noise, seeds, sigma, c, s, table, out)


def _pairs_by_rows(
    table: np.ndarray, first: np.ndarray, c: np.ndarray, s: Any, out: np.ndarray
) -> None:
    """``out[2j] = c + s * eps(first[j])`` and ``out[2j + 1] = c - s * eps(first[j])``, row
    by row straight from the table's views (no gathered copy of long rows), for keys
    ``first`` already checked; ``c`` and ``s`` are the centre and sigma in ``out``'s dtype."""
    dim = c.shape[0]
    tmp = np.empty(dim, out.dtype)
    for j, k in enumerate(first.tolist()):
        np.multiply(table[k : k + dim], s, out=tmp)
        np.add(tmp, c, out=out[2 * j])
        np.subtract(c, tmp, out=out[2 * j + 1])


def _signed_rows(
    noise: NoiseSource,
    seeds: np.ndarray,
    sigma: float | np.ndarray,
    c: np.ndarray,
    s: Any,
    table: np.ndarray | None,
    out: np.ndarray,
) -> None:
    """Seeds that are not interleaved pairs, each row with its own sign: ``out[i] = c +
    (sign_i * s) * eps(key_i)``, read row by row from ``table`` when given (long rows),
    else from one gather of the rows, scaled by ``sign * sigma`` rounded to ``out``'s
    dtype; ``c`` and ``s`` are the centre and sigma in ``out``'s dtype."""
    dim = c.shape[0]
    keys, signs = split_seeds(seeds)
    if table is not None:
        neg = -s
        key_list = noise._checked(keys, dim).tolist()  # type: ignore[attr-defined]
        for i, (k, negative) in enumerate(zip(key_list, (signs < 0).tolist())):
            row = out[i]
            np.multiply(table[k : k + dim], neg if negative else s, out=row)
            np.add(row, c, out=row)
        return
    z = noise.rows(keys, dim)  # float32 (n, dim)
    scale = (signs * sigma)[:, None] if isinstance(sigma, float) else signs[:, None] * sigma
    np.multiply(z, scale.astype(out.dtype, copy=False), out=out)
    out += c

