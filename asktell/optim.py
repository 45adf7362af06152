"""First-order optimisers for the search centre, in the ascent convention.

Every optimiser takes the estimated gradient of the expected return (to be *increased*) and
returns the update to add to the centre: ``center += optimizer.step(gradient)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, InstanceOf, WithJsonSchema

from asktell.config_base import Float, Int, PluginConfig, collect_options, declare_options
from asktell.errors import ConfigError
from asktell.state_schema import Entry, check_state

__all__ = [
    "Optimizer",
    "SGD",
    "Momentum",
    "Adam",
    "ClipUp",
    "OPTIMIZERS",
    "make_optimizer",
    "OptimizerChoice",
    "OptimizerOptions",
    "MomentumOptions",
    "AdamOptions",
    "ClipUpOptions",
]


class OptimizerArgs(PluginConfig):
    """The arguments every optimiser takes (a strategy passes its own learning rate)."""

    num_params: Int = Field(ge=1, description="Dimension of the centre.")
    learning_rate: Float = Field(gt=0, description="Step size.")


class OptimizerOptions(PluginConfig):
    """An optimiser's settings beyond its learning rate (a strategy's ``optimizer_options``);
    plain SGD has none."""


_F64 = np.dtype(np.float64)

_MOMENTUM = "Weight of the previous velocity in the new one, in [0, 1)."


class Optimizer:
    """Base class: holds ``num_params``, ``learning_rate`` and the step count ``t``.

    A subclass declares its settings in an :class:`OptimizerOptions` model (with
    ``declare_options``); the constructor validates them through it.
    """

    name = "optimizer"
    config_class: ClassVar[type[OptimizerOptions]] = OptimizerOptions

    def __init__(self, num_params: int, learning_rate: float, *args: Any, **options: Any):
        owner = type(self).__name__
        fixed = OptimizerArgs.validate_options(
            owner, {"num_params": num_params, "learning_rate": learning_rate}
        )
        self.num_params, self.learning_rate = fixed.num_params, fixed.learning_rate
        #: The validated settings (an instance of ``config_class``).
        self.options = self.config_class.validate_options(
            owner, collect_options(type(self), args, options)
        )
        self.t = 0

    def step(self, gradient: np.ndarray) -> np.ndarray:
        """Update to add to the centre, given the ascent gradient."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def state_schema(self) -> dict[str, Entry]:
        """The declared rules of :meth:`state_dict` (``n`` is ``num_params``)."""
        schema = {"t": Entry("int", low=0)}
        for key in self._vectors():
            schema[key] = Entry("array", shape=("n",))
        return schema

    def _vectors(self) -> tuple[str, ...]:
        """The float64 ``(num_params,)`` arrays of the state (restored as copies)."""
        return ()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: every entry is checked against :meth:`state_schema`
        first, and nothing is assigned unless all pass (a :class:`CheckpointError` names
        the key, the rule and the value)."""
        check_state(type(self).__name__, state, self.state_schema(), {"n": self.num_params})
        self._assign(state)

    def _assign(self, state: Mapping[str, Any]) -> None:
        """Assign a state already checked by :meth:`load_state_dict` (cannot fail)."""
        self.t = int(state["t"])
        for key in self._vectors():
            setattr(self, key, np.array(state[key], dtype=np.float64))


@declare_options(OptimizerOptions)
class SGD(Optimizer):
    """Plain gradient ascent: ``update = learning_rate * g``."""

    name = "sgd"

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        return self.learning_rate * np.asarray(gradient, dtype=np.float64)


class MomentumOptions(OptimizerOptions):
    """Settings of :class:`Momentum`."""

    momentum: Float = Field(0.9, ge=0, lt=1, description=_MOMENTUM)


@declare_options(MomentumOptions, positional=("momentum",))
class Momentum(Optimizer):
    """SGD with momentum as in the OpenAI ES code: ``v = m v + (1 - m) g``; ``update = lr v``."""

    name = "momentum"

    def __init__(self, num_params: int, learning_rate: float, *args: Any, **options: Any):
        super().__init__(num_params, learning_rate, *args, **options)
        self.momentum = self.options.momentum
        self.v = np.zeros(self.num_params)

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.t += 1
        self.v = self.momentum * self.v + (1.0 - self.momentum) * gradient
        return self.learning_rate * self.v

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "v": self.v.copy()}

    def _vectors(self) -> tuple[str, ...]:
        return ("v",)


class AdamOptions(OptimizerOptions):
    """Settings of :class:`Adam` (the paper's defaults)."""

    beta1: Float = Field(0.9, ge=0, lt=1, description="Decay of the first-moment estimate.")
    beta2: Float = Field(0.999, ge=0, lt=1, description="Decay of the second-moment estimate.")
    epsilon: Float = Field(
        1e-8, gt=0, description="Added to the root of the second moment (numerical safety)."
    )


@declare_options(AdamOptions, positional=("beta1", "beta2", "epsilon"))
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with the paper's defaults (beta1 0.9, beta2 0.999, eps 1e-8)."""

    name = "adam"

    def __init__(self, num_params: int, learning_rate: float, *args: Any, **options: Any):
        super().__init__(num_params, learning_rate, *args, **options)
        self.beta1 = self.options.beta1
        self.beta2 = self.options.beta2
        self.epsilon = self.options.epsilon
        self.m = np.zeros(self.num_params)
        self.v = np.zeros(self.num_params)
        self._scratch: np.ndarray | None = None

    #: ``(beta1, beta2, epsilon, arrays)``: the constants of the last step as 0-d float64
    #: arrays (numpy multiplies by those faster than by Python floats; the same products),
    #: rebuilt when an attribute is reassigned.
    _constants: tuple[Any, ...] | None = None

    def step(self, gradient: np.ndarray) -> np.ndarray:
        # m = beta1 m + (1 - beta1) g, v = beta2 v + (1 - beta2) g g and the update
        # a m / (sqrt(v) + eps), each element computed by the same operations in the same
        # order as the plain expressions (bitwise), but in place: m and v are the
        # optimiser's own arrays (state_dict hands out copies), and one scratch vector
        # serves every temporary, so a step allocates only the update it returns.
        self.t += 1
        t = self.t
        g = gradient
        if type(g) is not np.ndarray or g.dtype is not _F64:
            g = np.asarray(gradient, dtype=np.float64)
        m, v = self.m, self.v
        tmp = self._scratch
        if tmp is None or tmp.shape != m.shape:
            tmp = self._scratch = np.empty_like(m)
        beta1, beta2, epsilon = self.beta1, self.beta2, self.epsilon
        k = self._constants
        if k is None or k[0] is not beta1 or k[1] is not beta2 or k[2] is not epsilon:
            k = self._constants = (beta1, beta2, epsilon, *map(np.array, (
                beta1, 1.0 - beta1, beta2, 1.0 - beta2, epsilon, 0.0
            )))
        _, _, _, b1, one_minus_b1, b2, one_minus_b2, eps, a = k
        m *= b1
        np.multiply(g, one_minus_b1, tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, tmp)
        tmp *= one_minus_b2
        v += tmp
        a[()] = self.learning_rate * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        update = np.multiply(m, a)
        np.sqrt(v, tmp)
        tmp += eps
        update /= tmp
        return update

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "m": self.m.copy(), "v": self.v.copy()}

    def _vectors(self) -> tuple[str, ...]:
        return ("m", "v")

    def state_schema(self) -> dict[str, Entry]:
        # The second moment is a running mean of squares: a negative one is a damaged state.
        return {**super().state_schema(), "v": Entry("array", shape=("n",), low=0.0)}


