"""The DeepMind Atari preprocessing as a Gymnasium wrapper (imports gymnasium and ale_py:
load this module lazily).

What an agent step does (Mnih et al. 2015; Machado et al. 2018 for the names):

* reset: the game restarts, then 1..``noop_max`` no-op frames (a number drawn from a
  generator seeded by the episode's seed) randomise the start (with sticky actions the
  emulator's own generator is seeded too, which needs a reload of the ROM);
  optionally FIRE is held for one agent step (games that wait for it, e.g. Breakout);
* step: the action is repeated for ``frame_skip`` emulator frames, rewards summed; the
  observation is the pixel-wise maximum of the last two frames' grayscale screens (Atari
  sprites flicker), resized to ``screen_size`` x ``screen_size`` by area averaging (as OpenCV's ``INTER_AREA``), and the
  last ``frame_stack`` such frames are stacked: ``(frame_stack, size, size)`` uint8;
* the episode is truncated by the emulator after ``max_episode_frames`` frames (no-ops
  included; 108,000 frames = 30 minutes of play is the usual cap).

The emulator is driven through ``ale.act`` directly (not ``env.step`` once per frame) and
screens are read into preallocated buffers; the resize is a few multiply-adds per pixel
(the sparse form of the area-averaging matrices), not a BLAS call.
Rewards are not clipped: ES ranks returns, and the game score is what is reported.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from typing import Any

import gymnasium as gym
import numpy as np

from asktell.config_base import short_repr
from asktell.errors import ConfigError, MissingDependencyError

__all__ = ["DeepMindPreprocessing", "area_matrix", "area_resize", "make_atari_env"]


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of area-averaging resampling (each output pixel is the mean
    of the input interval it covers, partial pixels weighted by their overlap)."""
    ratio = n_in / n_out
    start = np.arange(n_out)[:, None] * ratio
    j = np.arange(n_in)[None, :]
    overlap = np.minimum(start + ratio, j + 1) - np.maximum(start, j)
    return (np.clip(overlap, 0.0, None) / ratio).astype(np.float32)


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The few input pixels each output pixel of :func:`area_matrix` averages: indices and
    weights ``(taps, n_out)`` (a sparse form: a resize costs a few multiply-adds per pixel
    instead of a dense matrix product)."""
    dense = area_matrix(n_in, n_out)
    nonzero = dense > 0
    first = nonzero.argmax(axis=1)
    width = int(nonzero.sum(axis=1).max())
    idx = np.minimum(first[:, None] + np.arange(width)[None, :], n_in - 1)
    weights = np.take_along_axis(dense, idx, axis=1)
    # An index clipped at the border repeats a pixel already counted: give it no weight.
    weights[first[:, None] + np.arange(width)[None, :] > n_in - 1] = 0.0
    return np.ascontiguousarray(idx.T), np.ascontiguousarray(weights.T)


def area_resize(image: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    """Resize a 2-D image with the taps of :func:`_taps` for rows and columns (float32)."""
    r_idx, r_w = rows
    c_idx, c_w = cols
    tall = r_w[0][:, None] * image[r_idx[0]]
    for t in range(1, r_idx.shape[0]):
        tall += r_w[t][:, None] * image[r_idx[t]]
    out = c_w[0] * tall[:, c_idx[0]]
    for t in range(1, c_idx.shape[0]):
        out += c_w[t] * tall[:, c_idx[t]]
    return out


class DeepMindPreprocessing(gym.Wrapper):
    """No-op starts, frame skip with max-pooling, grayscale, resize, frame stack.

    Wraps an ALE environment made with ``frameskip=1`` (see :func:`make_atari_env`).

    Args:
        env: the ALE environment.
        frame_skip: emulator frames per agent step.
        noop_max: up to this many no-op frames after reset (0: none).
        screen_size: side of the square observation.
        frame_stack: frames per observation.
        fire_reset: hold FIRE for one agent step after reset (when the game has FIRE).
        full_action_space: whether the environment uses all 18 actions.
        max_episode_frames: the emulator's frame cap (sets the step limit the spec reports).
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        frame_skip: int = 4,
        noop_max: int = 30,
        screen_size: int = 84,
        frame_stack: int = 4,
        fire_reset: bool = False,
        full_action_space: bool = False,
        max_episode_frames: int = 108_000,
    ):
        super().__init__(env)
        import ale_py

        self.ale = env.unwrapped.ale
        self.frame_skip = int(frame_skip)
        self.noop_max = int(noop_max)
        self.fire_reset = bool(fire_reset)
        self.max_episode_frames = int(max_episode_frames)
        self._deterministic = float(self.ale.getFloat("repeat_action_probability")) == 0.0
        self._started = False
        self._rng = np.random.default_rng()
        actions = self.ale.getLegalActionSet() if full_action_space else self.ale.getMinimalActionSet()
        self._actions = list(actions)
        if len(self._actions) != env.action_space.n:  # pragma: no cover - ale-py guard
            raise ConfigError(
                f"DeepMindPreprocessing: {len(self._actions)} ALE actions but the env has "
                f"{env.action_space.n}; pass the env's full_action_space setting"
            )
        self._noop = ale_py.Action.NOOP
        self._fire = ale_py.Action.FIRE if ale_py.Action.FIRE in self._actions else None
        height, width = self.ale.getScreenDims()
        self._screens = np.zeros((2, height, width), dtype=np.uint8)
        self._rows = _taps(height, screen_size)
        self._cols = _taps(width, screen_size)
        self._stack = np.zeros((frame_stack, screen_size, screen_size), dtype=np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, self._stack.shape, dtype=np.uint8)
        self.action_space = env.action_space

    @property
    def spec(self):
        # The emulator ends an episode after max_episode_frames frames: at most this many
        # agent steps (what GymTask calls the environment's time limit).
        base = self.env.spec
        if base is None:
            return None
        steps = math.ceil(self.max_episode_frames / self.frame_skip)
        return dataclasses.replace(base, max_episode_steps=steps)

    def _frame(self, pooled: bool) -> np.ndarray:
        screen = np.maximum(self._screens[0], self._screens[1]) if pooled else self._screens[1]
        small = area_resize(screen.astype(np.float32), self._rows, self._cols)
        small += 0.5  # round to nearest when cast to uint8
        return small

    def _push(self, frame: np.ndarray) -> None:
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        ale = self.ale
        if self._deterministic and self._started:
            # Without sticky actions the emulator is deterministic and the ALE seed unused:
            # restarting the game gives exactly the state a seeded reset gives (same frames
            # and RAM; tests/test_atari.py) at a fraction of the cost of reloading the ROM.
            ale.reset_game()
        else:
            self.env.reset(seed=seed, options=options)
            self._started = True
        if self.noop_max > 0:
            noops = int(self._rng.integers(1, self.noop_max + 1))
            for _ in range(noops):
                ale.act(self._noop)
                if ale.game_over():
                    ale.reset_game()
        if self.fire_reset and self._fire is not None:
            for _ in range(self.frame_skip):
                ale.act(self._fire)
            if ale.game_over():
                ale.reset_game()
        ale.getScreenGrayscale(self._screens[1])
        self._stack[:] = self._frame(False)
        return self._stack.copy(), {}

    def step(self, action):
        ale, screens, skip = self.ale, self._screens, self.frame_skip
        a = self._actions[int(action)]
        reward = 0.0
        pooled = False
        for k in range(skip):
            reward += ale.act(a)
            if k == skip - 2:
                ale.getScreenGrayscale(screens[0])
            if ale.game_over():
                break
        else:
            pooled = skip > 1
        ale.getScreenGrayscale(screens[1])
        self._push(self._frame(pooled))
        terminated = ale.game_over(with_truncation=False)
        truncated = not terminated and ale.game_truncated()
        return self._stack.copy(), float(reward), terminated, truncated, {}


