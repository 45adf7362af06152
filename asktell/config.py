"""Run configs: one validated file describes a whole run.

A :class:`RunConfig` is a ``strategy``, an ``evaluator`` and a ``task`` (each a tagged union
keyed by ``kind``, one model per registered plugin), the ``noise`` source, a ``budget``, a
``seed`` and ``output`` settings. The unions are assembled from
:mod:`asktell.registry` when this module is imported, so every registered plugin (built-in,
or from another package through the ``asktell.strategies`` / ``asktell.evaluators`` /
``asktell.tasks`` entry points) is a valid ``kind`` without a central list. A plugin
registered later in the same process becomes valid after :func:`refresh`.

The plain sections (noise, budget, output) live in :mod:`asktell.config_sections` and the
union assembly in :mod:`asktell._config_unions`; both are re-exported here.

Example:
    >>> from asktell.config import RunConfig
    >>> cfg = RunConfig.model_validate({
    ...     "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1},
    ...     "task": {"kind": "function", "name": "sphere", "num_params": 3},
    ...     "noise": {"size": 4096},
    ...     "budget": {"generations": 5},
    ... })
    >>> cfg.evaluator.kind
    'serial'
    >>> with cfg.build() as built:
    ...     built.strategy.population_size
    8
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, ValidationError, create_model, model_validator

from asktell._config_nulls import NULLS_KEY, apply_nulls, lookup, null_paths
from asktell._files import apply_overrides, dump_toml, parse_toml, read_mapping
from asktell._memory import Allocation, MemoryContext, check_memory
from asktell.config_base import Int, StrictModel, fields_at
from asktell.config_base import _dotted as dotted_location
from asktell.config_base import format_validation_error as _format_validation_error
from asktell.errors import ConfigError
from asktell._config_unions import (
    DEFAULT_EVALUATOR,
    FAMILIES,
    plugin_configs,
    section_type,
    switch_kinds,
)
from asktell.config_sections import (
    PROTECTED_SECTIONS,
    BudgetConfig,
    NoiseConfig,
    OutputConfig,
    auto_table_size,
    diff_protected,
)
from asktell.noise import NoiseSource
from asktell.protocol import hooks_of
from asktell.registry import EVALUATORS, LOGGERS

__all__ = [
    "RunConfig",
    "RunConfigBase",
    "NoiseConfig",
    "BudgetConfig",
    "OutputConfig",
    "Built",
    "load_config",
    "config_from_dict",
    "with_changes",
    "format_validation_error",
    "plugin_configs",
    "refresh",
    "PROTECTED_SECTIONS",
    "diff_protected",
    "config_to_toml",
    "NULLS_KEY",
]




def _default_evaluator() -> Any:
    return EVALUATORS.get(DEFAULT_EVALUATOR).config_class()


def _call_build(build: Any, **available: Any) -> Any:
    """Call ``build`` with the keyword arguments from ``available`` that it accepts."""
    params = inspect.signature(build).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return build(**available)
    return build(**{k: v for k, v in available.items() if k in params})


@dataclasses.dataclass
class Built:
    """The live objects of a run. A context manager that closes the evaluator."""

    strategy: Any
    evaluator: Any
    task: Any
    noise: NoiseSource

    def close(self) -> None:
        self.evaluator.close()

    def __enter__(self) -> Built:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunConfigBase(StrictModel):
    """A whole run: what is optimised, by which strategy, evaluated where, for how long."""

    # The three plugin sections are typed ``Any`` here; :func:`_make_run_config` gives them
    # the tagged union of the registered plugins (a subclass keeps this field order).
    strategy: Any = Field(
        description="The evolution strategy; `kind` picks one (see `asktell list`)."
    )
    evaluator: Any = Field(
        default_factory=_default_evaluator,
        description="Where candidates are evaluated; default: the in-process serial "
        "evaluator (nothing to start by hand).",
    )
    task: Any = Field(
        description="What is optimised: a test function or a Gymnasium environment."
    )
    noise: NoiseConfig = Field(default_factory=NoiseConfig, description="The shared noise source.")
    budget: BudgetConfig = Field(description="Stopping rules: whichever comes first.")
    seed: Int = Field(
        0,
        ge=0,
        description="Run seed: the strategy's sampling and the task's episodes (a "
        "plugin section with a `seed` of its own inherits this one unless it sets it).",
    )
    output: OutputConfig = Field(
        default_factory=OutputConfig, description="Run directory, checkpoints, logging."
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Python modules to import before the file is validated (e.g. "
        "['mypkg.myplugin']), so the strategies, evaluators and tasks they register are valid "
        "kinds; the current directory is searched first, as `python -m` does. The CLI's "
        "--plugin adds to this list.",
    )

    @model_validator(mode="after")
    def _cross_section_rules(self) -> RunConfigBase:
        """A plugin config with its own `seed` field inherits the run `seed` unless it is
        set explicitly; a plugin config's `check_run(run)` checks rules across sections."""
        for section in FAMILIES:
            part = getattr(self, section)
            if "seed" in type(part).model_fields and "seed" not in part.model_fields_set:
                # a copy (a caller's config object is never mutated), stored without
                # re-running this validator
                self.__dict__[section] = part.model_copy(update={"seed": self.seed})
        if self.noise.size is None:
            # resolved here, so the run's config.toml and checkpoints record the number
            self.__dict__["noise"] = self.noise.model_copy(
                update={"size": auto_table_size(self.task)}
            )
        # A plugin config may check rules that span sections (an evaluator that needs a
        # Gymnasium task, say) by defining ``check_run(run_config)``.
        for section in FAMILIES:
            hook = getattr(getattr(self, section), "check_run", None)
            if hook is not None:
                try:
                    hook(self)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{section}: {exc}") from None
        return self

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(cls, path: str | os.PathLike, overrides: list[str] = ()) -> RunConfigBase:
        """Load and validate a TOML/YAML/JSON run file, applying ``KEY=VALUE`` overrides."""
        return load_config(path, overrides)

    def to_toml(self) -> str:
        """The resolved configuration (every default filled in) as TOML."""
        return config_to_toml(self)

    # ------------------------------------------------------------------ building
    def build(self, *, x0: Any = None) -> Built:
        """Build the live task, strategy and evaluator (close it, or use ``with``).

        ``x0`` overrides the initial centre; by default the task's ``initial_params(seed)``
        (policies with a particular initialisation), else zeros.
        """
        task = self.build_task()
        strategy = self.build_strategy(task, x0=x0)
        _optional(self.evaluator, "check_strategy", None)(strategy)  # before it starts anything
        evaluator = self.evaluator.build(task)
        return Built(strategy=strategy, evaluator=evaluator, task=task, noise=strategy.noise)

    def build_task(self) -> Any:
        """The live task alone (``asktell eval`` needs no evaluator)."""
        return _call_build(self.task.build, seed=self.seed)

    def build_strategy(self, task: Any, *, x0: Any = None) -> Any:
        """The live strategy for ``task`` (its ``num_params`` sets the dimension)."""
        num_params = getattr(task, "num_params", None)
        if num_params is None:
            raise ConfigError(
                f"task {self.task.kind!r} does not say how many parameters it has "
                "('num_params' is None); set num_params in the [task] section"
            )
        noise = self.noise.build()
        try:
            noise.check_dim(int(num_params), "num_params")
        except ConfigError as exc:
            raise ConfigError(f"noise: {exc}") from None
        # Before the first large array (the initial centre, the strategy's vectors): sizes
        # that cannot fit are refused here, naming the field, not by a MemoryError later.
        check_memory(self.memory_estimate(task), "this run")
        if x0 is None:
            x0 = hooks_of(task).initial_params(self.seed)
        return self.strategy.build(num_params=int(num_params), seed=self.seed, noise=noise, x0=x0)

    def memory_estimate(self, task: Any) -> list[Allocation]:
        """The large arrays this run will allocate for the built ``task`` (see
        :mod:`asktell._memory`): each section's Config's ``estimate_bytes``."""
        num_params = int(task.num_params)
        facts = {"num_params": num_params, "num_params_value": num_params}
        # Plugin configs that are not PluginConfigs (a third party's StrictModel) have no
        # estimate: like check_run, the two methods are optional.
        facts.update(_optional(self.task, "memory_context", {})(task))
        # A strategy plugin that does not subclass StrategyConfig says nothing of its
        # population: its estimate (default none) is its own.
        context = MemoryContext(
            population_size=_optional(self.strategy, "population_for", 0)(num_params),
            noise_bytes=self.noise.table_bytes(),
            **facts,
        )
        items: list[Allocation] = []
        for section in (self.noise, self.strategy, self.task, self.evaluator):
            items.extend(_optional(section, "estimate_bytes", [])(context))
        return items

    def check(self) -> Any:
        """Every validation :meth:`build` does that needs no evaluation and starts nothing.

        Builds the task (so an unknown environment id or bad ``env_kwargs`` is found), runs
        the memory check and builds the strategy (cheap once the sizes are known to fit: the
        noise table is built on first use), and lets the evaluator's Config check the built
        strategy (``check_strategy``: its resolved population); the evaluator is not built (a Dask evaluator
        would start or reach a cluster), its options are already validated. What ``asktell
        check`` runs; returns the built strategy.
        """
        from asktell.loggers import check_loggers

        check_loggers(self.output.loggers)  # a logger's missing package, as run refuses it
        strategy = self.build_strategy(self.build_task())
        _optional(self.evaluator, "check_strategy", None)(strategy)
        return strategy


