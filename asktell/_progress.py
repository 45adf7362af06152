"""Console output of a run: a rich live display, plain lines, JSON rows, or nothing.

What a person watches, on every display that shows one: the bar towards the budget that
binds (generations, env_steps or wall_seconds: whichever is nearest its end), the elapsed
time over all sessions of the run (a resumed run continues its clock), steps per second and
the ETA, the centre's latest return (kept between centre evaluations, with the generation
it is from and the target), progress inside a long generation when the evaluator reports
it (:meth:`Display.progress`), and at the end the bar where the run ended with the reason
("stopped: target return reached ..."), never a frozen fraction with an ETA. Each message
is said once.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

__all__ = ["make_display", "Display", "RunView", "format_seconds"]


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


def _steps(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summary(row: dict[str, Any]) -> str:
    """One line with the generation's own numbers."""
    parts = [
        f"gen {row['generation']}",
        f"steps {_steps(row['env_steps'])}",
        f"return mean {_num(row.get('return_mean'))} max {_num(row.get('return_max'))}",
        f"best {_num(row.get('best_return'))}",
        "s/phase ask {:.3f} eval {:.3f} tell {:.3f}".format(
            row["seconds_ask"], row["seconds_evaluate"], row["seconds_tell"]
        ),
    ]
    if row.get("num_failed"):
        parts.append(f"failed {row['num_failed']}")
    if row.get("restart_event"):  # a restart strategy's message (strategies/restarts.py)
        parts.append(str(row["restart_event"]))
    return " | ".join(parts)


class RunView:
    """What the displays show, computed the same way for all of them.

    ``elapsed`` is wall time over all sessions (``start``'s ``elapsed`` is the earlier
    sessions'); steps per second and the ETA are this session's (what the machine does now).
    """

    def __init__(self, clock: Any = time.perf_counter) -> None:
        self.clock = clock
        self.t0 = clock()
        self.offset = 0.0
        self.f0 = 0.0
        self.fraction = 0.0
        self.steps0: int | None = None
        self.steps = 0
        self.rate: float | None = None
        self.center: tuple[int, float] | None = None  # (generation, centre return)
        self.target: float | None = None
        self.generation = 0
        self.stopped: str | None = None
        self.final_elapsed: float | None = None
        self.inside: tuple[int, int] | None = None  # candidates done / population

    def start(self, fraction: float, elapsed: float, target: float | None) -> None:
        self.t0, self.offset, self.f0, self.fraction = self.clock(), elapsed, fraction, fraction
        self.target = target

    def elapsed(self) -> float:
        if self.final_elapsed is not None:
            return self.final_elapsed
        return self.offset + self.clock() - self.t0

    def update(self, row: dict[str, Any], fraction: float) -> None:
        self.fraction, self.generation, self.inside = fraction, int(row["generation"]), None
        steps = int(row["env_steps"])
        if self.steps0 is None:  # the first row of the session: rate over its generation
            self.steps0 = steps - int(row.get("generation_steps") or 0)
        self.steps = steps
        seconds = self.clock() - self.t0
        if seconds > 0 and steps > self.steps0:
            self.rate = (steps - self.steps0) / seconds
        if row.get("wall_seconds") is not None:  # the runner's clock, across sessions
            self.offset = float(row["wall_seconds"]) - seconds
        if row.get("center_return_mean") is not None:
            self.center = (self.generation, float(row["center_return_mean"]))

    def eta(self) -> float | None:
        done = self.fraction - self.f0
        if self.stopped is not None or done <= 0:
            return None
        return (self.clock() - self.t0) * (1.0 - self.fraction) / done

    def stop(self, reason: str) -> None:
        self.final_elapsed = self.elapsed()
        self.stopped = reason

    def status(self) -> str:
        """The line under the bar: rate, ETA or stop reason, the centre and the target."""
        parts = []
        if self.rate is not None:
            parts.append(f"{_steps(self.rate)} steps/s")
        if self.inside is not None:
            parts.append(f"candidates {self.inside[0]}/{self.inside[1]}")
        if self.stopped is not None:
            parts.append(f"stopped: {self.stopped}")
        else:
            parts.append(f"ETA {format_seconds(self.eta())}")
        centre = "centre -" if self.center is None else (
            f"centre {_num(self.center[1])} (gen {self.center[0]})"
        )
        if self.target is not None:
            centre += f" target {_num(self.target)}"
        parts.append(centre)
        return " | ".join(parts)

    def bar_fraction(self) -> float:
        """Where the bar ends: the budget's fraction, or all the way once stopped."""
        return 1.0 if self.stopped is not None else min(self.fraction, 1.0)


