"""The "failures and guarantees" page names real tests: every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in list((ROOT / "tests").rglob("*.py")) + list((ROOT / "asktell").rglob("*.py")):
        names.update(re.findall(r"^\s*def ((?:test|check)_\w+)", path.read_text(), re.M))
    return names


def test_every_test_the_failures_page_cites_exists():
    page = (ROOT / "docs" / "failures.md").read_text()
    cited = set(re.findall(r"::((?:test|check)_\w+)|`(check_\w+)`", page))
    cited = {a or b for a, b in cited}
    assert len(cited) > 30
    missing = sorted(cited - _defined_tests())
    assert missing == [], f"docs/failures.md cites tests that do not exist: {missing}"
