"""Evaluate candidates on a Dask cluster: an embedded one by default, any other by address.

Dask (``distributed``) is the distributed engine; asktell writes no scheduler of its own.
``DaskEvaluator(task)`` starts a loopback ``LocalCluster`` (one single-threaded worker
process per core); ``DaskEvaluator(task, address="tcp://host:8786")`` or
``DaskEvaluator(task, client=client)`` runs the same code on any cluster.

How a generation travels (Salimans et al. 2017: ship seeds, not parameter vectors; the
reasons are in ``docs/dask.md``): the distribution once per generation and the task once per
evaluator, each as the result of a tiny identity task (never scattered: a task result is
recomputed when its holder dies); the seeds in ``chunks_per_worker`` chunks per worker
thread, each run by :func:`asktell.evaluators._common.evaluate_chunk`, the very function
:class:`~asktell.evaluators.SerialEvaluator` runs, so returns are bitwise identical; the
noise table once per worker process.

Node mode (``node_processes``): each Dask worker stands for a machine, gets one chunk per
generation and runs it from a work queue over a local process pool with one shared-memory
noise table (:mod:`._dask_node`), so the scheduler's and driver's work grows with nodes, not
cores; with ``stragglers`` each node closes on its share of the quorum.

Faults and the policy for each are described on :class:`DaskEvaluator` and in
``docs/dask.md``.

The evaluator is composed of pieces with one idea each, imported in one direction::

    dask.py  ->  _dask_options.py  ->  _dask_quorum.py, _dask_link.py
             ->  _dask_round.py    ->  _dask_quorum.py  ->  _dask_link.py
                                   ->  _dask_link.py    ->  _dask_worker.py
                                                        ->  _dask_node_link.py  ->  _dask_node.py
                                   ->  _dask_chunks.py  ->  _dask_quorum.py, _dask_link.py,
                                                            _dask_worker.py

* :mod:`._dask_options`: :class:`DaskEvaluatorConfig`, the one declaration of the options
  and their documented validators, and :class:`StragglersConfig`.
* :mod:`._dask_worker`: what runs inside a worker (the per-thread task cache, one chunk
  through ``evaluate_chunk``, its timing); imports nothing client-side.
* :mod:`._dask_link`: :class:`ClusterLink`, the cluster and the client (embedded start,
  connect, health and healing, shipping the task once, close); with
  :mod:`._dask_address` (an address probed before any client exists),
  :mod:`._dask_heal` (the embedded cluster's healer: lost slots get fresh nannies) and
  :mod:`._dask_hung` (workers stuck in a late candidate: restarted or avoided).
  Node mode's client side is :mod:`._dask_node_link` (the embedded cluster's non-daemonic
  nanny, the daemonic check's verdict, the task key's tag); its worker side, run by
  ``_dask_worker.py`` by name, is :mod:`._dask_node` (the local pools, the shared table).
* :mod:`._dask_round`: :class:`GenerationRound`, one generation (wait, absorb failures,
  find poison candidates, deadline or quorum, gather, build the ``Evaluation``); what it
  runs on the cluster (the chunks' bounds, the shipped task and distribution, the chunk
  tasks, their resubmission and release) is :mod:`._dask_chunks`; a straggler-tolerant
  generation's pulling and closing is :mod:`._dask_quorum`.

This module is the evaluator: it chooses the chunks (``chunks_per_worker="auto"``) and
composes the pieces through their public methods. ``DaskEvaluatorConfig`` and
``StragglersConfig`` are re-exported here, where users import them from.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from asktell.config_base import collect_options, declare_options
from asktell.distribution import Distribution, seed_array
from asktell.errors import ConfigError, EvaluationError
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import assemble
from ._dask_link import ClusterLink, SchedulerLost
from ._dask_options import DaskEvaluatorConfig, StragglersConfig
from ._dask_quorum import Quorum
from ._dask_chunks import chunk_bounds
from ._dask_round import GenerationRound
from ._dask_tell import DaskWeightedSum, remote_tell_refusal

__all__ = [
    "DaskEvaluator", "DaskEvaluatorConfig", "StragglersConfig", "auto_chunks", "chunk_bounds",
    "straggler_chunks",
]


#: ``chunks_per_worker="auto"``: chunks per worker thread are chosen from the previous
#: generation's compute time, so that each chunk holds at least this much work (Dask's
#: cost per task, measured in docs/dask.md, is then a few percent of it) ...
AUTO_CHUNK_SECONDS = 0.05
#: ... and at most this many chunks per thread (enough to balance uneven rollouts; the
#: first generation, with nothing measured yet, uses it) ...
AUTO_MAX_CHUNKS = 4
#: ... and the generation's tasks at most what keeps the scheduler's share small. Dask's
#: scheduler handles a generation's tasks one after the other, about this many seconds of
#: client + scheduler CPU each (0.405 ms fitted on no-op generations, docs/scaling.md), so
#: T tasks cost T times it whatever the cluster's size (5,760 tasks at 1,440 threads: 2.3 s)
#: ...
AUTO_TASK_SECONDS = 0.0004
#: ... which "auto" keeps under this share of the generation's compute spread over the
#: threads (its ideal wall time), never going below one chunk per thread.
AUTO_SCHEDULER_SHARE = 0.05


def auto_chunks(compute_seconds: float, threads: int) -> int:
    """Chunks per worker thread for a generation of ``compute_seconds`` of work.

    One per :data:`AUTO_CHUNK_SECONDS` of work per thread, 1 to :data:`AUTO_MAX_CHUNKS`,
    and no more than keeps ``threads x chunks x AUTO_TASK_SECONDS`` (the scheduler's time)
    within :data:`AUTO_SCHEDULER_SHARE` of ``compute_seconds / threads``: at 1,440 threads
    with 6 s of work each that is 770 tasks, so one chunk per thread, not four.
    """
    threads = max(threads, 1)
    per_thread = compute_seconds / threads
    chunks = min(AUTO_MAX_CHUNKS, per_thread // AUTO_CHUNK_SECONDS)
    max_tasks = AUTO_SCHEDULER_SHARE * per_thread / AUTO_TASK_SECONDS
    return int(max(1, min(chunks, max_tasks // threads)))


#: Straggler-tolerant generations with ``chunks_per_worker="auto"``: chunks per worker
#: thread, so a generation closes within about 1/8 of a thread's share of the population ...
STRAGGLER_CHUNKS = 8
#: ... unless their tasks' scheduler time (:data:`AUTO_TASK_SECONDS` each) would pass both
#: this many seconds and :data:`AUTO_SCHEDULER_SHARE` of the work per thread: at 1,440
#: threads 8 chunks each would be 11,520 tasks, about 4.6 s of scheduler time a generation.
STRAGGLER_SCHEDULER_SECONDS = 0.1


def straggler_chunks(compute_seconds: float | None, threads: int) -> int:
    """Chunks per worker thread of a straggler-tolerant generation (``"auto"``).

    :data:`STRAGGLER_CHUNKS`, capped so that the tasks' scheduler time stays within the
    larger of :data:`STRAGGLER_SCHEDULER_SECONDS` and :data:`AUTO_SCHEDULER_SHARE` of the
    work per thread (``compute_seconds / threads``, the previous generation's estimate;
    ``None`` before one is measured: the seconds bound alone), never below one chunk per
    thread. A small cluster keeps its 8 (2 threads: 16 tasks, 6 ms); at 1,440 threads with
    6 s of work each the cap gives 1.
    """
    threads = max(threads, 1)
    budget = STRAGGLER_SCHEDULER_SECONDS
    if compute_seconds is not None:
        budget = max(budget, AUTO_SCHEDULER_SHARE * compute_seconds / threads)
    max_tasks = budget / AUTO_TASK_SECONDS
    return int(max(1, min(STRAGGLER_CHUNKS, max_tasks // threads)))


def _node_spec(cfg: DaskEvaluatorConfig) -> tuple | None:
    """Node mode's settings as shipped with the task (see :mod:`._dask_node`)."""
    if cfg.node_processes is None:
        return None
    return (cfg.node_processes, cfg.candidate_timeout_seconds)


# ----------------------------------------------------------------------------- evaluator


@EVALUATORS.register("dask")
@declare_options(DaskEvaluatorConfig, positional=("client",))
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
    * stragglers: with ``deadline_seconds``, chunks not back when the deadline passes are
      cancelled; the candidate each was running is marked failed (whatever ``on_failure``
      says) and the others run again one per task (so a straggler's chunk-mates and the
      chunks queued behind it get their exact returns); one late again alone fails too;
    * straggler-tolerant generations: with ``stragglers``, a generation (``evaluate(...,
      partial=True)``, what the generation step passes) closes when its thresholds are met;
      the candidates not back are marked in ``Evaluation.dropped`` and the strategy learns
      from the rest (``docs/stragglers.md``);
    * a candidate that never returns: with ``candidate_timeout_seconds``, the generation's
      deadline is the limit times the candidates per thread (plus a second), then as for
      stragglers: the candidate a late chunk has run past the limit fails (``on_failure``
      applies), the others run again alone under the limit. A Python thread cannot be killed: the worker running it is restarted (embedded
      cluster) or no task is sent to it until its thread is free (connected cluster);
    * the scheduler goes away: :class:`~asktell.errors.EvaluationError` within about
      ``scheduler_timeout`` seconds; nothing is told to the strategy, so the last
      checkpoint stays as it was;
    * no worker at all for ``worker_timeout`` seconds: :class:`EvaluationError`.

    Args:
        task: the task every batch is evaluated on (picklable; it is shipped to workers).
        client: (may be passed by position) an existing ``distributed.Client``, or a
            scheduler address; see the options below.

    Example:
        >>> from asktell import FunctionTask
        >>> from asktell.strategies import OpenAIES
        >>> es = OpenAIES(num_params=4, population_size=8)
        >>> with DaskEvaluator(FunctionTask.named("sphere"), num_workers=1) as ev:
        ...     evaluation = ev.evaluate(es.distribution, es.ask())
        >>> evaluation.returns.shape
        (8,)
    """

    capabilities = frozenset(
        {"bitwise_serial", "candidate_timeout", "partial_evaluation", "remote_tell"}
    )
    config_class: type[DaskEvaluatorConfig]

    def __init__(self, task: Task, *args: Any, **options: Any):
        self.closed = True  # until fully built, so close() from __exit__ is a no-op
        cfg = DaskEvaluatorConfig.validate_options(
            "DaskEvaluator", collect_options(DaskEvaluator, args, options)
        )
        self.task = task
        self.retries = cfg.retries
        self.on_failure = cfg.on_failure
        self.chunks_per_worker = cfg.chunks_per_worker
        self.deadline_seconds = cfg.deadline_seconds
        self.candidate_timeout_seconds = cfg.candidate_timeout_seconds
        #: The straggler-tolerant rule (:class:`StragglersConfig`), or ``None``.
        self.stragglers = cfg.stragglers
        self.connect_timeout = cfg.connect_timeout
        self.scheduler_timeout = cfg.scheduler_timeout
        self.worker_timeout = cfg.worker_timeout
        self.node_processes = cfg.node_processes
        self._auto_chunks = AUTO_MAX_CHUNKS
        self._straggler_work: float | None = None  # compute seconds of a generation
        #: The cluster and its client (see :class:`~asktell.evaluators._dask_link.ClusterLink`).
        self.link = ClusterLink(
            client=cfg.client,
            address=cfg.address,
            num_workers=cfg.num_workers,
            threads_per_worker=cfg.threads_per_worker,
            dashboard=cfg.dashboard,
            allowed_failures=cfg.allowed_failures,
            security=cfg.security_object(),
            connect_timeout=cfg.connect_timeout,
            scheduler_timeout=cfg.scheduler_timeout,
            worker_timeout=cfg.worker_timeout,
            node=_node_spec(cfg),
        )
        self._uid = uuid.uuid4().hex[:12]
        self._calls = 0
        #: ``remote_tell``: the hook lent to the strategy (:meth:`lend_noise_sum`), else None.
        self.noise_sum = (
            DaskWeightedSum(self.link.client, parts=1, timeout=cfg.scheduler_timeout)
            if cfg.remote_tell else None
        )
        self.closed = False

    # -- the cluster ------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use."""
        return self.link.client

    @property
    def cluster(self) -> Any:
        """The embedded ``LocalCluster`` (``None`` when connected to another cluster)."""
        return self.link.cluster

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return self.link.address

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL (``None`` for an embedded cluster started without one)."""
        return self.link.dashboard_link

    @property
    def next_chunks_per_worker(self) -> int:
        """Chunks per worker thread (node mode: per worker) the next generation will be cut
        into."""
        if self.chunks_per_worker == "auto" and self.node_processes is not None:
            return 1
        if self.chunks_per_worker == "auto":
            return self._auto_chunks
        return self.chunks_per_worker

    def close(self) -> None:
        """Release this evaluator's futures; shut down what it started. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.noise_sum is not None:
            self.noise_sum.release()  # a strategy that outlives us sums here again
        self.link.close()

    def __enter__(self) -> DaskEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded LocalCluster" if self.cluster is not None else self.address
        return f"DaskEvaluator({self.task!r}, {where})"

    def lend_noise_sum(self, strategy: Any) -> None:
        """With ``remote_tell``: set ``strategy.noise_sum`` to this evaluator's
        :class:`~asktell.evaluators._dask_tell.DaskWeightedSum` (the generation step calls
        it, so a resumed run gets it again); a strategy without ``gradient_parts`` >= 2 is
        refused. Without ``remote_tell``: nothing."""
        if self.noise_sum is None:
            return
        refusal = remote_tell_refusal(
            getattr(strategy, "name", type(strategy).__name__),
            getattr(strategy, "capabilities", ()),
            getattr(strategy, "gradient_parts", None),
        )
        if refusal is not None:
            raise ConfigError(f"DaskEvaluator: {refusal}")
        strategy.noise_sum = self.noise_sum

    # -- evaluation -------------------------------------------------------------------

    def evaluate(
        self, distribution: Distribution, seeds: np.ndarray, *, partial: bool = False
    ) -> Evaluation:
        """Returns, steps and failures for ``seeds``, in seed order.

        ``partial=True`` (what the generation step passes; centre evaluations never do):
        with ``stragglers`` set, close when its thresholds are met; the candidates not back
        are marked in the result's ``dropped`` (all False when none was).
        """
        if self.closed:
            raise RuntimeError("DaskEvaluator.evaluate() called after close()")
        seeds = seed_array(seeds, "DaskEvaluator.evaluate()")
        generation = distribution.generation
        if seeds.size == 0:
            return assemble(seeds, [], generation, self.on_failure)
        quorum = self._quorum(seeds.size, generation) if partial else None
        self._calls += 1
        try:
            self.link.check_nodes()
            with GenerationRound(
                self.link,
                self.task,
                distribution,
                seeds,
                f"{self._uid}-{self._calls}",
                retries=self.retries,
                on_failure=self.on_failure,
                deadline_seconds=self.deadline_seconds,
                # Node mode: the node's pool enforces the limit (it kills the local process
                # running a hung candidate), so the Dask thread is never the one stuck.
                candidate_timeout=(
                    self.candidate_timeout_seconds if self.node_processes is None else None
                ),
                quorum=quorum,
            ) as run:
                if self.node_processes is None:
                    threads = self.link.num_threads()
                else:  # node mode: chunks per node, each split on its node
                    threads = self.link.num_nodes()
                per_thread = self.next_chunks_per_worker
                per_core_quorum = quorum is not None and self.node_processes is None
                if per_core_quorum and self.chunks_per_worker == "auto":
                    per_thread = straggler_chunks(self._straggler_work, threads)
                bounds = chunk_bounds(seeds.size, threads * per_thread)
                work = run.run(bounds)
                if work is not None and self.node_processes is None and quorum is None:
                    self._auto_chunks = auto_chunks(work, threads)
                if per_core_quorum and run.parts:  # the told candidates' time, scaled up
                    told = sum(len(part.returns) for _, part in run.parts)
                    if told:
                        seconds = sum(part.seconds for _, part in run.parts)
                        self._straggler_work = seconds * seeds.size / told
                run.find_culprits()
                run.rerun_late()
        except SchedulerLost as exc:
            raise EvaluationError(
                f"DaskEvaluator lost the Dask scheduler at {self.address!r} during generation "
                f"{generation} ({exc}); the generation was not completed and nothing was told "
                "to the strategy, so the last checkpoint is intact: restart the scheduler "
                "and resume the run"
            ) from None
        return run.evaluation()

    def _quorum(self, n: int, generation: int) -> Quorum | None:
        """The closing rule for a generation of ``n`` candidates (``None``: wait for all)."""
        rule = self.stragglers
        if rule is None:
            return None
        if rule.min_candidates is not None and rule.min_candidates > n:
            raise ConfigError(
                f"DaskEvaluator stragglers.min_candidates={rule.min_candidates} exceeds the "
                f"{n} candidates of generation {generation}; use at most {n}"
            )
        return rule.quorum()
