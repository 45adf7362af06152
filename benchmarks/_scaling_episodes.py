"""Episode times of real MuJoCo rollouts for ``benchmarks/scaling.py`` (``episodes``).

``GymTask(env, step_cap="fixed", max_episode_steps=1000)`` with asktell's default policy,
perturbed around its initial centre, one candidate per ``SerialEvaluator.evaluate`` call:
wall and CPU time per episode, in two regimes (falls end episodes; every episode runs to the
cap). ``docs/scaling.md`` quotes them; the model draws its episode times from them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np


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
    times, cpu, steps = [], [], []
    with SerialEvaluator(task) as ev:
        ev.evaluate(dist, seeds[:1])  # warm-up: the environment is made, imports done
        for s in seeds:
            start, start_cpu = time.perf_counter(), time.thread_time()
            result = ev.evaluate(dist, np.array([s]))
            cpu.append(time.thread_time() - start_cpu)
            times.append(time.perf_counter() - start)
            steps.append(int(result.steps[0]))
    return {
        "env_id": env_id,
        "env_kwargs": kwargs,
        "regime": "falls end episodes" if terminate else "every episode runs to the cap",
        "num_params": task.num_params,
        "seconds": [round(t, 6) for t in times],
        "cpu_seconds": [round(t, 6) for t in cpu],
        "steps": steps,
        "mean_seconds": statistics.fmean(times),
        "mean_cpu_seconds": statistics.fmean(cpu),
        "seconds_per_step": sum(times) / sum(steps),
        "quantiles_seconds": {
            q: float(np.quantile(times, float(q))) for q in ("0.1", "0.5", "0.9", "0.99")
        },
        "quantiles_cpu_seconds": {
            q: float(np.quantile(cpu, float(q))) for q in ("0.1", "0.5", "0.9", "0.99")
        },
    }


def episodes_main(args, machine: dict, stored: Path) -> None:
    """``scaling.py episodes``: the four regimes' samples, written to ``args.episodes_out``
    (``stored`` is left alone by ``--quick``)."""
    plan = [("Hopper-v5", True, 200), ("Hopper-v5", False, 60),
            ("Humanoid-v5", True, 200), ("Humanoid-v5", False, 40)]
    if args.quick:
        plan = [(env, term, 4) for env, term, _ in plan[:1]]
    out = {
        "how": "benchmarks/scaling.py episodes: GymTask(env, step_cap='fixed', "
        "max_episode_steps=1000), default policy (MLP 2x64 tanh, float32, observation "
        "normalisation with empty statistics), perturbations of the policy's initial centre "
        "(OpenAIES sigma 0.02), one candidate per SerialEvaluator.evaluate call, wall time "
        "per call (time.perf_counter) and its CPU time (time.thread_time: what the episode costs a "
        "core it has to itself; wall time also counts waiting for a core). One process, the 2-core machine shared with other "
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
            f"{s['seconds_per_step'] * 1e6:6.1f} us/step  CPU mean "
            f"{s['mean_cpu_seconds'] * 1e3:8.2f} ms",
            flush=True,
        )
    out["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    if args.quick and args.episodes_out == str(stored):
        print("--quick: the stored episode times are left as they are (give --episodes-out)")
        return
    path = Path(args.episodes_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
