"""Run configs: one validated file describes a whole run.

A :class:`RunConfig` is a ``strategy``, an ``evaluator`` and a ``task`` (each a tagged union
keyed by ``kind``, one model per registered plugin), the ``noise`` source, a ``budget``, a
``seed`` and ``output`` settings. The unions are assembled from
:mod:`asktell.registry` when this module is imported, so every registered plugin (built-in,
or from another package through the ``asktell.strategies`` / ``asktell.evaluators`` /
``asktell.tasks`` entry points) is a valid ``kind`` without a central list. A plugin
registered later in the same process becomes valid after :func:`refresh`.

(One module past 400 lines on purpose: the sections, the union assembly, the error locations
that undo the unions' tags and the loaders all read the same registries.)

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
import difflib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BeforeValidator, Discriminator, Field, ValidationError, create_model, model_validator
from pydantic_core import PydanticCustomError

from asktell._files import apply_overrides, dump_toml, read_mapping
from asktell._memory import Allocation, MemoryContext, check_memory
from asktell.config_base import Float, Int, StrictModel
from asktell.config_base import _dotted as dotted_location
from asktell.config_base import format_validation_error as _format_validation_error
from asktell.errors import ConfigError
from asktell.noise import DEFAULT_TABLE_SIZE, NoiseSource, CounterNoise, NoiseTable
from asktell.protocol import hooks_of
from asktell.registry import EVALUATORS, LOGGERS, STRATEGIES, TASKS, Registry

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
]

#: Sections that define *what* is optimised and how; a resumed run may not change them.
#: Everything else (evaluator, budget, output) is operational and may change on resume.
PROTECTED_SECTIONS = ("strategy", "task", "noise", "seed")

#: The evaluator section may be left out (or given without ``kind``): the embedded default.
DEFAULT_EVALUATOR = "serial"

_FAMILIES: dict[str, Registry] = {"strategy": STRATEGIES, "evaluator": EVALUATORS, "task": TASKS}
#: Plugin families that live inside a section (``output.loggers``), not at the top level.
_NESTED_FAMILIES: dict[str, Registry] = {"logger": LOGGERS}


class NoiseConfig(StrictModel):
    """The shared noise every candidate is decoded from (Salimans et al. 2017)."""

    kind: Literal["table", "counter"] = Field(
        "table",
        description="'table': one block of Gaussian noise built once per process, candidates "
        "are slices of it (fast). 'counter': regenerate each perturbation from (seed, key) "
        "with Philox (no memory; for huge policies or small machines).",
    )
    seed: Int = Field(0, ge=0, description="Seed of the noise; every process sees the same noise.")
    size: Int | None = Field(
        None,
        ge=2,
        description="Number of float32 values in the noise table (4 bytes each); must exceed "
        "the number of parameters. Ignored by 'counter'. Default (auto, resolved when the run "
        "file is read and written into the run's config.toml): for a function task, 64 values "
        "per parameter rounded up to a power of two, at least 2**20 (4 MiB) and at most the "
        "paper's 2**25; for every other task (Gymnasium, Atari, plugins) the paper's 2**25 "
        "(128 MiB).",
    )

    def resolved_size(self) -> int:
        """``size``, or the paper's table when it was left to a run to resolve."""
        return DEFAULT_TABLE_SIZE if self.size is None else self.size

    def table_bytes(self) -> int:
        """Bytes of the table each process builds (0 for counter noise)."""
        return 0 if self.kind == "counter" else 4 * self.resolved_size()

    def estimate_bytes(self, context: Any) -> list[Allocation]:
        """The table, in this process (evaluator workers build their own: their estimate)."""
        size = self.resolved_size()
        return [Allocation("noise.size", size, self.table_bytes(), "the noise table")]

    def build(self) -> NoiseSource:
        if self.kind == "counter":
            return CounterNoise(seed=self.seed)
        return NoiseTable(seed=self.seed, size=self.resolved_size())


