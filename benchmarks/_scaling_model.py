"""The generation-time model of ``benchmarks/scaling.py``: pure rules, then the projection.

A generation's time is ``fixed + per_task x tasks + broadcast + rollouts + driver``
(:func:`predict`); the rollouts are a Monte Carlo of how Dask list-schedules chunks onto
worker threads, or of node mode's blocks per local process (:func:`expected_rollouts`).
:func:`validate` sets the model's prediction beside the loopback simulation's walls and
:func:`project` applies it to the paper's 1,440 workers. Measuring is the script's business
(``scaling.py``); the tests check these rules (``tests/test_scaling_benchmark.py``).
"""

from __future__ import annotations

import heapq
import pickle

import numpy as np

#: The paper's Humanoid run, as the public code for the paper configures it
#: (openai/evolution-strategies-starter, configurations/humanoid.json): a generation is at
#: least 10,000 episodes (5,000 mirrored pairs) and 100,000 steps; a 2x256 tanh MLP; the
#: environment's own episode limit (1000 steps). 1,440 cores = 80 machines x 18.
PAPER = {
    "population": 10_000,
    "hidden_sizes": [256, 256],
    "episode_cap": 1000,
    "workers": 1440,
    "nodes": 80,
    "cores_per_node": 18,
}
#: Assumed for the projection, not measured here: the bandwidth at which one worker (or
#: node) serves the distribution to the others (10 Gbit/s Ethernet).
ASSUMED_LINK_BYTES_PER_S = 1.25e9


def bench_noise():
    """The noise table of the benchmark's distributions (its size sets their pickled bytes)."""
    from asktell.noise import NoiseTable

    return NoiseTable(seed=0, size=1 << 22)


# ------------------------------------------------------------------ scheduling rules


def list_schedule(chunk_seconds, workers: int) -> float:
    """Makespan when chunks go, in order, to whichever worker frees up first.

    Dask's scheduler queues tasks and hands the next one to the first free thread
    (``distributed.scheduler.worker-saturation``), so a generation's chunks are list-scheduled.
    """
    if len(chunk_seconds) <= workers:
        return float(max(chunk_seconds, default=0.0))
    free = [0.0] * workers
    for t in chunk_seconds:
        heapq.heapreplace(free, free[0] + t)
    return max(free)


def _finish_times(chunk_seconds, workers: int) -> np.ndarray:
    """When each chunk finishes under :func:`list_schedule`."""
    free = [(0.0, w) for w in range(workers)]
    done = np.empty(len(chunk_seconds))
    for i, t in enumerate(chunk_seconds):
        start, w = heapq.heappop(free)
        done[i] = start + t
        heapq.heappush(free, (done[i], w))
    return done


def chunk_starts(population: int, num_chunks: int) -> np.ndarray:
    """Where ``DaskEvaluator`` cuts a generation (mirrored pairs stay together)."""
    from asktell.evaluators.dask import chunk_bounds

    return np.array([a for a, _ in chunk_bounds(population, num_chunks)])


def expected_rollouts(
    samples: np.ndarray,
    population: int,
    workers: int,
    *,
    chunks: int | None = None,
    nodes: int | None = None,
    local: str = "blocks",
    dispatch: float = 0.0,
    setup: float = 0.0,
    quorum: float = 1.0,
    trials: int = 50,
    seed: int = 0,
) -> float:
    """Mean over ``trials`` of the generation's rollout makespan (Monte Carlo).

    Per core (``chunks`` tasks): each chunk's time is the sum of its candidates' episode
    times drawn from ``samples``; the chunks are list-scheduled onto ``workers`` threads.

    Per node (``nodes`` tasks, ``workers / nodes`` local processes each): ``local="blocks"``
    is what node mode does (the node's chunk cut into one contiguous block per process,
    ``np.array_split``; the node waits for its slowest block, plus ``dispatch`` per block
    sent); ``local="queue"`` is the alternative of a work queue on the node (candidates one
    at a time to whichever process is free, ``dispatch`` each). Either way the node first
    spends ``setup`` (the distribution to its processes). The generation waits for the
    slowest node or, with ``quorum`` < 1, closes once the finished nodes hold that share of
    the population (a straggler-tolerant generation that drops whole late nodes). Per core,
    ``quorum`` likewise closes once the finished chunks hold that share.
    """
    rng = np.random.default_rng(seed)
    draws = rng.choice(np.asarray(samples, dtype=float), size=(trials, population))
    out = []
    if nodes is None:
        starts = chunk_starts(population, chunks or workers)
        sizes = np.diff([*starts, population])
        for sums in np.add.reduceat(draws, starts, axis=1):
            if quorum >= 1:
                out.append(list_schedule(sums, workers))
                continue
            done = _finish_times(sums, workers)
            order = np.argsort(done)
            last = int(np.searchsorted(np.cumsum(sizes[order]), quorum * population - 1e-9))
            out.append(done[order[min(last, len(order) - 1)]])
        return float(np.mean(out))
    cores = workers // nodes
    starts = chunk_starts(population, nodes)
    bounds = list(zip(starts, [*starts[1:], population]))
    for row in draws:
        if local == "blocks":
            node_times = [max(b.sum() for b in np.array_split(row[a:z], cores)) + cores * dispatch
                          for a, z in bounds]
        else:
            node_times = [list_schedule(row[a:z] + dispatch, cores) for a, z in bounds]
        order = np.argsort(node_times)
        held = np.cumsum(np.diff([*starts, population])[order])
        last = min(int(np.searchsorted(held, quorum * population - 1e-9)), len(order) - 1)
        out.append(node_times[order[last]] + setup)
    return float(np.mean(out))


