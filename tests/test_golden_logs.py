"""Refactors keep results: short runs of the examples give the log rows stored before the
architecture consolidation (see ``tests/golden/cases.py``), bitwise on a machine whose
floating-point kernels have rows of their own (``tests/golden/machines.json``), to a
relative 1e-5 on any other (``cases.RTOL``: BLAS kernels differ by CPU in their last bits)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import cases  # noqa: E402
import machine  # noqa: E402

pytest.importorskip("gymnasium")

REFERENCE, EXACT = cases.reference_dir()


def _stored(name: str, where: Path = REFERENCE) -> list[dict]:
    text = (where / f"{name}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _json(row: dict) -> dict:
    # the stored rows went through json.dumps too
    return json.loads(json.dumps(row, sort_keys=True))


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_a_run_gives_the_stored_log_rows(name, tmp_path):
    stored = _stored(name)
    rows = cases.run_case(name, tmp_path / "run")
    assert len(rows) == len(stored)
    for got, want in zip(rows, stored):
        wrong = cases.mismatches(_json(got), want, EXACT)
        assert not wrong, (
            f"generation {got['generation']} ({'bitwise' if EXACT else 'rtol'} against "
            f"{REFERENCE.name}): {wrong[:5]}"
        )


def test_every_machine_has_every_case():
    for sub in set(cases.machines().values()):
        assert sorted(p.stem for p in (cases.HERE / sub).glob("*.jsonl")) == sorted(cases.CASES)


def test_the_machine_sets_agree_with_the_original_within_the_tolerance():
    """A machine's own rows are the original rows computed by other kernels, nothing more:
    every non-float equal, every float within the tolerance an unknown machine gets."""
    for sub in set(cases.machines().values()):
        for name in cases.CASES:
            for got, want in zip(_stored(name, cases.HERE / sub), _stored(name, cases.HERE)):
                assert not cases.mismatches(got, want, exact=False), (sub, name)


def test_the_fingerprint_is_stable_and_tells_kernels_apart():
    assert machine.fingerprint() == machine.fingerprint()
    assert len(machine.fingerprint()) == 16


def test_the_golden_check_fails_on_a_changed_number(tmp_path):
    """Bitwise: a row off by one ulp in one field is caught; with the tolerance, a change of
    10 x RTOL is caught and one well inside it is not."""
    stored = _stored("sphere")[3]
    row = _json(cases.run_case("sphere", tmp_path / "run")[3])
    assert not cases.mismatches(row, stored, EXACT)

    one_ulp = dict(row, return_mean=math.nextafter(row["return_mean"], math.inf))
    assert cases.mismatches(one_ulp, stored, exact=True)
    for field in ("return_mean", "grad_norm"):
        far = dict(row, **{field: row[field] * (1 + 10 * cases.RTOL)})
        near = dict(row, **{field: row[field] * (1 + cases.RTOL / 100)})
        assert cases.mismatches(far, stored, exact=False)
        assert not cases.mismatches(near, stored, exact=False)
    assert cases.mismatches(dict(row, generation=row["generation"] + 1), stored, exact=False)
