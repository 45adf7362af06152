"""Console output of a run: a rich live display, plain lines, JSON rows, or nothing."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

__all__ = ["make_display", "Display", "format_seconds"]


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _num(value: Any, fmt: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, fmt)


def _steps(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)


def summary(row: dict[str, Any]) -> str:
    """One line with the numbers a person watches."""
    parts = [
        f"gen {row['generation']}",
        f"steps {_steps(row['env_steps'])}",
        f"return mean {_num(row.get('return_mean'))} max {_num(row.get('return_max'))}",
    ]
    if row.get("center_return_mean") is not None:
        parts.append(f"centre {_num(row['center_return_mean'])}")
    parts.append(f"best {_num(row.get('best_return'))}")
    parts.append(
        "s/phase ask {:.3f} eval {:.3f} tell {:.3f}".format(
            row["seconds_ask"], row["seconds_evaluate"], row["seconds_tell"]
        )
    )
    if row.get("num_failed"):
        parts.append(f"failed {row['num_failed']}")
    if row.get("restart_event"):  # a restart strategy's message (strategies/restarts.py)
        parts.append(str(row["restart_event"]))
    return " | ".join(parts)


class Display:
    """Base: no output."""

    #: whether :meth:`message` reaches the user (the CLI then does not repeat what it said)
    shows_messages = False

    def start(self, fraction: float, title: str) -> None:
        pass

    def update(self, row: dict[str, Any], fraction: float) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


class _Eta:
    """Remaining time from the progress made in this session (resumes start afresh)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.f0: float | None = None

    def __call__(self, fraction: float) -> float | None:
        if self.f0 is None:
            self.f0 = fraction
            self.t0 = time.perf_counter()
            return None
        done = fraction - self.f0
        if done <= 0:
            return None
        return (time.perf_counter() - self.t0) * (1.0 - fraction) / done


class PlainDisplay(Display):
    shows_messages = True

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.eta = _Eta()

    def start(self, fraction: float, title: str) -> None:
        self.eta(fraction)
        self.message(title)

    def update(self, row: dict[str, Any], fraction: float) -> None:
        eta = self.eta(fraction)
        self.message(f"{summary(row)} | {100 * fraction:.0f}% ETA {format_seconds(eta)}")

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class JsonDisplay(PlainDisplay):
    def update(self, row: dict[str, Any], fraction: float) -> None:
        print(json.dumps(row), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class _Stats:
    def __init__(self) -> None:
        self.text = "waiting for the first generation"

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self.text)  # plain text: no markup parsing of the numbers


class RichDisplay(Display):
    """A live progress bar with ETA, and below it the latest generation's numbers."""

    shows_messages = True

    def __init__(self) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.stats = _Stats()
        self.live = Live(Group(self.progress, self.stats), console=self.console)
        self.task_id: Any = None

    def start(self, fraction: float, title: str) -> None:
        self.console.print(title, markup=False, highlight=False)
        self.task_id = self.progress.add_task("starting", total=1.0, completed=fraction)
        self.live.start()

    def update(self, row: dict[str, Any], fraction: float) -> None:
        self.stats.text = summary(row)
        self.progress.update(
            self.task_id, completed=min(fraction, 1.0), description=f"gen {row['generation']}"
        )

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        self.live.stop()


def make_display(log_format: str) -> Display:
    """The display for ``output.log_format`` (``auto``: rich on a terminal, else plain)."""
    if log_format == "auto":
        log_format = "rich" if sys.stderr.isatty() and sys.stdout.isatty() else "plain"
    if log_format == "rich":
        return RichDisplay()
    if log_format == "plain":
        return PlainDisplay()
    if log_format == "json":
        return JsonDisplay()
    return Display()
