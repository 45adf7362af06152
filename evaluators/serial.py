"""The in-process reference evaluator; every other evaluator must match its returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from asktell.config_base import PluginConfig, declare_options
from asktell.distribution import Distribution, seed_array
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import (
    CandidateTimeout, OnFailure, Retries, assemble, evaluate_chunk, rows_per_chunk,
)

__all__ = ["SerialEvaluator", "SerialEvaluatorConfig"]


class SerialEvaluatorConfig(PluginConfig):
    """Run-file settings of :class:`SerialEvaluator` (``kind = "serial"``)."""

    kind: Literal["serial"] = "serial"
    on_failure: OnFailure = "raise"
    retries: Retries = 0
    candidate_timeout_seconds: CandidateTimeout = None

    def build(self, task: Task) -> "SerialEvaluator":
        return SerialEvaluator(task, **self.options())


@EVALUATORS.register("serial")
@declare_options(SerialEvaluatorConfig)
class SerialEvaluator:
    """Evaluate candidates one chunk at a time in this process.

    ``on_failure="raise"`` stops with a :class:`~asktell.errors.CandidateFailedError`
    naming generation, index and seed; ``"mark"`` records the failure and returns NaN for
    that candidate. ``candidate_timeout_seconds`` fails a candidate that does not return in
    time (interrupted with ``SIGALRM`` in the main thread: Python code only, see
    :func:`~asktell.evaluators._common.time_limit`).

    Args:
        task: the task every batch is evaluated on.

    Example:
        >>> import numpy as np
        >>> from asktell import FunctionTask
        >>> from asktell.strategies import OpenAIES
        >>> es = OpenAIES(num_params=4, population_size=8)
        >>> with SerialEvaluator(FunctionTask.named("sphere")) as ev:
        ...     evaluation = ev.evaluate(es.distribution, es.ask())
        >>> evaluation.returns.shape
        (8,)
    """

    #: Capabilities the evaluator conformance suite reads.
    #: ``progress``: ``evaluate(..., on_progress=f)`` calls ``f(done, total)`` after each
    #: chunk of candidates (the chunks it evaluates anyway, so the returns do not change).
    capabilities = frozenset({"bitwise_serial", "candidate_timeout", "progress"})

    def __init__(self, task: Task, **options: Any):
        cfg = SerialEvaluatorConfig.validate_options("SerialEvaluator", options)
        self.task = task
        self.on_failure = cfg.on_failure
        self.retries = cfg.retries
        self.candidate_timeout_seconds = cfg.candidate_timeout_seconds
        self.closed = False

    def evaluate(
        self,
        distribution: Distribution,
        seeds: np.ndarray,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Evaluation:
        """Returns, steps and failures for ``seeds``, in seed order; ``on_progress(done,
        total)`` after each chunk when given."""
        if self.closed:
            raise RuntimeError("SerialEvaluator.evaluate() called after close()")
        seeds = seed_array(seeds, "SerialEvaluator.evaluate()")
        # Cut where evaluate_chunk cuts anyway (rows_per_chunk), so reporting changes nothing.
        step = seeds.size if on_progress is None else rows_per_chunk(distribution.num_params)
        parts = []
        for start in range(0, seeds.size, max(step, 1)):
            part = evaluate_chunk(
                self.task, distribution, seeds[start : start + step], self.retries,
                self.candidate_timeout_seconds,
            )
            parts.append((start, part))
            if on_progress is not None:
                on_progress(start + len(part.returns), seeds.size)
        if not parts:
            parts = [(0, evaluate_chunk(self.task, distribution, seeds))]
        return assemble(seeds, parts, distribution.generation, self.on_failure)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SerialEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
