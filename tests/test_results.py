"""One result record (Evaluation; TaskResult is the same type) and one merge (place)."""

import numpy as np
import pytest

from asktell import Evaluation, Failure, TaskResult
from asktell.errors import CandidateFailedError
from asktell.evaluators._common import ChunkResult, assemble
from asktell.stats import RunningStat


def _part(returns, *, failures=(), episodes=None, stats=None, seconds=0.0):
    n = len(returns)
    return Evaluation(
        np.asarray(returns, dtype=np.float64),
        np.arange(1, n + 1, dtype=np.int64),
        failures=list(failures),
        obs_stats=stats,
        episodes=None if episodes is None else np.full(n, episodes, dtype=np.int64),
        seconds=seconds,
    )


def test_a_task_result_is_an_evaluation_and_fields_after_steps_are_named():
    assert TaskResult is Evaluation
    with pytest.raises(TypeError):
        Evaluation(np.zeros(2), np.zeros(2, dtype=np.int64), [])  # failures must be named


def test_place_puts_a_part_at_its_positions_and_reindexes_its_failures():
    out = Evaluation.empty(6)
    assert np.isnan(out.returns).all() and out.episodes is None and out.seconds == 0.0
    out.place(np.array([4, 1]), _part([7.0, np.nan], failures=[Failure(1, 11, "boom", 3)], seconds=2.0))
    out.place(slice(2, 4), _part([5.0, 6.0], episodes=2, seconds=1.5))
    assert out.returns[[1, 2, 3, 4]].tolist()[1:] == [5.0, 6.0, 7.0] and np.isnan(out.returns[1])
    assert out.steps.tolist() == [0, 2, 1, 2, 1, 0]
    assert out.episodes.tolist() == [0, 0, 2, 2, 0, 0]  # allocated by the first part with them
    assert [(f.index, f.seed, f.error, f.generation) for f in out.failures] == [(1, 11, "boom", 3)]
    assert out.seconds == 3.5


def test_concatenate_merges_observation_statistics_exactly_in_any_order():
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((5, 3)) for _ in range(3)]

    def stat(block):
        s = RunningStat((3,))
        s.push(block)
        return s

    def merged(order):
        parts = [(2 * i, _part([float(i), float(i)], stats=stat(rows[i]))) for i in order]
        return Evaluation.concatenate(parts, 6).obs_stats

    a, b = merged([0, 1, 2]), merged([2, 0, 1])
    assert a.count == 15 and np.array_equal(a.sum, b.sum) and np.array_equal(a.sumsq, b.sumsq)


def test_assemble_names_failures_by_seed_and_generation_and_applies_the_policy():
    seeds = np.array([10, 11, 12, 13], dtype=np.int64)
    part = ChunkResult(2)  # the Dask evaluator's empty record
    assert part.seconds == 0.0 and np.isnan(part.returns).all()
    part.returns[:] = [1.0, np.nan]
    part.failures.append((1, "RuntimeError: no"))  # (index, error) pairs are accepted too
    evaluation = assemble(seeds, [(0, _part([3.0, 4.0])), (2, part)], 9, "mark")
    assert evaluation.returns[:3].tolist() == [3.0, 4.0, 1.0]
    assert [(f.index, f.seed, f.generation) for f in evaluation.failures] == [(3, 13, 9)]
    with pytest.raises(CandidateFailedError, match=r"candidate 3 \(seed 13\) of generation 9"):
        assemble(seeds, [(0, _part([3.0, 4.0])), (2, part)], 9, "raise")
