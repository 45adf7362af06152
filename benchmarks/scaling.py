"""Measure and project: how a generation's time grows from 2 workers to the paper's 1,440.

    python benchmarks/scaling.py episodes   # real Hopper/Humanoid rollouts -> benchmarks/data/episode_times.json
    python benchmarks/scaling.py all        # constants, loopback simulation, validation, projection
    python benchmarks/scaling.py all --quick --json out.json   # seconds; for tests and docs checks

Salimans et al. 2017 report a near-linear speed-up to 1,440 CPU cores (80 machines x 18)
on Humanoid. This script does not have 1,440 cores; it measures the pieces of a generation
on this machine and puts them together in a model (``docs/scaling.md``):

1. ``episodes``: per-episode wall time and steps of real MuJoCo rollouts (``GymTask``,
   the default 2x64 tanh MLP, episode cap 1000) of perturbed policies around the policy's
   initial centre, in two regimes: episodes that end when the robot falls (early training)
   and episodes that always run to the 1000-step cap (``terminate_when_unhealthy=False``: the
   cost of a policy that stays up, late training).
2. constants: Dask's fixed cost per generation and cost per task (no-op generations through
   ``DaskEvaluator``), the distribution's broadcast (bytes per fetch), the driver's
   ask + tell (``OpenAIES`` directly), a local process pool's cost per candidate.
3. a loopback simulation: ``DaskEvaluator`` on an embedded ``LocalCluster`` with W worker
   threads whose candidates only ``time.sleep`` for episode times drawn from (1), scaled down
   so a generation takes a fraction of a second; wall time, the ideal, overhead, efficiency.
4. validation: the model's prediction (constants from 2, never fitted to 3) against 3.
5. projection to 1,440 workers: one Dask task per core, and one per node (80 x 18).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import pickle
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
EPISODES_JSON = DATA / "episode_times.json"
RESULTS_JSON = DATA / "scaling_results.json"

#: The paper's Humanoid run, as the public code for the paper configures it
#: (openai/evolution-strategies-starter, configurations/humanoid.json): a generation is at
#: least 10,000 episodes (5,000 mirrored pairs) and 100,000 steps; a 2x256 tanh MLP; the
#: environment's own episode limit (1000 steps). 1,440 cores = 80 machines x 18.
PAPER = {
    "population": 10_000,
    "hidden_sizes": [256, 256],
    "episode_cap": 1000,
    "workers": 1440,
    "nodes": 80,
    "cores_per_node": 18,
}
#: Assumed for the projection, not measured here: the bandwidth at which one worker (or
#: node) serves the distribution to the others (10 Gbit/s Ethernet).
ASSUMED_LINK_BYTES_PER_S = 1.25e9


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# ------------------------------------------------------------------ 1. episode times


def measure_episodes(env_id: str, terminate: bool, count: int, seed: int = 0) -> dict:
    """Per-episode wall time and steps of ``count`` perturbed policies, one at a time."""
    from asktell.evaluators import SerialEvaluator
    from asktell.gym import GymTask
    from asktell.noise import NoiseTable
    from asktell.strategies import OpenAIES

    kwargs = {} if terminate else {"terminate_when_unhealthy": False}
    task = GymTask(env_id, env_kwargs=kwargs, step_cap="fixed", max_episode_steps=1000)
    es = OpenAIES(
        num_params=task.num_params,
        population_size=count + count % 2,
        x0=task.initial_params(seed),
        seed=seed,
        noise=NoiseTable(seed=seed, size=1 << 24),
    )
    seeds = es.ask()[:count]
    dist = es.distribution.replace(context=task.context())
    times, steps = [], []
    with SerialEvaluator(task) as ev:
        ev.evaluate(dist, seeds[:1])  # warm-up: the environment is made, imports done
        for s in seeds:
            start = time.perf_counter()
            result = ev.evaluate(dist, np.array([s]))
            times.append(time.perf_counter() - start)
            steps.append(int(result.steps[0]))
    return {
        "env_id": env_id,
        "env_kwargs": kwargs,
        "regime": "falls end episodes" if terminate else "every episode runs to the cap",
        "num_params": task.num_params,
        "seconds": [round(t, 6) for t in times],
        "steps": steps,
        "mean_seconds": statistics.fmean(times),
        "seconds_per_step": sum(times) / sum(steps),
        "quantiles_seconds": {
            q: float(np.quantile(times, float(q))) for q in ("0.1", "0.5", "0.9", "0.99")
        },
    }


def episodes_main(args) -> None:
    plan = [("Hopper-v5", True, 200), ("Hopper-v5", False, 60),
            ("Humanoid-v5", True, 200), ("Humanoid-v5", False, 40)]
    if args.quick:
        plan = [(env, term, 4) for env, term, _ in plan[:1]]
    machine = _machine()
    out = {
        "how": "benchmarks/scaling.py episodes: GymTask(env, step_cap='fixed', "
        "max_episode_steps=1000), default policy (MLP 2x64 tanh, float32, observation "
        "normalisation with empty statistics), perturbations of the policy's initial centre "
        "(OpenAIES sigma 0.02), one candidate per SerialEvaluator.evaluate call, wall time "
        "per call (time.perf_counter). One process, the 2-core machine shared with other "
        "work: load average at the start is recorded.",
        "machine": machine,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "samples": {},
    }
    for env_id, terminate, count in plan:
        key = f"{env_id.split('-')[0].lower()}_{'falls' if terminate else 'full'}"
        s = measure_episodes(env_id, terminate, count)
        out["samples"][key] = s
        print(
            f"{key:16s} n={count:3d} mean {s['mean_seconds'] * 1e3:8.2f} ms  "
            f"median steps {int(np.median(s['steps'])):5d}  "
            f"{s['seconds_per_step'] * 1e6:6.1f} us/step",
            flush=True,
        )
    out["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    path = Path(args.episodes_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["episodes", "all"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes-out", default=str(EPISODES_JSON))
    args = parser.parse_args()
    episodes_main(args)
