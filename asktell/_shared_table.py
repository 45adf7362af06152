"""One noise table per machine: a :class:`~asktell.noise.NoiseTable` in shared memory.

Salimans et al. 2017 share one noise table between a machine's workers. Built in every
process, a default table (128 MiB) costs 18 processes 2.3 GiB; here the first use on a node
creates one ``multiprocessing.shared_memory`` block for ``(seed, size)``, fills it with
:func:`asktell.noise.build_table_into` (bitwise the table ``NoiseTable(seed, size)``
builds), and every local process attaches to it and calls
:func:`asktell.noise.adopt_table`, so its ``NoiseTable(seed, size).table`` *is* that buffer.

The process that created a block owns it: :meth:`SharedTable.close` unlinks it (the node
pool calls it when it closes; a local process that crashes only drops its mapping).
"""

from __future__ import annotations

import os
import uuid
from multiprocessing import shared_memory

import numpy as np

from asktell.noise import adopt_table, build_table_into

__all__ = ["SharedTable", "attach_table", "unlink_tables_of", "SEGMENT_PREFIX"]

#: Every block's name starts with this (``/dev/shm/asktell-...`` on Linux), so leftovers
#: can be found.
SEGMENT_PREFIX = "asktell-noise-"

# Blocks attached in this process, kept open for as long as the process adopts them (the
# adopted array is a view of the mapping: closing it under the array would crash).
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


class SharedTable:
    """The table ``(seed, size)`` in a fresh shared-memory block owned by this process."""

    def __init__(self, seed: int, size: int):
        self.seed, self.size = int(seed), int(size)
        self.name = f"{SEGMENT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._block: shared_memory.SharedMemory | None = shared_memory.SharedMemory(
            name=self.name, create=True, size=4 * self.size
        )
        try:
            self.array = np.ndarray((self.size,), dtype=np.float32, buffer=self._block.buf)
            build_table_into(self.seed, self.size, self.array)
        except BaseException:
            self.close()
            raise

    def adopt(self) -> None:
        """Make it this process's ``NoiseTable(seed, size)`` too (e.g. a Dask worker's
        distributed weighted sums then read the node's copy instead of building one)."""
        adopt_table(self.seed, self.size, self.array)

    @property
    def spec(self) -> tuple[int, int, str]:
        """What a local process needs to attach: ``(seed, size, block name)``."""
        return self.seed, self.size, self.name

    def close(self) -> None:
        """Unlink the block (idempotent). Processes still attached keep their mapping until
        they exit; nothing new can attach."""
        block, self._block = self._block, None
        if block is None:
            return
        self.array = None  # this process's cache may keep its adopted view: still valid
        try:
            block.unlink()
        except FileNotFoundError:
            pass
        try:
            block.close()
        except BufferError:  # this process still reads it (adopted): kept mapped till exit
            _ATTACHED[self.name] = block


def attach_table(seed: int, size: int, name: str) -> np.ndarray:
    """Attach to the block ``name`` and make it this process's ``NoiseTable(seed, size)``."""
    block = _ATTACHED.get(name)
    if block is None:
        block = _ATTACHED[name] = shared_memory.SharedMemory(name=name)
    array = np.ndarray((int(size),), dtype=np.float32, buffer=block.buf)
    adopt_table(seed, size, array)
    return array


def unlink_tables_of(pid: int | None, folder: str = "/dev/shm") -> int:
    """Unlink the blocks a process that died without closing them created (Linux; found by
    the creator's pid in their names). How many there were."""
    if pid is None or not os.path.isdir(folder):
        return 0
    prefix = f"{SEGMENT_PREFIX}{pid}-"
    count = 0
    for name in os.listdir(folder):
        if name.startswith(prefix):
            try:
                block = shared_memory.SharedMemory(name=name)
                block.unlink()
                block.close()
                count += 1
            except (FileNotFoundError, OSError):
                pass
    return count
