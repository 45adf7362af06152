"""Run-file messages a new user meets (issue 13's audit): did-you-mean at every depth, a
resolved config that prints no unused built-in function name, one line for a bad bound."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from asktell.cli import cli
from asktell.config import config_from_dict, load_config
from asktell.errors import ConfigError


def base(**strategy):
    return {
        "strategy": {"kind": "snes", "sigma": 0.5,
                     "bounds": {"lower": -5.0, "upper": 5.0}, **strategy},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
        "evaluator": {"kind": "dask", "stragglers": {"min_candidates": 4}},
        "budget": {"generations": 3},
    }


def problems(data, overrides=()):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, list(overrides))
    return str(info.value).splitlines()[1:]


# ----------------------------------------------------------------------------- did you mean
@pytest.mark.parametrize("override, line", [
    ("strategy.sigmaa=1", "strategy.sigmaa: unknown key (not a setting here); did you mean 'sigma'?"),
    ('strategy.bounds.methd="clip"',
     "strategy.bounds.methd: unknown key (not a setting here); did you mean 'method'?"),
    ("evaluator.stragglers.min_candidate=3",
     "evaluator.stragglers.min_candidate: unknown key (not a setting here); "
     "did you mean 'min_candidates'?"),
    ("budget.generationz=3",
     "budget.generationz: unknown key (not a setting here); did you mean 'generations'?"),
])
def test_an_unknown_key_suggests_the_closest_setting_at_every_depth(override, line):
    assert problems(base(), [override]) == [f"  {line}"]


def test_a_far_off_nested_key_lists_the_settings_of_its_table():
    (line,) = problems(base(), ["evaluator.stragglers.quorum=0.9"])
    assert line == ("  evaluator.stragglers.quorum: unknown key (not a setting here); the "
                    "settings of evaluator.stragglers are: min_candidates, min_episodes, "
                    "min_timesteps")


def test_did_you_mean_in_a_list_of_tables_and_an_inner_strategy():
    data = base()
    data["output"] = {"loggers": [{"kind": "csv", "pathh": "x.csv"}]}
    assert problems(data) == [
        "  output.loggers.0.pathh: unknown key (not a setting here); did you mean 'path'?"
    ]
    data = base()
    data["strategy"] = {"kind": "restarts", "strategy": {"kind": "cma_es", "sigmaa": 1.0}}
    assert "did you mean 'sigma'?" in problems(data)[0]


def test_python_arguments_get_the_same_nested_suggestion():
    from asktell.strategies import CMAES

    with pytest.raises(ConfigError, match=r"bounds\.methd: unknown key \(not a setting here\); "
                                          r"did you mean 'method'\?"):
        CMAES(3, bounds={"lower": -1.0, "upper": 1.0, "methd": "clip"})


def test_the_cli_check_says_it_too(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('[strategy]\nkind = "cma_es"\n[task]\nkind = "function"\n'
                    "[budget]\ngenerations = 3\n")
    result = CliRunner().invoke(
        cli, ["check", str(path), "--set", "strategy.bounds.lower=-1.0", "--set",
              "strategy.bounds.upper=1.0", "--set", 'strategy.bounds.methd="clip"'],
    )
    assert result.exit_code == 2
    assert "strategy.bounds.methd: unknown key (not a setting here); did you mean 'method'?" \
        in result.output


# ----------------------------------------------------------------------------- own function
def test_a_resolved_config_with_your_own_function_names_no_builtin(tmp_path, monkeypatch):
    (tmp_path / "mymod_polish.py").write_text(
        "import numpy as np\ndef fn(x):\n    return float(np.sum(x ** 2))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "run.toml"
    path.write_text('[strategy]\nkind = "snes"\n[task]\nkind = "function"\n'
                    'function = "mymod_polish:fn"\nnum_params = 3\n[budget]\ngenerations = 2\n')
    result = CliRunner().invoke(cli, ["check", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    task = result.output.split("[task]")[1].split("\n\n")[0]
    assert 'function = "mymod_polish:fn"' in task
    assert "name" not in task.replace("function_dir", "") and "shift" not in task
    # the printed config reads back as the same config (name and shift take their defaults)
    out = tmp_path / "resolved.toml"
    out.write_text(result.output)
    assert load_config(out) == load_config(path)
    sys.modules.pop("mymod_polish", None)


def test_a_builtin_function_still_prints_its_name():
    cfg = config_from_dict(base())
    assert 'name = "sphere"' in cfg.to_toml()


# ----------------------------------------------------------------------------- bad bounds
@pytest.mark.parametrize("lower, line", [
    ([0.0, math.nan, 0.0], "coordinate 1 must be a finite number; got nan"),
    ([0.0, 0.0, -math.inf], "coordinate 2 must be a finite number; got -inf; a side without a "
     "bound takes a far value (e.g. 1e6): None and inf are not bounds"),
    ([0.0, "a", 0.0], "coordinate 1 must be a number; got 'a'"),
    ([True, 0.0, 0.0], "coordinate 0 must be a number; got True"),
    (math.nan, "must be a finite number or a list of numbers; got nan"),
    ("a", "must be a number or a list of numbers; got 'a'"),
])
def test_a_bad_bound_is_one_line_naming_the_coordinate(lower, line):
    data = base()
    data["strategy"]["bounds"]["lower"] = lower
    assert problems(data) == [f"  strategy.bounds.lower: {line}"]


def test_good_bounds_still_pass_as_numbers_or_lists():
    data = base()
    data["strategy"]["bounds"] = {"lower": [0, -1.5, np.float32(2)], "upper": 5}
    bounds = config_from_dict(data).strategy.bounds
    assert bounds.lower == [0.0, -1.5, 2.0] and bounds.upper == 5.0
    assert all(type(v) is float for v in bounds.lower)
