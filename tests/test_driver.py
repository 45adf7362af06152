"""The driver's own arithmetic (issue 14): decode without copies, the long-row gradient.

Expected values come from the rules written in the docstrings (``center + (sign * sigma) *
float64(eps)``; the documented summation order of the long-row weighted sum), computed
here from table slices, never from the code under test. Each check has a known break beside
it that the check must catch.
"""

from __future__ import annotations

import numpy as np
import pytest

from asktell import ConfigError, CounterNoise, NoiseTable
from asktell._weighted_sum import _AXPY_GROUP
from asktell.bounds import Bounds
from asktell.distribution import INJECT_BASE, Distribution, _ROW_BY_ROW_MIN
from asktell.noise import _LONG_ROW, mirrored, split_seeds
from asktell.strategies import OpenAIES
from asktell.testing.dask_cluster import loopback_cluster

TABLE = NoiseTable(seed=0, size=1 << 20)
SHORT, LONG = 7, max(_ROW_BY_ROW_MIN, 2500)
rng = np.random.default_rng(11)


def eps(noise, key, dim):
    return np.asarray(noise.table[key : key + dim] if isinstance(noise, NoiseTable)
                      else noise.get(key, dim))


def rule64(dist: Distribution, seeds) -> np.ndarray:
    """``center + (sign * sigma) * float64(eps(key))`` row by row, then factor/bounds."""
    rows = []
    for seed in np.asarray(seeds, dtype=np.int64):
        if seed >= INJECT_BASE:
            row = np.array(dist.injected[seed - INJECT_BASE])
        else:
            key, sign = (int(seed), 1.0) if seed >= 0 else (int(~seed), -1.0)
            z = eps(dist.noise, key, dist.num_params).astype(np.float64)
            if dist.factor is not None:
                z = dist.factor @ z  # one gemv per row, as documented
            row = z * (sign * np.asarray(dist.sigma)) + dist.center
        rows.append(row)
    x = np.array(rows)
    if dist.bounds is not None:
        plain = np.asarray(seeds) < INJECT_BASE
        x[plain] = dist.bounds.repair(x[plain])
        x[~plain] = dist.bounds.repair(x[~plain]) if (~plain).any() else x[~plain]
    return x


def rule32(dist: Distribution, seeds) -> np.ndarray:
    """The same formula in float32: ``float32(center) + float32(sign * sigma) * eps``."""
    rows = []
    for seed in np.asarray(seeds, dtype=np.int64):
        key, sign = (int(seed), 1.0) if seed >= 0 else (int(~seed), -1.0)
        s32 = (sign * np.asarray(dist.sigma)).astype(np.float32)
        rows.append(eps(dist.noise, key, dist.num_params) * s32 + dist.center.astype(np.float32))
    return np.array(rows, dtype=np.float32)


def seed_sets(dim: int, noise=TABLE):
    keys = noise.sample_keys(rng, 6, dim)
    return {
        "pairs": mirrored(keys),
        "mirror_first": np.array([~keys[0], keys[0], ~keys[1], keys[1]]),
        "mixed": np.array([keys[0], ~keys[1], ~keys[2], keys[3], keys[4]]),
        "one": keys[:1],
    }


def distributions(dim: int, noise=TABLE):
    center = rng.standard_normal(dim)
    sig = rng.random(dim) + 0.05
    yield "scalar", Distribution(center, 0.03, noise)
    yield "vector", Distribution(center, sig, noise)
    yield "bounds", Distribution(center, 0.5, noise, bounds=Bounds(np.full(dim, -0.5), np.full(dim, 0.7), "mirror"))
    injected = rng.standard_normal((2, dim))
    yield "injected", Distribution(center, sig, noise, injected=injected)
    if dim <= 50:
        yield "factor", Distribution(center, 0.1, noise, factor=rng.standard_normal((dim, dim)))


