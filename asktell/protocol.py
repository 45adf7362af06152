"""The contracts between strategies, evaluators and tasks.

Strategies never know which evaluator runs; evaluators never know which strategy asked.
Only seeds (int64), a :class:`~asktell.distribution.Distribution` snapshot and returns cross.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asktell.distribution import Distribution
from asktell.errors import ReturnsError
from asktell.stats import RunningStat

__all__ = [
    "Strategy",
    "Evaluator",
    "Task",
    "TaskHooks",
    "BatchRunner",
    "hooks_of",
    "TaskResult",
    "Evaluation",
    "Failure",
]


@runtime_checkable
class Strategy(Protocol):
    """An evolution strategy that asks for seeds and is told returns (maximised)."""

    num_params: int
    population_size: int
    generation: int

    def ask(self) -> np.ndarray:
        """int64 seeds, shape ``(population_size,)``."""

    def tell(self, returns: Any) -> dict:
        """One return per asked seed, same order; returns a dict of metrics."""

    @property
    def distribution(self) -> Distribution: ...

    @property
    def center(self) -> np.ndarray: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class Task(Protocol):
    """The thing being optimised. Picklable, so it can travel to workers.

    Required: ``evaluate`` and a ``num_params`` attribute (``None`` when the task accepts any
    dimension). The optional hooks (per-generation context, observing results, the centre's
    evaluation plan, state, a batch runner) are declared by :class:`TaskHooks`, with no-op
    defaults; subclass it to provide them.
    """

    num_params: int | None

    def evaluate(
        self, params: np.ndarray, seeds: np.ndarray, distribution: Distribution
    ) -> TaskResult:
        """Evaluate candidates ``params`` (``(n, num_params)``) named by ``seeds``."""


class TaskHooks:
    """The optional hooks of a task, declared once with no-op defaults.

    Every built-in task subclasses this, and so should a task of yours that needs a hook:
    the generation step (:mod:`asktell.loop`) calls these methods on every task and never
    probes for them. A task object that does not subclass it (anything with ``evaluate``
    and ``num_params``) gets these defaults through :func:`hooks_of`, i.e. it is stateless.
    """

    def context(self) -> dict[str, Any]:
        """Per-generation facts every evaluator must apply identically (frozen observation
        statistics, the current step cap); stored in ``Distribution.context`` before the
        generation is evaluated. Default: none."""
        return {}

    def observe(self, evaluation: Evaluation) -> None:
        """Fold a told generation's evaluation (``obs_stats``, episode lengths) into the
        task's running state, in the driver's process only. Called after ``tell``."""

    def center_plan(
        self, distribution: Distribution, episodes: int
    ) -> tuple[Distribution, np.ndarray]:
        """What to evaluate, through whichever evaluator runs the generation, to measure the
        noise-free centre: a distribution whose every seed decodes to the centre and the
        seeds, one per returned value. Default: the centre once (a deterministic task gives
        the same value on every episode)."""
        return distribution.replace(sigma=0.0, factor=None), np.zeros(1, dtype=np.int64)

    def initial_params(self, seed: int) -> np.ndarray | None:
        """A starting centre for run seed ``seed`` (a policy's initialisation), or ``None``
        for zeros."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """The task's running state as arrays and scalars, for checkpoints (``None``:
        stateless)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. A stateless task refuses any state."""
        from asktell.errors import CheckpointError

        if state:
            raise CheckpointError(
                f"the checkpoint holds task state but {type(self).__name__} is stateless"
            )

    def batch_runner(self, num_envs: int | None, mode: str, worker: int) -> BatchRunner | None:
        """An engine that evaluates many candidates at once in ``num_envs`` environments
        (``None``: as many as its first batch needs, up to its own limit) (what
        :class:`~asktell.evaluators.VectorEnvEvaluator` runs in each worker process), or
        ``None`` when the task has none (the vector evaluator then refuses the task)."""
        return None


@runtime_checkable
class BatchRunner(Protocol):
    """A task's own engine for many candidates at once (see :meth:`TaskHooks.batch_runner`)."""

    def run(self, distribution: Distribution, seeds: np.ndarray, retries: int = 0) -> Evaluation:
        """Evaluate ``seeds`` under ``distribution``: an :class:`Evaluation` in seed order
        whose failures are recorded (indices in ``seeds``), never raised for a candidate."""

    def close(self) -> None: ...


class _DefaultHooks(TaskHooks):
    """The no-op hooks of a task that does not subclass :class:`TaskHooks`."""


