import numpy as np
import pytest

from asktell import AskTellOrderError, ConfigError, NoiseTable, ReturnsError
from asktell.strategies import OpenAIES
from asktell.strategies.openai_es import OpenAIESConfig, fold_weights


def test_readme_loop_solves_the_shifted_sphere():
    es = OpenAIES(num_params=100, population_size=64, sigma=0.1, learning_rate=0.02, seed=0)
    assert np.sum((es.center - 3.0) ** 2) == pytest.approx(900.0)
    for _ in range(500):
        seeds = es.ask()
        X = es.distribution.decode(seeds)
        es.tell([-np.sum((x - 3.0) ** 2) for x in X])
    assert np.sum((es.center - 3.0) ** 2) < 0.01


def test_seeds_come_in_mirrored_pairs():
    es = OpenAIES(num_params=10, population_size=8, noise=NoiseTable(0, 1 << 20))
    s = es.ask()
    assert np.array_equal(s[1::2], ~s[0::2])
    X = es.distribution.decode(s)
    assert np.allclose(X[0::2] + X[1::2], 0.0)


def test_gradient_equals_the_papers_estimator():
    """One SGD step equals lr/(n sigma) * sum_i w_i eps_i computed densely."""
    noise = NoiseTable(0, 1 << 20)
    es = OpenAIES(num_params=20, population_size=10, sigma=0.3, learning_rate=0.5,
                  optimizer="sgd", noise=noise, seed=4)
    seeds = es.ask()
    X = es.distribution.decode(seeds)
    r = -np.sum((X - 1) ** 2, axis=1)
    es.tell(r)
    from asktell.shaping import centered_ranks

    eps = (X - 0.0) / 0.3
    expected = 0.5 / (10 * 0.3) * centered_ranks(r) @ eps
    np.testing.assert_allclose(es.center, expected, rtol=1e-5, atol=1e-6)


def test_fold_weights_combines_pairs():
    keys, coef = fold_weights(np.array([4, ~4, 9, ~9]), np.array([0.5, -0.5, 0.1, 0.2]))
    assert keys.tolist() == [4, 9] and np.allclose(coef, [1.0, -0.1])


def test_all_equal_returns_leave_the_centre_in_place():
    es = OpenAIES(num_params=5, population_size=6, noise=NoiseTable(0, 1 << 20))
    es.ask()
    es.tell(np.full(6, 3.0))
    assert np.array_equal(es.center, np.zeros(5))


def test_weight_decay_pulls_towards_zero():
    es = OpenAIES(num_params=3, population_size=4, x0=[5.0, 5.0, 5.0], weight_decay=0.5,
                  optimizer="sgd", learning_rate=0.1, noise=NoiseTable(0, 1 << 20))
    es.ask()
    es.tell(np.zeros(4))
    assert np.all(es.center < 5.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"population_size": 1}, "population_size: .* greater than or equal to 2; got 1"),
        ({"population_size": 7}, "population_size must be even .*; got 7"),
        ({"sigma": 0.0}, "sigma: Input should be greater than 0; got 0.0"),
        ({"sigma": float("nan")}, "sigma: Input should be a finite number; got nan"),
        ({"learning_rate": -0.1}, "learning_rate: Input should be greater than 0; got -0.1"),
        ({"num_params": 10, "noise": NoiseTable(0, 5)}, "noise table.*num_params=10"),
        ({"x0": [1.0, 2.0]}, "'x0' must have num_params=4"),
        ({"nonfinite": "ignore"}, "nonfinite: Input should be 'worst' or 'raise'; got 'ignore'"),
        ({"shaping": "ranks"}, "shaping: Input should be 'centered_ranks', .*; got 'ranks'"),
        ({"sgima": 0.1}, "sgima: unknown key .*; did you mean 'sigma'"),
    ],
)
def test_bad_constructor_values_name_the_argument(kwargs, match):
    options = {"num_params": 4, "population_size": 8, **kwargs}
    with pytest.raises(ConfigError, match=match):
        OpenAIES(**options)


def test_tell_messages_say_what_was_expected():
    es = OpenAIES(num_params=4, population_size=64, noise=NoiseTable(0, 1 << 20))
    with pytest.raises(AskTellOrderError, match="before ask"):
        es.tell(np.zeros(64))
    es.ask()
    with pytest.raises(ReturnsError, match=r"tell\(\) got 63 returns for 64 asked seeds \(generation 0\)"):
        es.tell(np.zeros(63))
    with pytest.raises(ReturnsError, match="1-D"):
        es.tell(np.zeros((64, 1)))
    with pytest.raises(ReturnsError, match="real numbers"):
        es.tell(["x"] * 64)


def test_config_builds_the_same_strategy():
    cfg = OpenAIESConfig(population_size=8, sigma=0.1, learning_rate=0.05)
    a = cfg.build(num_params=3, seed=1, noise=NoiseTable(0, 1 << 20))
    b = OpenAIES(3, 8, 0.1, 0.05, seed=1, noise=NoiseTable(0, 1 << 20))
    assert np.array_equal(a.ask(), b.ask())
    with pytest.raises(ValueError, match="population_size must be even"):
        OpenAIESConfig(population_size=9)
    with pytest.raises(ValueError, match="sigma"):
        OpenAIESConfig(sigma=float("nan"))
    with pytest.raises(ValueError, match="extra"):
        OpenAIESConfig(sgima=0.1)
