"""The run file's own sections: the shared noise, the budget and the output settings.

Plain models with no plugin in them (the plugin sections, strategy, evaluator and task, are
assembled from the registries in :mod:`asktell.config`, which re-exports these names), and
:func:`diff_protected`, the rule of what a resumed run may not change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from asktell._memory import Allocation
from asktell.config_base import Float, Int, StrictModel
from asktell.noise import DEFAULT_TABLE_SIZE, CounterNoise, NoiseSource, NoiseTable

__all__ = [
    "NoiseConfig",
    "BudgetConfig",
    "OutputConfig",
    "auto_table_size",
    "PROTECTED_SECTIONS",
    "diff_protected",
]

#: Sections that define *what* is optimised and how; a resumed run may not change them.
#: Everything else (evaluator, budget, output) is operational and may change on resume.
PROTECTED_SECTIONS = ("strategy", "task", "noise", "seed")

class NoiseConfig(StrictModel):
    """The shared noise every candidate is decoded from (Salimans et al. 2017)."""

    kind: Literal["table", "counter"] = Field(
        "table",
        description="'table': one block of Gaussian noise built once per process, candidates "
        "are slices of it (fast). 'counter': regenerate each perturbation from (seed, key) "
        "with Philox (no memory; for huge policies or small machines).",
    )
    seed: Int = Field(0, ge=0, description="Seed of the noise; every process sees the same noise.")
    size: Int | None = Field(
        None,
        ge=2,
        description="Number of float32 values in the noise table (4 bytes each); must exceed "
        "the number of parameters. Ignored by 'counter'. Default (auto, resolved when the run "
        "file is read and written into the run's config.toml): for a function task, 64 values "
        "per parameter rounded up to a power of two, at least 2**20 (4 MiB) and at most the "
        "paper's 2**25; for every other task (Gymnasium, Atari, plugins) the paper's 2**25 "
        "(128 MiB).",
    )

    def resolved_size(self) -> int:
        """``size``, or the paper's table when it was left to a run to resolve."""
        return DEFAULT_TABLE_SIZE if self.size is None else self.size

    def table_bytes(self) -> int:
        """Bytes of the table each process builds (0 for counter noise)."""
        return 0 if self.kind == "counter" else 4 * self.resolved_size()

    def estimate_bytes(self, context: Any) -> list[Allocation]:
        """The table, in this process (evaluator workers build their own: their estimate)."""
        size = self.resolved_size()
        return [Allocation("noise.size", size, self.table_bytes(), "the noise table")]

    def build(self) -> NoiseSource:
        if self.kind == "counter":
            return CounterNoise(seed=self.seed)
        return NoiseTable(seed=self.seed, size=self.resolved_size())


#: The smallest automatic table: 2**20 float32 (4 MiB) keeps a million distinct offsets, far
#: more than a function run draws (population x generations) before rows would repeat often.
_MIN_AUTO_TABLE = 1 << 20
#: Values per parameter in an automatic table: offsets range over size - num_params, so 64x
#: keeps 63/64 of the table usable as distinct starting points.
_AUTO_TABLE_PER_PARAM = 64


def auto_table_size(task: Any) -> int:
    """The noise table a run gets when ``noise.size`` is not set (see its description).

    Only function tasks get a problem-sized table: the golden runs and every Gymnasium or
    Atari run keep the paper's 2**25 values, so their noise (and results) are unchanged.
    """
    num_params = getattr(task, "num_params", None)
    if getattr(task, "kind", None) != "function" or not isinstance(num_params, int):
        return DEFAULT_TABLE_SIZE
    wanted = max(_MIN_AUTO_TABLE, _AUTO_TABLE_PER_PARAM * num_params)
    size = 1 << (wanted - 1).bit_length()
    if size > DEFAULT_TABLE_SIZE:  # a dimension the paper's table still serves
        size = max(DEFAULT_TABLE_SIZE, 1 << (2 * num_params - 1).bit_length())
    return size


