"""Where a BBOB gap between asktell and pycma comes from: restarts run by run, single runs.

Two views of one BBOB function in one dimension (instances 1-5), both solvers side by side
with the settings of ``benchmarks/bbob.py`` (x0 the origin, sigma 2, budget 10^4 D, the same
seed ``instance + 1000 k``):

``restarts``: each side's IPOP or BIPOP (asktell's ``restarts`` strategy, pycma's
``fmin2``) split into its runs: per population, how many problems reached a run of that
population, how many such runs reached 1e-8, how many the budget cut, the mean evaluations
spent before it, and the mean length and stop reasons of the runs the stopping rules ended.

``single``: single runs at one population from the origin (a run ends at 1e-8, after
``--generations`` or, with ``--stop``, when its stopping rules fire): the fraction reaching 1e-8, with its standard
error, and with ``--trace`` the medians over runs of sigma, |p_sigma|, the condition number
of C, the mean's distance to x_opt and f(mean) - f_opt, generation by generation.

    python benchmarks/bbob_runs.py restarts --function 20 --seeds 16
    python benchmarks/bbob_runs.py single --function 20 --population 141 --seeds 100
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bbob  # the benchmark's problems, recorder and solvers (after the path insert)


def problem(fid: int, dim: int, inst: int):
    import cocoex

    suite = cocoex.Suite("bbob", "", f"function_indices:{fid} dimensions:{dim} "
                         f"instance_indices:{inst}")
    p = next(iter(suite))
    return p, bbob.f_opt_of(p)


def runs_asktell(rec, dim: int, seed: int, mode: str, inner: dict | None = None) -> list[tuple]:
    """(population, evaluations, end) per run; end: the rules that fired, target or budget.
    ``inner``: options of the CMA-ES runs (default: the benchmark's, none)."""
    if inner:
        from asktell.noise import NoiseTable
        from asktell.registry import STRATEGIES

        es = STRATEGIES.get("restarts")(num_params=dim, sigma=bbob.SIGMA0, x0=np.zeros(dim),
                                        seed=seed, noise=NoiseTable(seed=seed, size=1 << 20),
                                        mode=mode, strategy={"kind": "cma_es", **inner})
    else:
        es = bbob.strategy_for(dim, np.zeros(dim), seed, mode)
    runs, start = [], 0
    while not rec.done:
        seeds = es.ask()
        losses = np.array([rec(x) for x in es.distribution.decode(seeds)])
        metrics = es.tell(-losses)
        if metrics["restart_event"]:
            fired = metrics["restart_event"].split(": ", 1)[1].split(";")[0]
            runs.append((seeds.size, rec.evaluations - start, fired))
            start = rec.evaluations
        if es.stop():
            break
    runs.append((seeds.size, rec.evaluations - start, _end(rec)))
    return runs


def runs_pycma(rec, dim: int, seed: int, mode: str, inner: dict | None = None) -> list[tuple]:
    import cma

    last: dict[int, object] = {}  # one entry per run (its CMAEvolutionStrategy)
    options = {"seed": seed, "verbose": -9, "maxfevals": rec.budget,
               "ftarget": rec.f_opt + bbob.TARGETS[-1]}
    kwargs = {"bipop": True} if mode == "bipop" else {"incpopsize": 2}
    cma.fmin2(rec, list(np.zeros(dim)), bbob.SIGMA0, options, restarts=9,
              callback=lambda es: last.__setitem__(id(es), es), **kwargs)
    runs, before = [], 0
    for es in last.values():
        fired = ", ".join(sorted(k for k in es.stop(check=False) if k not in ("ftarget", "maxfevals")))
        runs.append((es.popsize, es.countevals - before, fired))
        before = es.countevals
    runs[-1] = runs[-1][:2] + (_end(rec) if _end(rec) == "target" or not runs[-1][2] else runs[-1][2],)
    return runs


def _end(rec) -> str:
    return "target" if bbob.TARGETS[-1] in rec.hits else "budget"


def restarts(a) -> None:
    solved = collections.Counter()
    table: dict = collections.defaultdict(lambda: {"reached": 0, "solved": 0, "cut": 0,
                                                    "before": [], "stopped": [], "why": collections.Counter()})
    for inst in a.instances:
        p, f_opt = problem(a.function, a.dim, inst)
        for k in range(a.first_seed, a.first_seed + a.seeds):
            for side, runner in (("asktell", runs_asktell), ("pycma", runs_pycma)):
                rec = bbob.TargetRecorder(p, f_opt, a.budget_factor * a.dim)
                spent = 0
                for lam, evals, end in runner(rec, a.dim, inst + 1000 * k, a.mode, a.inner):
                    row = table[(side, lam)]
                    row["reached"] += 1
                    row["before"].append(spent)
                    spent += evals
                    if end == "target":
                        row["solved"] += 1
                    elif end == "budget":
                        row["cut"] += 1
                    else:
                        row["stopped"].append(evals)
                        row["why"].update(end.split(", "))
                solved[side] += bbob.TARGETS[-1] in rec.hits
        p.free()
    n = len(a.instances) * a.seeds
    print(f"f{a.function} D={a.dim} {a.mode}, instances {a.instances}, k {a.first_seed}.."
          f"{a.first_seed + a.seeds - 1}: reached 1e-8 asktell {solved['asktell']}/{n}, "
          f"pycma {solved['pycma']}/{n}")
    print("| population | side | runs | reached 1e-8 | cut by budget | mean evals before | "
          "mean evals of stopped runs | stopped by |\n|---|---|---|---|---|---|---|---|")
    for lam in sorted({lam for _, lam in table}):
        for side in ("asktell", "pycma"):
            r = table.get((side, lam))
            if r is None:
                continue
            why = ", ".join(f"{k} {v}" for k, v in r["why"].most_common(3))
            stopped = f"{np.mean(r['stopped']):.0f}" if r["stopped"] else "-"
            print(f"| {lam} | {side} | {r['reached']} | {r['solved']} | {r['cut']} | "
                  f"{np.mean(r['before']):.0f} | {stopped} | {why} |")


def single_run(side: str, p, f_opt: float, x_opt, dim: int, lam: int, seed: int, gens: int,
               inner: dict | None = None, stop: bool = False):
    """(reached 1e-8, per-generation rows sigma, |p_sigma|, cond C, |m - x_opt|, f(m) - f_opt,
    generations run, the stopping rules that ended it ("" for none); with ``stop`` a run
    ends when its stopping rules fire)."""
    import cma

    from asktell.noise import NoiseTable
    from asktell.registry import STRATEGIES

    if side == "asktell":
        es = STRATEGIES.get("cma_es")(num_params=dim, sigma=bbob.SIGMA0, x0=np.zeros(dim),
                                      seed=seed, noise=NoiseTable(seed=seed, size=1 << 20),
                                      population_size=lam, **(inner or {}))
    else:
        es = cma.CMAEvolutionStrategy(np.zeros(dim), bbob.SIGMA0,
                                      {"seed": seed, "verbose": -9, "popsize": lam})
    rows = []
    for g in range(1, gens + 1):
        X = es.distribution.decode(es.ask()) if side == "asktell" else es.ask()
        f = np.array([p(x) for x in X]) - f_opt
        if f.min() <= bbob.TARGETS[-1]:
            return True, rows, g, ""
        if side == "asktell":
            es.tell(-f)
            C, m, ps = es.C, es.center, es.path_sigma
        else:
            es.tell(X, list(f))
            C, m, ps = es.sm.C, es.mean, es.adapt_sigma.ps
        if x_opt is not None:
            ev = np.linalg.eigvalsh((C + C.T) / 2)
            rows.append([es.sigma, np.linalg.norm(ps), ev.max() / ev.min(),
                         np.linalg.norm(m - x_opt), p(m) - f_opt])
        fired = sorted(es.stop()) if stop else []
        if fired:
            return False, rows, g, ",".join(fired)
    return False, rows, gens, ""


def single(a) -> None:
    solved = collections.Counter()
    traces = collections.defaultdict(list)
    lengths, reasons = collections.defaultdict(list), collections.defaultdict(collections.Counter)
    by_end = collections.defaultdict(list)  # (side, how a run ended): its generations
    for inst in a.instances:
        p, f_opt = problem(a.function, a.dim, inst)
        x_opt = bbob.x_opt_of(p) if a.trace else None
        for side in ("asktell", "pycma"):
            for k in range(a.first_seed, a.first_seed + a.seeds):
                ok, rows, g, fired = single_run(side, p, f_opt, x_opt, a.dim, a.population,
                                                a.seed_base + inst + 1000 * k, a.generations,
                                                a.inner, a.stop)
                solved[side] += ok
                solved[(side, inst)] += ok
                lengths[side].append(g)
                reasons[side].update(fired.split(",") if fired else [])
                by_end[(side, fired or ("target" if ok else "generations"))].append(g)
                traces[side].append(rows)
        p.free()
    n = len(a.instances) * a.seeds
    for side in ("asktell", "pycma"):
        q = solved[side] / n
        print(f"f{a.function} D={a.dim} population {a.population}: {side} reached 1e-8 in "
              f"{solved[side]}/{n} = {q:.3f} +- {np.sqrt(q * (1 - q) / n):.3f} single runs; "
              f"mean evaluations {a.population * np.mean(lengths[side]):.0f}"
              + (f"; stopped by {dict(reasons[side].most_common(4))}" if a.stop else "")
              + "; per instance " + ", ".join(f"i{i} {solved[(side, i)]}" for i in a.instances))
    if a.stop:
        print("| how a run ended | runs asktell / pycma | mean evaluations asktell / pycma |\n"
              "|---|---|---|")
        for end in sorted({e for _, e in by_end}, key=lambda e: -len(by_end[("asktell", e)])):
            runs = [by_end.get((side, end), []) for side in ("asktell", "pycma")]
            means = [f"{a.population * np.mean(r):.0f}" if r else "-" for r in runs]
            print(f"| {end} | {len(runs[0])} / {len(runs[1])} | {means[0]} / {means[1]} |")
    if a.trace:
        names = ("sigma", "|p_sigma|", "cond(C)", "|m - x_opt|", "f(m) - f_opt")
        print("medians over the runs still going (asktell / pycma)\n| generation | "
              + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
        for g in (1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80):
            cells = []
            for j in range(len(names)):
                meds = [np.median([t[g - 1][j] for t in traces[s] if len(t) >= g] or [np.nan])
                        for s in ("asktell", "pycma")]
                cells.append(f"{meds[0]:.3g} / {meds[1]:.3g}")
            print(f"| {g} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("view", choices=["restarts", "single"])
    p.add_argument("--function", type=int, required=True)
    p.add_argument("--dim", type=int, default=5)
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--seeds", type=int, default=4, help="seeds instance + 1000 k per instance")
    p.add_argument("--first-seed", type=int, default=0, help="the first k")
    p.add_argument("--mode", choices=["ipop", "bipop"], default="ipop", help="restarts view")
    p.add_argument("--budget-factor", type=int, default=10_000)
    p.add_argument("--population", type=int, default=141, help="single view")
    p.add_argument("--generations", type=int, default=95, help="single view: most per run")
    p.add_argument("--seed-base", type=int, default=0, help="single view: added to each seed")
    p.add_argument("--trace", action="store_true", help="single view: per-generation medians")
    p.add_argument("--stop", action="store_true",
                   help="single view: a run also ends when its stopping rules fire")
    p.add_argument("--inner", nargs="+", default=[], metavar="KEY=VALUE",
                   help="options of asktell's CMA-ES runs, JSON values (e.g. tolstagnation=0)")
    a = p.parse_args(argv)
    a.inner = {k: json.loads(v) for k, v in (item.split("=", 1) for item in a.inner)}
    if a.inner:
        print(f"asktell's CMA-ES runs with {a.inner}")
    (restarts if a.view == "restarts" else single)(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
