"""Numpy policies that evaluate a whole batch of parameter vectors at once.

A policy maps observations to actions for ``n`` candidates in one call: each candidate has
its own weights, stacked along a leading batch axis, and every layer is one stacked
matrix-vector product (``np.matmul`` of ``(n, out, in)`` by ``(n, in, 1)``). numpy runs such
a product as one BLAS ``gemv`` per row, so a row's arithmetic is the same whether it rides
alone or among others: a candidate's actions, and hence its return, do not depend on the
batch it was evaluated in. That matters because MuJoCo is chaotic: a last-bit difference in
one action (as a batched ``einsum`` gives against ``W @ obs``) was measured to turn one
HalfCheetah return from -264 into -424. ``tests/test_gym_policies.py`` checks the property.

The policies follow the OpenAI ES implementation (Salimans et al. 2017): a tanh MLP (2x64
for MuJoCo), weights initialised with normalised columns (``normc``, 0.01 for the output
layer), Box actions either scaled to the action bounds or discretised into bins per
dimension (as the paper did for Hopper and Swimmer), Discrete actions by argmax.

Parameter layout, per layer in order: the ``(out, in)`` weight matrix row-major, then the
``out`` biases (when ``bias``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from asktell.errors import ConfigError

__all__ = [
    "ActionSpec",
    "ObservationSpec",
    "MLPPolicy",
    "LinearPolicy",
    "batched_matvec",
    "ACTION_MODES",
    "ACTIVATIONS",
]

#: How a Box action space is filled: ``tanh`` squashes each output into the bounds,
#: ``clip`` clips the raw output to the bounds, ``bins`` discretises each dimension.
ACTION_MODES = ("tanh", "clip", "bins")


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


ACTIVATIONS = {"tanh": _tanh, "relu": _relu}


def batched_matvec(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y[i] = W[i] @ x[i]`` for stacked ``W`` ``(n, out, in)`` and ``x`` ``(n, in)``.

    One BLAS matrix-vector product per row (numpy's stacked ``matmul``), so row ``i`` of the
    result is bitwise the same for any ``n`` and any position of the row in the batch.
    """
    return np.matmul(W, x[:, :, None])[:, :, 0]


@dataclasses.dataclass(frozen=True, eq=False)
class ObservationSpec:
    """What a policy needs to know about the observation space (picklable, no gymnasium).

    ``kind`` is ``"box"`` (flattened to ``dim`` floats) or ``"discrete"`` (one-hot of size
    ``dim``).
    """

    kind: str
    dim: int
    shape: tuple[int, ...]
    #: Observations can never be NaN or infinite (integer pixels): the vectorised
    #: evaluator then skips its per-step finiteness check of the whole batch.
    always_finite: ClassVar[bool] = False

    @classmethod
    def from_space(cls, space: Any, env_id: str = "") -> ObservationSpec:
        name = type(space).__name__
        if name == "Box":
            shape = tuple(int(s) for s in space.shape)
            return cls("box", int(np.prod(shape, dtype=np.int64)), shape)
        if name == "Discrete":
            return cls("discrete", int(space.n), ())
        raise ConfigError(
            f"GymTask supports Box and Discrete observation spaces; {env_id or 'the env'} has "
            f"{space!r} (flatten it with gymnasium.wrappers.FlattenObservation in a registered "
            "env to use it)"
        )

    def to_array(self, obs: Any, n: int) -> np.ndarray:
        """A batch of ``n`` observations as float64 ``(n, dim)`` (a new array)."""
        if self.kind == "discrete":
            out = np.zeros((n, self.dim))
            out[np.arange(n), np.asarray(obs, dtype=np.int64).reshape(n)] = 1.0
            return out
        return np.array(obs, dtype=np.float64).reshape(n, self.dim)


