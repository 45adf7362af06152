"""Distributed weighted noise sums: a strategy's gradient summed where the noise already is.

OpenAI-ES's update needs ``sum_j c_j eps(k_j)`` over the generation's noise rows: at
population 10,000 and 200,000 parameters that is 5,000 rows (a billion float32 reads) on
the driver, the serial part of a generation. Every Dask worker already holds the noise
table (it built it to evaluate), so :class:`DaskWeightedSum` cuts the ``(coefficients,
keys)`` sequence into ``parts`` contiguous parts, each worker sums its part with the very
:meth:`NoiseSource.weighted_sum <asktell.noise.NoiseSource.weighted_sum>` the driver would
run, and the driver adds the returned ``(num_params,)`` vectors in part order. What travels
is the keys and coefficients out (12 bytes a row) and one float64 vector a part back.

Determinism: the parts are cut by position and added in part order whichever worker
computed them, so for a fixed ``parts`` the result is the same bits on any cluster. Its last
bits differ from the local sum (each part restarts the local sum's float32 accumulation
groups, and the part sums are added in float64), as two float orders do.

Opt in from Python, on an OpenAI-ES strategy and a Dask client (for example the
:class:`~asktell.evaluators.DaskEvaluator`'s)::

    es.noise_sum = DaskWeightedSum(evaluator.client, parts=2)

This module imports nothing from Dask: it only calls the client it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from asktell.errors import ConfigError
from asktell.noise import NoiseSource

__all__ = ["DaskWeightedSum", "part_sum"]


def part_sum(noise: NoiseSource, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
    """One part's ``sum_i weights[i] * eps(keys[i])`` (runs on a worker; the noise source
    pickles small and reuses the worker's cached table)."""
    return noise.weighted_sum(weights, keys, dim)


class DaskWeightedSum:
    """A strategy's ``noise_sum`` hook that sums noise rows on Dask workers.

    Args:
        client: a ``distributed.Client`` (e.g. ``DaskEvaluator(...).client``).
        parts: how many parts the rows are cut into, one task each; the result's bits
            depend on it (and on nothing else), so fix it for reproducible runs. Default:
            the number of workers when the hook is built.
    """

    def __init__(self, client: Any, parts: int | None = None):
        if parts is None:
            parts = max(1, len(client.scheduler_info().get("workers", {})))
        if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
            raise ConfigError(f"DaskWeightedSum 'parts' must be an int >= 1; got {parts!r}")
        self.client = client
        self.parts = int(parts)

    def __repr__(self) -> str:
        return f"DaskWeightedSum(parts={self.parts})"

    def __call__(
        self, noise: NoiseSource, weights: np.ndarray, keys: np.ndarray, dim: int
    ) -> np.ndarray:
        """``sum_i weights[i] * eps(keys[i])`` as float64 ``(dim,)``: parts summed on the
        workers, added here in part order."""
        weights = np.asarray(weights, dtype=np.float64)
        keys = np.asarray(keys, dtype=np.int64)
        if weights.shape != keys.shape or keys.ndim != 1:
            raise ConfigError(
                f"DaskWeightedSum needs one weight per key; got weights {weights.shape} and "
                f"keys {keys.shape}"
            )
        cuts = [keys.size * i // self.parts for i in range(self.parts + 1)]
        futures = [
            self.client.submit(
                part_sum, noise, weights[a:b], keys[a:b], int(dim), pure=False
            )
            for a, b in zip(cuts[:-1], cuts[1:])
            if b > a
        ]
        total = np.zeros(dim)
        for part in self.client.gather(futures):
            total += part
        return total