class BudgetConfig(StrictModel):
    """When to stop: whichever limit is reached first. At least one must be set."""

    generations: Int | None = Field(None, ge=1, description="Stop after this many generations.")
    env_steps: Int | None = Field(
        None,
        ge=1,
        description="Stop once the candidates have used this many environment steps (function "
        "evaluations for function tasks); centre evaluations are not counted.",
    )
    wall_seconds: Float | None = Field(
        None, gt=0, description="Stop after this much wall-clock time (summed over resumes)."
    )
    target_return: Float | None = Field(
        None,
        description="Stop as solved once the centre (never a candidate) reaches this mean "
        "return over target_episodes episodes and then again over as many fresh episodes (a "
        "stream of episode seeds no scheduled evaluation uses). The check runs when a "
        "scheduled centre evaluation (output.eval_every) reaches the target or, when none is "
        "scheduled, when a candidate does; a check that fails to confirm is logged "
        "(target_check) and the run goes on.",
    )
    target_episodes: Int | None = Field(
        None,
        ge=1,
        description="Episodes of the centre target_return is judged on, and again confirmed "
        "on. Default: output.eval_episodes, at least 10 (a function task is deterministic: "
        "one evaluation whatever the number).",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> BudgetConfig:
        if all(
            v is None
            for v in (self.generations, self.env_steps, self.wall_seconds, self.target_return)
        ):
            raise ValueError(
                "set at least one of generations, env_steps, wall_seconds, target_return; "
                "got none"
            )
        return self


class OutputConfig(StrictModel):
    """Where the run is written and how often it checkpoints, logs and evaluates."""

    dir: str | None = Field(
        None,
        description="Run directory. Default: runs/<strategy>-<task>-<date>-<time>. The "
        "`asktell run --out DIR` option overrides it.",
    )
    checkpoint_every: Int = Field(
        10, ge=1, description="Write a checkpoint every this many generations (and at the end)."
    )
    keep_checkpoints: Int = Field(
        3, ge=1, description="How many of the newest checkpoints to keep on disk."
    )
    log_format: Literal["auto", "rich", "plain", "json", "none"] = Field(
        "auto",
        description="Console output: 'rich' (live progress display), 'plain' (one line per "
        "generation), 'json' (each log row as JSON), 'none'; 'auto' is 'rich' on a terminal "
        "and 'plain' otherwise. The per-generation JSONL log file is always written.",
    )
    eval_every: Int = Field(
        0,
        ge=0,
        description="Evaluate the centre (noise-free policy) every this many generations, "
        "through the run's evaluator; 0 never. Centre evaluations are not counted in "
        "budget.env_steps.",
    )
    eval_episodes: Int = Field(1, ge=1, description="Episodes per centre evaluation.")
    # Typed ``Any`` here; :func:`_make_run_config` gives it the tagged union of LOGGERS.
    loggers: list[Any] = Field(
        default_factory=list,
        description="Loggers that mirror each log row beside log.jsonl, one table each "
        "(`[[output.loggers]]` with `kind = \"csv\"`, `\"tensorboard\"`, `\"mlflow\"` or "
        "`\"wandb\"`); see docs/loggers.md.",
    )


def diff_protected(
    old: dict[str, Any], new: dict[str, Any], where: str = "the checkpoint"
) -> list[str]:
    """Differences between two config dumps in the sections a resume may not change
    (``where`` names what ``old`` is read from)."""

    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}.{k}"))
            return out or {prefix: {}}
        return {prefix: value}

    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for section in PROTECTED_SECTIONS:
        a.update(flat(old.get(section), section))
        b.update(flat(new.get(section), section))
    missing = object()
    return [
        f"{key}: {a.get(key, missing)!r} in {where}, {b.get(key, missing)!r} now".replace(
            repr(missing), "(absent)"
        )
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]
