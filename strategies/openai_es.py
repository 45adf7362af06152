"""OpenAI-ES: Salimans, Ho, Chen, Sidor & Sutskever 2017, "Evolution Strategies as a
Scalable Alternative to Reinforcement Learning" (arXiv:1703.03864).

An isotropic Gaussian of fixed ``sigma`` around the centre. Each generation asks
``population_size / 2`` antithetic pairs from the shared noise table, shapes the returns
into centred ranks, and estimates the gradient of the expected return as::

    g = 1 / (n * sigma) * sum_i w_i * eps_i  -  weight_decay * center

assembled by :meth:`NoiseTable.weighted_sum <asktell.noise.NoiseTable.weighted_sum>`: chunked
matrix-vector products for short rows, one axpy per noise-row view for long ones (no row
copied; the summation order is in its docstring). Mirror pairs are folded first
(``(w+ - w-) eps``), halving the rows read. With ``gradient_parts = k`` the sum is cut
into ``k`` parts added in order (:mod:`._parts`), which a Dask evaluator with
``remote_tell`` sums on its workers with the same bits (docs/distributed-tell.md). The
centre then takes an optimiser step (Adam by default, as in the paper).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from asktell.config_base import Bool, Float, Int, declare_options
from asktell.noise import CounterNoise, NoiseTable, mirrored, split_seeds
from asktell.optim import SGD, Adam, ClipUp, Momentum, OptimizerChoice, make_optimizer
from asktell.registry import STRATEGIES
from asktell.shaping import centered_ranks, centered_ranks_sorted, get_shaping
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._metrics import Metrics, deferred
from ._options import GradientConfig, PairedConfig
from ._parts import PARTS_CAPABILITY, GradientPartsConfig, parted_sum

__all__ = ["OpenAIES", "OpenAIESConfig", "fold_weights"]


def fold_weights(
    seeds: np.ndarray, weights: np.ndarray, pairs: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Combine per-seed weights into per-key coefficients: ``sum_i w_i sign_i`` per key.

    A mirrored pair ``(k, ~k)`` reads ``eps(k)`` once with weight ``w(k) - w(~k)``.
    ``pairs=True``: the caller made ``seeds`` as interleaved mirrored pairs (``mirrored``),
    so the check is skipped; ``None``: checked here.
    """
    # ``(a == b).all()`` on the equal-length halves: np.array_equal's answer without its
    # generic shape and dtype layers (this runs every generation).
    if pairs is None:
        pairs = bool(seeds.size % 2 == 0 and seeds.size and (seeds[1::2] == ~seeds[0::2]).all())
    if pairs:
        # Interleaved antithetic pairs (what ask() produces). A key drawn twice just appears
        # twice, which the weighted sum handles the same as one summed coefficient.
        return seeds[0::2], weights[0::2] - weights[1::2]
    keys, signs = split_seeds(seeds)
    unique, inverse = np.unique(keys, return_inverse=True)
    coef = np.bincount(inverse, weights=weights * signs, minlength=unique.size)
    return unique, coef


#: Vectors longer than this have their norm summed over blocks of this length.
_NORM_BLOCK = 8192

#: Up to this many parameters, the metrics' norms are computed when first read (the metrics
#: keep the step's gradient and update: 16 KiB at most).
_DEFER_NORMS = 1024
_NORM_KEYS = ("grad_norm", "update_norm", "update_ratio", "center_norm")
#: The optimisers and noise sources known to keep no reference to the gradient or the
#: update they produce or take (so a deferred norm reads what the step computed).
_OWN_OPTIMIZERS = (Adam, SGD, Momentum, ClipUp)
_OWN_NOISE = (NoiseTable, CounterNoise)


def _norm_metrics(grad: np.ndarray, update: np.ndarray, center: np.ndarray) -> tuple:
    """The values of ``_NORM_KEYS``."""
    if center.size <= _NORM_BLOCK:  # _norm's short form, inline (no call per vector)
        center_norm = math.sqrt(center.dot(center))
        update_norm = math.sqrt(update.dot(update))
        ratio = update_norm / center_norm if center_norm > 0 else float("inf")
        return math.sqrt(grad.dot(grad)), update_norm, ratio, center_norm
    center_norm = _norm(center)
    update_norm = _norm(update)
    ratio = update_norm / center_norm if center_norm > 0 else float("inf")
    return _norm(grad), update_norm, ratio, center_norm


