"""Small pure helpers shared by the strategies of this package (no strategy state here).

* :func:`default_population_size`: the ``4 + floor(3 ln d)`` rule of NES and CMA-ES.
* :func:`signed_rows`: the standard-normal vectors ``s = sign * eps(key)`` behind seeds.
* :func:`noise_moments`: ``sum_j a_j eps_j`` and ``sum_j b_j eps_j**2`` in bounded memory.
* :func:`row_sq_norms`: ``|eps_j|**2`` per key, in bounded memory.
* :func:`check_matrix_fits`: the memory rule of the full-covariance strategies.
* :func:`expm_sym`: the matrix exponential of a symmetric matrix (xNES's exponential map).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from asktell.errors import ConfigError
from asktell.noise import CounterNoise, NoiseTable, split_seeds

__all__ = [
    "default_population_size",
    "resolve_population_size",
    "signed_rows",
    "noise_moments",
    "row_sq_norms",
    "fold_by_key",
    "check_matrix_fits",
    "max_dim_for_bytes",
    "expm_sym",
    "DEFAULT_MAX_FACTOR_BYTES",
]

#: Default memory cap of one ``num_params x num_params`` float64 matrix (256 MiB, i.e.
#: ``num_params <= 5792``). Full-covariance strategies hold a few such matrices and ship
#: one to evaluators every generation; their cost per generation grows as ``num_params**3``.
DEFAULT_MAX_FACTOR_BYTES = 1 << 28


def default_population_size(num_params: int) -> int:
    """``4 + floor(3 ln d)``: the default of NES (Wierstra et al. 2014) and CMA-ES (Hansen)."""
    return 4 + int(math.floor(3.0 * math.log(max(int(num_params), 1))))


def resolve_population_size(population_size: Any, num_params: Any, even: bool = False) -> Any:
    """``population_size``, or the dimension-based default when it is ``None``.

    Invalid ``num_params`` are passed through untouched (the base class reports them).
    """
    if population_size is not None:
        return population_size
    if isinstance(num_params, bool) or not isinstance(num_params, (int, np.integer)):
        return 2
    n = default_population_size(max(int(num_params), 1))
    return n + (n % 2) if even else n


def check_even_population(owner: str, population_size: int, why: str) -> None:
    """Strategies that sample in pairs need an even population."""
    if population_size % 2:
        raise ConfigError(f"{owner} 'population_size' must be even {why}; got {population_size}")


def signed_rows(
    noise: NoiseTable | CounterNoise, seeds: np.ndarray, dim: int
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
    noise: NoiseTable | CounterNoise,
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
    noise: NoiseTable | CounterNoise, keys: np.ndarray, dim: int, budget_floats: int = 1 << 22
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


def check_matrix_fits(owner: str, num_params: int, max_factor_bytes: Any) -> int:
    """Reject a dimension whose ``num_params x num_params`` float64 matrix exceeds the cap.

    Returns the validated cap. The message names ``num_params``, the rule and the value.
    """
    if (
        isinstance(max_factor_bytes, bool)
        or not isinstance(max_factor_bytes, (int, np.integer))
        or max_factor_bytes < 8
    ):
        raise ConfigError(
            f"{owner} 'max_factor_bytes' must be an int >= 8; got {max_factor_bytes!r}"
        )
    limit = max_dim_for_bytes(int(max_factor_bytes))
    if num_params > limit:
        need = 8 * num_params * num_params
        raise ConfigError(
            f"{owner} 'num_params' must be <= {limit} so that its num_params x num_params "
            f"float64 matrix (8*num_params**2 bytes) fits in max_factor_bytes="
            f"{int(max_factor_bytes)}; got num_params={num_params} ({need / 2**20:.0f} MiB). "
            "Use SNES, SepCMAES or PGPE (memory linear in num_params) for large problems, "
            "or raise max_factor_bytes"
        )
    return int(max_factor_bytes)


def expm_sym(m: np.ndarray) -> np.ndarray:
    """``exp(M)`` for a symmetric ``M`` via its eigendecomposition (no SciPy needed)."""
    m = 0.5 * (m + m.T)
    w, v = np.linalg.eigh(m)
    return (v * np.exp(w)) @ v.T
