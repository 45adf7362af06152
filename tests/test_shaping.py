import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asktell import ConfigError
from asktell.shaping import SHAPINGS, average_ranks, centered_ranks, get_shaping, nes_utilities

finite_lists = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=60
)


def test_centered_ranks_are_the_papers():
    w = centered_ranks([10.0, -3.0, 2.0, 7.0, 0.0])
    assert w.tolist() == [0.5, -0.5, 0.0, 0.25, -0.25]


@pytest.mark.parametrize("name", list(SHAPINGS))
def test_all_equal_returns_give_exact_zero_without_warning(name, recwarn):
    w = get_shaping(name)(np.full(17, 0.1))
    assert np.all(w == 0.0)
    assert len(recwarn) == 0


@given(finite_lists, st.randoms())
@settings(max_examples=60, deadline=None)
def test_shaping_is_order_invariant_and_monotone(values, rnd):
    r = np.array(values)
    perm = np.arange(r.size)
    rnd.shuffle(perm)
    for name, fn in SHAPINGS.items():
        w = fn(r)
        assert np.allclose(fn(r[perm]), w[perm]), name
        # better return never gets less weight; equal returns get equal weight
        order = np.argsort(r, kind="stable")
        assert np.all(np.diff(w[order]) >= -1e-12), name
        for i in range(r.size):
            same = r == r[i]
            assert np.allclose(w[same], w[i]), name


@given(finite_lists)
@settings(max_examples=60, deadline=None)
def test_centered_ranks_bounded_and_zero_sum(values):
    w = centered_ranks(values)
    assert w.min() >= -0.5 and w.max() <= 0.5
    assert abs(w.sum()) < 1e-9


def test_nes_utilities_match_wierstra():
    n = 6
    u = nes_utilities(np.arange(n, dtype=float))  # candidate n-1 is best
    k = np.arange(1, n + 1)
    raw = np.maximum(0, np.log(n / 2 + 1) - np.log(k))
    expected_best_first = raw / raw.sum() - 1 / n
    assert np.allclose(u[::-1], expected_best_first)
    assert abs(u.sum()) < 1e-12


def test_ties_share_weight():
    assert average_ranks([1, 1, 3]).tolist() == [0.5, 0.5, 2.0]
    w = nes_utilities([5.0, 5.0, 1.0, 0.0])
    # best two tie; the worst two both get the floor utility
    assert w[0] == w[1] > w[2] == w[3]


def test_unknown_shaping_suggests():
    with pytest.raises(ConfigError, match="did you mean 'centered_ranks'"):
        get_shaping("centred_ranks")
