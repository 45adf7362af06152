"""Shared by the benchmark scripts: write a generated block into a docs page in place."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def replace_section(page: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in ``page``.

    The markers stay, so the next run regenerates the same block; the rest of the page is
    hand-written and untouched.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = page.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{page} has no {begin} ... {end} markers to fill")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{begin}\n{body.rstrip()}\n{end}{tail}", encoding="utf-8")
