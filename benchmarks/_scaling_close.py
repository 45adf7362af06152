"""Node mode's close, measured for ``benchmarks/scaling.py``: what the driver's one message
to the nodes costs (``evaluators/_dask_quorum.close_nodes``), beside what the close it
replaced cost (a stop broadcast and a pinned harvest task per node).

When a node-mode generation closes on its quorum, the driver sends every node one
``Client.run`` of an async function (``_dask_node.close_round``) and waits for the answers:
each node stops its chunk and hands over what it has back, a record of its chunk's
candidates. Before, the driver sent a ``Client.run(stop_round, wait=False)`` to every node
and then submitted a tiny task pinned to each node back early (``harvest_round``),
waited for them and gathered their records.

Here a loopback cluster of ``max(counts)`` single-threaded worker processes (nodes, without
nannies; the scheduler in this process) gets
both closes, sent to 2, 4, ... of them in turn, interleaved (a change of load on the shared
machine hits every size and both kinds alike): the message through the driver's own call
(``_dask_quorum._run_bounded``), each node answering as ``close_round`` does with a record
of ``size`` candidates (a chunk of the paper's generation on 80 nodes: 125); the old close
as ``harvest_nodes`` did it (without its ``who_has`` call, so if anything cheaper than it
was), each task returning the same record. The CPU of this process (the client and the
scheduler, as for ``c_task``; gross, and net of what it spends idle over the same wall time)
and the wall time per close, medians over the repeats, are fitted as ``fixed + per_node x
nodes``; the projection charges the net CPU fit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import numpy as np


def _record(size: int):
    """A node's answer: its chunk's record, the last 3 candidates dropped (in flight)."""
    from asktell.evaluators._dask_node import _with_dropped
    from asktell.protocol import Evaluation

    part = Evaluation(np.zeros(size - 3), np.ones(size - 3, dtype=np.int64))
    return _with_dropped([(0, part)], size, [(size - 3, size)])


async def _close_probe(round_tag: str, size: int, dask_worker=None) -> dict:
    """``close_round`` on a node with nothing of ``round_tag`` (the stop, the pools looked
    at), answering with a record of ``size`` candidates as a node does."""
    from asktell.evaluators._dask_node import close_round

    await close_round(round_tag)
    return {(0, size): _record(size)}


async def _stop_probe(round_tag: str, dask_worker=None) -> bool:
    """The old close's stop (``stop_round``): remember the tag."""
    from asktell.evaluators._dask_node import _LOCK, _STOPPED

    with _LOCK:
        _STOPPED[round_tag] = None
    return True


def _harvest_probe(round_tag: str, size: int):
    """The old close's harvest task (``harvest_round``): the chunk's record again."""
    return _record(size)


def _old_close(client, link, tag: str, workers: list[str], size: int) -> None:
    """The close before this one (``stop_nodes`` + ``harvest_nodes``), on ``workers``."""
    client.run(_stop_probe, tag, workers=workers, wait=False, on_error="ignore")
    tasks = [client.submit(_harvest_probe, tag, size, key=f"asktell-harvest-{tag}-{i}",
                           pure=False, workers=[w], allow_other_workers=False)
             for i, w in enumerate(workers)]
    link.wait_all(tasks, 2.0)
    got = link.gather(tasks)
    if len(got) != len(workers):
        raise RuntimeError(f"old close to {len(workers)} nodes: {len(got)} records")


def close_fits(close: dict) -> dict:
    """``fixed + per_node x nodes`` fitted (in place) to each kind's medians: wall and gross
    CPU with the least relative error (as ``c_task``); the net CPU, whose medians are a
    difference of two larger numbers and may be near or below zero, by plain least squares.
    A negative fixed cost or slope is taken as zero."""
    from _scaling_model import fit_line

    for kind in ("message", "tasks"):
        o = close[kind]
        x = [p["nodes"] for p in o["points"]]
        o["fixed_s"], o["per_node_s"] = fit_line(x, [p["wall_s"] for p in o["points"]])
        o["cpu_gross_fixed_s"], o["per_node_cpu_gross_s"] = fit_line(
            x, [p["cpu_s"] for p in o["points"]])
        slope, fixed = np.polyfit(x, [p["cpu_net_s"] for p in o["points"]], 1)
        o["cpu_fixed_s"], o["per_node_cpu_s"] = max(float(fixed), 0.0), max(float(slope), 0.0)
    return close


