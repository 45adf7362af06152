"""Every registered strategy on the standard functions in 10, 100 and 1000 dimensions.

Each run starts from 3 in every coordinate (Rosenbrock: from the origin), gets a fixed
budget of function evaluations (the centre's loss, evaluated once per generation, counts
too) and stops early once the best loss seen reaches the target. The table gives, per
strategy, dimension and function: the best loss seen, the evaluations used to reach the
target ("-" if not reached) and the wall-clock seconds of the run; a plot shows the best
loss against evaluations. The centre's loss is evaluated (and counted) whenever the centre
moved to a point not evaluated yet.

    python benchmarks/functions.py [--dims 10 100 1000] [--budget 100000] [--seeds 1]
                                   [--out docs/strategies.md] [--plot docs/img/strategies-functions.png]

Settings are each strategy's defaults except for the step sizes below (and population 50
for the fixed-sigma, gradient-style methods). xNES is skipped above 200 dimensions: its
O(d^3) generation and d^-1.5 learning rate make it pointless there (see its docstring).
Seconds depend on the machine and its load; evaluations do not.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from asktell.functions import FUNCTIONS
from asktell.noise import NoiseTable
from asktell.registry import STRATEGIES

TARGET = 1e-8
FUNCTION_NAMES = ("sphere", "ellipsoid", "rosenbrock", "rastrigin")


def settings(label: str, dim: int) -> tuple[str, dict]:
    """(registry name, options) of each benchmarked configuration at dimension ``dim``."""
    adaptive = {"sigma": 1.0}
    table = {
        "openai_es": ("openai_es", {"population_size": 50, "sigma": 0.1, "learning_rate": 0.05}),
        "snes": ("snes", adaptive),
        "xnes": ("xnes", adaptive),
        "cma_es": ("cma_es", adaptive),
        "sep_cma_es": ("sep_cma_es", adaptive),
        "mirrored_es": ("mirrored_es", adaptive),
        "mirrored_es (sequential)": ("mirrored_es", {"sigma": 1.0, "sequential": True}),
        "mirrored_es (gradient)": (
            "mirrored_es",
            {"variant": "gradient", "population_size": 50, "sigma": 0.1, "learning_rate": 0.01},
        ),
        # ClipUp's learning rate is a distance per generation; the start is 3 sqrt(d) away.
        "pgpe": ("pgpe", {"population_size": 50, "sigma": 1.0,
                          "center_learning_rate": 0.02 * math.sqrt(dim)}),
        "ars": ("ars", {"population_size": 50, "top_directions": 12, "sigma": 0.1,
                        "learning_rate": 0.1}),
    }
    return table[label]


LABELS = [
    "openai_es", "snes", "xnes", "cma_es", "sep_cma_es", "mirrored_es",
    "mirrored_es (sequential)", "mirrored_es (gradient)", "pgpe", "ars",
]


def skip_reason(label: str, dim: int) -> str | None:
    if label == "xnes" and dim > 200:
        return "skipped (O(d^3) per generation)"
    return None


def run(label: str, function: str, dim: int, budget: int, seed: int, noise: NoiseTable):
    """One run: (best loss, evaluations to target or None, seconds, curve of (evals, best))."""
    name, options = settings(label, dim)
    f = FUNCTIONS[function]
    x0 = np.zeros(dim) if function == "rosenbrock" else np.full(dim, 3.0)
    start = time.perf_counter()
    es = STRATEGIES.get(name)(num_params=dim, seed=seed, x0=x0, noise=noise, **options)
    best, used, hit = float(f(x0)), 1, None
    curve = [(used, best)]
    next_point = 2.0
    last_center = x0
    while used + es.population_size + 1 <= budget:
        seeds = es.ask()
        X = es.distribution.decode(seeds)
        losses = f(X)
        es.tell(-losses)
        used += seeds.size
        best = min(best, float(np.min(losses)))
        center = es.center
        # The centre's loss counts as an evaluation, unless it is already known: an
        # unchanged centre, or a candidate that became the centre (the comma mirrored ES).
        if not np.array_equal(center, last_center):
            same = np.flatnonzero(np.all(X == center, axis=1))
            if same.size == 0:
                best = min(best, float(f(center)))
                used += 1
            last_center = center
        if used >= next_point:  # a log-spaced curve keeps the record small
            curve.append((used, best))
            next_point = used * 1.05
        if best <= TARGET:
            hit = used
            break
    curve.append((used, best))
    return best, hit, time.perf_counter() - start, curve


def format_cell(best: float, hit: int | None, seconds: float) -> str:
    reached = f"{hit:,}" if hit is not None else "-"
    return f"{best:.1e} / {reached} / {seconds:.1f}"


def plot(curves: dict, dims: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(dims), len(FUNCTION_NAMES), figsize=(16, 3.6 * len(dims)),
                             squeeze=False)
    colors = plt.get_cmap("tab10")
    for i, dim in enumerate(dims):
        for j, function in enumerate(FUNCTION_NAMES):
            ax = axes[i][j]
            for k, label in enumerate(LABELS):
                curve = curves.get((label, function, dim))
                if curve:
                    x, y = zip(*curve)
                    ax.plot(x, np.maximum(y, 1e-12), label=label, color=colors(k % 10))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{function}, d = {dim}")
            ax.axhline(TARGET, color="grey", linewidth=0.5)
            if i == len(dims) - 1:
                ax.set_xlabel("evaluations")
            if j == 0:
                ax.set_ylabel("best loss seen")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=1, help="runs per cell (median reported)")
    parser.add_argument("--strategies", nargs="+", default=LABELS)
    parser.add_argument("--out", type=Path, default=None,
                        help="docs page whose 'functions' block to regenerate")
    parser.add_argument("--plot", type=Path, default=None, help="PNG path for the plot")
    args = parser.parse_args(argv)
    noise = NoiseTable(seed=0)  # the default 2**25-value table, shared by every run
    noise.table  # build it once, outside every timed run

    curves: dict = {}
    sections = []
    for dim in args.dims:
        rows = [
            "| strategy | " + " | ".join(FUNCTION_NAMES) + " |",
            "|---|" + "---|" * len(FUNCTION_NAMES),
        ]
        for label in args.strategies:
            cells = []
            for function in FUNCTION_NAMES:
                reason = skip_reason(label, dim)
                if reason:
                    cells.append(reason)
                    continue
                results = [run(label, function, dim, args.budget, seed, noise)
                           for seed in range(args.seeds)]
                results.sort(key=lambda r: r[0])
                best, hit, seconds, curve = results[len(results) // 2]
                curves[(label, function, dim)] = curve
                cells.append(format_cell(best, hit, seconds))
                print(f"  d={dim} {label} {function}: {cells[-1]}", file=sys.stderr, flush=True)
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
        sections.append(f"**d = {dim}** (best loss / evaluations to {TARGET:g} / seconds)\n\n"
                        + "\n".join(rows))

    footer = (
        f"Budget {args.budget:,} evaluations per run (centre evaluations included), target "
        f"{TARGET:g}, {args.seeds} seed(s) per cell (the median run shown). Start: 3 in every "
        "coordinate (Rosenbrock: 0). numpy "
        f"{np.__version__}, Python {platform.python_version()}, {platform.machine()}. Seconds "
        "are wall-clock on the machine that ran it."
    )
    text = "\n\n".join(sections) + "\n\n" + footer
    if args.plot is not None:
        plot(curves, args.dims, args.plot)
        if args.out is not None:
            rel = Path(*args.plot.resolve().parts[len(args.out.resolve().parent.parts):])
            text += f"\n\n![best loss against evaluations]({rel.as_posix()})"
    print(text)
    if args.out is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import replace_section

        replace_section(args.out, "functions", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
