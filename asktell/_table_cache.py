"""Building the shared noise table and keeping it once per process.

:class:`~asktell.noise.NoiseTable` reads its table from :data:`TABLES`: built on first use
(in parallel threads, identical for any number of them), or adopted from a buffer another
process filled (one table per node in shared memory, :mod:`asktell._shared_table`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from asktell.errors import ConfigError

__all__ = ["TABLES", "TableCache", "adopt_table", "build_table", "build_table_into"]

# Block size of the deterministic parallel fill. Fixed, so the table's contents never depend
# on how many threads built it.
_BLOCK = 1 << 22


class TableCache:
    """Per-process cache of built tables; a lock makes concurrent first uses build once."""

    def __init__(self, max_tables: int = 2):
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self._max_tables = max_tables

    def get(self, seed: int, size: int) -> np.ndarray:
        key = (seed, size)
        table = self._tables.get(key)
        if table is not None:
            return table
        with self._lock:
            table = self._tables.get(key)
            if table is None:
                table = build_table(seed, size)
                while len(self._tables) >= self._max_tables:
                    self._tables.pop(next(iter(self._tables)))
                self._tables[key] = table
            return table

    def adopt(self, seed: int, size: int, table: np.ndarray) -> None:
        """Use ``table`` (already built elsewhere, e.g. in shared memory) for ``(seed, size)``."""
        with self._lock:
            while len(self._tables) >= self._max_tables:
                self._tables.pop(next(iter(self._tables)))
            self._tables[(seed, size)] = table

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()


def build_table(seed: int, size: int) -> np.ndarray:
    table = np.empty(size, dtype=np.float32)
    _fill_table(seed, size, table)
    table.flags.writeable = False
    return table


def _fill_table(seed: int, size: int, table: np.ndarray) -> None:
    # One PCG64 stream per fixed-size block, spawned from the seed: the blocks can be filled
    # in parallel threads (numpy releases the GIL while filling) and the result is identical
    # for any number of threads.
    num_blocks = -(-size // _BLOCK)
    children = np.random.SeedSequence(seed).spawn(num_blocks)

    def fill(i: int) -> None:
        block = table[i * _BLOCK : min(size, (i + 1) * _BLOCK)]
        np.random.Generator(np.random.PCG64(children[i])).standard_normal(
            out=block, dtype=np.float32
        )

    workers = min(num_blocks, os.cpu_count() or 1)
    if workers <= 1:
        for i in range(num_blocks):
            fill(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(num_blocks)))


#: This process's tables (what ``NoiseTable.table`` reads).
TABLES = TableCache()


def adopt_table(seed: int, size: int, table: np.ndarray) -> None:
    """Make this process's :class:`NoiseTable` ``(seed, size)`` use ``table`` instead of
    building its own: how processes of one node share one table in shared memory.

    ``table`` must be the float32 array that ``NoiseTable(seed, size)`` would build (a
    buffer filled by :func:`build_table_into` in another process); it is made read-only.
    """
    table = np.asarray(table)
    if table.dtype != np.float32 or table.shape != (size,):
        raise ConfigError(
            f"adopt_table: expected a float32 array of shape ({size},); got "
            f"{table.dtype} {table.shape}"
        )
    table.flags.writeable = False
    TABLES.adopt(int(seed), int(size), table)


def build_table_into(seed: int, size: int, out: np.ndarray) -> None:
    """Fill ``out`` (float32, ``(size,)``, e.g. a shared-memory buffer) with the table
    ``NoiseTable(seed, size)`` holds, bitwise."""
    _fill_table(seed, size, out)