@contextlib.contextmanager
def _workers(address: str, n: int):
    """``n`` single-threaded Dask workers without nannies, in processes of their own."""
    command = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny",
               "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
    # This module by name on the workers (Dask pickles a function by reference when it can).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__)), *sys.path])}
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def measure_close(counts=(2, 4, 8, 16), size: int = 125, repeats: int = 40) -> dict:
    """Seconds per close to ``n`` nodes, for each ``n`` in ``counts`` and both kinds;
    the fits."""
    import cloudpickle
    from distributed import Client, LocalCluster

    from asktell.evaluators._dask_link import ClusterLink
    from asktell.evaluators._dask_quorum import _run_bounded

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    counts = sorted(counts)
    kinds = ("message", "tasks")
    samples = {(k, n): [] for k in kinds for n in counts}
    late: dict[int, int] = {}  # messages not answered within the bound, by nodes
    idle = []  # CPU per second of this process doing nothing (nannies, periodic callbacks)
    # The scheduler here (its CPU is what is measured), the workers in processes of their
    # own without nannies: 16 nannies in this process would add their monitoring to its CPU.
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster, \
            _workers(cluster.scheduler_address, counts[-1]), Client(cluster) as client:
        client.wait_for_workers(counts[-1], timeout=300)
        link = ClusterLink(client=client)
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        client.run(_close_probe, "warm-up", size)  # imports on the workers, unbounded
        for i in range(repeats + 2):
            start, start_cpu = time.perf_counter(), time.process_time()
            time.sleep(0.1)
            idle.append((time.process_time() - start_cpu) / (time.perf_counter() - start))
            for n in counts:
                for kind in kinds:
                    tag = f"probe-{i}-{n}"
                    start, start_cpu = time.perf_counter(), time.process_time()
                    if kind == "message":
                        got = _run_bounded(link, _close_probe, tag, size, workers=workers[:n])
                        if got is None:  # past the driver's bound on this loaded machine
                            late[n] = late.get(n, 0) + 1
                            continue
                        if len(got) != n or not all(isinstance(v, dict) for v in got.values()):
                            raise RuntimeError(f"close message to {n} nodes: {got!r}")
                    else:
                        _old_close(client, link, tag, workers[:n], size)
                    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                    if i >= 2:  # the first two: warm-up (connections, imports)
                        samples[kind, n].append((wall, cpu))
    # Medians: on a shared machine contention only ever adds time, but the fastest of 40
    # calls would pick the lucky scheduler tick.
    # This process's CPU also counts what the scheduler spends whatever it does (the
    # workers' heartbeats, its periodic callbacks: 4% to 9% of a core with 16 workers here),
    # in proportion to the wall time, which contention on this shared machine stretches
    # (a 2-node message took 25 ms of wall in a trial at a load average of about 8, 0.25
    # to 0.5 s in the runs at 6 to 21). So each
    # call's CPU is also taken net of the idle rate over its wall (the median rate of the
    # idle spells between the calls): ``cpu_net_s``, what the projection charges (a
    # scheduler with a core of its own answers at once); ``cpu_s``, gross, is an upper bound.
    rate = float(np.median(idle))
    out = {"size": size, "repeats": repeats, "counts": counts, "idle_cpu_per_s": rate,
           "messages_past_the_bound": late}
    for kind in kinds:
        out[kind] = {"points": [
            {"nodes": n,
             "wall_s": float(np.median([w for w, _ in samples[kind, n]])),
             "cpu_s": float(np.median([c for _, c in samples[kind, n]])),
             "cpu_net_s": float(np.median([c - rate * w for w, c in samples[kind, n]])),
             "samples": samples[kind, n]}
            for n in counts]}
    close_fits(out)
    for kind in kinds:
        o = out[kind]
        for p in o["points"]:
            print(f"close ({kind}) to {p['nodes']:2d} nodes: {p['wall_s'] * 1e3:7.2f} ms wall, "
                  f"{p['cpu_s'] * 1e3:6.2f} ms client + scheduler CPU, {p['cpu_net_s'] * 1e3:6.2f}"
                  " ms net of the idle rate", flush=True)
        print(f"close ({kind}, idle CPU {rate:.1%} of a core): {o['cpu_fixed_s'] * 1e3:.3f} ms + "
              f"{o['per_node_cpu_s'] * 1e3:.3f} ms per node (CPU, net); "
              f"{o['cpu_gross_fixed_s'] * 1e3:.3f} ms + {o['per_node_cpu_gross_s'] * 1e3:.3f} ms "
              f"(gross); {o['fixed_s'] * 1e3:.3f} ms + {o['per_node_s'] * 1e3:.3f} ms (wall)",
              flush=True)
    return out
