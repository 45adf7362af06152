"""Per-generation overhead of DaskEvaluator's node mode as a node's local processes grow.

On loopback, in one run: an embedded cluster of 2 nodes (Dask workers) and, sharing it,
node-mode evaluators with 1, 2, 4 and 8 local processes per node; beside them the per-core
mode on 2 workers with as many threads (sleeping candidates release the GIL, so a thread
stands for a core): the same cores, one task per thread instead of one per node.

Candidates only ``time.sleep(--sleep)`` (a FunctionTask), ``--per-process`` of them per local
process (the population grows with the processes: 2 nodes x 8 processes x 4 = 64), so every
row's ideal generation is the same ``per_process * sleep`` (and the sleeps' own overshoot
on a busy machine is the same in every row); overhead = wall time of ``evaluate`` - that
ideal: Dask's round trip and per-task cost, the node's pipes, the processes' wake-ups.
*driver CPU* is the CPU time of this process, which runs the client and the embedded
scheduler: the per-generation work that grows with tasks, and which other programs sharing
the cores do not inflate the way they do wall time (it also holds the idle background work
of the other rows' clusters, the same in every row). Rows are measured in ``--rounds`` interleaved rounds of ``--generations`` generations each
(the first generation of each evaluator, which starts the pools, is excluded); the table
reports each row's median over all its generations.

Node mode runs three ways per process count, interleaved in the same rounds (each its own
task, so its own pools on the nodes): *blocks*, the chunk cut into one fixed block per
local process (how node mode split a chunk before the work queue; set on the workers for
those pools only); *queue*, the work queue (pieces handed out as processes come free);
*queue+quorum*, the queue with ``stragglers.min_candidates`` = ``--quorum`` of the
population (``evaluate(..., partial=True)``, as a generation step calls it; its
"overhead" can be negative: it closes before the ideal when it drops candidates).
``--uneven``: candidates sleep from 0.25x to 1.75x ``--sleep`` (by their first
coordinate; mean ``--sleep``), so the rows show the rollout tail a fixed block waits for.

    python benchmarks/node_mode.py                    # 4 candidates of 20 ms per process
    python benchmarks/node_mode.py --uneven           # the same, times spread
    python benchmarks/node_mode.py --rounds 5 --json out.json
    python benchmarks/node_mode.py --ship-params 160000 --processes 8   # the distribution
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


class Sleep:
    """A candidate that takes ``seconds`` of wall time and no CPU (``uneven``: 0.25x to
    1.75x of it, by its first coordinate); ``tag`` makes tasks (and their pools) distinct."""

    def __init__(self, seconds: float, uneven: bool = False, tag: str = ""):
        self.seconds, self.uneven, self.tag = seconds, uneven, tag

    def __call__(self, x: np.ndarray) -> float:
        factor = 1.0
        if self.uneven:
            # |x[0]|: a mirrored pair takes one time (x[0] = +-sigma eps[0] at a zero centre),
            # as a pair's two rollouts would in one environment; pairs' times differ
            factor = 0.25 + 1.5 * ((abs(float(x[0])) * 1e6) % 1000.0) / 1000.0
        time.sleep(self.seconds * factor)
        return float(x[0])


def _set_pieces(pieces):
    """On a node: pieces per local process for the pools created next (None: fixed blocks)."""
    from asktell.evaluators import _dask_node

    _dask_node.PIECES_PER_PROCESS = pieces
    return True


def ship_cost(params: int, processes: int, repeats: int) -> None:
    """``--ship-params``: what sending the distribution to a node's processes costs per
    generation. A pool of ``processes`` local processes (no Dask) runs rounds of one trivial
    candidate per process, at ``params`` and at 8 parameters, interleaved; the difference of
    the medians is the distribution's shipping (pickled once per round, sent once per
    process). Beside it, one ``pickle.dumps`` of the distribution: what pickling it per
    process (as node mode did before the work queue) would add ``processes - 1`` times."""
    import pickle

    import cloudpickle
    from asktell.evaluators._vector_pool import WorkerPool

    from asktell import Distribution, FunctionTask, NoiseTable

    noise = NoiseTable(0, 1 << 22)
    rng = np.random.default_rng(0)
    task = FunctionTask(Sleep(0.0))
    pool = WorkerPool(cloudpickle.dumps(task), processes, None, "sync", "spawn",
                      pieces_per_worker=1)
    times: dict[int, list[float]] = {params: [], 8: []}
    try:
        for dim in times:  # start-up, and each process builds its noise table
            dist = Distribution(np.zeros(dim), 0.1, noise, generation=1)
            pool.run(dist, noise.sample_keys(rng, processes, dim), 0)
        for _ in range(repeats):
            for dim in times:
                dist = Distribution(rng.standard_normal(dim), 0.1, noise, generation=1)
                seeds = noise.sample_keys(rng, processes, dim)
                start = time.perf_counter()
                pool.run(dist, seeds, 0)
                times[dim].append(time.perf_counter() - start)
    finally:
        pool.close()
    dist = Distribution(rng.standard_normal(params), 0.1, noise, generation=1)
    pickled = []
    for _ in range(repeats):
        start = time.perf_counter()
        blob = pickle.dumps(dist, protocol=pickle.HIGHEST_PROTOCOL)
        pickled.append(time.perf_counter() - start)
    big, small = (np.median(times[d]) * 1e3 for d in (params, 8))
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}, machine shared with other work")
    print(
        f"{processes} processes, {repeats} interleaved rounds: round at {params} params "
        f"{big:.1f} ms, at 8 params {small:.1f} ms (median): shipping {big - small:.1f} ms "
        f"per generation; the distribution pickles to {len(blob) / 1e6:.2f} MB in "
        f"{np.median(pickled) * 1e3:.2f} ms (median), x{processes - 1} more if pickled per "
        "process"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--per-process", type=int, default=4, help="candidates per process")
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per candidate")
    parser.add_argument("--uneven", action="store_true", help="spread candidate times")
    parser.add_argument("--quorum", type=float, default=0.9, help="queue+quorum rows")
    parser.add_argument("--generations", type=int, default=10, help="per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-per-core", action="store_true", help="node mode rows only")
    parser.add_argument("--json", help="write the samples here")
    parser.add_argument("--ship-params", type=int, help="only measure shipping a "
                        "distribution of this many parameters to --processes[-1] processes")
    args = parser.parse_args()
    if args.ship_params:
        ship_cost(args.ship_params, args.processes[-1], args.rounds * args.generations)
        return

    # Sleep, defined in __main__, travels by value (cloudpickle).
    from asktell.evaluators import DaskEvaluator

    from asktell import Distribution, FunctionTask, NoiseTable
    from asktell.noise import mirrored

    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}, machine shared with other work")
    noise = NoiseTable(0, 1 << 20)
    rng = np.random.default_rng(0)
    dist = Distribution(np.zeros(8), 0.1, noise, generation=1)
    ideal = args.per_process * args.sleep

    def task(tag: str) -> FunctionTask:
        return FunctionTask(Sleep(args.sleep, args.uneven, tag))

    def population(cores: int) -> np.ndarray:
        return mirrored(noise.sample_keys(rng, cores * args.per_process // 2, 8))

    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    told: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}

    def measure(rows: dict[str, tuple[DaskEvaluator, np.ndarray, bool]]) -> None:
        for name, (ev, seeds, partial) in rows.items():
            ev.evaluate(dist, seeds, partial=partial)  # start-up: pools, task shipped
            samples[name], cpu[name], told[name], sizes[name] = [], [], [], seeds.size
        for _ in range(args.rounds):
            for name, (ev, seeds, partial) in rows.items():
                for _ in range(args.generations):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    out = ev.evaluate(dist, seeds, partial=partial)
                    samples[name].append(time.perf_counter() - start - ideal)
                    cpu[name].append(time.process_time() - start_cpu)
                    told[name].append(int(seeds.size - (out.dropped.sum() if partial else 0)))

    # Node mode, one process count at a time (a node keeps 4 pools: these 3 rows' pools).
    host = DaskEvaluator(task("host"), num_workers=args.nodes, node_processes=1)
    try:
        for k in args.processes:
            seeds = population(args.nodes * k)
            quorum = {"min_candidates": max(1, int(args.quorum * seeds.size))}
            rows = {}
            host.client.run(_set_pieces, None)
            try:
                blocks = DaskEvaluator(task(f"blocks{k}"), host.client, node_processes=k)
                blocks.evaluate(dist, seeds)  # its pools now: fixed blocks
            finally:
                host.client.run(_set_pieces, 4)
            rows[f"node x{k} blocks"] = (blocks, seeds, False)
            rows[f"node x{k} queue"] = (
                DaskEvaluator(task(f"queue{k}"), host.client, node_processes=k), seeds, False
            )
            rows[f"node x{k} queue+quorum"] = (
                DaskEvaluator(task(f"quorum{k}"), host.client, node_processes=k,
                              stragglers=quorum), seeds, True
            )
            try:
                measure(rows)
            finally:
                for ev, _, _ in rows.values():
                    ev.close()
    finally:
        host.close()
    if not args.no_per_core:
        for k in args.processes:
            ev = DaskEvaluator(task("core"), num_workers=args.nodes, threads_per_worker=k)
            try:
                measure({f"per-core x{k} threads": (ev, population(args.nodes * k), False)})
            finally:
                ev.close()
    print(
        f"\n{args.nodes} nodes, {args.per_process} candidates of {args.sleep * 1e3:g} ms "
        f"{'(0.25x-1.75x) ' if args.uneven else ''}per process (ideal {ideal * 1e3:g} ms), "
        f"{args.rounds} rounds x {args.generations} generations per row; quorum rows: "
        f"min_candidates {args.quorum:g} of the population"
    )
    print(
        f"{'row':>24} {'population':>10} {'overhead ms (median)':>21} {'p10..p90':>14} "
        f"{'driver CPU ms (median)':>23} {'told (median)':>14}"
    )
    for name in samples:
        p10, p50, p90 = np.percentile(np.array(samples[name]) * 1e3, [10, 50, 90])
        driver = np.median(cpu[name]) * 1e3
        print(
            f"{name:>24} {sizes[name]:>10} {p50:>21.1f} {p10:>6.1f}..{p90:<6.1f} "
            f"{driver:>23.1f} {np.median(told[name]):>14.0f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "overhead_seconds": samples, "driver_cpu_seconds": cpu,
                 "told": told, "load": os.getloadavg()},
                f,
            )


if __name__ == "__main__":
    main()
