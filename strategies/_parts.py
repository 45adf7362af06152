"""The parted noise sum of the strategies whose update is one weighted sum of noise rows
(OpenAI-ES's gradient, ARS's step): the ``gradient_parts`` option and the hook that may
compute it elsewhere.

``gradient_parts = k`` cuts the ``(coefficients, keys)`` sequence into ``k`` contiguous parts,
sums each with the noise source and adds the part sums in part order
(:func:`asktell.noise.weighted_sum_in_parts`). The bits are then a function of the config:
summed here (``noise_sum`` unset) or on the Dask workers that hold the noise (a
``DaskEvaluator(remote_tell=True)`` lends its hook, see ``docs/distributed-tell.md``), the
result is the same. ``k = 1`` is the unparted sum, bitwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from asktell.config_base import Int
from asktell.noise import weighted_sum_in_parts

from ._base import StrategyConfig

__all__ = ["GradientPartsConfig", "parted_sum", "PARTS_CAPABILITY"]

#: The capability of a strategy with the ``gradient_parts`` option and a ``noise_sum`` hook.
PARTS_CAPABILITY = "gradient_parts"


class GradientPartsConfig(StrategyConfig):
    """The ``gradient_parts`` option (a strategy declaring :data:`PARTS_CAPABILITY`)."""

    gradient_parts: Int = Field(
        1,
        ge=1,
        description="Cut the update's weighted sum of noise rows into this many contiguous "
        "parts, summed one by one and added in part order: the bits depend on it, not on "
        "where the parts are summed. 1 = one sum (the default). More than 1 lets a Dask "
        "evaluator with remote_tell = true sum the parts on its workers, with the same "
        "bits as a local run (docs/distributed-tell.md).",
    )


def parted_sum(es: Any, weights: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``sum_i weights[i] * eps(keys[i])`` in ``es.gradient_parts`` parts: through
    ``es.noise_sum`` when a hook is set (called as ``hook(noise, weights, keys, num_params,
    parts=parts)``; it must return the same bits as the local sum), else here."""
    if es.noise_sum is None:
        return weighted_sum_in_parts(es.noise, weights, keys, es.num_params, es.gradient_parts)
    return es.noise_sum(es.noise, weights, keys, es.num_params, parts=es.gradient_parts)
