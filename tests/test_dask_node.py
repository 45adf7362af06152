"""DaskEvaluator's node mode (``node_processes``): one chunk per Dask worker, split over a
local pool with one shared noise table per node; loopback clusters only.

Faults are injected by the objective itself (kill the local process or the Dask worker), with
marker files for "only the first time" since each attempt may run in a new process.
"""

from __future__ import annotations

import mmap
import re
import subprocess
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from asktell import Distribution, FunctionTask, NoiseTable
from asktell._shared_table import SEGMENT_PREFIX, SharedTable, attach_table
from asktell.errors import ConfigError
from asktell.evaluators import DaskEvaluator, SerialEvaluator
from asktell.noise import mirrored

# The objectives below live in this test module, which the node's processes cannot import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NOISE = NoiseTable(seed=5, size=1 << 18)


def _problem(n: int = 24, dim: int = 6, generation: int = 2):
    rng = np.random.default_rng(generation)
    dist = Distribution(rng.standard_normal(dim), 0.5, NOISE, generation=generation)
    return dist, mirrored(NOISE.sample_keys(rng, n // 2, dim))


def _serial(task, dist, seeds):
    with SerialEvaluator(task) as ev:
        return ev.evaluate(dist, seeds)


def _segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith(SEGMENT_PREFIX)}


def _in_local_process() -> bool:
    """True in one of a node's local processes (not the Dask worker, not the test)."""
    return multiprocessing.current_process().name.startswith("asktell-vector-")


class TableIsShared:
    """Returns 1.0 where the candidate's noise table is a view of shared memory (adopted),
    0.0 where the process built its own."""

    def __call__(self, x: np.ndarray) -> float:
        from asktell._table_cache import TABLES

        table = TABLES.get(NOISE.seed, NOISE.size)
        return float(isinstance(table.base, mmap.mmap))


class Kills:
    """Returns ``x[0]``; ``x[0] == target`` kills its local process (``parent``: the Dask
    worker above it), the first time only when a ``marker`` is given."""

    def __init__(self, target: float, marker: str | None = None, parent: bool = False):
        self.target, self.marker, self.parent = target, marker, parent

    def __call__(self, x: np.ndarray) -> float:
        if x[0] == self.target and _in_local_process():
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    Path(self.marker).touch()
                os.kill(os.getppid() if self.parent else os.getpid(), signal.SIGKILL)
                time.sleep(5)  # the local process waits for its parent's death to be seen
        return float(x[0])


@pytest.fixture(scope="module")
def node_cluster():
    """An embedded node-mode cluster: 2 nodes (non-daemonic workers) of 2 local processes."""
    with DaskEvaluator(FunctionTask.named("rastrigin"), num_workers=2, node_processes=2) as ev:
        yield ev


def test_node_returns_bitwise_serial_and_one_chunk_per_node(node_cluster):
    dist, seeds = _problem()
    got = node_cluster.evaluate(dist, seeds)
    want = _serial(FunctionTask.named("rastrigin"), dist, seeds)
    assert np.array_equal(got.returns, want.returns)
    assert node_cluster.next_chunks_per_worker == 1
    assert node_cluster.link.num_nodes() == 2
    # one noise table per node, in shared memory, while the pools live
    assert len(_segments()) >= 2


def _worker_table_is_shared() -> bool:
    from asktell._table_cache import TABLES

    table = TABLES._tables.get((NOISE.seed, NOISE.size))
    return table is not None and isinstance(table.base, mmap.mmap)


def test_node_processes_adopt_the_shared_table(node_cluster):
    dist, seeds = _problem(n=8)
    with DaskEvaluator(FunctionTask(TableIsShared()), node_cluster.client, node_processes=2) as ev:
        assert ev.evaluate(dist, seeds).returns.tolist() == [1.0] * 8
        # the Dask worker too (a distributed weighted sum reads the node's copy)
        assert all(ev.client.run(_worker_table_is_shared).values())


def test_cartpole_bitwise_serial(node_cluster):
    from asktell.gym import GymTask

    task = GymTask("CartPole-v1", policy="linear", max_episode_steps=60, step_cap="fixed")
    rng = np.random.default_rng(1)
    dist = Distribution(
        rng.standard_normal(task.num_params) * 0.1, 0.2, NOISE, generation=3
    )
    seeds = mirrored(NOISE.sample_keys(rng, 6, task.num_params))
    with DaskEvaluator(task, node_cluster.client, node_processes=2) as ev:
        got = ev.evaluate(dist, seeds)
    want = _serial(task, dist, seeds)
    assert np.array_equal(got.returns, want.returns)
    assert np.array_equal(got.steps, want.steps)


def test_local_process_crash_reruns_its_candidates(node_cluster, tmp_path):
    dist, seeds = _problem(n=12)
    target = float(dist.decode(seeds[5:6])[0, 0])
    task = FunctionTask(Kills(target, marker=str(tmp_path / "once")))
    with DaskEvaluator(task, node_cluster.client, node_processes=2) as ev:
        got = ev.evaluate(dist, seeds)
    assert (tmp_path / "once").exists()  # it did die once
    assert np.array_equal(got.returns, _serial(task, dist, seeds).returns)
    assert not got.failures


def test_candidate_killing_its_local_process_every_time_fails_alone(node_cluster):
    dist, seeds = _problem(n=12)
    target = float(dist.decode(seeds[7:8])[0, 0])
    task = FunctionTask(Kills(target))
    with DaskEvaluator(task, node_cluster.client, node_processes=2, on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
    assert [f.index for f in got.failures] == [7]
    assert "died while evaluating it" in got.failures[0].error
    first = dist.decode(seeds)[:, 0]
    ok = np.arange(12) != 7
    assert np.array_equal(got.returns[ok], first[ok]) and np.isnan(got.returns[7])


def test_node_death_mid_generation_same_returns(node_cluster, tmp_path):
    dist, seeds = _problem(n=12)
    target = float(dist.decode(seeds[2:3])[0, 0])
    task = FunctionTask(Kills(target, marker=str(tmp_path / "once"), parent=True))
    with DaskEvaluator(task, node_cluster.client, node_processes=2) as ev:
        got = ev.evaluate(dist, seeds)
    assert (tmp_path / "once").exists()  # a node did die
    assert np.array_equal(got.returns, dist.decode(seeds)[:, 0])
    assert not got.failures


def test_close_leaves_no_shared_memory():
    with DaskEvaluator(FunctionTask.named("sphere"), num_workers=1, node_processes=2) as ev:
        dist, seeds = _problem(n=4)
        ev.evaluate(dist, seeds)
        (pid,) = ev.client.run(os.getpid).values()
        mine = {n for n in _segments() if n.startswith(f"{SEGMENT_PREFIX}{pid}-")}
        assert len(mine) == 1  # one table for the node, not one per process
    assert not mine & _segments()


DAEMONIC = """
import distributed, numpy as np
from asktell import FunctionTask
from asktell.errors import ConfigError
from asktell.evaluators import DaskEvaluator
from asktell.noise import NoiseTable, mirrored
from asktell.distribution import Distribution
from asktell.testing.dask_cluster import loopback_cluster

if __name__ == "__main__":
    noise = NoiseTable(0, 1 << 16)
    dist = Distribution(np.zeros(3), 0.1, noise)
    seeds = mirrored(np.array([1, 2]))
    with loopback_cluster(1) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        with DaskEvaluator(FunctionTask.named("sphere"), c, node_processes=1) as ev:
            try:
                ev.evaluate(dist, seeds)
            except ConfigError as exc:
                print("REFUSED:", exc)
"""


def test_daemonic_workers_are_refused_naming_the_fix(tmp_path):
    # In a process of its own: a node-mode cluster of this process (the module's fixture)
    # switches distributed.worker.daemon off while its nannies restart workers, and a plain
    # cluster started meanwhile would get non-daemonic workers.
    script = tmp_path / "daemonic.py"
    script.write_text(DAEMONIC)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert re.search(r"REFUSED: .*daemonic.*DASK_DISTRIBUTED__WORKER__DAEMON=False", done.stdout), (
        done.stdout + done.stderr
    )


@pytest.mark.parametrize("bad", [0, -1, "all", 1.5, True])
def test_node_processes_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="node_processes"):
        DaskEvaluator(FunctionTask.named("sphere"), node_processes=bad)


def test_shared_table_is_bitwise_the_built_one_and_unlinked_on_close():
    seed, size = 11, 1 << 16  # not NOISE: this process adopts the shared one below
    built = NoiseTable(seed, size).table
    table = SharedTable(seed, size)
    try:
        assert table.name in _segments()
        view = attach_table(seed, size, table.name)
        assert NoiseTable(seed, size).table is view  # adopted
        assert np.array_equal(view, built)
    finally:
        table.close()
    assert table.name not in _segments()
    table.close()  # idempotent


class Pid:
    def __call__(self, x: np.ndarray) -> float:
        return float(os.getpid())


def test_evaluators_sharing_a_cluster_and_task_keep_their_own_node_settings(node_cluster):
    # Dask dedupes futures by key: the node settings travel with the task, so two evaluators
    # of one task with different settings must not share its future.
    dist, seeds = _problem(n=8)
    task = FunctionTask(Pid())
    # Both nodes there (an earlier test's killed node may still be restarting on a loaded
    # machine; the count of distinct processes below needs both).
    node_cluster.client.wait_for_workers(2, timeout=120)
    with DaskEvaluator(task, node_cluster.client, node_processes=1) as one, DaskEvaluator(
        task, node_cluster.client, node_processes=2
    ) as two:
        assert len(set(one.evaluate(dist, seeds).returns)) == 2  # 2 nodes x 1 process
        assert len(set(two.evaluate(dist, seeds).returns)) == 4  # 2 nodes x 2 processes


def _pool_tasks(dask_worker=None) -> list[str]:
    from asktell.evaluators._dask_node import _POOLS

    return [key[0] for key in _POOLS]


def test_close_stops_the_pools_of_every_task_it_shipped(node_cluster):
    """A kept cluster, the evaluator's task reassigned (docs/dask.md): close() stopped only
    the last task's node pools, and the first one's processes and table stayed."""
    client = node_cluster.client
    client.wait_for_workers(2, timeout=120)
    dist, seeds = _problem(n=8)
    ev = DaskEvaluator(FunctionTask.named("sphere"), client, node_processes=1)
    ev.evaluate(dist, seeds)
    ev.task = FunctionTask.named("rastrigin", num_params=6)  # not the fixture's own task
    ev.evaluate(dist, seeds)
    shipped = set(ev.link._digests)
    pooled = {d for tasks in client.run(_pool_tasks).values() for d in tasks}
    assert len(shipped) == 2 and shipped <= pooled  # both tasks have pools on the nodes
    ev.close()
    left = {d for tasks in client.run(_pool_tasks).values() for d in tasks}
    assert not shipped & left


class Hangs:
    """Returns ``x[0]``; ``x[0] == target`` never returns (in a local process)."""

    def __init__(self, target: float):
        self.target = target

    def __call__(self, x: np.ndarray) -> float:
        if x[0] == self.target and _in_local_process():
            time.sleep(3600)
        return float(x[0])


def test_hung_candidate_fails_alone_within_the_limit(node_cluster):
    dist, seeds = _problem(n=8)
    target = float(dist.decode(seeds[1:2])[0, 0])
    task = FunctionTask(Hangs(target))
    with DaskEvaluator(
        task, node_cluster.client, node_processes=2, candidate_timeout_seconds=1.0, on_failure="mark"
    ) as ev:
        got = ev.evaluate(dist, seeds)
    assert [f.index for f in got.failures] == [1]
    assert "candidate_timeout_seconds=1" in got.failures[0].error
    ok = np.arange(8) != 1
    assert np.array_equal(got.returns[ok], dist.decode(seeds)[ok, 0])
