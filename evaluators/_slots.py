"""The slot engine behind :class:`~asktell.evaluators.VectorEnvEvaluator`.

One engine owns one ``gymnasium.vector`` environment of ``num_envs`` slots and runs a batch
of candidates through it. The work is a queue of *units*, one per (candidate, episode), in
candidate order. Every slot runs one unit at a time; when its episode ends the slot takes
the next unit. Each step is one batched policy forward for all slots (idle slots get zero
observations and their actions are ignored) and one ``step`` of the vector environment.

Autoreset is handled explicitly, per mode the vector environment declares, so that no
reward or observation of one episode is ever credited to the next:

* ``Disabled`` (how ``sync`` and ``async`` environments are built here): a finished slot is
  reset with ``reset_mask`` and *the next unit's own episode seed*, so every episode starts
  exactly as in :meth:`GymTask.evaluate`, and returns equal the serial evaluator's bit for
  bit (the policy's per-row arithmetic does not depend on the batch).
* ``NextStep`` (e.g. ``CartPoleVectorEnv``): the step after an episode ends is the reset
  step; its reward is dropped and its observation starts the slot's next unit.
* ``SameStep``: the observation returned with ``done`` already starts the next episode.

In ``sync`` mode the ``SyncVectorEnv``'s sub-environments are stepped directly, one
``env.step`` each as the vector env would, but only the busy ones: a vector step would also
simulate idle slots (with episodes of varied length, Hopper or adaptive caps, up to half of
the simulation) and do its own per-step batching work (a few percent of a HalfCheetah step).
Identical MuJoCo sub-environments share one compiled model (:func:`share_mujoco_model`).

Vector environments in the last two modes reset themselves from their own generator, so
episode seeds cannot be applied per unit: the whole environment is reset at the start of a
batch from ``(run seed, generation, worker)``. When our step cap ends an episode that the
environment has not ended, such a slot *drains* (its outputs are ignored) until the
environment reports the end.

Failures: a non-finite observation or reward fails the candidate on the spot (the same
error text as the serial rollout). An exception from the vector environment marks every
candidate with a unit in flight for *isolation*: the environment is closed and rebuilt, the
rest of the queue goes on, and the isolated candidates are re-evaluated one by one in a
single environment (:func:`evaluate_chunk`), which finds the one that raised and gives the
others their exact serial results.
"""

from __future__ import annotations

import math

import numpy as np

from asktell.distribution import Distribution

from ._common import ChunkResult, _describe, evaluate_chunk

__all__ = ["SlotEngine"]

IDLE, ACTIVE, DRAIN, RESET_NEXT = 0, 1, 2, 3
PENDING, FAILED, ISOLATED = 0, 1, 2


def _autoreset_mode(vec) -> str:
    mode = vec.metadata.get("autoreset_mode")
    value = getattr(mode, "value", mode)
    # Gymnasium assumes NextStep for vector envs that do not declare a mode.
    return str(value) if value is not None else "NextStep"


class _EnvCrashed(Exception):
    """The vector environment raised; the engine isolates the candidates in flight."""


