"""Import a user's object by path (``"package.module:name"``), the current directory importable.

Run files name user code by import path (``function = "objectives:rosenbrock"``). Python users
expect ``python -m`` semantics: a module beside them imports without ``PYTHONPATH``. The
directory is put on ``sys.path`` for that one import only and taken off again, so asktell never
leaves the user's working directory shadowing installed packages for the rest of the process.
:class:`ImportedObject` remembers the path and the directory and pickles as those two strings,
so a Dask worker (another process, perhaps another working directory) imports the same object
the same way instead of needing the module installed.

The ``asktell`` command also puts the current directory on ``sys.path`` for the whole run
(:func:`cwd_on_path`: ``env_id = "myenvs:Reach1D-v0"``), and plugin modules named in a run
file or by ``--plugin`` are imported by :func:`import_plugins`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any

from asktell.errors import ConfigError

__all__ = ["ImportedObject", "import_object", "check_import_path", "cwd_on_path", "import_plugins"]

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# sys.path is process-wide: two threads importing at once must not remove each other's entry.
_SYS_PATH_LOCK = threading.Lock()


def check_import_path(path: Any, field: str = "function") -> str:
    """The path if it reads ``module.sub:name``; else a :class:`ConfigError` naming ``field``."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise ConfigError(
            f"{field!r} must be an import path 'package.module:name' (e.g. "
            f"'objectives:rosenbrock'); got {path!r}"
        )
    return path


def import_object(path: str, base_dir: str | None = None, field: str = "function") -> Any:
    """The object named by ``"package.module:attr"``, with ``base_dir`` importable meanwhile.

    Args:
        path: ``module`` and attribute, separated by a colon; the attribute may be dotted
            (``"mod:Class.method"``).
        base_dir: a directory put first on ``sys.path`` for this import only (default: the
            current directory, as ``python -m`` does). Modules already imported stay cached.
        field: the option's name, used in error messages.

    Raises:
        ConfigError: a malformed path, a module that cannot be found (naming the directory
            searched), or a missing attribute (with a did-you-mean from the module's names).
    """
    check_import_path(path, field)
    module_name, attr = path.split(":")
    base = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    with _SYS_PATH_LOCK:
        added = base not in sys.path
        if added:
            sys.path.insert(0, base)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (
                module_name == exc.name or module_name.startswith(exc.name + ".")
            ):
                raise  # the user's module imports something missing: that error is theirs
            raise ConfigError(
                f"{field!r}: cannot import module {module_name!r} of {path!r}: no such module "
                f"on sys.path (searched {base} first, then the installed packages)"
            ) from None
        finally:
            if added:
                sys.path.remove(base)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{field!r}: module {module_name!r} has no attribute {part!r} (from "
                f"{path!r}){hint}"
            )
        obj = getattr(obj, part)
    return obj


class ImportedObject:
    """A callable imported by path that pickles as ``(path, base_dir)``, not by its code.

    A worker process unpickling it imports the module itself (with ``base_dir`` importable),
    which works for a module that is not installed, where pickling the function by reference
    would fail with ``ModuleNotFoundError`` on the worker.
    """

    def __init__(self, path: str, base_dir: str | None = None, field: str = "function"):
        self.path = path
        self.base_dir = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
        self.field = field
        self.obj = import_object(path, self.base_dir, field)
        if not callable(self.obj):
            raise ConfigError(
                f"{field!r}: {path!r} is a {type(self.obj).__name__}, not a callable"
            )

    def __call__(self, *args, **kwargs):
        return self.obj(*args, **kwargs)

    def __reduce__(self):
        return (ImportedObject, (self.path, self.base_dir, self.field))

    def __repr__(self) -> str:
        return f"ImportedObject({self.path!r})"


#: plugin modules whose kinds RunConfig already knows (refreshed once each, not on every
#: config_from_dict: a refresh makes a new RunConfig class)
_KNOWN: set[str] = set()


def cwd_on_path() -> None:
    """Put the current directory first on ``sys.path`` (as ``python -m`` does), once."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_plugins(names: Iterable[str], source: str = "plugins") -> list[str]:
    """Import each plugin module (``"mypkg.myplugin"``) so its ``@register`` decorators run.
    The caller rebuilds :class:`asktell.config.RunConfig` when this returns any name
    (:func:`asktell.config.load_plugins` does both), so the new kinds validate.

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
                    f"directory {os.getcwd()!r} and the installed packages); a run keeps the "
                    "module's name, not its folder: resume or evaluate it from the folder it "
                    "was started in, or add that folder to PYTHONPATH"
                ) from None
            raise ConfigError(
                f"{source}: plugin module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any error inside a plugin is the plugin's
            raise ConfigError(
                f"{source}: plugin module {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from None
        imported.append(name)
    _KNOWN.update(imported)
    return imported
