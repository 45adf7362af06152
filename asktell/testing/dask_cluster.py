"""A Dask cluster for tests and benchmarks that listens on loopback only.

``distributed.LocalCluster`` binds its scheduler's HTTP API to every interface (``:8787``)
even with ``dashboard_address=None``; :func:`loopback_cluster` keeps every listener on
127.0.0.1 (worker processes and scheduler there, the HTTP API on a free loopback port), so
a suite that starts servers never exposes one. Use it as a context manager; it closes the
cluster on exit.
"""

from __future__ import annotations

from typing import Any

from asktell._extras import require

__all__ = ["loopback_cluster"]


def loopback_cluster(
    n_workers: int = 1, *, threads_per_worker: int = 1, processes: bool = True, **options: Any
) -> Any:
    """A ``distributed.LocalCluster`` with everything on 127.0.0.1 and no dashboard.

    ``processes=False`` keeps the in-process transport (nothing listens but the HTTP API,
    which stays on loopback); ``options`` go to ``LocalCluster`` as they are.
    """
    distributed = require("distributed", "loopback_cluster")
    if processes:
        options.setdefault("host", "127.0.0.1")
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        **options,
    )
