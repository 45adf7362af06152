"""Mirrored ES: Brockhoff, Auger, Hansen, Arnold & Hohm 2010, "Mirrored Sampling and
Sequential Selection for Evolution Strategies" (PPSN XI, LNCS 6238), plus the teaching
variant that tutorials use.

Two variants share mirrored sampling (every ``eps`` is also tried as ``-eps``):

* ``variant="comma"`` (the paper's): a (1, lambda_m)-ES. ``lambda = num_offspring``
  offspring ``x +- sigma * z`` in mirrored pairs; the best becomes the next parent (comma
  selection: the parent is always replaced); the step size follows cumulative step-size
  adaptation on the selected ``z`` (``c = 3 / (d + 6)``, damping ``1 + c``: the CMA-ES
  defaults with ``mu_eff = 1``), which the paper notes stays unbiased for a single parent.
* ``variant="gradient"`` (the teaching variant): mirrored pairs, NES utilities and a plain
  gradient step ``center += learning_rate / sigma * sum_i u_i s_i eps_i`` with fixed
  ``sigma``.

**Sequential selection and ask/tell.** With ``sequential=True`` the offspring of an
iteration are asked in order ``x + sigma z1, x - sigma z1, x + sigma z2, ...``,
``population_size`` at a time (one, as in the paper, by default), and the iteration ends
as soon as a told offspring is better than the parent, which becomes the new parent; if
none of the ``num_offspring`` is, the best of them does. So a pair's mirror is asked only
when the first of the pair did not beat the parent. With ``population_size > 1`` the
ask is a batch evaluated together (useful with parallel evaluators): if several in it beat
the parent, the best of them is taken. The parent's return is the one it earned as an
offspring; the initial centre has none, so the first iteration always evaluates all
``num_offspring``. Each ``tell`` advances ``generation``; ``iteration`` counts parents.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from asktell.config_base import Bool, Float, Int, declare_options
from asktell.distribution import Distribution
from asktell.errors import ReturnsError
from asktell.noise import mirrored
from asktell.protocol import as_returns
from asktell.registry import STRATEGIES
from asktell.shaping import nes_utilities
from asktell.state_schema import Entry

from ._base import BaseStrategy
from ._common import default_population_size, fold_by_key, signed_rows
from ._options import PairedConfig

__all__ = ["MirroredES", "MirroredESConfig"]

#: lambda of sequential selection when num_offspring is unset: the paper's (1, 4_m^s)-ES.
DEFAULT_NUM_OFFSPRING = 4


class MirroredESConfig(PairedConfig):
    """Run-file settings of :class:`MirroredES` (``kind = "mirrored_es"``)."""

    kind: Literal["mirrored_es"] = "mirrored_es"
    variant: Literal["comma", "gradient"] = Field(
        "comma",
        description="comma: the paper's (1, lambda_m)-ES with step-size adaptation; "
        "gradient: the teaching variant (NES utilities, plain gradient step, fixed sigma).",
    )
    population_size: Int | None = Field(
        None,
        ge=1,
        description="Candidates per ask. Default (null): 4 + floor(3 ln d) rounded up to even; "
        "with sequential selection 1 (one offspring at a time, as in the paper).",
    )
    sigma: Float = Field(
        0.1, gt=0, description="Step size (initial for comma, fixed for gradient)."
    )
    sequential: Bool = Field(
        False,
        description="Sequential selection (comma only): stop an iteration at the first "
        "offspring better than its parent.",
    )
    num_offspring: Int | None = Field(
        None,
        ge=2,
        description="lambda with sequential selection (even; a multiple of population_size); "
        "default (null) 4, the paper's (1, 4_m^s)-ES.",
    )
    learning_rate: Float = Field(0.01, gt=0, description="Step size of the gradient variant.")

    def _in_pairs(self) -> bool:
        return not self.sequential

    def population_for(self, num_params: int) -> int:
        """``population_size``, else 1 with sequential selection (one offspring per ask,
        as in the paper), else the NES/CMA default rounded up to even (mirrored pairs)."""
        if self.population_size is not None:
            return int(self.population_size)
        if self.sequential:
            return 1
        n = default_population_size(num_params)
        return n + n % 2

    @model_validator(mode="after")
    def _sequential_selection(self) -> "MirroredESConfig":
        """`sequential = true` needs `variant = "comma"`, and then `num_offspring` must be even
        and a multiple of `population_size`; without it, `num_offspring` must be unset."""
        if self.sequential and self.variant != "comma":
            raise ValueError(f"sequential selection needs variant='comma'; got {self.variant!r}")
        if self.sequential:
            lam = DEFAULT_NUM_OFFSPRING if self.num_offspring is None else self.num_offspring
            batch = 1 if self.population_size is None else self.population_size
            if lam % 2 or lam % batch:
                raise ValueError(
                    f"num_offspring must be even and a multiple of population_size={batch} "
                    f"with sequential selection; got {lam}"
                )
        elif self.num_offspring is not None:
            raise ValueError(
                "num_offspring is only used with sequential=true (set population_size instead); "
                f"got {self.num_offspring}"
            )
        return self


@STRATEGIES.register("mirrored_es")
@declare_options(MirroredESConfig, positional=("population_size", "sigma"))
class MirroredES(BaseStrategy):
    """Mirrored-sampling ES (Brockhoff et al. 2010), with optional sequential selection,
    or the mirrored-pairs gradient ES of tutorials.

    Args:
        num_params, seed, x0, noise: see :class:`~asktell.strategies.BaseStrategy`.

    Example:
        >>> import numpy as np
        >>> es = MirroredES(num_params=4, sigma=0.5, sequential=True, seed=0)
        >>> for _ in range(600):
        ...     X = es.distribution.decode(es.ask())
        ...     _ = es.tell(-np.sum((X - 1.0) ** 2, axis=1))
        >>> bool(np.sum((es.center - 1.0) ** 2) < 1e-6)
        True
    """

    name = "mirrored_es"
    capabilities = frozenset({"antithetic"})
    suite_options = {"sigma": 0.5}

    def _setup(self, cfg: MirroredESConfig) -> None:
        self.variant = cfg.variant
        self.sequential = cfg.sequential
        if self.sequential:
            self.num_offspring = (
                DEFAULT_NUM_OFFSPRING if cfg.num_offspring is None else cfg.num_offspring
            )
        else:
            self.num_offspring = self.population_size
        self.sigma = cfg.sigma
        self.learning_rate = cfg.learning_rate
        d = self.num_params
        self.c_sigma = 3.0 / (d + 6.0)
        self.d_sigma = 1.0 + self.c_sigma
        self.chi_n = math.sqrt(d) * (1.0 - 1.0 / (4.0 * d) + 1.0 / (21.0 * d * d))
        self.path = np.zeros(d)
        self.iteration = 0
        self._offspring_done = 0  # offspring told in the current iteration
        self._open_key = -1  # key whose mirror is next (sequential, odd position)
        self._best_seed = 0
        self._best_return = 0.0
        self._has_best = False
        self._parent_return = 0.0
        self._has_parent = False
        self._batch_finite: np.ndarray | None = None

    def _default_population_size(self) -> int:
        return self.config.population_for(self.num_params)

    # ------------------------------------------------------------------ sampling
    def _sample(self, count: int) -> np.ndarray:
        if not self.sequential:
            return mirrored(self.noise.sample_keys(self.rng, count // 2, self.num_params))
        positions = self._offspring_done + np.arange(count)
        fresh = self.noise.sample_keys(self.rng, int(np.sum(positions % 2 == 0)), self.num_params)
        seeds, key, j = np.empty(count, dtype=np.int64), self._open_key, 0
        for i, p in enumerate(positions.tolist()):
            if p % 2 == 0:
                key = int(fresh[j])
                j += 1
                seeds[i] = key
            else:
                seeds[i] = ~key
        return seeds

    def _make_distribution(self) -> Distribution:
        return Distribution(self._center, self.sigma, self.noise, self.generation)

    def tell(self, returns: Any, violations: Any = None, dropped: Any = None) -> dict[str, Any]:
        """As :meth:`BaseStrategy.tell` (``violations`` and ``dropped`` too). The comma
        variant's metrics add ``sigma`` and
        ``concluded`` (whether the told offspring ended an iteration); the gradient
        variant's add ``grad_norm`` and ``update_norm``."""
        # Remember which returns were finite: a failed candidate must never count as better
        # than the parent, whatever value the non-finite policy ranks it at.
        self._batch_finite = None
        if self._pending is not None:
            try:
                r = as_returns(returns, expected=self._pending.size, generation=self.generation)
            except ReturnsError:
                pass  # the base class raises the same error, changing nothing
            else:
                self._batch_finite = np.isfinite(r)
        return super().tell(returns, violations, dropped)

    # ------------------------------------------------------------------ updates
    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        if self.variant == "gradient":
            return self._gradient_step(seeds, returns)
        finite = self._batch_finite if self._batch_finite is not None else np.ones(seeds.size, bool)
        if not self.sequential:
            if not finite.any():
                return {"sigma": self.sigma, "concluded": False}
            i = int(np.argmax(np.where(finite, returns, -np.inf)))
            return self._conclude(int(seeds[i]), float(returns[i]), seeds.size)
        masked = np.where(finite, returns, -np.inf)
        if finite.any():
            i = int(np.argmax(masked))
            if not self._has_best or masked[i] > self._best_return:
                self._best_seed, self._best_return, self._has_best = int(seeds[i]), float(masked[i]), True
        self._offspring_done += seeds.size
        if self._has_parent and np.max(masked) > self._parent_return:
            i = int(np.argmax(masked))
            return self._conclude(int(seeds[i]), float(masked[i]), self._offspring_done)
        if self._offspring_done >= self.num_offspring:
            used = self._offspring_done
            if self._has_best:
                return self._conclude(self._best_seed, self._best_return, used)
            self._reset_iteration()  # every offspring failed: keep the parent and sigma
            return {"sigma": self.sigma, "concluded": False, "offspring_used": used}
        self._open_key = int(seeds[-1]) if self._offspring_done % 2 else -1
        return {"sigma": self.sigma, "concluded": False}

    def _conclude(self, seed: int, value: float, used: int) -> dict[str, Any]:
        """The selected offspring becomes the parent; cumulative step-size adaptation."""
        z = signed_rows(self.noise, np.array([seed]), self.num_params)[0]
        # The new centre is exactly the evaluated candidate (same arithmetic as decode).
        self._center = self.distribution.decode_one(seed)
        c = self.c_sigma
        self.path = (1.0 - c) * self.path + math.sqrt(c * (2.0 - c)) * z
        change = c / self.d_sigma * (float(np.linalg.norm(self.path)) / self.chi_n - 1.0)
        self.sigma = self.sigma * math.exp(min(1.0, change))
        self._parent_return, self._has_parent = value, True
        self.iteration += 1
        self._reset_iteration()
        return {"sigma": self.sigma, "concluded": True, "offspring_used": used,
                "iteration": self.iteration}

    def _reset_iteration(self) -> None:
        self._offspring_done = 0
        self._open_key = -1
        self._has_best = False
        self._best_seed, self._best_return = 0, 0.0

    def _gradient_step(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        u = nes_utilities(returns)
        keys, a, _ = fold_by_key(seeds, u)
        grad = self.noise.weighted_sum(a, keys, self.num_params) / self.sigma
        update = self.learning_rate * grad
        self._center = self._center + update
        return {"grad_norm": float(np.linalg.norm(grad)), "update_norm": float(np.linalg.norm(update))}

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "path": self.path.copy(),
            "iteration": self.iteration,
            "offspring_done": self._offspring_done,
            "open_key": self._open_key,
            "best_seed": self._best_seed,
            # Arrays, so infinities survive strict JSON writers; never NaN (flags say unset).
            "best_return": np.array([self._best_return]),
            "has_best": self._has_best,
            "parent_return": np.array([self._parent_return]),
            "has_parent": self._has_parent,
        }

    def _state_schema(self) -> dict[str, Entry]:
        def seed_problem(value: int, sizes: Any) -> str | None:
            return self._pending_problem(np.array([value], dtype=np.int64), sizes)

        # Returns are ranked after non-finite ones were replaced, so a kept one is finite.
        one_value = Entry("array", shape=(1,))

        return {
            "sigma": Entry("float", positive=True),
            "path": Entry("array", shape=("n",)),
            "iteration": Entry("int", low=0),
            "offspring_done": Entry("int", low=0),
            "open_key": Entry("int", low=-1),
            "best_seed": Entry("int", check=seed_problem),
            "best_return": one_value,
            "has_best": Entry("bool"),
            "parent_return": one_value,
            "has_parent": Entry("bool"),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.sigma = float(state["sigma"])
        self.path = np.array(state["path"], dtype=np.float64)
        self.iteration = int(state["iteration"])
        self._offspring_done = int(state["offspring_done"])
        self._open_key = int(state["open_key"])
        self._best_seed = int(state["best_seed"])
        self._best_return = float(np.asarray(state["best_return"]).reshape(-1)[0])
        self._has_best = bool(state["has_best"])
        self._parent_return = float(np.asarray(state["parent_return"]).reshape(-1)[0])
        self._has_parent = bool(state["has_parent"])
