"""Checkpoints without pickle: arrays in ``.npz``, everything else in JSON, written atomically.

A checkpoint named ``gen-000010`` is two files in ``<run>/checkpoints/``:

* ``gen-000010.npz``: every array of the state (loaded with ``allow_pickle=False``);
* ``gen-000010.json``: the format name and version, the library versions, the run config,
  the fingerprint of the floating-point kernels that computed it (:mod:`asktell._machine`),
  the scalar part of the state (arrays replaced by references into the ``.npz``), the
  SHA-256 of the ``.npz`` file and ``state_sha256``: one hash over *everything* (see
  :func:`state_digest`): the canonical JSON of the whole record and every array's name,
  dtype, shape and bytes. An edited number, a swapped array reference or a flipped bit in
  either file is refused naming the file, never resumed on a different trajectory.

Each file is written to a temporary name, fsynced, renamed into place and the directory
fsynced; the ``.json`` goes last, so it is the commit record: a checkpoint whose ``.json``
exists is complete, and a crash at any point leaves the previous checkpoint loadable. The
hash makes a corrupted, truncated or swapped ``.npz`` a clear error instead of a wrong run.

Format version 1 hashed the ``.npz`` only, so an edit to its JSON cannot be detected; such
checkpoints are refused with what to do (there is no other record to verify them against).
:func:`load_checkpoint` on a run directory falls back to the newest checkpoint that verifies
and lists the ones it skipped, with why, in :attr:`Checkpoint.skipped`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import re
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from asktell._machine import kernel_fingerprint
from asktell._files import atomic_write_bytes, fsync_dir
from asktell.errors import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "discard_newer",
    "checkpoint_name",
    "library_versions",
]

FORMAT = "asktell-checkpoint"
#: 3: every strategy's stopping history holds pycma's tolstagnation history (every 5th
#: generation's best and median return), which a version-2 checkpoint does not have.
FORMAT_VERSION = 3
CHECKPOINT_DIR = "checkpoints"

_NAME = re.compile(r"^gen-(\d{6,})(-asked)?\.json$")


def library_versions() -> dict[str, str]:
    import pydantic

    from asktell._version import __version__

    return {
        "asktell": __version__,
        "numpy": np.__version__,
        "pydantic": pydantic.VERSION,
        "python": platform.python_version(),
    }


def checkpoint_name(generation: int, asked: bool = False) -> str:
    """``gen-000010`` after generation 10 was told; ``gen-000010-asked`` once its seeds were asked."""
    return f"gen-{generation:06d}" + ("-asked" if asked else "")


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: its JSON metadata and the state with arrays restored."""

    path: Path
    meta: dict[str, Any]
    state: dict[str, Any]
    #: Newer checkpoints refused on the way to this one (``load_checkpoint(run_dir)`` only):
    #: ``(path of the .json, reason)``, newest first. Empty when the newest one loaded.
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)

    @property
    def generation(self) -> int:
        return int(self.meta["generation"])

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]


