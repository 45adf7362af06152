"""Atari frames per second: the emulator and its preprocessing against full rollouts with
:class:`~asktell.atari.AtariPolicy` (VBN on), in one process and vectorised, side by side.

Rows, in one run:

* ``emulator``: ``ale.act`` alone (random actions), the price of the frames themselves;
* ``preprocessed``: the preprocessed environment (frame skip 4 with max-pooling, 84x84
  grayscale, 4-frame stack) stepped with random actions, no policy: the *ceiling*;
* ``policy``: the network's forward pass per candidate and step at batch sizes 1..32, and
  the cost of loading one candidate (its VBN statistics on the reference batch);
* ``serial``: :class:`SerialEvaluator` on a population (one env, one candidate at a time);
* ``vector nN``: :class:`VectorEnvEvaluator` (``sync``) with N environments in this process,
  one batched forward for all N candidates per step.

Frames/s counts emulator frames (agent steps x 4). Each rollout row is measured right after
its own ceiling measurement and reports ``rollout / ceiling``: the issue's goal is >= 0.5,
i.e. the policy (with VBN) costs less than the emulator and preprocessing per step. Rollouts
include loading each candidate (VBN statistics), whole Pong episodes with the policy's
initialisation (about 3,500 frames each), and no centre evaluation.

BLAS: the script sets ``OPENBLAS_NUM_THREADS=1`` (and friends) unless ``--blas-threads``
is given: per-candidate matrix products are small, and a multi-threaded BLAS on a busy
machine makes them several times slower; parallelism comes from processes.

    python benchmarks/atari.py                          # Pong, batches 8/16/32
    python benchmarks/atari.py --game Breakout --batches 8 --json out.json
"""

from __future__ import annotations

import argparse
import os
import sys


def _set_blas_threads(argv: list[str]) -> str:
    threads = "1"
    if "--blas-threads" in argv:
        threads = argv[argv.index("--blas-threads") + 1]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    return threads


BLAS_THREADS = _set_blas_threads(sys.argv)  # before numpy is imported

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def emulator_rate(task, seconds: float) -> float:
    """Frames/s of ``ale.act`` alone with random actions."""
    env = task.make_env()
    env.reset(seed=0)
    ale = env.unwrapped.ale
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(0)
    picks = [actions[i] for i in rng.integers(len(actions), size=4096)]
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in picks[:1024]:
            ale.act(a)
            if ale.game_over():
                ale.reset_game()
        frames += 1024
    rate = frames / (time.perf_counter() - start)
    env.close()
    return rate


def preprocessed_rate(task, seconds: float) -> float:
    """Frames/s of the preprocessed environment stepped with random actions (no policy)."""
    env = task.make_env()
    rng = np.random.default_rng(1)
    picks = rng.integers(task.action_spec.n, size=4096)
    episode = 0
    env.reset(seed=episode)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in picks[:256]:
            _, _, terminated, truncated, _ = env.step(a)
            steps += 1
            if terminated or truncated:
                episode += 1
                env.reset(seed=episode)
    rate = steps * task.frame_skip / (time.perf_counter() - start)
    env.close()
    return rate


def policy_costs(task, batches: list[int]) -> dict:
    """Forward pass per candidate-step (us) at each batch size, and load per candidate (ms)."""
    policy = task.policy
    rng = np.random.default_rng(2)
    out = {"forward_us": {}, "load_ms": None}
    params = np.stack([policy.init_params(i) for i in range(max(batches))])
    params += 0.02 * rng.standard_normal(params.shape)
    weights = policy.allocate(8)
    start = time.perf_counter()
    policy.load(weights, slice(0, 8), params[:8])
    out["load_ms"] = (time.perf_counter() - start) / 8 * 1e3
    for n in batches:
        weights = policy.allocate(n)
        policy.load(weights, slice(0, n), params[:n])
        x = rng.integers(0, 256, (n, policy.obs_dim)).astype(np.float32)
        policy.act(weights, x)
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(10):
                policy.act(weights, x)
            best = min(best, (time.perf_counter() - start) / 10 / n)
        out["forward_us"][n] = best * 1e6
    return out


