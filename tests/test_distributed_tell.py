"""The distributed tell (docs/distributed-tell.md): a strategy's ``gradient_parts`` fixes the
bits of its update's noise sum, and a Dask evaluator with ``remote_tell`` sums those parts
on its workers with the same bits, on resume too and through worker faults.

One loopback cluster (two single-threaded worker processes) serves the module; the run
files connect to it by address.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from asktell.config import config_from_dict
from asktell.errors import ConfigError
from asktell.evaluators import DaskEvaluator
from asktell.evaluators._dask_tell import DaskWeightedSum
from asktell.loop import GenerationStep
from asktell.noise import NoiseTable, part_bounds, weighted_sum_in_parts
from asktell.runner import TIMING_FIELDS, read_log, resume, run
from asktell.strategies import ARS, SNES, OpenAIES
from asktell.tasks import FunctionTask
from asktell.testing.dask_cluster import loopback_cluster

# The fault-injecting noise source below lives in this test module, which workers cannot
# import; ship it by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TABLE = NoiseTable(seed=7, size=1 << 18)
DIM = 4096  # long rows: the axpy path of NoiseTable.weighted_sum


@pytest.fixture(scope="module")
def cluster():
    with loopback_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield cluster, client


def _problem(n: int = 101, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n), TABLE.sample_keys(rng, n, DIM)


def _remote_parts(stream) -> int:
    return sum(1 for t in stream.data if str(t["key"]).startswith("part_sum"))


# ------------------------------------------------------------------ the parted sum itself

def test_one_part_is_the_unparted_sum_and_more_parts_follow_their_rule():
    weights, keys = _problem()
    np.testing.assert_array_equal(
        weighted_sum_in_parts(TABLE, weights, keys, DIM, 1), TABLE.weighted_sum(weights, keys, DIM)
    )
    # the rule, written out: cut at n * i // k, each part summed, added in part order
    for parts in (2, 3, 7):
        want = np.zeros(DIM)
        for i in range(parts):
            a, b = 101 * i // parts, 101 * (i + 1) // parts
            want += TABLE.weighted_sum(weights[a:b], keys[a:b], DIM)
        got = weighted_sum_in_parts(TABLE, weights, keys, DIM, parts)
        np.testing.assert_array_equal(got, want)
    # parts are a real choice: they move the last bits (which is why the config fixes them)
    assert not np.array_equal(weighted_sum_in_parts(TABLE, weights, keys, DIM, 3),
                              TABLE.weighted_sum(weights, keys, DIM))
    assert part_bounds(3, 5) == [(0, 1), (1, 2), (2, 3)]  # empty parts left out


@pytest.mark.parametrize("cls", [OpenAIES, ARS])
def test_gradient_parts_changes_the_update_only_in_its_last_bits(cls):
    def centre(parts):
        es = cls(64, 16, noise=TABLE, seed=3, gradient_parts=parts)
        gen = np.random.default_rng(0)
        for _ in range(3):
            es.ask()
            es.tell(gen.standard_normal(16))
        return es.center

    one, three = centre(1), centre(3)
    assert not np.array_equal(one, three)
    np.testing.assert_allclose(three, one, rtol=1e-5, atol=1e-9)


def test_gradient_parts_is_validated_naming_the_field():
    with pytest.raises(ConfigError, match="gradient_parts"):
        OpenAIES(8, 8, gradient_parts=0)


# ------------------------------------------------------------------ run files

def _config(evaluator, parts=3, generations=6, kind="openai_es"):
    strategy = {"kind": kind, "population_size": 16, "sigma": 0.1, "learning_rate": 0.05}
    if parts is not None:
        strategy["gradient_parts"] = parts
    return {
        "seed": 2,
        "strategy": strategy,
        "task": {"kind": "function", "name": "sphere", "num_params": 64, "shift": 1.0},
        "noise": {"size": 1 << 16},
        "evaluator": evaluator,
        "budget": {"generations": generations},
        "output": {"log_format": "none", "checkpoint_every": 2, "eval_every": 2},
    }


def _remote(cluster):
    return {"kind": "dask", "address": cluster[0].scheduler_address, "remote_tell": True}


def untimed(run_dir):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in read_log(run_dir)]


@pytest.mark.parametrize("kind", ["openai_es", "ars"])
def test_a_run_file_gives_the_same_log_serial_and_with_remote_tell(tmp_path, cluster, kind):
    serial = run(_config({"kind": "serial"}, kind=kind), out=tmp_path / "serial")
    with distributed.get_task_stream(cluster[1]) as stream:
        remote = run(_config(_remote(cluster), kind=kind), out=tmp_path / "remote")
    assert _remote_parts(stream) == 3 * 6  # every generation's 3 parts were summed remotely
    assert untimed(remote.run_dir) == untimed(serial.run_dir)
    assert remote.center.tobytes() == serial.center.tobytes()
    # ... and the parts matter: one part is another run (so the comparison above can fail)
    one = run(_config({"kind": "serial"}, parts=1, kind=kind), out=tmp_path / "one")
    assert untimed(one.run_dir) != untimed(serial.run_dir)


def test_interrupted_and_resumed_with_remote_tell_equals_an_uninterrupted_run(tmp_path, cluster):
    straight = run(_config(_remote(cluster)), out=tmp_path / "straight")
    run(_config(_remote(cluster), generations=3), out=tmp_path / "r")
    with distributed.get_task_stream(cluster[1]) as stream:
        resumed = resume(tmp_path / "r", overrides=["budget.generations=6"])
    assert _remote_parts(stream) == 3 * 3  # generations 4 to 6: the hook is lent again
    assert resumed.center.tobytes() == straight.center.tobytes()
    assert untimed(tmp_path / "r") == untimed(tmp_path / "straight")


@pytest.mark.parametrize(
    "strategy, match",
    [
        ({"kind": "snes"}, r"strategy 'snes' has no 'gradient_parts' option \(strategies "
                           r"that have it: ars, openai_es\)"),
        ({"kind": "openai_es"}, r"remote_tell needs the strategy's gradient_parts >= 2 .*got "
                                r"gradient_parts=1"),
    ],
)
def test_remote_tell_is_refused_for_a_strategy_that_cannot_use_it(strategy, match):
    cfg = _config({"kind": "dask", "address": "tcp://127.0.0.1:1", "remote_tell": True})
    cfg["strategy"] = {**strategy, "population_size": 16}
    with pytest.raises(ConfigError, match=match) as info:
        config_from_dict(cfg)
    assert "evaluator" in str(info.value)


def test_remote_tell_from_python_is_lent_by_the_generation_step_or_refused(cluster):
    task = FunctionTask.named("sphere", num_params=DIM)
    with DaskEvaluator(task, client=cluster[1], remote_tell=True) as ev:
        with pytest.raises(ConfigError, match="gradient_parts >= 2"):
            GenerationStep(OpenAIES(DIM, 8, noise=TABLE), ev, task)
        with pytest.raises(ConfigError, match="strategy 'snes' has no 'gradient_parts'"):
            GenerationStep(SNES(DIM, 8, noise=TABLE), ev, task)
        es = OpenAIES(DIM, 8, noise=TABLE, gradient_parts=2)
        GenerationStep(es, ev, task)
        assert es.noise_sum is ev.noise_sum
    assert ev.noise_sum.client is None  # released: a strategy outliving it sums locally
    weights, keys = _problem()
    np.testing.assert_array_equal(
        es.noise_sum(TABLE, weights, keys, DIM, parts=2),
        weighted_sum_in_parts(TABLE, weights, keys, DIM, 2),
    )
    without = OpenAIES(DIM, 8, noise=TABLE)
    with DaskEvaluator(task, client=cluster[1]) as ev:  # remote_tell off: nothing lent
        GenerationStep(without, ev, task)
    assert without.noise_sum is None


# ------------------------------------------------------------------ faults

def _in_dask_worker() -> bool:
    return "Dask Worker process" in multiprocessing.current_process().name


class FaultyTable(NoiseTable):
    """NoiseTable whose ``weighted_sum`` misbehaves in a Dask worker: ``"kill"`` the worker
    process, ``"raise"``, ``"sleep"`` (2 s); with a ``marker`` only the first time. Never in the driver."""

    def __init__(self, fault: str, marker: str | None = None):
        super().__init__(TABLE.seed, TABLE.size)
        self.fault, self.marker = fault, marker

    def __getstate__(self):
        return {**super().__getstate__(), "fault": self.fault, "marker": self.marker}

    def __setstate__(self, state):
        state = dict(state)
        self.fault, self.marker = state.pop("fault"), state.pop("marker")
        super().__setstate__(state)

    def weighted_sum(self, weights, keys, dim):
        if _in_dask_worker() and not (self.marker and os.path.exists(self.marker)):
            if self.marker:
                Path(self.marker).touch()
            if self.fault == "kill":
                os._exit(1)
            if self.fault == "sleep":
                time.sleep(2.0)
            else:
                raise RuntimeError("injected part failure")
        return super().weighted_sum(weights, keys, dim)


def test_a_worker_dying_during_the_remote_sum_gives_the_same_bits(tmp_path, cluster):
    weights, keys = _problem()
    hook = DaskWeightedSum(cluster[1])
    noise = FaultyTable("kill", marker=str(tmp_path / "killed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dask reran the part: no fallback, no warning
        got = hook(noise, weights, keys, DIM, parts=3)
    assert (tmp_path / "killed").exists() and hook.fallbacks == 0
    np.testing.assert_array_equal(got, weighted_sum_in_parts(TABLE, weights, keys, DIM, 3))
    cluster[1].wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_a_failing_remote_part_falls_back_to_the_local_sum_with_the_same_bits(cluster):
    weights, keys = _problem()
    hook = DaskWeightedSum(cluster[1])
    with pytest.warns(RuntimeWarning, match=r"3 of 3 parts .* summed on the driver .*"
                                            r"injected part failure.* bits are the same"):
        got = hook(FaultyTable("raise"), weights, keys, DIM, parts=3)
    assert hook.fallbacks == 3
    np.testing.assert_array_equal(got, weighted_sum_in_parts(TABLE, weights, keys, DIM, 3))


def test_a_strategy_keeps_its_run_through_a_failing_remote_sum(cluster):
    local = OpenAIES(DIM, 16, noise=TABLE, seed=4, gradient_parts=3)
    remote = OpenAIES(DIM, 16, noise=FaultyTable("raise"), seed=4, gradient_parts=3)
    remote.noise_sum = DaskWeightedSum(cluster[1])
    gen = np.random.default_rng(5)
    with pytest.warns(RuntimeWarning, match="summed on the driver"):
        for _ in range(2):
            returns = gen.standard_normal(16)
            np.testing.assert_array_equal(local.ask(), remote.ask())
            local.tell(returns)
            remote.tell(returns)
    assert remote.center.tobytes() == local.center.tobytes()


def test_parts_not_back_within_the_timeout_are_summed_on_the_driver(cluster):
    weights, keys = _problem()
    hook = DaskWeightedSum(cluster[1], timeout=0.3)
    with pytest.warns(RuntimeWarning, match="summed on the driver .*TimeoutError"):
        got = hook(FaultyTable("sleep"), weights, keys, DIM, parts=2)
    assert hook.fallbacks == 2
    np.testing.assert_array_equal(got, weighted_sum_in_parts(TABLE, weights, keys, DIM, 2))


# ------------------------------------------------------------------ node mode

def _reads_the_node_table(seed: int, size: int, dask_worker=None) -> bool:
    """On a node-mode worker: is this process's table (what part_sum reads) the node's
    shared-memory block?"""
    from asktell._table_cache import TABLES
    from asktell.evaluators import _dask_node

    table = TABLES.get(seed, size)
    return any(
        pool.table is not None and np.shares_memory(pool.table.array, table)
        for pool in _dask_node._POOLS.values()
    )


def test_node_mode_sums_the_parts_on_the_node_from_its_shared_table():
    from asktell.evaluators import SerialEvaluator

    task = FunctionTask.named("sphere", num_params=DIM)

    def centre(evaluator):
        es = OpenAIES(DIM, 16, noise=TABLE, seed=6, gradient_parts=2)
        step = GenerationStep(es, evaluator, task)
        for _ in range(2):
            step()
        return es

    with SerialEvaluator(task) as ev:
        want = centre(ev).center
    with DaskEvaluator(task, num_workers=1, node_processes=1, remote_tell=True) as ev, \
            distributed.get_task_stream(ev.client) as stream:
        es = centre(ev)
        assert es.noise_sum is ev.noise_sum and ev.noise_sum.fallbacks == 0
        shared = ev.client.run(_reads_the_node_table, TABLE.seed, TABLE.size)
    assert _remote_parts(stream) == 2 * 2
    assert list(shared.values()) == [True]
    assert es.center.tobytes() == want.tobytes()
