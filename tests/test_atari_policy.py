"""AtariPolicy: convolutions and virtual batch normalisation against hand computations, and
a candidate's outputs not depending on its batch. Pure numpy (no emulator)."""

import pickle

import numpy as np
import pytest

from asktell.atari.policy import NETWORKS, AtariPolicy, conv2d, conv_output_shape, conv_weights
from asktell.errors import ConfigError
from asktell.gym.policies import ActionSpec

ACTIONS = ActionSpec("discrete", "argmax", n=3, dtype="int64")
OBS = (2, 11, 11)
CONV = [(3, 4, 2), (4, 3, 1)]  # 11x11 -> 4x4 -> 2x2
DENSE = 5
EPS = 1e-5


def tiny(vbn=True, dtype="float64", **kw):
    return AtariPolicy(OBS, ACTIONS, conv_layers=CONV, dense_size=DENSE, vbn=vbn,
                       vbn_epsilon=EPS, dtype=dtype, **kw)


def loaded(policy, params):
    weights = policy.allocate(params.shape[0])
    policy.load(weights, slice(0, params.shape[0]), params)
    return weights


def conv_by_hand(x, w, stride):
    """A valid convolution by loops over output pixels: x (C, H, W), w (out, C, k, k)."""
    out, _, k, _ = w.shape
    ho, wo = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    z = np.zeros((out, ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = x[:, i * stride : i * stride + k, j * stride : j * stride + k]
            for o in range(out):
                z[o, i, j] = np.sum(w[o] * window)
    return z


def unpack(policy, p):
    """The flat parameter vector split by the documented layout, by hand."""
    layers, pos = [], 0
    in_c = OBS[0]
    for out, k, _ in CONV:
        w = p[pos : pos + out * in_c * k * k].reshape(out, in_c, k, k)
        pos += w.size
        if policy.vbn:
            extra = (p[pos : pos + out], p[pos + out : pos + 2 * out])
            pos += 2 * out
        else:
            extra = (p[pos : pos + out],)
            pos += out
        layers.append((w, *extra))
        in_c = out
    flat = int(np.prod(conv_output_shape(OBS, CONV)[-1]))
    w = p[pos : pos + DENSE * flat].reshape(DENSE, flat)
    pos += w.size
    if policy.vbn:
        layers.append((w, p[pos : pos + DENSE], p[pos + DENSE : pos + 2 * DENSE]))
        pos += 2 * DENSE
    else:
        layers.append((w, p[pos : pos + DENSE]))
        pos += DENSE
    w = p[pos : pos + 3 * DENSE].reshape(3, DENSE)
    pos += w.size
    layers.append((w, p[pos : pos + 3]))
    assert pos + 3 == policy.num_params
    return layers


def forward_by_hand(policy, p, frames, reference=None):
    """Pre-activation statistics (VBN) and outputs for ``frames`` (N, C, H, W), by hand:
    every layer is computed on the reference batch to get its per-channel mean/variance,
    then the frames are normalised with those statistics (Salimans et al. 2016/2017)."""
    layers = unpack(policy, p)
    xs = frames / 255.0
    refs = None if reference is None else reference / 255.0
    stats = []
    for li, (out, _, stride) in enumerate(CONV):
        w = layers[li][0]
        zs = np.stack([conv_by_hand(x, w, stride) for x in xs])  # (N, out, h, w)
        if policy.vbn:
            gamma, beta = layers[li][1], layers[li][2]
            zr = np.stack([conv_by_hand(x, w, stride) for x in refs])
            mean = np.array([zr[:, c].mean() for c in range(out)])
            var = np.array([((zr[:, c] - mean[c]) ** 2).mean() for c in range(out)])
            stats.append((mean, var))
            norm = lambda z: gamma[None, :, None, None] * (z - mean[None, :, None, None]) / np.sqrt(
                var[None, :, None, None] + EPS
            ) + beta[None, :, None, None]
            zs, refs = norm(zs), norm(zr)
            refs = np.maximum(refs, 0)
        else:
            zs = zs + layers[li][1][None, :, None, None]
        xs = np.maximum(zs, 0)
    # flatten in (channel, height, width) order
    xs = xs.reshape(xs.shape[0], -1)
    w = layers[len(CONV)][0]
    z = xs @ w.T
    if policy.vbn:
        refs = refs.reshape(refs.shape[0], -1)
        zr = refs @ w.T
        mean, var = zr.mean(axis=0), zr.var(axis=0)
        stats.append((mean, var))
        gamma, beta = layers[len(CONV)][1], layers[len(CONV)][2]
        z = gamma * (z - mean) / np.sqrt(var + EPS) + beta
    else:
        z = z + layers[len(CONV)][1]
    h = np.maximum(z, 0)
    w, b = layers[-1]
    return stats, h @ w.T + b


def random_params(policy, rng, n=1):
    params = np.stack([policy.init_params(int(s)) for s in rng.integers(0, 1000, n)])
    params += 0.3 * rng.standard_normal(params.shape)
    return params


def test_vbn_statistics_and_outputs_match_a_hand_computation():
    rng = np.random.default_rng(0)
    policy = tiny(vbn=True)
    reference = rng.integers(0, 256, (6, *OBS), dtype=np.uint8)
    policy.set_reference(reference)
    p = random_params(policy, rng)[0]
    frames = rng.integers(0, 256, (3, *OBS)).astype(np.float64)
    stats, expected = forward_by_hand(policy, p, frames, reference.astype(np.float64))

    got_stats = policy.reference_statistics(p)
    assert len(got_stats) == len(stats) == 3
    for (mean, var), (m, v) in zip(got_stats, stats):
        np.testing.assert_allclose(mean, m, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var, v, rtol=1e-10, atol=1e-12)
    out = policy.outputs(loaded(policy, p[None].repeat(3, 0)), frames.reshape(3, -1))
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)


def test_vbn_normalises_the_reference_batch_to_gamma_and_beta():
    # Under its own statistics the reference batch comes out of each layer with per-channel
    # mean beta and standard deviation |gamma| (up to epsilon), whatever the weights' scale.
    rng = np.random.default_rng(1)
    policy = tiny(vbn=True)
    reference = rng.integers(0, 256, (16, *OBS), dtype=np.uint8)
    policy.set_reference(reference)
    p = random_params(policy, rng)[0]
    layers = unpack(policy, p)
    w1 = layers[0][0]
    z = np.stack([conv_by_hand(x, w1, CONV[0][2]) for x in reference / 255.0])
    mean, var = policy.reference_statistics(p)[0]
    gamma, beta = layers[0][1], layers[0][2]
    y = gamma[None, :, None, None] * (z - mean[None, :, None, None]) / np.sqrt(
        var[None, :, None, None] + EPS
    ) + beta[None, :, None, None]
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), beta, atol=1e-9)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), np.abs(gamma), rtol=1e-3)
    scaled = p.copy()
    scaled[slice(*policy.layers[0].w)] *= 7.0  # VBN layers are invariant to the weights' scale
    frames = rng.integers(0, 256, (2, *OBS)).astype(np.float64).reshape(2, -1)
    a = policy.outputs(loaded(policy, p[None].repeat(2, 0)), frames)
    b = policy.outputs(loaded(policy, scaled[None].repeat(2, 0)), frames)
    np.testing.assert_allclose(a, b, rtol=1e-4)  # up to epsilon in the variance


