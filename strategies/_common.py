"""Small pure helpers shared by the strategies of this package (no strategy state here).

* :func:`default_population_size`: the ``4 + floor(3 ln d)`` rule of NES and CMA-ES.
* :func:`signed_rows`: the standard-normal vectors ``s = sign * eps(key)`` behind seeds.
* :func:`noise_moments`: ``sum_j a_j eps_j`` and ``sum_j b_j eps_j**2`` in bounded memory.
* :func:`row_sq_norms`: ``|eps_j|**2`` per key, in bounded memory.
* :func:`max_dim_for_bytes`: the largest dimension whose float64 matrix fits a byte cap.
* :func:`expm_sym`: the matrix exponential of a symmetric matrix (xNES's exponential map).
* :func:`mean_std`: mean and standard deviation of returns that cannot overflow.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from asktell.config_base import short_repr
from asktell.errors import ConfigError
from asktell.noise import NoiseSource, split_seeds
from asktell.shaping import TAME_LIMIT, tame

__all__ = [
    "real_vector",
    "default_population_size",
    "signed_rows",
    "noise_moments",
    "row_sq_norms",
    "fold_by_key",
    "max_dim_for_bytes",
    "expm_sym",
    "mean_std",
]


def default_population_size(num_params: int) -> int:
    """``4 + floor(3 ln d)``: the default of NES (Wierstra et al. 2014) and CMA-ES (Hansen)."""
    return 4 + int(math.floor(3.0 * math.log(max(int(num_params), 1))))


def signed_rows(
    noise: NoiseSource, seeds: np.ndarray, dim: int
) -> np.ndarray:
    """``(len(seeds), dim)`` float64 standard-normal vectors ``sign * eps(key)``.

    The same arithmetic as :meth:`Distribution.noise_rows` before the factor, so a strategy
    recomputes exactly the ``z`` an evaluator used, from the seeds alone.
    """
    keys, signs = split_seeds(seeds)
    z = noise.rows(keys, dim).astype(np.float64)
    z *= signs[:, None]
    return z


def fold_by_key(
    seeds: np.ndarray, signed: np.ndarray, unsigned: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys and coefficients for weighted sums over the seeds' noise rows.

    Returns ``(keys, a, b)`` with ``sum_i signed_i * sign_i * eps(key_i) == sum_j a_j eps(keys_j)``
    and ``sum_i unsigned_i * eps(key_i)**2 == sum_j b_j eps(keys_j)**2``. Interleaved mirrored
    pairs ``(k, ~k)`` (what the strategies ask) are folded, so each pair's row is read once;
    a key that appears twice otherwise simply appears twice, which the sums handle the same.
    ``unsigned`` serves terms even in the noise (``eps**2``), where the sign drops out.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    signed = np.asarray(signed, dtype=np.float64)
    unsigned = np.zeros(seeds.size) if unsigned is None else np.asarray(unsigned, np.float64)
    if seeds.size and seeds.size % 2 == 0 and np.array_equal(seeds[1::2], ~seeds[0::2]):
        first = seeds[0::2]
        if np.all(first >= 0):
            return first, signed[0::2] - signed[1::2], unsigned[0::2] + unsigned[1::2]
    keys, signs = split_seeds(seeds)
    return keys, signed * signs, unsigned


def noise_moments(
    noise: NoiseSource,
    keys: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    dim: int,
    budget_floats: int = 1 << 22,
) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_j a_j eps(k_j), sum_j b_j eps(k_j)**2)`` as float64 ``(dim,)`` vectors.

    Rows are read in chunks of at most ``budget_floats`` values, so memory stays bounded
    for any dimension (per-parameter step sizes of SNES and PGPE need the squares).
    """
    keys = np.asarray(keys, dtype=np.int64)
    first = np.zeros(dim)
    second = np.zeros(dim)
    step = max(1, budget_floats // max(dim, 1))
    for start in range(0, keys.size, step):
        rows = noise.rows(keys[start : start + step], dim).astype(np.float64)
        first += np.asarray(a[start : start + step], np.float64) @ rows
        rows *= rows
        second += np.asarray(b[start : start + step], np.float64) @ rows
    return first, second


def row_sq_norms(
    noise: NoiseSource, keys: np.ndarray, dim: int, budget_floats: int = 1 << 22
) -> np.ndarray:
    """``|eps(k)|**2`` per key, float64, reading rows in bounded-memory chunks."""
    keys = np.asarray(keys, dtype=np.int64)
    out = np.empty(keys.size)
    step = max(1, budget_floats // max(dim, 1))
    for start in range(0, keys.size, step):
        rows = noise.rows(keys[start : start + step], dim).astype(np.float64)
        out[start : start + rows.shape[0]] = np.einsum("ij,ij->i", rows, rows)
    return out


def max_dim_for_bytes(max_bytes: int) -> int:
    """The largest ``d`` with ``8 * d**2 <= max_bytes``."""
    d = math.isqrt(max(int(max_bytes), 0) // 8)
    return d


def expm_sym(m: np.ndarray) -> np.ndarray:
    """``exp(M)`` for a symmetric ``M`` via its eigendecomposition (no SciPy needed)."""
    m = 0.5 * (m + m.T)
    w, v = np.linalg.eigh(m)
    return (v * np.exp(w)) @ v.T


def mean_std(values: np.ndarray, largest: float | None = None) -> tuple[float, float]:
    """Mean and standard deviation that do not overflow for returns near the float64 limit
    (computed on power-of-two-scaled values; ordinary returns are not scaled at all).
    ``largest``: ``max |values|`` when the caller already has it (``max(|max|, |min|)``)."""
    if not values.size:
        return float("nan"), float("nan")
    if largest is None:
        largest = float(np.abs(values).max())
    if largest <= TAME_LIMIT:
        # numpy's mean and std, bitwise (the same pairwise sums and divisions), without
        # their Python layers: this runs every generation (ask/tell overhead at small dims).
        n = values.size
        mean = np.add.reduce(values) / n
        # The mean as a 0-d array (numpy subtracts one faster than a numpy scalar) and the
        # sum of squares as a Python float: the same values, the same divisions.
        dev = values - np.array(mean)
        dev *= dev
        return float(mean), math.sqrt(np.add.reduce(dev).item() / n)
    scaled = tame(values)
    if scaled is values:
        return float(values.mean()), float(values.std())
    factor = float(values[np.argmax(np.abs(values))] / scaled[np.argmax(np.abs(values))])
    return float(scaled.mean()) * factor, float(scaled.std()) * factor


def real_vector(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 vector, strictly: real numbers only (strings, booleans and
    complex numbers were converted, the imaginary part dropped) in one dimension (a 2-D
    array was flattened); ``what`` names the argument in the :class:`ConfigError`."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be a 1-D array of real numbers; {exc}") from None
    if arr.dtype.kind not in "iuf" or arr.ndim > 1:
        got = f"dtype {arr.dtype}" if arr.dtype.kind not in "iuf" else f"shape {arr.shape}"
        raise ConfigError(
            f"{what} must be a 1-D array of real numbers; got {got}: {short_repr(value)}"
        )
    return arr.astype(np.float64).reshape(-1)