def _optional(config: Any, method: str, default: Any) -> Callable[..., Any]:
    """``config.method``, or a function returning ``default`` when the config has none."""
    found = getattr(config, method, None)
    return found if found is not None else (lambda *_: default)


def _make_run_config() -> type:
    """:class:`RunConfigBase` with each plugin section typed as the tagged union of the
    plugins registered now."""
    sections: dict[str, Any] = {
        name: Annotated[section_type(name), RunConfigBase.model_fields[name]]
        for name in FAMILIES
    }
    output = create_model(
        "OutputConfig", __base__=OutputConfig, __module__=__name__, __doc__=OutputConfig.__doc__,
        loggers=Annotated[list[section_type("logger")], OutputConfig.model_fields["loggers"]],
    )
    sections["output"] = (
        output,
        Field(default_factory=output, description=RunConfigBase.model_fields["output"].description),
    )
    return create_model(
        "RunConfig", __base__=RunConfigBase, __module__=__name__, __doc__=RunConfigBase.__doc__,
        **sections,
    )


def config_to_toml(config: StrictModel) -> str:
    """``config`` as TOML that reads back as the same config (every default filled in; the
    nulls TOML cannot write listed under :data:`NULLS_KEY`)."""
    from asktell._version import __version__

    header = (
        f"Resolved run configuration (asktell {__version__}): every default filled in.\n"
        "Operational fields (evaluator, budget, output) may be edited before `asktell resume`;\n"
        "strategy, task, noise and seed may not."
    )
    data = config.model_dump(mode="json")
    # TOML has no null: an option left out reads back as its default, which is right for
    # the options whose default is null and wrong for the others (tolfun = null).
    reread = type(config).model_validate(parse_toml(dump_toml(data))).model_dump(mode="json")
    nulls = [path for path in null_paths(data) if lookup(reread, path) is not None]
    if nulls:
        header += f"\n{NULLS_KEY}: the options set to null (TOML has no null)."
        data = {NULLS_KEY: nulls, **data}
    return dump_toml(data, header)


