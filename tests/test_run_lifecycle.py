"""The life cycle of a run directory, with real processes: a run stopped in any way (budget,
Ctrl-C, SIGTERM, SIGKILL, a crash before its first checkpoint) resumes bitwise equal to an
uninterrupted run; one process at a time holds a directory; a log that does not match its
checkpoint is refused, never glued; a bad ``--out`` creates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from asktell.checkpoint import list_checkpoints, load_checkpoint
from asktell.config import config_from_dict
from asktell.errors import CheckpointError, ConfigError
from asktell.registry import TASKS
from asktell.runner import TIMING_FIELDS, read_log, resume, run

# Runs the real CLI with every generation slowed by a sleep outside the critical sections, so
# a signal lands mid-run; the sleep changes no number of the run.
DRIVER = """
import sys, time
import asktell.loop as loop
_call = loop.GenerationStep.__call__
def slow(self, *args, **kwargs):
    time.sleep(float(sys.argv[1]))
    return _call(self, *args, **kwargs)
loop.GenerationStep.__call__ = slow
from asktell.cli import main
sys.exit(main(sys.argv[2:]))
"""

FUNCTION = {
    "seed": 3,
    "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1, "learning_rate": 0.05},
    "task": {"kind": "function", "name": "rastrigin", "num_params": 5},
    "noise": {"size": 8192},
    "output": {"checkpoint_every": 2, "eval_every": 2, "eval_episodes": 1},
}
GYM = {
    "seed": 4,
    "strategy": {"kind": "openai_es", "population_size": 6, "sigma": 0.1, "learning_rate": 0.1},
    "task": {"kind": "gym", "env_id": "CartPole-v1", "policy": "linear",
             "step_cap": "fixed", "max_episode_steps": 60},
    "output": {"checkpoint_every": 2, "eval_every": 2, "eval_episodes": 2},
}
SETUPS = {
    "function-serial": {**FUNCTION, "evaluator": {"kind": "serial"}},
    "gym-serial": {**GYM, "evaluator": {"kind": "serial"}},
    "gym-vector": {**GYM, "evaluator": {"kind": "vector", "mode": "sync", "num_envs": 3}},
}
needs_gym = pytest.mark.skipif("gym" not in TASKS, reason="the Gymnasium task is not registered")


def setup_config(name, generations):
    cfg = json.loads(json.dumps(SETUPS[name]))
    cfg["budget"] = {"generations": generations}
    cfg["output"]["log_format"] = "plain"
    return cfg


def write_run_file(tmp_path, name, generations):
    path = tmp_path / f"{name}.toml"
    path.write_text(config_from_dict(setup_config(name, generations)).to_toml())
    return path


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


def assert_same_run(a, b):
    """Bitwise equal final states (timing aside) and equal log rows."""
    sa, sb = load_checkpoint(a).state, load_checkpoint(b).state

    def same(x, y, where):
        if isinstance(x, dict):
            assert set(x) == set(y), where
            for key in x:
                if key not in ("wall_seconds", "log_bytes", "log_sha256"):
                    same(x[key], y[key], f"{where}.{key}")
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), where
        else:
            assert x == y, where

    same(sa, sb, "state")
    assert untimed(read_log(a)) == untimed(read_log(b))


def start(tmp_path, args, sleep=0.05):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(sleep), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def logged(run_dir):
    try:
        return len(read_log(run_dir))
    except ConfigError:
        return 0


def stop_with(tmp_path, name, how):
    """Start a long run, stop it with ``how`` after a checkpoint; returns (dir, proc, output)."""
    out = tmp_path / f"{name}-{how}"
    run_file = write_run_file(tmp_path, name, 10_000)
    proc = start(tmp_path, ["run", run_file, "--out", out])
    wait_for(lambda: logged(out) >= 3 and list_checkpoints(out), proc)
    proc.send_signal(getattr(signal, how))
    stdout, stderr = proc.communicate(timeout=120)
    return out, proc.returncode, stdout + stderr


# ----------------------------------------------------------------------------- resume matrix
HOW = ["budget", "SIGINT", "SIGTERM", "SIGKILL"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", [
    "function-serial",
    pytest.param("gym-serial", marks=needs_gym),
    pytest.param("gym-vector", marks=needs_gym),
])
def test_a_run_stopped_any_way_resumes_bitwise_equal(tmp_path, name, how):
    if how == "budget":
        out = tmp_path / "split"
        run(setup_config(name, 3), out=out, log_format="none")
    else:
        out, code, output = stop_with(tmp_path, name, how)
        signum = getattr(signal, how)
        assert code == (-signum if how == "SIGKILL" else 128 + signum), output
        if how != "SIGKILL":
            assert output.count("asktell resume") == 1, output
            assert "Traceback" not in output, output
    target = max(r["generation"] for r in read_log(out)) + 2
    resume(out, overrides=[f"budget.generations={target}"], log_format="none")
    reference = run(setup_config(name, target), out=tmp_path / "straight", log_format="none")
    assert load_checkpoint(out).generation == target
    assert_same_run(out, reference.run_dir)


# ----------------------------------------------------------------------------- early deaths
def _crashed_before_its_first_checkpoint(out, at):
    """A 5-generation function run (checkpoints every 10) that crashed at generation ``at``."""
    cfg = setup_config("function-serial", 5)
    cfg["output"].update(checkpoint_every=10, log_format="none")

    def crash(row):
        if row["generation"] == at:
            raise RuntimeError("the machine fell over")

    with pytest.raises(RuntimeError):
        run(cfg, out=out, callback=crash)
    return cfg


def test_a_crash_before_the_first_checkpoint_leaves_a_restartable_folder(tmp_path):
    out = tmp_path / "r"
    cfg = _crashed_before_its_first_checkpoint(out, 3)
    assert not list_checkpoints(out) and len(read_log(out)) == 3
    # `run` and `resume` agree on what to do with it
    with pytest.raises(ConfigError, match=r"stopped before its first checkpoint; `asktell resume "
                       rf"{out}` starts it again at generation 0"):
        run(cfg, out=out)
    resume(out)
    assert_same_run(out, run(cfg, out=tmp_path / "straight").run_dir)


def test_a_run_without_a_checkpoint_is_not_restarted_with_another_seed_or_strategy(tmp_path):
    """With no checkpoint the saved config.toml is the run's record: `resume --set` may
    change the budget but not what is optimised, and a refused resume leaves it as it was."""
    out = tmp_path / "r"
    _crashed_before_its_first_checkpoint(out, 2)
    saved = (out / "config.toml").read_bytes()
    for override, field in (("seed=4", "seed"), ("strategy.kind=snes", "strategy.kind"),
                            ("strategy.sigma=0.3", "strategy.sigma")):
        with pytest.raises(ConfigError, match=rf"Differences:\n(.*\n)*  {field}: .* in the saved "
                           r"config.toml, .* now"):
            resume(out, overrides=[override])
        assert (out / "config.toml").read_bytes() == saved
    resume(out, overrides=["budget.generations=6"])
    assert load_checkpoint(out).generation == 6


@needs_gym
def test_a_vector_entry_point_run_refuses_a_changed_evaluator_on_resume(tmp_path):
    """CartPole's own vector env resets itself per (generation, worker): its returns depend
    on num_envs and num_workers, so changing them on resume would go on along another
    trajectory. Modes whose returns are the serial rule's may change (and do, bitwise)."""
    cfg = setup_config("gym-vector", 2)
    cfg["evaluator"] = {"kind": "vector", "mode": "vector_entry_point", "num_envs": 3}
    cfg["output"].update(log_format="none", eval_every=0)
    out = tmp_path / "r"
    run(cfg, out=out)
    for override in ("evaluator.num_envs=4", "evaluator.mode=sync", "evaluator.kind=serial"):
        with pytest.raises(ConfigError, match=r"evaluator: returns depend on"):
            resume(out, overrides=["budget.generations=4", override])
    resume(out, overrides=["budget.generations=4", "evaluator.retries=1"])
    assert load_checkpoint(out).generation == 4

    # before its first checkpoint no generation is kept: the evaluator may change
    cfg["output"]["checkpoint_every"] = 10
    early = tmp_path / "early"
    with pytest.raises(RuntimeError):
        run(cfg, out=early, callback=lambda row: (_ for _ in ()).throw(RuntimeError("died")))
    resume(early, overrides=["evaluator.mode=sync"])
    assert load_checkpoint(early).generation == 2

    serial = setup_config("gym-serial", 2)
    serial["output"].update(log_format="none")
    run(serial, out=tmp_path / "s")
    resume(tmp_path / "s", overrides=["budget.generations=4", "evaluator.kind=vector",
                                      "evaluator.num_envs=2"])
    reference = run(setup_config("gym-serial", 4), out=tmp_path / "straight", log_format="none")
    assert_same_run(tmp_path / "s", reference.run_dir)


