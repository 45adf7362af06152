"""RunningStat: exact totals, whatever the grouping and order of pushes and merges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asktell.stats import RunningStat

finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e150, max_value=1e150)


def _stat_of(batches, shape=(3,)):
    stat = RunningStat(shape)
    for b in batches:
        stat.push(b)
    return stat


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=12), st.randoms())
def test_merging_in_any_grouping_and_order_gives_the_same_totals(rows, rnd):
    """What the evaluators rely on: one process pushing every episode, or workers' chunks
    merged in any order, give bitwise the same count, mean and std."""
    episodes = [np.array([r]) for r in rows]
    whole = _stat_of(episodes)
    cuts = sorted(rnd.sample(range(1, len(episodes)), rnd.randint(0, len(episodes) - 1)))
    chunks = [episodes[a:b] for a, b in zip([0, *cuts], [*cuts, len(episodes)])]
    parts = [_stat_of(c) for c in chunks]
    rnd.shuffle(parts)
    merged = RunningStat((3,))
    for p in parts:
        merged.merge(p)
    assert merged.count == whole.count
    for name in ("sum", "sumsq", "mean", "std"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name)), name


def test_totals_are_exact_where_float64_sums_are_not():
    stat = RunningStat((1,))
    for v in (1e16, 1.0, -1e16, 1.0):
        stat.push(np.array([v]))
    assert stat.sum[0] == 2.0  # float64 left to right gives 1.0
    assert stat.mean[0] == 0.5


def test_state_dict_round_trip_is_exact():
    rng = np.random.default_rng(0)
    stat = RunningStat((2, 3))
    stat.push(rng.standard_normal((40, 2, 3)) * 1e-300)
    stat.push(rng.standard_normal((40, 2, 3)) * 1e150)
    stat.push(rng.standard_normal((2, 3)))
    copy = RunningStat((2, 3))
    copy.load_state_dict(stat.state_dict())
    more = rng.standard_normal((10, 2, 3))
    stat.push(more)
    copy.push(more)
    assert copy.count == stat.count
    for name in ("sum", "sumsq", "mean", "std"):
        assert np.array_equal(getattr(copy, name), getattr(stat, name)), name


def test_non_finite_observations_are_refused_by_name():
    stat = RunningStat((2,))
    with pytest.raises(ValueError, match="finite observations; got nan"):
        stat.push(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="overflow float64 when squared"):
        stat.push(np.array([1.0, 1e200]))
    assert stat.count == 0.0 and stat.sum.tolist() == [0.0, 0.0]


def test_load_rejects_a_bad_count():
    stat = RunningStat((1,))
    with pytest.raises(ValueError, match="'count' must be a whole number"):
        stat.load_state_dict({"count": 1.5, "sum": [0.0], "sumsq": [0.0]})
