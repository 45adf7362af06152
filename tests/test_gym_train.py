"""The training helper, and a small learning check with a fixed seed."""

import warnings

import numpy as np
import pytest

from asktell.config import config_from_dict
from asktell.errors import ConfigError
from asktell.protocol import TaskHooks
from asktell.runner import read_log, run
from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator
from asktell.gym import GymTask, train
from asktell.noise import NoiseTable
from asktell.strategies import OpenAIES


def make(seed=0, **task_kwargs):
    task = GymTask("CartPole-v1", policy="linear", seed=seed, **task_kwargs)
    es = OpenAIES(task.num_params, population_size=20, sigma=0.1, learning_rate=0.1, seed=seed,
                  noise=NoiseTable(seed, 1 << 20))
    return task, es


def test_history_reports_population_and_centre_separately():
    task, es = make(step_cap="adaptive")
    with SerialEvaluator(task) as ev:
        result = train(task, es, ev, generations=4, eval_every=2, eval_episodes=3)
    assert [h["generation"] for h in result.history] == [1, 2, 3, 4]
    assert ["center_return" in h for h in result.history] == [False, True, False, True]
    steps = [h["env_steps"] for h in result.history]
    assert steps == sorted(steps) and result.env_steps == steps[-1] > 0
    assert all("return_mean" in h and "step_cap" in h for h in result.history)
    assert task.obs_stat.count > 0  # observe() was applied
    assert not result.solved and np.array_equal(result.center, es.center)


def test_needs_a_budget():
    task, es = make()
    with pytest.raises(ConfigError, match="budget"):
        train(task, es, SerialEvaluator(task))


def test_cartpole_is_solved_with_a_small_budget():
    # Fixed seed; the benchmark (benchmarks/learning.py) measures time to target.
    task, es = make(seed=0)
    with VectorEnvEvaluator(task, mode="vector_entry_point") as ev:
        result = train(task, es, ev, env_steps=400_000, target_return=475, eval_every=0,
                       eval_episodes=20)
    assert result.solved, [h.get("center_return") for h in result.history]
    final = es.distribution.replace(context=task.context())
    assert task.evaluate_center(final, 10).mean() > 400  # fresh episodes, with margin


def test_deprecated_budget_names_warn_and_mean_the_new_ones():
    def history(**budget):
        task, es = make(seed=2)
        with SerialEvaluator(task) as ev:
            result = train(task, es, ev, eval_every=2, eval_episodes=2, **budget)
        return [{k: v for k, v in h.items() if k != "seconds"} for h in result.history], result

    new, result = history(env_steps=600, target_return=1e9, wall_seconds=1e6)
    with pytest.warns(DeprecationWarning) as caught:
        old, _ = history(max_timesteps=600, target=1e9, max_seconds=1e6)
    assert {str(w.message).split("(")[1].split("=")[0] for w in caught} == {
        "max_timesteps", "target", "max_seconds"}
    assert old == new and result.stop_reason.startswith("env_steps budget reached")
    with pytest.warns(DeprecationWarning, match="env_steps"):
        assert result.timesteps == result.env_steps
    with pytest.raises(ConfigError, match="both 'env_steps' and its deprecated alias"), \
            pytest.warns(DeprecationWarning):
        history(env_steps=600, max_timesteps=600)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_steps'"):
        history(max_steps=600)


def test_eval_every_zero_schedules_no_centre_evaluation():
    task, es = make()
    with SerialEvaluator(task) as ev, warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train(task, es, ev, generations=3, eval_every=0, eval_at_end=False)
    assert not any("center_return" in h for h in result.history)


CASES = {
    "function": {"kind": "function", "name": "rosenbrock", "num_params": 5, "shift": 0.5},
    "gym": {"kind": "gym", "env_id": "CartPole-v1", "policy": "linear",
            "step_cap": "adaptive"},
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_runner_and_train_give_the_same_centres(kind, tmp_path):
    """One generation step: the same run file through the runner and through train()
    evaluates the same centres and ends at the same centre, bit for bit."""
    from asktell.gym import GymTask

    if kind == "gym" and not issubclass(GymTask, TaskHooks):
        pytest.skip("GymTask does not declare its hooks (TaskHooks) on this branch")
    data = {
        "seed": 4,
        "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1,
                     "learning_rate": 0.05},
        "task": CASES[kind],
        "noise": {"size": 1 << 16},
        "budget": {"generations": 6},
        "output": {"log_format": "none", "eval_every": 2, "eval_episodes": 2},
    }
    result = run(data, out=tmp_path / "run")
    logged = [(r["generation"], r["env_steps"], r["center_return_mean"], r["center_return_std"])
              for r in read_log(tmp_path / "run") if "center_return_mean" in r]
    with config_from_dict(data).build() as built:
        trained = train(built.task, built.strategy, built.evaluator, generations=6,
                        eval_every=2, eval_episodes=2)
    centres = [(h["generation"], h["env_steps"], h["center_return"], h["center_return_std"])
               for h in trained.history if "center_return" in h]
    assert [g for g, *_ in logged] == [2, 4, 6]
    assert centres == logged
    assert trained.center.tobytes() == result.center.tobytes()


@pytest.mark.parametrize("name, value", [("eval_episodes", -3), ("eval_every", -1), ("eval_episodes", 1.5)])
def test_train_refuses_negative_or_non_integer_evaluation_settings(name, value):
    task = GymTask("CartPole-v1", policy="linear")
    es = OpenAIES(task.num_params, population_size=4, noise=NoiseTable(0, 1 << 16))
    with pytest.raises(ConfigError, match=rf"train\(\) '{name}' must be an int >= 0; got {value}"):
        train(task, es, SerialEvaluator(task), generations=1, **{name: value})
