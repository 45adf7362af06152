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


def test_pycma_from_reuses_pycmas_records_and_check_pycma_catches_a_different_one(tmp_path):
    """--pycma-from LABEL runs asktell only and takes pycma's records of the same problems
    and seeds from a stored section; --check-pycma reruns pycma and refuses the run when a
    stored record is not what pycma gives (here: one edited), or when one is missing."""
    bbob = _bbob()
    base = ["--functions", "1", "--dims", "2", "--instances", "1", "--seeds", "2",
            "--budget-factor", "300", "--jobs", "1", "--out-dir", str(tmp_path)]
    bbob.main([*base, "--label", "both"])
    bbob.main([*base, "--label", "reused", "--pycma-from", "both", "--check-pycma", "2"])
    stored = json.loads((tmp_path / "bbob.json").read_text())
    def by_run(section, solver, drop=("cpu_seconds",)):
        return sorted(json.dumps({k: v for k, v in r.items() if k not in drop})
                      for r in section["records"] if r["solver"] == solver)

    # pycma's records are the stored ones, CPU time included; asktell's are this run's.
    assert by_run(stored["reused"], "pycma", ()) == by_run(stored["both"], "pycma", ())
    assert by_run(stored["reused"], "asktell") == by_run(stored["both"], "asktell")
    assert stored["reused"]["meta"]["pycma_from"] == "both"
    assert stored["reused"]["meta"]["pycma_checked"] == 1  # problems 0 of 2 (every 2nd)
    # A record from before --seeds holds no seed (its seed is the instance): still pycma's.
    for r in stored["both"]["records"]:
        if r["seed"] == r["instance"]:
            del r["seed"]
    (tmp_path / "bbob.json").write_text(json.dumps(stored))
    bbob.main([*base, "--label", "old-format", "--pycma-from", "both", "--check-pycma", "1"])
    stored = json.loads((tmp_path / "bbob.json").read_text())
    for r in stored["both"]["records"]:
        if r["solver"] == "pycma":
            r["evaluations"] += 1  # a record pycma would not give
    (tmp_path / "bbob.json").write_text(json.dumps(stored))
    with pytest.raises(SystemExit, match="--check-pycma: pycma's rerun of f1 D=2 i1 seed 1 differs"):
        bbob.main([*base, "--label", "again", "--pycma-from", "both", "--check-pycma", "1"])
    with pytest.raises(SystemExit, match="holds no pycma record of f1 D=2 i1 seed 2001"):
        bbob.main([*base, "--seeds", "3", "--label", "more", "--pycma-from", "both"])
    with pytest.raises(SystemExit, match="its budget_factor is 300, this run's 400"):
        bbob.main([*base, "--budget-factor", "400", "--label", "b", "--pycma-from", "both"])


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


# --------------------------------------------------------------------------- stored sections
def _store():
    _bbob()  # puts benchmarks/ on sys.path, where bbob_store lives
    import bbob_store

    return bbob_store


def test_docs_bbob_md_is_what_docs_bbob_json_renders():
    """docs/bbob.md is written from docs/bbob.json, the pooled sections' records resolved
    from the sections they name (stored once: the file was 6.7 MB with copies)."""
    bbob, store = _bbob(), _store()
    results = store.load_results(ROOT / "docs" / "bbob.json")
    assert bbob.render(results) == (ROOT / "docs" / "bbob.md").read_text()
    pooled = [label for label, s in results.items() if "pooled_from" in s]
    assert {"ipop-d5-12seeds", "bipop-d5-8seeds", "bipop-d5-12seeds-tolupsigma"} <= set(pooled)
    assert not any("records" in results[label] for label in pooled)


def test_pool_rebuilds_the_stored_pooled_section_from_its_sources():
    """--pool on the two sections the last section was pooled from (by hand, before --pool
    existed) gives that section: meta (command, seeds 12, first_seed 0, summed wall time),
    table and records."""
    bbob, store = _bbob(), _store()
    results = store.load_results(ROOT / "docs" / "bbob.json")
    stored = results["bipop-d5-12seeds-tolupsigma"]
    built = store.pool_sections(results, ["bipop-d5-8seeds", "bipop-d5-4seeds-k8"], "again",
                                stored["note"], bbob.summarise)
    assert built == stored
    assert built["meta"]["command"] == "pooled: bipop-d5-8seeds (k 0-7) + bipop-d5-4seeds-k8 (k 8-11)"
    records = store.section_records(results, "bipop-d5-12seeds-tolupsigma")
    assert len(records) == 2 * 24 * 5 * 12  # both solvers, 24 functions, 5 instances, 12 seeds
    assert len({(r["solver"], r["f"], r["instance"], r["seed"]) for r in records}) == len(records)


def _section(first_seed, seeds, **meta):
    records = [{"solver": s, "f": 1, "dim": 2, "instance": 1, "seed": 1 + 1000 * k,
                "evaluations": 10, "cpu_seconds": 0.1, "final": 0.0, "hits": {"1e-08": 5},
                "stop": "target"} for k in range(first_seed, first_seed + seeds)
               for s in ("asktell", "pycma")]
    m = {"command": "c", "functions": "f1", "dims": [2], "instances": "1-1", "budget_factor": 300,
         "restarts": "ipop", "jobs": 1, "seeds": seeds, "first_seed": first_seed,
         "population": None, "wall_seconds": 1.0, "machine": "m", "asktell": "0.1.0",
         "pycma": "4.5.0", "cocoex": "2.8.2", **meta}
    return {"meta": m, "table": _bbob().summarise(records), "records": records}


