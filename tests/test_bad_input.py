"""Malformed input gets a clear error, never a traceback: the field or argument, the rule and
the value (cut), exit status 2 from the CLI, no run folder left behind; ``asktell check``
refuses everything ``asktell run`` refuses before its first generation, with the same words;
impossible sizes are refused against memory before anything is allocated."""

from __future__ import annotations

import types
import typing

import numpy as np
import pytest
from pydantic import BaseModel, BeforeValidator

import asktell
from asktell import _memory
from asktell.cli import main
from asktell.config import RunConfig, config_from_dict, plugin_configs
from asktell.config_base import Int
from asktell.errors import CandidateFailedError, ConfigError
from asktell.optim import OPTIMIZERS
from asktell.tasks import FunctionTask

SPHERE = """seed = 0
[strategy]
kind = "openai_es"
population_size = 8
sigma = 0.1
{strategy}
[task]
kind = "function"
name = "sphere"
num_params = 3
[noise]
size = 4096
[budget]
generations = 2
[output]
log_format = "none"
"""
CARTPOLE = """seed = 0
[strategy]
kind = "openai_es"
population_size = 8
[task]
kind = "gym"
env_id = "CartPole-v1"
{task}
[evaluator]
{evaluator}
[noise]
{noise}
[budget]
generations = 1
[output]
log_format = "none"
"""


def sphere(strategy="", **replace):
    text = SPHERE.format(strategy=strategy)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def cartpole(task="", evaluator="", noise='kind = "counter"', env_id=None):
    text = CARTPOLE.format(task=task, evaluator=evaluator, noise=noise)
    return text if env_id is None else text.replace('"CartPole-v1"', f'"{env_id}"')


