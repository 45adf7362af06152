"""DaskEvaluator on real Dask clusters (loopback only): results, shipping, and every fault.

Faults are injected by the objective itself (kill the worker process, raise, sleep), with
marker files for "only the first time" since each attempt may run in a new process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from asktell import CandidateFailedError, Distribution, EvaluationError, FunctionTask, NoiseTable
from asktell.errors import ConfigError, MissingDependencyError
from asktell.evaluators import DaskEvaluator, DaskEvaluatorConfig, SerialEvaluator
from asktell.evaluators.dask import (
    AUTO_CHUNK_SECONDS,
    AUTO_MAX_CHUNKS,
    AUTO_SCHEDULER_SHARE,
    AUTO_TASK_SECONDS,
    auto_chunks,
    chunk_bounds,
)
from asktell.noise import mirrored
from asktell.registry import EVALUATORS
from asktell.testing.evaluator_suite import first_coordinate, rastrigin_return
from asktell.testing.dask_cluster import loopback_cluster

# The fault-injecting objectives below live in this test module, which workers cannot
# import; ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

NOISE = NoiseTable(seed=3, size=1 << 18)


def _problem(n: int = 32, dim: int = 8, generation: int = 4):
    rng = np.random.default_rng(generation)
    dist = Distribution(rng.standard_normal(dim), 0.5, NOISE, generation=generation)
    return dist, mirrored(NOISE.sample_keys(rng, n // 2, dim))


def _serial(task, dist, seeds):
    with SerialEvaluator(task) as ev:
        return ev.evaluate(dist, seeds)


def _in_dask_worker() -> bool:
    """True in a worker process started by a nanny (in any of its threads)."""
    import multiprocessing

    return "Dask Worker process" in multiprocessing.current_process().name


class KillsWorker:
    """Returns ``x[0]``; kills the worker process evaluating the candidate ``x[0] == target``.

    With a ``marker`` path it kills only the first time (the marker records it); without, it
    kills every time (a poison candidate), after ``delay`` seconds of "rollout". It never
    kills a process that is not a worker.
    """

    def __init__(self, target: float, marker: str | None = None, delay: float = 0.0):
        self.target = target
        self.marker = marker
        self.delay = delay

    def __call__(self, x: np.ndarray) -> float:
        if x[0] == self.target and _in_dask_worker():
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    Path(self.marker).touch()
                time.sleep(self.delay)
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(5)  # not reached
        return float(x[0])


@dataclasses.dataclass(frozen=True, eq=False)
class KillsOnArrival(Distribution):
    """A distribution whose first unpickling in a worker kills that worker."""

    marker: str = ""

    def __setstate__(self, state):
        if _in_dask_worker() and not os.path.exists(state["marker"]):
            Path(state["marker"]).touch()
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(5)  # not reached
        self.__dict__.update(state)


class FailsFirst:
    """Returns ``x[0]``; each candidate raises on its first ``times`` attempts."""

    def __init__(self, directory: str, times: int = 1):
        self.directory = directory
        self.times = times

    def __call__(self, x: np.ndarray) -> float:
        path = Path(self.directory) / f"{x[0]!r}"
        attempts = int(path.read_text()) if path.exists() else 0
        path.write_text(str(attempts + 1))
        if attempts < self.times:
            raise RuntimeError(f"flaky failure {attempts + 1} of x[0]={x[0]!r}")
        return float(x[0])


class SlowOn:
    """Returns ``x[0]``; the candidate ``x[0] == target`` sleeps until ``release`` exists."""

    def __init__(self, target: float, release: str, limit: float = 60.0):
        self.target = target
        self.release = release
        self.limit = limit

    def __call__(self, x: np.ndarray) -> float:
        if x[0] == self.target:
            stop = time.monotonic() + self.limit
            while not os.path.exists(self.release) and time.monotonic() < stop:
                time.sleep(0.02)
        return float(x[0])


class UnloadableOnWorkers:
    """A task that cannot be unpickled on workers, like one whose module is not installed."""

    num_params = None

    def __init__(self):
        self.env = "my_private_env"

    def __setstate__(self, state):
        if _in_dask_worker():
            raise ModuleNotFoundError("No module named 'my_private_env'")
        self.__dict__.update(state)

    def evaluate(self, params, seeds, distribution):  # pragma: no cover - never reached
        raise AssertionError


class Scaled:
    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, x: np.ndarray) -> float:
        return self.factor * rastrigin_return(x)


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def _table_address(seed: int, size: int) -> int:
    from asktell.noise import NoiseTable as Table

    return Table(seed, size).table.__array_interface__["data"][0]


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on loopback, shared by this module."""
    with loopback_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