class Display:
    """Base: no output. Subclasses say each distinct message once."""

    #: whether :meth:`message` reaches the user (the CLI then does not repeat what it said)
    shows_messages = False

    def __init__(self) -> None:
        self.view = RunView()
        self._said: set[str] = set()

    def start(self, fraction: float, title: str, *, elapsed: float = 0.0,
              target: float | None = None) -> None:
        self.view.start(fraction, elapsed, target)
        self.message(title)

    def update(self, row: dict[str, Any], fraction: float) -> None:
        self.view.update(row, fraction)

    def progress(self, done: int, total: int) -> None:
        """Candidates evaluated so far in the running generation (rate-limited by callers)."""
        self.view.inside = (int(done), int(total))

    def message(self, text: str) -> None:
        if text in self._said:
            return
        self._said.add(text)
        self._say(text)

    def _say(self, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        """Something the user must learn even from a silent run (a checkpoint skipped, a
        log moved aside, a run moved to another machine): a message where messages are
        shown, else one line on stderr."""
        if self.shows_messages:
            self.message(text)
        elif text not in self._said:
            self._said.add(text)
            print(f"asktell: note: {text}", file=sys.stderr, flush=True)

    def finish(self, reason: str) -> None:
        """The run ended for ``reason``: the bar goes to its end and says why."""
        self.view.stop(reason)

    def stop(self) -> None:
        pass


class PlainDisplay(Display):
    """One line per generation (for logs and pipes)."""

    shows_messages = True

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream or sys.stdout

    def update(self, row: dict[str, Any], fraction: float) -> None:
        super().update(row, fraction)
        v = self.view
        self._say(
            f"{summary(row)} | {100 * fraction:.0f}% elapsed {format_seconds(v.elapsed())} | "
            f"{v.status()}"
        )

    #: seconds between two "candidates done" lines inside a generation (a log, not a screen)
    progress_every = 10.0

    def progress(self, done: int, total: int) -> None:
        super().progress(done, total)
        now = self.view.clock()
        if now - getattr(self, "_progress_at", self.view.t0) >= self.progress_every:
            self._progress_at = now
            self._say(f"gen {self.view.generation + 1}: {done}/{total} candidates evaluated, "
                      f"elapsed {format_seconds(self.view.elapsed())}")

    def finish(self, reason: str) -> None:
        super().finish(reason)
        v = self.view
        # A reason that names its generation already (a target check's) is not told it again.
        where = "" if reason.endswith(f"(generation {v.generation})") else (
            f"generation {v.generation}, ")
        self.message(
            f"stopped: {reason} ({where}{100 * min(v.fraction, 1.0):.0f}% "
            f"of the budget, elapsed {format_seconds(v.elapsed())})"
        )

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class JsonDisplay(PlainDisplay):
    """Rows as JSON on stdout, messages on stderr."""

    def update(self, row: dict[str, Any], fraction: float) -> None:
        self.view.update(row, fraction)
        print(json.dumps(row), file=self.stream, flush=True)

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


class _Lines:
    """The text under the bar (re-rendered by rich at each refresh)."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.row = "waiting for the first generation"

    def __rich__(self) -> Any:
        from rich.text import Text

        # plain text: no markup parsing of the numbers
        return Text(self.view.status() + "\n" + self.row)


def _rich_columns(view: RunView) -> list[Any]:
    from rich.progress import BarColumn, ProgressColumn, TaskProgressColumn, TextColumn
    from rich.text import Text

    class Elapsed(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(format_seconds(view.elapsed()), style="progress.elapsed")

    return [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("elapsed"), Elapsed()]


class RichDisplay(Display):
    """A live bar with elapsed time, and below it the status and the latest generation."""

    shows_messages = True

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import Progress

        self.console = console or Console(stderr=True)
        self.bar = Progress(*_rich_columns(self.view), console=self.console)
        self.lines = _Lines(self.view)
        self.live = Live(Group(self.bar, self.lines), console=self.console)
        self.task_id: Any = None

    def start(self, fraction: float, title: str, *, elapsed: float = 0.0,
              target: float | None = None) -> None:
        self.view.start(fraction, elapsed, target)
        self.message(title)
        self.task_id = self.bar.add_task("starting", total=1.0, completed=fraction)
        self.live.start()

    def update(self, row: dict[str, Any], fraction: float) -> None:
        super().update(row, fraction)
        self.lines.row = summary(row)
        self.bar.update(self.task_id, completed=self.view.bar_fraction(),
                        description=f"gen {row['generation']}")

    def finish(self, reason: str) -> None:
        super().finish(reason)
        if self.task_id is not None:
            self.bar.update(self.task_id, completed=1.0, description="done")
        self.live.refresh()

    def _say(self, text: str) -> None:
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
