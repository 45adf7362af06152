"""The asktell command, end to end: run -> resume -> eval -> plot, and every bad input
rejected before anything starts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from asktell.checkpoint import list_checkpoints, load_checkpoint
from asktell.cli import cli, main
from asktell.registry import TASKS
from asktell.runner import TIMING_FIELDS, read_log

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPHERE = str(EXAMPLES / "sphere.toml")
FAST = [
    "--set", "noise.size=65536", "--set", "budget.generations=8",
    "--set", "output.checkpoint_every=3", "--set", "output.eval_every=2",
]

needs_gym = pytest.mark.skipif(
    "gym" not in TASKS, reason="the Gymnasium task (kind 'gym') is not registered yet"
)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def untimed(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


# ----------------------------------------------------------------------------- the happy path
def test_run_resume_eval_plot_for_a_function_task(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", SPHERE, *FAST, "--set", "budget.generations=5", "--out", out)
    assert result.exit_code == 0, result.output
    assert "gen 5 |" in result.output and "done: generation 5" in result.output
    assert (out / "config.toml").is_file() and len(read_log(out)) == 5

    result = invoke("resume", out, "--set", "budget.generations=8")
    assert result.exit_code == 0, result.output
    assert "resuming at generation 5" in result.output
    assert [r["generation"] for r in read_log(out)] == list(range(1, 9))

    reference = tmp_path / "straight"
    assert invoke("run", SPHERE, *FAST, "--out", reference).exit_code == 0
    assert untimed(read_log(out)) == untimed(read_log(reference))

    result = invoke("eval", out, "--episodes", 3)
    assert result.exit_code == 0, result.output
    assert "latest centre of generation 8: mean return" in result.output
    assert "over 3 episode(s)" in result.output

    result = invoke("eval", out, "--best")
    assert result.exit_code == 0 and "best centre" in result.output

    png = tmp_path / "curve.png"
    result = invoke("plot", out, reference, "-o", png, "--label", "resumed", "--label", "straight")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_list_names_every_registered_plugin_with_a_description():
    result = invoke("list")
    assert result.exit_code == 0
    for name in ("openai_es", "serial", "function"):
        line = next(line for line in result.output.splitlines() if line.split()[:1] == [name])
        assert len(line.split()) > 2  # has a description
    for name in TASKS.names():
        assert name in result.output


def test_schema_is_the_json_schema_of_run_config():
    result = invoke("schema")
    schema = json.loads(result.output)
    assert set(schema["properties"]) >= {"strategy", "evaluator", "task", "budget", "seed", "output"}
    assert schema["required"] == ["strategy", "task", "budget"]


def test_check_prints_the_resolved_config():
    result = invoke("check", SPHERE, "--set", "strategy.sigma=0.2")
    assert result.exit_code == 0
    assert "sigma = 0.2" in result.output and 'kind = "serial"' in result.output


def test_main_returns_exit_status(tmp_path, capsys):
    assert main(["schema"]) == 0
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "sets, message",
    [
        (["strategy.sigmaa=0.1"], "strategy.sigmaa: unknown key (not a setting here); did you mean 'sigma'?"),
        (["strategy.sigma=0"], "strategy.sigma: Input should be greater than 0; got 0"),
        (["strategy.sigma=-1"], "strategy.sigma: Input should be greater than 0; got -1"),
        (["strategy.sigma=.nan"], "strategy.sigma: Input should be a finite number; got nan"),
        (["strategy.population_size=lots"], "strategy.population_size: Input should be an integer; got 'lots'"),
        (["strategy.population_size=31"], "population_size must be even (candidates come in mirrored pairs); got 31"),
        (["strategy.kind=openai-es"], "strategy.kind: unknown strategy 'openai-es'; did you mean 'openai_es'?"),
        (["budget.generations=0"], "budget.generations"),
        (["oops"], "--set expects KEY=VALUE"),
    ],
)
def test_run_rejects_a_malformed_config_before_starting(tmp_path, sets, message):
    out = tmp_path / "run"
    args = [a for s in sets for a in ("--set", s)]
    result = invoke("run", SPHERE, *args, "--out", out)
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()  # nothing started


def test_run_rejects_yaml_with_python_tags_and_runs_nothing(tmp_path):
    marker = tmp_path / "executed"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"strategy: !!python/object/apply:os.system ['touch {marker}']\n"
        "task: {kind: function}\nbudget: {generations: 1}\n"
    )
    result = invoke("run", bad, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "YAML tag not allowed" in result.output
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_run_rejects_yaml_with_duplicate_keys(tmp_path):
    bad = tmp_path / "dup.yaml"
    bad.write_text("seed: 1\nseed: 2\nstrategy: {kind: openai_es}\ntask: {kind: function}\n")
    result = invoke("run", bad, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "duplicate key 'seed'" in result.output


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    assert invoke("run", SPHERE, *FAST, "--out", out).exit_code == 0
    return out


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.with_suffix(".npz").write_bytes(b"PK\x03\x04 truncated"), "corrupted or truncated"),
        (lambda p: p.write_text('{"format": "asktell-checkpoint", "format_'), "its JSON does not parse"),
        (lambda p: p.write_text('{"format": "tensorflow"}'), "is not an asktell checkpoint"),
    ],
)
def test_resume_and_eval_refuse_a_damaged_checkpoint(finished_run, damage, message):
    for checkpoint in list_checkpoints(finished_run):  # one good one left: resume falls back
        damage(checkpoint)
    log_before = (finished_run / "log.jsonl").read_bytes()
    for args in (("resume", finished_run, "--set", "budget.generations=20"), ("eval", finished_run)):
        result = invoke(*args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert (finished_run / "log.jsonl").read_bytes() == log_before


def test_log_format_is_this_commands_console_and_a_silent_resume_still_says_what_it_skipped(
    tmp_path, capsys
):
    """--log-format is not written into config.toml (a later resume shows what the run file
    asked for), and notes a user must not miss reach stderr even with --log-format none."""
    out = tmp_path / "run"
    assert main(["run", SPHERE, *FAST, "--out", str(out), "--log-format", "none"]) == 0
    assert 'log_format = "auto"' in (out / "config.toml").read_text()
    newest = list_checkpoints(out)[-1]
    newest.write_text(newest.read_text().replace('"generation": 8', '"generation": 9'))
    capsys.readouterr()
    assert main(["resume", str(out), "--set", "budget.generations=9", "--log-format", "none"]) == 0
    err = capsys.readouterr().err
    assert "asktell: note: skipped checkpoint" in err and newest.name in err, err
    assert 'log_format = "auto"' in (out / "config.toml").read_text()


def test_a_checkpoint_of_another_run_is_refused_by_eval_export_and_resume(finished_run, tmp_path, capsys):
    """eval labelled another run's checkpoint with this run's name; resume would continue it
    here. Its own older checkpoint is fine."""
    other = tmp_path / "other"
    assert main(["run", SPHERE, *FAST, "--out", str(other), "--log-format", "none"]) == 0
    foreign = list_checkpoints(other)[-1]
    for args in (["eval", str(finished_run), "--checkpoint", str(foreign)],
                 ["export", str(finished_run), "-o", str(tmp_path / "p.npz"), "--checkpoint", str(foreign)],
                 ["resume", str(finished_run), "--checkpoint", str(foreign)]):
        assert main(args) == 2, args
        assert "is not a checkpoint of the run in" in capsys.readouterr().err
    own = list_checkpoints(finished_run)[0]
    assert main(["eval", str(finished_run), "--checkpoint", str(own)]) == 0


def test_ctrl_c_while_the_run_file_loads_is_exit_130_with_nothing_to_resume(tmp_path, monkeypatch, capsys):
    import asktell.cli as cli_module

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_load", interrupted)
    assert main(["run", SPHERE, "--out", str(tmp_path / "r")]) == 130
    assert "interrupted before the run started; nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_a_changed_strategy_listing_the_fields(finished_run):
    result = invoke(
        "resume", finished_run, "--set", "strategy.sigma=0.3", "--set", "strategy.population_size=64"
    )
    assert result.exit_code == 2
    assert "strategy.population_size: 32 in the checkpoint, 64 now" in result.output
    assert "strategy.sigma: 0.1 in the checkpoint, 0.3 now" in result.output


def test_resume_of_something_that_is_not_a_run(tmp_path):
    result = invoke("resume", tmp_path)
    assert result.exit_code == 2 and "no checkpoint in" in result.output


def test_eval_video_of_a_function_task_is_a_clear_error(finished_run, tmp_path):
    result = invoke("eval", finished_run, "--video", tmp_path / "x.mp4")
    assert result.exit_code == 2  # a request the run cannot serve is bad input, not a failure
    assert "--video needs a task that renders episodes" in result.output
    assert not (tmp_path / "x.mp4").exists()


def test_eval_rejects_bad_episode_counts(finished_run):
    assert invoke("eval", finished_run, "--episodes", 0).exit_code == 2


def test_plot_without_matplotlib_prints_the_install_command(finished_run, tmp_path, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = invoke("plot", finished_run, "-o", tmp_path / "c.png")
    assert result.exit_code == 2
    assert 'pip install -e ".[plot]"' in result.output


def test_plot_of_a_directory_without_a_log(tmp_path):
    result = invoke("plot", tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch):
    import asktell.runner

    def interrupted(cfg, out, **kwargs):
        if "started" in str(out):  # the run directory holds the config: resumable
            Path(out).mkdir()
            (Path(out) / "config.toml").write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(asktell.runner, "run", interrupted)
    result = invoke("run", SPHERE, "--out", tmp_path / "started")
    assert result.exit_code == 130
    assert result.output.count(f"asktell resume {tmp_path / 'started'}") == 1
    # interrupted while building: no run directory yet, so no resume command to give
    result = invoke("run", SPHERE, "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert "before the run started; nothing to resume" in result.output


# ----------------------------------------------------------------------------- CartPole
CARTPOLE = str(EXAMPLES / "cartpole.toml")


@needs_gym
def test_cartpole_run_plot_eval_from_the_example(tmp_path):
    out = tmp_path / "cartpole"
    result = invoke("run", CARTPOLE, "--set", "budget.generations=3", "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_log(out)
    from asktell.config import load_config

    population = load_config(CARTPOLE).strategy.population_size
    assert rows[-1]["env_steps"] > 0 and rows[-1]["episodes"] >= 3 * population
    assert invoke("plot", out, "-o", tmp_path / "c.png").exit_code == 0
    result = invoke("eval", out, "--episodes", 2)
    assert result.exit_code == 0 and "over 2 episode(s)" in result.output


@needs_gym
def test_an_unknown_gymnasium_id_is_rejected_before_anything_starts(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", CARTPOLE, "--set", "task.env_id=CartPol-v1", "--out", out)
    assert result.exit_code == 2, result.output
    assert "CartPol-v1" in result.output and "CartPole" in result.output
    assert not out.exists()


@needs_gym
@needs_gym
def test_outputs_that_cannot_or_must_not_be_written_are_refused_before_any_work(tmp_path, capsys):
    """plot, export and eval --video: a wrong type, a path under a file, an empty name or a
    run's own file is exit 2 with the reason (they were tracebacks, or overwrote a
    checkpoint), and nothing is written."""
    run_dir = tmp_path / "c"
    assert main(["run", CARTPOLE, "--set", "budget.generations=1", "--set",
                 "budget.target_return=null", "--out", str(run_dir), "--log-format", "none"]) == 0
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    newest = list_checkpoints(run_dir)[-1].with_suffix(".npz")
    for args, words in [
        (["plot", run_dir, "-o", tmp_path / "x.txt"], "plot output must end in"),
        (["plot", run_dir, "-o", a_file / "p.png"], "which is a file, not a directory"),
        (["export", run_dir, "-o", a_file / "p.npz"], "which is a file, not a directory"),
        (["export", run_dir, "-o", newest], "would replace a file of the run"),
        (["export", run_dir, "-o", ""], "is empty"),
        (["eval", run_dir, "--episodes", "1", "--video", tmp_path / "v"], "--video must end in"),
        (["eval", run_dir, "--episodes", "1", "--video", a_file / "v.gif"], "which is a file"),
    ]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (args, err)
    for args, words in [
        (["plot", run_dir, "-o", ""], "plot output is empty"),
        (["plot", run_dir, "-o", "/proc/asktell-plot.png"], "could not be written"),
    ]:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (args, err)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    assert main(["plot", str(run_dir), "-o", str(tmp_path / "curve")]) == 0
    assert f"wrote {tmp_path / 'curve.png'}" in capsys.readouterr().out
    assert (tmp_path / "curve.png").exists()


@needs_gym
def test_an_async_vector_env_run_ends_without_worker_tracebacks(tmp_path):
    """The env's close sends SIGTERM to its forked workers, which had inherited the run's
    interrupt handler and each printed Interrupted and BrokenPipeError tracebacks."""
    done = asktell(tmp_path, "run", EXAMPLES / "pendulum.toml", "--out", "r", "--log-format", "none",
                   "--set", "budget.generations=1", "--set", "evaluator.mode=async",
                   "--set", "evaluator.num_envs=2", "--set", "task.max_episode_steps=20",
                   "--set", "task.step_cap=fixed")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_cartpole_resume_is_bitwise_identical(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--set", "budget.generations=4", "--set", "output.checkpoint_every=1"]
    assert invoke("run", CARTPOLE, *common, "--out", straight).exit_code == 0
    assert invoke("run", CARTPOLE, *common, "--set", "budget.generations=2", "--out", split).exit_code == 0
    assert invoke("resume", split, "--set", "budget.generations=4").exit_code == 0
    a, b = load_checkpoint(straight).state, load_checkpoint(split).state
    assert a["strategy"]["center"].tobytes() == b["strategy"]["center"].tobytes()
    for key in a["strategy"]:
        if key.startswith("optimizer."):
            assert (
                json.dumps(a["strategy"][key], default=lambda x: x.tobytes().hex())
                == json.dumps(b["strategy"][key], default=lambda x: x.tobytes().hex())
            )
    assert untimed(read_log(straight)) == untimed(read_log(split))


@needs_gym
@pytest.mark.skipif(importlib.util.find_spec("pygame") is None, reason="CartPole frames need pygame")
def test_cartpole_eval_renders_a_video(tmp_path):
    out = tmp_path / "cartpole"
    assert invoke("run", CARTPOLE, "--set", "budget.generations=1", "--out", out).exit_code == 0
    result = invoke("eval", out, "--episodes", 1, "--video", tmp_path / "cartpole.mp4")
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.iterdir() if p.suffix in (".mp4", ".gif")]
    assert written and written[0].stat().st_size > 0
    if written[0].suffix == ".gif":
        assert "wrote" in result.output and "instead" in result.output


@needs_gym
@pytest.mark.slow
def test_cartpole_is_solved_by_the_example(tmp_path):
    out = tmp_path / "cartpole"
    result = invoke("run", CARTPOLE, "--out", out)
    assert result.exit_code == 0, result.output
    rows = read_log(out)
    centre = [r["center_return_mean"] for r in rows if r.get("center_return_mean") is not None]
    assert max(centre) >= 475


# ----------------------------------------------------------------------------- the console script
# These run the installed `asktell` script in a subprocess: what a user types, with the
# current directory the user is in (the script, unlike `python -m`, does not put it on
# sys.path by itself).
ASKTELL = str(Path(sys.executable).with_name("asktell"))

MYENVS = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Reach1D(gym.Env):
    observation_space = spaces.Box(-10.0, 10.0, (1,), np.float64)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 1.0, 0
        return np.array([self.x]), {}

    def step(self, action):
        self.x += 0.1 * float(action[0])
        self.t += 1
        return np.array([self.x]), -abs(self.x), False, self.t >= 10, {}


gym.register("Reach1D-v0", entry_point=Reach1D, max_episode_steps=10)
"""

