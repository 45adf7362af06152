"""The life cycle checks of a run directory, before anything runs in it: is ``--out`` a place
a run can live (not under a file, not in a system folder, not inside another run), does it
already hold a run (and how should it be continued), and does its log match the checkpoint
it will continue from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from asktell._files import atomic_write_bytes
from asktell.checkpoint import list_checkpoints
from asktell.config import RunConfigBase, config_from_dict, diff_protected, load_config, with_changes
from asktell.errors import CheckpointError, ConfigError
from asktell.runlog import CONFIG_FILE, LOG_FILE, RUN_FILES, LogChain, verify_log

__all__ = [
    "CONFIG_FILE",
    "check_checkpoint_of",
    "check_out",
    "check_output_file",
    "checked_log",
    "damaged_log_path",
    "refuse_held",
]

_SYSTEM_DIRS = ("/proc", "/sys", "/dev")


def _is_run_dir(path: Path) -> bool:
    """A directory some run has written (its config plus a log or checkpoints)."""
    return (path / CONFIG_FILE).is_file() and (
        (path / LOG_FILE).is_file() or bool(list_checkpoints(path))
    )


def check_out(run_dir: Path) -> None:
    """Refuse a run directory that cannot be one before anything is created."""
    named = f"run directory {str(run_dir)!r} (--out)"
    if not str(run_dir).strip():
        raise ConfigError("run directory '' (--out) is empty; name a folder (e.g. --out runs/a)")
    try:
        str(run_dir).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"run directory {str(run_dir)!r} (--out) is not valid UTF-8; the run's config.toml "
            "records it as text, so name it in UTF-8"
        ) from None
    path = Path(os.path.abspath(run_dir))
    real = Path(os.path.realpath(path))
    for system in _SYSTEM_DIRS:
        if real == Path(system) or Path(system) in real.parents:
            raise ConfigError(f"{named} is inside {system}, a system folder; choose a folder on a disk")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{named} is a file, not a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{named} is under {str(parent)!r}, which is a file, not a directory")
        if parent.is_dir() and _is_run_dir(parent):
            raise ConfigError(
                f"{named} is inside the run directory {str(parent)!r} of another run; "
                "choose a folder outside it"
            )
    if not path.exists():
        nearest = next(p for p in path.parents if p.exists())
        if not os.access(nearest, os.W_OK | os.X_OK):
            raise ConfigError(f"{named} cannot be created: {str(nearest)!r} is not writable")


def check_output_file(
    path: str | os.PathLike, what: str, suffixes: tuple[str, ...] | None = None
) -> Path:
    """Refuse, before any work, a file that ``plot``, ``export`` or ``eval --video`` could
    not write or should not: empty, a directory, under a file, of a type not in
    ``suffixes`` (lowercase, with the dot), or one of a run directory's own files."""
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"{what} is empty; name a file")
    target = Path(os.path.abspath(text))
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise ConfigError(
            f"{what} must end in {', '.join(suffixes)} (its type); got {text!r}"
        )
    if target.is_dir():
        raise ConfigError(f"{what} {text!r} is a directory; name a file")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{what} {text!r} is under {str(parent)!r}, which is a file, not a directory")
    folder = target.parent
    if (folder.name == "checkpoints" and _is_run_dir(folder.parent)) or (
        _is_run_dir(folder) and (target.name in RUN_FILES or target.name.startswith(LOG_FILE))
    ):
        raise ConfigError(
            f"{what} {text!r} would replace a file of the run in {str(folder)!r}; write it elsewhere"
        )
    return Path(text)


def check_checkpoint_of(run_dir: str | os.PathLike, checkpoint: str | os.PathLike) -> None:
    """``--checkpoint`` must be one of ``run_dir``'s own: a checkpoint of another run would
    be reported (eval, export) or continued (resume) under this run's name."""
    mine = Path(os.path.realpath(Path(run_dir) / "checkpoints"))
    where = Path(os.path.realpath(checkpoint)).parent
    if where != mine:
        raise ConfigError(
            f"--checkpoint {os.fspath(checkpoint)!r} is not a checkpoint of the run in "
            f"{os.fspath(run_dir)!r} (those are in {str(Path(run_dir) / 'checkpoints')!r}); "
            "name the run directory it belongs to"
        )


def _written_by_a_run(config: Path) -> bool:
    """Whether ``config`` starts with the header :func:`asktell.config.config_to_toml` writes."""
    try:
        with open(config, "rb") as fh:
            return fh.read(64).startswith(b"# Resolved run configuration (asktell")
    except OSError:
        return True  # unreadable: treat it as a run's, the refusal then names resume