_DEFAULT_HOOKS = _DefaultHooks()


def hooks_of(task: Any) -> TaskHooks:
    """The hooks of ``task``: the task itself when it subclasses :class:`TaskHooks`, else
    the no-op defaults."""
    return task if isinstance(task, TaskHooks) else _DEFAULT_HOOKS


@dataclasses.dataclass(frozen=True)
class Failure:
    """A candidate whose evaluation raised."""

    index: int
    seed: int
    error: str
    generation: int = 0

    @staticmethod
    def describe(exc: BaseException) -> str:
        """An exception as the one line a failure records (``"EvaluationError: ..."``)."""
        import traceback

        return "".join(traceback.format_exception_only(type(exc), exc)).strip()


@dataclasses.dataclass
class Evaluation:
    """Per-candidate results of a batch, in seed order: what a task's ``evaluate`` returns
    (as :data:`TaskResult`, the same record), what a chunk of an evaluator's work produces,
    and what an evaluator returns once the parts are put together with :meth:`place`.

    Attributes:
        returns: float64 ``(n,)``; NaN for failed candidates.
        steps: int64 ``(n,)`` environment steps (function evaluations for functions).
        failures: the candidates whose evaluation raised (index in this record, seed, error).
        obs_stats: merged observation statistics gathered during the batch, if any.
        episodes: int64 ``(n,)`` episodes per candidate, if the task reports them.
        truncated: int64 ``(n,)`` episodes ended by the step cap, if reported.
        seconds: compute time behind the record, where an evaluator measures it (Dask
            workers); 0 otherwise.
        violations: float64 ``(n, m)`` constraint values ``g_j(x)`` (``<= 0`` is
            feasible), if the task has constraints; NaN rows for failed candidates.
        dropped: bool ``(n,)``: True for a candidate not evaluated because its generation
            closed before it came back (a straggler-tolerant evaluator, see
            ``docs/stragglers.md``); its return is NaN and its steps 0, and a strategy
            learns from the others only. ``None``: every candidate was evaluated.

    Every field after ``steps`` is keyword-only (the old ``TaskResult`` and ``Evaluation``
    orders differed; a positional third argument would be ambiguous).
    """

    returns: np.ndarray
    steps: np.ndarray
    _: dataclasses.KW_ONLY
    failures: list[Failure] = dataclasses.field(default_factory=list)
    obs_stats: RunningStat | None = None
    episodes: np.ndarray | None = None
    truncated: np.ndarray | None = None
    seconds: float = 0.0
    violations: np.ndarray | None = None
    dropped: np.ndarray | None = None

    @classmethod
    def empty(cls, n: int) -> Evaluation:
        """A record of ``n`` candidates not evaluated yet: NaN returns, zero steps."""
        return cls(np.full(n, np.nan), np.zeros(n, dtype=np.int64))

    @property
    def total_steps(self) -> int:
        return int(np.sum(self.steps))

    @property
    def told_mask(self) -> np.ndarray:
        """bool ``(n,)``: the candidates evaluated (not :attr:`dropped`)."""
        if self.dropped is None:
            return np.ones(len(self.returns), dtype=bool)
        return ~np.asarray(self.dropped, dtype=bool)

    @property
    def failed_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.returns), dtype=bool)
        for f in self.failures:
            mask[f.index] = True
        return mask

    def place(self, where: slice | int | np.ndarray, part: Evaluation) -> None:
        """Write ``part``'s candidates at positions ``where`` of this record (a slice, an
        index or an index array, one position per candidate of ``part``).

        The one merge of results: per-candidate arrays are copied into place (``episodes``
        and ``truncated`` are allocated here, zeros, the first time a part has them), the
        part's failures are re-indexed to their positions here, observation statistics are
        merged (exactly, so in any order) and compute seconds add up; ``dropped`` is
        allocated (all False) the first time a part has it. ``part.obs_stats``
        may become this record's statistics object (not copied).
        """
        n = len(self.returns)
        positions = np.arange(n)[where].reshape(-1)
        self.returns[positions] = part.returns
        self.steps[positions] = part.steps
        for name in ("episodes", "truncated"):
            value = getattr(part, name)
            if value is not None:
                if getattr(self, name) is None:
                    setattr(self, name, np.zeros(n, dtype=np.int64))
                getattr(self, name)[positions] = value
        if part.dropped is not None:
            if self.dropped is None:
                self.dropped = np.zeros(n, dtype=bool)
            self.dropped[positions] = part.dropped
        if part.violations is not None:
            if self.violations is None:
                self.violations = np.full((n, part.violations.shape[1]), np.nan)
            self.violations[positions] = part.violations
        if part.failures:
            self.failures.extend(
                dataclasses.replace(f, index=int(positions[f.index])) for f in part.failures
            )
            self.failures.sort(key=lambda f: f.index)
        if part.obs_stats is not None:
            if self.obs_stats is None:
                self.obs_stats = part.obs_stats
            else:
                self.obs_stats.merge(part.obs_stats)
        self.seconds += part.seconds

    @classmethod
    def concatenate(cls, parts: Iterable[tuple[int, Evaluation]], n: int) -> Evaluation:
        """One record of ``n`` candidates from parts ``(offset, part)`` (each placed at
        ``offset .. offset + len(part)``; candidates no part covers keep NaN returns)."""
        out = cls.empty(n)
        for offset, part in parts:
            out.place(slice(offset, offset + len(part.returns)), part)
        return out


