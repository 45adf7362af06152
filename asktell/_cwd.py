"""The current directory importable, and plugin modules imported by name.

``python -m asktell`` puts the current directory first on ``sys.path``; the ``asktell``
console script does not, so ``env_id = "myenvs:Reach1D-v0"`` with ``myenvs.py`` beside the
run file failed with ``ModuleNotFoundError``. The CLI calls :func:`cwd_on_path` once, so env
ids, function paths and plugins resolve as they would under ``python -m``. Worker processes
started with ``spawn`` (Dask's nannies, async vector environments) inherit the parent's
``sys.path`` through multiprocessing's preparation data, so they find the same modules.

Engineer B4's ``asktell/_imports.py`` (``import_object``) resolves run-file functions; the
two may be merged: this module only handles the path and whole-module plugin imports.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from asktell.errors import ConfigError

__all__ = ["cwd_on_path", "import_plugins"]

#: plugin modules whose kinds RunConfig already knows (refreshed once each, not on every
#: config_from_dict: a refresh makes a new RunConfig class)
_KNOWN: set[str] = set()


def cwd_on_path() -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does), once."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_plugins(names: Iterable[str], source: str = "plugins") -> list[str]:
    """Import each plugin module (``"mypkg.myplugin"``) so its ``@register`` decorators run,
    then rebuild :class:`asktell.config.RunConfig` so the new kinds validate.

    A module that is not found, or that fails while importing, is a :class:`ConfigError`
    naming the module and the cause (the CLI exits 2). Returns the names imported now.
    """
    imported = []
    for name in names:
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise ConfigError(
                f"{source}: each entry must be a module name like 'mypkg.myplugin'; got {name!r}"
            )
        name = name.strip()
        if name in _KNOWN:
            continue
        if name in sys.modules:  # imported by the caller: its kinds still need a refresh
            imported.append(name)
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                raise ConfigError(
                    f"{source}: plugin module {name!r} was not found (looked in the current "
                    f"directory {os.getcwd()!r} and the installed packages)"
                ) from None
            raise ConfigError(
                f"{source}: plugin module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any error inside a plugin is the plugin's
            raise ConfigError(
                f"{source}: plugin module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        imported.append(name)
    if imported:
        from asktell.config import refresh

        refresh()
        _KNOWN.update(imported)
    return imported
