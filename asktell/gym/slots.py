"""The slot engine: a Gym task's batch runner (:meth:`GymTask.batch_runner
<asktell.gym.GymTask.batch_runner>`), what :class:`~asktell.evaluators.VectorEnvEvaluator`
runs in each of its processes.

One engine owns one ``gymnasium.vector`` environment of ``num_envs`` slots and runs a batch
of candidates through it, following the task's :class:`~asktell.gym.plan.RolloutPlan`. The
work is a queue of *units*, one per (candidate, episode), in candidate order. Every slot runs
one unit at a time; when its episode ends the slot takes the next unit. Each step is one
batched policy forward for all busy slots and one ``step`` of the vector environment.

Autoreset is handled explicitly, per mode the vector environment declares, so that no
reward or observation of one episode is ever credited to the next (one class each in
:mod:`asktell.gym._slot_loop`):

* ``Disabled`` (how ``sync`` and ``async`` environments are built here): a finished slot is
  reset with ``reset_mask`` and *the next unit's own episode seed*, so every episode starts
  exactly as in :meth:`GymTask.evaluate`, and returns equal the serial evaluator's bit for
  bit (the policy's per-row arithmetic does not depend on the batch). In ``sync`` mode the
  busy sub-environments are stepped directly (see :class:`~asktell.gym._slot_loop.SeededSlots`);
  identical MuJoCo sub-environments share one compiled model.
* ``NextStep`` (e.g. ``CartPoleVectorEnv``): the step after an episode ends is the reset
  step; its reward is dropped and its observation starts the slot's next unit.
* ``SameStep``: the observation returned with ``done`` already starts the next episode.

Vector environments in the last two modes reset themselves from their own generator, so
episode seeds cannot be applied per unit: the whole environment is reset at the start of a
batch from ``(run seed, generation, worker)``. When our step cap ends an episode that the
environment has not ended, such a slot *drains* (its outputs are ignored) until the
environment reports the end. A plan whose every episode must start from its own seed (the
centre's evaluation) is therefore run in ``vector_entry_point`` mode by the task's own
single environment, one candidate at a time, exactly as the serial evaluator does (and so it
is before the first generation has sized the environment).

Failures: a non-finite observation or reward fails the candidate on the spot (the same
error text as the serial rollout). An exception from the vector environment marks every
candidate with a unit in flight for *isolation*: the environment is closed and rebuilt, the
rest of the queue goes on, and the isolated candidates are re-evaluated one by one in a
single environment, which finds the one that raised and gives the others their exact serial
results.
"""

from __future__ import annotations

import os

import numpy as np

from asktell.distribution import Distribution
from asktell.protocol import Evaluation, Failure

from ._slot_loop import EnvCrashed, loop_for
from ._stepping import autoreset_mode, share_mujoco_model
from ._units import FAILED, ISOLATED, UnitQueue
from .envs import combine_episodes

__all__ = ["SlotEngine", "MAX_AUTO_ENVS"]

#: Upper bound of the automatic number of environments per process, by mode. ``sync``: at 16
#: the per-step Python and policy costs are amortised while the simulators' and candidates'
#: memory still mostly fits the core's cache (see docs/benchmarks-gym.md).
#: ``vector_entry_point``: one numpy step for all envs, so more is better. ``async``: one
#: process per env, at most one per CPU.
MAX_AUTO_ENVS = {"sync": 16, "vector_entry_point": 256}


class SlotEngine:
    """Runs batches of candidates of a :class:`~asktell.gym.GymTask` through one vector env.

    Args:
        task: the Gym task (its plan, policy, spaces and vector environment).
        num_envs: slots of the vector environment; ``None``: enough for the first batch in
            one round, at most :data:`MAX_AUTO_ENVS` of the mode (the number of CPUs for
            ``async``).
        mode: ``"sync"``, ``"async"`` or ``"vector_entry_point"``.
        worker: index of the process running this engine (seeds whole-env resets).
    """

    def __init__(self, task, num_envs: int | None = None, mode: str = "sync", worker: int = 0):
        self.task = task
        self.num_envs = None if num_envs is None else int(num_envs)
        self.mode = mode
        self.worker = int(worker)
        self.vec = None
        self.autoreset = None
        self.rebuilds = 0

    # ------------------------------------------------------------------ environment
    def _ensure_env(self, units: int) -> None:
        if self.num_envs is None:
            cap = MAX_AUTO_ENVS.get(self.mode, os.cpu_count() or 1)
            self.num_envs = max(1, min(units, cap))
        if self.vec is None:
            self.vec = self.task.make_vector_env(self.num_envs, self.mode)
            self.autoreset = autoreset_mode(self.vec)
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
    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int = 0) -> Evaluation:
        """Evaluate ``seeds`` (all episodes of each); results in seed order, failures
        recorded (never raised for a candidate's error)."""
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if seeds.size == 0:
            return Evaluation.empty(0)
        plan = self.task.plan(distribution, seeds)
        if plan.seeded and (
            self.mode == "vector_entry_point" or (self.vec is None and self.num_envs is None)
        ):
            # Environments that seed themselves cannot replay the centre's episodes; and a
            # centre plan never sizes the environment (the generations' batches do).
            return _single_env(self.task, distribution, seeds, retries)
        queue = UnitQueue.checked(plan, distribution.decode(seeds), self.task)
        while True:
            self._ensure_env(plan.n * plan.episodes)
            loop = loop_for(self.autoreset)
            try:
                loop(self.task, self.vec, self.num_envs, self.mode, self.worker, queue).run()
                break
            except EnvCrashed:
                self.rebuilds += 1
                self._discard_env()
                if not queue.has_work():
                    break
        return self._results(queue, distribution, seeds, retries)

    def _results(self, queue: UnitQueue, distribution, seeds, retries: int) -> Evaluation:
        n, E = queue.n, queue.E
        out = Evaluation.empty(n)
        out.episodes = np.zeros(n, dtype=np.int64)
        out.truncated = np.zeros(n, dtype=np.int64)
        for c in range(n):
            if queue.status[c] == FAILED:
                out.failures.append(
                    Failure(c, int(seeds[c]), queue.errors[c], distribution.generation)
                )
                continue
            if queue.status[c] == ISOLATED:
                continue
            out.returns[c] = combine_episodes(queue.ep_ret[c])
            out.steps[c] = int(queue.ep_steps[c].sum())
            out.truncated[c] = int(queue.ep_trunc[c].sum())
            out.episodes[c] = E
            if queue.record[c]:
                for e in range(E):
                    rows = queue.recorded.get((c, e))
                    if rows:
                        if out.obs_stats is None:
                            out.obs_stats = self.task.new_obs_stat()
                        out.obs_stats.push(np.asarray(rows))
        isolated = np.flatnonzero(queue.status == ISOLATED)
        if isolated.size:
            # One environment, one candidate at a time: exactly what the serial evaluator
            # does, so the candidate that raised is found and the others get their returns.
            out.place(isolated, _single_env(self.task, distribution, seeds[isolated], retries))
        return out


def _single_env(task, distribution: Distribution, seeds: np.ndarray, retries: int) -> Evaluation:
    """The serial path: the task's own environment, failures isolated per candidate."""
    from asktell.evaluators._common import evaluate_chunk

    return evaluate_chunk(task, distribution, seeds, retries)
