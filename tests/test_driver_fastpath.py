"""The driver's per-generation fast paths (issue 14) keep every result and every check:
the shortcuts in tell, as_returns, Distribution, centred ranks, Adam and decode give the
same bits as the plain expressions they replace and refuse the same bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asktell.distribution import Distribution
from asktell.errors import ConfigError, ReturnsError
from asktell.noise import NoiseTable, mirrored
from asktell.optim import Adam
from asktell.protocol import as_returns
from asktell.shaping import centered_ranks
from asktell.strategies import OpenAIES

NOISE = NoiseTable(seed=0, size=1 << 16)


def _es(**kw):
    return OpenAIES(num_params=7, population_size=10, sigma=0.1, learning_rate=0.05,
                    noise=NOISE, seed=3, **kw)


def test_as_returns_fast_path_copies_and_still_refuses_wrong_size():
    r = np.arange(5, dtype=np.float64)
    out = as_returns(r, expected=5, generation=0)
    assert out is not r and np.array_equal(out, r)
    r[0] = 99.0
    assert out[0] == 0.0  # the caller's array is never shared
    with pytest.raises(ReturnsError, match="got 4 returns for 5 asked seeds"):
        as_returns(np.zeros(4), expected=5, generation=0)
    with pytest.raises(ReturnsError, match="1-D"):
        as_returns(np.zeros((5, 1)), expected=5, generation=0)


def test_tell_metrics_equal_numpy_bitwise_with_and_without_nonfinite():
    rng = np.random.default_rng(0)
    for bad in (False, True):
        es = _es()
        for _ in range(4):
            es.ask()
            r = rng.standard_normal(10) * 1e3
            if bad:
                r[[1, 6]] = [np.nan, np.inf]
            fin = r[np.isfinite(r)]
            m = es.tell(r)
            assert m["return_max"] == float(fin.max()) and m["return_min"] == float(fin.min())
            assert m["return_mean"] == float(fin.mean()) and m["return_std"] == float(fin.std())
            assert m["num_nonfinite"] == (2 if bad else 0)
        assert es.best is not None and math.isfinite(es.best.value)


def test_best_is_the_first_maximum_and_decodes_with_the_told_generation():
    es = _es()
    seeds = es.ask()
    dist = es.distribution
    r = np.zeros(10)
    r[[3, 8]] = 5.0  # a tie: the first one is kept
    es.tell(r)
    assert es.best.seed == int(seeds[3]) and es.best.generation == 0
    assert np.array_equal(es.best.parameters, dist.decode(seeds[3:4])[0])


def test_distribution_shares_openai_es_read_only_centre_and_stays_frozen():
    es = _es()
    for _ in range(2):
        es.ask()
        es.tell(np.arange(10.0))
    dist = es.distribution
    assert dist.center is es._center  # shared, not copied
    assert not dist.center.flags.writeable
    before = dist.center.copy()
    es.ask()
    es.tell(np.arange(10.0)[::-1].copy())
    assert np.array_equal(dist.center, before)  # the update made a new array
    assert not np.array_equal(es.center, before)


@pytest.mark.parametrize("kwargs, words", [
    ({"center": np.array([0.0, np.nan])}, "'center' must be a non-empty 1-D array of finite"),
    ({"center": np.zeros((2, 2))}, "'center' must be a non-empty 1-D array"),
    ({"center": "abc"}, "'center' must be"),
    ({"sigma": -0.1}, "'sigma' must be a finite number >= 0 or 3 of them"),
    ({"sigma": np.inf}, "'sigma' must be a finite number"),
    ({"sigma": np.ones(4)}, "'sigma' must be a finite number >= 0 or 3"),
    ({"sigma": True}, "'sigma' must be"),
    ({"noise": "table"}, "'noise' must be a noise source"),
    ({"generation": -1}, "'generation' must be an int >= 0"),
    ({"generation": 1.5}, "'generation' must be an int >= 0"),
    ({"factor": np.eye(2)}, r"'factor' must have shape \(3, 3\)"),
    ({"context": [1]}, "'context' must be a mapping"),
])
def test_the_public_distribution_constructor_checks_what_it_is_given(kwargs, words):
    args = {"center": np.zeros(3), "sigma": 0.1, "noise": NOISE, **kwargs}
    with pytest.raises(ConfigError, match=words):
        Distribution(**args)
    assert Distribution(np.zeros(3), np.array([0.1, 0.0, 2.0]), NOISE, 4).num_params == 3


def test_distribution_copies_arrays_it_cannot_own():
    writeable = np.arange(4.0)
    d = Distribution(writeable, 0.1, NOISE)
    assert d.center is not writeable
    writeable[0] = 50.0
    assert d.center[0] == 0.0
    base = np.arange(4.0)
    view = base[:]
    view.flags.writeable = False  # read-only view of a writeable array: still copied
    d = Distribution(view, 0.1, NOISE)
    base[1] = 50.0
    assert d.center[1] == 1.0 and not d.center.flags.writeable


def test_centered_ranks_match_the_formula_and_the_cache_is_not_exposed():
    rng = np.random.default_rng(1)
    r = rng.standard_normal(33)
    expected = np.empty(33)
    expected[np.argsort(r)] = np.arange(33, dtype=np.float64) / 32 - 0.5
    w = centered_ranks(r)
    assert np.array_equal(w, expected)
    w[:] = 7.0  # the caller's weights are its own
    assert np.array_equal(centered_ranks(r), expected)
    assert np.array_equal(centered_ranks(np.array([1.0, 1.0, 2.0])), [-0.25, -0.25, 0.5])


def test_adam_in_place_is_bitwise_the_plain_formula_and_state_is_copied():
    rng = np.random.default_rng(2)
    opt = Adam(6, 0.01)
    m, v = np.zeros(6), np.zeros(6)
    saved = None
    for t in range(1, 6):
        g = rng.standard_normal(6)
        m = 0.9 * m + (1.0 - 0.9) * g
        v = 0.999 * v + (1.0 - 0.999) * (g * g)
        a = 0.01 * math.sqrt(1.0 - 0.999**t) / (1.0 - 0.9**t)
        want = a * m / (np.sqrt(v) + 1e-8)
        got = opt.step(g)
        assert np.array_equal(got, want) and np.array_equal(opt.m, m) and np.array_equal(opt.v, v)
        if t == 2:
            saved = opt.state_dict()
            kept = saved["m"].copy()
    assert np.array_equal(saved["m"], kept)  # later in-place steps do not reach a state_dict


def test_decode_fast_path_still_checks_keys_against_the_table():
    dim = 8
    dist = Distribution(np.zeros(dim), 0.1, NOISE)
    ok = mirrored(np.array([0, NOISE.size - dim]))
    rows = dist.decode(ok, dtype=np.float32, out=np.empty((4, dim), np.float32))
    assert np.array_equal(rows[0], (np.float32(0.1) * NOISE.table[:dim]))
    with pytest.raises(ConfigError, match="noise keys must lie in"):
        dist.decode(mirrored(np.array([0, NOISE.size - dim + 1])))


def test_decode_pairs_in_either_order_give_the_rows_decoded_one_by_one():
    dim = 8
    dist = Distribution(np.linspace(-1, 1, dim), 0.1, NOISE)
    keys = np.array([5, 900, 17])
    for seeds in (mirrored(keys), ~mirrored(keys)):  # (k, ~k) pairs and (~k, k) pairs
        for dtype in (np.float64, np.float32):
            rows = dist.decode(seeds, dtype=dtype)
            one = np.stack([dist.decode(seeds[i : i + 1], dtype=dtype)[0] for i in range(6)])
            assert np.array_equal(rows, one)


def test_record_is_bitwise_max_min_median_and_pycmas_flat_rule():
    from asktell.strategies._stopping import StopHistory

    rng = np.random.default_rng(4)
    history = StopHistory(5)
    flat = 0
    for _ in range(2000):
        n = int(rng.integers(1, 30))
        r = rng.integers(-2, 3, n).astype(np.float64) * rng.choice([1.0, 0.0, 0.37])
        if rng.random() < 0.3:
            r[r == 0] = -0.0  # signed zeros tie with +0.0 in both forms
        best = float(r.max())
        # one return is never flat (a population of one has no spread)
        flat = flat + 1 if n > 1 and best <= float(np.sort(r)[::-1][int(0.75 * n)]) else 0
        top, bottom = history.record(r, 1)
        assert history.flat == flat
        # Bitwise, signed zeros included: max, min and np.median's own bits.
        want = (float(r.max()), float(r.min()), float(np.median(r)))
        got = (top, bottom, float(history.median[(history.count - 1) % history.length]))
        assert [np.float64(x).tobytes() for x in got] == [np.float64(x).tobytes() for x in want]


def test_tell_finds_every_kind_of_non_finite_return_from_its_one_sort():
    # tell reads finiteness from the ends of its sorted returns (-inf sorts first, +inf and
    # NaN last): each kind alone, anywhere, must still be counted and ranked worst, and
    # huge finite returns (whose sum would overflow) must not be.
    rng = np.random.default_rng(5)
    for bad in (np.nan, np.inf, -np.inf, None):
        for where in (0, 4, 9):
            es = _es()
            es.ask()
            r = rng.uniform(-1.0, 1.0, 10) * 1.7e308
            r[where] = 1.7e308 if bad is None else bad
            m = es.tell(r)
            assert m["num_nonfinite"] == (0 if bad is None else 1)
            fin = r[np.isfinite(r)]
            assert m["return_max"] == fin.max() and m["return_min"] == fin.min()
            assert es.best.value == fin.max()


def test_plain_snapshot_is_the_constructors_distribution_frozen_and_picklable():
    import dataclasses
    import pickle

    centre = np.linspace(-1.0, 1.0, 7).copy()  # owns its data
    centre.flags.writeable = False
    built = Distribution(centre, 0.1, NOISE, 4)
    fast = Distribution._plain(centre, 0.1, NOISE, 4)
    for field in dataclasses.fields(Distribution):
        a, b = getattr(built, field.name), getattr(fast, field.name)
        assert type(a) is type(b) and (np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b)
    assert fast.center is centre  # shared read-only, as the constructor does
    assert fast.context is not Distribution._plain(centre, 0.1, NOISE, 4).context
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.sigma = 0.2  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(fast))
    assert np.array_equal(again.decode([3, ~3]), built.decode([3, ~3]))
    assert fast.replace(generation=5).generation == 5
    # A non-float sigma takes the constructor (which converts or validates it).
    assert Distribution._plain(centre, np.float64(0.1), NOISE, 4).sigma == 0.1
    writeable = np.zeros(7)
    assert Distribution._plain(writeable, 0.1, NOISE, 0).center is not writeable


def _short_row_rule(weights, keys, dim, step):
    """NoiseTable.weighted_sum's short-row rule written out: float32 weights (scaled by a
    power of two when beyond 2**100), one float32 product per chunk of rows, chunk sums
    added into float64 zeros in key order."""
    largest = float(np.max(np.abs(weights)))
    exponent = 0 if largest <= 2.0**100 else math.frexp(largest)[1] - 100
    w32 = np.ldexp(weights, -exponent).astype(np.float32)
    total = np.zeros(dim)
    windows = NOISE.windows(dim)
    for a in range(0, keys.size, step):
        total += w32[a : a + step] @ windows[keys[a : a + step]]
    return np.ldexp(total, exponent)


@pytest.mark.parametrize("scale", [1.0, 2.0**99.9, 2.0**120, 0.0])
def test_short_row_weighted_sum_is_its_rule_bitwise_in_one_chunk_or_many(scale):
    rng = np.random.default_rng(6)
    for dim, count in [(100, 128), (2000, 2200)]:  # one chunk; two chunks of 2097 rows
        keys = rng.integers(0, NOISE.size - dim + 1, count)
        weights = rng.uniform(-1.0, 1.0, count) * scale
        got = NOISE.weighted_sum(weights, keys, dim)
        want = _short_row_rule(weights, keys, dim, (1 << 22) // dim)
        assert got.tobytes() == want.tobytes()  # signed zeros included
    with pytest.raises(ConfigError, match="noise keys must lie in"):
        NOISE.weighted_sum(np.ones(2), np.array([0, -1]), 100)
    with pytest.raises(ConfigError, match="noise keys must lie in"):
        NOISE.weighted_sum(np.ones(2), np.array([0, NOISE.size - 99]), 100)


def test_decode_refuses_a_dtype_that_is_not_float32_or_float64():
    dist = Distribution(np.zeros(3), 0.1, NOISE)
    assert dist.decode([1, ~1], dtype="float32").dtype == np.float32
    for bad in ("x", np.float16, int):  # 'x' used to decode as float64
        with pytest.raises(ConfigError, match="'dtype' must be float64 or float32"):
            dist.decode([1], dtype=bad)


def test_shared_sort_and_trusted_pairs_give_the_plain_paths_bits():
    # tell's one sort feeds OpenAI-ES's centred ranks, and the fold trusts the pairs its own
    # _sample mirrored; the same run through the plain shaping and the checked fold (the
    # shaping wrapped, the pending seeds copied) must give the same bits, ties included.
    fast, plain = _es(), _es()
    plain._shape = lambda r: centered_ranks(r)
    rng = np.random.default_rng(7)
    for g in range(12):
        seeds = fast.ask()
        assert np.array_equal(seeds, plain.ask())
        plain._pending = plain._pending.copy()  # no longer the array _sample made
        r = rng.standard_normal(10) if g % 3 else rng.integers(0, 3, 10).astype(np.float64)
        m_fast, m_plain = fast.tell(r), plain.tell(r.copy())
        assert fast.center.tobytes() == plain.center.tobytes()
        assert m_fast == m_plain
    assert fast.state_dict().keys() == plain.state_dict().keys()
    for key, value in fast.state_dict().items():
        assert np.array_equal(value, plain.state_dict()[key])


def test_a_partial_tell_of_one_candidate_ranks_it_zero_through_the_shared_sort():
    # One told candidate: centred ranks are all zero (no ranking), so the centre stays; the
    # shared-sort path once divided by n - 1 = 0 here and made the centre NaN.
    es = _es()
    es.ask()
    before = es.center
    dropped = np.ones(10, dtype=bool)
    dropped[4] = False
    with np.errstate(all="raise"):
        m = es.tell(np.arange(10.0), dropped=dropped)
    assert m["told"] == 1 and np.array_equal(es.center, before)
    assert np.array_equal(centered_ranks(np.array([3.0])), [0.0])


# ------------------------------------------------------------------ fourth pass


def _issued(dim, pairs=5, seed=11):
    return NOISE.sample_mirrored(np.random.default_rng(seed), pairs, dim)


def test_issued_seeds_decode_by_the_rule_into_either_buffer_and_bad_out_is_refused():
    dim = 7
    rng = np.random.default_rng(12)
    center = rng.standard_normal(dim)
    dist = Distribution(center, 0.1, NOISE)
    seeds = _issued(dim)
    eps = NOISE.windows(dim)[seeds[0::2]]
    c32, s32 = center.astype(np.float32), np.float32(0.1)
    want32 = np.empty((10, dim), np.float32)
    want32[0::2], want32[1::2] = c32 + s32 * eps, c32 - s32 * eps
    want64 = np.empty((10, dim))
    want64[0::2] = center + 0.1 * eps.astype(np.float64)
    want64[1::2] = center - 0.1 * eps.astype(np.float64)
    for dtype, want in ((np.float32, want32), (np.float64, want64)):
        assert NOISE.issued_pairs(seeds, dim)  # the recognised seeds: the direct path
        for kw in ({"dtype": dtype}, {}, {"dtype": np.dtype(dtype).name}):
            buf = np.empty((10, dim), dtype)
            assert dist.decode(seeds, out=buf, **kw) is buf
            assert buf.tobytes() == want.tobytes()
        assert dist.decode(seeds, dtype=dtype).tobytes() == want.tobytes()
    # Known break tried: the direct path without its writeable check wrote nothing and
    # numpy raised its own ValueError instead of this one.
    read_only = np.empty((10, dim), np.float32)
    read_only.flags.writeable = False
    bad = {
        "read-only": read_only,
        "shape": np.empty((11, dim), np.float32),
        "not C-contiguous": np.empty((dim, 10), np.float32).T,
    }
    for label, out in bad.items():
        with pytest.raises(ConfigError, match="'out' must be a writeable C-contiguous"):
            dist.decode(seeds, out=out)
    with pytest.raises(ConfigError, match="'dtype' must be float64 or float32"):
        dist.decode(seeds, out=np.empty((10, dim), np.float16))
    with pytest.raises(ConfigError, match="'out' must be"):
        dist.decode(seeds, dtype=np.float64, out=np.empty((10, dim), np.float32))
    # Bounds, a per-parameter sigma or another noise source: the general path, its rule.
    vector = Distribution(center, np.full(dim, 0.1), NOISE)
    got = vector.decode(seeds, out=np.empty((10, dim)))
    assert got.tobytes() == want64.tobytes()


def test_read_metrics_are_a_plain_metrics_dict_with_every_value():
    from asktell.strategies._metrics import Metrics, _DeferredMetrics

    es = _es()
    es.ask()
    m = es.tell(np.arange(10.0))
    assert type(m) is _DeferredMetrics and isinstance(m, Metrics)
    assert m["return_mean"] == 4.5
    # Computed: a plain Metrics from now on (dict's own reads), every value in the dict's
    # storage (what C code walking it sees). Known break tried: without the switch back
    # the type stayed _DeferredMetrics.
    assert type(m) is Metrics and m._later is None
    assert all(v is not None for v in dict.values(m))
    assert type(m.copy()) is Metrics and type(m | {}) is Metrics
    fresh = Metrics(a=1)
    fresh.defer(("b",), lambda x: (x,), 2)
    assert type(fresh) is _DeferredMetrics and dict(fresh) == {"a": 1, "b": 2}
    assert type(fresh) is Metrics

    class Sub(Metrics):
        pass

    with pytest.raises(TypeError, match="defer\\(\\) needs a Metrics itself, not a Sub"):
        Sub().defer(("b",), lambda: (2,))


class _KeepsReturns(OpenAIES):
    """A user subclass whose update keeps the returns and rewrites them a generation later
    (it does not declare ``_update_leaves_returns``)."""

    kept = None

    def _update(self, seeds, returns):
        if self.kept is not None:
            self.kept[:] = -1.0  # last generation's returns, rewritten
        self.kept = returns
        return super()._update(seeds, returns)


def test_returns_statistics_copy_the_returns_unless_the_update_leaves_them():
    assert OpenAIES._update_leaves_returns and not _KeepsReturns._update_leaves_returns
    es = _KeepsReturns(num_params=7, population_size=10, sigma=0.1, learning_rate=0.05,
                       noise=NOISE, seed=3)
    rng = np.random.default_rng(13)
    told, kept = [], []
    for _ in range(3):
        es.ask()
        r = rng.standard_normal(10)
        told.append(r)
        kept.append(es.tell(r))
    # Read after the update rewrote the arrays it was given. Known break tried: with the
    # flag inherited by the subclass (no copy), return_mean read -1.0.
    for r, m in zip(told, kept):
        assert m["return_mean"] == float(r.mean()) and m["return_std"] == float(r.std())


def test_cached_constants_follow_reassigned_sigma_and_adam_settings():
    """The gradient's scale and Adam's constants are kept as 0-d arrays between steps; a
    reassigned sigma, beta or epsilon and a partial tell's smaller count are followed.
    The reference rebuilds them before every tell. Known breaks tried: a scale cache keyed
    on the population only kept the old sigma's scale; Adam's cache built once kept the old
    beta1 and epsilon."""
    cached, fresh = _es(), _es()
    rng = np.random.default_rng(14)
    for g in range(8):
        if g == 3:
            for es in (cached, fresh):
                es.sigma = 0.3
                es.optimizer.beta1, es.optimizer.epsilon = 0.5, 1e-3
        r = rng.standard_normal(10)
        dropped = np.zeros(10, bool)
        if g == 5:
            dropped[[2, 7]] = True
        for es in (cached, fresh):
            es.ask()
            if es is fresh:
                es._scale = es.optimizer._constants = None
            es.tell(r.copy(), dropped=dropped)
        assert cached.center.tobytes() == fresh.center.tobytes()
    opt = cached.optimizer
    assert opt.beta1 == 0.5 and float(opt._constants[3]) == 0.5
