"""Building Gymnasium environments, and the rollout conventions every evaluator shares.

Gymnasium is imported here only inside functions, so that importing :mod:`asktell.gym`
stays free of it.
"""

from __future__ import annotations

import os

from collections.abc import Mapping
from typing import Any

import numpy as np

from asktell.config_base import short_repr
from asktell.errors import ConfigError, EvaluationError, MissingDependencyError

__all__ = ["make_env", "make_vector_env", "nonfinite_error", "combine_episodes", "VECTOR_MODES"]

VECTOR_MODES = ("sync", "async", "vector_entry_point")


def _require_gym(purpose: str = "GymTask"):
    from asktell._extras import require

    return require("gymnasium", purpose)


def make_env(env_id: str, kwargs: Mapping[str, Any], env_kwargs: Mapping[str, Any] | None = None):
    """``gymnasium.make(env_id, **kwargs)`` with errors a person can act on."""
    gym = _require_gym()
    name = short_repr(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(
            f"GymTask {name} needs a package that is not installed ({_cut(exc)}); "
            'for MuJoCo environments: pip install -e ".[mujoco]" (in your asktell clone)'
        ) from None
    except gym.error.Error as exc:
        raise ConfigError(f"GymTask 'env_id' {name}: {_cut(exc)}") from None
    except ImportError as exc:
        # "module:EnvId" imports the module first; a missing one is a wrong id, not a bug.
        raise ConfigError(
            f"GymTask 'env_id' {name}: its module could not be imported "
            f"({type(exc).__name__}: {_cut(exc)}); 'module:EnvId' needs an importable module "
            "that registers EnvId: the asktell command searches the current directory "
            f"({os.getcwd()}) first, a Python script its own folder and sys.path"
        ) from None
    except (TypeError, ValueError, KeyError, IndexError, AssertionError) as exc:
        # An environment's constructor refusing a value (FrozenLake's map_name='9x9' is a
        # KeyError) is the run file's mistake, not a bug: say whose.
        why = f"{type(exc).__name__}: {_cut(exc)}"
        if env_kwargs:
            raise ConfigError(
                f"GymTask 'env_kwargs' {short_repr(dict(env_kwargs))} were rejected by "
                f"{name}: {why}"
            ) from None
        raise ConfigError(f"GymTask 'env_id' {name} could not be built: {why}") from None


def _cut(exc: BaseException, limit: int = 300) -> str:
    """An exception's text, first line only and cut (it may echo a 1 MB id back)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


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
            f"VectorEnvEvaluator could not build a {mode!r} vector env of {short_repr(env_id)}: "
            f"{_cut(exc)}"
        ) from None


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
