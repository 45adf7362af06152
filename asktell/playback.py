"""Evaluate a saved run's centre, and film it (``asktell eval``).

Video: one episode of the centre is rendered frame by frame into a :class:`FrameSink`
(MP4 through ``imageio-ffmpeg`` when installed, otherwise a GIF, said clearly). A task can be
filmed in two ways:

* it has the optional hook ``render_episode(distribution, sink) -> float``, which sets
  ``sink.fps``, calls ``sink.add(frame)`` for each ``HxWx3`` uint8 frame and returns the
  episode's return; or
* it is a Gymnasium task with ``env_kwargs``, ``make_env()`` and ``evaluate_center``: its
  environment is rebuilt with ``render_mode="rgb_array"`` and every frame of one centre
  episode is recorded.

MuJoCo renders headless through ``MUJOCO_GL=egl`` or ``osmesa``; :func:`choose_gl_backend`
picks one that exists before MuJoCo is first imported, and :func:`tracking_camera` points
the camera at the robot for the whole episode.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from asktell._extras import require
from asktell.checkpoint import load_checkpoint
from asktell.config import config_from_dict
from asktell.errors import AsktellError, ConfigError, MissingDependencyError
from asktell.loop import FRESH_STREAM
from asktell.protocol import hooks_of

__all__ = [
    "EvalReport", "FrameSink", "RenderError", "choose_gl_backend", "evaluate_run",
    "tracking_camera", "write_video",
]


class RenderError(AsktellError, RuntimeError):
    """An episode could not be rendered (no rendering backend, or a task without frames)."""


class _NoFrames(RenderError, ConfigError):
    """``--video`` asked of a task that has no frames: the request is wrong, not the run."""


@dataclasses.dataclass
class EvalReport:
    """Returns of the saved centre over ``episodes`` episodes (and the video, if any)."""

    run_dir: Path
    generation: int
    which: str
    returns: np.ndarray
    video: Path | None = None
    video_note: str | None = None
    logged_return: float | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> str:
        r = self.returns
        text = (
            f"{self.which} centre of generation {self.generation}: mean return {self.mean:.6g} "
            f"+- {self.std:.3g} over {r.size} episode(s) (min {r.min():.6g}, max {r.max():.6g})"
        )
        if self.logged_return is not None:
            text += f" (logged during the run: {self.logged_return:.6g})"
        if self.video is not None:
            text += f"\nvideo: {self.video}"
        if self.video_note:
            text += f"\n{self.video_note}"
        return text


def choose_gl_backend() -> str | None:
    """Set ``MUJOCO_GL`` for headless rendering when it is unset; returns the backend.

    EGL (GPU or Mesa) first, then OSMesa (software); ``None`` when neither library exists.
    An explicit ``MUJOCO_GL`` is always respected.
    """
    if not os.environ.get("DISPLAY"):
        # pygame (classic-control frames) needs no window for rgb_array; say so to SDL
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


def load_run(run_dir: Path, checkpoint: str | os.PathLike | None) -> tuple[Any, Any, Any]:
    """A saved run's checkpoint, its task (state loaded) and its strategy: what ``eval``
    and ``export`` read."""
    if checkpoint is not None:
        from asktell._rundir import check_checkpoint_of

        check_checkpoint_of(run_dir, checkpoint)
    ckpt = load_checkpoint(checkpoint if checkpoint is not None else run_dir)
    cfg = config_from_dict(ckpt.config, source=f"run config saved in {ckpt.path}")
    task = cfg.build_task()
    strategy = cfg.build_strategy(task)
    strategy.load_state_dict(ckpt.state["strategy"])
    task_state = ckpt.state.get("task")
    if task_state is not None:
        hooks_of(task).load_state_dict(task_state)
    return ckpt, task, strategy


def best_center_distribution(ckpt: Any, task: Any, dist: Any) -> tuple[Any, int, float | None]:
    """The best evaluated centre as it was evaluated: its parameters, its generation (which
    keys its episodes) and the task's state then (its observation normaliser), loaded into
    ``task``; returns ``(distribution, generation, logged mean return)``."""
    runner = ckpt.state["runner"]
    best_center = runner.get("best_center")
    if best_center is None:
        raise ConfigError(
            "--best needs centre evaluations (output.eval_every > 0); this run has none"
        )
    generation = runner.get("best_center_generation")
    if generation is None:
        raise ConfigError(
            f"the checkpoint {str(ckpt.path)!r} keeps the best centre without its generation "
            "and normaliser (written before they were stored), so it cannot be evaluated as "
            "it was; evaluate the latest centre instead (drop --best)"
        )
    task_state = runner.get("best_center_task")
    if task_state is not None:
        hooks_of(task).load_state_dict(task_state)
    dist = dist.replace(
        center=np.asarray(best_center, dtype=np.float64), generation=int(generation)
    )
    return dist, int(generation), runner.get("best_center_return")


#: Video files ``eval --video`` writes: a GIF by itself, the others through imageio-ffmpeg.
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mkv", ".mov", ".avi")


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    episodes: int = 10,
    video: str | os.PathLike | None = None,
    best: bool = False,
    checkpoint: str | os.PathLike | None = None,
    fresh: bool = False,
) -> EvalReport:
    """Evaluate the saved centre of a run (the newest checkpoint's, or the best evaluated).

    Args:
        run_dir: the run directory.
        episodes: episodes to average over.
        video: also render one episode to this file (``.mp4`` needs ``imageio-ffmpeg``;
            otherwise a ``.gif`` is written next to it and the report says so).
        best: use the centre with the best centre evaluation instead of the latest, with
            the observation normaliser it was evaluated with, labelled with its own
            generation; its first episodes are the ones its logged evaluation ran.
        checkpoint: a specific checkpoint ``.json`` instead of the newest.
        fresh: play episodes no evaluation of the run used (the
            :data:`~asktell.loop.FRESH_STREAM`); otherwise the centre stream of the
            centre's generation, as the run's scheduled evaluations.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"'episodes' must be an int >= 1; got {episodes!r}")
    run_dir = Path(run_dir)
    if video is not None:
        from asktell._rundir import check_output_file

        check_output_file(video, "--video", VIDEO_SUFFIXES)
        choose_gl_backend()  # before anything imports mujoco
    ckpt, task, strategy = load_run(run_dir, checkpoint)
    dist, generation, which, logged = strategy.distribution, ckpt.generation, "latest", None
    if best:
        dist, generation, logged = best_center_distribution(ckpt, task, dist)
        which = "best"
    dist = dist.replace(context=dict(hooks_of(task).context()))
    if fresh:
        dist = dist.replace(generation=dist.generation + FRESH_STREAM)
    # The centre is measured outside a run: with the task's own evaluate_center (a task
    # without one has nothing to play back).
    if not hasattr(task, "evaluate_center"):
        raise ConfigError(f"task {ckpt.config['task']['kind']!r} has no evaluate_center()")
    returns = np.asarray(task.evaluate_center(dist, episodes), dtype=np.float64).reshape(-1)
    report = EvalReport(run_dir, generation, which, returns, logged_return=logged)
    if video is not None:
        report.video, report.video_note = _film(task, dist, Path(video), ckpt.config["task"]["kind"])
    return report


