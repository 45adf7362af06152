"""Node mode's worker side: one Dask worker per machine, its chunk split over a local pool.

With ``DaskEvaluator(node_processes=...)`` each Dask worker stands for a machine. The
scheduler and the driver then handle one task per node and generation, not one per core
(Dask costs about 2 ms of wall time per task, see ``docs/dask.md``). On the node, the local
processes (:class:`~._vector_pool.WorkerPool`, the vector evaluator's pool) take the chunk's
pieces from a work queue as they come free (about :data:`PIECES_PER_PROCESS` per process,
single candidates once candidates are measured to be expensive); each process keeps the
unpickled task and, when the task has one, its batch runner (a Gym task's slot engine; else
:func:`~._common.evaluate_chunk`, what the serial evaluator runs), so returns are bitwise the
serial evaluator's. The node's noise table lives once in shared memory
(:mod:`asktell._shared_table`), adopted by every process.

A straggler-tolerant generation (``[evaluator.stragglers]``) sends each node its share of
the quorum: the node returns once its share is back and no piece is left unstarted; the
candidates not back are marked ``dropped``. When the driver closes the generation it sends
every node one message (:func:`close_round`): a node still running the generation's chunk
returns at once, and every node hands over what it has back of that chunk by then (a node
that returned early: the pieces back since; a node still running: the pieces back so far);
the rest finish in the background and are discarded (``docs/stragglers.md`` "In node
mode").

A pool is kept per (task, processes, time limit, noise table) in the worker process, across
generations (the four most recent), and closed, with its shared table unlinked, by
:func:`close_pools` (the evaluator's ``close()`` runs it on every worker for its task) or at
the worker's exit.

This module runs inside Dask workers and imports nothing client-side (nor dask itself, at
import). Node mode's client side (the non-daemonic ``Nanny`` of the embedded cluster, the
daemonic check of a connected one) is :mod:`._dask_node_link`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.noise import NoiseTable
from asktell.protocol import Evaluation

__all__ = [
    "DAEMON_FIX",
    "NodeSpec",
    "close_pools",
    "close_round",
    "is_daemonic",
    "run_node_chunk",
    "usable_cores",
]

#: Node settings travelling with the shipped task: ``(processes or "auto", time limit)``.
NodeSpec = tuple[Any, "float | None"]

#: What a cluster whose workers are daemonic processes needs (they may not start children).
DAEMON_FIX = (
    "start its workers as non-daemonic processes: `DASK_DISTRIBUTED__WORKER__DAEMON=False "
    "dask worker ADDRESS --nthreads 1` (the config distributed.worker.daemon: false; "
    "dask-jobqueue: job_script_prologue=['export DASK_DISTRIBUTED__WORKER__DAEMON=False']), "
    "or `dask worker ADDRESS --no-nanny --nthreads 1`"
)

# Pools kept per worker process (a few evaluators may share a cluster, each its own task).
_MAX_POOLS = 4
_POOLS: OrderedDict[tuple, _NodePool] = OrderedDict()
_LOCK = threading.Lock()
_FINALIZER: Any = None
#: Pieces per local process in the node's work queue (fewer when a candidate is expensive:
#: see :func:`~._vector_pool.piece_bounds`).
PIECES_PER_PROCESS = 4
#: Rounds the driver closed (:func:`close_round`), most recent last.
_STOPPED: dict[str, None] = {}
_MAX_STOPPED = 64


def usable_cores() -> int:
    """Cores this process may use (CPU affinity and cgroup quota, as Dask counts them)."""
    try:
        from dask.system import CPU_COUNT

        return max(1, int(CPU_COUNT))
    except ImportError:  # pragma: no cover - workers have dask
        return max(1, len(os.sched_getaffinity(0)))


def is_daemonic(dask_worker: Any = None) -> bool:
    """Is this (worker) process daemonic, so unable to start the node's pool?"""
    return bool(multiprocessing.current_process().daemon)


class _NodePool:
    """The local processes of one (task, processes, limit, table), and the shared table."""

    def __init__(self, payload: bytes, processes: int, timeout: float | None, noise: Any):
        from asktell._shared_table import SharedTable

        from ._vector_pool import WorkerPool

        self.table = SharedTable(noise.seed, noise.size) if isinstance(noise, NoiseTable) else None
        if self.table is not None:  # the worker itself reads the node's copy too
            self.table.adopt()
        self.pool = WorkerPool(
            payload, processes, None, "sync", "spawn", timeout,
            tables=(self.table.spec,) if self.table is not None else (),
            label="node-local worker",
            pieces_per_worker=PIECES_PER_PROCESS,
        )
        # A node worker with several threads runs its chunks one after the other here.
        self.lock = threading.Lock()
        #: ``(round tag, first seed, size)`` of the last chunk, if it returned with pieces
        #: in flight (``None``: it did not).
        self.open_key: tuple | None = None

    def run(
        self,
        distribution: Distribution,
        seeds: np.ndarray,
        retries: int,
        share: tuple | None = None,
        round_tag: str | None = None,
    ) -> Evaluation:
        stop = key = None
        if round_tag is not None:
            stop = lambda: round_tag in _STOPPED
            key = (round_tag, int(seeds[0]), seeds.size)
        with self.lock:
            self.open_key = None
            parts = self.pool.run(distribution, seeds, retries, share=share, stop=stop, name=key)
            dropped = self.pool.dropped
            if key is not None and dropped:  # pieces in flight: close_round's
                self.open_key = key
        if share is not None or round_tag is not None:
            return _with_dropped(parts, seeds.size, dropped)
        return Evaluation.concatenate(parts, seeds.size)

    def hand_over(self, round_tag: str) -> tuple[tuple, Evaluation] | None:
        """The driver closed the generation ``round_tag``: this pool's chunk of it
        ``(round tag, first seed, size)`` and its record with what is back now (see
        :func:`close_round`), never waiting. A chunk that returned with pieces in flight:
        those back since are told too (:meth:`WorkerPool.harvest`, once); a chunk still
        running: the pieces back so far (:meth:`WorkerPool.snapshot`). ``None``: this pool
        has no chunk of that round open (or it is between a return and a new chunk)."""
        if self.lock.acquire(blocking=False):  # no chunk running here
            try:
                key = self.open_key
                if key is None or key[0] != round_tag:
                    return None
                self.open_key = None
                parts = self.pool.harvest()
                if parts is None:
                    return None
                return key, _with_dropped(parts, key[2], self.pool.dropped)
            finally:
                self.lock.release()
        current = self.pool.current  # a chunk runs in another thread
        key = None if current is None else current.name
        if key is None or key[0] != round_tag:
            return None
        got = self.pool.snapshot(key)
        if got is None:  # it returned meanwhile: its pieces stay dropped
            return None
        return key, _with_dropped(got[0], key[2], got[1])

    def close(self) -> None:
        with self.lock:
            try:
                self.pool.close()
            finally:
                if self.table is not None:
                    self.table.close()


