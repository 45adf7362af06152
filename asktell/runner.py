"""The run loop: ask -> evaluate -> tell, with budgets, logs, centre evaluations and checkpoints.

:func:`run` starts a run from a :class:`~asktell.config.RunConfig` (or a run file) and
:func:`resume` continues one from its run directory exactly as if it had never stopped: the
strategy (centre, optimiser moments, RNG), the task's state (observation normaliser), the
counters and the log are restored from the newest checkpoint, so a deterministic task gives
bitwise the same centre as an uninterrupted run.

A run directory holds:

* ``config.toml``: the resolved configuration (every default filled in);
* ``log.jsonl``: one JSON object per generation (see :data:`LOG_FIELDS`), then, once the
  run has stopped, the stop record saying why (:data:`~asktell.runlog.STOP_FIELDS`);
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

The loop itself is :class:`~asktell.run_loop.Runner`; the directory checks live in
:mod:`asktell._rundir`, the log's format in :mod:`asktell.runlog`.

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

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


from asktell._files import fsync_dir
from asktell._machine import resume_note
from asktell._lock import LOCK_FILE, RunLock
from asktell._progress import make_display
from asktell._rundir import (
    CONFIG_FILE,
    as_config,
    check_checkpoint_of,
    check_out,
    checked_log,
    damaged_log_path,
    default_run_dir,
    refuse_held,
    resume_config,
    write_config,
)
from asktell._warnings import WarningCapture, uses_mujoco
from asktell.checkpoint import (
    discard_newer,
    list_checkpoints,
    load_checkpoint,
)
from asktell.config import with_changes
from asktell.errors import CheckpointError
from asktell.loggers import check_loggers
from asktell.run_loop import Runner, RunResult
from asktell.runlog import LOG_FIELDS, LOG_FILE, TIMING_FIELDS, read_log

__all__ = ["run", "resume", "RunResult", "Runner", "read_log", "TIMING_FIELDS", "LOG_FIELDS"]



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
    # config.toml records the run, not this invocation's console: --log-format is not kept
    recorded_format = cfg.output.log_format
    if log_format is not None:
        cfg = with_changes(cfg, {"output": {"log_format": log_format}})
    if out is not None or cfg.output.dir is not None:
        given = out if out is not None else cfg.output.dir
        if not os.fspath(given).strip():  # Path("") is the current directory
            check_out(given)
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
            write_config(run_dir, with_changes(cfg, {"output": {"log_format": recorded_format}}))
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
    if not os.fspath(run_dir).strip():
        raise CheckpointError("run directory '' is empty; name the run's folder")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if checkpoint is not None:
        check_checkpoint_of(run_dir, checkpoint)
    if (run_dir / CONFIG_FILE).exists() and not (run_dir / CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{str(run_dir / CONFIG_FILE)!r} is not a file; a run keeps its resolved "
            "configuration there: move what is there away and resume again"
        )
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
        other_machine = resume_note(ckpt.meta)
        if other_machine is not None:
            notes.append(other_machine)
    recorded = resume_config(run_dir, overrides, ckpt)  # what config.toml keeps
    cfg = recorded
    if log_format is not None:  # this invocation's console only
        cfg = with_changes(cfg, {"output": {"log_format": log_format}})
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
                aside = damaged_log_path(run_dir)
                os.replace(run_dir / LOG_FILE, aside)
                log_note += f"; moved it aside to {aside.name}"
            notes.append(log_note)
        runner.log = chain
        runner.notes = notes
        write_config(run_dir, recorded)
        return runner.run()