def _film(task: Any, dist: Any, path: Path, kind: str) -> tuple[Path, str | None]:
    hook = getattr(task, "render_episode", None)
    generic = all(hasattr(task, a) for a in ("make_env", "env_kwargs", "evaluate_center"))
    if hook is None and not generic:
        # bad input (the CLI exits 2), still a RenderError for callers that catch that
        raise _NoFrames(
            f"--video needs a task that renders episodes (a Gymnasium task); this run's "
            f"task is {kind!r}, which has no frames to show"
        )
    sink = FrameSink(path)
    try:
        if hook is not None:
            hook(dist, sink)
        else:
            _film_gym_task(task, dist, sink)
    except (MissingDependencyError, RenderError):
        sink.abort()
        raise
    except Exception as exc:  # noqa: BLE001 - rendering back-ends fail in many ways
        sink.abort()
        if type(exc).__name__ == "DependencyNotInstalled":  # gymnasium.error, e.g. pygame
            raise MissingDependencyError(
                f"rendering this environment needs a package that is not installed ({exc}); "
                'install the video extra: pip install -e ".[video]" (in your asktell clone)'
            ) from exc
        hint = ""
        if "mujoco" in sys.modules:
            backend = os.environ.get("MUJOCO_GL")
            hint = (
                f" (MUJOCO_GL={backend})"
                if backend
                else " (no headless rendering backend found: install EGL (libegl1) or "
                "OSMesa (libosmesa6), or set MUJOCO_GL)"
            )
        raise RenderError(f"rendering an episode failed{hint}: {exc}") from exc
    return sink.close()


def _film_gym_task(task: Any, dist: Any, sink: FrameSink) -> None:
    """Record one centre episode by rebuilding the task's environment in rgb_array mode."""
    gym = require("gymnasium", "asktell eval --video")

    class Recorder(gym.Wrapper):
        def reset(self, **kwargs: Any) -> Any:
            out = self.env.reset(**kwargs)
            sink.add(self.env.render())
            return out

        def step(self, action: Any) -> Any:
            out = self.env.step(action)
            sink.add(self.env.render())
            return out

    original_kwargs = task.env_kwargs
    original_make = task.make_env

    def make_env() -> Any:
        env = original_make()
        sink.fps = float(env.metadata.get("render_fps") or sink.fps)
        return Recorder(env)

    camera = tracking_camera(task.make_env(), original_kwargs or {})
    if hasattr(task, "close"):
        task.close()  # drop an environment built without rendering
    task.env_kwargs = {**dict(original_kwargs or {}), "render_mode": "rgb_array", **camera}
    task.make_env = make_env
    try:
        task.evaluate_center(dist, 1)
    finally:
        del task.make_env
        task.env_kwargs = original_kwargs
        if hasattr(task, "close"):
            task.close()


