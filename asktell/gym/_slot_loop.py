"""The stepping loop of the slot engine, and its three reset disciplines.

:class:`SlotLoop` runs one batch's units through one vector environment: every step is one
batched policy forward for the busy slots and one step of the environment. The loop's
fast path (nothing ended, nothing non-finite, no cap reached) stays inline in
:meth:`SlotLoop.loop`; everything that happens when an episode ends is in methods, which
each discipline completes (see :mod:`asktell.gym.slots` for why each exists):

* :class:`SeededSlots` (``Disabled``): a finished slot is reset with the next unit's own
  episode seed; in ``sync`` mode the busy sub-environments are stepped directly.
* :class:`NextStepSlots` (``NextStep``): the step after an episode ends is the reset step.
* :class:`SameStepSlots` (``SameStep``): the observation returned with ``done`` already
  starts the next episode.
"""

from __future__ import annotations

import math

import numpy as np

from ._stepping import RUNS_ONLY_PARAMS, row_writer, step_busy, strip_wrappers
from ._units import UnitQueue

__all__ = ["SlotLoop", "SeededSlots", "NextStepSlots", "SameStepSlots", "EnvCrashed", "loop_for"]

IDLE, ACTIVE, DRAIN, RESET_NEXT = 0, 1, 2, 3
_NO_INFO: dict = {}


class EnvCrashed(Exception):
    """The vector environment raised; the engine isolates the candidates in flight."""


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any env error: isolate the slots in flight
        raise EnvCrashed() from exc


