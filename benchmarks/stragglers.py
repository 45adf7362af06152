"""Straggler-tolerant generations: what they save with a slow node, and the bias they bring.

    python benchmarks/stragglers.py slow-node   # generation time: 1 node 10x slower
    python benchmarks/stragglers.py slow-node-mode --quorum 0.8   # the same, node mode
    python benchmarks/stragglers.py hopper      # closing early favours short episodes
    python benchmarks/stragglers.py all [--out docs/stragglers.md]

``slow-node``: an in-process Dask cluster (``processes=False``: threads, no sockets) of
``--workers`` single-threaded workers; every candidate sleeps ``--sleep`` seconds, 10x that
on the slow worker. Three evaluators run side by side, interleaved generation by
generation, on the same population:

* *barrier, without the slow node*: ``DaskEvaluator`` on ``workers - 1`` fast workers,
  waiting for every candidate (the target's yardstick);
* *barrier, with the slow node*: ``DaskEvaluator`` on all ``workers``, waiting for every
  candidate (today's behaviour);
* *stragglers*: the same cluster with ``stragglers.min_candidates`` = ``--quorum`` of the
  population.

Sleeping candidates use no CPU, so the 2 shared cores of a small machine do not distort the
ratio much; the median over ``--generations`` generations is reported.

``hopper``: ``GymTask("Hopper-v5", policy="linear")`` trained by OpenAI-ES through
``SerialEvaluator`` for ``--hopper-generations`` generations (every candidate evaluated:
nothing is dropped here). At each generation the candidates are ordered by their episode's
length in steps (a rollout's wall time is proportional to it: the first to finish are the
shortest), and the first ``k`` of them are compared with the whole population: mean return
and mean episode length, for ``k`` = 50%, 80% and 90%. That is exactly the subset a quorum of
``k`` would tell when all workers are equally fast.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asktell.noise import NoiseTable  # noqa: E402
from asktell.protocol import Evaluation, TaskHooks  # noqa: E402
from asktell.strategies import OpenAIES  # noqa: E402

SLOW_FACTOR = 10


class SleepTask(TaskHooks):
    """Each candidate sleeps ``seconds`` (``SLOW_FACTOR`` times that on worker ``slow``)."""

    num_params = 8

    def __init__(self, seconds: float, slow: str | None):
        self.seconds, self.slow = seconds, slow

    def evaluate(self, params, seeds, distribution):
        from distributed import get_worker

        factor = SLOW_FACTOR if str(get_worker().name) == self.slow else 1
        time.sleep(self.seconds * factor * len(seeds))
        returns = -np.sum(np.asarray(params) ** 2, axis=1)
        return Evaluation(returns, np.ones(len(seeds), dtype=np.int64))


def _interleaved(es, args, runs: dict, pause: float) -> tuple[dict[str, list[float]], list[int]]:
    """Generation times of each evaluator in ``runs``, run on the same distribution one after
    the other every generation (the first a warm-up), ``pause`` seconds after each; and the
    candidates told by the ``"stragglers"`` one."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    told: list[int] = []
    for g in range(args.generations + 1):
        seeds, dist = es.ask(), es.distribution
        for name, ev in runs.items():
            t0 = time.perf_counter()
            out = ev.evaluate(dist, seeds, partial=True)
            if g:
                times[name].append(time.perf_counter() - t0)
                if name == "stragglers":
                    told.append(int(out.told_mask.sum()))
            time.sleep(pause)
        es.tell(np.zeros(args.population))
    return times, told


