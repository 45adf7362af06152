"""Checkpoints: no pickle, exact round trips, and damaged or foreign files rejected clearly."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from asktell.checkpoint import (
    FORMAT_VERSION,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from asktell.errors import CheckpointError

STATE = {
    "strategy": {
        "center": np.arange(5, dtype=np.float64) / 3,
        "pending": np.array([3, ~3], dtype=np.int64),
        "has_pending": True,
        "generation": 7,
        "rng": json.dumps({"bit_generator": "PCG64", "state": {"state": 2**100}}),
        "optimizer.t": np.int64(7),
        "sigma": np.float64(0.1),
        "labels": np.array(["a", "bc"]),
    },
    "task": {"stats": {"count": 10.0, "sum": np.ones((2, 3)), "nan": float("nan")}},
    "runner": {"best": float("-inf"), "none": None, "seq": [1, 2.5, "x", np.zeros(2)]},
}
META = {"generation": 7, "config": {"seed": 0}}


def assert_same(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b and type(b) in (type(a), type(getattr(a, "item", lambda: a)()))


def test_round_trip_is_exact(tmp_path):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    ckpt = load_checkpoint(path)
    assert_same(STATE, ckpt.state)
    assert ckpt.generation == 7 and ckpt.config == {"seed": 0}
    assert ckpt.meta["format_version"] == FORMAT_VERSION
    assert set(ckpt.meta["versions"]) >= {"asktell", "numpy", "python"}
    # np scalar types come back as the plain Python value
    assert ckpt.state["strategy"]["optimizer.t"] == 7
    # a run directory loads its newest checkpoint
    assert load_checkpoint(tmp_path).path == path


def test_json_part_is_plain_json_and_npz_has_no_pickle(tmp_path):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    json.loads(path.read_text())  # strict JSON would fail on NaN: it is encoded instead
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as npz:
        for name in npz.files:
            assert not npz[name].dtype.hasobject


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="object arrays need pickle"):
        save_checkpoint(tmp_path, "gen-000001", {"x": np.array([{}], dtype=object)}, META)
    with pytest.raises(CheckpointError, match="neither an array nor plain data"):
        save_checkpoint(tmp_path, "gen-000001", {"x": object()}, META)


def _corrupt_npz(path):
    npz = path.with_suffix(".npz")
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (_corrupt_npz, "corrupted or truncated: SHA-256"),
        (
            lambda p: p.with_suffix(".npz").write_bytes(p.with_suffix(".npz").read_bytes()[:100]),
            "corrupted or truncated: SHA-256",
        ),
        (lambda p: p.write_text(p.read_text()[:200]), "corrupted or truncated: its JSON does not parse"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "corrupted or truncated"),
        (lambda p: p.write_text(json.dumps({"format": "something-else"})), "not an asktell checkpoint"),
        (lambda p: p.write_text("[1, 2]"), "not an asktell checkpoint"),
        (lambda p: p.with_suffix(".npz").unlink(), "cannot be read"),
        (
            lambda p: p.write_text(p.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99')),
            "format version 99; this asktell .* reads version 3",
        ),
        (
            lambda p: p.write_text(p.read_text().replace('"arrays_file": "gen-000007.npz"', '"arrays_file": "../x.npz"')),
            "outside its folder",
        ),
    ],
)
def test_damaged_or_foreign_checkpoints_are_clear_errors(tmp_path, damage, pattern):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    damage(path)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


def test_a_pickled_npz_with_a_matching_hash_is_still_refused(tmp_path):
    """Even a consistent-looking checkpoint cannot smuggle in a pickle."""
    path = save_checkpoint(tmp_path, "gen-000007", {"x": np.zeros(2)}, META)
    buf = io.BytesIO()
    np.savez(buf, a0=np.array([{"evil": 1}], dtype=object))
    data = buf.getvalue()
    path.with_suffix(".npz").write_bytes(data)
    import hashlib

    meta = json.loads(path.read_text())
    meta["arrays_sha256"] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(path)


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "checkpoints" / "gen-000001.json")


def test_a_crash_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "gen-000005", STATE, {**META, "generation": 5})
    real_replace = os.replace
    calls = []

    def crash_on_commit(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError("simulated power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_commit)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, "gen-000010", STATE, {**META, "generation": 10})
    monkeypatch.setattr(os, "replace", real_replace)
    # the arrays of gen 10 reached disk, its commit record did not: gen 5 is still the newest
    assert (tmp_path / "checkpoints" / "gen-000010.npz").exists()
    assert latest_checkpoint(tmp_path).name == "gen-000005.json"
    assert load_checkpoint(tmp_path).generation == 5
    # no temporary file is left behind by the failed write
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


def test_a_torn_temporary_file_is_ignored_and_cleaned(tmp_path):
    save_checkpoint(tmp_path, "gen-000005", STATE, {**META, "generation": 5})
    torn = tmp_path / "checkpoints" / ".gen-000010.json.abc123.tmp"
    torn.write_text('{"format": "asktell-chec')  # a crash mid-write (e.g. SIGKILL)
    assert load_checkpoint(tmp_path).generation == 5
    prune_checkpoints(tmp_path, keep=3)
    assert not torn.exists()


def test_rewriting_a_name_uncommits_it_first(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "gen-000005", STATE, {**META, "generation": 5})
    save_checkpoint(tmp_path, "gen-000010", STATE, {**META, "generation": 10})
    real_replace = os.replace

    def crash_on_commit(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_commit)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, "gen-000010", {"other": np.ones(3)}, {**META, "generation": 10})
    monkeypatch.setattr(os, "replace", real_replace)
    # the half-rewritten gen 10 is not listed; gen 5 loads
    assert [p.name for p in list_checkpoints(tmp_path)] == ["gen-000005.json"]
    assert load_checkpoint(tmp_path).generation == 5


def test_prune_keeps_the_newest(tmp_path):
    for g in (1, 2, 3, 4):
        save_checkpoint(tmp_path, f"gen-{g:06d}", {"x": np.zeros(1)}, {**META, "generation": g})
    save_checkpoint(tmp_path, "gen-000004-asked", {"x": np.zeros(1)}, {**META, "generation": 4})
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["gen-000004.json", "gen-000004-asked.json"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.npz")) == [
        "gen-000004-asked.npz",
        "gen-000004.npz",
    ]


def test_npz_is_a_zip_of_npy_files(tmp_path):
    path = save_checkpoint(tmp_path, "gen-000001", {"x": np.zeros(3)}, META)
    with zipfile.ZipFile(path.with_suffix(".npz")) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())


# ----------------------------------------------------------------- one hash over everything
def _edit(path, key_path, value):
    meta = json.loads(path.read_text())
    node = meta
    for key in key_path[:-1]:
        node = node[key]
    node[key_path[-1]] = value
    path.write_text(json.dumps(meta, indent=1))


# One edit per class of JSON field: run metadata, config, strategy scalars (int, bool, str),
# RNG state, a float sentinel, a nested list, and an array reference swapped for another.
JSON_EDITS = [
    (("generation",), 8),
    (("config", "seed"), 1),
    (("state", "strategy", "generation"), 6),
    (("state", "strategy", "has_pending"), False),
    (("state", "strategy", "rng"), json.dumps({"bit_generator": "PCG64", "state": {"state": 2**99}})),
    (("state", "task", "stats", "count"), 11.0),
    (("state", "runner", "best"), {"__float__": "inf"}),
    (("state", "runner", "seq"), [1, 2.5, "y", {"__array__": "a6"}]),
    (("state", "strategy", "center"), {"__array__": "a1"}),  # swapped with pending's array
    (("versions", "numpy"), "0.0"),
    (("arrays_bytes",), 1),
]


@pytest.mark.parametrize("key_path, value", JSON_EDITS, ids=lambda v: str(v)[:30])
def test_any_edit_of_the_json_part_is_refused_naming_the_file(tmp_path, key_path, value):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    _edit(path, key_path, value)
    with pytest.raises(CheckpointError, match=r"gen-000007\.json.*edited or damaged.*state_sha256"):
        load_checkpoint(path)


def test_reformatting_the_json_is_harmless(tmp_path):
    """The hash is over canonical JSON: re-indenting the file changes no value."""
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))
    assert_same(STATE, load_checkpoint(path).state)


def test_the_hash_guard_fails_on_a_known_break(tmp_path, monkeypatch):
    """Mutation check: with the JSON left out of the digest, an edited generation would load."""
    import asktell.checkpoint as ck

    real = ck.state_digest
    monkeypatch.setattr(ck, "state_digest", lambda record, arrays: real({"state": None}, arrays))
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    _edit(path, ("state", "strategy", "generation"), 6)
    assert load_checkpoint(path).state["strategy"]["generation"] == 6


def test_format_version_1_is_refused_with_what_to_do(tmp_path):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    meta = json.loads(path.read_text())
    meta["format_version"] = 1
    del meta["state_sha256"]
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 1 .*hash does not cover its JSON.*start a new run"):
        load_checkpoint(path)


def test_format_version_2_is_refused_with_what_to_do(tmp_path):
    """Version 2's strategy states lack tolstagnation's history: refused by version, with
    what to do, before any state is read."""
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    _edit(path, ("format_version",), 2)
    with pytest.raises(CheckpointError, match="format version 2 .*tolstagnation.*start a new run"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "text",
    ['{"format": "asktell-checkpoint", "format_version": 3}', "[" * 100000, '{"format": "asktell-checkpoint", "format_version": 3, "generation": 1, "config": {}, "state": {}, "arrays_file": 5, "arrays_sha256": "x", "state_sha256": "y"}'],
    ids=["missing-entries", "deep-nesting", "wrong-type"],
)
def test_damaged_json_is_a_checkpoint_error_naming_the_file(tmp_path, text):
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    path.write_text(text)
    with pytest.raises(CheckpointError, match="gen-000007.json"):
        load_checkpoint(path)


def test_a_run_directory_falls_back_to_the_newest_good_checkpoint(tmp_path):
    for g in (5, 10, 15):
        save_checkpoint(tmp_path, f"gen-{g:06d}", STATE, {**META, "generation": g})
    directory = tmp_path / "checkpoints"
    _edit(directory / "gen-000015.json", ("state", "strategy", "generation"), 99)
    _corrupt_npz(directory / "gen-000010.json")
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.generation == 5 and ckpt.path.name == "gen-000005.json"
    assert [(p.name, "state_sha256" in why, "SHA-256" in why) for p, why in ckpt.skipped] == [
        ("gen-000015.json", True, False),
        ("gen-000010.json", False, True),
    ]
    assert load_checkpoint(directory / "gen-000005.json").skipped == []
    _edit(directory / "gen-000005.json", ("generation",), 4)
    with pytest.raises(CheckpointError, match="no checkpoint in .* can be trusted(.|\n)*gen-000005"):
        load_checkpoint(tmp_path)


def test_every_bit_flip_in_a_checkpoint_is_refused(tmp_path):
    """Flip single bits all over both files: each load is refused (or, where the flip only
    touches JSON whitespace, loads the identical state). Counts go to the docs page."""
    path = save_checkpoint(tmp_path, "gen-000007", STATE, META)
    npz = path.with_suffix(".npz")
    originals = {f: f.read_bytes() for f in (path, npz)}
    rng = np.random.default_rng(0)
    tried = refused = same = 0
    for f, data in originals.items():
        for pos in rng.choice(len(data), size=min(len(data), 150), replace=False):
            for bit in (0, 3, 7):
                damaged = bytearray(data)
                damaged[pos] ^= 1 << bit
                f.write_bytes(bytes(damaged))
                tried += 1
                try:
                    ckpt = load_checkpoint(path)
                except CheckpointError:
                    refused += 1
                else:
                    assert_same(STATE, ckpt.state)
                    same += 1
            f.write_bytes(data)
    assert refused + same == tried and refused >= 0.95 * tried
    print(f"bit flips tried {tried}, refused {refused}, loaded identical {same}")


def test_bit_flips_in_a_real_run_checkpoint_are_refused_or_resume_bitwise(tmp_path):
    """A real run's newest checkpoint, flipped bit by bit: resume either refuses it and falls
    back to the previous one, or (a harmless flip) reads the same state; either way the
    resumed run ends bitwise equal to the uninterrupted one."""
    import shutil

    from asktell.runner import resume, run

    config = {
        "strategy": {"kind": "openai_es", "population_size": 8},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
        "noise": {"size": 4096},
        "seed": 1,
        "budget": {"generations": 6},
        "output": {"log_format": "none", "checkpoint_every": 2},
    }
    straight = run(config, out=tmp_path / "straight").center.tobytes()
    run({**config, "budget": {"generations": 4}}, out=tmp_path / "pristine")
    rng = np.random.default_rng(1)
    tried = fell_back = 0
    for suffix in (".json", ".npz"):
        size = (tmp_path / "pristine" / "checkpoints" / f"gen-000004{suffix}").stat().st_size
        for pos in rng.choice(size, size=30, replace=False):
            work = tmp_path / f"flip{tried}"
            shutil.copytree(tmp_path / "pristine", work)
            victim = work / "checkpoints" / f"gen-000004{suffix}"
            data = bytearray(victim.read_bytes())
            data[pos] ^= 1 << int(rng.integers(8))
            victim.write_bytes(bytes(data))
            tried += 1
            try:
                load_checkpoint(victim)
            except CheckpointError:
                fell_back += 1
            assert resume(work, overrides=["budget.generations=6"]).center.tobytes() == straight
            shutil.rmtree(work)
    print(f"real checkpoint: {tried} bit flips, {fell_back} refused (resumed from gen 2), all bitwise")
    assert fell_back == tried
    # The edits that used to resume on a different trajectory with exit 0.
    edits = [
        (("state", "runner", "env_steps"), 1),
        (("state", "runner", "best_return"), 5.0),
        (("state", "strategy", "rng"), "swap"),
        (("state", "strategy", "generation"), 3),
        (("state", "strategy", "optimizer.t"), 9),
        (("state", "strategy", "center"), {"__array__": "a2"}),  # centre <-> optimizer.m
    ]
    for key_path, value in edits:
        work = tmp_path / "edit"
        shutil.copytree(tmp_path / "pristine", work)
        victim = work / "checkpoints" / "gen-000004.json"
        if value == "swap":
            value = json.loads((work / "checkpoints" / "gen-000002.json").read_text())["state"]["strategy"]["rng"]
        _edit(victim, key_path, value)
        with pytest.raises(CheckpointError, match="gen-000004.json.*edited or damaged"):
            load_checkpoint(victim)
        assert [p.name for p, _ in load_checkpoint(work).skipped] == ["gen-000004.json"]
        assert resume(work, overrides=["budget.generations=6"]).center.tobytes() == straight
        shutil.rmtree(work)
