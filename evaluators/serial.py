"""The in-process reference evaluator; every other evaluator must match its returns."""

from __future__ import annotations

import numpy as np

from typing import Literal

from pydantic import Field

from asktell.config_base import StrictModel
from asktell.distribution import Distribution
from asktell.errors import ConfigError
from asktell.protocol import Evaluation, Task
from asktell.registry import EVALUATORS

from ._common import assemble, check_failure_policy, evaluate_chunk

__all__ = ["SerialEvaluator", "SerialEvaluatorConfig"]


class SerialEvaluatorConfig(StrictModel):
    """Run-file settings of :class:`SerialEvaluator` (``kind = "serial"``)."""

    kind: Literal["serial"] = "serial"
    on_failure: Literal["raise", "mark"] = Field(
        "raise",
        description="A candidate whose evaluation raises: stop the run naming it, or mark it "
        "failed (NaN return, ranked worst by the strategy) and go on.",
    )
    retries: int = Field(0, ge=0, description="Extra attempts for a candidate that raised.")

    def build(self, task: Task) -> "SerialEvaluator":
        return SerialEvaluator(task, on_failure=self.on_failure, retries=self.retries)


@EVALUATORS.register("serial")
class SerialEvaluator:
    """Evaluate candidates one chunk at a time in this process.

    Args:
        task: the task every batch is evaluated on.
        on_failure: ``"raise"`` (default) stops with a
            :class:`~asktell.errors.CandidateFailedError` naming generation, index and seed;
            ``"mark"`` records the failure and returns NaN for that candidate.
        retries: extra attempts for a candidate whose evaluation raised.

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
    capabilities = frozenset({"bitwise_serial"})
    config_class = SerialEvaluatorConfig

    def __init__(self, task: Task, *, on_failure: str = "raise", retries: int = 0):
        self.task = task
        self.on_failure = check_failure_policy("SerialEvaluator", on_failure)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"SerialEvaluator 'retries' must be an int >= 0; got {retries!r}")
        self.retries = retries
        self.closed = False

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation:
        """Returns, steps and failures for ``seeds``, in seed order."""
        if self.closed:
            raise RuntimeError("SerialEvaluator.evaluate() called after close()")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        part = evaluate_chunk(self.task, distribution, seeds, self.retries)
        return assemble(seeds, [(0, part)], distribution.generation, self.on_failure)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SerialEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
