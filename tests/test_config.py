"""Run configs: every bad input is rejected before anything starts, with the field path, the
rule and the value; plugins become valid kinds by registering; files round-trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from hypothesis import given, settings
from hypothesis import strategies as st

import asktell.config as config_module
from asktell._files import apply_overrides, dump_toml, parse_override, parse_toml
from asktell.config import RunConfig, config_from_dict, diff_protected, load_config
from asktell.config_base import StrictModel
from asktell.errors import ConfigError
from asktell.registry import STRATEGIES, TASKS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

BASE = {
    "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1},
    "task": {"kind": "function", "name": "sphere", "num_params": 3},
    "noise": {"size": 4096},
    "budget": {"generations": 3},
}


def with_(**sections):
    data = json.loads(json.dumps(BASE))
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name].update(value)
        else:
            data[name] = value
    return data


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- good input
def test_defaults_fill_in_and_the_evaluator_is_the_embedded_serial_one():
    cfg = config_from_dict(BASE)
    assert cfg.evaluator.kind == "serial"
    assert cfg.output.checkpoint_every >= 1
    assert cfg.seed == 0
    # an evaluator section without kind means the default too
    assert config_from_dict(with_(evaluator={"retries": 1})).evaluator.retries == 1


def test_build_returns_live_objects_with_the_task_dimension():
    cfg = config_from_dict(BASE)
    with cfg.build() as built:
        assert built.strategy.num_params == 3
        assert built.strategy.population_size == 8
        assert built.task.num_params == 3
        assert built.noise.size == 4096
        evaluation = built.evaluator.evaluate(built.strategy.distribution, built.strategy.ask())
        assert evaluation.returns.shape == (8,)
    assert built.evaluator.closed


def test_toml_and_yaml_files_load_the_same_config(tmp_path):
    toml = write(
        tmp_path,
        "a.toml",
        """
seed = 3
[strategy]
kind = "openai_es"
population_size = 8
sigma = 0.1
[task]
kind = "function"
num_params = 3
[noise]
size = 4096
[budget]
generations = 3
""",
    )
    yaml = write(
        tmp_path,
        "a.yaml",
        """
seed: 3
strategy: {kind: openai_es, population_size: 8, sigma: 0.1}
task:
  kind: function
  num_params: 3
