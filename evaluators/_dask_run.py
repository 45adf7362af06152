"""How one generation runs on Dask: worker-side functions, chunking, the collecting loop.

Private to :mod:`asktell.evaluators.dask`. The worker-side functions are what Dask workers
import, so this module must stay importable without dask installed.
"""

from __future__ import annotations

import pickle
import threading
import time
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Evaluation, Failure, Task

from ._common import ChunkResult, assemble, evaluate_chunk

if TYPE_CHECKING:
    from .dask import DaskEvaluator

# How often the collecting loop wakes up when nothing finished, to check the scheduler and
# the workers are still there and the deadline has not passed.
_POLL_SECONDS = 0.5
# An embedded cluster short of workers this long is topped up again (see _heal_cluster).
_HEAL_SECONDS = 5.0
# One attempt to fetch finished results. Results are small; a fetch that takes longer met a
# holder that died meanwhile (distributed retries a refused connection for its whole
# connect timeout, 30 s by default), so give up and try again once Dask knows.
_GATHER_SECONDS = 10.0
_GATHER_ATTEMPTS = 6
# How often the distribution or task may be lost with the workers holding it (and chunks
# rerun because of it) before a generation gives up.
_LOSS_LIMIT = 3
_RERUN_LIMIT = 50


# --------------------------------------------------------------------------- worker side
# These functions run on Dask workers; they must stay importable without dask installed.

_LOCAL = threading.local()
_TASKS_PER_THREAD = 4


def identity(value: Any) -> Any:
    return value


def _task_for_thread(shipped: tuple[str, bytes]) -> Task:
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


def _run_chunk(
    seeds: np.ndarray,
    *,
    shipped_task: tuple[str, bytes],
    distribution: Distribution,
    candidate_retries: int,
) -> ChunkResult:
    start = time.perf_counter()
    part = evaluate_chunk(_task_for_thread(shipped_task), distribution, seeds, candidate_retries)
    part.seconds = time.perf_counter() - start
    return part


# ------------------------------------------------------------------------------- helpers