def rollout_rate(task, evaluator, population: int) -> tuple[float, int]:
    """Frames/s of one evaluation of ``population`` candidates (whole episodes)."""
    from asktell.distribution import Distribution
    from asktell.noise import NoiseTable

    dist = Distribution(
        center=task.initial_params(0), sigma=0.02, noise=NoiseTable(0, 1 << 22),
        generation=1, context=task.context(),
    )
    half = population // 2
    seeds = np.empty(2 * half, dtype=np.int64)
    seeds[0::2] = np.arange(half) * 1000
    seeds[1::2] = ~seeds[0::2]
    evaluator.evaluate(dist.replace(generation=0), seeds[:2])  # warm-up: envs, noise table
    start = time.perf_counter()
    evaluation = evaluator.evaluate(dist, seeds)
    elapsed = time.perf_counter() - start
    frames = int(np.sum(evaluation.steps)) * task.frame_skip
    return frames / elapsed, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--network", default="a3c", choices=["a3c", "nature"])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--population", type=int, default=16,
                        help="candidates of the serial rollout (vector rows: max(this, N))")
    parser.add_argument("--seconds", type=float, default=4.0, help="per ceiling measurement")
    parser.add_argument("--max-episode-frames", type=int, default=108_000)
    parser.add_argument("--no-vbn", action="store_true")
    parser.add_argument("--blas-threads", default="1")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from asktell.atari import AtariTask
    from asktell.evaluators import SerialEvaluator, VectorEnvEvaluator

    task = AtariTask(args.game, network=args.network, vbn=not args.no_vbn,
                     max_episode_frames=args.max_episode_frames, seed=0)
    print(f"{task.env_id}, network {args.network} ({task.num_params:,} parameters), "
          f"VBN {'on' if task.vbn else 'off'}, BLAS threads {BLAS_THREADS}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    results: dict = {"game": task.env_id, "network": args.network, "vbn": task.vbn,
                     "num_params": task.num_params, "blas_threads": BLAS_THREADS, "rows": []}

    emu = emulator_rate(task, args.seconds)
    ceiling = preprocessed_rate(task, args.seconds)
    print(f"{'emulator (ale.act)':28s} {emu:9,.0f} frames/s")
    print(f"{'preprocessed env (ceiling)':28s} {ceiling:9,.0f} frames/s   "
          f"({1e6 * task.frame_skip / ceiling:.0f} us per agent step)")
    results["emulator_fps"] = emu
    results["ceiling_fps"] = ceiling

    costs = policy_costs(task, sorted({1, *args.batches}))
    results["policy"] = costs
    for n, us in costs["forward_us"].items():
        print(f"{'policy forward, batch ' + str(n):28s} {us:9,.0f} us per candidate-step")
    print(f"{'policy load (VBN statistics)':28s} {costs['load_ms']:9,.1f} ms per candidate")

    rows = [("serial", None)] + [(f"vector n{n}", n) for n in args.batches]
    for name, n in rows:
        ceiling = preprocessed_rate(task, args.seconds)  # adjacent ceiling: load drifts
        if n is None:
            evaluator = SerialEvaluator(task)
            population = args.population
        else:
            evaluator = VectorEnvEvaluator(task, num_envs=n)
            population = max(args.population, n)
        with evaluator:
            rate, frames = rollout_rate(task, evaluator, population)
        ratio = rate / ceiling
        print(f"{name:28s} {rate:9,.0f} frames/s   ceiling {ceiling:7,.0f}   ratio {ratio:.2f}"
              f"   ({frames:,} frames)")
        results["rows"].append({"name": name, "num_envs": n, "fps": rate, "ceiling_fps": ceiling,
                                "ratio": ratio, "frames": frames})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
