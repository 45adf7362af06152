"""A minimal training loop for scripts and benchmarks that do not need the run-config layer.

``train`` runs the same generation step as the runner (:class:`asktell.loop.GenerationStep`):
the task's ``context()`` (frozen normaliser, step cap) goes into each generation's
distribution, ``observe()`` folds the told evaluation back into the task, and the noise-free
centre is evaluated through the evaluator (the task's ``center_plan``) and reported
separately. Its budget has the run file's names: ``generations``, ``env_steps``,
``wall_seconds``, ``target_return``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import ConfigError
from asktell.loop import Budget, GenerationRecord, GenerationStep, center_returns

__all__ = ["train", "TrainResult", "evaluate_center"]

#: keyword arguments of earlier versions -> the budget names shared with run files
_RENAMED = {"max_timesteps": "env_steps", "max_seconds": "wall_seconds", "target": "target_return"}


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        history: one dict per generation: ``generation``, ``env_steps`` (environment steps
            of the population so far), ``seconds``, ``return_mean``/``return_max``/...,
            ``step_cap``, ``failures`` and, on evaluation generations, ``center_return``
            (mean over ``eval_episodes``) and ``center_return_std``.
        center: the final centre.
        env_steps: environment steps used by the population (centre evaluations excluded).
        seconds: wall time.
        solved_at: the history row where ``target_return`` was reached (or ``None``).
        stop_reason: which budget stopped the loop.
    """

    history: list[dict[str, Any]]
    center: np.ndarray
    env_steps: int
    seconds: float
    solved_at: dict[str, Any] | None = None
    stop_reason: str = ""

    @property
    def solved(self) -> bool:
        return self.solved_at is not None

    @property
    def timesteps(self) -> int:
        """Deprecated alias of :attr:`env_steps`."""
        warnings.warn(
            "TrainResult.timesteps is deprecated; use TrainResult.env_steps",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.env_steps

    @property
    def center_returns(self) -> list[tuple[int, float]]:
        """``(env_steps, center_return)`` of every centre evaluation."""
        return [(h["env_steps"], h["center_return"]) for h in self.history if "center_return" in h]


def evaluate_center(
    task: Any, distribution: Distribution, episodes: int, evaluator: Any = None
) -> np.ndarray:
    """Returns of the centre over ``episodes`` episodes.

    With ``evaluator``, the episodes the task plans for its centre
    (:meth:`~asktell.protocol.TaskHooks.center_plan`) run through it, as in :func:`train`;
    otherwise the task's own ``evaluate_center`` runs them one by one.
    """
    if evaluator is None:
        return np.asarray(task.evaluate_center(distribution, episodes), dtype=np.float64)
    return center_returns(evaluator, task, distribution, episodes)


def _budget(limits: dict[str, Any], deprecated: dict[str, Any]) -> Budget:
    """The budget from the new names and their deprecated aliases (which warn)."""
    for old, value in deprecated.items():
        if old == "center_with_evaluator":
            warnings.warn(
                "train(center_with_evaluator=...) is deprecated and has no effect: the centre "
                "is always evaluated through the evaluator, with the task's center_plan",
                DeprecationWarning,
                stacklevel=3,
            )
            continue
        if old not in _RENAMED:
            raise TypeError(f"train() got an unexpected keyword argument {old!r}")
        new = _RENAMED[old]
        warnings.warn(
            f"train({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=3
        )
        if limits[new] is not None:
            raise ConfigError(f"train() got both {new!r} and its deprecated alias {old!r}")
        limits[new] = value
    budget = Budget(**limits)
    if not budget.is_set():
        raise ConfigError(
            "train() needs a budget: generations, env_steps, wall_seconds or target_return"
        )
    return budget


def train(
    task: Any,
    strategy: Any,
    evaluator: Any,
    *,
    generations: int | None = None,
    env_steps: int | None = None,
    wall_seconds: float | None = None,
    target_return: float | None = None,
    eval_every: int = 10,
    eval_episodes: int = 10,
    eval_on_target: bool = True,
    eval_at_end: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **deprecated: Any,
) -> TrainResult:
    """Optimise ``task`` with ``strategy`` through ``evaluator`` until a budget runs out.

    Args:
        task: e.g. a :class:`~asktell.gym.GymTask` (any task works; hooks are optional).
        strategy: any asktell strategy built for ``task.num_params``.
        evaluator: any evaluator built for ``task``; the centre's episodes run through it too.
        generations, env_steps, wall_seconds: stop when any is reached (at least one, or
            ``target_return``, must be given). ``generations`` counts the strategy's own
            generations; ``env_steps`` and ``wall_seconds`` count from this call.
        target_return: stop as solved once the centre's mean return reaches it over
            ``max(eval_episodes, 10)`` episodes and again over as many fresh ones (see
            :class:`~asktell.loop.TargetCheck`); never judged on a candidate's return.
        eval_every: generations between scheduled centre evaluations (0: none scheduled).
        eval_episodes: episodes per centre evaluation (0: never evaluate the centre).
        eval_on_target: also evaluate the centre whenever a candidate's return reaches
            ``target_return``.
        eval_at_end: also evaluate the centre after the last generation of a
            ``generations`` budget.
        callback: called with each history row.

    ``max_timesteps``, ``max_seconds`` and ``target`` are deprecated aliases of
    ``env_steps``, ``wall_seconds`` and ``target_return``; ``center_with_evaluator`` is
    deprecated and ignored.

    Example:
        >>> from asktell.gym import GymTask
        >>> from asktell.evaluators import SerialEvaluator
        >>> from asktell.strategies import OpenAIES
        >>> task = GymTask("CartPole-v1", policy="linear", obs_norm=False)
        >>> es = OpenAIES(task.num_params, population_size=8, sigma=0.1, learning_rate=0.05)
        >>> result = train(task, es, SerialEvaluator(task), generations=2, eval_every=2,
        ...                eval_episodes=2)
        >>> len(result.history), "center_return" in result.history[-1]
        (2, True)
    """
    limits = dict(
        generations=generations,
        env_steps=env_steps,
        wall_seconds=wall_seconds,
        target_return=target_return,
    )
    budget = _budget(limits, deprecated)
    for name, value in (("eval_every", eval_every), ("eval_episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"train() {name!r} must be an int >= 0; got {value!r}")
    schedule = _CenterSchedule(eval_every, eval_episodes, eval_on_target, eval_at_end, budget)
    step = GenerationStep(
        strategy, evaluator, task, budget=budget, judge_center=schedule.judges_center,
        eval_episodes=eval_episodes,
    )
    history, solved_at, reason = _generations(step, schedule, callback)
    return TrainResult(
        history=history,
        center=np.asarray(strategy.center),
        env_steps=step.progress.env_steps,
        seconds=step.progress.wall(),
        solved_at=solved_at,
        stop_reason=reason,
    )


def _generations(step: GenerationStep, schedule: _CenterSchedule, callback: Any):
    """Run generations until a stop reason; returns the history rows, the row where the
    target was reached (or ``None``) and the reason."""
    history: list[dict[str, Any]] = []
    solved_at = None
    reasons: dict[str, str] = {}
    while not reasons:
        record = step(center_episodes=schedule)
        row = _row(record, step)
        history.append(row)
        if callback is not None:
            callback(row)
        reasons = step.stop_reasons()
        if "target_return" in reasons:
            solved_at = row
    return history, solved_at, next(iter(reasons.values()))


class _CenterSchedule:
    """How many centre episodes a generation gets: on schedule (every ``eval_every``), when
    a candidate reaches the target (``eval_on_target``) and after the last generation of a
    ``generations`` budget (``eval_at_end``); 0 otherwise."""

    def __init__(self, eval_every, eval_episodes, eval_on_target, eval_at_end, budget):
        self.every, self.episodes = eval_every, eval_episodes
        self.on_target, self.at_end, self.budget = eval_on_target, eval_at_end, budget

    @property
    def judges_center(self) -> bool:
        """Whether the target is judged on the centre (some centre evaluation happens)."""
        return self.episodes >= 1 and (
            self.every > 0 or (self.on_target and self.budget.target_return is not None)
        )

    def __call__(self, record: GenerationRecord) -> int:
        if self.episodes < 1:
            return 0
        target, last_generation = self.budget.target_return, self.budget.generations
        scheduled = self.every > 0 and record.generation % self.every == 0
        finite = record.evaluation.returns[np.isfinite(record.evaluation.returns)]
        triggered = (
            self.on_target and target is not None and finite.size > 0 and finite.max() >= target
        )
        last = self.at_end and last_generation is not None and record.generation >= last_generation
        return self.episodes if scheduled or triggered or last else 0


def _row(record: GenerationRecord, step: GenerationStep) -> dict[str, Any]:
    row: dict[str, Any] = {
        "generation": record.generation,
        "env_steps": step.progress.env_steps,
        "failures": len(record.evaluation.failures),
    }
    row.update({k: v for k, v in record.metrics.items() if k.startswith("return_")})
    cap = (record.distribution.context or {}).get("step_cap")
    if cap is not None:
        row["step_cap"] = int(cap)
    if record.center_returns is not None:
        row["center_return"] = float(np.mean(record.center_returns))
        row["center_return_std"] = float(np.std(record.center_returns))
    if record.target is not None:
        row.update(record.target.row())
    row["seconds"] = step.progress.wall()
    return row
