"""The example run configs validate against the plugin configs and build their tasks."""

from pathlib import Path

import pytest

from asktell.registry import TASKS

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


GYM_EXAMPLES = [p for p in EXAMPLES if load(p)["task"]["kind"] == "gym"]


@pytest.mark.parametrize("path", GYM_EXAMPLES, ids=lambda p: p.stem)
def test_gym_example_builds_its_task(path):
    """The whole file validates through RunConfig in test_examples.py; here the task builds
    (its environment exists and the policy has parameters)."""
    config = load(path)
    task = TASKS.get("gym").config_class(**config["task"]).build()
    assert task.num_params > 0
