"""The runner: budgets, logs, task hooks, and resuming exactly as if never stopped
(after a clean stop, a Ctrl-C at any point, or a crash while checkpointing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from typing import Literal

import numpy as np
import pytest
from pydantic import Field

import asktell.config as config_module
from asktell._interrupts import DeferredInterrupts
from asktell.checkpoint import list_checkpoints, load_checkpoint
from asktell.config_base import StrictModel
from asktell.errors import CheckpointError, ConfigError
from asktell.protocol import TaskHooks, TaskResult
from asktell.registry import TASKS
from asktell.runner import TIMING_FIELDS, read_log, resume, run
from asktell.stats import RunningStat

# What the stateful task should do to simulate Ctrl-C: {"phase": ..., "generation": g}.
TRIGGER: dict = {}


class StatefulTask(TaskHooks):
    """A sphere-like task with every optional hook, so their state must survive a resume.

    Candidates report "observations" (their parameters) that the runner folds in with
    ``observe``; ``context`` freezes their running mean for the next generation, and the return
    depends on it, as with observation normalisation. The centre is evaluated through the
    evaluator with the default plan (the centre once, sigma 0).
    """

    def __init__(self, num_params: int = 4, seed: int = 0):
        self.num_params = num_params
        self.seed = seed
        self.stat = RunningStat((num_params,))

    def context(self):
        return {"mean": self.stat.mean.tolist()}

    def observe(self, evaluation):
        if evaluation.obs_stats is not None:
            self.stat.merge(evaluation.obs_stats)

    def _returns(self, params, distribution):
        mean = np.asarray(distribution.context.get("mean", np.zeros(self.num_params)))
        return -np.sum((params - 1.0) ** 2, axis=1) - 0.1 * np.sum((params - mean) ** 2, axis=1)

    def evaluate(self, params, seeds, distribution):
        phase = "center" if np.ndim(distribution.sigma) == 0 and distribution.sigma == 0 else "evaluate"
        if TRIGGER.get("phase") == phase and TRIGGER.get("generation") == distribution.generation:
            TRIGGER.clear()
            raise KeyboardInterrupt
        stats = RunningStat((self.num_params,))
        stats.push(params)
        steps = 1 + (np.abs(params[:, 0]) * 10).astype(np.int64) % 7
        return TaskResult(
            returns=self._returns(params, distribution),
            steps=steps,
            obs_stats=stats,
            episodes=np.ones(len(params), dtype=np.int64),
            truncated=(steps > 5).astype(np.int64),
        )

    def state_dict(self):
        return {"stat": self.stat.state_dict(), "seed": self.seed}

    def load_state_dict(self, state):
        self.stat.load_state_dict(state["stat"])


class StatefulTaskConfig(StrictModel):
    """Test-only stateful task."""

    kind: Literal["stateful_test"] = "stateful_test"
    num_params: int = Field(4, ge=1)

    def build(self, seed: int = 0):
        return StatefulTask(self.num_params, seed)


StatefulTask.config_class = StatefulTaskConfig


@pytest.fixture(scope="module", autouse=True)
def stateful_task_kind():
    TASKS.register("stateful_test")(StatefulTask)
    config_module.refresh()
    yield
    del TASKS._items["stateful_test"]
    config_module.refresh()


@pytest.fixture(autouse=True)
def clear_trigger():
    TRIGGER.clear()
    yield
    TRIGGER.clear()


def make_config(generations=12, task="stateful_test", **output):
    return {
        "seed": 5,
        "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1, "learning_rate": 0.05},
        "task": {"kind": task, "num_params": 4},
        "noise": {"size": 4096},
        "budget": {"generations": generations},
        "output": {"log_format": "none", "checkpoint_every": 3, "eval_every": 2, **output},
    }


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def final_state(run_dir):
    return load_checkpoint(run_dir).state


def assert_states_equal(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            if key in ("wall_seconds", "log_bytes", "log_sha256"):  # timing, and timed rows
                continue
            assert_states_equal(a[key], b[key])
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    else:
        assert a == b


@pytest.fixture
def straight(tmp_path):
    """An uninterrupted 12-generation run: the reference every resumed run must equal."""
    result = run(make_config(), out=tmp_path / "straight")
    return result, read_log(result.run_dir), final_state(result.run_dir)


def check_same_as_straight(run_dir, straight):
    result, rows, state = straight
    assert untimed(read_log(run_dir)) == untimed(rows)
    assert_states_equal(final_state(run_dir), state)
    assert load_checkpoint(run_dir).generation == 12


# ----------------------------------------------------------------------------- basics
def test_a_run_writes_config_log_and_checkpoints(straight):
    result, rows, state = straight
    run_dir = result.run_dir
    assert (run_dir / "config.toml").is_file()
    assert result.generation == 12 and result.stop_reason == "generations budget reached (12)"
    assert [r["generation"] for r in rows] == list(range(1, 13))
    first = rows[0]
    for key in (
        "return_mean", "return_std", "return_max", "env_steps", "episodes", "grad_norm",
        "update_norm", "update_ratio", "fraction_truncated", "num_failed", "seconds_ask",
        "seconds_evaluate", "seconds_tell", "obs_count",
    ):
        assert key in first, key
    assert "center_return_mean" in rows[1] and "center_return_mean" not in rows[0]
    assert rows[-1]["env_steps"] == sum(r["generation_steps"] for r in rows)
    assert 0.0 <= rows[-1]["fraction_truncated"] <= 1.0
    # checkpoints every 3 generations, the 3 newest kept, the final one last
    assert [p.name for p in list_checkpoints(run_dir)] == [
        "gen-000006.json", "gen-000009.json", "gen-000012.json"
    ]
    np.testing.assert_array_equal(result.center, state["strategy"]["center"])
    # the task's own state is checkpointed
    assert state["task"]["stat"]["count"] == 12 * 8


def test_the_resolved_config_reloads_to_the_same_run_config(straight):
    run_dir = straight[0].run_dir
    cfg = config_module.load_config(run_dir / "config.toml")
    assert cfg.output.dir == str(run_dir)
    assert cfg.model_dump(mode="json") == load_checkpoint(run_dir).config


def test_a_run_directory_holding_a_run_is_not_overwritten(straight):
    with pytest.raises(ConfigError, match="already holds a run; continue it with `asktell resume"):
        run(make_config(), out=straight[0].run_dir)


@pytest.mark.parametrize(
    "budget, reason",
    [
        ({"generations": None, "env_steps": 30}, "env_steps budget reached"),
        ({"generations": 10**6, "wall_seconds": 0.2}, "wall_seconds budget reached"),
        ({"generations": 500, "target_return": -3.5}, "target_return reached: centre mean"),
    ],
)
def test_budgets_stop_the_run(tmp_path, budget, reason):
    cfg = make_config()
    cfg["budget"].update(budget)
    result = run(cfg, out=tmp_path / "r")
    assert result.generation >= 1
    assert re.match(reason, result.stop_reason), result.stop_reason
    if "env_steps" in budget:
        assert result.env_steps >= 30 and read_log(result.run_dir)[-2]["env_steps"] < 30


def test_a_target_without_centre_evaluations_is_judged_on_the_centre(tmp_path):
    # A candidate reaching the target only triggers a check of the centre: the run
    # stops on the centre's value, never on the best population return.
    cfg = make_config(generations=500, eval_every=0)
    cfg["budget"]["target_return"] = -3.5
    result = run(cfg, out=tmp_path / "r")
    assert result.stop_reason.startswith("target_return reached: centre mean")
    assert "best population return" not in result.stop_reason
    checks = [row for row in read_log(result.run_dir) if "target_check" in row]
    assert checks[-1]["target_check"] == "solved"
    assert all(row["target_check_return"] < -3.5 for row in checks[:-1])
    assert checks[-1]["target_check_return"] >= -3.5


def test_a_target_confirmed_on_the_budgets_last_generation_is_the_stop_reason(tmp_path):
    """Solved and out of budget at the same generation: the run says it was solved (it said
    'generations budget reached' while its log row said target_check: solved)."""
    cfg = make_config(generations=500, eval_every=0)
    cfg["budget"]["target_return"] = -3.5
    solved_at = run(cfg, out=tmp_path / "a").generation
    cfg["budget"]["generations"] = solved_at
    result = run(cfg, out=tmp_path / "b")
    assert result.generation == solved_at
    assert result.stop_reason.startswith("target_return reached"), result.stop_reason
    from asktell.runlog import read_stop

    assert read_stop(result.run_dir)["stop_rule"] == "target_return"


def test_a_callback_returning_true_stops_the_run(tmp_path):
    result = run(make_config(), out=tmp_path / "r", callback=lambda row: row["generation"] == 4)
    assert result.generation == 4 and result.stop_reason == "stopped by callback"
    assert load_checkpoint(result.run_dir).generation == 4


def test_function_tasks_run_from_python(tmp_path):
    result = run(make_config(task="function"), out=tmp_path / "f")
    assert result.generation == 12 and result.center.shape == (4,)
    rows = read_log(result.run_dir)
    assert rows[0]["generation_steps"] == 8 and rows[0]["fraction_truncated"] is None


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("k", [3, 5])
def test_stop_at_k_then_resume_equals_an_uninterrupted_run(tmp_path, straight, k):
    cfg = make_config(generations=k)
    run(cfg, out=tmp_path / "r")
    result = resume(tmp_path / "r", overrides=["budget.generations=12"])
    assert result.generation == 12
    check_same_as_straight(tmp_path / "r", straight)


def test_resume_also_works_for_function_tasks(tmp_path):
    ref = run(make_config(task="function"), out=tmp_path / "ref")
    run(make_config(generations=7, task="function"), out=tmp_path / "r")
    res = resume(tmp_path / "r", overrides=["budget.generations=12"])
    assert res.center.tobytes() == ref.center.tobytes()
    assert untimed(read_log(tmp_path / "r")) == untimed(read_log(tmp_path / "ref"))


def test_ctrl_c_between_generations_checkpoints_and_resumes_exactly(tmp_path, straight):
    def interrupt(row):
        if row["generation"] == 4:  # not a checkpoint generation (every 3)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(make_config(), out=tmp_path / "r", callback=interrupt)
    assert load_checkpoint(tmp_path / "r").generation == 4
    resume(tmp_path / "r")
    check_same_as_straight(tmp_path / "r", straight)


def test_ctrl_c_during_evaluation_saves_the_asked_state_and_resumes_exactly(tmp_path, straight):
    TRIGGER.update(phase="evaluate", generation=7)
    with pytest.raises(KeyboardInterrupt):
        run(make_config(), out=tmp_path / "r")
    ckpt = load_checkpoint(tmp_path / "r")
    assert ckpt.path.name == "gen-000007-asked.json" and ckpt.state["strategy"]["has_pending"]
    resume(tmp_path / "r")
    check_same_as_straight(tmp_path / "r", straight)


def test_ctrl_c_mid_generation_leaves_the_previous_checkpoint_untouched(tmp_path, straight):
    # The interrupt lands after tell() but before the generation is logged: that state is
    # not saved; the run resumes from generation 6 and redoes 7 and 8.
    TRIGGER.update(phase="center", generation=8)
    with pytest.raises(KeyboardInterrupt):
        run(make_config(), out=tmp_path / "r")
    before = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert load_checkpoint(tmp_path / "r").generation == 6
    assert "gen-000008.json" not in before
    assert read_log(tmp_path / "r")[-1]["generation"] == 7
    resume(tmp_path / "r")
    check_same_as_straight(tmp_path / "r", straight)


def test_sigint_is_deferred_inside_a_critical_section():
    previous = signal.getsignal(signal.SIGINT)
    with DeferredInterrupts() as interrupts:
        reached_end_of_section = False
        with pytest.raises(KeyboardInterrupt):
            with interrupts.critical():
                os.kill(os.getpid(), signal.SIGINT)
                reached_end_of_section = True
        assert reached_end_of_section
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_crash_while_checkpointing_resumes_from_the_previous_checkpoint(
    tmp_path, straight, monkeypatch
):
    import asktell._files as files

    real = files.os.replace
    state = {"armed": True}

    def crash(src, dst):
        if state["armed"] and str(dst).endswith("gen-000009.json"):
            state["armed"] = False
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run(make_config(), out=tmp_path / "r")
    monkeypatch.setattr(files.os, "replace", real)
    assert load_checkpoint(tmp_path / "r").generation == 6
    resume(tmp_path / "r")
    check_same_as_straight(tmp_path / "r", straight)


def test_resume_from_an_older_checkpoint_redoes_the_later_generations(tmp_path, straight):
    shutil.copytree(straight[0].run_dir, tmp_path / "r")
    resume(tmp_path / "r", checkpoint=tmp_path / "r" / "checkpoints" / "gen-000006.json")
    check_same_as_straight(tmp_path / "r", straight)


def test_resume_when_the_budget_is_already_reached_does_nothing(straight):
    before = (straight[0].run_dir / "log.jsonl").read_bytes()
    result = resume(straight[0].run_dir)
    assert result.generation == 12 and "budget reached" in result.stop_reason
    assert (straight[0].run_dir / "log.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "override, field",
    [
        ("strategy.sigma=0.3", "strategy.sigma"),
        ("strategy.population_size=10", "strategy.population_size"),
        ("task.num_params=5", "task.num_params"),
        ("seed=6", "seed"),
        ("noise.size=8192", "noise.size"),
    ],
)
def test_resume_rejects_a_changed_strategy_task_or_population(straight, override, field):
    before = (straight[0].run_dir / "log.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=f"cannot resume .*Differences:\n  {field}: "):
        resume(straight[0].run_dir, overrides=[override, "budget.generations=20"])
    assert (straight[0].run_dir / "log.jsonl").read_bytes() == before


def test_resume_refuses_to_move_the_run_with_set_output_dir(straight, tmp_path):
    before = (straight[0].run_dir / "log.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="--set output.dir=.*stays in its directory"):
        resume(straight[0].run_dir, overrides=[f"output.dir={tmp_path / 'elsewhere'}"])
    assert (straight[0].run_dir / "log.jsonl").read_bytes() == before
    assert not (tmp_path / "elsewhere").exists()


def test_resume_rejects_an_edited_config_file_too(straight):
    path = straight[0].run_dir / "config.toml"
    path.write_text(path.read_text().replace("sigma = 0.1", "sigma = 0.2"))
    with pytest.raises(ConfigError, match="strategy.sigma: 0.1 in the checkpoint, 0.2 now"):
        resume(straight[0].run_dir)


def test_a_run_with_a_stopping_rule_switched_off_resumes(tmp_path):
    """tolfun = null (off) is written to config.toml as a null, not dropped (dropped, it
    read back as the default 1e-11 and the resume was refused as a changed strategy)."""
    cfg = make_config(6)
    cfg["strategy"].update(tolfun=None, tolflatfitness=None)
    run(cfg, out=tmp_path / "r")
    result = resume(tmp_path / "r", overrides=["budget.generations=9"])
    assert result.generation == 9
    assert config_module.load_config(tmp_path / "r" / "config.toml").strategy.tolfun is None


def test_resume_accepts_operational_changes(tmp_path, straight):
    run(make_config(generations=6), out=tmp_path / "r")
    resume(
        tmp_path / "r",
        overrides=[
            "budget.generations=12",
            "evaluator.retries=2",
            "output.keep_checkpoints=5",
            "output.log_format=json",
        ],
    )
    check_same_as_straight(tmp_path / "r", straight)
    assert "retries = 2" in (tmp_path / "r" / "config.toml").read_text()


def test_resume_refuses_a_corrupted_checkpoint_and_runs_nothing(straight):
    run_dir = straight[0].run_dir
    for checkpoint in list_checkpoints(run_dir):  # with one good left, resume falls back to it
        npz = checkpoint.with_suffix(".npz")
        npz.write_bytes(npz.read_bytes()[:-10])
    before = (run_dir / "log.jsonl").read_bytes()
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        resume(run_dir, overrides=["budget.generations=20"])
    assert (run_dir / "log.jsonl").read_bytes() == before


def test_resume_of_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(tmp_path / "nothing")


def test_log_rows_are_strict_json(straight):
    for line in (straight[0].run_dir / "log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