PLUGIN = """
from typing import Any, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Float, Int, declare_options
from asktell.noise import mirrored
from asktell.registry import STRATEGIES
from asktell.strategies import BaseStrategy
from asktell.strategies._base import StrategyConfig


class SignESConfig(StrategyConfig):
    kind: Literal["sign_es"] = "sign_es"
    population_size: Int = Field(8, ge=2, description="Candidates per generation.")
    sigma: Float = Field(0.1, gt=0, description="Scale of the perturbations.")
    learning_rate: Float = Field(0.05, gt=0, description="Step per coordinate.")


@STRATEGIES.register("sign_es")
@declare_options(SignESConfig, positional=("population_size",))
class SignES(BaseStrategy):
    \"\"\"Steps along the sign of the mirrored gradient estimate (a test plugin).\"\"\"

    name = "sign_es"
    capabilities = frozenset({"antithetic"})

    def _setup(self, cfg):
        self.sigma, self.learning_rate = cfg.sigma, cfg.learning_rate

    def _sample(self, count):
        return mirrored(self.noise.sample_keys(self.rng, count // 2, self.num_params))

    def _update(self, seeds, returns):
        grad = self.noise.weighted_sum(returns[0::2] - returns[1::2], seeds[0::2], self.num_params)
        self._center = self._center + self.learning_rate * np.sign(grad)
        return {}
""".replace('\\"', '"')

