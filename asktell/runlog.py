"""The per-generation log of a run (``log.jsonl``): what a row holds, reading it back, and
checking it against a checkpoint.

A checkpoint records how many rows the log held (``log_rows``), their size (``log_bytes``) and
a running SHA-256 over them (``log_sha256``: each row's bytes, newline included, hashed after
the previous digest). On resume the log's first ``log_bytes`` bytes must reproduce both, so a
log that was truncated, deleted or edited is refused instead of being glued to or shortened.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from asktell._lock import LOCK_FILE
from asktell._warnings import WARNINGS_FILE
from asktell.errors import CheckpointError, ConfigError

__all__ = [
    "LOG_FILE", "LOG_FIELDS", "TIMING_FIELDS", "read_log", "read_log_lines", "jsonable",
    "LogChain", "verify_log", "index_ranges", "mask_of_ranges", "STOP_FIELDS", "stop_record",
    "read_stop", "read_log_records", "CONFIG_FILE", "RUN_FILES",
]

LOG_FILE = "log.jsonl"
#: The run's resolved configuration, beside its log.
CONFIG_FILE = "config.toml"
#: A run directory's own files (beside ``checkpoints/``), which no other output may replace.
RUN_FILES = (CONFIG_FILE, LOG_FILE, WARNINGS_FILE, LOCK_FILE)

#: Fields of a log row that measure time and so differ between otherwise identical runs.
TIMING_FIELDS = frozenset(
    {
        "seconds_ask",
        "seconds_evaluate",
        "seconds_tell",
        "seconds_center",
        "seconds_generation",
        "wall_seconds",
        "time",
    }
)

#: What each log row holds (strategy metrics such as grad_norm come from ``tell``).
LOG_FIELDS = {
    "generation": "generations completed",
    "env_steps": "environment steps used by candidates so far (function calls for functions)",
    "episodes": "episodes run by candidates so far (candidates, for function tasks)",
    "generation_steps": "environment steps of this generation",
    "generation_episodes": "episodes of this generation",
    "episode_length_mean": "mean episode length this generation",
    "return_mean": "mean return of the population (finite returns)",
    "return_std": "standard deviation of the population's returns",
    "return_max": "best return of the population",
    "return_min": "worst finite return of the population",
    "best_return": "best population return so far",
    "center_return_mean": "mean return of the noise-free centre (evaluation generations only)",
    "center_return_std": "standard deviation over the centre's episodes",
    "center_rank": "fraction of the population the centre beats",
    "target_check": "a target check of the centre ran: solved, not confirmed or not reached",
    "target_check_episodes": "episodes of each of the check's two evaluations",
    "target_check_return": "the centre's mean over the check's episodes",
    "target_confirm_return": "the centre's mean over as many fresh episodes (null: not run)",
    "grad_norm": "norm of the estimated gradient",
    "update_norm": "norm of the centre's update",
    "update_ratio": "update norm / centre norm",
    "center_norm": "norm of the centre",
    "fraction_truncated": "fraction of episodes ended by the step cap",
    "num_failed": "candidates whose evaluation raised",
    "num_nonfinite": "candidates with NaN/inf returns (ranked worst)",
    "told": "candidates the strategy learnt from (straggler-tolerant runs only)",
    "dropped": "[start, stop) index ranges of the candidates dropped when the generation "
    "closed early (straggler-tolerant runs only; [] when none)",
    "obs_count": "observations gathered this generation for normalisation",
    "seconds_ask": "time in ask()",
    "seconds_evaluate": "time evaluating candidates",
    "seconds_tell": "time in tell() and task.observe()",
    "seconds_center": "time evaluating the centre",
    "seconds_generation": "time of the whole generation",
    "wall_seconds": "wall time of the run so far (summed over resumes)",
    "time": "Unix time the row was written",
}

#: The fields of the stop record: the one line after the last generation row of a run that
#: stopped (a budget, a target, a strategy's stopping rule or the callback; an interrupted
#: run has none, since it resumes). It is written after the final checkpoint and is not one
#: of the rows the checkpoint counts, so ``resume`` drops it like any line written after the
#: checkpoint and writes it again when the run stops again; its bytes depend on nothing
#: timed, so a resume that finds nothing to do leaves the log byte for byte as it was.
STOP_FIELDS = {
    "event": '"stop" (what tells this record from a generation row)',
    "generation": "generations completed when the run stopped",
    "stop_rule": "which rule stopped it: generations, env_steps, wall_seconds, "
    "target_return, strategy or callback",
    "stop_reason": "the message the run ended with (the one `asktell run` prints)",
}

STOP_EVENT = "stop"


def jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null reads as "undefined" in every tool
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    return value


def stop_record(generation: int, rule: str, reason: str) -> bytes:
    """The stop record's line (see :data:`STOP_FIELDS`)."""
    record = {"event": STOP_EVENT, "generation": int(generation), "stop_rule": rule,
              "stop_reason": reason}
    return (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The generation rows of a run's ``log.jsonl`` (lines that do not parse, such as a
    torn last line from a crash, are skipped, :func:`read_log_lines` says which; the stop
    record is :func:`read_stop`'s)."""
    return read_log_lines(run_dir)[0]


def read_stop(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Why the run stopped: its stop record (:data:`STOP_FIELDS`), or ``None`` when the log
    has none (the run is going, was interrupted, or died)."""
    return _read_records(run_dir)[1]


def read_log_lines(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """The generation rows of a run's ``log.jsonl`` and, for each line skipped, why
    (``line 7: ...``)."""
    rows, _, skipped = _read_records(run_dir)
    return rows, skipped


def read_log_records(
    run_dir: str | os.PathLike,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """:func:`read_log_lines` and :func:`read_stop` from one pass over the log: the
    generation rows, the stop record (``None`` when there is none) and the skipped lines."""
    return _read_records(run_dir)


def _read_records(
    run_dir: str | os.PathLike,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """The generation rows, the stop record if it is the last record, and the skipped lines."""
    directory = Path(run_dir)
    if not directory.exists():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    path = directory / LOG_FILE
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory: it has no {LOG_FILE}")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    stop: dict[str, Any] | None = None
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                torn = "" if raw.endswith(b"\n") else " (torn last line)"
                skipped.append(f"line {number}: not JSON{torn}: {exc}")
                continue
            if not isinstance(row, dict):
                skipped.append(f"line {number}: not a JSON object")
                continue
            if "event" in row:  # not a generation row
                stop = row if row["event"] == STOP_EVENT else stop
                continue
            stop = None  # a stop record counts only as the last record
            rows.append(row)
    return rows, stop, skipped


class LogChain:
    """The running record of a log's rows: count, bytes and chained SHA-256 (``rows = -1``:
    unknown, as in checkpoints written before the record existed)."""

    EMPTY = hashlib.sha256(b"").hexdigest()

    def __init__(self, rows: int = 0, size: int = 0, digest: str | None = None):
        self.rows, self.size, self.digest = rows, size, digest or self.EMPTY

    def add(self, row: bytes) -> None:
        self.digest = hashlib.sha256(bytes.fromhex(self.digest) + row).hexdigest()
        self.rows += 1
        self.size += len(row)

    @classmethod
    def of(cls, data: bytes) -> LogChain:
        chain = cls()
        for row in data.splitlines(keepends=True):
            chain.add(row)
        return chain


def verify_log(path: Path, expected: LogChain, generation: int) -> None:
    """Refuse a log whose first rows are not the ones the checkpoint of ``generation``
    recorded (missing, shorter, torn or edited); rows after them are the caller's to drop."""
    where = f"the checkpoint of generation {generation} recorded {expected.rows} row(s), " \
        f"{expected.size} bytes"
    if not path.is_file():
        if expected.rows == 0 and expected.size == 0:
            return
        raise CheckpointError(f"{str(path)!r} is missing; {where}")
    with open(path, "rb") as fh:
        data = fh.read(expected.size)
    if len(data) < expected.size:
        raise CheckpointError(
            f"{str(path)!r} is shorter than its checkpoint expects ({len(data)} bytes); {where}"
        )
    found = LogChain.of(data)
    if expected.rows < 0:  # a checkpoint from before the running hash: only its size is known
        return
    if (found.rows, found.digest) != (expected.rows, expected.digest):
        raise CheckpointError(
            f"{str(path)!r} does not match its checkpoint: its first {expected.size} bytes hold "
            f"{found.rows} row(s) whose running SHA-256 is {found.digest[:12]}...; {where}, "
            f"SHA-256 {expected.digest[:12]}... (edited or damaged)"
        )


def index_ranges(mask: np.ndarray) -> list[list[int]]:
    """The True positions of ``mask`` as ``[start, stop)`` ranges, in order: a few pairs
    for a population of 10,000 whose dropped candidates are whole chunks."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(m))
    return [[int(a), int(b)] for a, b in zip(edges[0::2], edges[1::2])]


def mask_of_ranges(ranges: Any, n: int) -> np.ndarray:
    """The bool mask of ``n`` candidates that :func:`index_ranges` wrote as ``ranges``."""
    mask = np.zeros(n, dtype=bool)
    for a, b in ranges:
        mask[int(a):int(b)] = True
    return mask


def log_row(record: Any, p: Any) -> dict[str, Any]:
    """A generation's log row (see :data:`LOG_FIELDS`), JSON-ready: the step's ``record``
    and the run's ``Progress`` ``p`` after it."""
    evaluation = record.evaluation
    steps, episodes = record.steps, record.episodes
    row: dict[str, Any] = {
        "generation": record.generation,
        "env_steps": p.env_steps,
        "episodes": p.episodes,
        "generation_steps": steps,
        "generation_episodes": episodes,
        "episode_length_mean": steps / episodes if episodes else None,
        "best_return": p.best_return,
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
    for key, value in record.metrics.items():
        if key != "generation" and np.ndim(value) == 0:
            row[key] = value
    if evaluation.dropped is not None:  # a straggler-tolerant generation: what was told
        row["dropped"] = index_ranges(evaluation.dropped)
    if record.center_returns is not None:
        center = record.center_returns
        row["center_return_mean"] = float(center.mean())
        row["center_return_std"] = float(center.std())
        finite = evaluation.returns[np.isfinite(evaluation.returns)]  # told ones only
        row["center_rank"] = (
            float(np.mean(finite < row["center_return_mean"])) if finite.size else None
        )
    if record.target is not None:
        row.update(record.target.row())
    seconds = record.seconds
    row.update({f"seconds_{phase}": seconds[phase] for phase in
                ("ask", "evaluate", "tell", "center", "generation")})
    row.update(wall_seconds=p.wall(), time=time.time())
    return {k: jsonable(v) for k, v in row.items()}
