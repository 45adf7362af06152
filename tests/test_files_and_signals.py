"""Run files that would hang or crash a reader are refused with a message; signals stop a
run like Ctrl-C; a run directory is held by one process at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from asktell._files import check_depth, parse_toml, parse_yaml, read_mapping
from asktell._interrupts import DeferredInterrupts, Interrupted
from asktell._lock import RunDirectoryBusy, RunLock
from asktell.errors import ConfigError


def test_a_yaml_alias_bomb_is_refused_where_the_alias_is_read():
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
        for i in range(8)
    )
    with pytest.raises(ConfigError, match=r"bomb.yaml: YAML alias \*a on line 2 is not allowed"):
        parse_yaml(bomb, "bomb.yaml")


def test_a_duplicate_toml_key_is_named():
    with pytest.raises(ConfigError, match=r"duplicate key 'sigma'"):
        parse_toml("[strategy]\nsigma = 0.1\nsigma = 0.2\n", "run.toml")
    with pytest.raises(ConfigError, match=r"duplicate key 'strategy'"):
        parse_toml("[strategy]\nsigma = 0.1\n[strategy]\nkind = 'snes'\n", "run.toml")


def test_a_duplicate_json_key_is_named_as_such(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"seed": 1, "seed": 2}')
    with pytest.raises(ConfigError) as info:
        read_mapping(path)
    assert "duplicate key 'seed'" in str(info.value) and "number" not in str(info.value)


def test_a_long_unknown_kind_is_cut_in_the_message():
    from asktell.config import config_from_dict
    from asktell.registry import STRATEGIES

    kind = "x" * 5000
    with pytest.raises(ConfigError) as info:
        config_from_dict({"strategy": {"kind": kind}, "task": {"kind": "function"},
                          "budget": {"generations": 1}})
    assert len(str(info.value)) < 400 and "unknown strategy 'xxx" in str(info.value)
    with pytest.raises(ConfigError) as info:
        STRATEGIES.get(kind)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_absurd_nesting_is_refused_not_a_recursion_error(tmp_path, suffix):
    depth = 100_000
    body = {
        ".toml": "x = " + "[" * depth + "]" * depth,
        ".yaml": "x: " + "[" * depth + "]" * depth,
        ".json": '{"x": ' + "[" * depth + "]" * depth + "}",
    }[suffix]
    path = tmp_path / f"deep{suffix}"
    path.write_text(body)
    with pytest.raises(ConfigError, match="too deeply|levels deep"):
        read_mapping(path)


def test_nesting_within_the_limit_is_read_and_beyond_it_refused(tmp_path):
    check_depth({"task": {"env_kwargs": {"a": [[1]]}}}, "run.toml")
    with pytest.raises(ConfigError, match=r"more than 3 levels deep; got at least 4"):
        check_depth({"a": {"b": {"c": [1]}}}, "run.toml", limit=3)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_inside_a_critical_section_waits_for_its_end(signum):
    done = []
    with DeferredInterrupts() as interrupts:
        with pytest.raises(Interrupted) as info:
            with interrupts.critical():
                os.kill(os.getpid(), signum)
                done.append("finished the update")
    assert done == ["finished the update"]
    assert info.value.signum == signum and info.value.exit_code == 128 + signum
    assert isinstance(info.value, KeyboardInterrupt)
    # the previous handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_process_cannot_take_a_held_run_directory(tmp_path):
    code = textwrap.dedent(
        f"""
        from asktell._lock import RunLock
        try:
            RunLock({str(tmp_path)!r}).acquire()
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("acquired")
        """
    )
    with RunLock(tmp_path):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.startswith("RunDirectoryBusy"), out
        assert f"in use by process {os.getpid()}" in out.stdout
    # released: another process takes it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "acquired", out


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from asktell._lock import RunLock; RunLock({str(tmp_path)!r}).acquire()"
            "; print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryBusy, match=f"process {holder.pid}"):
            RunLock(tmp_path).acquire()
        holder.kill()
        holder.wait()
        with RunLock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_yaml_is_read_by_the_yaml_1_2_core_schema():
    """YAML 1.1 (PyYAML's) read `010` as 8, `1:30` as 90, `yes`/`off` as booleans and a
    date as a date: a run file reads them as TOML and Python would, or as strings that a
    strict field then refuses by name."""
    from asktell.config import config_from_dict

    assert parse_yaml("a: 010\nb: 1:30\nc: 0x10\nd: 0o10\ne: yes\nf: off\ng: 2024-01-02\n"
                      "h: 1_000\ni: .5\nj: ~\nk: True\n") == {
        "a": 10, "b": "1:30", "c": 16, "d": 8, "e": "yes", "f": "off", "g": "2024-01-02",
        "h": 1000, "i": 0.5, "j": None, "k": True}
    base = {"strategy": {"kind": "openai_es"}, "task": {"kind": "function", "name": "sphere",
            "num_params": 3}, "budget": {"generations": 3}}
    data = parse_yaml("strategy: {kind: openai_es, population_size: 010, antithetic: yes}")
    with pytest.raises(ConfigError, match=r"strategy.antithetic: .*got 'yes'"):
        config_from_dict({**base, **data})
    assert config_from_dict({**base, "seed": parse_yaml("s: 010")["s"]}).seed == 10


def test_yaml_numbers_with_an_exponent_and_no_dot_are_numbers():
    """PyYAML (YAML 1.1) reads `1e-5` as a string; run files and --set read it as a number,
    and a quoted value stays a string."""
    from asktell._files import parse_override

    assert parse_yaml("a: 1e-5\nb: -1E3\nc: '1e-5'\n") == {"a": 1e-5, "b": -1000.0, "c": "1e-5"}
    assert parse_override("budget.target_return=-1e-5") == (["budget", "target_return"], -1e-5)
