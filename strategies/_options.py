"""Option declarations shared by several strategies: each is declared here once and the
strategies' Config models inherit it.

* :class:`PairedConfig`: the rule that mirrored pairs need an even population.
* :class:`SelfAdaptingConfig`: the automatic population and initial ``sigma`` of the
  strategies that adapt their step sizes from the papers' defaults (NES, CMA-ES).
* :class:`GradientConfig`: fitness shaping and the optimiser settings of the strategies
  that step the centre along a gradient estimate (OpenAI-ES, PGPE).
* :class:`PerCoordinateSigmaConfig`: an initial ``sigma`` that may be one step per
  coordinate (pycma's ``CMA_stds``) for the strategies that keep per-coordinate steps.
* :class:`FactorMemoryConfig`: the memory cap of the full-covariance strategies (xNES,
  CMA-ES), one rule with one message.
* :class:`IntegerVariablesConfig`: pycma's ``integer_variables`` (coordinates rounded in
  ``decode``, their steps kept above :func:`integer_step_floor`), for CMA-ES and sep-CMA-ES.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, field_validator, ValidationError, ValidationInfo, model_validator

from pydantic_core import PydanticCustomError

from asktell.bounds import Bounds
from asktell.config_base import (
    Float, Int, NestedConfigError, join_path, option_names, validation_problems,
)
from asktell.optim import OPTIMIZERS, Optimizer
from asktell.shaping import ShapingChoice

from ._base import StrategyConfig
from ._common import max_dim_for_bytes

__all__ = [
    "PairedConfig",
    "SelfAdaptingConfig",
    "GradientConfig",
    "FactorMemoryConfig",
    "PerCoordinateSigmaConfig",
    "IntegerVariablesConfig",
    "integer_step_floor",
    "integer_setup",
    "initial_steps",
    "per_coordinate",
    "DEFAULT_MAX_FACTOR_BYTES",
]

#: Default memory cap of one ``num_params x num_params`` float64 matrix (256 MiB, i.e.
#: ``num_params <= 5792``). Full-covariance strategies hold a few such matrices and ship
#: one to evaluators every generation; their cost per generation grows as ``num_params**3``.
DEFAULT_MAX_FACTOR_BYTES = 1 << 28


class PairedConfig(StrategyConfig):
    """Options of a strategy that samples mirrored pairs ``(+eps, -eps)``."""

    def _in_pairs(self) -> bool:
        """Whether this configuration samples mirrored pairs (a subclass may say when not)."""
        return True

    @model_validator(mode="after")
    def _even_population(self) -> Any:
        """`population_size` must be even when candidates come in mirrored pairs (always for
        PGPE and ARS; OpenAI-ES with `antithetic = true`; mirrored ES without `sequential`)."""
        size = getattr(self, "population_size", None)
        if size is not None and size % 2 and self._in_pairs():
            raise ValueError(
                f"population_size must be even (candidates come in mirrored pairs); got {size}"
            )
        return self


class SelfAdaptingConfig(StrategyConfig):
    """Options of the strategies that adapt their step sizes with the papers' defaults."""

    population_size: Int | None = Field(
        None,
        ge=2,
        description="lambda, candidates per generation; default (null) "
        "4 + floor(3 ln num_params), the rule of NES and CMA-ES.",
    )
    sigma: Float = Field(
        0.1,
        gt=0,
        description="Initial step size (standard deviation of the search distribution); "
        "about a quarter of the distance to search.",
    )


def _array_to_list(value: Any) -> Any:
    # A numpy vector from Python code reads like the list a run file gives.
    return value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value


class PerCoordinateSigmaConfig(StrategyConfig):
    """An initial ``sigma`` that is one number or one step per coordinate."""

    sigma: Annotated[Float | list[Float], BeforeValidator(_array_to_list)] = Field(
        0.1,
        description="Initial step size (standard deviation of the search distribution; "
        "about a quarter of the distance to search): one number, or one per coordinate "
        "(num_params values > 0, pycma's CMA_stds; for CMA-ES a diagonal initial "
        "covariance).",
    )

    @field_validator("sigma")
    @classmethod
    def _sigma_fits(cls, value: Any, info: ValidationInfo) -> Any:
        """`sigma` must be > 0; a list must have num_params values, each > 0."""
        steps = value if isinstance(value, list) else [value]
        bad = [i for i, v in enumerate(steps) if not v > 0]
        if bad:
            where = f" (coordinate {bad[0]})" if isinstance(value, list) else ""
            raise PydanticCustomError(
                "greater_than", f"Input should be greater than 0{where}", {"gt": 0}
            )
        num_params = (info.context or {}).get("num_params")
        if isinstance(value, list) and num_params is not None and len(steps) != num_params:
            raise ValueError(
                f"sigma must be one number or num_params={num_params} values; "
                f"got {len(steps)} values"
            )
        return value


