"""Where one generation's microseconds go at 100 parameters: asktell's ask, distribution,
decode and tell (and tell's parts) next to the careful numpy loop's steps.

    python benchmarks/overhead_breakdown.py [--generations 10000] [--dim 100]

Both sides run every generation, which one goes first alternating, each step timed with
``time.perf_counter_ns``; figures are medians in microseconds. tell's parts are timed by
wrapping the functions tell calls (a wrapper adds a fraction of a microsecond to each), so
they add up to a little more than the unwrapped tell, which is timed in a separate pass.
decode's part ``_gathered_pairs`` is its arithmetic (the gather, one product per pair and
the two sums), after the argument checks and the comparison of the seeds with those the
table issued. tell's own lines (the returns check and copy, its one sort of the returns,
the finiteness check) are what tell's total holds beyond the parts listed. ``_note_best``
runs only in generations that beat the best so far, a handful in a
run of random returns (5 of 2,000 here), most of them among the first generations (cold
caches, first calls), so the median of those calls says little; its line is timed in a third pass
that makes every generation improve (the best reset before each tell), with the count of
improving generations of the first pass beside it. The metrics' norms and return mean and
standard deviation are computed when first read (strategies/_metrics.py); the benchmark
reads them after the total, as its own line.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np

import asktell.distribution as distribution_module
import asktell.strategies._base as base_module
import asktell.strategies.openai_es as openai_module
from asktell.noise import NoiseTable
from asktell.strategies import OpenAIES
from asktell.strategies._stopping import StopHistory
from overhead import POPULATION, SIGMA, LR, CarefulLoop

TIMES: dict[str, list[int]] = defaultdict(list)


def _wrap(owner, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter_ns()
        result = inner(*args, **kwargs)
        TIMES[label].append(time.perf_counter_ns() - start)
        return result

    setattr(owner, name, timed)


def _run(noise: NoiseTable, dim: int, generations: int, parts: bool) -> None:
    es = OpenAIES(dim, POPULATION, SIGMA, LR, seed=0, noise=noise)
    if parts:
        _wrap(distribution_module, "_gathered_pairs", "  decode: _gathered_pairs")
        _wrap(openai_module.OpenAIES, "_update", "  tell: _update")
        _wrap(StopHistory, "record", "  tell: StopHistory.record")
        _wrap(base_module.BaseStrategy, "_tell_metrics", "  tell: _tell_metrics")
        _wrap(openai_module, "fold_weights", "    _update: fold_weights")
        _wrap(openai_module, "centered_ranks_sorted", "    _update: centered_ranks_sorted")
        _wrap(es.optimizer, "step", "    _update: Adam step")
        _wrap(noise, "_vetted_sum", "    _update: weighted sum (_vetted_sum)")
        _wrap(openai_module, "deferred", "    _update: deferred norms")
    loop = CarefulLoop(noise, dim, POPULATION, 0, "gather", "gemv")
    out = np.empty((POPULATION, dim), np.float32)
    rng = np.random.default_rng(0)
    clock = time.perf_counter_ns
    suffix = " (parts wrapped)" if parts else ""
    for g in range(generations):
        returns = rng.standard_normal(POPULATION)
        for side in ("asktell", "base") if g % 2 == 0 else ("base", "asktell"):
            if side == "asktell":
                improving = es.best is None or returns.max() > es.best.value
                t0 = clock()
                seeds = es.ask()
                t1 = clock()
                dist = es.distribution
                t2 = clock()
                dist.decode(seeds, dtype=np.float32, out=out)
                t3 = clock()
                metrics = es.tell(returns)
                t4 = clock()
                if not parts:
                    TIMES["  tell: improving generations (count)"].append(improving)
                for label, ns in [("asktell ask", t1 - t0), ("asktell distribution", t2 - t1),
                                  ("asktell decode", t3 - t2), ("asktell tell" + suffix, t4 - t3),
                                  ("asktell total" + suffix, t4 - t0)]:
                    TIMES[label].append(ns)
                if not parts:
                    # Outside the total: reading the metrics computes what tell deferred.
                    t5 = clock()
                    dict(metrics)
                    TIMES["asktell metrics read (not in total)"].append(clock() - t5)
            elif not parts:
                t0 = clock()
                keys = loop.sample()
                t1 = clock()
                loop.decode(keys)
                t2 = clock()
                weights = loop.rank_weights(returns)
                t3 = clock()
                grad = loop.gradient(keys, weights)
                t4 = clock()
                loop.adam(grad)
                t5 = clock()
                for label, ns in [("base sample", t1 - t0), ("base decode", t2 - t1),
                                  ("base rank_weights", t3 - t2), ("base gradient", t4 - t3),
                                  ("base adam", t5 - t4), ("base total", t5 - t0)]:
                    TIMES[label].append(ns)


def _run_note_best(noise: NoiseTable, dim: int, generations: int) -> None:
    """``_note_best`` in generations that all improve (the best reset before each tell),
    timed by wrapping it: what one improving generation pays for its snapshot."""
    es = OpenAIES(dim, POPULATION, SIGMA, LR, seed=0, noise=noise)
    label = "  tell: _note_best (improving, forced)"
    _wrap(es, "_note_best", label)
    out = np.empty((POPULATION, dim), np.float32)
    rng = np.random.default_rng(0)
    for _ in range(generations):
        seeds = es.ask()
        es.distribution.decode(seeds, dtype=np.float32, out=out)
        es.best = None
        es.tell(rng.standard_normal(POPULATION))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=100)
    args = parser.parse_args()
    noise = NoiseTable()
    noise.table
    _run(noise, args.dim, args.generations, parts=False)
    _run(noise, args.dim, args.generations, parts=True)
    _run_note_best(noise, args.dim, args.generations)
    for label, ns in TIMES.items():
        if label.endswith("(count)"):
            print(f"{label:40s} {sum(ns):5d} of {len(ns)}")
        else:
            print(f"{label:40s} {statistics.median(ns) / 1e3:8.2f} us")


if __name__ == "__main__":
    main()
