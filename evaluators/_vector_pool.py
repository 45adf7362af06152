"""Worker processes that each keep their own batch runner, so only seeds go in and results
come out: the vector evaluator's (see :mod:`asktell.evaluators.vector`) and a Dask node's
local pool (:mod:`asktell.evaluators._dask_node`).

A round (:meth:`WorkerPool.run`) sends the distribution to each worker once, pickled once,
then pieces that carry only ``(round, offset, seeds)``: one fixed block per worker (the
vector evaluator), or a work queue of small pieces handed to workers as they come free
(node mode: a worker that draws slow candidates takes fewer pieces). Every answer carries
its round: a piece of a round already returned (a straggler-tolerant round closes on its
share with pieces in flight) is discarded when it arrives, never placed in a later round,
unless :meth:`WorkerPool.harvest` takes it for its own round first (node mode: the driver
closed the generation and the piece was back by then). While a round runs, another thread
may take what it has back so far (:meth:`WorkerPool.snapshot`: node mode's close of a
generation whose chunk is still running on the node).

A worker that dies, or runs past its deadline (``candidate_timeout_seconds`` times the
candidates of its piece), is killed and restarted, and its piece's candidates go back to the
front of the queue one per piece: only the candidate that kills its worker again, or runs
past the limit alone, fails.

This module is the parent's side: the workers' processes and the loop that hands out a
round's pieces and takes their answers. A worker's own side (its loop and the messages it
answers) is :mod:`asktell.evaluators._vector_worker`; a round's parts and tally,
:mod:`asktell.evaluators._vector_round`.
"""

from __future__ import annotations

import collections
import pickle
import time
import typing
from collections.abc import Callable
from multiprocessing import connection
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import EvaluationError
from asktell.protocol import Evaluation, Failure

from ._common import timeout_message
from ._vector_round import Round, empty_block
from ._vector_worker import start_worker

__all__ = ["WorkerPool", "piece_bounds"]


#: Seconds added to a piece's deadline for sending it and its results through the pipe (the
#: limit is the candidates' compute time, not the transfer's).
_PIPE_SLACK = 0.5
#: Work queue (node mode): a piece holds at least this much work once a candidate's time is
#: known (a message costs about 0.1 ms), and there are about ``pieces_per_worker`` per process.
PIECE_SECONDS = 0.02
#: Pieces per worker at most when the workers run a batch runner (a Gym task's slot
#: engine): each piece is then a batch of its environments, which step in lockstep, so
#: fewer, larger pieces keep them full (HalfCheetah-v5 on 2 processes: see docs/dask.md).
BATCHED_PIECES_PER_WORKER = 2
#: How often a round with a ``stop`` callable wakes up to ask it.
_STOP_POLL = 0.05