# --------------------------------------------------------------------------- errors
def _location(loc: tuple[Any, ...], kind_error: bool) -> str:
    parts = list(loc)
    # Tagged unions insert the tag into the location (strategy.openai_es.sigma); drop it.
    if len(parts) > 1 and parts[0] in FAMILIES and parts[1] in FAMILIES[parts[0]]:
        parts.pop(1)
    # output.loggers.0.tensorboard.dir: the logger's tag too.
    if parts[:2] == ["output", "loggers"] and len(parts) > 3 and parts[3] in LOGGERS:
        parts.pop(3)
    return dotted_location(tuple(parts), kind_error)


def format_validation_error(exc: ValidationError, source: str = "run config") -> str:
    """One line per problem: the field path, the rule and the value received."""
    return _format_validation_error(exc, source, location=_location, known_keys=_known_keys)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the table at ``loc`` (for did-you-mean on unknown keys, at any depth)."""
    parts = list(loc)
    if parts and parts[0] in FAMILIES:
        # the plugin families are looked up now: a plugin registered after RunConfig was built
        configs = plugin_configs(parts.pop(0))
        if parts and parts[0] in configs:
            return fields_at(configs[parts[0]], tuple(parts[1:]))
        if len(configs) == 1:  # a one-member union puts no tag in the location
            return fields_at(next(iter(configs.values())), tuple(parts))
        return []
    return fields_at(RunConfig, loc)


# --------------------------------------------------------------------------- entry points
def config_from_dict(
    data: dict[str, Any], overrides: list[str] = (), source: str = "run config"
) -> RunConfig:
    """Validate a dict as a :class:`RunConfig`; errors become one readable ConfigError."""
    data = apply_nulls(data, source)
    if overrides:
        data = switch_kinds(data, apply_overrides(data, list(overrides)), list(overrides))
    plugins = data.get("plugins") if isinstance(data, dict) else None
    if isinstance(plugins, list) and plugins:
        load_plugins(plugins, source=f"{source}: plugins")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_plugins(names: Any, source: str = "plugins") -> list[str]:
    """Import plugin modules by name and rebuild :class:`RunConfig` when any is new, so the
    kinds they register validate (``plugins = [...]`` in a run file, ``--plugin``)."""
    from asktell._imports import import_plugins

    imported = import_plugins(names, source=source)
    if imported:
        refresh()
    return imported


def with_changes(config: RunConfigBase, changes: dict[str, Any]) -> RunConfig:
    """A validated copy of ``config`` with ``changes`` merged in: nested tables merge, any
    other value replaces, and the whole config is validated again (a bad value raises a
    ConfigError naming the field).

    Example:
        >>> cfg = RunConfig.model_validate({"strategy": {"kind": "openai_es"},
        ...     "task": {"kind": "function"}, "budget": {"generations": 5}})
        >>> with_changes(cfg, {"output": {"dir": "runs/a"}}).output.dir
        'runs/a'
    """

    def merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                value = merged(out[key], value)
            out[key] = value
        return out

    return config_from_dict(merged(config.model_dump(mode="json"), changes))


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read, override and validate a run file. Nothing is built or started."""
    data = read_mapping(path)
    return config_from_dict(data, overrides, source=f"run config {os.fspath(path)}")


RunConfig = _make_run_config()


def refresh() -> type:
    """Rebuild :class:`RunConfig` after registering a plugin in this process (entry-point
    plugins and built-ins need no refresh). Returns the new class."""
    global RunConfig
    RunConfig = _make_run_config()
    sys.modules[__name__].RunConfig = RunConfig
    return RunConfig
