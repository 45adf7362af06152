"""A minimal training loop for scripts and benchmarks that do not need the run-config layer.

``train`` runs ask -> evaluate -> tell with the task hooks applied as the runner applies
them: the task's ``context()`` (frozen normaliser, step cap) goes into each generation's
distribution, ``observe()`` folds the evaluation back into the task, and the noise-free
centre is evaluated every ``eval_every`` generations and reported separately.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import ConfigError

__all__ = ["train", "TrainResult", "evaluate_center"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        history: one dict per generation: ``generation``, ``timesteps`` (environment steps
            of the population so far), ``seconds``, ``return_mean``/``return_max``/...,
            ``step_cap``, ``failures`` and, on evaluation generations, ``center_return``
            (mean over ``eval_episodes``) and ``center_return_std``.
        center: the final centre.
        timesteps: environment steps used by the population (centre evaluations excluded).
        seconds: wall time.
        solved_at: the history row where the centre first reached ``target`` (or ``None``).
    """

    history: list[dict[str, Any]]
    center: np.ndarray
    timesteps: int
    seconds: float
    solved_at: dict[str, Any] | None = None

    @property
    def solved(self) -> bool:
        return self.solved_at is not None

    @property
    def center_returns(self) -> list[tuple[int, float]]:
        """``(timesteps, center_return)`` of every centre evaluation."""
        return [(h["timesteps"], h["center_return"]) for h in self.history if "center_return" in h]


def _with_context(task: Any, distribution: Distribution) -> Distribution:
    context = task.context() if hasattr(task, "context") else None
    return distribution.replace(context=context) if context else distribution


def evaluate_center(
    task: Any, distribution: Distribution, episodes: int, evaluator: Any = None
) -> np.ndarray:
    """Returns of the centre over ``episodes`` episodes.

    With ``evaluator``, the episodes run through it (a zero-sigma copy of the distribution,
    one candidate per episode), which is faster for vectorised evaluators; otherwise the
    task's own ``evaluate_center`` runs them one by one.
    """
    if evaluator is None:
        return np.asarray(task.evaluate_center(distribution, episodes), dtype=np.float64)
    point = distribution.replace(sigma=0.0, factor=None)
    keys = np.arange(episodes, dtype=np.int64)
    return evaluator.evaluate(point, keys).returns


def train(
    task: Any,
    strategy: Any,
    evaluator: Any,
    *,
    generations: int | None = None,
    max_timesteps: int | None = None,
    max_seconds: float | None = None,
    target: float | None = None,
    eval_every: int = 10,
    eval_episodes: int = 10,
    center_with_evaluator: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Optimise ``task`` with ``strategy`` through ``evaluator`` until a budget runs out.

    Args:
        task: e.g. a :class:`~asktell.gym.GymTask` (any task works; hooks are optional).
        strategy: any asktell strategy built for ``task.num_params``.
        evaluator: any evaluator built for ``task``.
        generations, max_timesteps, max_seconds: stop when any is reached (at least one,
            or ``target``, must be given).
        target: stop once the centre's mean return over ``eval_episodes`` reaches it. The
            centre is evaluated every ``eval_every`` generations and, with a target, also
            whenever a candidate's return reaches the target.
        eval_every: generations between centre evaluations (0: only when triggered).
        eval_episodes: episodes per centre evaluation.
        center_with_evaluator: run centre episodes through ``evaluator`` (see
            :func:`evaluate_center`).
        callback: called with each history row.

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
    if generations is None and max_timesteps is None and max_seconds is None and target is None:
        raise ConfigError(
            "train() needs a budget: generations, max_timesteps, max_seconds or target"
        )
    if eval_every < 0:
        raise ConfigError(f"train() 'eval_every' must be >= 0; got {eval_every}")
    if target is not None and eval_every == 0 and eval_episodes < 1:
        raise ConfigError("train() with a target needs eval_episodes >= 1")
    history: list[dict[str, Any]] = []
    timesteps = 0
    solved_at = None
    start = time.perf_counter()
    center_evaluator = evaluator if center_with_evaluator else None
    while True:
        seeds = strategy.ask()
        distribution = _with_context(task, strategy.distribution)
        evaluation = evaluator.evaluate(distribution, seeds)
        if hasattr(task, "observe"):
            task.observe(evaluation)
        metrics = strategy.tell(evaluation)
        timesteps += evaluation.total_steps
        row: dict[str, Any] = {
            "generation": int(strategy.generation),
            "timesteps": int(timesteps),
            "failures": len(evaluation.failures),
        }
        row.update({k: v for k, v in metrics.items() if k.startswith("return_")})
        cap = (distribution.context or {}).get("step_cap")
        if cap is not None:
            row["step_cap"] = int(cap)
        due = eval_every and strategy.generation % eval_every == 0
        triggered = target is not None and metrics.get("return_max", -np.inf) >= target
        last = generations is not None and strategy.generation >= generations
        if (due or triggered or last) and eval_episodes >= 1:
            center = evaluate_center(
                task, _with_context(task, strategy.distribution), eval_episodes, center_evaluator
            )
            row["center_return"] = float(np.mean(center))
            row["center_return_std"] = float(np.std(center))
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if callback is not None:
            callback(row)
        if target is not None and row.get("center_return", -np.inf) >= target:
            solved_at = row
            break
        if last:
            break
        if max_timesteps is not None and timesteps >= max_timesteps:
            break
        if max_seconds is not None and row["seconds"] >= max_seconds:
            break
    return TrainResult(
        history=history,
        center=np.asarray(strategy.center),
        timesteps=timesteps,
        seconds=time.perf_counter() - start,
        solved_at=solved_at,
    )
