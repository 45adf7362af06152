"""The Dask evaluator's link to its cluster: start or reach it, watch it, ship the task, close.

Import direction (see :mod:`asktell.evaluators.dask`)::

    dask.py, _dask_options.py, _dask_round.py, _dask_quorum.py  ->  _dask_link.py
    _dask_link.py  ->  _dask_worker.py, _dask_heal.py
                   ->  _dask_node_link.py  ->  _dask_node.py

:class:`ClusterLink` owns the ``distributed.Client``: it starts an embedded ``LocalCluster``
on loopback (kept at its size by a :class:`~._dask_heal.ClusterHealer`) or connects to an
address (or adopts a given client), answers the round's
questions about the scheduler within ``scheduler_timeout`` (never a hang), ships the task
once, and closes what it started. Every call into ``distributed``'s own private coroutines
(``_wait``, ``_gather``, ``_cancel``, to bound them by a timeout) lives here. The types of
what it accepts (a live client, a security object, the dashboard setting) are option types,
declared with :class:`~asktell.evaluators._dask_options.DaskEvaluatorConfig`.

Node mode adds the node settings to the shipped task, the workers' addresses, a check that
connected workers are not daemonic and closing the node pools: the calls to the client are
here, the node-only rules (the non-daemonic nanny, the check's verdict, the key's tag) in
:mod:`._dask_node_link`, and what runs on the workers in :mod:`._dask_node`.

(Everything that talks to the client, with a timeout on each call, stays in this one module
so no other reaches into the client.)
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import signal
import threading
import time
from typing import Any

import numpy as np

from asktell._extras import require
from asktell.errors import ConfigError, EvaluationError
from asktell.protocol import Task

from ._dask_address import probe_scheduler
from ._dask_heal import ClusterHealer
from ._dask_hung import HungWorkers
from ._dask_node import NodeSpec, close_pools, is_daemonic
from ._dask_node_link import check_not_daemonic, node_tag, non_daemonic_nanny
from ._dask_worker import identity, quiet_shutdown

__all__ = [
    "ClusterLink",
    "ClusterWatch",
    "SchedulerLost",
    "describe",
    "GATHER_SECONDS",
]

# How long the cached thread count is trusted before it is asked for again.
_THREADS_TTL = 2.0
#: One attempt to fetch finished results. Results are small; a fetch that takes longer met a
#: holder that died meanwhile (distributed retries a refused connection for its whole
#: connect timeout, 30 s by default), so give up and try again once Dask knows.
GATHER_SECONDS = 10.0


# -- the link ---------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SchedulerLost(Exception):
    """Internal: the scheduler stopped answering or the connection closed."""


def _dashboard_address(dashboard: bool | str) -> str | None:
    if dashboard is True:
        return "127.0.0.1:8787"
    return dashboard if isinstance(dashboard, str) else None


class ClusterLink:
    """One evaluator's connection to a Dask cluster (validated options come in by keyword).

    ``client`` given: used as is and left open by :meth:`close`. Else ``address`` given:
    a client connected to it. Neither: an embedded ``LocalCluster`` of ``num_workers``
    worker processes (default: one per core) bound to ``127.0.0.1``, closed by :meth:`close`.

    ``node`` (node mode, ``(processes, time limit)``): each worker is a node running its
    chunk on a local pool; the embedded cluster's workers are non-daemonic (default: one),
    and a connected cluster's are checked to be (:meth:`check_nodes`).
    """

    def __init__(
        self,
        *,
        client: Any = None,
        address: str | None = None,
        num_workers: int | None = None,
        threads_per_worker: int = 1,
        dashboard: bool | str = False,
        allowed_failures: int | None = None,
        security: Any = None,
        connect_timeout: float = 30.0,
        scheduler_timeout: float = 30.0,
        worker_timeout: float | None = 300.0,
        node: NodeSpec | None = None,
    ):
        self.node = node
        self._nodes_checked = False
        #: Node mode: every task shipped (a reassigned ``task`` ships another), whose
        #: pools close() stops.
        self._digests: list[str] = []
        self.distributed = require("distributed", "DaskEvaluator")
        self.connect_timeout = connect_timeout
        self.scheduler_timeout = scheduler_timeout
        self.worker_timeout = worker_timeout
        self.dashboard = dashboard is not False
        self.cluster: Any = None
        self.num_workers = num_workers
        self.owns_client = client is None
        #: The future holding the shipped task (see :meth:`ship_task`).
        self.task_future: Any = None
        self._task_shipped: Any = None
        self._task_ships = 0
        self._threads = self._workers = 0
        self._addresses: list[str] = []
        self._threads_at = -np.inf
        #: Workers whose thread is stuck in a late candidate (restarted or avoided).
        self.hung = HungWorkers(self)
        #: Keeps the embedded cluster's workers there (``None`` for any other cluster).
        self.healer: ClusterHealer | None = None
        if client is None and address is None:
            if num_workers is None and node is not None:
                self.num_workers = 1  # this machine is the node
            elif num_workers is None:
                from dask.system import CPU_COUNT  # cores this process may use (cgroups too)

                self.num_workers = max(1, CPU_COUNT // threads_per_worker)
            self.cluster = self._start_cluster(
                threads_per_worker, _dashboard_address(dashboard), allowed_failures, security
            )
            address = self.cluster.scheduler_address
            self.healer = ClusterHealer(self.cluster)
            self.healer.start()
        if client is None:
            client = self._connect(address, security)
        self.client = client
        self.address = client.scheduler.address if address is None else address

    # -- start, connect, close ----------------------------------------------------------

    def _start_cluster(self, threads, dashboard_address, allowed_failures, security):
        import dask

        overrides = {}
        if allowed_failures is not None:
            overrides["distributed.scheduler.allowed-failures"] = allowed_failures
        kwargs: dict[str, Any] = {}
        if security is not None:
            kwargs["security"] = security
            kwargs["protocol"] = "tls://"
        if self.node is not None:
            kwargs["worker_class"] = non_daemonic_nanny()
        try:
            with dask.config.set(overrides), _workers_ignore_ctrl_c():
                return self.distributed.LocalCluster(
                    n_workers=self.num_workers,
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
                f"DaskEvaluator could not start its embedded LocalCluster ({self.num_workers} "
                f"workers): {describe(exc)}. Workers are spawned processes, so a script must "
                'create the evaluator under `if __name__ == "__main__":`'
            ) from exc

    def _connect(self, address: str, security: Any):
        kwargs: dict[str, Any] = {}
        if security is not None:
            kwargs["security"] = security
        if self.cluster is None:
            probe_scheduler(address, security, self.connect_timeout)
        try:
            # An embedded cluster is passed as itself: the client then shares the
            # scheduler's event loop thread (one thread fewer contending for the GIL, a
            # millisecond or two less per round trip).
            target = self.cluster if self.cluster is not None else address
            return self.distributed.Client(
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
    def dashboard_link(self) -> str | None:
        """The dashboard's URL (``None`` for an embedded cluster started without one)."""
        if self.cluster is not None and not self.dashboard:
            return None
        try:
            return self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard
            return None

    def close(self) -> None:
        """Drop the shipped task; close the client and cluster this link started."""
        if self.healer is not None:
            self.healer.stop()  # closing nannies are not lost workers
        self.task_future = self._task_shipped = None
        digests, self._digests = tuple(self._digests), []
        if digests and self.client.status == "running":
            try:  # stop these tasks' node pools and unlink their tables (a kept cluster too)
                self.run_on_workers(close_pools, digests, on_error="ignore")
            except SchedulerLost:  # best effort, bounded; a worker's exit does it too
                pass
        if self.cluster is not None and self.client.status == "running":
            try:  # our own workers: what closing cuts is not news (bounded, best effort)
                self.run_on_workers(quiet_shutdown, on_error="ignore")
            except SchedulerLost:
                pass
        if self.owns_client:
            try:
                self.client.close(timeout=self.connect_timeout)
            except Exception:  # noqa: BLE001 - a lost scheduler must not block closing
                pass
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=self.connect_timeout)
            except Exception:  # noqa: BLE001
                pass

    # -- questions to the scheduler, each bounded ---------------------------------------

    def ensure_running(self) -> None:
        if self.client.status != "running":
            raise SchedulerLost(f"the client is {self.client.status!r}")

    def _bounded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``client.sync(call, ...)`` within ``scheduler_timeout``: a hung or gone scheduler
        raises :class:`SchedulerLost`, never blocks."""
        self.ensure_running()
        try:
            return self.client.sync(call, *args, callback_timeout=self.scheduler_timeout, **kwargs)
        except Exception as exc:  # noqa: BLE001 - timeout, closed comm, OSError, a worker's error
            raise SchedulerLost(
                f"no answer within scheduler_timeout={self.scheduler_timeout:g} s: "
                f"{describe(exc)}"
            ) from None

    def identity(self, workers: bool = False) -> dict:
        """Ask the scheduler about itself (``workers``: and them), within ``scheduler_timeout``."""
        return self._bounded(self.client.scheduler.identity, n_workers=-1 if workers else 0)

    def run_on_workers(
        self, function: Any, *args: Any, workers: list[str] | None = None, on_error: str = "raise"
    ) -> dict:
        """``client.run`` (``function`` on the workers' event loops), within ``scheduler_timeout``."""
        return self._bounded(self.client._run, function, *args, workers=workers, on_error=on_error)

    def processing(self) -> dict:
        """The keys each worker is running, within ``scheduler_timeout``."""
        return self._bounded(self.client.scheduler.processing, workers=None)

    def num_threads(self) -> int:
        """Worker threads in the cluster (asked at most every couple of seconds)."""
        self._ask_size()
        return max(1, self._threads)

    def num_nodes(self) -> int:
        """Workers in the cluster, the nodes of node mode (asked like :meth:`num_threads`)."""
        self._ask_size()
        return max(1, self._workers)

    def node_addresses(self) -> list[str]:
        """Node mode: the workers' addresses, sorted (asked like :meth:`num_threads`)."""
        self._ask_size()
        return self._addresses

    def _ask_size(self) -> None:
        now = time.monotonic()
        if now - self._threads_at > _THREADS_TTL:
            info = self.identity(workers=self.node is not None)
            self._threads = int(info.get("total_threads", 0))
            self._workers = int(info.get("n_workers", 0))
            self._addresses = sorted(info.get("workers") or ())
            self._threads_at = now

    def check_nodes(self) -> None:
        """Node mode: refuse a cluster whose workers are daemonic (they may not start the
        node's processes), naming the fix; asked once, of the workers there then (a worker
        joining later reports the same error from its first chunk)."""
        if self.node is None or self._nodes_checked:
            return
        daemonic = self.run_on_workers(is_daemonic, on_error="ignore")
        self._nodes_checked = check_not_daemonic(daemonic, self.node)

    def watch(self) -> ClusterWatch:
        """A fresh watch on the workers, for one generation."""
        return ClusterWatch(self)

    # -- futures -------------------------------------------------------------------------

    def ship_task(self, task: Task) -> Any:
        """A future holding the pickled task: shipped once, again only for a new task object.

        The task is not re-pickled every generation: tasks keep runner-side state that
        changes each generation (a Gym task's running observation statistics) while what
        an evaluation depends on travels in ``Distribution.context`` (see
        :class:`~asktell.protocol.Task`). Re-shipping would only make every worker rebuild
        its environments. A future that erred (its workers kept dying) is shipped again.
        """
        future = self.task_future
        if future is not None and self._task_shipped is task:
            if future.status not in ("error", "cancelled"):
                return future
        import cloudpickle

        try:
            payload = cloudpickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - whatever pickling raised
            raise ConfigError(
                f"DaskEvaluator 'task' must be picklable to travel to Dask workers; "
                f"pickling {task!r} failed: {describe(exc)}"
            ) from exc
        digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
        self._task_ships += 1  # a fresh key: an erred task's key is not computed again
        shipped = (digest, payload) if self.node is None else (digest, payload, self.node)
        if self.node is not None and digest not in self._digests:
            self._digests.append(digest)
        self.task_future = self.client.submit(
            identity,
            shipped,
            key=f"asktell-task-{digest}-{self._task_ships}{node_tag(self.node)}",
            pure=False,
            workers=self.hung.allowed_workers(),
        )
        self._task_shipped = task
        return self.task_future

    def wait_all(self, futures: list[Any], timeout: float, first: bool = False) -> None:
        """Block until all of ``futures`` (``first``: one of them) are done, or ``timeout``,
        on the client's loop."""
        if timeout <= 0:
            return
        waiter = getattr(self.distributed.client, "_wait", None)
        if waiter is None:  # pragma: no cover - a distributed without it: poll
            stop = time.monotonic() + timeout
            done = any if first else all
            while time.monotonic() < stop and not done(f.done() for f in futures):
                time.sleep(0.005)
            return
        try:
            when = "FIRST_COMPLETED" if first else "ALL_COMPLETED"
            self.client.sync(waiter, futures, timeout=timeout, return_when=when)
        except Exception:  # noqa: BLE001 - timeouts, cancellations: the futures tell
            pass

    def gather(self, futures: list[Any]) -> list[Any]:
        """Results of finished futures, within :data:`GATHER_SECONDS` (raises past it)."""
        gather = getattr(self.client, "_gather", None)
        if gather is None:  # pragma: no cover - older/newer distributed without it
            return self.client.gather(futures)
        return self.client.sync(gather, futures, callback_timeout=GATHER_SECONDS)

    def cancel(self, futures: list[Any]) -> None:
        """Cancel ``futures``, best effort, within ``scheduler_timeout``."""
        if not futures or self.client.status != "running":
            return
        try:
            cancel_async = getattr(self.client, "_cancel", None)
            if cancel_async is None:  # pragma: no cover
                self.client.cancel(futures)
            else:
                self.client.sync(cancel_async, futures, callback_timeout=self.scheduler_timeout)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass

    def is_killed_worker(self, exc: BaseException | None) -> bool:
        """Did Dask give up on a task because its workers kept dying?"""
        return isinstance(exc, self.distributed.KilledWorker)


class ClusterWatch:
    """Is the scheduler there, and are there workers? (An embedded cluster's lost workers
    are brought back by its :class:`~._dask_heal.ClusterHealer`, generation or not.)"""

    def __init__(self, link: ClusterLink):
        self.link = link
        self.no_workers_since: float | None = None

    def check(self, generation: int) -> None:
        """Raise if the scheduler is gone or no worker came for ``worker_timeout``."""
        link = self.link
        info = link.identity()  # raises SchedulerLost if the scheduler is gone
        workers = int(info.get("n_workers", 1))
        now = time.monotonic()
        if workers > 0 or link.worker_timeout is None:
            self.no_workers_since = None
            return
        self.no_workers_since = self.no_workers_since or now
        if now - self.no_workers_since > link.worker_timeout:
            raise EvaluationError(
                f"DaskEvaluator: the cluster at {link.address!r} has had no worker for "
                f"worker_timeout={link.worker_timeout:g} s during generation "
                f"{generation}; start workers (e.g. `dask worker "
                f"{link.address}`) or raise worker_timeout"
            )


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start the embedded workers with SIGINT ignored (an ignored signal survives the exec of
    a spawned process). A terminal's Ctrl-C goes to the whole process group; the run's own
    process checkpoints and closes the cluster, while workers that took it themselves each
    printed a long KeyboardInterrupt traceback. A Ctrl-C during these seconds is dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
