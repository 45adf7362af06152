"""``AtariPolicy``: the DeepMind convolutional network, batched over candidates, with
virtual batch normalisation.

Networks (``network=``):

* ``"a3c"`` (default): conv 16 8x8/4 -> conv 32 4x4/2 -> dense 256 -> actions, the
  feed-forward network of Mnih et al. 2016 (A3C; first used in the 2013 DQN paper). It is the
  one Salimans et al. 2017 used for their Atari results ("the same preprocessing and
  feedforward CNN architecture used by Mnih et al. 2016"), and with about 0.68 M parameters
  its forward pass per frame costs less than the emulator does.
* ``"nature"``: conv 32 8x8/4 -> conv 64 4x4/2 -> conv 64 3x3/1 -> dense 512 -> actions, the
  network of Mnih et al. 2015 (DQN in Nature), about 1.7 M parameters.

Every hidden layer is followed by a ReLU; the output layer gives one value per action and
the action is their argmax.

Virtual batch normalisation (VBN; Salimans et al. 2016, "Improved Techniques for Training
GANs", as used by Salimans et al. 2017): every hidden layer's pre-activation ``z`` is
normalised with the mean and variance of that layer over a fixed *reference batch* of
observations pushed through the candidate's own network, then scaled and shifted by
learnable ``gamma`` and ``beta``:

    ``y = gamma * (z - mean_ref) / sqrt(var_ref + eps) + beta``

(conv layers: one mean/variance per channel, over the batch and all positions; dense layers:
one per unit). The statistics depend only on the candidate's parameters and the reference
batch, never on the observations of an episode, so they are computed once, when a candidate
is loaded, and folded into its weights: ``W' = W * s`` and ``b' = beta - mean_ref * s`` with
``s = gamma / sqrt(var_ref + eps)``. A step then costs exactly a plain forward pass.

Batched evaluation follows :mod:`asktell.gym.policies`: each candidate has its own weights
along a leading axis, and a candidate's outputs are bitwise the same alone and in any batch
(the convolutions: :mod:`asktell.atari._conv`; the parameter layout:
:mod:`asktell.atari.network`).

The named networks, their options and the parameter layout are in
:mod:`asktell.atari.network`; the convolution arithmetic in :mod:`asktell.atari._conv`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from asktell.errors import ConfigError
from asktell.gym.policies import ActionSpec, batched_matvec

from ._conv import (
    conv2d,
    conv_output_shape,
    conv_weights,
    fold_factor,
    geometry,
    shift_add,
    space_to_depth,
)
from .network import NETWORKS, Layer, NetworkOptions, layout

__all__ = [
    "AtariPolicy",
    "NetworkOptions",
    "NETWORKS",
    "conv_output_shape",
    "conv2d",
    "conv_weights",
    "reference_digest",
    "shift_add",
    "space_to_depth",
]


def reference_digest(reference: np.ndarray) -> int:
    """A CRC-32 of a reference batch (its shape and bytes): small enough for a context."""
    reference = np.ascontiguousarray(reference)
    head = repr((reference.shape, reference.dtype.str)).encode()
    return zlib.crc32(reference.tobytes(), zlib.crc32(head))



class AtariPolicy:
    """The DeepMind Atari network for many parameter vectors at once, optionally with VBN.

    It has the interface of :class:`asktell.gym.MLPPolicy` (``allocate``, ``load``,
    ``outputs``, ``act``, ``init_params``, ``num_params``, ``obs_dim``), so
    :class:`~asktell.gym.GymTask` and the vectorised evaluator drive it unchanged.

    Args:
        obs_shape: ``(frames, height, width)`` of one observation (pixels 0..255).
        action: a discrete :class:`~asktell.gym.ActionSpec` (argmax over the outputs).
        network: ``"a3c"`` (default; the ES paper's network) or ``"nature"``.
        conv_layers: replaces the network's conv layers: ``[(out_channels, kernel, stride),
            ...]`` (small networks for tests and studies).
        dense_size: replaces the width of the dense hidden layer.
        vbn: virtual batch normalisation of every hidden layer (needs a reference batch,
            :meth:`set_reference`, before candidates are loaded).
        vbn_epsilon: added to the reference variance before the square root.
        dtype: ``"float32"`` (default) or ``"float64"`` arithmetic.

    Example:
        >>> import numpy as np
        >>> act = ActionSpec("discrete", "argmax", n=3, dtype="int64")
        >>> policy = AtariPolicy((2, 12, 12), act, conv_layers=[(4, 4, 2)], dense_size=8)
        >>> rng = np.random.default_rng(0)
        >>> policy.set_reference(rng.integers(0, 256, (16, 2, 12, 12), dtype=np.uint8))
        >>> weights = policy.allocate(2)
        >>> params = np.stack([policy.init_params(0), policy.init_params(1)])
        >>> policy.load(weights, slice(0, 2), params)
        >>> policy.act(weights, rng.uniform(0, 255, (2, 2 * 12 * 12))).shape
        (2,)
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        action: ActionSpec,
        network: str = "a3c",
        *,
        conv_layers: Sequence[Sequence[int]] | None = None,
        dense_size: int | None = None,
        vbn: bool = True,
        vbn_epsilon: float = 1e-5,
        dtype: str = "float32",
    ):
        name = type(self).__name__
        obs_shape = tuple(int(v) for v in obs_shape)
        if len(obs_shape) != 3 or min(obs_shape) < 1:
            raise ConfigError(
                f"{name} 'obs_shape' must be (frames, height, width) of positive ints; got "
                f"{obs_shape}"
            )
        if action.kind != "discrete":
            raise ConfigError(f"{name} needs a discrete action space; got a {action.kind!r} one")
        options = NetworkOptions.validate_options(
            name,
            {
                "network": network,
                "conv_layers": conv_layers,
                "dense_size": dense_size,
                "vbn": vbn,
                "vbn_epsilon": vbn_epsilon,
                "policy_dtype": dtype,
            },
        )
        self.obs_shape = obs_shape
        self.obs_dim = int(np.prod(obs_shape))
        self.action = action
        self.network = options.network
        self.conv_layers = options.convolutions()
        self.dense_size = options.dense_width()
        self.vbn = options.vbn
        self.vbn_epsilon = options.vbn_epsilon
        self.dtype = np.dtype(options.policy_dtype)
        self.conv_shapes = conv_output_shape(obs_shape, self.conv_layers)
        self.layers, self.num_params = layout(
            obs_shape, self.conv_layers, self.conv_shapes, self.dense_size,
            action.num_outputs, self.vbn,
        )
        self.reference: np.ndarray | None = None
        self.reference_crc: int | None = None
        self._ref_grid: np.ndarray | None = None  # the folded reference (per process)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(obs_shape={self.obs_shape}, network={self.network!r}, "
            f"conv_layers={[list(c) for c in self.conv_layers]}, dense_size={self.dense_size}, "
            f"vbn={self.vbn}, actions={self.action.num_outputs}, dtype={self.dtype.name}, "
            f"num_params={self.num_params})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ref_grid"] = None  # a cache (tens of MB): rebuilt where it is needed
        return state

    # ------------------------------------------------------------------ reference batch
    def set_reference(self, reference: np.ndarray | None) -> None:
        """Use ``reference`` ``(N, frames, height, width)``, pixels 0..255, as the VBN
        reference batch (``None`` clears it).

        Raises:
            ConfigError: when its shape does not match the observations or N < 2.
        """
        if reference is None:
            self.reference = self.reference_crc = self._ref_grid = None
            return
        ref = np.asarray(reference)
        if ref.ndim != 4 or tuple(ref.shape[1:]) != self.obs_shape or ref.shape[0] < 2:
            raise ConfigError(
                f"{type(self).__name__} reference batch must have shape (N >= 2, "
                f"{', '.join(map(str, self.obs_shape))}) to match the observations; got "
                f"{tuple(ref.shape)}"
            )
        if not np.issubdtype(ref.dtype, np.number) or not np.isfinite(ref).all():
            raise ConfigError(
                f"{type(self).__name__} reference batch must hold finite pixel values; got "
                f"dtype {ref.dtype}"
            )
        if ref.dtype != np.uint8:
            if ref.min() < 0 or ref.max() > 255 or not np.array_equal(ref, np.round(ref)):
                raise ConfigError(
                    f"{type(self).__name__} reference batch must hold pixels 0..255; got values "
                    f"in [{ref.min()}, {ref.max()}]"
                )
            ref = ref.astype(np.uint8)
        ref = np.ascontiguousarray(ref)
        ref.flags.writeable = False
        self.reference = ref
        self.reference_crc = reference_digest(ref)
        self._ref_grid = None

    def _reference_input(self) -> np.ndarray:
        """The reference batch as the first layer sees it (cached): for a conv layer the
        folded grid ``(f*f*C, N*hs*ws)`` (channel-major: one matrix product per layer for
        the whole batch), for a dense one ``(N, C*H*W)``."""
        if self.reference is None:
            raise ConfigError(
                f"{type(self).__name__} has vbn=True but no reference batch; call "
                "set_reference() (AtariTask collects one from the run seed)"
            )
        if self._ref_grid is None:
            x = self.reference.astype(self.dtype)
            first = self.layers[0]
            if first.kind == "conv":
                cnhw = x.transpose(1, 0, 2, 3)
                self._ref_grid = space_to_depth(cnhw, first.kernel, first.stride, batch_major=False)
            else:
                self._ref_grid = x.reshape(x.shape[0], -1)
        return self._ref_grid

    # ------------------------------------------------------------------ weights
    def allocate(self, n: int) -> list[np.ndarray]:
        """Zeroed buffers for ``n`` candidates: per layer the weights in matmul layout
        (conv: :func:`conv_weights` ``(n, m*m*out, f*f*in)``; dense ``(n, out, in)``) and
        the biases ``(n, out)``."""
        buffers = []
        for layer in self.layers:
            if layer.kind == "conv":
                f = fold_factor(layer.kernel, layer.stride)
                m = layer.kernel // f
                shape = (n, m * m * layer.out, f * f * layer.w_shape[1])
                buffers.append(np.zeros(shape, dtype=self.dtype))
            else:
                buffers.append(np.zeros((n, layer.out, layer.fan_in), dtype=self.dtype))
            buffers.append(np.zeros((n, layer.out), dtype=self.dtype))
        return buffers

    def load(self, buffers: list[np.ndarray], rows: Any, params: np.ndarray) -> None:
        """Copy candidates' flat ``params`` ``(k, num_params)`` into buffer rows ``rows``,
        computing each one's VBN statistics on the reference batch and folding them in."""
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.num_params:
            raise ConfigError(
                f"{type(self).__name__} expects parameters of shape (k, {self.num_params}); "
                f"got {params.shape}"
            )
        k = params.shape[0]
        staged = [np.empty((k, *b.shape[1:]), dtype=self.dtype) for b in self.allocate(0)]
        for j in range(k):
            # One candidate at a time, with the same shapes whatever k is: the folded weights
            # are bitwise the same alone and in a batch.
            for i, array in enumerate(self._fold(params[j])[0]):
                staged[i][j] = array
        for buffer, values in zip(buffers, staged):
            buffer[rows] = values

    def _matmul_weights(self, layer: Layer, p: np.ndarray, first: bool) -> np.ndarray:
        w = p[layer.w[0] : layer.w[1]].reshape(layer.w_shape)
        if layer.kind == "conv":
            w = conv_weights(w, layer.stride)  # (m*m*out, f*f*in)
        if first:
            w = w * (1.0 / 255.0)
        return w

    def _fold(self, p: np.ndarray) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
        """One candidate's matmul-layout weights and biases with VBN folded in, and the
        reference statistics ``(mean, var)`` of each VBN layer (float64)."""
        out: list[np.ndarray] = []
        stats: list[tuple[np.ndarray, np.ndarray]] = []
        h_ref = self._reference_input() if self.vbn else None
        for li, layer in enumerate(self.layers):
            w = self._matmul_weights(layer, p, li == 0)
            if not layer.vbn:
                out += [w, p[layer.bias[0] : layer.bias[1]]]
                continue
            # The pre-activation on the reference batch, channels first: (out, N, ...).
            z = self._reference_preactivation(li, layer, w.astype(self.dtype), h_ref)
            mean, var = self._moments(z)
            stats.append((mean, var))
            gamma = p[layer.gamma[0] : layer.gamma[1]]
            beta = p[layer.beta[0] : layer.beta[1]]
            scale = gamma / np.sqrt(var + self.vbn_epsilon)
            bias = beta - mean * scale
            # conv rows are (tap, out) blocks: scale every tap's output channel
            taps = w.shape[0] // layer.out
            out += [w * np.tile(scale, taps)[:, None], bias]
            # The next layer's reference input: this layer normalised, through the ReLU.
            shape = (-1,) + (1,) * (z.ndim - 1)
            h = z * scale.astype(self.dtype).reshape(shape)
            h += bias.astype(self.dtype).reshape(shape)
            h_ref = np.maximum(h, 0.0, out=h)
            if layer.kind == "dense":
                h_ref = h_ref.T  # back to (N, out) for a following dense layer
        return out, stats

    def _reference_preactivation(
        self, li: int, layer: Layer, w: np.ndarray, h_ref: np.ndarray
    ) -> np.ndarray:
        """Layer ``li``'s pre-activation on the reference batch, channels first: conv
        ``(out, N, ho, wo)``, dense ``(out, N)``. ``h_ref`` is the previous layer's
        reference output: ``(C, N, H, W)`` after a conv layer, ``(N, in)`` after a dense
        one (or the cached input for the first layer)."""
        n_ref = self.reference.shape[0]
        if layer.kind == "conv":
            if li == 0:
                grid = h_ref
                h, wd = self.obs_shape[1:]
            else:
                grid = space_to_depth(h_ref, layer.kernel, layer.stride, batch_major=False)
                h, wd = h_ref.shape[2:]
            f, m, _, ho, wo, hs, ws = geometry(layer.kernel, layer.stride, h, wd)
            y = (w @ grid).reshape(1, m, m, layer.out * n_ref, hs, ws)
            return shift_add(y, layer.kernel, layer.stride, ho, wo).reshape(layer.out, n_ref, ho, wo)
        if h_ref.ndim == 4:  # after a conv layer: flatten each frame in (C, H, W) order
            h_ref = h_ref.transpose(1, 0, 2, 3).reshape(n_ref, -1)
        return w @ h_ref.T

    @staticmethod
    def _moments(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (first axis) mean and variance over everything else (two passes,
        accumulated in float64 without a float64 copy of ``z``)."""
        z = z.reshape(z.shape[0], -1)
        mean = z.mean(axis=1, dtype=np.float64)
        centred = z - mean.astype(z.dtype)[:, None]
        var = np.square(centred, out=centred).mean(axis=1, dtype=np.float64)
        # The centring used the mean rounded to z's dtype: correct for that offset.
        shift = mean - mean.astype(z.dtype).astype(np.float64)
        return mean, np.maximum(var - shift * shift, 0.0)

    def reference_statistics(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Mean and variance of each VBN layer's pre-activation on the reference batch, for
        one candidate ``params`` ``(num_params,)``: what :meth:`load` normalises with."""
        p = np.asarray(params, dtype=np.float64).reshape(-1)
        if p.size != self.num_params:
            raise ConfigError(
                f"{type(self).__name__} expects {self.num_params} parameters; got {p.size}"
            )
        return self._fold(p)[1] if self.vbn else []

    # ------------------------------------------------------------------ forward
    #: Candidates per block of the forward pass: a larger batch is cut into blocks so that
    #: a block's conv intermediates stay in a core's L2 cache (at 32 candidates the first
    #: layer's alone are 3.6 MB and the forward costs about 10% more per candidate). Every
    #: row's arithmetic is its own, so the blocks change no result.
    block = 16

    def outputs(self, buffers: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Action values ``(n, actions)`` for observations ``x`` ``(n, obs_dim)`` (0..255)."""
        n = x.shape[0]
        if n > self.block:
            parts = [
                self.outputs([b[i : i + self.block] for b in buffers], x[i : i + self.block])
                for i in range(0, n, self.block)
            ]
            return np.concatenate(parts)
        h = np.asarray(x)
        if h.dtype != np.uint8 or self.layers[0].kind != "conv":
            h = h.astype(self.dtype, copy=False)  # uint8 pixels are converted in conv2d
        h = h.reshape(n, *self.obs_shape)
        last = len(self.layers) - 1
        for li, layer in enumerate(self.layers):
            w, b = buffers[2 * li], buffers[2 * li + 1]
            if layer.kind == "conv":
                z = conv2d(h, w, layer.kernel, layer.stride, layer.out)
                z += b[:, :, None, None]
                h = np.maximum(z, 0.0, out=z)
            else:
                z = batched_matvec(w, h.reshape(n, -1))
                z += b
                h = z if li == last else np.maximum(z, 0.0, out=z)
        return h

    def act(self, buffers: list[np.ndarray], x: np.ndarray) -> np.ndarray:
        """Action indices ``(n,)`` for a batch of observations."""
        return self.action.to_actions(self.outputs(buffers, x))

    def init_params(self, seed: int = 0) -> np.ndarray:
        """A starting point: every unit's incoming weights a random direction of norm 1
        (``normc``, as the OpenAI ES code; 0.01 for the output layer), ``gamma = 1``,
        ``beta = 0`` and zero biases."""
        rng = np.random.default_rng(seed)
        params = np.zeros(self.num_params)
        last = len(self.layers) - 1
        for li, layer in enumerate(self.layers):
            w = rng.standard_normal((layer.out, layer.fan_in))
            w *= (0.01 if li == last else 1.0) / np.sqrt(np.square(w).sum(axis=1, keepdims=True))
            params[layer.w[0] : layer.w[1]] = w.reshape(-1)
            if layer.gamma is not None:
                params[layer.gamma[0] : layer.gamma[1]] = 1.0
        return params
