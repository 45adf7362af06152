"""Node mode's work queue, and its straggler-tolerant generations, for ``benchmarks/scaling.py``.

Pure rules (``tests/test_scaling_benchmark.py`` checks them): a node's chunk handed out in
pieces to whichever local process is free (:func:`_node_queue`); with a quorum each node
returns once its share is done and nothing is left unstarted, and the driver closes once
the nodes back hold ``min_candidates`` (:func:`queue_makespan` for one generation,
:func:`queue_generations` for the steady state of consecutive ones, where what still runs at
a close delays the next); at the close every node hands over the pieces done by then
(:func:`told_pieces`: the nodes back early those finished since, the nodes still running
those done so far). What ``nodeq``, ``harvest`` and ``harvest2`` built:
``evaluators/_vector_pool.py``, ``evaluators/_dask_node.py``, ``evaluators/_dask_round.py``,
``evaluators/_dask_quorum.py``.
"""

from __future__ import annotations

import heapq

import numpy as np


def chunk_starts(population: int, num_chunks: int) -> np.ndarray:
    """Where ``DaskEvaluator`` cuts a generation (mirrored pairs stay together)."""
    from asktell.evaluators.dask import chunk_bounds

    return np.array([a for a, _ in chunk_bounds(population, num_chunks)])


