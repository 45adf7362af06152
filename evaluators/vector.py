"""``VectorEnvEvaluator``: many Gymnasium environments stepped together, one batched policy
forward per step for every candidate in flight.

Built on ``gymnasium.vector`` (``make_vec`` in ``sync``, ``async`` or ``vector_entry_point``
mode). Candidates (one unit per episode) are assigned to environment slots; a slot whose
episode ends takes the next unit. See :mod:`asktell.evaluators._slots` for the slot engine
and how each autoreset mode is handled.

Per-step inter-process traffic (one pipe round trip per step, as a plain ``AsyncVectorEnv``
does) costs about as much as a MuJoCo step. With ``num_workers > 0`` each worker process
keeps its own vector environment and its own batched policy, so only seeds go in and
returns come out, once per batch: the candidates are split into one contiguous block per
worker.

For tasks other than :class:`~asktell.gym.GymTask` there are no environments to vectorise:
the evaluator evaluates them in this process exactly as :class:`SerialEvaluator` does.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import traceback
import weakref
from multiprocessing import connection
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import StrictModel
from asktell.distribution import Distribution
from asktell.errors import ConfigError, EvaluationError
from asktell.gym.envs import VECTOR_MODES
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import ChunkResult, assemble, check_failure_policy, evaluate_chunk
from ._slots import SlotEngine

__all__ = ["VectorEnvEvaluator", "VectorEnvEvaluatorConfig", "VECTOR_MODES"]

START_METHODS = ("spawn", "forkserver", "fork")
#: Upper bound of the automatic number of environments per process, by mode. ``sync``: at 16
#: the per-step Python and policy costs are amortised while the simulators' and candidates'
#: memory still mostly fits the core's cache (HalfCheetah, 2-core VM: 0.78 of the raw
#: single-env rate at 16 slots, 0.77 at 32, 0.70 at 64). ``vector_entry_point``: one numpy
#: step for all envs, so more is better. ``async``: one process per env.
MAX_AUTO_ENVS = {"sync": 16, "vector_entry_point": 256}


class VectorEnvEvaluatorConfig(StrictModel):
    """Run-file settings of :class:`VectorEnvEvaluator` (``kind = "vector"``)."""

    kind: Literal["vector"] = "vector"
    mode: Literal["sync", "async", "vector_entry_point"] = Field(
        "sync",
        description="gymnasium.make_vec mode: 'sync' (envs stepped in turn in one process), "
        "'async' (one process per env, a pipe round trip per step), 'vector_entry_point' "
        "(the env's own vectorised implementation, e.g. CartPole's).",
    )
    num_envs: int | None = Field(
        None,
        ge=1,
        description="Environments per process. Default: enough for the first batch in one "
        "round, at most 16 (sync), 256 (vector_entry_point) or the number of CPUs (async).",
    )
    num_workers: int = Field(
        0,
        ge=0,
        description="Worker processes, each with its own vector env and policy (only seeds "
        "and returns cross processes); 0 runs everything in this process.",
    )
    start_method: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="multiprocessing start method of the workers."
    )
    on_failure: Literal["raise", "mark"] = Field(
        "raise",
        description="A candidate whose environment raises or returns NaN: stop the run naming "
        "it, or mark it failed (NaN return, ranked worst) and go on.",
    )
    retries: int = Field(0, ge=0, description="Extra attempts for a candidate whose env raised.")

    @model_validator(mode="after")
    def _async_in_process(self) -> "VectorEnvEvaluatorConfig":
        if self.mode == "async" and self.num_workers > 0:
            raise ValueError(
                "mode='async' already runs one process per environment; use num_workers=0 "
                f"with it (got num_workers={self.num_workers})"
            )
        return self

    def build(self, task: Task) -> "VectorEnvEvaluator":
        return VectorEnvEvaluator(task, **self.model_dump(exclude={"kind"}))


def _is_gym_task(task: Any) -> bool:
    from asktell.gym.task import GymTask

    return isinstance(task, GymTask)


@EVALUATORS.register("vector")
class VectorEnvEvaluator:
    """Evaluate a Gym task's candidates in vectorised environments.

    Returns equal :class:`SerialEvaluator`'s bit for bit in ``sync`` and ``async`` modes:
    every episode is reset with its own seed and the policy's per-row arithmetic does not
    depend on the batch. In ``vector_entry_point`` mode the environment is a different
    implementation that resets itself from its own generator, so returns are those of other
    (equally valid) episodes; reproducible for a given run seed, ``num_envs`` and
    ``num_workers``.

    Args:
        task: the task; a :class:`~asktell.gym.GymTask` is vectorised, any other task is
            evaluated in this process like :class:`SerialEvaluator` does.
        mode: ``"sync"`` (default), ``"async"`` or ``"vector_entry_point"``.
        num_envs: environments per process (default: enough for the first batch in one
            round, at most 16 for ``sync``, 256 for ``vector_entry_point``, the number of
            CPUs for ``async``).
        num_workers: worker processes, each with its own vector environment and policy;
            ``0`` (default) runs in this process. Use the number of cores for throughput.
        start_method: multiprocessing start method of the workers.
        on_failure: ``"raise"`` or ``"mark"`` (see :class:`SerialEvaluator`); a failure is an
            environment that raises or returns a NaN/inf observation or reward.
        retries: extra attempts for a candidate whose environment raised.

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

    #: Equal to SerialEvaluator bit for bit (``vector_entry_point`` mode excepted for Gym
    #: tasks: a different environment implementation; see the class docstring).
    capabilities = frozenset({"bitwise_serial"})
    config_class = VectorEnvEvaluatorConfig

    def __init__(
        self,
        task: Task,
        *,
        mode: str = "sync",
        num_envs: int | None = None,
        num_workers: int = 0,
        start_method: str = "spawn",
        on_failure: str = "raise",
        retries: int = 0,
    ):
        self.task = task
        if mode not in VECTOR_MODES:
            raise ConfigError(f"VectorEnvEvaluator 'mode' must be one of {VECTOR_MODES}; got {mode!r}")
        self.mode = mode
        if num_envs is not None and (
            isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1
        ):
            raise ConfigError(
                f"VectorEnvEvaluator 'num_envs' must be an int >= 1 or None; got {num_envs!r}"
            )
        self.num_envs = None if num_envs is None else int(num_envs)
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
            raise ConfigError(
                f"VectorEnvEvaluator 'num_workers' must be an int >= 0; got {num_workers!r}"
            )
        if mode == "async" and num_workers > 0:
            raise ConfigError(
                "VectorEnvEvaluator mode='async' already runs one process per environment; use "
                f"num_workers=0 with it (got num_workers={num_workers})"
            )
        self.num_workers = int(num_workers)
        if start_method not in START_METHODS:
            raise ConfigError(
                f"VectorEnvEvaluator 'start_method' must be one of {START_METHODS}; "
                f"got {start_method!r}"
            )
        self.start_method = start_method
        self.on_failure = check_failure_policy("VectorEnvEvaluator", on_failure)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"VectorEnvEvaluator 'retries' must be an int >= 0; got {retries!r}")
        self.retries = retries
        self.vectorised = _is_gym_task(task)
        self.closed = False
        self._engine: SlotEngine | None = None
        self._pool: _WorkerPool | None = None
        self._finalizer = weakref.finalize(self, _shutdown, [None])

    def __repr__(self) -> str:
        return (
            f"VectorEnvEvaluator(mode={self.mode!r}, num_envs={self.num_envs}, "
            f"num_workers={self.num_workers})"
        )

    def _resolve_num_envs(self, units: int) -> int:
        if self.num_envs is None:
            per_process = math.ceil(units / max(self.num_workers, 1))
            cap = MAX_AUTO_ENVS.get(self.mode, os.cpu_count() or 1)
            self.num_envs = max(1, min(per_process, cap))
        return self.num_envs

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation:
        """Returns, steps, episodes, truncations and failures for ``seeds``, in seed order."""
        if self.closed:
            raise RuntimeError("VectorEnvEvaluator.evaluate() called after close()")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        generation = distribution.generation
        if not self.vectorised or seeds.size == 0:
            part = evaluate_chunk(self.task, distribution, seeds, self.retries)
            return assemble(seeds, [(0, part)], generation, self.on_failure)
        num_envs = self._resolve_num_envs(seeds.size * self.task.episodes)
        if self.num_workers == 0:
            if self._engine is None:
                self._engine = SlotEngine(self.task, num_envs, self.mode)
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _shutdown, [self._engine])
            part = self._engine.run(distribution, seeds, self.retries)
            parts = [(0, part)]
        else:
            if self._pool is None:
                self._pool = _WorkerPool(
                    self.task, self.num_workers, num_envs, self.mode, self.start_method
                )
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _shutdown, [self._pool])
            parts = self._pool.run(distribution, seeds, self.retries)
        return assemble(seeds, parts, generation, self.on_failure)

    @property
    def rebuilds(self) -> int:
        """How many times a vector environment was rebuilt after it raised (this process)."""
        return self._engine.rebuilds if self._engine is not None else 0

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


