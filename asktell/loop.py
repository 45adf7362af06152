"""One generation of ask -> evaluate -> tell, shared by the runner, ``gym.train`` and ``minimize``.

A :class:`GenerationStep` runs one generation the same way for every caller:

1. ``ask`` the strategy and build the generation's distribution with the task's
   ``context()`` (frozen observation statistics, the step cap);
2. ``evaluate`` the seeds through the evaluator;
3. ``tell`` the strategy, then ``observe`` the evaluation (the task folds in its statistics),
   and count the candidates' environment steps and episodes in :class:`Progress`;
4. optionally evaluate the noise-free centre **through the same evaluator**, with the plan
   the task gives (:meth:`~asktell.protocol.TaskHooks.center_plan`); these evaluations are
   neither counted in ``env_steps`` nor observed.

It returns a :class:`GenerationRecord`. The stop check is :meth:`GenerationStep.stop_reasons`
over a :class:`Budget`, whose names are the run file's (``generations``, ``env_steps``,
``wall_seconds``, ``target_return``). Task hooks are reached through
:func:`~asktell.protocol.hooks_of`, never probed.

The runner defers Ctrl-C while the strategy and task change; it passes its
``DeferredInterrupts.critical`` as ``critical``, and the step wraps exactly the ask and the
tell/observe/count phases in it (``on_told`` runs inside the second, for the caller's own
bookkeeping).

Example:
    >>> import numpy as np
    >>> from asktell.evaluators import SerialEvaluator
    >>> from asktell.loop import Budget, GenerationStep
    >>> from asktell.noise import NoiseTable
    >>> from asktell.strategies import OpenAIES
    >>> from asktell.tasks import FunctionTask
    >>> task = FunctionTask.named("sphere", num_params=3)
    >>> es = OpenAIES(3, population_size=8, sigma=0.1, noise=NoiseTable(0, 4096))
    >>> with SerialEvaluator(task) as ev:
    ...     step = GenerationStep(es, ev, task, budget=Budget(generations=3))
    ...     while not step.stop_reasons():
    ...         record = step(center_episodes=1)
    >>> record.generation, step.progress.env_steps, record.center_returns.shape
    (3, 24, (1,))
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any, ContextManager

import numpy as np

from asktell.distribution import Distribution
from asktell.protocol import Evaluation, hooks_of

__all__ = ["Budget", "Progress", "GenerationRecord", "GenerationStep", "center_returns"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """When to stop: whichever limit is reached first (``None``: no limit of that kind).

    Attributes:
        generations: generations of the strategy (its own counter, so a trained strategy
            handed in again counts from where it is).
        env_steps: environment steps of the candidates (function evaluations for functions);
            centre evaluations are not counted.
        wall_seconds: wall-clock seconds.
        target_return: a return to reach: the last centre evaluation's mean when the loop
            evaluates the centre, else the best population return.
    """

    generations: int | None = None
    env_steps: int | None = None
    wall_seconds: float | None = None
    target_return: float | None = None

    @classmethod
    def of(cls, config: Any) -> Budget:
        """The budget of a :class:`~asktell.config.BudgetConfig` (same field names)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def is_set(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))

    def fraction_done(self, progress: Progress) -> float:
        """How far the run is towards its nearest limit, in [0, 1] (targets excluded)."""
        parts = [0.0]
        if self.generations:
            parts.append(progress.generation / self.generations)
        if self.env_steps:
            parts.append(progress.env_steps / self.env_steps)
        if self.wall_seconds:
            parts.append(progress.wall() / self.wall_seconds)
        return min(max(parts), 1.0)

    def stop_reasons(self, progress: Progress, *, judge_center: bool) -> dict[str, str]:
        """The limits reached, ``{field: message}`` in field order (empty: keep going).

        ``judge_center``: the target is judged on the centre's evaluated return (the loop
        evaluates the centre), else on the best population return.
        """
        out: dict[str, str] = {}
        if self.generations is not None and progress.generation >= self.generations:
            out["generations"] = f"generations budget reached ({self.generations})"
        if self.env_steps is not None and progress.env_steps >= self.env_steps:
            out["env_steps"] = (
                f"env_steps budget reached ({progress.env_steps} >= {self.env_steps})"
            )
        if self.wall_seconds is not None and progress.wall() >= self.wall_seconds:
            out["wall_seconds"] = f"wall_seconds budget reached ({self.wall_seconds:g} s)"
        if self.target_return is not None:
            if judge_center:
                value, what = progress.center_return, "centre return"
            else:
                value, what = progress.best_return, "best population return"
            if value is not None and value >= self.target_return:
                out["target_return"] = (
                    f"target_return reached ({what} {value:.6g} >= {self.target_return:g})"
                )
        return out


@dataclasses.dataclass
class Progress:
    """The counters a budget is checked against (a runner checkpoints them).

    ``wall_offset`` is the wall time of earlier sessions (a resumed run); ``started`` the
    ``time.perf_counter()`` of this session's start.
    """

    generation: int = 0
    env_steps: int = 0
    episodes: int = 0
    best_return: float | None = None
    center_return: float | None = None
    wall_offset: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def wall(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.started)

    def count(self, evaluation: Evaluation) -> tuple[int, int]:
        """Add a told generation's steps, episodes and best return; returns its
        ``(steps, episodes)``."""
        steps = int(np.sum(evaluation.steps))
        n = len(evaluation.returns)
        episodes = int(np.sum(evaluation.episodes)) if evaluation.episodes is not None else n
        self.env_steps += steps
        self.episodes += episodes
        finite = evaluation.returns[np.isfinite(evaluation.returns)]
        if finite.size:
            top = float(finite.max())
            self.best_return = top if self.best_return is None else max(self.best_return, top)
        return steps, episodes


