"""A checkpoint names the floating-point kernels that wrote it, and a resume on other kernels
(or another numpy) says that its later bits may differ: never silently another trajectory."""

from __future__ import annotations

import json

import numpy as np
import pytest

import asktell._machine as machine
from asktell.checkpoint import latest_checkpoint
from asktell.runner import resume, run

CONFIG = {
    "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1},
    "task": {"kind": "function", "name": "sphere", "num_params": 5},
    "noise": {"size": 65536},
    "budget": {"generations": 4},
    "output": {"log_format": "none"},
    "seed": 1,
}


@pytest.fixture
def stopped(tmp_path):
    out = tmp_path / "r"
    run(CONFIG, out=out)
    return out


def test_the_fingerprint_is_stable_and_short():
    assert machine.kernel_fingerprint() == machine.kernel_fingerprint()
    assert len(machine.kernel_fingerprint()) == 16
    int(machine.kernel_fingerprint(), 16)


def test_a_checkpoint_records_this_machines_kernels(stopped):
    meta = json.loads(latest_checkpoint(stopped).read_text())
    assert meta["kernels"] == machine.kernel_fingerprint()


def test_a_resume_on_the_same_machine_says_nothing_of_it(stopped, capsys):
    resume(stopped, overrides=["budget.generations=6"], log_format="plain")
    assert "floating-point kernels" not in capsys.readouterr().out


def test_a_resume_on_other_kernels_says_so_once(stopped, monkeypatch, capsys):
    written = machine.kernel_fingerprint()
    monkeypatch.setattr(machine, "kernel_fingerprint", lambda: "0123456789abcdef")
    result = resume(stopped, overrides=["budget.generations=6"], log_format="plain")
    said = capsys.readouterr().out
    assert said.count(f"floating-point kernels {written} (here 0123456789abcdef)") == 1
    assert "may differ in their last bits" in said
    assert result.generation == 6  # a note, not a refusal: the run goes on


def test_the_note_names_another_numpy():
    meta = {"kernels": machine.kernel_fingerprint(), "versions": {"numpy": "1.0.0"}}
    note = machine.resume_note(meta)
    assert note is not None and f"numpy 1.0.0 (here {np.__version__})" in note
    assert machine.resume_note({"kernels": machine.kernel_fingerprint(),
                                "versions": {"numpy": np.__version__}}) is None
    assert machine.resume_note({}) is None  # an older checkpoint: nothing recorded