@pytest.mark.parametrize("labels, new, rule", [
    (["a", "c"], "n", r"section 'c' has dims \[5\] but 'a' has \[2\]; pooled sections must share"),
    (["a", "r"], "n", "section 'r' has restarts 'bipop' but 'a' has 'ipop'"),
    (["a", "o"], "n", "sections 'a' and 'o' both ran seed k = 1; pooled sections must have disjoint seeds"),
    (["a", "nope"], "n", "no section 'nope' in bbob.json"),
    (["a", "b"], "a", "--label 'a' names a section already stored"),
    (["a"], "n", "two or more different sections"),
])
def test_pool_refuses_sections_that_are_not_one_experiment(labels, new, rule):
    bbob, store = _bbob(), _store()
    results = {"a": _section(0, 2), "b": _section(2, 2), "o": _section(1, 2),
               "c": _section(4, 1, dims=[5]), "r": _section(4, 1, restarts="bipop")}
    with pytest.raises(SystemExit, match=rule):
        store.pool_sections(results, labels, new, None, bbob.summarise)


def test_a_pooled_section_resolves_through_pooled_sources_and_refuses_a_missing_one():
    bbob, store = _bbob(), _store()
    results = {"a": _section(0, 2), "b": _section(2, 2), "c": _section(4, 1)}
    results["ab"] = store.pool_sections(results, ["a", "b"], "ab", None, bbob.summarise)
    results["abc"] = store.pool_sections(results, ["ab", "c"], "abc", None, bbob.summarise)
    assert results["abc"]["meta"]["command"] == "pooled: ab (k 0-3) + c (k 4)"
    assert (results["abc"]["meta"]["seeds"], results["abc"]["meta"]["first_seed"]) == (5, 0)
    assert store.section_records(results, "abc") == [
        *results["a"]["records"], *results["b"]["records"], *results["c"]["records"]]
    del results["b"]
    with pytest.raises(SystemExit, match="pooled section 'ab' names section 'b', which is not stored"):
        store.section_records(results, "abc")


def test_json_keeps_one_record_per_line_and_reads_back_the_same():
    store = _store()
    results = {"a": _section(0, 2), "p": {"meta": {"command": "x\ny"}, "pooled_from": ["a"]}}
    text = store.dump_results(results)
    assert json.loads(text) == results
    assert sum(line.lstrip().startswith('{"solver"') for line in text.splitlines()) == 4


def test_merge_and_pool_from_the_command_line(tmp_path):
    """A run written apart (--out-dir) is added with --merge; two sections are pooled with
    --pool; a section pooled from is not overwritten by a new run; nothing else changes."""
    bbob, store = _bbob(), _store()
    docs, apart = tmp_path / "docs", tmp_path / "apart"
    tiny = ["--functions", "1", "--dims", "2", "--instances", "1", "--budget-factor", "300",
            "--jobs", "1"]
    bbob.main([*tiny, "--label", "k0", "--out-dir", str(docs)])
    bbob.main([*tiny, "--first-seed", "1", "--label", "k1", "--out-dir", str(apart)])
    bbob.main(["--merge", str(apart), "--out-dir", str(docs)])
    results = store.load_results(docs / "bbob.json")
    assert list(results) == ["k0", "k1"]
    assert results["k1"] == store.load_results(apart / "bbob.json")["k1"]
    bbob.main(["--merge", str(apart), "--out-dir", str(docs)])  # again: identical, no-op
    assert store.load_results(docs / "bbob.json") == results

    bbob.main(["--pool", "k0", "k1", "--label", "both", "--note", "two seeds", "--out-dir", str(docs)])
    results = store.load_results(docs / "bbob.json")
    both = results["both"]
    assert both["pooled_from"] == ["k0", "k1"] and "records" not in both
    assert both["table"] == bbob.summarise(results["k0"]["records"] + results["k1"]["records"])
    assert (both["meta"]["seeds"], both["meta"]["first_seed"]) == (2, 0)
    md = (docs / "bbob.md").read_text()
    assert md == bbob.render(results)
    assert "two seeds\n\n`pooled: k0 (k 0) + k1 (k 1)`: functions f1, instances 1-1 x 2 seeds" in md

    with pytest.raises(SystemExit, match="'k0': the stored section of that name is pooled into 'both'"):
        bbob.main([*tiny, "--label", "k0", "--out-dir", str(docs)])
    changed = store.load_results(apart / "bbob.json")
    changed["k1"]["meta"]["wall_seconds"] += 1
    (apart / "bbob.json").write_text(store.dump_results(changed))
    with pytest.raises(SystemExit, match="section 'k1', which is already stored with other contents"):
        bbob.main(["--merge", str(apart), "--out-dir", str(docs)])
    with pytest.raises(SystemExit, match="no bbob.json there"):
        bbob.main(["--merge", str(tmp_path / "nowhere"), "--out-dir", str(docs)])
    assert store.load_results(docs / "bbob.json") == results  # refusals change nothing


def test_merge_refuses_a_section_that_does_not_hold_together():
    bbob, store = _bbob(), _store()
    results = {"a": _section(0, 2)}
    edited = _section(2, 2)
    edited["table"]["2"]["both_solved"] += 1
    with pytest.raises(SystemExit, match="'b' of x: its table is not the one its records give"):
        store.merge_sections(results, {"b": edited}, "x", bbob.summarise)
    orphan = {"meta": _section(2, 2)["meta"], "table": {}, "pooled_from": ["a", "gone"]}
    with pytest.raises(SystemExit, match="pooled section 'p' names section 'gone', which is not stored"):
        store.merge_sections(results, {"p": orphan}, "x", bbob.summarise)
    assert list(results) == ["a"]  # nothing added
