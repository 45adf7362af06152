"""A finished run directory says why the run stopped (issue 13): the log's stop record, the
final checkpoint and ``asktell status`` name the rule; an interrupted run records no stop and
a resume checks the rules again."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from asktell.checkpoint import load_checkpoint
from asktell.cli import cli
from asktell.runner import TIMING_FIELDS, read_log, resume, run
from asktell.runlog import LOG_FILE, read_log_lines, read_stop


def config(strategy=None, **budget):
    return {
        "strategy": strategy or {"kind": "openai_es", "population_size": 8, "sigma": 0.1,
                                 "learning_rate": 0.1},
        "task": {"kind": "function", "name": "sphere", "num_params": 4, "shift": 1.0},
        "noise": {"size": 65536},
        "budget": budget,
        "output": {"log_format": "none", "checkpoint_every": 1},
        "seed": 2,
    }


def status(run_dir):
    result = CliRunner().invoke(cli, ["status", str(run_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def last_line(run_dir):
    return json.loads((run_dir / LOG_FILE).read_bytes().splitlines()[-1])


def recorded(run_dir):
    """The stop as the log, the final checkpoint and the status command each record it."""
    stop = read_stop(run_dir)
    runner = load_checkpoint(run_dir).state["runner"]
    return stop, (runner.get("stop_rule"), runner.get("stop_reason")), status(run_dir)


def test_a_strategy_stopping_rule_is_recorded_in_the_run_directory(tmp_path):
    cma = {"kind": "cma_es", "sigma": 0.5, "stop_rules": True}
    result = run(config(cma, generations=2000), out=tmp_path / "r")
    assert result.stop_rule == "strategy" and result.stop_reason.startswith("strategy stopped: ")
    assert result.generation < 2000
    stop, (rule, reason), said = recorded(tmp_path / "r")
    assert stop == {"event": "stop", "generation": result.generation, "stop_rule": "strategy",
                    "stop_reason": result.stop_reason}
    assert last_line(tmp_path / "r") == stop  # the last line of the log
    assert (rule, reason) == ("strategy", result.stop_reason)
    assert f"stopped: {result.stop_reason} (rule: strategy)" in said
    assert f"generation {result.generation}," in said
    # the stop record is not a generation row
    rows = read_log(tmp_path / "r")
    assert [r["generation"] for r in rows] == list(range(1, result.generation + 1))
    assert read_log_lines(tmp_path / "r") == (rows, [])


@pytest.mark.parametrize("budget, rule", [
    ({"generations": 5}, "generations"),
    ({"env_steps": 30}, "env_steps"),
    ({"generations": 500, "target_return": -0.5}, "target_return"),
])
def test_budgets_and_a_reached_target_are_stop_reasons_too(tmp_path, budget, rule):
    result = run(config(**budget), out=tmp_path / "r")
    stop, saved, said = recorded(tmp_path / "r")
    assert result.stop_rule == rule
    assert stop["stop_rule"] == rule and stop["stop_reason"] == result.stop_reason
    assert saved == (rule, result.stop_reason)
    assert f"(rule: {rule})" in said


def test_a_callback_stop_is_recorded_in_the_checkpoint_written_before_it(tmp_path):
    # checkpoint_every=1: generation 3's checkpoint is written before the callback says stop,
    # and is written again to record it
    result = run(config(generations=10), out=tmp_path / "r",
                 callback=lambda row: row["generation"] == 3)
    stop, saved, _ = recorded(tmp_path / "r")
    assert result.generation == 3 and result.stop_rule == "callback"
    assert stop["stop_rule"] == "callback" and saved == ("callback", "stopped by callback")
    # a callback's stop is not remembered: resuming continues to the budget
    again = resume(tmp_path / "r", log_format="none")
    assert again.generation == 10 and again.stop_rule == "generations"
    assert [r["generation"] for r in read_log(tmp_path / "r")] == list(range(1, 11))
    assert read_stop(tmp_path / "r")["stop_rule"] == "generations"


def test_an_interrupted_run_records_no_stop_and_says_how_to_continue(tmp_path):
    def interrupt(row):
        if row["generation"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(config(generations=10), out=tmp_path / "r", callback=interrupt)
    stop, saved, said = recorded(tmp_path / "r")
    assert stop is None and saved == (None, None)
    assert "not stopped" in said and f"asktell resume {tmp_path / 'r'}" in said
    # the lock record of a process that died (SIGKILL leaves it) does not read as running
    dead = json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()})
    (tmp_path / "r" / ".lock").write_text(dead)
    assert "not stopped" in status(tmp_path / "r")


def test_resume_of_a_stopped_run_runs_nothing_and_leaves_the_log_as_it_was(tmp_path):
    run(config(generations=5), out=tmp_path / "r")
    before = (tmp_path / "r" / LOG_FILE).read_bytes()
    checkpoint = load_checkpoint(tmp_path / "r").path.read_bytes()
    result = resume(tmp_path / "r", log_format="none")
    assert result.generation == 5 and result.stop_rule == "generations"
    assert (tmp_path / "r" / LOG_FILE).read_bytes() == before
    assert load_checkpoint(tmp_path / "r").path.read_bytes() == checkpoint  # not rewritten


def test_a_raised_budget_continues_and_the_log_matches_a_straight_run(tmp_path):
    straight = run(config(generations=8), out=tmp_path / "straight")
    run(config(generations=5), out=tmp_path / "r")
    result = resume(tmp_path / "r", overrides=["budget.generations=8"], log_format="none")
    assert result.generation == 8 and result.stop_reason == straight.stop_reason

    def untimed(d):
        return [{k: v for k, v in r.items() if k not in TIMING_FIELDS}
                for r in map(json.loads, (d / LOG_FILE).read_bytes().splitlines())]

    # the first stop's record went with the resume: one record, at the end, as if never stopped
    assert untimed(tmp_path / "r") == untimed(tmp_path / "straight")
    assert read_stop(tmp_path / "r")["generation"] == 8


def test_a_stop_record_lost_in_a_crash_is_read_from_the_checkpoint_and_rewritten(tmp_path):
    run(config(generations=5), out=tmp_path / "r")
    log = tmp_path / "r" / LOG_FILE
    whole = log.read_bytes()
    lines = whole.splitlines(keepends=True)
    for cut in (b"".join(lines[:-1]), b"".join(lines[:-1]) + lines[-1][:30]):  # lost, torn
        log.write_bytes(cut)
        assert read_stop(tmp_path / "r") is None
        assert "stopped: generations budget reached (5) (rule: generations)" in status(tmp_path / "r")
        resume(tmp_path / "r", log_format="none")
        assert log.read_bytes() == whole


def test_resuming_a_stopped_run_says_the_generation_it_stopped_at(tmp_path, capsys):
    run(config(generations=5), out=tmp_path / "r")
    capsys.readouterr()
    resume(tmp_path / "r", log_format="plain")
    out = capsys.readouterr().out
    assert "stopped: generations budget reached (5) (generation 5," in out, out


def test_status_of_a_run_in_progress_says_it_is_running(tmp_path):
    import os

    def look(row):
        if row["generation"] == 2:
            seen.append(status(tmp_path / "r"))

    seen = []
    run(config(generations=3), out=tmp_path / "r", callback=look)
    assert f"running: process {os.getpid()} holds the run directory" in seen[0], seen
    assert "stopped: generations budget reached (3)" in status(tmp_path / "r")