class SlotLoop:
    """One batch (``queue``) through the engine's vector environment ``vec``."""

    seeded = False  # every unit is reset with its own episode seed

    def __init__(self, task, vec, num_envs: int, mode: str, worker: int, queue: UnitQueue):
        self.task, self.vec, self.S, self.mode, self.worker = task, vec, num_envs, mode, worker
        self.b = queue
        S = num_envs
        self.spec, self.policy = task.obs_spec, task.policy
        self.state = np.full(S, IDLE, dtype=np.int64)
        self.slot_c = np.full(S, -1, dtype=np.int64)
        self.slot_e = np.zeros(S, dtype=np.int64)
        self.ret = np.zeros(S)
        self.t = np.zeros(S, dtype=np.int64)
        self.weights = self.policy.allocate(S)
        self.neutral = task.action_spec.neutral()
        self.no_failures = np.zeros(S, dtype=bool)
        # The busy slots' weight rows, gathered once per set of busy slots (it changes only
        # when an episode ends or a slot is loaded): for a large network (Atari: 680k
        # parameters per candidate) gathering them every step cost more than the policy.
        self.busy_rows: dict[bytes, list] = {}
        self.runs_only = getattr(self.policy, "num_params", 0) >= RUNS_ONLY_PARAMS
        self.cap = queue.plan.cap
        self.stop = math.inf if self.cap is None else self.cap  # the loop's own cap

    # ------------------------------------------------------------------ the discipline
    def start(self) -> np.ndarray:
        """Reset the environment, give every slot a unit; the first observations."""
        raise NotImplementedError

    def stepper(self, X: np.ndarray):
        """``step(actions) -> (X, reward, terminated, truncated, info, any_done)``."""
        vec, to_array, S = self.vec, self.spec.to_array, self.S

        def step(actions):
            obs, reward, terminated, truncated, info = vec.step(actions)
            reward = np.asarray(reward, dtype=np.float64).reshape(S)
            any_done = bool(np.any(terminated)) or bool(np.any(truncated))
            return to_array(obs, S), reward, terminated, truncated, info, any_done

        return step

    def finished(self) -> bool:
        """No slot is busy: is the batch done?"""
        return True

    def refill(self, X, ending, done, prev_drain, prev_reset_next) -> None:
        """After episodes ended: give slots their next units."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared pieces
    def run(self) -> None:
        try:
            self.loop(self.start())
        except EnvCrashed:
            for s in np.flatnonzero(self.state == ACTIVE).tolist():
                self.b.isolate(int(self.slot_c[s]))
            raise

    def assign(self, s: int) -> bool:
        unit = self.b.next_unit()
        if unit is None:
            self.state[s], self.slot_c[s] = IDLE, -1
            return False
        c, e = unit
        self.state[s], self.slot_c[s], self.slot_e[s], self.ret[s], self.t[s] = ACTIVE, c, e, 0.0, 0
        self.policy.load(self.weights, slice(s, s + 1), self.b.params[c : c + 1])
        self.busy_rows.clear()  # the busy slots' weights changed
        if self.b.record[c]:
            self.b.recorded[(c, e)] = []
        return True

    def check_start(self, X: np.ndarray, slots) -> list[int]:
        """Fail units whose first observation is non-finite; return their slots."""
        bad = []
        for s in slots:
            if self.state[s] == ACTIVE and not np.isfinite(X[s]).all():
                self.b.fail(int(self.slot_c[s]), "observation", X[s], 0, int(self.slot_e[s]))
                bad.append(s)
        return bad

    def refresh(self) -> tuple[np.ndarray, bool, int]:
        """The busy slots after a change: mask, all busy, the longest episode so far."""
        active = self.state == ACTIVE
        tmax = int(self.t[active].max()) if active.any() else 0
        return active, bool(active.all()), tmax

    def loop(self, X: np.ndarray) -> None:
        """Step until no unit is in flight. The fast path is inline: nothing here costs a
        Python call per step beyond the policy and the environment (and, in a batch's tail,
        :meth:`act_busy`)."""
        b, t, ret, weights = self.b, self.t, self.ret, self.weights
        act, normalize = self.policy.act, b.plan.normalize
        step, stop, seeded = self.stepper(X), self.stop, self.seeded
        obs_finite = self.spec.always_finite
        record, recorded, slot_c, slot_e = b.record_slot, b.recorded, self.slot_c, self.slot_e
        active, all_active, tmax = self.refresh()
        while True:
            if not all_active and not active.any() and self.finished():
                break
            if b.recording:
                for s in np.flatnonzero(active & record(slot_c)).tolist():
                    recorded[(int(slot_c[s]), int(slot_e[s]))].append(X[s].copy())
            if all_active:
                actions = act(weights, normalize(X))
            else:
                actions = self.act_busy(X, active)
            try:
                X, reward, terminated, truncated, info, any_done = step(actions)
            except Exception as exc:  # noqa: BLE001 - any env error: isolate the slots
                raise EnvCrashed() from exc
            if all_active:
                t += 1
                ret += reward
            else:
                t[active] += 1
                ret[active] += reward[active]
            # Fast path: nothing ended, nothing non-finite, nothing draining.
            finite = np.isfinite(np.sum(reward) + (0.0 if obs_finite else np.sum(X)))
            tmax += 1
            if (
                finite
                and not any_done
                and tmax < stop
                and not b.num_failed
                and (seeded or all_active)
            ):
                continue
            self.end_step(X, reward, terminated, truncated, info, any_done, finite, active)
            active, all_active, tmax = self.refresh()

    def act_busy(self, X: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Actions when some slots are idle: only the busy slots' rows go through the policy
        (a row's arithmetic is the same in any batch); idle slots get a neutral action."""
        policy, weights, neutral, normalize = self.policy, self.weights, self.neutral, self.b.plan.normalize
        busy = np.flatnonzero(active)
        actions = np.empty((self.S, *neutral.shape), dtype=neutral.dtype)
        actions[:] = neutral
        if busy.size and self.runs_only:
            # A large network: one forward per run of consecutive busy slots, on views of
            # the weights (a gather would copy megabytes per slot).
            cuts = np.flatnonzero(np.diff(busy) != 1) + 1
            for run in np.split(busy, cuts):
                a, z = int(run[0]), int(run[-1]) + 1
                rows = [None if w is None else w[a:z] for w in weights]
                actions[a:z] = policy.act(rows, normalize(X[a:z]))
        elif busy.size:
            key = busy.tobytes()
            rows = self.busy_rows.get(key)
            if rows is None:
                self.busy_rows.clear()
                rows = self.busy_rows[key] = [None if w is None else w[busy] for w in weights]
            actions[busy] = policy.act(rows, normalize(X[busy]))
        return actions

    def final_obs(self, X, done, info, any_done) -> np.ndarray:
        """The observations that end this step's episodes."""
        return X

    def truncation(self, truncated: np.ndarray, active: np.ndarray) -> np.ndarray:
        """The environments' truncation flags (with any time limit the loop applies)."""
        return truncated

    def end_step(self, X, reward, terminated, truncated, info, any_done, finite, active) -> None:
        """The slow path: close the episodes that ended (or failed), then refill slots."""
        S, b, state, t = self.S, self.b, self.state, self.t
        terminated = np.asarray(terminated, dtype=bool).reshape(S)
        truncated = self.truncation(np.asarray(truncated, dtype=bool).reshape(S), active)
        done = terminated | truncated
        final_X = self.final_obs(X, done, info, any_done)
        ending = active & done
        if self.cap is not None:
            ending |= active & (t >= self.cap)
        no = self.no_failures
        abandoned = active & b.failed_slot(self.slot_c) if b.num_failed else no
        bad_reward = bad_obs = no
        if not finite:
            bad_reward = active & ~np.isfinite(reward)
            bad_obs = active & ~np.isfinite(final_X).all(axis=1)
        ending |= abandoned | bad_reward | bad_obs
        prev_drain, prev_reset_next = state == DRAIN, state == RESET_NEXT
        for s in np.flatnonzero(ending).tolist():
            c, e = int(self.slot_c[s]), int(self.slot_e[s])
            if abandoned[s]:
                pass
            elif bad_reward[s]:
                b.fail(c, "reward", float(reward[s]), int(t[s]), e)
            elif bad_obs[s]:
                b.fail(c, "observation", final_X[s], int(t[s]), e)
            else:
                cut = not done[s] or bool(truncated[s] and not terminated[s])
                b.finish(c, e, self.ret[s], int(t[s]), cut)
            state[s] = IDLE
        self.refill(X, ending, done, prev_drain, prev_reset_next)


