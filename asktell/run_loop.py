"""One run's loop: :class:`Runner` drives the generation step (:mod:`asktell.loop`) with
the run's display, log, loggers, checkpoints and deferred signals, and :class:`RunResult` is
what it ends with. :func:`asktell.runner.run` and :func:`~asktell.runner.resume` set it up.
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

from asktell._interrupts import DeferredInterrupts
from asktell._progress import Display, make_display
from asktell._warnings import WarningCapture
from asktell.checkpoint import (
    checkpoint_name,
    prune_checkpoints,
    save_checkpoint,
)
from asktell.config import Built
from asktell.loggers import LoggerSet, Resume
from asktell.loop import Budget, GenerationRecord, GenerationStep, TargetCheck
from asktell.best_center import BestCenter
from asktell.runlog import LOG_FILE, LogChain, log_row, stop_record

__all__ = ["Runner", "RunResult"]


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
        stop_reason: why the run stopped (the message; also in the log's stop record and
            the final checkpoint).
        checkpoint: the last checkpoint written.
        stop_rule: which rule stopped it: ``generations``, ``env_steps``, ``wall_seconds``,
            ``target_return``, ``strategy`` or ``callback``.
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
    stop_rule: str | None = None


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
        # Straggler-tolerant runs: the last told generation's dropped candidates as
        # [start, stop) ranges (None: the run's evaluator never drops), kept in checkpoints.
        self.last_dropped: dict[str, Any] | None = None
        # (rule, message) once the run has stopped; recorded in the checkpoint written then
        # (``_saved_stop``: what the last checkpoint recorded) and in the log's stop record.
        self.stopped: tuple[str, str] | None = None
        self._saved_stop: tuple[str, str] | None = None

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
                **({} if self.last_dropped is None else {"last_dropped": self.last_dropped}),
                **({} if self.stopped is None else dict(
                    zip(("stop_rule", "stop_reason"), self.stopped)
                )),
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
        self.last_dropped = r.get("last_dropped")
        # Why the run had stopped is only a record: resuming checks the rules again (a raised
        # budget continues; a callback's stop is not remembered).
        self._saved_stop = (r["stop_rule"], r["stop_reason"]) if "stop_reason" in r else None

    def stop_reason(self) -> str | None:
        stop = self._stop()
        return None if stop is None else stop[1]

    def _stop(self) -> tuple[str, str] | None:
        """The first rule that says stop, as ``(rule, message)``, or None."""
        return next(iter(self.step.stop_reasons().items()), None)

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
        if existing.exists() and self.last_checkpoint == existing and (
            self._saved_stop == self.stopped
        ):
            return existing
        meta = {
            "generation": self.generation,
            "asked": asked,
            "config": self.config.model_dump(mode="json"),
        }
        self.last_checkpoint = save_checkpoint(self.run_dir, name, self.state(), meta)
        self._saved_stop = self.stopped
        prune_checkpoints(self.run_dir, self.config.output.keep_checkpoints)
        return self.last_checkpoint

    # ------------------------------------------------------------------ loop
    def run(self) -> RunResult:
        """Run until a budget is reached (or the callback returns True)."""
        self.progress.started = time.perf_counter()
        self.stopped = self._stop()
        reason = None if self.stopped is None else self.stopped[1]
        title = (
            f"asktell: {self.config.strategy.kind} on {self.config.task.kind}, run directory "
            f"{self.run_dir}" + (f" (resuming at generation {self.generation})" if self.generation else "")
        )
        self.display.start(
            self.step.fraction_done(), title, elapsed=self.progress.wall_offset,
            target=self.step.budget.target_return,
        )
        self.display.view.generation = self.generation  # a resumed run's, until its first row
        for note in self.notes + self._straggler_notes():
            self.display.note(note)
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
                        self.checkpoint()  # records the stop (again, if the callback stopped)
                        # after the checkpoint, outside its rows: a resume drops it
                        log.write(stop_record(self.generation, *self.stopped))
                        log.flush()
                        os.fsync(log.fileno())
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
            stop_rule=self.stopped[0],
        )

    def _straggler_notes(self) -> list[str]:
        """Said when a straggler-tolerant run resumes from a checkpoint taken after ``ask``:
        the asked seeds are the same, but which of them are told is decided again (the
        results received before the interruption were not kept)."""
        evaluator = self.built.evaluator
        if not (
            self.resumed
            and getattr(self.built.strategy, "pending", False)
            and getattr(evaluator, "stragglers", None) is not None
        ):
            return []
        return [
            f"resumed in the middle of generation {self.generation}: its asked seeds are "
            "evaluated again and, with [evaluator.stragglers], the generation closes on a "
            "new quorum, so its told subset may differ from the interrupted session's (the "
            "log row records the one told; see docs/stragglers.md)"
        ]

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
            if "dropped" in row:
                self.last_dropped = {"generation": record.generation, "ranges": row["dropped"]}
            if record.center_returns is not None:
                # A target check on the same centre measured it over more episodes (its
                # first ones the scheduled ones): rank it by that, as --best replays it.
                judged = record.judged_returns
                self.best_center.offer(
                    record.center_returns if judged is None else judged,
                    self.built.strategy.center, record.generation, self.step.hooks.state_dict(),
                )
            data = (json.dumps(row, allow_nan=False) + "\n").encode("utf-8")
            log.write(data)
            log.flush()
            self.log.add(data)
            self._consistent = True
            self.stopped = self._stop()
            reason = None if self.stopped is None else self.stopped[1]
            if reason is not None or self.generation % self.config.output.checkpoint_every == 0:
                os.fsync(log.fileno())
                self.checkpoint()
        self.loggers.log(row)  # after the row is committed: a logger cannot change the run
        self.display.update(row, self.step.fraction_done())
        # the callback sees every row; when a rule stopped the run too, that rule is the reason
        if self.callback is not None and self.callback(row) is True and reason is None:
            reason = "stopped by callback"
            self.stopped = ("callback", reason)
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
