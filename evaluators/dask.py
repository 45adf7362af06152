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

Faults and the policy for each are described on :class:`DaskEvaluator` and in
``docs/dask.md``.

The evaluator is three pieces with one idea each, imported in one direction::

    dask.py  ->  _dask_round.py  ->  _dask_link.py  ->  _dask_worker.py
                                 ->  _dask_worker.py

* :mod:`._dask_worker`: what runs inside a worker (the per-thread task cache, one chunk
  through ``evaluate_chunk``, its timing); imports nothing client-side.
* :mod:`._dask_link`: :class:`ClusterLink`, the cluster and the client (embedded start,
  connect, health and healing, shipping the task once, close); with
  :mod:`._dask_address` (an address probed before any client exists) and
  :mod:`._dask_hung` (workers stuck in a late candidate: restarted or avoided).
* :mod:`._dask_round`: :class:`GenerationRound`, one generation (submit chunks, wait, absorb
  failures, find poison candidates, deadline or quorum, gather, build the ``Evaluation``).

This module holds the options (:class:`DaskEvaluatorConfig`, their one declaration) and
composes the pieces through their public methods.

(At 400 lines: the Config's documented validators are most of it.)
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell._extras import require
from asktell.config_base import (
    Float, Int, PluginConfig, StrictModel, collect_options, declare_options,
)
from asktell.distribution import Distribution
from asktell.errors import ConfigError, EvaluationError
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import CandidateTimeout, assemble
from ._dask_link import ClusterLink, Dashboard, DaskClient, DaskSecurity, SchedulerLost
from ._dask_round import GenerationRound, Quorum, chunk_bounds

__all__ = [
    "DaskEvaluator", "DaskEvaluatorConfig", "StragglersConfig", "auto_chunks", "chunk_bounds",
]


#: ``chunks_per_worker="auto"``: chunks per worker thread are chosen from the previous
#: generation's compute time, so that each chunk holds at least this much work (Dask's
#: cost per task, measured in docs/dask.md, is then a few percent of it) ...
AUTO_CHUNK_SECONDS = 0.05
#: ... and at most this many chunks per thread (enough to balance uneven rollouts; the
#: first generation, with nothing measured yet, uses it).
AUTO_MAX_CHUNKS = 4


def auto_chunks(compute_seconds: float, threads: int) -> int:
    """Chunks per worker thread for a generation of ``compute_seconds`` of work."""
    per_thread = compute_seconds / max(threads, 1)
    return int(min(AUTO_MAX_CHUNKS, max(1, per_thread // AUTO_CHUNK_SECONDS)))


#: Straggler-tolerant generations with ``chunks_per_worker="auto"``: chunks per worker
#: thread, so a generation closes within about 1/8 of a thread's share of the population.
STRAGGLER_CHUNKS = 8


# --------------------------------------------------------------------------- options


class StragglersConfig(StrictModel):
    """``[evaluator.stragglers]``: close a generation when enough has come back.

    The generation closes as soon as every threshold given is met by the candidates back
    (failed ones count); the chunks still out are cancelled, a rollout already running
    finishes and is ignored (stale), and the strategy learns from the candidates told
    only. See ``docs/stragglers.md`` for what this gives up.
    """

    min_candidates: Int | None = Field(
        None, ge=1, description="Close once this many candidates are back (at most the "
        "population; checked with the run)."
    )
    min_episodes: Int | None = Field(
        None, ge=1, description="Close once the candidates back ran this many episodes."
    )
    min_timesteps: Int | None = Field(
        None, ge=1, description="Close once the candidates back used this many environment "
        "steps (Salimans et al. 2017 pair it with min_episodes)."
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> StragglersConfig:
        """At least one of `min_candidates`, `min_episodes`, `min_timesteps` is given."""
        if self.min_candidates is None and self.min_episodes is None and self.min_timesteps is None:
            raise ValueError(
                "give at least one of min_candidates, min_episodes, min_timesteps (the "
                "generation closes when every one given is met); got none"
            )
        return self

    def quorum(self) -> Quorum:
        return Quorum(self.min_candidates, self.min_episodes, self.min_timesteps)


#: Options that configure the embedded cluster, with the value meaning "not given".
_EMBEDDED_ONLY = {
    "num_workers": None,
    "threads_per_worker": 1,
    "dashboard": False,
    "allowed_failures": None,
}


class DaskEvaluatorConfig(PluginConfig):
    """Run-file settings of :class:`DaskEvaluator` (``kind = "dask"``)."""

    kind: Literal["dask"] = "dask"
    address: str | None = Field(
        None,
        description="Scheduler address to connect to, e.g. 'tcp://10.0.0.5:8786'. Unset: "
        "start an embedded LocalCluster on this machine (loopback only).",
    )
    client: DaskClient | None = Field(
        None,
        exclude=True,
        description="Python only: an existing distributed.Client to use instead (left open "
        "by close()); may be passed by position, where a string is taken as the 'address'.",
    )
    num_workers: Int | None = Field(
        None, ge=1, description="Embedded cluster: worker processes (unset = CPU cores)."
    )
    threads_per_worker: Int = Field(
        1, ge=1, description="Embedded cluster: threads per worker process."
    )
    chunks_per_worker: Annotated[Int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Chunks of seeds per worker thread and generation: more balances uneven "
        "rollouts, fewer pays less of Dask's ~1.5 ms per task. 'auto': from the previous "
        "generation's compute time, one chunk per 50 ms of work per thread, 1 to 4.",
    )
    retries: Int = Field(0, ge=0, description="Extra attempts for a candidate that raised.")
    on_failure: Literal["raise", "mark"] = Field(
        "raise",
        description="A candidate that raised after its retries, or killed its worker every "
        "time: stop naming it, or mark it failed (NaN, ranked worst) and go on.",
    )
    deadline_seconds: Float | None = Field(
        None,
        gt=0,
        description="Per-generation deadline: the candidate a late chunk is running then is "
        "marked failed (whatever on_failure says); the chunk's other candidates and the chunks "
        "queued behind it run again one per task, so one slow node cannot stall the run and "
        "only stragglers fail. Unset: wait for all.",
    )
    candidate_timeout_seconds: CandidateTimeout = None
    stragglers: StragglersConfig | None = Field(
        None,
        description="Straggler-tolerant generations: close a generation when the thresholds "
        "given (min_candidates, min_episodes, min_timesteps) are met, drop the rest and "
        "tell the strategy the candidates back only (it needs 'partial_tell': openai_es, "
        "snes, xnes). Chunks are then small (chunks_per_worker 'auto' means 8). The told "
        "subset depends on timing and is recorded in the log and checkpoints; see "
        "docs/stragglers.md. Unset: wait for every candidate.",
    )
    node_processes: Annotated[Int, Field(ge=1)] | Literal["auto"] | None = Field(
        None,
        description="Node mode: each Dask worker stands for a machine and runs its chunk on "
        "this many local processes ('auto': the worker machine's usable cores), with one "
        "noise table per machine in shared memory; one chunk per worker and generation "
        "(chunks_per_worker: per worker, 'auto' = 1). The embedded cluster then has "
        "num_workers=1 by default and non-daemonic workers; a connected cluster's workers "
        "must be non-daemonic (docs/dask.md 'Node-level mode'). Unset: one chunk or more "
        "per worker thread, run in the thread.",
    )
    dashboard: Dashboard = Field(
        False,
        description="Embedded cluster: serve Dask's dashboard on 127.0.0.1:8787 (true; a "
        "free port if taken), or at the 'host:port' given.",
    )
    allowed_failures: Int | None = Field(
        None,
        ge=0,
        description="Embedded cluster: worker deaths a task may cause before Dask gives up "
        "on it (distributed.scheduler.allowed-failures; unset = Dask's default, 3).",
    )
    connect_timeout: Float = Field(
        30.0, gt=0, description="Seconds to reach the scheduler when connecting."
    )
    scheduler_timeout: Float = Field(
        30.0,
        gt=0,
        description="Seconds without an answer from the scheduler before a generation "
        "fails with an error (never a hang).",
    )
    worker_timeout: Float | None = Field(
        300.0,
        gt=0,
        description="Seconds a generation waits while the cluster has no worker at all "
        "(unset = for ever, e.g. while an HPC queue starts them).",
    )
    tls_ca_file: str | None = Field(
        None, description="TLS: CA certificate file (use with a 'tls://' address)."
    )
    tls_cert: str | None = Field(None, description="TLS: this client's certificate file.")
    tls_key: str | None = Field(None, description="TLS: this client's private key file.")
    security: DaskSecurity | None = Field(
        None,
        exclude=True,
        description="Python only: a distributed.Security for the connection or the embedded "
        "cluster, instead of the tls_* files.",
    )

    @model_validator(mode="before")
    @classmethod
    def _client_or_address(cls, data: Any) -> Any:
        """An existing cluster is named by `address` or (Python) `client`, not both; a
        string `client` is an address."""
        if not isinstance(data, dict):
            return data
        client, address = data.get("client"), data.get("address")
        if client is not None and address is not None:
            raise ValueError(
                f"give a 'client' or an 'address', not both; got client={client!r} and "
                f"address={address!r}"
            )
        if isinstance(client, str):
            return {**data, "client": None, "address": client}
        return data

    @model_validator(mode="after")
    def _embedded_only(self) -> DaskEvaluatorConfig:
        """`num_workers`, `threads_per_worker`, `dashboard` and `allowed_failures` configure
        the embedded cluster: they are refused with an `address` or a `client`."""
        if self.address is None and self.client is None:
            return self
        wrong = [name for name, unset in _EMBEDDED_ONLY.items() if getattr(self, name) != unset]
        if wrong:
            one = len(wrong) == 1
            where = (
                f"the cluster at {self.address!r}"
                if self.address is not None
                else "the given client's cluster"
            )
            raise ValueError(
                f"{', '.join(map(repr, wrong))} appl{'ies' if one else 'y'} only to the "
                f"embedded cluster, not to {where}: remove "
                f"{'it' if one else 'them'} and configure that cluster on its side"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_together(self) -> DaskEvaluatorConfig:
        """`tls_ca_file`, `tls_cert` and `tls_key` are given together, and not with a
        (Python) `security`."""
        given = [v is not None for v in (self.tls_ca_file, self.tls_cert, self.tls_key)]
        if any(given) and not all(given):
            raise ValueError("tls_ca_file, tls_cert and tls_key must be given together")
        if any(given) and self.security is not None:
            raise ValueError("give the tls_* files or a 'security', not both")
        return self

    @model_validator(mode="after")
    def _stragglers_alone(self) -> DaskEvaluatorConfig:
        """`stragglers` closes a generation on a quorum; `deadline_seconds` and
        `candidate_timeout_seconds` rerun late candidates to get every return: not both.
        Node mode (`node_processes`, one chunk per node) is not combined with it yet."""
        if self.stragglers is not None:
            given = [
                name for name in ("deadline_seconds", "candidate_timeout_seconds",
                                  "node_processes")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(
                    f"'stragglers' cannot be combined with {' or '.join(map(repr, given))} "
                    "(a straggler-tolerant generation drops late candidates instead of "
                    "rerunning them, and pulls small chunks per thread, not one per node); "
                    "remove one"
                )
        return self

    def check_run(self, run: Any) -> None:
        """With `stragglers`: the run's strategy must learn from a subset
        ('partial_tell'), and `min_candidates` must not exceed its population."""
        if self.stragglers is None:
            return
        from asktell.registry import STRATEGIES

        kind = run.strategy.kind
        cls = STRATEGIES.get(kind)
        if "partial_tell" not in getattr(cls, "capabilities", ()):
            able = sorted(
                name for name in STRATEGIES.names()
                if "partial_tell" in getattr(STRATEGIES.get(name), "capabilities", ())
            )
            raise ValueError(
                f"'stragglers' drops the late candidates of a generation, but strategy "
                f"{kind!r} cannot learn from a subset of its population (no 'partial_tell' "
                f"capability); use one that can ({', '.join(map(repr, able))}) or remove "
                "[evaluator.stragglers]"
            )
        size = getattr(run.strategy, "population_size", None)
        need = self.stragglers.min_candidates
        if size is not None and need is not None and need > size:
            raise ValueError(
                f"stragglers.min_candidates={need} exceeds the population_size={size} of "
                f"strategy {kind!r}: a generation never has that many candidates; use at "
                f"most {size}"
            )

    def security_object(self) -> Any:
        """The ``distributed.Security`` to use: ``security``, or one built from the files."""
        if self.security is not None or self.tls_ca_file is None:
            return self.security
        distributed = require("distributed", "DaskEvaluator TLS")
        return distributed.Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=self.tls_cert,
            tls_client_key=self.tls_key,
            require_encryption=True,
        )

    def build(self, task: Task) -> DaskEvaluator:
        return DaskEvaluator(task, **self.options())


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

    capabilities = frozenset({"bitwise_serial", "candidate_timeout", "partial_evaluation"})
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
        self.link.close()

    def __enter__(self) -> DaskEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "embedded LocalCluster" if self.cluster is not None else self.address
        return f"DaskEvaluator({self.task!r}, {where})"

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
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
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
                candidate_timeout=self.candidate_timeout_seconds,
                quorum=quorum,
            ) as run:
                if self.node_processes is None:
                    threads = self.link.num_threads()
                else:  # node mode: chunks per node, each split on its node
                    threads = self.link.num_nodes()
                per_thread = self.next_chunks_per_worker
                if quorum is not None and self.chunks_per_worker == "auto":
                    per_thread = STRAGGLER_CHUNKS
                bounds = chunk_bounds(seeds.size, threads * per_thread)
                work = run.run(bounds)
                if work is not None and self.node_processes is None and quorum is None:
                    self._auto_chunks = auto_chunks(work, threads)
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
