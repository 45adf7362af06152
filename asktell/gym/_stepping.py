"""Stepping helpers of the slot engine (:mod:`asktell.gym.slots`): what makes a step of
many environments cheap without changing any number.

Imports gymnasium (and MuJoCo, when present) only inside functions.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "autoreset_mode",
    "share_mujoco_model",
    "strip_wrappers",
    "row_writer",
    "step_busy",
    "RUNS_ONLY_PARAMS",
]


def autoreset_mode(vec) -> str:
    """The autoreset mode a vector environment declares (``Disabled``, ``NextStep``,
    ``SameStep``)."""
    mode = vec.metadata.get("autoreset_mode")
    value = getattr(mode, "value", mode)
    # Gymnasium assumes NextStep for vector envs that do not declare a mode.
    return str(value) if value is not None else "NextStep"


def share_mujoco_model(envs) -> bool:
    """Let identical MuJoCo sub-environments share one ``MjModel``; True if they do.

    Every ``gym.make`` compiles its own model (about 0.5 MB for HalfCheetah), so 16
    interleaved sub-environments stream 8 MB of identical read-only data through a 2 MB
    cache; one shared model stays cached (about 5% of a HalfCheetah step). Only
    sub-environments of one MuJoCo class whose compiled models are byte for byte the same
    are touched; each gets a fresh ``MjData`` of the shared model before its first reset,
    so the simulation is exactly what its own model would compute.
    """
    try:
        import mujoco
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except Exception:  # noqa: BLE001 - no MuJoCo here: nothing to share
        return False
    inner = [getattr(e, "unwrapped", e) for e in envs]
    if len(inner) < 2 or not all(
        isinstance(e, MujocoEnv) and type(e) is type(inner[0]) for e in inner
    ):
        return False

    def compiled(model) -> np.ndarray:
        buffer = np.empty(mujoco.mj_sizeModel(model), dtype=np.uint8)
        mujoco.mj_saveModel(model, None, buffer)
        return buffer

    reference = compiled(inner[0].model)
    if not all(np.array_equal(reference, compiled(e.model)) for e in inner[1:]):
        return False
    shared = inner[0].model
    for env in inner[1:]:
        env.model = shared
        env.data = mujoco.MjData(shared)
    return True


#: Policies with at least this many parameters per candidate run the busy slots of a
#: batch's tail as runs of consecutive slots (views) instead of gathering their weights.
RUNS_ONLY_PARAMS = 100_000


def strip_wrappers(envs):
    """The sub-environments without gymnasium's bookkeeping wrappers, and their time limit.

    ``gymnasium.make`` wraps an environment in ``PassiveEnvChecker`` (checks the first
    call), ``OrderEnforcing`` (reset before step) and ``TimeLimit``; the vector env adds
    :class:`DropStepInfo`. Stepping through them costs a Python call each per step (about
    5% of a HalfCheetah step). The engine always resets before stepping and applies the time
    limit itself, so when an environment's wrappers are exactly of those kinds, it steps the
    inner environment; any other wrapper (which might change observations or rewards) keeps
    the whole stack. Resets still go through the wrappers.
    """
    import gymnasium as gym
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

    from asktell.gym._wrappers import DropStepInfo

    bookkeeping = (OrderEnforcing, PassiveEnvChecker, TimeLimit, DropStepInfo)
    inner, limits = [], set()
    for env in envs:
        limit = None
        while isinstance(env, gym.Wrapper):
            if type(env) not in bookkeeping:
                return list(envs), None
            if type(env) is TimeLimit:
                limit = env._max_episode_steps
            env = env.env
        inner.append(env)
        limits.add(limit)
    if len(limits) != 1:
        return list(envs), None
    return inner, limits.pop()


def row_writer(spec):
    """``write(X, s, obs)``: one observation into row ``s`` of the float64 batch ``X``."""
    if spec.kind == "discrete":

        def write(X, s, obs):
            X[s] = spec.to_array(obs, 1)[0]

        return write

    if len(spec.shape) == 1:

        def write(X, s, obs):
            X[s] = obs  # cast to float64 as ``to_array`` does

        return write

    def write(X, s, obs):
        X[s] = np.reshape(obs, -1)

    return write


def step_busy(envs, write, actions, slots, X, reward, terminated, truncated) -> bool:
    """Step the sub-environments in ``slots``, ``env.step(action)`` each as a SyncVectorEnv
    would; observations go into ``X``'s rows (float64), rewards into ``reward``, and the
    flags of episodes that ended into ``terminated``/``truncated``. True if any ended."""
    ended = False
    for s in slots:
        obs, reward[s], term, trunc, _ = envs[s].step(actions[s])
        write(X, s, obs)
        if term or trunc:
            terminated[s], truncated[s] = term, trunc
            ended = True
    return ended