# ----------------------------------------------------------------------------- basics


def test_default_is_an_embedded_loopback_cluster_closed_by_close():
    dist, seeds = _problem()
    task = FunctionTask(rastrigin_return)
    ev = DaskEvaluator(task)
    try:
        assert ev.cluster is not None
        assert ev.address.startswith("tcp://127.0.0.1:")
        assert ev.dashboard_link is None
        from dask.system import CPU_COUNT

        workers = ev.client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == CPU_COUNT  # one per core this process may use
        assert all(w["nthreads"] == 1 and "127.0.0.1" in a for a, w in workers.items())
        got = ev.evaluate(dist, seeds)
    finally:
        ev.close()
    assert np.array_equal(got.returns, _serial(task, dist, seeds).returns)
    assert ev.cluster.status.name == "closed" and ev.client.status == "closed"
    ev.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        ev.evaluate(dist, seeds)


def test_same_code_runs_against_a_scheduler_address(client):
    dist, seeds = _problem()
    task = FunctionTask(rastrigin_return)
    with DaskEvaluator(task, address=client.scheduler.address) as ev:
        assert ev.cluster is None
        got = ev.evaluate(dist, seeds)
    assert np.array_equal(got.returns, _serial(task, dist, seeds).returns)
    assert client.status == "running"  # someone else's cluster is left alone


def test_a_given_client_is_used_and_left_open(client):
    dist, seeds = _problem()
    with DaskEvaluator(FunctionTask(first_coordinate), client) as ev:
        assert ev.client is client
        ev.evaluate(dist, seeds)
    assert client.status == "running"
    with DaskEvaluator(FunctionTask(first_coordinate), client.scheduler.address) as ev:
        assert ev.client is not client and ev.cluster is None  # an address, positionally
    assert client.status == "running"


def test_every_evaluator_refuses_seeds_that_are_not_a_1d_array_of_integers(client):
    """1.5, "1" and True were evaluated as seed 1, and a 2-D array flattened, by every
    evaluator; each now refuses them as decode() does, naming itself and what it got."""
    from asktell.evaluators import VectorEnvEvaluator
    from asktell.gym import GymTask

    task = GymTask("CartPole-v1", policy="linear", step_cap="fixed", max_episode_steps=20)
    dist = Distribution(np.zeros(task.num_params), 0.1, NOISE, 0)
    for ev in (SerialEvaluator(task), VectorEnvEvaluator(task, num_envs=2), DaskEvaluator(task, client)):
        name = type(ev).__name__
        with ev:
            for bad, words in [([1.5, 2.0], "dtype float64"), (["1"], "dtype <U1"),
                               ([True, False], "dtype bool"), (np.ones((2, 2), np.int64), r"shape \(2, 2\)")]:
                with pytest.raises(ConfigError, match=rf"{name}.evaluate\(\) expects a 1-D array "
                                   rf"of integer seeds \(int64\); got {words}"):
                    ev.evaluate(dist, bad)
            assert ev.evaluate(dist, []).returns.shape == (0,)
            assert ev.evaluate(dist, [3, 5]).returns.shape == (2,)


def test_an_unpicklable_task_is_named(client):
    import threading as th

    class Locked:
        def __init__(self):
            self.lock = th.Lock()

        def __call__(self, x):
            return 0.0

    dist, seeds = _problem()
    with DaskEvaluator(FunctionTask(Locked()), client) as ev:
        with pytest.raises(ConfigError, match="'task' must be picklable"):
            ev.evaluate(dist, seeds)