def _rom_error(env_id: str, game: str, exc: BaseException) -> MissingDependencyError:
    from ale_py import roms

    roms_dir = os.environ.get("ALE_ROMS_DIR") or os.path.dirname(roms.__file__)
    try:
        present = sorted(f[:-4] for f in os.listdir(roms_dir) if f.endswith(".bin"))
    except OSError:
        present = []
    close = difflib.get_close_matches(game, present, n=3, cutoff=0.5)
    hint = (
        f"; the closest games with a ROM there: {', '.join(close)}"
        if close
        else f"; {len(present)} ROMs found there"
    )
    return MissingDependencyError(
        f"AtariTask could not load the ROM of {game!r} for {env_id} from {roms_dir} "
        f"({type(exc).__name__}: {exc}){hint}. ale-py >= 0.9 ships the ROMs inside its "
        'package: reinstall it with pip install -e ".[atari]" (in your asktell clone), or unset ALE_ROMS_DIR / '
        f"point it at a folder holding {game}.bin"
    )


#: Keywords of ALE's environment that the task sets from its own options (``None``: fixed).
_SET_BY_THE_TASK = {
    "frameskip": "frame_skip",
    "repeat_action_probability": "repeat_action_probability",
    "full_action_space": "full_action_space",
    "max_num_frames_per_episode": "max_episode_frames",
    "obs_type": None,
    "disable_env_checker": None,
}


def make_atari_env(
    env_id: str,
    *,
    frame_skip: int = 4,
    noop_max: int = 30,
    screen_size: int = 84,
    frame_stack: int = 4,
    max_episode_frames: int = 108_000,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
    fire_reset: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> DeepMindPreprocessing:
    """A preprocessed ALE environment (picklable recipe for vector-env workers)."""
    import ale_py

    gym.register_envs(ale_py)
    game = gym.spec(env_id).kwargs.get("game", env_id)
    for key in sorted(set(env_kwargs or {}) & set(_SET_BY_THE_TASK)):
        option = _SET_BY_THE_TASK[key]
        instead = f"set the task's own '{option}'" if option else "the task needs its value"
        raise ConfigError(
            f"AtariTask 'env_kwargs' sets {key!r}, which the task sets itself; {instead} "
            "instead of env_kwargs"
        )
    try:
        env = gym.make(
            env_id,
            frameskip=1,
            repeat_action_probability=float(repeat_action_probability),
            full_action_space=bool(full_action_space),
            max_num_frames_per_episode=int(max_episode_frames),
            obs_type="grayscale",
            disable_env_checker=True,
            **(env_kwargs or {}),
        )
    except (OSError, TypeError, RuntimeError, ValueError) as exc:
        if env_kwargs and not isinstance(exc, OSError):
            # A value ALE refuses (mode=99 is a RuntimeError, difficulty='x' a TypeError) is
            # the run file's, not a missing ROM (an OSError).
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"AtariTask 'env_kwargs' {short_repr(env_kwargs)} were rejected by {env_id}: "
                f"{type(exc).__name__}: {first[:200]}"
            ) from None
        raise _rom_error(env_id, game, exc) from exc
    return DeepMindPreprocessing(
        env,
        frame_skip=frame_skip,
        noop_max=noop_max,
        screen_size=screen_size,
        frame_stack=frame_stack,
        fire_reset=fire_reset,
        full_action_space=full_action_space,
        max_episode_frames=max_episode_frames,
    )
