"""asktell's CMA-ES and sep-CMA-ES against pycma (``pip install cma``), counted in evaluations.

For each function (sphere, ellipsoid, Rosenbrock) and dimension (10, 40), both libraries
start from the same point with sigma 1 and their default population, without restarts, and
report the number of function evaluations at the end of the generation in which the best
loss seen first reaches ``1e-8``. The table gives the median over seeds (a run that does not
reach the target within the budget counts as infinite, as when Rosenbrock's local minimum
traps it) and the ratio asktell / pycma. sep-CMA-ES is compared with pycma's
``CMA_diagonal=True``. The acceptance rule is a ratio of at most 1.5.

    python benchmarks/cma_vs_pycma.py [--seeds 10] [--dims 10 40] [--jobs 1]
                                      [--out docs/strategies.md]

Evaluation counts do not depend on the machine; the seconds column does.

    python benchmarks/cma_vs_pycma.py --stop-rules [--seeds 3] [--dims 10]

measures instead what the stopping rules save: each run goes until a rule fires (asktell's
``es.stop()``, pycma's ``es.stop()``) or the budget is spent, and the table gives the
evaluations used, the best loss then, and the rules that fired, against the whole budget.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from asktell.functions import FUNCTIONS
from asktell.noise import NoiseTable
from asktell.strategies import CMAES, SepCMAES

TARGET = 1e-8
SIGMA0 = 1.0
FUNCTIONS_COMPARED = ("sphere", "ellipsoid", "rosenbrock")
#: asktell name -> (class, pycma options)
VARIANTS = {"cma_es": (CMAES, {}), "sep_cma_es": (SepCMAES, {"CMA_diagonal": True})}


def start_point(function: str, dim: int) -> np.ndarray:
    """Rosenbrock from the origin (loss d - 1), the others from 3 in every coordinate."""
    return np.zeros(dim) if function == "rosenbrock" else np.full(dim, 3.0)


def budget_for(dim: int) -> int:
    """Evaluations allowed per run: about twice what sep-CMA-ES needs on Rosenbrock
    (~1e5 evaluations in 10-d, ~1.5e5 in 40-d), the slowest case here."""
    return max(300_000, 10_000 * dim)


def asktell_evals(
    variant: str, function: str, dim: int, seed: int, parameters: str | None = None
) -> tuple[int | None, float]:
    """Evaluations to reach the target (``None`` if not within the budget), and seconds.
    ``parameters``: the CMA-ES preset (``None``: the default)."""
    cls, _ = VARIANTS[variant]
    f = FUNCTIONS[function]
    extra = {} if parameters is None else {"parameters": parameters}
    # A 4M-float table: distinct enough for 10-40 dims, built in a few milliseconds.
    es = cls(num_params=dim, sigma=SIGMA0, x0=start_point(function, dim), seed=seed,
             noise=NoiseTable(seed=seed, size=1 << 22), **extra)
    used, budget, start = 0, budget_for(dim), time.perf_counter()
    while used < budget:
        seeds = es.ask()
        losses = f(es.distribution.decode(seeds))
        used += seeds.size
        es.tell(-losses)
        if losses.min() <= TARGET:
            return used, time.perf_counter() - start
    return None, time.perf_counter() - start


def pycma_evals(variant: str, function: str, dim: int, seed: int) -> tuple[int | None, float]:
    """The same measurement with pycma (its termination criteria ignored, as ours has none)."""
    import cma

    f = FUNCTIONS[function]
    options = {"seed": seed + 1, "verbose": -9, **VARIANTS[variant][1]}
    es = cma.CMAEvolutionStrategy(start_point(function, dim), SIGMA0, options)
    budget, start = budget_for(dim), time.perf_counter()
    while es.countevals < budget:
        X = es.ask()
        losses = f(np.asarray(X))
        es.tell(X, losses.tolist())
        if losses.min() <= TARGET:
            return int(es.countevals), time.perf_counter() - start
    return None, time.perf_counter() - start


def run_until_stop(library: str, variant: str, function: str, dim: int, seed: int):
    """Evaluations until a stopping rule fires (or the budget ends), the best loss then,
    and the rules that fired (``"budget"`` if none did)."""
    f, budget = FUNCTIONS[function], budget_for(dim)
    if library == "asktell":
        es = VARIANTS[variant][0](num_params=dim, sigma=SIGMA0, x0=start_point(function, dim),
                                  seed=seed, noise=NoiseTable(seed=seed, size=1 << 22))
        used, best = 0, math.inf
        while used < budget and not es.stop():
            seeds = es.ask()
            losses = f(es.distribution.decode(seeds))
            used, best = used + seeds.size, min(best, float(losses.min()))
            es.tell(-losses)
        return used, best, ",".join(es.stop()) or "budget"
    import cma

    options = {"seed": seed + 1, "verbose": -9, "maxfevals": budget, **VARIANTS[variant][1]}
    es = cma.CMAEvolutionStrategy(start_point(function, dim), SIGMA0, options)
    best = math.inf
    while not es.stop():
        X = es.ask()
        losses = f(np.asarray(X))
        best = min(best, float(losses.min()))
        es.tell(X, losses.tolist())
    fired = [k for k in es.stop() if k != "maxfevals"]
    return int(es.countevals), best, ",".join(fired) or "budget"


def stop_rules_table(args: argparse.Namespace) -> str:
    rows = [
        "| strategy | function | d | budget | asktell evals at stop | asktell best loss "
        "| asktell rules | pycma evals at stop | pycma best loss | pycma rules |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    saved, total = 0, 0
    for variant in args.variants:
        for dim in args.dims:
            for function in args.functions:
                for seed in range(args.seeds):
                    cells = [run_until_stop(lib, variant, function, dim, seed)
                             for lib in ("asktell", "pycma")]
                    (ue, ub, ur), (pe, pb, pr) = cells
                    saved, total = saved + budget_for(dim) - ue, total + budget_for(dim)
                    rows.append(
                        f"| {variant} | {function} | {dim} | {budget_for(dim):,} | {ue:,} | "
                        f"{ub:.2g} | {ur} | {pe:,} | {pb:.2g} | {pr} |"
                    )
    rows.append(
        f"\nasktell's stopping rules used {total - saved:,} of {total:,} budgeted evaluations "
        f"({saved / total:.0%} saved), one row per seed (sigma0 = {SIGMA0}, default population)."
    )
    return "\n".join(rows)


def _one(job: tuple[str, str, str, int, int]) -> tuple[tuple[str, str, str, int, int], int | None, float]:
    library, variant, function, dim, seed = job
    if library == "pycma":
        evals, seconds = pycma_evals(variant, function, dim, seed)
    else:  # "asktell" (the default preset) or "asktell:<preset>"
        preset = library.partition(":")[2] or None
        evals, seconds = asktell_evals(variant, function, dim, seed, preset)
    return job, evals, seconds


def _run_all(jobs: list[tuple], workers: int) -> dict[tuple, tuple[int | None, float]]:
    results: dict[tuple, tuple[int | None, float]] = {}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for job, evals, seconds in pool.map(_one, jobs):
                results[job] = (evals, seconds)
    else:
        for job in jobs:
            results[job] = _one(job)[1:]
    return results


def restarts_run(job: tuple[str, str, int, int, int]) -> tuple[tuple, float, int | None]:
    """Best loss within ``budget`` evaluations and the evaluations to reach the target."""
    from asktell.strategies import Restarts

    mode, function, dim, seed, budget = job
    f = FUNCTIONS[function]
    common = dict(num_params=dim, x0=np.full(dim, 3.0), seed=seed,
                  noise=NoiseTable(seed=seed, size=1 << 22))
    if mode == "plain":
        es = CMAES(sigma=2.0, **common)
    else:
        es = Restarts(mode=mode, strategy={"kind": "cma_es", "sigma": 2.0}, **common)
    used, best, reached = 0, math.inf, None
    while used < budget:
        seeds = es.ask()
        losses = f(es.distribution.decode(seeds))
        used += seeds.size
        es.tell(-losses)
        best = min(best, float(losses.min()))
        if best <= TARGET:
            reached = used
            break
    return job, best, reached


def restarts_table(args: argparse.Namespace) -> str:
    jobs = [(mode, function, dim, seed, args.budget) for function in args.functions
            for dim in args.dims for mode in ("plain", "ipop", "bipop")
            for seed in range(args.seeds)]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            out = list(pool.map(restarts_run, jobs))
    else:
        out = [restarts_run(job) for job in jobs]
    rows = ["| function | d | strategy | reached 1e-8 | median evals (reached) | median best loss |",
            "|---|---|---|---|---|---|"]
    for function in args.functions:
        for dim in args.dims:
            for mode in ("plain", "ipop", "bipop"):
                mine = [(b, r) for (m, f, d, _, _), b, r in out
                        if (m, f, d) == (mode, function, dim)]
                hit = [r for _, r in mine if r is not None]
                med = f"{statistics.median(hit):,.0f}" if hit else "-"
                best = statistics.median(b for b, _ in mine)
                rows.append(f"| {function} | {dim} | {mode} | {len(hit)}/{len(mine)} | {med} "
                            f"| {best:.3g} |")
    return "\n".join(rows) + (
        f"\n\n{args.seeds} seeds, budget {args.budget:,} evaluations, sigma0 2, x0 = 3 "
        "in every coordinate, restarts from x0."
    )


def presets_table(args: argparse.Namespace) -> str:
    """Median evaluations to 1e-8 of each CMA-ES preset and of pycma, and the ratios."""
    libraries = [f"asktell:{p}" for p in args.presets] + ["pycma"]
    jobs = [
        (library, variant, function, dim, seed)
        for variant in args.variants for dim in args.dims for function in args.functions
        for library in libraries for seed in range(args.seeds)
    ]
    results = _run_all(jobs, args.jobs)
    head = " | ".join(f"asktell {p} evals | ratio" for p in args.presets)
    rows = [f"| strategy | function | d | pycma evals | {head} |",
            "|---|---|---|---|" + "---|---|" * len(args.presets)]
    for variant in args.variants:
        for dim in args.dims:
            for function in args.functions:
                med = {
                    lib: median_evals([results[(lib, variant, function, dim, s)][0]
                                       for s in range(args.seeds)])
                    for lib in libraries
                }
                theirs = med["pycma"]
                fmt = lambda v: "not reached" if not math.isfinite(v) else f"{v:,.0f}"  # noqa: E731
                cells = [fmt(theirs)]
                for p in args.presets:
                    ours = med[f"asktell:{p}"]
                    ratio = ours / theirs if math.isfinite(theirs) and math.isfinite(ours) else math.nan
                    cells += [fmt(ours), f"{ratio:.2f}"]
                rows.append(f"| {variant} | {function} | {dim} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + (
        f"\n\nMedian evaluations to a best loss of {TARGET:g} over {args.seeds} seeds "
        f"(sigma0 = {SIGMA0}, default population, no restarts)."
    )


def median_evals(values: list[int | None]) -> float:
    return statistics.median(math.inf if v is None else v for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS_COMPARED))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", type=Path, default=None,
                        help="docs page whose cma_vs_pycma block to regenerate")
    parser.add_argument("--stop-rules", action="store_true",
                        help="measure the evaluations the stopping rules save instead")
    parser.add_argument("--presets", nargs="+", default=None,
                        help="compare these CMA-ES parameter presets with pycma instead "
                        "(e.g. --presets tutorial pycma)")
    parser.add_argument("--restarts", action="store_true",
                        help="plain CMA-ES, IPOP and BIPOP on the functions and dims given "
                        "(sigma0 2, x0 3 in every coordinate), budget --budget evaluations")
    parser.add_argument("--budget", type=int, default=200_000)
    args = parser.parse_args(argv)
    if args.stop_rules:
        print(stop_rules_table(args))
        return 0
    if args.restarts:
        print(restarts_table(args))
        return 0
    if args.presets:
        print(presets_table(args))
        return 0

    jobs = [
        (library, variant, function, dim, seed)
        for variant in args.variants
        for dim in args.dims
        for function in args.functions
        for library in ("asktell", "pycma")
        for seed in range(args.seeds)
    ]
    results: dict[tuple, tuple[int | None, float]] = {}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for job, evals, seconds in pool.map(_one, jobs):
                results[job] = (evals, seconds)
    else:
        for job in jobs:
            _, evals, seconds = _one(job)
            results[job] = (evals, seconds)
            print(f"  {job}: {evals} evaluations, {seconds:.1f} s", file=sys.stderr)

    rows = [
        "| strategy | function | d | asktell median evals | pycma median evals | ratio "
        "| asktell reached | pycma reached | asktell s/run | pycma s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for variant in args.variants:
        for dim in args.dims:
            for function in args.functions:
                cells = {}
                for library in ("asktell", "pycma"):
                    runs = [results[(library, variant, function, dim, s)] for s in range(args.seeds)]
                    cells[library] = (
                        median_evals([r[0] for r in runs]),
                        sum(r[0] is not None for r in runs),
                        statistics.mean(r[1] for r in runs),
                    )
                ours, theirs = cells["asktell"][0], cells["pycma"][0]
                ratio = ours / theirs if math.isfinite(theirs) else math.nan
                if math.isfinite(ratio):
                    worst = max(worst, ratio)
                fmt = lambda v: "not reached" if not math.isfinite(v) else f"{v:,.0f}"  # noqa: E731
                rows.append(
                    f"| {variant} | {function} | {dim} | {fmt(ours)} | {fmt(theirs)} | "
                    f"{ratio:.2f} | {cells['asktell'][1]}/{args.seeds} | "
                    f"{cells['pycma'][1]}/{args.seeds} | {cells['asktell'][2]:.2f} | "
                    f"{cells['pycma'][2]:.2f} |"
                )
    import cma

    footer = (
        f"\nMedian evaluations to reach a best loss of {TARGET:g} over {args.seeds} seeds "
        f"(sigma0 = {SIGMA0}, default population, no restarts, budget "
        "max(300,000, 10,000 x d) evaluations). "
        f"Largest ratio: {worst:.2f} (the acceptance rule is <= 1.5). pycma {cma.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}; seconds per run are "
        "wall-clock on the machine that ran it and are only indicative.\n"
        "Regenerate: `python benchmarks/cma_vs_pycma.py --out docs/strategies.md`."
    )
    table = "\n".join(rows) + "\n" + footer
    print(table)
    if args.out is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import replace_section

        replace_section(args.out, "cma_vs_pycma", table)
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
