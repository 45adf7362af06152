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
import math
import pickle

import numpy as np

from _scaling_queue import chunk_starts, queue_generations, queue_makespan  # noqa: F401

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


#: Parts the distributed tell may be cut into (``DaskWeightedSum(parts=k)``): the projection
#: reports the fastest, up to one per node (the bits depend on k, so a run fixes it).
TELL_PARTS = (1, 2, 4, 5, 8, 10, 16, 20, 40, 80)


def tell_seconds(tell: dict, rows: int, num_params: int, *, parts: int | None,
                 per_part_s: float, link_bytes_per_s: float, vector_bytes: int = 8,
                 workers: int | None = None, tree: bool = False) -> dict:
    """The driver's ask + tell with the noise-row sum here (``parts=None``) or cut into
    ``parts`` summed on the workers (``DaskWeightedSum``).

    ``rest``: ask, pickling, ranking and the optimiser (measured without the sum). Remote:
    the keys and weights go out through the driver's one link (16 B a row); each part costs
    the driver and scheduler ``per_part_s`` (its task, receiving and adding its vector); the
    slowest part's rows are summed on a worker (``workers`` fewer than ``parts``: they take
    turns); each part's ``(num_params,)`` vector (``vector_bytes`` a value: float64 today)
    comes back through the driver's link, one after the other. ``tree=True`` is the
    alternative (not built) of adding the parts pairwise on the workers: twice the tasks,
    ceil(log2 parts) rounds of one vector over a link and one add, then one vector to the
    driver.
    """
    value_s = tell["row_s_per_value"]
    terms = {"rest": tell["driver_rest_s"]}
    if parts is None:
        terms["sum"] = rows * num_params * value_s
        return {**terms, "total": sum(terms.values())}
    vector = num_params * vector_bytes / link_bytes_per_s
    turns = math.ceil(parts / workers) if workers else 1
    terms["ship"] = rows * 16 / link_bytes_per_s
    terms["parts"] = per_part_s * parts * (2 if tree and parts > 1 else 1)
    terms["part_sum"] = turns * math.ceil(rows / parts) * num_params * value_s
    if tree:
        rounds = math.ceil(math.log2(parts)) if parts > 1 else 0
        terms["back"] = rounds * (vector + num_params * tell["add_s_per_value"]) + vector
    else:
        terms["back"] = parts * vector
    return {**terms, "total": sum(terms.values())}


def best_tell(tell: dict, rows: int, num_params: int, **kw) -> tuple[int, dict]:
    """The fastest number of parts in :data:`TELL_PARTS`, and its terms."""
    options = [(tell_seconds(tell, rows, num_params, parts=k, **kw)["total"], k)
               for k in TELL_PARTS]
    k = min(options)[1]
    return k, tell_seconds(tell, rows, num_params, parts=k, **kw)