def initial_steps(sigma: float | list[float], num_params: int) -> tuple[float, np.ndarray]:
    """A scalar step and per-coordinate multipliers whose largest is 1 (pycma's
    ``sigma0`` and ``CMA_stds``, normalised so ``sigma`` stays the largest step)."""
    if not isinstance(sigma, list):
        return float(sigma), np.ones(num_params)
    steps = np.array(sigma, dtype=np.float64)
    top = float(steps.max())
    return top, steps / top


class GradientConfig(StrategyConfig):
    """Options of a strategy that moves its centre with an optimiser (declared by the
    subclass as ``optimizer``, with its own default) along a shaped gradient estimate."""

    shaping: ShapingChoice = Field("centered_ranks", description="Fitness shaping of the returns.")
    optimizer_options: dict[str, Float] = Field(
        default_factory=dict,
        description="Settings of the optimizer beyond its learning rate, e.g. {beta1 = 0.9} "
        "(adam: beta1, beta2, epsilon; momentum: momentum; clipup: momentum, max_speed).",
    )

    @model_validator(mode="after")
    def _optimizer_options_fit(self) -> Any:
        """`optimizer_options` must be settings of the chosen `optimizer`, within its rules
        (see asktell.optim: `AdamOptions`, `MomentumOptions`, `ClipUpOptions`; sgd has none)."""
        choice = self.optimizer  # type: ignore[attr-defined]
        if isinstance(choice, Optimizer):
            if self.optimizer_options:
                raise ValueError(
                    "optimizer_options configure an optimizer given by name; an Optimizer "
                    f"instance comes configured (got {sorted(self.optimizer_options)})"
                )
            return self
        options_class = OPTIMIZERS[choice].config_class
        known = option_names(options_class)
        try:
            options_class.model_validate(self.optimizer_options)
        except ValidationError as exc:
            # paths from this model (optimizer_options.beta1), joined to its location
            none = "" if known else f"; the {choice!r} optimizer has no settings"
            raise NestedConfigError(
                (join_path("optimizer_options", path), msg + none)
                for path, msg in validation_problems(
                    exc, known_keys=lambda loc: known if not loc else []
                )
            ) from None
        return self


class FactorMemoryConfig(StrategyConfig):
    """Options of a strategy that holds ``num_params x num_params`` float64 matrices."""

    max_factor_bytes: Int = Field(
        DEFAULT_MAX_FACTOR_BYTES,
        ge=8,
        description="Largest num_params x num_params float64 matrix allowed, in bytes "
        "(the default allows num_params <= 5792).",
    )

    def estimate_bytes(self, context: Any) -> list[Any]:
        """The shared estimate plus two float64 ``num_params x num_params`` matrices (the
        factor and its snapshot shipped to evaluators)."""
        from asktell._memory import Allocation

        d = context.num_params
        value = d if context.num_params_value is None else context.num_params_value
        square = Allocation(context.num_params_field, value, 2 * 8 * d * d, "covariance matrices")
        return [*super().estimate_bytes(context), square]

    @model_validator(mode="after")
    def _factor_fits(self, info: ValidationInfo) -> Any:
        """One float64 `num_params x num_params` matrix, `8 * num_params**2` bytes, must fit
        in `max_factor_bytes` (checked when the strategy is built for the task's
        `num_params`); SNES, sep-CMA-ES and PGPE need memory linear in `num_params`."""
        num_params = (info.context or {}).get("num_params")
        limit = max_dim_for_bytes(self.max_factor_bytes)
        if num_params is not None and num_params > limit:
            need = 8 * num_params * num_params
            raise ValueError(
                f"num_params must be <= {limit} so that a num_params x num_params float64 "
                f"matrix (8 * num_params**2 bytes) fits in max_factor_bytes="
                f"{self.max_factor_bytes}; got {num_params} ({need / 2**20:.0f} MiB). "
                "Use SNES, SepCMAES or PGPE (memory linear in num_params) for large problems, "
                "or raise max_factor_bytes"
            )
        return self


