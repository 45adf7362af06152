import numpy as np
import pytest

from asktell import ConfigError
from asktell.optim import OPTIMIZERS, Adam, ClipUp, make_optimizer


def test_adam_first_step_is_learning_rate_times_sign():
    opt = Adam(3, learning_rate=0.1)
    step = opt.step(np.array([2.0, -0.5, 0.0]))
    np.testing.assert_allclose(step, [0.1, -0.1, 0.0], atol=1e-6)


def test_clipup_respects_max_speed_and_normalises():
    opt = ClipUp(4, learning_rate=0.5, momentum=0.9, max_speed=0.6)
    for _ in range(20):
        v = opt.step(np.array([1000.0, 0, 0, 0]))
        assert np.linalg.norm(v) <= 0.6 + 1e-12
    assert np.isclose(np.linalg.norm(v), 0.6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_climbs_a_quadratic_and_resumes(name):
    target = np.array([1.0, -2.0, 0.5])
    opt = make_optimizer(name, 3, 0.05)
    x = np.zeros(3)
    for i in range(400):
        if i == 200:
            state = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                     for k, v in opt.state_dict().items()}
            clone = make_optimizer(name, 3, 0.05)
            clone.load_state_dict(state)
            x_clone = x.copy()
        x = x + opt.step(target - x)
    for _ in range(200):
        x_clone = x_clone + clone.step(target - x_clone)
    assert np.linalg.norm(x - target) < 0.1
    assert np.array_equal(x, x_clone)


def test_bad_optimizer_values_name_the_argument():
    with pytest.raises(ConfigError, match="learning_rate: Input should be greater than 0; got -1.0"):
        make_optimizer("adam", 3, -1)
    with pytest.raises(ConfigError, match="beta1: Input should be less than 1; got 1.0"):
        Adam(3, 0.1, beta1=1.0)
    with pytest.raises(ConfigError, match="betta1: unknown key .*; did you mean 'beta1'"):
        Adam(3, 0.1, betta1=0.9)
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        make_optimizer("adma", 3, 0.1)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_signature_lists_its_declared_settings(name):
    import inspect

    from asktell.config_base import option_names

    cls = OPTIMIZERS[name]
    params = list(inspect.signature(cls).parameters)
    assert params == ["num_params", "learning_rate", *option_names(cls.config_class)]