def predict(constants: dict, *, tasks: int, fetchers: int, dist_bytes: int,
            rollouts: float, driver: float = 0.0, link_bytes_per_s: float | None = None,
            close: float = 0.0) -> dict:
    """Generation time = fixed + per_task x tasks + broadcast + rollouts + driver (+ the
    node-mode quorum's ``close``: its message to the nodes).

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
        "close": close,
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
    return fit_line([p["tasks"] for p in noop], [p[key] for p in noop])


def fit_line(x, y) -> tuple[float, float]:
    """``y = fixed + slope x``, least relative error; ``(fixed, slope)``, neither negative."""
    tasks = np.asarray(x, dtype=float)
    walls = np.asarray(y, dtype=float)
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
        size = dist_bytes(p["num_params"])
        useful = p["population"] * float(scaled.mean())
        if p["mode"] == "node" and p.get("node_local", "blocks") == "queue":
            # node mode's work queue (and quorum): consecutive generations, what is still
            # running at a close carried into the next (the gap: the Dask costs around it)
            gap = predict(constants, tasks=p["tasks"], fetchers=p["processes"],
                          dist_bytes=size, rollouts=0.0)["total"]
            q = queue_generations(scaled, p["population"], p["workers"], p["nodes"],
                                  piece=p.get("piece", 1), gap=gap,
                                  dispatch=constants["pool_per_candidate_s"],
                                  min_candidates=p.get("min_candidates"), generations=trials,
                                  # the stored runs predate the harvest and the hand-over
                                  harvest=p.get("harvest", False),
                                  hand_over=p.get("hand_over", False))
            rollouts, useful = q["rollouts"], q["told_s"]
        elif p["mode"] == "node":
            rollouts = expected_rollouts(scaled, p["population"], p["workers"], nodes=p["nodes"],
                                         dispatch=constants["pool_per_candidate_s"],
                                         trials=trials)
        else:
            rollouts = expected_rollouts(scaled, p["population"], p["workers"],
                                         chunks=p["tasks"], trials=trials)
        pred = predict(constants, tasks=p["tasks"], fetchers=p["processes"],
                       dist_bytes=size, rollouts=rollouts)
        p["predicted_s"] = pred["total"]
        p["predicted_efficiency"] = useful / (p["workers"] * pred["total"])
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


#: The node quorums projected: (population, min_candidates). The first is the paper's
#: population closing on 95% of it; the others oversize the population so that 10,000 are
#: told (the paper's generation is at least 10,000 episodes).
NODE_QUORUMS = ((10_000, 9_500), (10_500, 10_000), (11_000, 10_000), (11_500, 10_000),
                (12_000, 10_000))
#: Beside them: the rules before (no harvest: a node's pieces in flight when it returns are
#: dropped even if back before the close, the close a stop message; the harvest as a pinned
#: task per node after the stop message, nodes still running dropped whole), and a bigger
#: generation (a what-if).
NODE_WHAT_IFS = (((10_000, 9_500), " without the harvest (as before it was built)",
                  {"harvest": False, "hand_over": False, "close": "stop"}),
                 ((10_000, 9_500), " + harvest as a task per node (before the one message)",
                  {"hand_over": False, "close": "tasks"}),
                 ((15_000, 14_250), " (a generation 1.5 x the paper's)", {}))


def close_seconds(constants: dict, nodes: int, how: str = "message") -> float:
    """What the close of a node-mode quorum generation costs the driver and the scheduler
    (CPU, measured: ``_scaling_close.py``): ``"message"``, the one message to every node
    (what is built); ``"stop"``, the stop message alone (before the harvest: the same
    broadcast without the records, charged as the message, an upper bound); ``"tasks"``,
    the stop message and a pinned harvest task per node (as measured beside the message).
    Without the measurement (older stored runs): a Dask task per node."""
    close = constants.get("close")
    if close is None:
        return nodes * constants["per_task_cpu_s"] if how == "tasks" else 0.0
    fit = close["tasks" if how == "tasks" else "message"]
    return fit["cpu_fixed_s"] + fit["per_node_cpu_s"] * nodes


def project(constants: dict, samples: dict, tell: dict, trials: int, *, piece: int = 1,
            steady: int | None = None, warmup: int = 3) -> dict:
    """Generation time and efficiency of the paper's Humanoid generation on 1,440 workers,
    for each mode, with the tell's noise sum on the driver and distributed
    (:func:`best_tell`). ``tell``: the distributed tell's constants (``_scaling_tell``);
    ``piece``: candidates per piece of node mode's work queue. Node mode's work queue is
    simulated over ``steady`` generations (default ``max(4, trials // 5)``) after ``warmup``
    (``--quick`` runs 1 after 1: enough to check the report's shape, not its figures)."""
    from asktell.evaluators.dask import auto_chunks
    from asktell.gym import GymTask

    P, W, nodes = PAPER["population"], PAPER["workers"], PAPER["nodes"]
    cores = PAPER["cores_per_node"]
    steady = max(4, trials // 5) if steady is None else steady
    # A scheduler with a core of its own: what a task costs is the CPU the client and the
    # scheduler spend on it (measured), not this shared machine's wall time.
    constants = {**constants, "per_task_s": constants["per_task_cpu_s"]}
    num_params = GymTask("Humanoid-v5", hidden_sizes=PAPER["hidden_sizes"]).num_params
    size = dist_bytes(num_params)
    link = {"per_part_s": tell["part_overhead_cpu_s"],
            "link_bytes_per_s": ASSUMED_LINK_BYTES_PER_S}
    rows = []
    for regime in ("humanoid_falls", "humanoid_full"):
        times = np.asarray(samples[regime])
        cpw_auto = auto_chunks(P * float(times.mean()), W)
        # On the node, the distribution goes to each local process through a pipe, one after
        # the other, then each block or piece costs a pool item: the node pool's dispatcher
        # CPU per byte and per piece, as measured (a core of its own, as for a Dask task).
        pipe = constants.get("node_pipe_cpu_s_per_byte", constants["broadcast_s_per_byte"])
        piece_s = constants.get("pool_per_candidate_cpu_s", constants["pool_per_candidate_s"])
        local = {"dispatch": piece_s, "setup": cores * size * pipe}
        auto = "'auto' picks the same" if cpw_auto == 1 else f"'auto' picks {cpw_auto}"
        modes = [(f"per core, 1 chunk per core ({auto})", W, P, None, {"chunks": W}),
                 (f"node ({nodes} x {cores}): a block per process", nodes, P, None,
                  {"nodes": nodes, **local}),
                 (f"node ({nodes} x {cores}): work queue", nodes, P, "queue", {}),
                 *[(f"node ({nodes} x {cores}): work queue + quorum {m:,} of {pop:,}",
                    nodes, pop, "queue", {"min_candidates": m}) for pop, m in NODE_QUORUMS],
                 *[(f"node ({nodes} x {cores}): work queue + quorum {m:,} of {pop:,}{what}",
                    nodes, pop, "queue", {"min_candidates": m, **extra})
                   for (pop, m), what, extra in NODE_WHAT_IFS]]
        for name, tasks, pop, kind, kw in modes:
            row = {"regime": regime, "mode": name, "tasks": tasks, "population": pop}
            for how in ("local", "distributed"):
                if kind is None:
                    rollouts = expected_rollouts(times, pop, W, trials=trials, **kw)
                    told, told_s = pop, pop * float(times.mean())
                    drive = _tell(tell, told, num_params, how, link)
                    pred = predict(constants, tasks=tasks, fetchers=tasks, dist_bytes=size,
                                   rollouts=rollouts, driver=drive["total"],
                                   link_bytes_per_s=ASSUMED_LINK_BYTES_PER_S)
                else:
                    # The gap from the driver's close to the next chunks' arrival includes
                    # the tell, whose time depends on what is told: taken at the quorum
                    # (the candidates told exceed it by < 1%, the tell's time by ~2 ms).
                    drive = _tell(tell, kw.get("min_candidates", pop), num_params, how, link)
                    # With a quorum the driver closes with a message to every node
                    # (GenerationRound._close_nodes), at its measured cost.
                    rule = {k: v for k, v in kw.items() if k != "close"}
                    close = 0.0
                    if kw.get("min_candidates"):
                        close = close_seconds(constants, nodes, kw.get("close", "message"))
                    row["close_s"] = close
                    gap = predict(constants, tasks=tasks, fetchers=tasks, dist_bytes=size,
                                  rollouts=0.0, driver=drive["total"], close=close,
                                  link_bytes_per_s=ASSUMED_LINK_BYTES_PER_S)["total"]
                    q = queue_generations(times, pop, W, nodes, piece=piece, gap=gap,
                                          generations=steady, warmup=warmup, **local, **rule)
                    told, told_s = round(q["told"]), q["told_s"]
                    row.setdefault("split", {})[how] = {
                        k: v / (W * q["rollouts"]) for k, v in
                        (("told", told_s), ("wasted", q["wasted_s"]),
                         ("idle", W * q["rollouts"] - told_s - q["wasted_s"]))}
                    row.setdefault("late_s", {})[how] = q["late_s"]
                    drive = _tell(tell, told, num_params, how, link)
                    pred = predict(constants, tasks=tasks, fetchers=tasks,
                                   dist_bytes=size, rollouts=q["rollouts"], driver=drive["total"],
                                   close=close, link_bytes_per_s=ASSUMED_LINK_BYTES_PER_S)
                row[how] = {"terms": pred, "tell": drive, "told": told, "told_s": told_s,
                            "ideal_s": told_s / W,
                            "efficiency": told_s / (W * pred["total"]),
                            "efficiency_evaluate_only":
                                told_s / (W * (pred["total"] - pred["driver"]))}
            rows.append(row)
    return {"population": P, "workers": W, "num_params": num_params, "dist_bytes": size,
            "piece": piece, "rows": rows}


def _tell(tell: dict, told: int, num_params: int, how: str, link: dict) -> dict:
    """The driver's ask + tell for ``told`` candidates (a row per mirrored pair)."""
    rows = -(-told // 2)
    if how == "local":
        return {**tell_seconds(tell, rows, num_params, parts=None, **link), "parts": None}
    parts, terms = best_tell(tell, rows, num_params, **link)
    tree_parts, tree = best_tell(tell, rows, num_params, tree=True, **link)
    return {**terms, "parts": parts, "tree_parts": tree_parts, "tree_total": tree["total"]}
