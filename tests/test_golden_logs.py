"""Refactors keep results: short runs of the examples give bitwise the log rows stored
before the architecture consolidation (see ``tests/golden/cases.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import cases  # noqa: E402

pytest.importorskip("gymnasium")


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_a_run_gives_the_stored_log_rows_bit_for_bit(name, tmp_path):
    stored = [
        json.loads(line)
        for line in (cases.HERE / f"{name}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    rows = cases.run_case(name, tmp_path / "run")
    assert len(rows) == len(stored)
    for got, want in zip(rows, stored):
        # json round trip: the stored rows went through json.dumps too
        assert json.loads(json.dumps(got, sort_keys=True)) == want, got["generation"]


def test_the_golden_check_fails_on_a_changed_number(tmp_path):
    """The comparison is exact: a row off by one ulp in one field is caught."""
    import math

    stored = json.loads((cases.HERE / "sphere.jsonl").read_text().splitlines()[3])
    rows = cases.run_case("sphere", tmp_path / "run")
    edited = dict(rows[3])
    edited["return_mean"] = math.nextafter(edited["return_mean"], math.inf)
    assert json.loads(json.dumps(rows[3], sort_keys=True)) == stored
    assert json.loads(json.dumps(edited, sort_keys=True)) != stored
