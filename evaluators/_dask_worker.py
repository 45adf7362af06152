"""The Dask evaluator's worker side: what runs inside a Dask worker.

Import direction (the three pieces of :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_round.py  ->  _dask_link.py  ->  _dask_worker.py
                                 ->  _dask_worker.py

This module imports nothing client-side and not dask itself: workers import it by name to
run a chunk, and it must stay importable without ``distributed``.

A chunk is the very :func:`asktell.evaluators._common.evaluate_chunk` the serial evaluator
runs, so returns are bitwise equal to it. The task arrives as ``(digest, payload)``, the
pickled task and its hash (packed by :meth:`asktell.evaluators._dask_link.ClusterLink.ship_task`);
each worker *thread* unpickles it once and keeps it, so a task that keeps environments open
never shares them between threads.
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

__all__ = ["identity", "task_for_thread", "run_chunk"]

_LOCAL = threading.local()
# Tasks kept per thread: a few evaluators may share a cluster, each with its own task.
_TASKS_PER_THREAD = 4


def identity(value: Any) -> Any:
    """The tiny task whose result holds the distribution or the task (see ``dask.py``)."""
    return value


def task_for_thread(shipped: tuple[str, bytes]) -> Task:
    """This thread's copy of the task, unpickled on first use and kept (LRU, by digest)."""
    digest, payload = shipped
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
    *,
    shipped_task: tuple[str, bytes],
    distribution: Distribution,
    candidate_retries: int,
) -> ChunkResult:
    """Evaluate one chunk of seeds; ``seconds`` is its compute time (for ``"auto"`` chunks)."""
    start = time.perf_counter()
    part = evaluate_chunk(task_for_thread(shipped_task), distribution, seeds, candidate_retries)
    part.seconds = time.perf_counter() - start
    return part
