"""``nulls``: the run file's list of options set to null, which TOML cannot write.

``config.toml`` is TOML, and TOML has no null: an option left out reads back as its default,
right for the options whose default is null and wrong for the others (``tolfun = null``
turns a stopping rule off). :func:`asktell.config.config_to_toml` lists those under
:data:`NULLS_KEY`, and :func:`apply_nulls` sets them back when a run file is read.
"""

from __future__ import annotations

import re
from typing import Any

from asktell._files import apply_overrides
from asktell.config_base import short_repr
from asktell.errors import ConfigError

__all__ = ["NULLS_KEY", "apply_nulls", "null_paths", "lookup"]


#: The run file's top-level key that sets options to null, which TOML cannot write: a list
#: of dotted option names (``nulls = ["strategy.tolfun"]``). ``config.toml`` lists there every
#: option that is null in the run but would read back as its non-null default.
NULLS_KEY = "nulls"
_OPTION_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def apply_nulls(data: Any, source: str) -> Any:
    """``data`` with the options its :data:`NULLS_KEY` names set to null (the key removed)."""
    if not isinstance(data, dict) or NULLS_KEY not in data:
        return data
    names = data[NULLS_KEY]
    if not isinstance(names, list) or not all(
        isinstance(n, str) and _OPTION_PATH.fullmatch(n) for n in names
    ):
        raise ConfigError(
            f"{source}: {NULLS_KEY} must be a list of dotted option names, the options set to "
            f"null (e.g. {NULLS_KEY} = [\"strategy.tolfun\"]); got {short_repr(names)}"
        )
    rest = {k: v for k, v in data.items() if k != NULLS_KEY}
    return apply_overrides(rest, [f"{name}=null" for name in names])


def null_paths(value: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the null values in nested tables (lists are not entered)."""
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        out.extend([path] if item is None else null_paths(item, path + "."))
    return out


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` of nested tables (``None`` where there is none)."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data
