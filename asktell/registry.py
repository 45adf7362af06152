"""Registries of plugins (strategies, evaluators, tasks), keyed by snake_case names.

Built-in plugins register when their package is imported; plugins from other distributions
register through the entry-point groups ``asktell.strategies``, ``asktell.evaluators`` and
``asktell.tasks`` (``name = "package.module:Class"``) and become valid ``kind``s.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, TypeVar

from asktell.errors import ConfigError

__all__ = ["Registry", "STRATEGIES", "EVALUATORS", "TASKS"]

T = TypeVar("T")


class Registry:
    """A name -> plugin mapping that answers typos with "did you mean ...?"."""

    def __init__(self, family: str, group: str, builtin_module: str):
        self.family = family
        self.group = group
        self._builtin_module = builtin_module
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
        importlib.import_module(self._builtin_module)
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
                f"unknown {self.family} {name!r}{hint} (known: {', '.join(self.names())})"
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


STRATEGIES = Registry("strategy", "asktell.strategies", "asktell.strategies")
EVALUATORS = Registry("evaluator", "asktell.evaluators", "asktell.evaluators")
TASKS = Registry("task", "asktell.tasks", "asktell.tasks")
