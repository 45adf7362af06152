"""Injected points (``es.inject``) and the bounds penalty: the parts of ``ask``/``tell`` that
deal with candidates a strategy did not sample itself or that lie outside its box.
:class:`BaseStrategy` mixes it in; a strategy that uses injected points declares the
``inject`` capability.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from asktell.distribution import INJECT_BASE, Distribution
from asktell.errors import ConfigError

from ._common import real_vector, signed_rows

__all__ = ["InjectMixin"]


class InjectMixin:
    """``inject`` and the helpers a strategy's ``_update`` calls for injected points."""

    def inject(self, *points: Any) -> None:
        """Evaluate known points (a warm start, a previous best) in the next generations.

        Each point replaces one sampled candidate of the next ``ask`` (the first ones; more
        points than a population wait for the following generations) and takes part in the
        update like a sample, its step clipped in the distribution's own metric as pycma
        does. The points travel in the distribution (seeds ``INJECT_BASE + i``), so every
        evaluator and worker evaluates them. Only strategies with the ``inject`` capability
        (CMA-ES, sep-CMA-ES) accept them.
        """
        owner = type(self).__name__
        if "inject" not in self.capabilities:
            raise ConfigError(
                f"{owner} cannot use injected points: its update learns from noise rows "
                "(each a seed, some in mirrored pairs), not from arbitrary points; use "
                "CMAES or SepCMAES, or start from the point with x0"
            )
        rows = []
        for point in points:
            x = real_vector(point, f"{owner}.inject() point")
            if x.shape != (self.num_params,) or not np.all(np.isfinite(x)):
                raise ConfigError(
                    f"{owner}.inject() points must be {self.num_params} finite numbers; "
                    f"got shape {np.shape(point)}"
                )
            rows.append(x)
        if rows:
            self._inject_queue = np.concatenate([self._inject_queue, np.stack(rows)])
            if self._pending is None:
                self._changed()  # the next generation's distribution carries them

    def _next_injected(self) -> np.ndarray | None:
        """The injected points of this generation: those taken by the outstanding ask, or
        before it those the next ask will take (so a distribution read before ``ask``, as in
        ``es.distribution.decode(es.ask())``, already carries them)."""
        if self._pending is not None:
            return self._injected
        if self._inject_queue.shape[0]:
            return self._inject_queue[: self.population_size].copy()
        return None

    def _take_injected(self, seeds: np.ndarray) -> np.ndarray:
        k = min(self._inject_queue.shape[0], seeds.size)
        self._injected = self._inject_queue[:k].copy()
        self._inject_queue = self._inject_queue[k:]
        seeds = seeds.copy()
        seeds[:k] = INJECT_BASE + np.arange(k)
        return seeds

    def _unit_steps(self, seeds: np.ndarray, dist: Distribution) -> np.ndarray:
        """``z`` of each seed (``x = center + sigma * factor @ z``): ``sign * eps(key)`` for
        a sampled seed; for an injected point the solved step, its length clipped to
        ``sqrt(n) + 2n / (n + 2)`` (pycma's bound for injected solutions), so a far point
        cannot blow up the paths and the covariance."""
        index = dist.injected_index(seeds) if dist.injected is not None else None
        if index is None or np.all(index < 0):
            return signed_rows(self.noise, seeds, self.num_params)
        plain = index < 0
        z = np.empty((seeds.size, self.num_params))
        z[plain] = signed_rows(self.noise, seeds[plain], self.num_params)
        y = (dist.injected[index[~plain]] - dist.center) / dist.sigma  # type: ignore[index]
        if dist.factor is not None:
            y = np.linalg.solve(dist.factor, y.T).T
        n = self.num_params
        limit = math.sqrt(n) + 2.0 * n / (n + 2.0)
        norms = np.linalg.norm(y, axis=1)
        y *= np.minimum(1.0, limit / np.maximum(norms, 1e-300))[:, None]
        z[~plain] = y
        return z

    def _penalised(self, r: np.ndarray, seeds: np.ndarray | None = None) -> np.ndarray:
        """``r`` minus the bounds penalty of each pending candidate (``method='penalty'``),
        or of ``seeds`` (the told ones): the distance from its unrepaired sample to the box,
        scaled by the returns' spread."""
        raw = self.distribution.decode_unbounded(self._pending if seeds is None else seeds)
        step_variance = float(np.mean((raw - self._center) ** 2))
        return r - self.bounds.penalty(raw, r, step_variance)  # type: ignore[union-attr]