#: What a task's ``evaluate`` returns: the same record as :class:`Evaluation` (its
#: ``failures`` stay empty: a task raises instead).
TaskResult = Evaluation


@runtime_checkable
class Evaluator(Protocol):
    """Turns seeds into returns for one task, wherever the compute is."""

    def evaluate(self, distribution: Distribution, seeds: np.ndarray) -> Evaluation: ...

    def close(self) -> None:
        """Release resources; idempotent."""


def as_returns(returns: Any, *, expected: int, generation: int) -> np.ndarray:
    """Validate what was passed to ``tell`` and return it as a float64 ``(expected,)`` array.

    Accepts an :class:`Evaluation`, a sequence or a 1-D array of real numbers. Raises
    :class:`~asktell.errors.ReturnsError` naming what was expected and what came.
    """
    if isinstance(returns, Evaluation):
        returns = returns.returns
    if (
        type(returns) is np.ndarray
        and returns.dtype == np.float64
        and returns.ndim == 1
        and returns.size == expected
    ):
        # The common case (a float64 vector of the right length): nothing to refuse, so
        # skip the generic checks; a copy, as below, so the caller's array is never shared.
        return returns.copy()
    if isinstance(returns, np.ma.MaskedArray):
        raise ReturnsError(
            f"tell() got a masked array (generation {generation}); its mask would be ignored: "
            "give a failed candidate NaN (ranked worst) or pass dropped= for candidates not "
            "evaluated"
        )
    try:
        arr = np.asarray(returns)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ReturnsError(
            f"tell() expects {expected} numeric returns (generation {generation}); "
            f"could not read them as an array: {exc}"
        ) from None
    # kind "m" (timedelta64) counts as an integer type to numpy: refused by its kind
    if arr.dtype.kind not in "iuf" or (isinstance(returns, (list, tuple)) and arr.ndim == 1):
        _refuse_non_real(returns, arr, expected, generation)
    if arr.ndim != 1:
        raise ReturnsError(
            f"tell() expects a 1-D array of {expected} returns (generation {generation}); "
            f"got shape {arr.shape}"
        )
    if arr.size != expected:
        raise ReturnsError(
            f"tell() got {arr.size} returns for {expected} asked seeds (generation {generation})"
        )
    return arr.astype(np.float64)


def _refuse_non_real(returns: Any, arr: np.ndarray, expected: int, generation: int) -> None:
    """Raise naming the first candidate whose return is not a real number: a string or a
    bool is a bug in the objective, never coerced into a return (numpy would read
    ``[1.0, True]`` as ``[1.0, 1.0]`` and ``["1.5"]`` as text)."""
    from asktell.config_base import short_repr
    from asktell.errors import ReturnsError

    if isinstance(returns, (list, tuple)) and arr.ndim == 1:
        values = list(returns)  # the caller's own values, before numpy converts them
    else:
        values = list(arr.reshape(-1)) if arr.dtype == object else arr.reshape(-1).tolist()
    real = (int, float, np.integer, np.floating)
    for i, value in enumerate(values):
        if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(value, real):
            raise ReturnsError(
                f"tell() expects {expected} real numbers (generation {generation}); "
                f"candidate #{i} returned a {type(value).__name__}: {short_repr(value, 40)}"
            )
    if arr.dtype.kind not in "iuf":
        raise ReturnsError(
            f"tell() expects {expected} real numbers (generation {generation}); got an "
            f"array of dtype {arr.dtype}"
        )
