"""Environment seeds derived from the run seed, the generation and the candidate.

Everything here is a pure function of integers, so the serial, vectorised and Dask
evaluators, in any process, reset a candidate's episodes with the same seeds and pick the
same rollouts for observation statistics. Mirrored candidates ``k`` and ``~k`` can share
their episode seeds (common random numbers for the pair), which removes the environment's
randomness from the difference of their returns.
"""

from __future__ import annotations

import numpy as np

from asktell.noise import split_seeds

__all__ = [
    "mix64",
    "episode_seeds",
    "center_episode_seeds",
    "obs_record_mask",
    "vector_reset_seed",
    "STREAMS",
]

#: Independent streams of derived integers.
STREAMS = {"episode": 1, "center": 2, "obs_record": 3, "vector_reset": 4}

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _fmix(z: np.ndarray) -> np.ndarray:
    # SplitMix64's finaliser: a bijection on 64-bit words with good avalanche.
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def mix64(*words: int | np.ndarray) -> np.ndarray:
    """Hash integers (scalars or arrays, broadcast) into uniform uint64 words."""
    arrays = [np.atleast_1d(np.asarray(w).astype(np.int64).view(np.uint64)) for w in words]
    h = np.zeros(np.broadcast_shapes(*(a.shape for a in arrays)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = _fmix(h * _GOLDEN + a + _GOLDEN)
    return h


def _to_seed(h: np.ndarray) -> np.ndarray:
    # 31 bits: a valid seed for every environment (some legacy code wants < 2**31).
    return (h >> np.uint64(33)).astype(np.int64)


def episode_seeds(
    run_seed: int, generation: int, seeds: np.ndarray, episodes: int, mirrored: bool = True
) -> np.ndarray:
    """Reset seeds ``(n, episodes)`` of the candidates named by ``seeds``.

    With ``mirrored``, ``k`` and ``~k`` get the same episode seeds.
    """
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    names = split_seeds(seeds)[0] if mirrored else seeds
    h = mix64(
        STREAMS["episode"], run_seed, generation, names[:, None], np.arange(episodes)[None, :]
    )
    return _to_seed(h).reshape(seeds.size, episodes)


def center_episode_seeds(
    run_seed: int, generation: int, episodes: int, which: np.ndarray | None = None
) -> np.ndarray:
    """Reset seeds of the centre's evaluation episodes (a stream of their own): all
    ``episodes`` of them, or those numbered ``which`` (each depends on its number only)."""
    numbers = np.arange(episodes) if which is None else np.asarray(which, dtype=np.int64)
    return _to_seed(mix64(STREAMS["center"], run_seed, generation, numbers.reshape(-1)))


def obs_record_mask(
    run_seed: int, generation: int, seeds: np.ndarray, fraction: float
) -> np.ndarray:
    """Which candidates' rollouts feed the observation statistics (about ``fraction``)."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if fraction <= 0.0:
        return np.zeros(seeds.size, dtype=bool)
    if fraction >= 1.0:
        return np.ones(seeds.size, dtype=bool)
    h = mix64(STREAMS["obs_record"], run_seed, generation, seeds)
    # The top 53 bits as a uniform float in [0, 1).
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return u < fraction


def vector_reset_seed(run_seed: int, generation: int, worker: int) -> int:
    """Seed of a whole-vector reset (vector envs that cannot seed single episodes)."""
    return int(_to_seed(mix64(STREAMS["vector_reset"], run_seed, generation, worker))[0])