def _with_dropped(parts: list, n: int, dropped: list) -> Evaluation:
    """A chunk's record from its parts, ``dropped`` (ranges) marked."""
    out = Evaluation.concatenate(parts, n)
    out.dropped = np.zeros(n, dtype=bool)
    for a, b in dropped:
        out.dropped[a:b] = True
    return out


def _pool_for(shipped: tuple[str, bytes, NodeSpec], noise: Any) -> _NodePool:
    global _FINALIZER
    digest, payload, (processes, timeout) = shipped
    if processes == "auto":
        processes = usable_cores()
    noise_key = (noise.seed, noise.size) if isinstance(noise, NoiseTable) else None
    key = (digest, int(processes), timeout, noise_key)
    with _LOCK:
        pool = _POOLS.get(key)
        if pool is not None:
            _POOLS.move_to_end(key)
            return pool
        if is_daemonic():
            raise EvaluationError(
                f"DaskEvaluator node mode: this Dask worker (pid {os.getpid()}) is a daemonic "
                f"process and may not start its {processes} local processes; {DAEMON_FIX}"
            )
        if _FINALIZER is None:  # the worker's exit closes the pools and unlinks the tables
            _FINALIZER = multiprocessing.util.Finalize(None, close_pools, exitpriority=50)
        pool = _POOLS[key] = _NodePool(payload, int(processes), timeout, noise)
        old = []
        while len(_POOLS) > _MAX_POOLS:
            old.append(_POOLS.popitem(last=False)[1])
    for stale in old:
        stale.close()
    return pool


def run_node_chunk(
    shipped: tuple[str, bytes, NodeSpec],
    distribution: Distribution,
    seeds: np.ndarray,
    retries: int,
    share: tuple | None = None,
    round_tag: str | None = None,
) -> Evaluation:
    """One node's chunk, run by its local processes from a work queue; in seed order,
    failures recorded.

    ``share`` ``(candidates, episodes, steps)`` (a straggler-tolerant generation): return
    once the chunk's candidates back meet it and no piece is left unstarted; ``round_tag``:
    return at once when :func:`close_round` names it (the driver closed the generation). The
    candidates not back are marked in ``dropped``; their pieces finish in the background and
    their results are discarded (tagged with their round), unless the driver's close takes
    them first."""
    pool = _pool_for(shipped, distribution.noise)
    if share is not None:  # (rule..., n): this chunk's share, ceil(rule * chunk / n)
        *rule, n = share
        share = tuple(None if r is None else -(-r * seeds.size // n) for r in rule)
    try:
        return pool.run(distribution, seeds, retries, share, round_tag)
    finally:
        if round_tag is not None:
            with _LOCK:
                _STOPPED.pop(round_tag, None)


async def close_round(round_tag: str, dask_worker: Any = None) -> dict[tuple[int, int], Evaluation]:
    """The driver closed the generation ``round_tag`` (one ``Client.run`` to every node,
    on the worker's event loop while a chunk runs in a thread; never waits): this node's
    chunk of it returns at once (remembered for a short while, in case it has not started
    yet), and the node hands over what it has back of that chunk now, ``{(first seed,
    size): record}`` with the candidates not back marked ``dropped`` (and discarded when
    they arrive). A chunk that returned early (its share back) with pieces in flight: the
    pieces back since; a chunk still running: the pieces back so far. Empty: nothing of
    that round here (already handed over, never run, or another chunk ran since)."""
    with _LOCK:
        _STOPPED[round_tag] = None
        while len(_STOPPED) > _MAX_STOPPED:
            _STOPPED.pop(next(iter(_STOPPED)))
        pools = list(_POOLS.values())
    out = {}
    for pool in pools:
        got = pool.hand_over(round_tag)
        if got is not None:
            (_, first, size), record = got
            out[first, size] = record
    return out


def close_pools(digest: str | tuple[str, ...] | None = None, dask_worker: Any = None) -> int:
    """Stop this worker's node pools (of the task ``digest``, or of each of a tuple of
    them; ``None``: all) and unlink their shared tables; how many there were."""
    wanted = (digest,) if isinstance(digest, str) else digest
    with _LOCK:
        keys = [k for k in _POOLS if wanted is None or k[0] in wanted]
        pools = [_POOLS.pop(k) for k in keys]
    for pool in pools:
        pool.close()
    return len(pools)
