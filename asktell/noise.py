"""Common random numbers: a seed names a perturbation, any process can rebuild it.

Salimans et al. 2017 ("Evolution Strategies as a Scalable Alternative to Reinforcement
Learning") share one large block of Gaussian noise between all workers, so that a candidate
travels as an integer offset into that block instead of as a parameter vector.

Seed encoding (used by every strategy and evaluator):

* a *key* ``k >= 0`` names one noise vector ``eps(k)`` of length ``dim``;
* a *seed* is ``k`` for ``+eps(k)`` or ``~k`` (``-k - 1``) for its mirror ``-eps(k)``.

The encoding is per element, so any chunk of seeds, cut anywhere, decodes the same.

Two noise sources implement the same small interface:

* :class:`NoiseTable`: the paper's shared table. ``eps(k) = table[k : k + dim]`` is a view,
  so decoding draws no random numbers. The table is built once per process and cached; the
  object pickles as ``(seed, size)`` only.
* :class:`CounterNoise`: regenerates ``eps(k)`` from ``(seed, k)`` with numpy's counter-based
  ``Philox`` generator: no memory, slower per candidate; for huge dims or small machines.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from asktell._table_cache import TABLES, adopt_table, build_table_into
from asktell._weighted_sum import _axpy_sum, _chunk_rows, _float32_safe, _unscaled
from asktell.errors import ConfigError

__all__ = [
    "NoiseSource",
    "NoiseTable",
    "CounterNoise",
    "split_seeds",
    "mirrored",
    "noise_from_spec",
    "part_bounds",
    "add_parts",
    "weighted_sum_in_parts",
    "DEFAULT_TABLE_SIZE",
    "adopt_table",
    "build_table_into",
]

#: 2**25 float32 standard normals (128 MiB), built once per process (docs/seeds-and-noise.md
#: gives the build time), and large enough that a 1M-parameter policy still has 32M distinct
#: offsets.
DEFAULT_TABLE_SIZE = 1 << 25



_INT64 = np.dtype(np.int64)
_F32 = np.dtype(np.float32)
#: 0.0 as a 0-d float64 array (read-only).
_ZERO64 = np.zeros(())
_ZERO64.flags.writeable = False


def split_seeds(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode seeds into ``(keys, signs)``: ``k -> (k, +1)`` and ``~k -> (k, -1)``."""
    seeds = np.asarray(seeds, dtype=np.int64)
    negative = seeds < 0
    keys = np.where(negative, ~seeds, seeds)
    signs = np.where(negative, -1.0, 1.0)
    return keys, signs


def mirrored(keys: np.ndarray) -> np.ndarray:
    """Antithetic seeds for ``keys``, interleaved: ``[k0, ~k0, k1, ~k1, ...]``.

    Pairs stay adjacent, so a chunk cut at an even index never separates a pair.
    """
    if type(keys) is not np.ndarray or keys.dtype is not _INT64:
        keys = np.asarray(keys, dtype=np.int64)
    out = np.empty(2 * keys.size, dtype=np.int64)
    out[0::2] = keys
    np.invert(keys, out=out[1::2])  # ~keys written in place, no temporary
    return out


