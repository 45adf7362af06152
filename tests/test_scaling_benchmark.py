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


def _model(name: str = "_scaling_model"):
    """The model's pure rules (``benchmarks/_scaling_model.py``; node mode's work queue:
    ``_scaling_queue.py``). They import each other as scripts beside each other do."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _queue():
    return _model("_scaling_queue")


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
    assert any(p.get("min_candidates") for p in res["simulation"])  # node mode + quorum
    for p in res["simulation"]:
        # (with a quorum the model's schedule and the run may tell different candidates)
        assert p["wall_s"] > 0
        assert p.get("min_candidates") or p["scheduled_s"] >= p["balanced_s"] - 1e-12
        assert p["error"] == pytest.approx(p["predicted_s"] / p["wall_s"] - 1)
        # a generation cannot beat its own sleeps: useful <= workers x wall
        assert 0 < p["efficiency"] <= 1
    v = res["validation"]
    assert v["max_abs_error"] == pytest.approx(max(abs(p["error"]) for p in res["simulation"]))
    t = c["tell"]
    for key in ("row_s_per_value", "driver_rest_s", "part_overhead_s", "part_overhead_cpu_s",
                "add_s_per_value"):
        assert math.isfinite(t[key]) and t[key] >= 0, key
    pr = res["projection"]
    assert pr["workers"] == 1440 and pr["population"] == 10_000
    assert {r["regime"] for r in pr["rows"]} == {"humanoid_falls", "humanoid_full"}
    assert sum(r["mode"].startswith("node") for r in pr["rows"]) == 20
    assert sum(r["mode"].startswith("per core") for r in pr["rows"]) == 2
    for r in pr["rows"]:
        for how in ("local", "distributed"):
            x = r[how]
            assert x["efficiency"] == pytest.approx(x["told_s"] / (1440 * x["terms"]["total"]))
            assert 0 < x["efficiency"] <= x["efficiency_evaluate_only"] <= 1
        # the distributed tell is the fastest of its options, the local sum among them
        assert r["distributed"]["tell"]["total"] <= r["local"]["tell"]["total"] * 1.01
        for x in r.get("split", {}).values():  # told + wasted + idle = the cores' time
            assert sum(x.values()) == pytest.approx(1) and x["wasted"] >= 0
    assert "Validation: median |error|" in res["report"]
    assert "### The tell: constants" in res["report"]

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


def test_node_queue_returns_on_its_share_and_carries_what_runs_on():
    """1 node, 2 processes, 3 candidates of 1 s, quorum 2 of 3: both processes finish at 1 s
    (2 done), the third piece has started, so the node returns at 1 s with 2 told; the
    third runs to 2 s, 0.5 s past the gap of 0.5 s, so the next generation's first piece on
    that process starts 0.5 s late: the node returns at 1.5 s. Then nothing runs over."""
    s = _queue()
    got = s.queue_generations([1.0], 3, 2, 1, min_candidates=2, gap=0.5, generations=2,
                              warmup=0)
    assert got["rollouts"] == pytest.approx((1.0 + 1.5) / 2)
    assert got["told"] == 2 and got["told_s"] == pytest.approx(2.0)
    assert got["late_s"] == pytest.approx((0 + 0.25) / 2)
    # A gap longer than what runs on: nothing is late.
    assert s.queue_generations([1.0], 3, 2, 1, min_candidates=2, gap=1.0, generations=2,
                               warmup=0)["rollouts"] == pytest.approx(1.0)
    # Without a quorum the node waits for all 3: 2 rounds, nothing runs over.
    full = s.queue_generations([1.0], 3, 2, 1, generations=2, warmup=0)
    assert full["rollouts"] == pytest.approx(2.0) and full["told"] == 3
    # The share is the chunk's part of the quorum, rounded up (as the node computes it).
    assert s.quota_of(126, 10_000, 9_500) == 120 and s.quota_of(125, 10_000, 9_500) == 119


def test_node_queue_without_quorum_is_the_queue_makespan():
    """10,000 equal episodes on 80 nodes x 18: chunks of at most 126, 7 rounds, each piece
    paying its dispatch; the same whether from one generation or the steady state."""
    s = _queue()
    got = s.queue_generations([1.0], 10_000, 1440, 80, dispatch=0.01, generations=2)
    assert got["rollouts"] == pytest.approx(7 * 1.01)
    assert got["told"] == 10_000
    close, told = s.queue_makespan(np.ones(10_000), 80, 18)
    assert close == 7 and told == 10_000


def test_late_nodes_are_dropped_whole_and_stopped():
    """2 nodes x 4 processes, quorum 4 of 8: the first node is back at 1 s with all 4 of its
    candidates, which meet the quorum alone, so the node that drew 5 s episodes is dropped;
    on a stopped node the running pieces go on and nothing new starts."""
    s = _queue()
    close, told = s.queue_makespan(np.array([1.0] * 4 + [5.0] * 4), 2, 4, min_candidates=4)
    assert close == 1 and told == 4
    pieces = s._node_queue(np.array([1.0, 1.0, 1.0]), np.zeros(1), 1, 0.0, None)[3]
    assert s._busy_until(pieces, 1, 1.5).tolist() == [2.0]  # the second piece runs on


def test_the_harvest_tells_an_early_nodes_pieces_back_by_the_close():
    """2 nodes x 3 processes, quorum 6 of 8 (a share of 3 each). Node A's three 1 s pieces
    are back at 1 s, when its fourth (0.5 s) has just started: A returns at 1 s. Node B's
    2 s pieces bring its share at 2 s: the driver closes then. A's fourth piece ended at
    1.5 s: the harvest tells it (7), without it 6 are told; a piece ending after the close
    is not told either way."""
    s = _queue()
    bounds = [(0, 4), (4, 8)]
    for last, harvested in ((0.5, 7), (1.5, 6)):
        runs = [s._node_queue(np.array([1.0, 1.0, 1.0, last]), np.zeros(3), 1, 0.0, 3),
                s._node_queue(np.full(4, 2.0), np.zeros(3), 1, 0.0, 3)]
        assert runs[0][0] == 1.0 and runs[1][0] == 2.0 and runs[0][2] == 3
        told = s.told_pieces(runs, bounds, [0, 1], 2.0, harvest=True)
        assert sum(b - a for a, b in told) == harvested
        assert sum(b - a for a, b in s.told_pieces(runs, bounds, [0, 1], 2.0, harvest=False)) == 6
    # In the steady state the harvest tells at least as much, at the same close.
    kw = dict(min_candidates=40, generations=6, seed=3)
    on = s.queue_generations([0.5, 1.0, 2.0], 48, 12, 4, **kw)
    off = s.queue_generations([0.5, 1.0, 2.0], 48, 12, 4, harvest=False, **kw)
    assert on["rollouts"] == off["rollouts"] and on["told"] > off["told"]
    assert on["wasted_s"] < off["wasted_s"]


def test_distributed_tell_is_the_sum_of_its_terms():
    s = _model()
    tell = {"row_s_per_value": 1e-9, "driver_rest_s": 0.01, "add_s_per_value": 1e-9}
    link = {"per_part_s": 0.001, "link_bytes_per_s": 1e9}
    local = s.tell_seconds(tell, 5000, 100_000, parts=None, **link)
    assert local["total"] == pytest.approx(0.01 + 5000 * 100_000 * 1e-9)
    t = s.tell_seconds(tell, 5000, 100_000, parts=8, **link)
    vector = 100_000 * 8 / 1e9
    assert t["part_sum"] == pytest.approx(625 * 100_000 * 1e-9)
    assert t["back"] == pytest.approx(8 * vector) and t["parts"] == pytest.approx(0.008)
    assert t["total"] == pytest.approx(0.01 + 5000 * 16 / 1e9 + 0.008 + t["part_sum"] + t["back"])
    # A tree of 8 parts: 3 rounds of one vector and one add, then one vector to the driver.
    tree = s.tell_seconds(tell, 5000, 100_000, parts=8, tree=True, **link)
    assert tree["back"] == pytest.approx(3 * (vector + 100_000 * 1e-9) + vector)
    # 2 workers for 8 parts: 4 turns of the slowest part.
    two = s.tell_seconds(tell, 5000, 100_000, parts=8, workers=2, **link)
    assert two["part_sum"] == pytest.approx(4 * t["part_sum"])
    k, best = s.best_tell(tell, 5000, 100_000, **link)
    assert k in s.TELL_PARTS and best["total"] <= min(
        s.tell_seconds(tell, 5000, 100_000, parts=j, **link)["total"] for j in s.TELL_PARTS)


def test_the_close_hands_over_a_running_nodes_pieces_done_by_then():
    """2 nodes x 2 processes, quorum 4 of 8 (a share of 2 each). Node A's pieces (1, 1, 0,
    0 s) are all back at 1 s, which meets the quorum alone: the driver closes at 1 s.
    Node B (0.5, 5, 5, 5 s) is still running: its first piece, done at 0.5 s, is handed
    over (told) with the hand-over, its node dropped whole without it."""
    s = _queue()
    bounds = [(0, 4), (4, 8)]
    runs = [s._node_queue(np.array([1.0, 1.0, 0.0, 0.0]), np.zeros(2), 1, 0.0, 2),
            s._node_queue(np.array([0.5, 5.0, 5.0, 5.0]), np.zeros(2), 1, 0.0, 2)]
    assert runs[0][0] == 1.0 and runs[0][2] == 4 and runs[1][0] > 1.0
    assert s.told_pieces(runs, bounds, [0], 1.0, True, hand_over=True) == [
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert s.told_pieces(runs, bounds, [0], 1.0, True) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    close, told = s.queue_makespan(np.array([1.0, 1.0, 0.0, 0.0, 0.5, 5.0, 5.0, 5.0]), 2, 2,
                                   min_candidates=4)
    assert close == 1.0 and told == 2.0
    # The model's steady state: the hand-over tells at least as much, at the same close.
    kw = dict(min_candidates=30, generations=6, seed=3)
    on = s.queue_generations([0.5, 1.0, 2.0], 48, 12, 4, **kw)
    off = s.queue_generations([0.5, 1.0, 2.0], 48, 12, 4, hand_over=False, **kw)
    assert on["rollouts"] == off["rollouts"] and on["told"] >= off["told"]
