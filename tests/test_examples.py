"""Every example run file validates (those whose plugins are not registered yet are skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asktell._files import read_mapping
from asktell.config import load_config, plugin_configs

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"sphere", "rastrigin", "cartpole", "pendulum", "halfcheetah", "hopper", "humanoid"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path):
    data = read_mapping(path)
    for family in ("strategy", "evaluator", "task"):
        kind = (data.get(family) or {}).get("kind")
        if kind is not None and kind not in plugin_configs(family):
            pytest.skip(f"{path.name}: {family} kind {kind!r} is not registered yet")
    cfg = load_config(path)
    assert cfg.budget.model_dump(exclude_none=True)
