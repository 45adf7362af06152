"""The Dask evaluator's worker side: what runs inside a Dask worker.

Import direction (the pieces of :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_round.py  ->  _dask_link.py    ->  _dask_worker.py
                                 ->  _dask_chunks.py  ->  _dask_worker.py
    (_dask_options.py and _dask_quorum.py import _dask_link.py, never this module)

This module imports nothing client-side and not dask itself: workers import it by name to
run a chunk, and it must stay importable without ``distributed``.

A chunk is the very :func:`asktell.evaluators._common.evaluate_chunk` the serial evaluator
runs, so returns are bitwise equal to it. The task arrives as ``(digest, payload)``, the
pickled task and its hash (packed by :meth:`asktell.evaluators._dask_link.ClusterLink.ship_task`);
each worker *thread* unpickles it once and keeps it, so a task that keeps environments open
never shares them between threads.

In node mode the shipped task carries a third item, the node settings, and the chunk goes to
the worker's local pool instead (:mod:`._dask_node`).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.protocol import Task

from ._common import ChunkResult, evaluate_chunk

__all__ = ["identity", "task_for_thread", "run_chunk", "executing_count", "running_candidates"]

_LOCAL = threading.local()
#: Chunks run one candidate at a time (a time limit is set): chunk name -> (index in the
#: chunk, time.monotonic() it started). Read on the worker's event loop by
#: :func:`running_candidates`, so a hung thread can be asked which candidate it is stuck in.
_RUNNING: dict[str, tuple[int, float]] = {}
# Tasks kept per thread: a few evaluators may share a cluster, each with its own task.
_TASKS_PER_THREAD = 4


def identity(value: Any) -> Any:
    """The tiny task whose result holds the distribution or the task (see ``dask.py``)."""
    return value


def quiet_shutdown(dask_worker: Any = None) -> None:
    """Before an embedded cluster closes: its workers' own logs go quiet below CRITICAL.
    Transfers between workers cut by the close (Ctrl-C mid-generation) are expected then,
    and distributed logs each as an ERROR with a traceback on the run's console."""
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def executing_count(dask_worker: Any) -> int:
    """Tasks a worker's threads are still running, cancelled ones included (``Client.run``
    calls it on the worker's event loop, so it answers while every thread is hung)."""
    return len(dask_worker.state.executing)


def running_candidates(dask_worker: Any = None) -> dict[str, tuple[int, float]]:
    """``{chunk name: (index in the chunk, seconds it has run)}`` on this worker."""
    now = time.monotonic()
    return {name: (i, now - started) for name, (i, started) in list(_RUNNING.items())}


def task_for_thread(shipped: tuple) -> Task:
    """This thread's copy of the task, unpickled on first use and kept (LRU, by digest)."""
    digest, payload = shipped[:2]
    cache = getattr(_LOCAL, "tasks", None)
    if cache is None:
        cache = _LOCAL.tasks = OrderedDict()
    task = cache.get(digest)
    if task is None:
        task = pickle.loads(payload)
        cache[digest] = task
        while len(cache) > _TASKS_PER_THREAD:
            cache.popitem(last=False)
    else:
        cache.move_to_end(digest)
    return task


def run_chunk(
    seeds: np.ndarray,
    name: str = "",
    *,
    shipped_task: tuple,
    distribution: Distribution,
    candidate_retries: int,
    one_at_a_time: bool = False,
    node_share: tuple | None = None,
    node_round: str | None = None,
) -> ChunkResult:
    """Evaluate one chunk of seeds; ``seconds`` is its compute time (for ``"auto"`` chunks).

    ``one_at_a_time`` (a time limit is set): each candidate alone, its start noted under
    ``name``, so that a chunk past its deadline tells which candidate it is stuck in (the
    returns are the same: a candidate's value does not depend on its chunk). In node mode
    the node's pool enforces the time limit instead, killing the local process, and
    ``node_share``/``node_round`` close a straggler-tolerant generation on the node."""
    start = time.perf_counter()
    if len(shipped_task) > 2 and shipped_task[2] is not None:
        from ._dask_node import run_node_chunk

        part = run_node_chunk(
            shipped_task, distribution, seeds, candidate_retries, node_share, node_round
        )
        part.seconds = time.perf_counter() - start
        return part
    task = task_for_thread(shipped_task)
    if not one_at_a_time:
        part = evaluate_chunk(task, distribution, seeds, candidate_retries)
    else:
        part = ChunkResult(seeds.size)
        try:
            for i in range(seeds.size):
                _RUNNING[name] = (i, time.monotonic())
                part.place(i, evaluate_chunk(task, distribution, seeds[i : i + 1], candidate_retries))
        finally:
            _RUNNING.pop(name, None)
    part.seconds = time.perf_counter() - start
    return part