class ClipUpOptions(OptimizerOptions):
    """Settings of :class:`ClipUp`."""

    momentum: Float = Field(0.9, ge=0, lt=1, description=_MOMENTUM)
    max_speed: Float | None = Field(
        None,
        gt=0,
        description="Largest norm of the velocity; default (null) 2 * learning_rate, the "
        "paper's recommendation.",
    )


@declare_options(ClipUpOptions, positional=("momentum", "max_speed"))
class ClipUp(Optimizer):
    """ClipUp (Toklu et al. 2020, "ClipUp: A Simple and Powerful Optimizer for
    Distribution-based Policy Evolution"): normalised gradient, momentum, speed clipping.

    ``v = momentum * v + learning_rate * g / |g|``; ``v`` is clipped to norm ``max_speed``;
    ``update = v``. The paper recommends ``max_speed = 2 * learning_rate`` (the default).
    """

    name = "clipup"

    def __init__(self, num_params: int, learning_rate: float, *args: Any, **options: Any):
        super().__init__(num_params, learning_rate, *args, **options)
        self.momentum = self.options.momentum
        max_speed = self.options.max_speed
        self.max_speed = 2.0 * self.learning_rate if max_speed is None else max_speed
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

    def _vectors(self) -> tuple[str, ...]:
        return ("v",)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "adam": Adam,
    "clipup": ClipUp,
}


#: What a strategy's ``optimizer`` option accepts: a name from :data:`OPTIMIZERS`, or (from
#: Python only) an :class:`Optimizer` instance.
OptimizerChoice = Union[
    Literal[tuple(OPTIMIZERS)],  # type: ignore[valid-type]
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
