"""Observation normalisation as in the OpenAI ES implementation (Salimans et al. 2017).

Policies see ``clip((obs - mean) / std, -clip, clip)``, where ``mean`` and ``std`` are
running statistics of observations gathered from a deterministic subset of rollouts. The
statistics are kept as counts, sums and sums of squares (:class:`asktell.stats.RunningStat`),
so the contributions of many workers merge exactly; std has a floor so that a coordinate that
never moves is not blown up.

The statistics change only between generations: the task freezes them into the
generation's :attr:`Distribution.context <asktell.distribution.Distribution.context>`
(``obs_mean``, ``obs_std``), and every evaluator, in any process, normalises with exactly those
arrays. Without them in the context, observations pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ObsNormalizer"]


class ObsNormalizer:
    """A frozen normaliser: ``clip((obs - mean) / std, -clip, clip)``, or the identity.

    Args:
        mean, std: float64 arrays of the observation's length, or both ``None`` (identity).
        clip: bound of the normalised values (the paper uses 5).
    """

    __slots__ = ("mean", "std", "clip")

    def __init__(self, mean: np.ndarray | None, std: np.ndarray | None, clip: float = 5.0):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        self.clip = float(clip)

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any] | None, dim: int, clip: float = 5.0
    ) -> ObsNormalizer:
        """The normaliser frozen in a distribution's context (identity if absent)."""
        if not context or context.get("obs_mean") is None:
            return cls(None, None, clip)
        mean = np.asarray(context["obs_mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(context["obs_std"], dtype=np.float64).reshape(-1)
        if mean.shape != (dim,) or std.shape != (dim,):
            from asktell.errors import ConfigError

            raise ConfigError(
                f"distribution.context obs_mean/obs_std must have the observation's length {dim}; "
                f"got {mean.shape} and {std.shape}"
            )
        return cls(mean, std, clip)

    @property
    def active(self) -> bool:
        return self.mean is not None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalise a float64 batch ``(n, dim)`` in place and return it."""
        if self.mean is None:
            return x
        x -= self.mean
        x /= self.std
        return np.clip(x, -self.clip, self.clip, out=x)
