"""``AtariTask``: an ALE game with the DeepMind preprocessing, learned through
:class:`~asktell.atari.AtariPolicy` with virtual batch normalisation.

It is a :class:`~asktell.gym.GymTask` whose environment is the preprocessed ALE game, whose
observations are image stacks and whose policy is the convolutional network: its rollout
plan, centre plan and batch runner (the slot engine, which the vectorised evaluator runs)
are GymTask's, and every plan checks the generation's reference batch (:meth:`normalizer`).

The VBN reference batch lives with the task: collected once, deterministically from the run
seed, with uniformly random actions, when the task is built (or given); it travels to every
worker inside the pickled task, is checkpointed by :meth:`AtariTask.state_dict` as a uint8
array, and its CRC-32 rides in every generation's context so that a worker holding another
reference batch refuses to evaluate instead of silently normalising differently.

See ``docs/atari.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from asktell.config_base import declare_options
from asktell.errors import CheckpointError, ConfigError, EvaluationError
from asktell.gym.normalizer import ObsNormalizer
from asktell.gym.options import GymTaskConfig
from asktell.gym.policies import ObservationSpec
from asktell.gym.seeding import mix64
from asktell.gym.task import GymTask
from asktell.registry import TASKS

from ._threads import limit_blas_threads
from .options import AtariTaskConfig
from .policy import AtariPolicy

__all__ = ["AtariTask", "AtariTaskConfig", "ImageObservationSpec", "resolve_env_id"]

#: Seed streams of the reference batch (distinct from asktell.gym.seeding.STREAMS).
_REFERENCE_EPISODES, _REFERENCE_ACTIONS = 101, 102
_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"


def _require_ale():
    from asktell._extras import require

    gym = require("gymnasium", "AtariTask")
    ale_py = require("ale_py", "AtariTask")
    gym.register_envs(ale_py)
    return gym


def ale_env_ids() -> list[str]:
    """Every registered ALE environment id (``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ...)."""
    gym = _require_ale()
    return sorted(k for k, s in gym.registry.items() if str(s.entry_point) == _ALE_ENTRY_POINT)


def resolve_env_id(env_id: str) -> str:
    """The ALE environment id for ``env_id``: a registered ALE id is kept, a bare game name
    (``"Pong"``, ``"space_invaders"``) becomes ``"ALE/<Game>-v5"``.

    Raises:
        ConfigError: naming the closest registered ids when there is no such game.
    """
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"AtariTask 'env_id' must be a non-empty string; got {env_id!r}")
    gym = _require_ale()
    ids = ale_env_ids()
    if env_id in ids:
        return env_id
    if env_id in gym.registry:
        raise ConfigError(
            f"AtariTask 'env_id' {env_id!r} is a Gymnasium environment but not an Atari (ALE) "
            "one; use a task of kind 'gym' for it"
        )
    v5 = [i for i in ids if i.startswith("ALE/") and i.endswith("-v5")]
    bare = {i[4:-3].lower(): i for i in v5}
    key = env_id.replace("_", "").replace(" ", "").lower()
    if key in bare:
        return bare[key]
    candidates = {i.lower(): i for i in ids}
    candidates.update(bare)
    close = difflib.get_close_matches(env_id.lower(), list(candidates), n=6, cutoff=0.5)
    names = list(dict.fromkeys(candidates[c] for c in close))[:3]
    hint = f"; the closest ids: {', '.join(names)}" if names else ""
    raise ConfigError(
        f"AtariTask 'env_id' {env_id!r} is not a registered ALE environment{hint} "
        f"({len(v5)} games are registered as 'ALE/<Game>-v5'; a bare name such as 'Pong' works too)"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class ImageObservationSpec(ObservationSpec):
    """Image observations, flattened and kept as uint8 pixels: a quarter of float32's
    memory traffic through the evaluators; :class:`AtariPolicy` converts them to its
    float type after folding the first layer's input (the values 0..255 are exact)."""

    always_finite: ClassVar[bool] = True

    def to_array(self, obs: Any, n: int) -> np.ndarray:
        x = np.asarray(obs)
        if x.dtype != np.uint8:
            return x.reshape(n, self.dim).astype(np.float32)
        return x.reshape(n, self.dim).copy()


