"""An embedded Dask cluster always gets its workers back (evaluators/_dask_heal.py).

The states are the ones ``distributed`` leaves a nanny in when its worker keeps dying on a
loaded machine (see the module docstring of ``_dask_heal``), put there on purpose so the
tests take seconds: a nanny closed and dropped by ``SpecCluster``'s lost-worker check, and
a nanny that closed itself after a failed restart. Loopback only; every cluster is closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from asktell import Distribution, FunctionTask, NoiseTable
from asktell.evaluators import DaskEvaluator, SerialEvaluator
from asktell.evaluators._dask_heal import ClusterHealer, slot_verdict
from asktell.noise import mirrored
from asktell.testing.dask_cluster import loopback_cluster
from asktell.testing.evaluator_suite import first_coordinate

NOISE = NoiseTable(seed=3, size=1 << 16)
# Well under distributed's lost-worker-timeout (15 s), which would otherwise tidy up too.
BACK_WITHIN = 10.0


def _problem():
    rng = np.random.default_rng(0)
    dist = Distribution(rng.standard_normal(4), 0.5, NOISE, generation=1)
    return dist, mirrored(NOISE.sample_keys(rng, 4, 4))


def _lost_worker_check(cluster, name):
    """What ``SpecCluster._update_worker_status`` does ``lost-worker-timeout`` after a worker
    left the scheduler and none of its name came back: close the nanny (in the middle of its
    restart, on a loaded machine) and drop it, its name staying in ``worker_spec``."""
    nanny = cluster.workers.pop(name)
    cluster._futures.add(asyncio.ensure_future(nanny.close()))


def _closed_itself(cluster, name):
    """A nanny whose restart failed (its worker's name still taken at the scheduler):
    ``Nanny.instantiate`` closes it; it stays in ``cluster.workers``, closed."""
    return cluster.workers[name].close(reason="nanny-instantiate-failed")


def _on_loop(fn):
    """``fn`` as a coroutine function, to run it on the cluster's loop with ``sync``."""

    async def run(*args):
        result = fn(*args)
        if asyncio.iscoroutine(result):
            await result

    return run


def _wait_whole(ev, n: int) -> float:
    """Seconds until the cluster has ``n`` live nannies and ``n`` workers; fails past
    :data:`BACK_WITHIN`."""
    cluster = ev.link.cluster
    start = time.monotonic()
    while time.monotonic() - start < BACK_WITHIN:
        nannies = list(cluster.workers.values())
        if (
            len(cluster.scheduler.workers) == n
            and len(nannies) == n
            and all(slot_verdict(nanny) == "ok" and nanny.process for nanny in nannies)
        ):
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(
        f"the embedded cluster still had {len(cluster.scheduler.workers)} of {n} workers "
        f"{BACK_WITHIN:g} s after losing one (spec {list(cluster.worker_spec)}, nannies "
        f"{[(k, str(w.status)) for k, w in cluster.workers.items()]})"
    )


@pytest.mark.parametrize("lose", [_lost_worker_check, _closed_itself])
def test_a_slot_lost_for_good_is_filled_again_within_seconds_without_a_generation(lose):
    dist, seeds = _problem()
    with SerialEvaluator(FunctionTask(first_coordinate)) as serial:
        expected = serial.evaluate(dist, seeds).returns
    with DaskEvaluator(FunctionTask(first_coordinate), num_workers=2) as ev:
        cluster = ev.link.cluster
        cluster.sync(_on_loop(lose), cluster, 0)
        _wait_whole(ev, 2)  # no generation ran: the healer does not wait for one
        assert 0 not in cluster.worker_spec  # a fresh name, never the lost one again
        assert len(cluster.worker_spec) == 2 and len(cluster.workers) == 2
        assert [old for old, _ in ev.link.healer.replaced] == [0]
        # A second evaluator on the same cluster (client given) runs on the healed slots.
        with DaskEvaluator(FunctionTask(first_coordinate), client=ev.client) as ev2:
            assert ev2.link.healer is None
            assert np.array_equal(ev2.evaluate(dist, seeds).returns, expected)


def test_a_nanny_restarting_its_worker_is_left_alone():
    """A worker killed outright is restarted by its own nanny; the healer must not replace
    that nanny (never two workers for one slot)."""
    with DaskEvaluator(FunctionTask(first_coordinate), num_workers=2) as ev:
        cluster = ev.link.cluster
        nannies = dict(cluster.workers)
        pid = cluster.workers[0].process.pid
        os.kill(pid, signal.SIGKILL)
        stop = time.monotonic() + 60
        while time.monotonic() < stop and not _restarted(cluster, pid):
            time.sleep(0.1)
        assert _restarted(cluster, pid)
        time.sleep(2 * ev.link.healer.tick_seconds)
        assert ev.link.healer.replaced == []
        assert cluster.workers == nannies
        assert sorted(ws.name for ws in cluster.scheduler.workers.values()) == [0, 1]


def _restarted(cluster, pid) -> bool:
    process = cluster.workers[0].process
    names = sorted(ws.name for ws in cluster.scheduler.workers.values())
    return process is not None and process.pid not in (None, pid) and names == [0, 1]


def test_a_connected_cluster_gets_no_healer():
    with loopback_cluster(1) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        with DaskEvaluator(FunctionTask(first_coordinate), client=c) as ev:
            assert ev.link.healer is None
        with DaskEvaluator(FunctionTask(first_coordinate), address=cluster.scheduler_address) as ev:
            assert ev.link.healer is None


# -- the healer's verdicts on a fake cluster (no Dask): fast and exact --------------------


def _nanny(status, process_status=None):
    process = None if process_status is None else SimpleNamespace(status=process_status)
    return SimpleNamespace(status=status, process=process)


class _FakeCluster:
    def __init__(self, workers):
        self.status = "running"
        self.workers = dict(workers)
        self.worker_spec = {name: {"cls": "Nanny"} for name in workers}
        self.scaled = []

    def scale(self, n):
        self.scaled.append(n)


@pytest.mark.parametrize(
    "nanny, verdict",
    [
        (_nanny("running", "running"), "ok"),
        (_nanny("running", "starting"), "ok"),  # a restart under way
        (_nanny("running", "stopping"), "ok"),
        (_nanny("closing", "running"), "ok"),  # the cluster is closing it
        (_nanny("running", "stopped"), "dead"),  # between a death and the restart
        (_nanny("running"), "dead"),
        (_nanny("closed"), "gone"),
        (_nanny("failed"), "gone"),
        (None, "gone"),
    ],
)
def test_slot_verdicts(nanny, verdict):
    assert slot_verdict(nanny) == verdict


def test_a_dead_worker_gets_its_nannys_grace_then_a_fresh_slot():
    cluster = _FakeCluster({0: _nanny("running", "stopped"), 1: _nanny("running", "running")})
    healer = ClusterHealer(cluster, restart_grace_seconds=0.2)
    assert healer.tick() == [] and cluster.scaled == []  # the nanny may still restart it
    time.sleep(0.25)
    assert healer.tick() == [0]
    assert list(cluster.worker_spec) == [1, 2] and cluster.scaled == [2]
    # The renamed slot is not renamed again while its nanny starts.
    cluster.workers[2] = _nanny("running", "starting")
    assert healer.tick() == []


def test_a_healthy_cluster_is_never_touched_and_a_stopped_healer_does_nothing():
    cluster = _FakeCluster({0: _nanny("running", "running"), 1: _nanny("running", "running")})
    healer = ClusterHealer(cluster, restart_grace_seconds=0.0)
    assert healer.tick() == [] and cluster.scaled == []
    del cluster.workers[1]
    healer.stop()
    assert healer.tick() == []
    cluster.status = "closing"
    assert ClusterHealer(cluster).tick() == []
