"""asktell eval: the saved centre is evaluated, and rendered to a video when the task can."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Literal

import numpy as np
import pytest

import asktell.config as config_module
from asktell.config_base import StrictModel
from asktell.errors import ConfigError, MissingDependencyError
from asktell.playback import RenderError, choose_gl_backend, evaluate_run, write_video
from asktell.registry import TASKS
from asktell.runner import run
from asktell.tasks import FunctionTask

HAS_FFMPEG = importlib.util.find_spec("imageio_ffmpeg") is not None


class RenderingTask(FunctionTask):
    """A function task that can also 'render' an episode (frames drawn from the centre)."""

    fail = False

    def render_episode(self, distribution, sink):
        if self.fail:
            raise RuntimeError("no display")
        sink.fps = 10
        level = int(np.clip(abs(distribution.center[0]) * 50, 0, 255))
        for i in range(5):
            sink.add(np.full((16, 16, 3), (level + i) % 256, dtype=np.uint8))
        return 0.0


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
        assert 'pip install -e ".[video]"' in report.video_note
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
    monkeypatch.setitem(sys.modules, "mujoco", sys.modules.get("mujoco", object()))
    monkeypatch.setattr(RenderingTask, "fail", True)
    with pytest.raises(RenderError, match=r"rendering an episode failed \(MUJOCO_GL=egl\): no display"):
        evaluate_run(rendering_run, video=tmp_path / "x.gif")


def test_a_missing_gymnasium_render_dependency_names_the_extra(rendering_run, tmp_path, monkeypatch):
    class DependencyNotInstalled(Exception):  # what gymnasium raises without pygame
        pass

    def no_pygame(self, distribution, sink):
        raise DependencyNotInstalled("pygame is not installed")

    monkeypatch.setattr(RenderingTask, "render_episode", no_pygame)
    with pytest.raises(MissingDependencyError, match=r'pygame .*pip install -e "\.\[video\]"'):
        evaluate_run(rendering_run, video=tmp_path / "x.gif")


def test_gl_backend_respects_the_environment(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert choose_gl_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert choose_gl_backend() is None


def test_a_big_gif_is_shrunk_as_frames_arrive(tmp_path):
    from PIL import Image

    frames = [np.full((480, 640, 3), 60 * i, dtype=np.uint8) for i in range(3)]
    path, _ = write_video(tmp_path / "x.gif", frames)
    with Image.open(path) as im:
        assert max(im.size) == 320 and im.n_frames == 3


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(RenderError, match="rendered no frames"):
        write_video(tmp_path / "x.gif", [])


# ----------------------------------------------------------------------------- Gymnasium
class MiniGymTask:
    """The shape of a Gymnasium task the generic filming path relies on: env_kwargs,
    make_env() and evaluate_center() that steps the environment make_env() built."""

    num_params = 1

    def __init__(self):
        self.env_kwargs = {}
        self._env = None

    def make_env(self):
        import gymnasium as gym

        return gym.make("InvertedPendulum-v5", max_episode_steps=12, **self.env_kwargs)

    def evaluate_center(self, distribution, episodes=1):
        if self._env is None:
            self._env = self.make_env()
        out = []
        for e in range(episodes):
            self._env.reset(seed=e)
            total, done = 0.0, False
            while not done:
                _, r, term, trunc, _ = self._env.step(distribution.center.astype(np.float32))
                total, done = total + r, term or trunc
            out.append(total)
        return np.array(out)

    def evaluate(self, params, seeds, distribution):
        from asktell.protocol import TaskResult

        return TaskResult(-np.sum(params**2, axis=1), np.ones(len(params), dtype=np.int64))

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None


class MiniGymTaskConfig(StrictModel):
    kind: Literal["minigym_test"] = "minigym_test"

    def build(self):
        return MiniGymTask()


MiniGymTask.config_class = MiniGymTaskConfig


def _can_render_mujoco():
    if importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("gymnasium") is None:
        return False
    import ctypes.util

    return bool(os.environ.get("MUJOCO_GL") or ctypes.util.find_library("EGL") or ctypes.util.find_library("OSMesa"))


@pytest.mark.skipif(not _can_render_mujoco(), reason="needs gymnasium, mujoco and EGL or OSMesa")
def test_a_gymnasium_task_is_filmed_headless_through_its_make_env(tmp_path, monkeypatch):
    TASKS.register("minigym_test")(MiniGymTask)
    config_module.refresh()
    try:
        if "mujoco" not in sys.modules:
            monkeypatch.delenv("MUJOCO_GL", raising=False)
        else:  # already imported by another test: its backend is fixed for this process
            monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
        monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
        out = tmp_path / "run"
        run(
            {
                "strategy": {"kind": "openai_es", "population_size": 4},
                "task": {"kind": "minigym_test"},
                "noise": {"size": 64},
                "budget": {"generations": 1},
                "output": {"log_format": "none"},
            },
            out=out,
        )
        report = evaluate_run(out, episodes=1, video=tmp_path / "pendulum.mp4")
    finally:
        del TASKS._items["minigym_test"]
        config_module.refresh()
    from PIL import Image

    assert report.video.stat().st_size > 0
    if report.video.suffix == ".gif":
        with Image.open(report.video) as im:
            assert im.n_frames == 13  # the reset frame and 12 steps


def test_best_ranks_a_target_checked_centre_by_the_checks_larger_measurement(tmp_path):
    """A lucky 2-episode evaluation must not make --best pick a centre the run's own
    10-episode target check measured lower: where a check ran, its mean (over the same
    stream's first 10 episodes) is what the centre is ranked by, and what eval replays."""
    from asktell.runner import read_log

    cfg = {
        "seed": 0,
        "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1, "learning_rate": 0.05},
        "task": {"kind": "gym", "env_id": "Pendulum-v1", "policy": "linear",
                 "max_episode_steps": 50, "step_cap": "fixed"},
        "noise": {"size": 100000},
        "budget": {"generations": 8},
        "output": {"eval_every": 1, "eval_episodes": 2, "log_format": "none"},
    }
    run(cfg, out=tmp_path / "free")
    means = sorted(row["center_return_mean"] for row in read_log(tmp_path / "free"))
    cfg["budget"].update(target_return=means[-3], target_episodes=10)
    out = tmp_path / "checked"
    run(cfg, out=out)
    rows = read_log(out)
    checked = [r for r in rows if "target_check" in r]
    assert checked, "the target must trigger at least one check"
    measure = [r.get("target_check_return", r["center_return_mean"]) for r in rows]
    best = int(np.argmax(measure))
    report = evaluate_run(out, episodes=10 if "target_check" in rows[best] else 2, best=True)
    assert report.generation == rows[best]["generation"]
    assert report.logged_return == measure[best] == report.mean


def test_eval_best_reproduces_the_best_centres_logged_return(tmp_path):
    # Pendulum with observation normalisation: the normaliser moves every generation, so
    # the best centre is only reproduced with the normaliser and the episodes (keyed by its
    # generation) it was evaluated with, not the newest checkpoint's.
    from asktell.checkpoint import load_checkpoint
    from asktell.runner import read_log

    out = tmp_path / "r"
    run(
        {
            "seed": 0,
            "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1,
                         "learning_rate": 0.05},
            "task": {"kind": "gym", "env_id": "Pendulum-v1", "policy": "linear",
                     "obs_norm": True, "max_episode_steps": 50, "step_cap": "fixed"},
            "noise": {"size": 100000},
            "budget": {"generations": 8},
            "output": {"eval_every": 1, "eval_episodes": 2, "log_format": "none"},
        },
        out=out,
    )
    means = [row["center_return_mean"] for row in read_log(out)]
    best_generation = int(np.argmax(means)) + 1
    assert best_generation < len(means)  # the best is not the newest (the case that broke)
    report = evaluate_run(out, episodes=2, best=True)
    assert report.generation == best_generation
    assert report.mean == max(means) == report.logged_return
    assert f"best centre of generation {best_generation}" in report.summary()

    # The known break: the best centre under the newest normaliser and generation.
    ckpt = load_checkpoint(out)
    runner = ckpt.state["runner"]
    assert not np.array_equal(runner["best_center_task"]["obs_sum"], ckpt.state["task"]["obs_sum"])
    cfg = config_module.config_from_dict(ckpt.config)
    task = cfg.build_task()
    task.load_state_dict(ckpt.state["task"])
    strategy = cfg.build_strategy(task)
    strategy.load_state_dict(ckpt.state["strategy"])
    dist = strategy.distribution.replace(
        center=np.asarray(runner["best_center"]), context=dict(task.context())
    )
    assert float(np.mean(task.evaluate_center(dist, 2))) != report.mean

    fresh = evaluate_run(out, episodes=2, best=True, fresh=True)
    assert fresh.generation == best_generation and fresh.mean != report.mean


