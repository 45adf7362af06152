"""One generation of ask -> evaluate -> tell, shared by the runner, ``gym.train`` and ``minimize``.

A :class:`GenerationStep` runs one generation the same way for every caller:

1. ``ask`` the strategy and build the generation's distribution with the task's
   ``context()`` (frozen observation statistics, the step cap);
2. ``evaluate`` the seeds through the evaluator (with ``partial=True`` for an evaluator
   declaring the ``partial_evaluation`` capability: a straggler-tolerant one may then close
   the generation early and mark the rest ``dropped``; centre evaluations are always whole);
3. ``tell`` the strategy, then ``observe`` the evaluation (the task folds in its statistics),
   and count the told candidates' environment steps and episodes in :class:`Progress`;
4. optionally evaluate the noise-free centre **through the same evaluator**, with the plan
   the task gives (:meth:`~asktell.protocol.TaskHooks.center_plan`); these evaluations are
   neither counted in ``env_steps`` nor observed.

It returns a :class:`GenerationRecord`. The stop check is :meth:`GenerationStep.stop_reasons`
over a :class:`Budget`, whose names are the run file's (``generations``, ``env_steps``,
``wall_seconds``, ``target_return``). Task hooks are reached through
:func:`~asktell.protocol.hooks_of`, never probed.

**Targets mean solved.** ``target_return`` is never judged on a candidate's return (the best
of a population is the luckiest draw, not the policy). When this generation's centre
evaluation reaches the target (or, for a caller that schedules none, a candidate does), the
step runs a :class:`TargetCheck`: the centre's mean over ``target_episodes`` episodes of the
centre stream (the scheduled evaluation's own when it has that many), then, if that reaches
the target, again over ``target_episodes`` *fresh* episodes: a Gym task's centre plan resets its episodes with
seeds of the centre stream keyed by the generation and the episode number, and the
confirmation keys them by the generation plus :data:`CONFIRM_STREAM`, a number no run's
generation reaches, so no scheduled evaluation ever draws those episodes. Only a confirmed check stops the run as solved; a failed one is recorded and the run
goes on.

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

(Just past 400 lines: the budget, the progress counters and the step's phases are one idea,
the generation step; the target check lives in :mod:`asktell.targets`.)
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
from asktell.targets import CONFIRM_STREAM, FRESH_STREAM, TargetCheck

__all__ = [
    "Budget",
    "Progress",
    "GenerationRecord",
    "GenerationStep",
    "TargetCheck",
    "center_returns",
    "CONFIRM_STREAM",
    "FRESH_STREAM",
    "MIN_TARGET_EPISODES",
]

#: The fewest episodes a target is judged on when ``target_episodes`` is not given.
MIN_TARGET_EPISODES = 10


@dataclasses.dataclass(frozen=True)
class Budget:
    """When to stop: whichever limit is reached first (``None``: no limit of that kind).

    Attributes:
        generations: generations of the strategy (its own counter, so a trained strategy
            handed in again counts from where it is).
        env_steps: environment steps of the candidates (function evaluations for functions);
            centre evaluations are not counted.
        wall_seconds: wall-clock seconds.
        target_return: a return the centre must reach to stop the run as solved: its mean
            over ``target_episodes`` episodes, confirmed on as many fresh ones (see
            :class:`TargetCheck`). Never judged on a candidate's return.
        target_episodes: episodes of the centre a target is judged on, and again confirmed
            on (``None``: the caller's centre-evaluation episodes, at least
            :data:`MIN_TARGET_EPISODES`).
    """

    generations: int | None = None
    env_steps: int | None = None
    wall_seconds: float | None = None
    target_return: float | None = None
    target_episodes: int | None = None

    @classmethod
    def of(cls, config: Any) -> Budget:
        """The budget of a :class:`~asktell.config.BudgetConfig` (same field names)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def is_set(self) -> bool:
        return any(
            getattr(self, name) is not None
            for name in ("generations", "env_steps", "wall_seconds", "target_return")
        )

    def episodes_for_target(self, eval_episodes: int = 0) -> int:
        """Episodes a target check judges (and confirms) the centre on."""
        if self.target_episodes is not None:
            return int(self.target_episodes)
        return max(int(eval_episodes), MIN_TARGET_EPISODES)

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

    def stop_reasons(self, progress: Progress) -> dict[str, str]:
        """The limits reached, ``{field: message}`` (empty: keep going): a confirmed target
        first, so a run solved on the generation its budget ends says it was solved; then
        the budgets in field order.

        The target counts only once a :class:`TargetCheck` confirmed it
        (``progress.solved``) for a target at least this high.
        """
        out: dict[str, str] = {}
        solved = progress.solved
        # A check against a lower target (a resumed run whose target was raised) does not count.
        if self.target_return is not None and solved is not None and (
            solved.target >= self.target_return
        ):
            out["target_return"] = solved.message()
        if self.generations is not None and progress.generation >= self.generations:
            out["generations"] = f"generations budget reached ({self.generations})"
        if self.env_steps is not None and progress.env_steps >= self.env_steps:
            out["env_steps"] = (
                f"env_steps budget reached ({progress.env_steps} >= {self.env_steps})"
            )
        if self.wall_seconds is not None and progress.wall() >= self.wall_seconds:
            out["wall_seconds"] = f"wall_seconds budget reached ({self.wall_seconds:g} s)"
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
    solved: TargetCheck | None = None
    wall_offset: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def wall(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.started)

    def count(self, evaluation: Evaluation) -> tuple[int, int]:
        """Add a told generation's steps, episodes and best return; returns its
        ``(steps, episodes)``."""
        # Dropped candidates (a straggler-tolerant generation closed without them) hold 0
        # steps and 0 episodes: only the told candidates count.
        steps = int(np.sum(evaluation.steps))
        n = int(evaluation.told_mask.sum())
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
        target: the generation's :class:`TargetCheck`, or ``None`` when none ran.
        judged_returns: the centre's returns the target check judged (the scheduled ones
            and the rest of its episodes, same stream), or ``None`` when no check ran on a
            scheduled evaluation: the larger measurement of the same centre.
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
    target: TargetCheck | None = None
    judged_returns: np.ndarray | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def center_returns(
    evaluator: Any, task: Any, distribution: Distribution, episodes: int, stream: int = 0
) -> np.ndarray:
    """The noise-free centre's returns, evaluated through ``evaluator`` with the task's
    :meth:`~asktell.protocol.TaskHooks.center_plan` (float64, one per planned evaluation).

    ``stream``: added to the generation that keys the episodes (a Gym task resets centre
    episode ``k`` with a seed of its centre stream keyed by the generation and ``k``): 0
    for scheduled evaluations, :data:`CONFIRM_STREAM` for a target confirmation,
    :data:`FRESH_STREAM` for checks after a run, so each draws episodes the others never
    use. Only the episodes change: the parameters and the normaliser are the same.
    """
    if stream:
        distribution = distribution.replace(generation=distribution.generation + int(stream))
    plan = hooks_of(task).center_plan(distribution, int(episodes))
    return np.asarray(evaluator.evaluate(*plan).returns, dtype=np.float64)


