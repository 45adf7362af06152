"""The python code blocks of the Gym docs run (in order, one namespace per page)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["gym.md", "benchmarks-gym.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page):
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {"__name__": "docs"}
    for block in blocks:
        exec(compile(block, f"{page}", "exec"), namespace)
