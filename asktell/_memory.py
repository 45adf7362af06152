"""Sizes checked against memory before anything is allocated.

A run's big arrays (the noise table, each generation's seeds and returns, the centre and the
optimiser's moments, full-covariance matrices, the policy weights of every environment slot,
the environments themselves) are known from its config once the task says how many
parameters it has. Each plugin Config answers :meth:`~asktell.config_base.PluginConfig.estimate_bytes`
with :class:`Allocation` records naming the field that causes them; :func:`check_memory`
refuses a run whose total exceeds the memory available, naming the biggest causes, their
values and the estimate, *before* the first large ``np.empty`` (a 10**12 population used to
die of ``MemoryError`` after the run folder existed; 10**9 environments took 30 s to).

Estimates are lower bounds of the large arrays only (Python objects, caches and numpy
temporaries come on top), so a refused run would certainly not have fit, and a run that fits
is never refused for being near the limit.

Available memory: ``ASKTELL_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix; ``off``
disables the check), else the smallest of ``MemAvailable`` in ``/proc/meminfo``, the cgroup
limit (v2 ``memory.max`` minus ``memory.current``) and the address-space rlimit, else
``os.sysconf`` free pages; when none is known the check is skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from typing import Any

from asktell.config_base import short_repr
from asktell.errors import ConfigError

__all__ = [
    "Allocation",
    "MemoryContext",
    "available_bytes",
    "check_memory",
    "format_bytes",
    "ENV_VAR",
]

#: Environment variable overriding the memory the check allows (``off`` disables it).
ENV_VAR = "ASKTELL_MEMORY_LIMIT"


@dataclasses.dataclass(frozen=True)
class Allocation:
    """``bytes`` that ``field`` (a dotted run-file path) at ``value`` makes the run allocate."""

    field: str
    value: Any
    bytes: int
    what: str


@dataclasses.dataclass(frozen=True)
class MemoryContext:
    """What a Config needs to size its arrays, known once the task is built.

    Attributes:
        num_params: the task's parameter count.
        num_params_field: the run-file field that sets ``num_params`` (``task.num_params``,
            ``task.hidden_sizes``, ...), and ``num_params_value`` its value: an allocation
            proportional to ``num_params`` is charged to it.
        population_size: candidates per generation (the strategy's, resolved).
        obs_dim: values per observation (None for tasks without environments).
        weight_bytes: bytes of one candidate's policy weights in an environment slot.
        noise_bytes: bytes of the noise table each process builds (0 for counter noise).
    """

    num_params: int
    num_params_field: str = "task.num_params"
    num_params_value: Any = None
    population_size: int = 0
    obs_dim: int | None = None
    weight_bytes: int = 0
    noise_bytes: int = 0

    def per_param(self, count: int, what: str, itemsize: int = 8) -> Allocation:
        """``count`` vectors of ``num_params`` numbers, charged to the field behind it."""
        value = self.num_params if self.num_params_value is None else self.num_params_value
        return Allocation(
            self.num_params_field, value, count * itemsize * self.num_params, what
        )


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def format_bytes(n: float) -> str:
    """``3.6 TiB``, ``512 MiB``, ``80 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _limit_from_env() -> tuple[int | None, str] | None:
    raw = os.environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return None
    text = raw.strip().lower()
    if text in ("off", "none", "0"):
        return None, f"{ENV_VAR}={raw.strip()}"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", text)
    if not m:
        raise ConfigError(
            f"{ENV_VAR} must be a number of bytes, optionally with K, M, G or T (e.g. 8G), or "
            f"'off'; got {short_repr(raw)}"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)]), f"{ENV_VAR}={raw.strip()}"


def _meminfo() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            raw = fh.read().strip()
        if raw == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            current = int(fh.read().strip())
        return max(int(raw) - current, 0)
    except (OSError, ValueError):
        return None


def _rlimit() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _sysconf() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None


def available_bytes() -> tuple[int | None, str]:
    """``(bytes, where the number comes from)``; ``(None, why)`` when the check is off or
    nothing is known."""
    override = _limit_from_env()
    if override is not None:
        return override
    found = [
        (value, source)
        for value, source in (
            (_meminfo(), "MemAvailable in /proc/meminfo"),
            (_cgroup(), "the cgroup's memory.max"),
            (_rlimit(), "the address-space limit (ulimit -v)"),
        )
        if value is not None
    ]
    if not found:
        value = _sysconf()
        return (value, "free pages (sysconf)") if value is not None else (None, "unknown")
    return min(found, key=lambda item: item[0])


def check_memory(allocations: Iterable[Allocation], what: str = "this run") -> None:
    """Refuse ``allocations`` whose total exceeds the available memory.

    The error names the fields behind the largest allocations (their values, their bytes),
    the total, the memory available and where that number comes from.
    """
    items = [a for a in allocations if a.bytes > 0]
    total = sum(a.bytes for a in items)
    if not items:
        return
    limit, source = available_bytes()
    if limit is None or total <= limit:
        return
    # The same field may cause several arrays: name each field once, with its share.
    by_field: dict[str, list[Allocation]] = {}
    for item in items:
        by_field.setdefault(item.field, []).append(item)
    ranked = sorted(by_field.values(), key=lambda group: -sum(a.bytes for a in group))
    causes = []
    for group in ranked[:3]:
        share = sum(a.bytes for a in group)
        if share * 20 < total and causes:
            break
        whats = ", ".join(dict.fromkeys(a.what for a in group))
        causes.append(
            f"{group[0].field}={short_repr(group[0].value)} needs about {format_bytes(share)} "
            f"({whats})"
        )
    raise ConfigError(
        f"{what} would allocate at least {format_bytes(total)} but {format_bytes(limit)} of "
        f"memory is available ({source}): " + "; ".join(causes)
        + f". Reduce it, or set {ENV_VAR} to allow more"
    )
