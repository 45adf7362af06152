"""Option declarations: a plugin's Config model is the one place its options live.

Each plugin class (strategy, evaluator, task) has a ``config_class``: a pydantic model with a
``kind: Literal["<registry name>"]`` field and every option declared once, with its type,
default, rule (``ge``, ``gt``, ``Literal``) and ``description``. That one declaration serves:

* run files: ``asktell.config`` assembles the tagged unions of ``RunConfig`` from the
  registries, so registering a plugin makes its ``kind`` valid;
* Python: the plugin's constructor validates its options through the same model
  (:meth:`PluginConfig.validate_options`), so ``OpenAIES(sigma=-1)`` and
  ``sigma = -1`` in a run file are refused by the same rule with the same words;
* documentation: :func:`declare_options` writes the constructor's signature and the
  docstring's option list from the model, and ``docs/configuration.md`` is generated from it.

Cross-field rules are ``model_validator`` methods with a docstring (the docstring reaches
``docs/configuration.md``). A default that depends on something outside the section (the
dimension, say) is ``None``, resolved by the plugin.

Build signatures by family:

* strategy: ``build(*, num_params, seed, noise, x0=None) -> Strategy``
* evaluator: ``build(task) -> Evaluator``
* task: ``build() -> Task`` (the task exposes ``num_params``)
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import textwrap
from collections.abc import Callable, Iterable
import types
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from asktell.errors import ConfigError

__all__ = [
    "StrictModel",
    "PluginConfig",
    "Int",
    "Float",
    "Bool",
    "declare_options",
    "format_validation_error",
    "validation_problems",
    "NestedConfigError",
    "short_repr",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- strict scalars
def _integer(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise PydanticCustomError("strict_int", "Input should be an integer")
    return int(value)


def _number(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise PydanticCustomError("strict_float", "Input should be a number")
    return float(value)


def _boolean(value: Any) -> Any:
    if not isinstance(value, (bool, np.bool_)):
        raise PydanticCustomError("strict_bool", "Input should be true or false")
    return bool(value)


#: An integer: Python or numpy ints; never a bool, a float or a string ("32" is refused).
Int = Annotated[int, BeforeValidator(_integer)]
#: A real number: ints and floats (numpy's too); never a bool or a string.
Float = Annotated[float, BeforeValidator(_number)]
#: ``true`` or ``false`` only ("yes", 1 and 0 are refused).
Bool = Annotated[bool, BeforeValidator(_boolean)]


class StrictModel(BaseModel):
    """Unknown keys are errors, NaN/inf are rejected, defaults are validated too."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, validate_default=True, validate_assignment=True
    )


# --------------------------------------------------------------------------- errors
def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 1 MB value is not echoed)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str | None:
    if isinstance(value, (dict, list, tuple, BaseModel)) or dataclasses.is_dataclass(value):
        return None
    return short_repr(value)


def _dotted(loc: tuple[Any, ...], kind_error: bool = False) -> str:
    # Unions insert a member tag (``literal['adam','sgd']``, ``is-instance[Optimizer]``)
    # into the location; the user wrote the field, so drop the tag.
    parts = [str(p) for p in loc if not (isinstance(p, str) and "[" in p)]
    if kind_error:
        parts.append("kind")
    return ".".join(parts) or "(top level)"


#: Error types whose message already says what was received (or where nothing was).
_NO_VALUE = ("unknown_kind", "missing_kind", "value_error", "missing")


class NestedConfigError(ValueError):
    """Problems in a table that a model validator validates itself (the inner strategy of
    restarts, an optimizer's options), each with its path inside the model.

    Raised from a ``model_validator``, it reaches :func:`format_validation_error` through
    pydantic's error context, which joins the model's own location to each path: the user
    reads ``strategy.strategy.sigma: ...`` once, not the model's location followed by a
    message that repeats part of it. Outside validation it is a plain ``ValueError`` whose
    text is ``"path: message; ..."``.

    Args:
        problems: ``(path, message)`` pairs; ``path`` is dotted and relative to the model
            (``""``: the model itself).
    """

    def __init__(self, problems: Iterable[tuple[str, str]]):
        self.problems = [(str(path), str(msg)) for path, msg in problems]
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.problems))


def join_path(base: str, path: str) -> str:
    """``base.path``, either part possibly empty."""
    return ".".join(part for part in (base, path) if part)


