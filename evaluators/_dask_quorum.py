"""A straggler-tolerant generation on Dask: chunks pulled by free threads, closed on a quorum.

Import direction (see :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_options.py  ->  _dask_quorum.py
             ->  _dask_round.py    ->  _dask_quorum.py  ->  _dask_link.py

:class:`Quorum` is the closing rule (``[evaluator.stragglers]``); :class:`QuorumPull` hands a
generation's chunks to the worker threads as they come free, one each (plus a bounded
prefetch), and closes the generation when the rule is met: the chunks not back are
cancelled and their ranges dropped. :class:`~asktell.evaluators._dask_round.GenerationRound`
runs its collecting loop and gives it the one way to submit a chunk (``submit``,
:meth:`~asktell.evaluators._dask_chunks.ChunkTasks.submit_to`); this
module knows nothing of the round and talks to the cluster only through the public methods
of :class:`~asktell.evaluators._dask_link.ClusterLink`. What a quorum gives up is in
``docs/stragglers.md``.

In node mode a chunk is a node's and the nodes close on their own share
(:meth:`Quorum.node_share`); when the global rule is met, :func:`close_nodes` sends every
node one message that stops the nodes still running and collects what each node has back
of its chunk by then.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import ChunkResult
from ._dask_link import ClusterLink

__all__ = [
    "HARVEST_SECONDS", "Part", "Quorum", "QuorumPull", "Range", "close_nodes", "ranges_of",
]

#: Seconds the driver waits, when it closes a node-mode quorum generation, for the nodes to
#: answer its one message (they answer from their event loops: milliseconds); past it every
#: candidate not told by then stays dropped (a node unreachable holds up the message's
#: answers, which come back together).
HARVEST_SECONDS = 2.0

#: A chunk: the ``(start, stop)`` offsets of its seeds in the generation.
Range = tuple[int, int]
#: A finished chunk: its start offset and its result.
Part = tuple[int, ChunkResult]


@dataclasses.dataclass(frozen=True)
class Quorum:
    """When a straggler-tolerant generation may close: every threshold given is met by the
    candidates back so far (failed ones count: they were evaluated). ``None``: no rule."""

    min_candidates: int | None = None
    min_episodes: int | None = None
    min_timesteps: int | None = None

    def met(self, parts: list[Part]) -> bool:
        candidates = episodes = steps = 0
        for _, part in parts:  # a node's part may mark candidates it dropped
            back = part.told_mask
            n = int(np.sum(back))
            candidates += n
            episodes += int(np.sum(part.episodes[back])) if part.episodes is not None else n
            steps += int(np.sum(part.steps[back]))
        return (
            (self.min_candidates is None or candidates >= self.min_candidates)
            and (self.min_episodes is None or episodes >= self.min_episodes)
            and (self.min_timesteps is None or steps >= self.min_timesteps)
        )

    def node_share(self, n: int) -> tuple:
        """What a node's chunk of a generation of ``n`` carries (node mode): the thresholds
        and ``n``; the node closes on ``ceil(threshold * chunk / n)`` of each given."""
        return (self.min_candidates, self.min_episodes, self.min_timesteps, int(n))


def ranges_of(mask: np.ndarray, offset: int = 0) -> list[Range]:
    """The ``(start, stop)`` runs of True in ``mask``, shifted by ``offset``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(offset + int(a), offset + int(b)) for a, b in zip(edges[::2], edges[1::2])]


class QuorumPull:
    """Where a quorum round's chunks go: one per free worker thread, each to its worker.

    Pulled, one chunk per free thread (as the paper's workers pull work): a chunk never
    waits in a queue behind a straggler, where Dask's work stealing would take seconds to
    move it and the quorum would wait for it.

    Args:
        quorum: the closing rule.
        link: the cluster (its workers' threads, the hung workers to keep clear of).
        allowed: the workers a task may go to (``None``: any).
        num_seeds: the generation's candidates.
        bounds: the generation's chunks.
        submit: ``submit(range, worker)`` submits one chunk, to ``worker`` (loosely:
            elsewhere if it is gone) or anywhere (``None``); returns ``{future: range}``.
    """

    def __init__(
        self,
        quorum: Quorum,
        link: ClusterLink,
        allowed: list[str] | None,
        num_seeds: int,
        bounds: list[Range],
        submit: Callable[[Range, str | None], dict[Any, Range]],
    ):
        self.quorum = quorum
        self.link = link
        self.allowed = allowed
        self.num_seeds = num_seeds
        self.bounds = list(bounds)
        self.submit = submit
        self.where: dict[Any, str | None] = {}  # the worker each pulled chunk went to
        self.slots = self._free_slots()  # threads per free worker

    def _free_slots(self) -> dict[str | None, int]:
        """Threads per worker a quorum round may fill: workers not avoided (busy with a
        stale rollout); ``{None: threads}`` (anywhere) when the scheduler cannot say."""
        # Bounded by scheduler_timeout: a hung scheduler is SchedulerLost, reported by the round.
        info = self.link.identity(workers=True).get("workers") or {}
        allowed = set(self.allowed) if self.allowed is not None else set(info)
        slots: dict[str | None, int] = {
            w: int(v.get("nthreads", 1)) for w, v in info.items()
            if w in allowed and w not in self.link.hung.avoided
        }
        if not slots:
            return {None: max(1, self.link.num_threads())}
        # A chunk more than threads on some workers: the next is there when a thread comes
        # free (no idle round trip). One may wait behind a straggler, so only as many as
        # half the candidates the quorum can do without (min_candidates alone) get one:
        # the quorum never needs a chunk stuck that way.
        for w in sorted(slots)[: self._prefetch_slots()]:
            slots[w] += 1
        return slots

    def _prefetch_slots(self) -> int:
        q = self.quorum
        if q.min_candidates is None or q.min_episodes or q.min_timesteps:
            return 0
        chunk = max((b - a for a, b in self.bounds), default=1)
        return (self.num_seeds - q.min_candidates) // (2 * chunk)

    def pull(self, queue: list[Range], pending: dict[Any, Range]) -> dict[Any, Range]:
        """Submit ranges from ``queue`` to the free threads, one chunk per thread, each
        restricted to its worker (loosely: elsewhere if that worker is gone). Dask would
        otherwise place a chunk behind a straggler (it sees a thread running a task of the
        group it expects to be short) and steal it only seconds later."""
        busy: dict[str | None, int] = {}
        for f in pending:
            if f in self.where:
                busy[self.where[f]] = busy.get(self.where[f], 0) + 1
        for worker, threads in self.slots.items():
            while queue and busy.get(worker, 0) < threads:
                placed = self.submit(queue.pop(0), worker)
                self.where.update(dict.fromkeys(placed, worker))
                pending.update(placed)
                busy[worker] = busy.get(worker, 0) + 1
        return pending

    def close(self, pending: dict[Any, Range], queue: list[Range]) -> list[Range]:
        """The quorum is met: the chunks not back are cancelled; returns the ranges dropped.
        Those queued never run; a rollout already running finishes in its thread and its
        result is released unread (stale: the next generation has another distribution),
        and its worker gets no task until it is free (checked when a generation starts)."""
        busy = self.link.hung.workers_running({str(f.key) for f in pending})
        self.link.cancel(list(pending))
        # Their threads are taken until those rollouts end: the next generation's tasks
        # (and its distribution) go to the other workers, not into a queue behind them.
        self.link.hung.avoid(busy)
        return sorted([*pending.values(), *queue])


