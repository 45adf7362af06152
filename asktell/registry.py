"""Registries of plugins (strategies, evaluators, tasks, loggers), keyed by snake_case names.

One registration style for every family: the plugin's own module decorates the class,
``@STRATEGIES.register("openai_es")``, ``@EVALUATORS.register("dask")``,
``@TASKS.register("gym")``, ``@LOGGERS.register("csv")``. A registry imports its built-in
modules (a declared list) on its first lookup, so importing :mod:`asktell` loads no plugin
and no optional back-end. Plugins from other distributions register through the entry-point
groups ``asktell.strategies``, ``asktell.evaluators``, ``asktell.tasks`` and
``asktell.loggers`` (``name = "package.module:Class"``) and become valid ``kind``s.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from asktell.config_base import short_repr
from asktell.errors import ConfigError

__all__ = ["Registry", "STRATEGIES", "EVALUATORS", "TASKS", "LOGGERS"]

T = TypeVar("T")


class Registry:
    """A name -> plugin mapping that answers typos with "did you mean ...?".

    Args:
        family: what the plugins are, for messages (``"strategy"``).
        group: the entry-point group of plugins from other distributions.
        builtin_modules: the modules whose ``@register`` decorators define the built-in
            plugins; imported on the first lookup, in order (one module may be given as a
            plain string).
    """

    def __init__(self, family: str, group: str, builtin_modules: str | tuple[str, ...]):
        self.family = family
        self.group = group
        if isinstance(builtin_modules, str):
            builtin_modules = (builtin_modules,)
        self.builtin_modules = tuple(builtin_modules)
        self._items: dict[str, Any] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@STRATEGIES.register("openai_es")``."""

        def decorate(obj: T) -> T:
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                raise ConfigError(f"{self.family} {name!r} is already registered to {existing!r}")
            self._items[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> Any:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), list(self._items), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown {self.family} {short_repr(name)}{hint} (known: {', '.join(self.names())})"
            ) from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, Any]]:
        self._load()
        return iter(sorted(self._items.items()))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


STRATEGIES = Registry("strategy", "asktell.strategies", ("asktell.strategies",))
EVALUATORS = Registry("evaluator", "asktell.evaluators", ("asktell.evaluators",))
# asktell.gym and asktell.atari import gymnasium and ale_py only when a task is built.
TASKS = Registry(
    "task", "asktell.tasks", ("asktell.tasks.function", "asktell.gym.task", "asktell.atari.task")
)
# The logger modules import tensorboard, mlflow and wandb only when a logger is opened.
LOGGERS = Registry(
    "logger",
    "asktell.loggers",
    (
        "asktell.loggers.csv_file",
        "asktell.loggers.tensorboard",
        "asktell.loggers.mlflow",
        "asktell.loggers.wandb",
    ),
)
