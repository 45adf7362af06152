"""Distributed tell: a strategy's noise sum computed where the noise already is.

OpenAI-ES's update needs ``sum_j c_j eps(k_j)`` over the generation's noise rows: at
population 10,000 and 200,000 parameters that is 5,000 rows (a billion float32 reads) on
the driver, the serial part of a generation. Every Dask worker already holds the noise
table (it built it to evaluate; in node mode the worker adopted the node's shared table),
so :class:`DaskWeightedSum` sums the parts of a parted sum (a strategy's
``gradient_parts``, :func:`asktell.noise.weighted_sum_in_parts`) one task each, every
worker with the very :meth:`NoiseSource.weighted_sum
<asktell.noise.NoiseSource.weighted_sum>` the driver would run, and the driver adds the
returned ``(num_params,)`` vectors in part order. What travels is the keys and
coefficients out (16 bytes a row) and one float64 vector a part back.

Determinism: the parts are cut by position (:func:`asktell.noise.part_bounds`) and added in
part order whichever worker computed them, so the result is bitwise
``weighted_sum_in_parts(noise, weights, keys, dim, parts)``, the sum a serial run of the
same config computes. A part whose task fails (its workers kept dying: ``KilledWorker``),
or is not back within ``timeout``, or a client that is no longer running, is summed on the
driver instead, with the same bits, and a ``RuntimeWarning`` says so; Dask itself reruns
a part whose worker died before that.

From a run file: ``[evaluator] kind = "dask"`` with ``remote_tell = true`` and a strategy
with ``gradient_parts > 1`` (the generation step lends the evaluator's hook to the
strategy, on resume too). From Python, on any client::

    es = OpenAIES(num_params, 10_000, gradient_parts=8)
    es.noise_sum = DaskWeightedSum(evaluator.client)

This module imports nothing from Dask: it only calls the client it is given.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from asktell.errors import ConfigError
from asktell.noise import NoiseSource, add_parts, part_bounds, weighted_sum_in_parts

__all__ = ["DaskWeightedSum", "part_sum", "remote_tell_refusal", "PARTS_CAPABILITY"]

#: The strategy capability a remote tell needs (a ``gradient_parts`` option and a
#: ``noise_sum`` hook; see :mod:`asktell.strategies._parts`).
PARTS_CAPABILITY = "gradient_parts"


def part_sum(noise: NoiseSource, weights: np.ndarray, keys: np.ndarray, dim: int) -> np.ndarray:
    """One part's ``sum_i weights[i] * eps(keys[i])`` (runs on a worker; the noise source
    pickles small and reuses the worker's cached table)."""
    return noise.weighted_sum(weights, keys, dim)


def _check_parts(parts: Any, who: str) -> int:
    if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise ConfigError(f"{who} 'parts' must be an int >= 1; got {parts!r}")
    return int(parts)


def remote_tell_refusal(kind: str, capabilities: Any, parts: Any) -> str | None:
    """Why ``remote_tell`` cannot serve strategy ``kind`` (``None``: it can)."""
    if PARTS_CAPABILITY not in capabilities:
        from asktell.registry import STRATEGIES

        able = sorted(
            name for name in STRATEGIES.names()
            if PARTS_CAPABILITY in getattr(STRATEGIES.get(name), "capabilities", ())
        )
        return (
            f"remote_tell sums a strategy's noise rows on the workers, but strategy {kind!r} "
            f"has no 'gradient_parts' option (strategies that have it: {', '.join(able)}); "
            "use one of them or remove remote_tell"
        )
    if parts is None or parts < 2:
        return (
            f"remote_tell needs the strategy's gradient_parts >= 2 (the parts the workers "
            f"sum); got gradient_parts={parts!r} for strategy {kind!r}: set e.g. "
            "gradient_parts = 8 (it changes the update's last bits, which then no longer "
            "depend on where it is summed) or remove remote_tell"
        )
    return None


