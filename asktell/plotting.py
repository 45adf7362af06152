"""Learning curves of one or more runs (``asktell plot``); needs the ``plot`` extra.

Each run is drawn against its task's own unit of work (left) and wall time (right): the
population's mean return as a line with its best return lighter, and the centre evaluations
as markers. What the axes say comes from the resolved ``config.toml`` in the run directory:

* the x axis counts function evaluations (``kind = "function"``), emulator frames (Atari)
  or environment steps (Gymnasium and anything else);
* a function run minimises ``f``, so it is drawn as the loss ``f = -return``; the y axis is
  logarithmic when every value is positive and they span two decades or more (a converged
  run would otherwise look flat at 0), unless ``log_y`` forces it either way;
* ``budget.target_return`` is drawn as a horizontal line.

``aggregate=True`` draws the runs as seeds of one experiment: each run's series is
interpolated linearly (:func:`numpy.interp`) onto a common grid of 200 points spanning the x
range *all* runs cover (from the largest first x to the smallest last x, so no run is
extrapolated), and the figure shows the mean across runs with a band: the min-max envelope
(``band="minmax"``, default) or mean +- one standard deviation (``band="std"``).

Why each run ended is on the figure, from its stop record (:func:`asktell.runlog.read_stop`):
a note under the panels gives each run's ``stop_reason`` and the generation it stopped at
(the first :data:`NOTE_RUNS` runs; a run without a stop record is still going, was
interrupted or died, and the note says so);
with several runs each run's legend also says which rule stopped it, and an aggregate's
legend counts the runs per rule.
"""

from __future__ import annotations

import os
import sys
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from asktell._extras import require
from asktell.errors import ConfigError
from asktell.runlog import read_log_records

__all__ = ["BANDS", "build_figure", "plot_runs", "run_axes"]

#: The spreads ``aggregate`` can draw.
BANDS = ("minmax", "std")
#: Points of the common x grid of an aggregate plot.
GRID_POINTS = 200
#: An automatic log axis needs the values to span this ratio (two decades).
LOG_SPAN = 100.0
#: Characters per line of the stop note under the panels, and the runs it lists.
NOTE_WIDTH = 140
NOTE_RUNS = 8
#: What a run without a stop record is (the log ends on a generation row).
NO_STOP = "no stop record (still running, interrupted or died)"


@dataclass(frozen=True)
class RunAxes:
    """What one run's figure says: x label, whether y is a loss, the target line."""

    x_label: str
    loss: bool
    target: float | None

    @property
    def y_label(self) -> str:
        return "loss f(x) = -return" if self.loss else "return"

    def y(self, value: float) -> float:
        return -value if self.loss else value


def run_axes(run_dir: str | os.PathLike) -> RunAxes:
    """Read ``run_dir/config.toml`` for the task's unit and the target (defaults: a Gym run
    without a target when the file is missing or unreadable)."""
    try:
        with open(Path(run_dir) / "config.toml", "rb") as fh:
            cfg = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return RunAxes("environment steps", False, None)
    kind = str(cfg.get("task", {}).get("kind", ""))
    target = cfg.get("budget", {}).get("target_return")
    label = {"function": "function evaluations", "atari": "emulator frames"}.get(
        kind, "environment steps"
    )
    return RunAxes(label, kind == "function", None if target is None else float(target))


