"""Numpy policies: layout, actions, and a candidate's output not depending on its batch."""

import numpy as np
import pytest

from asktell.errors import ConfigError
from asktell.gym.normalizer import ObsNormalizer
from asktell.gym.policies import ActionSpec, LinearPolicy, MLPPolicy, batched_matvec


def box(low, high, mode="tanh", bins=0):
    low, high = np.asarray(low, float), np.asarray(high, float)
    return ActionSpec("box", mode, low=low, high=high, shape=low.shape, dtype="float32", bins=bins)


DISCRETE = ActionSpec("discrete", "argmax", n=3, dtype="int64")


def loaded(policy, params):
    weights = policy.allocate(params.shape[0])
    policy.load(weights, slice(0, params.shape[0]), params)
    return weights


def test_num_params_and_layout_match_a_hand_written_forward():
    policy = MLPPolicy(4, box([-1, -1], [1, 1], mode="clip"), hidden_sizes=(3,), dtype="float64")
    assert policy.num_params == 4 * 3 + 3 + 3 * 2 + 2
    params = np.random.default_rng(0).standard_normal((1, policy.num_params))
    x = np.random.default_rng(1).standard_normal((1, 4))
    p = params[0]
    W1, b1 = p[:12].reshape(3, 4), p[12:15]
    W2, b2 = p[15:21].reshape(2, 3), p[21:23]
    expected = W2 @ np.tanh(W1 @ x[0] + b1) + b2
    got = policy.outputs(loaded(policy, params), x)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden", [(), (64, 64), (5, 7)])
def test_a_candidates_output_is_bitwise_the_same_alone_and_in_any_batch(dtype, hidden):
    # MuJoCo is chaotic: a last-bit difference in one action changes a whole episode, so a
    # candidate must get the same actions whichever batch (and position) it rides in.
    policy = MLPPolicy(17, box(-np.ones(6), np.ones(6)), hidden_sizes=hidden, dtype=dtype)
    rng = np.random.default_rng(0)
    n = 37
    params = rng.standard_normal((n, policy.num_params)) * 0.3
    x = rng.standard_normal((n, 17))
    full = policy.act(loaded(policy, params), x.copy())
    for i in range(n):
        alone = policy.act(loaded(policy, params[i : i + 1]), x[i : i + 1].copy())
        assert np.array_equal(alone[0], full[i])
    for start, stop in [(0, 5), (3, 4), (10, 37), (30, 33)]:
        part = policy.act(loaded(policy, params[start:stop]), x[start:stop].copy())
        assert np.array_equal(part, full[start:stop])


def test_batched_matvec_rows_do_not_depend_on_the_batch():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((20, 64, 348))
    x = rng.standard_normal((20, 348))
    full = batched_matvec(W, x)
    for i in (0, 7, 19):
        assert np.array_equal(batched_matvec(W[i : i + 1].copy(), x[i : i + 1].copy())[0], full[i])
        np.testing.assert_allclose(full[i], W[i] @ x[i], rtol=1e-12)


def test_tanh_actions_stay_in_asymmetric_bounds_and_are_cast_to_the_space_dtype():
    spec = box([0.0, -2.0], [1.0, 3.0])
    policy = LinearPolicy(3, spec)
    params = np.random.default_rng(0).standard_normal((50, policy.num_params)) * 10
    a = policy.act(loaded(policy, params), np.random.default_rng(1).standard_normal((50, 3)))
    assert a.shape == (50, 2) and a.dtype == np.float32
    assert np.all(a >= spec.low.astype(np.float32)) and np.all(a <= spec.high.astype(np.float32))
    assert a[:, 1].min() < -1.0 and a[:, 1].max() > 2.0  # the range is used, not just [-1, 1]


def test_bins_discretise_each_dimension_into_evenly_spaced_values():
    spec = box([-1.0, 0.0], [1.0, 4.0], mode="bins", bins=5)
    assert spec.num_outputs == 10
    out = np.zeros((1, 10))
    out[0, 3] = 1.0  # dim 0 -> bin 3 of 5 in [-1, 1] -> 0.5
    out[0, 5 + 4] = 1.0  # dim 1 -> bin 4 -> 4.0
    assert np.array_equal(spec.to_actions(out), np.array([[0.5, 4.0]], dtype=np.float32))


def test_clip_mode_clips_and_discrete_takes_the_argmax():
    spec = box([-1.0], [1.0], mode="clip")
    assert np.array_equal(spec.to_actions(np.array([[3.0], [-0.5]])).ravel(), [1.0, -0.5])
    assert DISCRETE.to_actions(np.array([[0.1, 2.0, -1.0], [5.0, 0.0, 0.0]])).tolist() == [1, 0]


def test_unbounded_box_needs_clip_mode():
    class FakeBox:  # the attributes ActionSpec reads from a gymnasium Box
        low = np.array([-np.inf])
        high = np.array([np.inf])
        shape = (1,)
        dtype = np.float32

    FakeBox.__name__ = "Box"
    with pytest.raises(ConfigError, match="finite action bounds"):
        ActionSpec.from_space(FakeBox(), "tanh")
    assert ActionSpec.from_space(FakeBox(), "clip").mode == "clip"


def test_init_params_are_normc_with_a_small_output_layer():
    policy = MLPPolicy(10, DISCRETE, hidden_sizes=(32,))
    p = policy.init_params(0)
    W1 = p[: 32 * 10].reshape(32, 10)
    np.testing.assert_allclose(np.linalg.norm(W1, axis=1), 1.0)
    W2 = p[32 * 10 + 32 : 32 * 10 + 32 + 3 * 32].reshape(3, 32)
    np.testing.assert_allclose(np.linalg.norm(W2, axis=1), 0.01)
    assert np.array_equal(policy.init_params(0), p) and not np.array_equal(policy.init_params(1), p)


def test_bad_policy_arguments_name_the_argument():
    with pytest.raises(ConfigError, match="hidden_sizes"):
        MLPPolicy(3, DISCRETE, hidden_sizes=(0,))
    with pytest.raises(ConfigError, match="activation"):
        MLPPolicy(3, DISCRETE, activation="sigmoid")
    with pytest.raises(ConfigError, match="dtype"):
        MLPPolicy(3, DISCRETE, dtype="float16")
    policy = LinearPolicy(3, DISCRETE)
    with pytest.raises(ConfigError, match=r"\(k, 12\)"):
        policy.load(policy.allocate(1), slice(0, 1), np.zeros((1, 5)))


def test_normalizer_clips_and_identity_without_statistics():
    norm = ObsNormalizer.from_context({"obs_mean": [1.0, 0.0], "obs_std": [2.0, 0.1]}, 2, clip=5.0)
    x = norm(np.array([[3.0, 1.0]]))
    assert x.tolist() == [[1.0, 5.0]]
    assert not ObsNormalizer.from_context({}, 2).active
    with pytest.raises(ConfigError, match="length 3"):
        ObsNormalizer.from_context({"obs_mean": [0.0, 0.0], "obs_std": [1.0, 1.0]}, 3)
