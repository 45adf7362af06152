"""The vector evaluator's worker processes: each keeps its own batch runner, so only seeds go
in and results come out, once per batch (see :mod:`asktell.evaluators.vector`).

A worker that dies, or runs past its deadline (``candidate_timeout_seconds`` times the
candidates it was sent), is killed and restarted, and its block re-run one candidate per
message: only the candidate that kills it again, or runs past the limit alone, fails.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import time
import traceback
from multiprocessing import connection
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Evaluation, Failure, hooks_of

from ._common import evaluate_chunk, timeout_message

__all__ = ["WorkerPool", "empty_block"]


def empty_block(n: int) -> Evaluation:
    """A block of ``n`` candidates filled one at a time (Gym results carry episode counts)."""
    out = Evaluation.empty(n)
    out.episodes = np.zeros(n, dtype=np.int64)
    out.truncated = np.zeros(n, dtype=np.int64)
    return out



class ChunkEngine:
    """The batch runner of a task that has none: :func:`evaluate_chunk`, as the serial
    evaluator runs it (the Dask evaluator's node mode runs any task in a pool)."""

    def __init__(self, task):
        self.task = task

    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int = 0) -> Evaluation:
        return evaluate_chunk(self.task, distribution, seeds, retries)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- worker processes
def _worker_main(conn, task, num_envs: int | None, mode: str, worker: int, tables=()) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if isinstance(task, bytes):  # pickled by cloudpickle (a task shipped through Dask)
        task = pickle.loads(task)
    if tables:  # the node's noise tables in shared memory (see asktell._shared_table)
        from asktell._shared_table import attach_table

        for seed, size, name in tables:
            attach_table(seed, size, name)
    engine = hooks_of(task).batch_runner(num_envs, mode, worker) or ChunkEngine(task)
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "close":
                break
            _, distribution, seeds, retries = message
            try:
                conn.send(("ok", engine.run(distribution, seeds, retries)))
            except Exception:  # noqa: BLE001 - reported to the parent, which raises
                conn.send(("error", traceback.format_exc()))
    finally:
        engine.close()
        conn.close()


class _WorkerDied(Exception):
    pass


class _WorkerLate(Exception):
    """A worker is past its deadline (candidate_timeout_seconds times the candidates it has)."""


#: Seconds added to a worker's deadline for sending the batch and its results through the
#: pipe (the limit is the candidates' compute time, not the transfer's).
_PIPE_SLACK = 0.5


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


