"""The docs say what the files and the commands do.

- The tutorial's run file is ``examples/cartpole.toml``, word for word.
- Installation is written as it is: from a clone (``pip install -e ".[...]"``); asktell is
  not on PyPI, so ``pip install "asktell[...]"`` would fail for a reader.
- Every ``asktell`` command in a console/bash block of the README and docs runs and exits as
  the page shows (0, or 2 where the page shows an ``error:`` line), each in page order in a
  scratch directory holding ``examples/``, with budgets cut to a few generations; the few
  that cannot run here are listed in ``NOT_RUN`` with the reason, and a new command in the
  docs fails this test until it is run or listed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from asktell.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: pages whose install wording this test holds (the generated reference quotes error texts)
INSTALL_PAGES = ["README.md", "docs/tutorial.md", "docs/quickstart.md", "docs/dask.md"]

#: command (as written, after `$ `) -> why it is not run here
NOT_RUN = {
    'python3 -m venv .venv && .venv/bin/pip install -e ".[gym,plot]" && .venv/bin/asktell run '
    "examples/cartpole.toml --out runs/cartpole":
        "installs into a new venv: .ci/run and tests/test_packaging.py check the install; the "
        "run itself is the tutorial's `asktell run examples/cartpole.toml`, run here",
    "OPENBLAS_NUM_THREADS=2 asktell run pong_serial.toml --out runs/before $S":
        "the Atari before/after measurement: minutes per run on 2 cores",
    "asktell run pong_serial.toml --out runs/after $S":
        "the Atari before/after measurement: minutes per run on 2 cores",
    "asktell run examples/pong.toml --out runs/after-vector $S":
        "the Atari before/after measurement: minutes per run on 2 cores",
    "asktell plot runs/sphere-s0 runs/sphere-s1 runs/sphere-s2 --aggregate -o seeds.png":
        "needs three seeds' runs the page does not make (tests/test_plot.py draws an aggregate)",
    "asktell export runs/halfcheetah -o cheetah.npz --best":
        "needs a trained HalfCheetah run (hours); export is run on CartPole (tests/test_export.py)",
    "asktell eval runs/halfcheetah --video halfcheetah.mp4":
        "needs a trained HalfCheetah run (hours); eval --video is run on CartPole",
    "asktell plot runs/pong-short -o docs/atari-pong-learning.png":
        "would overwrite the stored figure; plot is run on the other pages' runs",
    "asktell plot runs/cartpole runs/cartpole-seed1 -o curves.png --label seed0 --label seed1":
        "needs a second seed's run the page does not make",
}

#: Atari runs: a generation takes minutes on 2 cores; `asktell check` of the same command
#: (the file, the --set values, the environment) runs instead.
CHECK_ONLY = ("examples/pong.toml", "examples/breakout.toml")


def commands(page: Path) -> list[tuple[str, int]]:
    """``(command, expected exit status)`` of each asktell command on ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    out = []
    for lang, body in re.findall(r"```(console|bash|sh)\n(.*?)```", text, flags=re.S):
        lines = body.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            line = line.strip()
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if "asktell" not in line or line.startswith(("source ", "dask ")):
                continue
            line = re.sub(r"\s+#.*$", "", line).strip()
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out.append((" ".join(line.split()), 2 if following.startswith("error:") else 0))
    return out


def _argv(command: str, generation: int) -> list[str] | None:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # OPENBLAS_NUM_THREADS=1 asktell ...
        words.pop(0)
    if not words or words[0] != "asktell":
        return None
    args = words[1:]
    if args[0] == "run" and args[1] in CHECK_ONLY:
        return ["check", *[a for a in args[1:] if not a.startswith("--out")][:1], *_sets(args)]
    short = ["--set", f"budget.generations={generation}"]
    if args[0] == "run":
        return [*args, *short, "--log-format", "none"]
    if args[0] == "resume":
        return [*args, *short, "--log-format", "none"]
    return args


def _sets(args: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if a == "--set":
            out += ["--set", args[i + 1]]
    return out


def _documented():
    for page in PAGES:
        for command, code in commands(page):
            yield pytest.param(page, command, code, id=f"{page.name}:{command[:60]}")


def test_every_documented_command_is_run_or_listed_with_a_reason():
    found = {command for page in PAGES for command, _ in commands(page)}
    assert set(NOT_RUN) <= found, f"NOT_RUN lists commands no page has: {set(NOT_RUN) - found}"


@pytest.mark.parametrize("page", [p for p in PAGES if commands(p)], ids=lambda p: p.name)
def test_documented_commands_run(page, tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    generation = 2
    for command, code in commands(page):
        if command in NOT_RUN:
            continue
        argv = _argv(command, generation)
        assert argv is not None, f"{page.name}: cannot read {command!r}"
        generation += 1  # each resume continues by one more generation
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        assert result.exit_code == code, (
            f"{page.name}: `{command}` (run as asktell {' '.join(argv)}) exited "
            f"{result.exit_code}, the page shows {code}:\n{result.output[-2000:]}"
        )


def test_the_tutorial_shows_the_real_cartpole_file():
    tutorial = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", tutorial, flags=re.S)
    real = (ROOT / "examples" / "cartpole.toml").read_text(encoding="utf-8")
    assert blocks and blocks[0] == real
    # and the numbers the prose quotes are the file's
    from asktell.config import load_config

    cfg = load_config(ROOT / "examples" / "cartpole.toml")
    assert cfg.strategy.population_size == 20 and cfg.strategy.learning_rate == 0.1
    assert cfg.budget.target_return == 475.0 and cfg.evaluator.kind == "vector"
    assert "with 20 candidates" in tutorial and "reaches 475" in tutorial


@pytest.mark.parametrize("name", INSTALL_PAGES)
def test_installation_is_written_as_it_is(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    # asktell is installed from a clone; `pip install "asktell[...]"` asks PyPI, which has none
    assert not re.search(r"pip install \"?asktell\b", text), name


def _example_tips():
    for path in sorted((ROOT / "examples").glob("*.toml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"#\s+(asktell run .*)$", line)
            if match:
                yield pytest.param(match.group(1), id=f"{path.name}:{match.group(1)[12:72]}")


@pytest.mark.parametrize("command", list(_example_tips()))
def test_the_commands_in_example_files_are_valid(command, monkeypatch):
    # `check` validates what `run` would (the file, the --set values, the environment) and
    # starts nothing: a tip like --set evaluator.kind=dask must not fail on its first line
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[2:]
    argv = ["check", args[0], *_sets(args)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, f"{command}:\n{result.output[-2000:]}"
