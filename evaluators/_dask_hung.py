"""Dask workers whose thread is stuck in a candidate that missed its deadline.

A Python thread cannot be killed. The embedded cluster's stuck workers are restarted (their
nannies start fresh processes); a connected cluster is not ours to restart, so its stuck
workers get no task from this evaluator until their threads are free. Which candidate a
late chunk is stuck in is asked on the workers' event loops (they answer while every thread
is busy), so the straggler alone fails and is never run again beside its chunk-mates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._dask_worker import executing_count, running_candidates

__all__ = ["HungWorkers"]


class HungWorkers:
    """The stuck workers of one :class:`~asktell.evaluators._dask_link.ClusterLink`."""

    def __init__(self, link: Any):
        self.link = link
        #: Workers of a connected cluster whose thread still runs a late candidate: nothing
        #: is sent to them until it ends.
        self.avoided: set[str] = set()
        self._allowed: list[str] | None = None

    def workers_running(self, keys: set[str]) -> set[str]:
        """The workers that are processing any of ``keys`` (asked before they are cancelled)."""
        try:
            processing = self.link.processing()  # bounded by scheduler_timeout
        except Exception:  # noqa: BLE001 - best effort: nothing known, nothing retired
            return set()
        return {w for w, ks in processing.items() if keys.intersection(map(str, ks))}

    def stuck_candidates(
        self, workers: set[str], keys: set[str], limit: float | None
    ) -> dict[str, int]:
        """``{chunk key: index}`` of the candidates that ``workers`` have been running for
        longer than ``limit`` in the chunks ``keys`` (asked on the workers' event loops,
        which answer while their threads are stuck)."""
        if limit is None or not workers:
            return {}
        try:
            answers = self.link.run_on_workers(running_candidates, workers=sorted(workers))
        except Exception:  # noqa: BLE001 - unknown: the whole chunks run again
            return {}
        return {
            key: i
            for running in answers.values()
            for key, (i, seconds) in running.items()
            if key in keys and seconds >= limit
        }

    def retire(self, workers: set[str]) -> None:
        """Take workers whose thread is stuck in a candidate out of the next tasks' way.

        Embedded cluster: restart them (their nannies start fresh processes; what they held
        is recomputed by Dask). A connected cluster is not ours to restart: the workers are
        avoided (no task is sent to them) until their threads are free again, which
        :meth:`allowed_workers` checks each generation."""
        if not workers:
            return
        if self.link.cluster is not None:
            try:
                self.link.client.restart_workers(
                    list(workers), timeout=self.link.connect_timeout, raise_for_error=False
                )
            except Exception:  # noqa: BLE001 - the healer refills a cluster left short
                pass
            self.link._threads_at = -np.inf
            return
        self.avoided |= workers
        self._allowed = None

    def avoid(self, workers: set[str]) -> None:
        """Send nothing to ``workers`` (busy with stale rollouts of a generation closed
        early) until :meth:`allowed_workers` finds their threads free again."""
        self.avoided |= set(workers)
        self._allowed = None

    def allowed_workers(self, refresh: bool = False) -> list[str] | None:
        """Workers tasks may go to: ``None`` (any) unless some are avoided; re-checked
        (avoided workers whose threads are free again come back) when ``refresh``."""
        if not self.avoided:
            return None
        if refresh or self._allowed is None:
            # Both questions are bounded by scheduler_timeout: a hung scheduler is reported
            # (the link's SchedulerLost), never waited on.
            workers = set(self.link.identity(workers=True).get("workers") or ())
            try:
                busy = self.link.run_on_workers(executing_count, workers=list(self.avoided & workers))
            except Exception:  # noqa: BLE001 - keep avoiding what we know (bounded: the next
                busy = {w: 1 for w in self.avoided}  # question reports a lost scheduler)
            self.avoided = {w for w, n in busy.items() if n > 0}
            allowed = sorted(workers - self.avoided)
            # Every worker hung: nothing better than waiting behind them.
            self._allowed = allowed or None
        return self._allowed if self.avoided else None
