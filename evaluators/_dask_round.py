"""One generation's round on Dask: collect the chunks through faults, build the result.

Import direction (see :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_round.py  ->  _dask_quorum.py  ->  _dask_link.py
                                 ->  _dask_chunks.py  ->  _dask_quorum.py, _dask_link.py,
                                                          _dask_worker.py
                                 ->  _dask_link.py

:class:`GenerationRound` is one ``DaskEvaluator.evaluate`` call. Its chunk tasks (the task
and distribution shipped, one worker-side :func:`~asktell.evaluators._dask_worker.run_chunk`
per chunk, their futures) are a :class:`~asktell.evaluators._dask_chunks.ChunkTasks`; the
round waits for them, sorts what comes back (results, workers that died, inputs lost,
deadlines passed) and builds the generation's ``Evaluation``. It talks to the cluster only
through the public methods of :class:`~asktell.evaluators._dask_link.ClusterLink`. The
fault policy it carries out is the table in ``docs/dask.md``. A straggler-tolerant
generation (a :class:`Quorum`) runs the same collecting loop; which chunk goes to which
free thread, and closing on the quorum, is
:class:`~asktell.evaluators._dask_quorum.QuorumPull`'s. In node mode the chunks (one per
node) carry their share of the quorum, the nodes close on it, and the round closes on the
global rule with one message to every node (:meth:`GenerationRound._close_nodes`): the
nodes still running stop, and every node hands over what it has back of its chunk then.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Evaluation, Failure, Task

from ._common import ChunkResult, assemble, timeout_message
from ._dask_chunks import ChunkTasks
from ._dask_link import GATHER_SECONDS, ClusterLink, SchedulerLost, describe
from ._dask_quorum import Part, Quorum, QuorumPull, Range, close_nodes, ranges_of

__all__ = ["GenerationRound"]

# How often the collecting loop wakes up when nothing finished, to check the scheduler and
# the workers are still there and the deadline has not passed.
_POLL_SECONDS = 0.5
# Fetches of finished results in a row that may fail before the generation gives up.
_GATHER_ATTEMPTS = 6
# Seconds added to a deadline derived from candidate_timeout_seconds, for what is not a
# candidate's compute: Dask's per-task costs, shipping the task, a worker's first noise table.
_TIMEOUT_SLACK = 1.0

Killed = tuple[int, int, BaseException]


def _killed_part(exc: Any) -> ChunkResult:
    """A one-candidate result naming the candidate that killed its worker every time."""
    tries = exc.allowed_failures + 1
    part = ChunkResult(1)
    part.failures.append(
        (
            0,
            f"killed its Dask worker, {tries} time{'s' if tries > 1 else ''} in a row "
            f"(KilledWorker; distributed.scheduler.allowed-failures={exc.allowed_failures})",
        )
    )
    return part


@dataclasses.dataclass
class _Collecting:
    """What one :meth:`GenerationRound.collect` call still waits for and has got so far."""

    pending: dict[Any, Range]
    parts: list[Part] = dataclasses.field(default_factory=list)
    killed: list[Killed] = dataclasses.field(default_factory=list)
    fetch_failures: int = 0


class GenerationRound:
    """One ``DaskEvaluator.evaluate`` call: its chunk tasks (:attr:`chunks`) and the loop
    that collects them.

    Use it as a context manager: leaving releases the futures, cancelling those not done
    (stragglers, or whatever is still queued after an error) unless the scheduler is gone.
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
        on_failure: str,
        deadline_seconds: float | None,
        candidate_timeout: float | None = None,
        quorum: Quorum | None = None,
    ):
        self.link = link
        self.generation = distribution.generation
        self.seeds = seeds
        self.tag = tag
        self.on_failure = on_failure
        self.deadline_seconds = deadline_seconds
        self.candidate_timeout = candidate_timeout
        self.stragglers: list[Range] = []  # late again when re-run alone: they fail
        self.quorum = quorum
        self.dropped: list[Range] = []  # not back when the quorum closed the generation
        self.pulling: QuorumPull | None = None  # a quorum round's chunks, pulled
        self.early: dict[Any, tuple[int, int]] = {}  # node mode: chunks back with drops
        self.watch = link.watch()
        link.ensure_running()
        allowed = link.hung.allowed_workers(refresh=True)
        self.deadline = self._deadline_for(seeds.size, deadline_seconds)
        self.parts: list[Part] = []  # finished chunks, by offset
        self.killed: list[Killed] = []  # chunks whose workers kept dying
        self.late: list[Range] = []  # ranges that missed the deadline
        self.chunks = ChunkTasks(
            link, task, distribution, seeds, tag,
            retries=retries,
            allowed=allowed,
            one_at_a_time=self._stuck_after() is not None,
            quorum=quorum,
        )

    def __enter__(self) -> GenerationRound:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # A lost scheduler cannot be asked to cancel anything.
        lost = exc_type is not None and issubclass(exc_type, SchedulerLost)
        self.chunks.release(cancel=not lost)

    # -- the generation, start to end ---------------------------------------------------

    def run(self, bounds: list[Range]) -> float | None:
        """Run the chunks ``bounds``; their compute seconds if every one came back."""
        if self.quorum is None or self.link.node is not None:
            # Node mode: one chunk per node, each closing on its share of the quorum.
            parts, self.killed = self.collect(self.chunks.submit(bounds, "chunk"))
        else:  # pulled by the threads as they come free (:class:`QuorumPull`)
            queue = list(bounds)
            self.pulling = QuorumPull(
                self.quorum, self.link, self.chunks.allowed, self.seeds.size, bounds,
                self.chunks.submit_to,
            )
            parts, self.killed = self.collect(self.pulling.pull(queue, {}), waiting=queue)
        self.parts += parts
        if self.dropped:  # closed on the quorum: chunks whose workers died are dropped too
            self.dropped += [(a, b) for a, b, _ in self.killed]
            self.killed = []
        if parts and len(parts) == len(bounds):
            return sum(part.seconds for _, part in parts)
        return None

    def find_culprits(self) -> None:
        """Rerun the candidates of chunks whose workers kept dying, one per task.

        A candidate that again exhausts Dask's allowed failures alone is the culprit. When
        several do in one round, innocent ones may have died beside the culprit (a worker
        holds more than one task), so each is confirmed alone, one after the other.
        """
        if not self.killed:
            return
        singles = [(i, i + 1) for a, b, _ in self.killed for i in range(a, b)]
        parts, suspects = self.collect(self.chunks.submit(singles, "single"))
        if len(suspects) > 1:
            confirmed = []
            for a, b, _ in suspects:
                if self._past_deadline():
                    self.late.append((a, b))
                    continue
                more, again = self.collect(self.chunks.submit([(a, b)], "confirm"))
                parts += more
                confirmed += again
            suspects = confirmed
        self.parts += parts
        self.parts += [(a, _killed_part(exc)) for a, _, exc in suspects]

    def _deadline_for(self, n: int, seconds: float | None) -> float | None:
        """When ``n`` candidates must be back: ``seconds`` from now, or sooner when each
        candidate may take ``candidate_timeout`` and a thread runs ``n / threads`` of them."""
        limits = [] if seconds is None else [seconds]
        if self.candidate_timeout is not None:
            per_thread = -(-n // self.link.num_threads())
            limits.append(self.candidate_timeout * per_thread + _TIMEOUT_SLACK)
        return time.monotonic() + min(limits) if limits else None

    def rerun_late(self) -> None:
        """Candidates of chunks that missed the deadline, each again alone, under the limit.

        A chunk is late as a whole when one of its candidates hangs, and chunks queued behind
        it on the same worker thread are late too; each of their candidates runs again in a
        task of its own (on workers not hung, see :meth:`HungWorkers.retire <asktell.evaluators._dask_hung.HungWorkers.retire>`), so only
        a candidate late again alone fails. Returns equal the serial evaluator's: a
        candidate's value does not depend on its chunk."""
        if not self.late:
            return
        late, self.late = self.late, []
        singles = [(i, i + 1) for a, b in late for i in range(a, b)]
        self.chunks.allowed = self.link.hung.allowed_workers()
        limit = self.candidate_timeout or self.deadline_seconds
        self.deadline = self._deadline_for(len(singles), limit)
        parts, killed = self.collect(self.chunks.submit(singles, "alone"))
        self.parts += parts
        self.parts += [(a, _killed_part(exc)) for a, _, exc in killed]
        self.stragglers += self.late  # late again alone
        self.late = []

    def evaluation(self) -> Evaluation:
        """The generation's :class:`Evaluation`, in seed order; late candidates failed."""
        parts = sorted(self.parts, key=lambda p: p[0])  # merge statistics in seed order
        late = self.late + self.stragglers
        if late and not parts:
            raise EvaluationError(
                f"DaskEvaluator: no candidate of generation {self.generation} finished in "
                f"time ({self._late_message()}); raise the limit"
            )
        if self.candidate_timeout is not None:  # a timed-out candidate: on_failure applies
            for a, b in late:
                part = ChunkResult(b - a)
                part.failures = [(i, self._late_message()) for i in range(b - a)]
                parts.append((a, part))
            parts.sort(key=lambda p: p[0])
        evaluation = assemble(self.seeds, parts, self.generation, self.on_failure)
        if self.quorum is not None:
            evaluation.dropped = np.zeros(self.seeds.size, dtype=bool)
            for a, b in self.dropped:
                evaluation.dropped[a:b] = True
        if self.candidate_timeout is None:  # the deadline drops stragglers whatever the policy
            for a, b in late:
                for i in range(a, b):
                    evaluation.failures.append(
                        Failure(i, int(self.seeds[i]), self._late_message(), self.generation)
                    )
            evaluation.failures.sort(key=lambda f: f.index)
        return evaluation

    def _late_message(self) -> str:
        if self.candidate_timeout is not None:
            return timeout_message(self.candidate_timeout) + " (alone, on a Dask worker)"
        return f"not back within the generation deadline (deadline_seconds={self.deadline_seconds:g})"

    # -- collecting ----------------------------------------------------------------------

    def collect(
        self, pending: dict[Any, Range], waiting: list[Range] | None = None
    ) -> tuple[list[Part], list[Killed]]:
        """Wait for ``pending``; returns finished parts and the ranges whose workers died.

        What is ready is read from the futures, so a result lost with its worker (status
        ``lost``) simply stays pending until Dask has recomputed it. Ranges still pending
        at the deadline go to ``late``. ``waiting`` (a quorum round): ranges not submitted
        yet, pulled by threads as they come free (:meth:`QuorumPull.pull`).
        """
        state = _Collecting(dict(pending))
        queue = waiting if waiting is not None else []
        closing: dict[Any, Range] = {}  # node mode: the chunks running when the quorum closed
        while state.pending:
            # Waiting for all (not the first) lets one gather fetch the whole generation:
            # one round trip per worker instead of one per chunk, and a third less client
            # and scheduler CPU at 4 chunks per worker. The poll period bounds the wait, so
            # a failed chunk or a lost worker is still seen within it.
            # A quorum is checked as each chunk comes back, so the first completion wakes
            # the loop (one fetch per chunk: the price of closing at chunk granularity).
            self.link.wait_all(
                list(state.pending), self._poll_timeout(), first=self.quorum is not None
            )
            ready = [f for f in state.pending if f.done()]
            if ready:
                self._take(ready, state)
            if self.quorum is not None and self.pulling is None and state.pending:
                if self.quorum.met(self.parts + state.parts):  # node mode's quorum
                    closing = state.pending
                    break
            if self.pulling is not None and (state.pending or queue):  # a quorum round
                if self.pulling.quorum.met(self.parts + state.parts):
                    self.dropped += self.pulling.close(state.pending, queue)
                    break
                self.pulling.pull(queue, state.pending)
            if state.pending and self._past_deadline():
                self._drop_late(state.pending)
                break
            if not ready:
                self.watch.check(self.generation)
        if closing or self.early:
            self._close_nodes(closing, state.parts)
        return state.parts, state.killed

    def _close_nodes(self, pending: dict[Any, Range], parts: list[Part]) -> None:
        """Node mode's quorum closed the generation (``pending``: the chunks still
        running; none when every node is back, some early): one message to every node
        stops those chunks, and each node hands over what it has back of its chunk by then
        (:func:`~._dask_quorum.close_nodes`); ``parts`` and :attr:`dropped` record what
        is told."""
        early, self.early = self.early, {}
        self.dropped = close_nodes(
            self.link, self.tag, self.seeds, pending, early, parts, self.dropped
        )

    def _drop_late(self, pending: dict[Any, Range]) -> None:
        """Late chunks: cancelled, and the workers running them taken out of the way (a
        rollout already running cannot be stopped in its thread; see
        :meth:`HungWorkers.retire <asktell.evaluators._dask_hung.HungWorkers.retire>`). The candidate a chunk is stuck in, running for
        longer than :meth:`_stuck_after`, is a straggler at once (it is not run again, so it
        holds no second thread); the rest of the chunk runs again."""
        keys = {str(f.key): rng for f, rng in pending.items()}
        hung = self.link.hung.workers_running(set(keys))
        stuck = self.link.hung.stuck_candidates(hung, set(keys), self._stuck_after())
        self.link.cancel(list(pending))
        self.link.hung.retire(hung)
        for key, (a, b) in keys.items():
            i = stuck.get(key)
            if i is None:
                self.late.append((a, b))
                continue
            self.stragglers.append((a + i, a + i + 1))
            self.late += [r for r in ((a, a + i), (a + i + 1, b)) if r[1] > r[0]]

    def _stuck_after(self) -> float | None:
        """How long a candidate must have run, when its chunk is late, to be the straggler:
        the time limit; with ``deadline_seconds`` alone, any time (the candidate holding the
        thread when the deadline passes is what made its chunk, and those queued behind it,
        late)."""
        if self.candidate_timeout is not None:
            return self.candidate_timeout
        return None if self.deadline_seconds is None else 0.0

    def _poll_timeout(self) -> float:
        if self.deadline is None:
            return _POLL_SECONDS
        return max(0.0, min(_POLL_SECONDS, self.deadline - time.monotonic()))

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _take(self, ready: list[Any], state: _Collecting) -> None:
        """Move done futures out of ``pending``: results, killed ranges, reruns, or raise."""
        fetched = self._take_finished([f for f in ready if f.status == "finished"], state)
        rerun = self._take_failed(ready, state)
        if rerun:
            state.pending.update(self.chunks.resubmit(rerun))
        if fetched:
            state.fetch_failures = 0
            return
        self.link.identity()  # a hung scheduler is reported as such
        state.fetch_failures += 1
        if state.fetch_failures >= _GATHER_ATTEMPTS:
            raise EvaluationError(
                f"DaskEvaluator could not fetch the results of generation {self.generation} "
                f"from the workers ({_GATHER_ATTEMPTS} attempts of {GATHER_SECONDS:g} s)"
            )
        time.sleep(_POLL_SECONDS)  # let Dask notice the loss first

    def _take_finished(self, finished: list[Any], state: _Collecting) -> bool:
        """Fetch finished chunks; False if they could not be (a holder died meanwhile)."""
        if not finished:
            return True
        try:
            results = self.link.gather(finished)
        except Exception:  # noqa: BLE001 - a holder died meanwhile: try again later
            self.link.ensure_running()
            return False
        for f, result in zip(finished, results):
            offset = state.pending.pop(f)[0]
            state.parts.append((offset, result))
            if result.dropped is not None:  # a node closed on its share: what it dropped
                self.dropped += ranges_of(result.dropped, offset)
                if result.dropped.any():  # pieces in flight: handed over at the close
                    self.early[f] = (offset, offset + result.dropped.size)
        return True

    def _take_failed(self, ready: list[Any], state: _Collecting) -> list[Range]:
        """Sort erred chunks: own workers died (killed), an input was lost (rerun), or raise."""
        rerun: list[Range] = []
        for f in ready:
            if f.status == "cancelled":
                self.link.ensure_running()
                raise SchedulerLost(f"chunk {f.key!r} was cancelled")
            if f.status != "error":
                continue
            a, b = state.pending.pop(f)
            exc = f.exception()
            if not self.link.is_killed_worker(exc):
                raise EvaluationError(
                    f"DaskEvaluator: the chunk of candidates {a}..{b - 1} (seeds "
                    f"{int(self.seeds[a])}..) of generation {self.generation} failed on a Dask "
                    f"worker outside any rollout: {describe(exc)}. Are asktell and the task's "
                    "own modules installed on every worker, at the same versions?"
                ) from exc
            if getattr(exc, "task", f.key) == f.key:
                state.killed.append((a, b, exc))  # this chunk's own workers died
            else:
                rerun.append((a, b))  # an input it depends on was given up
        return rerun