class SeededSlots(SlotLoop):
    """Autoreset ``Disabled``: each unit starts from a reset with its own episode seed, so
    every episode is exactly the serial evaluator's.

    In ``sync`` mode the ``SyncVectorEnv``'s sub-environments are stepped directly, one
    ``env.step`` each as its own ``step`` would, but only the busy ones (idle slots are not
    simulated: with episodes of varied length that is up to half the work) and without the
    vector env's per-step batching work (observation concatenation, flag arrays, info
    merging). Resets still go through the vector env (``reset_mask``), which also clears
    its flags.
    """

    seeded = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        sub_envs = getattr(self.vec, "envs", None) if self.mode == "sync" else None
        self.direct = sub_envs is not None
        if self.direct:
            self.sub_envs, self.time_limit = strip_wrappers(sub_envs)
            if self.time_limit is not None:
                self.stop = min(self.stop, self.time_limit)
            S = self.S
            self.step_reward = np.zeros(S)
            self.step_terminated = np.zeros(S, dtype=bool)
            self.step_truncated = np.zeros(S, dtype=bool)
            self.busy_list: list[int] = []

    def start(self) -> np.ndarray:
        S = self.S
        for s in range(S):
            self.assign(s)
        seeds = [
            self.b.unit_seed(self.slot_c[s], self.slot_e[s]) if self.state[s] == ACTIVE else 0
            for s in range(S)
        ]
        obs, _ = _call(self.vec.reset, seed=seeds)
        X = self.spec.to_array(obs, S)
        need = np.zeros(S, dtype=bool)
        need[self.check_start(X, range(S))] = True
        self.reset_slots(X, need)
        return X

    def reset_slots(self, X: np.ndarray, need: np.ndarray) -> None:
        """Give each slot in ``need`` its next unit (or idle it) and reset it with the
        unit's episode seed; repeat for units failing on their first observation."""
        S = self.S
        while need.any():
            seeds: list = [None] * S
            for s in np.flatnonzero(need).tolist():
                seeds[s] = self.b.unit_seed(self.slot_c[s], self.slot_e[s]) if self.assign(s) else 0
            obs, _ = _call(self.vec.reset, seed=seeds, options={"reset_mask": need.copy()})
            X[need] = self.spec.to_array(obs, S)[need]
            failed = self.check_start(X, np.flatnonzero(need).tolist())
            need[:] = False
            need[failed] = True

    def stepper(self, X: np.ndarray):
        if not self.direct:
            return super().stepper(X)
        envs, write, busy = self.sub_envs, row_writer(self.spec), self.busy_list
        reward, terminated, truncated = self.step_reward, self.step_terminated, self.step_truncated

        def step(actions):
            # In place: idle rows keep their last observation, and nothing holds on to the
            # previous step's rows (recordings copy them). Rewards of idle slots are never
            # read; the flags are cleared after each episode end.
            any_done = step_busy(envs, write, actions, busy, X, reward, terminated, truncated)
            return X, reward, terminated, truncated, _NO_INFO, any_done

        return step

    def truncation(self, truncated: np.ndarray, active: np.ndarray) -> np.ndarray:
        if self.direct and self.time_limit is not None:
            # TimeLimit, stripped: truncated once an episode has had max_episode_steps steps.
            truncated |= active & (self.t >= self.time_limit)
        return truncated

    def refill(self, X, ending, done, prev_drain, prev_reset_next) -> None:
        # Slots whose episode ended, and idle slots whose env ended on its own, are reset
        # (a vector env without autoreset refuses to step them).
        self.reset_slots(X, (self.state == IDLE) & (ending | done))

    def refresh(self) -> tuple[np.ndarray, bool, int]:
        active, all_active, tmax = super().refresh()
        if self.direct:
            self.step_terminated[:] = False
            self.step_truncated[:] = False
            self.step_reward[~active] = 0.0  # a stale non-finite reward would linger
            self.busy_list[:] = np.flatnonzero(active).tolist()
        return active, all_active, tmax


