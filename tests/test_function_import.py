"""Your own function in a run file: ``[task] function = "module:name"``.

What users rely on: the module beside the run file imports without PYTHONPATH; a typo is a
config error naming the field (with a did-you-mean); a run resumes by re-importing the path;
Dask worker processes, which do not share the driver's sys.path, import it too.
"""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from asktell._imports import ImportedObject, import_object
from asktell.config import config_from_dict as load_config
from asktell.errors import ConfigError
from asktell.runner import read_log, resume, run
from asktell.tasks.function import FunctionTask
from asktell.testing.dask_cluster import loopback_cluster

_COUNTER = itertools.count()


def _module(tmp_path, body: str | None = None) -> str:
    """A fresh module (unique name: sys.modules caches by name) in ``tmp_path``; its name."""
    name = f"user_objectives_{next(_COUNTER)}_{abs(hash(str(tmp_path))) % 10**6}"
    body = body or """
        import numpy as np

        def rosenbrock(x):
            x = np.asarray(x, dtype=float)
            return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))

        def sphere_batch(X):
            return np.sum(np.asarray(X) ** 2, axis=1)
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def _config(module: str, **task) -> dict:
    return {
        "seed": 3,
        "strategy": {"kind": "cma_es", "sigma": 0.5},
        "task": {"kind": "function", "function": f"{module}:rosenbrock", "num_params": 4, **task},
        "budget": {"generations": 6},
        "output": {"checkpoint_every": 3},
    }


def test_module_in_the_current_directory_imports_without_pythonpath(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    f = import_object(f"{name}:rosenbrock")
    assert f(np.ones(3)) == 0.0
    assert sys.path == before, "the directory is importable for this import only"


def test_typo_in_attribute_is_a_config_error_with_did_you_mean(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'function'.*no attribute 'rosenbrok'.*did you mean 'rosenbrock'"):
        load_config(_config(name, function=f"{name}:rosenbrok"))


def test_missing_module_names_the_field_and_the_directory_searched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'function'.*cannot import module 'nowhere_mod'.*searched"):
        load_config(_config("nowhere_mod"))


def test_a_missing_dependency_of_the_users_module_is_their_error_not_ours(tmp_path, monkeypatch):
    name = _module(tmp_path, "import not_installed_dep_xyz\ndef f(x):\n    return 0.0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModuleNotFoundError, match="not_installed_dep_xyz"):
        import_object(f"{name}:f")


@pytest.mark.parametrize(
    "task, rule",
    [
        ({"function": "no colon"}, "import path 'package.module:name'"),
        # a built-in's name in `function`: the user is told the built-ins go by `name`
        ({"function": "rastrigin"}, "got 'rastrigin', the name of a standard function: "
                                    "write name = \"rastrigin\" instead"),
        ({"num_params": None}, "'num_params' is required"),
        ({"name": "rastrigin"}, "either 'function'.*or 'name'"),
        ({"function": None, "vectorized": True}, "'vectorized' applies to your own 'function' only"),
    ],
)
def test_run_file_rules(tmp_path, monkeypatch, task, rule):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = _config(name, **task)
    cfg["task"] = {k: v for k, v in cfg["task"].items() if v is not None}
    with pytest.raises(ConfigError, match=rule):
        load_config(cfg)


def test_flags_reach_the_task(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = _config(name, function=f"{name}:sphere_batch", vectorized=True, minimize=False)
    task = load_config(cfg).task.build()
    assert isinstance(task, FunctionTask) and task.vectorized and not task.minimize
    out = task.evaluate(np.ones((2, 4)), np.array([0, 1]), None).returns
    np.testing.assert_array_equal(out, [4.0, 4.0])  # maximised as given: not negated


def test_run_and_resume_reimport_the_function_and_continue_exactly(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    full = run(_config(name), out=tmp_path / "full")
    part = run({**_config(name), "budget": {"generations": 3}}, out=tmp_path / "part")
    assert "function = " in (tmp_path / "part" / "config.toml").read_text()
    sys.modules.pop(name)  # resume must import it again from the path in config.toml
    resumed = resume(tmp_path / "part", overrides=["budget.generations=6"])
    assert name in sys.modules
    np.testing.assert_array_equal(resumed.center, full.center)
    returns = [row["return_max"] for row in read_log(tmp_path / "full")]
    assert returns == [row["return_max"] for row in read_log(tmp_path / "part")]


def test_resume_from_another_directory_finds_the_module(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    run({**_config(name), "budget": {"generations": 3}}, out=tmp_path / "part")
    assert f"function_dir = '{tmp_path}'" in (tmp_path / "part" / "config.toml").read_text().replace('"', "'")
    sys.modules.pop(name)
    monkeypatch.chdir("/")
    assert resume(tmp_path / "part", overrides=["budget.generations=4"]).generation == 4


def test_pickled_function_imports_itself_in_another_process_and_directory(tmp_path, monkeypatch):
    name = _module(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = "import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); print(f([2.0, 2.0]))"

    def call_elsewhere(obj):
        return subprocess.run(
            [sys.executable, "-c", code], input=pickle.dumps(obj), capture_output=True, cwd="/"
        )

    out = call_elsewhere(ImportedObject(f"{name}:rosenbrock"))
    assert out.returncode == 0, out.stderr.decode()
    assert float(out.stdout) == 401.0
    # The known break this guards against: the bare function pickles by reference to a
    # module the other process cannot find (this is what killed Dask workers).
    bare = call_elsewhere(import_object(f"{name}:rosenbrock"))
    assert bare.returncode != 0 and b"ModuleNotFoundError" in bare.stderr


def test_dask_worker_processes_import_the_function_by_path(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    # The cluster starts before the chdir, so its workers neither run in the module's
    # directory nor have it on sys.path: only the pickled path can lead them there.
    with loopback_cluster(1) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        name = _module(tmp_path)
        monkeypatch.chdir(tmp_path)
        cfg = _config(name)
        serial = run(cfg, out=tmp_path / "serial")
        dask_cfg = {**cfg, "evaluator": {"kind": "dask", "client": client}}
        on_dask = run(dask_cfg, out=tmp_path / "dask")
        np.testing.assert_array_equal(on_dask.center, serial.center)