def test_a_users_own_config_toml_in_out_is_not_taken_for_a_dead_run(tmp_path):
    (tmp_path / "config.toml").write_text('[strategy]\nkind = "openai_es"\n')
    with pytest.raises(ConfigError, match="holds a config.toml that no asktell run wrote"):
        run(setup_config("function-serial", 2), out=tmp_path)
    assert (tmp_path / "config.toml").read_text() == '[strategy]\nkind = "openai_es"\n'


def test_a_config_toml_that_is_a_folder_is_named(tmp_path):
    out = tmp_path / "r"
    run(setup_config("function-serial", 2), out=out, log_format="none")
    (out / "config.toml").unlink()
    (out / "config.toml").mkdir()
    with pytest.raises(CheckpointError, match="config.toml' is not a file"):
        resume(out, overrides=["budget.generations=3"])


def test_a_failing_candidate_before_the_first_checkpoint_is_restartable(tmp_path, monkeypatch):
    from asktell.errors import CandidateFailedError
    from asktell.functions import FUNCTIONS

    cfg = setup_config("function-serial", 4)
    cfg["output"].update(checkpoint_every=10, log_format="none")
    cfg["evaluator"] = {"kind": "serial", "on_failure": "raise"}
    out = tmp_path / "r"
    sphere, calls = FUNCTIONS["rastrigin"], {"n": 0}

    def fails_once(X):  # called once per batch of candidates (a vectorised function)
        calls["n"] += len(X) > 1
        if calls["n"] == 3:  # the third generation's population
            raise FloatingPointError("the simulator diverged")
        return sphere(X)

    monkeypatch.setitem(FUNCTIONS, "rastrigin", fails_once)
    with pytest.raises(CandidateFailedError):
        run(cfg, out=out)
    assert not list_checkpoints(out)
    resume(out)
    assert_same_run(out, run(cfg, out=tmp_path / "straight").run_dir)


