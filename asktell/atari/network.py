"""The Atari network's shape: the named networks, their options (declared once) and the
parameter layout of every layer (where each layer's weights, VBN scales and biases lie in a
candidate's flat parameter vector). :mod:`asktell.atari.policy` runs the network.

Parameter layout, per layer in order: the weights row-major (conv: ``(out, in, k, k)``;
dense: ``(out, in)``, the first dense layer's inputs being the last conv output flattened in
``(channel, height, width)`` order), then ``gamma`` and ``beta`` for a VBN layer, or the
biases otherwise. The output layer always has biases and no VBN. Pixels enter as 0..255 and
are scaled by ``1/255`` (folded into the first layer's weights).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Bool, Float, Int, PluginConfig

__all__ = ["NETWORKS", "NetworkOptions", "Layer", "layout"]

#: Named networks: conv layers as ``(out_channels, kernel, stride)`` and the dense width.
NETWORKS: dict[str, dict[str, Any]] = {
    "a3c": {"conv": ((16, 8, 4), (32, 4, 2)), "dense": 256},
    "nature": {"conv": ((32, 8, 4), (64, 4, 2), (64, 3, 1)), "dense": 512},
}


@dataclasses.dataclass(frozen=True)
class Layer:
    kind: str  # "conv" or "dense"
    out: int
    fan_in: int  # inputs per output unit (conv: in_channels * k * k)
    w_shape: tuple[int, ...]  # parameter layout of the weights
    kernel: int = 0
    stride: int = 0
    vbn: bool = False
    w: tuple[int, int] = (0, 0)  # offsets in the flat parameter vector
    gamma: tuple[int, int] | None = None
    beta: tuple[int, int] | None = None
    bias: tuple[int, int] | None = None


_Positive = Annotated[Int, Field(ge=1)]


class NetworkOptions(PluginConfig):
    """The network's options, declared once: :class:`AtariPolicy` validates its arguments
    through this model and the Atari task's run-file settings inherit its fields."""

    network: Literal["a3c", "nature"] = Field(
        "a3c",
        description="'a3c': conv16 8x8/4, conv32 4x4/2, dense 256 (the ES paper's network); "
        "'nature': conv32 8x8/4, conv64 4x4/2, conv64 3x3/1, dense 512 (DQN).",
    )
    conv_layers: list[tuple[_Positive, _Positive, _Positive]] | None = Field(
        None,
        description="Override the network's conv layers: [[out_channels, kernel, stride], ...].",
    )
    dense_size: Int | None = Field(
        None, ge=1, description="Override the width of the dense hidden layer."
    )
    vbn: Bool = Field(
        True,
        description="Virtual batch normalisation of the hidden layers with a fixed reference "
        "batch (Salimans et al. 2016/2017).",
    )
    vbn_epsilon: Float = Field(1e-5, gt=0, description="Added to the reference variance.")
    policy_dtype: Literal["float32", "float64"] = Field(
        "float32", description="Arithmetic of the network."
    )

    def convolutions(self) -> tuple[tuple[int, int, int], ...]:
        """The conv layers: the override, else the named network's."""
        layers = NETWORKS[self.network]["conv"] if self.conv_layers is None else self.conv_layers
        return tuple((int(o), int(k), int(s)) for o, k, s in layers)

    def dense_width(self) -> int:
        """The dense hidden layer's width: the override, else the named network's."""
        return int(NETWORKS[self.network]["dense"] if self.dense_size is None else self.dense_size)


def layout(
    obs_shape: tuple[int, int, int],
    convs: tuple[tuple[int, int, int], ...],
    conv_shapes: list[tuple[int, int, int]],
    dense_size: int,
    num_outputs: int,
    vbn: bool,
) -> tuple[list[Layer], int]:
    """The layers and where each one's parameters lie in the flat vector (see the module
    docstring's parameter layout); returns ``(layers, num_params)``."""
    layers: list[Layer] = []
    pos = 0
    in_channels = [obs_shape[0]] + [c[0] for c in conv_shapes[:-1]]
    plan = [("conv", out, c, k, s) for (out, k, s), c in zip(convs, in_channels)]
    flat = int(np.prod(conv_shapes[-1])) if convs else int(np.prod(obs_shape))
    plan.append(("dense", dense_size, flat, 0, 0))
    plan.append(("output", num_outputs, dense_size, 0, 0))
    for kind, out, in_c, k, s in plan:
        fan_in = in_c * k * k if kind == "conv" else in_c
        w_shape = (out, in_c, k, k) if kind == "conv" else (out, in_c)
        w = (pos, pos + out * fan_in)
        pos = w[1]
        normalised = vbn and kind != "output"
        if normalised:
            gamma, beta, bias = (pos, pos + out), (pos + out, pos + 2 * out), None
            pos += 2 * out
        else:
            gamma = beta = None
            bias = (pos, pos + out)
            pos += out
        layers.append(
            Layer("dense" if kind == "output" else kind, out, fan_in, w_shape, k, s,
                   normalised, w, gamma, beta, bias)
        )
    return layers, pos