@pytest.mark.parametrize("dim", [SHORT, LONG])
def test_decode_float64_is_bitwise_the_rule(dim):
    for name, dist in distributions(dim):
        for label, seeds in seed_sets(dim).items():
            if name == "injected":
                seeds = np.append(seeds, [INJECT_BASE + 1, INJECT_BASE])
            got = dist.decode(seeds)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, rule64(dist, seeds), err_msg=f"{name} {label}")
            out = np.empty_like(got)
            assert dist.decode(seeds, out=out) is out
            np.testing.assert_array_equal(out, got)


def test_decode_is_per_row_whatever_the_batch():
    dist = Distribution(rng.standard_normal(LONG), 0.02, TABLE)
    seeds = mirrored(TABLE.sample_keys(rng, 4, LONG))
    whole = dist.decode(seeds)
    for i, seed in enumerate(seeds):
        np.testing.assert_array_equal(dist.decode([seed])[0], whole[i])


def test_counter_noise_decodes_by_the_same_rule():
    noise = CounterNoise(seed=3)
    for name, dist in distributions(LONG, noise):
        if name in ("scalar", "vector"):
            seeds = seed_sets(LONG, noise)["pairs"]
            np.testing.assert_array_equal(dist.decode(seeds), rule64(dist, seeds))
            np.testing.assert_array_equal(dist.decode(seeds, dtype=np.float32),
                                          rule32(dist, seeds))


@pytest.mark.parametrize("dim", [SHORT, LONG])
def test_decode_float32_is_float32_arithmetic_of_the_rule(dim):
    for name, dist in distributions(dim):
        for label, seeds in seed_sets(dim).items():
            got = dist.decode(seeds, dtype=np.float32)
            assert got.dtype == np.float32
            if name in ("scalar", "vector"):
                want = rule32(dist, seeds)
            else:  # factor, bounds, injected: the float64 rows rounded (documented)
                want = dist.decode(seeds).astype(np.float32)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {label}")
            buf = np.empty((seeds.size, dim), np.float32)
            assert dist.decode(seeds, out=buf) is buf  # out's dtype chooses float32
            np.testing.assert_array_equal(buf, got)


def test_decode_rule_check_catches_a_wrong_mirror_sign(monkeypatch):
    """Known break: the long-row pair path writes ``center + p`` for the mirror too."""
    import asktell.distribution as D

    real_subtract = np.subtract

    def broken_subtract(a, b, out=None, **kw):
        return np.add(a, b, out=out, **kw)

    dist = Distribution(rng.standard_normal(LONG), 0.03, TABLE)
    seeds = seed_sets(LONG)["pairs"]
    monkeypatch.setattr(D.np, "subtract", broken_subtract)
    try:
        broken = dist.decode(seeds)
    finally:
        monkeypatch.setattr(D.np, "subtract", real_subtract)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(broken, rule64(dist, seeds))


def test_decode_refuses_bad_out_and_dtype():
    dist = Distribution(np.zeros(SHORT), 0.1, TABLE)
    seeds = np.array([1, ~1])
    with pytest.raises(ConfigError, match="'out' must be .*float64.*shape \\(2, 7\\); got float64 \\(3, 7\\)"):
        dist.decode(seeds, out=np.empty((3, SHORT)))
    with pytest.raises(ConfigError, match="'out' must be"):
        dist.decode(seeds, dtype=np.float64, out=np.empty((2, SHORT), np.float32))
    with pytest.raises(ConfigError, match="'out' must be"):
        dist.decode(seeds, out=np.empty((SHORT, 2)).T)  # not C-contiguous
    with pytest.raises(ConfigError, match="'dtype' must be float64 or float32; got dtype\\('int64'\\)"):
        dist.decode(seeds, dtype=np.int64)


# ------------------------------------------------------------------ long-row weighted sum


def documented_order(weights, keys, dim):
    """NoiseTable.weighted_sum's documented long-row order: key order, float32 products
    and accumulator, added into a float64 total after every _AXPY_GROUP rows."""
    total = np.zeros(dim)
    acc = np.zeros(dim, np.float32)
    for i, (w, k) in enumerate(zip(np.asarray(weights, np.float64).astype(np.float32), keys)):
        acc = acc + TABLE.table[k : k + dim] * w
        if (i + 1) % _AXPY_GROUP == 0:
            total += acc
            acc = np.zeros(dim, np.float32)
    return total + acc


