"""CMA-ES and sep-CMA-ES need at most 1.5x pycma's evaluations (a quick subset of
``benchmarks/cma_vs_pycma.py``, whose full table is in docs/strategies.md)."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

pytest.importorskip("cma")

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "cma_vs_pycma.py"
_spec = importlib.util.spec_from_file_location("cma_vs_pycma", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SEEDS = range(3)


@pytest.mark.parametrize(
    "variant,function",
    [("cma_es", "sphere"), ("cma_es", "ellipsoid"), ("sep_cma_es", "ellipsoid")],
)
def test_median_evaluations_within_1_5x_of_pycma(variant, function):
    ours = [bench.asktell_evals(variant, function, 10, seed)[0] for seed in SEEDS]
    theirs = [bench.pycma_evals(variant, function, 10, seed)[0] for seed in SEEDS]
    assert None not in ours and None not in theirs, (ours, theirs)
    ratio = statistics.median(ours) / statistics.median(theirs)
    assert ratio <= 1.5, f"{variant} on {function}: {ours} vs pycma {theirs} (ratio {ratio:.2f})"
