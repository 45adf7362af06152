"""The training helper, and a small learning check with a fixed seed."""

import numpy as np
import pytest

from asktell.errors import ConfigError
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
    steps = [h["timesteps"] for h in result.history]
    assert steps == sorted(steps) and result.timesteps == steps[-1] > 0
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
        result = train(task, es, ev, max_timesteps=400_000, target=475, eval_every=0,
                       eval_episodes=20, center_with_evaluator=True)
    assert result.solved, [h.get("center_return") for h in result.history]
    final = es.distribution.replace(context=task.context())
    assert task.evaluate_center(final, 10).mean() > 400  # fresh episodes, with margin