@dataclasses.dataclass
class GenerationRecord:
    """What one generation did.

    Attributes:
        generation: the strategy's generation after ``tell``.
        seeds: the asked seeds.
        distribution: what was evaluated (with the task's context).
        evaluation: the evaluator's result for ``seeds``.
        metrics: what ``tell`` returned.
        steps, episodes: the generation's environment steps and episodes.
        center_returns: the centre's returns (float64, one per planned evaluation), or
            ``None`` when the centre was not evaluated.
        seconds: wall time of the phases ``ask``, ``evaluate``, ``tell``, ``center`` and the
            whole ``generation``.
    """

    generation: int
    seeds: np.ndarray
    distribution: Distribution
    evaluation: Evaluation
    metrics: dict[str, Any]
    steps: int
    episodes: int
    center_returns: np.ndarray | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def center_returns(
    evaluator: Any, task: Any, distribution: Distribution, episodes: int
) -> np.ndarray:
    """The noise-free centre's returns, evaluated through ``evaluator`` with the task's
    :meth:`~asktell.protocol.TaskHooks.center_plan` (float64, one per planned evaluation)."""
    plan = hooks_of(task).center_plan(distribution, int(episodes))
    return np.asarray(evaluator.evaluate(*plan).returns, dtype=np.float64)


class GenerationStep:
    """One generation at a time of ``strategy`` on ``task`` through ``evaluator``.

    Args:
        strategy, evaluator, task: the live pieces (the evaluator built for the task).
        budget: the limits :meth:`stop_reasons` checks.
        progress: counters to continue from (a resumed run), else fresh ones.
        judge_center: the target is judged on the centre's evaluations (the caller
            evaluates the centre), else on the best population return.
        critical: a context-manager factory wrapped around the phases that change the
            strategy or the task (the runner defers Ctrl-C in them).
    """

    def __init__(
        self,
        strategy: Any,
        evaluator: Any,
        task: Any,
        *,
        budget: Budget = Budget(),
        progress: Progress | None = None,
        judge_center: bool = False,
        critical: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
    ):
        self.strategy = strategy
        self.evaluator = evaluator
        self.task = task
        self.hooks = hooks_of(task)
        self.budget = budget
        self.progress = progress if progress is not None else Progress()
        self.progress.generation = int(strategy.generation)
        self.judge_center = judge_center
        self.critical = critical

    def distribution(self) -> Distribution:
        """The strategy's current distribution with the task's context."""
        return self.strategy.distribution.replace(context=dict(self.hooks.context()))

    def center_returns(self, episodes: int) -> np.ndarray:
        """The current centre's returns through the evaluator (see :func:`center_returns`);
        the last value's mean becomes ``progress.center_return``."""
        returns = center_returns(self.evaluator, self.task, self.distribution(), episodes)
        self.progress.center_return = float(returns.mean())
        return returns

    def stop_reasons(self) -> dict[str, str]:
        """The budget limits reached, ``{field: message}`` (empty: keep going)."""
        return self.budget.stop_reasons(self.progress, judge_center=self.judge_center)

    def fraction_done(self) -> float:
        return self.budget.fraction_done(self.progress)

    def __call__(
        self,
        *,
        center_episodes: int | Callable[[GenerationRecord], int] = 0,
        on_told: Callable[[GenerationRecord], None] | None = None,
    ) -> GenerationRecord:
        """Run one generation.

        Args:
            center_episodes: episodes of the centre evaluation after ``tell`` (0: none), or
                a function of the told record that says how many (the caller's schedule).
            on_told: called with the record inside the tell phase's critical section,
                right after ``tell``, ``observe`` and the counters.
        """
        strategy = self.strategy
        t0 = time.perf_counter()
        with self.critical():
            seeds = strategy.ask()
            distribution = self.distribution()
        t1 = time.perf_counter()
        evaluation = self.evaluator.evaluate(distribution, seeds)
        t2 = time.perf_counter()
        with self.critical():
            metrics = strategy.tell(evaluation)
            self.hooks.observe(evaluation)
            steps, episodes = self.progress.count(evaluation)
            self.progress.generation = int(strategy.generation)
            record = GenerationRecord(
                self.progress.generation, seeds, distribution, evaluation, metrics, steps,
                episodes,
            )
            if on_told is not None:
                on_told(record)
        t3 = time.perf_counter()
        episodes_due = center_episodes(record) if callable(center_episodes) else center_episodes
        if episodes_due > 0:
            record.center_returns = self.center_returns(episodes_due)
        t4 = time.perf_counter()
        record.seconds = {
            "ask": t1 - t0,
            "evaluate": t2 - t1,
            "tell": t3 - t2,
            "center": t4 - t3,
            "generation": t4 - t0,
        }
        return record
