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
projects scaling to machines we did not run on (``--project 16``; a simple Amdahl-style
sketch: ``benchmarks/scaling.py`` and ``docs/scaling.md`` have the model with the broadcast,
the driver, stragglers and node mode, checked against a loopback simulation).

``halfcheetah``: ``asktell.gym.GymTask("HalfCheetah-v5")`` (MLP policy) when that module is
available, else ``--task builtin``: a self-contained linear-policy HalfCheetah rollout,
so the scaling can be measured before the Gymnasium task exists. Reports environment
steps per second for ``SerialEvaluator`` and ``DaskEvaluator`` with ``--workers`` workers.
"""

from __future__ import annotations

import argparse
import multiprocessing
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


def _time_dask(
    ev, population, num_params, noise, generations, stream: bool = True
) -> dict[str, list[float]]:
    """Per generation: wall time, the busiest worker's compute time (Dask's task stream, if
    ``stream``; recording it costs driver CPU), and the CPU time of this process (the
    client and, for an embedded cluster, the scheduler)."""
    import contextlib

    import distributed

    dist, seeds = _problem(population, num_params, noise)
    ev.evaluate(dist, seeds)  # warm-up
    out: dict[str, list[float]] = {"wall": [], "busiest": [], "driver_cpu": []}
    for g in range(1, generations + 1):
        dist, seeds = _problem(population, num_params, noise, generation=g)
        recorder = (
            distributed.get_task_stream(client=ev.client) if stream else contextlib.nullcontext()
        )
        with recorder as records:
            cpu, start = time.process_time(), time.perf_counter()
            ev.evaluate(dist, seeds)
            out["wall"].append(time.perf_counter() - start)
            out["driver_cpu"].append(time.process_time() - cpu)
        if not stream:
            continue
        per_worker: dict[str, float] = {}
        for record in records.data:
            for ss in record["startstops"]:
                if ss["action"] == "compute":
                    per_worker[record["worker"]] = (
                        per_worker.get(record["worker"], 0.0) + ss["stop"] - ss["start"]
                    )
        out["busiest"].append(max(per_worker.values()))
    return out


def _ms(values) -> str:
    return f"{statistics.median(values) * 1e3:.1f}"


def overhead(args) -> list[str]:
    noise = NoiseTable(seed=0, size=DEFAULT_TABLE_SIZE)
    task = FunctionTask(first_column, vectorized=True)
    P, N, G = args.population, args.num_params, args.generations
    with SerialEvaluator(task) as ev:
        serial = statistics.median(_time_generations(ev, P, N, noise, G))
    lines = [
        f"### Fixed cost per generation (population {P}, {N:,} parameters, trivial objective)",
        "",
        "*fixed* = wall time - the busiest worker's compute time (Dask's task stream): what a",
        "generation costs beyond the work itself, median (and best) over the timed",
        "generations. *driver CPU* = CPU time of the process running the client and the",
        "embedded scheduler, which does not grow when other programs share the cores.",
        "",
        "| evaluator | workers | chunks/worker | wall (ms) | busiest worker (ms) "
        "| fixed, median (best) (ms) | driver CPU (ms) |",
        "|---|---|---|---|---|---|---|",
        f"| SerialEvaluator | - | - | {serial * 1e3:.1f} | {serial * 1e3:.1f} | - | - |",
    ]
    print(lines[-1], flush=True)
    with DaskEvaluator(task, num_workers=args.workers) as ev:
        for cpw in args.chunks_per_worker:
            ev.chunks_per_worker = cpw
            t = _time_dask(ev, P, N, noise, G)
            label = f"auto ({ev.next_chunks_per_worker})" if cpw == "auto" else cpw
            fixed = np.subtract(t["wall"], t["busiest"])
            lines.append(
                f"| DaskEvaluator | {args.workers} | {label} | {_ms(t['wall'])} | "
                f"{_ms(t['busiest'])} | {_ms(fixed)} ({min(fixed) * 1e3:.1f}) | "
                f"{_ms(t['driver_cpu'])} |"
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
            t = _time_dask(ev, population, 16, noise, args.generations, stream=False)
            rows.append((cpw * args.workers, min(t["wall"]), statistics.median(t["driver_cpu"])))
            print(
                f"chunks={rows[-1][0]:4d}  best wall {rows[-1][1] * 1e3:7.2f} ms  "
                f"driver CPU {rows[-1][2] * 1e3:7.2f} ms",
                flush=True,
            )
    chunks = np.array([r[0] for r in rows], dtype=float)
    cpus = np.array([r[2] for r in rows])
    # The serial cost of a task is the CPU the scheduler and client spend on it (it does not
    # grow with contention); the fixed cost of a generation is the best wall time with
    # almost no work, latency included.
    cpu_per_task, cpu_intercept = np.polyfit(chunks, cpus, 1)
    fixed = float(rows[0][1])
    lines = [
        f"### Cost per Dask task ({args.workers} workers, tiny work, population {population})",
        "",
        "| chunks per generation | best wall (ms) | driver CPU, median (ms) |",
        "|---|---|---|",
        *[f"| {c} | {w * 1e3:.2f} | {u * 1e3:.2f} |" for c, w, u in rows],
        "",
        f"Driver CPU (client + embedded scheduler), least squares: {cpu_intercept * 1e3:.2f} ms "
        f"+ {cpu_per_task * 1e3:.3f} ms per task. Fixed cost (best wall, {rows[0][0]} "
        f"chunks): {fixed * 1e3:.1f} ms.",
    ]
    return lines, fixed, float(cpu_per_task)


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


def _one_generation(ev, task, num_params, noise, P, g) -> float:
    """Environment steps per second of one generation of population ``P``."""
    dist, seeds = _problem(P, num_params, noise, generation=g)
    if hasattr(task, "context"):
        dist = dist.replace(context=task.context())
    start = time.perf_counter()
    steps = ev.evaluate(dist, seeds).total_steps
    return steps / (time.perf_counter() - start)


def _serial_server(conn, task, num_params) -> None:
    """A process holding one SerialEvaluator: answers ``(P, g)`` with the steps it took."""
    noise = NoiseTable(seed=0, size=1 << 22)
    with SerialEvaluator(task) as ev:
        while (job := conn.recv()) is not None:
            P, g = job
            dist, seeds = _problem(P, num_params, noise, generation=g)
            if hasattr(task, "context"):
                dist = dist.replace(context=task.context())
            conn.send(ev.evaluate(dist, seeds).total_steps)


def halfcheetah(args) -> tuple[list[str], float | None]:
    """Environment steps per second; also returns the serial rate (for the projection).

    Serial and Dask generations alternate (the same generation on each, every cluster
    warmed up first), so a machine whose speed drifts over the run slows both alike; the
    medians of the per-generation rates are reported.
    """
    try:
        import gymnasium as gym

        gym.make("HalfCheetah-v5").close()
    except Exception as exc:  # noqa: BLE001
        return [f"HalfCheetah-v5 unavailable ({exc}); skipped."], None
    task, label = _cheetah_task(args)
    num_params = task.num_params
    noise = NoiseTable(seed=0, size=1 << 22)
    G = args.cheetah_generations

    lines = [
        f"### HalfCheetah-v5 throughput ({label})",
        "",
        f"Median over {G} generations; serial and Dask generations alternate. The serial "
        "evaluator runs in a process of its own: beside a Dask client and an in-process "
        "scheduler its rollouts would share the interpreter lock with their threads.",
        "",
        "| population | evaluator | workers | env steps/s | vs serial |",
        "|---|---|---|---|---|",
    ]
    serial_rate = None
    ctx = multiprocessing.get_context("spawn")
    servers = []
    for _ in range(2):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serial_server, args=(child, task, num_params), daemon=True)
        proc.start()
        servers.append((parent, proc))

    def serial(P, g, n=1) -> float:
        """Steps/s of ``n`` serial processes evaluating ``P`` candidates each, together."""
        start = time.perf_counter()
        for conn, _ in servers[:n]:
            conn.send((P, g))
        steps = sum(conn.recv() for conn, _ in servers[:n])
        return steps / (time.perf_counter() - start)

    try:
        for P in args.cheetah_population:
            serial(P, 0, 2)  # warm-up: environments made, noise table built
            serial_rates: list[float] = []
            pair_rates: list[float] = []
            rows = []
            for w in args.workers_list:
                with DaskEvaluator(task, num_workers=w) as ev:
                    _one_generation(ev, task, num_params, noise, P, 0)
                    rates = []
                    for g in range(1, G + 1):
                        serial_rates.append(serial(P, g))
                        pair_rates.append(serial(P // 2, g, 2))
                        rates.append(_one_generation(ev, task, num_params, noise, P, g))
                rows.append((w, statistics.median(rates)))
            s = statistics.median(serial_rates)
            pair = statistics.median(pair_rates)
            serial_rate = serial_rate or s
            lines.append(f"| {P} | SerialEvaluator | - | {s:,.0f} | 1.00x |")
            print(lines[-1], flush=True)
            lines.append(
                f"| {P} | 2 SerialEvaluator processes, {P // 2} candidates each (ceiling) "
                f"| - | {pair:,.0f} | {pair / s:.2f}x |"
            )
            print(lines[-1], flush=True)
            for w, rate in rows:
                lines.append(f"| {P} | DaskEvaluator | {w} | {rate:,.0f} | {rate / s:.2f}x |")
                print(lines[-1], flush=True)
    finally:
        for conn, proc in servers:
            conn.send(None)
            proc.join(timeout=30)
    return lines, serial_rate


def projection(fixed: float, per_task: float, serial_rate: float | None, args) -> list[str]:
    """Amdahl-style projection: ``T(W) = work / W + fixed + per_task * chunks(W)``."""
    if args.project_work is not None:
        work, what = args.project_work, f"{args.project_work:g} s of serial work"
    else:
        rate = serial_rate or 25_000.0
        work = args.project_population * args.steps / rate
        what = (
            f"population {args.project_population} x {args.steps} HalfCheetah steps at "
            f"{rate:,.0f} steps/s ({'measured serially above' if serial_rate else 'assumed'})"
            f" = {work:.2f} s of serial work"
        )
    cpw = 4
    lines = [
        f"### Projected speed-up to {args.project} workers (a model, not a measurement)",
        "",
        f"Generation: {what}. Model: T(W) = work / W + {fixed * 1e3:.1f} ms fixed + "
        f"{per_task * 1e3:.2f} ms x {cpw}W tasks, the per-task CPU of the client and "
        "scheduler charged serially (the scheduler hands tasks out one at a time). It "
        "assumes W free cores and ignores stragglers.",
        "",
        "| workers | projected s per generation | speed-up |",
        "|---|---|---|",
    ]
    for w in (1, 2, 4, 8, 12, 16, 32)[: 1 + sum(x <= args.project for x in (2, 4, 8, 12, 16, 32))]:
        t = work / w + fixed + per_task * cpw * w
        lines.append(f"| {w} | {t:.3f} | {work / t:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overhead", "tasks", "halfcheetah", "all"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--num-params", type=int, default=100_000)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument(
        "--chunks-per-worker",
        type=lambda v: v if v == "auto" else int(v),
        nargs="+",
        default=[1, 2, 4, "auto"],
    )
    parser.add_argument("--task", choices=["auto", "gymtask", "builtin"], default="auto")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--cheetah-population", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--cheetah-generations", type=int, default=5)
    parser.add_argument("--workers-list", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--project", type=int, default=16)
    parser.add_argument("--project-population", type=int, default=256)
    parser.add_argument(
        "--project-work",
        type=float,
        default=None,
        help="serial seconds of work per generation to project (default: "
        "--project-population HalfCheetah episodes at the measured serial rate)",
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
    serial_rate = None
    if args.what in ("halfcheetah", "all"):
        lines, serial_rate = halfcheetah(args)
        out += lines + [""]
    if args.what in ("tasks", "all"):
        lines, fixed, per_task = tasks(args)
        out += lines + [""] + projection(fixed, per_task, serial_rate, args) + [""]
    text = "\n".join(out)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
