"""asktell plot: what the figure holds (axes labels, scale, lines, legend), read back from
matplotlib's objects rather than pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from asktell.cli import main
from asktell.errors import ConfigError
from asktell.plotting import GRID_POINTS, build_figure, plot_runs
from asktell.runlog import read_stop, stop_record
from asktell.runner import run


def fake_run(path, kind, returns, target=None, steps_per_gen=10, centre_every=2, stop=None):
    """A run directory as the runner leaves it (resolved config + log), from given returns;
    ``stop``: ``(rule, reason)`` of the stop record that ends the log (none by default)."""
    path.mkdir(parents=True)
    budget = "" if target is None else f"\n[budget]\ntarget_return = {target}\n"
    (path / "config.toml").write_text(f'seed = 0\n[task]\nkind = "{kind}"\n{budget}')
    with open(path / "log.jsonl", "w") as fh:
        for g, r in enumerate(returns, start=1):
            row = {"generation": g, "env_steps": g * steps_per_gen, "wall_seconds": 0.1 * g,
                   "return_mean": r, "return_max": r + 1.0}
            if g % centre_every == 0:
                row["center_return_mean"] = r + 0.5
            fh.write(json.dumps(row) + "\n")
    if stop is not None:
        with open(path / "log.jsonl", "ab") as fh:
            fh.write(stop_record(len(returns), *stop))
    return path


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


@pytest.fixture(scope="module")
def function_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plot") / "sphere"
    run({"strategy": {"kind": "openai_es", "population_size": 8, "learning_rate": 0.1},
         "task": {"kind": "function", "name": "sphere", "num_params": 3, "shift": 1.0},
         "noise": {"size": 4096}, "budget": {"generations": 60, "target_return": -1e-4},
         "output": {"log_format": "none", "eval_every": 5}}, out=out)
    return out


def test_function_run_is_a_loss_on_log_axis_against_evaluations(function_run):
    fig = build_figure([function_run])
    left, right = fig.axes[:2]
    assert left.get_xlabel() == "function evaluations"
    assert right.get_xlabel() == "wall time (s)"
    assert left.get_ylabel() == "loss f(x) = -return"
    assert left.get_yscale() == "log"  # the loss spans decades: automatic log
    mean = lines_by_label(left)["sphere (population mean)"]
    assert np.all(mean.get_ydata() > 0)  # drawn as -return
    target = lines_by_label(left)["target 0.0001"]
    assert set(target.get_ydata()) == {1e-4}  # the target, negated like the curve


def test_linear_y_can_be_forced_and_log_needs_decades(tmp_path, function_run):
    assert build_figure([function_run], log_y=False).axes[0].get_yscale() == "linear"
    gym = fake_run(tmp_path / "gym", "gym", np.linspace(10, 200, 20), target=195.0)
    fig = build_figure([gym])
    assert fig.axes[0].get_yscale() == "linear"  # one decade: stays linear
    assert build_figure([gym], log_y=True).axes[0].get_yscale() == "log"


def test_axis_labels_follow_the_task(tmp_path):
    gym = fake_run(tmp_path / "gym", "gym", [1.0, 2.0, 3.0], target=2.5)
    atari = fake_run(tmp_path / "atari", "atari", [-21.0, -20.0])
    fig = build_figure([gym])
    assert fig.axes[0].get_xlabel() == "environment steps"
    assert fig.axes[0].get_ylabel() == "return"
    assert list(lines_by_label(fig.axes[0])["target 2.5"].get_ydata()) == [2.5, 2.5]
    assert build_figure([atari]).axes[0].get_xlabel() == "emulator frames"
    with pytest.raises(ConfigError, match="count different things"):
        build_figure([gym, atari])


def test_legend_sits_outside_the_axes(tmp_path):
    gym = fake_run(tmp_path / "gym", "gym", [1.0, 2.0, 3.0])
    fig = build_figure([gym])
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing drawn over the data
    assert len(fig.legends) == 1
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        box = ax.get_window_extent()
        assert legend.x0 >= box.x1 or legend.y0 >= box.y1  # no overlap with any panel


def test_aggregate_draws_mean_and_band_on_the_common_range(tmp_path):
    # three seeds logged at different x positions; the third stops early
    a = fake_run(tmp_path / "a", "gym", [0.0, 10.0, 20.0, 30.0], steps_per_gen=10)
    b = fake_run(tmp_path / "b", "gym", [0.0, 20.0, 40.0, 60.0], steps_per_gen=10)
    c = fake_run(tmp_path / "c", "gym", [3.0, 6.0, 9.0], steps_per_gen=12)
    for band in ("minmax", "std"):
        fig = build_figure([a, b, c], aggregate=True, labels=["x"], band=band)
        ax = fig.axes[0]
        mean = lines_by_label(ax)["x: population mean, mean"]
        grid, ys = mean.get_xdata(), mean.get_ydata()
        assert grid[0] == 12 and grid[-1] == 36 and grid.size == GRID_POINTS  # overlap only
        curves = np.stack([np.interp(grid, x, y) for x, y in (
            ([10, 20, 30, 40], [0, 10, 20, 30]), ([10, 20, 30, 40], [0, 20, 40, 60]),
            ([12, 24, 36], [3, 6, 9]))])
        np.testing.assert_allclose(ys, curves.mean(axis=0))
        spread = "min-max" if band == "minmax" else "+-1 std"
        bands = [c for c in ax.collections if c.get_label() == f"x: population mean, {spread}"]
        assert len(bands) == 1
        verts = bands[0].get_paths()[0].vertices
        low, high = (curves.min(0), curves.max(0)) if band == "minmax" else (
            curves.mean(0) - curves.std(0), curves.mean(0) + curves.std(0))
        assert np.isclose(verts[:, 1].min(), low.min()) and np.isclose(verts[:, 1].max(), high.max())


def test_bad_input_is_named(tmp_path):
    a = fake_run(tmp_path / "a", "gym", [1.0, 2.0])
    with pytest.raises(ConfigError, match="does not exist"):
        build_figure([tmp_path / "nope"])
    with pytest.raises(ConfigError, match="--aggregate needs at least 2 runs"):
        build_figure([a], aggregate=True)
    with pytest.raises(ConfigError, match="'band' must be one of"):
        build_figure([a], band="iqr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no log.jsonl"):
        build_figure([tmp_path / "empty"])


def test_cli_plot_writes_the_file_and_exits_2_on_bad_input(tmp_path, capsys):
    a = fake_run(tmp_path / "a", "gym", [1.0, 2.0])
    b = fake_run(tmp_path / "b", "gym", [2.0, 3.0])
    out = tmp_path / "agg.png"
    assert main(["plot", str(a), str(b), "--aggregate", "--band", "std", "--linear-y",
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert main(["plot", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert plot_runs([a], tmp_path / "one.svg").exists()  # one run: as before


def figure_texts(fig):
    """The figure's own texts (title, the note under the panels) and its legend's."""
    return ([t.get_text() for t in fig.texts],
            [t.get_text() for legend in fig.legends for t in legend.get_texts()])


def test_one_run_says_why_it_stopped_under_the_panels(function_run):
    """The stop record the runner wrote is on the figure, word for word."""
    stop = read_stop(function_run)
    texts, legend = figure_texts(build_figure([function_run]))
    note = f"stopped at generation {stop['generation']}: {stop['stop_reason']}"
    assert note in texts
    assert not any("stopped" in entry for entry in legend)  # one run: the note alone


def test_several_runs_say_why_each_stopped_in_the_legend_and_the_note(tmp_path):
    reached = "target_return reached: centre mean 201 >= 195 (generation 4)"
    a = fake_run(tmp_path / "a", "gym", [1.0, 2.0, 3.0, 4.0], stop=("target_return", reached))
    b = fake_run(tmp_path / "b", "gym", [1.0, 2.0], stop=("generations", "generations budget reached (2)"))
    going = fake_run(tmp_path / "going", "gym", [1.0, 2.0, 3.0])  # no stop record
    texts, legend = figure_texts(build_figure([a, b, going], labels=["A", "B", "C"]))
    assert "A: stopped by target_return at generation 4" in legend
    assert "B: stopped by generations at generation 2" in legend
    assert "C: no stop record (still running, interrupted or died)" in legend
    note = [t for t in texts if t.startswith("A: ")]
    assert note == [f"A: stopped at generation 4: {reached}\n"
                    "B: stopped at generation 2: generations budget reached (2)\n"
                    "C: no stop record (still running, interrupted or died)"]


def test_a_resumed_run_whose_log_goes_on_after_a_stop_record_has_none(tmp_path):
    """A stop record counts only as the log's last record (resume drops and rewrites it)."""
    a = fake_run(tmp_path / "a", "gym", [1.0, 2.0], stop=("generations", "generations budget reached (2)"))
    with open(a / "log.jsonl", "a") as fh:
        fh.write(json.dumps({"generation": 3, "env_steps": 30, "wall_seconds": 0.3,
                             "return_mean": 3.0, "return_max": 4.0}) + "\n")
    texts, _ = figure_texts(build_figure([a]))
    assert "no stop record (still running, interrupted or died)" in texts


def test_an_aggregate_counts_its_runs_per_stop_rule(tmp_path):
    runs = [fake_run(tmp_path / f"s{i}", "gym", [1.0, 2.0, 3.0], stop=stop) for i, stop in
            enumerate([("generations", "generations budget reached (3)")] * 2
                      + [("target_return", "target_return reached")] + [None])]
    texts, legend = figure_texts(build_figure(runs, aggregate=True))
    assert ("stopped by: generations (2 runs), target_return (1 run), no stop record (1 run)"
            in legend)
    assert any(t.startswith("s0: stopped at generation 3: generations budget") for t in texts)
