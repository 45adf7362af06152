"""The run loop: ask -> evaluate -> tell, with budgets, logs, centre evaluations and checkpoints.

:func:`run` starts a run from a :class:`~asktell.config.RunConfig` (or a run file) and
:func:`resume` continues one from its run directory exactly as if it had never stopped: the
strategy (centre, optimiser moments, RNG), the task's state (observation normaliser), the
counters and the log are restored from the newest checkpoint, so a deterministic task gives
bitwise the same centre as an uninterrupted run.

A run directory holds:

* ``config.toml``: the resolved configuration (every default filled in);
* ``log.jsonl``: one JSON object per generation (see :data:`LOG_FIELDS`);
* ``checkpoints/gen-NNNNNN.{json,npz}``: see :mod:`asktell.checkpoint`.

Ctrl-C: the state is only mutated inside short critical sections during which SIGINT is
deferred; an interrupt elsewhere writes a checkpoint of the last consistent state (or leaves
the previous one untouched) and re-raises, and ``asktell resume`` continues.

Example:
    >>> import tempfile
    >>> from asktell.config import config_from_dict
    >>> from asktell.runner import run
    >>> cfg = config_from_dict({
    ...     "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1,
    ...                  "learning_rate": 0.1},
    ...     "task": {"kind": "function", "name": "sphere", "num_params": 3, "shift": 1.0},
    ...     "noise": {"size": 4096},
    ...     "budget": {"generations": 20},
    ...     "output": {"log_format": "none"},
    ... })
    >>> result = run(cfg, out=tempfile.mkdtemp())
    >>> result.generation, result.stop_reason
    (20, 'generations budget reached (20)')
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asktell import config as _config
from asktell._files import atomic_write_bytes, fsync_dir
from asktell._interrupts import DeferredInterrupts
from asktell._progress import Display, make_display
from asktell.checkpoint import (
    checkpoint_name,
    discard_newer,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from asktell.config import Built, config_from_dict, diff_protected, load_config
from asktell.errors import CheckpointError, ConfigError
from asktell.runlog import LOG_FIELDS, LOG_FILE, TIMING_FIELDS, jsonable, read_log

__all__ = ["run", "resume", "RunResult", "Runner", "read_log", "TIMING_FIELDS", "LOG_FIELDS"]

CONFIG_FILE = "config.toml"


@dataclasses.dataclass
class RunResult:
    """What a run ended with.

    Attributes:
        run_dir: the run directory (config, log, checkpoints).
        center: the final centre (the trained parameters).
        generation: generations completed.
        env_steps: environment steps used by candidates.
        episodes: episodes run by candidates.
        wall_seconds: wall time over all sessions.
        best_return: the best population return seen.
        center_return: the last centre evaluation's mean return (None if never evaluated).
        stop_reason: which budget stopped the run (or the callback).
        checkpoint: the last checkpoint written.
    """

    run_dir: Path
    center: np.ndarray
    generation: int
    env_steps: int
    episodes: int
    wall_seconds: float
    best_return: float | None
    center_return: float | None
    stop_reason: str
    checkpoint: Path | None


class Runner:
    """One run's loop. Use :func:`run` / :func:`resume` unless you need the pieces."""

    def __init__(
        self,
        config: Any,
        run_dir: Path,
        built: Built,
        *,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        display: Display | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.built = built
        self.callback = callback
        self.display = display or make_display(config.output.log_format)
        self.env_steps = 0
        self.episodes = 0
        self.best_return: float | None = None
        self.center_return: float | None = None
        self.best_center_return: float | None = None
        self.best_center: np.ndarray | None = None
        self.log_bytes = 0
        self.last_checkpoint: Path | None = None
        # True when the in-memory state is one a checkpoint may capture: between generations,
        # or asked and waiting for returns. False from tell() until the row is logged.
        self._consistent = True
        self._session_start = time.perf_counter()
        self._wall_at_start = 0.0

    # ------------------------------------------------------------------ state
    @property
    def generation(self) -> int:
        return int(self.built.strategy.generation)

    def _task_state(self) -> Any:
        hook = getattr(self.built.task, "state_dict", None)
        return hook() if hook is not None else None

    def state(self) -> dict[str, Any]:
        return {
            "strategy": self.built.strategy.state_dict(),
            "task": self._task_state(),
            "runner": {
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "wall_seconds": self._wall(),
                "best_return": self.best_return,
                "center_return": self.center_return,
                "best_center_return": self.best_center_return,
                "best_center": self.best_center,
                "log_bytes": self.log_bytes,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.built.strategy.load_state_dict(state["strategy"])
        task_state = state.get("task")
        if task_state is not None:
            hook = getattr(self.built.task, "load_state_dict", None)
            if hook is None:
                raise CheckpointError(
                    "the checkpoint holds task state but this task has no load_state_dict()"
                )
            hook(task_state)
        r = state["runner"]
        self.env_steps = int(r["env_steps"])
        self.episodes = int(r["episodes"])
        self._wall_at_start = float(r["wall_seconds"])
        self.best_return = r.get("best_return")
        self.center_return = r.get("center_return")
        self.best_center_return = r.get("best_center_return")
        bc = r.get("best_center")
        self.best_center = None if bc is None else np.asarray(bc, dtype=np.float64)
        self.log_bytes = int(r["log_bytes"])

    def _wall(self) -> float:
        return self._wall_at_start + (time.perf_counter() - self._session_start)

    # ------------------------------------------------------------------ budget
    def fraction_done(self) -> float:
        b = self.config.budget
        parts = [0.0]
        if b.generations:
            parts.append(self.generation / b.generations)
        if b.env_steps:
            parts.append(self.env_steps / b.env_steps)
        if b.wall_seconds:
            parts.append(self._wall() / b.wall_seconds)
        return min(max(parts), 1.0)

    def stop_reason(self) -> str | None:
        b = self.config.budget
        if b.generations is not None and self.generation >= b.generations:
            return f"generations budget reached ({b.generations})"
        if b.env_steps is not None and self.env_steps >= b.env_steps:
            return f"env_steps budget reached ({self.env_steps} >= {b.env_steps})"
        if b.wall_seconds is not None and self._wall() >= b.wall_seconds:
            return f"wall_seconds budget reached ({b.wall_seconds:g} s)"
        if b.target_return is not None:
            if self._evaluates_center():
                value, what = self.center_return, "centre return"
            else:
                value, what = self.best_return, "best population return"
            if value is not None and value >= b.target_return:
                return f"target_return reached ({what} {value:.6g} >= {b.target_return:g})"
        return None

    def _evaluates_center(self) -> bool:
        return self.config.output.eval_every > 0 and hasattr(self.built.task, "evaluate_center")

    # ------------------------------------------------------------------ files
    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def _open_log(self) -> Any:
        # Rows written after the checkpoint we resumed from are dropped: the run redoes them.
        if self.log_path.exists() and self.log_path.stat().st_size > self.log_bytes:
            with open(self.log_path, "r+b") as fh:
                fh.truncate(self.log_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        return open(self.log_path, "ab")

    def checkpoint(self, asked: bool = False) -> Path:
        name = checkpoint_name(self.generation, asked)
        existing = self.run_dir / "checkpoints" / f"{name}.json"
        if existing.exists() and self.last_checkpoint == existing:
            return existing
        meta = {
            "generation": self.generation,
            "asked": asked,
            "config": self.config.model_dump(mode="json"),
        }
        self.last_checkpoint = save_checkpoint(self.run_dir, name, self.state(), meta)
        prune_checkpoints(self.run_dir, self.config.output.keep_checkpoints)
        return self.last_checkpoint

    # ------------------------------------------------------------------ loop
    def _distribution(self) -> Any:
        dist = self.built.strategy.distribution
        context = getattr(self.built.task, "context", None)
        if context is not None:
            dist = dist.replace(context=dict(context()))
        return dist

    def run(self) -> RunResult:
        """Run until a budget is reached (or the callback returns True)."""
        strategy = self.built.strategy
        self._session_start = time.perf_counter()
        reason = self.stop_reason()
        title = (
            f"asktell: {self.config.strategy.kind} on {self.config.task.kind}, run directory "
            f"{self.run_dir}" + (f" (resuming at generation {self.generation})" if self.generation else "")
        )
        self.display.start(self.fraction_done(), title)
        log = self._open_log()
        interrupts = DeferredInterrupts()
        try:
            with interrupts:
                try:
                    while reason is None:
                        reason = self._generation(log, interrupts)
                    with interrupts.critical():
                        os.fsync(log.fileno())
                        self.checkpoint()
                except KeyboardInterrupt:
                    self._on_interrupt(log, interrupts)
                    raise
        finally:
            log.close()
            self.display.stop()
        self.display.message(f"stopped: {reason}; run directory {self.run_dir}")
        return RunResult(
            run_dir=self.run_dir,
            center=np.asarray(strategy.center, dtype=np.float64),
            generation=self.generation,
            env_steps=self.env_steps,
            episodes=self.episodes,
            wall_seconds=self._wall(),
            best_return=self.best_return,
            center_return=self.center_return,
            stop_reason=reason,
            checkpoint=self.last_checkpoint,
        )

    def _generation(self, log: Any, interrupts: DeferredInterrupts) -> str | None:
        """One ask -> evaluate -> tell step; returns why to stop, or None."""
        strategy, task = self.built.strategy, self.built.task
        out = self.config.output
        t0 = time.perf_counter()
        with interrupts.critical():
            seeds = strategy.ask()
            dist = self._distribution()
        t1 = time.perf_counter()
        evaluation = self.built.evaluator.evaluate(dist, seeds)
        t2 = time.perf_counter()
        with interrupts.critical():
            self._consistent = False
            metrics = strategy.tell(evaluation)
            observe = getattr(task, "observe", None)
            if observe is not None:
                observe(evaluation)
            row = self._count(evaluation, metrics)
        t3 = time.perf_counter()
        center = None
        if self._evaluates_center() and self.generation % out.eval_every == 0:
            center = np.asarray(
                task.evaluate_center(self._distribution(), out.eval_episodes), dtype=np.float64
            )
        t4 = time.perf_counter()
        with interrupts.critical():
            self._add_center(row, center, evaluation)
            row.update(
                seconds_ask=t1 - t0,
                seconds_evaluate=t2 - t1,
                seconds_tell=t3 - t2,
                seconds_center=t4 - t3,
                seconds_generation=t4 - t0,
                wall_seconds=self._wall(),
                time=time.time(),
            )
            row = {k: jsonable(v) for k, v in row.items()}
            log.write((json.dumps(row, allow_nan=False) + "\n").encode("utf-8"))
            log.flush()
            self.log_bytes = log.tell()
            self._consistent = True
            reason = self.stop_reason()
            if reason is not None or self.generation % out.checkpoint_every == 0:
                os.fsync(log.fileno())
                self.checkpoint()
        self.display.update(row, self.fraction_done())
        if self.callback is not None and self.callback(row) is True:
            reason = "stopped by callback"
        return reason

    def _on_interrupt(self, log: Any, interrupts: DeferredInterrupts) -> None:
        if not self._consistent:
            self.display.message(
                "interrupted mid-generation; the previous checkpoint is untouched; "
                f"continue with: asktell resume {self.run_dir}"
            )
            return
        with interrupts.critical():
            os.fsync(log.fileno())
            self.checkpoint(asked=bool(getattr(self.built.strategy, "pending", False)))
        self.display.message(
            f"interrupted; checkpoint of generation {self.generation} in "
            f"{self.last_checkpoint}; continue with: asktell resume {self.run_dir}"
        )

    def _count(self, evaluation: Any, metrics: dict[str, Any]) -> dict[str, Any]:
        n = len(evaluation.returns)
        steps = int(np.sum(evaluation.steps))
        episodes = int(np.sum(evaluation.episodes)) if evaluation.episodes is not None else n
        self.env_steps += steps
        self.episodes += episodes
        finite = evaluation.returns[np.isfinite(evaluation.returns)]
        if finite.size:
            top = float(finite.max())
            self.best_return = top if self.best_return is None else max(self.best_return, top)
        row: dict[str, Any] = {
            "generation": self.generation,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "generation_steps": steps,
            "generation_episodes": episodes,
            "episode_length_mean": steps / episodes if episodes else None,
            "best_return": self.best_return,
            "num_failed": len(evaluation.failures),
            "fraction_truncated": (
                float(np.sum(evaluation.truncated)) / episodes
                if evaluation.truncated is not None and episodes
                else None
            ),
            "obs_count": (
                float(evaluation.obs_stats.count) if evaluation.obs_stats is not None else None
            ),
        }
        for key, value in metrics.items():
            if key != "generation" and np.ndim(value) == 0:
                row[key] = value
        return row

    def _add_center(self, row: dict[str, Any], center: np.ndarray | None, evaluation: Any) -> None:
        if center is None:
            return
        mean = float(center.mean())
        row["center_return_mean"] = mean
        row["center_return_std"] = float(center.std())
        finite = evaluation.returns[np.isfinite(evaluation.returns)]
        row["center_rank"] = float(np.mean(finite < mean)) if finite.size else None
        self.center_return = mean
        if self.best_center_return is None or mean > self.best_center_return:
            self.best_center_return = mean
            self.best_center = np.asarray(self.built.strategy.center, dtype=np.float64)


# --------------------------------------------------------------------------- entry points
def _as_config(config: Any, overrides: list[str]) -> Any:
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    if isinstance(config, dict):
        return config_from_dict(config, overrides)
    if isinstance(config, _config.RunConfig):
        if overrides:
            return config_from_dict(config.model_dump(mode="json"), overrides)
        return config
    raise ConfigError(
        f"run() expects a RunConfig, a dict or a run-file path; got {type(config).__name__}"
    )


def _default_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config.strategy.kind}-{config.task.kind}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def _write_config(run_dir: Path, config: Any) -> None:
    atomic_write_bytes(run_dir / CONFIG_FILE, config.to_toml().encode("utf-8"))


def run(
    config: Any,
    *,
    out: str | os.PathLike | None = None,
    overrides: list[str] = (),
    callback: Callable[[dict[str, Any]], Any] | None = None,
    log_format: str | None = None,
) -> RunResult:
    """Start a run and return when a budget is reached.

    Args:
        config: a :class:`~asktell.config.RunConfig`, a dict, or a path to a run file.
        out: the run directory (default: ``output.dir``, else ``runs/<strategy>-<task>-<time>``).
            It must not already hold a run.
        overrides: ``KEY=VALUE`` strings applied before validation (``strategy.sigma=0.05``).
        callback: called with each generation's log row; returning ``True`` stops the run.
        log_format: overrides ``output.log_format`` (``"none"`` for silence).
    """
    cfg = _as_config(config, list(overrides))
    if log_format is not None:
        cfg = config_from_dict(cfg.model_dump(mode="json"), [f"output.log_format={log_format}"])
    run_dir = Path(out) if out is not None else (
        Path(cfg.output.dir) if cfg.output.dir else _default_run_dir(cfg)
    )
    if (run_dir / LOG_FILE).exists() or list_checkpoints(run_dir):
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; continue it with "
            f"`asktell resume {run_dir}` or choose another directory (--out)"
        )
    cfg = config_from_dict(cfg.model_dump(mode="json"), [f"output.dir={json.dumps(str(run_dir))}"])
    with cfg.build() as built:  # everything is validated and built before the directory exists
        run_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(run_dir.parent)
        _write_config(run_dir, cfg)
        (run_dir / LOG_FILE).touch()
        return Runner(cfg, run_dir, built, callback=callback).run()


def resume(
    run_dir: str | os.PathLike,
    *,
    overrides: list[str] = (),
    callback: Callable[[dict[str, Any]], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_format: str | None = None,
) -> RunResult:
    """Continue a run from its newest checkpoint (or ``checkpoint``), as if never stopped.

    The configuration is the run directory's ``config.toml`` (which you may edit) plus
    ``overrides``; operational sections (evaluator, budget, output) may change, but a change
    to strategy, task, noise or seed is rejected, listing the differing fields.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    ckpt = load_checkpoint(checkpoint if checkpoint is not None else run_dir)
    saved = ckpt.config
    config_file = run_dir / CONFIG_FILE
    overrides = list(overrides)
    if log_format is not None:
        overrides.append(f"output.log_format={log_format}")
    if config_file.is_file():
        cfg = load_config(config_file, overrides)
    else:
        cfg = config_from_dict(saved, overrides, source="run config from the checkpoint")
    cfg = config_from_dict(cfg.model_dump(mode="json"), [f"output.dir={json.dumps(str(run_dir))}"])
    # Compare the checkpoint's config as this version reads it, so keys that older files
    # spell differently (a renamed option) are not mistaken for a change.
    saved = config_from_dict(saved, source="run config from the checkpoint").model_dump(mode="json")
    changed = diff_protected(saved, cfg.model_dump(mode="json"))
    if changed:
        raise ConfigError(
            f"cannot resume {str(run_dir)!r} with a different strategy, task, noise or seed; "
            "start a new run instead. Differences:\n  " + "\n  ".join(changed)
        )
    with cfg.build() as built:
        runner = Runner(cfg, run_dir, built, callback=callback)
        runner.load_state(ckpt.state)
        runner.last_checkpoint = ckpt.path
        discard_newer(run_dir, ckpt.path)  # a resumed run rewrites the generations after it
        _write_config(run_dir, cfg)
        return runner.run()