SIGN_RUN = """
plugins = ["myplugin"]
[strategy]
kind = "sign_es"
population_size = 8
[task]
kind = "function"
name = "sphere"
num_params = 3
[budget]
generations = 2
[output]
log_format = "none"
"""


def asktell(cwd, *args, timeout=120):
    import subprocess

    return subprocess.run(
        [ASKTELL, *map(str, args)], check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"},
    )


@needs_gym
def test_an_env_module_in_the_current_directory_is_importable(tmp_path):
    (tmp_path / "myenvs.py").write_text(MYENVS)
    (tmp_path / "reach.toml").write_text(
        '[strategy]\nkind = "openai_es"\npopulation_size = 4\n[task]\nkind = "gym"\n'
        'env_id = "myenvs:Reach1D-v0"\n[budget]\ngenerations = 1\n'
    )
    done = asktell(tmp_path, "run", "reach.toml", "--out", "r", "--log-format", "none")
    assert done.returncode == 0, done.stderr
    assert "ModuleNotFoundError" not in done.stderr
    assert (tmp_path / "r" / "log.jsonl").is_file()


def test_a_plugin_in_the_run_file_makes_its_kind_valid(tmp_path):
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    (tmp_path / "sign.toml").write_text(SIGN_RUN)
    done = asktell(tmp_path, "run", "sign.toml", "--out", "r")
    assert done.returncode == 0, done.stderr
    assert 'plugins = ["myplugin"]' in (tmp_path / "r" / "config.toml").read_text()
    # from another folder the module is not found: exit 2 saying where to resume from
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = asktell(elsewhere, "resume", tmp_path / "r", "--set", "budget.generations=3")
    assert lost.returncode == 2 and "from the folder it was started in" in lost.stderr, lost.stderr
    # resume imports it again from the saved config
    more = asktell(tmp_path, "resume", "r", "--set", "budget.generations=3")
    assert more.returncode == 0, more.stderr


