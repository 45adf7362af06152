"""The live display and what a run says on screen: the bar ends where the run ended with
the reason, elapsed time counts earlier sessions, each message once, progress inside a
generation, and warnings (MuJoCo's too) kept in the run's warnings.log, not on screen or
in the working directory."""

import io
import warnings

import numpy as np
import pytest

from asktell._progress import Display, PlainDisplay, RichDisplay
from asktell._warnings import WARNINGS_FILE, WarningCapture
from asktell.evaluators import SerialEvaluator
from asktell.runner import read_log, resume, run
from asktell.tasks import FunctionTask


def row(generation, env_steps, **extra):
    base = {
        "generation": generation, "env_steps": env_steps, "generation_steps": 100,
        "return_mean": -1.0, "return_max": 0.5, "best_return": 0.5, "seconds_ask": 0.0,
        "seconds_evaluate": 0.1, "seconds_tell": 0.0, "wall_seconds": None,
    }
    return {**base, **extra}


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def config(generations=4, **budget):
    return {
        "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1, "learning_rate": 0.1},
        "task": {"kind": "function", "name": "sphere", "num_params": 3, "shift": 1.0},
        "noise": {"size": 4096},
        "budget": {"generations": generations, **budget},
        "output": {"log_format": "none", "checkpoint_every": 1},
    }


# ---------------------------------------------------------------------------- the view
def test_an_early_stop_ends_the_bar_with_the_reason_and_no_eta():
    out = io.StringIO()
    d = PlainDisplay(out)
    d.view.clock = clock = FakeClock()
    d.start(0.0, "title", target=475.0)
    clock.t += 10
    d.update(row(34, 59000, center_return_mean=500.0), 0.34)
    assert "ETA 0:00:19" in out.getvalue()  # 34% in 10 s: 66% left takes ~19 s
    d.finish("target_return reached")
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("stopped: target_return reached")
    assert "34% of the budget" in last
    assert d.view.bar_fraction() == 1.0 and d.view.eta() is None
    assert "ETA" not in d.view.status() and "stopped: target_return reached" in d.view.status()


def test_a_reason_naming_its_generation_is_not_followed_by_it_again():
    out = io.StringIO()
    d = PlainDisplay(out)
    d.view.clock = FakeClock()
    d.start(0.0, "title", target=475.0)
    d.update(row(34, 59000, center_return_mean=500.0), 0.34)
    d.finish("target_return reached: centre mean 500 over 20 episode(s) >= 475 (generation 34)")
    last = out.getvalue().splitlines()[-1]
    assert last.count("generation 34") == 1, last
    assert "(generation 34) (34% of the budget" in last
    d2 = PlainDisplay(io.StringIO())
    d2.view.clock = FakeClock()
    d2.start(0.0, "title")
    d2.update(row(34, 59000), 0.34)
    d2.finish("budget of 100 generations used")
    assert "(generation 34, 34% of the budget" in d2.stream.getvalue().splitlines()[-1]


def test_the_rich_bar_reaches_its_end_and_says_why_after_an_early_stop():
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=False, width=160, record=True)
    d = RichDisplay(console=console)
    d.start(0.0, "asktell: title", target=475.0)
    d.update(row(34, 59000, center_return_mean=500.0), 0.34)
    d.finish("target_return reached (generation 34)")
    d.stop()
    text = console.export_text()
    final = text[text.rfind("done"):]
    assert "100%" in final and "stopped: target_return reached (generation 34)" in final
    assert "ETA" not in final and "34%" not in final


def test_the_centre_return_stays_on_screen_between_evaluations_with_the_target():
    d = Display()
    d.start(0.0, "t", target=475.0)
    d.update(row(10, 1000, center_return_mean=123.0), 0.1)
    d.update(row(11, 1100), 0.11)  # no centre evaluation this generation
    assert "centre 123 (gen 10) target 475" in d.view.status()


def test_steps_per_second_and_elapsed_count_earlier_sessions():
    d = Display()
    d.view.clock = clock = FakeClock()
    d.start(0.5, "t", elapsed=3600.0)
    clock.t += 10
    d.update(row(6, 2100, generation_steps=100, wall_seconds=3610.0), 0.6)
    assert d.view.elapsed() == pytest.approx(3610.0)
    assert d.view.status().startswith("10 steps/s")  # 100 steps (the session's) in 10 s


def test_each_message_is_said_once():
    out = io.StringIO()
    d = PlainDisplay(out)
    for _ in range(3):
        d.message("run directory runs/x")
    assert out.getvalue().count("run directory runs/x") == 1


# ---------------------------------------------------------------------------- runs
class Recorder(Display):
    shows_messages = True

    def __init__(self):
        super().__init__()
        self.said, self.started, self.inside = [], None, []

    def start(self, fraction, title, *, elapsed=0.0, target=None):
        super().start(fraction, title, elapsed=elapsed, target=target)
        self.started = elapsed

    def progress(self, done, total):
        super().progress(done, total)
        self.inside.append((done, total))

    def _say(self, text):
        self.said.append(text)