class DaskWeightedSum:
    """A strategy's ``noise_sum`` hook that sums the parts of a parted noise sum on Dask
    workers, bitwise :func:`asktell.noise.weighted_sum_in_parts`.

    Args:
        client: a ``distributed.Client`` (e.g. ``DaskEvaluator(...).client``).
        parts: the parts of a call that does not pass its own (a strategy always passes
            its ``gradient_parts``). Default: the number of workers when the hook is built.
        timeout: seconds to wait for the parts; those not back then are summed on the
            driver (same bits). ``None``: wait as long as Dask keeps trying.
    """

    def __init__(self, client: Any, parts: int | None = None, timeout: float | None = None):
        if parts is None:
            parts = max(1, len(client.scheduler_info().get("workers", {})))
        self.parts = _check_parts(parts, "DaskWeightedSum")
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"DaskWeightedSum 'timeout' must be > 0 or None; got {timeout!r}")
        self.client = client
        self.timeout = timeout
        #: Parts summed on the driver because the remote sum failed (for tests and logs).
        self.fallbacks = 0

    def __repr__(self) -> str:
        return f"DaskWeightedSum(parts={self.parts})"

    def __call__(
        self,
        noise: NoiseSource,
        weights: np.ndarray,
        keys: np.ndarray,
        dim: int,
        parts: int | None = None,
    ) -> np.ndarray:
        """``sum_i weights[i] * eps(keys[i])`` as float64 ``(dim,)``: the ``parts`` parts
        summed on the workers (a failed one here), added here in part order."""
        parts = self.parts if parts is None else _check_parts(parts, "DaskWeightedSum")
        weights = np.asarray(weights, dtype=np.float64)
        keys = np.asarray(keys, dtype=np.int64)
        if weights.shape != keys.shape or keys.ndim != 1:
            raise ConfigError(
                f"DaskWeightedSum needs one weight per key; got weights {weights.shape} and "
                f"keys {keys.shape}"
            )
        if self.client is None:  # released by its evaluator's close(): summed here, quietly
            return weighted_sum_in_parts(noise, weights, keys, int(dim), parts)
        bounds = part_bounds(keys.size, parts)
        sums: list[np.ndarray | None] = [None] * len(bounds)
        futures: list[Any] = []
        reason = ""
        try:
            if self.client.status != "running":
                raise RuntimeError(f"the Dask client is {self.client.status!r}")
            futures = [
                self.client.submit(part_sum, noise, weights[a:b], keys[a:b], int(dim), pure=False)
                for a, b in bounds
            ]
        except Exception as exc:  # noqa: BLE001 - any failure: the driver sums it all
            reason = f"{type(exc).__name__}: {exc}"
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for i, future in enumerate(futures):
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.01)
            try:
                sums[i] = np.asarray(future.result(timeout=wait), dtype=np.float64)
            except Exception as exc:  # noqa: BLE001 - KilledWorker, timeout, lost comm
                reason = reason or f"{type(exc).__name__}: {exc}"
        lost = [i for i, s in enumerate(sums) if s is None]
        if lost:
            self._cancel([futures[i] for i in lost if i < len(futures)])
            for i in lost:  # the same function on the same part: the same bits
                a, b = bounds[i]
                sums[i] = noise.weighted_sum(weights[a:b], keys[a:b], int(dim))
            self.fallbacks += len(lost)
            warnings.warn(
                f"remote tell: {len(lost)} of {len(bounds)} parts of the noise sum were "
                f"summed on the driver instead of a Dask worker ({reason}); the result's "
                "bits are the same",
                RuntimeWarning,
                stacklevel=2,
            )
        return add_parts(sums, dim)  # type: ignore[arg-type]

    def release(self) -> None:
        """Stop using the client (its evaluator is closing): later calls sum here."""
        self.client = None

    def _cancel(self, futures: list[Any]) -> None:
        if not futures:
            return
        try:
            self.client.cancel(futures)
        except Exception:  # noqa: BLE001 - best effort: the result is already known
            pass
