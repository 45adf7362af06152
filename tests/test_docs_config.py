"""The configuration reference is generated from the models, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asktell.docgen import DEFAULT_PATH, render
from asktell.runlog import LOG_FIELDS

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_up_to_date():
    assert DEFAULT_PATH == ROOT / "docs" / "configuration.md"
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale; regenerate it with: python -m asktell.docgen"
    )


def test_every_log_field_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for field in LOG_FIELDS:
        assert f"| `{field}` |" in text, field
