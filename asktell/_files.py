"""Reading and writing run files: strict YAML, TOML, ``--set`` overrides, atomic writes.

Kept apart from :mod:`asktell.config` so the models stay readable. Nothing here executes
anything a file says: YAML goes through a safe loader that also rejects duplicate keys, and
TOML's own parser already rejects them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from asktell.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "read_mapping",
    "parse_yaml",
    "parse_toml",
    "dump_toml",
    "parse_override",
    "apply_overrides",
    "atomic_write_bytes",
    "fsync_dir",
    "check_depth",
    "MAX_DEPTH",
]


# --------------------------------------------------------------------------- YAML
class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no python tags, nothing executed) that rejects duplicate keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # unhashable key (a list as a key): let the base class complain
            continue
        line = key_node.start_mark.line + 1
        if first is not None:
            raise ConfigError(f"duplicate key {key!r} on line {line} (first given on line {first})")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# PyYAML follows YAML 1.1, which reads `010` as 8 (octal), `1:30` as 90 (base 60), `yes`,
# `on` and `off` as booleans, `2024-01-02` as a date, and `1e-5` (no dot) as a string. Run
# files are read by the YAML 1.2 core schema instead, as TOML and Python read them: decimal
# integers (underscores allowed, leading zeros decimal), `0o` octal and `0x` hex, floats
# with or without a dot, `.inf`/`.nan`, `true`/`false`, `null`/`~`; anything else is a string
# (which a strict number or flag field then refuses by name).
_StrictLoader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
):
    _StrictLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    """YAML 1.2 core integers: a leading zero is decimal (1.1 read `010` as 8)."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _compose_node(loader: _StrictLoader, parent: Any, index: Any) -> Any:
    # An alias (*name) makes one node appear many times: a ~1 KB file of nested aliases
    # ("billion laughs") expands into billions of values once anything walks the data.
    # Run files are plain data, so an alias is refused where it is read.
    if loader.check_event(yaml.events.AliasEvent):
        event = loader.peek_event()
        raise ConfigError(
            f"YAML alias *{event.anchor}{_mark(event.start_mark)} is not allowed: run files are "
            "plain data; write the value out"
        )
    return yaml.SafeLoader.compose_node(loader, parent, index)


_StrictLoader.compose_node = _compose_node  # type: ignore[method-assign]

#: How deeply a run file may nest tables and lists (a real one nests 3 or 4 levels).
MAX_DEPTH = 32


def check_depth(data: Any, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than ``limit`` (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise ConfigError(
                f"{source} nests tables or lists more than {limit} levels deep; got at least "
                f"{depth}"
            )
        stack.extend((child, depth + 1) for child in children)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML safely: python tags, aliases and duplicate keys are errors, nothing is
    executed."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(
            f"{source} nests tables or lists too deeply to read (a run file may nest {MAX_DEPTH} "
            "levels)"
        ) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(
            f"{source}: YAML tag not allowed ({exc.problem}{_mark(exc.problem_mark)}); run files "
            "are plain data: python tags and other custom tags are rejected"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    except ValueError as exc:  # an integer of more than 4300 digits (int() refuses it)
        raise ConfigError(_unreadable(source, exc)) from None


def _unreadable(source: str, exc: ValueError) -> str:
    text = str(exc).split(";")[0]
    return f"{source} holds a value that cannot be read as a number ({text[:200]})"


def _mark(mark: Any) -> str:
    return f" on line {mark.line + 1}" if mark is not None else ""


# --------------------------------------------------------------------------- TOML
def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError(
            f"{source} nests tables or lists too deeply to read (a run file may nest {MAX_DEPTH} "
            "levels)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}{_toml_key_hint(text, exc)}") from None
    except ValueError as exc:  # an integer of more than 4300 digits (int() refuses it)
        raise ConfigError(_unreadable(source, exc)) from None


def _toml_key_hint(text: str, exc: Exception) -> str:
    """Name the key of a "Cannot overwrite a value" error (tomllib gives only a position)."""
    match = re.search(r"at line (\d+)", str(exc))
    if not match or "overwrite" not in str(exc) and "twice" not in str(exc):
        return ""
    lines = text.splitlines()
    number = int(match.group(1))
    line = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    key = line.split("=", 1)[0].strip().strip("[]").strip() if line else ""
    return f" (duplicate key {key!r})" if key else ""


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run file (``.toml``, ``.yaml``/``.yml`` or ``.json``) into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text") from None
    suffix = p.suffix.lower()
    if suffix == ".toml":
        data = parse_toml(text, str(p))
    elif suffix in (".yaml", ".yml"):
        data = parse_yaml(text, str(p))
    elif suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs)
        except RecursionError:
            raise ConfigError(
                f"{p} nests tables or lists too deeply to read (a run file may nest "
                f"{MAX_DEPTH} levels)"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from None
        except ConfigError as exc:  # a duplicate key
            raise ConfigError(f"{p}: {exc}") from None
        except ValueError as exc:  # an integer of more than 4300 digits
            raise ConfigError(_unreadable(str(p), exc)) from None
    else:
        raise ConfigError(
            f"config file {str(p)!r} must end in .toml, .yaml, .yml or .json; got {suffix!r}"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a table of settings; got {type(data).__name__}")
    check_depth(data, str(p))
    return data


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {key!r} (a JSON object names each key once)")
        out[key] = value
    return out


def _toml_key(key: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):  # TOML bare keys are ASCII only
        return key
    return _toml_string(key)


def _toml_string(text: str) -> str:
    # A TOML basic string: backslash, quote and control characters (DEL included) escaped.
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise ConfigError(f"cannot write a {type(value).__name__} to TOML: {value!r}")


def dump_toml(data: dict[str, Any], header: str = "") -> str:
    """Write a nested dict as TOML (``None`` values are left out: TOML has no null)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")

    def table(prefix: str, mapping: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in mapping.items() if v is not None and not isinstance(v, dict)]
        tables = [(k, v) for k, v in mapping.items() if isinstance(v, dict)]
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        if prefix and (scalars or not tables):
            lines.append("")
        for k, v in tables:
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    top_scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for k, v in top_scalars.items():
        if v is not None:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    if top_scalars:
        lines.append("")
    table("", {k: v for k, v in data.items() if isinstance(v, dict)})
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"strategy.sigma=0.05"`` -> ``(["strategy", "sigma"], 0.05)``.

    The value is read as a YAML scalar or flow collection (``0.05``, ``true``, ``[64, 64]``,
    ``{a: 1}``, ``text``), through the same safe loader as run files.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. strategy.sigma=0.05); got {text!r}")
    path = key.split(".")
    if any(not part for part in path):
        raise ConfigError(f"--set key {key!r} has an empty part")
    value = parse_yaml(raw, f"--set {key}") if raw.strip() else ""
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY=VALUE`` override applied (dotted keys nest)."""
    out = json.loads(json.dumps(data, default=str))  # a deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where!r} is {child!r}, not a table")
            node = child
        node[path[-1]] = value
    return out


# --------------------------------------------------------------------------- atomic writes
def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where the OS says it (Linux); else the
    set-and-restore dance (brief, and only where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Temp file in the same directory, fsync, ``os.replace``, then fsync of the directory. The
    file gets the mode ``open()`` would give it (0666 less the umask: 0644 usually), not
    ``mkstemp``'s private 0600, so run files are as readable as any other tool's output.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
