"""The in-process reference evaluator; every other evaluator must match its returns."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from asktell.config_base import PluginConfig, declare_options
from asktell.distribution import Distribution
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import CandidateTimeout, OnFailure, Retries, assemble, evaluate_chunk

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
    capabilities = frozenset({"bitwise_serial", "candidate_timeout"})

    def __init__(self, task: Task, **options: Any):
        cfg = SerialEvaluatorConfig.validate_options("SerialEvaluator", options)
        self.task = task
        self.on_failure = cfg.on_failure
        self.retries = cfg.retries
        self.candidate_timeout_seconds = cfg.candidate_timeout_seconds
        self.closed = False

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation:
        """Returns, steps and failures for ``seeds``, in seed order."""
        if self.closed:
            raise RuntimeError("SerialEvaluator.evaluate() called after close()")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        part = evaluate_chunk(
            self.task, distribution, seeds, self.retries, self.candidate_timeout_seconds
        )
        return assemble(seeds, [(0, part)], distribution.generation, self.on_failure)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SerialEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
