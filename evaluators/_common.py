"""Pieces every evaluator shares: chunking, failure isolation, merging results."""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import CandidateFailedError, ConfigError
from asktell.protocol import Evaluation, Failure, Task, TaskResult

__all__ = [
    "FAILURE_POLICIES",
    "check_failure_policy",
    "rows_per_chunk",
    "evaluate_chunk",
    "ChunkResult",
    "assemble",
]

#: ``raise``: the first failed candidate stops the batch with a CandidateFailedError naming
#: generation, index and seed. ``mark``: the candidate gets a NaN return and a Failure record,
#: and the strategy's non-finite policy ranks it (``worst`` by default).
FAILURE_POLICIES = ("raise", "mark")


def check_failure_policy(owner: str, value: str) -> str:
    if value not in FAILURE_POLICIES:
        raise ConfigError(f"{owner} 'on_failure' must be one of {FAILURE_POLICIES}; got {value!r}")
    return value


def rows_per_chunk(num_params: int, budget_floats: int = 1 << 22) -> int:
    """How many candidates to decode at once so a chunk stays near 32 MiB of float64."""
    return max(1, budget_floats // max(num_params, 1))


class ChunkResult:
    """Results of one chunk: offsets are positions in the chunk."""

    __slots__ = ("returns", "steps", "failures", "obs_stats", "episodes", "truncated", "seconds")

    def __init__(self, n: int):
        self.seconds = 0.0  # compute time, where an evaluator measures it (Dask workers)
        self.returns = np.full(n, np.nan)
        self.steps = np.zeros(n, dtype=np.int64)
        self.failures: list[tuple[int, str]] = []
        self.obs_stats: Any = None
        self.episodes: np.ndarray | None = None
        self.truncated: np.ndarray | None = None


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _store(out: ChunkResult, where: slice | int, result: TaskResult) -> None:
    out.returns[where] = result.returns
    out.steps[where] = result.steps
    n = out.returns.size
    for name in ("episodes", "truncated"):
        value = getattr(result, name)
        if value is not None:
            if getattr(out, name) is None:
                setattr(out, name, np.zeros(n, dtype=np.int64))
            getattr(out, name)[where] = value
    if result.obs_stats is not None:
        if out.obs_stats is None:
            out.obs_stats = result.obs_stats
        else:
            out.obs_stats.merge(result.obs_stats)


def evaluate_chunk(
    task: Task, distribution: Distribution, seeds: np.ndarray, retries: int = 0
) -> ChunkResult:
    """Decode and evaluate a chunk of seeds, isolating failures to single candidates.

    The whole chunk goes to the task in one call (vectorised tasks want that). If that call
    raises, each candidate is evaluated alone, up to ``1 + retries`` times, so one bad
    candidate costs only itself. Never raises for a candidate's error: failures are recorded
    by position and the caller applies its policy.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    out = ChunkResult(seeds.size)
    if seeds.size == 0:
        return out
    step = rows_per_chunk(distribution.num_params)
    for start in range(0, seeds.size, step):
        part = seeds[start : start + step]
        params = distribution.decode(part)
        try:
            _store(out, slice(start, start + part.size), task.evaluate(params, part, distribution))
            continue
        except Exception as exc:  # noqa: BLE001 - isolate below, candidate by candidate
            batch_error = _describe(exc)
        # A chunk of one has already had its first attempt.
        attempts = retries if part.size == 1 else 1 + retries
        for i in range(part.size):
            error = batch_error if part.size == 1 else ""
            for _ in range(attempts):
                try:
                    result = task.evaluate(params[i : i + 1], part[i : i + 1], distribution)
                    _store(out, start + i, _one(result))
                    error = ""
                    break
                except Exception as exc:  # noqa: BLE001 - recorded and reported
                    error = _describe(exc)
            if error:
                out.returns[start + i] = np.nan
                out.failures.append((start + i, error))
    return out


def _one(result: TaskResult) -> TaskResult:
    # Scalars for single-row stores.
    return TaskResult(
        returns=np.asarray(result.returns).reshape(-1)[0],
        steps=np.asarray(result.steps).reshape(-1)[0],
        obs_stats=result.obs_stats,
        episodes=None if result.episodes is None else np.asarray(result.episodes).reshape(-1)[0],
        truncated=(
            None if result.truncated is None else np.asarray(result.truncated).reshape(-1)[0]
        ),
    )


def assemble(
    seeds: np.ndarray,
    parts: list[tuple[int, ChunkResult]],
    generation: int,
    on_failure: str,
) -> Evaluation:
    """Put chunk results back in seed order and apply the failure policy."""
    n = seeds.size
    returns = np.full(n, np.nan)
    steps = np.zeros(n, dtype=np.int64)
    episodes = truncated = None
    failures: list[Failure] = []
    obs_stats = None
    for offset, part in parts:
        m = part.returns.size
        returns[offset : offset + m] = part.returns
        steps[offset : offset + m] = part.steps
        if part.episodes is not None:
            episodes = np.zeros(n, dtype=np.int64) if episodes is None else episodes
            episodes[offset : offset + m] = part.episodes
        if part.truncated is not None:
            truncated = np.zeros(n, dtype=np.int64) if truncated is None else truncated
            truncated[offset : offset + m] = part.truncated
        for i, error in part.failures:
            failures.append(Failure(offset + i, int(seeds[offset + i]), error, generation))
        if part.obs_stats is not None:
            if obs_stats is None:
                obs_stats = part.obs_stats
            else:
                obs_stats.merge(part.obs_stats)
    failures.sort(key=lambda f: f.index)
    if failures and on_failure == "raise":
        f = failures[0]
        more = f" ({len(failures) - 1} more failed)" if len(failures) > 1 else ""
        raise CandidateFailedError(
            f"candidate {f.index} (seed {f.seed}) of generation {generation} failed: "
            f"{f.error}{more}",
            generation=generation,
            index=f.index,
            seed=f.seed,
            error=f.error,
        )
    return Evaluation(returns, steps, failures, obs_stats, episodes, truncated)
