"""A trained Gymnasium policy as one file you can take home (``asktell export``,
:func:`load_policy`).

The file is a numpy ``.npz`` read with ``allow_pickle=False``: nothing in it can run code.
It holds the centre's parameters (``params``, float64), the observation normaliser the centre
was evaluated with (``obs_mean``, ``obs_std``; absent when the run did not normalise), the
Box action bounds (``action_low``, ``action_high``) and one JSON string (``metadata``): the
environment id and the ``gymnasium.make`` keyword arguments (time limit included), the policy
architecture (``linear``/``mlp``, hidden sizes, activation, bias, dtype), the observation and
action spaces as the task saw them (action mode, bins), the normaliser's clip, and where the
centre came from (run, generation, latest or best, the reset seeds of its centre evaluation).

:class:`Policy` rebuilds the task's own policy classes from that, so ``act(observation)`` runs
the same arithmetic as the run's rollouts and gives bitwise the same action.

Example:
    >>> import asktell
    >>> policy = asktell.load_policy("policy.npz")          # doctest: +SKIP
    >>> policy.rollout(episodes=3)                          # doctest: +SKIP
    array([500., 500., 500.])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asktell.config_base import short_repr
from asktell.errors import ConfigError

__all__ = ["FORMAT", "Policy", "export_policy", "load_policy"]

#: Written into every file's metadata; :func:`load_policy` refuses anything else.
FORMAT = "asktell-policy"
VERSION = 1


def export_policy(
    run_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    best: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> Path:
    """Write the centre of ``run_dir`` (the newest checkpoint's, or with ``best`` the best
    evaluated one, with the normaliser it was evaluated with) to ``output`` (``.npz``).

    Only Gymnasium runs with a ``linear`` or ``mlp`` policy can be exported.

    (Past 60 lines: the file's metadata is written field by field, in the order
    :func:`load_policy` reads it back.)
    """
    from asktell.gym.policies import MLPPolicy
    from asktell.gym.seeding import center_episode_seeds
    from asktell.playback import best_center_distribution, load_run
    from asktell.protocol import hooks_of

    from asktell._rundir import check_output_file

    output = check_output_file(output, "export 'output'", (".npz",))
    ckpt, task, strategy = load_run(Path(run_dir), checkpoint)
    kind = ckpt.config["task"]["kind"]
    if kind != "gym" or not isinstance(task.policy, MLPPolicy):
        raise ConfigError(
            f"export supports Gymnasium runs (task kind 'gym') with a 'linear' or 'mlp' "
            f"policy; this run's task is {kind!r}"
            + ("" if kind != "gym" else f" with a {type(task.policy).__name__} policy")
        )
    dist, which = strategy.distribution, "latest"
    if best:
        dist, _, _ = best_center_distribution(ckpt, task, dist)
        which = "best"
    normalize = task.normalizer(hooks_of(task).context())
    policy, obs, action = task.policy, task.obs_spec, task.action_spec
    episodes = int(ckpt.config.get("output", {}).get("eval_episodes", 1))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "env_id": task.env_id,
        "make_kwargs": task.make_kwargs(),
        "policy": {
            "kind": "linear" if not policy.hidden_sizes else "mlp",
            "hidden_sizes": list(policy.hidden_sizes),
            "activation": policy.activation,
            "bias": policy.bias,
            "dtype": policy.dtype.name,
            "num_params": policy.num_params,
        },
        "observation": {"kind": obs.kind, "dim": obs.dim, "shape": list(obs.shape)},
        "action": {"kind": action.kind, "mode": action.mode, "n": action.n,
                   "shape": list(action.shape), "dtype": action.dtype, "bins": action.bins},
        "obs_clip": normalize.clip,
        "source": {
            "run_dir": str(Path(run_dir).resolve()),
            "which": which,
            "generation": int(dist.generation),
            "run_seed": int(task.seed),
            # the reset seeds the run's centre evaluation of this generation played
            "center_episode_seeds": [int(s) for s in center_episode_seeds(
                task.seed, dist.generation, 0, which=np.arange(episodes))],
        },
    }
    arrays = {"params": np.asarray(dist.center, dtype=np.float64),
              "metadata": np.array(json.dumps(meta))}
    if normalize.active:
        arrays["obs_mean"], arrays["obs_std"] = normalize.mean, normalize.std
    if action.kind == "box":
        arrays["action_low"], arrays["action_high"] = action.low, action.high
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, output)
    return output


class Policy:
    """A trained policy loaded by :func:`load_policy`.

    Attributes:
        env_id: the Gymnasium id it was trained on.
        make_kwargs: keyword arguments for ``gymnasium.make`` (the run's time limit included).
        metadata: everything the file says about it (see :mod:`asktell.export`).
        params: the centre's flat parameters (float64).
    """

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]):
        from asktell.gym.normalizer import ObsNormalizer
        from asktell.gym.policies import ActionSpec, MLPPolicy, ObservationSpec

        self.metadata = meta
        self.env_id: str = meta["env_id"]
        self.make_kwargs: dict[str, Any] = dict(meta["make_kwargs"])
        o, a, p = meta["observation"], meta["action"], meta["policy"]
        self._obs = ObservationSpec(o["kind"], int(o["dim"]), tuple(o["shape"]))
        action = ActionSpec(
            a["kind"], a["mode"], n=int(a["n"]), low=arrays.get("action_low"),
            high=arrays.get("action_high"), shape=tuple(a["shape"]), dtype=a["dtype"],
            bins=int(a["bins"]),
        )
        self._net = MLPPolicy(self._obs.dim, action, tuple(p["hidden_sizes"]),
                              p["activation"], p["bias"], p["dtype"])
        self.params = np.asarray(arrays["params"], dtype=np.float64)
        if self.params.shape != (self._net.num_params,):
            raise ConfigError(
                f"policy file: 'params' has shape {self.params.shape}; the architecture needs "
                f"({self._net.num_params},)"
            )
        self._weights = self._net.allocate(1)
        self._net.load(self._weights, slice(0, 1), self.params[None, :])
        self._normalize = ObsNormalizer(arrays.get("obs_mean"), arrays.get("obs_std"),
                                        meta["obs_clip"])

    def __repr__(self) -> str:
        src = self.metadata.get("source", {})
        return (f"Policy(env_id={self.env_id!r}, {self._net!r}, "
                f"{src.get('which')} centre of generation {src.get('generation')})")

    def act(self, observation: Any) -> Any:
        """The action for one observation, normalised as during the run: the same action
        the run's policy gives (same arithmetic, same dtype)."""
        return self._net.act(self._weights, self._normalize(self._observation(observation)))[0]

    def _observation(self, observation: Any) -> np.ndarray:
        """One observation as the policy's ``(1, dim)`` input, refused by name when it is
        not one of this environment's (the run failed a candidate on a non-finite one)."""
        spec = self._obs
        try:
            arr = np.asarray(observation)
        except (TypeError, ValueError):
            arr = np.asarray(None, dtype=object)
        if spec.kind == "discrete":
            ok = arr.size == 1 and arr.dtype.kind in "iu" and 0 <= int(arr.reshape(-1)[0]) < spec.dim
            want = f"an int in [0, {spec.dim})"
        else:
            ok = arr.size == spec.dim and arr.dtype.kind in "iuf" and bool(
                np.all(np.isfinite(arr.astype(np.float64)))
            )
            want = f"{spec.dim} finite numbers (shape {spec.shape})"
        if not ok:
            raise ConfigError(
                f"Policy.act expects an observation of {self.env_id}: {want}; got "
                f"{arr.dtype} of shape {arr.shape}: {short_repr(observation)}"
            )
        return spec.to_array(arr, 1)

    def make_env(self, **kwargs: Any) -> Any:
        """``gymnasium.make(env_id, **make_kwargs, **kwargs)``, e.g. ``render_mode="human"``."""
        from asktell.gym.envs import make_env

        return make_env(self.env_id, {**self.make_kwargs, **kwargs}, kwargs)

    def rollout(
        self, env: Any = None, episodes: int = 1, seeds: Sequence[int] | None = None
    ) -> np.ndarray:
        """Play ``episodes`` full episodes in ``env`` (default: :meth:`make_env`, closed
        afterwards); returns their returns (float64). ``seeds`` are the reset seeds, one per
        episode (default: unseeded resets)."""
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ConfigError(f"Policy.rollout 'episodes' must be an int >= 1; got {episodes!r}")
        if seeds is not None and len(seeds) != episodes:
            raise ConfigError(
                f"Policy.rollout got {len(seeds)} seeds for {episodes} episodes; give one each"
            )
        own = env is None
        env = self.make_env() if own else env
        returns = np.zeros(int(episodes))
        try:
            for i in range(int(episodes)):
                obs, _ = env.reset(seed=None if seeds is None else int(seeds[i]))
                while True:
                    obs, reward, terminated, truncated, _ = env.step(self.act(obs))
                    returns[i] += float(reward)
                    if terminated or truncated:
                        break
        finally:
            if own:
                env.close()
        return returns


def load_policy(path: str | os.PathLike) -> Policy:
    """Load a policy written by ``asktell export`` (or :func:`export_policy`).

    Example:
        >>> policy = load_policy("policy.npz")                  # doctest: +SKIP
        >>> action = policy.act(observation)                    # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"load_policy: {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("metadata")))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"load_policy: {str(path)!r} is not a policy file written by asktell export ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"load_policy: {str(path)!r} is not an asktell policy file")
    if meta.get("version") != VERSION:
        raise ConfigError(
            f"load_policy: {str(path)!r} has format version {meta.get('version')!r}; this "
            f"asktell reads version {VERSION}"
        )
    return Policy(arrays, meta)