def chunk_bounds(n: int, num_chunks: int) -> list[tuple[int, int]]:
    """Cut ``n`` seeds into at most ``num_chunks`` nearly equal ``(start, stop)`` ranges.

    When ``n`` is even the cuts fall on even offsets, so mirrored pairs ``[k, ~k]`` ride in
    the same chunk (not needed for correctness: every seed decodes on its own).
    """
    if n <= 0:
        return []
    num_chunks = max(1, min(int(num_chunks), n))
    if n % 2 == 0 and num_chunks <= n // 2:
        pairs = n // 2
        edges = [2 * ((pairs * i) // num_chunks) for i in range(num_chunks + 1)]
    else:
        edges = [(n * i) // num_chunks for i in range(num_chunks + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SchedulerLost(Exception):
    """Internal: the scheduler stopped answering or the connection closed."""


def _heal_cluster(cluster: Any, num_workers: int) -> None:
    """Give an embedded cluster back its configured workers (runs on the cluster's loop).

    A worker killed while its nanny is still restarting it can leave that nanny without a
    process for good, or gone (a race in distributed, met when a candidate kills every
    worker it touches). Such nannies are dropped from the cluster's spec and ``scale``
    starts fresh ones; for a healthy cluster this is a no-op.
    """
    for name, nanny in list(cluster.workers.items()):
        process = getattr(nanny, "process", None)
        if process is None or not process.is_alive():
            cluster.worker_spec.pop(name, None)
    cluster.scale(num_workers)


class Generation:
    """The futures of one ``DaskEvaluator.evaluate`` call and the loop that collects them."""

    def __init__(self, ev: DaskEvaluator, distribution: Distribution, seeds: np.ndarray, tag: str):
        self.ev = ev
        self.client = ev.client
        self.distribution = distribution
        self.seeds = seeds
        self.tag = tag
        self.started = time.monotonic()
        self.deadline = (
            None if ev.deadline_seconds is None else self.started + ev.deadline_seconds
        )
        self.late: list[tuple[int, int]] = []  # ranges that missed the deadline
        self._no_workers_since: float | None = None
        self._short_since: float | None = None
        self.futures: list[Any] = []
        self.losses = 0
        self.reruns = 0
        ev._ensure_running()
        self.task_future = ev._shipped_task()
        self.dist_future = self._submit_distribution()

    def _submit_distribution(self) -> Any:
        with warnings.catch_warnings():
            # A large centre makes a "large graph"; it is sent once per generation on purpose.
            warnings.filterwarnings("ignore", message="Sending large graph")
            return self.client.submit(
                identity,
                self.distribution,
                key=f"asktell-distribution-{self.tag}-{self.losses}",
                pure=False,
            )

    def _resubmit(self, ranges: list[tuple[int, int]]) -> dict[Any, tuple[int, int]]:
        """Rerun chunks that failed because an input died with the workers holding it.

        Dask gives up on a task whose workers keep dying even when it is the tiny identity
        task holding the distribution (it was merely queued beside a poison candidate).
        Its dependents then fail with a ``KilledWorker`` naming *it*; they are innocent, so
        the input is submitted again under a new key and they run again.
        """
        if self.dist_future.status == "error" or self.task_future.status == "error":
            self.losses += 1
            if self.losses > _LOSS_LIMIT:
                raise EvaluationError(
                    f"DaskEvaluator: the distribution or task of generation "
                    f"{self.distribution.generation} was lost with its workers "
                    f"{_LOSS_LIMIT} times; workers keep dying"
                )
            if self.dist_future.status == "error":
                self.dist_future = self._submit_distribution()
            self.task_future = self.ev._shipped_task()  # re-shipped if it erred
        self.reruns += 1
        if self.reruns > _RERUN_LIMIT:
            raise EvaluationError(
                f"DaskEvaluator: chunks of generation {self.distribution.generation} failed "
                f"{_RERUN_LIMIT} times for lost inputs; workers keep dying"
            )
        return self.submit(ranges, f"rerun{self.reruns}")

    def submit(self, bounds: list[tuple[int, int]], what: str) -> dict[Any, tuple[int, int]]:
        # One graph for all chunks (``map``): about half the client and scheduler CPU of
        # one ``submit`` per chunk.
        futures = self.client.map(
            _run_chunk,
            [self.seeds[a:b] for a, b in bounds],
            key=[f"asktell-{what}-{self.tag}-{a}-{b}" for a, b in bounds],
            pure=False,
            retries=self.ev.retries,  # Dask's: for errors outside any rollout
            shipped_task=self.task_future,
            distribution=self.dist_future,
            candidate_retries=self.ev.retries,
        )
        self.futures.extend(futures)
        return dict(zip(futures, bounds))

    def _wait(self, futures: list[Any], timeout: float) -> None:
        """Block until all of ``futures`` are done, or ``timeout``, on the client's loop.

        Waiting for all (not the first) lets one gather fetch the whole generation: one
        round trip per worker instead of one per chunk, and a third less client and
        scheduler CPU at 4 chunks per worker. The timeout is the collecting loop's poll
        period, so a failed chunk or a lost worker is still seen within it.
        """
        if timeout <= 0:
            return
        waiter = getattr(self.ev._dd.client, "_wait", None)
        if waiter is None:  # pragma: no cover - a distributed without it: poll
            stop = time.monotonic() + timeout
            while time.monotonic() < stop and not all(f.done() for f in futures):
                time.sleep(0.005)
            return
        try:
            self.client.sync(waiter, futures, timeout=timeout, return_when="ALL_COMPLETED")
        except Exception:  # noqa: BLE001 - timeouts, cancellations: the futures tell
            pass

    def collect(
        self, pending: dict[Any, tuple[int, int]]
    ) -> tuple[list[tuple[int, ChunkResult]], list[tuple[int, int, BaseException]]]:
        """Wait for ``pending``; returns finished parts and the ranges whose workers died.

        What is ready is read from the futures, so a result lost with its worker (status
        ``lost``) simply stays pending until Dask has recomputed it.
        """
        parts: list[tuple[int, ChunkResult]] = []
        killed: list[tuple[int, int, BaseException]] = []
        pending = dict(pending)
        gather_failures = 0
        while pending:
            wait = _POLL_SECONDS
            if self.deadline is not None:
                wait = max(0.0, min(wait, self.deadline - time.monotonic()))
            self._wait(list(pending), wait)
            ready = [f for f in pending if f.done()]
            if ready:
                rerun: list[tuple[int, int]] = []
                fetched = self._absorb(ready, pending, parts, killed, rerun)
                if rerun:
                    pending.update(self._resubmit(rerun))
                if fetched:
                    gather_failures = 0
                else:
                    self.ev._identity()  # a hung scheduler is reported as such
                    gather_failures += 1
                    if gather_failures >= _GATHER_ATTEMPTS:
                        raise EvaluationError(
                            f"DaskEvaluator could not fetch the results of generation "
                            f"{self.distribution.generation} from the workers "
                            f"({_GATHER_ATTEMPTS} attempts of {_GATHER_SECONDS:g} s)"
                        )
                    time.sleep(_POLL_SECONDS)  # let Dask notice the loss first
            if pending and self.deadline is not None and time.monotonic() >= self.deadline:
                # release() cancels them; a rollout already running finishes on its worker
                # and is discarded.
                self.late.extend(pending.values())
                break
            if not ready:
                self._check_cluster()
        return parts, killed

    def _check_cluster(self) -> None:
        """Nothing finished for a while: is the scheduler there, and are there workers?"""
        ev = self.ev
        info = ev._identity()  # raises SchedulerLost if the scheduler is gone
        workers = int(info.get("n_workers", 1))
        now = time.monotonic()
        if ev.cluster is not None and workers < ev._num_workers:
            self._short_since = self._short_since or now
            if now - self._short_since > _HEAL_SECONDS:
                ev.cluster.loop.add_callback(_heal_cluster, ev.cluster, ev._num_workers)
                self._short_since = now
        else:
            self._short_since = None
        if workers > 0 or ev.worker_timeout is None:
            self._no_workers_since = None
            return
        self._no_workers_since = self._no_workers_since or now
        if now - self._no_workers_since > ev.worker_timeout:
            raise EvaluationError(
                f"DaskEvaluator: the cluster at {ev.address!r} has had no worker for "
                f"worker_timeout={ev.worker_timeout:g} s during generation "
                f"{self.distribution.generation}; start workers (e.g. `dask worker "
                f"{ev.address}`) or raise worker_timeout"
            )

    def _absorb(self, ready, pending, parts, killed, rerun) -> bool:
        """Take the done futures out of ``pending``; False if their results could not be fetched."""
        finished = [f for f in ready if f.status == "finished"]
        fetched = True
        if finished:
            try:
                results = self._gather(finished)
            except Exception:  # noqa: BLE001 - a holder died meanwhile: try again later
                self.ev._ensure_running()
                fetched = False
            else:
                for f, result in zip(finished, results):
                    parts.append((pending.pop(f)[0], result))
        for f in ready:
            if f.status == "cancelled":
                self.ev._ensure_running()
                raise SchedulerLost(f"chunk {f.key!r} was cancelled")
            if f.status != "error":
                continue
            a, b = pending.pop(f)
            exc = f.exception()
            if isinstance(exc, self.ev._dd.KilledWorker):
                if getattr(exc, "task", f.key) == f.key:
                    killed.append((a, b, exc))  # this chunk's own workers died
                else:
                    rerun.append((a, b))  # an input it depends on was given up
                continue
            raise EvaluationError(
                f"DaskEvaluator: the chunk of candidates {a}..{b - 1} (seeds "
                f"{int(self.seeds[a])}..) of generation {self.distribution.generation} failed "
                f"on a Dask worker outside any rollout: {describe(exc)}. Are asktell and the "
                "task's own modules installed on every worker, at the same versions?"
            ) from exc
        return fetched

    def isolate(self, killed: list[tuple[int, int, BaseException]]) -> list[tuple[int, ChunkResult]]:
        """Rerun the candidates of chunks whose workers kept dying, one per task.

        A candidate that again exhausts Dask's allowed failures alone is the culprit. When
        several do in one round, innocent ones may have died beside the culprit (a worker
        holds more than one task), so each is confirmed alone, one after the other.
        """
        singles = [(i, i + 1) for a, b, _ in killed for i in range(a, b)]
        parts, suspects = self.collect(self.submit(singles, "single"))
        if len(suspects) > 1:
            confirmed = []
            for a, b, _ in suspects:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.late.append((a, b))
                    continue
                more, again = self.collect(self.submit([(a, b)], "confirm"))
                parts += more
                confirmed += again
            suspects = confirmed
        for a, _, exc in suspects:
            tries = exc.allowed_failures + 1
            part = ChunkResult(1)
            part.failures.append(
                (
                    0,
                    f"killed its Dask worker, {tries} time{'s' if tries > 1 else ''} in a row "
                    f"(KilledWorker; distributed.scheduler.allowed-failures="
                    f"{exc.allowed_failures})",
                )
            )
            parts.append((a, part))
        return parts

    def _gather(self, futures: list[Any]) -> list[Any]:
        # Bounded like every other wait on the scheduler (see _GATHER_SECONDS).
        gather = getattr(self.client, "_gather", None)
        if gather is None:  # pragma: no cover - older/newer distributed without it
            return self.client.gather(futures)
        return self.client.sync(gather, futures, callback_timeout=_GATHER_SECONDS)

    def release(self, cancel: bool = True) -> None:
        """Drop this generation's futures, cancelling those not done (stragglers).

        Cancelling waits for the scheduler's answer, so it is bounded and skipped when the
        scheduler is already known to be gone.
        """
        leftovers = [f for f in self.futures if not f.done()]
        if cancel and leftovers and self.client.status == "running":
            try:
                cancel_async = getattr(self.client, "_cancel", None)
                if cancel_async is None:  # pragma: no cover
                    self.client.cancel(leftovers)
                else:
                    self.client.sync(
                        cancel_async, leftovers, callback_timeout=self.ev.scheduler_timeout
                    )
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.futures = []
        self.dist_future = None

    def finish(self, parts: list[tuple[int, ChunkResult]]) -> Evaluation:
        generation = self.distribution.generation
        parts.sort(key=lambda p: p[0])  # merge statistics in seed order, deterministically
        evaluation = assemble(self.seeds, parts, generation, self.ev.on_failure)
        if self.late:
            if not parts:
                raise EvaluationError(
                    f"DaskEvaluator: no candidate of generation {generation} finished within "
                    f"deadline_seconds={self.ev.deadline_seconds:g}; raise the deadline"
                )
            message = (
                f"not back within the generation deadline (deadline_seconds="
                f"{self.ev.deadline_seconds:g})"
            )
            for a, b in self.late:
                for i in range(a, b):
                    evaluation.failures.append(Failure(i, int(self.seeds[i]), message, generation))
            evaluation.failures.sort(key=lambda f: f.index)
        return evaluation
