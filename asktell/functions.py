"""Standard test functions (losses to minimise), vectorised over rows.

Each takes ``X`` of shape ``(n, d)`` (or ``(d,)``) and returns losses of shape ``(n,)``
(or a float). Their minimum is 0. Used by tests, benchmarks and ``FunctionTask`` presets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["sphere", "ellipsoid", "rosenbrock", "rastrigin", "ackley", "FUNCTIONS"]


def _rows(X: np.ndarray) -> tuple[np.ndarray, bool]:
    X = np.asarray(X, dtype=np.float64)
    return (X[None], True) if X.ndim == 1 else (X, False)


def _out(v: np.ndarray, single: bool):
    return float(v[0]) if single else v


def sphere(X: np.ndarray):
    """``sum x_i^2``."""
    X, single = _rows(X)
    return _out(np.einsum("ij,ij->i", X, X), single)


def ellipsoid(X: np.ndarray):
    """``sum 10^(6 (i-1)/(d-1)) x_i^2``: condition number 1e6."""
    X, single = _rows(X)
    d = X.shape[1]
    w = 10.0 ** (6.0 * np.arange(d) / max(d - 1, 1))
    return _out((X * X) @ w, single)


def rosenbrock(X: np.ndarray):
    """``sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``; minimum at all ones."""
    X, single = _rows(X)
    a, b = X[:, :-1], X[:, 1:]
    return _out(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2, axis=1), single)


def rastrigin(X: np.ndarray):
    """``10 d + sum x_i^2 - 10 cos(2 pi x_i)``: highly multimodal."""
    X, single = _rows(X)
    return _out(10.0 * X.shape[1] + np.sum(X * X - 10.0 * np.cos(2 * np.pi * X), axis=1), single)


def ackley(X: np.ndarray):
    """Ackley's function: a nearly flat outer region around a deep central hole."""
    X, single = _rows(X)
    d = X.shape[1]
    a = -20.0 * np.exp(-0.2 * np.sqrt(np.sum(X * X, axis=1) / d))
    b = -np.exp(np.sum(np.cos(2 * np.pi * X), axis=1) / d)
    return _out(a + b + 20.0 + np.e, single)


FUNCTIONS: dict[str, Callable] = {
    "sphere": sphere,
    "ellipsoid": ellipsoid,
    "rosenbrock": rosenbrock,
    "rastrigin": rastrigin,
    "ackley": ackley,
}
