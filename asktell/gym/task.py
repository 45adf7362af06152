"""``GymTask``: any Gymnasium environment, learned through a numpy policy.

The task is picklable (the environment itself is built lazily in each process and never
pickled), so it travels to Dask workers and vector-env worker processes. It implements the
optional task hooks the runner uses (:mod:`asktell.protocol`): ``context()`` freezes the
observation normaliser and the adaptive step cap into each generation's distribution,
``observe()`` folds a generation's observation statistics and episode lengths back in,
``evaluate_center()`` measures the noise-free centre, and ``state_dict()`` checkpoints it all.

See ``docs/gym.md`` for the guide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import StrictModel
from asktell.distribution import Distribution
from asktell.errors import CheckpointError, ConfigError
from asktell.protocol import Evaluation, TaskHooks, TaskResult
from asktell.registry import TASKS
from asktell.stats import RunningStat

from .envs import combine_episodes, make_env, make_vector_env, nonfinite_error
from .normalizer import ObsNormalizer
from .policies import ActionSpec, LinearPolicy, MLPPolicy, ObservationSpec
from .seeding import center_episode_seeds, episode_seeds, obs_record_mask

__all__ = ["GymTask", "GymTaskConfig", "STEP_CAPS", "combine_episodes", "nonfinite_error"]

#: ``default``: the environment's own time limit. ``fixed``: ``max_episode_steps`` replaces
#: it. ``adaptive``: the paper's cap, about ``adaptive_cap_factor`` times the mean episode
#: length of the previous generation, below the time limit.
STEP_CAPS = ("default", "fixed", "adaptive")


@TASKS.register("gym")
class GymTask(TaskHooks):
    """A Gymnasium environment as an ES task: parameters are a policy's weights.

    Args:
        env_id: a registered id (``"CartPole-v1"``, ``"HalfCheetah-v5"``) or
            ``"module:EnvId"`` (gymnasium imports ``module`` first, in every process).
        env_kwargs: keyword arguments of ``gymnasium.make``.
        policy: ``"mlp"`` (default), ``"linear"``, or a policy object with the interface of
            :class:`~asktell.gym.policies.MLPPolicy`.
        hidden_sizes: hidden layer widths of the MLP (default ``(64, 64)``, the paper's
            MuJoCo network).
        activation: ``"tanh"`` (default) or ``"relu"``.
        bias: whether the policy's layers have biases.
        policy_dtype: ``"float32"`` (default) or ``"float64"`` arithmetic of the policy.
        action_mode: Box actions: ``"tanh"`` scales squashed outputs to the bounds,
            ``"clip"`` clips raw outputs, ``"bins"`` discretises each dimension into
            ``action_bins`` values (the paper's choice for Hopper and Swimmer).
        action_bins: bins per dimension in ``"bins"`` mode.
        episodes: episodes per candidate; its return is their mean.
        step_cap: ``"default"``, ``"fixed"`` or ``"adaptive"`` (see :data:`STEP_CAPS`).
        max_episode_steps: the time limit for ``"fixed"`` (required) and the upper bound of
            ``"adaptive"`` (default: the environment's limit).
        adaptive_cap_factor: the adaptive cap is this times the previous mean episode length.
        adaptive_cap_min: the adaptive cap never goes below this.
        obs_norm: normalise observations with running statistics (OpenAI style).
        obs_clip: normalised observations are clipped to ``[-obs_clip, obs_clip]``.
        obs_std_floor: the smallest standard deviation used to normalise (the OpenAI code's
            variance floor of 1e-2 is a std floor of 0.1).
        obs_stats_fraction: share of candidates whose rollouts feed the statistics, chosen
            deterministically from (seed, generation, candidate).
        mirrored_episode_seeds: mirrored candidates ``k`` and ``~k`` share episode seeds.
        seed: the run seed from which every episode seed is derived.

    Example:
        >>> task = GymTask("CartPole-v1", policy="linear")
        >>> task.num_params
        10
    """

    def __init__(
        self,
        env_id: str,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        policy: Any = "mlp",
        hidden_sizes: Sequence[int] | None = None,
        activation: str = "tanh",
        bias: bool = True,
        policy_dtype: str = "float32",
        action_mode: str = "tanh",
        action_bins: int = 10,
        episodes: int = 1,
        step_cap: str = "default",
        max_episode_steps: int | None = None,
        adaptive_cap_factor: float = 2.0,
        adaptive_cap_min: int = 50,
        obs_norm: bool = True,
        obs_clip: float = 5.0,
        obs_std_floor: float = 0.1,
        obs_stats_fraction: float = 0.05,
        mirrored_episode_seeds: bool = True,
        seed: int = 0,
    ):
        if not isinstance(env_id, str) or not env_id:
            raise ConfigError(f"GymTask 'env_id' must be a non-empty string; got {env_id!r}")
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.episodes = _int("episodes", episodes, 1)
        if step_cap not in STEP_CAPS:
            raise ConfigError(f"GymTask 'step_cap' must be one of {STEP_CAPS}; got {step_cap!r}")
        self.step_cap = step_cap
        if max_episode_steps is not None:
            max_episode_steps = _int("max_episode_steps", max_episode_steps, 1)
        if step_cap == "fixed" and max_episode_steps is None:
            raise ConfigError("GymTask step_cap='fixed' needs 'max_episode_steps'; got None")
        if step_cap == "default" and max_episode_steps is not None:
            raise ConfigError(
                f"GymTask 'max_episode_steps' ({max_episode_steps}) needs step_cap='fixed' or "
                "'adaptive'; with step_cap='default' the environment's limit applies"
            )
        self.max_episode_steps = max_episode_steps
        self.adaptive_cap_factor = _float("adaptive_cap_factor", adaptive_cap_factor, 1.0, True)
        self.adaptive_cap_min = _int("adaptive_cap_min", adaptive_cap_min, 1)
        self.obs_norm = bool(obs_norm)
        self.obs_clip = _float("obs_clip", obs_clip, 0.0)
        self.obs_std_floor = _float("obs_std_floor", obs_std_floor, 0.0)
        self.obs_stats_fraction = _float("obs_stats_fraction", obs_stats_fraction, 0.0, True)
        if self.obs_stats_fraction > 1.0:
            raise ConfigError(
                f"GymTask 'obs_stats_fraction' must lie in [0, 1]; got {obs_stats_fraction!r}"
            )
        self.mirrored_episode_seeds = bool(mirrored_episode_seeds)
        self.seed = _int("seed", seed, 0)

        env = self.make_env()  # validates the id and kwargs, and tells us the spaces
        self.obs_spec = ObservationSpec.from_space(env.observation_space, env_id)
        self.action_spec = ActionSpec.from_space(
            env.action_space, action_mode, action_bins, env_id
        )
        self.time_limit = env.spec.max_episode_steps if env.spec is not None else None
        self._env = env
        if self.time_limit is None:
            raise ConfigError(
                f"GymTask: {env_id} has no time limit, so an episode might never end; set "
                "step_cap='fixed' (or 'adaptive') with max_episode_steps"
            )
        self.action_mode = action_mode
        self.action_bins = int(action_bins)
        self.policy = self._make_policy(policy, hidden_sizes, activation, bias, policy_dtype)
        self.num_params = int(self.policy.num_params)

        self._obs_stat = RunningStat((self.obs_spec.dim,), std_floor=self.obs_std_floor)
        self._cap: int | None = self.time_limit if step_cap == "adaptive" else None

    # ------------------------------------------------------------------ construction
    def _make_policy(self, policy, hidden_sizes, activation, bias, dtype):
        if isinstance(policy, str):
            if policy == "linear":
                if hidden_sizes:
                    raise ConfigError(
                        f"GymTask policy='linear' has no hidden layers; got hidden_sizes="
                        f"{list(hidden_sizes)} (use policy='mlp')"
                    )
                return LinearPolicy(self.obs_spec.dim, self.action_spec, bias=bias, dtype=dtype)
            if policy == "mlp":
                sizes = (64, 64) if hidden_sizes is None else tuple(hidden_sizes)
                return MLPPolicy(
                    self.obs_spec.dim, self.action_spec, sizes, activation, bias, dtype
                )
            raise ConfigError(f"GymTask 'policy' must be 'mlp' or 'linear'; got {policy!r}")
        for attr in ("num_params", "allocate", "load", "act", "obs_dim"):
            if not hasattr(policy, attr):
                raise ConfigError(
                    f"GymTask 'policy' object must provide {attr!r} (see MLPPolicy); got "
                    f"{type(policy).__name__}"
                )
        if policy.obs_dim != self.obs_spec.dim:
            raise ConfigError(
                f"GymTask 'policy' expects obs_dim={policy.obs_dim} but {self.env_id} "
                f"observations have {self.obs_spec.dim} values"
            )
        return policy

    def make_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make`` / ``make_vec`` (time limit included)."""
        kwargs = dict(self.env_kwargs)
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs

    def make_env(self):
        """A fresh single environment (``gymnasium.make``)."""
        return make_env(self.env_id, self.make_kwargs(), self.env_kwargs)

    def make_vector_env(self, num_envs: int, mode: str = "sync"):
        """A ``gymnasium.vector`` environment of ``num_envs`` copies (see
        :func:`asktell.gym.envs.make_vector_env`)."""
        return make_vector_env(self.env_id, self.make_kwargs(), num_envs, mode)

    def _get_env(self):
        if self._env is None:
            self._env = self.make_env()
        return self._env

    def _drop_env(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - a broken env may fail to close; it is dropped
                pass

    def close(self) -> None:
        """Close this process's environment (it is rebuilt on next use)."""
        self._drop_env()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None  # environments do not pickle; each process builds its own
        return state

    def __repr__(self) -> str:
        return f"GymTask({self.env_id!r}, policy={self.policy!r}, episodes={self.episodes})"

    def initial_params(self, seed: int = 0) -> np.ndarray:
        """A starting centre: the policy's initialisation (``normc``, as in the OpenAI code)."""
        if hasattr(self.policy, "init_params"):
            return self.policy.init_params(seed)
        return np.zeros(self.num_params)

    # ------------------------------------------------------------------ generation plan
    def normalizer(self, context: Mapping[str, Any] | None) -> ObsNormalizer:
        """The frozen normaliser of a generation (identity when the context has none)."""
        return ObsNormalizer.from_context(context, self.obs_spec.dim, self.obs_clip)

    @staticmethod
    def context_cap(context: Mapping[str, Any] | None) -> int | None:
        """The step cap a generation's context imposes below the time limit, if any."""
        if not context or context.get("step_cap") is None:
            return None
        return int(context["step_cap"])

    def episode_seeds(self, generation: int, seeds: np.ndarray) -> np.ndarray:
        """Reset seeds ``(n, episodes)`` of the candidates ``seeds`` in ``generation``."""
        return episode_seeds(
            self.seed, generation, seeds, self.episodes, self.mirrored_episode_seeds
        )

    def record_mask(self, generation: int, seeds: np.ndarray) -> np.ndarray:
        """Which candidates' observations feed the statistics."""
        if not self.obs_norm:
            return np.zeros(np.asarray(seeds).size, dtype=bool)
        return obs_record_mask(self.seed, generation, seeds, self.obs_stats_fraction)

    def new_obs_stat(self) -> RunningStat:
        return RunningStat((self.obs_spec.dim,), std_floor=self.obs_std_floor)

    # ------------------------------------------------------------------ evaluation
    def rollout(
        self,
        env: Any,
        weights: list[np.ndarray],
        normalize: ObsNormalizer,
        cap: int | None,
        episode_seed: int,
        episode: int = 0,
        record: list | None = None,
    ) -> tuple[float, int, bool]:
        """One episode of the policy loaded in ``weights`` (row 0).

        Returns ``(return, steps, truncated)``; ``truncated`` means the episode was ended by
        a step cap (the environment's time limit or ``cap``), not by termination. Appends
        the observations the policy acted on to ``record`` when given. Raises
        :class:`~asktell.errors.EvaluationError` on a non-finite observation or reward.
        """
        spec, act = self.obs_spec, self.policy.act
        obs, _ = env.reset(seed=int(episode_seed))
        x = spec.to_array(obs, 1)
        if not np.isfinite(x).all():
            raise nonfinite_error(self.env_id, "observation", x[0], 0, episode, episode_seed)
        limit = cap if cap is not None else math.inf
        total, t = 0.0, 0
        while True:
            if record is not None:
                record.append(x[0].copy())
            action = act(weights, normalize(x))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            t += 1
            reward = float(reward)
            if not math.isfinite(reward):
                raise nonfinite_error(self.env_id, "reward", reward, t, episode, episode_seed)
            x = spec.to_array(obs, 1)
            if not np.isfinite(x).all():
                raise nonfinite_error(self.env_id, "observation", x[0], t, episode, episode_seed)
            total += reward
            if terminated or truncated:
                return total, t, bool(truncated) and not terminated
            if t >= limit:
                return total, t, True

    def evaluate(
        self, params: np.ndarray, seeds: np.ndarray, distribution: Distribution | None
    ) -> TaskResult:
        """Run ``episodes`` episodes per candidate in this process's environment.

        Normalisation statistics and the step cap come from ``distribution.context`` (none:
        raw observations, the time limit only); episode seeds from the run seed, the
        distribution's generation and each candidate's seed.
        """
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        n = params.shape[0]
        if params.shape[1] != self.num_params:
            raise ConfigError(
                f"GymTask {self.env_id} expects num_params={self.num_params}; got candidates "
                f"with {params.shape[1]} parameters"
            )
        if seeds.size != n:
            raise ConfigError(f"GymTask.evaluate got {n} candidates and {seeds.size} seeds")
        generation = distribution.generation if distribution is not None else 0
        context = distribution.context if distribution is not None else None
        normalize = self.normalizer(context)
        cap = self.context_cap(context)
        ep_seeds = self.episode_seeds(generation, seeds)
        record = self.record_mask(generation, seeds)
        stat = self.new_obs_stat() if record.any() else None

        returns = np.empty(n)
        steps = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=np.int64)
        weights = self.policy.allocate(1)
        env = self._get_env()
        try:
            for i in range(n):
                self.policy.load(weights, slice(0, 1), params[i : i + 1])
                ep_returns = np.empty(self.episodes)
                for e in range(self.episodes):
                    rec = [] if record[i] else None
                    ep_returns[e], t, trunc = self.rollout(
                        env, weights, normalize, cap, ep_seeds[i, e], e, rec
                    )
                    steps[i] += t
                    truncated[i] += trunc
                    if rec:
                        stat.push(np.asarray(rec))
                returns[i] = combine_episodes(ep_returns)
        except BaseException:
            # The environment may be left broken (mid-episode, or crashed): rebuild it.
            self._drop_env()
            raise
        return TaskResult(
            returns=returns,
            steps=steps,
            obs_stats=stat,
            episodes=np.full(n, self.episodes, dtype=np.int64),
            truncated=truncated,
        )

    # ------------------------------------------------------------------ runner hooks
    def context(self) -> dict[str, Any]:
        """The frozen per-generation facts: ``obs_mean``/``obs_std`` (when normalising) and
        ``step_cap`` (adaptive caps). Every evaluator applies exactly these."""
        ctx: dict[str, Any] = {}
        if self.obs_norm:
            if self._obs_stat.count > 0:
                mean, std = self._obs_stat.mean, self._obs_stat.std
            else:
                mean, std = np.zeros(self.obs_spec.dim), np.ones(self.obs_spec.dim)
            for name, value in (("obs_mean", mean), ("obs_std", std)):
                value = np.array(value, dtype=np.float64)
                value.flags.writeable = False
                ctx[name] = value
        if self.step_cap == "adaptive":
            ctx["step_cap"] = int(self._cap)
        return ctx

    def observe(self, evaluation: Evaluation) -> None:
        """Fold a generation's observation statistics and episode lengths into the task."""
        stats = evaluation.obs_stats
        if stats is not None and self.obs_norm:
            if tuple(stats.shape) != (self.obs_spec.dim,):
                raise ConfigError(
                    f"GymTask.observe got observation statistics of shape {stats.shape}; "
                    f"{self.env_id} observations have shape ({self.obs_spec.dim},)"
                )
            self._obs_stat.merge(stats)
        if self.step_cap == "adaptive":
            ok = ~evaluation.failed_mask
            episodes = evaluation.episodes
            if episodes is None:
                episodes = np.ones(len(evaluation.returns), dtype=np.int64)
            count = int(np.sum(episodes[ok]))
            if count > 0:
                mean_length = float(np.sum(evaluation.steps[ok])) / count
                cap = math.ceil(self.adaptive_cap_factor * mean_length)
                self._cap = int(min(max(cap, self.adaptive_cap_min), self.time_limit))

    @property
    def obs_stat(self) -> RunningStat:
        """The accumulated observation statistics (read them; ``observe`` updates them)."""
        return self._obs_stat

    @property
    def current_step_cap(self) -> int | None:
        """The cap the next generation gets (``None`` unless adaptive)."""
        return self._cap

    def evaluate_center(self, distribution: Distribution, episodes: int = 1) -> np.ndarray:
        """Returns of the noise-free centre, one per episode (no adaptive cap: full episodes).

        Normalises with ``distribution.context`` when it carries statistics, otherwise with
        this task's current ones (the runner's process holds them). Episode seeds come from
        a stream of their own, so the centre is not tested on its candidates' episodes.
        """
        episodes = _int("episodes", episodes, 1)
        context = distribution.context
        if not context or context.get("obs_mean") is None:
            context = self.context()
        normalize = self.normalizer(context)
        seeds = center_episode_seeds(self.seed, distribution.generation, episodes)
        weights = self.policy.allocate(1)
        self.policy.load(weights, slice(0, 1), distribution.center[None])
        env = self._get_env()
        out = np.empty(episodes)
        try:
            for e in range(episodes):
                out[e] = self.rollout(env, weights, normalize, None, seeds[e], e)[0]
        except BaseException:
            self._drop_env()
            raise
        return out

    def state_dict(self) -> dict[str, Any]:
        """Observation statistics and the adaptive cap, as arrays and scalars."""
        stat = self._obs_stat.state_dict()
        return {
            "obs_count": float(stat["count"]),
            "obs_sum": stat["sum"],
            "obs_sumsq": stat["sumsq"],
            # The exact totals (float64 expansions), so a resumed run normalises exactly as
            # the uninterrupted one would.
            "obs_sum_exact": stat["sum_exact"],
            "obs_sumsq_exact": stat["sumsq_exact"],
            "step_cap": -1 if self._cap is None else int(self._cap),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises CheckpointError if it belongs to another env."""
        try:
            total = np.asarray(state["obs_sum"], dtype=np.float64)
            sumsq = np.asarray(state["obs_sumsq"], dtype=np.float64)
            count = float(np.asarray(state["obs_count"]))
            cap = int(np.asarray(state["step_cap"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"GymTask state_dict is missing or has a bad entry: {exc}") from None
        dim = self.obs_spec.dim
        if total.shape != (dim,) or sumsq.shape != (dim,):
            raise CheckpointError(
                f"GymTask state_dict has observation statistics of shape {total.shape}; "
                f"{self.env_id} observations have shape ({dim},)"
            )
        exact = {}
        for key in ("sum_exact", "sumsq_exact"):
            if f"obs_{key}" in state:  # checkpoints before exact statistics lack them
                value = np.asarray(state[f"obs_{key}"], dtype=np.float64)
                if value.ndim != 2 or value.shape[0] != dim:
                    raise CheckpointError(
                        f"GymTask state_dict 'obs_{key}' has shape {value.shape}; "
                        f"expected ({dim}, k) for {self.env_id}"
                    )
                exact[key] = value
        try:
            self._obs_stat.load_state_dict({"count": count, "sum": total, "sumsq": sumsq, **exact})
        except ValueError as exc:
            raise CheckpointError(f"GymTask state_dict: {exc}") from None
        self._cap = None if cap < 0 else cap


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"GymTask '{name}' must be an int >= {minimum}; got {value!r}")
    return int(value)


def _float(name: str, value: Any, minimum: float, inclusive: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    v = float(value) if ok else math.nan
    if not (math.isfinite(v) and (v >= minimum if inclusive else v > minimum)):
        rule = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ConfigError(f"GymTask '{name}' must be a finite number {rule}; got {value!r}")
    return v


class GymTaskConfig(StrictModel):
    """Run-file settings of :class:`GymTask` (``kind = "gym"``)."""

    kind: Literal["gym"] = "gym"
    env_id: str = Field(
        ...,
        min_length=1,
        description="Gymnasium environment id, e.g. 'CartPole-v1' or 'HalfCheetah-v5' "
        "('module:EnvId' imports module first).",
    )
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of gymnasium.make."
    )
    policy: Literal["mlp", "linear"] = Field("mlp", description="Policy network.")
    hidden_sizes: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        description="Hidden layer widths of the MLP; default [64, 64] (the paper's MuJoCo net). "
        "Not allowed with policy='linear'.",
    )
    activation: Literal["tanh", "relu"] = Field("tanh", description="Hidden-layer nonlinearity.")
    bias: bool = Field(True, description="Whether the policy's layers have biases.")
    policy_dtype: Literal["float32", "float64"] = Field(
        "float32",
        description="Arithmetic of the policy (float32 halves the memory traffic of many "
        "candidates' weights; float64 for exactness studies).",
    )
    action_mode: Literal["tanh", "clip", "bins"] = Field(
        "tanh",
        description="Box actions: squash into the bounds (tanh), clip raw outputs (clip), or "
        "discretise each dimension into action_bins values (bins; the paper's Hopper setting).",
    )
    action_bins: int = Field(10, ge=2, description="Bins per action dimension in 'bins' mode.")
    episodes: int = Field(1, ge=1, description="Episodes per candidate; its return is their mean.")
    step_cap: Literal["default", "fixed", "adaptive"] = Field(
        "default",
        description="Episode step cap: the env's own limit, max_episode_steps, or the paper's "
        "adaptive cap (about adaptive_cap_factor x the mean episode length).",
    )
    max_episode_steps: int | None = Field(
        None,
        ge=1,
        description="Time limit for step_cap='fixed' (required) and upper bound for 'adaptive' "
        "(default: the env's limit).",
    )
    adaptive_cap_factor: float = Field(
        2.0, ge=1.0, description="Adaptive cap = this x the previous generation's mean episode length."
    )
    adaptive_cap_min: int = Field(50, ge=1, description="The adaptive cap never goes below this.")
    obs_norm: bool = Field(True, description="Normalise observations with running statistics.")
    obs_clip: float = Field(5.0, gt=0, description="Normalised observations are clipped to +-this.")
    obs_std_floor: float = Field(
        0.1, gt=0, description="Smallest std used to normalise (OpenAI: variance floor 1e-2)."
    )
    obs_stats_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Share of candidates (chosen deterministically) whose observations feed "
        "the statistics.",
    )
    mirrored_episode_seeds: bool = Field(
        True, description="Mirrored candidates k and ~k share their episode seeds."
    )
    seed: int = Field(0, ge=0, description="Run seed from which every episode seed derives.")

    @model_validator(mode="after")
    def _rules(self) -> "GymTaskConfig":
        if self.step_cap == "fixed" and self.max_episode_steps is None:
            raise ValueError("step_cap='fixed' needs max_episode_steps")
        if self.step_cap == "default" and self.max_episode_steps is not None:
            raise ValueError(
                f"max_episode_steps={self.max_episode_steps} needs step_cap='fixed' or 'adaptive'"
            )
        if self.policy == "linear" and self.hidden_sizes:
            raise ValueError(
                f"policy='linear' has no hidden layers; got hidden_sizes={self.hidden_sizes}"
            )
        return self

    def build(self) -> GymTask:
        return GymTask(**self.model_dump(exclude={"kind"}))


GymTask.config_class = GymTaskConfig  # type: ignore[attr-defined]
