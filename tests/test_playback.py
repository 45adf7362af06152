"""asktell eval: the saved centre is evaluated, and rendered to a video when the task can."""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
import pytest

import asktell.config as config_module
from asktell.config_base import StrictModel
from asktell.errors import ConfigError
from asktell.playback import RenderError, choose_gl_backend, evaluate_run, write_video
from asktell.registry import TASKS
from asktell.runner import run
from asktell.tasks import FunctionTask

HAS_FFMPEG = importlib.util.find_spec("imageio_ffmpeg") is not None


class RenderingTask(FunctionTask):
    """A function task that can also 'render' an episode (frames drawn from the centre)."""

    fail = False

    def render_episode(self, distribution, *, seed=0):
        if self.fail:
            raise RuntimeError("no display")
        level = int(np.clip(abs(distribution.center[0]) * 50, 0, 255))
        frames = [np.full((16, 16, 3), (level + i) % 256, dtype=np.uint8) for i in range(5)]
        return {"frames": frames, "return": 0.0, "steps": 5, "fps": 10}


class RenderingTaskConfig(StrictModel):
    kind: Literal["render_test"] = "render_test"

    def build(self):
        from asktell.tasks import NamedFunction

        return RenderingTask(NamedFunction("sphere"), vectorized=True, minimize=True, num_params=3)


RenderingTask.config_class = RenderingTaskConfig


@pytest.fixture(scope="module")
def rendering_run(tmp_path_factory):
    TASKS.register("render_test")(RenderingTask)
    config_module.refresh()
    out = tmp_path_factory.mktemp("render") / "run"
    run(
        {
            "strategy": {"kind": "openai_es", "population_size": 4},
            "task": {"kind": "render_test"},
            "noise": {"size": 1024},
            "budget": {"generations": 2},
            "output": {"log_format": "none"},
        },
        out=out,
    )
    yield out
    del TASKS._items["render_test"]
    config_module.refresh()


def test_eval_reports_the_centre_return(rendering_run):
    report = evaluate_run(rendering_run, episodes=4)
    assert report.returns.shape == (4,) and report.generation == 2
    assert "over 4 episode(s)" in report.summary()


def test_best_needs_centre_evaluations(rendering_run):
    with pytest.raises(ConfigError, match="--best needs centre evaluations"):
        evaluate_run(rendering_run, best=True)


def test_video_is_written_as_mp4_or_as_a_gif_with_a_note(rendering_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")  # choose_gl_backend would otherwise set it for good
    report = evaluate_run(rendering_run, episodes=1, video=tmp_path / "episode.mp4")
    if HAS_FFMPEG:
        assert report.video == tmp_path / "episode.mp4" and report.video_note is None
    else:
        assert report.video == tmp_path / "episode.gif"
        assert "mp4 needs imageio and imageio-ffmpeg" in report.video_note
        assert 'pip install "asktell[video]"' in report.video_note
    assert report.video.stat().st_size > 0
    assert str(report.video) in report.summary()


def test_gif_has_every_frame(tmp_path):
    from PIL import Image

    frames = [np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    path, note = write_video(tmp_path / "x.gif", frames, fps=20)
    assert note is None
    with Image.open(path) as im:
        assert im.n_frames == 4


def test_a_rendering_failure_names_the_backend(rendering_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setattr(RenderingTask, "fail", True)
    with pytest.raises(RenderError, match=r"rendering an episode failed \(MUJOCO_GL=egl\): no display"):
        evaluate_run(rendering_run, video=tmp_path / "x.gif")


def test_gl_backend_respects_the_environment(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert choose_gl_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert choose_gl_backend() is None