def test_a_resumed_run_continues_the_elapsed_time(tmp_path, monkeypatch):
    first = run(config(4), out=tmp_path / "r")
    shown = Recorder()
    monkeypatch.setattr("asktell.run_loop.make_display", lambda fmt: shown)  # the Runner makes it
    resume(tmp_path / "r", overrides=["budget.generations=6"])
    rows = read_log(tmp_path / "r")
    # the resumed session starts from the first one's clock (its last checkpoint's)
    assert rows[3]["wall_seconds"] <= shown.started <= first.wall_seconds
    assert rows[3]["wall_seconds"] > 0 and rows[4]["wall_seconds"] > shown.started


def test_a_run_names_its_directory_once_and_an_interrupt_once(tmp_path, capsys):
    def interrupt(row):
        if row["generation"] == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(config(6), out=tmp_path / "r", log_format="plain", callback=interrupt)
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("asktell resume") == 1
    assert text.count("run directory") == 1


def test_warnings_go_to_the_runs_log_with_counts_and_one_line_on_screen(tmp_path, capsys):
    def noisy(row):
        warnings.warn("settotalmass is deprecated", DeprecationWarning)
    run(config(5), out=tmp_path / "r", log_format="plain", callback=noisy)
    out = capsys.readouterr()
    assert "settotalmass" not in out.err and "settotalmass" not in out.out
    log = (tmp_path / "r" / WARNINGS_FILE).read_text()
    assert log.startswith("5 x ") and "DeprecationWarning: settotalmass is deprecated" in log
    lines = [line for line in out.out.splitlines() if WARNINGS_FILE in line]
    assert len(lines) == 1 and lines[0].startswith("5 warnings (1 distinct)")


def test_the_serial_evaluator_reports_progress_without_changing_returns():
    task = FunctionTask.named("sphere", num_params=1 << 20)  # 4 candidates per chunk
    from asktell.strategies import OpenAIES
    from asktell.noise import NoiseTable

    es = OpenAIES(1 << 20, population_size=10, sigma=0.1, noise=NoiseTable(0, 1 << 22))
    seeds = es.ask()
    seen = []
    with SerialEvaluator(task) as ev:
        whole = ev.evaluate(es.distribution, seeds)
        pieces = ev.evaluate(es.distribution, seeds, on_progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(whole.returns, pieces.returns)
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_a_run_shows_candidates_done_within_a_generation(tmp_path, monkeypatch):
    shown = Recorder()
    monkeypatch.setattr("asktell.runner.Runner._progress_shown", 0.0, raising=False)
    cfg = config(1)
    cfg["task"]["num_params"] = 1 << 20
    cfg["noise"]["size"] = 1 << 22
    from asktell.config import config_from_dict
    from asktell.runner import Runner

    built_cfg = config_from_dict(cfg)
    with built_cfg.build() as built:
        (tmp_path / "r").mkdir()
        Runner(built_cfg, tmp_path / "r", built, display=shown).run()
    assert shown.inside and shown.inside[0] == (4, 8)


# ---------------------------------------------------------------------------- MuJoCo
def _unstable_step():
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint/><geom size="0.1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    data.qvel[:] = 1e20  # MuJoCo warns "Nan, Inf or huge value in QVEL"
    mujoco.mj_step(model, data)


def test_mujoco_warnings_go_to_the_run_and_leave_no_log_in_the_cwd(tmp_path, monkeypatch):
    pytest.importorskip("mujoco")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (tmp_path / "run").mkdir()
    with WarningCapture(mujoco=True) as caught:
        caught.bind(tmp_path / "run")
        _unstable_step()
    assert not (cwd / "MUJOCO_LOG.TXT").exists()
    assert "MujocoWarning: Nan, Inf or huge value in QVEL" in (tmp_path / "run" / WARNINGS_FILE).read_text()
    # the check is real: without the capture the same step leaves MUJOCO_LOG.TXT here
    _unstable_step()
    assert (cwd / "MUJOCO_LOG.TXT").exists()


def test_the_vector_evaluator_reports_progress_in_whole_rounds_without_changing_returns():
    pytest.importorskip("gymnasium")
    from asktell.evaluators import VectorEnvEvaluator
    from asktell.gym import GymTask
    from asktell.noise import NoiseTable
    from asktell.strategies import OpenAIES

    task = GymTask("CartPole-v1", seed=0)
    es = OpenAIES(task.num_params, population_size=20, sigma=0.5, noise=NoiseTable(0, 1 << 16))
    dist, seeds = es.distribution.replace(context=task.context()), es.ask()
    seen = []
    with VectorEnvEvaluator(task, num_envs=2) as ev:
        whole = ev.evaluate(dist, seeds)
        pieces = ev.evaluate(dist, seeds, on_progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(whole.returns, pieces.returns)
    assert seen == [(6, 20), (12, 20), (18, 20), (20, 20)]  # pieces of 3 rounds of 2