@pytest.mark.parametrize("chunks_per_worker", [1, 3, 16])
def test_bitwise_serial_however_the_seeds_are_cut(client, chunks_per_worker):
    dist, seeds = _problem(n=50, dim=12)
    task = FunctionTask(rastrigin_return)
    with DaskEvaluator(task, client=client, chunks_per_worker=chunks_per_worker) as ev:
        got = ev.evaluate(dist, seeds)
    expected = _serial(task, dist, seeds)
    assert np.array_equal(got.returns, expected.returns)
    assert np.array_equal(got.steps, expected.steps)


def _slow_first_coordinate(x):
    time.sleep(0.03)
    return float(x[0])


@pytest.mark.parametrize(
    "objective, chunks", [(first_coordinate, 1), (_slow_first_coordinate, AUTO_MAX_CHUNKS)]
)
def test_auto_chunks_follow_the_measured_work(client, objective, chunks):
    """Cheap candidates: one chunk per worker (Dask's per-task cost would dominate);
    rollout-like ones (30 ms each, 8 per worker): the most chunks, for balance. The returns
    stay the serial ones whatever the chunking."""
    task = FunctionTask(objective)
    dist, seeds = _problem(n=16, dim=4)
    with DaskEvaluator(task, client=client) as ev:
        assert ev.chunks_per_worker == "auto" and ev.next_chunks_per_worker == AUTO_MAX_CHUNKS
        first = ev.evaluate(dist, seeds)
        assert ev.next_chunks_per_worker == chunks
        second = ev.evaluate(dist, seeds)
    expected = _serial(task, dist, seeds)
    assert np.array_equal(first.returns, expected.returns)
    assert np.array_equal(second.returns, expected.returns)


def test_auto_chunks_rule():
    assert auto_chunks(0.0, 2) == 1
    assert auto_chunks(2 * AUTO_CHUNK_SECONDS * 2.5, 2) == 2
    assert auto_chunks(100.0, 16) == AUTO_MAX_CHUNKS


def test_auto_chunks_cap_the_scheduler_time_at_scale():
    """The scheduler handles a generation's tasks one at a time: at the paper's 1,440
    threads with 6.157 s of work each (docs/scaling.md, Humanoid episodes to the cap) the
    50 ms rule alone picks 4 chunks per thread, 5,760 tasks, ~2.3 s of scheduler CPU (38% of
    the generation). The cap allows 5% x 6.157 s / 0.4 ms = 770 tasks: one per thread."""
    assert AUTO_SCHEDULER_SHARE == 0.05 and AUTO_TASK_SECONDS == 0.0004
    assert 6.157 // AUTO_CHUNK_SECONDS >= AUTO_MAX_CHUNKS  # what the 50 ms rule alone gives
    assert auto_chunks(1440 * 6.157, 1440) == 1
    # 4 per thread again once 4 x 1,440 tasks x 0.4 ms fit in 5% of each thread's work (46 s)
    assert auto_chunks(1440 * 47.0, 1440) == AUTO_MAX_CHUNKS
    assert auto_chunks(1440 * 30.0, 1440) == 2  # 5% x 30 s / 0.4 ms = 3,750 tasks
    # The rule at every size: 1 to 4 per thread, and past one per thread the scheduler's
    # time stays within its share of the generation's compute per thread.
    for threads in (1, 2, 7, 64, 1440):
        for per_thread in np.geomspace(1e-3, 1e3, 61):
            chunks = auto_chunks(per_thread * threads, threads)
            assert 1 <= chunks <= AUTO_MAX_CHUNKS
            if chunks > 1:
                scheduler = threads * chunks * AUTO_TASK_SECONDS
                assert scheduler <= AUTO_SCHEDULER_SHARE * per_thread * (1 + 1e-9)


@pytest.mark.parametrize("chunks_per_worker", [1, 5])
def test_observation_statistics_are_bitwise_serial_however_the_seeds_are_cut(
    client, chunks_per_worker
):
    """The normaliser of the next generation comes from these statistics: if chunking
    changed their last bits, a run would diverge by evaluator (float64 sums did)."""
    gym_task = pytest.importorskip("asktell.gym")
    task = gym_task.GymTask("Pendulum-v1", policy="linear", obs_stats_fraction=1.0)
    noise = NoiseTable(0, 1 << 16)
    dist = Distribution(task.initial_params(0), 0.5, noise, generation=2).replace(
        context=task.context()
    )
    seeds = mirrored(noise.sample_keys(np.random.default_rng(0), 10, task.num_params))
    with DaskEvaluator(task, client=client, chunks_per_worker=chunks_per_worker) as ev:
        got = ev.evaluate(dist, seeds)
    expected = _serial(task, dist, seeds)
    assert np.array_equal(got.returns, expected.returns)
    assert got.obs_stats.count == expected.obs_stats.count == 20 * 200
    assert np.array_equal(got.obs_stats.sum, expected.obs_stats.sum)
    assert np.array_equal(got.obs_stats.sumsq, expected.obs_stats.sumsq)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 257])