def _norm(x: np.ndarray) -> float:
    """The Euclidean norm of a 1-D float64 vector, for the metrics.

    Up to ``_NORM_BLOCK`` values: ``sqrt(x.dot(x))``, bitwise what ``np.linalg.norm``
    computes. Longer: the blocks' dot products summed in order, each block short enough for
    OpenBLAS to compute on the calling thread (with OPENBLAS_NUM_THREADS 1 and 2, ``dot``
    gives the same bits up to 10,001 values and different ones at 20,000), so the metric
    does not depend on BLAS's thread count, and a busy machine does not make ``tell`` wait
    for BLAS threads to be scheduled (docs/benchmarks-overhead.md).
    """
    if x.size <= _NORM_BLOCK:
        return math.sqrt(x.dot(x))
    total = 0.0
    for start in range(0, x.size, _NORM_BLOCK):
        block = x[start : start + _NORM_BLOCK]
        total += float(block.dot(block))
    return math.sqrt(total)


class OpenAIESConfig(GradientConfig, PairedConfig, GradientPartsConfig):
    """Run-file settings of :class:`OpenAIES` (``kind = "openai_es"``)."""

    kind: Literal["openai_es"] = "openai_es"
    population_size: Int = Field(
        64, ge=2, description="Candidates per generation (even when antithetic)."
    )
    sigma: Float = Field(0.02, gt=0, description="Standard deviation of the parameter perturbations.")
    learning_rate: Float = Field(0.01, gt=0, description="Step size of the optimiser.")
    optimizer: OptimizerChoice = Field(
        "adam",
        description="Optimiser of the centre (the paper uses Adam); in Python also an "
        "asktell.optim.Optimizer instance.",
    )
    weight_decay: Float = Field(
        0.0, ge=0, description="L2 coefficient subtracted from the gradient (paper: 0.005 on MuJoCo)."
    )
    antithetic: Bool = Field(
        True, description="Sample mirrored pairs (eps, -eps); needs an even population_size."
    )

    def _in_pairs(self) -> bool:
        return self.antithetic


