"""Logger overhead per generation: the time the runner spends in each logger's ``log``.

Short on purpose (a shared 2-core machine): a 10-parameter sphere, population 16, 200
generations per backend, the run's loggers timed from inside the runner (open and close
reported apart). Usage: ``python benchmarks/loggers_overhead.py [--generations N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from asktell.loggers import LoggerSet
from asktell.runner import run

BACKENDS = ["csv", "tensorboard", "mlflow", "wandb"]


def measure(kind: str, generations: int) -> dict[str, float]:
    spent = {"open": 0.0, "log": 0.0, "close": 0.0}
    originals = {name: getattr(LoggerSet, name) for name in spent}

    def timed(name):
        def call(self, *args):
            start = time.perf_counter()
            try:
                return originals[name](self, *args)
            finally:
                spent[name] += time.perf_counter() - start
        return call

    for name in spent:
        setattr(LoggerSet, name, timed(name))
    try:
        cfg = {
            "strategy": {"kind": "openai_es", "population_size": 16},
            "task": {"kind": "function", "name": "sphere", "num_params": 10, "shift": 1.0},
            "noise": {"size": 65536},
            "budget": {"generations": generations},
            "output": {"log_format": "none", "eval_every": 10, "loggers": [{"kind": kind}]},
        }
        start = time.perf_counter()
        run(cfg, out=os.path.join(tempfile.mkdtemp(), "run"))
        total = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(LoggerSet, name, fn)
    return {
        "log_ms_per_generation": 1e3 * spent["log"] / generations,
        "open_s": spent["open"], "close_s": spent["close"], "run_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--backends", nargs="*", default=BACKENDS)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    print("| logger | log() per generation (ms) | open (s) | close (s) | whole run (s) |")
    print("|---|---|---|---|---|")
    for kind in args.backends:
        m = measure(kind, args.generations)
        print(f"| {kind} | {m['log_ms_per_generation']:.3f} | {m['open_s']:.2f} | "
              f"{m['close_s']:.2f} | {m['run_s']:.2f} |")


if __name__ == "__main__":
    main()
