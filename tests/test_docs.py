"""Every ```python block in README.md and docs/*.md runs, in page order, sharing a namespace
per page (so a page can build on its earlier blocks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def _blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(page, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": f"docs_{page.stem}", "TMP": tmp_path}
    for block in _blocks(page):
        # dont_inherit: a block runs as a user would run it, without this file's __future__
        # import (string annotations would leave a pydantic model on the page undefined).
        exec(compile(block, str(page.relative_to(ROOT)), "exec", dont_inherit=True), namespace)  # noqa: S102


def test_index_links_every_page():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
