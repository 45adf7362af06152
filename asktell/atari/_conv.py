"""Convolutions of the Atari network as stacked matrix products, batched over candidates.

A convolution folds its input space-to-depth by the stride (8x8/4 becomes 2x2/1 over 64
channels), multiplies all kernel taps by the folded grid at once with one stacked
``np.matmul`` (numpy runs one BLAS ``gemm`` per candidate) and sums the taps' shifted outputs
(:func:`conv2d`). This does the work of an im2col convolution without copying the
overlapping patches, and a candidate's outputs are bitwise the same alone and in any batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asktell.errors import ConfigError

__all__ = [
    "conv_output_shape",
    "conv2d",
    "conv_weights",
    "fold_factor",
    "geometry",
    "shift_add",
    "space_to_depth",
]


def conv_output_shape(
    obs_shape: Sequence[int], conv_layers: Sequence[Sequence[int]]
) -> list[tuple[int, int, int]]:
    """``(channels, height, width)`` after each conv layer (valid padding).

    Raises:
        ConfigError: when the image is too small for a layer's kernel.
    """
    c, h, w = (int(v) for v in obs_shape)
    shapes = []
    for i, (out, k, s) in enumerate(conv_layers):
        if h < k or w < k:
            raise ConfigError(
                f"AtariPolicy conv layer {i} (kernel {k}, stride {s}) needs an input of at least "
                f"{k}x{k}; it gets {h}x{w} from observations of shape {tuple(obs_shape)} (use a "
                "larger screen_size or smaller conv_layers)"
            )
        c, h, w = int(out), (h - k) // s + 1, (w - k) // s + 1
        shapes.append((c, h, w))
    return shapes


def fold_factor(kernel: int, stride: int) -> int:
    """Space-to-depth factor of a conv layer: its stride when it divides the kernel."""
    return stride if kernel % stride == 0 else 1


def geometry(kernel: int, stride: int, h: int, w: int) -> tuple[int, int, int, int, int, int, int]:
    """``(f, m, step, ho, wo, hs, ws)``: fold factor, folded kernel, folded stride, output
    size and the folded grid the output needs."""
    f = fold_factor(kernel, stride)
    m, step = kernel // f, stride // f
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    return f, m, step, ho, wo, (ho - 1) * step + m, (wo - 1) * step + m


def space_to_depth(x: np.ndarray, kernel: int, stride: int, batch_major: bool = True) -> np.ndarray:
    """The input of a conv layer folded by its stride.

    Folding by the stride ``f`` turns a ``k x k`` stride-``f`` convolution into an ``m x m``
    stride-1 one (``m = k / f``) over ``f*f*C`` channels: 8x8/4 becomes 2x2 over 64 channels
    for the first Atari layer. Rows and columns the output does not need are cropped.

    Args:
        x: ``(n, C, H, W)`` (``batch_major``) or ``(C, n, H, W)``.
        batch_major: the layout of ``x`` and of the result.

    Returns:
        ``(n, f*f*C, hs*ws)``, or ``(f*f*C, n*hs*ws)`` when not ``batch_major``; the depth
        in ``(C, dy, dx)`` order (original row ``f*i + dy``, column ``f*j + dx``).
    """
    if batch_major:
        n, c, h, w = x.shape
    else:
        c, n, h, w = x.shape
    f, _, _, _, _, hs, ws = geometry(kernel, stride, h, w)
    x = x[:, :, : hs * f, : ws * f]
    if batch_major:
        grid = x.reshape(n, c, hs, f, ws, f).transpose(0, 1, 3, 5, 2, 4)  # n, C, dy, dx, i, j
        return np.ascontiguousarray(grid).reshape(n, c * f * f, hs * ws)
    grid = x.reshape(c, n, hs, f, ws, f).transpose(0, 3, 5, 1, 2, 4)  # C, dy, dx, n, i, j
    return np.ascontiguousarray(grid).reshape(c * f * f, n * hs * ws)


def conv_weights(w: np.ndarray, stride: int) -> np.ndarray:
    """Conv weights ``(out, C, k, k)`` as the ``(m*m*out, f*f*C)`` matrix that multiplies
    :func:`space_to_depth`'s grid: row block ``(a, b)`` holds the folded kernel tap
    ``(a, b)`` (original taps ``(a*f + dy, b*f + dx)``)."""
    out, c, k, _ = w.shape
    f = fold_factor(k, stride)
    m = k // f
    w = w.reshape(out, c, m, f, m, f).transpose(2, 4, 0, 1, 3, 5)  # a, b, out, C, dy, dx
    return w.reshape(m * m * out, c * f * f)


def shift_add(y: np.ndarray, kernel: int, stride: int, ho: int, wo: int) -> np.ndarray:
    """Sum the taps of ``y`` ``(B, m, m, X, hs, ws)`` (every tap's contribution at every
    folded grid position), each shifted by its offset: the convolution ``(B, X, ho, wo)``.
    The taps are added in a fixed order."""
    f = fold_factor(kernel, stride)
    m, step = kernel // f, stride // f
    rows, cols = (ho - 1) * step + 1, (wo - 1) * step + 1
    z = y[:, 0, 0, :, :rows:step, :cols:step].copy()
    for a in range(m):
        for b in range(m):
            if a or b:
                z += y[:, a, b, :, a : a + rows : step, b : b + cols : step]
    return z


def conv2d(x: np.ndarray, weights: np.ndarray, kernel: int, stride: int, out: int) -> np.ndarray:
    """A valid convolution of ``x`` ``(n, C, H, W)`` with per-row :func:`conv_weights`
    ``(n, m*m*out, f*f*C)``: ``(n, out, ho, wo)``.

    One stacked matrix product (numpy runs one BLAS ``gemm`` per row, so a row's result does
    not depend on the others) gives every tap at every folded position, then
    :func:`shift_add`. This does the work of an im2col convolution without copying the
    overlapping patches, which for 8x8/4 hold 3.6 times the image.
    """
    n, _, h, w = x.shape
    f, m, _, ho, wo, hs, ws = geometry(kernel, stride, h, w)
    grid = space_to_depth(x, kernel, stride)
    if grid.dtype != weights.dtype:  # uint8 pixels: converted after the (smaller) fold
        grid = grid.astype(weights.dtype)
    y = np.matmul(weights, grid)  # (n, m*m*out, hs*ws)
    return shift_add(y.reshape(n, m, m, out, hs, ws), kernel, stride, ho, wo)
