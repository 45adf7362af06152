"""A smoke run of benchmarks/bbob_runs.py: both views end to end on a tiny BBOB problem, and
the restarts view accounts for every evaluation of each side's restarts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("cocoex")
pytest.importorskip("cma")

ROOT = Path(__file__).resolve().parent.parent


def _runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bbob_runs", ROOT / "benchmarks" / "bbob_runs.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def test_restarts_view_splits_each_side_into_runs_that_add_up(capsys):
    mod = _runs()
    p, f_opt = mod.problem(15, 2, 1)  # Rastrigin: restarts before the budget of 2,000
    for runner in (mod.runs_asktell, mod.runs_pycma):
        rec = mod.bbob.TargetRecorder(p, f_opt, 2000)
        runs = runner(rec, 2, 1, "ipop")
        assert len(runs) >= 2, runner.__name__
        assert sum(evals for _, evals, _ in runs) == rec.evaluations, runner.__name__
        assert [lam for lam, _, _ in runs][:2] == [6, 12], runner.__name__  # floor(6.08 * 2^k)
        assert all(end for _, _, end in runs[:-1]), "every run but the last names its rule"
    p.free()
    mod.main(["restarts", "--function", "15", "--dim", "2", "--instances", "1", "--seeds", "1",
              "--budget-factor", "300"])
    out = capsys.readouterr().out
    assert "| 6 | asktell |" in out and "| 6 | pycma |" in out


def test_single_view_prints_rates_and_a_trace(capsys):
    mod = _runs()
    mod.main(["single", "--function", "1", "--dim", "2", "--instances", "1", "--seeds", "2",
              "--population", "6", "--generations", "3", "--trace"])
    out = capsys.readouterr().out
    assert "asktell reached 1e-8 in 0/2" in out and "pycma reached 1e-8 in 0/2" in out
    assert out.count("mean evaluations 18; per instance i1 0\n") == 2  # 3 generations of 6
    assert "| 3 |" in out  # the third generation's medians


def test_single_view_with_stopping_rules_ends_runs_on_them(capsys):
    mod = _runs()
    # Rastrigin in 2-D at population 6: runs stall and stop long before 3,000 generations
    mod.main(["single", "--function", "15", "--dim", "2", "--instances", "1", "--seeds", "2",
              "--population", "6", "--generations", "3000", "--stop",
              "--inner", "tolstagnation=0"])
    out = capsys.readouterr().out
    assert "runs with {'tolstagnation': 0}" in out
    assert out.count("stopped by {") == 2