def test_plugin_on_the_command_line_and_in_list(tmp_path):
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    (tmp_path / "sign.toml").write_text(SIGN_RUN.replace('plugins = ["myplugin"]', ""))
    refused = asktell(tmp_path, "check", "sign.toml")
    assert refused.returncode == 2 and "sign_es" in refused.stderr
    checked = asktell(tmp_path, "check", "sign.toml", "--plugin", "myplugin")
    assert checked.returncode == 0, checked.stderr
    assert 'plugins = ["myplugin"]' in checked.stdout
    listed = asktell(tmp_path, "list", "--plugin", "myplugin")
    assert listed.returncode == 0 and "sign_es" in listed.stdout


@pytest.mark.parametrize(
    "source, message",
    [
        ("", "plugin module 'nosuchplugin' was not found (looked in the current directory"),
        ("raise RuntimeError('boom inside')", "plugin module 'nosuchplugin' failed to import: "
         "RuntimeError: boom inside"),
        ("import not_a_module_anywhere", "plugin module 'nosuchplugin' failed to import: "
         "ModuleNotFoundError"),
    ],
)
def test_a_bad_plugin_is_named_and_exits_2(tmp_path, source, message):
    if source:
        (tmp_path / "nosuchplugin.py").write_text(source)
    (tmp_path / "sign.toml").write_text(SIGN_RUN)
    for args in (["check", "sign.toml", "--plugin", "nosuchplugin"], ["list", "--plugin", "nosuchplugin"]):
        done = asktell(tmp_path, *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_json_log_format_prints_only_json_lines_on_stdout(tmp_path):
    done = asktell(
        tmp_path, "run", SPHERE, "--out", "r", "--log-format", "json", *FAST,
        "--set", "budget.generations=3",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    rows = [json.loads(line) for line in lines]  # every stdout line parses
    assert [r["generation"] for r in rows] == [1, 2, 3]
    assert "done:" in done.stderr
    resumed = asktell(tmp_path, "resume", "r", "--log-format", "json", "--set", "budget.generations=4")
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line)["generation"] for line in resumed.stdout.splitlines()] == [4]


