"""Evaluate candidates on a Dask cluster: an embedded one by default, any other by address.

Dask (``distributed``) is the distributed engine; asktell writes no scheduler of its own.
``DaskEvaluator(task)`` starts a loopback ``LocalCluster`` (one single-threaded worker
process per core); ``DaskEvaluator(task, address="tcp://host:8786")`` or
``DaskEvaluator(task, client=client)`` runs the same code on any cluster.

How a generation travels (Salimans et al. 2017: ship seeds, not parameter vectors):

* The :class:`~asktell.distribution.Distribution` is submitted once per generation as the
  result of a tiny identity task, and the chunks depend on it. It is *not* scattered: a
  scattered object has no recipe, so it is lost with the last worker holding it and every
  chunk depending on it fails; a task result is recomputed by the scheduler from the task's
  arguments, which it keeps while we hold the future (``tests/test_dask.py`` kills the only
  worker holding it and gets identical returns).
* The task travels the same way, as pickled bytes keyed by their hash, re-sent only when it
  changes; each worker *thread* unpickles it once and reuses it across generations, so tasks
  that keep state (environments) are never shared between threads.
* The seeds are cut into ``chunks_per_worker`` chunks per worker thread, at even offsets
  (mirrored pairs stay together); each chunk runs
  :func:`asktell.evaluators._common.evaluate_chunk`, the very function
  :class:`~asktell.evaluators.SerialEvaluator` runs, so returns are bitwise identical.
* The noise table is built once per worker process (the per-process cache of
  :mod:`asktell.noise`) and reused by every later chunk and generation.

Faults and the policy for each are described on :class:`DaskEvaluator` and in
``docs/dask.md``.
"""

from __future__ import annotations

import hashlib
import pickle
import queue
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell._extras import require
from asktell.config_base import StrictModel
from asktell.distribution import Distribution
from asktell.errors import ConfigError, EvaluationError
from asktell.protocol import Evaluation, Failure, Task
from asktell.registry import EVALUATORS

from ._common import ChunkResult, assemble, check_failure_policy, evaluate_chunk

__all__ = ["DaskEvaluator", "DaskEvaluatorConfig", "chunk_bounds"]

# How often the collecting loop wakes up when nothing finished, to check the scheduler and
# the workers are still there and the deadline has not passed.
_POLL_SECONDS = 0.5
# How long the cached thread count is trusted before it is asked for again.
_THREADS_TTL = 2.0
# An embedded cluster short of workers this long is topped up again (see _heal_cluster).
_HEAL_SECONDS = 5.0
# One attempt to fetch finished results. Results are small; a fetch that takes longer met a
# holder that died meanwhile (distributed retries a refused connection for its whole
# connect timeout, 30 s by default), so give up and try again once Dask knows.
_GATHER_SECONDS = 10.0
_GATHER_ATTEMPTS = 6


# --------------------------------------------------------------------------- worker side
# These functions run on Dask workers; they must stay importable without dask installed.

_LOCAL = threading.local()
_TASKS_PER_THREAD = 4


def _identity(value: Any) -> Any:
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
    shipped_task: tuple[str, bytes], distribution: Distribution, seeds: np.ndarray, retries: int
) -> ChunkResult:
    return evaluate_chunk(_task_for_thread(shipped_task), distribution, seeds, retries)


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


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"DaskEvaluator '{name}' must be an int >= {minimum}; got {value!r}")
    return int(value)