def test_sigkill_before_the_first_checkpoint_and_a_folder_with_only_its_config(tmp_path):
    run_file = write_run_file(tmp_path, "function-serial", 10_000)
    out = tmp_path / "killed"
    proc = start(tmp_path, ["run", run_file, "--out", out, "--set", "output.checkpoint_every=5000"])
    wait_for(lambda: logged(out) >= 2, proc)
    proc.kill()
    proc.wait()
    assert not list_checkpoints(out)
    bare = tmp_path / "bare"  # died while building: only config.toml was written
    bare.mkdir()
    (bare / "config.toml").write_bytes((out / "config.toml").read_bytes())
    reference = run(setup_config("function-serial", 4), out=tmp_path / "straight", log_format="none")
    for folder in (out, bare):
        resume(folder, overrides=["budget.generations=4", "output.checkpoint_every=2"],
               log_format="none")
        assert_same_run(folder, reference.run_dir)


# ----------------------------------------------------------------------------- the lock
def test_a_second_process_is_refused_and_a_killed_holder_is_taken_over(tmp_path):
    run_file = write_run_file(tmp_path, "function-serial", 10_000)
    out = tmp_path / "r"
    first = start(tmp_path, ["run", run_file, "--out", out])
    try:
        wait_for(lambda: len(list_checkpoints(out)) >= 1 and logged(out) >= 3, first)
        rows = logged(out)
        second = subprocess.run(
            [sys.executable, "-m", "asktell.cli", "resume", str(out)],
            capture_output=True, text=True, timeout=120,
        )
        assert second.returncode == 2, second
        assert f"in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert logged(out) >= rows  # nothing of the first run was rewritten
        generations = [r["generation"] for r in read_log(out)]
        assert generations == sorted(set(generations))
    finally:
        first.kill()
        first.wait()
    result = resume(out, overrides=["budget.generations=6"], log_format="none")  # stale lock
    assert result.generation >= 6


