"""The per-generation log of a run (``log.jsonl``): what a row holds, and reading it back."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from asktell.errors import ConfigError

__all__ = ["LOG_FILE", "LOG_FIELDS", "TIMING_FIELDS", "read_log", "jsonable"]

LOG_FILE = "log.jsonl"

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
    "obs_count": "observations gathered this generation for normalisation",
    "seconds_ask": "time in ask()",
    "seconds_evaluate": "time evaluating candidates",
    "seconds_tell": "time in tell() and task.observe()",
    "seconds_center": "time evaluating the centre",
    "seconds_generation": "time of the whole generation",
    "wall_seconds": "wall time of the run so far (summed over resumes)",
    "time": "Unix time the row was written",
}


def jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null reads as "undefined" in every tool
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    return value


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``log.jsonl`` (a torn last line from a crash is skipped)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory: it has no {LOG_FILE}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