class SlotEngine:
    """Runs batches of candidates of a :class:`~asktell.gym.GymTask` through one vector env.

    Args:
        task: the Gym task (provides policy, spaces, seeds and the vector environment).
        num_envs: slots of the vector environment.
        mode: ``"sync"``, ``"async"`` or ``"vector_entry_point"``.
        worker: index of the process running this engine (seeds whole-env resets).
    """

    def __init__(self, task, num_envs: int, mode: str = "sync", worker: int = 0):
        self.task = task
        self.num_envs = int(num_envs)
        self.mode = mode
        self.worker = int(worker)
        self.vec = None
        self.autoreset = None
        self.rebuilds = 0

    # ------------------------------------------------------------------ environment
    def _ensure_env(self) -> None:
        if self.vec is None:
            self.vec = self.task.make_vector_env(self.num_envs, self.mode)
            self.autoreset = _autoreset_mode(self.vec)
            if self.mode == "sync":
                share_mujoco_model(getattr(self.vec, "envs", []))

    def _discard_env(self) -> None:
        vec, self.vec = self.vec, None
        if vec is None:
            return
        try:
            if self.mode == "async":
                vec.close(terminate=True)
            else:
                vec.close()
        except Exception:  # noqa: BLE001 - the env is broken; it is being replaced
            pass

    def close(self) -> None:
        self._discard_env()

    # ------------------------------------------------------------------ one batch
    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int = 0) -> ChunkResult:
        """Evaluate ``seeds`` (all episodes of each); results in seed order."""
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        n = seeds.size
        out = ChunkResult(n)
        if n == 0:
            return out
        batch = _Batch(self.task, distribution, seeds)
        while True:
            self._ensure_env()
            try:
                self._run_slots(batch)
                break
            except _EnvCrashed:
                self.rebuilds += 1
                self._discard_env()
                if not batch.has_work():
                    break
        self._finish(batch, distribution, retries, out)
        return out

    def _finish(self, batch: _Batch, distribution, retries: int, out: ChunkResult) -> None:
        task = self.task
        n, E = batch.n, task.episodes
        out.episodes = np.zeros(n, dtype=np.int64)
        out.truncated = np.zeros(n, dtype=np.int64)
        stat = None
        for c in range(n):
            if batch.status[c] == FAILED:
                out.failures.append((c, batch.errors[c]))
                continue
            if batch.status[c] == ISOLATED:
                continue
            out.returns[c] = _combine(batch.ep_ret[c])
            out.steps[c] = int(batch.ep_steps[c].sum())
            out.truncated[c] = int(batch.ep_trunc[c].sum())
            out.episodes[c] = E
            if batch.record[c]:
                for e in range(E):
                    rows = batch.recorded.get((c, e))
                    if rows:
                        stat = stat if stat is not None else task.new_obs_stat()
                        stat.push(np.asarray(rows))
        isolated = np.flatnonzero(batch.status == ISOLATED)
        if isolated.size:
            # One environment, one candidate at a time: exactly what the serial evaluator
            # does, so the candidate that raised is found and the others get their returns.
            part = evaluate_chunk(task, distribution, batch.seeds[isolated], retries)
            for j, c in enumerate(isolated.tolist()):
                out.returns[c] = part.returns[j]
                out.steps[c] = part.steps[j]
                if part.episodes is not None:
                    out.episodes[c] = part.episodes[j]
                if part.truncated is not None:
                    out.truncated[c] = part.truncated[j]
            for j, error in part.failures:
                out.failures.append((int(isolated[j]), error))
            if part.obs_stats is not None:
                if stat is None:
                    stat = part.obs_stats
                else:
                    stat.merge(part.obs_stats)
            out.failures.sort()
        out.obs_stats = stat

    # ------------------------------------------------------------------ the slot loop
    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any env error: isolate the slots in flight
            raise _EnvCrashed() from exc

    def _run_slots(self, b: _Batch) -> None:
        task, vec, S = self.task, self.vec, self.num_envs
        spec, policy = task.obs_spec, task.policy
        seeded = self.autoreset == "Disabled"
        same_step = self.autoreset == "SameStep"
        state = np.full(S, IDLE, dtype=np.int64)
        slot_c = np.full(S, -1, dtype=np.int64)
        slot_e = np.zeros(S, dtype=np.int64)
        ret = np.zeros(S)
        t = np.zeros(S, dtype=np.int64)
        weights = policy.allocate(S)
        limit = b.cap
        normalize = b.normalize
        neutral = task.action_spec.neutral()
        obs_finite = spec.always_finite
        no_failures = np.zeros(S, dtype=bool)
        # A SyncVectorEnv without autoreset is stepped through its sub-environments, one
        # ``env.step`` each as its own ``step`` would, but only the busy ones (idle slots
        # are not simulated: with episodes of varied length that is up to half the work)
        # and without the vector env's per-step batching work (observation concatenation,
        # flag arrays, info merging: a few us per sub-env step on HalfCheetah). Resets
        # still go through the vector env (``reset_mask``), which also clears its flags.
        sub_envs = getattr(vec, "envs", None) if seeded and self.mode == "sync" else None
        direct = sub_envs is not None
        if direct:
            sub_envs, time_limit = _strip_wrappers(sub_envs)
            obs_into = _row_writer(spec)
            step_reward = np.zeros(S)
            step_terminated = np.zeros(S, dtype=bool)
            step_truncated = np.zeros(S, dtype=bool)

        # The busy slots' weight rows, gathered once per set of busy slots (it changes only
        # when an episode ends or a slot is loaded): for a large network (Atari: 680k
        # parameters per candidate) gathering them every step cost more than the policy.
        busy_rows: dict[bytes, list] = {}
        runs_only = getattr(policy, "num_params", 0) >= _RUNS_ONLY_PARAMS

        def crash_isolate():
            for s in np.flatnonzero(state == ACTIVE).tolist():
                b.isolate(int(slot_c[s]))

        def assign(s: int) -> bool:
            unit = b.next_unit()
            if unit is None:
                state[s], slot_c[s] = IDLE, -1
                return False
            c, e = unit
            state[s], slot_c[s], slot_e[s], ret[s], t[s] = ACTIVE, c, e, 0.0, 0
            policy.load(weights, slice(s, s + 1), b.params[c : c + 1])
            busy_rows.clear()  # the busy slots' weights changed
            if b.record[c]:
                b.recorded[(c, e)] = []
            return True

        def check_start(X: np.ndarray, slots) -> list[int]:
            """Fail units whose first observation is non-finite; return their slots."""
            bad = []
            for s in slots:
                if state[s] == ACTIVE and not np.isfinite(X[s]).all():
                    c, e = int(slot_c[s]), int(slot_e[s])
                    b.fail(c, task.env_id, "observation", X[s], 0, e)
                    bad.append(s)
            return bad

        def reset_slots(X: np.ndarray, need: np.ndarray) -> None:
            """Seeded envs: give each slot in ``need`` its next unit (or idle it) and reset
            it with the unit's episode seed; repeat for units failing on their first obs."""
            while need.any():
                seeds_list: list = [None] * S
                for s in np.flatnonzero(need).tolist():
                    seeds_list[s] = b.unit_seed(slot_c[s], slot_e[s]) if assign(s) else 0
                obs, _ = self._call(vec.reset, seed=seeds_list, options={"reset_mask": need.copy()})
                X[need] = spec.to_array(obs, S)[need]
                failed = check_start(X, np.flatnonzero(need).tolist())
                need[:] = False
                need[failed] = True

        try:
            # ---- start: every slot gets a unit; the environment starts fresh
            if seeded:
                for s in range(S):
                    assign(s)
                seeds_list = [b.unit_seed(slot_c[s], slot_e[s]) if state[s] == ACTIVE else 0 for s in range(S)]
                obs, _ = self._call(vec.reset, seed=seeds_list)
                X = spec.to_array(obs, S)
                need = np.zeros(S, dtype=bool)
                need[check_start(X, range(S))] = True
                reset_slots(X, need)
            else:
                from asktell.gym.seeding import vector_reset_seed

                seed = vector_reset_seed(task.seed, b.generation, self.worker)
                obs, _ = self._call(vec.reset, seed=seed)
                X = spec.to_array(obs, S)
                for s in range(S):
                    assign(s)
                for s in check_start(X, range(S)):
                    state[s] = DRAIN  # the env has not ended this episode; wait for it

            # ---- step until no unit is in flight
            active = state == ACTIVE
            all_active = bool(active.all())
            if direct:
                # Between episode ends the busy slots and their step counts only advance:
                # kept as a list and a scalar, the fast path needs no array work for them.
                busy_list = np.flatnonzero(active).tolist()
                stop = min(math.inf if limit is None else limit,
                           math.inf if time_limit is None else time_limit)
                tmax = int(t[active].max()) if busy_list else 0
            while True:
                if not all_active and not active.any():
                    # Self-resetting envs: draining slots may still free up for queued units.
                    if seeded or not b.has_work() or not (state != IDLE).any():
                        break
                if b.recording:
                    for s in np.flatnonzero(active & b.record_slot(slot_c)).tolist():
                        b.recorded[(int(slot_c[s]), int(slot_e[s]))].append(X[s].copy())
                if all_active:
                    actions = policy.act(weights, normalize(X))
                else:
                    # Only the busy slots' rows go through the policy (a row's arithmetic is
                    # the same in any batch); idle slots get a neutral action.
                    busy = np.flatnonzero(active)
                    actions = np.empty((S, *neutral.shape), dtype=neutral.dtype)
                    actions[:] = neutral
                    if busy.size and runs_only:
                        # A large network: one forward per run of consecutive busy slots,
                        # on views of the weights (a gather would copy megabytes per slot).
                        cuts = np.flatnonzero(np.diff(busy) != 1) + 1
                        for run in np.split(busy, cuts):
                            a, z = int(run[0]), int(run[-1]) + 1
                            rows = [None if w is None else w[a:z] for w in weights]
                            actions[a:z] = policy.act(rows, normalize(X[a:z]))
                    elif busy.size:
                        key = busy.tobytes()
                        rows = busy_rows.get(key)
                        if rows is None:
                            busy_rows.clear()
                            rows = busy_rows[key] = [
                                None if w is None else w[busy] for w in weights
                            ]
                        actions[busy] = policy.act(rows, normalize(X[busy]))
                if direct:
                    # In place: idle rows keep their last observation, and nothing holds on
                    # to the previous step's rows (recordings copy them). Rewards of idle
                    # slots are never read; the flags are cleared after each episode end.
                    any_done = self._call(
                        step_busy, sub_envs, obs_into, actions, busy_list, X,
                        step_reward, step_terminated, step_truncated,
                    )
                    reward, terminated, truncated, info = (
                        step_reward, step_terminated, step_truncated, {}
                    )
                else:
                    obs, reward, terminated, truncated, info = self._call(vec.step, actions)
                    X = spec.to_array(obs, S)
                    reward = np.asarray(reward, dtype=np.float64).reshape(S)
                    any_done = bool(np.any(terminated)) or bool(np.any(truncated))
                if all_active:
                    t += 1
                    ret += reward
                else:
                    t[active] += 1
                    ret[active] += reward[active]
                # Fast path: nothing ended, nothing non-finite, nothing draining.
                finite = np.isfinite(np.sum(reward) + (0.0 if obs_finite else np.sum(X)))
                if direct:
                    tmax += 1
                    capped = tmax >= stop
                else:
                    capped = limit is not None and bool((t >= limit).any())
                if (
                    finite
                    and not any_done
                    and not capped
                    and not b.num_failed
                    and (seeded or all_active)
                ):
                    continue

                terminated = np.asarray(terminated, dtype=bool).reshape(S)
                truncated = np.asarray(truncated, dtype=bool).reshape(S)
                if direct and time_limit is not None:
                    # TimeLimit, stripped above: truncated once an episode has had
                    # ``max_episode_steps`` steps.
                    truncated |= active & (t >= time_limit)
                done = terminated | truncated
                final_X = X
                if same_step and any_done and "final_obs" in info:
                    # The observation returned with ``done`` already starts the next episode.
                    final_X = X.copy()
                    for s in np.flatnonzero(done & np.asarray(info.get("_final_obs", done))):
                        final_X[s] = spec.to_array(info["final_obs"][s], 1)[0]
                ending = active & done
                if capped and limit is not None:
                    ending |= active & (t >= limit)
                abandoned = active & b.failed_slot(slot_c) if b.num_failed else no_failures
                bad_reward = bad_obs = no_failures
                if not finite:
                    bad_reward = active & ~np.isfinite(reward)
                    bad_obs = active & ~np.isfinite(final_X).all(axis=1)
                ending |= abandoned | bad_reward | bad_obs
                prev_drain = state == DRAIN
                prev_reset_next = state == RESET_NEXT

                for s in np.flatnonzero(ending).tolist():
                    c, e = int(slot_c[s]), int(slot_e[s])
                    if abandoned[s]:
                        pass
                    elif bad_reward[s]:
                        b.fail(c, task.env_id, "reward", float(reward[s]), int(t[s]), e)
                    elif bad_obs[s]:
                        b.fail(c, task.env_id, "observation", final_X[s], int(t[s]), e)
                    else:
                        cut = not done[s] or bool(truncated[s] and not terminated[s])
                        b.finish(c, e, ret[s], int(t[s]), cut)
                    state[s] = IDLE

                if seeded:
                    # Slots whose episode ended, and idle slots whose env ended on its own,
                    # are reset (a vector env without autoreset refuses to step them).
                    reset_slots(X, (state == IDLE) & (ending | done))
                else:
                    # An episode we ended (cap, failure) that the env has not ended drains
                    # until the env ends it; its outputs are ignored.
                    ended_by_env = ending & done
                    state[ending & ~done] = DRAIN
                    drained = prev_drain & done
                    if same_step:
                        # The observation returned with ``done`` starts the next episode.
                        fresh = ended_by_env | drained
                    else:
                        # The next step is the env's reset step (reward dropped, action
                        # ignored); its observation starts the slot's next unit.
                        state[ended_by_env | drained] = RESET_NEXT
                        fresh = prev_reset_next
                    fresh_slots = np.flatnonzero(fresh).tolist()
                    for s in fresh_slots:
                        assign(s)
                    for s in check_start(X, fresh_slots):
                        state[s] = DRAIN
                active = state == ACTIVE
                all_active = bool(active.all())
                if direct:
                    step_terminated[:] = False
                    step_truncated[:] = False
                    step_reward[~active] = 0.0  # a stale non-finite reward would linger
                    busy_list = np.flatnonzero(active).tolist()
                    tmax = int(t[active].max()) if busy_list else 0
        except _EnvCrashed:
            crash_isolate()
            raise


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
_RUNS_ONLY_PARAMS = 100_000


