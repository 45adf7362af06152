"""The noise must be right where peers got it wrong: ranges, distinctness, moments, processes."""

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from asktell import ConfigError, CounterNoise, NoiseTable
from asktell.distribution import Distribution
from asktell.noise import mirrored, split_seeds

SMALL = NoiseTable(seed=0, size=1 << 20)


def test_table_is_deterministic_float32_and_read_only():
    a = NoiseTable(seed=3, size=100_003).table
    b = NoiseTable(seed=3, size=100_003).table
    assert a.dtype == np.float32 and a.shape == (100_003,)
    assert a is b  # cached: built once per process
    assert not a.flags.writeable
    from asktell._table_cache import build_table

    assert np.array_equal(build_table(3, 100_003), a)  # rebuilding gives the same table
    assert not np.array_equal(NoiseTable(seed=4, size=100_003).table[:100], a[:100])


def test_table_moments():
    t = SMALL.table.astype(np.float64)
    assert abs(t.mean()) < 0.005
    assert abs(t.std() - 1.0) < 0.005
    # neighbouring values are uncorrelated (independent draws, no block seams)
    assert abs(np.corrcoef(t[:-1], t[1:])[0, 1]) < 0.005


@pytest.mark.parametrize("dim", [1, 7, 1000, (1 << 20) - 1])
def test_sampled_offsets_stay_in_range_for_every_dim(dim):
    rng = np.random.default_rng(0)
    keys = SMALL.sample_keys(rng, 5000, dim)
    assert keys.min() >= 0 and keys.max() + dim <= SMALL.size
    for k in keys[:50]:
        assert SMALL.get(k, dim).shape == (dim,)


def test_largest_dim_uses_both_valid_offsets():
    keys = SMALL.sample_keys(np.random.default_rng(0), 200, SMALL.size - 1)
    assert set(keys.tolist()) == {0, 1}


def test_out_of_range_key_is_rejected():
    with pytest.raises(ConfigError, match="out of range"):
        SMALL.get(SMALL.size - 5, 10)


def test_table_too_small_names_num_params():
    with pytest.raises(ConfigError, match="num_params=2000"):
        NoiseTable(seed=0, size=1000).check_dim(2000)


def test_distinct_keys_give_distinct_vectors():
    keys = SMALL.sample_keys(np.random.default_rng(1), 64, 500)
    rows = SMALL.rows(np.unique(keys), 500)
    assert len({r.tobytes() for r in rows}) == rows.shape[0]


def test_counter_noise_distinct_deterministic_and_normal():
    noise = CounterNoise(seed=5)
    assert np.array_equal(noise.get(12, 100), CounterNoise(seed=5).get(12, 100))
    assert not np.array_equal(noise.get(12, 100), noise.get(13, 100))
    # a key's vector is a prefix-stable stream: dim 50 is the start of dim 100
    assert np.array_equal(noise.get(12, 50), noise.get(12, 100)[:50])
    sample = noise.rows(np.arange(200), 500).astype(np.float64)
    assert abs(sample.mean()) < 0.01 and abs(sample.std() - 1) < 0.01


def test_seed_encoding_roundtrip_and_mirror():
    keys = np.array([0, 5, 2**40], dtype=np.int64)
    seeds = mirrored(keys)
    assert seeds.tolist() == [0, -1, 5, -6, 2**40, -(2**40) - 1]
    k, s = split_seeds(seeds)
    assert k.tolist() == [0, 0, 5, 5, 2**40, 2**40]
    assert s.tolist() == [1, -1, 1, -1, 1, -1]


@pytest.mark.parametrize("noise", [SMALL, CounterNoise(seed=1)], ids=["table", "counter"])
def test_mirror_decodes_to_negated_vector_and_chunks_cut_anywhere_agree(noise):
    dist = Distribution(np.linspace(-1, 1, 33), 0.5, noise)
    seeds = mirrored(noise.sample_keys(np.random.default_rng(2), 9, 33))
    X = dist.decode(seeds)
    assert np.array_equal(X[0::2] - dist.center, -(X[1::2] - dist.center))
    for cut in range(seeds.size + 1):
        assert np.array_equal(np.concatenate([dist.decode(seeds[:cut]), dist.decode(seeds[cut:])]), X)


def test_weighted_sum_matches_dense_product():
    rng = np.random.default_rng(0)
    for noise in (SMALL, CounterNoise(seed=2)):
        keys = noise.sample_keys(rng, 37, 300)
        w = rng.standard_normal(37)
        dense = w @ noise.rows(keys, 300).astype(np.float64)
        np.testing.assert_allclose(noise.weighted_sum(w, keys, 300), dense, rtol=1e-4, atol=1e-4)


def test_noise_pickles_small():
    blob = pickle.dumps(NoiseTable(seed=0, size=1 << 25))
    assert len(blob) < 200
    assert pickle.loads(blob) == NoiseTable(seed=0, size=1 << 25)


def _child_vector(args):
    spec, key, dim = args
    from asktell.noise import noise_from_spec

    return noise_from_spec(spec).get(key, dim).copy()


@pytest.mark.parametrize("noise", [NoiseTable(seed=9, size=1 << 18), CounterNoise(seed=9)],
                         ids=["table", "counter"])
def test_same_key_same_vector_in_another_process(noise):
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        theirs = pool.map(_child_vector, [(noise.spec(), 1234, 77)])[0]
    assert np.array_equal(theirs, noise.get(1234, 77))


def test_bad_noise_arguments():
    with pytest.raises(ConfigError, match="'size'"):
        NoiseTable(seed=0, size=1)
    with pytest.raises(ConfigError, match="'seed'"):
        NoiseTable(seed=-1)
    with pytest.raises(ConfigError, match="'seed'"):
        CounterNoise(seed=1.5)


@pytest.mark.parametrize("source", [NoiseTable(seed=1, size=1 << 16), CounterNoise(seed=1)])
def test_both_sources_satisfy_the_noise_source_protocol(source):
    import inspect

    from asktell.noise import NoiseSource, noise_from_spec

    assert isinstance(source, NoiseSource)
    members = [m for m in vars(NoiseSource) if not m.startswith("_")]
    for name in members:
        theirs = inspect.signature(getattr(NoiseSource, name))
        ours = inspect.signature(getattr(type(source), name))
        assert list(ours.parameters) == list(theirs.parameters), name
    for name in NoiseSource.__annotations__:
        assert hasattr(source, name), name
    # What the protocol promises, through its members only.
    rng = np.random.default_rng(0)
    keys = source.sample_keys(rng, 3, 5)
    rows = source.rows(keys, 5)
    assert rows.dtype == np.float32 and rows.shape == (3, 5)
    assert np.array_equal(rows[1], source.get(int(keys[1]), 5))
    w = np.array([0.5, -1.0, 2.0])
    assert np.allclose(source.weighted_sum(w, keys, 5), w.astype(np.float32) @ rows)
    assert noise_from_spec(source.spec()) == source
    assert source.spec()["kind"] == source.kind
