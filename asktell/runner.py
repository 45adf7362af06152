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

Ctrl-C, SIGTERM and SIGHUP: the state is only mutated inside short critical sections during
which these signals are deferred; a signal elsewhere writes a checkpoint of the last consistent
state (or leaves the previous one untouched) and re-raises (an
:class:`~asktell._interrupts.Interrupted`, a ``KeyboardInterrupt``), and ``asktell resume``
continues.

The life cycle of a run directory: ``run`` and ``resume`` hold its lock
(:class:`~asktell._lock.RunLock`) for the whole run, so a second process is refused naming
the holder; a run that died before its first checkpoint is started again at generation 0 by
``resume`` from its saved ``config.toml``; ``resume`` checks ``log.jsonl`` against the
checkpoint (:func:`~asktell.runlog.verify_log`) and refuses a log that does not match.

(Over 400 lines: the Runner and the two entry points that set up its state share private
details of the checkpoint's runner state; the directory checks live in
:mod:`asktell._rundir`, the log's format in :mod:`asktell.runlog`.)

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

from asktell._files import fsync_dir
from asktell._interrupts import DeferredInterrupts
from asktell._lock import LOCK_FILE, RunLock
from asktell._progress import Display, make_display
from asktell._rundir import (
    CONFIG_FILE,
    as_config,
    check_out,
    checked_log,
    default_run_dir,
    refuse_held,
    resume_config,
    write_config,
)
from asktell._warnings import WarningCapture, uses_mujoco
from asktell.checkpoint import (
    checkpoint_name,
    discard_newer,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from asktell.config import Built, with_changes
from asktell.errors import CheckpointError
from asktell.loggers import LoggerSet, Resume, check_loggers
from asktell.loop import Budget, GenerationRecord, GenerationStep, TargetCheck
from asktell.best_center import BestCenter
from asktell.runlog import LOG_FIELDS, LOG_FILE, TIMING_FIELDS, LogChain, log_row, read_log

__all__ = ["run", "resume", "RunResult", "Runner", "read_log", "TIMING_FIELDS", "LOG_FIELDS"]



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
    """One run's loop. Use :func:`run` / :func:`resume` unless you need the pieces.

    Each generation is one :class:`~asktell.loop.GenerationStep`, whose ask and tell phases
    run with Ctrl-C deferred; the runner adds the log row, the best centre and checkpoints.
    """

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
        self.interrupts = DeferredInterrupts()
        self.step = GenerationStep(
            built.strategy,
            built.evaluator,
            built.task,
            budget=Budget.of(config.budget),
            judge_center=config.output.eval_every > 0,
            eval_episodes=config.output.eval_episodes,
            critical=self.interrupts.critical,
            on_progress=self._on_progress if self.display.shows_messages else None,
        )
        self._progress_shown = 0.0
        self.progress = self.step.progress
        self.best_center = BestCenter()  # what `asktell eval --best` evaluates
        self.log = LogChain()  # the rows written so far, recorded in every checkpoint
        self.notes: list[str] = []  # said once, after the title (e.g. checkpoints skipped)
        self.warnings: WarningCapture | None = None  # bound to the run directory in run()
        self.last_checkpoint: Path | None = None
        self.resumed = False  # set by resume(): the loggers continue their series
        self.loggers = LoggerSet([], self.display.message)
        # True when the in-memory state is one a checkpoint may capture: between generations,
        # or asked and waiting for returns. False from tell() until the row is logged.
        self._consistent = True

    # ------------------------------------------------------------------ state
    @property
    def generation(self) -> int:
        return int(self.built.strategy.generation)

    def state(self) -> dict[str, Any]:
        p = self.progress
        return {
            "strategy": self.built.strategy.state_dict(),
            "task": self.step.hooks.state_dict(),
            "runner": {
                "env_steps": p.env_steps,
                "episodes": p.episodes,
                "wall_seconds": p.wall(),
                "best_return": p.best_return,
                "center_return": p.center_return,
                **self.best_center.state(),
                "solved": None if p.solved is None else p.solved.to_state(),
                "log_bytes": self.log.size,
                "log_rows": self.log.rows,
                "log_sha256": self.log.digest,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.built.strategy.load_state_dict(state["strategy"])
        task_state = state.get("task")
        if task_state is not None:
            self.step.hooks.load_state_dict(task_state)
        r, p = state["runner"], self.progress
        p.generation = self.generation
        p.env_steps = int(r["env_steps"])
        p.episodes = int(r["episodes"])
        p.wall_offset = float(r["wall_seconds"])
        p.best_return = r.get("best_return")
        p.center_return = r.get("center_return")
        self.best_center = BestCenter.from_state(r)
        p.solved = TargetCheck.from_state(r.get("solved"))
        self.log = LogChain(int(r.get("log_rows", -1)), int(r["log_bytes"]), r.get("log_sha256"))

    def stop_reason(self) -> str | None:
        return next(iter(self.step.stop_reasons().values()), None)

    # ------------------------------------------------------------------ files
    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def _open_log(self) -> Any:
        # Rows written after the checkpoint we resumed from are dropped: the run redoes them.
        if self.log_path.exists() and self.log_path.stat().st_size > self.log.size:
            with open(self.log_path, "r+b") as fh:
                fh.truncate(self.log.size)
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
    def run(self) -> RunResult:
        """Run until a budget is reached (or the callback returns True)."""
        self.progress.started = time.perf_counter()
        reason = self.stop_reason()
        title = (
            f"asktell: {self.config.strategy.kind} on {self.config.task.kind}, run directory "
            f"{self.run_dir}" + (f" (resuming at generation {self.generation})" if self.generation else "")
        )
        self.display.start(
            self.step.fraction_done(), title, elapsed=self.progress.wall_offset,
            target=self.step.budget.target_return,
        )
        for note in self.notes:
            self.display.message(note)
        if self.warnings is not None:
            self.warnings.bind(self.run_dir)
        log = self._open_log()
        self.loggers = self._open_loggers()
        interrupts = self.interrupts
        ended = "error"
        try:
            with interrupts:
                try:
                    while reason is None:
                        reason = self._generation(log)
                    with interrupts.critical():
                        os.fsync(log.fileno())
                        self.checkpoint()
                    ended = reason
                    self.display.finish(reason)
                except KeyboardInterrupt as exc:
                    ended = f"interrupted ({exc.args[0]})" if exc.args else "interrupted"
                    self._on_interrupt(log, exc)
                    # the resume command has been printed; the CLI does not repeat it
                    exc.announced = self.display.shows_messages  # type: ignore[attr-defined]
                    raise
        except BaseException as exc:
            if ended == "error":
                ended = f"error: {type(exc).__name__}: {exc}"
            raise
        finally:
            log.close()
            self.loggers.close(ended)
            self.display.stop()
            said = self.warnings.summary() if self.warnings is not None else None
            if said is not None:
                self.warnings.write()
                self.display.message(said)
        p = self.progress
        return RunResult(
            run_dir=self.run_dir,
            center=np.asarray(self.built.strategy.center, dtype=np.float64),
            generation=self.generation,
            env_steps=p.env_steps,
            episodes=p.episodes,
            wall_seconds=p.wall(),
            best_return=p.best_return,
            center_return=p.center_return,
            stop_reason=reason,
            checkpoint=self.last_checkpoint,
        )

    def _open_loggers(self) -> LoggerSet:
        """The configured loggers, opened after the run directory and log exist (see
        :mod:`asktell.loggers._set` for what happens when one fails)."""
        loggers = LoggerSet(self.config.output.loggers, self.display.message)
        resume = Resume(self.generation, self.progress.env_steps) if self.resumed else None
        loggers.open(self.run_dir, self.config, resume)
        return loggers

    def _center_episodes(self, record: GenerationRecord) -> int:
        out = self.config.output
        due = out.eval_every > 0 and record.generation % out.eval_every == 0
        return out.eval_episodes if due else 0

    def _on_progress(self, done: int, total: int) -> None:
        # a few updates a second at most: evaluators may report after every chunk
        now = time.monotonic()
        if now - self._progress_shown >= 0.25:
            self._progress_shown = now
            self.display.progress(done, total)

    def _told(self, record: GenerationRecord) -> None:
        self._consistent = False

    def _generation(self, log: Any) -> str | None:
        """One generation and its log row; returns why to stop, or None."""
        record = self.step(center_episodes=self._center_episodes, on_told=self._told)
        with self.interrupts.critical():
            row = log_row(record, self.progress)
            if record.center_returns is not None:
                self.best_center.offer(
                    record.center_returns, self.built.strategy.center, record.generation,
                    self.step.hooks.state_dict(),
                )
            data = (json.dumps(row, allow_nan=False) + "\n").encode("utf-8")
            log.write(data)
            log.flush()
            self.log.add(data)
            self._consistent = True
            reason = self.stop_reason()
            if reason is not None or self.generation % self.config.output.checkpoint_every == 0:
                os.fsync(log.fileno())
                self.checkpoint()
        self.loggers.log(row)  # after the row is committed: a logger cannot change the run
        self.display.update(row, self.step.fraction_done())
        if self.callback is not None and self.callback(row) is True:
            reason = "stopped by callback"
        return reason

    def _on_interrupt(self, log: Any, exc: BaseException) -> None:
        what = f"interrupted ({exc.args[0]})" if exc.args else "interrupted"
        if not self._consistent:
            self.display.message(
                f"{what} mid-generation; the previous checkpoint is untouched; "
                f"continue with: asktell resume {self.run_dir}"
            )
            return
        with self.interrupts.critical():
            os.fsync(log.fileno())
            self.checkpoint(asked=bool(getattr(self.built.strategy, "pending", False)))
        self.display.message(
            f"{what}; checkpoint of generation {self.generation} in "
            f"{self.last_checkpoint}; continue with: asktell resume {self.run_dir}"
        )

# --------------------------------------------------------------------------- entry points
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
            It must not already hold a run, nor lie inside another run's directory.
        overrides: ``KEY=VALUE`` strings applied before validation (``strategy.sigma=0.05``).
        callback: called with each generation's log row; returning ``True`` stops the run.
        log_format: overrides ``output.log_format`` (``"none"`` for silence).
    """
    cfg = as_config(config, list(overrides))
    if log_format is not None:
        cfg = with_changes(cfg, {"output": {"log_format": log_format}})
    run_dir = Path(out) if out is not None else (
        Path(cfg.output.dir) if cfg.output.dir else default_run_dir(cfg)
    )
    check_out(run_dir)
    refuse_held(run_dir)
    cfg = with_changes(cfg, {"output": {"dir": str(run_dir)}})
    check_loggers(cfg.output.loggers)  # a missing extra is refused before anything is written
    display = make_display(cfg.output.log_format)
    display.message(f"asktell: building the {cfg.task.kind} task and the {cfg.evaluator.kind} evaluator")
    # warnings (a simulator's included) go to the run's warnings.log from the build on
    with WarningCapture(mujoco=uses_mujoco(cfg)) as caught, cfg.build() as built:
        # everything is validated and built before the directory exists
        run_dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(run_dir.parent)
        with RunLock(run_dir):
            refuse_held(run_dir)  # another process may have started here while we built
            write_config(run_dir, cfg)
            (run_dir / LOG_FILE).touch()
            runner = Runner(cfg, run_dir, built, callback=callback, display=display)
            runner.warnings = caught
            return runner.run()


def resume(
    run_dir: str | os.PathLike,
    *,
    overrides: list[str] = (),
    callback: Callable[[dict[str, Any]], Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    log_format: str | None = None,
    repair_log: bool = False,
) -> RunResult:
    """Continue a run from its newest checkpoint (or ``checkpoint``), as if never stopped.

    The configuration is the run directory's ``config.toml`` (which you may edit) plus
    ``overrides``; operational sections (evaluator, budget, output) may change, but a change
    to strategy, task, noise or seed is rejected, listing the differing fields.

    A run that stopped before its first checkpoint starts again at generation 0 with its
    saved ``config.toml``. A ``log.jsonl`` that does not match the checkpoint (missing,
    truncated, edited) is refused, or with ``repair_log`` moved aside to
    ``log.jsonl.damaged`` so a new log starts after the checkpoint's generation.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    held_before = (run_dir / LOCK_FILE).exists()  # a run starting here may not have its config yet
    if checkpoint is None and not held_before and not list_checkpoints(run_dir) \
            and not (run_dir / CONFIG_FILE).is_file():
        load_checkpoint(run_dir)  # raises "no checkpoint" before a lock file is left here
    with RunLock(run_dir):
        return _resume_held(run_dir, list(overrides), callback, checkpoint, log_format, repair_log)


def _resume_held(
    run_dir: Path,
    overrides: list[str],
    callback: Callable[[dict[str, Any]], Any] | None,
    checkpoint: str | os.PathLike | None,
    log_format: str | None,
    repair_log: bool,
) -> RunResult:
    notes: list[str] = []
    if checkpoint is None and not list_checkpoints(run_dir):
        if not (run_dir / CONFIG_FILE).is_file():
            load_checkpoint(run_dir)  # raises "no checkpoint": there is nothing to start again
        ckpt = None
        notes.append(
            f"no checkpoint yet: starting again at generation 0 with the saved {CONFIG_FILE}"
        )
    else:
        ckpt = load_checkpoint(checkpoint if checkpoint is not None else run_dir)
        for path, reason in ckpt.skipped:  # the checkpoints load_checkpoint refused, newest first
            notes.append(f"skipped checkpoint {path}: {reason}")
    cfg = resume_config(run_dir, overrides, ckpt, log_format)
    chain, log_note = checked_log(run_dir, ckpt, repair_log)
    check_loggers(cfg.output.loggers)
    with WarningCapture(mujoco=uses_mujoco(cfg)) as caught, cfg.build() as built:
        runner = Runner(cfg, run_dir, built, callback=callback)
        runner.warnings = caught
        runner.resumed = True
        if ckpt is not None:
            runner.load_state(ckpt.state)
            runner.last_checkpoint = ckpt.path
            discard_newer(run_dir, ckpt.path, refused=[p for p, _ in ckpt.skipped])  # redone; refused ones kept
        if log_note is not None:
            if (run_dir / LOG_FILE).exists():
                os.replace(run_dir / LOG_FILE, run_dir / f"{LOG_FILE}.damaged")
            notes.append(log_note)
        runner.log = chain
        runner.notes = notes
        write_config(run_dir, cfg)
        return runner.run()
