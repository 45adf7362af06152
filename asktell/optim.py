"""First-order optimisers for the search centre, in the ascent convention.

Every optimiser takes the estimated gradient of the expected return (to be *increased*) and
returns the update to add to the centre: ``center += optimizer.step(gradient)``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import InstanceOf, WithJsonSchema

from asktell.errors import ConfigError

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "ClipUp", "OPTIMIZERS", "make_optimizer", "OptimizerChoice"]


def _positive(owner: str, name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{owner} '{name}' must be a number; got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner} '{name}' must be finite and {rule}; got {value!r}")
    return v


def _fraction(owner: str, name: str, value: float) -> float:
    v = _positive(owner, name, value, allow_zero=True)
    if not v < 1.0:
        raise ConfigError(f"{owner} '{name}' must lie in [0, 1); got {value!r}")
    return v


class Optimizer:
    """Base class: holds ``num_params``, ``learning_rate`` and the step count ``t``."""

    name = "optimizer"

    def __init__(self, num_params: int, learning_rate: float):
        self.num_params = int(num_params)
        self.learning_rate = _positive(type(self).__name__, "learning_rate", learning_rate)
        self.t = 0

    def step(self, gradient: np.ndarray) -> np.ndarray:
        """Update to add to the centre, given the ascent gradient."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])


class SGD(Optimizer):
    """Plain gradient ascent: ``update = learning_rate * g``."""

    name = "sgd"

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        return self.learning_rate * np.asarray(gradient, dtype=np.float64)


class Momentum(Optimizer):
    """SGD with momentum as in the OpenAI ES code: ``v = m v + (1 - m) g``; ``update = lr v``."""

    name = "momentum"

    def __init__(self, num_params: int, learning_rate: float, momentum: float = 0.9):
        super().__init__(num_params, learning_rate)
        self.momentum = _fraction("Momentum", "momentum", momentum)
        self.v = np.zeros(self.num_params)

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        self.v = self.momentum * self.v + (1.0 - self.momentum) * gradient
        return self.learning_rate * self.v

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "v": self.v.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.v = np.array(state["v"], dtype=np.float64)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with the paper's defaults (beta1 0.9, beta2 0.999, eps 1e-8)."""

    name = "adam"

    def __init__(
        self,
        num_params: int,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        super().__init__(num_params, learning_rate)
        self.beta1 = _fraction("Adam", "beta1", beta1)
        self.beta2 = _fraction("Adam", "beta2", beta2)
        self.epsilon = _positive("Adam", "epsilon", epsilon)
        self.m = np.zeros(self.num_params)
        self.v = np.zeros(self.num_params)

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        g = np.asarray(gradient, dtype=np.float64)
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * g
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * (g * g)
        a = self.learning_rate * math.sqrt(1.0 - self.beta2**self.t) / (1.0 - self.beta1**self.t)
        return a * self.m / (np.sqrt(self.v) + self.epsilon)

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m.copy(), "v": self.v.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.m = np.array(state["m"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)


class ClipUp(Optimizer):
    """ClipUp (Toklu et al. 2020, "ClipUp: A Simple and Powerful Optimizer for
    Distribution-based Policy Evolution"): normalised gradient, momentum, speed clipping.

    ``v = momentum * v + learning_rate * g / |g|``; ``v`` is clipped to norm ``max_speed``;
    ``update = v``. The paper recommends ``max_speed = 2 * learning_rate`` (the default).
    """

    name = "clipup"

    def __init__(
        self,
        num_params: int,
        learning_rate: float,
        momentum: float = 0.9,
        max_speed: float | None = None,
    ):
        super().__init__(num_params, learning_rate)
        self.momentum = _fraction("ClipUp", "momentum", momentum)
        self.max_speed = (
            2.0 * self.learning_rate
            if max_speed is None
            else _positive("ClipUp", "max_speed", max_speed)
        )
        self.v = np.zeros(self.num_params)

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        g = np.asarray(gradient, dtype=np.float64)
        norm = float(np.linalg.norm(g))
        step = g * (self.learning_rate / norm) if norm > 0 else np.zeros_like(g)
        v = self.momentum * self.v + step
        speed = float(np.linalg.norm(v))
        if speed > self.max_speed:
            v *= self.max_speed / speed
        self.v = v
        return v.copy()

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "v": self.v.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.v = np.array(state["v"], dtype=np.float64)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "adam": Adam,
    "clipup": ClipUp,
}


#: What a strategy's ``optimizer`` option accepts: a name from :data:`OPTIMIZERS`, or (from
#: Python only) an :class:`Optimizer` instance.
OptimizerChoice = Union[
    Literal["adam", "sgd", "momentum", "clipup"],
    Annotated[
        InstanceOf[Optimizer],
        WithJsonSchema({"description": "an asktell.optim.Optimizer instance (Python only)"}),
    ],
]


def make_optimizer(
    name: str | Optimizer, num_params: int, learning_rate: float, **options: Any
) -> Optimizer:
    """Build an optimiser by name (``sgd``, ``momentum``, ``adam``, ``clipup``) or pass one through."""
    if isinstance(name, Optimizer):
        return name
    cls = OPTIMIZERS.get(name)
    if cls is None:
        import difflib

        close = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown optimizer {name!r}{hint} (known: {', '.join(OPTIMIZERS)})")
    return cls(num_params, learning_rate, **options)