def predict(constants: dict, *, tasks: int, fetchers: int, dist_bytes: int,
            rollouts: float, driver: float = 0.0, link_bytes_per_s: float | None = None) -> dict:
    """Generation time = fixed + per_task x tasks + broadcast + rollouts + driver.

    The broadcast moves the pickled distribution client -> scheduler -> one worker, then to
    each other fetching process from that holder (an upper bound: Dask may also fetch from
    workers that got it already).
    """
    per_byte = 1.0 / link_bytes_per_s if link_bytes_per_s else constants["broadcast_s_per_byte"]
    terms = {
        "fixed": constants["fixed_s"],
        "tasks": constants["per_task_s"] * tasks,
        "broadcast": per_byte * dist_bytes * (2 + fetchers),
        "rollouts": rollouts,
        "driver": driver,
    }
    return {**terms, "total": sum(terms.values())}


def node_makespan(times: np.ndarray, nodes: int, cores: int) -> float:
    """Node mode's makespan for these episode times: each node's chunk in one contiguous
    block per local process; the slowest block of the slowest node."""
    starts = chunk_starts(times.size, nodes)
    return max(max(b.sum() for b in np.array_split(chunk, cores))
               for chunk in np.split(times, starts[1:]))


# ------------------------------------------------------------------ fit, validate, project


def driver_seconds(driver: dict, population: int, num_params: int) -> tuple[float, str]:
    """Measured at that size if it was, else the straight-line fit."""
    for p in driver["points"]:
        if (p["population"], p["num_params"]) == (population, num_params):
            return p["seconds"], "measured"
    return driver["intercept_s"] + driver["s_per_pop_param"] * population * num_params, "fit"


def fit_dask(noop: list[dict], key: str = "wall_s") -> tuple[float, float]:
    """No-op generations: ``key`` (wall, or the driver process's CPU) = fixed + per_task x
    tasks (least squares)."""
    tasks = np.array([p["tasks"] for p in noop], dtype=float)
    walls = np.array([p[key] for p in noop])
    if np.ptp(tasks) == 0:
        return float(walls.mean()), 0.0
    # Weighted by 1/value, i.e. least relative error: on a shared machine the noise scales
    # with the time measured (contention slows a long generation as much as a short one), so
    # plain least squares lets the longest no-op generations set the fixed cost. (The first
    # full run fitted unweighted: fixed 86 ms where 2-task generations took 24 ms.)
    per_task, fixed = np.polyfit(tasks, walls, 1, w=1 / np.maximum(walls, 1e-6))
    # Noise on a shared machine can tilt a short fit below zero; a cost is never negative.
    return max(float(fixed), 0.0), max(float(per_task), 0.0)


def dist_bytes(num_params: int) -> int:
    from asktell import Distribution

    return len(pickle.dumps(Distribution(np.zeros(num_params), 0.02, bench_noise())))


