"""Building Gymnasium environments, and the rollout conventions every evaluator shares.

Gymnasium is imported here only inside functions, so that importing :mod:`asktell.gym`
stays free of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asktell.errors import ConfigError, EvaluationError, MissingDependencyError

__all__ = ["make_env", "make_vector_env", "nonfinite_error", "combine_episodes", "VECTOR_MODES"]

VECTOR_MODES = ("sync", "async", "vector_entry_point")


def _require_gym(purpose: str = "GymTask"):
    from asktell._extras import require

    return require("gymnasium", purpose)


def make_env(env_id: str, kwargs: Mapping[str, Any], env_kwargs: Mapping[str, Any] | None = None):
    """``gymnasium.make(env_id, **kwargs)`` with errors a person can act on."""
    gym = _require_gym()
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(
            f"GymTask {env_id!r} needs a package that is not installed ({exc}); "
            'for MuJoCo environments: pip install "asktell[mujoco]"'
        ) from exc
    except gym.error.Error as exc:
        raise ConfigError(f"GymTask 'env_id' {env_id!r}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(
            f"GymTask 'env_kwargs' {dict(env_kwargs or {})!r} were rejected by {env_id}: {exc}"
        ) from exc


def make_vector_env(env_id: str, kwargs: Mapping[str, Any], num_envs: int, mode: str = "sync"):
    """A ``gymnasium.vector`` environment of ``num_envs`` copies of ``env_id``.

    ``sync``/``async`` environments are built with autoreset disabled (the vectorised
    evaluator resets each slot itself, with the episode's seed) and without per-step
    infos; ``vector_entry_point`` uses the environment's own vector implementation, with
    whatever autoreset mode it declares.
    """
    gym = _require_gym("VectorEnvEvaluator")
    if mode not in VECTOR_MODES:
        raise ConfigError(f"vector env 'mode' must be one of {VECTOR_MODES}; got {mode!r}")
    try:
        if mode == "vector_entry_point":
            return gym.make_vec(env_id, num_envs, vectorization_mode=mode, **kwargs)
        from gymnasium.vector import AutoresetMode

        from ._wrappers import DropStepInfo

        return gym.make_vec(
            env_id,
            num_envs,
            vectorization_mode=mode,
            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED, "copy": False},
            wrappers=[DropStepInfo],
            **kwargs,
        )
    except gym.error.Error as exc:
        raise ConfigError(
            f"VectorEnvEvaluator could not build a {mode!r} vector env of {env_id}: {exc}"
        ) from exc


def nonfinite_error(env_id: str, what: str, value: Any, step: int, episode: int, seed: int):
    """The error a rollout raises for a NaN/inf observation or reward (one text everywhere)."""
    where = "after reset" if step == 0 else f"at step {step}"
    if isinstance(value, np.ndarray):
        value = np.array2string(value, precision=6, separator=", ")
    return EvaluationError(
        f"{env_id} returned a non-finite {what} ({value}) {where} of episode {episode} "
        f"(episode seed {seed})"
    )


def combine_episodes(returns: np.ndarray) -> float:
    """A candidate's return: the mean of its episodes' returns (one formula everywhere)."""
    return float(np.mean(returns))