BIG = "x" * 1_000_000
# (name, run file text, file suffix, extra CLI arguments, fragments the message must hold)
CASES = [
    # unknown and out-of-range optimizer options
    ("optimizer option unknown", sphere('optimizer = "adam"\noptimizer_options = {betaa = 0.9}'), "toml", [], ["optimizer_options.betaa", "beta2"]),
    ("optimizer option range", sphere('optimizer = "adam"\noptimizer_options = {beta1 = 2.0}'), "toml", [], ["optimizer_options.beta1", "2.0"]),
    # environments: a missing module, an unknown id, kwargs the env refuses
    ("env module missing", cartpole(env_id="nosuchmodule:Foo-v0"), "toml", [], ["env_id", "nosuchmodule"]),
    ("env id unknown", cartpole(env_id="CartPol-v1"), "toml", [], ["env_id", "CartPole"]),
    ("env kwargs unknown", cartpole(task="env_kwargs = {foo = 1}"), "toml", [], ["env_kwargs", "foo"]),
    ("adaptive cap min above the max", cartpole(task='step_cap = "adaptive"\nmax_episode_steps = 40\nadaptive_cap_min = 100'), "toml", [], ["adaptive_cap_min=100 exceeds max_episode_steps=40"]),
    ("bins on a Discrete space", cartpole(task='action_mode = "bins"'), "toml", [], ["'action_mode'='bins'", "Box", "Discrete(2)"]),
    ("vector_entry_point without one", cartpole(env_id="Pendulum-v1", evaluator='kind = "vector"\nmode = "vector_entry_point"'), "toml", [], ["mode='vector_entry_point'", "'Pendulum-v1' has none", "mode='sync'"]),
    ("env kwargs value refused", cartpole(env_id="FrozenLake-v1", task='env_kwargs = {map_name = "9x9"}'), "toml", [], ["env_kwargs", "FrozenLake-v1", "KeyError", "9x9"]),
    # sizes that cannot fit in memory
    ("population 1e12", sphere(**{"population_size = 8": "population_size = 1_000_000_000_000"}), "toml", [], ["strategy.population_size=1000000000000", "TiB", "available"]),
    ("noise size 1e12", sphere(**{"size = 4096": "size = 1_000_000_000_000"}), "toml", [], ["noise.size=1000000000000", "noise table"]),
    ("hidden sizes 1e5", cartpole(task="hidden_sizes = [100000, 100000]"), "toml", [], ["task.hidden_sizes=[100000, 100000]", "GiB"]),
    ("num_params 1e12", sphere(**{"num_params = 3": "num_params = 1_000_000_000_000", "size = 4096": 'kind = "counter"'}), "toml", [], ["task.num_params=1000000000000"]),
    ("num_envs 1e9", cartpole(evaluator='kind = "vector"\nnum_envs = 1_000_000_000'), "toml", [], ["evaluator.num_envs=1000000000"]),
    ("covariance matrix", sphere(**{'"openai_es"': '"cma_es"', "num_params = 3": "num_params = 1_000_000", "size = 4096": 'kind = "counter"', "sigma = 0.1": "sigma = 0.1\nmax_factor_bytes = 100_000_000_000_000"}), "toml", [], ["task.num_params=1000000", "covariance"]),
    ("noise table too small", cartpole(task="hidden_sizes = [1000, 1000]", noise="size = 100000"), "toml", [], ["noise", "num_params=1008002"]),
    # files nested 100,000 deep, in every format and through --set
    ("deep toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "toml", [], ["nests", "32 levels"]),
    ("deep yaml", "a: " + "[" * 100_000 + "]" * 100_000 + "\n", "yaml", [], ["nests", "32 levels"]),
    ("deep json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "json", [], ["nests", "32 levels"]),
    ("deep --set", sphere(), "toml", ["--set", "task.x=" + "[" * 60_000 + "]" * 60_000], ["--set task.x", "32 levels"]),
    # duplicate keys are named
    ("duplicate key", sphere("sigma = 0.2"), "toml", [], ["duplicate key 'sigma'"]),
    # long values are cut, huge numbers refused
    ("1 MB name", sphere(**{'name = "sphere"': f'name = "{BIG}"'}), "toml", [], ["task.name", "..."]),
    ("1 MB env id", cartpole(env_id=BIG), "toml", [], ["env_id", "..."]),
    ("huge int toml", sphere(**{"population_size = 8": "population_size = " + "9" * 100_000}), "toml", [], ["cannot be read as a number"]),
    ("huge int yaml", "seed: " + "9" * 100_000 + "\n", "yaml", [], ["cannot be read as a number"]),
    ("huge int --set", sphere(), "toml", ["--set", "strategy.sigma=" + "9" * 100_000], ["--set strategy.sigma", "number"]),
    # strict types: no string-to-number or string-to-bool coercion
    ("population string", sphere(**{"population_size = 8": 'population_size = "32"'}), "toml", [], ["strategy.population_size", "integer", "'32'"]),
    ("antithetic yes", sphere('antithetic = "yes"'), "toml", [], ["strategy.antithetic", "true or false", "'yes'"]),
    ("noise size string", sphere(**{"size = 4096": 'size = "4096"'}), "toml", [], ["noise.size", "integer", "'4096'"]),
    ("seed float", sphere().replace("seed = 0", "seed = 1.0"), "toml", [], ["seed", "integer", "1.0"]),
    ("generations bool", sphere(**{"generations = 2": "generations = true"}), "toml", [], ["budget.generations", "integer", "True"]),
]


def _write(tmp_path, name, text, suffix):
    path = tmp_path / (name.replace(" ", "_") + "." + suffix)
    path.write_text(text)
    return path


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("name,text,suffix,extra,fragments", CASES, ids=[c[0] for c in CASES])
def test_run_and_check_refuse_bad_input_with_the_same_clear_message(
    tmp_path, capsys, name, text, suffix, extra, fragments
):
    path = _write(tmp_path, name, text, suffix)
    out = tmp_path / "run"
    code, run_err = _cli(capsys, "run", path, *extra, "--out", out)
    assert code == 2, run_err[-2000:]
    assert "Traceback" not in run_err
    assert run_err.startswith("error: ")
    for fragment in fragments:
        assert fragment in run_err
    assert len(run_err) < 2000  # a 1 MB value is cut, not echoed
    assert not out.exists()  # nothing left behind
    code, check_err = _cli(capsys, "check", path, *extra)
    assert code == 2
    assert check_err == run_err  # check refuses what run refuses, with the same words


def test_check_accepts_what_run_accepts(tmp_path, capsys):
    path = _write(tmp_path, "ok", cartpole(task='policy = "linear"'), "toml")
    code, err = _cli(capsys, "check", path)
    assert code == 0, err


# --------------------------------------------------------------------------- memory
def test_the_memory_check_is_what_refuses_impossible_sizes(monkeypatch):
    """A known break: with the strategy's estimate gone, a 10**12 population passes the
    checks (it would only fail when the first generation allocates its seeds)."""
    cfg = config_from_dict(
        {"strategy": {"kind": "openai_es", "population_size": 10**12},
         "task": {"kind": "function", "num_params": 3}, "noise": {"size": 4096},
         "budget": {"generations": 1}}
    )
    with pytest.raises(ConfigError, match=r"strategy\.population_size=1000000000000 needs"):
        cfg.check()
    from asktell.strategies._base import StrategyConfig

    monkeypatch.setattr(StrategyConfig, "estimate_bytes", lambda self, context: [])
    cfg.check()


def test_the_memory_limit_can_be_set_and_is_read_strictly(monkeypatch):
    cfg = config_from_dict(
        {"strategy": {"kind": "openai_es", "population_size": 8},
         "task": {"kind": "function", "num_params": 3}, "noise": {"size": 1 << 20},
         "budget": {"generations": 1}}
    )
    cfg.check()
    monkeypatch.setenv(_memory.ENV_VAR, "1M")  # the 4 MiB table does not fit in 1 MiB
    with pytest.raises(ConfigError, match=r"ASKTELL_MEMORY_LIMIT=1M\): noise\.size=1048576 needs about 4 MiB"):
        cfg.check()
    monkeypatch.setenv(_memory.ENV_VAR, "off")
    cfg.check()
    monkeypatch.setenv(_memory.ENV_VAR, "lots")
    with pytest.raises(ConfigError, match="ASKTELL_MEMORY_LIMIT must be a number of bytes.*'lots'"):
        cfg.check()


def test_available_memory_comes_from_the_machine(monkeypatch):
    monkeypatch.delenv(_memory.ENV_VAR, raising=False)
    value, source = _memory.available_bytes()
    assert value is None or value > 0
    assert source


# --------------------------------------------------------------------------- strict types
def _checked(metadata) -> bool:
    # Int/Float/Bool, or a field type with its own before-validator (the Dask dashboard's
    # "true, false or host:port"), decide what they accept; pydantic's lax mode does not.
    return any(isinstance(m, BeforeValidator) for m in metadata)


def _loose_scalars(annotation, metadata=()):
    """Plain int/float/bool inside an annotation that no before-validator guards."""
    if annotation in (int, float, bool):
        return [] if _checked(metadata) else [annotation.__name__]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _loose_scalars(base, [*metadata, *extra])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return []  # walked on its own
    inherited = metadata if origin in (typing.Union, types.UnionType) else ()
    return [x for arg in typing.get_args(annotation) for x in _loose_scalars(arg, inherited)]


def _models():
    seen = [RunConfig]
    for family in ("strategy", "evaluator", "task"):
        seen.extend(plugin_configs(family).values())
    seen.extend(o.config_class for o in OPTIMIZERS.values() if getattr(o, "config_class", None))
    for model in list(seen):
        for field in model.model_fields.values():
            for arg in [field.annotation, *typing.get_args(field.annotation)]:
                if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                    seen.append(arg)
    return seen


def test_every_number_and_flag_in_a_run_file_is_strict():
    """No field coerces "32" to 32 or "yes" to True: every int/float/bool option is declared
    with asktell.config_base's Int/Float/Bool."""
    loose = [
        f"{model.__name__}.{name}: {kinds}"
        for model in _models()
        for name, field in model.model_fields.items()
        if (kinds := _loose_scalars(field.annotation, field.metadata))
    ]
    assert loose == []


def test_the_strict_type_check_finds_a_loose_field():
    class Loose(BaseModel):
        n: int = 1
        m: Int = 1

    found = {n for n, f in Loose.model_fields.items() if _loose_scalars(f.annotation, f.metadata)}
    assert found == {"n"}


# --------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("value", ["1.5", True, None, [1.0, 2.0], 1j, np.ones(2)])
def test_an_objective_must_return_a_real_number(value):
    with pytest.raises(CandidateFailedError, match="must return a real number"):
        asktell.minimize(lambda x: value, np.zeros(3), budget=100)


@pytest.mark.parametrize("values", [lambda n: np.array(["1"] * n), lambda n: np.ones(n, bool)])
def test_a_vectorized_objective_must_return_real_numbers(values):
    task = FunctionTask(lambda X: values(len(X)), vectorized=True)
    with pytest.raises(asktell.errors.ReturnsError, match="must return real numbers.*dtype"):
        task.evaluate(np.zeros((2, 3)), np.array([0, 1]), None)


@pytest.mark.parametrize("shape", [(1, 2), (2, 2), (4,)])
def test_a_vectorized_objective_returns_one_value_per_row(shape):
    """(n,) and a column (n, 1) are one value per candidate; other shapes of n values were
    flattened into returns of the wrong candidates."""
    task = FunctionTask(lambda X: np.zeros(shape), vectorized=True)
    with pytest.raises(asktell.errors.ReturnsError, match=rf"must return 2 values.*got shape"):
        task.evaluate(np.zeros((2, 3)), np.array([0, 1]), None)
    column = FunctionTask(lambda X: X[:, :1] + 1.0, vectorized=True)
    assert column.evaluate(np.zeros((2, 3)), np.array([0, 1]), None).returns.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("x0, words", [
    (["1", "2"], "dtype <U1"), ([True, False], "dtype bool"), ([1 + 2j, 3], "dtype complex128"),
    ([[1, 2], [3, 4]], r"shape \(2, 2\)"),
])
def test_x0_and_injected_points_must_be_real_vectors(x0, words):
    """Strings were parsed, booleans read as 0/1, complex numbers lost their imaginary part
    and a matrix was flattened into a longer x0."""
    with pytest.raises(ConfigError, match=rf"CMAES 'x0' must be a 1-D array of real numbers; got {words}"):
        asktell.strategies.CMAES(x0=x0, sigma=0.5)
    es = asktell.strategies.CMAES(num_params=len(np.ravel(x0)), sigma=0.5)
    with pytest.raises(ConfigError, match=rf"inject\(\) point must be a 1-D array of real numbers; got {words}"):
        es.inject(x0)


@pytest.mark.parametrize("returns, words", [
    (lambda n: np.arange(n).astype("timedelta64[s]"), "returned a timedelta"),
    (lambda n: [np.timedelta64(1, "s")] * n, "returned a timedelta64"),
    (lambda n: np.ma.masked_array(np.zeros(n), mask=[True] + [False] * (n - 1)), "masked array"),
])
def test_tell_refuses_durations_and_masked_arrays(returns, words):
    es = asktell.strategies.CMAES(num_params=2, sigma=0.5)
    n = es.ask().size
    before = es.state_dict()["center"].copy()
    with pytest.raises(asktell.errors.ReturnsError, match=words):
        es.tell(returns(n))
    assert np.array_equal(es.center, before)
    es.tell(np.zeros(n))


def test_numbers_of_every_kind_are_accepted_from_an_objective():
    for value in (1, 1.5, np.float32(1.5), np.int64(2), np.array(3.0)):
        task = FunctionTask(lambda x, v=value: v)
        assert task.evaluate(np.zeros((1, 3)), np.array([0]), None).returns[0] == float(value)


@pytest.mark.parametrize(
    "seeds,match",
    [([1.5], "dtype float64"), (["1"], "dtype <U1"), ([True], "dtype bool"),
     ([2**70], "dtype object"), ([[1]], r"shape \(1, 1\)")],
)
def test_decode_takes_integer_seeds_only(seeds, match):
    es = asktell.strategies.OpenAIES(num_params=3, population_size=8)
    with pytest.raises(ConfigError, match=f"integer seeds.*{match}"):
        es.distribution.decode(seeds)
    assert es.distribution.decode(np.array([1], dtype=np.uint8)).shape == (1, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"x0": ["a", "b"]}, "'x0' must be real numbers"), ({"target": "1"}, "'target' must be"),
     ({"vectorized": "yes"}, "'vectorized' must be True or False"),
     ({"population_size": "32"}, "population_size: Input should be an integer"),
     ({"population_size": 10**12, "budget": 10**13}, r"population_size=1000000000000 needs")],
)
def test_minimize_refuses_bad_arguments_by_name(kwargs, match):
    args = {"x0": np.zeros(3), "budget": 100, **kwargs}
    with pytest.raises(ConfigError, match=match):
        asktell.minimize(lambda x: 1.0, **args)