def validation_problems(
    exc: ValidationError,
    *,
    location: Callable[[tuple[Any, ...], bool], str] | None = None,
    known_keys: Callable[[tuple[Any, ...]], list[str]] | None = None,
) -> list[tuple[str, str]]:
    """``(path, message)`` per problem of ``exc`` (``path`` ``""`` at the top level); the
    arguments are :func:`format_validation_error`'s. A :class:`NestedConfigError` becomes
    one problem per nested path, joined to the location of the model that raised it."""
    where_of = location or _dotted
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        nested = (err.get("ctx") or {}).get("error")
        if isinstance(nested, NestedConfigError):
            base = where_of(loc, False) if loc else ""
            problems.extend((join_path(base, path), msg) for path, msg in nested.problems)
            continue
        kind_error = err["type"] in ("unknown_kind", "missing_kind")
        where = where_of(loc, kind_error) if loc or kind_error else ""
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a setting here)"
            known = known_keys(loc[:-1]) if known_keys is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            elif known:
                # no "of <path>" at the top: a nested model's top is not the user's
                of = f" of {where_of(loc[:-1], False)}" if loc[:-1] else " here"
                msg += f"; the settings{of} are: {', '.join(known)}"
            problems.append((where, msg))
            continue
        got = _shown(err.get("input"))
        tail = f"; got {got}" if got is not None and err["type"] not in _NO_VALUE else ""
        problems.append((where, f"{msg}{tail}"))
    return problems