@pytest.mark.parametrize("chunks", [1, 3, 8, 1000])
def test_chunk_bounds_cover_the_batch_in_order(n, chunks):
    bounds = chunk_bounds(n, chunks)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a < b for a, b in bounds)
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds[:-1], bounds[1:]))
    assert len(bounds) <= chunks
    sizes = [b - a for a, b in bounds]
    if n % 2 == 0 and chunks <= n // 2:
        assert all(a % 2 == 0 for a, _ in bounds)  # mirrored pairs stay together
        assert max(sizes) - min(sizes) <= 2
    else:
        assert max(sizes) - min(sizes) <= 1


def test_noise_table_is_built_once_per_worker_and_reused(client):
    dist, seeds = _problem(n=64)
    with DaskEvaluator(FunctionTask(first_coordinate), client=client) as ev:
        ev.evaluate(dist, seeds)
        before = client.run(_table_address, NOISE.seed, NOISE.size)
        ev.evaluate(dist.replace(generation=dist.generation + 1), seeds)
        after = client.run(_table_address, NOISE.seed, NOISE.size)
    assert before == after  # the same buffer in every worker: not rebuilt


def test_task_is_shipped_once_and_again_only_for_a_new_task(client):
    dist, seeds = _problem()
    task = FunctionTask(Scaled(1.0))
    with DaskEvaluator(task, client=client) as ev:
        ev.evaluate(dist, seeds)
        key = ev.link.task_future.key
        task.f.factor = 2.0  # runner-side state; evaluations depend on context only
        ev.evaluate(dist.replace(generation=dist.generation + 1), seeds)
        assert ev.link.task_future.key == key
        ev.task = FunctionTask(Scaled(3.0))
        got = ev.evaluate(dist, seeds)
        assert ev.link.task_future.key != key
    assert np.array_equal(got.returns, _serial(FunctionTask(Scaled(3.0)), dist, seeds).returns)


# ----------------------------------------------------------------------------- faults


def test_worker_killed_mid_generation_gives_identical_returns(client, tmp_path):
    dist, seeds = _problem(n=40)
    X = dist.decode(seeds)
    marker = tmp_path / "killed"
    pids = _worker_pids(client)
    with DaskEvaluator(
        FunctionTask(KillsWorker(float(X[17, 0]), str(marker))), client=client
    ) as ev:
        got = ev.evaluate(dist, seeds)
    assert marker.exists()  # a worker really died mid-generation
    assert got.failures == []
    expected = _serial(FunctionTask(first_coordinate), dist, seeds)
    assert np.array_equal(got.returns, expected.returns)
    client.wait_for_workers(2, timeout=30)
    assert _worker_pids(client) != pids  # the nanny replaced the dead worker


def test_distribution_survives_the_death_of_its_only_holder(tmp_path):
    """One worker holds the distribution and the task; it dies; the generation completes.

    The first half shows why we do not scatter: a scattered object dies with its holder.
    """
    dist, seeds = _problem(n=16)
    X = dist.decode(seeds)
    marker = tmp_path / "killed"
    task = FunctionTask(KillsWorker(float(X[9, 0]), str(marker)))
    with DaskEvaluator(task, num_workers=1) as ev:
        c = ev.client
        scattered = c.scatter(dist)
        (pid,) = _worker_pids(c)
        os.kill(pid, signal.SIGKILL)
        c.wait_for_workers(1, timeout=30)
        with pytest.raises(distributed.CancelledError):
            c.submit(first_coordinate, scattered, pure=False).result(timeout=30)

        got = ev.evaluate(dist, seeds)
    assert marker.exists()
    assert got.failures == []
    expected = _serial(FunctionTask(first_coordinate), dist, seeds)
    assert np.array_equal(got.returns, expected.returns)