def _series(rows: list[dict[str, Any]], x: str, y: str, sign: float) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r[x], sign * r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _read_logs(
    run_dirs: list[Any], on_skip: Callable[[str], None] | None
) -> tuple[list[tuple[Path, list]], list[dict[str, Any] | None]]:
    """Each run's ``(directory, generation rows)`` and its stop record (or ``None``)."""
    logs, stops = [], []
    for d in run_dirs:
        path = Path(d)
        if not path.is_dir():
            raise ConfigError(f"plot: run directory {str(path)!r} does not exist")
        rows, stop, skipped = read_log_records(d)
        if skipped:
            text = (f"{str(d)!r}: skipped {len(skipped)} log line(s) that do not parse: "
                    + "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else ""))
            if on_skip is None:
                warnings.warn(text, stacklevel=3)
            else:
                on_skip(text)
        if not rows:
            raise ConfigError(f"run directory {str(path)!r} has no logged generation yet")
        logs.append((path, rows))
        stops.append(stop)
    return logs, stops


def _stop_rule(stop: dict[str, Any] | None) -> str:
    return "no stop record" if stop is None else str(stop.get("stop_rule", "unknown rule"))


def _stop_text(stop: dict[str, Any] | None) -> str:
    """``stopped at generation 130: <stop_reason>``, or :data:`NO_STOP`."""
    if stop is None:
        return NO_STOP
    return f"stopped at generation {stop.get('generation', '?')}: {stop.get('stop_reason', '?')}"


def _stop_legend(names: list[str], stops: list, aggregate: bool) -> list[str]:
    """Legend entries for the stop records: per run (``name: stopped by target_return at
    generation 130``) or, for an aggregate, the runs counted per rule."""
    if aggregate:
        counts = Counter(_stop_rule(stop) for stop in stops)
        return ["stopped by: " + ", ".join(
            f"{rule} ({n} run{'s' if n > 1 else ''})" for rule, n in counts.most_common()
        )]
    return [
        f"{name}: {NO_STOP}" if stop is None else
        f"{name}: stopped by {_stop_rule(stop)} at generation {stop.get('generation', '?')}"
        for name, stop in zip(names, stops)
    ]


def _stop_note(names: list[str], stops: list) -> str:
    """The note under the panels: each run's stop reason, wrapped (the first
    :data:`NOTE_RUNS` runs; the legend counts them all)."""
    lines = []
    for name, stop in list(zip(names, stops))[:NOTE_RUNS]:
        text = _stop_text(stop) if len(names) == 1 else f"{name}: {_stop_text(stop)}"
        lines.append(textwrap.fill(text, NOTE_WIDTH, subsequent_indent="    "))
    if len(names) > NOTE_RUNS:
        lines.append(f"... and {len(names) - NOTE_RUNS} more runs (asktell status RUN_DIR "
                     "says why each stopped)")
    return "\n".join(lines)


def _common_axes(logs: list[tuple[Path, list]]) -> RunAxes:
    found = [run_axes(path) for path, _ in logs]
    if len({(a.x_label, a.loss) for a in found}) > 1:
        names = ", ".join(f"{p.name}: {a.x_label}" for (p, _), a in zip(logs, found))
        raise ConfigError(f"plot: the runs count different things and cannot share axes ({names})")
    targets = {a.target for a in found if a.target is not None}
    return RunAxes(found[0].x_label, found[0].loss, targets.pop() if len(targets) == 1 else None)


def _want_log(values: list[np.ndarray], log_y: bool | None) -> bool:
    if log_y is not None:
        return log_y
    flat = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    if flat.size == 0 or np.any(flat <= 0):
        return False
    return float(flat.max() / flat.min()) >= LOG_SPAN


def _aggregate(runs: list[tuple[np.ndarray, np.ndarray]], band: str):
    """Mean and band of ``runs`` on the common grid, or ``None`` if they share no x range."""
    if not runs or any(x.size == 0 for x, _ in runs):
        return None  # a series some run lacks (no centre evaluations) is not averaged
    lo, hi = max(x[0] for x, _ in runs), min(x[-1] for x, _ in runs)
    if hi < lo:
        return None
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    ys = np.stack([np.interp(grid, x, y) for x, y in runs])
    mean = ys.mean(axis=0)
    if band == "std":
        std = ys.std(axis=0)
        return grid, mean, mean - std, mean + std
    return grid, mean, ys.min(axis=0), ys.max(axis=0)


def _draw_runs(axes: Any, panels: Any, logs: list, sign: float, labels: list[str] | None) -> list:
    """Each run's curves; returns the y arrays drawn (for the log-scale decision)."""
    drawn = []
    for i, (path, rows) in enumerate(logs):
        label = labels[i] if labels else path.name
        color = f"C{i % 10}"
        for ax, (x, _) in zip(axes, panels):
            xs, ys = _series(rows, x, "return_mean", sign)
            ax.plot(xs, ys, color=color, label=f"{label} (population mean)")
            xs, best = _series(rows, x, "return_max", sign)
            ax.plot(xs, best, color=color, alpha=0.3, linewidth=0.8,
                    label=f"{label} (population best)")
            xs, cy = _series(rows, x, "center_return_mean", sign)
            if xs.size:
                ax.plot(xs, cy, "o--", color=color, markersize=3, label=f"{label} (centre)")
            drawn += [ys, best, cy]
    return drawn


def _draw_aggregate(axes: Any, panels: Any, logs: list, sign: float, label: str, band: str) -> list:
    """Mean and band across runs of the population mean and of the centre's return."""
    drawn = []
    spread = "min-max" if band == "minmax" else "+-1 std"
    for ax, (x, _) in zip(axes, panels):
        for key, style, name, color in (("return_mean", "-", "population mean", "C0"),
                                        ("center_return_mean", "--", "centre", "C1")):
            agg = _aggregate([_series(rows, x, key, sign) for _, rows in logs], band)
            if agg is None:
                continue
            grid, mean, low, high = agg
            ax.plot(grid, mean, style, color=color, label=f"{label}: {name}, mean")
            ax.fill_between(grid, low, high, color=color, alpha=0.2,
                            label=f"{label}: {name}, {spread}")
            drawn += [low, high]
    return drawn


def build_figure(
    run_dirs: list[str | os.PathLike],
    *,
    labels: list[str] | None = None,
    title: str | None = None,
    on_skip: Callable[[str], None] | None = None,
    log_y: bool | None = None,
    aggregate: bool = False,
    band: str = "minmax",
) -> Any:
    """The figure :func:`plot_runs` saves (a :class:`matplotlib.figure.Figure`).

    Args:
        log_y: ``True``/``False`` force a log/linear y axis; ``None`` decides (see module).
        aggregate: draw the runs as seeds: mean and band on a common grid (see module).
        band: ``"minmax"`` or ``"std"``, the spread drawn by ``aggregate``.
    """
    if not run_dirs:
        raise ConfigError("plot needs at least one run directory")
    if band not in BANDS:
        raise ConfigError(f"plot 'band' must be one of {BANDS}; got {band!r}")
    if aggregate and len(run_dirs) < 2:
        raise ConfigError(f"plot --aggregate needs at least 2 runs (seeds); got {len(run_dirs)}")
    if labels is not None and len(labels) != (1 if aggregate else len(run_dirs)):
        want = "1 label (the aggregate's)" if aggregate else f"{len(run_dirs)} labels"
        raise ConfigError(f"plot got {len(labels)} labels; expected {want}")
    require("matplotlib", "asktell plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    logs, stops = _read_logs(run_dirs, on_skip)
    info = _common_axes(logs)
    sign = -1.0 if info.loss else 1.0
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("env_steps", info.x_label), ("wall_seconds", "wall time (s)"))
    if aggregate:
        drawn = _draw_aggregate(axes, panels, logs, sign, labels[0] if labels else
                                f"{len(logs)} runs", band)
    else:
        drawn = _draw_runs(axes, panels, logs, sign, labels)
    target = None if info.target is None else sign * info.target
    if target is not None:
        drawn.append(np.array([target]))
    use_log = _want_log(drawn, log_y)
    for ax, (_, xlabel) in zip(axes, panels):
        if target is not None:
            ax.axhline(target, color="k", linestyle=":", linewidth=1, label=f"target {target:g}")
        if use_log:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(info.y_label)
    # one legend for both panels, outside the axes so it never hides data
    handles, names = axes[0].get_legend_handles_labels()
    run_names = [path.name for path, _ in logs] if aggregate or not labels else labels
    if aggregate or len(logs) > 1:  # one run's reason is the note alone
        for entry in _stop_legend(run_names, stops, aggregate):
            handles.append(Line2D([], [], linestyle="none"))  # text only, no line
            names.append(entry)
    fig.legend(handles, names, loc="outside right upper", fontsize="small")
    fig.suptitle(title or ("mean and spread across runs" if aggregate else "learning curves"))
    fig.supxlabel(_stop_note(run_names, stops), fontsize="small", ha="left", x=0.01)
    return fig


def _image_suffixes() -> tuple[str, ...]:
    """The file types matplotlib's default canvas writes (``.png``, ``.pdf``, ``.svg``, ...)."""
    require("matplotlib", "asktell plot")
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(f".{kind}" for kind in sorted(FigureCanvasBase.get_supported_filetypes()))


def plot_runs(
    run_dirs: list[str | os.PathLike],
    output: str | os.PathLike,
    *,
    labels: list[str] | None = None,
    title: str | None = None,
    on_skip: Callable[[str], None] | None = None,
    log_y: bool | None = None,
    aggregate: bool = False,
    band: str = "minmax",
) -> Path:
    """Draw the learning curves of ``run_dirs`` on one figure and save it to ``output``.

    The file type follows ``output``'s extension (``.png``, ``.pdf``, ``.svg``; none:
    ``.png`` is added, and the path returned says so). Log lines
    that do not parse are left out and reported through ``on_skip`` (default: a warning).
    ``log_y``, ``aggregate`` and ``band`` are those of :func:`build_figure`.
    """
    from asktell._rundir import check_output_file

    text = os.fspath(output)  # Path("") is "."; an empty name is checked as given
    output = Path(text)
    if text.strip() and output.name not in ("", ".", "..") and not output.suffix:
        output = output.with_name(output.name + ".png")  # what savefig would write
    check_output_file(output if text.strip() else text, "plot output", _image_suffixes())
    fig = build_figure(
        run_dirs, labels=labels, title=title, on_skip=on_skip, log_y=log_y,
        aggregate=aggregate, band=band,
    )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=120)
    except OSError as exc:  # a folder that cannot be made or written (/proc, read-only)
        raise ConfigError(
            f"plot output {text!r} could not be written: {type(exc).__name__}: {exc}"
        ) from None
    return output
