"""An embedded cluster that always gets its workers back: :class:`ClusterHealer`.

Why it is needed (``distributed`` 2026.8, read in ``deploy/spec.py`` and ``nanny.py``): a
``LocalCluster`` is a ``SpecCluster`` whose ``worker_spec`` names the workers it should have
and whose ``workers`` holds their nannies; only ``_correct_state`` (run by ``scale``) opens
the missing ones. When a worker leaves the scheduler, ``SpecCluster._update_worker_status``
checks ``lost-worker-timeout`` (15 s) later whether a worker of that name is back; if not,
it closes the nanny and drops it from ``workers`` but keeps its name in ``worker_spec``, and
nothing calls ``_correct_state`` again: that slot stays empty for good. A candidate that
kills every worker it runs on makes this likely on a loaded machine: the nanny restarts the
worker, the new worker dies again (or is still starting, slowly), and 15 s after the first
death the check finds no worker of that name and closes the nanny in the middle of its
restart. Twice, and a two-worker cluster has none. A nanny whose restart failed (the new
worker's name was still taken at the scheduler) closes itself and stays in ``workers``,
closed, also for good.

The healer is a periodic callback on the cluster's own event loop (in this process: it
reads the cluster's objects, sends nothing to the scheduler, and costs nothing per
generation). Each second it looks at every slot of ``worker_spec`` and gives a new name to
a slot whose nanny is gone or closed, or whose worker died and was neither restarted nor
given up within :data:`RESTART_GRACE_SECONDS`; then ``scale`` opens the renamed slots (a
new name: the old one may still be registered by the dying worker) and closes what is left
of the old nannies. A nanny restarting its worker, or a ``_correct_state`` under way, is
left alone. Only the evaluator's own embedded cluster gets one; a cluster you started or
connect to is never touched.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ClusterHealer", "TICK_SECONDS", "RESTART_GRACE_SECONDS"]

#: How often the healer looks (on the cluster's loop, reading in-process objects only).
TICK_SECONDS = 1.0
#: A nanny whose worker died gets this long to restart it (or give up and close) before
#: the healer replaces it; a nanny in the middle of a restart is never interrupted.
RESTART_GRACE_SECONDS = 10.0


class ClusterHealer:
    """Keep an embedded ``SpecCluster``'s slots filled (see the module docstring).

    :meth:`start` it once the cluster runs and :meth:`stop` it before closing the cluster.
    :meth:`tick` is one look (on the cluster's loop); it returns the slots it renamed.
    """

    def __init__(
        self,
        cluster: Any,
        tick_seconds: float = TICK_SECONDS,
        restart_grace_seconds: float = RESTART_GRACE_SECONDS,
    ):
        self.cluster = cluster
        self.tick_seconds = tick_seconds
        self.restart_grace_seconds = restart_grace_seconds
        #: Slots renamed so far, ``(old name, new name)`` in order.
        self.replaced: list[tuple[Any, Any]] = []
        self._stopped = False
        self._callback: Any = None
        self._dead_since: dict[Any, float] = {}  # slot -> when its worker was first seen dead
        self._retired: set[Any] = set()  # names never given out again

    def start(self) -> None:
        from tornado.ioloop import PeriodicCallback

        self._callback = PeriodicCallback(self.tick, self.tick_seconds * 1000.0)
        self.cluster.loop.add_callback(self._start_on_loop)

    def _start_on_loop(self) -> None:
        if not self._stopped:
            self._callback.start()

    def stop(self) -> None:
        """No more looks (safe from any thread; the callback stops on the loop)."""
        self._stopped = True
        callback = self._callback
        if callback is not None:
            try:
                self.cluster.loop.add_callback(callback.stop)
            except Exception:  # noqa: BLE001 - a loop already stopped runs nothing anyway
                pass

    # -- one look ------------------------------------------------------------------------

    def tick(self) -> list[Any]:
        """Rename the slots that lost their worker for good; returns their old names."""
        cluster = self.cluster
        if self._stopped or _status(cluster) != "running" or _correcting(cluster):
            return []
        now = time.monotonic()
        spec = cluster.worker_spec
        lost = []
        for name in list(spec):
            verdict = slot_verdict(cluster.workers.get(name))
            if verdict == "dead":
                first = self._dead_since.setdefault(name, now)
                if now - first >= self.restart_grace_seconds:
                    lost.append(name)
            elif verdict == "gone":
                lost.append(name)
            else:
                self._dead_since.pop(name, None)
        for name in set(self._dead_since) - set(spec):
            del self._dead_since[name]
        for name in lost:
            fresh = self._fresh_name()
            spec[fresh] = spec.pop(name)
            self._dead_since.pop(name, None)
            self._retired.add(name)
            self.replaced.append((name, fresh))
        if lost:
            # Opens the renamed slots and closes the old nannies still in ``workers``.
            cluster.scale(len(spec))
        return lost

    def _fresh_name(self) -> Any:
        cluster = self.cluster
        taken = set(cluster.worker_spec) | set(cluster.workers) | self._retired
        scheduler = getattr(cluster, "scheduler", None)
        taken |= {ws.name for ws in getattr(scheduler, "workers", {}).values()}
        numbers = [n for n in taken if isinstance(n, int)]
        return max(numbers, default=-1) + 1


def slot_verdict(nanny: Any) -> str:
    """``"ok"`` (running, starting its worker, or being closed by the cluster), ``"gone"``
    (no nanny, or a closed or failed one: nothing will bring this slot back) or ``"dead"``
    (a running nanny without a live worker: about to restart it, unless it never does)."""
    if nanny is None:
        return "gone"
    status = _name(getattr(nanny, "status", None))
    if status in ("closed", "failed"):
        return "gone"
    if status != "running":  # init, starting, closing, closing_gracefully: under way
        return "ok"
    process = getattr(nanny, "process", None)
    if process is None:
        return "dead"
    if _name(getattr(process, "status", None)) in ("starting", "running", "stopping"):
        return "ok"
    return "dead"  # stopped (between a death and the restart) or failed


def _correcting(cluster: Any) -> bool:
    """Is ``_correct_state`` running or queued (it is opening or closing nannies)?"""
    lock = getattr(cluster, "_lock", None)
    locked = lock is not None and lock.locked()
    waiting = getattr(cluster, "_correct_state_waiting", None)
    return locked or (waiting is not None and not waiting.done())


def _status(cluster: Any) -> str:
    return _name(getattr(cluster, "status", None))


def _name(status: Any) -> str:
    return str(getattr(status, "name", status))
