"""``GymTask``: any Gymnasium environment, learned through a numpy policy.

The task is picklable (the environment itself is built lazily in each process and never
pickled), so it travels to Dask workers and vector-env worker processes. It owns its
rollouts: :meth:`GymTask.plan` declares a batch's episodes (:mod:`asktell.gym.plan`), which
:meth:`GymTask.evaluate` (the serial path, also what Dask workers run) and its batch runner,
the slot engine (:mod:`asktell.gym.slots`), both follow. It implements the optional task
hooks (:class:`asktell.protocol.TaskHooks`): ``context()`` freezes the observation
normaliser and the adaptive step cap into each generation's distribution, ``observe()``
folds a generation's observation statistics and episode lengths back in,
``center_plan()`` says how any evaluator measures the noise-free centre, ``batch_runner()``
gives the slot engine, and ``state_dict()`` checkpoints it all.

Its options are declared once, by :class:`~asktell.gym.options.GymTaskConfig`. See
``docs/gym.md`` for the guide.

(Past 400 lines for one reason: construction, the plan, the serial rollout, the hooks and
their state are one picklable object's; the options, the plan type and the batch engine
already live in modules of their own.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from asktell.config_base import declare_options
from asktell.distribution import Distribution
from asktell.errors import CheckpointError, ConfigError
from asktell.protocol import Evaluation, TaskHooks, TaskResult
from asktell.registry import TASKS
from asktell.stats import RunningStat

from .envs import combine_episodes, make_env, make_vector_env, nonfinite_error
from .normalizer import ObsNormalizer
from .options import STEP_CAPS, GymTaskConfig
from .plan import CENTER_EPISODES, RolloutPlan
from .policies import ActionSpec, LinearPolicy, MLPPolicy, ObservationSpec
from .seeding import center_episode_seeds, episode_seeds, obs_record_mask

__all__ = ["GymTask", "GymTaskConfig", "STEP_CAPS", "combine_episodes", "nonfinite_error"]


@TASKS.register("gym")
@declare_options(GymTaskConfig)
class GymTask(TaskHooks):
    """A Gymnasium environment as an ES task: parameters are a policy's weights.

    ``env_id`` is a registered id (``"CartPole-v1"``, ``"HalfCheetah-v5"``) or
    ``"module:EnvId"`` (gymnasium imports ``module`` first, in every process); every other
    option is a keyword (listed below, the same names as in a run file). ``policy`` may also
    be a policy object with the interface of :class:`~asktell.gym.policies.MLPPolicy`
    (``hidden_sizes``, ``activation`` and ``bias`` then do not apply).

    Example:
        >>> task = GymTask("CartPole-v1", policy="linear")
        >>> task.num_params
        10
    """

    def __init__(self, env_id: str, **options: Any):
        policy = options.get("policy", "mlp")
        custom = None if isinstance(policy, str) else options.pop("policy")
        cfg = GymTaskConfig.validate_options("GymTask", {"env_id": env_id, **options})
        self._setup(cfg, custom)

    def _setup(self, cfg: GymTaskConfig, custom_policy: Any = None) -> None:
        """Build the task from validated options (subclasses validate their own first)."""
        self.env_id = cfg.env_id
        self.env_kwargs = dict(cfg.env_kwargs)
        for name in (
            "episodes", "step_cap", "max_episode_steps", "adaptive_cap_factor",
            "adaptive_cap_min", "obs_norm", "obs_clip", "obs_std_floor", "obs_stats_fraction",
            "mirrored_episode_seeds", "seed", "action_mode", "action_bins",
        ):
            setattr(self, name, getattr(cfg, name))
        env = self.make_env()  # validates the id and kwargs, and tells us the spaces
        self.obs_spec = ObservationSpec.from_space(env.observation_space, self.env_id)
        self.action_spec = ActionSpec.from_space(
            env.action_space, cfg.action_mode, cfg.action_bins, self.env_id
        )
        self.time_limit = env.spec.max_episode_steps if env.spec is not None else None
        self._env = env
        if self.time_limit is None:
            raise ConfigError(
                f"GymTask: {self.env_id} has no time limit, so an episode might never end; set "
                "step_cap='fixed' (or 'adaptive') with max_episode_steps"
            )
        self.policy = self._make_policy(cfg, custom_policy)
        self.num_params = int(self.policy.num_params)
        self._obs_stat = self.new_obs_stat()
        self._cap: int | None = self.time_limit if self.step_cap == "adaptive" else None

    # ------------------------------------------------------------------ construction
    def _make_policy(self, cfg: GymTaskConfig, custom: Any):
        if custom is None:
            dim, dtype = self.obs_spec.dim, cfg.policy_dtype
            if cfg.policy == "linear":
                return LinearPolicy(dim, self.action_spec, bias=cfg.bias, dtype=dtype)
            sizes = (64, 64) if cfg.hidden_sizes is None else tuple(cfg.hidden_sizes)
            return MLPPolicy(dim, self.action_spec, sizes, cfg.activation, cfg.bias, dtype)
        for attr in ("num_params", "allocate", "load", "act", "obs_dim"):
            if not hasattr(custom, attr):
                raise ConfigError(
                    f"GymTask 'policy' object must provide {attr!r} (see MLPPolicy); got "
                    f"{type(custom).__name__}"
                )
        if custom.obs_dim != self.obs_spec.dim:
            raise ConfigError(
                f"GymTask 'policy' expects obs_dim={custom.obs_dim} but {self.env_id} "
                f"observations have {self.obs_spec.dim} values"
            )
        return custom

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

    def plan(self, distribution: Distribution | None, seeds: np.ndarray) -> RolloutPlan:
        """The rollouts of candidates ``seeds`` under ``distribution`` (see
        :mod:`asktell.gym.plan`): what :meth:`evaluate` and the slot engine both run.

        Episode seeds come from the run seed, the generation and each candidate's seed (for
        a centre plan: from the centre's own stream and the seed, one episode each);
        normalisation and the step cap from ``distribution.context``.
        """
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        generation = distribution.generation if distribution is not None else 0
        context = distribution.context if distribution is not None else None
        normalize = self.normalizer(context)
        if context and context.get(CENTER_EPISODES):
            ep_seeds = center_episode_seeds(self.seed, generation, 0, which=seeds)
            return RolloutPlan(
                generation, ep_seeds.reshape(-1, 1), np.zeros(seeds.size, dtype=bool), None,
                normalize, seeded=True, run_seed=self.seed,
            )
        cap = self.context_cap(context)
        return RolloutPlan(
            generation,
            self.episode_seeds(generation, seeds),
            self.record_mask(generation, seeds),
            None if cap is None else max(cap, 1),  # a cap of 0 still takes the first step
            normalize,
            run_seed=self.seed,
        )

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
        """Run each candidate's planned episodes (:meth:`plan`) in this process's environment.

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
        plan = self.plan(distribution, seeds)
        E = plan.episodes
        stat = self.new_obs_stat() if plan.recording else None
        returns = np.empty(n)
        steps = np.zeros(n, dtype=np.int64)
        truncated = np.zeros(n, dtype=np.int64)
        weights = self.policy.allocate(1)
        env = self._get_env()
        try:
            for i in range(n):
                self.policy.load(weights, slice(0, 1), params[i : i + 1])
                ep_returns = np.empty(E)
                for e in range(E):
                    rec = [] if plan.record[i] else None
                    ep_returns[e], t, trunc = self.rollout(
                        env, weights, plan.normalize, plan.cap, plan.episode_seeds[i, e], e, rec
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
        episodes = np.full(n, E, dtype=np.int64)
        return TaskResult(
            returns, steps, obs_stats=stat, episodes=episodes, truncated=truncated
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

    def center_plan(
        self, distribution: Distribution, episodes: int
    ) -> tuple[Distribution, np.ndarray]:
        """The centre's evaluation as a plan any evaluator runs: the distribution with sigma
        0 and a context that says "centre episodes" (see :mod:`asktell.gym.plan`), and the
        seeds ``0 .. episodes - 1``, one episode each (full length: no adaptive cap).

        Normalises with ``distribution.context`` when it carries statistics, otherwise with
        this task's current ones (the runner's process holds them). Episode seeds come from
        a stream of their own, so the centre is not tested on its candidates' episodes.
        """
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ConfigError(f"GymTask 'episodes' must be an int >= 1; got {episodes!r}")
        context = distribution.context
        if not context or context.get("obs_mean") is None:
            context = self.context()
        context = {k: v for k, v in context.items() if k != "step_cap"}
        context[CENTER_EPISODES] = True
        center = distribution.replace(sigma=0.0, factor=None, context=context)
        return center, np.arange(int(episodes), dtype=np.int64)

    def evaluate_center(self, distribution: Distribution, episodes: int = 1) -> np.ndarray:
        """Returns of the noise-free centre, one per episode, in this process: the
        :meth:`center_plan` run by :meth:`evaluate` (what every evaluator runs)."""
        center, seeds = self.center_plan(distribution, episodes)
        return self.evaluate(center.decode(seeds), seeds, center).returns

    def batch_runner(self, num_envs: int | None, mode: str, worker: int):
        """The slot engine (:class:`asktell.gym.slots.SlotEngine`) that
        :class:`~asktell.evaluators.VectorEnvEvaluator` runs in each of its processes."""
        from .slots import SlotEngine

        return SlotEngine(self, num_envs, mode, worker)

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
        """Restore :meth:`state_dict`, all or nothing: every entry is checked (type, dtype,
        shape for this env's observations, range) before anything is assigned, and a
        :class:`CheckpointError` names the key, the rule and the value."""
        from asktell.state_schema import Entry, check_state

        def whole(value: Any, sizes: Any) -> str | None:
            return None if float(value) == int(value) else "not a whole number"

        def no_cap(value: Any, sizes: Any) -> str | None:
            return None if value == -1 else "-1: this task has no adaptive cap"

        adaptive = self.step_cap == "adaptive"
        schema = {
            "obs_count": Entry("float", low=0, check=whole),
            "obs_sum": Entry("array", shape=("d",)),
            "obs_sumsq": Entry("array", shape=("d",), low=0.0),
            # An adaptive cap is a positive step count; otherwise there is none (-1).
            "step_cap": Entry("int", low=1) if adaptive else Entry("int", low=-1, check=no_cap),
        }
        sizes = {"d": self.obs_spec.dim}
        for key in ("obs_sum_exact", "obs_sumsq_exact"):
            if key in state:  # checkpoints before exact statistics lack them
                value = state[key]
                sizes[key] = value.shape[1] if isinstance(value, np.ndarray) and value.ndim == 2 else 1
                schema[key] = Entry("array", shape=("d", key))
        check_state(f"GymTask ({self.env_id})", state, schema, sizes, exact=False)
        stat = {"count": float(state["obs_count"]), "sum": state["obs_sum"], "sumsq": state["obs_sumsq"]}
        stat.update({key[4:]: state[key] for key in ("obs_sum_exact", "obs_sumsq_exact") if key in state})
        try:
            self._obs_stat.load_state_dict(stat)  # checks its own sums, assigns all at once
        except ValueError as exc:
            raise CheckpointError(f"GymTask ({self.env_id}) state refused, nothing was loaded: {exc}") from None
        cap = int(state["step_cap"])
        self._cap = None if cap < 0 else cap