def slow_node(args: argparse.Namespace) -> str:
    import distributed

    from asktell.evaluators import DaskEvaluator

    n = args.workers
    need = int(round(args.quorum * args.population))
    chunk = -(-args.population // (n * 8))  # a pulled chunk (8 per thread)
    es = OpenAIES(8, population_size=args.population, sigma=0.1, noise=NoiseTable(0, 1 << 16))
    from asktell.testing.dask_cluster import loopback_cluster

    with loopback_cluster(n - 1, processes=False) as fast_cluster, \
            loopback_cluster(n, processes=False) as cluster, \
            distributed.Client(fast_cluster, set_as_default=False) as fast_client, \
            distributed.Client(cluster, set_as_default=False) as client:
        slow = str(n - 1)  # LocalCluster names its workers 0 .. n-1
        with DaskEvaluator(SleepTask(args.sleep, None), client=fast_client) as fast, \
                DaskEvaluator(SleepTask(args.sleep, slow), client=client) as barrier, \
                DaskEvaluator(SleepTask(args.sleep, slow), client=client,
                              stragglers={"min_candidates": need}) as tolerant:
            # let the slow worker's stale rollout end before the next evaluator runs
            times, told = _interleaved(es, args, {"fast": fast, "barrier": barrier,
                                                  "stragglers": tolerant},
                                       pause=args.sleep * SLOW_FACTOR * chunk + 0.05)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["stragglers"] / med["fast"]
    return "\n".join([
        f"Slow node: {n} single-threaded workers in one process, worker {n - 1} "
        f"{SLOW_FACTOR}x slower; population {args.population}, {args.sleep * 1e3:g} ms per "
        f"candidate ({args.sleep * SLOW_FACTOR * 1e3:g} ms on the slow worker); quorum "
        f"min_candidates = {need} ({args.quorum:.0%}); median of {args.generations} "
        "generations, interleaved.",
        "",
        "| evaluator | generation (s) | vs. barrier without the slow node |",
        "|---|---:|---:|",
        f"| barrier, {n - 1} fast workers (no slow node) | {med['fast']:.3f} | 1.00x |",
        f"| barrier, {n} workers incl. the slow one | {med['barrier']:.3f} | "
        f"{med['barrier'] / med['fast']:.2f}x |",
        f"| stragglers, {n} workers incl. the slow one | {med['stragglers']:.3f} | "
        f"**{ratio:.2f}x** |",
        "",
        f"Candidates told per straggler-tolerant generation: median {statistics.median(told):g} "
        f"(min {min(told)}, max {max(told)}) of {args.population}.",
    ])


class NodeSleepTask(TaskHooks):
    """Node mode: each candidate sleeps ``seconds`` in a node's local process,
    ``SLOW_FACTOR`` times that on the node whose Dask worker has the pid ``slow_pid``."""

    num_params = 8

    def __init__(self, seconds: float, slow_pid: int | None):
        self.seconds, self.slow_pid = seconds, slow_pid

    def evaluate(self, params, seeds, distribution):
        import os

        factor = SLOW_FACTOR if os.getppid() == self.slow_pid else 1
        time.sleep(self.seconds * factor * len(seeds))
        returns = -np.sum(np.asarray(params) ** 2, axis=1)
        return Evaluation(returns, np.ones(len(seeds), dtype=np.int64))


def slow_node_mode(args: argparse.Namespace) -> str:
    """``slow-node-mode``: the same comparison in node mode (``node_processes``): embedded
    node clusters of ``--nodes`` nodes (and ``--nodes - 1`` for the yardstick), each with
    ``--node-processes`` local processes; one node's processes 10x slower."""
    import os

    from asktell import FunctionTask
    from asktell.evaluators import DaskEvaluator

    n, k = args.nodes, args.node_processes
    need = int(round(args.quorum * args.population))
    es = OpenAIES(8, population_size=args.population, sigma=0.1, noise=NoiseTable(0, 1 << 16))
    idle = FunctionTask.named("sphere")
    with DaskEvaluator(idle, num_workers=n - 1, node_processes=k) as fast_host, \
            DaskEvaluator(idle, num_workers=n, node_processes=k) as host:
        pids = host.client.run(os.getpid)
        slow_pid = pids[sorted(pids)[-1]]
        task = NodeSleepTask(args.sleep, slow_pid)
        with DaskEvaluator(NodeSleepTask(args.sleep, None), fast_host.client,
                           node_processes=k) as fast, \
                DaskEvaluator(task, host.client, node_processes=k) as barrier, \
                DaskEvaluator(task, host.client, node_processes=k,
                              stragglers={"min_candidates": need}) as tolerant:
            # let the slow node's stale pieces end before the next evaluator runs
            times, told = _interleaved(es, args, {"fast": fast, "barrier": barrier,
                                                  "stragglers": tolerant},
                                       pause=args.sleep * SLOW_FACTOR + 0.05)
    med = {key: statistics.median(v) for key, v in times.items()}
    ratio = med["stragglers"] / med["fast"]
    return "\n".join([
        f"Slow node, node mode: {n} nodes (embedded, loopback) of {k} local process"
        f"{'es' if k > 1 else ''}, one node's processes {SLOW_FACTOR}x slower; population "
        f"{args.population}, {args.sleep * 1e3:g} ms per candidate "
        f"({args.sleep * SLOW_FACTOR * 1e3:g} ms on the slow node); quorum min_candidates = "
        f"{need} ({args.quorum:.0%}); median of {args.generations} generations, interleaved.",
        "",
        "| evaluator | generation (s) | vs. barrier without the slow node |",
        "|---|---:|---:|",
        f"| barrier, {n - 1} fast nodes (no slow node) | {med['fast']:.3f} | 1.00x |",
        f"| barrier, {n} nodes incl. the slow one | {med['barrier']:.3f} | "
        f"{med['barrier'] / med['fast']:.2f}x |",
        f"| stragglers, {n} nodes incl. the slow one | {med['stragglers']:.3f} | "
        f"**{ratio:.2f}x** |",
        "",
        f"Candidates told per straggler-tolerant generation: median {statistics.median(told):g} "
        f"(min {min(told)}, max {max(told)}) of {args.population}.",
    ])


def hopper(args: argparse.Namespace) -> str:
    from asktell.evaluators import SerialEvaluator
    from asktell.gym import GymTask
    from asktell.loop import GenerationStep

    task = GymTask("Hopper-v5", policy="linear")
    es = OpenAIES(task.num_params, population_size=args.hopper_population, sigma=0.05,
                  learning_rate=0.02, seed=0, noise=NoiseTable(0, 1 << 22),
                  x0=task.initial_params(0))
    from asktell.shaping import get_shaping

    shape = get_shaping(es.config.shaping)
    rng = np.random.default_rng(0)
    fractions = (0.5, 0.8, 0.9)
    rows, pooled = [], {k: [] for k in fractions}
    cosines = {k: ([], []) for k in fractions}  # first-k vs all, random-k vs all
    start = time.perf_counter()
    with SerialEvaluator(task) as ev:
        step = GenerationStep(es, ev, task)
        for g in range(args.hopper_generations):
            record = step()
            returns = record.evaluation.returns
            steps = record.evaluation.steps.astype(np.float64)
            order = np.argsort(steps, kind="stable")  # first to finish = fewest steps
            dist = record.distribution
            eps = (dist.decode(record.seeds) - dist.center) / dist.sigma

            def direction(idx: np.ndarray) -> np.ndarray:
                # the OpenAI-ES gradient estimate from the candidates idx alone
                return shape(returns[idx]) @ eps[idx] / idx.size

            full = direction(np.arange(returns.size))
            cells = []
            for k in fractions:
                first = order[: int(round(k * returns.size))]
                gap_return = returns[first].mean() - returns.mean()
                gap_length = steps[first].mean() / steps.mean()
                pooled[k].append((gap_return / max(returns.std(), 1e-12), gap_length))
                cells.append(f"{returns[first].mean():.1f} / {steps[first].mean():.0f}")
                rand = rng.permutation(returns.size)[: first.size]
                for j, idx in enumerate((first, rand)):
                    d = direction(idx)
                    cosines[k][j].append(
                        float(d @ full / (np.linalg.norm(d) * np.linalg.norm(full) + 1e-300))
                    )
            if g in args.hopper_show:
                head = f"| {g} | {returns.mean():.1f} / {steps.mean():.0f} | "
                rows.append(head + " | ".join(cells) + " |")
    seconds = time.perf_counter() - start
    summary = [
        f"| {k:.0%} | {np.mean([p[0] for p in pooled[k]]):+.2f} | "
        f"{np.mean([p[1] for p in pooled[k]]):.2f} | {np.mean(cosines[k][0]):.2f} | "
        f"{np.mean(cosines[k][1]):.2f} |"
        for k in fractions
    ]
    return "\n".join([
        f"Hopper-v5, linear policy, OpenAI-ES population {args.hopper_population}, "
        f"{args.hopper_generations} generations through SerialEvaluator ({seconds:.0f} s "
        "wall on a shared machine). Cells: mean return / mean episode length (steps) of the "
        "first k% of candidates to finish (ordered by episode length) and of all.",
        "",
        "| generation | all | first 50% | first 80% | first 90% |",
        "|---:|---|---|---|---|",
        *rows,
        "",
        f"Over all {args.hopper_generations} generations (mean): the told subset's mean "
        "return minus the population's, in population standard deviations; its mean "
        "episode length relative to the population's; and the cosine between the OpenAI-ES "
        "gradient estimate from the subset and from the whole population, for the first "
        "k% to finish and for a random k% (what an unbiased quorum would tell).",
        "",
        "| quorum k | return gap (std) | episode length ratio | cos(first k, all) | "
        "cos(random k, all) |",
        "|---:|---:|---:|---:|---:|",
        *summary,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["slow-node", "slow-node-mode", "hopper", "all"])
    parser.add_argument("--nodes", type=int, default=8, help="slow-node-mode")
    parser.add_argument("--node-processes", type=int, default=1, help="slow-node-mode")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--sleep", type=float, default=0.01)
    parser.add_argument("--quorum", type=float, default=0.9)
    parser.add_argument("--generations", type=int, default=7)
    parser.add_argument("--hopper-population", type=int, default=64)
    parser.add_argument("--hopper-generations", type=int, default=40)
    parser.add_argument("--hopper-show", type=int, nargs="*", default=[0, 9, 19, 29, 39])
    parser.add_argument("--out", type=Path, help="write the tables into this docs page")
    args = parser.parse_args(argv)
    parts = []
    if args.what in ("slow-node", "all"):
        parts.append(("stragglers-slow-node", slow_node(args)))
    if args.what in ("slow-node-mode", "all"):
        parts.append(("stragglers-slow-node-mode", slow_node_mode(args)))
    if args.what in ("hopper", "all"):
        parts.append(("stragglers-hopper", hopper(args)))
    machine = (
        f"({platform.machine()}, {platform.python_version()}, a 2-core machine shared with "
        "other jobs)"
    )
    for name, text in parts:
        print(text + "\n\n" + machine + "\n")
        if args.out is not None:
            from _report import replace_section

            replace_section(args.out, name, text + "\n\n" + machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
