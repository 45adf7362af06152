"""benchmarks/scaling.py: the generation-time model's pieces (``_scaling_model.py``) follow
their rules, and a ``--quick`` run measures, validates and projects (its structure, never
its timings).

The numbers themselves are docs/scaling.md's business.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _scaling():
    spec = importlib.util.spec_from_file_location("scaling_bench", ROOT / "benchmarks" / "scaling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model():
    """The model's pure rules (``benchmarks/_scaling_model.py``)."""
    spec = importlib.util.spec_from_file_location(
        "scaling_model", ROOT / "benchmarks" / "_scaling_model.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chunks_are_list_scheduled_onto_the_first_free_worker():
    s = _model()
    # 3 and 3 start; the 2s go to whichever is free first: 5, 5, then 7.
    assert s.list_schedule([3, 3, 2, 2, 2], 2) == 7
    assert s.list_schedule([1, 4], 8) == 4  # fewer chunks than workers: the longest
    assert s.list_schedule([], 3) == 0


def test_per_core_rollouts_pay_for_mirrored_pairs_riding_together():
    """10,000 candidates on 1,440 cores, one chunk each: chunks of 3 or 4 mirrored pairs, so
    with equal episodes the slowest core runs 8 of them, not 10,000 / 1,440 = 6.9."""
    s = _model()
    assert s.expected_rollouts([1.0], 10_000, 1440, chunks=1440, trials=2) == pytest.approx(8.0)


def test_per_node_rollouts_wait_for_the_fullest_block():
    """10,000 candidates on 80 nodes: chunks of 124 or 126 (mirrored pairs together), cut
    into 18 blocks of at most 7 on the node; each block sent costs the dispatch time."""
    s = _model()
    got = s.expected_rollouts([1.0], 10_000, 1440, nodes=80, dispatch=0.01, trials=2)
    assert got == pytest.approx(7 + 18 * 0.01)
    # A work queue: 7 rounds of 18 single candidates, each paying its dispatch.
    got = s.expected_rollouts([1.0], 10_000, 1440, nodes=80, local="queue", dispatch=0.01,
                              trials=2)
    assert got == pytest.approx(7 * 1.01)


def test_prediction_is_the_sum_of_its_terms():
    s = _model()
    c = {"fixed_s": 0.01, "per_task_s": 0.001, "broadcast_s_per_byte": 1e-9}
    p = s.predict(c, tasks=100, fetchers=8, dist_bytes=1000, rollouts=2.0, driver=0.5)
    assert p["tasks"] == pytest.approx(0.1)
    assert p["broadcast"] == pytest.approx(1e-9 * 1000 * 10)
    assert p["total"] == pytest.approx(0.01 + 0.1 + 1e-5 + 2.0 + 0.5)
    slow = s.predict(c, tasks=1, fetchers=8, dist_bytes=1000, rollouts=0, link_bytes_per_s=1e3)
    assert slow["broadcast"] == pytest.approx(10.0)


def test_sleep_times_come_from_the_samples_by_seed():
    s = _scaling()
    seeds = np.array([0, 5, ~5, 123456789, -7], dtype=np.int64)
    a = s.sleep_seconds([0.1, 0.2, 0.3], seeds, 2.0)
    assert np.array_equal(a, s.sleep_seconds([0.1, 0.2, 0.3], seeds, 2.0))
    assert set(np.round(a, 9)) <= {0.2, 0.4, 0.6}
    assert not s.sleep_seconds([0.1], seeds, 0.0).any()


def test_quick_run_measures_validates_and_projects(tmp_path):
    out = tmp_path / "quick.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "all", "--quick", "--json",
         str(out)],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
    )
    res = json.loads(out.read_text())
    c = res["constants"]
    for key in ("fixed_s", "per_task_s", "broadcast_s_per_byte", "pool_per_candidate_s"):
        assert math.isfinite(c[key]) and c[key] >= 0, key
    assert res["noop"] and res["simulation"]
    for p in res["simulation"]:
        assert p["wall_s"] > 0 and p["scheduled_s"] >= p["balanced_s"] - 1e-12
        assert p["error"] == pytest.approx(p["predicted_s"] / p["wall_s"] - 1)
        # a generation cannot beat its own sleeps: useful <= workers x wall
        assert 0 < p["efficiency"] <= 1
    v = res["validation"]
    assert v["max_abs_error"] == pytest.approx(max(abs(p["error"]) for p in res["simulation"]))
    pr = res["projection"]
    assert pr["workers"] == 1440 and pr["population"] == 10_000
    assert {r["regime"] for r in pr["rows"]} == {"humanoid_falls", "humanoid_full"}
    assert sum("per node" in r["mode"] for r in pr["rows"]) == 6
    assert sum("per core" in r["mode"] for r in pr["rows"]) == 6
    for r in pr["rows"]:
        assert r["efficiency"] == pytest.approx(r["useful_s"] / (1440 * r["terms"]["total"]))
        assert 0 < r["efficiency"] <= r["efficiency_evaluate_only"]
    assert "Validation: median |error|" in res["report"]

    # `project` recomputes the projection from the stored constants, measuring nothing.
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "project", "--quick", "--json",
         str(out)],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
    )
    again = json.loads(out.read_text())
    assert again["constants"] == res["constants"] and again["simulation"] == res["simulation"]
    assert len(again["projection"]["rows"]) == len(pr["rows"])


def test_a_quorum_drops_the_latest_nodes():
    """Two kinds of episode (1 s and 3 s): waiting for every node waits for one that drew
    3 s episodes; closing on half the population never waits longer."""
    s = _model()
    full = s.expected_rollouts([1.0, 3.0], 1000, 100, nodes=10, trials=5)
    half = s.expected_rollouts([1.0, 3.0], 1000, 100, nodes=10, quorum=0.5, trials=5)
    assert half < full
    assert s.expected_rollouts([2.0], 1000, 100, nodes=10, quorum=0.5, trials=2) == \
        s.expected_rollouts([2.0], 1000, 100, nodes=10, trials=2)
    # Per core: 4 chunks of 2 candidates (1 s each) on 2 workers finish at 2, 2, 4, 4 s;
    # half the population is back at 2 s.
    assert s.expected_rollouts([1.0], 8, 2, chunks=4, quorum=0.5, trials=1) == 2.0
    assert s.expected_rollouts([1.0], 8, 2, chunks=4, trials=1) == 4.0