# ----------------------------------------------------------------------------- the log
@pytest.fixture
def stopped(tmp_path):
    cfg = setup_config("function-serial", 6)
    cfg["output"]["log_format"] = "none"
    run(cfg, out=tmp_path / "straight")
    cfg["budget"]["generations"] = 4
    run(cfg, out=tmp_path / "r")
    return tmp_path / "r", tmp_path / "straight"


def _rows(log):
    """The log's generation rows: its lines without the stop record after them, which the
    checkpoint does not count (resume drops and rewrites it)."""
    lines = log.read_bytes().splitlines(keepends=True)
    assert b'"event": "stop"' in lines[-1]
    return lines[:-1]


def _truncate_mid_row(log):
    data = b"".join(_rows(log))
    log.write_bytes(data[: len(data) - 40])


def _drop_last_row(log):
    log.write_bytes(b"".join(_rows(log)[:-1]))


def _edit_a_row(log):
    data = log.read_bytes()
    i = data.index(b'"return_mean": -') + len(b'"return_mean": -')
    digit = data[i:i + 1]
    log.write_bytes(data[:i] + (b"9" if digit != b"9" else b"8") + data[i + 1:])


def _swap_two_rows(log):
    lines = log.read_bytes().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    log.write_bytes(b"".join(lines))


@pytest.mark.parametrize("damage, message", [
    (lambda log: log.unlink(), "is missing"),
    (_truncate_mid_row, "shorter than its checkpoint expects"),
    (_drop_last_row, "shorter than its checkpoint expects"),
    (_edit_a_row, "does not match its checkpoint"),
    (_swap_two_rows, "does not match its checkpoint"),
])
def test_a_log_that_does_not_match_its_checkpoint_is_refused_never_glued(stopped, damage, message):
    out, straight = stopped
    log = out / "log.jsonl"
    damage(log)
    before = log.read_bytes() if log.exists() else None
    with pytest.raises(CheckpointError, match=message + ".*--repair-log"):
        resume(out, overrides=["budget.generations=6"], log_format="none")
    assert (log.read_bytes() if log.exists() else None) == before  # left as it was
    # --repair-log keeps the damaged log aside and starts a new one after the checkpoint
    resume(out, overrides=["budget.generations=6"], log_format="none", repair_log=True)
    assert [r["generation"] for r in read_log(out)] == [5, 6]
    assert (out / "log.jsonl.damaged").exists() == (before is not None)
    assert load_checkpoint(out).state["strategy"]["center"].tobytes() == \
        load_checkpoint(straight).state["strategy"]["center"].tobytes()


def test_a_second_repair_keeps_the_first_damaged_log(stopped):
    out, _ = stopped
    _edit_a_row(out / "log.jsonl")
    first = (out / "log.jsonl").read_bytes()
    resume(out, overrides=["budget.generations=6"], log_format="none", repair_log=True)
    _edit_a_row(out / "log.jsonl")
    second = (out / "log.jsonl").read_bytes()
    resume(out, overrides=["budget.generations=7"], log_format="none", repair_log=True)
    assert (out / "log.jsonl.damaged").read_bytes() == first
    assert (out / "log.jsonl.damaged.1").read_bytes() == second
    assert [r["generation"] for r in read_log(out)] == [7]


def test_rows_after_the_checkpoint_are_dropped_and_the_log_then_matches(stopped):
    out, straight = stopped
    with open(out / "log.jsonl", "ab") as fh:
        fh.write(b'{"generation": 5, "torn": tr')  # a row the killed run never finished
    resume(out, overrides=["budget.generations=6"], log_format="none")
    assert_same_run(out, straight)