# --------------------------------------------------------------------------- encoding
def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise CheckpointError(
                f"cannot checkpoint {where}: object arrays need pickle, which checkpoints never use"
            )
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"cannot checkpoint {where}: key {k!r} is not a string")
            out[k] = _encode(v, arrays, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(
        f"cannot checkpoint {where}: a {type(value).__name__} is neither an array nor plain data"
    )


def _decode(value: Any, arrays: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            key = value["__array__"]
            if key not in arrays.files:
                raise CheckpointError(f"{where}: array {key!r} is missing from the .npz")
            return arrays[key]
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _decode(v, arrays, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, where) for v in value]
    return value


# --------------------------------------------------------------------------- the hash
def state_digest(record: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over everything a checkpoint holds, ``state_sha256`` itself excepted.

    The record is hashed as canonical JSON (sorted keys, no whitespace, so re-indenting the
    file is harmless but any changed value is not); then each array, in name order, as its
    name, dtype, shape and C-order bytes. The format version is inside the record, so a
    record cannot be replayed under another version's rules.
    """
    h = hashlib.sha256()
    body = {k: v for k, v in record.items() if k != "state_sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- save / load
def save_checkpoint(
    run_dir: str | os.PathLike,
    name: str,
    state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write checkpoint ``name`` of ``state`` (arrays and plain data) atomically.

    ``meta`` must hold ``generation`` and ``config``; format, versions and hashes are added.
    Returns the path of the ``.json``.
    """
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays, "state")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    npz_path = directory / f"{name}.npz"
    json_path = directory / f"{name}.json"
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "kernels": kernel_fingerprint(),
        **meta,
        "arrays_file": npz_path.name,
        "arrays_sha256": hashlib.sha256(data).hexdigest(),
        "arrays_bytes": len(data),
        "state": tree,
    }
    # Hash what a reader will see: the record after a JSON round trip (tuples become lists).
    record = json.loads(json.dumps(record, allow_nan=False))
    record["state_sha256"] = state_digest(record, arrays)
    text = json.dumps(record, indent=1, allow_nan=False)
    if json_path.exists():
        # Re-writing a name: uncommit it first, so a crash in between leaves it absent
        # (and the previous checkpoint current) rather than a .json pointing at new arrays.
        json_path.unlink()
        fsync_dir(directory)
    atomic_write_bytes(npz_path, data)
    atomic_write_bytes(json_path, text.encode("utf-8"))  # the commit record goes last
    return json_path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load and verify a checkpoint: its ``.json``, or a run directory for the newest good one.

    Raises :class:`~asktell.errors.CheckpointError` naming the file for anything missing,
    truncated, edited, corrupted, foreign or from another format; nothing else is read or
    run. Given a run directory, a refused checkpoint is skipped for the next older one, and
    the result's :attr:`~Checkpoint.skipped` says which were skipped and why; when none
    verifies, the error lists every refusal.
    """
    p = Path(path)
    if not p.is_dir():
        return _load_one(p)
    found = list_checkpoints(p)
    if not found:
        latest_checkpoint(p)  # raises the "no checkpoint" error
    skipped: list[tuple[Path, str]] = []
    for candidate in reversed(found):
        try:
            ckpt = _load_one(candidate)
        except CheckpointError as exc:
            skipped.append((candidate, str(exc)))
            continue
        ckpt.skipped = skipped
        return ckpt
    raise CheckpointError(
        f"no checkpoint in {os.fspath(p)!r} can be trusted; refused:\n  "
        + "\n  ".join(reason for _, reason in skipped)
    )


def _load_one(p: Path) -> Checkpoint:
    if p.suffix == ".npz":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    meta = _read_record(p)
    npz_path = p.parent / str(meta["arrays_file"])
    try:
        data = npz_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint arrays {str(npz_path)!r} cannot be read: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["arrays_sha256"]:
        raise CheckpointError(
            f"checkpoint arrays {str(npz_path)!r} are corrupted or truncated: SHA-256 {digest[:12]}... "
            f"({len(data)} bytes) does not match {str(meta['arrays_sha256'])[:12]}... "
            f"({meta.get('arrays_bytes', '?')} bytes) recorded when it was written"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint arrays {str(npz_path)!r} cannot be loaded: {exc}") from None
    if state_digest(meta, arrays) != meta["state_sha256"]:
        raise CheckpointError(
            f"checkpoint {str(p)!r} was edited or damaged after it was written: the hash over "
            "its JSON and arrays (state_sha256) does not match; it cannot be trusted"
        )
    try:
        state = _decode(meta["state"], _Arrays(arrays), "state")
    except (ValueError, TypeError) as exc:  # e.g. a "__float__" that is not a float
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be decoded: {exc}") from None
    return Checkpoint(path=p, meta=meta, state=state)


class _Arrays(dict):
    """The loaded arrays, with the ``.files`` that :func:`_decode` reads."""

    @property
    def files(self) -> list[str]:
        return list(self)


def _read_record(p: Path) -> dict[str, Any]:
    """The parsed ``.json`` of a checkpoint, its format and entries checked (not its hash)."""
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is corrupted or truncated: its JSON does not parse ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(p)!r} is not an asktell checkpoint (format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})"
        )
    version = meta.get("format_version")
    written_by = meta.get("versions", {}).get("asktell", "?") if isinstance(meta.get("versions"), dict) else "?"
    if version == 1:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version 1 (written by asktell {written_by}), "
            "whose hash does not cover its JSON part, so an edit to it cannot be detected; "
            f"this asktell reads version {FORMAT_VERSION} only. Resume it with the asktell that "
            "wrote it, or start a new run"
        )
    if version == 2:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version 2 (written by asktell {written_by}), "
            "whose strategy state lacks the history of pycma's tolstagnation rule (every 5th "
            "generation's best and median return), so a run resumed from it could not stop "
            f"where it would have; this asktell reads version {FORMAT_VERSION} only. Resume it "
            "with the asktell that wrote it, or start a new run"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(p)!r} has format version {version!r}; this asktell "
            f"({library_versions()['asktell']}) reads version {FORMAT_VERSION} "
            f"(written by asktell {written_by})"
        )
    for key in ("generation", "config", "state", "arrays_file", "arrays_sha256", "state_sha256"):
        if key not in meta:
            raise CheckpointError(f"checkpoint {str(p)!r} is incomplete: no {key!r} entry")
    for key in ("arrays_file", "arrays_sha256", "state_sha256"):
        if not isinstance(meta[key], str):
            raise CheckpointError(f"checkpoint {str(p)!r}: {key!r} is not a string")
    if Path(meta["arrays_file"]).name != meta["arrays_file"]:
        raise CheckpointError(f"checkpoint {str(p)!r} names an arrays file outside its folder")
    if isinstance(meta["generation"], bool) or not isinstance(meta["generation"], int):
        raise CheckpointError(f"checkpoint {str(p)!r}: 'generation' is not an integer")
    if not isinstance(meta["config"], dict) or not isinstance(meta["state"], dict):
        raise CheckpointError(f"checkpoint {str(p)!r}: 'config' and 'state' must be tables")
    return meta


# --------------------------------------------------------------------------- listing
def _sort_key(path: Path) -> tuple[int, int]:
    m = _NAME.match(path.name)
    return (int(m.group(1)), 1 if m.group(2) else 0) if m else (-1, 0)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``.json`` files of a run's checkpoints, oldest first (temporary files ignored)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)), key=_sort_key)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"no checkpoint in {os.fspath(run_dir)!r} (expected "
            f"{CHECKPOINT_DIR}/gen-NNNNNN.json written by `asktell run`)"
        )
    return found[-1]


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (the ``.json`` first, then its arrays),
    and temporary files left by an interrupted write (one writer per run directory)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if directory.is_dir():
        for stale in directory.glob(".gen-*.tmp"):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
    for path in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        for victim in (path, path.with_suffix(".npz")):
            try:
                victim.unlink()
            except FileNotFoundError:
                pass


def discard_newer(
    run_dir: str | os.PathLike, path: str | os.PathLike, refused: Iterable[Path] = ()
) -> None:
    """Delete the checkpoints newer than ``path`` (a run resumed from ``path`` redoes them).

    Those in ``refused`` (checkpoints the loader could not trust) are moved to
    ``checkpoints/refused/`` instead, so the evidence of what went wrong is kept.
    """
    mine = _sort_key(Path(path))
    refused_names = {Path(p).name for p in refused}
    for other in list_checkpoints(run_dir):
        if _sort_key(other) <= mine:
            continue
        keep = other.name in refused_names
        if keep:
            (other.parent / "refused").mkdir(exist_ok=True)
        for victim in (other, other.with_suffix(".npz")):
            try:
                if keep:
                    victim.replace(victim.parent / "refused" / victim.name)
                else:
                    victim.unlink()
            except FileNotFoundError:
                pass