class NextStepSlots(SlotLoop):
    """Autoreset ``NextStep`` (e.g. ``CartPoleVectorEnv``): the step after an episode ends
    is the reset step; its reward is dropped and its observation starts the slot's next
    unit. The environment resets itself from its own generator, so the whole environment
    is reset at the start of a batch from ``(run seed, generation, worker)``; a slot whose
    episode we ended (cap, failure) *drains* until the environment ends it."""

    def start(self) -> np.ndarray:
        obs, _ = _call(self.vec.reset, seed=self.b.plan.vector_reset_seed(self.worker))
        X = self.spec.to_array(obs, self.S)
        for s in range(self.S):
            self.assign(s)
        for s in self.check_start(X, range(self.S)):
            self.state[s] = DRAIN  # the env has not ended this episode; wait for it
        return X

    def finished(self) -> bool:
        # Draining slots may still free up for queued units.
        return not self.b.has_work() or not (self.state != IDLE).any()

    def fresh_slots(self, ended_by_env, drained, prev_reset_next) -> np.ndarray:
        """The slots whose observation now starts a new episode."""
        # The next step is the env's reset step (reward dropped, action ignored).
        self.state[ended_by_env | drained] = RESET_NEXT
        return prev_reset_next

    def refill(self, X, ending, done, prev_drain, prev_reset_next) -> None:
        state = self.state
        ended_by_env = ending & done
        state[ending & ~done] = DRAIN  # ended by us: outputs ignored until the env ends it
        fresh = np.flatnonzero(self.fresh_slots(ended_by_env, prev_drain & done, prev_reset_next))
        fresh = fresh.tolist()
        for s in fresh:
            self.assign(s)
        for s in self.check_start(X, fresh):
            state[s] = DRAIN


class SameStepSlots(NextStepSlots):
    """Autoreset ``SameStep``: the observation returned with ``done`` already starts the
    next episode (the one that ended it is in ``info["final_obs"]``)."""

    def fresh_slots(self, ended_by_env, drained, prev_reset_next) -> np.ndarray:
        return ended_by_env | drained

    def final_obs(self, X, done, info, any_done) -> np.ndarray:
        if not (any_done and "final_obs" in info):
            return X
        final_X = X.copy()
        for s in np.flatnonzero(done & np.asarray(info.get("_final_obs", done))):
            final_X[s] = self.spec.to_array(info["final_obs"][s], 1)[0]
        return final_X


_LOOPS = {"Disabled": SeededSlots, "NextStep": NextStepSlots, "SameStep": SameStepSlots}


def loop_for(autoreset: str) -> type[SlotLoop]:
    """The discipline of a vector environment's autoreset mode."""
    return _LOOPS[autoreset]
