"""The worker-process side of :class:`~asktell.evaluators._vector_pool.WorkerPool`: how a
worker is started, the loop it runs, and the messages it answers.

A worker builds its batch runner once (the task's, or a :class:`ChunkEngine` for a task
that has none), says ``("ready", pid, batched)``, then answers its pipe until it is closed:

- ``("dist", round, payload)``: the round's distribution, pickled once by the parent and
  sent once per round before the round's first piece, so pieces carry only seeds;
- ``("run", round, offset, seeds, retries)``: a piece, answered ``("ok", round, offset,
  evaluation)`` or ``("error", round, offset, traceback)``;
- ``("close",)``, or the parent's end of the pipe closed: stop.

:func:`worker_main` is a process's target, found by its module path in the new process (the
'spawn' and 'forkserver' start methods pickle it by reference): it stays a module-level
function of an importable module.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import traceback

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Evaluation, hooks_of

from ._common import evaluate_chunk

__all__ = ["ChunkEngine", "start_worker", "worker_main"]


class ChunkEngine:
    """The batch runner of a task that has none: :func:`evaluate_chunk`, as the serial
    evaluator runs it (the Dask evaluator's node mode runs any task in a pool)."""

    def __init__(self, task):
        self.task = task

    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int = 0) -> Evaluation:
        return evaluate_chunk(self.task, distribution, seeds, retries)

    def close(self) -> None:
        pass


def worker_main(conn, task, num_envs: int | None, mode: str, worker: int, tables=()) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if isinstance(task, bytes):  # pickled by cloudpickle (a task shipped through Dask)
        task = pickle.loads(task)
    if tables:  # the node's noise tables in shared memory (see asktell._shared_table)
        from asktell._shared_table import attach_table

        for seed, size, name in tables:
            attach_table(seed, size, name)
    engine = hooks_of(task).batch_runner(num_envs, mode, worker) or ChunkEngine(task)
    # A batch runner (a Gym task's slot engine) sizes its environments by its first batch
    # and steps them in lockstep: the parent keeps its pieces large enough to fill them.
    conn.send(("ready", os.getpid(), not isinstance(engine, ChunkEngine)))
    distribution, dist_round = None, None
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "close":
                break
            if message[0] == "dist":  # once per round: the pieces carry only seeds
                _, dist_round, payload = message
                distribution = pickle.loads(payload)
                continue
            _, round_id, offset, seeds, retries = message
            try:
                if round_id != dist_round:  # pragma: no cover - protocol guard
                    raise EvaluationError(f"piece of round {round_id} without its distribution")
                conn.send(("ok", round_id, offset, engine.run(distribution, seeds, retries)))
            except Exception:
                conn.send(("error", round_id, offset, traceback.format_exc()))
    finally:
        engine.close()
        conn.close()


_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas():
    """Workers are started with one BLAS thread each (unless the user set a number): a
    worker is one process per core, and the policy's small products gain nothing from more
    threads, which would only contend with the other workers (as Dask's nanny does too)."""
    saved = {k: os.environ.get(k) for k in _BLAS_THREAD_VARS}
    for k, v in saved.items():
        if v is None:
            os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def start_worker(ctx, w: int, task, num_envs: int | None, mode: str, tables: tuple):
    """Start worker ``w`` in a process of the multiprocessing context ``ctx``; returns
    ``(process, the parent's end of its pipe)``. It is ready once it has said so."""
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=worker_main,
        args=(child, task, num_envs, mode, w, tables),
        name=f"asktell-vector-{w}",
        daemon=True,
    )
    with _single_threaded_blas():
        process.start()
    child.close()
    return process, parent
