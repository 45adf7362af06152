"""The ``asktell`` command: run, resume, status, eval, plot, export, list, schema, check.

Every command validates its input completely before it starts anything; errors print the
field path, the rule and the value, and exit with status 2 (bad input) or 1 (a failure while
running). Ctrl-C, SIGTERM and SIGHUP exit with status 128 + the signal's number (130 for
Ctrl-C) after leaving a resumable run directory and printing the resume command once.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import click

from asktell._version import __version__
from asktell.errors import AsktellError, CheckpointError, ConfigError, MissingDependencyError

__all__ = ["main", "cli"]

_PLUGIN_HELP = (
    "Import this module before the run file is validated, so the plugins it registers are "
    "valid kinds (repeatable; the current directory is searched first): --plugin mypkg.myplugin"
)

_SET_HELP = "Override a setting, KEY=VALUE with a dotted key (repeatable): --set strategy.sigma=0.05"


def _fail(exc: BaseException) -> None:
    click.echo(f"error: {exc}", err=True)
    code = 2 if isinstance(exc, (ConfigError, CheckpointError, MissingDependencyError)) else 1
    sys.exit(code)


def _one_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    if not doc:
        return ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    m = re.search(r"(?<!\bet al)(?<!\be\.g)(?<!\bi\.e)\.(\s|$)", paragraph)
    sentence = paragraph[: m.start() + 1] if m else paragraph
    # reST roles (:class:`X`, :func:`~a.b`) and double backquotes are for Sphinx, not a terminal
    sentence = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], sentence)
    return sentence.replace("``", "")


def _load(config: str, overrides: tuple[str, ...], plugins: tuple[str, ...]) -> Any:
    """Import the --plugin modules, then read and validate CONFIG; the modules are recorded
    in the config's ``plugins`` so ``resume`` and ``eval`` import them too."""
    from asktell.config import load_config, load_plugins, with_changes

    load_plugins(plugins, source="--plugin")
    cfg = load_config(config, list(overrides))
    missing = [name for name in plugins if name not in cfg.plugins]
    return with_changes(cfg, {"plugins": [*cfg.plugins, *missing]}) if missing else cfg


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asktell")
def cli() -> None:
    """Evolution strategies that scale: ask for seeds, tell returns, evaluate anywhere.

    Start with `asktell run examples/cartpole.toml`, then `asktell plot runs/<dir> -o
    curve.png` and `asktell eval runs/<dir> --video cartpole.mp4`.
    """
    from asktell._imports import cwd_on_path

    cwd_on_path()  # `myenvs:Reach1D-v0`, functions and plugins beside the run file, as `python -m`


def _run_guarded(fn: Any, run_dir_hint: str | None) -> Any:
    from asktell._interrupts import DeferredInterrupts

    try:
        # SIGTERM/SIGHUP while the run is being built stop it like Ctrl-C, not by default death
        with DeferredInterrupts():
            return fn()
    except KeyboardInterrupt as exc:
        if getattr(exc, "announced", False):  # the runner's display has said it
            pass
        elif run_dir_hint and not (Path(run_dir_hint) / "config.toml").exists():
            click.echo("\ninterrupted before the run started; nothing to resume", err=True)
        else:
            where = f" {run_dir_hint}" if run_dir_hint else " <run directory>"
            click.echo(f"\ninterrupted; continue with: asktell resume{where}", err=True)
        sys.exit(getattr(exc, "exit_code", 130))
    except AsktellError as exc:
        _fail(exc)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help=_PLUGIN_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: output.dir, else runs/<strategy>-<task>-<time>).")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "rich", "plain", "json", "none"]),
    help="Console output (default: output.log_format).",
)
def run(
    config: str,
    overrides: tuple[str, ...],
    plugins: tuple[str, ...],
    out: str | None,
    log_format: str | None,
) -> None:
    """Run CONFIG (a .toml/.yaml run file) with a live progress display.

    Writes the resolved config, a per-generation JSONL log and checkpoints to the run
    directory.
    """
    from asktell.runner import run as run_

    try:
        cfg = _load(config, overrides, plugins)
    except AsktellError as exc:
        _fail(exc)
    except KeyboardInterrupt:  # while plugins or the run file's imports load
        click.echo("\ninterrupted before the run started; nothing to resume", err=True)
        sys.exit(130)
    hint = out or cfg.output.dir
    result = _run_guarded(lambda: run_(cfg, out=out, log_format=log_format), hint)
    # the display's title names the run directory; say it here only when there is no display
    shown = log_format or cfg.output.log_format
    _print_result(result, with_dir=shown == "none", json_mode=shown == "json")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP + " (operational settings only: evaluator, budget, output).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Resume from this checkpoint .json instead of the newest.")