# ----------------------------------------------------------------- node mode's close
def close_nodes(
    link: ClusterLink,
    tag: str,
    seeds: np.ndarray,
    pending: dict[Any, Range],
    early: dict[Any, Range],
    parts: list[Part],
    dropped: list[Range],
) -> list[Range]:
    """Node mode's quorum closed the generation ``tag``: one message to every node
    (:func:`~._dask_node.close_round`, a ``Client.run``) stops the chunks still running
    (``pending``: their tasks are cancelled, their ranges dropped) and has each node hand
    over what it has back of its chunk: a node that returned ``early`` (its share back,
    pieces in flight) the pieces back since, a node still running those back so far.
    Their candidates are told: ``parts`` is updated in place (a running chunk's record is
    added), and the ranges dropped then are returned. Best effort: a node that cannot be
    reached (``on_error``), or a message not answered within :data:`HARVEST_SECONDS`
    (every answer then), leaves its candidates dropped; answers are matched to chunks by
    ``(first seed, size)`` within this round only (the node checks the tag), and a chunk
    whose key another chunk of the round shares is left dropped."""
    from ._dask_node import close_round

    dropped = sorted([*dropped, *pending.values()])
    link.cancel(list(pending))
    chunks: dict[tuple[int, int], list[Range]] = {}
    for a, b in [*pending.values(), *early.values()]:
        chunks.setdefault((int(seeds[a]), b - a), []).append((a, b))
    answers = _run_bounded(link, close_round, tag)
    if not answers:
        return dropped
    offsets = {a: i for i, (a, _) in enumerate(parts)}
    for answer in answers.values():
        if not isinstance(answer, dict):  # an error: that node's candidates stay dropped
            continue
        for key, new in answer.items():
            where = chunks.get(tuple(key), [])
            if len(where) != 1 or getattr(new, "dropped", None) is None:
                continue
            (a, b), = where
            if new.dropped.size != b - a:
                continue
            if a in offsets:  # an early chunk: its record again, with more told
                new.seconds = parts[offsets[a]][1].seconds
                parts[offsets[a]] = (a, new)
            else:  # a chunk still running: what it had back
                new.seconds = 0.0
                offsets[a] = len(parts)
                parts.append((a, new))
            dropped = [r for r in dropped if not (a <= r[0] and r[1] <= b)]
            dropped += ranges_of(new.dropped, a)
    return sorted(dropped)


def _run_bounded(
    link: ClusterLink, function: Callable, *args: Any, workers: list[str] | None = None
) -> dict | None:
    """``Client.run(function, *args)`` on every worker (or ``workers``), its answers
    ``{worker: result or exception}``, or ``None`` if they are not all back within
    :data:`HARVEST_SECONDS` (the message is not withdrawn: nodes reached still act on it)
    or it could not be sent. (``benchmarks/_scaling_close.py`` times this call.)"""
    client = link.client
    run = getattr(client, "_run", None)
    try:
        if run is None:  # pragma: no cover - a distributed without it: unbounded
            return client.run(function, *args, workers=workers, on_error="return")
        job = lambda: run(function, *args, workers=workers, on_error="return")  # noqa: E731
        return client.sync(_within, job, HARVEST_SECONDS)
    except Exception:  # noqa: BLE001 - best effort: the candidates stay dropped
        return None


async def _within(job: Callable[[], Any], seconds: float) -> Any:
    """``job()``'s result, or ``None`` after ``seconds``; the job then runs on (its answers
    unread) rather than being cancelled half-way through its sends."""
    task = asyncio.ensure_future(job())
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        task.add_done_callback(_forget)
        return None
    return task.result()


def _forget(task: Any) -> None:
    if not task.cancelled():
        task.exception()  # read, so that a late failure is not reported as never retrieved
