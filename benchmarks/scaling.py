"""Measure and project: how a generation's time grows from 2 workers to the paper's 1,440.

    python benchmarks/scaling.py episodes   # real Hopper/Humanoid rollouts -> benchmarks/data/episode_times.json
    python benchmarks/scaling.py all        # constants, loopback simulation, validation, projection
    python benchmarks/scaling.py all --quick --json out.json   # seconds; for tests and docs checks
    python benchmarks/scaling.py project    # the projection again from a stored run's constants

Salimans et al. 2017 report a near-linear speed-up to 1,440 CPU cores (80 machines x 18)
on Humanoid. This script does not have 1,440 cores; it measures the pieces of a generation
on this machine and puts them together in a model (``docs/scaling.md``):

1. ``episodes``: per-episode wall time and steps of real MuJoCo rollouts (``GymTask``,
   the default 2x64 tanh MLP, episode cap 1000) of perturbed policies around the policy's
   initial centre, in two regimes: episodes that end when the robot falls (early training)
   and episodes that always run to the 1000-step cap (``terminate_when_unhealthy=False``: the
   cost of a policy that stays up, late training).
2. constants: Dask's fixed cost per generation and cost per task (no-op generations through
   ``DaskEvaluator``), the distribution's broadcast (bytes per fetch), the driver's
   ask + tell (``OpenAIES`` directly), a local process pool's cost per candidate, node
   mode's close (its one message to the nodes, ``_scaling_close.py``).
3. a loopback simulation: ``DaskEvaluator`` on an embedded ``LocalCluster`` with W worker
   threads whose candidates only ``time.sleep`` for episode times drawn from (1), scaled down
   so a generation takes a fraction of a second; wall time, the ideal, overhead, efficiency.
4. validation: the model's prediction (constants from 2, never fitted to 3) against 3.
5. projection to 1,440 workers: one Dask task per core, and one per node (80 x 18).

This script measures (1-3) and runs the steps; the model's rules, the validation and the
projection are in ``_scaling_model.py``, the Markdown report in ``_scaling_report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
EPISODES_JSON = DATA / "episode_times.json"
RESULTS_JSON = DATA / "scaling_results.json"

# The model and the report are modules beside this script (run as a script or loaded by path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scaling_model import (  # noqa: E402
    PAPER, bench_noise, chunk_starts, fit_dask, list_schedule, node_makespan, project,
    queue_makespan, validate,
)
from _scaling_report import report  # noqa: E402
from _scaling_episodes import episodes_main  # noqa: E402
from _scaling_pool import measure_node_pool  # noqa: E402
from _scaling_tell import measure_tell  # noqa: E402
from _scaling_close import close_fits, measure_close  # noqa: E402


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------ 2. simulation


def sleep_seconds(samples, seeds: np.ndarray, scale: float) -> np.ndarray:
    """Each seed's episode time: a sample chosen by a hash of the seed, times ``scale``."""
    samples = np.asarray(samples, dtype=float)
    if samples.size == 0 or scale == 0:
        return np.zeros(len(seeds))
    mixed = np.asarray(seeds, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return samples[(mixed >> np.uint64(33)) % np.uint64(samples.size)] * scale


class SleepTask:
    """Candidates that only sleep, for the episode times :func:`sleep_seconds` gives them.

    The regime (which samples) and the scale come in ``Distribution.context``; without a
    regime a candidate costs nothing (the no-op generations that measure Dask's costs).
    Sleeping threads hold no core, so many workers fit on a small machine.
    """

    num_params = None

    def __init__(self, samples: dict[str, list[float]]):
        self.samples = {k: np.asarray(v, dtype=float) for k, v in samples.items()}

    def evaluate(self, params, seeds, distribution):
        from asktell.protocol import TaskResult

        ctx = distribution.context
        times = sleep_seconds(self.samples.get(ctx.get("regime"), []), seeds, ctx.get("scale", 0))
        # One sleep for the batch, not one per candidate: on a loaded machine every wake-up
        # waits for a core (measured here: 4 processes sleeping 8 x 25 ms took 450-610 ms),
        # a cost a CPU-bound rollout does not pay between its episodes.
        time.sleep(float(times.sum()))
        return TaskResult(np.zeros(len(seeds)), np.ones(len(seeds), dtype=np.int64))


def _generations(ev, task, workers, *, population, num_params, regime, scale, chunks_per_worker,
                 generations, nodes=None, node_local="blocks", min_candidates=None) -> dict:
    """``generations`` timed generations (after one warm-up); medians, and each one's ideal.

    ``nodes``: ``ev`` runs node mode on that many nodes of ``workers / nodes`` processes,
    each node's chunk cut into a block per process (``node_local="blocks"``) or handed out
    in a work queue (``"queue"``), closing on ``min_candidates`` (``ev``'s stragglers)."""
    from asktell import Distribution
    from asktell.noise import mirrored

    noise = bench_noise()
    ev.chunks_per_worker = chunks_per_worker
    walls, cpus, useful, scheduled, told = [], [], [], [], []
    for g in range(generations + 1):
        rng = np.random.default_rng(1000 * g + 7)
        seeds = mirrored(noise.sample_keys(rng, population // 2, num_params))
        context = {"regime": regime, "scale": scale} if regime else {}
        dist = Distribution(np.zeros(num_params), 0.02, noise, generation=g, context=context)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = ev.evaluate(dist, seeds)
        wall = time.perf_counter() - start
        cpu = time.process_time() - start_cpu
        if g == 0:
            continue  # warm-up: the task shipped, each worker's noise table built
        times = sleep_seconds(task.samples.get(regime, []), seeds, scale)
        walls.append(wall)
        cpus.append(cpu)
        # the useful work: the candidates told (a quorum drops the others)
        useful.append(float(times[result.told_mask].sum()))
        told.append(int(result.told_mask.sum()))
        if nodes is None:
            starts = chunk_starts(population, workers * chunks_per_worker)
            scheduled.append(list_schedule(np.add.reduceat(times, starts), workers))
        elif node_local == "queue":
            scheduled.append(queue_makespan(times, nodes, workers // nodes,
                                            min_candidates=min_candidates)[0])
        else:
            scheduled.append(node_makespan(times, nodes, workers // nodes))
    wall = statistics.median(walls)
    return {
        "mode": "core" if nodes is None else "node",
        "nodes": nodes,
        "workers": workers,
        "regime": regime or "no-op",
        "scale": scale,
        "population": population,
        "num_params": num_params,
        "chunks_per_worker": chunks_per_worker,
        "tasks": (nodes or workers) * chunks_per_worker,
        "wall_s": wall,
        "walls_s": walls,
        # CPU of this process: the client and the embedded scheduler (a LocalCluster's
        # scheduler runs in the process that starts it)
        "driver_cpu_s": statistics.median(cpus),
        "useful_s": statistics.median(useful),
        "balanced_s": statistics.median(useful) / workers,
        "scheduled_s": statistics.median(scheduled),
        "overhead_s": statistics.median(np.subtract(walls, scheduled)),
        "efficiency": statistics.median(np.divide(useful, np.multiply(walls, workers))),
        **({} if nodes is None else {"node_local": node_local, "piece": 1}),
        **({} if min_candidates is None else {"min_candidates": min_candidates,
                                             "told": statistics.median(told)}),
    }


def simulate(samples: dict, regimes: dict, args) -> tuple[list[dict], list[dict], dict]:
    """No-op and sleeping generations on loopback clusters of each size in ``args.workers``.

    Returns the no-op points, the sleep points and the broadcast measurement."""
    import cloudpickle

    from asktell.evaluators import DaskEvaluator

    if __name__ != "__main__":  # imported by a test: workers cannot import this file
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    task = SleepTask(samples)
    noop, sleeps, broadcast = [], [], {}
    G, N = args.generations, args.num_params
    for W in args.workers:
        procs = min(W, args.max_processes)
        with DaskEvaluator(task, num_workers=procs, threads_per_worker=W // procs) as ev:
            for cpw in args.noop_chunks:
                noop.append(_generations(ev, task, W, population=max(2 * W * cpw, 2 * W),
                                         num_params=N, regime=None, scale=0.0,
                                         chunks_per_worker=cpw, generations=G))
                _show("no-op", noop[-1])
            for regime, scale in regimes.items():
                for cpw in args.sim_chunks:
                    sleeps.append(_generations(ev, task, W, population=args.per_worker * W,
                                               num_params=N, regime=regime, scale=scale,
                                               chunks_per_worker=cpw, generations=G))
                    sleeps[-1]["processes"] = procs
                    _show("sleep", sleeps[-1])
            if W == args.workers[-1]:
                broadcast = _measure_broadcast(ev, procs, args)
    sleeps += _simulate_nodes(task, regimes, args)
    return noop, sleeps, broadcast


def _simulate_nodes(task, regimes: dict, args) -> list[dict]:
    """Node mode (``node_processes``) on ``args.nodes`` loopback nodes, an embedded cluster
    per local pool size, and with ``args.node_quorum`` one more per size closing on that
    share of the population; empty when this asktell has no node mode.

    The work queue hands a node's local processes one candidate at a time here: nodeq's
    ``piece_bounds`` takes pieces of at most 20 ms of work (``PIECE_SECONDS``) once a
    candidate's time is known, and the candidates sleep 25 ms on average.

    (Not one cluster shared by evaluators of each size: a second node-mode evaluator on
    the first one's client was measured here at 845 ms per generation where its own
    cluster took 229 ms, 8 processes x 2 nodes, 25 ms candidates; reported, not explained.)"""
    from asktell.evaluators import DaskEvaluator
    from asktell.evaluators.dask import DaskEvaluatorConfig

    if "node_processes" not in DaskEvaluatorConfig.model_fields or not args.node_processes:
        return []
    try:  # nodeq's work queue
        from asktell.evaluators._vector_pool import piece_bounds  # noqa: F401

        local = "queue"
    except ImportError:
        local = "blocks"
    points = []
    quorums = [None] + ([args.node_quorum] if args.node_quorum and local == "queue" else [])
    for k in args.node_processes:
        W = args.nodes * k
        population = args.per_worker * W
        for share in quorums:
            need = None if share is None else max(1, round(share * population))
            extra = {} if need is None else {"stragglers": {"min_candidates": need}}
            with DaskEvaluator(task, num_workers=args.nodes, node_processes=k, **extra) as ev:
                for regime, scale in regimes.items():
                    points.append(_generations(
                        ev, task, W, population=population, num_params=args.num_params,
                        regime=regime, scale=scale, chunks_per_worker=1,
                        generations=args.generations, nodes=args.nodes, node_local=local,
                        min_candidates=need))
                    points[-1]["processes"] = args.nodes
                    _show("node", points[-1])
    return points


def _measure_broadcast(ev, procs, args) -> dict:
    """Seconds per byte to ship a distribution as ``DaskEvaluator`` does (the argument of a
    tiny task, client -> scheduler -> one worker) and have every worker process fetch it (one
    task per process that depends on it); a big centre against a small one."""
    from asktell import Distribution
    from asktell.evaluators._dask_worker import identity

    client = ev.client
    workers = list(client.scheduler_info()["workers"])
    small, big = args.num_params, args.broadcast_params
    walls: dict[int, list[float]] = {small: [], big: []}
    for g in range(2 * (args.generations + 1)):
        n = (small, big)[g % 2]
        dist = Distribution(np.zeros(n), 0.02, bench_noise(), generation=g)
        start = time.perf_counter()
        with warnings.catch_warnings():  # a big graph, on purpose (as DaskEvaluator does)
            warnings.filterwarnings("ignore", message="Sending large graph")
            held = client.submit(identity, dist, pure=False)
        uses = [client.submit(_num_params, held, workers=[w], pure=False) for w in workers]
        client.gather(uses)
        if g >= 2:  # the first of each size is a warm-up
            walls[n].append(time.perf_counter() - start)
        del held, uses
    sizes = {n: len(pickle.dumps(Distribution(np.zeros(n), 0.02, bench_noise()))) for n in walls}
    moved = (sizes[big] - sizes[small]) * (2 + len(workers))
    extra = statistics.median(walls[big]) - statistics.median(walls[small])
    out = {"processes": len(workers), "bytes": sizes, "extra_wall_s": extra,
           "broadcast_s_per_byte": max(extra, 0.0) / moved}
    print(f"broadcast: {sizes[big]:,} B distribution to {len(workers)} processes: "
          f"+{extra * 1e3:.1f} ms -> {1 / max(out['broadcast_s_per_byte'], 1e-12) / 1e6:,.0f} "
          "MB/s", flush=True)
    return out


def _num_params(distribution) -> int:
    return distribution.num_params


def _show(what, p) -> None:
    print(f"{what:5s} W={p['workers']:3d} nodes={p['nodes'] or '-'} {p['regime']:15s} chunks/worker={p['chunks_per_worker']:2d} "
          f"tasks={p['tasks']:4d} wall {p['wall_s'] * 1e3:8.1f} ms  scheduled "
          f"{p['scheduled_s'] * 1e3:7.1f} ms  efficiency {p['efficiency']:.3f}", flush=True)


# ------------------------------------------------------------------ 3. other constants


def measure_driver(sizes, repeats: int) -> dict:
    """``OpenAIES`` ask + tell + pickling the distribution (what the driver does per
    generation besides waiting), timed at each ``(population, num_params)``."""
    from asktell.noise import NoiseTable
    from asktell.strategies import OpenAIES

    noise = NoiseTable(seed=0)
    noise.table  # noqa: B018 - build it before timing
    rng = np.random.default_rng(0)
    points = []
    for P, N in sizes:
        es = OpenAIES(num_params=N, population_size=P, noise=noise, seed=0)
        totals = []
        es.ask()  # warm-up: first-call costs (imports, the optimiser's buffers)
        es.tell(rng.standard_normal(P))
        for _ in range(repeats):
            start = time.perf_counter()
            es.ask()
            pickle.dumps(es.distribution)
            es.tell(rng.standard_normal(P))
            totals.append(time.perf_counter() - start)
        # the fastest repeat: the machine is shared, and contention only ever adds time
        points.append({"population": P, "num_params": N, "seconds": min(totals)})
        print(f"driver P={P:6d} N={N:7d}: {points[-1]['seconds'] * 1e3:8.1f} ms", flush=True)
    x = np.array([p["population"] * p["num_params"] for p in points], dtype=float)
    y = np.array([p["seconds"] for p in points])
    per_pn, intercept = np.polyfit(x, y, 1) if len(points) > 1 else (y[0] / x[0], 0.0)
    return {"points": points, "intercept_s": max(float(intercept), 0.0),
            "s_per_pop_param": max(float(per_pn), 0.0)}


def _noop(_):
    return None


def measure_pool(items: int) -> float:
    """Seconds per candidate a plain ``multiprocessing`` pool adds (no-op items, one at a time):
    the stand-in for node mode's local dispatch."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_noop, range(8))
        start = time.perf_counter()
        for _ in pool.imap_unordered(_noop, range(items), chunksize=1):
            pass
        return (time.perf_counter() - start) / items


def _pool_constants(quick: bool) -> dict:
    """Node mode's local dispatch: ``pool_per_candidate_s``, what a piece adds to its
    process's time, and ``node_pipe_s_per_byte``, the distribution's pipe to a process;
    from ``nodeq``'s pool where it has a work queue, else a plain ``multiprocessing.Pool``."""
    from asktell.evaluators._vector_pool import WorkerPool

    if "pieces_per_worker" not in WorkerPool.__init__.__code__.co_varnames:
        return {"pool_per_candidate_s": measure_pool(200 if quick else 2000)}
    pool = measure_node_pool(40 if quick else 400, 20_000 if quick else 159_505,
                             2 if quick else 5)
    # With 2 processes, a piece every per_piece_s of wall means each process waits
    # 2 x per_piece_s per piece (validation). The projection charges a piece the CPU the
    # node's dispatcher spends on it, and the pipe its CPU per byte (a core of its own).
    return {"node_pool": pool, "pool_per_candidate_s": pool["per_piece_s"] * pool["processes"],
            "pool_per_candidate_cpu_s": pool["per_piece_cpu_s"],
            "node_pipe_s_per_byte": pool["s_per_byte"],
            "node_pipe_cpu_s_per_byte": pool["cpu_s_per_byte"]}


# ------------------------------------------------------------------ 4. run and report


def _driver_sizes(quick: bool) -> list[tuple[int, int]]:
    """(population, parameters) at which the driver is timed: the paper's generation and
    smaller ones (the 2x64 policy's 27,601 parameters, a tenth of the population)."""
    if quick:
        return [(100, 1000), (200, 2000)]
    from asktell.gym import GymTask

    paper_n = GymTask("Humanoid-v5", hidden_sizes=PAPER["hidden_sizes"]).num_params
    return [(1000, 27601), (1000, paper_n), (10_000, 27601), (10_000, paper_n)]


def all_main(args) -> dict:
    episodes = json.loads(Path(args.episodes_in).read_text())
    key = "cpu_seconds" if args.episode_time == "cpu" else "seconds"
    samples = {k: s[key] for k, s in episodes["samples"].items()}
    regimes = {r: args.mean_sleep / float(np.mean(samples[r])) for r in args.regimes}
    start = time.perf_counter()
    machine = _machine()
    noop, sleeps, broadcast = simulate(samples, regimes, args)
    fixed, per_task = fit_dask(noop)
    cpu_fixed, cpu_per_task = fit_dask(noop, "driver_cpu_s")
    constants = {
        "fixed_s": fixed,
        "per_task_s": per_task,
        "cpu_fixed_s": cpu_fixed,
        "per_task_cpu_s": cpu_per_task,
        "broadcast_s_per_byte": broadcast["broadcast_s_per_byte"],
        "broadcast": broadcast,
        **_pool_constants(args.quick),
        "driver": measure_driver(_driver_sizes(args.quick), 2 if args.quick else 3),
    }
    res = {
        "command": "python benchmarks/scaling.py " + " ".join(args.argv),
        "machine": machine,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "settings": {k: v for k, v in vars(args).items() if k != "argv"},
        "episodes_from": {"file": str(args.episodes_in), "date_utc": episodes["date_utc"]},
        "regime_scales": regimes,
        "constants": constants,
        "noop": noop,
        "simulation": sleeps,
    }
    constants["tell"] = _measure_tell(constants, args.quick)
    constants["close"] = _measure_close(args.quick)
    res["validation"] = validate(constants, sleeps, regimes, samples, args.trials * 4)
    res["projection"] = project(constants, samples, constants["tell"], args.trials,
                                piece=args.piece, **_QUICK_QUEUE if args.quick else {})
    res["seconds"] = time.perf_counter() - start
    res["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    res["report"] = report(res)
    print("\n" + res["report"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float) + "\n")
    return res


#: ``--quick``'s projection: node mode's work queue over 1 generation after 1 (the full run:
#: ``max(4, trials // 5)`` after 3), for tests of the report's shape.
_QUICK_QUEUE = {"steady": 1, "warmup": 1}


def _measure_tell(constants: dict, quick: bool) -> dict:
    """The distributed tell's constants (``_scaling_tell``) at the paper's generation, with
    the date, the load average and the loopback broadcast rate (its model's check)."""
    from asktell.gym import GymTask

    load = os.getloadavg()[0]
    size = (200, 2000) if quick else (
        PAPER["population"], GymTask("Humanoid-v5", hidden_sizes=PAPER["hidden_sizes"]).num_params)
    tell = measure_tell(*size, quick=quick)
    tell["date_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    tell["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    tell["loopback_bytes_per_s"] = 1 / max(constants["broadcast_s_per_byte"], 1e-12)
    return tell


def _measure_close(quick: bool) -> dict:
    """Node mode's close (``_scaling_close``): one message to the nodes, and the stop
    message + harvest tasks it replaced, with the date and the load average."""
    load = os.getloadavg()[0]
    close = measure_close((1, 2) if quick else (2, 4, 8, 16), repeats=3 if quick else 40)
    close["measured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    close["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return close


def project_main(args) -> dict:
    """The projection again, from the constants of a stored full run (no measuring)."""
    path = Path(args.json or RESULTS_JSON)
    res = json.loads(path.read_text())
    episodes = json.loads(Path(args.episodes_in).read_text())
    key = "cpu_seconds" if res["settings"]["episode_time"] == "cpu" else "seconds"
    samples = {k: s[key] for k, s in episodes["samples"].items()}
    if args.remeasure_driver:  # e.g. after a faster driver is merged
        res["constants"]["driver"] = measure_driver(_driver_sizes(args.quick), 2 if args.quick else 3)
        res["driver_remeasured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    if args.remeasure_tell or "tell" not in res["constants"]:
        res["constants"]["tell"] = _measure_tell(res["constants"], args.quick)
    if args.remeasure_close or "close" not in res["constants"]:
        res["constants"]["close"] = _measure_close(args.quick)
    close_fits(res["constants"]["close"])  # the stored medians, fitted by today's rule
    if args.remeasure_pool:  # e.g. once node mode has a work queue: validate again too
        res["constants"].update(_pool_constants(args.quick))
        res["pool_remeasured_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        res["pool_remeasured_load_average_1min"] = round(os.getloadavg()[0], 2)
        res["validation"] = validate(res["constants"], res["simulation"], res["regime_scales"],
                                     samples, args.trials * 4)
    if args.spread != 1.0:  # a what-if: episode times closer to (or further from) their mean
        if path == RESULTS_JSON:
            raise SystemExit("--spread is a what-if: give --json a copy of the stored results")
        samples = {k: float(np.mean(v)) + args.spread * (np.asarray(v) - np.mean(v))
                   for k, v in samples.items()}
        res["projection_spread"] = args.spread
    res["projection"] = project(res["constants"], samples, res["constants"]["tell"], args.trials,
                                piece=args.piece, **_QUICK_QUEUE if args.quick else {})
    res["report"] = report(res)
    print(res["report"])
    path.write_text(json.dumps(res, indent=1, default=float) + "\n")
    return res


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["episodes", "all", "project"])
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds: 2 workers, 2 generations, small sizes (for tests)")
    parser.add_argument("--episodes-in", default=str(EPISODES_JSON))
    parser.add_argument("--episodes-out", default=str(EPISODES_JSON))
    parser.add_argument("--json", default=None,
                        help=f"write the results here (default for a full run: {RESULTS_JSON})")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--max-processes", type=int, default=4,
                        help="worker processes at most; more workers are threads in them")
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--per-worker", type=int, default=8, help="candidates per worker")
    parser.add_argument("--mean-sleep", type=float, default=0.025,
                        help="episode times are scaled so their mean is this many seconds")
    parser.add_argument("--episode-time", choices=["cpu", "wall"], default="cpu",
                        help="episode times to use: CPU time (a core of its own) or wall time "
                        "(this shared machine)")
    parser.add_argument("--regimes", nargs="+", default=["humanoid_falls", "humanoid_full"])
    parser.add_argument("--noop-chunks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sim-chunks", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--nodes", type=int, default=2, help="node mode: loopback nodes")
    parser.add_argument("--node-processes", type=int, nargs="*", default=[2, 4, 8],
                        help="node mode: local processes per node to simulate (none: skip)")
    parser.add_argument("--node-quorum", type=float, default=0.9,
                        help="node mode with a work queue: also simulate closing on this share "
                        "of the population (0: skip)")
    parser.add_argument("--num-params", type=int, default=1000)
    parser.add_argument("--broadcast-params", type=int, default=1 << 21)
    parser.add_argument("--trials", type=int, default=50, help="Monte Carlo trials")
    parser.add_argument("--remeasure-driver", action="store_true",
                        help="project: time the driver again (the rest from the stored run)")
    parser.add_argument("--remeasure-tell", action="store_true",
                        help="project: measure the distributed tell's constants again")
    parser.add_argument("--remeasure-close", action="store_true",
                        help="project: measure node mode's close (its message to the nodes) "
                        "again")
    parser.add_argument("--remeasure-pool", action="store_true",
                        help="project: measure node mode's local pool again, and validate again")
    parser.add_argument("--spread", type=float, default=1.0,
                        help="project (what-if, into a copy given by --json): scale each "
                        "episode time's distance from the mean by this")
    parser.add_argument("--piece", type=int, default=1,
                        help="projection: candidates per piece of node mode's work queue")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.workers, args.max_processes, args.generations = [2], 1, 2
        args.per_worker, args.regimes, args.noop_chunks = 4, ["humanoid_falls"], [1, 4]
        args.sim_chunks, args.broadcast_params, args.trials = [1], 1 << 16, 5
        args.nodes, args.node_processes, args.node_quorum = 1, [2], 0.75
    elif args.what == "all" and args.json is None:
        args.json = str(RESULTS_JSON)
    if args.what == "episodes":
        episodes_main(args, _machine(), EPISODES_JSON)
    elif args.what == "project":
        project_main(args)
    else:
        all_main(args)


if __name__ == "__main__":
    main()
