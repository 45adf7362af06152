"""The driver's tell at the paper's scale: noise sum on the driver vs on Dask workers.

One OpenAI-ES ``tell`` at population 10,000 and 200,000 parameters (5,000 folded noise rows,
a billion float32 reads), with ``gradient_parts = k``: ``local`` sums the k parts on the
driver (a serial evaluator's run), ``remote`` hands them to the workers of a loopback Dask
cluster (``DaskWeightedSum``, what ``remote_tell = true`` lends). The two strategies ask the
same seeds and are told the same returns, alternately (which goes first alternates too), in
one process; after every tell their centres are checked to be bitwise equal (the bit
contract of docs/distributed-tell.md).

Reported, medians over the repeats:

* ``tell wall``: what the run waits for on the driver per generation;
* ``tell driver CPU``: the driver process's own CPU time in that tell (``remote``: shipping
  keys and coefficients out, waiting, adding k vectors; the part sums run in the workers);
* ``one part``: the time of one part's sum (5,000 / k rows) in this process, what each
  worker computes.

    python benchmarks/distributed_tell.py [--population 10000] [--dim 200000] [--workers 2]
        [--parts 2] [--repeats 5]

The cluster's workers are processes on this machine: with 2 cores, the parts cannot run
faster than the driver alone; see docs/distributed-tell.md for what the numbers say about a
real cluster.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from asktell.evaluators._dask_tell import DaskWeightedSum
from asktell.noise import DEFAULT_TABLE_SIZE, NoiseTable, part_bounds
from asktell.strategies import OpenAIES
from asktell.strategies.openai_es import fold_weights
from asktell.testing.dask_cluster import loopback_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import distributed

    noise = NoiseTable(0, DEFAULT_TABLE_SIZE)
    n, dim, k = args.population, args.dim, args.parts
    with loopback_cluster(args.workers) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        sides = {
            "local": OpenAIES(dim, n, 0.02, 0.01, seed=0, noise=noise, gradient_parts=k),
            "remote": OpenAIES(dim, n, 0.02, 0.01, seed=0, noise=noise, gradient_parts=k),
        }
        hook = sides["remote"].noise_sum = DaskWeightedSum(client)
        wall: dict[str, list[float]] = {s: [] for s in sides}
        cpu: dict[str, list[float]] = {s: [] for s in sides}
        part: list[float] = []
        for r in range(args.repeats + 1):  # the first round warms up (the workers' tables)
            returns = np.random.default_rng(100 + r).standard_normal(n)
            seeds = [es.ask() for es in sides.values()]
            assert np.array_equal(*seeds)
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                w0, c0 = time.perf_counter(), time.process_time()
                sides[name].tell(returns)
                if r:
                    wall[name].append(time.perf_counter() - w0)
                    cpu[name].append(time.process_time() - c0)
            assert sides["local"].center.tobytes() == sides["remote"].center.tobytes()
            keys, coef = fold_weights(seeds[0], returns)
            a, b = part_bounds(keys.size, k)[0]
            t0 = time.perf_counter()
            noise.weighted_sum(coef[a:b], keys[a:b], dim)
            if r:
                part.append(time.perf_counter() - t0)
        assert hook.fallbacks == 0
    ms = lambda xs: f"{statistics.median(xs) * 1e3:.0f}"  # noqa: E731
    print(
        f"population {n:,}, {dim:,} params, gradient_parts {k}, {args.workers} loopback "
        f"workers, {args.repeats} repeats, {os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
        "centres bitwise equal after every tell"
    )
    print("| side | tell wall (ms) | tell driver CPU (ms) |")
    print("|---|---|---|")
    for name in sides:
        print(f"| {name} | {ms(wall[name])} | {ms(cpu[name])} |")
    print(f"one part's sum ({keys.size // k:,} rows) in this process: {ms(part)} ms")


if __name__ == "__main__":
    main()
