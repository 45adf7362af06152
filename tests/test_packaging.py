"""The package's shape: extras, lazy optional imports, console script, errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from asktell import errors
from asktell._extras import EXTRA_FOR_MODULE

ROOT = Path(__file__).resolve().parents[1]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_every_extra_named_in_code_exists_in_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_FOR_MODULE.values()) <= set(extras)
    assert {"gym", "mujoco", "atari", "dask", "plot", "all", "test"} <= set(extras)


def test_core_import_pulls_in_no_optional_backend():
    code = (
        "import sys, asktell, asktell.strategies, asktell.evaluators;"
        "bad = [m for m in ('gymnasium','mujoco','ale_py','dask','distributed','matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_asktell_loads_no_plugin_family_nor_backend():
    # A fresh interpreter: `import asktell` must not import the Gym or Atari tasks (the Atari
    # network among them) nor any optional back-end; the task registry loads those on its
    # first lookup.
    code = (
        "import sys, asktell;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('gymnasium','mujoco','ale_py','dask','distributed') "
        "or m.startswith(('asktell.gym','asktell.atari'))];"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_task_registry_loads_every_builtin_family_on_first_lookup():
    code = (
        "import sys; from asktell.registry import TASKS;"
        "names = TASKS.names();"
        "print(names, 'gymnasium' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['atari', 'function', 'gym'] False"


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(("asktell",) + p.parent.relative_to(ROOT / "asktell").parts)
        for p in (ROOT / "asktell").rglob("__init__.py")
    }
    assert found | {"asktell.strategies", "asktell.evaluators"} == listed


def test_missing_optional_dependency_prints_the_install_command():
    from asktell._extras import require

    with pytest.raises(errors.MissingDependencyError, match=r'pip install -e "\.\[dask\]"'):
        require("distributed.not_a_module", "DaskEvaluator")


def test_errors_are_also_builtins():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.ReturnsError, ValueError)
    assert issubclass(errors.AskTellOrderError, RuntimeError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AsktellError)


def test_namespace_maps_root_folders():
    import asktell.evaluators
    import asktell.strategies

    assert Path(asktell.strategies.__file__).parent == ROOT / "strategies"
    assert Path(asktell.evaluators.__file__).parent == ROOT / "evaluators"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "asktell.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "asktell" in out.stdout


def _commands_in_readme() -> list[str]:
    import re

    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    readme = _commands_in_readme()
    assert len(readme) == 2, "the README must show exactly two commands"
    assert readme[1] in ci and "pytest" in readme[1]
    assert "asktell run examples/" in readme[0]
    # after the tests, the wheel is built and run outside the clone
    assert ci.index(readme[1]) < ci.index(".ci/wheel-smoke .venv/bin/python")
    # the command runs the suite in parallel workers: the test extra must install xdist
    if " -n " in readme[1]:
        tests = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert any(req.startswith("pytest-xdist")
                   for req in tests["project"]["optional-dependencies"]["test"])


def test_wheel_smoke_builds_installs_and_runs_outside_the_clone():
    smoke = (ROOT / ".ci" / "wheel-smoke").read_text()
    assert "-m build --wheel" in smoke and "python3 -m venv" in smoke
    assert 'cd "$work"' in smoke  # the run happens outside the clone
    assert "budget.generations=3" in smoke
    tests = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(req.startswith("build") for req in tests)  # the test extra builds the wheel


@pytest.mark.skipif(
    not __import__("os").environ.get("ASKTELL_WHEEL_SMOKE"),
    reason="builds a wheel and installs it from PyPI into a fresh venv (~1 min, network): "
    ".ci/run runs .ci/wheel-smoke; set ASKTELL_WHEEL_SMOKE=1 to run it here",
)
def test_the_wheel_runs_outside_the_clone():
    done = subprocess.run(
        [str(ROOT / ".ci" / "wheel-smoke"), sys.executable], capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