@click.option("--log-format", type=click.Choice(["auto", "rich", "plain", "json", "none"]))
@click.option("--repair-log", is_flag=True, help="If log.jsonl does not match the checkpoint, move it aside to log.jsonl.damaged and start a new log instead of refusing.")
def resume(
    run_dir: str,
    overrides: tuple[str, ...],
    checkpoint: str | None,
    log_format: str | None,
    repair_log: bool,
) -> None:
    """Continue RUN_DIR from its newest checkpoint, exactly as if it had never stopped.

    Raise the budget with e.g. --set budget.generations=200. A run that stopped before its
    first checkpoint starts again at generation 0 with its saved config.toml.
    """
    from asktell.runner import resume as resume_

    result = _run_guarded(
        lambda: resume_(
            run_dir,
            overrides=list(overrides),
            checkpoint=checkpoint,
            log_format=log_format,
            repair_log=repair_log,
        ),
        run_dir,
    )
    _print_result(result, json_mode=log_format == "json" or _saved_format(run_dir) == "json")


def _saved_format(run_dir: str) -> str | None:
    """The saved run's ``output.log_format`` (what ``resume`` shows without --log-format)."""
    from asktell._files import read_mapping

    try:
        return read_mapping(Path(run_dir) / "config.toml").get("output", {}).get("log_format")
    except (AsktellError, OSError, AttributeError):
        return None


def _print_result(result: Any, with_dir: bool = False, json_mode: bool = False) -> None:
    """The closing summary: on stdout, or on stderr when stdout carries JSON lines only."""
    if result is None:
        return
    parts = [
        f"generation {result.generation}",
        f"env steps {result.env_steps}",
        f"best population return {result.best_return:.6g}" if result.best_return is not None else "",
        f"centre return {result.center_return:.6g}" if result.center_return is not None else "",
    ]
    click.echo(
        "done: " + ", ".join(p for p in parts if p) + f" ({result.stop_reason})", err=json_mode
    )
    if with_dir:
        click.echo(f"run directory: {result.run_dir}", err=json_mode)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
def status(run_dir: str) -> None:
    """Say how far RUN_DIR got and why it stopped (or that it has not stopped).

    Reads the run's log.jsonl (its last row and its stop record) and, when the log records
    no stop, the newest checkpoint; starts nothing.
    """
    from asktell.checkpoint import load_checkpoint
    from asktell.runlog import read_log_lines, read_stop

    try:
        rows, skipped = read_log_lines(run_dir)
        stop = read_stop(run_dir)
    except AsktellError as exc:
        _fail(exc)
    if stop is None:  # killed between the final checkpoint and the stop record
        try:
            runner = load_checkpoint(run_dir).state["runner"]
        except AsktellError:
            runner = {}
        if "stop_reason" in runner:
            stop = {"generation": None, **runner}
    click.echo(f"run directory: {run_dir}")
    if rows:
        last = rows[-1]
        centres = [r["center_return_mean"] for r in rows if r.get("center_return_mean") is not None]
        parts = [
            f"generation {last.get('generation')}",
            f"env steps {last.get('env_steps')}",
            _number("best population return", last.get("best_return")),
            _number("last centre return", centres[-1] if centres else None),
        ]
        click.echo(", ".join(p for p in parts if p))
    else:
        click.echo("no generation logged yet")
    if skipped:
        click.echo(f"skipped {len(skipped)} log line(s): " + "; ".join(skipped))
    running = _running(run_dir)
    if stop is not None:
        click.echo(f"stopped: {stop['stop_reason']} (rule: {stop['stop_rule']})")
    elif running is not None:
        click.echo(f"running: {running}")
    else:
        click.echo(
            "not stopped: no stop is recorded (the run was interrupted or died); continue "
            f"it with: asktell resume {run_dir}"
        )


def _running(run_dir: str) -> str | None:
    """Who holds the run directory's lock, when that process is alive on this host."""
    import os
    import socket

    from asktell._lock import RunLock

    holder = RunLock(run_dir).holder()
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or host is None:
        return None  # released (the file is emptied) or never held
    if host != socket.gethostname():
        return f"held by process {pid} on {host} (another machine: running, unless it died)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a killed holder's record
    except PermissionError:
        pass  # alive, another user's
    return f"process {pid} holds the run directory"


