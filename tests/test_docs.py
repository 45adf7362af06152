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
    # "__main__": a block guarded by `if __name__ == "__main__":` (as a script must be where
    # Dask spawns workers) runs here too
    namespace: dict = {"__name__": "__main__", "TMP": tmp_path}
    for block in _blocks(page):
        # dont_inherit: a block runs as a user would run it, without this file's __future__
        # import (string annotations would leave a pydantic model on the page undefined).
        exec(compile(block, str(page.relative_to(ROOT)), "exec", dont_inherit=True), namespace)  # noqa: S102


def test_index_links_every_page():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"


#: pages whose blocks start processes (Dask's spawned workers import the script again):
#: run as one script file in a fresh interpreter, as a reader who pastes them would
SCRIPT_PAGES = ["docs/dask.md"]


@pytest.mark.parametrize("name", SCRIPT_PAGES)
def test_blocks_run_as_a_script(name, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "pasted.py"
    script.write_text("\n\n".join(_blocks(ROOT / name)), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