def reference64(weights, keys, dim):
    return sum(w * TABLE.table[k : k + dim].astype(np.float64) for w, k in zip(weights, keys))


def check_long_row_sum(weighted_sum) -> None:
    dim = _LONG_ROW
    keys = TABLE.sample_keys(rng, 150, dim)  # more than two groups
    weights = rng.standard_normal(150)
    got = weighted_sum(weights, keys, dim)
    ref = reference64(weights, keys, dim)
    # float32 products: relative error ~1e-7 per term, ~sqrt(n) accumulated
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(got, documented_order(weights, keys, dim))
    # Split into two calls at a group boundary and added: the same bits (how the keys were
    # cut does not matter beyond the documented groups).
    cut = _AXPY_GROUP
    parts = weighted_sum(weights[:cut], keys[:cut], dim) + weighted_sum(weights[cut:], keys[cut:], dim)
    np.testing.assert_allclose(parts, got, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_long_row_weighted_sum_follows_its_documented_order():
    check_long_row_sum(TABLE.weighted_sum)


def test_long_row_check_catches_a_dropped_sign():
    def broken(weights, keys, dim):  # the sign of negative weights lost
        return TABLE.weighted_sum(np.abs(weights), keys, dim)

    with pytest.raises(AssertionError):
        check_long_row_sum(broken)


def test_short_rows_keep_the_gather_gemv_bits():
    dim = 100
    keys = TABLE.sample_keys(rng, 40, dim)
    weights = rng.standard_normal(40)
    want = np.zeros(dim) + weights.astype(np.float32) @ TABLE.windows(dim)[keys]
    np.testing.assert_array_equal(TABLE.weighted_sum(weights, keys, dim), want)


@pytest.mark.parametrize("break_sign", [False, True])
def test_openai_es_long_row_gradient_matches_float64_rule(break_sign, monkeypatch):
    """The strategy's step (SGD: learning_rate * gradient) against the paper's estimator
    from decoded rows in float64; with the mirror's sign broken the check fails."""
    dim, pop, sigma, lr = _LONG_ROW, 10, 0.05, 0.1
    es = OpenAIES(dim, pop, sigma, lr, optimizer="sgd", noise=TABLE, seed=3)
    seeds = es.ask()
    returns = rng.standard_normal(pop)
    keys, signs = split_seeds(seeds)
    from asktell.shaping import centered_ranks

    w = centered_ranks(returns)
    grad = sum(wi * si * TABLE.table[k : k + dim].astype(np.float64)
               for wi, si, k in zip(w, signs, keys)) / (pop * sigma)
    if break_sign:
        import asktell.strategies.openai_es as O

        real = O.fold_weights
        monkeypatch.setattr(O, "fold_weights", lambda s, ww, **kw: (real(s, ww)[0], ww[0::2] + ww[1::2]))
    es.tell(returns)
    close = np.allclose(es.center, lr * grad, rtol=0, atol=1e-5 * np.abs(lr * grad).max())
    assert close != break_sign


# ------------------------------------------------------------------ bitwise shortcuts


def test_per_generation_statistics_match_numpy_bitwise():
    from asktell.strategies._common import mean_std
    from asktell.strategies._stopping import _median
    from asktell.strategies.openai_es import _norm

    gen = np.random.default_rng(5)
    for i in range(300):
        x = gen.standard_normal(int(gen.integers(1, 300))) * 10.0 ** gen.uniform(-8, 8)
        if i % 4 == 0:
            x = np.round(x)
        if i % 9 == 0:
            x = np.where(gen.random(x.size) < 0.5, 0.0, -0.0)
        assert mean_std(x) == (float(x.mean()), float(x.std()))
        med = _median(x)
        assert med == float(np.median(x)) and np.signbit(med) == np.signbit(np.median(x))
        assert _norm(x) == float(np.linalg.norm(x))


def test_long_vector_norm_is_the_blockwise_sum():
    from asktell.strategies.openai_es import _NORM_BLOCK, _norm

    x = np.random.default_rng(6).standard_normal(3 * _NORM_BLOCK + 5)
    blocks = [x[i : i + _NORM_BLOCK] for i in range(0, x.size, _NORM_BLOCK)]
    assert _norm(x) == np.sqrt(sum(float(b.dot(b)) for b in blocks))
    assert _norm(x) == pytest.approx(float(np.linalg.norm(x)), rel=1e-12)


# ------------------------------------------------------------------ distributed noise sum

@pytest.fixture(scope="module")
def two_workers():
    """Two single-threaded worker processes on loopback, shut down after this module."""
    distributed = pytest.importorskip("distributed")
    with loopback_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def check_part_order_sum(hook, parts: int) -> None:
    """The documented result: each contiguous part summed by the noise source, the parts
    added in part order (bitwise), close to the local sum."""
    dim = _LONG_ROW
    keys = TABLE.sample_keys(np.random.default_rng(8), 101, dim)
    weights = np.random.default_rng(9).standard_normal(101)
    cuts = [101 * i // parts for i in range(parts + 1)]
    want = np.zeros(dim)
    for a, b in zip(cuts[:-1], cuts[1:]):
        want += TABLE.weighted_sum(weights[a:b], keys[a:b], dim)
    got = hook(TABLE, weights, keys, dim)
    np.testing.assert_array_equal(got, want)
    local = TABLE.weighted_sum(weights, keys, dim)
    np.testing.assert_allclose(got, local, rtol=0, atol=1e-5 * np.abs(local).max())


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_dask_weighted_sum_adds_parts_in_part_order(two_workers, parts):
    from asktell.evaluators._dask_tell import DaskWeightedSum

    check_part_order_sum(DaskWeightedSum(two_workers, parts=parts), parts)


@pytest.mark.parametrize("parts", [2, 3])
def test_part_order_check_catches_a_lost_part(two_workers, parts):
    from asktell.evaluators._dask_tell import DaskWeightedSum

    class OffByOne(DaskWeightedSum):  # the last part's future never gathered
        def __call__(self, noise, weights, keys, dim):
            cuts = [keys.size * i // self.parts for i in range(self.parts + 1)]
            total = np.zeros(dim)
            for a, b in zip(cuts[:-2], cuts[1:-1]):
                total += noise.weighted_sum(weights[a:b], keys[a:b], dim)
            return total

    with pytest.raises(AssertionError):
        check_part_order_sum(OffByOne(two_workers, parts=parts), parts)


def test_openai_es_noise_sum_hook_follows_the_local_run(two_workers):
    from asktell.evaluators._dask_tell import DaskWeightedSum

    dim = _LONG_ROW
    local = OpenAIES(dim, 16, 0.05, 0.01, noise=TABLE, seed=4)
    remote = OpenAIES(dim, 16, 0.05, 0.01, noise=TABLE, seed=4)
    remote.noise_sum = DaskWeightedSum(two_workers)  # parts: the 2 workers
    assert remote.noise_sum.parts == 2
    gen = np.random.default_rng(10)
    for _ in range(3):
        returns = gen.standard_normal(16)
        np.testing.assert_array_equal(local.ask(), remote.ask())
        local.tell(returns)
        remote.tell(returns)
    np.testing.assert_allclose(remote.center, local.center, rtol=1e-4, atol=1e-9)


def test_dask_weighted_sum_refuses_bad_parts(two_workers):
    from asktell.evaluators._dask_tell import DaskWeightedSum

    with pytest.raises(ConfigError, match="'parts' must be an int >= 1; got 0"):
        DaskWeightedSum(two_workers, parts=0)
    with pytest.raises(ConfigError, match="one weight per key"):
        DaskWeightedSum(two_workers, parts=2)(TABLE, np.ones(3), np.arange(4), 10)