def validate(constants: dict, sleeps: list[dict], regimes: dict, samples: dict, trials: int):
    """The model's prediction for each simulated point, from constants not fitted to it."""
    for p in sleeps:
        scaled = np.asarray(samples[p["regime"]]) * regimes[p["regime"]]
        if p["mode"] == "node":
            rollouts = expected_rollouts(scaled, p["population"], p["workers"], nodes=p["nodes"],
                                         dispatch=constants["pool_per_candidate_s"],
                                         trials=trials)
        else:
            rollouts = expected_rollouts(scaled, p["population"], p["workers"],
                                         chunks=p["tasks"], trials=trials)
        pred = predict(constants, tasks=p["tasks"], fetchers=p["processes"],
                       dist_bytes=dist_bytes(p["num_params"]), rollouts=rollouts)
        p["predicted_s"] = pred["total"]
        p["predicted_terms"] = pred
        p["error"] = pred["total"] / p["wall_s"] - 1
        # The same model with this run's own draws instead of the expectation: how well the
        # overhead terms alone predict.
        p["error_own_draws"] = (pred["total"] - rollouts + p["scheduled_s"]) / p["wall_s"] - 1
    errors = [abs(p["error"]) for p in sleeps]
    return {
        "median_abs_error": float(np.median(errors)),
        "max_abs_error": float(np.max(errors)),
        "median_abs_error_own_draws": float(np.median([abs(p["error_own_draws"]) for p in sleeps])),
    }


def project(constants: dict, samples: dict, driver: dict, trials: int) -> dict:
    """Generation time and efficiency of the paper's Humanoid generation on 1,440 workers."""
    from asktell.evaluators.dask import auto_chunks
    from asktell.gym import GymTask

    P, W, nodes = PAPER["population"], PAPER["workers"], PAPER["nodes"]
    # A scheduler with a core of its own: what a task costs is the CPU the client and the
    # scheduler spend on it (measured), not this shared machine's wall time.
    constants = {**constants, "per_task_s": constants["per_task_cpu_s"]}
    num_params = GymTask("Humanoid-v5", hidden_sizes=PAPER["hidden_sizes"]).num_params
    size = dist_bytes(num_params)
    drive, how = driver_seconds(driver, P, num_params)
    rows = []
    for regime in ("humanoid_falls", "humanoid_full"):
        times = np.asarray(samples[regime])
        useful = P * float(times.mean())
        cpw_auto = auto_chunks(useful, W)
        # On the node, the distribution goes to each local process through a pipe (at the
        # loopback rate measured here), then each block or candidate costs a pool item.
        local = {"nodes": nodes, "dispatch": constants["pool_per_candidate_s"],
                 "setup": PAPER["cores_per_node"] * size * constants["broadcast_s_per_byte"]}
        modes = [("per core, 1 chunk per core", W, W, {"chunks": W}),
                 ("per core, 1 chunk per core, closing on 95% (what-if)", W, W,
                  {"chunks": W, "quorum": 0.95}),
                 (f"per core, 'auto': {cpw_auto} chunk(s) per core", W * cpw_auto, W,
                  {"chunks": W * cpw_auto}),
                 (f"per node ({nodes} x {PAPER['cores_per_node']}): a block per process",
                  nodes, nodes, local),
                 (f"per node ({nodes} x {PAPER['cores_per_node']}): a work queue (not built)",
                  nodes, nodes, {**local, "local": "queue"}),
                 (f"per node ({nodes} x {PAPER['cores_per_node']}): blocks, closing on 95% "
                  "(what-if)", nodes, nodes, {**local, "quorum": 0.95})]
        for name, tasks, fetchers, kw in modes:
            rollouts = expected_rollouts(times, P, W, trials=trials, **kw)
            told = kw.get("quorum", 1.0)  # candidates dropped are not useful work
            pred = predict(constants, tasks=tasks, fetchers=fetchers, dist_bytes=size,
                           rollouts=rollouts, driver=drive,
                           link_bytes_per_s=ASSUMED_LINK_BYTES_PER_S)
            rows.append({
                "regime": regime, "mode": name, "tasks": tasks, "terms": pred,
                "useful_s": useful * told, "ideal_s": useful / W,
                "efficiency": useful * told / (W * pred["total"]),
                "efficiency_evaluate_only": useful * told / (W * (pred["total"] - drive)),
            })
    return {"population": P, "workers": W, "num_params": num_params, "dist_bytes": size,
            "driver_s": drive, "driver_from": how, "rows": rows}