@runtime_checkable
class NoiseSource(Protocol):
    """What strategies, distributions and evaluators need from a noise source.

    :class:`NoiseTable` and :class:`CounterNoise` both satisfy it (a test checks each
    member); annotate with it rather than naming the two classes. A third source must also
    pickle small (it travels inside every :class:`~asktell.distribution.Distribution`) and
    give the same vector for the same key in every process.
    """

    kind: str
    seed: int

    def get(self, key: int, dim: int) -> np.ndarray:
        """``eps(key)``: a float32 vector of length ``dim``."""

    def check_dim(self, dim: int, name: str = "num_params") -> None:
        """Raise :class:`ConfigError` if vectors of length ``dim`` cannot be drawn."""

    def sample_keys(self, rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
        """Draw ``count`` valid keys for vectors of length ``dim``."""

    def rows(self, keys: np.ndarray, dim: int) -> np.ndarray:
        """``(len(keys), dim)`` float32 noise vectors (a new array)."""

    def weighted_sum(self, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
        """``sum_i weights[i] * eps(keys[i])`` as float64 ``(dim,)``, memory-bounded."""

    def spec(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`noise_from_spec` rebuilds this source."""


#: Rows at least this long are summed by per-row axpy over table views
#: (:meth:`NoiseTable.weighted_sum`); shorter ones by gather + gemv, which is faster for
#: short rows. From ``python benchmarks/overhead.py --switch-points`` on the shared 2-core
#: machine: with single-threaded BLAS the two meet near 8192 values for 128 rows and below
#: 2048 for 5,000 rows; with OpenBLAS threads on a busy machine the gemv stalls from 4096.
_LONG_ROW = 4096


class NoiseTable:
    """The paper's shared noise table: ``size`` float32 standard normals from ``seed``.

    Keys are offsets in ``[0, size - dim]``; ``eps(k) = table[k : k + dim]`` is a read-only
    view. Building happens on first use in each process and is cached, so a worker pays it
    once, not once per generation. Pickling sends only ``(seed, size)``.

    Args:
        seed: noise seed; every process using the same ``(seed, size)`` sees the same table.
        size: number of float32 values (4 bytes each). Must exceed ``num_params``.

    Example:
        >>> table = NoiseTable(seed=0, size=1 << 20)
        >>> table.get(5, 3).shape
        (3,)
    """

    kind = "table"

    def __init__(self, seed: int = 0, size: int = DEFAULT_TABLE_SIZE):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"NoiseTable 'seed' must be a non-negative int; got {seed!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise ConfigError(f"NoiseTable 'size' must be an int >= 2; got {size!r}")
        self.seed = int(seed)
        self.size = int(size)

    def __repr__(self) -> str:
        return f"NoiseTable(seed={self.seed}, size={self.size})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseTable) and (self.seed, self.size) == (other.seed, other.size)

    def __hash__(self) -> int:
        return hash(("table", self.seed, self.size))

    def __getstate__(self) -> dict[str, int]:
        return {"seed": self.seed, "size": self.size}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.seed = state["seed"]
        self.size = state["size"]

    @property
    def table(self) -> np.ndarray:
        """The whole read-only table (built and cached on first access in this process)."""
        return TABLES.get(self.seed, self.size)

    def check_dim(self, dim: int, name: str = "num_params") -> None:
        if dim > self.size - 1:
            raise ConfigError(
                f"the noise table (size={self.size}) is too small for {name}={dim}: it must hold "
                f"more than {name} values; raise noise size (e.g. {max(4 * dim, 1 << 20)}) "
                "or use the counter-based noise"
            )

    def sample_keys(self, rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
        self.check_dim(dim)
        # integers(low, high) excludes high: the last valid offset is size - dim.
        return rng.integers(0, self.size - dim + 1, size=count, dtype=np.int64)

    def sample_mirrored(self, rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
        """``mirrored(self.sample_keys(rng, count, dim))``: ``count`` antithetic pairs,
        interleaved, whose keys are valid for ``dim`` (the same draws, the same seeds).

        The table remembers the last such array by value (its bytes, not the array, which
        the caller may hand out and anyone may edit), so :meth:`issued_pairs` recognises
        those very seeds, and ``Distribution.decode`` skips its pair and key-range checks
        for them.
        """
        if dim > self.size - 1:
            self.check_dim(dim)  # raises
        # sample_keys's draw, inline (the same call: the same keys).
        keys = rng.integers(0, self.size - dim + 1, size=count, dtype=np.int64)
        seeds = np.empty(2 * count, dtype=_INT64)  # mirrored(keys), inline
        seeds[0::2] = keys
        np.invert(keys, seeds[1::2])
        self._issued = (dim, seeds.tobytes())  # not pickled: __getstate__ sends (seed, size)
        return seeds

    def issued_pairs(self, seeds: np.ndarray, dim: int) -> bool:
        """Whether the 1-D int64 ``seeds`` hold exactly the values of the last
        :meth:`sample_mirrored` for ``dim``: interleaved pairs ``(k, ~k)`` with every key in
        ``[0, size - dim]``. Equal bytes of native int64 arrays are equal values, so an
        edited or another array is not recognised (and is checked the long way)."""
        issued = self._issued
        return issued is not None and issued[0] == dim and seeds.tobytes() == issued[1]

    #: ``(dim, bytes)`` of the last :meth:`sample_mirrored` in this process.
    _issued: tuple[int, bytes] | None = None
    #: The last :meth:`windows` view (not pickled).
    _windows: np.ndarray | None = None

    def get(self, key: int, dim: int) -> np.ndarray:
        """``eps(key)`` as a read-only float32 view of length ``dim``."""
        key = int(key)
        if key < 0 or key + dim > self.size:
            raise ConfigError(
                f"noise key {key} is out of range for dim={dim} and table size={self.size}: "
                f"keys must lie in [0, {self.size - dim}]"
            )
        return self.table[key : key + dim]

    def windows(self, dim: int) -> np.ndarray:
        """All ``eps(k)`` at once: a read-only ``(size - dim + 1, dim)`` strided view (no copy)."""
        cached = self._windows
        if cached is not None and cached.shape[1] == dim:
            return cached
        table = self.table
        view = np.lib.stride_tricks.as_strided(
            table,
            shape=(self.size - dim + 1, dim),
            strides=(table.strides[0], table.strides[0]),
            writeable=False,
        )
        self._windows = view  # not pickled: __getstate__ sends (seed, size) only
        return view

    def _checked(self, keys: np.ndarray, dim: int) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if keys.ndim != 1:
            keys = keys.reshape(-1)
        # One unsigned max checks both ends: a negative key reads as 2**63 or more.
        if keys.size and int(np.maximum.reduce(keys.view(np.uint64))) > self.size - dim:
            raise ConfigError(
                f"noise keys must lie in [0, {self.size - dim}] for dim={dim} and table "
                f"size={self.size}; got keys in [{keys.min()}, {keys.max()}]"
            )
        return keys

    def rows(self, keys: np.ndarray, dim: int) -> np.ndarray:
        # A fancy-index gather from the strided view: one C loop, no per-row Python.
        return self.windows(dim)[self._checked(keys, dim)]

    def weighted_sum(self, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
        """``sum_i weights[i] * eps(keys[i])`` as float64 ``(dim,)``, no noise row copied
        for long rows.

        The weights are rounded to float32 (after an exact power-of-two scaling when they
        are beyond float32's range). Short rows (``dim < _LONG_ROW``) are gathered in chunks
        of at most 4M floats, each chunk one float32 matrix-vector product (BLAS), the
        chunk sums added in float64 in key order. Long rows are read in place, one axpy per
        row: the summation order is **key order**, each product ``w_i * eps_i`` rounded to
        float32 and added to a float32 accumulator that is added into the float64 total
        (and reset) after every ``_AXPY_GROUP`` rows (:mod:`asktell._weighted_sum`). Either
        way the result is a function of the ``(weights, keys)`` sequence alone, so it does
        not depend on how the seeds were split across workers.
        """
        weights, exponent = _float32_safe(np.asarray(weights, dtype=np.float64))
        keys = self._checked(keys, dim)
        if dim >= _LONG_ROW:
            return _unscaled(_axpy_sum(self.table, weights, keys, dim), exponent)
        windows = self.windows(dim)
        step = _chunk_rows(dim)
        if keys.size <= step:
            # One chunk (every population at short rows): the loop's one product added to
            # float64 zeros, written as float64(product) + 0.0, the same IEEE sum (a -0.0
            # becomes +0.0 either way), without the zeros and the in-place pass.
            product = weights[: keys.size].astype(np.float32) @ windows[keys]
            return _unscaled(np.add(product, 0.0, dtype=np.float64), exponent)
        total = np.zeros(dim, dtype=np.float64)
        for start in range(0, keys.size, step):
            chunk = keys[start : start + step]
            # Fancy indexing gathers the rows in C without copying the strided view
            # (np.take would first make the whole view contiguous: size * dim floats).
            block = windows[chunk]
            # One matrix-vector product per chunk (BLAS), accumulated in float64.
            total += weights[start : start + chunk.size].astype(np.float32) @ block
        return _unscaled(total, exponent)

    def _vetted_sum(self, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
        """:meth:`weighted_sum` (the same bits) for float64 ``weights`` of magnitude at most
        ``2**100`` and int64 ``keys`` this table issued for ``dim`` (:meth:`sample_mirrored`),
        without checking either again; its one-chunk short-row case only, the rest goes
        through :meth:`weighted_sum`."""
        if dim >= _LONG_ROW or keys.size * dim > 1 << 22 or keys.size != weights.size:
            return self.weighted_sum(weights, keys, dim)
        windows = self._windows
        if windows is None or windows.shape[1] != dim:
            windows = self.windows(dim)
        product = weights.astype(_F32) @ windows[keys]
        # float64(product) + 0.0 (a 0-d float64 array is not a weak scalar: the sum is
        # float64, the same IEEE operation as np.add(product, 0.0, dtype=np.float64)).
        return product + _ZERO64

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "size": self.size}


class CounterNoise:
    """Counter-based noise: ``eps(k)`` regenerated from ``(seed, k)`` with ``Philox``.

    Uses no memory and supports any dimension; costs one small generator set-up plus ``dim``
    normal draws per candidate. Keys are any int in ``[0, 2**62)``; each key gets its own
    counter block (``counter = [0, k, 0, 0]``), so two keys never share random numbers.

    Args:
        seed: the Philox key; the same ``(seed, k)`` gives the same vector in every process.
    """

    kind = "counter"
    _MAX_KEY = 1 << 62

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"CounterNoise 'seed' must be a non-negative int; got {seed!r}")
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"CounterNoise(seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CounterNoise) and self.seed == other.seed

    def __hash__(self) -> int:
        return hash(("counter", self.seed))

    def check_dim(self, dim: int, name: str = "num_params") -> None:
        if dim < 1:
            raise ConfigError(f"'{name}' must be >= 1; got {dim}")

    def sample_keys(self, rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
        return rng.integers(0, self._MAX_KEY, size=count, dtype=np.int64)

    def get(self, key: int, dim: int) -> np.ndarray:
        key = int(key)
        if not 0 <= key < self._MAX_KEY:
            raise ConfigError(f"noise key {key} is out of range: keys must lie in [0, 2**62)")
        gen = np.random.Generator(np.random.Philox(key=self.seed, counter=[0, key, 0, 0]))
        return gen.standard_normal(dim, dtype=np.float32)

    def rows(self, keys: np.ndarray, dim: int) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        out = np.empty((keys.size, dim), dtype=np.float32)
        for i, k in enumerate(keys.tolist()):
            out[i] = self.get(k, dim)
        return out

    def weighted_sum(self, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
        weights, exponent = _float32_safe(np.asarray(weights, dtype=np.float64))
        keys = np.asarray(keys, dtype=np.int64)
        total = np.zeros(dim, dtype=np.float64)
        step = _chunk_rows(dim)
        for start in range(0, keys.size, step):
            block = self.rows(keys[start : start + step], dim)
            total += weights[start : start + block.shape[0]].astype(np.float32) @ block
        return _unscaled(total, exponent)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed}


def part_bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` ranges of ``parts`` contiguous parts of ``count`` rows, cut at
    ``count * i // parts`` (empty parts left out): how a parted weighted sum is cut."""
    cuts = [count * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def add_parts(sums: list[np.ndarray], dim: int) -> np.ndarray:
    """The part sums added in part order, in float64 (the first part as it is: one part is
    bitwise the unparted sum)."""
    if not sums:
        return np.zeros(dim)
    total = np.array(sums[0], dtype=np.float64)
    for part in sums[1:]:
        total += part
    return total


def weighted_sum_in_parts(
    noise: NoiseSource, weights: np.ndarray, keys: np.ndarray, dim: int, parts: int
) -> np.ndarray:
    """``sum_i weights[i] * eps(keys[i])`` cut into ``parts`` contiguous parts
    (:func:`part_bounds`), each part ``noise.weighted_sum``, added in part order
    (:func:`add_parts`).

    The result's bits are a function of ``(weights, keys, parts)``: a strategy's
    ``gradient_parts`` fixes ``parts``, so a distributed tell (each part summed on the
    worker that holds the noise, :mod:`asktell.evaluators._dask_tell`) and this local sum
    give the same bits. ``parts=1`` is ``noise.weighted_sum`` itself; more parts differ
    from it in the last bits (each part restarts the float32 accumulation).
    """
    if parts == 1:
        return noise.weighted_sum(weights, keys, dim)
    return add_parts(
        [noise.weighted_sum(weights[a:b], keys[a:b], dim) for a, b in part_bounds(keys.size, parts)],
        dim,
    )


def noise_from_spec(spec: dict[str, Any]) -> NoiseSource:
    """Rebuild a noise source from :meth:`NoiseTable.spec` / :meth:`CounterNoise.spec`."""
    kind = spec.get("kind")
    if kind == "table":
        return NoiseTable(seed=int(spec["seed"]), size=int(spec["size"]))
    if kind == "counter":
        return CounterNoise(seed=int(spec["seed"]))
    raise ConfigError(f"noise 'kind' must be 'table' or 'counter'; got {kind!r}")