@TASKS.register("atari")
@declare_options(AtariTaskConfig)
class AtariTask(GymTask):
    """An Atari game (ale-py) as an ES task, with the DeepMind preprocessing and network.

    ``env_id`` is an ALE id (``"ALE/Pong-v5"``, the default) or a bare game name
    (``"Pong"``); every other option is a keyword (listed below, the same names as in a run
    file). ``conv_layers`` and ``dense_size`` override the network's layers (see
    :class:`AtariPolicy`).

    Args:
        reference_batch: a VBN reference batch to use instead of collecting one,
            ``(N, frames, size, size)`` pixels (Python only; checkpoints carry it).

    Example:
        >>> task = AtariTask("Pong", conv_layers=[[4, 8, 4]], dense_size=8, screen_size=42,
        ...                  reference_batch_size=4, reference_probability=1.0)
        >>> task.policy.reference.shape
        (4, 4, 42, 42)
    """

    def __init__(
        self, env_id: str = "ALE/Pong-v5", *, reference_batch: np.ndarray | None = None, **options: Any
    ):
        cfg = AtariTaskConfig.validate_options("AtariTask", {"env_id": env_id, **options})
        limit_blas_threads()  # this process's small products run fastest on one thread
        resolved = resolve_env_id(cfg.env_id)
        for name in (
            "frame_skip", "noop_max", "screen_size", "frame_stack", "max_episode_frames",
            "repeat_action_probability", "full_action_space", "fire_reset", "network",
            "dense_size", "vbn", "vbn_epsilon", "reference_batch_size", "reference_probability",
        ):
            setattr(self, name, getattr(cfg, name))
        self.conv_layers = None if cfg.conv_layers is None else [list(c) for c in cfg.conv_layers]
        gym_options = GymTaskConfig(
            env_id=resolved,
            env_kwargs=cfg.env_kwargs,
            policy_dtype=cfg.policy_dtype,
            episodes=cfg.episodes,
            obs_norm=False,
            obs_stats_fraction=0.0,
            mirrored_episode_seeds=cfg.mirrored_episode_seeds,
            seed=cfg.seed,
        )
        self._setup(gym_options)
        spec = self.obs_spec
        self.obs_spec = ImageObservationSpec(spec.kind, spec.dim, spec.shape)
        if self.vbn:
            if reference_batch is None:
                reference_batch = self.collect_reference_batch()
            self.policy.set_reference(reference_batch)
        elif reference_batch is not None:
            raise ConfigError("AtariTask got a 'reference_batch' but vbn=False; it would be unused")

    # ------------------------------------------------------------------ construction
    def _make_policy(self, cfg, custom):
        return AtariPolicy(
            self.obs_spec.shape,
            self.action_spec,
            self.network,
            conv_layers=self.conv_layers,
            dense_size=self.dense_size,
            vbn=self.vbn,
            vbn_epsilon=self.vbn_epsilon,
            dtype=cfg.policy_dtype,
        )

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`asktell.atari._env.make_atari_env` for this task."""
        return {
            "frame_skip": self.frame_skip,
            "noop_max": self.noop_max,
            "screen_size": self.screen_size,
            "frame_stack": self.frame_stack,
            "max_episode_frames": self.max_episode_frames,
            "repeat_action_probability": self.repeat_action_probability,
            "full_action_space": self.full_action_space,
            "fire_reset": self.fire_reset,
            "env_kwargs": dict(self.env_kwargs),
        }

    def make_env(self):
        """A fresh preprocessed single environment."""
        _require_ale()
        from ._env import make_atari_env

        return make_atari_env(self.env_id, **self.env_options())

    def make_vector_env(self, num_envs: int, mode: str = "sync"):
        """``num_envs`` preprocessed environments as one vector environment.

        ``sync``/``async``: this module's preprocessing in every slot, autoreset disabled
        (the vectorised evaluator resets each slot with its episode's seed), so returns equal
        the serial evaluator's. ``vector_entry_point``: ale-py's own multithreaded
        ``AtariVectorEnv`` with the same settings (its C++ preprocessing resizes slightly
        differently and it seeds its episodes itself, so returns are those of other,
        equally valid episodes).
        """
        gym = _require_ale()
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

        from ._env import make_atari_env

        if mode in ("sync", "async"):
            recipe = functools.partial(make_atari_env, self.env_id, **self.env_options())
            kind = SyncVectorEnv if mode == "sync" else AsyncVectorEnv
            return kind(
                [recipe] * int(num_envs), copy=False, autoreset_mode=AutoresetMode.DISABLED
            )
        if mode == "vector_entry_point":
            from ale_py.vector_env import AtariVectorEnv

            return AtariVectorEnv(
                game=gym.spec(self.env_id).kwargs["game"],
                num_envs=int(num_envs),
                frameskip=self.frame_skip,
                noop_max=self.noop_max,
                img_height=self.screen_size,
                img_width=self.screen_size,
                stack_num=self.frame_stack,
                maxpool=True,
                grayscale=True,
                max_num_frames_per_episode=self.max_episode_frames,
                repeat_action_probability=self.repeat_action_probability,
                full_action_space=self.full_action_space,
                use_fire_reset=self.fire_reset,
                reward_clipping=False,
                episodic_life=False,
            )
        raise ConfigError(
            f"vector env 'mode' must be 'sync', 'async' or 'vector_entry_point'; got {mode!r}"
        )

    def __repr__(self) -> str:
        return f"AtariTask({self.env_id!r}, policy={self.policy!r}, episodes={self.episodes})"

    # ------------------------------------------------------------------ reference batch
    @property
    def reference_batch(self) -> np.ndarray | None:
        """The VBN reference batch ``(N, frames, size, size)`` uint8 (``None`` without VBN)."""
        return self.policy.reference

    def collect_reference_batch(self) -> np.ndarray:
        """A reference batch from uniformly random play, deterministic in the run seed.

        Episodes are reset with seeds of their own stream; each observation is kept with
        probability ``reference_probability`` until ``reference_batch_size`` are kept.
        """
        size, keep = self.reference_batch_size, self.reference_probability
        batch = np.empty((size, *self.obs_spec.shape), dtype=np.uint8)
        rng = np.random.default_rng(int(mix64(_REFERENCE_ACTIONS, self.seed)[0]))
        n_actions = self.action_spec.n
        env = self._get_env()
        got, episode = 0, 0
        try:
            while got < size:
                seed = int(mix64(_REFERENCE_EPISODES, self.seed, episode)[0] >> np.uint64(33))
                obs, _ = env.reset(seed=seed)
                done = False
                while not done and got < size:
                    if keep >= 1.0 or rng.random() < keep:
                        batch[got] = obs
                        got += 1
                    obs, _, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
                    done = terminated or truncated
                episode += 1
        except BaseException:
            self._drop_env()
            raise
        return batch

    def _check_reference(self, context: Mapping[str, Any] | None) -> None:
        if not context or context.get("vbn_reference_crc") is None:
            return
        expected = int(context["vbn_reference_crc"])
        if self.policy.reference_crc != expected:
            raise EvaluationError(
                f"AtariTask {self.env_id}: this process's VBN reference batch (CRC-32 "
                f"{self.policy.reference_crc}) is not the run's ({expected}); the task was "
                "shipped before its reference batch was loaded or changed. Rebuild the "
                "evaluator after load_state_dict()"
            )

    # ------------------------------------------------------------------ runner hooks
    def normalizer(self, context: Mapping[str, Any] | None) -> ObsNormalizer:
        # Every rollout plan (serial, slot engine, centre) asks for the generation's
        # normaliser once per batch: the place to check the reference batch is the run's.
        self._check_reference(context)
        return super().normalizer(context)

    def context(self) -> dict[str, Any]:
        """The GymTask context plus the CRC-32 of the VBN reference batch."""
        ctx = super().context()
        if self.vbn:
            ctx["vbn_reference_crc"] = int(self.policy.reference_crc)
        return ctx

    def state_dict(self) -> dict[str, Any]:
        """The GymTask state plus the VBN reference batch (uint8 array)."""
        state = super().state_dict()
        if self.vbn:
            state["vbn_reference"] = np.array(self.policy.reference)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; a reference batch of the wrong shape is rejected
        (and then nothing is changed)."""
        reference = None
        if self.vbn:
            if "vbn_reference" not in state:
                raise CheckpointError(
                    f"AtariTask state_dict has no 'vbn_reference' but this task has vbn=True "
                    f"({self.env_id})"
                )
            reference = state["vbn_reference"]
            if not isinstance(reference, np.ndarray):  # never coerced from lists or text
                raise CheckpointError(
                    f"AtariTask state_dict 'vbn_reference' must be a uint8 array; got "
                    f"{type(reference).__name__}"
                )
            expected = tuple(self.obs_spec.shape)
            if reference.ndim != 4 or tuple(reference.shape[1:]) != expected or reference.shape[0] < 2:
                raise CheckpointError(
                    f"AtariTask state_dict 'vbn_reference' must have shape (N >= 2, "
                    f"{', '.join(map(str, expected))}) to match {self.env_id}'s observations; "
                    f"got {tuple(reference.shape)}"
                )
            if reference.dtype != np.uint8:
                raise CheckpointError(
                    f"AtariTask state_dict 'vbn_reference' must be uint8 pixels; got {reference.dtype}"
                )
        super().load_state_dict(state)
        if reference is not None:
            self.policy.set_reference(reference)


