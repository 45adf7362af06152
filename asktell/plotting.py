"""Learning curves of one or more runs (``asktell plot``); needs the ``plot`` extra.

Each run is drawn against environment steps (left) and wall time (right): the population's
mean return as a line with its best return lighter, and the centre evaluations as markers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asktell._extras import require
from asktell.errors import ConfigError
from asktell.runlog import read_log_lines

__all__ = ["plot_runs"]


def _series(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        if row.get(x) is not None and row.get(y) is not None:
            xs.append(row[x])
            ys.append(row[y])
    return xs, ys


def plot_runs(
    run_dirs: list[str | os.PathLike],
    output: str | os.PathLike,
    *,
    labels: list[str] | None = None,
    title: str | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> Path:
    """Draw the learning curves of ``run_dirs`` on one figure and save it to ``output``.

    The file type follows ``output``'s extension (``.png``, ``.pdf``, ``.svg``). Log lines
    that do not parse are left out and reported through ``on_skip`` (default: a warning).
    """
    if not run_dirs:
        raise ConfigError("plot needs at least one run directory")
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(
            f"plot got {len(labels)} labels for {len(run_dirs)} run directories"
        )
    require("matplotlib", "asktell plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logs = []
    for d in run_dirs:
        rows, skipped = read_log_lines(d)
        if skipped:
            text = (f"{str(d)!r}: skipped {len(skipped)} log line(s) that do not parse: "
                    + "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else ""))
            if on_skip is None:
                warnings.warn(text, stacklevel=2)
            else:
                on_skip(text)
        logs.append((Path(d), rows))
    for path, rows in logs:
        if not rows:
            raise ConfigError(f"run directory {str(path)!r} has no logged generation yet")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("env_steps", "environment steps"), ("wall_seconds", "wall time (s)"))
    for i, (path, rows) in enumerate(logs):
        label = labels[i] if labels else path.name
        color = f"C{i % 10}"
        for ax, (x, xlabel) in zip(axes, panels):
            xs, ys = _series(rows, x, "return_mean")
            ax.plot(xs, ys, color=color, label=f"{label} (population mean)")
            xs, ys = _series(rows, x, "return_max")
            ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
            xs, ys = _series(rows, x, "center_return_mean")
            if xs:
                ax.plot(xs, ys, "o--", color=color, markersize=3, label=f"{label} (centre)")
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("return")
    axes[0].legend(fontsize="small", loc="best")
    fig.suptitle(title or "learning curves (light: population best)")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    return output
