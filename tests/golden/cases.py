"""Short runs of the shipped examples (and every strategy on a function) whose log rows are
stored in ``tests/golden/*.jsonl``, so a refactor that changes any number is caught.

The stored rows were written by the library before the architecture consolidation; the
test (``tests/test_golden_logs.py``) re-runs each case and requires every non-timing field
of every row to be equal (floats bitwise). Regenerate only for an intended change of
results: ``python tests/golden/cases.py`` (then say why in the commit).

Floats are bitwise only between machines whose floating-point kernels agree (see
``machine.py``): the rows in this directory were written on the machine the project started
on; ``machines.json`` maps other machines' kernel fingerprints to a directory of the same
rows as *that* machine computes them, written by ``python tests/golden/cases.py
--this-machine NAME`` from a commit whose rows match this directory bitwise elsewhere (never
from a change under test). A machine with no entry is checked to a relative 1e-5 instead.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLES = ROOT / "examples"

#: an override that replaces the whole evaluator section (the example's vector options go)
SERIAL = "evaluator=serial"

#: examples/pendulum.toml was re-tuned (ClipUp, a larger learning rate, a smaller noise
#: table) so that its "solved" is true; these pin the settings the stored rows were written
#: with, so the golden runs stay what they were.
PENDULUM_AS_STORED = [
    'strategy.optimizer="adam"', "strategy.learning_rate=0.05", "noise.size=33554432",
]

#: name -> (run file, overrides)
CASES: dict[str, tuple[str, list[str]]] = {
    "cartpole": (
        "cartpole.toml",
        ["budget.generations=6", "output.eval_every=2", "output.eval_episodes=3"],
    ),
    "cartpole_serial": (
        "cartpole.toml",
        [SERIAL,
            "budget.generations=4",
            "output.eval_every=2",
            "output.eval_episodes=2",
        ],
    ),
    "pendulum": (
        "pendulum.toml",
        ["budget.generations=3", "output.eval_every=1", "output.eval_episodes=2",
         "strategy.population_size=16", *PENDULUM_AS_STORED],
    ),
    "pendulum_adaptive": (
        "pendulum.toml",
        ["budget.generations=3", "output.eval_every=2", "output.eval_episodes=1",
         "strategy.population_size=8", 'task.step_cap="adaptive"', "task.episodes=2",
         "task.obs_stats_fraction=0.5", SERIAL, *PENDULUM_AS_STORED],
    ),
    "sphere": ("sphere.toml", ["budget.generations=40"]),
    "rastrigin": ("rastrigin.toml", ["budget.generations=25"]),
}

_FUNCTION = {"kind": "function", "name": "rosenbrock", "num_params": 6, "shift": 0.5}

#: every built-in strategy on a small shifted Rosenbrock, through the run-config layer
STRATEGY_CASES: dict[str, dict] = {
    "snes": {},
    "xnes": {},
    # the rows were written with the tutorial's strategy parameters, the default then
    "cma_es": {"parameters": "tutorial"},
    "sep_cma_es": {"parameters": "tutorial"},
    "pgpe": {"population_size": 16},
    "ars": {},
    "mirrored_es": {},
    "openai_es": {"optimizer": "clipup", "learning_rate": 0.1},
}
CASES.update({f"strategy_{kind}": ("", []) for kind in STRATEGY_CASES})


def run_case(name: str, out: Path) -> list[dict]:
    """Run one case into ``out`` and return its log rows without the timing fields."""
    from asktell.runner import TIMING_FIELDS, read_log, run

    file, overrides = CASES[name]
    if name.startswith("strategy_"):
        kind = name[len("strategy_") :]
        config = {
            "strategy": {"kind": kind, **STRATEGY_CASES[kind]},
            "task": dict(_FUNCTION),
            "noise": {"size": 65536},
            "budget": {"generations": 15},
            "output": {"log_format": "none", "eval_every": 5},
            "seed": 3,
        }
        run(config, out=out, log_format="none")
    else:
        from asktell._files import read_mapping

        data = read_mapping(EXAMPLES / file)
        if SERIAL in overrides:
            data["evaluator"] = {"kind": "serial"}
        rest = [o for o in overrides if o != SERIAL]
        run(data, out=out, overrides=rest, log_format="none")
    rows = read_log(out)
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


#: Relative tolerance of the comparison on a machine with no rows of its own: a few float32
#: ulps of a gradient summed in another order (2e-8 to 5e-7 measured between an AVX-512
#: and an AVX2 machine), far below any change a refactor would make by mistake.
RTOL = 1e-5


def machines() -> dict[str, str]:
    """Kernel fingerprint -> directory (under ``HERE``) of that machine's rows."""
    return json.loads((HERE / "machines.json").read_text())


def reference_dir() -> tuple[Path, bool]:
    """The rows to compare with on this machine and whether the comparison is bitwise."""
    from machine import fingerprint

    sub = machines().get(fingerprint())
    return (HERE / sub, True) if sub else (HERE, False)


def mismatches(got: object, want: object, exact: bool, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want`` (json values): every non-float equal; floats
    bitwise when ``exact``, else within :data:`RTOL` of each other."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{path}: keys {sorted(set(got) ^ set(want))}"]
        return [m for k in want for m in mismatches(got[k], want[k], exact, f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, stored {len(want)}"]
        return [m for i, (g, w) in enumerate(zip(got, want))
                for m in mismatches(g, w, exact, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, float) and not exact:
        import math

        if math.isclose(got, want, rel_tol=RTOL, abs_tol=0.0) or got == want:
            return []
    elif got == want and type(got) is type(want):
        return []
    return [f"{path}: {got!r}, stored {want!r}"]


def main() -> None:
    args = sys.argv[1:]
    target = HERE
    if args[:1] == ["--this-machine"]:
        from machine import fingerprint

        sub, args = args[1], args[2:]
        target = HERE / sub
        target.mkdir(exist_ok=True)
        table = machines()
        table[fingerprint()] = sub
        (HERE / "machines.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    names = args or list(CASES)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_case(name, Path(tmp) / "run")
        with open(target / f"{name}.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
