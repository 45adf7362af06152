"""``FunctionTask``: a black-box function ``f(x) -> float`` as a task (``kind = "function"``).

In Python the task wraps any callable; a run file cannot hold a callable, so its section
names a standard function (``name``) or the user's own by import path (``function =
"objectives:rosenbrock"``, the run's directory importable; :mod:`asktell._imports`).
:class:`FunctionTaskConfig` is the one declaration of the run-file options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from pydantic import Field, model_serializer, model_validator

from asktell._imports import ImportedObject, check_import_path
from asktell.config_base import Bool, Float, Int, PluginConfig, short_repr
from asktell.constraints import as_violations
from asktell.distribution import Distribution
from asktell.errors import ConfigError, ReturnsError
from asktell.functions import FUNCTIONS
from asktell.protocol import TaskHooks, TaskResult
from asktell.registry import TASKS

__all__ = ["FunctionTask", "FunctionTaskConfig", "NamedFunction"]


class NamedFunction:
    """A standard test function by name, optionally shifted: ``f(x - shift)``. Picklable.

    Args:
        name: one of :data:`asktell.functions.FUNCTIONS` (sphere, ellipsoid, rosenbrock, ...).
        shift: the optimum is moved to ``shift`` (a scalar applied to every coordinate).
    """

    def __init__(self, name: str, shift: float = 0.0):
        if name not in FUNCTIONS:
            import difflib

            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown function {name!r}{hint} (known: {', '.join(sorted(FUNCTIONS))})"
            )
        self.name = name
        self.shift = float(shift)

    def __call__(self, X: np.ndarray):
        X = np.asarray(X, dtype=np.float64)
        return FUNCTIONS[self.name](X - self.shift if self.shift else X)

    def __repr__(self) -> str:
        return f"NamedFunction({self.name!r}, shift={self.shift})"


FunctionName = Literal[tuple(FUNCTIONS)]  # type: ignore[valid-type]


class FunctionTaskConfig(PluginConfig):
    """Run-file settings of a standard test function (``kind = "function"``)."""

    kind: Literal["function"] = "function"
    # The names are those of asktell.functions.FUNCTIONS, declared there once.
    name: FunctionName = Field(
        "sphere", description="Which standard function to minimise."
    )
    num_params: Int = Field(10, ge=1, description="Dimension of the search space.")
    shift: Float = Field(0.0, description="Moves the optimum to this value in every coordinate.")
    function: str | None = Field(
        None,
        description="Your own function instead of a standard one: an import path "
        "'package.module:name' (the current directory is importable, as with `python -m`; "
        "Dask workers import it the same way). Needs `num_params`.",
    )
    function_dir: str | None = Field(
        None,
        description="With `function`: the directory put on sys.path to import it. Unset: the "
        "current directory, recorded as an absolute path in the run's saved config so that "
        "`asktell resume` works from anywhere.",
    )
    vectorized: Bool | None = Field(
        None,
        description="With `function`: it takes a batch (n, num_params) and returns n values "
        "(default false: one vector at a time).",
    )
    minimize: Bool | None = Field(
        None,
        description="With `function`: it is a loss to minimise (default true); false: a "
        "return to maximise.",
    )

    @model_validator(mode="after")
    def _own_function_rules(self):
        """`function` needs `num_params` and excludes `name` and `shift`; `vectorized` and
        `minimize` apply to `function` only. The import is checked here, so a typo is a
        config error naming the field, not a failure at the first generation."""
        given = self.model_fields_set
        if self.function is None:
            for flag in ("vectorized", "minimize", "function_dir"):
                if getattr(self, flag) is not None:
                    raise ConfigError(
                        f"{flag!r} applies to your own 'function' only (the standard "
                        f"function {self.name!r} is a vectorised loss)"
                    )
            return self
        if self.function in FUNCTIONS:  # the built-in is meant: it goes by `name`
            raise ConfigError(
                f"'function' must be an import path 'package.module:name' to your own "
                f"function; got {self.function!r}, the name of a standard function: write "
                f'name = "{self.function}" instead'
            )
        check_import_path(self.function)
        # By value, not by fields_set: a saved config is re-read with every field present.
        for other, default in (("name", "sphere"), ("shift", 0.0)):
            if getattr(self, other) != default:
                raise ConfigError(
                    f"give either 'function' ({self.function!r}) or {other!r}, not both"
                )
        if "num_params" not in given:
            raise ConfigError(
                f"'num_params' is required with 'function' ({self.function!r}): asktell "
                "cannot tell the dimension of your function"
            )
        # __dict__: an assignment would re-run this validator (validate_assignment).
        self.__dict__["function_dir"] = ImportedObject(self.function, self.function_dir).base_dir
        return self

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: Any) -> Any:
        # With `function`, `name` and `shift` hold their unused defaults: a resolved config
        # (`asktell check`, the run's config.toml) that printed name = "sphere" beside
        # function = "mypkg.mod:fn" would read as if the standard sphere were minimised.
        data = handler(self)
        if self.function is not None and isinstance(data, dict):
            data.pop("name", None)
            data.pop("shift", None)
        return data

    def build(self) -> FunctionTask:
        if self.function is not None:
            return FunctionTask(
                ImportedObject(self.function, self.function_dir),
                vectorized=bool(self.vectorized),
                minimize=self.minimize is not False,
                num_params=self.num_params,
            )
        return FunctionTask.named(self.name, num_params=self.num_params, shift=self.shift)


@TASKS.register("function")
class FunctionTask(TaskHooks):
    """A black-box function as a task. Returns are maximised, so a loss is negated.

    A function is deterministic and stateless, so the default :class:`TaskHooks` apply (the
    centre is measured once, no state to checkpoint).

    Args:
        f: ``f(x) -> float`` for one parameter vector, or with ``vectorized=True``
            ``f(X) -> (n,)`` for a batch of rows. Must be picklable (a module-level function or
            a callable object) to travel to Dask workers.
        vectorized: call ``f`` once per batch instead of once per candidate.
        minimize: ``f`` is a loss; the task returns ``-f(x)``.
        num_params: the expected parameter count, checked against the distribution.
        constraints: ``g(x) -> (m,)`` constraint values (or ``g(X) -> (n, m)`` with
            ``vectorized``), feasible where every ``g_j(x) <= 0``; evaluated beside ``f`` and
            carried in the result's ``violations`` (see docs/bounds-and-constraints.md).

    Example:
        >>> import numpy as np
        >>> task = FunctionTask(lambda x: -float(np.sum(x**2)))
        >>> task.evaluate(np.ones((2, 3)), np.array([0, ~0]), None).returns
        array([-3., -3.])
    """

    def __init__(
        self,
        f: Callable[[np.ndarray], Any],
        *,
        vectorized: bool = False,
        minimize: bool = False,
        num_params: int | None = None,
        constraints: Callable[[np.ndarray], Any] | None = None,
    ):
        if not callable(f):
            raise ConfigError(f"FunctionTask 'f' must be callable; got {type(f).__name__}")
        for name, flag in (("vectorized", vectorized), ("minimize", minimize)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ConfigError(f"FunctionTask {name!r} must be True or False; got {short_repr(flag)}")
        if num_params is not None and (
            isinstance(num_params, (bool, np.bool_))
            or not isinstance(num_params, (int, np.integer))
            or num_params < 1
        ):
            raise ConfigError(
                f"FunctionTask 'num_params' must be an int >= 1 or None; got {short_repr(num_params)}"
            )
        self.f = f
        self.vectorized = bool(vectorized)
        self.minimize = bool(minimize)
        if constraints is not None and not callable(constraints):
            raise ConfigError(
                f"FunctionTask 'constraints' must be callable; got {type(constraints).__name__}"
            )
        self.num_params = num_params
        self.constraints = constraints

    @classmethod
    def named(cls, name: str, *, num_params: int | None = None, shift: float = 0.0) -> FunctionTask:
        """A standard test function (as a loss, so returns are ``-f``), e.g. ``"rastrigin"``.

        The Python twin of a run file's ``[task] kind = "function"`` section: the options are
        checked by :class:`FunctionTaskConfig`, with the same rules and words. ``num_params``
        may stay ``None`` here (any dimension), where a run file needs one.
        """
        options = {"name": name, "shift": shift}
        if num_params is not None:
            options["num_params"] = num_params
        cfg = FunctionTaskConfig.validate_options("FunctionTask.named", options)
        return cls(
            NamedFunction(cfg.name, cfg.shift),
            vectorized=True,
            minimize=True,
            num_params=num_params if num_params is None else cfg.num_params,
        )

    def __repr__(self) -> str:
        return (
            f"FunctionTask({self.f!r}, vectorized={self.vectorized}, minimize={self.minimize})"
        )

    def evaluate(
        self, params: np.ndarray, seeds: np.ndarray, distribution: Distribution | None
    ) -> TaskResult:
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        n = params.shape[0]
        if self.num_params is not None and params.shape[1] != self.num_params:
            raise ConfigError(
                f"FunctionTask expects num_params={self.num_params}; got candidates with "
                f"{params.shape[1]} parameters"
            )
        if self.vectorized:
            values = _real_array(self.f(params), n)
        else:
            values = np.empty(n, dtype=np.float64)
            for i in range(n):
                values[i] = _real(self.f(params[i]))
        if self.minimize:
            values = -values
        result = TaskResult(returns=values, steps=np.ones(n, dtype=np.int64))
        if self.constraints is not None:
            result.violations = self._violations(params)
        return result

    def _violations(self, params: np.ndarray) -> np.ndarray:
        """``g(x)`` for every row, ``(n, m)`` (same vectorisation as ``f``)."""
        g, n = self.constraints, params.shape[0]
        if self.vectorized:
            return as_violations(g(params), n, "the constraints function")  # type: ignore[misc]
        rows = [as_violations(g(x), 1, "the constraints function") for x in params]  # type: ignore[misc]
        widths = {r.shape[1] for r in rows}
        if len(widths) > 1:
            raise ReturnsError(f"the constraints function returned different counts: {sorted(widths)}")
        return np.concatenate(rows)

    def evaluate_center(self, distribution: Distribution, episodes: int = 1) -> np.ndarray:
        """The return at the centre (a function is deterministic: one value per episode)."""
        center = distribution.center[None]
        value = self.evaluate(center, np.zeros(1, dtype=np.int64), distribution).returns[0]
        return np.full(max(int(episodes), 1), value)


def _real(value: Any) -> float:
    """One value of ``f`` as a float, strictly: a number (numpy's, or anything with
    ``__float__`` like a 0-d array), never a bool, a string or an array of several values
    (``"1.5"`` and ``True`` used to become 1.5 and 1.0)."""
    if (
        isinstance(value, (bool, np.bool_, str, bytes))
        or (isinstance(value, np.ndarray) and value.ndim > 0)
        or not hasattr(value, "__float__")
    ):
        raise ReturnsError(
            f"the function must return a real number; got {short_repr(value)} "
            f"({type(value).__name__})"
        )
    return float(value)


def _real_array(values: Any, n: int) -> np.ndarray:
    """A vectorised ``f``'s values: ``n`` ints or floats (bools and strings refused)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise ReturnsError(
            f"the vectorized function must return real numbers (one per candidate, {n}); got "
            f"an array of dtype "
            f"{arr.dtype}: {short_repr(values)}"
        )
    if arr.shape not in ((n,), (n, 1)):  # a column is one value per row; anything else is not
        raise ReturnsError(
            f"vectorized function must return {n} values, shape ({n},) or ({n}, 1), one per "
            f"candidate; got shape {arr.shape}"
        )
    return arr.astype(np.float64).reshape(-1)


#: The run-file options (a callable has no run-file form; see the module docstring).
FunctionTask.config_class = FunctionTaskConfig  # type: ignore[attr-defined]