def test_rollout_exceptions_are_retried_then_handled_by_policy(client, tmp_path):
    dist, seeds = _problem(n=16)
    expected = _serial(FunctionTask(first_coordinate), dist, seeds).returns

    (tmp_path / "a").mkdir()
    with DaskEvaluator(FunctionTask(FailsFirst(str(tmp_path / "a"))), client=client, retries=1) as ev:
        got = ev.evaluate(dist, seeds)
    assert got.failures == [] and np.array_equal(got.returns, expected)

    (tmp_path / "b").mkdir()
    task = FunctionTask(FailsFirst(str(tmp_path / "b"), times=5))
    with DaskEvaluator(task, client=client, retries=2, on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
    assert [f.index for f in got.failures] == list(range(seeds.size))
    assert [f.seed for f in got.failures] == seeds.tolist()
    assert all("flaky failure" in f.error for f in got.failures)
    attempts = [int(p.read_text()) for p in (tmp_path / "b").iterdir()]
    assert len(attempts) == seeds.size and min(attempts) >= 3  # 1 + 2 retries each
    assert np.all(np.isnan(got.returns))

    (tmp_path / "c").mkdir()
    task = FunctionTask(FailsFirst(str(tmp_path / "c"), times=5))
    with DaskEvaluator(task, client=client, retries=0, on_failure="raise") as ev:
        with pytest.raises(CandidateFailedError) as info:
            ev.evaluate(dist, seeds)
    assert info.value.generation == dist.generation and info.value.index == 0
    assert info.value.seed == int(seeds[0])
    assert f"generation {dist.generation}" in str(info.value) and "flaky failure" in str(info.value)


def test_poison_candidate_is_found_and_reported_never_looping(tmp_path):
    dist, seeds = _problem(n=16)
    X = dist.decode(seeds)
    bad = 11
    # Kills every time, half a second into its rollout. (Workers dying again and again can
    # make distributed close a nanny in the middle of its restart and leave that slot
    # empty; the embedded cluster's healer fills it again, also for ev2, which only shares
    # the client: tests/test_dask_heal.py.)
    task = FunctionTask(KillsWorker(float(X[bad, 0]), delay=0.5))
    expected = _serial(FunctionTask(first_coordinate), dist, seeds).returns
    with DaskEvaluator(task, num_workers=2, allowed_failures=0, on_failure="mark") as ev:
        got = ev.evaluate(dist, seeds)
        assert [f.index for f in got.failures] == [bad]
        assert got.failures[0].seed == int(seeds[bad])
        assert "killed its Dask worker" in got.failures[0].error
        good = np.arange(seeds.size) != bad
        assert np.array_equal(got.returns[good], expected[good])
        assert np.isnan(got.returns[bad])

        with DaskEvaluator(task, client=ev.client, on_failure="raise", chunks_per_worker=1) as ev2:
            with pytest.raises(CandidateFailedError, match=f"candidate {bad} .*KilledWorker") as info:
                ev2.evaluate(dist, seeds)
    assert (info.value.generation, info.value.index) == (dist.generation, bad)
    assert info.value.seed == int(seeds[bad])


def test_distribution_given_up_by_dask_is_sent_again(tmp_path):
    """With allowed_failures=0, Dask gives up on the distribution's task the first time its
    worker dies; the chunks that needed it are innocent and run again on a fresh copy."""
    base, seeds = _problem(n=16)
    marker = str(tmp_path / "killed")
    dist = KillsOnArrival(base.center, base.sigma, base.noise, base.generation, marker=marker)
    with DaskEvaluator(FunctionTask(first_coordinate), num_workers=1, allowed_failures=0) as ev:
        got = ev.evaluate(dist, seeds)
    assert os.path.exists(marker)  # the worker holding it really died
    assert got.failures == []
    assert np.array_equal(got.returns, _serial(FunctionTask(first_coordinate), base, seeds).returns)


def test_deadline_marks_stragglers_failed_and_goes_on(client, tmp_path):
    dist, seeds = _problem(n=32)
    X = dist.decode(seeds)
    slow = 5
    release = tmp_path / "release"
    task = FunctionTask(SlowOn(float(X[slow, 0]), str(release)))
    try:
        # on_failure="raise" on purpose: a deadline drops stragglers whatever the policy.
        with DaskEvaluator(task, client=client, deadline_seconds=2.0, on_failure="raise") as ev:
            got = ev.evaluate(dist, seeds)
    finally:
        release.touch()  # let the straggling worker go
    # Only the straggler fails: its chunk-mates and the chunks queued behind it ran again
    # one per task.
    assert [f.index for f in got.failures] == [slow]
    assert all("deadline" in f.error for f in got.failures)
    ok = ~got.failed_mask
    assert np.array_equal(got.returns[ok], X[ok, 0])
    assert np.all(np.isnan(got.returns[~ok]))


def test_hung_candidate_on_a_connected_cluster_fails_alone_and_its_worker_is_avoided(
    client, tmp_path
):
    """A connected cluster's workers are not ours to restart: the one whose thread is stuck
    in the candidate gets no task until the thread is free, so the next generation is not
    queued behind it."""
    dist, seeds = _problem(n=16)
    X = dist.decode(seeds)
    slow = 5
    release = tmp_path / "release"
    task = FunctionTask(SlowOn(float(X[slow, 0]), str(release)))
    try:
        with DaskEvaluator(
            task, client=client, candidate_timeout_seconds=1.0, on_failure="mark"
        ) as ev:
            got = ev.evaluate(dist, seeds)
            assert [f.index for f in got.failures] == [slow]
            assert "candidate_timeout_seconds=1" in got.failures[0].error
            assert ev.link.hung.avoided  # the worker still running the candidate
            good = np.setdiff1d(np.arange(seeds.size), [slow])
            start = time.monotonic()
            again = ev.evaluate(dist.replace(generation=5), seeds[good])
            assert again.failures == [] and np.array_equal(again.returns, X[good, 0])
            assert time.monotonic() - start < 10
            release.touch()  # the thread is free again: the worker comes back
            deadline = time.monotonic() + 20
            while ev.link.hung.avoided and time.monotonic() < deadline:
                time.sleep(0.2)
                ev.link.hung.allowed_workers(refresh=True)
            assert not ev.link.hung.avoided
    finally:
        release.touch()


def _start(args: list[str], tmp_path: Path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def _evaluate_in_thread(ev, dist, seeds, **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["evaluation"] = ev.evaluate(dist, seeds, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@contextlib.contextmanager
def _hand_started(tmp_path: Path, worker_args: list[str], graceful: bool = False):
    """A scheduler and one worker started by hand (`dask scheduler`, `dask worker`) on
    loopback; yields ``(scheduler process, address)``. Both are stopped on the way out, the
    worker first by SIGTERM when ``graceful`` (a clean exit closes its node pools)."""
    import json

    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        tmp_path, "scheduler",
    )
    worker = None
    try:
        stop = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < stop:
            time.sleep(0.05)
        worker = _start(
            ["distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", *worker_args],
            tmp_path, "worker",
        )
        yield scheduler, json.loads(scheduler_file.read_text())["address"]
    finally:
        if graceful and worker is not None and worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for proc in (worker, scheduler):
            if proc is not None:
                _stop(proc)


def test_scheduler_hung_or_gone_is_a_clear_error_not_a_hang(tmp_path):
    """A scheduler and a worker started by hand (`dask scheduler`, `dask worker`)."""
    with _hand_started(tmp_path, ["--nworkers", "1"]) as (scheduler, address):
        dist, seeds = _problem(n=16)
        X = dist.decode(seeds)
        release = tmp_path / "release"
        task = FunctionTask(SlowOn(float(X[3, 0]), str(release)))
        # scheduler_timeout: long enough for a healthy scheduler process on a loaded
        # 2-core machine (2 s was not), short enough to keep the hung case quick.
        ev = DaskEvaluator(task, address=address, connect_timeout=5, scheduler_timeout=8)
        try:
            ev.client.wait_for_workers(1, timeout=60)
            release.touch()
            got = ev.evaluate(dist, seeds)  # a remote cluster works as a local one
            assert np.array_equal(got.returns, X[:, 0])
            release.unlink()

            # Hung: the process is there, its sockets open, but it never answers.
            thread, outcome = _evaluate_in_thread(ev, dist.replace(generation=5), seeds)
            time.sleep(1.0)
            os.kill(scheduler.pid, signal.SIGSTOP)
            thread.join(timeout=90)
            assert not thread.is_alive(), "evaluate() hung with a hung scheduler"
            error = outcome.get("error")
            assert isinstance(error, EvaluationError), outcome
            assert "generation 5" in str(error) and "scheduler_timeout=8" in str(error)
            assert "checkpoint is intact" in str(error)

            # Gone mid-generation: the connection closes.
            os.kill(scheduler.pid, signal.SIGCONT)
            thread, outcome = _evaluate_in_thread(ev, dist.replace(generation=6), seeds)
            time.sleep(1.0)
            scheduler.kill()
            thread.join(timeout=90)
            assert not thread.is_alive(), "evaluate() hung after the scheduler died"
            error = outcome.get("error")
            assert isinstance(error, EvaluationError), outcome
            assert "lost the Dask scheduler" in str(error) and "generation 6" in str(error)
            with pytest.raises(EvaluationError, match="lost the Dask scheduler"):
                ev.evaluate(dist, seeds)  # and stays clear afterwards
        finally:
            release.touch()
            ev.close()


def test_a_hung_scheduler_never_hangs_a_straggler_tolerant_node_mode_run_nor_its_close(tmp_path):
    """Stragglers and node mode asked the scheduler which workers to use and told the nodes
    to close their pools without a time limit: a hung scheduler blocked evaluate() and then
    close() for good. Both must end within about scheduler_timeout."""
    from asktell.strategies import OpenAIES

    # no nanny: the worker is not daemonic, so it may start node pools
    with _hand_started(tmp_path, ["--no-nanny"], graceful=True) as (scheduler, address):
        es = OpenAIES(num_params=4, population_size=16, seed=0, noise=NOISE)
        ev = DaskEvaluator(FunctionTask(first_coordinate), address=address, connect_timeout=5,
                           scheduler_timeout=8, node_processes=1,
                           stragglers={"min_candidates": 12})
        try:
            ev.client.wait_for_workers(1, timeout=60)
            for _ in range(2):
                es.tell(ev.evaluate(es.distribution, es.ask(), partial=True))
            os.kill(scheduler.pid, signal.SIGSTOP)
            thread, outcome = _evaluate_in_thread(ev, es.distribution, es.ask(), partial=True)
            thread.join(timeout=90)
            assert not thread.is_alive(), "evaluate() hung with a hung scheduler"
            assert isinstance(outcome.get("error"), EvaluationError), outcome
            closing = threading.Thread(target=ev.close, daemon=True)
            started = time.monotonic()
            closing.start()
            closing.join(timeout=90)
            assert not closing.is_alive(), "close() hung with a hung scheduler"
            assert time.monotonic() - started < 60
        finally:
            os.kill(scheduler.pid, signal.SIGCONT)
            ev.close()


def test_a_task_workers_cannot_load_is_a_clear_error(client):
    dist, seeds = _problem()
    with DaskEvaluator(UnloadableOnWorkers(), client=client, on_failure="mark") as ev:
        with pytest.raises(EvaluationError, match="my_private_env.*installed on every worker"):
            ev.evaluate(dist, seeds)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(EvaluationError, match=re.escape("'tcp://127.0.0.1:9'")):
        DaskEvaluator(FunctionTask(first_coordinate), address="tcp://127.0.0.1:9", connect_timeout=1)


# ------------------------------------------------------------------------- arguments


def test_a_dashboard_port_without_a_host_stays_on_loopback():
    """":8787" bound every interface while the link said 127.0.0.1."""
    assert DaskEvaluatorConfig(dashboard=":8787").dashboard == "127.0.0.1:8787"
    assert DaskEvaluatorConfig(dashboard="localhost:8787").dashboard == "localhost:8787"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"retries": -1}, "retries: Input should be greater than or equal to 0; got -1"),
        ({"retries": True}, "retries: Input should be an integer; got True"),
        ({"on_failure": "ignore"}, "on_failure: Input should be 'raise' or 'mark'; got 'ignore'"),
        ({"chunks_per_worker": 0}, "chunks_per_worker: Input should be greater than or equal to 1; got 0"),
        ({"chunks_per_worker": "many"}, "chunks_per_worker: Input should be 'auto'; got 'many'"),
        ({"deadline_seconds": 0}, "deadline_seconds: Input should be greater than 0; got 0"),
        ({"worker_timeout": float("inf")}, "worker_timeout: Input should be a finite number; got inf"),
        ({"num_workers": 0}, "num_workers: Input should be greater than or equal to 1; got 0"),
        ({"dashboard": "yes"}, "dashboard: Input should be true, false or a 'host:port' address; got 'yes'"),
        ({"client": object()}, "client: Input should be a distributed.Client; got <object"),
        (
            {"address": "tcp://x:1", "num_workers": 2},
            "'num_workers' applies only to the embedded cluster, not to the cluster at 'tcp://x:1'",
        ),
        ({"address": "tcp://x:1", "client": "c"}, "a 'client' or an 'address', not both"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        DaskEvaluator(FunctionTask(first_coordinate), **kwargs)


def test_embedded_only_options_are_refused_with_a_given_client(client):
    with pytest.raises(ConfigError, match=re.escape(
        "'threads_per_worker', 'allowed_failures' apply only to the embedded cluster, not to "
        "the given client's cluster"
    )):
        DaskEvaluator(FunctionTask(first_coordinate), client, threads_per_worker=2, allowed_failures=0)


def test_without_distributed_the_error_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=re.escape('pip install -e ".[dask]"')):
        DaskEvaluator(FunctionTask(first_coordinate))


def test_config_is_registered_validated_and_builds(client):
    assert EVALUATORS.get("dask") is DaskEvaluator
    assert DaskEvaluator.config_class is DaskEvaluatorConfig
    for name, field in DaskEvaluatorConfig.model_fields.items():
        assert name == "kind" or field.description, name
    with pytest.raises(ValueError, match=re.escape(
        "'num_workers' applies only to the embedded cluster, not to the cluster at 'tcp://h:8786'"
    )):
        DaskEvaluatorConfig(address="tcp://h:8786", num_workers=4)
    with pytest.raises(ValueError, match="must be given together"):
        DaskEvaluatorConfig(tls_ca_file="ca.pem")
    files = {"tls_ca_file": "ca.pem", "tls_cert": "c.pem", "tls_key": "k.pem"}
    with pytest.raises(ValueError, match="tls_\\* files or a 'security', not both"):
        DaskEvaluatorConfig(**files, security=distributed.Security())
    # the files secure a tls:// address: the embedded cluster (and tcp://) does not use them,
    # and a tls:// address cannot do without them
    with pytest.raises(ValueError, match="the embedded cluster \\(no address\\) does not use them"):
        DaskEvaluatorConfig(**files)
    with pytest.raises(ValueError, match="got address 'tcp://h:1'"):
        DaskEvaluatorConfig(**files, address="tcp://h:1")
    with pytest.raises(ValueError, match="'tls://h:1'\\) needs tls_ca_file, tls_cert and tls_key"):
        DaskEvaluatorConfig(address="tls://h:1")
    with pytest.raises(ConfigError, match="evaluator.tls_ca_file: file 'ca.pem' does not exist"):
        DaskEvaluatorConfig(**files, address="tls://h:1").security_object()
    assert "client" not in DaskEvaluatorConfig().model_dump()  # Python only: not in run files
    with pytest.raises(ValueError, match="deadline_seconds"):
        DaskEvaluatorConfig(deadline_seconds=-1)
    with pytest.raises(ValueError, match="extra"):
        DaskEvaluatorConfig(workers=3)
    config = DaskEvaluatorConfig(address=client.scheduler.address, retries=2, on_failure="mark")
    dist, seeds = _problem()
    with config.build(FunctionTask(first_coordinate)) as ev:
        assert (ev.retries, ev.on_failure) == (2, "mark")
        assert np.array_equal(ev.evaluate(dist, seeds).returns, dist.decode(seeds)[:, 0])