def _strip_wrappers(envs):
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


def _row_writer(spec):
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


def _combine(returns: np.ndarray) -> float:
    from asktell.gym.task import combine_episodes

    return combine_episodes(returns)


class _Batch:
    """Bookkeeping of one batch: the unit queue and per-(candidate, episode) results."""

    def __init__(self, task, distribution: Distribution, seeds: np.ndarray):
        self.task = task
        self.seeds = seeds
        self.n = n = seeds.size
        self.generation = distribution.generation
        context = distribution.context
        self.normalize = task.normalizer(context)
        self.cap = task.context_cap(context)
        if self.cap is not None and self.cap < 1:
            self.cap = 1
        E = task.episodes
        self.params = distribution.decode(seeds)
        if self.params.shape[1] != task.num_params:
            from asktell.errors import ConfigError

            raise ConfigError(
                f"GymTask {task.env_id} expects num_params={task.num_params}; got candidates "
                f"with {self.params.shape[1]} parameters"
            )
        self.ep_seeds = task.episode_seeds(self.generation, seeds)
        self.record = task.record_mask(self.generation, seeds)
        self.recording = bool(self.record.any())
        self.num_failed = 0
        self.ep_ret = np.zeros((n, E))
        self.ep_steps = np.zeros((n, E), dtype=np.int64)
        self.ep_trunc = np.zeros((n, E), dtype=np.int64)
        self.status = np.full(n, PENDING, dtype=np.int64)
        self.errors: dict[int, str] = {}
        self.recorded: dict[tuple[int, int], list] = {}
        self._next = 0  # position in the (candidate, episode) queue
        self._units = n * E
        self._E = E

    def has_work(self) -> bool:
        self._skip()
        return self._next < self._units

    def _skip(self) -> None:
        E = self._E
        while self._next < self._units and self.status[self._next // E] != PENDING:
            self._next += 1

    def next_unit(self) -> tuple[int, int] | None:
        self._skip()
        if self._next >= self._units:
            return None
        c, e = divmod(self._next, self._E)
        self._next += 1
        return c, e

    def unit_seed(self, c: int, e: int) -> int:
        return int(self.ep_seeds[c, e])

    def record_slot(self, slot_c: np.ndarray) -> np.ndarray:
        return (slot_c >= 0) & self.record[np.maximum(slot_c, 0)]

    def failed_slot(self, slot_c: np.ndarray) -> np.ndarray:
        return (slot_c >= 0) & (self.status[np.maximum(slot_c, 0)] != PENDING)

    def finish(self, c: int, e: int, value: float, steps: int, truncated: bool) -> None:
        self.ep_ret[c, e] = value
        self.ep_steps[c, e] = steps
        self.ep_trunc[c, e] = int(truncated)

    def fail(self, c: int, env_id: str, what: str, value, step: int, e: int) -> None:
        from asktell.gym.task import nonfinite_error

        if self.status[c] != PENDING:
            return
        self.status[c] = FAILED
        self.num_failed += 1
        exc = nonfinite_error(env_id, what, value, step, e, int(self.ep_seeds[c, e]))
        self.errors[c] = _describe(exc)

    def isolate(self, c: int) -> None:
        # Its finished episodes and recorded observations are ignored; it is re-run alone.
        if self.status[c] == PENDING:
            self.status[c] = ISOLATED