def per_coordinate(sigma: float | list[float], num_params: int) -> np.ndarray:
    """The initial per-coordinate steps of SNES and PGPE (a scalar repeated)."""
    if isinstance(sigma, list):
        return np.array(sigma, dtype=np.float64)
    return np.full(num_params, sigma)


class IntegerVariablesConfig(StrategyConfig):
    """Integer coordinates (pycma's ``integer_variables``), for a strategy that keeps their
    steps above :func:`integer_step_floor` (CMA-ES and sep-CMA-ES)."""

    integer_variables: Annotated[list[Int], BeforeValidator(_array_to_list)] = Field(
        default_factory=list,
        description="Indices of the integer coordinates (pycma's integer_variables): "
        "distinct, in [0, num_params). Candidates are rounded there inside "
        "Distribution.decode (after any bounds repair, kept inside the bounds), and the "
        "standard deviation of those coordinates is kept >= pycma's floor min(0.2, "
        "mu_eff / num_params, 1 / (2 |Phi^-1(p / 2)|)), p = 2 / (2 + num_params + "
        "their number); see docs/bounds-and-constraints.md.",
    )

    @field_validator("integer_variables")
    @classmethod
    def _indices_fit(cls, value: list[int], info: ValidationInfo) -> list[int]:
        """`integer_variables` must be distinct indices in [0, num_params)."""
        num_params = (info.context or {}).get("num_params")
        seen: set[int] = set()
        for i in value:
            if i < 0 or (num_params is not None and i >= num_params):
                top = "num_params" if num_params is None else f"num_params={num_params}"
                raise ValueError(
                    f"integer_variables must be indices in [0, {top}); got {i} in {value}"
                )
            if i in seen:
                raise ValueError(f"integer_variables must be distinct; {i} repeats in {value}")
            seen.add(i)
        return value

    @model_validator(mode="after")
    def _integers_in_bounds(self) -> Any:
        """With `bounds`, each integer coordinate's [lower, upper] must hold an integer
        (a rounded candidate must stay inside the box)."""
        if self.bounds is None or not self.integer_variables:
            return self
        lower, upper = np.atleast_1d(self.bounds.lower), np.atleast_1d(self.bounds.upper)
        for i in self.integer_variables:
            if max(lower.size, upper.size) <= i:
                continue  # a length mismatch is refused when the bounds are built
            lo = float(lower[0 if lower.size == 1 else i])
            up = float(upper[0 if upper.size == 1 else i])
            if math.ceil(lo) > math.floor(up):
                raise ValueError(
                    f"integer_variables coordinate {i} has bounds [{lo}, {up}], which hold no "
                    "integer; widen them or drop the coordinate"
                )
        return self


def integer_step_floor(num_params: int, mu_eff: float, num_integer: int) -> float:
    """pycma's lower bound on the standard deviation of an integer coordinate (pycma 4.5's
    ``integer_std_lower_bound``, Marty et al., "LB+IC-CMA-ES", PPSN 2024):
    ``min(0.2, mu_eff / N, 1 / (2 |Phi^-1(p / 2)|))`` with ``p = 2 / (2 + N + N_int)``, the
    step at which a candidate leaves its integer (half a unit away) with probability about
    ``p``. pycma approximates the normal quantile ``Phi^-1``; this uses the exact one."""
    p = 2.0 / (2.0 + num_params + num_integer)
    quantile = -NormalDist().inv_cdf(p / 2.0)
    return min(0.2, mu_eff / num_params, 0.5 / quantile)


def integer_setup(es: Any, cfg: Any) -> tuple[np.ndarray, float]:
    """Round ``cfg.integer_variables`` in ``decode`` (added to the strategy's bounds) and
    return their indices and pycma's floor on their standard deviation (0 when none)."""
    index = np.array(cfg.integer_variables, dtype=np.int64)
    if not index.size:
        return index, 0.0
    es.bounds = Bounds.with_integer(es.bounds, index, es.num_params)
    return index, integer_step_floor(es.num_params, es.params.mu_eff, int(index.size))
