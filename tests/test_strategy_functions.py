"""Every strategy on the standard functions at small dimensions: fixed seeds, thresholds
with margin (an order of magnitude or more below what the runs reach where they converge,
a clear fraction of the starting loss where the method is not meant to converge).

The measured quantity is the best loss seen (candidates and the final centre), the usual
benchmark measure, so a strategy whose centre jitters (ClipUp, fixed sigma) is judged by
what it found.
"""

from __future__ import annotations

import numpy as np
import pytest

from asktell.functions import FUNCTIONS
from asktell.noise import NoiseTable
from asktell.registry import STRATEGIES

NOISE = NoiseTable(seed=0, size=1 << 20)
DIM = 5

# Starting points: 3 in every coordinate (Rastrigin's local minimum there has loss 45);
# Rosenbrock from the origin (loss 4 in 5-d).
START = {"sphere": 3.0, "ellipsoid": 3.0, "rastrigin": 3.0, "rosenbrock": 0.0}

#: (strategy, options) per label; budgets in function evaluations.
SETTINGS = {
    "snes": ("snes", {"sigma": 0.5}),
    "xnes": ("xnes", {"sigma": 0.5}),
    "cma_es": ("cma_es", {"sigma": 0.5}),
    "sep_cma_es": ("sep_cma_es", {"sigma": 0.5}),
    "mirrored_es": ("mirrored_es", {"sigma": 0.5}),
    "mirrored_es_sequential": ("mirrored_es", {"sigma": 0.5, "sequential": True}),
    "mirrored_es_gradient": (
        "mirrored_es",
        {"sigma": 0.1, "variant": "gradient", "learning_rate": 0.01, "population_size": 20},
    ),
    "pgpe": ("pgpe", {"sigma": 0.5, "population_size": 20, "center_learning_rate": 0.05}),
    "ars": (
        "ars",
        {"sigma": 0.05, "learning_rate": 0.05, "population_size": 16, "top_directions": 4},
    ),
}

# Rastrigin rewards a wide initial distribution that smooths out the local minima.
WIDE = {"sigma": 2.0}

# label, function, budget, threshold on the best loss seen, option overrides.
CASES = [
    ("snes", "sphere", 2000, 1e-12, {}),
    ("snes", "ellipsoid", 2500, 1e-10, {}),
    ("snes", "rosenbrock", 6000, 2.0, {}),
    ("snes", "rastrigin", 3000, 15.0, WIDE),
    ("xnes", "sphere", 3000, 1e-8, {}),
    ("xnes", "ellipsoid", 3000, 1e-6, {}),
    ("xnes", "rosenbrock", 6000, 0.1, {}),
    ("xnes", "rastrigin", 3000, 15.0, WIDE),
    ("cma_es", "sphere", 1500, 1e-12, {}),
    ("cma_es", "ellipsoid", 2500, 1e-12, {}),
    ("cma_es", "rosenbrock", 2500, 1e-8, {}),
    ("cma_es", "rastrigin", 3000, 15.0, WIDE),
    ("sep_cma_es", "sphere", 1500, 1e-12, {}),
    ("sep_cma_es", "ellipsoid", 1500, 1e-12, {}),
    ("sep_cma_es", "rosenbrock", 3000, 2.0, {}),
    ("sep_cma_es", "rastrigin", 3000, 20.0, WIDE),
    ("mirrored_es", "sphere", 1500, 1e-12, {}),
    ("mirrored_es", "ellipsoid", 3000, 1e4, {}),
    ("mirrored_es", "rosenbrock", 3000, 2.0, {}),
    ("mirrored_es", "rastrigin", 3000, 25.0, WIDE),
    ("mirrored_es_sequential", "sphere", 1000, 1e-12, {}),
    ("mirrored_es_sequential", "ellipsoid", 2000, 1e4, {}),
    ("mirrored_es_sequential", "rosenbrock", 2000, 2.0, {}),
    ("mirrored_es_sequential", "rastrigin", 2000, 25.0, WIDE),
    ("mirrored_es_gradient", "sphere", 3000, 1e-2, {}),
    ("mirrored_es_gradient", "ellipsoid", 3000, 1e4, {}),
    ("mirrored_es_gradient", "rosenbrock", 3000, 3.0, {}),
    ("mirrored_es_gradient", "rastrigin", 3000, 25.0, {"sigma": 0.5, "learning_rate": 0.05}),
    ("pgpe", "sphere", 3000, 0.1, {}),
    ("pgpe", "ellipsoid", 3000, 1e3, {}),
    ("pgpe", "rosenbrock", 3000, 1.0, {"sigma": 0.1, "center_learning_rate": 0.01}),
    ("pgpe", "rastrigin", 3000, 30.0, WIDE),
    ("ars", "sphere", 3000, 0.1, {}),
    ("ars", "ellipsoid", 3000, 1e4, {}),
    ("ars", "rosenbrock", 3000, 3.0, {}),
    ("ars", "rastrigin", 3000, 30.0, {"sigma": 0.5}),
]


def best_loss(label: str, function: str, budget: int, overrides: dict, seed: int = 0) -> float:
    """Run one strategy on one function; the best loss seen within ``budget`` evaluations."""
    name, options = SETTINGS[label]
    options = {**options, **overrides}
    f = FUNCTIONS[function]
    es = STRATEGIES.get(name)(
        num_params=DIM, seed=seed, x0=np.full(DIM, START[function]), noise=NOISE, **options
    )
    used, best = 0, np.inf
    while used + es.population_size <= budget:
        seeds = es.ask()
        losses = f(es.distribution.decode(seeds))
        used += seeds.size
        best = min(best, float(losses.min()))
        es.tell(-losses)
    return min(best, float(f(es.center)))


@pytest.mark.parametrize(
    "label,function,budget,threshold,overrides", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_reaches_threshold(label, function, budget, threshold, overrides):
    loss = best_loss(label, function, budget, overrides)
    assert loss < threshold, f"{label} on {function}: best loss {loss:.3g} >= {threshold:g}"


def test_every_new_strategy_is_covered():
    covered = {SETTINGS[c[0]][0] for c in CASES}
    for function in ("sphere", "ellipsoid", "rosenbrock", "rastrigin"):
        for name in covered:
            assert any(
                SETTINGS[c[0]][0] == name and c[1] == function for c in CASES
            ), f"{name} has no {function} case"
    assert covered >= {"snes", "xnes", "mirrored_es", "pgpe", "ars", "cma_es", "sep_cma_es"}


if __name__ == "__main__":  # print the values behind the thresholds
    for label, function, budget, threshold, overrides in CASES:
        values = [best_loss(label, function, budget, overrides, seed) for seed in range(4)]
        print(f"{label:24s} {function:10s} thr={threshold:8.1e} "
              + " ".join(f"{v:9.2e}" for v in values))