@dataclasses.dataclass(frozen=True, eq=False)
class ActionSpec:
    """How policy outputs become actions of one Gymnasium action space (picklable).

    Attributes:
        kind: ``"discrete"`` (argmax over ``n`` outputs) or ``"box"``.
        mode: for Box: one of :data:`ACTION_MODES`.
        n: number of discrete actions.
        low, high: float64 bounds of a Box, flattened.
        shape: shape of one Box action.
        dtype: numpy dtype name of the action space (actions are cast to it).
        bins: bins per dimension in ``bins`` mode.
    """

    kind: str
    mode: str = "tanh"
    n: int = 0
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    bins: int = 0

    @classmethod
    def from_space(
        cls, space: Any, mode: str = "tanh", bins: int = 10, env_id: str = ""
    ) -> ActionSpec:
        name = type(space).__name__
        where = env_id or "the env"
        if name == "Discrete":
            if int(getattr(space, "start", 0)) != 0:
                raise ConfigError(
                    f"GymTask supports Discrete action spaces starting at 0; {where} has {space!r}"
                )
            if mode != "tanh":  # the default: a Discrete action is the outputs' argmax
                raise ConfigError(
                    f"GymTask 'action_mode'={mode!r} applies to Box (continuous) action spaces; "
                    f"{where} has {space!r}, whose action is the argmax of the policy's "
                    "outputs: leave action_mode (and action_bins) out"
                )
            return cls("discrete", "argmax", n=int(space.n), dtype=str(np.dtype(space.dtype)))
        if name != "Box":
            raise ConfigError(
                f"GymTask supports Box and Discrete action spaces; {where} has {space!r}"
            )
        if mode not in ACTION_MODES:
            raise ConfigError(f"GymTask 'action_mode' must be one of {ACTION_MODES}; got {mode!r}")
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        if mode in ("tanh", "bins") and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError(
                f"GymTask action_mode={mode!r} needs finite action bounds; {where} has "
                f"low={space.low}, high={space.high}; use action_mode='clip'"
            )
        if mode == "bins" and (isinstance(bins, bool) or int(bins) < 2):
            raise ConfigError(f"GymTask 'action_bins' must be an int >= 2; got {bins!r}")
        return cls(
            "box",
            mode,
            low=low,
            high=high,
            shape=tuple(int(s) for s in space.shape),
            dtype=str(np.dtype(space.dtype)),
            bins=int(bins) if mode == "bins" else 0,
        )

    @property
    def dim(self) -> int:
        return int(self.low.size) if self.kind == "box" else 1

    @property
    def num_outputs(self) -> int:
        """Width of the policy's last layer."""
        if self.kind == "discrete":
            return self.n
        return self.dim * self.bins if self.mode == "bins" else self.dim

    # Cached: ``to_actions`` runs every step of every rollout.
    @functools.cached_property
    def _symmetric(self) -> bool:
        return bool(np.array_equal(self.low, -self.high))

    @functools.cached_property
    def _unit(self) -> bool:
        return bool(np.all(self.high == 1.0))

    def neutral(self) -> np.ndarray:
        """A harmless action (0, or 0 clipped into the bounds) for slots with no candidate."""
        if self.kind == "discrete":
            return np.zeros((), dtype=self.dtype)
        return np.clip(0.0, self.low, self.high).astype(self.dtype).reshape(self.shape)

    def to_actions(self, out: np.ndarray) -> np.ndarray:
        """Actions for a batch of policy outputs ``(n, num_outputs)``: ``(n, *shape)``."""
        n = out.shape[0]
        if self.kind == "discrete":
            return np.argmax(out, axis=1).astype(self.dtype)
        if self.mode == "bins":
            idx = np.argmax(out.reshape(n, self.dim, self.bins), axis=2)
            a = self.low + idx * ((self.high - self.low) / (self.bins - 1))
        elif self.mode == "tanh":
            a = np.tanh(out, out=out)
            if self._symmetric:
                # Bounds [-h, h]: tanh * h (and nothing more for the usual [-1, 1]).
                if not self._unit:
                    a *= self.high
            else:
                a += 1.0
                a *= 0.5 * (self.high - self.low)
                a += self.low
        else:
            a = np.clip(out, self.low, self.high)
        return a.astype(self.dtype, copy=False).reshape((n, *self.shape))


