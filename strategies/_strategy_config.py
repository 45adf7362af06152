"""The options every strategy shares (:class:`StrategyConfig`, which a strategy's Config
subclasses) and the constructor-only arguments (:class:`StrategyArgs`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from asktell.bounds import BoundsConfig, bounds_from
from asktell.config_base import Int, PluginConfig

from ._common import default_population_size
from ._stopping import StoppingConfig

__all__ = ["StrategyConfig", "StrategyArgs"]


class StrategyConfig(StoppingConfig):
    """Options every strategy shares (a strategy's Config subclasses this)."""

    nonfinite: Literal["worst", "raise"] = Field(
        "worst",
        description="NaN/inf returns: 'worst' ranks them below every finite return of the "
        "generation (a failed candidate is never ranked best); 'raise' raises naming them.",
    )
    bounds: Annotated[BoundsConfig | None, BeforeValidator(bounds_from)] = Field(
        None,
        description="Box bounds on the parameters: {lower, upper, method} (lower and upper "
        "one number or one per coordinate; method 'transform', 'clip', 'mirror' or "
        "'penalty'), or in Python a pair (lower, upper). Applied inside "
        "Distribution.decode, so every evaluator computes the same bounded candidates; see "
        "docs/bounds-and-constraints.md.",
    )

    def population_for(self, num_params: int) -> int:
        """Candidates per generation for ``num_params`` (``population_size``, or the default
        rule when it is ``None``); what the memory estimate sizes."""
        size = getattr(self, "population_size", None)  # not every strategy declares one
        return int(size) if size is not None else default_population_size(num_params)

    def estimate_bytes(self, context: Any) -> list[Any]:
        """Each generation's seeds, returns and shaped weights (32 bytes a candidate) and
        the centre, its snapshot and the optimiser's vectors (4 float64 vectors)."""
        from asktell._memory import Allocation

        size = self.population_for(context.num_params)
        return [
            Allocation("strategy.population_size", size, 32 * size, "seeds, returns and weights"),
            context.per_param(4, "centre and optimiser vectors"),
        ]

    def build(self, *, num_params: int, seed: int, noise: Any = None, x0: Any = None) -> Any:
        """The live strategy of this section (the class registered under ``kind``)."""
        from asktell.registry import STRATEGIES

        cls = STRATEGIES.get(self.kind)  # type: ignore[attr-defined]
        return cls(num_params=num_params, seed=seed, noise=noise, x0=x0, **self.options())


class StrategyArgs(PluginConfig):
    """The constructor-only arguments of every strategy (a run file gives them elsewhere:
    ``num_params`` comes from the task, ``seed`` from the run)."""

    num_params: Int = Field(ge=1, description="Dimension of the search space.")
    seed: Int = Field(0, ge=0, description="Seed of the strategy's own generator.")
