"""Per-generation overhead of DaskEvaluator's node mode as a node's local processes grow.

On loopback, in one run: an embedded cluster of 2 nodes (Dask workers) and, sharing it,
node-mode evaluators with 1, 2, 4 and 8 local processes per node; beside them the per-core
mode on 2 workers with as many threads (sleeping candidates release the GIL, so a thread
stands for a core): the same cores, one task per thread instead of one per node.

Candidates only ``time.sleep(--sleep)`` (a FunctionTask), so a generation's ideal time is
``ceil(population / cores) * sleep``; overhead = wall time of ``evaluate`` - that ideal:
Dask's round trip and per-task cost, the node's pipes and the local processes' wake-ups.
Rows are measured in ``--rounds`` interleaved rounds of ``--generations`` generations each
(the first generation of each evaluator, which starts the pools, is excluded); the table
reports each row's median over all its generations.

    python benchmarks/node_mode.py                    # population 64, sleep 5 ms
    python benchmarks/node_mode.py --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


class Sleep:
    """A candidate that takes ``seconds`` of wall time and no CPU."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, x: np.ndarray) -> float:
        time.sleep(self.seconds)
        return float(x[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--sleep", type=float, default=0.005, help="seconds per candidate")
    parser.add_argument("--generations", type=int, default=10, help="per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-per-core", action="store_true", help="node mode rows only")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()


    # Sleep, defined in __main__, travels by value (cloudpickle).
    from asktell import Distribution, FunctionTask, NoiseTable
    from asktell.evaluators import DaskEvaluator
    from asktell.noise import mirrored

    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}, machine shared with other work")
    noise = NoiseTable(0, 1 << 20)
    rng = np.random.default_rng(0)
    dist = Distribution(np.zeros(8), 0.1, noise, generation=1)
    seeds = mirrored(noise.sample_keys(rng, args.population // 2, 8))
    task = FunctionTask(Sleep(args.sleep))
    rows: dict[str, tuple[DaskEvaluator, int]] = {}
    host = DaskEvaluator(task, num_workers=args.nodes, node_processes=args.processes[0])
    for k in args.processes:
        ev = host if k == args.processes[0] else DaskEvaluator(task, host.client, node_processes=k)
        rows[f"node x{k} processes"] = (ev, args.nodes * k)
    if not args.no_per_core:
        for k in args.processes:
            ev = DaskEvaluator(task, num_workers=args.nodes, threads_per_worker=k)
            rows[f"per-core x{k} threads"] = (ev, args.nodes * k)
    try:
        for ev, _ in rows.values():
            ev.evaluate(dist, seeds)  # start-up: pools, task shipped
        samples: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, (ev, cores) in rows.items():
                ideal = math.ceil(args.population / cores) * args.sleep
                for _ in range(args.generations):
                    start = time.perf_counter()
                    ev.evaluate(dist, seeds)
                    samples[name].append(time.perf_counter() - start - ideal)
    finally:
        for ev, _ in reversed(list(rows.values())):
            ev.close()
    print(
        f"\n{args.nodes} nodes, population {args.population}, {args.sleep * 1e3:g} ms per "
        f"candidate, {args.rounds} rounds x {args.generations} generations per row"
    )
    print(f"{'row':>22} {'cores':>5} {'ideal ms':>9} {'overhead ms (median)':>21} {'p10..p90':>14}")
    for name, (ev, cores) in rows.items():
        values = np.array(samples[name]) * 1e3
        ideal = math.ceil(args.population / cores) * args.sleep * 1e3
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        print(f"{name:>22} {cores:>5} {ideal:>9.1f} {p50:>21.1f} {p10:>6.1f}..{p90:<6.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples_seconds": samples, "load": os.getloadavg()}, f)


if __name__ == "__main__":
    main()