@STRATEGIES.register("openai_es")
@declare_options(OpenAIESConfig, positional=("population_size", "sigma", "learning_rate"))
class OpenAIES(BaseStrategy):
    """OpenAI-ES (Salimans et al. 2017): fixed-sigma Gaussian, antithetic pairs, centred
    ranks, Adam. The workhorse for neural-network policies with many parameters.

    Args:
        num_params: dimension of the search space.
        seed: seed of the strategy's generator.
        x0: initial centre (default zeros).
        noise: noise source (default: the shared noise table).

    Example:
        >>> import numpy as np
        >>> es = OpenAIES(num_params=3, population_size=8, sigma=0.1, learning_rate=0.05)
        >>> for _ in range(5):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> es.generation
        5
    """

    name = "openai_es"
    capabilities = frozenset({"antithetic", "partial_tell", PARTS_CAPABILITY})
    #: Hook computing the gradient's noise sum elsewhere: a callable
    #: ``(noise, weights, keys, num_params, parts=gradient_parts) -> float64 (num_params,)``
    #: returning the bits of :func:`asktell.noise.weighted_sum_in_parts`, e.g.
    #: :class:`~asktell.evaluators._dask_tell.DaskWeightedSum` (sums on the Dask workers,
    #: which already hold the noise table). Set by the generation step from a
    #: ``DaskEvaluator(remote_tell=True)`` (so again on resume); not part of the state.
    #: ``None``: summed here.
    noise_sum: Any = None

    def _setup(self, cfg: OpenAIESConfig) -> None:
        self.gradient_parts = cfg.gradient_parts
        self.sigma = cfg.sigma
        self.learning_rate = cfg.learning_rate
        self.weight_decay = cfg.weight_decay
        self.antithetic = cfg.antithetic
        self.shaping = cfg.shaping
        self._shape = get_shaping(cfg.shaping)
        self.optimizer = make_optimizer(
            cfg.optimizer, self.num_params, self.learning_rate, **cfg.optimizer_options
        )

    #: The last seeds ``_sample`` made as interleaved mirrored pairs: ``tell`` folds them
    #: without checking the pairs again when it learns from that very array (``ask`` keeps
    #: it as the pending seeds and hands out copies).
    _asked_pairs: np.ndarray | None = None

    #: The noise source ``_asked_pairs`` were drawn from.
    _asked_noise: Any = None

    def _sample(self, count: int) -> np.ndarray:
        if self.antithetic:
            noise = self.noise
            if type(noise) is NoiseTable:
                seeds = noise.sample_mirrored(self.rng, count // 2, self.num_params)
            else:
                seeds = mirrored(noise.sample_keys(self.rng, count // 2, self.num_params))
            self._asked_pairs, self._asked_noise = seeds, noise
            return seeds
        return self.noise.sample_keys(self.rng, count, self.num_params)

    #: ``_update`` neither writes into the returns it is given nor keeps them (the shapings
    #: return new arrays), so ``tell``'s deferred return statistics need no copy of them.
    _update_leaves_returns = True

    #: ``(population, sigma, 1 / (population * sigma))`` of the last step, the factor as a
    #: 0-d float64 array (numpy multiplies by one faster than by a Python float; the same
    #: product).
    _scale: tuple[int, float, np.ndarray] | None = None

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        ranked = self._sorted_returns
        shape = self._shape
        if ranked is not None and ranked.values is returns and shape is centered_ranks:
            weights = centered_ranks_sorted(returns, ranked.order, ranked.ordered)
        else:
            weights = shape(returns)
        noise = self.noise
        if seeds is self._asked_pairs and noise is self._asked_noise:
            # The seeds this strategy's own _sample mirrored (kept as the pending seeds,
            # never handed out) need no pair check, and their keys were drawn in range by
            # this noise.
            keys, coef = fold_weights(seeds, weights, pairs=True)
            if (
                self.noise_sum is None and self.gradient_parts == 1
                and shape is centered_ranks and type(noise) is NoiseTable
            ):
                # Centred ranks lie in [-0.5, 0.5], so the folded weights are within
                # float32's range: the table's sum without its key and weight checks, the
                # same bits.
                grad = noise._vetted_sum(coef, keys, self.num_params)
            else:
                grad = parted_sum(self, coef, keys)
        else:
            keys, coef = fold_weights(seeds, weights)
            grad = parted_sum(self, coef, keys)
        n, sigma = returns.size, self.sigma
        scale = self._scale
        if scale is None or scale[0] != n or scale[1] is not sigma:
            scale = self._scale = (n, sigma, np.array(1.0 / (n * sigma)))
        grad *= scale[2]  # grad * (1.0 / (n * sigma)), the same product
        if self.weight_decay:
            grad -= self.weight_decay * self._center
        optimizer = self.optimizer
        update = optimizer.step(grad)
        center = self._center + update
        # A new array each generation, never written into: read-only, the Distribution
        # snapshot shares it instead of copying it (asktell.distribution._readonly).
        center.setflags(write=False)  # (the flags object's setter costs more)
        self._center = center
        if (
            self.num_params <= _DEFER_NORMS
            and type(optimizer) in _OWN_OPTIMIZERS
            and type(noise) in _OWN_NOISE
            and self.noise_sum is None
        ):
            # Computed when the metrics are first read: grad and update are this step's new
            # arrays (the built-in noise sources and optimisers keep no reference to them)
            # and the centre is read-only, so the values are the ones computed now.
            return deferred(_NORM_KEYS, _norm_metrics, grad, update, center)
        return Metrics(zip(_NORM_KEYS, _norm_metrics(grad, update, center)))

    def _state(self) -> dict[str, Any]:
        return self._prefixed("optimizer", self.optimizer.state_dict())

    def _state_schema(self) -> dict[str, Entry]:
        return self._prefixed("optimizer", self.optimizer.state_schema())

    def _load_state(self, state: dict[str, Any]) -> None:
        self.optimizer._assign(self._unprefixed("optimizer", state))
