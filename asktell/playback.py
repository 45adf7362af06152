"""Evaluate a saved run's centre, and render it to a video (``asktell eval``).

Video needs a task that can render an episode: the optional task hook

``render_episode(distribution, *, seed) -> dict``

returns ``{"frames": [HxWx3 uint8 arrays], "return": float, "steps": int, "fps": float}``
(Gymnasium tasks implement it with ``render_mode="rgb_array"``). MuJoCo renders headless
through ``MUJOCO_GL=egl`` or ``osmesa``; :func:`choose_gl_backend` picks one that exists
before MuJoCo is first imported.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from asktell.checkpoint import load_checkpoint
from asktell.config import config_from_dict
from asktell.errors import AsktellError, ConfigError, MissingDependencyError

__all__ = ["EvalReport", "evaluate_run", "choose_gl_backend", "write_video"]


class RenderError(AsktellError, RuntimeError):
    """An episode could not be rendered (no rendering backend, or a task without frames)."""


@dataclasses.dataclass
class EvalReport:
    """Returns of the saved centre over ``episodes`` episodes (and the video, if any)."""

    run_dir: Path
    generation: int
    which: str
    returns: np.ndarray
    video: Path | None = None
    video_note: str | None = None

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
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    return None


def _load(run_dir: Path, checkpoint: str | os.PathLike | None) -> tuple[Any, Any, Any]:
    ckpt = load_checkpoint(checkpoint if checkpoint is not None else run_dir)
    cfg = config_from_dict(ckpt.config, source=f"run config saved in {ckpt.path}")
    task = cfg.build_task()
    strategy = cfg.build_strategy(task)
    strategy.load_state_dict(ckpt.state["strategy"])
    task_state = ckpt.state.get("task")
    if task_state is not None and hasattr(task, "load_state_dict"):
        task.load_state_dict(task_state)
    return ckpt, task, strategy


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    episodes: int = 10,
    video: str | os.PathLike | None = None,
    best: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> EvalReport:
    """Evaluate the saved centre of a run (the newest checkpoint's, or the best evaluated).

    Args:
        run_dir: the run directory.
        episodes: episodes to average over.
        video: also render one episode to this file (``.mp4`` needs ``imageio-ffmpeg``;
            otherwise a ``.gif`` is written next to it and the report says so).
        best: use the centre with the best centre evaluation instead of the latest.
        checkpoint: a specific checkpoint ``.json`` instead of the newest.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"'episodes' must be an int >= 1; got {episodes!r}")
    run_dir = Path(run_dir)
    if video is not None:
        choose_gl_backend()  # before anything imports mujoco
    ckpt, task, strategy = _load(run_dir, checkpoint)
    dist = strategy.distribution
    which = "latest"
    if best:
        best_center = ckpt.state["runner"].get("best_center")
        if best_center is None:
            raise ConfigError(
                "--best needs centre evaluations (output.eval_every > 0); this run has none"
            )
        dist = dist.replace(center=np.asarray(best_center, dtype=np.float64))
        which = "best"
    if hasattr(task, "context"):
        dist = dist.replace(context=dict(task.context()))
    if not hasattr(task, "evaluate_center"):
        raise ConfigError(f"task {ckpt.config['task']['kind']!r} has no evaluate_center()")
    returns = np.asarray(task.evaluate_center(dist, episodes), dtype=np.float64).reshape(-1)
    report = EvalReport(run_dir, ckpt.generation, which, returns)
    if video is not None:
        render = getattr(task, "render_episode", None)
        if render is None:
            raise RenderError(
                f"--video needs a task that renders episodes (a Gymnasium task); this run's "
                f"task is {ckpt.config['task']['kind']!r}, which has no frames to show"
            )
        try:
            episode = render(dist, seed=0)
        except MissingDependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - rendering back-ends fail in many ways
            backend = os.environ.get("MUJOCO_GL")
            hint = (
                f" (MUJOCO_GL={backend})"
                if backend
                else " (no headless rendering backend found: install EGL (libegl1) or OSMesa "
                "(libosmesa6), or set MUJOCO_GL)"
            )
            raise RenderError(f"rendering an episode failed{hint}: {exc}") from exc
        frames = episode["frames"]
        if not frames:
            raise RenderError("the task rendered no frames")
        report.video, report.video_note = write_video(video, frames, episode.get("fps") or 30)
    return report


def write_video(
    path: str | os.PathLike, frames: list[np.ndarray], fps: float = 30
) -> tuple[Path, str | None]:
    """Write frames to ``path``; returns the path written and a note when it had to differ.

    ``.gif`` is written with Pillow; other formats (``.mp4``) need ``imageio`` with
    ``imageio-ffmpeg``, and without them a ``.gif`` is written instead, with a note saying so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if path.suffix.lower() != ".gif":
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 - the plugin imageio needs for mp4

            imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
            return path, None
        except ImportError:
            gif = path.with_suffix(".gif")
            _write_gif(gif, frames, fps)
            return gif, (
                f"could not write {path.name}: mp4 needs imageio and imageio-ffmpeg "
                f'(pip install "asktell[video]"); wrote {gif} (GIF) instead'
            )
    _write_gif(path, frames, fps)
    return path, None


def _write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            'writing a GIF needs Pillow; install it with: pip install "asktell[video]"'
        ) from None
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000 / fps)), 10),
        loop=0,
    )