def quota_of(chunk: int, population: int, min_candidates: int) -> int:
    """A node's share of the quorum: its chunk's share of ``min_candidates``, rounded up."""
    return -(-min_candidates * chunk // population)


def _node_queue(times: np.ndarray, free: np.ndarray, piece: int, dispatch: float,
                quota: int | None) -> tuple[float, float, int, list]:
    """One node's work queue: pieces of ``piece`` candidates, in order, to the first free
    process (``free``: when each is free). Without ``quota`` the node returns when all is
    done; with it, once ``quota`` candidates are done and no piece is left unstarted.

    Returns when the node returns, the episode time and count of the candidates it tells
    (those done by then), and the pieces ``(start, end, first, stop, process)``.
    """
    heap = [(float(f), p) for p, f in enumerate(free)]
    heapq.heapify(heap)
    pieces = []
    for a in range(0, times.size, piece):
        start, p = heapq.heappop(heap)
        end = start + float(times[a:a + piece].sum()) + dispatch
        heapq.heappush(heap, (end, p))
        pieces.append((start, end, a, min(a + piece, times.size), p))
    if not pieces:
        return 0.0, 0.0, 0, pieces
    if quota is None or quota >= times.size:
        return max(x[1] for x in pieces), float(times.sum()), times.size, pieces
    by_end = sorted(pieces, key=lambda x: x[1])
    done = np.cumsum([x[3] - x[2] for x in by_end])
    met = by_end[int(np.searchsorted(done, quota))][1]
    back = max(met, max(x[0] for x in pieces))
    told = [(a, z) for _, e, a, z, _ in pieces if e <= back]
    return (back, float(sum(times[a:z].sum() for a, z in told)),
            sum(z - a for a, z in told), pieces)


def told_pieces(runs: list, bounds: list, accepted, close: float, harvest: bool,
                hand_over: bool = False) -> list:
    """The ``(start, stop)`` candidate ranges a generation tells: the pieces of the nodes
    accepted (back by the close) that were done when their node returned, and with
    ``harvest`` also those done by the close (handed over then); with ``hand_over`` also
    the pieces done by the close on the nodes not back (still running: the close's one
    message has them hand over what they have back, ``_dask_node.close_round``)."""
    out = []
    accepted = [int(n) for n in accepted]
    running = [n for n in range(len(runs)) if n not in set(accepted)] if hand_over else []
    for n in [*accepted, *running]:
        until = close if harvest or n in running else runs[n][0]
        for _, end, a, z, _ in runs[n][3]:
            if end <= until:
                out.append((bounds[n][0] + a, bounds[n][0] + z))
    return sorted(out)


def _busy_until(pieces: list, processes: int, stop: float) -> np.ndarray:
    """When each process is free, if no piece starts after ``stop`` (those started run on)."""
    busy = np.zeros(processes)
    for start, end, _, _, p in pieces:
        if start <= stop:
            busy[p] = max(busy[p], end)
    return busy


def queue_makespan(times: np.ndarray, nodes: int, cores: int, *, piece: int = 1,
                   min_candidates: int | None = None) -> tuple[float, float]:
    """One generation of node mode's work queue for these episode times, with nothing
    carried over and no dispatch cost: when the driver closes, and the episode time told."""
    population = times.size
    starts = chunk_starts(population, nodes)
    runs = []
    for a, z in zip(starts, [*starts[1:], population]):
        quota = None if min_candidates is None else quota_of(z - a, population, min_candidates)
        runs.append(_node_queue(times[a:z], np.zeros(cores), piece, 0.0, quota))
    backs = np.array([r[0] for r in runs])
    order = np.argsort(backs, kind="stable")
    held = np.cumsum([runs[n][2] for n in order])
    need = population if min_candidates is None else min_candidates
    last = min(int(np.searchsorted(held, need)), nodes - 1)
    return float(backs[order[last]]), float(sum(runs[n][1] for n in order[: last + 1]))


def queue_generations(
    samples: np.ndarray,
    population: int,
    workers: int,
    nodes: int,
    *,
    piece: int = 1,
    dispatch: float = 0.0,
    setup: float = 0.0,
    min_candidates: int | None = None,
    gap: float = 0.0,
    generations: int = 30,
    warmup: int = 3,
    seed: int = 0,
    harvest: bool = True,
    hand_over: bool = True,
) -> dict:
    """Node mode with a work queue on each node, optionally closing on a node quorum: the
    steady state of ``generations`` consecutive generations (after ``warmup``), Monte Carlo.

    Each node's chunk (``DaskEvaluator``'s cut) goes out in pieces of ``piece`` candidates
    to whichever of its ``workers / nodes`` processes is free (``dispatch`` per piece, after
    ``setup``). Without ``min_candidates`` the node returns when its chunk is done. With it,
    a node returns once its share (:func:`quota_of`) is done and no piece is left unstarted;
    the pieces still running go on, their episodes wasted, into the gap before the next
    generation (``gap``: the driver's tell and ask, the tasks and the broadcast), and a
    process still busy when the next generation's chunk arrives starts on it late. The
    driver closes once the nodes back hold ``min_candidates``; a node not back by then is
    stopped: no new piece starts there, the running ones go on (as ``close_round`` does),
    and what it has done is told (``hand_over``) or dropped.

    Returns the means of ``rollouts`` (the chunks' arrival to the driver's close),
    ``told_s`` (episode time of the candidates told) and ``told`` (their count), and
    ``late_s``: how late, on average, a process starts a generation's first piece because
    a stale one still runs (0 without a quorum), and ``wasted_s``: the core time before the
    close spent on episodes not told (the rest of ``workers x rollouts`` beside ``told_s``
    is idle or dispatch).

    ``harvest`` (what ``DaskEvaluator`` does since the harvest): when the driver closes,
    each node back before it hands over its pieces that finished since it returned, which
    are told too (:func:`told_pieces`); ``False``: the rule before (what the stored
    simulated runs measured), only what was back when a node returned. ``hand_over`` (what
    the close does since it is one message to every node, ``GenerationRound._close_nodes``):
    a node not back at the close hands over the pieces it has done by then, told too,
    instead of being dropped whole. The close's own cost is the caller's: it is in ``gap``.
    """
    rng = np.random.default_rng(seed)
    samples = np.asarray(samples, dtype=float)
    cores = workers // nodes
    starts = chunk_starts(population, nodes)
    bounds = list(zip(starts, [*starts[1:], population]))
    quotas = [None if min_candidates is None else quota_of(z - a, population, min_candidates)
              for a, z in bounds]
    carry = np.zeros((nodes, cores))  # when each process is free, from the chunk's arrival
    out = {"rollouts": [], "told_s": [], "told": [], "late_s": [], "wasted_s": []}
    for g in range(generations + warmup):
        times = rng.choice(samples, size=population)
        runs = [_node_queue(times[a:z], np.maximum(carry[n], setup), piece, dispatch,
                            quotas[n]) for n, (a, z) in enumerate(bounds)]
        backs = np.array([r[0] for r in runs])
        counts = np.array([r[2] for r in runs])
        if min_candidates is None:
            accepted = np.arange(nodes)
        else:
            order = np.argsort(backs, kind="stable")
            last = min(int(np.searchsorted(np.cumsum(counts[order]), min_candidates)), nodes - 1)
            accepted = order[: last + 1]
        close = float(backs[accepted].max())
        if g >= warmup:
            out["rollouts"].append(close)
            told = told_pieces(runs, bounds, accepted, close, harvest, hand_over)
            out["told_s"].append(float(sum(times[a:z].sum() for a, z in told)))
            out["told"].append(sum(z - a for a, z in told))
            out["late_s"].append(float(np.mean(np.maximum(carry - setup, 0.0))))
            # core time before the close spent on what is not told: the previous
            # generation's pieces running on, and this one's pieces not told
            told = set(told)
            wasted = float(np.minimum(carry, close).sum())
            for n, r in enumerate(runs):
                for start, end, a, z, _ in r[3]:
                    if start < close and (bounds[n][0] + a, bounds[n][0] + z) not in told:
                        wasted += min(end, close) - start
            out["wasted_s"].append(wasted)
        # A node not back at the close is told to stop: its task returns at once, no new
        # piece starts, and the pieces running go on. Everything still running delays the
        # next generation on its process by what is left of it after the gap.
        busy = np.array([_busy_until(r[3], cores, close) for r in runs])
        carry = np.maximum(busy - close - gap, 0.0)
    return {k: float(np.mean(v)) for k, v in out.items()}
