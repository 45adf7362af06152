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
* The task travels the same way, once per evaluator (again only for a new task object):
  per-generation facts travel in ``Distribution.context``. Each worker *thread* unpickles
  it once and reuses it across generations, so tasks that keep environments open never
  share them between threads.
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
import time
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell._extras import require
from asktell.config_base import StrictModel
from asktell.distribution import Distribution
from asktell.errors import ConfigError, EvaluationError
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import assemble, check_failure_policy
from ._dask_run import (
    Generation,
    SchedulerLost,
    chunk_bounds,
    describe,
    identity,
)

__all__ = ["DaskEvaluator", "DaskEvaluatorConfig", "chunk_bounds"]

# How long the cached thread count is trusted before it is asked for again.
_THREADS_TTL = 2.0


#: ``chunks_per_worker="auto"``: chunks per worker thread are chosen from the previous
#: generation's compute time, so that each chunk holds at least this much work (Dask's
#: cost per task, about 1.5 ms here, is then about 3% of it) ...
AUTO_CHUNK_SECONDS = 0.05
#: ... and at most this many chunks per thread (enough to balance uneven rollouts; the
#: first generation, with nothing measured yet, uses it).
AUTO_MAX_CHUNKS = 4


def auto_chunks(compute_seconds: float, threads: int) -> int:
    """Chunks per worker thread for a generation of ``compute_seconds`` of work."""
    per_thread = compute_seconds / max(threads, 1)
    return int(min(AUTO_MAX_CHUNKS, max(1, per_thread // AUTO_CHUNK_SECONDS)))


def _check_chunks(value: Any) -> int | str:
    if value == "auto" and isinstance(value, str):
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(
            f"DaskEvaluator 'chunks_per_worker' must be 'auto' or an int >= 1; got {value!r}"
        )
    return int(value)


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
        client: an existing ``distributed.Client`` to use (not closed by ``close()``), or a
            scheduler address (the same as ``address``).
        address: a scheduler address such as ``"tcp://10.0.0.5:8786"`` to connect to.
        num_workers: embedded cluster only: worker processes (default: CPU cores).
        threads_per_worker: embedded cluster only: threads per worker process.
        chunks_per_worker: chunks per worker thread and generation: enough to balance
            uneven rollouts, few enough that Dask's ~1.5 ms per task is noise. ``"auto"``
            (default): 4 for the first generation, then from the previous generation's
            compute time, one chunk per 50 ms of work per thread, 1 to 4 (returns never
            depend on the chunking).
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
        client: Any = None,
        *,
        address: str | None = None,
        num_workers: int | None = None,
        threads_per_worker: int = 1,
        chunks_per_worker: int | str = "auto",
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
        self.chunks_per_worker = _check_chunks(chunks_per_worker)
        self._auto_chunks = AUTO_MAX_CHUNKS
        self.deadline_seconds = _check_seconds("deadline_seconds", deadline_seconds, optional=True)
        self.connect_timeout = _check_seconds("connect_timeout", connect_timeout, optional=False)
        self.scheduler_timeout = _check_seconds(
            "scheduler_timeout", scheduler_timeout, optional=False
        )
        self.worker_timeout = _check_seconds("worker_timeout", worker_timeout, optional=True)
        if isinstance(client, str) and address is None:
            client, address = None, client  # DaskEvaluator(task, "tcp://10.0.0.5:8786")
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
        self._task_shipped: Any = None
        self._task_future: Any = None
        self._task_ships = 0
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
                f"{describe(exc)}. Workers are spawned processes, so a script must create "
                'the evaluator under `if __name__ == "__main__":`'
            ) from exc

    def _connect(self, address: str, security: Any):
        kwargs: dict[str, Any] = {}
        if security is not None:
            kwargs["security"] = security
        try:
            # An embedded cluster is passed as itself: the client then shares the
            # scheduler's event loop thread (one thread fewer contending for the GIL, a
            # millisecond or two less per round trip).
            target = self.cluster if self.cluster is not None else address
            return self._dd.Client(
                target, timeout=self.connect_timeout, set_as_default=False, **kwargs
            )
        except Exception as exc:  # noqa: BLE001 - OSError, TimeoutError, comm errors
            if self.cluster is not None:
                self.cluster.close()
            raise EvaluationError(
                f"DaskEvaluator could not reach the Dask scheduler at {address!r} within "
                f"connect_timeout={self.connect_timeout:g} s: {describe(exc)}"
            ) from exc

    @property
    def next_chunks_per_worker(self) -> int:
        """Chunks per worker thread the next generation will be cut into."""
        if self.chunks_per_worker == "auto":
            return self._auto_chunks
        return self.chunks_per_worker

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
        self._task_future = self._task_shipped = None
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
            run = Generation(self, distribution, seeds, tag)
            cancel = True  # stragglers and, on errors, whatever is still queued
            try:
                threads = self._num_threads()
                bounds = chunk_bounds(seeds.size, threads * self.next_chunks_per_worker)
                parts, killed = run.collect(run.submit(bounds, "chunk"))
                if parts and len(parts) == len(bounds):
                    work = sum(part.seconds for _, part in parts)
                    self._auto_chunks = auto_chunks(work, threads)
                if killed:
                    parts += run.isolate(killed)
            except SchedulerLost:
                cancel = False  # nobody to ask
                raise
            finally:
                run.release(cancel=cancel)
        except SchedulerLost as exc:
            raise EvaluationError(
                f"DaskEvaluator lost the Dask scheduler at {self.address!r} during generation "
                f"{generation} ({exc}); the generation was not completed and nothing was told "
                "to the strategy, so the last checkpoint is intact: restart the scheduler "
                "and resume the run"
            ) from None
        return run.finish(parts)

    # -- pieces used by Generation ----------------------------------------------------

    def _ensure_running(self) -> None:
        if self.client.status != "running":
            raise SchedulerLost(f"the client is {self.client.status!r}")

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
            raise SchedulerLost(
                f"no answer within scheduler_timeout={self.scheduler_timeout:g} s: "
                f"{describe(exc)}"
            ) from None

    def _num_threads(self) -> int:
        now = time.monotonic()
        if now - self._threads_at > _THREADS_TTL:
            self._threads = int(self._identity().get("total_threads", 0))
            self._threads_at = now
        return max(1, self._threads)

    def _shipped_task(self) -> Any:
        """A future holding the pickled task: shipped once, again only for a new task object.

        The task is not re-pickled every generation: tasks keep runner-side state that
        changes each generation (a Gym task's running observation statistics) while what
        an evaluation depends on travels in ``Distribution.context`` (see
        :class:`~asktell.protocol.Task`). Re-shipping would only make every worker rebuild
        its environments.
        """
        future = self._task_future
        if future is not None and self._task_shipped is self.task:
            if future.status not in ("error", "cancelled"):
                return future
        import cloudpickle

        try:
            payload = cloudpickle.dumps(self.task, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raised
            raise ConfigError(
                f"DaskEvaluator 'task' must be picklable to travel to Dask workers; "
                f"pickling {self.task!r} failed: {describe(exc)}"
            ) from exc
        digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
        self._task_ships += 1  # a fresh key: an erred task's key is not computed again
        self._task_future = self.client.submit(
            identity, (digest, payload), key=f"asktell-task-{digest}-{self._task_ships}", pure=False
        )
        self._task_shipped = self.task
        return self._task_future


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
    chunks_per_worker: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Chunks of seeds per worker thread and generation: more balances uneven "
        "rollouts, fewer pays less of Dask's ~1.5 ms per task. 'auto': from the previous "
        "generation's compute time, one chunk per 50 ms of work per thread, 1 to 4.",
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
