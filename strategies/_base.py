"""What every strategy shares: the validated constructor, the ask/tell state machine,
returns validation, the non-finite policy and the state_dict plumbing.

A strategy declares its options once, in a Config model subclassing
:class:`StrategyConfig` (decorated onto the class with
:func:`~asktell.config_base.declare_options`); :meth:`BaseStrategy.__init__` validates the
constructor's arguments through that model and :class:`StrategyArgs`, so Python callers and
run files meet the same rules and messages. A strategy writes no ``__init__``; it implements
these hooks:

* ``_setup(cfg)``: its own state from the validated options (called at the end of
  ``__init__``);
* ``_sample(count)``: the seeds of one generation (int64);
* ``_update(seeds, returns)``: learn from finite returns, return metrics (may raise only
  before it mutates anything);
* ``_make_distribution()``: the current :class:`~asktell.distribution.Distribution`;

plus ``_state()`` / ``_load_state()`` for whatever it adds to the common state.

Every strategy also gets here, with no code of its own: ``stop()`` (the stopping rules of
:mod:`._stopping`, with the strategy's ``_stop_extra`` added), ``best`` (the best candidate
told so far) and their state. The state plumbing (``state_dict``, its schema and the
all-or-nothing ``load_state_dict``) is :mod:`._state`; injected points and the bounds
penalty are :mod:`._inject`; the checks of ``tell``'s arguments and the non-finite policy
are :mod:`._told`; ``stop()`` is :mod:`._stopping`'s ``StopMixin``; the options every
strategy shares (``StrategyConfig``) are :mod:`._strategy_config`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from asktell.bounds import Bounds
from asktell.config_base import collect_options
from asktell.distribution import Distribution
from asktell.errors import ConfigError
from asktell.shaping import SortedReturns
from asktell.noise import DEFAULT_TABLE_SIZE, NoiseSource, NoiseTable

from ._common import default_population_size, mean_std, real_vector
from ._inject import InjectMixin
from ._metrics import Metrics, _DeferredMetrics
from ._state import Best, StateMixin
from ._stopping import StopHistory, StopMixin, history_length
from ._strategy_config import StrategyArgs, StrategyConfig
from ._told import ToldMixin

__all__ = ["BaseStrategy", "Best", "StrategyConfig", "StrategyArgs"]

_INT64 = np.dtype(np.int64)
_F64 = np.dtype(np.float64)
_RETURN_STATS = ("return_mean", "return_std")

#: Up to this many told returns, their mean and standard deviation in ``tell``'s metrics are
#: computed when first read (the metrics keep a copy of the returns: 8 KiB at most).
_DEFER_RETURNS = 1024


class _MinPopulation:
    """``cls.min_population_size``, read from the ``ge`` rule of the Config's
    ``population_size`` (so the smallest population is declared once, in the Config)."""

    def __get__(self, obj: Any, owner: type) -> int:
        field = owner.config_class.model_fields.get("population_size")  # type: ignore[attr-defined]
        rules = [m.ge for m in (field.metadata if field else []) if getattr(m, "ge", None)]
        return rules[0] if rules else 1


class BaseStrategy(StateMixin, InjectMixin, ToldMixin, StopMixin):
    """Shared machinery of every asktell strategy.

    Args:
        num_params: dimension of the search space.
        seed: seed of the strategy's own generator (which noise keys it asks for).
        x0: initial centre (default zeros).
        noise: a :class:`~asktell.noise.NoiseTable` (default: seed 0, 2**25 floats) or
            :class:`~asktell.noise.CounterNoise`.
        *args, **options: the options of the strategy's ``config_class`` (those named in
            its ``positional_options`` may come by position).
    """

    #: Registry key; also the ``kind`` in run configs.
    name: ClassVar[str] = ""
    #: The Config model declaring the options (set by ``declare_options``).
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: Capabilities that the conformance suite reads instead of branching on names.
    #: ``antithetic``: seeds come in mirrored pairs (needs an even population when on).
    #: ``inject``: :meth:`inject` is supported (the update learns from explicit points).
    #: ``partial_tell``: ``tell`` accepts ``dropped`` candidates and learns from the rest
    #: (its ``_update`` is well defined on any subset of the asked seeds).
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: The smallest population the method can work with (the Config's rule).
    min_population_size: ClassVar[int] = _MinPopulation()  # type: ignore[assignment]

    #: Whether a run stops on :meth:`stop` when the ``stop_rules`` option is null: on for
    #: the black-box strategies, off for the policy-search ones (a flat generation of an RL
    #: task is common and not a reason to end a run).
    stops_by_default: ClassVar[bool] = False
    #: A strategy over another (restarts): its :meth:`stop` reports only its own end (no
    #: restart left), while the inner strategy's rules decide when it restarts.
    wraps_strategy: ClassVar[bool] = False
    #: Whether ``_update`` leaves the returns it is given as they are, during the call and
    #: after it (it neither writes into them nor keeps a reference): ``tell``'s deferred
    #: return statistics then read them without a copy. A subclass that overrides
    #: ``_update`` without declaring this again gets ``False``.
    _update_leaves_returns: ClassVar[bool] = False

    #: Whether the class builds its distribution with BaseStrategy's own
    #: ``_make_distribution`` (set per class).
    _plain_distribution: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_update" in cls.__dict__ and "_update_leaves_returns" not in cls.__dict__:
            cls._update_leaves_returns = False
        cls._plain_distribution = cls._make_distribution is BaseStrategy._make_distribution

    def __init__(
        self,
        num_params: int | None = None,
        *args: Any,
        seed: int = 0,
        x0: Any = None,
        noise: NoiseSource | None = None,
        **options: Any,
    ):
        owner = type(self).__name__
        num_params = _num_params_of(owner, num_params, x0)
        fixed = StrategyArgs.validate_options(owner, {"num_params": num_params, "seed": seed})
        self.num_params, self.seed = fixed.num_params, fixed.seed
        #: The validated options (an instance of ``config_class``).
        self.config = self.config_class.validate_options(
            owner,
            collect_options(type(self), args, options),
            context={"num_params": self.num_params},
        )
        self.nonfinite = self.config.nonfinite
        size = getattr(self.config, "population_size", None)
        self.population_size = size if size is not None else self._default_population_size()
        self.noise = noise if noise is not None else NoiseTable(0, DEFAULT_TABLE_SIZE)
        if not isinstance(self.noise, NoiseSource):
            raise ConfigError(
                f"{owner} 'noise' must be a noise source (NoiseTable, CounterNoise or another "
                f"asktell.noise.NoiseSource); got {type(noise).__name__}"
            )
        self.noise.check_dim(self.num_params)
        if x0 is None:
            center = np.zeros(self.num_params)
        else:
            center = real_vector(x0, f"{owner} 'x0'")
            if center.shape != (self.num_params,):
                raise ConfigError(
                    f"{owner} 'x0' must have num_params={self.num_params} values; "
                    f"got shape {np.shape(x0)}"
                )
            if not np.all(np.isfinite(center)):
                raise ConfigError(f"{owner} 'x0' must be finite; got non-finite values")
        #: The live box bounds (``None``: unbounded).
        self.bounds: Bounds | None = None
        if self.config.bounds is not None:
            self.bounds = self.config.bounds.build(self.num_params, owner)
            if x0 is None:
                # The box's middle: zeros may lie outside it, and a centre outside the box
                # would start the search on a repaired (flat) region.
                center = (self.bounds.lower + self.bounds.upper) / 2
            else:
                self.bounds.check_point(center, owner)
        self._center = center
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0
        self._pending: np.ndarray | None = None
        #: Points waiting for the next ask (``inject``), and this generation's injected ones.
        self._inject_queue = np.zeros((0, self.num_params))
        self._injected: np.ndarray | None = None
        self._dist_cache: Distribution | None = None
        #: This tell's returns sorted once (set only while ``_update`` runs; ``None``
        #: otherwise): an update whose shaping sorts the returns it was given may take the
        #: sort from here when ``values`` is that very array.
        self._sorted_returns: SortedReturns | None = None
        self.best: Best | None = None
        #: Whether the caller gave ``x0`` (a wrapper's start may depend on it).
        self._x0_given = x0 is not None
        self._setup(self.config)
        self._stop_history = StopHistory(
            history_length(self.num_params, self.population_size), self.num_params, self.population_size
        )

    def _setup(self, cfg: Any) -> None:
        """Build the strategy's own state from its validated options ``cfg`` (an instance
        of ``config_class``); called once, at the end of ``__init__``. A strategy defines
        this instead of ``__init__``, so the constructor's signature is written once."""

    def _default_population_size(self) -> int:
        """The population when the Config's ``population_size`` is ``None`` ("auto")."""
        return default_population_size(self.num_params)

    # ------------------------------------------------------------------ hooks
    def _sample(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def _update(self, seeds: np.ndarray, returns: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def _make_distribution(self) -> Distribution:
        return Distribution._plain(self._center, self.sigma, self.noise, self.generation)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ public API
    @property
    def center(self) -> np.ndarray:
        """The current solution (mean of the search distribution), a copy."""
        return self._center.copy()

    @property
    def distribution(self) -> Distribution:
        """The search distribution of the current generation (frozen, picklable)."""
        dist = self._dist_cache
        if dist is not None and dist.generation == self.generation:
            return dist
        if (
            self._plain_distribution
            and self.bounds is None
            and self._injected is None
            and not self._inject_queue.shape[0]
        ):
            # What the general path below gives when nothing is injected or bounded, in
            # fewer calls (a snapshot is made every generation).
            dist = Distribution._plain(self._center, self.sigma, self.noise, self.generation)
        else:
            dist = self._make_distribution()
            injected = self._next_injected()
            if self.bounds is not None or injected is not None:
                dist = dist.replace(bounds=self.bounds, injected=injected)
        self._dist_cache = dist
        return dist

    @property
    def pending(self) -> bool:
        """Whether seeds have been asked and not yet told."""
        return self._pending is not None

    def _changed(self) -> None:
        self._dist_cache = None

    def ask(self) -> np.ndarray:
        """The seeds of this generation, int64 of shape ``(population_size,)``.

        Asking again before ``tell`` returns the same seeds (so a crashed evaluation can be
        retried without changing the run).
        """
        if self._pending is None:
            seeds = self._sample(self.population_size)
            if type(seeds) is not np.ndarray or seeds.dtype is not _INT64:
                seeds = np.asarray(seeds, dtype=np.int64)
            if seeds.shape != (self.population_size,):
                raise RuntimeError(
                    f"{type(self).__name__}._sample returned shape {seeds.shape}; "
                    f"expected ({self.population_size},)"
                )
            if self._inject_queue.shape[0]:
                seeds = self._take_injected(seeds)
            self._pending = seeds
        return self._pending.copy()

    def tell(self, returns: Any, violations: Any = None, dropped: Any = None) -> dict[str, Any]:
        """Learn from one return per asked seed (same order). Returns a dict of metrics.

        Accepts a sequence, a 1-D array, or an :class:`~asktell.protocol.Evaluation`.
        Constraint values ``g_j(x)`` (``<= 0`` feasible), ``(population_size, m)``, come in
        ``violations`` or in the Evaluation's ``violations``; the strategy then learns from
        Deb's feasibility-first order (:mod:`asktell.constraints`).
        ``dropped`` (bool, one per asked seed, or the Evaluation's ``dropped``): candidates
        not evaluated because a straggler-tolerant generation closed early. The strategy
        learns from the others only (they are left out of the update, not ranked), and
        the metrics then include ``told``, the number learnt from; a strategy needs the
        ``"partial_tell"`` capability to accept any dropped candidate.
        Raises :class:`~asktell.errors.AskTellOrderError` without an outstanding ``ask`` and
        :class:`~asktell.errors.ReturnsError` for a wrong count, shape or type; in both
        cases the strategy is unchanged.
        """
        pending = self._pending
        if (
            violations is None
            and dropped is None
            and pending is not None
            and type(returns) is np.ndarray
            and returns.dtype is _F64
            and returns.shape == pending.shape
        ):
            # The common call, a float64 vector of one return per asked seed: nothing for
            # _tell_inputs to refuse (as_returns's own fast path); a copy, so the caller's
            # array is never shared.
            seeds, r, told = pending, returns.copy(), None
        else:
            seeds, r, violations, told = self._tell_inputs(returns, violations, dropped)
        # One sort of the returns serves the finiteness check (a sort puts -inf first and
        # +inf and NaN last, so finite ends mean finite returns throughout), the best
        # candidate, the stopping history and, when the strategy learns from these very
        # returns, its centred ranks (``self._sorted_returns``, read by the update); none of
        # them sorts again. Only a generation with a non-finite return needs the
        # per-candidate mask. (No update writes into the returns it is given, so the sort
        # made before it stays true.)
        order = r.argsort()
        ordered = r[order]
        top = ordered.item(-1)
        fin, num_bad = r, 0
        if math.isfinite(ordered.item(0)) and math.isfinite(top):
            best = self.best
            if best is None or top > best.value:  # _note_best's own first test, inline
                self._note_best(seeds, r, None, 0, top)
        else:
            r, fin, order, ordered, num_bad = self._screen_nonfinite(seeds, r, order, ordered)
        learn = self._learning_returns(r, seeds, violations)
        if learn is fin and fin.size:
            # tuple.__new__: the named tuple without its Python-level constructor.
            self._sorted_returns = tuple.__new__(SortedReturns, (fin, order, ordered))
        try:
            update_metrics = self._update(seeds, learn)
        finally:
            self._sorted_returns = None
        if fin.size:
            # The history computes the max and min the metrics report (bitwise what
            # fin.max() and fin.min() give), so they are not computed twice.
            top, bottom = self._stop_history.record(fin, self.generation + 1, ordered)
        else:
            top = bottom = float("nan")
        self._pending = self._injected = None
        self.generation += 1
        self._changed()
        # ``fin`` is tell's own array (a copy of what the caller passed, or made from one);
        # the deferred return statistics may read it as it is unless the update got it and
        # may write into it or keep it.
        kept = learn is not fin or self._update_leaves_returns
        return self._tell_metrics(update_metrics, fin, num_bad, top, bottom, told, kept)

    def _tell_metrics(
        self, update_metrics: Any, fin: np.ndarray, num_bad: int, top: float, bottom: float,
        told: np.ndarray | None, kept: bool = False,
    ) -> Metrics:
        """``tell``'s result: the strategy's metrics, kept (a :class:`Metrics` the update
        made for this tell, whose deferred entries stay deferred) or copied, then tell's own
        (the return statistics of the ``fin`` finite returns, deferred at small sizes;
        ``kept``: nothing writes into ``fin`` afterwards, so they may read it uncopied)."""
        kind = type(update_metrics)
        metrics = (
            update_metrics if kind is Metrics or kind is _DeferredMetrics
            else Metrics(update_metrics or ())
        )
        dict.update(metrics, {
            "generation": self.generation, "num_nonfinite": num_bad, "return_mean": None,
            "return_std": None, "return_max": top, "return_min": bottom,
        })
        if 0 < fin.size <= _DEFER_RETURNS:
            # Computed when the metrics are first read, from an array nothing writes into;
            # a generation whose metrics nobody reads skips the two passes.
            largest = max(abs(top), abs(bottom))
            values = fin if kept else fin.copy()
            later = metrics._later
            if later is None:
                metrics.defer(_RETURN_STATS, mean_std, values, largest)
            else:  # the keys are in place (above)
                later.append((_RETURN_STATS, mean_std, (values, largest)))
        else:
            mean, std = mean_std(fin, max(abs(top), abs(bottom)) if fin.size else None)
            dict.update(metrics, return_mean=mean, return_std=std)
        if told is not None:
            dict.__setitem__(metrics, "told", int(told.sum()))
        return metrics

    def _note_best(
        self,
        seeds: np.ndarray,
        r: np.ndarray,
        finite: np.ndarray | None,
        num_bad: int | None = None,
        top: float | None = None,
    ) -> None:
        """Keep the generation's best finite candidate if it beats the best so far (decoded
        with this generation's distribution, before the update moves it). ``num_bad``: the
        count of non-finite returns when the caller knows it (0: ``r`` is all finite, and
        ``finite`` may then be ``None``). ``top``: ``r``'s maximum when the caller has it
        (all finite), so a generation that beats nothing costs no search for it."""
        if top is not None and self.best is not None and not top > self.best.value:
            return  # the same test as below, on the same value: r[argmax] is the maximum
        if num_bad == 0:
            i = int(r.argmax())  # all finite: the same first maximum as below
        elif not finite.any():
            return
        else:
            i = int(np.argmax(np.where(finite, r, -np.inf)))
        if self.best is None or r[i] > self.best.value:
            # decode_one(seeds[i]) is decode([seeds[i]])[0]; the one-seed slice is already
            # the int64 array that list becomes, so decode has nothing to convert.
            x = np.array(self.distribution.decode(seeds[i : i + 1])[0], dtype=np.float64)
            self.best = Best(int(seeds[i]), float(r[i]), x, self.generation)

def _num_params_of(owner: str, num_params: Any, x0: Any) -> Any:
    """``num_params`` as given, else the length of ``x0``; refused when neither is given."""
    if x0 is None:
        if num_params is None:
            raise ConfigError(
                f"{owner} needs 'num_params' or 'x0' (the dimension is taken from x0 when "
                "num_params is not given); got neither"
            )
        return num_params
    size = int(np.size(x0))
    if num_params is None:
        return size
    if isinstance(num_params, (int, np.integer)) and not isinstance(num_params, bool) and (
        num_params != size and np.ndim(x0) <= 1
    ):
        raise ConfigError(
            f"{owner} 'x0' must have num_params={num_params} values; got {size} values "
            "(leave num_params out to take it from x0)"
        )
    return num_params