#: The smallest automatic table: 2**20 float32 (4 MiB) keeps a million distinct offsets, far
#: more than a function run draws (population x generations) before rows would repeat often.
_MIN_AUTO_TABLE = 1 << 20
#: Values per parameter in an automatic table: offsets range over size - num_params, so 64x
#: keeps 63/64 of the table usable as distinct starting points.
_AUTO_TABLE_PER_PARAM = 64


def auto_table_size(task: Any) -> int:
    """The noise table a run gets when ``noise.size`` is not set (see its description).

    Only function tasks get a problem-sized table: the golden runs and every Gymnasium or
    Atari run keep the paper's 2**25 values, so their noise (and results) are unchanged.
    """
    num_params = getattr(task, "num_params", None)
    if getattr(task, "kind", None) != "function" or not isinstance(num_params, int):
        return DEFAULT_TABLE_SIZE
    wanted = max(_MIN_AUTO_TABLE, _AUTO_TABLE_PER_PARAM * num_params)
    size = 1 << (wanted - 1).bit_length()
    if size > DEFAULT_TABLE_SIZE:  # a dimension the paper's table still serves
        size = max(DEFAULT_TABLE_SIZE, 1 << (2 * num_params - 1).bit_length())
    return size


class BudgetConfig(StrictModel):
    """When to stop: whichever limit is reached first. At least one must be set."""

    generations: Int | None = Field(None, ge=1, description="Stop after this many generations.")
    env_steps: Int | None = Field(
        None,
        ge=1,
        description="Stop once the candidates have used this many environment steps (function "
        "evaluations for function tasks); centre evaluations are not counted.",
    )
    wall_seconds: Float | None = Field(
        None, gt=0, description="Stop after this much wall-clock time (summed over resumes)."
    )
    target_return: Float | None = Field(
        None,
        description="Stop as solved once the centre (never a candidate) reaches this mean "
        "return over target_episodes episodes and then again over as many fresh episodes (a "
        "stream of episode seeds no scheduled evaluation uses). The check runs when a "
        "scheduled centre evaluation (output.eval_every) reaches the target or, when none is "
        "scheduled, when a candidate does; a check that fails to confirm is logged "
        "(target_check) and the run goes on.",
    )
    target_episodes: Int | None = Field(
        None,
        ge=1,
        description="Episodes of the centre target_return is judged on, and again confirmed "
        "on. Default: output.eval_episodes, at least 10 (a function task is deterministic: "
        "one evaluation whatever the number).",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> BudgetConfig:
        if all(
            v is None
            for v in (self.generations, self.env_steps, self.wall_seconds, self.target_return)
        ):
            raise ValueError(
                "set at least one of generations, env_steps, wall_seconds, target_return; "
                "got none"
            )
        return self


class OutputConfig(StrictModel):
    """Where the run is written and how often it checkpoints, logs and evaluates."""

    dir: str | None = Field(
        None,
        description="Run directory. Default: runs/<strategy>-<task>-<date>-<time>. The "
        "`asktell run --out DIR` option overrides it.",
    )
    checkpoint_every: Int = Field(
        10, ge=1, description="Write a checkpoint every this many generations (and at the end)."
    )
    keep_checkpoints: Int = Field(
        3, ge=1, description="How many of the newest checkpoints to keep on disk."
    )
    log_format: Literal["auto", "rich", "plain", "json", "none"] = Field(
        "auto",
        description="Console output: 'rich' (live progress display), 'plain' (one line per "
        "generation), 'json' (each log row as JSON), 'none'; 'auto' is 'rich' on a terminal "
        "and 'plain' otherwise. The per-generation JSONL log file is always written.",
    )
    eval_every: Int = Field(
        0,
        ge=0,
        description="Evaluate the centre (noise-free policy) every this many generations, "
        "through the run's evaluator; 0 never. Centre evaluations are not counted in "
        "budget.env_steps.",
    )
    eval_episodes: Int = Field(1, ge=1, description="Episodes per centre evaluation.")
    # Typed ``Any`` here; :func:`_make_run_config` gives it the tagged union of LOGGERS.
    loggers: list[Any] = Field(
        default_factory=list,
        description="Loggers that mirror each log row beside log.jsonl, one table each "
        "(`[[output.loggers]]` with `kind = \"csv\"`, `\"tensorboard\"`, `\"mlflow\"` or "
        "`\"wandb\"`); see docs/loggers.md.",
    )


def _kind_of(config_class: type) -> str | None:
    field = getattr(config_class, "model_fields", {}).get("kind")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def plugin_configs(family: str) -> dict[str, type]:
    """``{kind: config_class}`` of every registered plugin of ``family`` with a run-file config."""
    registry = {**_FAMILIES, **_NESTED_FAMILIES}[family]
    out: dict[str, type] = {}
    for name, plugin in registry.items():
        config_class = getattr(plugin, "config_class", None)
        if config_class is None:
            continue
        kind = _kind_of(config_class)
        if kind != name:
            raise ConfigError(
                f"{family} plugin {name!r} has config_class {config_class.__name__} whose 'kind' "
                f"must be Literal[{name!r}]; got {kind!r}"
            )
        out[name] = config_class
    return out


def _kind_checker(family: str, kinds: list[str]):
    """A before-validator that answers an unknown ``kind`` with did-you-mean."""

    def check(value: Any) -> Any:
        if isinstance(value, StrictModel):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "section_type",
                "{message}",
                {"message": f"must be a table of {family} settings with a 'kind'"},
            )
        if "kind" not in value:
            if family == "evaluator":
                return {"kind": DEFAULT_EVALUATOR, **value}
            raise PydanticCustomError(
                "missing_kind",
                "{message}",
                {"message": f"'kind' is required; choose one of: {', '.join(kinds)}"},
            )
        kind = value["kind"]
        if kind not in kinds:
            close = difflib.get_close_matches(str(kind), kinds, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise PydanticCustomError(
                "unknown_kind",
                "{message}",
                {"message": f"unknown {family} {kind!r}{hint} (known: {', '.join(kinds)})"},
            )
        return value

    return check


def _section_type(family: str) -> Any:
    configs = plugin_configs(family)
    kinds = sorted(configs)
    if not configs:
        raise ConfigError(f"no {family} plugin with a config is registered")
    checker = BeforeValidator(_kind_checker(family, kinds))
    members = [configs[k] for k in kinds]
    if len(members) == 1:
        return Annotated[members[0], checker]
    return Annotated[Union[tuple(members)], Discriminator("kind"), checker]


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
        for section in _FAMILIES:
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
        for section in _FAMILIES:
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
        noise table is built on first use); the evaluator is not built (a Dask evaluator
        would start or reach a cluster), its options are already validated. What ``asktell
        check`` runs; returns the built strategy.
        """
        return self.build_strategy(self.build_task())


def _optional(config: Any, method: str, default: Any) -> Callable[..., Any]:
    """``config.method``, or a function returning ``default`` when the config has none."""
    found = getattr(config, method, None)
    return found if found is not None else (lambda *_: default)


def _make_run_config() -> type:
    """:class:`RunConfigBase` with each plugin section typed as the tagged union of the
    plugins registered now."""
    sections: dict[str, Any] = {
        name: Annotated[_section_type(name), RunConfigBase.model_fields[name]]
        for name in _FAMILIES
    }
    output = create_model(
        "OutputConfig", __base__=OutputConfig, __module__=__name__, __doc__=OutputConfig.__doc__,
        loggers=Annotated[list[_section_type("logger")], OutputConfig.model_fields["loggers"]],
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
    from asktell._version import __version__

    header = (
        f"Resolved run configuration (asktell {__version__}): every default filled in.\n"
        "Operational fields (evaluator, budget, output) may be edited before `asktell resume`;\n"
        "strategy, task, noise and seed may not."
    )
    return dump_toml(config.model_dump(mode="json"), header)


# --------------------------------------------------------------------------- errors
def _location(loc: tuple[Any, ...], kind_error: bool) -> str:
    parts = list(loc)
    # Tagged unions insert the tag into the location (strategy.openai_es.sigma); drop it.
    if len(parts) > 1 and parts[0] in _FAMILIES and parts[1] in _FAMILIES[parts[0]]:
        parts.pop(1)
    # output.loggers.0.tensorboard.dir: the logger's tag too.
    if parts[:2] == ["output", "loggers"] and len(parts) > 3 and parts[3] in LOGGERS:
        parts.pop(3)
    return dotted_location(tuple(parts), kind_error)


def format_validation_error(exc: ValidationError, source: str = "run config") -> str:
    """One line per problem: the field path, the rule and the value received."""
    return _format_validation_error(exc, source, location=_location, known_keys=_known_keys)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model at ``loc`` (for did-you-mean on unknown keys)."""
    model: Any = RunConfig
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, str) and part in _FAMILIES and model is RunConfig:
            configs = plugin_configs(part)
            if parts and parts[0] in configs:
                model = configs[parts.pop(0)]
                continue
            if len(configs) == 1:  # a one-member union puts no tag in the location
                model = next(iter(configs.values()))
                continue
            return []
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return []
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) else None
        if model is None or not hasattr(model, "model_fields"):
            return []
    return list(getattr(model, "model_fields", {}))