class WorkerPool:
    """Worker processes, each running the task's batch runner on one block of seeds per
    batch.

    ``task`` may be the task's pickle (bytes), unpickled in each worker; ``tables`` are
    ``(seed, size, shared-memory name)`` noise tables every worker adopts; ``label`` names
    the workers in failure messages."""

    def __init__(
        self,
        task,
        num_workers: int,
        num_envs: int | None,
        mode: str,
        start_method: str,
        timeout: float | None = None,
        tables: tuple = (),
        label: str = "vector-env worker",
    ):
        import multiprocessing

        self.task = task
        self.tables = tuple(tables)
        self.label = label
        self.timeout = timeout
        self.num_envs = num_envs
        self.mode = mode
        self.ctx = multiprocessing.get_context(start_method)
        self.workers: list[tuple[Any, Any] | None] = [None] * num_workers

    def _start(self, w: int) -> None:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main,
            args=(child, self.task, self.num_envs, self.mode, w, self.tables),
            name=f"asktell-vector-{w}",
            daemon=True,
        )
        with _single_threaded_blas():
            process.start()
        child.close()
        self.workers[w] = (process, parent)

    def _ensure(self, ws: list[int]) -> None:
        """Start the workers ``ws`` that are not running, and wait until they are ready."""
        fresh = []
        for w in ws:
            worker = self.workers[w]
            if worker is None or not worker[0].is_alive():
                if worker is not None:
                    self._stop(w)
                self._start(w)
                fresh.append(w)
        for w in fresh:
            process, conn = self.workers[w]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                process.join(5)
                self.close()
                raise EvaluationError(
                    f"a {self.label} process died while starting (exit code "
                    f"{process.exitcode}); the task must be picklable and importable in a new "
                    "process, and a script using the 'spawn' start method must guard its entry "
                    "point with `if __name__ == '__main__':`"
                ) from None
            if message[0] != "ready":  # pragma: no cover - protocol guard
                raise EvaluationError(f"{self.label} {w} sent {message!r} instead of 'ready'")

    def _receive(self, w: int, candidates: int = 0) -> Evaluation:
        """The worker's answer; with a time limit, :class:`_WorkerLate` once ``candidates``
        times the limit have passed without one."""
        process, conn = self.workers[w]
        if self.timeout is not None and candidates:
            if not conn.poll(self.timeout * candidates + _PIPE_SLACK):
                raise _WorkerLate()
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            process.join(5)
            raise _WorkerDied(f"exit code {process.exitcode}") from None
        if status == "error":
            raise EvaluationError(f"{self.label} {w} failed:\n{payload}")
        return payload

    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int):
        blocks = [
            (int(b[0]), b.size)
            for b in np.array_split(np.arange(seeds.size), len(self.workers))
            if b.size
        ]
        completed = False
        try:
            waiting = {}
            self._ensure(list(range(len(blocks))))
            deadlines = {}
            for w, (offset, size) in enumerate(blocks):
                process, conn = self.workers[w]
                conn.send(("run", distribution, seeds[offset : offset + size], retries))
                waiting[conn] = w
                if self.timeout is not None:
                    deadlines[conn] = time.monotonic() + self.timeout * size + _PIPE_SLACK
            parts: list[tuple[int, Evaluation]] = []
            while waiting:
                wait_for = None
                if deadlines:
                    wait_for = max(0.0, min(deadlines[c] for c in waiting) - time.monotonic())
                ready = connection.wait(list(waiting), wait_for)
                if not ready:  # some worker is past its deadline: only it is rescued
                    ready = [c for c in waiting if deadlines[c] <= time.monotonic()]
                for conn in ready:
                    w = waiting.pop(conn)
                    offset, size = blocks[w]
                    block = seeds[offset : offset + size]
                    try:
                        part = self._receive(w) if conn.poll() else self._late(w)
                    except (_WorkerDied, _WorkerLate):
                        part = self._rescue(w, distribution, block, retries)
                    parts.append((offset, part))
            completed = True
            return sorted(parts, key=lambda p: p[0])
        finally:
            if not completed:
                # Results may still be in flight in the pipes: start afresh next time.
                self.close()

    def _late(self, w: int) -> Evaluation:
        self._kill(w)
        raise _WorkerLate()

    def _rescue(self, w, distribution, seeds, retries) -> Evaluation:
        """A worker died or ran past its deadline: re-run its block one candidate at a time
        in a fresh worker; a candidate that kills the worker again, or runs past the time
        limit alone, is a failed candidate (the others get their exact returns)."""
        self._stop(w)
        out = empty_block(seeds.size)
        for i in range(seeds.size):
            self._ensure([w])
            process, conn = self.workers[w]
            conn.send(("run", distribution, seeds[i : i + 1], retries))
            try:
                out.place(i, self._receive(w, candidates=1))
            except (_WorkerDied, _WorkerLate) as exc:
                self._kill(w)
                if isinstance(exc, _WorkerLate):
                    error = timeout_message(self.timeout)
                else:
                    error = f"the {self.label} process died while evaluating it ({exc})"
                out.failures.append(Failure(i, int(seeds[i]), error, distribution.generation))
        return out

    def _kill(self, w: int) -> None:
        """Stop a worker that may be hung, without waiting for it to answer."""
        worker = self.workers[w]
        if worker is not None and worker[0].is_alive():
            worker[0].kill()
        self._stop(w)

    def _stop(self, w: int) -> None:
        worker, self.workers[w] = self.workers[w], None
        if worker is None:
            return
        process, conn = worker
        try:
            if process.is_alive():
                conn.send(("close",))
        except (OSError, ValueError):
            pass
        process.join(2)
        if process.is_alive():
            process.terminate()
            process.join(2)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()

    def close(self) -> None:
        for w in range(len(self.workers)):
            self._stop(w)