noise: {size: 4096}
budget: {generations: 3}
""",
    )
    assert load_config(toml) == load_config(yaml)


def test_resolved_toml_round_trips(tmp_path):
    cfg = config_from_dict(with_(budget={"target_return": -0.5}))
    path = write(tmp_path, "resolved.toml", cfg.to_toml())
    assert load_config(path) == cfg


def test_options_set_to_null_survive_the_resolved_toml(tmp_path):
    """TOML has no null; an option left out reads back as its default, so config.toml lists
    the nulls whose default is not null (else a run with tolfun = null could not resume)."""
    cfg = config_from_dict(with_(strategy={"tolfun": None, "tolx": None}))
    assert cfg.strategy.tolfun is None
    text = cfg.to_toml()
    assert 'nulls = ["strategy.tolfun", "strategy.tolx"]' in text
    assert load_config(write(tmp_path, "resolved.toml", text)) == cfg
    # nulls whose default is null need no listing
    assert "nulls" not in config_from_dict(BASE).to_toml()


def test_a_hand_written_toml_run_file_sets_options_to_null_with_nulls(tmp_path):
    path = write(tmp_path, "run.toml", 'nulls = ["strategy.tolfun"]\n' + config_from_dict(BASE).to_toml())
    assert load_config(path).strategy.tolfun is None
    assert load_config(path, ["strategy.tolfun=1e-9"]).strategy.tolfun == 1e-9  # --set wins
    for bad in ('"strategy.tolfun"', '["strategy.tolfun=1"]', "[3]"):
        path = write(tmp_path, "bad.toml", f"nulls = {bad}\n" + config_from_dict(BASE).to_toml())
        with pytest.raises(ConfigError, match=r"nulls must be a list of dotted option names.*got"):
            load_config(path)
    path = write(tmp_path, "typo.toml", 'nulls = ["strategy.tolfn"]\n' + config_from_dict(BASE).to_toml())
    with pytest.raises(ConfigError, match="tolfn"):
        load_config(path)


def test_overrides_are_typed_and_nest():
    cfg = config_from_dict(
        BASE,
        [
            "strategy.sigma=0.05",
            "strategy.antithetic=false",
            "strategy.population_size=7",
            "strategy.optimizer_options.beta1=0.8",
            "output.eval_every=2",
        ],
    )
    assert cfg.strategy.sigma == 0.05
    assert cfg.strategy.antithetic is False
    assert cfg.strategy.population_size == 7
    assert cfg.strategy.optimizer_options == {"beta1": 0.8}
    assert cfg.output.eval_every == 2
    assert parse_override("task.hidden=[64, 64]") == (["task", "hidden"], [64, 64])


@pytest.mark.parametrize("bad", ["no_equals", "=3", "a..b=1"])
def test_malformed_overrides_are_rejected(bad):
    with pytest.raises(ConfigError, match="--set"):
        apply_overrides({}, [bad])


def test_json_schema_names_every_kind():
    schema = RunConfig.model_json_schema()
    text = json.dumps(schema)
    assert "openai_es" in text and "serial" in text and "function" in text
    assert schema["additionalProperties"] is False


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "data, pattern",
    [
        (with_(strategy={"sigmaa": 0.1}), r"strategy\.sigmaa: unknown key.*did you mean 'sigma'"),
        (with_(bogus=1), r"bogus: unknown key"),
        (with_(strategy={"population_size": "many"}), r"strategy\.population_size: .*integer.*'many'"),
        (with_(strategy={"sigma": 0}), r"strategy\.sigma: .*greater than 0; got 0"),
        (with_(strategy={"sigma": -0.5}), r"strategy\.sigma: .*greater than 0; got -0\.5"),
        (with_(strategy={"sigma": float("nan")}), r"strategy\.sigma: .*finite number; got nan"),
        (with_(strategy={"learning_rate": float("inf")}), r"strategy\.learning_rate: .*finite"),
        (
            with_(strategy={"optimizer_options": {"beta1": float("nan")}}),
            r"strategy\.optimizer_options\.beta1: .*finite",
        ),
        (
            with_(strategy={"population_size": 7}),
            r"strategy: population_size must be even .*; got 7",
        ),
        (
            with_(strategy={"kind": "openai-es"}),
            r"strategy\.kind: unknown strategy 'openai-es'; did you mean 'openai_es'\?",
        ),
        (with_(task={"kind": "functoin"}), r"task\.kind: unknown task 'functoin'; did you mean 'function'"),
        (with_(evaluator={"kind": "serail"}), r"evaluator\.kind: unknown evaluator 'serail'; did you mean 'serial'"),
        (with_(task={"kind": None}), r"task\.kind: unknown task None"),
        ({**BASE, "task": {"name": "sphere"}}, r"task\.kind: 'kind' is required; choose one of: .*function"),
        ({**BASE, "task": "sphere"}, r"task: must be a table of task settings"),
        (with_(budget={"generations": None}), r"budget: set at least one of generations"),
        (with_(budget={"generations": 0}), r"budget\.generations: .*greater than or equal to 1; got 0"),
        (with_(seed=-1), r"seed: .*greater than or equal to 0; got -1"),
        (with_(task={"name": "spheer"}), r"task\.name: .*'sphere'.*got 'spheer'"),
        ({k: v for k, v in BASE.items() if k != "budget"}, r"budget: Field required"),
    ],
)
def test_malformed_configs_are_rejected_with_path_rule_and_value(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(data)


def test_nan_in_a_toml_file_is_rejected(tmp_path):
    path = write(
        tmp_path,
        "nan.toml",
        '[strategy]\nkind = "openai_es"\nsigma = nan\n[task]\nkind = "function"\n'
        "[budget]\ngenerations = 1\n",
    )
    with pytest.raises(ConfigError, match=r"nan\.toml.*\n  strategy\.sigma: .*finite number; got nan"):
        load_config(path)


def test_nan_in_a_yaml_file_is_rejected(tmp_path):
    path = write(
        tmp_path,
        "nan.yaml",
        "strategy: {kind: openai_es, sigma: .nan}\ntask: {kind: function}\nbudget: {generations: 1}\n",
    )
    with pytest.raises(ConfigError, match=r"strategy\.sigma: .*finite"):
        load_config(path)


def test_yaml_python_tags_are_rejected_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        "evil.yaml",
        f'strategy: !!python/object/apply:os.system ["touch {marker}"]\n'
        "task: {kind: function}\nbudget: {generations: 1}\n",
    )
    with pytest.raises(ConfigError, match="YAML tag not allowed"):
        load_config(path)
    assert not marker.exists()
    path = write(tmp_path, "evil2.yaml", "seed: !!python/name:os.getcwd\n")
    with pytest.raises(ConfigError, match="YAML tag not allowed"):
        load_config(path)


def test_yaml_duplicate_keys_are_rejected(tmp_path):
    path = write(
        tmp_path,
        "dup.yaml",
        "strategy:\n  kind: openai_es\n  sigma: 0.1\n  sigma: 0.2\ntask: {kind: function}\n"
        "budget: {generations: 1}\n",
    )
    with pytest.raises(ConfigError, match=r"duplicate key 'sigma' on line 4 \(first given on line 3\)"):
        load_config(path)


def test_toml_and_json_duplicate_keys_are_rejected(tmp_path):
    toml = write(tmp_path, "dup.toml", "seed = 1\nseed = 2\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(toml)
    js = write(tmp_path, "dup.json", '{"seed": 1, "seed": 2}')
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_config(js)


@pytest.mark.parametrize(
    "name, text, pattern",
    [
        ("x.toml", "[strategy\n", "not valid TOML"),
        ("x.yaml", "a: [1, 2\n", "not valid YAML"),
        ("x.yaml", "- 1\n- 2\n", "must hold a table of settings"),
        ("x.ini", "[a]\n", r"must end in \.toml"),
    ],
)
def test_unreadable_files_are_rejected(tmp_path, name, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, name, text))


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_build_errors_name_the_section():
    with pytest.raises(ConfigError, match="noise: the noise table .*too small"):
        config_from_dict(with_(noise={"size": 3})).build()


# ----------------------------------------------------------------------------- plugins
class _EchoStrategyConfig(StrictModel):
    """A test-only plugin config."""

    kind: Literal["echo_test_es"] = "echo_test_es"
    population_size: int = 4

    def build(self, *, num_params, seed, noise, x0=None):
        return STRATEGIES.get("openai_es")(
            num_params=num_params, population_size=self.population_size, seed=seed, noise=noise
        )


class _EchoStrategy:
    """Echo test strategy."""

    config_class = _EchoStrategyConfig


class _PickyTaskConfig(StrictModel):
    """A task whose config checks a rule across sections."""

    kind: Literal["picky_test_task"] = "picky_test_task"

    def check_run(self, run):
        if run.strategy.population_size > 4:
            raise ValueError(f"needs population_size <= 4; got {run.strategy.population_size}")

    def build(self):
        from asktell.tasks import FunctionTask

        return FunctionTask.named("sphere", num_params=2)


class _PickyTask:
    config_class = _PickyTaskConfig


class _SeededTaskConfig(StrictModel):
    """A task config with a seed of its own (as Gymnasium tasks have)."""

    kind: Literal["seeded_test_task"] = "seeded_test_task"
    seed: int = Field(0, ge=0)

    def build(self):
        from asktell.tasks import FunctionTask

        return FunctionTask.named("sphere", num_params=2)


class _SeededTask:
    config_class = _SeededTaskConfig


@pytest.fixture
def extra_plugins():
    STRATEGIES.register("echo_test_es")(_EchoStrategy)
    TASKS.register("picky_test_task")(_PickyTask)
    TASKS.register("seeded_test_task")(_SeededTask)
    config_module.refresh()
    yield config_module.RunConfig
    del STRATEGIES._items["echo_test_es"]
    del TASKS._items["picky_test_task"]
    del TASKS._items["seeded_test_task"]
    config_module.refresh()


def test_a_task_seed_inherits_the_run_seed_unless_set(extra_plugins, tmp_path):
    inherit = config_module.config_from_dict(
        {**BASE, "seed": 7, "task": {"kind": "seeded_test_task"}}
    )
    assert inherit.task.seed == 7
    explicit = config_module.config_from_dict(
        {**BASE, "seed": 7, "task": {"kind": "seeded_test_task", "seed": 3}}
    )
    assert explicit.task.seed == 3
    path = write(tmp_path, "resolved.toml", inherit.to_toml())
    assert config_module.load_config(path) == inherit


def test_a_registered_plugin_becomes_a_valid_kind(extra_plugins):
    cfg = config_module.config_from_dict({**BASE, "strategy": {"kind": "echo_test_es"}})
    assert cfg.strategy.kind == "echo_test_es"
    with cfg.build() as built:
        assert built.strategy.population_size == 4
    with pytest.raises(ConfigError, match="did you mean 'echo_test_es'"):
        config_module.config_from_dict(with_(strategy={"kind": "echo_tset_es"}))


def test_a_plugin_cross_section_rule_runs_at_load(extra_plugins):
    data = {**BASE, "task": {"kind": "picky_test_task"}}
    with pytest.raises(ConfigError, match=r"task: needs population_size <= 4; got 8"):
        config_module.config_from_dict(data)


def test_entry_point_plugins_are_loaded(monkeypatch):
    import asktell.registry as registry

    class FakeEntryPoint:
        name = "ep_test_es"

        def load(self):
            return _EchoStrategy

    monkeypatch.setattr(
        registry, "entry_points", lambda group: [FakeEntryPoint()] if group == "g.test" else []
    )
    reg = registry.Registry("strategy", "g.test", "asktell.strategies")
    assert "ep_test_es" in reg.names()


def test_a_plugin_whose_kind_disagrees_with_its_name_is_reported():
    STRATEGIES.register("mismatched_test_es")(_EchoStrategy)
    try:
        with pytest.raises(ConfigError, match="must be Literal\\['mismatched_test_es'\\]"):
            config_module.plugin_configs("strategy")
    finally:
        del STRATEGIES._items["mismatched_test_es"]


@pytest.mark.skipif("gym" not in TASKS, reason="the Gymnasium task (kind 'gym') is not registered yet")
def test_an_unknown_gymnasium_id_lists_the_closest_ids():
    # Rejected at load if the task config checks it, else when the run is built (which
    # `asktell run` does before it creates anything): either way a ConfigError naming the id.
    with pytest.raises(ConfigError, match=r"CartPol-v1.*CartPole"):
        config_from_dict({**BASE, "task": {"kind": "gym", "env_id": "CartPol-v1"}}).build()


# ----------------------------------------------------------------------------- resume rules
def test_diff_protected_lists_changed_fields_and_ignores_operational_ones():
    a = config_from_dict(BASE).model_dump(mode="json")
    b = config_from_dict(
        BASE, ["strategy.sigma=0.2", "task.num_params=4", "evaluator.retries=2", "budget.generations=9"]
    ).model_dump(mode="json")
    changes = diff_protected(a, b)
    assert len(changes) == 2
    assert changes[0].startswith("strategy.sigma: 0.1 in the checkpoint, 0.2 now")
    assert changes[1].startswith("task.num_params: 3")


# ----------------------------------------------------------------------------- TOML writer
_keys = st.text(alphabet="abcxyz_-1 .\"é", min_size=1, max_size=6)
_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_values = st.recursive(
    _scalars | st.lists(_scalars, max_size=3),
    lambda inner: st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=4))
def test_the_toml_writer_round_trips_plain_data(data):
    assert parse_toml(dump_toml(data)) == data


# ----------------------------------------------------------------------------- noise.size auto
def _function_run(num_params, **noise):
    from asktell.config import config_from_dict

    return config_from_dict({
        "strategy": {"kind": "openai_es"},
        "task": {"kind": "function", "name": "sphere", "num_params": num_params},
        "noise": noise,
        "budget": {"generations": 1},
    })


@pytest.mark.parametrize(
    "num_params, size",
    [(5, 1 << 20), (16384, 1 << 20), (16385, 1 << 21), (500_000, 1 << 25), (20_000_000, 1 << 26)],
)
def test_an_unset_noise_table_is_sized_to_a_function_task(num_params, size):
    # 64 values per parameter, rounded up to a power of two, in [2**20, 2**25]; a dimension
    # past the paper's table gets the next power of two above twice the dimension
    cfg = _function_run(num_params)
    assert cfg.noise.size == size
    assert cfg.noise.size > num_params
    assert f"size = {size}" in cfg.to_toml()  # recorded, so a resume rebuilds the same table


def test_an_explicit_noise_size_is_kept():
    assert _function_run(5, size=4096).noise.size == 4096
    assert _function_run(5, size=1 << 25).noise.size == 1 << 25


def test_gym_runs_keep_the_papers_table_so_their_results_do_not_change():
    from asktell.config import load_config

    assert load_config(EXAMPLES / "cartpole.toml").noise.size == 1 << 25


def test_a_saved_config_with_the_old_default_resumes_with_it():
    from asktell.config import config_from_dict

    saved = _function_run(5, size=1 << 25).model_dump(mode="json")
    assert config_from_dict(saved).noise.size == 1 << 25


# ----------------------------------------------------------------------------- --set kind=
def test_set_kind_drops_options_the_new_kind_lacks(capsys):
    from asktell.config import load_config

    cfg = load_config(EXAMPLES / "humanoid.toml", ["evaluator.kind=dask"])
    assert cfg.evaluator.kind == "dask"
    assert cfg.evaluator.num_workers == 2 and cfg.evaluator.on_failure == "mark"  # kept
    err = capsys.readouterr().err
    assert "dropped evaluator.mode " in err and "evaluator.num_workers" not in err


def test_set_kind_keeps_an_option_set_in_the_same_command_and_judges_it():
    from asktell.config import load_config

    with pytest.raises(ConfigError, match="mode"):
        load_config(EXAMPLES / "humanoid.toml", ["evaluator.kind=dask", 'evaluator.mode="sync"'])


def test_set_kind_to_the_same_kind_drops_nothing(capsys):
    from asktell.config import load_config

    load_config(EXAMPLES / "humanoid.toml", ["evaluator.kind=vector"])
    assert "dropped" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- plugins = [...]
def test_plugins_are_imported_before_validation(tmp_path, monkeypatch):
    from asktell.config import config_from_dict

    (tmp_path / "p3_plugin_mod.py").write_text(
        "from typing import Literal\n"
        "from asktell.registry import TASKS\n"
        "from asktell.tasks.function import FunctionTask, FunctionTaskConfig\n"
        "class Cfg(FunctionTaskConfig):\n"
        "    kind: Literal['p3_function'] = 'p3_function'\n"
        "class P3Function(FunctionTask):\n"
        "    config_class = Cfg\n"
        "TASKS.register('p3_function')(P3Function)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = {
        "strategy": {"kind": "openai_es"},
        "task": {"kind": "p3_function", "num_params": 3},
        "budget": {"generations": 1},
    }
    with pytest.raises(ConfigError, match="p3_function"):
        config_from_dict(data)
    try:
        cfg = config_from_dict({**data, "plugins": ["p3_plugin_mod"]})
        assert cfg.task.kind == "p3_function" and cfg.plugins == ["p3_plugin_mod"]
        # a resumed run's saved config imports it again and validates
        assert config_from_dict(cfg.model_dump(mode="json")).task.kind == "p3_function"
    finally:  # the plugin leaves this session's registry as it found it
        import sys

        TASKS._items.pop("p3_function", None)
        sys.modules.pop("p3_plugin_mod", None)
        config_module.refresh()


@pytest.mark.parametrize(
    "plugins, message",
    [
        (["p3_missing_module"], "plugin module 'p3_missing_module' was not found"),
        (["a:b"], "must be a module name"),
    ],
)
def test_bad_plugins_are_named(plugins, message):
    from asktell.config import config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"plugins": plugins, "strategy": {"kind": "openai_es"},
                          "task": {"kind": "function"}, "budget": {"generations": 1}})
