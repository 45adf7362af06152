"""Node mode's local pool, measured for ``benchmarks/scaling.py``: what a piece of the work
queue costs, and what sending a generation's distribution to a local process costs.

``nodeq``'s node mode hands a node's chunk to its local processes in pieces
(``evaluators/_vector_pool.WorkerPool`` with ``pieces_per_worker``): the distribution goes
to each process once per round, pickled once, then the pieces carry only seeds. A piece
holds at most ``PIECE_SECONDS`` of work once a candidate's time is known, so at Humanoid's
episode times a piece is one candidate. Here a ``WorkerPool`` of 2 spawned processes runs
candidates that cost nothing (a 1-dimensional sphere), told that a candidate takes 1 s so
that every piece is one candidate; the fastest of the repeats (the machine is shared).
The wall times feed the loopback validation; the parent's CPU times (what the node's
dispatcher spends, on a core of its own) the projection, as for Dask's per-task cost.
"""

from __future__ import annotations

import pickle
import time

import numpy as np


def measure_node_pool(items: int, big_params: int, repeats: int = 5) -> dict:
    """Seconds per piece (``items`` one-candidate pieces against 8) and seconds per byte of
    distribution sent to each process (``big_params`` against 1,000 parameters, 8 pieces)."""
    import cloudpickle

    from asktell import Distribution, FunctionTask
    from asktell.evaluators._vector_pool import WorkerPool
    from asktell.noise import NoiseTable, mirrored

    noise = NoiseTable(seed=0, size=1 << 22)
    rng = np.random.default_rng(0)
    task = FunctionTask.named("sphere")
    pool = WorkerPool(cloudpickle.dumps(task), 2, None, "sync", "spawn",
                      label="node-local worker", pieces_per_worker=4)

    def round_of(num_params: int, count: int):
        dist = Distribution(np.zeros(num_params), 0.02, noise)
        seeds = mirrored(noise.sample_keys(rng, count // 2, num_params))

        def run() -> tuple[float, float]:
            pool.candidate_seconds = 1.0  # so a piece is one candidate, as at 1 s episodes
            start, start_cpu = time.perf_counter(), time.process_time()
            pool.run(dist, seeds, 0)
            return time.perf_counter() - start, time.process_time() - start_cpu

        return run

    kinds = {"few": round_of(1000, 8), "many": round_of(1000, items),
             "big": round_of(big_params, 8)}
    # Interleaved, so a change of load on the shared machine hits the three alike; the
    # fastest wall time and the fewest CPU seconds of this (the parent, the node's
    # dispatcher) process of each: what a round costs on a core of its own.
    best = {k: [float("inf"), float("inf")] for k in kinds}
    try:
        kinds["few"]()  # the processes start
        for _ in range(repeats):
            for k, run in kinds.items():
                wall, cpu = run()
                best[k] = [min(best[k][0], wall), min(best[k][1], cpu)]
    finally:
        pool.close()
    few, many, big = best["few"], best["many"], best["big"]
    size = {n: len(pickle.dumps(Distribution(np.zeros(n), 0.02, noise))) for n in (1000, big_params)}
    moved = 2 * (size[big_params] - size[1000])  # each of the 2 processes gets it once a round
    out = {
        "processes": 2,
        "items": items,
        "big_params": big_params,
        "per_piece_s": max(many[0] - few[0], 0.0) / (items - 8),
        "per_piece_cpu_s": max(many[1] - few[1], 0.0) / (items - 8),
        "s_per_byte": max(big[0] - few[0], 0.0) / moved,
        "cpu_s_per_byte": max(big[1] - few[1], 0.0) / moved,
        "round_s": {"8 pieces": few, f"{items} pieces": many,
                    f"8 pieces, {big_params:,} parameters": big},
    }
    print(f"node pool: {out['per_piece_s'] * 1e3:.3f} ms per piece "
          f"({out['per_piece_cpu_s'] * 1e3:.3f} ms of the parent's CPU), "
          f"{1 / max(out['s_per_byte'], 1e-12) / 1e6:,.0f} MB/s to a process "
          f"({1 / max(out['cpu_s_per_byte'], 1e-12) / 1e6:,.0f} MB/s of its CPU)", flush=True)
    return out
