"""How DaskEvaluator scales: fixed cost per generation, per-task cost, HalfCheetah throughput.

    python benchmarks/dask_scaling.py overhead     # fixed cost per generation vs SerialEvaluator
    python benchmarks/dask_scaling.py tasks        # cost per Dask task (chunk), for projections
    python benchmarks/dask_scaling.py halfcheetah  # steps/s: serial vs 1, 2, ... Dask workers
    python benchmarks/dask_scaling.py all [--out docs/dask-benchmarks.md]

``overhead``: population 256, 100,000 parameters, a trivial objective (the first
coordinate), the default 128 MiB noise table. Each evaluator runs a warm-up generation (the
workers build the noise table then) and ``--generations`` timed ones; the median is
reported. The *fixed cost* is ``T_dask - T_serial / workers``: what a generation costs beyond a
perfect split of the serial work.

``tasks``: a tiny problem cut into more and more chunks; the slope of generation time
against the number of chunks is the cost of one Dask task, which with the fixed cost
projects scaling to machines we did not run on (``--project 16``).

``halfcheetah``: ``asktell.gym.GymTask("HalfCheetah-v5")`` (MLP policy) when that module is
available, else ``--task builtin``: a self-contained linear-policy HalfCheetah rollout,
so the scaling can be measured before the Gymnasium task exists. Reports environment
steps per second for ``SerialEvaluator`` and ``DaskEvaluator`` with ``--workers`` workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from asktell import Distribution, FunctionTask, NoiseTable, TaskResult
from asktell.evaluators import DaskEvaluator, SerialEvaluator
from asktell.noise import DEFAULT_TABLE_SIZE, mirrored


def first_column(X: np.ndarray) -> np.ndarray:
    return X[:, 0].copy()


def _problem(population: int, num_params: int, noise: NoiseTable, generation: int = 0):
    rng = np.random.default_rng(generation)
    dist = Distribution(rng.standard_normal(num_params), 0.02, noise, generation=generation)
    seeds = mirrored(noise.sample_keys(rng, population // 2, num_params))
    return dist, seeds


def _time_generations(ev, population, num_params, noise, generations) -> list[float]:
    dist, seeds = _problem(population, num_params, noise)
    ev.evaluate(dist, seeds)  # warm-up: noise table, imports, task shipping
    times = []
    for g in range(1, generations + 1):
        dist, seeds = _problem(population, num_params, noise, generation=g)
        start = time.perf_counter()
        ev.evaluate(dist, seeds)
        times.append(time.perf_counter() - start)
    return times


def _time_dask(ev, population, num_params, noise, generations) -> tuple[list[float], list[float]]:
    """Wall time per generation, and the busiest worker's compute time (Dask's task stream)."""
    import distributed

    dist, seeds = _problem(population, num_params, noise)
    ev.evaluate(dist, seeds)  # warm-up
    walls, busiest = [], []
    for g in range(1, generations + 1):
        dist, seeds = _problem(population, num_params, noise, generation=g)
        with distributed.get_task_stream(client=ev.client) as stream:
            start = time.perf_counter()
            ev.evaluate(dist, seeds)
            walls.append(time.perf_counter() - start)
        per_worker: dict[str, float] = {}
        for record in stream.data:
            for ss in record["startstops"]:
                if ss["action"] == "compute":
                    per_worker[record["worker"]] = (
                        per_worker.get(record["worker"], 0.0) + ss["stop"] - ss["start"]
                    )
        busiest.append(max(per_worker.values()))
    return walls, busiest


def overhead(args) -> list[str]:
    noise = NoiseTable(seed=0, size=DEFAULT_TABLE_SIZE)
    task = FunctionTask(first_column, vectorized=True)
    P, N, G = args.population, args.num_params, args.generations
    with SerialEvaluator(task) as ev:
        serial = statistics.median(_time_generations(ev, P, N, noise, G))
    lines = [
        f"### Fixed cost per generation (population {P}, {N:,} parameters, trivial objective)",
        "",
        "Fixed cost = wall time - the busiest worker's compute time (from Dask's task stream),",
        "i.e. what Dask adds beyond the work itself; it does not depend on how fast (or how",
        "contended) the cores are. Medians over the timed generations.",
        "",
        "| evaluator | workers | chunks/worker | ms per generation | busiest worker computing (ms) "
        "| fixed cost (ms) |",
        "|---|---|---|---|---|---|",
        f"| SerialEvaluator | - | - | {serial * 1e3:.1f} | {serial * 1e3:.1f} | - |",
    ]
    print(lines[-1], flush=True)
    with DaskEvaluator(task, num_workers=args.workers) as ev:
        for cpw in args.chunks_per_worker:
            ev.chunks_per_worker = cpw
            walls, busiest = _time_dask(ev, P, N, noise, G)
            fixed = statistics.median(np.subtract(walls, busiest))
            lines.append(
                f"| DaskEvaluator | {args.workers} | {cpw} | {statistics.median(walls) * 1e3:.1f} "
                f"| {statistics.median(busiest) * 1e3:.1f} | {fixed * 1e3:.1f} |"
            )
            print(lines[-1], flush=True)
    return lines


def tasks(args) -> tuple[list[str], float, float]:
    noise = NoiseTable(seed=0, size=1 << 20)
    task = FunctionTask(first_column, vectorized=True)
    population = 1024
    rows = []
    with DaskEvaluator(task, num_workers=args.workers) as ev:
        for cpw in (1, 2, 4, 8, 16, 32, 64):
            ev.chunks_per_worker = cpw
            t = statistics.median(_time_generations(ev, population, 16, noise, args.generations))
            rows.append((cpw * args.workers, t))
            print(f"chunks={cpw * args.workers:4d}  {t * 1e3:7.2f} ms", flush=True)
    chunks = np.array([r[0] for r in rows], dtype=float)
    times = np.array([r[1] for r in rows])
    # Fit where a task still has a few per worker thread: past that, tasks shorter than a
    # scheduler round trip leave workers idle, a regime real chunks (rollouts) never reach.
    fit = chunks <= 32 * args.workers
    per_task, intercept = np.polyfit(chunks[fit], times[fit], 1)
    lines = [
        f"### Cost per Dask task ({args.workers} workers, tiny work, population {population})",
        "",
        "| chunks per generation | ms per generation |",
        "|---|---|",
        *[f"| {c} | {t * 1e3:.2f} |" for c, t in rows],
        "",
        f"Least-squares fit (up to {32 * args.workers} chunks): {intercept * 1e3:.2f} ms + "
        f"{per_task * 1e3:.3f} ms per chunk.",
    ]
    return lines, float(intercept), float(per_task)


# ------------------------------------------------------------------------- HalfCheetah


class LinearCheetah:
    """Self-contained stand-in for GymTask: HalfCheetah-v5, linear tanh policy, fixed steps."""

    def __init__(self, steps: int = 1000, env_id: str = "HalfCheetah-v5"):
        self.steps = steps
        self.env_id = env_id
        self.num_params = 17 * 6
        self._env = None

    def __getstate__(self):
        return {"steps": self.steps, "env_id": self.env_id, "num_params": self.num_params}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._env = None

    def evaluate(self, params, seeds, distribution) -> TaskResult:
        import gymnasium as gym

        if self._env is None:
            self._env = gym.make(self.env_id)
        n = params.shape[0]
        returns = np.zeros(n)
        steps = np.zeros(n, dtype=np.int64)
        for i in range(n):
            W = params[i].reshape(6, 17)
            obs, _ = self._env.reset(seed=int(distribution.generation))
            for t in range(self.steps):
                obs, reward, terminated, truncated, _ = self._env.step(np.tanh(W @ obs))
                returns[i] += reward
                steps[i] += 1
                if terminated or truncated:
                    break
        return TaskResult(returns=returns, steps=steps)


def _cheetah_task(args):
    if args.task in ("auto", "gymtask"):
        try:
            from asktell.gym import GymTask  # noqa: PLC0415 - optional, written in parallel

            task = GymTask(
                "HalfCheetah-v5", step_cap="fixed", max_episode_steps=args.steps, obs_norm=False
            )
            return task, f"asktell.gym.GymTask('HalfCheetah-v5'), MLP, {args.steps} steps"
        except Exception as exc:  # noqa: BLE001
            if args.task == "gymtask":
                raise SystemExit(f"asktell.gym.GymTask is not available here: {exc}")
            print(f"(asktell.gym.GymTask unavailable: {exc}; using the built-in linear "
                  "HalfCheetah task)", flush=True)
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return LinearCheetah(args.steps), f"built-in LinearCheetah, {args.steps} steps"


def halfcheetah(args) -> list[str]:
    try:
        import gymnasium as gym

        gym.make("HalfCheetah-v5").close()
    except Exception as exc:  # noqa: BLE001
        return [f"HalfCheetah-v5 unavailable ({exc}); skipped."]
    task, label = _cheetah_task(args)
    num_params = task.num_params
    noise = NoiseTable(seed=0, size=1 << 22)
    P, G = args.cheetah_population, args.cheetah_generations

    def run(ev):
        dist, seeds = _problem(P, num_params, noise)
        if hasattr(task, "context"):
            dist = dist.replace(context=task.context())
        ev.evaluate(dist, seeds)  # warm-up: environments made, noise table built
        steps, start = 0, time.perf_counter()
        for g in range(1, G + 1):
            dist, seeds = _problem(P, num_params, noise, generation=g)
            if hasattr(task, "context"):
                dist = dist.replace(context=task.context())
            steps += ev.evaluate(dist, seeds).total_steps
        return steps / (time.perf_counter() - start)

    lines = [
        f"### HalfCheetah-v5 throughput ({label}, population {P})",
        "",
        "| evaluator | workers | env steps/s | vs serial |",
        "|---|---|---|---|",
    ]
    with SerialEvaluator(task) as ev:
        serial = run(ev)
    lines.append(f"| SerialEvaluator | - | {serial:,.0f} | 1.00x |")
    print(lines[-1], flush=True)
    for w in args.workers_list:
        with DaskEvaluator(task, num_workers=w) as ev:
            rate = run(ev)
        lines.append(f"| DaskEvaluator | {w} | {rate:,.0f} | {rate / serial:.2f}x |")
        print(lines[-1], flush=True)
    return lines


def projection(intercept: float, per_task: float, args) -> list[str]:
    """Amdahl-style projection: ``T(W) = work / W + fixed + per_task * chunks(W)``."""
    work = args.project_work
    cpw = 4
    lines = [
        f"### Projected speed-up to {args.project} workers (not measured: a model)",
        "",
        f"Model: T(W) = {work:g} s / W + {intercept * 1e3:.1f} ms + "
        f"{per_task * 1e3:.2f} ms x {cpw}W chunks; the per-task cost is charged serially "
        "(the scheduler hands out tasks one by one).",
        "",
        "| workers | projected s per generation | speed-up |",
        "|---|---|---|",
    ]
    for w in (1, 2, 4, 8, 12, 16, 32)[: 1 + sum(x <= args.project for x in (2, 4, 8, 12, 16, 32))]:
        t = work / w + intercept + per_task * cpw * w
        lines.append(f"| {w} | {t:.3f} | {work / t:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overhead", "tasks", "halfcheetah", "all"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--num-params", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--chunks-per-worker", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--task", choices=["auto", "gymtask", "builtin"], default="auto")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--cheetah-population", type=int, default=16)
    parser.add_argument("--cheetah-generations", type=int, default=2)
    parser.add_argument("--workers-list", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--project", type=int, default=16)
    parser.add_argument(
        "--project-work",
        type=float,
        default=256 * 1000 / 25_000,
        help="serial seconds of work per generation to project (default: 256 HalfCheetah "
        "episodes of 1000 steps at 25k steps/s)",
    )
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()

    header = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        "",
    ]
    out = list(header)
    if args.what in ("overhead", "all"):
        out += overhead(args) + [""]
    if args.what in ("tasks", "all"):
        lines, intercept, per_task = tasks(args)
        out += lines + [""] + projection(intercept, per_task, args) + [""]
    if args.what in ("halfcheetah", "all"):
        out += halfcheetah(args) + [""]
    text = "\n".join(out)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
