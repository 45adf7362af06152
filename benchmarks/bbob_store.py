"""docs/bbob.json: the BBOB benchmark's stored sections, pooled sections by reference.

A section is ``{"meta", "table", "records"}`` as ``benchmarks/bbob.py`` writes it after a run,
or a *pooled* section: the runs of other sections taken together (more seeds of the same
problems), stored as ``"pooled_from": [label, ...]`` in place of records, so a run's
records are stored once however many pooled sections use them (the file was 6.7 MB when
pooled sections copied them). :func:`section_records` resolves a pooled section's records,
through pooled sources too, in the order of its sources.

The file holds one record per line, so adding a section reads as adding lines.

    python benchmarks/bbob.py --merge /tmp/run                      # add what a run wrote
    python benchmarks/bbob.py --pool A B --label A+B [--note TEXT]  # pool two sections
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "dump_results", "load_results", "merge_sections", "pool_sections", "pooled_into",
    "section_records", "seed_range", "POOL_MUST_MATCH",
]

#: Meta fields pooled sections must share: the same problems, budget and solvers' setup.
POOL_MUST_MATCH = ("functions", "dims", "instances", "budget_factor", "restarts", "population")
#: Meta fields every section has (older sections lack seeds, first_seed and population).
REQUIRED_META = ("command", "functions", "dims", "instances", "budget_factor", "restarts",
                 "jobs", "wall_seconds", "machine", "asktell", "pycma", "cocoex")


def load_results(path: Path) -> dict[str, Any]:
    """The sections stored at ``path`` (empty when there is no file yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def dump_results(results: dict[str, Any]) -> str:
    """The JSON text of ``results``: sections indented as before, one record per line."""
    sections = []
    for label, section in results.items():
        fields = []
        for key, value in section.items():
            if key == "records" and value:
                text = "[\n" + ",\n".join("   " + json.dumps(r) for r in value) + "\n  ]"
            else:  # json escapes newlines inside strings: every line break is structure
                text = json.dumps(value, indent=1).replace("\n", "\n  ")
            fields.append(f"  {json.dumps(key)}: {text}")
        sections.append(f" {json.dumps(label)}: {{\n" + ",\n".join(fields) + "\n }")
    return "{\n" + ",\n".join(sections) + "\n}\n"


def section_records(results: dict[str, Any], label: str, _path: tuple[str, ...] = ()) -> list:
    """The records of section ``label``: its own, or its sources' in order (pooled)."""
    if label in _path:
        raise SystemExit(f"bbob.json: pooled section {_path[0]!r} pools itself through "
                         f"{' -> '.join((*_path, label))}")
    if label not in results:
        who = f"pooled section {_path[-1]!r} names " if _path else ""
        raise SystemExit(f"bbob.json: {who}section {label!r}, which is not stored (stored: "
                         f"{', '.join(results)})")
    section = results[label]
    if "pooled_from" in section:
        return [r for source in section["pooled_from"]
                for r in section_records(results, source, (*_path, label))]
    return section.get("records", [])


def pooled_into(results: dict[str, Any], label: str) -> list[str]:
    """The pooled sections that take records from section ``label``."""
    return [name for name, section in results.items()
            if label in section.get("pooled_from", ())]


def seed_range(meta: dict[str, Any]) -> range:
    """The seed indices k of a section (its seeds are ``instance + 1000 k``)."""
    first = int(meta.get("first_seed") or 0)
    return range(first, first + int(meta.get("seeds", 1)))


def _k_text(ks: range) -> str:
    return f"k {ks.start}" if len(ks) == 1 else f"k {ks.start}-{ks.stop - 1}"


def _shared(values: list[Any]) -> Any:
    """The one value all sources share, else the distinct values joined (a pooled section's
    machine or versions, say)."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else " + ".join(map(str, distinct))


def pool_sections(results: dict[str, Any], labels: list[str], new: str, note: str | None,
                  summarise: Callable[[list], dict]) -> dict[str, Any]:
    """Section ``new`` pooling ``labels``: they must exist, agree on every field of
    :data:`POOL_MUST_MATCH` and have disjoint seeds. ``summarise`` is the benchmark's table
    of a list of records. Refusals are ``SystemExit`` naming the label and the rule."""
    if new in results:
        raise SystemExit(f"--pool: --label {new!r} names a section already stored; choose a "
                         "new label")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise SystemExit(f"--pool needs two or more different sections; got {labels}")
    missing = [label for label in labels if label not in results]
    if missing:
        raise SystemExit(f"--pool: no section {missing[0]!r} in bbob.json (stored: "
                         f"{', '.join(results)})")
    metas = {label: results[label]["meta"] for label in labels}
    first = labels[0]
    for label in labels[1:]:
        for field in POOL_MUST_MATCH:
            mine, theirs = metas[label].get(field), metas[first].get(field)
            if mine != theirs:
                raise SystemExit(
                    f"--pool: section {label!r} has {field} {mine!r} but {first!r} has "
                    f"{theirs!r}; pooled sections must share {', '.join(POOL_MUST_MATCH)}")
    ks: dict[int, str] = {}
    for label in labels:
        for k in seed_range(metas[label]):
            if k in ks:
                raise SystemExit(f"--pool: sections {ks[k]!r} and {label!r} both ran seed k = "
                                 f"{k}; pooled sections must have disjoint seeds")
            ks[k] = label
    records = [r for label in labels for r in section_records(results, label)]
    problems = [(r["solver"], r["f"], r["dim"], r["instance"], r.get("seed")) for r in records]
    if len(set(problems)) != len(problems):  # a meta that misstates its seeds
        raise SystemExit(f"--pool: sections {labels} repeat a (solver, function, dimension, "
                         "instance, seed) run; pooled sections must have disjoint seeds")
    m = metas[first]
    meta = {
        "command": "pooled: " + " + ".join(
            f"{label} ({_k_text(seed_range(metas[label]))})" for label in labels),
        "functions": m["functions"], "dims": m["dims"], "instances": m["instances"],
        "budget_factor": m["budget_factor"], "restarts": m["restarts"],
        # the wall time is the parts' sum; the fewest workers any part had
        "jobs": min(metas[label]["jobs"] for label in labels),
        "seeds": len(ks), "first_seed": min(ks), "population": m.get("population"),
        "wall_seconds": sum(metas[label]["wall_seconds"] for label in labels),
        **{field: _shared([metas[label][field] for label in labels])
           for field in ("machine", "asktell", "pycma", "cocoex")},
    }
    return {
        "meta": meta, "table": summarise(records), "pooled_from": list(labels),
        "note": note or f"Pooled from the {len(labels)} sections named in its command, not a "
        "run of its own.",
    }


def merge_sections(results: dict[str, Any], incoming: dict[str, Any], source: str,
                   summarise: Callable[[list], dict]) -> list[str]:
    """Add ``incoming``'s sections to ``results`` (in place); returns the labels added. A
    label already stored is skipped when the sections are identical and refused otherwise;
    a section must have its meta, a table that is its records' and records or sources."""
    added = []
    for label, section in incoming.items():
        if label in results:
            if results[label] == section:
                continue
            raise SystemExit(f"--merge: {source} has section {label!r}, which is already "
                             "stored with other contents; rerun it under a new --label")
        if not isinstance(section, dict) or not isinstance(section.get("meta"), dict):
            raise SystemExit(f"--merge: section {label!r} of {source} has no meta")
        lacking = [field for field in REQUIRED_META if field not in section["meta"]]
        if lacking:
            raise SystemExit(f"--merge: section {label!r} of {source} lacks meta "
                             f"{', '.join(lacking)}")
        if not section.get("records") and not section.get("pooled_from"):
            raise SystemExit(f"--merge: section {label!r} of {source} has no records")
        added.append(label)
    merged = {**results, **{label: incoming[label] for label in added}}
    for label in added:
        if merged[label].get("table") != summarise(section_records(merged, label)):
            raise SystemExit(f"--merge: section {label!r} of {source}: its table is not the "
                             "one its records give (edited by hand?)")
    results.update({label: incoming[label] for label in added})
    return added