def refuse_held(run_dir: Path) -> None:
    found = list_checkpoints(run_dir)
    if found:
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run; continue it with "
            f"`asktell resume {run_dir}` (newest checkpoint {found[-1].name}) or choose "
            "another directory (--out)"
        )
    config = run_dir / CONFIG_FILE
    if config.is_file() and not (run_dir / LOG_FILE).exists() and not _written_by_a_run(config):
        raise ConfigError(
            f"run directory {str(run_dir)!r} holds a {CONFIG_FILE} that no asktell run wrote "
            f"(a run keeps its resolved configuration there and would replace it); choose "
            "another directory (--out)"
        )
    if config.exists() or (run_dir / LOG_FILE).exists():
        raise ConfigError(
            f"run directory {str(run_dir)!r} already holds a run that stopped before its first "
            f"checkpoint; `asktell resume {run_dir}` starts it again at generation 0 with its "
            f"saved {CONFIG_FILE}, or choose another directory (--out)"
        )


def checked_log(run_dir: Path, ckpt: Any, repair: bool) -> tuple[LogChain, str | None]:
    """The log record to continue from, and a note when the log is to be moved aside."""
    if ckpt is None:
        return LogChain(), None  # rows of a run that never checkpointed are redone
    r = ckpt.state["runner"]
    expected = LogChain(int(r.get("log_rows", -1)), int(r["log_bytes"]), r.get("log_sha256"))
    try:
        verify_log(run_dir / LOG_FILE, expected, ckpt.generation)
    except CheckpointError as exc:
        if not repair:
            raise CheckpointError(
                f"{exc}. Restore the log, or resume with --repair-log to move it aside to "
                f"{LOG_FILE}.damaged and start a new log after generation {ckpt.generation}"
            ) from None
        return LogChain(), str(exc)
    return expected, None


def damaged_log_path(run_dir: Path) -> Path:
    """Where ``--repair-log`` moves a log aside: ``log.jsonl.damaged``, or the first free
    ``log.jsonl.damaged.N`` when an earlier repair already left one (never overwritten)."""
    path, n = run_dir / f"{LOG_FILE}.damaged", 1
    while path.exists():
        path, n = run_dir / f"{LOG_FILE}.damaged.{n}", n + 1
    return path


# --------------------------------------------------------------------------- the run's config
def as_config(config: Any, overrides: list[str]) -> Any:
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    if isinstance(config, dict):
        return config_from_dict(config, overrides)
    if isinstance(config, RunConfigBase):
        if overrides:
            return config_from_dict(config.model_dump(mode="json"), overrides)
        return config
    raise ConfigError(
        f"run() expects a RunConfig, a dict or a run-file path; got {type(config).__name__}"
    )


def default_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config.strategy.kind}-{config.task.kind}-{stamp}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def write_config(run_dir: Path, config: Any) -> None:
    atomic_write_bytes(run_dir / CONFIG_FILE, config.to_toml().encode("utf-8"))


def resume_config(run_dir: Path, overrides: list[str], ckpt: Any) -> Any:
    """The config a resumed run goes on with: the run directory's ``config.toml`` (or the
    checkpoint's config when it is gone) plus ``overrides``, refused when it would move the
    run onto another trajectory than the one it was saved on."""
    moved = [o for o in overrides if o.partition("=")[0].strip() == "output.dir"]
    if moved:
        raise ConfigError(
            f"--set {moved[0]}: a resumed run stays in its directory {str(run_dir)!r}; copy "
            "the directory to move a run, then resume the copy"
        )
    config_file = run_dir / CONFIG_FILE
    if config_file.is_file():
        cfg = load_config(config_file, overrides)
    else:
        cfg = config_from_dict(ckpt.config, overrides, source="run config from the checkpoint")
    cfg = with_changes(cfg, {"output": {"dir": str(run_dir)}})
    if ckpt is None:
        # No checkpoint yet: the run starts again at generation 0 from its saved config,
        # which is the record of what it is (its log rows are rewritten).
        saved, where = load_config(config_file), f"the saved {CONFIG_FILE}"
    else:
        # Compare the checkpoint's config as this version reads it, so keys that older
        # files spell differently (a renamed option) are not mistaken for a change.
        saved = config_from_dict(ckpt.config, source="run config from the checkpoint")
        where = "the checkpoint"
    changed = diff_protected(saved.model_dump(mode="json"), cfg.model_dump(mode="json"), where)
    before, now = saved.evaluator.result_settings(), cfg.evaluator.result_settings()
    # Without a checkpoint no generation is kept (its rows are rewritten): the evaluator may
    # change (a mode the environment lacks, say), what is optimised still may not.
    if ckpt is not None and before != now:
        changed.append(
            f"evaluator: returns depend on {before or 'nothing but the serial rule'} in {where}, "
            f"on {now or 'nothing but the serial rule'} now (an evaluator whose returns are "
            "not the serial evaluator's may not change on resume)"
        )
    if changed:
        raise ConfigError(
            f"cannot resume {str(run_dir)!r} with a different strategy, task, noise or seed, "
            "or a change to an evaluator its returns depend on; start a new run instead. "
            "Differences:\n  " + "\n  ".join(changed)
        )
    return cfg