def format_validation_error(
    exc: ValidationError,
    source: str,
    *,
    location: Callable[[tuple[Any, ...], bool], str] | None = None,
    known_keys: Callable[[tuple[Any, ...]], list[str]] | None = None,
) -> str:
    """One line per problem: the field path, the rule and the value received.

    Args:
        exc: the pydantic error.
        source: what was validated (``"run config x.toml"``, ``"OpenAIES arguments"``).
        location: turns an error location into a dotted path (default: joined with dots).
        known_keys: the field names at a location, for "did you mean" on unknown keys.
    """
    lines = [f"invalid {source}:"]
    for path, msg in validation_problems(exc, location=location, known_keys=known_keys):
        lines.append(f"  {path or '(top level)'}: {msg}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plugin options
class PluginConfig(StrictModel):
    """Base of every plugin's Config: the one declaration of the plugin's options.

    A subclass declares ``kind: Literal["name"] = "name"`` and one field per option. The
    plugin's constructor calls :meth:`validate_options`, so Python callers and run files
    share every rule and every error message.
    """

    @classmethod
    def validate_options(
        cls: type[T], owner: str, options: dict[str, Any], *, context: Any = None
    ) -> T:
        """Validate constructor options; :class:`ConfigError` names field, rule and value.

        ``owner`` names the plugin in the message (``"OpenAIES"``). Unknown keywords are
        refused with a did-you-mean, like unknown keys in a run file. ``context`` reaches
        the model validators (a strategy passes ``{"num_params": d}``, which a run-file
        section does not know).
        """
        try:
            return cls.model_validate(options, context=context)  # type: ignore[attr-defined]
        except ValidationError as exc:
            fields = option_names(cls)
            raise ConfigError(
                format_validation_error(
                    exc, f"{owner} arguments",
                    known_keys=lambda loc: fields if not loc else fields_at(cls, loc),
                )
            ) from None

    #: The plugin class whose options this model declares (set by :func:`declare_options`),
    #: so a Config kept in a module of its own builds its plugin without importing it back.
    plugin: ClassVar[type | None] = None

    def estimate_bytes(self, context: Any) -> list[Any]:
        """The large arrays this plugin will allocate, as :class:`asktell._memory.Allocation`
        records naming the field behind each (default: none).

        ``context`` is an :class:`asktell._memory.MemoryContext` (the task's ``num_params``,
        the population, ...). Called before anything is built past the task, so a run whose
        sizes cannot fit is refused by :func:`asktell._memory.check_memory` up front. Lower
        bounds: count the big arrays, not Python's overheads.
        """
        return []

    def result_settings(self) -> dict[str, Any] | None:
        """For an evaluator's Config: the options its returns depend on when they are not
        the serial evaluator's bit for bit, or ``None`` (the default) when they are.

        ``asktell resume`` refuses a change of these (the run would go on along another
        trajectory); an evaluator whose returns are the serial rule's may change freely.
        """
        return None

    def memory_context(self, task: Any) -> dict[str, Any]:
        """A task Config's part of the :class:`asktell._memory.MemoryContext` for its built
        ``task``: which field sets ``num_params`` (default: ``task.num_params``) and facts
        like ``obs_dim``."""
        return {}

    def options(self) -> dict[str, Any]:
        """The validated options as keyword arguments (``kind`` left out)."""
        return {name: getattr(self, name) for name in option_names(type(self))}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation may hold (through Optional, unions,
    Annotated and lists)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _kind_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("kind")
    return None if field is None else field.default


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the table at ``loc`` inside ``model`` (empty when ``loc`` leads
    to no model), for did-you-mean on an unknown key at any depth. ``loc`` is a pydantic
    error location: list indices and the tags tagged unions insert are followed too."""
    models: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):  # an index into a list of tables
            continue
        tagged = [m for m in models if _kind_of(m) == part]
        if len(models) > 1 and tagged:  # a tagged union's member
            models = tagged
            continue
        if len(models) != 1 or part not in models[0].model_fields:
            return []
        models = _models_in(models[0].model_fields[part].annotation)
    return list(models[0].model_fields) if len(models) == 1 else []


def option_names(config_class: type) -> list[str]:
    """The option fields of a Config model, in declaration order (``kind`` excluded)."""
    return [name for name in config_class.model_fields if name != "kind"]


def declare_options(
    config_class: type[PluginConfig], *, positional: Iterable[str] = ()
) -> Callable[[type[T]], type[T]]:
    """Class decorator: the plugin's options are the fields of ``config_class``.

    Sets ``cls.config_class``; writes ``cls.__signature__`` (the explicit parameters of
    ``__init__`` followed by every option with its declared default, so ``help()``, IDEs and
    ``inspect.signature`` show them); and appends an "Options" section to the class
    docstring built from the field descriptions. ``positional`` names options that may
    also be passed by position after the explicit parameters (kept for callers who wrote
    ``OpenAIES(3, 8, 0.1, 0.05)``); the constructor receives them through
    :func:`collect_options`.
    """
    positional = tuple(positional)

    def decorate(cls: type[T]) -> type[T]:
        cls.config_class = config_class  # type: ignore[attr-defined]
        config_class.plugin = cls
        cls.positional_options = positional  # type: ignore[attr-defined]
        init = inspect.signature(cls.__init__)  # type: ignore[misc]
        fixed = [
            p
            for p in list(init.parameters.values())[1:]  # not ``self``: the class is called
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        fields = config_class.model_fields
        params = []
        for p in fixed:
            if p.kind is p.KEYWORD_ONLY:
                continue
            params.append(p)
        for name in positional:
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=fields[name].default
                )
            )
        for p in fixed:
            if p.kind is p.KEYWORD_ONLY:
                params.append(p)
        explicit = {p.name for p in fixed}
        for name in option_names(config_class):
            if name in positional or name in explicit:
                continue
            default = fields[name].get_default(call_default_factory=True)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
        cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        cls.__doc__ = (inspect.cleandoc(cls.__doc__ or "") + "\n\n" + options_doc(config_class))
        return cls

    return decorate


def options_doc(config_class: type[PluginConfig]) -> str:
    """The "Options" docstring section of a Config model (name, default, description)."""
    lines = [f"Options (declared by :class:`{config_class.__name__}`, also the run-file keys):"]
    for name in option_names(config_class):
        field = config_class.model_fields[name]
        default = field.get_default(call_default_factory=True)
        text = f"{name} (default {default!r}): {field.description or ''}".rstrip(": ")
        lines.append(textwrap.indent(textwrap.fill(text, 88, subsequent_indent="    "), "    "))
    return "\n".join(lines)


def collect_options(cls: type, args: tuple[Any, ...], options: dict[str, Any]) -> dict[str, Any]:
    """Merge options passed by position (``cls.positional_options``) into ``options``."""
    names = getattr(cls, "positional_options", ())
    if len(args) > len(names):
        raise ConfigError(
            f"{cls.__name__} takes {len(names)} options by position ({', '.join(names)}); "
            f"got {len(args)}: pass the rest by name"
        )
    merged = dict(options)
    for name, value in zip(names, args):
        if name in merged:
            raise ConfigError(f"{cls.__name__} got {name!r} both by position and by name")
        merged[name] = value
    return merged