def piece_bounds(n: int, workers: int, per_worker: int | None, max_size: int | None = None):
    """The ``(offset, size)`` pieces of a round of ``n`` seeds.

    ``per_worker=None``: one contiguous block per worker (the vector evaluator). Else about
    ``per_worker`` pieces per worker, each of at most ``max_size`` candidates (when a
    candidate's time is known, see :data:`PIECE_SECONDS`); an even size when ``n`` is even
    and a piece holds more than one, so mirrored pairs ``[k, ~k]`` stay together."""
    if per_worker is None:
        return [
            (int(b[0]), b.size) for b in np.array_split(np.arange(n), workers) if b.size
        ]
    size = -(-n // max(1, workers * per_worker))
    if max_size is not None:
        size = min(size, max_size)
    size = max(1, size)
    if n % 2 == 0 and size > 1 and size % 2:
        size += 1
    return [(a, min(size, n - a)) for a in range(0, n, size)]


class _Busy(typing.NamedTuple):
    """The piece a worker is running: of which round, where, until when."""

    round: int
    offset: int
    size: int
    alone: bool
    started: float
    deadline: float | None


class WorkerPool:
    """Worker processes, each running the task's batch runner on pieces of seeds.

    ``task`` may be the task's pickle (bytes), unpickled in each worker; ``tables`` are
    ``(seed, size, shared-memory name)`` noise tables every worker adopts; ``label`` names
    the workers in failure messages. ``pieces_per_worker=None``: one fixed block per worker
    (the vector evaluator); a number: a work queue of about that many pieces per worker,
    handed out as workers come free (node mode)."""

    def __init__(
        self,
        task,
        num_workers: int,
        num_envs: int | None,
        mode: str,
        start_method: str,
        timeout: float | None = None,
        tables: tuple = (),
        label: str = "vector-env worker",
        pieces_per_worker: int | None = None,
    ):
        import multiprocessing

        self.task = task
        self.tables = tuple(tables)
        self.label = label
        self.timeout = timeout
        self.num_envs = num_envs
        self.mode = mode
        self.pieces_per_worker = pieces_per_worker
        self.ctx = multiprocessing.get_context(start_method)
        self.workers: list[tuple[Any, Any] | None] = [None] * num_workers
        self.rounds = 0
        #: The piece each worker is running (kept across rounds: a round closed on its share
        #: leaves pieces running, whose results are discarded when they arrive).
        self.busy: dict[int, _Busy] = {}
        self.has_round: dict[int, int] = {}  # the round whose distribution a worker holds
        #: Seconds per candidate (wall, in a worker), measured: sizes the next pieces.
        self.candidate_seconds: float | None = None
        #: Do the workers run a batch runner (pieces then fill its environments)?
        self.batched = False
        #: Stale results discarded so far (pieces of a round already returned).
        self.discarded = 0
        #: The last round's candidates not back when it returned, as ``(start, stop)``.
        self.dropped: list[tuple[int, int]] = []
        #: The last round, if it returned with pieces in flight (:meth:`harvest` takes
        #: those back by then); the next round closes it.
        self.open: Round | None = None
        #: The round :meth:`run` is running now (read by :meth:`snapshot` from another
        #: thread), ``None`` between rounds.
        self.current: Round | None = None

    def _start(self, w: int) -> None:
        self.workers[w] = start_worker(
            self.ctx, w, self.task, self.num_envs, self.mode, self.tables
        )
        self.has_round.pop(w, None)

    def _ensure(self, ws: list[int]) -> None:
        """Start the workers ``ws`` that are not running, and wait until they are ready."""
        fresh = []
        for w in ws:
            worker = self.workers[w]
            if worker is None or not worker[0].is_alive():
                if worker is not None:
                    self._stop(w)
                self._start(w)
                fresh.append(w)
        for w in fresh:
            process, conn = self.workers[w]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                process.join(5)
                self.close()
                raise EvaluationError(
                    f"a {self.label} process died while starting (exit code "
                    f"{process.exitcode}); the task must be picklable and importable in a new "
                    "process, and a script using the 'spawn' start method must guard its entry "
                    "point with `if __name__ == '__main__':`"
                ) from None
            if message[0] != "ready":  # pragma: no cover - protocol guard
                raise EvaluationError(f"{self.label} {w} sent {message!r} instead of 'ready'")
            self.batched = bool(message[2])

    def _max_piece(self) -> int | None:
        """At most :data:`PIECE_SECONDS` of work per piece, once a candidate's time is
        known; no limit for a batch runner (whose pieces must fill its environments)."""
        if self.batched or self.candidate_seconds is None or self.candidate_seconds <= 0:
            return None
        return max(1, int(PIECE_SECONDS / self.candidate_seconds))

    def run(
        self,
        distribution: Distribution,
        seeds: np.ndarray,
        retries: int,
        share: tuple | None = None,
        stop: Callable[[], bool] | None = None,
        name: Any = None,
    ) -> list[tuple[int, Evaluation]]:
        """Evaluate ``seeds``; the parts ``(offset, record)`` in seed order.

        ``share`` ``(candidates, episodes, steps)``: return once it is met and no piece is
        left unstarted; ``stop()`` true: return at once. The candidates then not back are
        in :attr:`dropped` (ranges); their pieces keep running and are discarded later
        (or taken by :meth:`harvest` if back before it). ``name`` names the round for
        :meth:`snapshot`."""
        self.rounds += 1
        # started together (a spawned process takes a while to be ready)
        self._ensure([w for w in range(min(seeds.size, len(self.workers))) if w not in self.busy])
        per_worker = self.pieces_per_worker
        if per_worker is not None and self.batched:  # fuller environments, fewer tails
            per_worker = min(per_worker, BATCHED_PIECES_PER_WORKER)
        bounds = piece_bounds(seeds.size, len(self.workers), per_worker, self._max_piece())
        rnd = Round(
            self.rounds, seeds, retries, distribution.generation,
            pickle.dumps(distribution, protocol=pickle.HIGHEST_PROTOCOL),
            collections.deque((a, s, False) for a, s in bounds),
            name=name,
        )
        self.dropped = []
        self.open = None  # pieces of an earlier round are stale from now on
        self.current = rnd
        completed = False
        try:
            while True:
                self._dispatch(rnd)
                mine = [b for b in self.busy.values() if b.round == rnd.id]
                if not rnd.queue and not mine:
                    break  # everything done
                closing = share is not None and not rnd.queue and rnd.share_met(share)
                if closing or (stop is not None and stop()):
                    self.dropped = sorted(
                        [(b.offset, b.offset + b.size) for b in mine]
                        + [(a, a + s) for a, s, _ in rnd.queue]
                    )
                    self.open = rnd
                    break
                self._wait(rnd, stop is not None)
            completed = True
            return sorted(rnd.parts, key=lambda p: p[0])
        finally:
            self.current = None
            if not completed:
                # Results may still be in flight in the pipes: start afresh next time.
                self.close()

    def harvest(self) -> list[tuple[int, Evaluation]] | None:
        """The last round returned with pieces in flight: take those whose results are
        back now, without waiting (node mode: the driver closed the generation). Once per
        round; its parts in seed order, :attr:`dropped` the pieces still running (their
        results are discarded when they arrive) or ``None`` if there is no such round. A
        piece that failed or whose process died meanwhile stays dropped."""
        rnd, self.open = self.open, None
        if rnd is None:
            return None
        conns = {self.workers[w][1]: w for w in self.busy if self.workers[w] is not None}
        lost = []
        for conn in connection.wait(list(conns), 0) if conns else ():
            w = conns[conn]
            piece = self.busy.pop(w)
            try:
                status, round_id, offset, payload = conn.recv()
            except (EOFError, OSError):
                self._stop(w)  # restarted by the next round
                lost.append(piece)
                continue
            if status != "ok" or round_id != rnd.id or piece.round != rnd.id:
                self.discarded += status == "ok" and round_id != rnd.id
                lost.append(piece)
                continue
            rnd.take(offset, payload)
        self.dropped = sorted(
            [(b.offset, b.offset + b.size)
             for b in [*self.busy.values(), *lost] if b.round == rnd.id]
            + [(a, a + s) for a, s, _ in rnd.queue]
        )
        return sorted(rnd.parts, key=lambda p: p[0])

    def snapshot(self, name: Any) -> tuple[list[tuple[int, Evaluation]], list] | None:
        """What the round ``name``, running now in another thread, has back so far: its
        parts in seed order and the ``(start, stop)`` ranges not among them; ``None`` if
        that round is not running. Reads only what the running thread has already taken
        (a part is added whole, and a list is copied whole under the GIL), never a pipe:
        results still in a pipe stay out, and the round runs on undisturbed (node mode:
        the driver closed the generation while this node's chunk still ran; the stop
        makes the round return soon after)."""
        rnd = self.current
        if rnd is None or rnd.name != name:
            return None
        parts = sorted(list(rnd.parts), key=lambda p: p[0])
        missing = np.ones(rnd.seeds.size, dtype=np.int8)
        for offset, part in parts:
            missing[offset : offset + len(part.returns)] = 0
        edges = np.flatnonzero(np.diff(np.concatenate(([0], missing, [0]))))
        return parts, [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]

    def _dispatch(self, rnd: Round) -> None:
        """Hand the next pieces to the workers that are free (the distribution first)."""
        for w in range(len(self.workers)):
            if not rnd.queue:
                return
            if w in self.busy:
                continue
            self._ensure([w])
            offset, size, alone = rnd.queue.popleft()
            conn = self.workers[w][1]
            if self.has_round.get(w) != rnd.id:
                conn.send(("dist", rnd.id, rnd.payload))
                self.has_round[w] = rnd.id
            conn.send(("run", rnd.id, offset, rnd.seeds[offset : offset + size], rnd.retries))
            now = time.monotonic()
            deadline = None
            if self.timeout is not None:
                deadline = now + self.timeout * size + _PIPE_SLACK
            self.busy[w] = _Busy(rnd.id, offset, size, alone, now, deadline)

    def _wait(self, rnd: Round, polling: bool) -> None:
        """Wait for an answer (or a deadline); take results, discard stale ones, rescue."""
        conns = {self.workers[w][1]: w for w in self.busy}
        deadlines = [b.deadline for b in self.busy.values() if b.deadline is not None]
        wait_for = None
        if deadlines:
            wait_for = max(0.0, min(deadlines) - time.monotonic())
        if polling:
            wait_for = _STOP_POLL if wait_for is None else min(wait_for, _STOP_POLL)
        ready = connection.wait(list(conns), wait_for)
        for conn in ready:
            w = conns[conn]
            piece = self.busy.pop(w)
            process = self.workers[w][0]
            try:
                status, round_id, offset, payload = conn.recv()
            except (EOFError, OSError):
                process.join(5)
                self._stop(w)
                self._lost(rnd, piece, f"the {self.label} process died while evaluating it "
                           f"(exit code {process.exitcode})")
                continue
            if round_id != rnd.id or piece.round != rnd.id:
                self.discarded += 1  # a piece of a round already returned: stale
                continue
            if status == "error":
                raise EvaluationError(f"{self.label} {w} failed:\n{payload}")
            took = (time.monotonic() - piece.started) / max(1, piece.size)
            self.candidate_seconds = took if self.candidate_seconds is None else (
                0.5 * self.candidate_seconds + 0.5 * took
            )
            rnd.take(offset, payload)
        now = time.monotonic()
        for w, piece in list(self.busy.items()):
            if piece.deadline is not None and piece.deadline <= now:
                del self.busy[w]
                self._kill(w)
                self._lost(rnd, piece, timeout_message(self.timeout))

    def _lost(self, rnd: Round, piece: _Busy, error: str) -> None:
        """A worker died or ran past its deadline: its piece's candidates run again one per
        piece, first in the queue (each in a worker of its own); a candidate that kills its
        worker again, or runs past the limit alone, fails. A stale piece is forgotten."""
        if piece.round != rnd.id:
            return
        if piece.alone:
            out = empty_block(1)
            seed = int(rnd.seeds[piece.offset])
            out.failures.append(Failure(0, seed, error, rnd.generation))
            rnd.take(piece.offset, out)
            return
        for i in reversed(range(piece.offset, piece.offset + piece.size)):
            rnd.queue.appendleft((i, 1, True))

    def _kill(self, w: int) -> None:
        """Stop a worker that may be hung, without waiting for it to answer."""
        worker = self.workers[w]
        if worker is not None and worker[0].is_alive():
            worker[0].kill()
        self._stop(w)

    def _stop(self, w: int) -> None:
        worker, self.workers[w] = self.workers[w], None
        self.busy.pop(w, None)
        self.has_round.pop(w, None)
        if worker is None:
            return
        process, conn = worker
        try:
            if process.is_alive():
                conn.send(("close",))
        except (OSError, ValueError):
            pass
        process.join(2)
        if process.is_alive():
            process.terminate()
            process.join(2)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()

    def close(self) -> None:
        self.open = None
        for w in range(len(self.workers)):
            self._stop(w)
