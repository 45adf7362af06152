"""Small deterministic Gymnasium environments for tests of Gym tasks and evaluators.

Importing this module imports gymnasium and registers ``AsktellDrift-v0``; use the id
``"asktell.testing.gym_envs:AsktellDrift-v0"`` so that every process (vector-env workers,
Dask workers) imports it before building the environment.

``Drift``: a point on a line, pushed by a one-dimensional action in ``[-1, 1]``::

    velocity = 0.9 * velocity + 0.1 * action;  position += velocity
    reward = 1 - position**2;  terminated when |position| > 1;  time limit 40 steps

The start position is drawn from the episode seed (``random_start=True``) or fixed at 0.1.
Faults for failure tests: once the action exceeds ``fail_above`` (from step 3 on), the
environment raises (``fail_mode="raise"``), returns a NaN reward (``"nan_reward"``) or
observation (``"nan_obs"``), kills its process (``"exit"``) or never returns (``"hang"``: an
hour's sleep, for time-limit tests).

``DriftVectorEnv`` is its own vectorised implementation (the ``vector_entry_point``), with
the autoreset mode given by ``autoreset_mode`` (``"NextStep"``, ``"SameStep"`` or
``"Disabled"``); its arithmetic equals the single environment's element by element.
"""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = ["Drift", "DriftVectorEnv", "DRIFT_ID", "DRIFT_UNLIMITED_ID"]

DRIFT_ID = "asktell.testing.gym_envs:AsktellDrift-v0"
DRIFT_UNLIMITED_ID = "asktell.testing.gym_envs:AsktellDriftUnlimited-v0"  # no time limit
_START = 0.1


def _fault(fail_mode: str | None) -> None:
    if fail_mode == "raise":
        raise RuntimeError("Drift: simulated environment crash")
    if fail_mode == "exit":
        os._exit(3)
    if fail_mode == "hang":
        time.sleep(3600)


class Drift(gym.Env):
    """The single environment (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        random_start: bool = True,
        fail_mode: str | None = None,
        fail_above: float = 0.9,
        autoreset_mode: str = "NextStep",  # used by the vector version only
    ):
        self.random_start = random_start
        self.fail_mode = fail_mode
        self.fail_above = float(fail_above)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.position = 0.0
        self.velocity = 0.0
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-0.5, 0.5)) if self.random_start else _START
        self.velocity = 0.0
        self.t = 0
        return np.array([self.position, self.velocity]), {}

    def step(self, action):
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        self.t += 1
        faulty = self.fail_mode is not None and self.t >= 3 and a > self.fail_above
        if faulty:
            _fault(self.fail_mode)
        self.velocity = 0.9 * self.velocity + 0.1 * a
        self.position = self.position + self.velocity
        reward = 1.0 - self.position * self.position
        if faulty and self.fail_mode == "nan_reward":
            reward = float("nan")
        obs = np.array([self.position, self.velocity])
        if faulty and self.fail_mode == "nan_obs":
            obs[1] = np.nan
        return obs, reward, abs(self.position) > 1.0, False, {}


class DriftVectorEnv(VectorEnv):
    """``num_envs`` Drift environments in numpy arrays, with a declared autoreset mode."""

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 40,
        random_start: bool = True,
        fail_mode: str | None = None,
        fail_above: float = 0.9,
        autoreset_mode: str = "NextStep",
    ):
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.random_start = random_start
        self.fail_mode = fail_mode
        self.fail_above = float(fail_above)
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.position = np.zeros(num_envs)
        self.velocity = np.zeros(num_envs)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.prev_done = np.zeros(num_envs, dtype=bool)
        self._rngs = [None] * num_envs

    def _start(self, i: int, rng) -> None:
        self.position[i] = float(rng.uniform(-0.5, 0.5)) if self.random_start else _START
        self.velocity[i] = 0.0
        self.t[i] = 0

    def reset(self, *, seed=None, options=None):
        mask = (options or {}).get("reset_mask")
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        if isinstance(seed, (list, tuple)):
            # Per-environment seeds: each start equals the single env reset with that seed.
            for i in np.flatnonzero(mask):
                self._rngs[i] = seeding.np_random(seed[i])[0]
                self._start(i, self._rngs[i])
        else:
            super().reset(seed=seed)
            for i in np.flatnonzero(mask):
                self._start(i, self.np_random)
        self.prev_done[mask] = False
        return np.stack([self.position, self.velocity], axis=1), {}

    def _observe(self) -> np.ndarray:
        return np.stack([self.position, self.velocity], axis=1)

    def step(self, actions):
        a = np.asarray(actions, dtype=np.float64).reshape(self.num_envs)
        mode = self.autoreset_mode
        resetting = self.prev_done.copy() if mode == AutoresetMode.NEXT_STEP else np.zeros_like(self.prev_done)
        stepping = ~resetting
        self.t[stepping] += 1
        faulty = stepping & (self.t >= 3) & (a > self.fail_above) if self.fail_mode else None
        if faulty is not None and faulty.any():
            _fault(self.fail_mode)
        v = 0.9 * self.velocity + 0.1 * a
        p = self.position + v
        self.velocity = np.where(stepping, v, self.velocity)
        self.position = np.where(stepping, p, self.position)
        reward = 1.0 - self.position * self.position
        obs = self._observe()
        if faulty is not None and self.fail_mode == "nan_reward":
            reward[faulty] = np.nan
        if faulty is not None and self.fail_mode == "nan_obs":
            obs[faulty, 1] = np.nan
        terminated = stepping & (np.abs(self.position) > 1.0)
        truncated = stepping & ~terminated & (self.t >= self.max_episode_steps)
        info = {}
        for i in np.flatnonzero(resetting):
            self._start(i, self.np_random)
            reward[i] = 0.0
        if mode == AutoresetMode.NEXT_STEP:
            if resetting.any():
                obs[resetting] = self._observe()[resetting]
            self.prev_done = terminated | truncated
        elif mode == AutoresetMode.SAME_STEP:
            done = terminated | truncated
            if done.any():
                info["final_obs"] = np.array([obs[i] if done[i] else None for i in range(self.num_envs)], dtype=object)
                info["_final_obs"] = done.copy()
                for i in np.flatnonzero(done):
                    self._start(i, self.np_random)
                obs[done] = self._observe()[done]
        return obs, reward, terminated, truncated, info


gym.register(
    "AsktellDrift-v0",
    entry_point=Drift,
    vector_entry_point=DriftVectorEnv,
    max_episode_steps=40,
)
gym.register("AsktellDriftUnlimited-v0", entry_point=Drift)
