"""The plugin sections of a run file, assembled from the registries.

Each family (strategy, evaluator, task; loggers inside ``output``) becomes a tagged union of
the registered plugins' Config models keyed by ``kind``, with a before-validator that answers
an unknown kind with "did you mean"; :func:`switch_kinds` lets ``--set family.kind=...``
change a kind cleanly. :mod:`asktell.config` builds ``RunConfig`` from these.
"""

from __future__ import annotations

import difflib
import sys
from typing import Annotated, Any, Union, get_args

from pydantic import BeforeValidator, Discriminator
from pydantic_core import PydanticCustomError

from asktell.config_base import StrictModel, short_repr
from asktell.errors import ConfigError
from asktell.registry import EVALUATORS, LOGGERS, STRATEGIES, TASKS, Registry

__all__ = ["DEFAULT_EVALUATOR", "FAMILIES", "NESTED_FAMILIES", "plugin_configs", "section_type", "switch_kinds"]

#: The evaluator section may be left out (or given without ``kind``): the embedded default.
DEFAULT_EVALUATOR = "serial"

FAMILIES: dict[str, Registry] = {"strategy": STRATEGIES, "evaluator": EVALUATORS, "task": TASKS}
#: Plugin families that live inside a section (``output.loggers``), not at the top level.
NESTED_FAMILIES: dict[str, Registry] = {"logger": LOGGERS}


def _kind_of(config_class: type) -> str | None:
    field = getattr(config_class, "model_fields", {}).get("kind")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def plugin_configs(family: str) -> dict[str, type]:
    """``{kind: config_class}`` of every registered plugin of ``family`` with a run-file config."""
    registry = {**FAMILIES, **NESTED_FAMILIES}[family]
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
                {"message": f"unknown {family} {short_repr(kind)}{hint} (known: {', '.join(kinds)})"},
            )
        return value

    return check


def section_type(family: str) -> Any:
    configs = plugin_configs(family)
    kinds = sorted(configs)
    if not configs:
        raise ConfigError(f"no {family} plugin with a config is registered")
    checker = BeforeValidator(_kind_checker(family, kinds))
    members = [configs[k] for k in kinds]
    if len(members) == 1:
        return Annotated[members[0], checker]
    return Annotated[Union[tuple(members)], Discriminator("kind"), checker]


def switch_kinds(before: dict[str, Any], after: dict[str, Any], overrides: list[str]) -> dict:
    """``--set evaluator.kind=dask`` on a file whose evaluator sets options ``dask`` lacks:
    drop those options (each named in a notice on stderr) rather than refuse the switch.

    Options the user set with ``--set`` in the same command are kept (a wrong one is then an
    error naming it); a kind that is not registered is left to validation to name.
    """
    from asktell._files import parse_override

    paths = [parse_override(text)[0] for text in overrides]
    for family in FAMILIES:
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