def _robot_pixels(frame):
    """Pixels of HalfCheetah's body: orange/pink (red well above blue); the checkered floor
    and the grey sky have red <= blue + a little."""
    f = frame.astype(np.int32)
    return int(np.count_nonzero(f[:, :, 0] - f[:, :, 2] > 50))


@pytest.mark.skipif(not _can_render_mujoco(), reason="needs gymnasium, mujoco and EGL or OSMesa")
def test_mujoco_videos_follow_the_robot(tmp_path, monkeypatch):
    if "mujoco" not in sys.modules:
        monkeypatch.delenv("MUJOCO_GL", raising=False)
    else:  # already imported by another test: its backend is fixed for this process
        monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    choose_gl_backend()
    import gymnasium as gym

    import asktell.gym.task as gym_task
    from asktell.playback import tracking_camera

    # the camera eval --video asks for: the model's own tracking camera, else a tracking one
    assert tracking_camera(gym.make("HalfCheetah-v5"), {}) == {"camera_name": "track"}
    assert tracking_camera(gym.make("HalfCheetah-v5"), {"camera_id": 0}) == {}  # the user's
    reacher = tracking_camera(gym.make("Reacher-v5"), {})["default_camera_config"]
    assert reacher["type"] == 2 and reacher["trackbodyid"] >= 1  # mjCAMERA_TRACKING
    assert tracking_camera(gym.make("CartPole-v1"), {}) == {}

    # eval --video builds the env with it
    out = tmp_path / "cheetah"
    run({"strategy": {"kind": "openai_es", "population_size": 2},
         "evaluator": {"kind": "serial"},
         "task": {"kind": "gym", "env_id": "HalfCheetah-v5", "policy": "linear",
                  "step_cap": "fixed", "max_episode_steps": 3},
         "noise": {"size": 1024}, "budget": {"generations": 1},
         "output": {"log_format": "none"}}, out=out)
    calls = []
    real = gym_task.make_env
    monkeypatch.setattr(gym_task, "make_env", lambda i, kw, ekw=None: calls.append(kw) or real(i, kw, ekw))
    try:
        report = evaluate_run(out, episodes=1, video=tmp_path / "cheetah.gif")
    except RenderError as exc:
        pytest.skip(f"no working MuJoCo rendering here: {exc}")
    assert any(kw.get("render_mode") == "rgb_array" and kw.get("camera_name") == "track"
               for kw in calls)
    assert report.video.stat().st_size > 0

    # and the pixels: moved 10 m forward, the robot is still in the picture (the default
    # free camera loses it; that is the control showing the check can fail)
    def in_view_after_moving(kwargs):
        env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=160, height=160, **kwargs)
        env.reset(seed=0)
        before = _robot_pixels(env.render())
        u = env.unwrapped
        qpos = u.data.qpos.copy()
        qpos[0] += 10.0
        u.set_state(qpos, u.data.qvel.copy())
        after = _robot_pixels(env.render())
        env.close()
        return before, after

    before, after = in_view_after_moving({"camera_name": "track"})
    assert before > 200 and after > 0.5 * before
    before, after = in_view_after_moving({})
    assert before > 200 and after < 0.05 * before