def _check_seconds(name: str, value: Any, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        rule = "a finite number of seconds > 0" + (" or None" if optional else "")
        raise ConfigError(f"DaskEvaluator '{name}' must be {rule}; got {value!r}")
    return float(value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _SchedulerLost(Exception):
    pass


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


# ----------------------------------------------------------------------------- evaluator


@EVALUATORS.register("dask")
class DaskEvaluator:
    """Evaluate candidates on a Dask cluster; returns equal :class:`SerialEvaluator`'s.

    With no ``client`` and no ``address``, an embedded ``LocalCluster`` is started: worker
    processes with one thread each, as many as cores (``num_workers``), bound to
    ``127.0.0.1``, no dashboard unless ``dashboard`` is set; ``close()`` shuts it down.
    In a script, create it under ``if __name__ == "__main__":`` (workers are spawned).

    Faults, and what happens:

    * a worker dies mid-generation: Dask reruns its chunks elsewhere (and recomputes the
      distribution and task if it held them); the returns are identical to a fault-free run;
    * a rollout raises: the candidate is retried ``retries`` times on its worker, then
      ``on_failure`` applies (``"raise"``: :class:`~asktell.errors.CandidateFailedError`
      naming generation, candidate index and seed; ``"mark"``: NaN return and a
      :class:`~asktell.protocol.Failure`, which strategies rank worst);
    * a candidate kills its worker every time: after Dask's ``allowed-failures`` its chunk
      fails with ``KilledWorker``; the chunk's candidates are then rerun one per task to
      find the culprit, which is reported like a raising candidate (never an endless loop);
    * stragglers: with ``deadline_seconds``, candidates not back when the deadline passes
      are marked failed (whatever ``on_failure`` says) and their tasks cancelled;
    * the scheduler goes away: :class:`~asktell.errors.EvaluationError` within about
      ``scheduler_timeout`` seconds; nothing is told to the strategy, so the last
      checkpoint stays as it was;
    * no worker at all for ``worker_timeout`` seconds: :class:`EvaluationError`.

    Args:
        task: the task every batch is evaluated on (picklable; it is shipped to workers).
        client: an existing ``distributed.Client`` to use (not closed by ``close()``).
        address: a scheduler address such as ``"tcp://10.0.0.5:8786"`` to connect to.
        num_workers: embedded cluster only: worker processes (default: CPU cores).
        threads_per_worker: embedded cluster only: threads per worker process.
        chunks_per_worker: chunks per worker thread and generation: enough to balance
            uneven rollouts, few enough that Dask's ~1 ms per task is noise.
        retries: extra attempts for a candidate whose evaluation raised.
        on_failure: ``"raise"`` or ``"mark"`` (see above).
        deadline_seconds: optional per-generation deadline for stragglers.
        dashboard: embedded cluster only: ``True`` serves Dask's dashboard on
            ``127.0.0.1:8787`` (a free port if taken), or give an address string.
        allowed_failures: embedded cluster only: worker deaths one task may cause before
            Dask gives up on it (``distributed.scheduler.allowed-failures``; default 3).
        connect_timeout: seconds to reach the scheduler when connecting.
        scheduler_timeout: seconds without an answer from the scheduler before
            ``evaluate`` raises.
        worker_timeout: seconds ``evaluate`` waits while the cluster has no worker
            (``None``: wait for ever, e.g. for an HPC queue).
        security: a ``distributed.Security`` (TLS) for the connection / embedded cluster.

    Example:
        >>> from asktell import FunctionTask
        >>> from asktell.strategies import OpenAIES
        >>> es = OpenAIES(num_params=4, population_size=8)
        >>> with DaskEvaluator(FunctionTask.named("sphere"), num_workers=1) as ev:
        ...     evaluation = ev.evaluate(es.distribution, es.ask())
        >>> evaluation.returns.shape
        (8,)
    """

    capabilities = frozenset({"bitwise_serial"})
    config_class: type[DaskEvaluatorConfig]

    def __init__(
        self,
        task: Task,
        *,
        client: Any = None,
        address: str | None = None,
        num_workers: int | None = None,
        threads_per_worker: int = 1,
        chunks_per_worker: int = 4,
        retries: int = 0,
        on_failure: str = "raise",
        deadline_seconds: float | None = None,
        dashboard: bool | str = False,
        allowed_failures: int | None = None,
        connect_timeout: float = 30.0,
        scheduler_timeout: float = 30.0,
        worker_timeout: float | None = 300.0,
        security: Any = None,
    ):
        self.closed = True  # until fully built, so close() from __del__/__exit__ is a no-op
        self.task = task
        self.on_failure = check_failure_policy("DaskEvaluator", on_failure)
        self.retries = _check_int("retries", retries, 0)
        self.chunks_per_worker = _check_int("chunks_per_worker", chunks_per_worker, 1)
        self.deadline_seconds = _check_seconds("deadline_seconds", deadline_seconds, optional=True)
        self.connect_timeout = _check_seconds("connect_timeout", connect_timeout, optional=False)
        self.scheduler_timeout = _check_seconds(
            "scheduler_timeout", scheduler_timeout, optional=False
        )
        self.worker_timeout = _check_seconds("worker_timeout", worker_timeout, optional=True)
        if isinstance(client, str) and address is None:
            client, address = None, client  # DaskEvaluator(task, "tcp://host:8786")
        if client is not None and address is not None:
            raise ConfigError(
                f"DaskEvaluator takes a 'client' or an 'address', not both; got client="
                f"{client!r} and address={address!r}"
            )
        embedded = client is None and address is None
        if not embedded:
            given = {
                "num_workers": num_workers is not None,
                "threads_per_worker": threads_per_worker != 1,
                "dashboard": dashboard is not False,
                "allowed_failures": allowed_failures is not None,
            }
            wrong = [name for name, set_ in given.items() if set_]
            if wrong:
                raise ConfigError(
                    f"DaskEvaluator {', '.join(map(repr, wrong))} appl"
                    f"{'ies' if len(wrong) == 1 else 'y'} only to the embedded cluster "
                    "(no client, no address); configure an existing cluster on its side"
                )
        if num_workers is not None:
            num_workers = _check_int("num_workers", num_workers, 1)
        threads_per_worker = _check_int("threads_per_worker", threads_per_worker, 1)
        if allowed_failures is not None:
            allowed_failures = _check_int("allowed_failures", allowed_failures, 0)
        if address is not None and not isinstance(address, str):
            raise ConfigError(
                f"DaskEvaluator 'address' must be a string like 'tcp://host:8786'; got {address!r}"
            )

        self._dd = require("distributed", "DaskEvaluator")
        self._dashboard = dashboard is not False
        self.cluster = None
        self._num_workers = num_workers
        self._owns_client = client is None
        if embedded:
            if num_workers is None:
                from dask.system import CPU_COUNT  # cores this process may use (cgroups too)

                num_workers = max(1, CPU_COUNT // threads_per_worker)
            self._num_workers = num_workers
            self.cluster = self._start_cluster(
                num_workers,
                threads_per_worker,
                dashboard,
                allowed_failures,
                security,
            )
            address = self.cluster.scheduler_address
        elif client is not None and not isinstance(client, self._dd.Client):
            raise ConfigError(
                f"DaskEvaluator 'client' must be a distributed.Client; got {type(client).__name__}"
            )
        if client is None:
            client = self._connect(address, security)
        self.client = client
        self.address = client.scheduler.address if address is None else address
        self._uid = uuid.uuid4().hex[:12]
        self._calls = 0
        self._task_digest: str | None = None
        self._task_future: Any = None
        self._threads = 0
        self._threads_at = -np.inf
        self.closed = False

    # -- lifecycle --------------------------------------------------------------------

    def _start_cluster(self, n, threads, dashboard, allowed_failures, security):
        import dask

        if dashboard is True:
            dashboard_address: str | None = "127.0.0.1:8787"
        elif isinstance(dashboard, str):
            dashboard_address = dashboard
        else:
            dashboard_address = None
        overrides = {}
        if allowed_failures is not None:
            overrides["distributed.scheduler.allowed-failures"] = allowed_failures
        kwargs: dict[str, Any] = {}
        if security is not None:
            kwargs["security"] = security
            kwargs["protocol"] = "tls://"
        try:
            with dask.config.set(overrides):
                return self._dd.LocalCluster(
                    n_workers=n,
                    threads_per_worker=threads,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=dashboard_address,
                    # The scheduler always serves a small HTTP API (health, metrics); keep it
                    # on loopback at a free port instead of fighting over 8787.
                    scheduler_kwargs=(
                        {} if dashboard_address else {"dashboard_address": "127.0.0.1:0"}
                    ),
                    **kwargs,
                )
        except Exception as exc:  # noqa: BLE001 - re-raised with the likely cause
            raise EvaluationError(
                f"DaskEvaluator could not start its embedded LocalCluster ({n} workers): "
                f"{_describe(exc)}. Workers are spawned processes, so a script must create "
                'the evaluator under `if __name__ == "__main__":`'
            ) from exc

    def _connect(self, address: str, security: Any):
        kwargs: dict[str, Any] = {}
        if security is not None:
            kwargs["security"] = security
        try:
            return self._dd.Client(
                address, timeout=self.connect_timeout, set_as_default=False, **kwargs
            )
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, comm errors
            if self.cluster is not None:
                self.cluster.close()
            raise EvaluationError(
                f"DaskEvaluator could not reach the Dask scheduler at {address!r} within "
                f"connect_timeout={self.connect_timeout:g} s: {_describe(exc)}"
            ) from exc

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL (``None`` for an embedded cluster started without one)."""
        if self.cluster is not None and not self._dashboard:
            return None
        try:
            return self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard
            return None

    def close(self) -> None:
        """Release this evaluator's futures; shut down what it started. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._task_future = None
        if self._owns_client:
            try:
                self.client.close(timeout=self.connect_timeout)
            except Exception:  # noqa: BLE001 - a lost scheduler must not block closing
                pass
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=self.connect_timeout)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> DaskEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded LocalCluster" if self.cluster is not None else self.address
        return f"DaskEvaluator({self.task!r}, {where})"

    # -- evaluation -------------------------------------------------------------------

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation:
        """Returns, steps and failures for ``seeds``, in seed order."""
        if self.closed:
            raise RuntimeError("DaskEvaluator.evaluate() called after close()")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        generation = distribution.generation
        if seeds.size == 0:
            return assemble(seeds, [], generation, self.on_failure)
        self._calls += 1
        tag = f"{self._uid}-{self._calls}"
        try:
            run = _Generation(self, distribution, seeds, tag)
            cancel = True  # stragglers and, on errors, whatever is still queued
            try:
                bounds = chunk_bounds(seeds.size, self._num_threads() * self.chunks_per_worker)
                parts, killed = run.collect(run.submit(bounds, "chunk"))
                if killed:
                    parts += run.isolate(killed)
            except _SchedulerLost:
                cancel = False  # nobody to ask
                raise
            finally:
                run.release(cancel=cancel)
        except _SchedulerLost as exc:
            raise EvaluationError(
                f"DaskEvaluator lost the Dask scheduler at {self.address!r} during generation "
                f"{generation} ({exc}); the generation was not completed and nothing was told "
                "to the strategy, so the last checkpoint is intact: restart the scheduler "
                "and resume the run"
            ) from None
        return run.finish(parts)

    # -- pieces used by _Generation ---------------------------------------------------

    def _ensure_running(self) -> None:
        if self.client.status != "running":
            raise _SchedulerLost(f"the client is {self.client.status!r}")

    def _identity(self) -> dict:
        """Ask the scheduler about itself, within ``scheduler_timeout``."""
        self._ensure_running()
        try:
            return self.client.sync(
                self.client.scheduler.identity,
                n_workers=0,
                callback_timeout=self.scheduler_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - timeout, closed comm, OSError
            raise _SchedulerLost(
                f"no answer within scheduler_timeout={self.scheduler_timeout:g} s: "
                f"{_describe(exc)}"
            ) from None

    def _num_threads(self) -> int:
        now = time.monotonic()
        if now - self._threads_at > _THREADS_TTL:
            self._threads = int(self._identity().get("total_threads", 0))
            self._threads_at = now
        return max(1, self._threads)

    def _shipped_task(self) -> Any:
        """A future holding the pickled task, re-submitted only when the task changed."""
        import cloudpickle

        payload = cloudpickle.dumps(self.task, protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
        future = self._task_future
        if digest != self._task_digest or future is None or future.status in ("error", "cancelled"):
            self._task_future = self.client.submit(
                _identity, (digest, payload), key=f"asktell-task-{digest}", pure=False
            )
            self._task_digest = digest
        return self._task_future


class _Generation:
    """The futures of one ``evaluate`` call and the loop that collects them."""

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
        ev._ensure_running()
        self.task_future = ev._shipped_task()
        with warnings.catch_warnings():
            # A large centre makes a "large graph"; it is sent once per generation on purpose.
            warnings.filterwarnings("ignore", message="Sending large graph")
            self.dist_future = self.client.submit(
                _identity, distribution, key=f"asktell-distribution-{tag}", pure=False
            )

    def submit(self, bounds: list[tuple[int, int]], what: str) -> dict[Any, tuple[int, int]]:
        submitted = {}
        for a, b in bounds:
            future = self.client.submit(
                _run_chunk,
                self.task_future,
                self.dist_future,
                self.seeds[a:b],
                self.ev.retries,
                key=f"asktell-{what}-{self.tag}-{a}-{b}",
                pure=False,
                retries=self.ev.retries,
            )
            submitted[future] = (a, b)
            self.futures.append(future)
        return submitted

    def collect(
        self, pending: dict[Any, tuple[int, int]]
    ) -> tuple[list[tuple[int, ChunkResult]], list[tuple[int, int, BaseException]]]:
        """Wait for ``pending``; returns finished parts and the ranges whose workers died.

        Done-callbacks only wake the loop up; what is ready is read from the futures, so a
        result lost with its worker (status ``lost``) simply stays pending until Dask has
        recomputed it.
        """
        parts: list[tuple[int, ChunkResult]] = []
        killed: list[tuple[int, int, BaseException]] = []
        wake: queue.Queue = queue.Queue()
        for future in pending:
            future.add_done_callback(wake.put)
        pending = dict(pending)
        gather_failures = 0
        while pending:
            wait = _POLL_SECONDS
            if self.deadline is not None:
                wait = max(0.0, min(wait, self.deadline - time.monotonic()))
            try:
                wake.get(timeout=wait)
                while True:
                    wake.get_nowait()
            except queue.Empty:
                pass
            ready = [f for f in pending if f.done()]
            if ready:
                if self._absorb(ready, pending, parts, killed):
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
        info = ev._identity()  # raises _SchedulerLost if the scheduler is gone
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

    def _absorb(self, ready, pending, parts, killed) -> bool:
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
                raise _SchedulerLost(f"chunk {f.key!r} was cancelled")
            if f.status != "error":
                continue
            a, b = pending.pop(f)
            exc = f.exception()
            if isinstance(exc, self.ev._dd.KilledWorker):
                killed.append((a, b, exc))
                continue
            raise EvaluationError(
                f"DaskEvaluator: the chunk of candidates {a}..{b - 1} (seeds "
                f"{int(self.seeds[a])}..) of generation {self.distribution.generation} failed "
                f"on a Dask worker outside any rollout: {_describe(exc)}. Are asktell and the "
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
            part = ChunkResult(1)
            part.failures.append(
                (0, f"killed its Dask worker on each of {exc.allowed_failures + 1} attempts "
                    f"(KilledWorker; distributed.scheduler.allowed-failures="
                    f"{exc.allowed_failures})")
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


class DaskEvaluatorConfig(StrictModel):
    """Run-file settings of :class:`DaskEvaluator` (``kind = "dask"``)."""

    kind: Literal["dask"] = "dask"
    address: str | None = Field(
        None,
        description="Scheduler address to connect to, e.g. 'tcp://10.0.0.5:8786'. Unset: "
        "start an embedded LocalCluster on this machine (loopback only).",
    )
    num_workers: int | None = Field(
        None, ge=1, description="Embedded cluster: worker processes (unset = CPU cores)."
    )
    threads_per_worker: int = Field(
        1, ge=1, description="Embedded cluster: threads per worker process."
    )
    chunks_per_worker: int = Field(
        4,
        ge=1,
        description="Chunks of seeds per worker thread and generation: more balances uneven "
        "rollouts, fewer pays less of Dask's ~1 ms per task.",
    )
    retries: int = Field(0, ge=0, description="Extra attempts for a candidate that raised.")
    on_failure: Literal["raise", "mark"] = Field(
        "raise",
        description="A candidate that raised after its retries, or killed its worker every "
        "time: stop naming it, or mark it failed (NaN, ranked worst) and go on.",
    )
    deadline_seconds: float | None = Field(
        None,
        gt=0,
        description="Per-generation deadline; candidates not back by then are marked failed "
        "so one slow node cannot stall the run. Unset: wait for all.",
    )
    dashboard: bool = Field(
        False, description="Embedded cluster: serve Dask's dashboard on 127.0.0.1:8787."
    )
    allowed_failures: int | None = Field(
        None,
        ge=0,
        description="Embedded cluster: worker deaths a task may cause before Dask gives up "
        "on it (distributed.scheduler.allowed-failures; unset = Dask's default, 3).",
    )
    connect_timeout: float = Field(
        30.0, gt=0, description="Seconds to reach the scheduler when connecting."
    )
    scheduler_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds without an answer from the scheduler before a generation "
        "fails with an error (never a hang).",
    )
    worker_timeout: float | None = Field(
        300.0,
        gt=0,
        description="Seconds a generation waits while the cluster has no worker at all "
        "(unset = for ever, e.g. while an HPC queue starts them).",
    )
    tls_ca_file: str | None = Field(
        None, description="TLS: CA certificate file (use with a 'tls://' address)."
    )
    tls_cert: str | None = Field(None, description="TLS: this client's certificate file.")
    tls_key: str | None = Field(None, description="TLS: this client's private key file.")

    @model_validator(mode="after")
    def _check(self) -> DaskEvaluatorConfig:
        if self.address is not None:
            embedded_only = {
                "num_workers": self.num_workers is not None,
                "threads_per_worker": self.threads_per_worker != 1,
                "dashboard": self.dashboard,
                "allowed_failures": self.allowed_failures is not None,
            }
            wrong = [name for name, set_ in embedded_only.items() if set_]
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} only apply to the embedded cluster; remove them or "
                    f"'address' ({self.address!r})"
                )
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if any(v is not None for v in tls) and not all(v is not None for v in tls):
            raise ValueError("tls_ca_file, tls_cert and tls_key must be given together")
        return self

    def build(self, task: Task) -> DaskEvaluator:
        security = None
        if self.tls_ca_file is not None:
            distributed = require("distributed", "DaskEvaluator TLS")
            security = distributed.Security(
                tls_ca_file=self.tls_ca_file,
                tls_client_cert=self.tls_cert,
                tls_client_key=self.tls_key,
                require_encryption=True,
            )
        return DaskEvaluator(
            task,
            address=self.address,
            num_workers=self.num_workers,
            threads_per_worker=self.threads_per_worker,
            chunks_per_worker=self.chunks_per_worker,
            retries=self.retries,
            on_failure=self.on_failure,
            deadline_seconds=self.deadline_seconds,
            dashboard=self.dashboard,
            allowed_failures=self.allowed_failures,
            connect_timeout=self.connect_timeout,
            scheduler_timeout=self.scheduler_timeout,
            worker_timeout=self.worker_timeout,
            security=security,
        )


DaskEvaluator.config_class = DaskEvaluatorConfig