# --------------------------------------------------------------------------- entry points
def config_from_dict(
    data: dict[str, Any], overrides: list[str] = (), source: str = "run config"
) -> RunConfig:
    """Validate a dict as a :class:`RunConfig`; errors become one readable ConfigError."""
    if overrides:
        data = _switch_kinds(data, apply_overrides(data, list(overrides)), list(overrides))
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


def _switch_kinds(before: dict[str, Any], after: dict[str, Any], overrides: list[str]) -> dict:
    """``--set evaluator.kind=dask`` on a file whose evaluator sets options ``dask`` lacks:
    drop those options (each named in a notice on stderr) rather than refuse the switch.

    Options the user set with ``--set`` in the same command are kept (a wrong one is then an
    error naming it); a kind that is not registered is left to validation to name.
    """
    from asktell._files import parse_override

    paths = [parse_override(text)[0] for text in overrides]
    for family in _FAMILIES:
        if [family, "kind"] not in paths:
            continue
        old, new = before.get(family), after.get(family)
        if not isinstance(new, dict) or not isinstance(old, dict):
            continue
        old_kind = old.get("kind", DEFAULT_EVALUATOR if family == "evaluator" else None)
        config_class = plugin_configs(family).get(new.get("kind"))
        if config_class is None or old_kind == new.get("kind"):
            continue
        explicit = {p[1] for p in paths if len(p) > 1 and p[0] == family}
        dropped = [k for k in new if k not in config_class.model_fields and k not in explicit]
        for key in dropped:
            del new[key]
        if dropped:
            names = ", ".join(f"{family}.{k}" for k in dropped)
            print(
                f"note: --set {family}.kind={new['kind']}: dropped {names} (not options of "
                f"{family} {new['kind']!r}; set them with --set if it has its own)",
                file=sys.stderr,
            )
    return after


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


def diff_protected(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two config dumps in the sections a resume may not change."""

    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}.{k}"))
            return out or {prefix: {}}
        return {prefix: value}

    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for section in PROTECTED_SECTIONS:
        a.update(flat(old.get(section), section))
        b.update(flat(new.get(section), section))
    missing = object()
    return [
        f"{key}: {a.get(key, missing)!r} in the checkpoint, {b.get(key, missing)!r} now".replace(
            repr(missing), "(absent)"
        )
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]


RunConfig = _make_run_config()


def refresh() -> type:
    """Rebuild :class:`RunConfig` after registering a plugin in this process (entry-point
    plugins and built-ins need no refresh). Returns the new class."""
    global RunConfig
    RunConfig = _make_run_config()
    sys.modules[__name__].RunConfig = RunConfig
    return RunConfig
