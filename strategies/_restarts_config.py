"""The options of :class:`~.restarts.Restarts` (``kind = "restarts"``): its own and the
inner strategy's table, checked as that strategy's Config with a restart's population and
step size (:meth:`RestartsConfig.inner_config`)."""

from __future__ import annotations

import math
from typing import Any, Literal, NoReturn

from pydantic import Field, ValidationError, model_validator

from asktell.config_base import (
    Float, Int, NestedConfigError, fields_at, join_path, option_names, short_repr,
    validation_problems,
)
from asktell.errors import ConfigError
from asktell.registry import STRATEGIES

from ._strategy_config import StrategyConfig

__all__ = ["RestartsConfig"]


class RestartsConfig(StrategyConfig):
    """Run-file settings of :class:`Restarts` (``kind = "restarts"``)."""

    kind: Literal["restarts"] = "restarts"
    strategy: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "cma_es"},
        description="The inner strategy's table, e.g. {kind = \"cma_es\", sigma = 2.0}; it "
        "needs population_size and sigma options. Its population_size and sigma are those "
        "of the first run.",
    )
    mode: Literal["ipop", "bipop"] = Field(
        "ipop",
        description="'ipop': each restart multiplies the population by population_factor "
        "(Auger & Hansen 2005); 'bipop': interleave those large populations with small "
        "ones of random size and step size (Hansen 2009).",
    )
    max_restarts: Int = Field(
        9, ge=0,
        description="Most restarts with an increased population (bipop's small-population "
        "restarts are not counted, as in pycma).",
    )
    population_factor: Float = Field(
        2.0, gt=1, description="Factor of the population at each large restart (IPOP's 2)."
    )
    population_size: Int | None = Field(
        None, ge=2,
        description="Population of the first run (lambda_def); default (null) the inner "
        "strategy's.",
    )
    population_base: Float | None = Field(
        None, gt=0,
        description="lambda_def, the population that restart populations are multiples "
        "of (floor(population_base * population_factor**k)); default (null) the first "
        "run's population, unrounded (4 + 3 ln num_params, as pycma) when that is the CMA "
        "default 4 + floor(3 ln num_params).",
    )
    small_population: Literal["pycma", "paper"] = Field(
        "pycma",
        description="bipop's small-regime population draw floor(lambda_def * (L / "
        "lambda_def)**(U**2)), U uniform in [0, 1]: 'pycma' L = the last large population "
        "(what pycma's fmin does), 'paper' L = half of it (Hansen 2009's formula).",
    )
    sigma: Float | None = Field(
        None, gt=0,
        description="Initial step size of the first run (and of every large restart); "
        "default (null) the inner strategy's sigma.",
    )
    restart_from: Literal["x0", "uniform"] = Field(
        "x0",
        description="Where a restart starts: 'x0', or uniform in the box of half-width "
        "start_half_width around x0 (the papers' BBOB setting).",
    )
    start_half_width: Float | None = Field(
        None, gt=0,
        description="Half-width of the box of 'uniform' restarts; default (null) twice the "
        "inner strategy's initial sigma.",
    )

    @model_validator(mode="after")
    def _inner_fits(self, info: Any) -> Any:
        """`strategy` must be a registered strategy other than restarts, with
        `population_size` and `sigma` options, and valid options of its own."""
        self.inner_config(context=(info.context if info is not None else None))
        return self

    def inner_config(self, population_size: int | None = None, sigma: float | None = None,
                     context: Any = None) -> StrategyConfig:
        """The inner strategy's validated Config (with a restart's population and sigma).

        A problem raises :class:`NestedConfigError` with its path from here
        (``strategy.sigma``), which a run file's error joins to the section's path
        (``strategy.strategy.sigma``) and a constructor's reports as it is."""
        table = dict(self.strategy)
        kind = table.pop("kind", None)
        if kind is None:
            _refuse("strategy.kind", "missing; name the inner strategy, e.g. \"cma_es\"")
        if not isinstance(kind, str):
            _refuse("strategy.kind", f"must be a strategy name, e.g. \"cma_es\"; got "
                    f"{short_repr(kind)}")
        if kind == "restarts":
            _refuse("strategy.kind", "restarts cannot wrap restarts")
        try:
            config_class = STRATEGIES.get(kind).config_class
        except ConfigError as exc:
            unknown = str(exc)  # refused outside the handler: no chained traceback
        else:
            unknown = ""
        if unknown:
            _refuse("strategy.kind", unknown)
        fields = config_class.model_fields
        if "population_size" not in fields or "sigma" not in fields:
            _refuse("strategy.kind", f"restarts need population_size and sigma options; "
                    f"{kind!r} has {', '.join(option_names(config_class))}")
        for name in ("population_size", "sigma"):
            outer = getattr(self, name)
            if outer is None:
                continue
            if table.get(name) not in (None, outer):
                _refuse(f"strategy.{name}", f"{table[name]!r} differs from the restarts' "
                        f"{name} {outer!r}; set one of them")
            table[name] = outer
        if population_size is not None:
            table["population_size"] = population_size
        if sigma is not None:
            table["sigma"] = sigma
        if "recombination_weights" in table and table["recombination_weights"] is not None:
            _refuse("strategy.recombination_weights",
                    "fixes the population, which restarts change; leave it unset")
        try:
            return config_class.model_validate({"kind": kind, **table}, context=context)
        except ValidationError as exc:
            known = lambda loc: fields_at(config_class, loc)  # noqa: E731
            raise NestedConfigError(
                (join_path("strategy", path), msg)
                for path, msg in validation_problems(exc, known_keys=known)
            ) from None

    def population_for(self, num_params: int) -> int:
        """The largest population a restart can reach (what the memory check sizes)."""
        first = self.inner_config().population_for(num_params)
        base = self.population_base or max(first, 4.0 + 3.0 * math.log(max(num_params, 1)))
        return int(math.ceil(max(first, base) * self.population_factor**self.max_restarts)) + 1

    def estimate_bytes(self, context: Any) -> list[Any]:
        return self.inner_config().estimate_bytes(context)


def _refuse(path: str, message: str) -> NoReturn:
    raise NestedConfigError([(path, message)])