class GenerationStep:
    """One generation at a time of ``strategy`` on ``task`` through ``evaluator``.

    Args:
        strategy, evaluator, task: the live pieces (the evaluator built for the task).
        budget: the limits :meth:`stop_reasons` checks.
        progress: counters to continue from (a resumed run), else fresh ones.
        judge_center: the caller schedules centre evaluations: a target check runs when
            one reaches ``budget.target_return``. Otherwise a check runs when a candidate
            of the generation reaches it (a hint only: the check judges the centre).
        eval_episodes: the caller's episodes per centre evaluation (the default number of
            episodes of a target check, see :meth:`Budget.episodes_for_target`).
        confirm: confirm a reached target on fresh episodes (``False`` only for a
            deterministic task, where the confirmation would repeat the same value).
        critical: a context-manager factory wrapped around the phases that change the
            strategy or the task (the runner defers Ctrl-C in them).
        stop_rules: act on the strategy's stopping rules (``strategy.stop()``, checked
            between generations; the reason is ``strategy stopped: <rule> (<why>)``);
            ``None``: the strategy's own ``stop_rules`` setting.
        on_progress: called with ``(candidates done, population)`` during a generation's
            evaluation by evaluators that declare the ``progress`` capability (they take an
            ``on_progress`` keyword); others are called as before.
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
        eval_episodes: int = 0,
        confirm: bool = True,
        critical: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
        stop_rules: bool | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ):
        self.strategy = strategy
        self.evaluator = evaluator
        self.task = task
        self.hooks = hooks_of(task)
        self.budget = budget
        self.progress = progress if progress is not None else Progress()
        self.progress.generation = int(strategy.generation)
        self.judge_center = judge_center
        self.target_episodes = budget.episodes_for_target(eval_episodes)
        self.confirm = confirm
        self.critical = critical
        if stop_rules is None:
            stop_rules = bool(getattr(strategy, "stop_rules", False))
        # A strategy without stop() (a protocol-only one) has no rules to act on.
        self.stop_rules = stop_rules and callable(getattr(strategy, "stop", None))
        self.on_progress = on_progress
        if "remote_tell" in getattr(evaluator, "capabilities", ()):
            # a distributed tell (docs/distributed-tell.md): the evaluator lends the strategy
            # its noise-sum hook, here, so a resumed run gets it again
            evaluator.lend_noise_sum(strategy)

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
        """The budget limits reached, ``{field: message}`` (empty: keep going), then, when
        ``stop_rules`` is on, the strategy's fired rules as one ``"strategy"`` entry."""
        out = self.budget.stop_reasons(self.progress)
        if self.stop_rules and not getattr(self.strategy, "pending", False):
            fired = self.strategy.stop()
            if fired:
                out["strategy"] = "strategy stopped: " + "; ".join(
                    f"{name} ({why})" for name, why in fired.items()
                )
        return out

    def check_target(self, record: GenerationRecord) -> TargetCheck | None:
        """The generation's :class:`TargetCheck`, or ``None`` when nothing triggers one:
        the scheduled centre evaluation (``judge_center``), else the generation's best
        candidate, falling short of the target. A solved check becomes
        ``progress.solved``."""
        target = self.budget.target_return
        if target is None:
            return None
        if record.center_returns is not None:
            hint = float(np.mean(record.center_returns))
        elif self.judge_center:
            return None
        else:
            finite = record.evaluation.returns[np.isfinite(record.evaluation.returns)]
            hint = float(finite.max()) if finite.size else -np.inf
        if not hint >= target:
            return None
        n, distribution = self.target_episodes, self.distribution()
        # The scheduled evaluation ran the plan's first episodes: run only the rest (a
        # deterministic task's plan is one evaluation whatever ``n``: count what ran).
        have = record.center_returns if record.center_returns is not None else np.empty(0)
        plan, seeds = self.hooks.center_plan(distribution, n)
        if have.size < seeds.size:
            rest = self.evaluator.evaluate(plan, seeds[have.size:]).returns
            have = np.concatenate([have, np.asarray(rest, dtype=np.float64)])
        judged_returns = have[: seeds.size]
        if record.center_returns is not None:
            record.judged_returns = judged_returns
        judged = float(np.mean(judged_returns))
        confirmed = None
        if judged >= target and self.confirm:
            confirmed = float(np.mean(center_returns(
                self.evaluator, self.task, distribution, n, stream=CONFIRM_STREAM
            )))
        check = TargetCheck(
            record.generation, float(target), int(judged_returns.size), judged, confirmed,
            self.confirm,
        )
        if check.solved:
            self.progress.solved = check
        return check

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
        capabilities = getattr(self.evaluator, "capabilities", ())
        options: dict[str, Any] = {}
        if self.on_progress is not None and "progress" in capabilities:
            options["on_progress"] = self.on_progress
        if "partial_evaluation" in capabilities:
            # a generation (never a centre evaluation) may close on a quorum
            options["partial"] = True
        evaluation = self.evaluator.evaluate(distribution, seeds, **options)
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
        record.target = self.check_target(record)
        t4 = time.perf_counter()
        record.seconds = {
            "ask": t1 - t0,
            "evaluate": t2 - t1,
            "tell": t3 - t2,
            "center": t4 - t3,
            "generation": t4 - t0,
        }
        return record