#: ``mujoco.mjtCamera.mjCAMERA_TRACKING``: a free camera that follows ``trackbodyid``.
_MJ_CAMERA_TRACKING = 2
#: Keyword arguments of a MuJoCo env that already choose its camera (left to the user).
_CAMERA_KWARGS = ("camera_id", "camera_name", "default_camera_config")


def tracking_camera(env: Any, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``gymnasium.make`` keywords that make a MuJoCo env's ``rgb_array`` frames follow the
    robot (closes ``env``, a plain instance of the env, used only to inspect its model).

    Gymnasium's renderer draws MuJoCo envs through a *free* camera by default, even where
    the model declares a tracking one, so a running robot leaves the picture within a second
    or two. This picks, in order: the user's own camera keywords (kept, nothing added); the
    model's camera named ``"track"`` (the standard locomotion models have one, mode
    ``trackcom``, following the centre of mass); otherwise the env's default camera switched
    to ``mjCAMERA_TRACKING`` on its ``trackbodyid`` (body 1, the root, when it names the
    world). Non-MuJoCo envs get ``{}``.
    """
    try:
        model = getattr(env.unwrapped, "model", None)
        if model is None or type(model).__module__.split(".")[0] != "mujoco":
            return {}
        if any(k in env_kwargs for k in _CAMERA_KWARGS):
            return {}
        import mujoco

        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0:
            return {"camera_name": "track"}
        renderer = getattr(env.unwrapped, "mujoco_renderer", None)
        config = dict(getattr(renderer, "default_cam_config", None) or {})
        body = int(config.get("trackbodyid", 1))
        config.update(type=_MJ_CAMERA_TRACKING, trackbodyid=max(body, 1))
        return {"default_camera_config": config}
    finally:
        env.close()


class FrameSink:
    """Receives frames one at a time and writes a video: MP4 (or any format imageio's ffmpeg
    plugin writes) streamed to disk when ``imageio-ffmpeg`` is installed, otherwise a GIF next
    to the requested path (frames reduced to at most ``gif_side`` pixels and 256 colours, so
    a 1000-step episode stays small in memory).

    Attributes:
        fps: frames per second; set it before the first :meth:`add`.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, gif_side: int = 320):
        self.path = Path(path)
        self.fps = float(fps)
        self.gif_side = gif_side
        self.count = 0
        self._writer: Any = None
        self._gif: list[Any] | None = None
        self.note: str | None = None
        self.written = self.path

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() != ".gif":
            try:
                import imageio.v2 as imageio
                import imageio_ffmpeg  # noqa: F401 - the plugin imageio needs for mp4

                self._writer = imageio.get_writer(self.path, fps=self.fps, macro_block_size=1)
                return
            except ImportError:
                self.written = self.path.with_suffix(".gif")
                self.note = (
                    f"could not write {self.path.name}: mp4 needs imageio and imageio-ffmpeg "
                    f'(pip install -e ".[video]" (in your asktell clone)); wrote {self.written} (GIF) instead'
                )
        self._gif = []

    def add(self, frame: Any) -> None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise RenderError(f"a frame must be an HxWx3 image; got shape {frame.shape}")
        frame = np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)
        if self.count == 0:
            self._open()
        self.count += 1
        if self._writer is not None:
            self._writer.append_data(frame)
            return
        image = _pil().fromarray(frame)
        if max(image.size) > self.gif_side:
            scale = self.gif_side / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        self._gif.append(image.quantize(colors=256))

    def close(self) -> tuple[Path, str | None]:
        """Finish the file; returns the path written and a note if it differs from the request."""
        if self.count == 0:
            raise RenderError("the task rendered no frames")
        if self._writer is not None:
            self._writer.close()
        else:
            first, rest = self._gif[0], self._gif[1:]
            duration = max(int(round(1000 / self.fps)), 20)  # browsers floor GIF delays at 20 ms
            first.save(self.written, save_all=True, append_images=rest, duration=duration, loop=0)
        return self.written, self.note

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file is incomplete anyway
                pass


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            'writing a GIF needs Pillow; install it with: pip install -e ".[video]" (in your asktell clone)'
        ) from None
    return Image


def write_video(
    path: str | os.PathLike, frames: list[np.ndarray], fps: float = 30
) -> tuple[Path, str | None]:
    """Write a list of frames; returns the path written and a note when it had to differ."""
    sink = FrameSink(path, fps)
    for frame in frames:
        sink.add(frame)
    return sink.close()