def _number(name: str, value: Any) -> str:
    return f"{name} {value:.6g}" if isinstance(value, (int, float)) else ""


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--episodes", default=10, show_default=True, type=click.IntRange(min=1), help="Episodes to average over.")
@click.option("--video", type=click.Path(dir_okay=False), help="Also render one episode to this file (.mp4 or .gif).")
@click.option("--best", is_flag=True, help="Use the best evaluated centre instead of the latest.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint .json instead of the newest.")
def eval_(run_dir: str, episodes: int, video: str | None, best: bool, checkpoint: str | None) -> None:
    """Evaluate the saved centre of RUN_DIR (and render a video with --video)."""
    from asktell.playback import evaluate_run

    try:
        report = evaluate_run(
            run_dir, episodes=episodes, video=video, best=best, checkpoint=checkpoint
        )
    except AsktellError as exc:
        _fail(exc)
    click.echo(report.summary())


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Image file to write (.png, .pdf, .svg).")
@click.option("--label", "labels", multiple=True, help="Legend label per run (in order; default: directory names); one label with --aggregate.")
@click.option("--title", help="Figure title.")
@click.option("--log-y/--linear-y", "log_y", default=None, help="Force a log or linear y axis (default: log when all values are positive and span two decades, e.g. a function run's loss).")
@click.option("--aggregate", is_flag=True, help="Draw the runs as seeds of one experiment: mean and spread on a common x grid (interpolated over the range every run covers).")
@click.option("--band", type=click.Choice(["minmax", "std"]), default="minmax", show_default=True, help="Spread drawn by --aggregate: min-max envelope or mean +- one standard deviation.")
def plot(
    run_dirs: tuple[str, ...], output: str, labels: tuple[str, ...], title: str | None,
    log_y: bool | None, aggregate: bool, band: str,
) -> None:
    """Plot the learning curves of one or more runs on one figure.

    The x axis counts the task's unit (function evaluations, environment steps or Atari
    frames); a function run is drawn as its loss (-return); the run's target_return is a
    dotted line. Why each run stopped (its stop record) is noted under the panels and, for
    several runs, in the legend.
    """
    from asktell.plotting import plot_runs

    try:
        path = plot_runs(
            list(run_dirs), output, labels=list(labels) or None, title=title,
            on_skip=lambda text: click.echo(f"warning: {text}", err=True),
            log_y=log_y, aggregate=aggregate, band=band,
        )
    except AsktellError as exc:
        _fail(exc)
    click.echo(f"wrote {path}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Policy file to write (.npz).")
@click.option("--best", is_flag=True, help="Export the best evaluated centre (with its normaliser) instead of the latest.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="A checkpoint .json instead of the newest.")
def export(run_dir: str, output: str, best: bool, checkpoint: str | None) -> None:
    """Write the policy of a Gymnasium run to a file for your own code.

    The .npz holds the centre's weights, the observation normaliser and a JSON description
    (no pickle); load it with asktell.load_policy(path) and call .act(observation).
    """
    from asktell.export import export_policy

    try:
        path = export_policy(run_dir, output, best=best, checkpoint=checkpoint)
    except AsktellError as exc:
        _fail(exc)
    click.echo(f"wrote {path}")


@cli.command(name="list")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help=_PLUGIN_HELP)
def list_(plugins: tuple[str, ...]) -> None:
    """List the registered strategies, evaluators and tasks."""
    import shutil
    import textwrap

    from asktell.config import load_plugins
    from asktell.registry import EVALUATORS, STRATEGIES, TASKS

    try:
        load_plugins(plugins, source="--plugin")
    except AsktellError as exc:
        _fail(exc)
    width = max(shutil.get_terminal_size().columns, 40)
    indent = " " * 19
    for title, registry in (("strategies", STRATEGIES), ("evaluators", EVALUATORS), ("tasks", TASKS)):
        click.echo(f"{title}:")
        for name, obj in registry.items():
            first = f"  {name:16s} "
            text = textwrap.fill(
                _one_line(obj), width=width, initial_indent=first.ljust(len(indent)),
                subsequent_indent=indent, break_on_hyphens=False,
            )
            click.echo(text if _one_line(obj) else first.rstrip())


@cli.command()
@click.option("--indent", default=2, show_default=True, type=int)
def schema(indent: int) -> None:
    """Print the JSON Schema of a run file (RunConfig)."""
    from asktell.config import RunConfig

    click.echo(json.dumps(RunConfig.model_json_schema(), indent=indent))


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help=_PLUGIN_HELP)
def check(config: str, overrides: tuple[str, ...], plugins: tuple[str, ...]) -> None:
    """Validate CONFIG without running it; print the resolved configuration.

    Runs every check `run` does before its first generation that needs no evaluation: the
    file and its values, the task (environment id and kwargs), the sizes against memory and
    the strategy. The evaluator is not started.
    """
    try:
        cfg = _load(config, overrides, plugins)
        cfg.check()
    except AsktellError as exc:
        _fail(exc)
    click.echo(cfg.to_toml(), nl=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``asktell`` script; returns the exit status."""
    try:
        cli.main(args=argv, prog_name="asktell")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(exc.code, err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
