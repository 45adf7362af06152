"""A smoke run of benchmarks/bbob.py: both solvers on two tiny BBOB problems, tables written.

The numbers are the benchmark's business (docs/bbob.md); this checks the script runs end to
end and that what it writes is true of its own records.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("cocoex")
pytest.importorskip("cma")

ROOT = Path(__file__).resolve().parent.parent


def _bbob():
    spec = importlib.util.spec_from_file_location("bbob_bench", ROOT / "benchmarks" / "bbob.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_writes_tables_consistent_with_its_records(tmp_path):
    bbob = _bbob()
    bbob.main(["--functions", "1", "8", "--dims", "2", "--instances", "1",
               "--budget-factor", "300", "--jobs", "1", "--out-dir", str(tmp_path)])
    stored = json.loads((tmp_path / "bbob.json").read_text())
    (res,) = stored.values()
    records = res["records"]
    assert {(r["solver"], r["f"]) for r in records} == {
        (s, f) for s in ("asktell", "pycma") for f in (1, 8)}
    for r in records:
        assert r["evaluations"] <= 600 + 20, "a run stops at the budget (plus one generation)"
        # a target is recorded as hit only if the best value found is below it
        for target in r["hits"]:
            assert r["final"] <= float(target)
    sphere = {r["solver"]: r for r in records if r["f"] == 1}
    assert all("1e-08" in r["hits"] for r in sphere.values()), "both solve the sphere"
    table = res["table"]["2"]
    assert table["asktell"]["reached"]["10"] == 1.0
    md = (tmp_path / "bbob.md").read_text()
    assert "| 2 | asktell |" in md and "| 2 | pycma |" in md


def test_seeds_repeat_each_problem_with_seeds_apart(tmp_path):
    """--seeds k: k runs per problem and solver (seeds instance + 1000 j), each compared
    with the other solver's run of the same seed."""
    bbob = _bbob()
    bbob.main(["--functions", "1", "--dims", "2", "--instances", "1", "--seeds", "2",
               "--budget-factor", "300", "--jobs", "1", "--out-dir", str(tmp_path)])
    (res,) = json.loads((tmp_path / "bbob.json").read_text()).values()
    assert sorted((r["solver"], r["seed"]) for r in res["records"]) == [
        ("asktell", 1), ("asktell", 1001), ("pycma", 1), ("pycma", 1001)]
    assert res["table"]["2"]["problems"] == 2 and res["table"]["2"]["both_solved"] == 2
    assert "instances 1-1 x 2 seeds" in (tmp_path / "bbob.md").read_text()


def test_restarts_without_a_registered_strategy_is_refused_clearly(tmp_path):
    bbob = _bbob()
    from asktell.registry import STRATEGIES

    if "restarts" in STRATEGIES:
        pytest.skip("a restarts strategy is registered on this branch")
    with pytest.raises(SystemExit, match="no 'restarts' strategy registered"):
        bbob.main(["--quick", "--restarts", "bipop", "--out-dir", str(tmp_path)])


def test_f_opt_is_the_minimum_cocoex_reports():
    import cocoex

    bbob = _bbob()
    problem = next(iter(cocoex.Suite("bbob", "", "function_indices:1 dimensions:2 instance_indices:1")))
    f_opt = bbob.f_opt_of(problem)
    # the sphere's value at any other point is above f_opt; COCO's f1 instance 1 has f_opt 79.48
    assert f_opt == pytest.approx(79.48)
    assert problem([0.0, 0.0]) > f_opt


def test_paired_comparison_counts_discordant_runs_and_tests_them():
    """The statistics under each restarts section: per-function counts, the runs only one
    side solved, an exact two-sided sign test on those, and a bootstrap interval over
    functions that contains the observed difference."""
    bbob = _bbob()

    def rec(solver, f, seed, solved):
        return {"solver": solver, "f": f, "dim": 5, "instance": 1, "seed": seed,
                "hits": {"1e-08": 10} if solved else {}}

    records = []
    for seed in range(10):  # f3: pycma solves 8 runs asktell does not; f1: both solve all
        records += [rec("asktell", 3, seed, seed < 1), rec("pycma", 3, seed, seed < 9),
                    rec("asktell", 1, seed, True), rec("pycma", 1, seed, True)]
    c = bbob.paired_comparison(records, 5)
    assert (c["pairs"], c["asktell_only"], c["pycma_only"]) == (20, 0, 8)
    assert c["per_function"] == {1: (10, 10, 10), 3: (1, 9, 10)}
    assert c["difference"] == -0.4
    assert c["p_value"] == 2 / 2**8  # both tails of 8 fair coin flips all landing one way
    assert c["interval"][0] <= -0.4 <= c["interval"][1] <= 0.0
    assert "f3 1/10 vs 9/10" in bbob._comparison_lines(records)[0]
