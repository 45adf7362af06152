"""``VectorEnvEvaluator``: a task's own batch runner (for a Gym task, many environments
stepped together with one batched policy forward per step) in this process or in worker
processes.

The evaluator carries seeds, distributions and results only: what happens inside a batch is
the task's :meth:`~asktell.protocol.TaskHooks.batch_runner` (for :class:`~asktell.gym.GymTask`
the slot engine, :mod:`asktell.gym.slots`). A task without one is refused: there is nothing
to vectorise (use the serial or the Dask evaluator for it).

Per-step inter-process traffic (one pipe round trip per step, as a plain ``AsyncVectorEnv``
does) costs about as much as a MuJoCo step. With ``num_workers > 0`` each worker process
keeps its own batch runner, so only seeds go in and results come out, once per batch: the
candidates are split into one contiguous block per worker.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import Int, PluginConfig, declare_options
from asktell.distribution import Distribution, seed_array
from asktell.errors import ConfigError
from asktell.gym.envs import VECTOR_MODES
from asktell.protocol import Evaluation, Failure, Task, TaskHooks, hooks_of
from asktell.registry import EVALUATORS

from ._common import (
    CandidateTimedOut,
    CandidateTimeout,
    OnFailure,
    Retries,
    assemble,
    time_limit,
    timeout_message,
)
from ._vector_pool import WorkerPool
from ._vector_round import empty_block

__all__ = ["VectorEnvEvaluator", "VectorEnvEvaluatorConfig", "VECTOR_MODES"]


def _no_batch_runner(task_name: str) -> str:
    return (
        f"the vector evaluator runs a task's own batch runner, and {task_name} has none "
        "(its batch_runner() returns None: there are no environments to vectorise); use "
        "evaluator kind 'serial' (or 'dask' to spread it over processes)"
    )


def _check_vector_entry_point(env_id: str) -> None:
    """``mode = "vector_entry_point"`` needs an environment with its own vector version
    (CartPole's); an id gymnasium cannot look up is left to the task's own check."""
    try:
        import gymnasium

        spec = gymnasium.spec(env_id)
    except Exception:  # noqa: BLE001 - the task names a bad id itself, with its own words
        return
    if getattr(spec, "vector_entry_point", None) is None:
        raise ValueError(
            f"mode='vector_entry_point' needs an environment with its own vector "
            f"implementation; {env_id!r} has none: use mode='sync' (or 'async')"
        )


class VectorEnvEvaluatorConfig(PluginConfig):
    """Run-file settings of :class:`VectorEnvEvaluator` (``kind = "vector"``).

    Also its constructor's keywords: the one declaration of its options."""

    kind: Literal["vector"] = "vector"
    mode: Literal["sync", "async", "vector_entry_point"] = Field(
        "sync",
        description="gymnasium.make_vec mode: 'sync' (envs stepped in turn in one process), "
        "'async' (one process per env, a pipe round trip per step), 'vector_entry_point' "
        "(the env's own vectorised implementation, e.g. CartPole's).",
    )
    num_envs: Int | None = Field(
        None,
        ge=1,
        description="Environments per process. Default: enough for the first batch in one "
        "round, at most 16 (sync), 256 (vector_entry_point) or the number of CPUs (async).",
    )
    num_workers: Int = Field(
        0,
        ge=0,
        description="Worker processes, each with its own vector env and policy (only seeds "
        "and returns cross processes); 0 runs everything in this process.",
    )
    start_method: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="multiprocessing start method of the workers."
    )
    on_failure: OnFailure = "raise"
    retries: Retries = 0
    candidate_timeout_seconds: CandidateTimeout = None

    @model_validator(mode="after")
    def _async_in_process(self) -> VectorEnvEvaluatorConfig:
        """`mode = "async"` already runs one process per environment: `num_workers` must
        be 0 with it."""
        if self.mode == "async" and self.num_workers > 0:
            raise ValueError(
                "mode='async' already runs one process per environment; use num_workers=0 "
                f"with it (got num_workers={self.num_workers})"
            )
        return self

    def result_settings(self) -> dict[str, Any] | None:
        """In 'vector_entry_point' mode the environment resets itself from (run seed,
        generation, worker), so the returns depend on how many environments and workers
        share the population; the other modes give the serial evaluator's returns."""
        if self.mode != "vector_entry_point":
            return None
        return {"kind": self.kind, "mode": self.mode, "num_envs": self.num_envs,
                "num_workers": self.num_workers}

    def check_run(self, run: Any) -> None:
        """The run's task must have a batch runner (Gym and Atari tasks do)."""
        from asktell.registry import TASKS

        kind = run.task.kind
        plugin = TASKS.get(kind)
        if not (
            isinstance(plugin, type)
            and issubclass(plugin, TaskHooks)
            and plugin.batch_runner is not TaskHooks.batch_runner
        ):
            raise ValueError(_no_batch_runner(f"a task of kind {kind!r}"))
        if self.mode == "vector_entry_point" and kind == "gym":
            _check_vector_entry_point(run.task.env_id)

    def estimate_bytes(self, context: Any) -> list[Any]:
        """Per process (``max(num_workers, 1)``): ``num_envs`` environments (a lower bound
        of 4 KiB each in 'sync', 32 MiB, a process, in 'async', 64 B in
        'vector_entry_point') with one candidate's weights and observations each, its block
        of the population decoded at once, and (workers) its own noise table."""
        from asktell._memory import Allocation

        processes = max(self.num_workers, 1)
        items = []
        if self.num_envs is not None:
            env = {"sync": 4 << 10, "async": 32 << 20, "vector_entry_point": 64}[self.mode]
            slot = env + context.weight_bytes + 32 * (context.obs_dim or 0)
            items.append(
                Allocation("evaluator.num_envs", self.num_envs, processes * self.num_envs * slot,
                           "environments and their slots' weights")
            )
        block = -(-context.population_size // processes)
        items.append(
            Allocation("strategy.population_size", context.population_size,
                       processes * block * 8 * context.num_params, "candidates decoded at once")
        )
        if self.num_workers:
            items.append(Allocation("evaluator.num_workers", self.num_workers,
                                    self.num_workers * context.noise_bytes, "noise table per worker"))
        return items

    def build(self, task: Task) -> "VectorEnvEvaluator":
        return VectorEnvEvaluator(task, **self.options())


@EVALUATORS.register("vector")
@declare_options(VectorEnvEvaluatorConfig)
class VectorEnvEvaluator:
    """Evaluate a task's candidates with its batch runner (a Gym task: vectorised
    environments).

    Returns equal :class:`SerialEvaluator`'s bit for bit in ``sync`` and ``async`` modes:
    every episode is reset with its own seed and the policy's per-row arithmetic does not
    depend on the batch. In ``vector_entry_point`` mode the environment is a different
    implementation that resets itself from its own generator, so returns are those of other
    (equally valid) episodes; reproducible for a given run seed, ``num_envs`` and
    ``num_workers``. The centre's evaluation (:meth:`~asktell.protocol.TaskHooks.center_plan`)
    equals the serial evaluator's in every mode.

    A failure is an environment that raises or returns a NaN/inf observation or reward.
    ``num_workers`` processes each keep their own batch runner; use the number of cores for
    throughput.

    Args:
        task: the task; it must have a batch runner (:class:`~asktell.gym.GymTask` and
            :class:`~asktell.atari.AtariTask` do), else :class:`ConfigError`.

    Example:
        >>> import numpy as np
        >>> from asktell.gym import GymTask
        >>> from asktell.strategies import OpenAIES
        >>> from asktell.noise import NoiseTable
        >>> task = GymTask("CartPole-v1", policy="linear")
        >>> es = OpenAIES(task.num_params, population_size=8, noise=NoiseTable(0, 1 << 16))
        >>> with VectorEnvEvaluator(task, num_envs=4) as ev:
        ...     evaluation = ev.evaluate(es.distribution, es.ask())
        >>> evaluation.returns.shape
        (8,)
    """

    #: Capabilities of the class (the evaluator conformance suite reads an instance's
    #: ``capabilities``, which adds ``bitwise_serial`` unless the mode is
    #: ``vector_entry_point``): it needs a task with a batch runner.
    capabilities = frozenset({"needs_batch_runner", "candidate_timeout", "progress"})

    def __init__(self, task: Task, **options: Any):
        cfg = VectorEnvEvaluatorConfig.validate_options("VectorEnvEvaluator", options)
        if hooks_of(task).batch_runner(1, cfg.mode, 0) is None:
            raise ConfigError(f"VectorEnvEvaluator: {_no_batch_runner(type(task).__name__)}")
        self.task = task
        for name in ("mode", "num_envs", "num_workers", "start_method", "on_failure", "retries"):
            setattr(self, name, getattr(cfg, name))
        self.candidate_timeout_seconds = cfg.candidate_timeout_seconds
        if self.mode != "vector_entry_point":
            self.capabilities = VectorEnvEvaluator.capabilities | {"bitwise_serial"}
        self.closed = False
        self._engine: Any = None
        self._sized: int | None = None  # the automatic size, kept across rebuilds
        self._pool: WorkerPool | None = None
        self._finalizer = weakref.finalize(self, _shutdown, [None])

    def __repr__(self) -> str:
        return (
            f"VectorEnvEvaluator(mode={self.mode!r}, num_envs={self.num_envs}, "
            f"num_workers={self.num_workers})"
        )

    def evaluate(
        self,
        distribution: Distribution,
        seeds: np.ndarray,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Evaluation:
        """Returns, steps, episodes, truncations and failures for ``seeds``, in seed order.

        ``on_progress(done, total)`` (the ``progress`` capability): in this process, once
        the environments are sized, a batch of more than two rounds runs as about four
        pieces of whole rounds, each reported when done (a candidate's return does not
        depend on its batch); otherwise it is reported once, at the end."""
        if self.closed:
            raise RuntimeError("VectorEnvEvaluator.evaluate() called after close()")
        seeds = seed_array(seeds, "VectorEnvEvaluator.evaluate()")
        generation = distribution.generation
        if seeds.size == 0:
            return assemble(seeds, [], generation, self.on_failure)
        if self.num_workers == 0:
            limit = self.candidate_timeout_seconds
            if limit is None:
                parts = self._in_process(distribution, seeds, on_progress)
            else:
                parts = [(0, self._run_in_process_limited(distribution, seeds, limit))]
        else:
            if self._pool is None:
                self._pool = WorkerPool(
                    self.task, self.num_workers, self.num_envs, self.mode, self.start_method,
                    self.candidate_timeout_seconds,
                )
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _shutdown, [self._pool])
            parts = self._pool.run(distribution, seeds, self.retries)
        if on_progress is not None:
            on_progress(seeds.size, seeds.size)
        return assemble(seeds, parts, generation, self.on_failure)

    def _in_process(self, distribution, seeds, on_progress) -> list[tuple[int, Evaluation]]:
        engine = self._engine_now()
        size = self.num_envs or getattr(engine, "num_envs", None)
        if on_progress is None or not size or seeds.size <= 2 * size:
            return [(0, engine.run(distribution, seeds, self.retries))]
        piece = size * -(-seeds.size // (4 * size))  # whole rounds: no half-empty batch
        parts = []
        for start in range(0, seeds.size, piece):
            parts.append((start, engine.run(distribution, seeds[start : start + piece], self.retries)))
            if start + piece < seeds.size:
                on_progress(start + piece, seeds.size)
        return parts

    def _engine_now(self) -> Any:
        if self._engine is None:
            # An engine rebuilt after a hang keeps the size the first batch gave the old one
            # (not the size of the one-candidate batch that rebuilds it).
            num_envs = self.num_envs if self.num_envs is not None else self._sized
            self._engine = hooks_of(self.task).batch_runner(num_envs, self.mode, 0)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, [self._engine])
        return self._engine

    def _drop_engine(self) -> None:
        """An engine interrupted mid-step may hold half-stepped environments: rebuild it."""
        engine, self._engine = self._engine, None
        self._sized = getattr(engine, "num_envs", None)
        with contextlib.suppress(Exception):
            engine.close()

    def _run_in_process_limited(self, distribution, seeds, limit: float) -> Evaluation:
        """The batch under ``limit`` per candidate; if it runs over, each candidate alone
        under ``limit`` in a fresh engine, so only the one that hangs fails (the others'
        returns equal a batch's: a candidate's arithmetic does not depend on its batch)."""
        try:
            with time_limit(limit * seeds.size):
                return self._engine_now().run(distribution, seeds, self.retries)
        except CandidateTimedOut:
            self._drop_engine()
        out = empty_block(seeds.size)
        for i in range(seeds.size):
            try:
                with time_limit(limit):
                    out.place(i, self._engine_now().run(distribution, seeds[i : i + 1], self.retries))
            except CandidateTimedOut:
                self._drop_engine()
                out.failures.append(
                    Failure(i, int(seeds[i]), timeout_message(limit), distribution.generation)
                )
        return out

    @property
    def rebuilds(self) -> int:
        """How many times this process's batch runner rebuilt its environment after it
        raised (the slot engine counts them)."""
        return getattr(self._engine, "rebuilds", 0)

    def close(self) -> None:
        """Close the environments and stop the workers; idempotent."""
        self.closed = True
        self._finalizer()
        self._engine = None
        self._pool = None

    def __enter__(self) -> VectorEnvEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(things: list) -> None:
    for thing in things:
        if thing is not None:
            thing.close()
