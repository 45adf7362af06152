"""Atari frames per second: the emulator and its preprocessing against full rollouts with
:class:`~asktell.atari.AtariPolicy` (VBN on), in one process and vectorised, side by side.

Rows, in one run:

* ``emulator``: ``ale.act`` alone (random actions), the price of the frames themselves;
* ``preprocessed``: the preprocessed environment (frame skip 4 with max-pooling, 84x84
  grayscale, 4-frame stack) stepped with random actions, no policy: the *ceiling*;
* ``policy``: the network's forward pass per candidate and step at batch sizes 1..32, and
  the cost of loading one candidate (its VBN statistics on the reference batch);
* ``conv 1``: the first layer by im2col (``sliding_window_view`` + matmul) against the
  space-to-depth convolution asktell uses;
* ``serial``: :class:`SerialEvaluator` on a population (one env, one candidate at a time);
* ``vector nN``: :class:`VectorEnvEvaluator` (``sync``) with N environments in this process,
  one batched forward for all N candidates per step.

Frames/s counts emulator frames (agent steps x 4), per wall second and per CPU second of
this process (the latter is what a quiet machine would show: on a shared machine wall
time swings with other people's load, CPU time much less). Each rollout row is measured
right after its own ceiling measurement and reports ``rollout / ceiling``: the goal is >= 0.5,
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


def preprocessed_rate(task, seconds: float) -> tuple[float, float]:
    """Frames per wall second and per CPU second of the preprocessed environment stepped
    with random actions (no policy)."""
    env = task.make_env()
    rng = np.random.default_rng(1)
    picks = rng.integers(task.action_spec.n, size=4096)
    episode = 0
    env.reset(seed=episode)
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for a in picks[:256]:
            _, _, terminated, truncated, _ = env.step(a)
            steps += 1
            if terminated or truncated:
                episode += 1
                env.reset(seed=episode)
    frames = steps * task.frame_skip
    rates = frames / (time.perf_counter() - start), frames / (time.process_time() - cpu)
    env.close()
    return rates


def policy_costs(task, batches: list[int]) -> dict:
    """Forward pass per candidate-step (us) at each batch size, and load per candidate (ms)."""
    policy = task.policy
    rng = np.random.default_rng(2)
    out = {"forward_us": {}, "load_ms": None}
    params = np.stack([policy.init_params(i) for i in range(max(batches))])
    params += 0.02 * rng.standard_normal(params.shape)
    weights = policy.allocate(8)
    start = time.process_time()
    policy.load(weights, slice(0, 8), params[:8])
    out["load_ms"] = (time.process_time() - start) / 8 * 1e3
    for n in batches:
        weights = policy.allocate(n)
        policy.load(weights, slice(0, n), params[:n])
        x = rng.integers(0, 256, (n, policy.obs_dim)).astype(np.float32)
        policy.act(weights, x)
        best = np.inf
        for _ in range(5):
            start = time.process_time()
            for _ in range(10):
                policy.act(weights, x)
            best = min(best, (time.process_time() - start) / 10 / n)
        out["forward_us"][n] = best * 1e6
    return out


def first_layer_costs(task, n: int = 8) -> dict:
    """The first conv layer of ``n`` candidates, us per candidate: asktell's
    space-to-depth convolution against im2col with ``sliding_window_view`` (one patch copy,
    then one stacked matmul), interleaved, best of several rounds."""
    from numpy.lib.stride_tricks import sliding_window_view

    from asktell.atari.policy import conv2d, conv_weights

    policy = task.policy
    layer = policy.layers[0]
    k, s, out = layer.kernel, layer.stride, layer.out
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (n, *policy.obs_shape)).astype(np.float32)
    w = rng.standard_normal((n, *layer.w_shape)).astype(np.float32)
    folded = np.stack([conv_weights(wi, s) for wi in w])
    as_matrix = np.ascontiguousarray(w.reshape(n, out, -1).transpose(0, 2, 1))

    def im2col():
        v = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        patches = v.transpose(0, 2, 3, 1, 4, 5).reshape(n, v.shape[2] * v.shape[3], -1)
        return np.matmul(patches, as_matrix)

    def space_to_depth():
        return conv2d(x, folded, k, s, out)

    a, b = im2col(), space_to_depth()
    assert np.allclose(a.transpose(0, 2, 1).reshape(b.shape), b, rtol=1e-3, atol=1e-2)
    best = {"im2col": np.inf, "space_to_depth": np.inf}
    for _ in range(7):
        for name, fn in (("im2col", im2col), ("space_to_depth", space_to_depth)):
            start = time.process_time()
            for _ in range(5):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / 5 / n * 1e6)
    return best


def rollout_rate(task, evaluator, population: int) -> tuple[float, float, int]:
    """Frames per wall second and per CPU second of one evaluation of ``population``
    candidates (whole episodes), and the frames."""
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
    start, cpu = time.perf_counter(), time.process_time()
    evaluation = evaluator.evaluate(dist, seeds)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    frames = int(np.sum(evaluation.steps)) * task.frame_skip
    return frames / elapsed, frames / cpu, frames


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
    ceiling, ceiling_cpu = preprocessed_rate(task, args.seconds)
    print(f"{'emulator (ale.act)':28s} {emu:9,.0f} frames/s")
    print(f"{'preprocessed env (ceiling)':28s} {ceiling:9,.0f} frames/s   "
          f"{ceiling_cpu:7,.0f} per CPU-s ({1e6 * task.frame_skip / ceiling_cpu:.0f} CPU-us per "
          "agent step)")
    results["emulator_fps"] = emu
    results["ceiling_fps"] = ceiling
    results["ceiling_cpu_fps"] = ceiling_cpu

    costs = policy_costs(task, sorted({1, *args.batches}))
    results["policy"] = costs
    for n, us in costs["forward_us"].items():
        print(f"{'policy forward, batch ' + str(n):28s} {us:9,.0f} CPU-us per candidate-step")
    print(f"{'policy load (VBN statistics)':28s} {costs['load_ms']:9,.1f} CPU-ms per candidate")
    first = first_layer_costs(task)
    results["first_layer_us"] = first
    print(f"{'conv 1, im2col':28s} {first['im2col']:9,.0f} CPU-us per candidate-step (batch 8)")
    print(f"{'conv 1, space-to-depth':28s} {first['space_to_depth']:9,.0f} CPU-us per candidate-step")

    rows = [("serial", None)] + [(f"vector n{n}", n) for n in args.batches]
    print(f"{'':28s} {'frames/s':>9s}   {'ceiling':>7s}  ratio   {'per CPU-s':>9s} "
          f"{'ceiling':>7s}  ratio   policy CPU-us/step")
    for name, n in rows:
        ceiling, ceiling_cpu = preprocessed_rate(task, args.seconds)  # adjacent: load drifts
        if n is None:
            evaluator = SerialEvaluator(task)
            population = args.population
        else:
            evaluator = VectorEnvEvaluator(task, num_envs=n)
            population = max(args.population, n)
        with evaluator:
            rate, rate_cpu, frames = rollout_rate(task, evaluator, population)
        ratio, ratio_cpu = rate / ceiling, rate_cpu / ceiling_cpu
        # What a step costs beyond the environment's own (policy, loads, evaluator, caches).
        extra = 1e6 * task.frame_skip * (1 / rate_cpu - 1 / ceiling_cpu)
        print(f"{name:28s} {rate:9,.0f}   {ceiling:7,.0f}   {ratio:.2f}   {rate_cpu:9,.0f} "
              f"{ceiling_cpu:7,.0f}   {ratio_cpu:.2f}   {extra:7,.0f}   ({frames:,} frames)")
        results["rows"].append({
            "name": name, "num_envs": n, "fps": rate, "ceiling_fps": ceiling, "ratio": ratio,
            "cpu_fps": rate_cpu, "ceiling_cpu_fps": ceiling_cpu, "cpu_ratio": ratio_cpu,
            "policy_cpu_us_per_step": extra,
            "frames": frames,
        })
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