def test_list_wraps_to_the_terminal_and_shows_no_sphinx_markup(tmp_path):
    import os

    wide = asktell(tmp_path, "list")
    env = {**os.environ, "COLUMNS": "60"}
    import subprocess

    narrow = subprocess.run([ASKTELL, "list"], capture_output=True, text=True, env=env, timeout=60)
    for out in (wide.stdout, narrow.stdout):
        assert ":class:" not in out and "``" not in out and ":func:" not in out
        assert "..." not in out  # nothing is cut: a long description wraps
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    # the same words, wrapped differently
    assert " ".join(narrow.stdout.split()) == " ".join(wide.stdout.split())


def test_run_files_are_readable_by_the_group_as_the_umask_allows(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert invoke("run", SPHERE, "--out", tmp_path / "r", *FAST, "--log-format", "none").exit_code == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_set_kind_drops_the_options_the_new_kind_lacks_and_names_them(tmp_path):
    done = asktell(
        tmp_path, "check", EXAMPLES / "humanoid.toml", "--set", "evaluator.kind=serial",
        timeout=120,
    )
    # humanoid needs MuJoCo to build its task; the switch itself is judged before that
    assert "unknown key" not in done.stderr
    assert "dropped evaluator.mode, evaluator.num_workers" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope.toml"], "config file 'nope.toml' does not exist"),
        (["check", "nope.toml"], "config file 'nope.toml' does not exist"),
        (["resume", "nope"], "run directory 'nope' does not exist"),
        (["eval", "nope"], "'nope' does not exist"),
        (["plot", "nope", "-o", "x.png"], "'nope' does not exist"),
        (["run", SPHERE, "--set", "noise.size=3"], "the noise table (size=3) is too small"),
        (["run", SPHERE, "--set", "bad"], "--set expects KEY=VALUE"),
        (["run", SPHERE, "--plugin", "no_such_plugin_module"], "'no_such_plugin_module' was not found"),
        (["list", "--plugin", "no_such_plugin_module"], "'no_such_plugin_module' was not found"),
        (["schema", "--indent", "x"], "'x' is not a valid integer"),
    ],
)
def test_bad_input_exits_2_with_one_message(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
