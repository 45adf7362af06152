"""The example run configs validate against the plugin configs and build their tasks."""

from pathlib import Path

import pytest

from asktell.registry import EVALUATORS, STRATEGIES, TASKS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
REQUIRED = {"CartPole-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0",
            "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5"}


def load(path):
    return tomllib.loads(path.read_text())


def test_every_required_environment_has_an_example():
    envs = {load(p)["task"]["env_id"] for p in EXAMPLES if load(p)["task"]["kind"] == "gym"}
    assert REQUIRED <= envs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_sections_validate_and_the_task_builds(path):
    config = load(path)
    task = TASKS.get(config["task"]["kind"]).config_class(**config["task"]).build()
    STRATEGIES.get(config["strategy"]["kind"]).config_class(**config["strategy"])
    evaluator = EVALUATORS.get(config["evaluator"]["kind"]).config_class(**config["evaluator"])
    assert task.num_params > 0 and evaluator.kind == "vector"
    assert "benchmarks/learning.py" in path.read_text()