def test_without_vbn_the_network_is_a_plain_convnet_with_biases():
    rng = np.random.default_rng(2)
    policy = tiny(vbn=False)
    p = random_params(policy, rng)[0]
    frames = rng.integers(0, 256, (2, *OBS)).astype(np.float64)
    _, expected = forward_by_hand(policy, p, frames)
    out = policy.outputs(loaded(policy, p[None].repeat(2, 0)), frames.reshape(2, -1))
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 84, 84, 16, 8, 4), (3, 13, 11, 5, 4, 2), (2, 9, 9, 3, 3, 1),
                                   (2, 10, 11, 3, 3, 2), (1, 7, 7, 2, 5, 3)])
def test_the_space_to_depth_convolution_equals_the_definition(shape):
    c, h, w, out, k, s = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, c, h, w))
    weights = rng.standard_normal((out, c, k, k))
    folded = np.stack([conv_weights(weights, s)] * 2)
    z = conv2d(x, folded, k, s, out)
    np.testing.assert_allclose(z[1], conv_by_hand(x[1], weights, s), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("vbn", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_candidates_outputs_are_bitwise_the_same_alone_and_in_any_batch(vbn, dtype):
    rng = np.random.default_rng(4)
    policy = AtariPolicy((4, 36, 36), ACTIONS, conv_layers=[(8, 8, 4), (8, 4, 2)], dense_size=16,
                         vbn=vbn, dtype=dtype)
    if vbn:
        policy.set_reference(rng.integers(0, 256, (8, 4, 36, 36), dtype=np.uint8))
    n = 9
    params = random_params(policy, rng, n)
    x = rng.integers(0, 256, (n, policy.obs_dim)).astype(np.float32)
    full = policy.outputs(loaded(policy, params), x.copy())
    for i in range(n):
        alone = policy.outputs(loaded(policy, params[i : i + 1]), x[i : i + 1].copy())
        assert np.array_equal(alone[0], full[i])
    for start, stop in [(0, 4), (2, 3), (5, 9)]:
        part = policy.outputs(loaded(policy, params[start:stop]), x[start:stop].copy())
        assert np.array_equal(part, full[start:stop])
    # loading into some rows of a bigger buffer changes nothing either
    weights = policy.allocate(12)
    policy.load(weights, np.array([11, 3]), params[[4, 7]])
    y = np.zeros((12, policy.obs_dim), dtype=np.float32)
    y[[11, 3]] = x[[4, 7]]
    out = policy.outputs(weights, y)
    assert np.array_equal(out[[11, 3]], full[[4, 7]])


def test_networks_have_the_documented_sizes():
    act6 = ActionSpec("discrete", "argmax", n=6, dtype="int64")
    a3c = AtariPolicy((4, 84, 84), act6, "a3c", vbn=False)
    assert a3c.conv_shapes == [(16, 20, 20), (32, 9, 9)]
    assert a3c.num_params == (16 * 4 * 64 + 16) + (32 * 16 * 16 + 32) + (256 * 2592 + 256) + (6 * 256 + 6)
    nature = AtariPolicy((4, 84, 84), act6, "nature", vbn=True)
    assert nature.conv_shapes == [(32, 20, 20), (64, 9, 9), (64, 7, 7)]
    assert nature.num_params == (32 * 256 + 64) + (64 * 512 + 128) + (64 * 576 + 128) + (
        512 * 3136 + 1024) + (6 * 512 + 6)
    assert set(NETWORKS) == {"a3c", "nature"}


def test_a_reference_batch_of_the_wrong_shape_is_rejected():
    policy = tiny()
    with pytest.raises(ConfigError, match=r"reference batch must have shape \(N >= 2, 2, 11, 11\).*\(5, 2, 11, 12\)"):
        policy.set_reference(np.zeros((5, 2, 11, 12), dtype=np.uint8))
    with pytest.raises(ConfigError, match="N >= 2"):
        policy.set_reference(np.zeros((1, *OBS), dtype=np.uint8))
    with pytest.raises(ConfigError, match="pixels 0..255"):
        policy.set_reference(np.full((3, *OBS), 300.0))
    with pytest.raises(ConfigError, match="no reference batch"):
        policy.load(policy.allocate(1), slice(0, 1), policy.init_params()[None])


def test_bad_arguments_name_the_argument():
    with pytest.raises(ConfigError, match="needs an input of at least 8x8; it gets 6x6"):
        AtariPolicy((4, 6, 6), ACTIONS)
    with pytest.raises(ConfigError, match="network: Input should be 'a3c' or 'nature'; got 'resnet'"):
        AtariPolicy(OBS, ACTIONS, "resnet")
    with pytest.raises(ConfigError, match="discrete action space"):
        AtariPolicy(OBS, ActionSpec("box", low=np.zeros(1), high=np.ones(1), shape=(1,)))
    with pytest.raises(ConfigError, match=r"expects parameters of shape \(k, "):
        tiny(vbn=False).load(tiny(vbn=False).allocate(1), slice(0, 1), np.zeros((1, 3)))


def test_pickling_keeps_the_reference_and_drops_the_cache():
    rng = np.random.default_rng(5)
    policy = tiny(dtype="float32")
    policy.set_reference(rng.integers(0, 256, (4, *OBS), dtype=np.uint8))
    p = random_params(policy, rng, 2)
    x = rng.integers(0, 256, (2, policy.obs_dim)).astype(np.float32)
    before = policy.outputs(loaded(policy, p), x)
    assert policy._ref_grid is not None
    copy = pickle.loads(pickle.dumps(policy))
    assert copy._ref_grid is None and copy.reference_crc == policy.reference_crc
    assert np.array_equal(copy.outputs(loaded(copy, p), x), before)
