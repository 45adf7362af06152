"""Pieces every evaluator shares: chunking, failure isolation, putting results in seed order.

Results travel as :class:`~asktell.protocol.Evaluation` records (a task's result, a chunk's,
a worker's block, the whole batch's) and are merged by one method,
:meth:`Evaluation.place <asktell.protocol.Evaluation.place>`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Annotated, Iterator, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Float, Int
from asktell.distribution import Distribution
from asktell.errors import CandidateFailedError, ConfigError, EvaluationError
from asktell.protocol import Evaluation, Failure, Task

__all__ = [
    "FAILURE_POLICIES",
    "OnFailure",
    "Retries",
    "CandidateTimeout",
    "CandidateTimedOut",
    "time_limit",
    "timeout_message",
    "check_failure_policy",
    "rows_per_chunk",
    "evaluate_chunk",
    "ChunkResult",
    "assemble",
    "describe_error",
]

#: ``raise``: the first failed candidate stops the batch with a CandidateFailedError naming
#: generation, index and seed. ``mark``: the candidate gets a NaN return and a Failure record,
#: and the strategy's non-finite policy ranks it (``worst`` by default).
FAILURE_POLICIES = ("raise", "mark")


#: The ``on_failure`` option of every evaluator (rule and words declared once).
OnFailure = Annotated[
    Literal["raise", "mark"],
    Field(
        description="A candidate whose evaluation raises (or, for environments, returns a "
        "NaN/inf observation or reward): stop the run naming it, or mark it failed (NaN "
        "return, ranked worst by the strategy) and go on."
    ),
]
#: The ``retries`` option of every evaluator.
Retries = Annotated[Int, Field(ge=0, description="Extra attempts for a candidate that raised.")]
#: The ``candidate_timeout_seconds`` option of every evaluator.
CandidateTimeout = Annotated[
    Float | None,
    Field(
        gt=0,
        description="Seconds one candidate's evaluation may take; a candidate past it fails "
        "(on_failure applies; it is not retried) and its batch-mates get their exact returns. "
        "Unset: wait for ever. The serial evaluator interrupts Python code only (not C code "
        "that never returns); see docs/gym.md 'Time limits'.",
    ),
]


class CandidateTimedOut(BaseException):
    """Raised inside a candidate's evaluation when its time limit passes.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that a task's own ``except
    Exception`` cannot swallow it and hang on; tasks that clean up on ``BaseException``
    (``GymTask`` drops its environment) still do."""


def timeout_message(seconds: float) -> str:
    """The failure text of a candidate that did not return in time."""
    return f"did not return within candidate_timeout_seconds={seconds:g}"


def _on_alarm(signum: int, frame: object) -> None:
    raise CandidateTimedOut()


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CandidateTimedOut` in this (main) thread after ``seconds``.

    ``signal.setitimer(ITIMER_REAL)``: the handler runs between Python bytecodes, so code
    that stays in C without returning to Python is not interrupted (use an evaluator with
    worker processes for it, which kills them). ``None``: no limit, no cost.
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise EvaluationError(
            "candidate_timeout_seconds in this process needs the main thread (it uses "
            "signal.setitimer); run the evaluator in the main thread, or use the vector "
            "evaluator with num_workers > 0 or the Dask evaluator"
        )
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_failure_policy(owner: str, value: str) -> str:
    """``on_failure`` checked by hand, for an evaluator whose options are not declared by a
    Config model yet (the declared ones use :data:`OnFailure`)."""
    if value not in FAILURE_POLICIES:
        raise ConfigError(f"{owner} 'on_failure' must be one of {FAILURE_POLICIES}; got {value!r}")
    return value


def rows_per_chunk(num_params: int, budget_floats: int = 1 << 22) -> int:
    """How many candidates to decode at once so a chunk stays near 32 MiB of float64."""
    return max(1, budget_floats // max(num_params, 1))


def ChunkResult(n: int) -> Evaluation:  # noqa: N802 - the old class name, kept for callers
    """An empty result record of ``n`` candidates (:meth:`Evaluation.empty`)."""
    return Evaluation.empty(n)


describe_error = Failure.describe


def evaluate_chunk(
    task: Task,
    distribution: Distribution,
    seeds: np.ndarray,
    retries: int = 0,
    timeout: float | None = None,
) -> Evaluation:
    """Decode and evaluate a chunk of seeds, isolating failures to single candidates.

    The whole chunk goes to the task in one call (vectorised tasks want that). If that call
    raises, each candidate is evaluated alone, up to ``1 + retries`` times, so one bad
    candidate costs only itself. Never raises for a candidate's error: failures are recorded
    (indices in the chunk) and the caller applies its policy.

    ``timeout`` (seconds per candidate, main thread only, see :func:`time_limit`): each
    candidate is evaluated alone under it (the same returns: a candidate's value does not
    depend on its batch), and one still running then fails (not retried: a hang repeats).
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    out = Evaluation.empty(seeds.size)
    step = rows_per_chunk(distribution.num_params)
    for start in range(0, seeds.size, step):
        part = seeds[start : start + step]
        params = distribution.decode(part)
        if timeout is None:
            try:
                out.place(slice(start, start + part.size), task.evaluate(params, part, distribution))
                continue
            except Exception as exc:  # noqa: BLE001 - isolate below, candidate by candidate
                batch_error = describe_error(exc)
            # A chunk of one has already had its first attempt.
            attempts = retries if part.size == 1 else 1 + retries
        else:
            batch_error, attempts = "", 1 + retries
        for i in range(part.size):
            error = batch_error if part.size == 1 and timeout is None else ""
            for _ in range(attempts):
                try:
                    with time_limit(timeout):
                        result = task.evaluate(params[i : i + 1], part[i : i + 1], distribution)
                    out.place(start + i, result)
                    error = ""
                    break
                except CandidateTimedOut:
                    error = timeout_message(timeout)
                    break
                except Exception as exc:  # noqa: BLE001 - recorded and reported
                    error = describe_error(exc)
            if error:
                out.returns[start + i] = np.nan
                out.failures.append(
                    Failure(start + i, int(part[i]), error, distribution.generation)
                )
    return out


def assemble(
    seeds: np.ndarray,
    parts: list[tuple[int, Evaluation]],
    generation: int,
    on_failure: str,
) -> Evaluation:
    """Put parts ``(offset, record)`` back in seed order and apply the failure policy.

    A part's failures may also be listed as ``(index, error)`` pairs (index in the part);
    they become :class:`~asktell.protocol.Failure` records named by ``seeds`` and
    ``generation``.
    """
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    for offset, part in parts:
        part.failures = [
            f if isinstance(f, Failure) else Failure(f[0], int(seeds[offset + f[0]]), f[1], generation)
            for f in part.failures
        ]
    evaluation = Evaluation.concatenate(parts, seeds.size)
    failures = evaluation.failures
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
    return evaluation