# ---------------------------------------------------------------------- worker processes
def _worker_main(conn, task, num_envs: int, mode: str, worker: int) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = SlotEngine(task, num_envs, mode, worker)
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "close":
                break
            _, distribution, seeds, retries = message
            try:
                conn.send(("ok", engine.run(distribution, seeds, retries)))
            except Exception:  # noqa: BLE001 - reported to the parent, which raises
                conn.send(("error", traceback.format_exc()))
    finally:
        engine.close()
        conn.close()


class _WorkerDied(Exception):
    pass


_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas():
    """Workers are started with one BLAS thread each (unless the user set a number): a
    worker is one process per core, and the policy's small products gain nothing from more
    threads, which would only contend with the other workers (as Dask's nanny does too)."""
    saved = {k: os.environ.get(k) for k in _BLAS_THREAD_VARS}
    for k, v in saved.items():
        if v is None:
            os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


class _WorkerPool:
    """Worker processes, each running a :class:`SlotEngine` on one block of seeds per batch."""

    def __init__(self, task, num_workers: int, num_envs: int, mode: str, start_method: str):
        import multiprocessing

        self.task = task
        self.num_envs = num_envs
        self.mode = mode
        self.ctx = multiprocessing.get_context(start_method)
        self.workers: list[tuple[Any, Any] | None] = [None] * num_workers

    def _start(self, w: int) -> None:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main,
            args=(child, self.task, self.num_envs, self.mode, w),
            name=f"asktell-vector-{w}",
            daemon=True,
        )
        with _single_threaded_blas():
            process.start()
        child.close()
        self.workers[w] = (process, parent)

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
                    f"a vector-env worker process died while starting (exit code "
                    f"{process.exitcode}); the task must be picklable and importable in a new "
                    "process, and a script using the 'spawn' start method must guard its entry "
                    "point with `if __name__ == '__main__':`"
                ) from None
            if message[0] != "ready":  # pragma: no cover - protocol guard
                raise EvaluationError(f"vector-env worker {w} sent {message!r} instead of 'ready'")

    def _receive(self, w: int) -> ChunkResult:
        process, conn = self.workers[w]
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            process.join(5)
            raise _WorkerDied(f"exit code {process.exitcode}") from None
        if status == "error":
            raise EvaluationError(f"vector-env worker {w} failed:\n{payload}")
        return payload

    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int):
        blocks = [
            (int(b[0]), b.size)
            for b in np.array_split(np.arange(seeds.size), len(self.workers))
            if b.size
        ]
        completed = False
        try:
            waiting = {}
            self._ensure(list(range(len(blocks))))
            for w, (offset, size) in enumerate(blocks):
                process, conn = self.workers[w]
                conn.send(("run", distribution, seeds[offset : offset + size], retries))
                waiting[conn] = w
            parts: list[tuple[int, ChunkResult]] = []
            while waiting:
                for conn in connection.wait(list(waiting)):
                    w = waiting.pop(conn)
                    offset, size = blocks[w]
                    try:
                        part = self._receive(w)
                    except _WorkerDied:
                        part = self._rescue(w, distribution, seeds[offset : offset + size], retries)
                    parts.append((offset, part))
            completed = True
            return sorted(parts, key=lambda p: p[0])
        finally:
            if not completed:
                # Results may still be in flight in the pipes: start afresh next time.
                self.close()

    def _rescue(self, w, distribution, seeds, retries) -> ChunkResult:
        """A worker died: re-run its block one candidate at a time in a fresh worker; a
        candidate that kills the worker again is a failed candidate."""
        self._stop(w)
        out = ChunkResult(seeds.size)
        out.episodes = np.zeros(seeds.size, dtype=np.int64)
        out.truncated = np.zeros(seeds.size, dtype=np.int64)
        for i in range(seeds.size):
            self._ensure([w])
            process, conn = self.workers[w]
            conn.send(("run", distribution, seeds[i : i + 1], retries))
            try:
                part = self._receive(w)
            except _WorkerDied as exc:
                self._stop(w)
                out.failures.append(
                    (i, f"the vector-env worker process died while evaluating it ({exc})")
                )
                continue
            out.returns[i] = part.returns[0]
            out.steps[i] = part.steps[0]
            if part.episodes is not None:
                out.episodes[i] = part.episodes[0]
            if part.truncated is not None:
                out.truncated[i] = part.truncated[0]
            out.failures.extend((i, error) for _, error in part.failures)
            if part.obs_stats is not None:
                if out.obs_stats is None:
                    out.obs_stats = part.obs_stats
                else:
                    out.obs_stats.merge(part.obs_stats)
        return out

    def _stop(self, w: int) -> None:
        worker, self.workers[w] = self.workers[w], None
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
        for w in range(len(self.workers)):
            self._stop(w)
