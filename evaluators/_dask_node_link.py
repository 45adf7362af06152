"""Node mode's client side: what the link to the cluster does differently when each Dask
worker stands for a node (``DaskEvaluator(node_processes=...)``).

Import direction (see :mod:`asktell.evaluators.dask`)::

    _dask_link.py  ->  _dask_node_link.py  ->  _dask_node.py

* the embedded cluster's workers: a ``Nanny`` whose worker process is not daemonic
  (:func:`non_daemonic_nanny`), so it may start the node's local processes;
* a connected cluster's workers: refused, naming the fix, when they answer that they are
  daemonic (:func:`check_not_daemonic`);
* the shipped task: the node settings travel with it and tag its key (:func:`node_tag`).

Nothing here calls the client: :class:`~._dask_link.ClusterLink` asks the workers (running
the worker-side :func:`~._dask_node.is_daemonic` and :func:`~._dask_node.close_pools`) and
passes the answers in.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from asktell.errors import ConfigError

from ._dask_node import DAEMON_FIX, NodeSpec

__all__ = ["check_not_daemonic", "node_tag", "non_daemonic_nanny"]


def node_tag(node: NodeSpec | None) -> str:
    """The shipped task key's suffix: evaluators sharing a cluster and a task but not the
    node settings must not share the future (Dask dedupes by key)."""
    return "" if node is None else f"-node-{node[0]}-{node[1]}"


def check_not_daemonic(answers: dict[str, Any], node: NodeSpec) -> bool:
    """Refuse workers that answered :func:`~._dask_node.is_daemonic` with ``True`` (they may
    not start the node's processes), naming them and the fix; whether any worker answered
    (the check is then done: a worker joining later reports the same error from its first
    chunk)."""
    bad = sorted(w for w, flag in answers.items() if flag is True)
    if bad:
        raise ConfigError(
            f"DaskEvaluator node_processes={node[0]!r}: the Dask workers "
            f"{', '.join(bad)} are daemonic processes, which may not start the node's "
            f"local processes; {DAEMON_FIX}"
        )
    return bool(answers)


_DAEMON_KEY = "distributed.worker.daemon"
_daemon_off_count = 0
_daemon_saved: Any = True
_daemon_lock = threading.Lock()


@contextlib.contextmanager
def _daemon_off():
    """``distributed.worker.daemon: False`` while any node-mode nanny starts its worker.

    The nanny reads the flag from this process's Dask config when it (re)starts its worker
    process, after awaits; a counted switch (not nested ``dask.config.set`` contexts, which
    restore each other's saved values out of order) keeps it off while any is starting."""
    import dask

    global _daemon_off_count, _daemon_saved
    with _daemon_lock:
        if _daemon_off_count == 0:
            _daemon_saved = dask.config.get(_DAEMON_KEY, default=True)
            dask.config.set({_DAEMON_KEY: False})
        _daemon_off_count += 1
    try:
        yield
    finally:
        with _daemon_lock:
            _daemon_off_count -= 1
            if _daemon_off_count == 0:
                dask.config.set({_DAEMON_KEY: _daemon_saved})


_NANNY: Any = None  # the class, made on first use (distributed imported then)


def non_daemonic_nanny() -> type:
    """A ``Nanny`` whose worker process is not daemonic, so it may start the node's pool
    (Python forbids children to daemonic processes); also when it restarts a dead worker."""
    global _NANNY
    if _NANNY is None:
        from distributed import Nanny

        from asktell._shared_table import unlink_tables_of

        class NodeNanny(Nanny):
            _worker_pid: int | None = None

            async def instantiate(self):  # type: ignore[override]
                with _daemon_off():
                    status = await super().instantiate()
                self._worker_pid = self.pid
                return status

            def _on_worker_exit_sync(self, exitcode):  # type: ignore[override]
                # A worker killed outright left its node's noise table in shared memory.
                unlink_tables_of(self._worker_pid)
                return super()._on_worker_exit_sync(exitcode)

        _NANNY = NodeNanny
    return _NANNY