class MLPPolicy:
    """A feed-forward network evaluated for many parameter vectors at once.

    Args:
        obs_dim: length of the (flattened) observation.
        action: how outputs become actions (:class:`ActionSpec`).
        hidden_sizes: widths of the hidden layers; ``(64, 64)`` is the paper's MuJoCo net,
            ``()`` a linear policy.
        activation: ``"tanh"`` (default, as in the paper) or ``"relu"``.
        bias: whether every layer has biases.
        dtype: ``"float32"`` (default, as the paper's TensorFlow policies; half the memory
            traffic of float64, which dominates once many candidates' weights are in flight)
            or ``"float64"``. Parameters are rounded to it when loaded.

    Example:
        >>> import numpy as np
        >>> act = ActionSpec("discrete", "argmax", n=2, dtype="int64")
        >>> policy = MLPPolicy(4, act, hidden_sizes=(8,))
        >>> weights = policy.allocate(3)
        >>> policy.load(weights, slice(0, 3), np.zeros((3, policy.num_params)))
        >>> policy.act(weights, np.ones((3, 4))).shape
        (3,)
    """

    def __init__(
        self,
        obs_dim: int,
        action: ActionSpec,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        bias: bool = True,
        dtype: str = "float32",
    ):
        if isinstance(obs_dim, bool) or not isinstance(obs_dim, (int, np.integer)) or obs_dim < 1:
            raise ConfigError(f"{type(self).__name__} 'obs_dim' must be an int >= 1; got {obs_dim!r}")
        sizes = tuple(hidden_sizes)
        for h in sizes:
            if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
                raise ConfigError(
                    f"{type(self).__name__} 'hidden_sizes' must be ints >= 1; got {list(sizes)}"
                )
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"{type(self).__name__} 'activation' must be one of {tuple(ACTIVATIONS)}; "
                f"got {activation!r}"
            )
        if dtype not in ("float32", "float64"):
            raise ConfigError(
                f"{type(self).__name__} 'dtype' must be 'float32' or 'float64'; got {dtype!r}"
            )
        self.dtype = np.dtype(dtype)
        self.obs_dim = int(obs_dim)
        self.action = action
        self.hidden_sizes = tuple(int(h) for h in sizes)
        self.activation = activation
        self.bias = bool(bias)
        widths = (self.obs_dim, *self.hidden_sizes, action.num_outputs)
        #: ``(out, in)`` of each layer.
        self.layer_shapes = [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
        offsets = []
        pos = 0
        for out, inp in self.layer_shapes:
            w = (pos, pos + out * inp)
            pos += out * inp
            b = (pos, pos + out) if self.bias else None
            pos += out if self.bias else 0
            offsets.append((w, b))
        self._offsets = offsets
        self.num_params = pos

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(obs_dim={self.obs_dim}, hidden_sizes={self.hidden_sizes}, "
            f"activation={self.activation!r}, outputs={self.action.num_outputs}, "
            f"dtype={self.dtype.name}, num_params={self.num_params})"
        )

    # ------------------------------------------------------------------ weights
    def allocate(self, n: int) -> list[np.ndarray]:
        """Zeroed, contiguous weight buffers for ``n`` candidates: per layer ``W`` then ``b``."""
        buffers = []
        for out, inp in self.layer_shapes:
            buffers.append(np.zeros((n, out, inp), dtype=self.dtype))
            buffers.append(np.zeros((n, out), dtype=self.dtype) if self.bias else None)
        return buffers

    def load(self, buffers: list[np.ndarray], rows: Any, params: np.ndarray) -> None:
        """Copy candidates' flat ``params`` ``(k, num_params)`` into buffer rows ``rows``."""
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.num_params:
            raise ConfigError(
                f"{type(self).__name__} expects parameters of shape (k, {self.num_params}); "
                f"got {params.shape}"
            )
        k = params.shape[0]
        for li, ((out, inp), ((w0, w1), b)) in enumerate(zip(self.layer_shapes, self._offsets)):
            buffers[2 * li][rows] = params[:, w0:w1].reshape(k, out, inp)
            if b is not None:
                buffers[2 * li + 1][rows] = params[:, b[0] : b[1]]

    def outputs(self, buffers: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(n, num_outputs)`` for inputs ``x`` ``(n, obs_dim)``, in ``dtype``."""
        act = ACTIVATIONS[self.activation]
        h = x.astype(self.dtype, copy=False)
        last = len(self.layer_shapes) - 1
        for li in range(last + 1):
            h = batched_matvec(buffers[2 * li], h)
            b = buffers[2 * li + 1]
            if b is not None:
                h += b
            if li < last:
                h = act(h)
        return h

    def act(self, buffers: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Environment actions for a batch of (normalised) observations."""
        return self.action.to_actions(self.outputs(buffers, x))

    def init_params(self, seed: int = 0) -> np.ndarray:
        """A starting point as in the OpenAI code: ``normc`` weights (each unit's incoming
        weights have norm 1, 0.01 for the output layer), zero biases."""
        rng = np.random.default_rng(seed)
        params = np.zeros(self.num_params)
        last = len(self.layer_shapes) - 1
        for li, ((out, inp), ((w0, w1), _)) in enumerate(zip(self.layer_shapes, self._offsets)):
            scale = 0.01 if li == last else 1.0
            w = rng.standard_normal((out, inp))
            w *= scale / np.sqrt(np.square(w).sum(axis=1, keepdims=True))
            params[w0:w1] = w.reshape(-1)
        return params


class LinearPolicy(MLPPolicy):
    """A linear policy ``out = W obs + b`` (the one ARS uses, and enough for CartPole).

    Args:
        obs_dim: length of the (flattened) observation.
        action: how outputs become actions (:class:`ActionSpec`).
        bias: whether the layer has biases.
    """

    def __init__(
        self, obs_dim: int, action: ActionSpec, bias: bool = True, dtype: str = "float32"
    ):
        super().__init__(obs_dim, action, hidden_sizes=(), bias=bias, dtype=dtype)

    def __repr__(self) -> str:
        return (
            f"LinearPolicy(obs_dim={self.obs_dim}, outputs={self.action.num_outputs}, "
            f"bias={self.bias}, dtype={self.dtype.name}, num_params={self.num_params})"
        )