def test_plot_says_what_it_skipped_and_names_a_missing_folder(stopped, tmp_path):
    pytest.importorskip("matplotlib")
    from asktell.cli import main

    out, _ = stopped
    with open(out / "log.jsonl", "ab") as fh:
        fh.write(b'{"generation": 5, "torn": tr')
    proc = subprocess.run(
        [sys.executable, "-m", "asktell.cli", "plot", str(out), "-o", str(tmp_path / "c.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc
    assert "skipped 1 log line(s)" in proc.stderr and "line 6: not JSON (torn last line)" in proc.stderr  # line 5: the stop record
    assert main(["plot", str(tmp_path / "nope"), "-o", str(tmp_path / "d.png")]) == 2


# ----------------------------------------------------------------------------- bad --out
def test_a_bad_out_is_refused_and_creates_nothing(tmp_path, capsys, monkeypatch):
    from asktell.cli import main

    monkeypatch.chdir(tmp_path)  # --out '' once meant this folder

    run_file = write_run_file(tmp_path, "function-serial", 2)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    other = tmp_path / "other"
    run(setup_config("function-serial", 2), out=other, log_format="none")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for out, message in [
        (a_file / "run", "which is a file"),
        ("/proc/asktell-run", "inside /proc"),
        (other / "nested" / "run", "inside the run directory"),
        ("", "(--out) is empty"),
        (" ", "(--out) is empty"),
        ("run-\udcff", "is not valid UTF-8"),  # a byte 0xff in the name, as a shell passes it
    ]:
        assert main(["run", str(run_file), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- the display
def test_the_run_directory_and_the_resume_command_are_printed_once(tmp_path):
    run_file = write_run_file(tmp_path, "function-serial", 3)
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "asktell.cli", "run", str(run_file), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc
    assert (proc.stdout + proc.stderr).count(str(out)) == 1, proc


# ----------------------------------------------------------------------------- Dask
def test_ctrl_c_with_the_embedded_dask_cluster_prints_no_worker_traceback(tmp_path):
    pytest.importorskip("distributed")
    cfg = setup_config("function-serial", 10_000)
    cfg["evaluator"] = {"kind": "dask", "num_workers": 2}
    run_file = tmp_path / "dask.toml"
    run_file.write_text(config_from_dict(cfg).to_toml())
    out = tmp_path / "r"
    # a terminal's Ctrl-C reaches the whole process group, workers included
    proc = subprocess.Popen(
        [sys.executable, "-m", "asktell.cli", "run", str(run_file), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        wait_for(lambda: len(list_checkpoints(out)) >= 1, proc, timeout=120)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert (stdout + stderr).count("asktell resume") == 1
    result = resume(out, overrides=[f"budget.generations={logged(out) + 1}"], log_format="none")
    assert result.generation == logged(out)


def test_sighup_stops_like_ctrl_c_with_its_own_exit_status(tmp_path):
    out, code, output = stop_with(tmp_path, "function-serial", "SIGHUP")
    assert code == 128 + signal.SIGHUP and output.count("asktell resume") == 1, output
    assert "interrupted (SIGHUP)" in output
    target = max(r["generation"] for r in read_log(out)) + 2
    resume(out, overrides=[f"budget.generations={target}"], log_format="none")
    reference = run(setup_config("function-serial", target), out=tmp_path / "s", log_format="none")
    assert_same_run(out, reference.run_dir)


def test_resume_says_once_which_checkpoints_it_skipped(stopped, monkeypatch, capsys):
    import asktell.runner as runner_module

    out, _ = stopped
    load = runner_module.load_checkpoint

    def with_fallback(path):  # what load_checkpoint reports after falling back (engineer T1)
        ckpt = load(path)
        ckpt.skipped = [("checkpoints/gen-000006.json", "its SHA-256 does not match")]
        return ckpt

    monkeypatch.setattr(runner_module, "load_checkpoint", with_fallback)
    resume(out, overrides=["budget.generations=6"], log_format="plain")
    said = capsys.readouterr().out
    assert said.count("skipped checkpoint checkpoints/gen-000006.json: its SHA-256 does not match") == 1
