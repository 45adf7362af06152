"""The distributed tell's constants for ``benchmarks/scaling.py`` (``tell`` subcommand).

OpenAI-ES's tell is mostly one noise-row sum, ``sum_j c_j eps(k_j)`` over the generation's
keys (one per mirrored pair: 5,000 rows at the paper's population of 10,000). The opt-in
:class:`~asktell.evaluators._dask_tell.DaskWeightedSum` cuts it into parts summed on the
Dask workers. The model (``_scaling_model.remote_tell_seconds``) needs:

* ``row_s_per_value``: what one row costs ``NoiseTable.weighted_sum``, per parameter (rows
  of the paper's length read from a table bigger than the caches);
* ``driver_rest_s``: the driver's ask + pickling + tell *without* that sum (the same
  ``OpenAIES`` with a ``noise_sum`` hook that returns zeros), at the paper's size;
* ``add_s_per_value``: the driver adding one float64 part vector into its total;
* ``part_overhead_s``: what a part costs on loopback besides its rows (a Dask task, its
  ``(num_params,)`` float64 vector back, the driver's add): ``DaskWeightedSum`` with one
  row per part, per part; ``part_overhead_cpu_s`` the CPU the client and the embedded
  scheduler spend on it (what the projection charges a part, besides its vector's transfer
  at the assumed link speed).

Interleaved, fastest of the repeats: the 2-core machine is shared, contention only adds.
"""

from __future__ import annotations

import pickle
import time

import numpy as np

#: Noise values in the measuring table: 512 MiB, far bigger than any cache, so a row is
#: read from memory as on a worker with the paper's table (the default 1 GiB one).
TABLE_SIZE = 1 << 27


def _fastest(fn, repeats: int, cpu: bool = False):
    """The fastest wall time of ``repeats`` calls (and, with ``cpu``, the median CPU time of
    this process per call: the client and the embedded scheduler, on a loopback cluster)."""
    best, cpus = float("inf"), []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return (best, float(np.median(cpus))) if cpu else best


def measure_row_sum(noise, num_params: int, rows: list[int], repeats: int) -> dict:
    """``noise.weighted_sum`` of ``rows`` random keys at ``num_params``; seconds per value."""
    rng = np.random.default_rng(0)
    points = []
    for n in rows:
        keys = noise.sample_keys(rng, n, num_params)
        weights = rng.standard_normal(n)
        s = _fastest(lambda: noise.weighted_sum(weights, keys, num_params), repeats)
        points.append({"rows": n, "num_params": num_params, "seconds": s})
        print(f"row sum: {n:5d} rows x {num_params:,}: {s * 1e3:8.1f} ms", flush=True)
    x = np.array([p["rows"] * num_params for p in points], dtype=float)
    y = np.array([p["seconds"] for p in points])
    per_value = float(np.polyfit(x, y, 1)[0]) if len(points) > 1 else float(y[0] / x[0])
    return {"points": points, "s_per_value": max(per_value, 0.0)}


def measure_driver_split(noise, population: int, num_params: int, repeats: int) -> dict:
    """ask + pickle + tell with the local sum, and with a hook that skips it (interleaved)."""
    from asktell.strategies import OpenAIES

    def zeros(_noise, _weights, _keys, dim, parts=None):
        return np.zeros(dim)

    rng = np.random.default_rng(0)
    es = OpenAIES(num_params=num_params, population_size=population, noise=noise, seed=0)
    times = {"local": [], "without_sum": []}
    for r in range(2 * repeats + 2):
        which = ("local", "without_sum")[r % 2]
        es.noise_sum = None if which == "local" else zeros
        start = time.perf_counter()
        es.ask()
        pickle.dumps(es.distribution)
        es.tell(rng.standard_normal(population))
        if r >= 2:  # one warm-up of each
            times[which].append(time.perf_counter() - start)
    out = {k: min(v) for k, v in times.items()}
    print(f"driver P={population:,} N={num_params:,}: {out['local'] * 1e3:.1f} ms with the "
          f"local sum, {out['without_sum'] * 1e3:.1f} ms without", flush=True)
    return {"population": population, "num_params": num_params, "local_s": out["local"],
            "rest_s": out["without_sum"]}


def measure_remote(noise, num_params: int, rows: int, parts: list[int], repeats: int) -> dict:
    """``DaskWeightedSum`` on a loopback cluster of 2 single-threaded workers: ``rows`` rows
    cut into each of ``parts``, and one row per part (what a part costs besides its rows)."""
    from distributed import Client

    from asktell.evaluators._dask_tell import DaskWeightedSum
    from asktell.testing.dask_cluster import loopback_cluster

    rng = np.random.default_rng(1)
    keys = noise.sample_keys(rng, rows, num_params)
    weights = rng.standard_normal(rows)
    out = {"workers": 2, "rows": rows, "num_params": num_params, "points": []}
    with loopback_cluster(2) as cluster, Client(cluster) as client:
        # each worker builds its table once, outside the timing
        DaskWeightedSum(client, parts=2)(noise, weights[:2], keys[:2], num_params)
        for k in parts:
            hook = DaskWeightedSum(client, parts=k)
            full, full_cpu = _fastest(lambda: hook(noise, weights, keys, num_params), repeats,
                                      cpu=True)
            one, one_cpu = _fastest(lambda: hook(noise, weights[:k], keys[:k], num_params),
                                    repeats, cpu=True)
            local = _fastest(lambda: noise.weighted_sum(weights, keys, num_params), repeats)
            out["points"].append({"parts": k, "seconds": full, "cpu_s": full_cpu,
                                  "one_row_per_part_s": one,
                                  "one_row_per_part_cpu_s": one_cpu, "local_s": local})
            print(f"remote sum: {rows} rows x {num_params:,} in {k} parts: {full * 1e3:.1f} ms "
                  f"(local {local * 1e3:.1f} ms); 1 row per part: {one * 1e3:.1f} ms, "
                  f"client + scheduler CPU {one_cpu * 1e3:.1f} ms", flush=True)
    out["part_overhead_s"] = float(np.median(
        [p["one_row_per_part_s"] / p["parts"] for p in out["points"]]))
    out["part_overhead_cpu_s"] = float(np.median(
        [p["one_row_per_part_cpu_s"] / p["parts"] for p in out["points"]]))
    return out


def measure_tell(population: int, num_params: int, *, quick: bool = False) -> dict:
    """The three constants at ``(population, num_params)`` (the paper's, unless quick)."""
    from asktell.noise import NoiseTable

    noise = NoiseTable(seed=0, size=TABLE_SIZE >> 6 if quick else TABLE_SIZE)
    noise.table  # noqa: B018 - build it before timing
    repeats = 2 if quick else 5
    rows = population // 2
    start = time.perf_counter()
    row = measure_row_sum(noise, num_params, sorted({max(rows // 8, 1), rows}), repeats)
    split = measure_driver_split(noise, population, num_params, repeats)
    total, part = np.zeros(num_params), np.ones(num_params)
    add = _fastest(lambda: np.add(total, part, out=total), 20 * repeats) / num_params
    remote = measure_remote(noise, num_params, rows, [2, 8] if quick else [2, 8, 32], repeats)
    return {"row_s_per_value": row["s_per_value"], "row_sum": row, "driver": split,
            "driver_rest_s": split["rest_s"], "add_s_per_value": add, "part_overhead_s": remote["part_overhead_s"],
            "part_overhead_cpu_s": remote["part_overhead_cpu_s"],
            "remote": remote, "seconds": time.perf_counter() - start}
