"""The chunk tasks of one generation on Dask: where its seeds are cut, and what is submitted.

Import direction (see :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_round.py  ->  _dask_chunks.py  ->  _dask_quorum.py, _dask_link.py
             ->  _dask_chunks.py                      ->  _dask_worker.py

:class:`ChunkTasks` is what one :class:`~asktell.evaluators._dask_round.GenerationRound` runs
on the cluster: the task (shipped once, through
:class:`~asktell.evaluators._dask_link.ClusterLink`), the distribution (submitted once per
generation, and again under a new key when it is lost with the workers holding it), and one
task per chunk of seeds, the worker-side :func:`~asktell.evaluators._dask_worker.run_chunk`,
whose futures it keeps until the round releases them. Waiting for the chunks, and what
their results and failures mean, is the round's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Task

from ._dask_link import ClusterLink
from ._dask_quorum import Quorum, Range
from ._dask_worker import identity, run_chunk

__all__ = ["ChunkTasks", "chunk_bounds"]

# How often the distribution or task may be lost with the workers holding it (and chunks
# rerun because of it) before a generation gives up.
_LOSS_LIMIT = 3
_RERUN_LIMIT = 50


def chunk_bounds(n: int, num_chunks: int) -> list[Range]:
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


class ChunkTasks:
    """The task, the distribution and the chunk tasks of one generation, and their futures.

    ``allowed``: the workers chunks may go to (``None``: any); the round narrows it when
    workers hang. ``one_at_a_time``: each chunk runs its candidates one at a time, noting
    which it is in, so that a late chunk tells which candidate it is stuck in (see
    :func:`~asktell.evaluators._dask_worker.run_chunk`). ``quorum``: in node mode, each
    chunk carries its share of it.
    """

    def __init__(
        self,
        link: ClusterLink,
        task: Task,
        distribution: Distribution,
        seeds: np.ndarray,
        tag: str,
        *,
        retries: int,
        allowed: Any,
        one_at_a_time: bool,
        quorum: Quorum | None,
    ):
        self.link = link
        self.client = link.client
        self.task = task
        self.distribution = distribution
        self.generation = distribution.generation
        self.seeds = seeds
        self.tag = tag
        self.retries = retries
        self.allowed = allowed
        self.one_at_a_time = one_at_a_time
        self.quorum = quorum
        self.futures: list[Any] = []
        self.losses = 0
        self.reruns = 0
        self.task_future = link.ship_task(task)
        self.dist_future = self._submit_distribution()

    def release(self, cancel: bool = True) -> None:
        """Drop this generation's futures, cancelling those not done (stragglers)."""
        if cancel:
            self.link.cancel([f for f in self.futures if not f.done()])
        self.futures = []
        self.dist_future = None

    def _submit_distribution(self) -> Any:
        with warnings.catch_warnings():
            # A large centre makes a "large graph"; it is sent once per generation on purpose.
            warnings.filterwarnings("ignore", message="Sending large graph")
            return self.client.submit(
                identity,
                self.distribution,
                key=f"asktell-distribution-{self.tag}-{self.losses}",
                pure=False,
                workers=self.link.hung.allowed_workers(),
            )

    def submit(self, bounds: list[Range], what: str) -> dict[Any, Range]:
        """Submit one chunk task per range; returns ``{future: range}``.

        Node mode (``link.node``): chunk ``i`` is placed on node ``i`` (loosely: it runs
        elsewhere if that node is gone); Dask alone would queue them all on the node holding
        their inputs."""
        nodes = self.link.node_addresses() if self.link.node is not None else []
        if self.allowed is not None:
            nodes = [w for w in nodes if w in self.allowed]
        if len(bounds) > 1 and len(nodes) > 1:
            placed: dict[Any, Range] = {}
            for i, rng in enumerate(bounds):
                placed.update(self._map([rng], what, [nodes[i % len(nodes)]], loose=True))
            return placed
        return self._map(bounds, what, self.allowed)

    def submit_to(self, rng: Range, worker: str | None) -> dict[Any, Range]:
        """A quorum round's chunk, on ``worker`` (loosely) or, ``None``, anywhere."""
        if worker is None:
            return self.submit([rng], "chunk")
        return self._map([rng], "chunk", [worker], loose=True)

    def _map(self, bounds: list[Range], what: str, workers: Any, loose: bool = False) -> dict[Any, Range]:
        # One graph for all chunks (``map``): about half the client and scheduler CPU of
        # one ``submit`` per chunk.
        keys = [f"asktell-{what}-{self.tag}-{a}-{b}" for a, b in bounds]
        futures = self.client.map(
            run_chunk,
            [self.seeds[a:b] for a, b in bounds],
            keys,
            key=keys,
            pure=False,
            workers=workers,
            allow_other_workers=loose,
            retries=self.retries,  # Dask's: for errors outside any rollout
            shipped_task=self.task_future,
            distribution=self.dist_future,
            candidate_retries=self.retries,
            one_at_a_time=self.one_at_a_time,
            **self._node_kwargs(),
        )
        self.futures.extend(futures)
        return dict(zip(futures, bounds))

    def _node_kwargs(self) -> dict:
        """Node mode with a quorum: each chunk closes on its share (:meth:`Quorum.node_share`)
        and returns at once when the round's close stops the round ``tag``
        (:meth:`GenerationRound._close_nodes <asktell.evaluators._dask_round.GenerationRound._close_nodes>`)."""
        if self.quorum is None or self.link.node is None:
            return {}
        return {"node_share": self.quorum.node_share(self.seeds.size), "node_round": self.tag}

    def resubmit(self, ranges: list[Range]) -> dict[Any, Range]:
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
                    f"DaskEvaluator: the distribution or task of generation {self.generation} "
                    f"was lost with its workers {_LOSS_LIMIT} times; workers keep dying"
                )
            if self.dist_future.status == "error":
                self.dist_future = self._submit_distribution()
            self.task_future = self.link.ship_task(self.task)  # re-shipped if it erred
        self.reruns += 1
        if self.reruns > _RERUN_LIMIT:
            raise EvaluationError(
                f"DaskEvaluator: chunks of generation {self.generation} failed "
                f"{_RERUN_LIMIT} times for lost inputs; workers keep dying"
            )
        return self.submit(ranges, f"rerun{self.reruns}")
