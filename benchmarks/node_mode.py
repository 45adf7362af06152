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

    python benchmarks/node_mode.py                    # 4 candidates of 20 ms per process
    python benchmarks/node_mode.py --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--per-process", type=int, default=4, help="candidates per process")
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per candidate")
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
    task = FunctionTask(Sleep(args.sleep))
    ideal = args.per_process * args.sleep

    def population(cores: int) -> np.ndarray:
        return mirrored(noise.sample_keys(rng, cores * args.per_process // 2, 8))

    rows: dict[str, tuple[DaskEvaluator, np.ndarray]] = {}
    host = DaskEvaluator(task, num_workers=args.nodes, node_processes=args.processes[0])
    for k in args.processes:
        ev = host if k == args.processes[0] else DaskEvaluator(task, host.client, node_processes=k)
        rows[f"node x{k} processes"] = (ev, population(args.nodes * k))
    if not args.no_per_core:
        for k in args.processes:
            ev = DaskEvaluator(task, num_workers=args.nodes, threads_per_worker=k)
            rows[f"per-core x{k} threads"] = (ev, population(args.nodes * k))
    try:
        for ev, seeds in rows.values():
            ev.evaluate(dist, seeds)  # start-up: pools, task shipped
        samples: dict[str, list[float]] = {name: [] for name in rows}
        cpu: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, (ev, seeds) in rows.items():
                for _ in range(args.generations):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    ev.evaluate(dist, seeds)
                    samples[name].append(time.perf_counter() - start - ideal)
                    cpu[name].append(time.process_time() - start_cpu)
    finally:
        for ev, _ in reversed(list(rows.values())):
            ev.close()
    print(
        f"\n{args.nodes} nodes, {args.per_process} candidates of {args.sleep * 1e3:g} ms per "
        f"process (ideal {ideal * 1e3:g} ms), {args.rounds} rounds x {args.generations} "
        "generations per row"
    )
    print(
        f"{'row':>22} {'population':>10} {'overhead ms (median)':>21} {'p10..p90':>14} "
        f"{'driver CPU ms (median)':>23}"
    )
    for name, (ev, seeds) in rows.items():
        p10, p50, p90 = np.percentile(np.array(samples[name]) * 1e3, [10, 50, 90])
        driver = np.median(cpu[name]) * 1e3
        print(f"{name:>22} {seeds.size:>10} {p50:>21.1f} {p10:>6.1f}..{p90:<6.1f} {driver:>23.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "overhead_seconds": samples, "driver_cpu_seconds": cpu,
                 "load": os.getloadavg()},
                f,
            )


if __name__ == "__main__":
    main()
