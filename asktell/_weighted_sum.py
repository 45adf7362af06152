"""Float32 sums of weighted noise rows, the arithmetic both noise sources share.

``NoiseTable.weighted_sum`` and ``CounterNoise.weighted_sum`` (:mod:`asktell.noise`) round
the weights to float32 and sum ``w_i * eps_i`` in float32 products: :func:`_float32_safe`
first scales weights beyond float32's range by an exact power of two (undone by
:func:`_unscaled`), :func:`_axpy_sum` is the per-row sum straight from table views for long
rows, and :func:`_chunk_rows` bounds the rows gathered at once.
"""

from __future__ import annotations

import math

import numpy as np

#: Weights up to this magnitude go through the float32 product as they are (float32 holds
#: up to ~3.4e38; the margin keeps a chunk's sum of products finite too).
_FLOAT32_SAFE = 2.0**100


#: Weight vectors up to this long are first checked with one dot product.
_DOT_SAFE_SIZE = 8192


def _float32_safe(weights: np.ndarray) -> tuple[np.ndarray, int]:
    """Weights scaled by an exact power of two ``2**-exponent`` so their float32 cast cannot
    overflow (ordinary weights: unchanged, exponent 0, so results stay bitwise the same)."""
    if not weights.size:
        return weights, 0
    if weights.size <= _DOT_SAFE_SIZE and float(weights @ weights) <= 2.0**198:
        # The common case in one call: a sum of squares within 2**198 puts every |w| below
        # 2**100 (rounding error far under the factor of 2 to spare); NaN, inf and an
        # overflowing sum fall through to the exact check. Short vectors only: BLAS
        # computes those on the calling thread.
        return weights, 0
    # np.maximum.reduce: what .max() calls, without its Python layer.
    if float(np.maximum.reduce(np.abs(weights))) <= _FLOAT32_SAFE:
        return weights, 0  # one pass (NaN/inf fall through)
    finite = weights[np.isfinite(weights)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    if largest <= _FLOAT32_SAFE:
        return weights, 0
    exponent = math.frexp(largest)[1] - math.frexp(_FLOAT32_SAFE)[1] + 1
    return np.ldexp(weights, -exponent), exponent


def _unscaled(total: np.ndarray, exponent: int) -> np.ndarray:
    """Undo :func:`_float32_safe`'s scaling, in float64."""
    return np.ldexp(total, exponent) if exponent else total


#: Rows summed in the float32 accumulator before it is added into the float64 total.
_AXPY_GROUP = 64


def _axpy_sum(table: np.ndarray, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
    """``sum_i weights[i] * table[keys[i] : keys[i] + dim]`` straight from table views, in
    key order: float32 products and accumulator, flushed into float64 every _AXPY_GROUP rows."""
    total = np.zeros(dim)
    acc = np.zeros(dim, dtype=np.float32)
    tmp = np.empty(dim, dtype=np.float32)
    coefs = weights.astype(np.float32)
    key_list = keys.tolist()
    for start in range(0, len(key_list), _AXPY_GROUP):
        for k, c in zip(key_list[start : start + _AXPY_GROUP], coefs[start : start + _AXPY_GROUP]):
            np.multiply(table[k : k + dim], c, out=tmp)
            acc += tmp
        total += acc
        acc[:] = 0.0
    return total


def _chunk_rows(dim: int, budget_floats: int = 1 << 22) -> int:
    return max(1, budget_floats // max(dim, 1))
