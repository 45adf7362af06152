"""What every strategy's state does: ``state_dict``, its declared schema, and
``load_state_dict`` all or nothing (every key checked against the schema before anything is
assigned; a snapshot undoes a failure past the checks). :class:`BaseStrategy` mixes it in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from asktell.distribution import INJECT_BASE
from asktell.errors import CheckpointError, ConfigError
from asktell.noise import split_seeds
from asktell.config_base import short_repr
from asktell.state_schema import Entry, check_state

__all__ = ["Best", "StateMixin", "state_rows"]


@dataclasses.dataclass(frozen=True, eq=False)  # an array field: compare fields, not ==
class Best:
    """The best candidate a strategy has been told about (``es.best``).

    Attributes:
        seed: its seed (decodes to ``parameters`` with the distribution of ``generation``).
        value: its return (maximised; a loss of ``-value`` for ``minimize``).
        parameters: its parameter vector, float64.
        generation: the generation it was asked in (0 for the first).
    """

    seed: int
    value: float
    parameters: np.ndarray
    generation: int


class StateMixin:
    """``state_dict`` / ``state_schema`` / ``load_state_dict`` of a strategy (see
    :class:`~strategies._base.BaseStrategy` for the attributes it reads)."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as arrays and scalars (strings for RNG state)."""
        state: dict[str, Any] = {
            "kind": self.name,
            "num_params": self.num_params,
            "population_size": self.population_size,
            "generation": self.generation,
            "center": self._center.copy(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "pending": (
                self._pending.copy() if self._pending is not None else np.zeros(0, np.int64)
            ),
            "has_pending": self._pending is not None,
            "noise": json.dumps(self.noise.spec()),
            "options": self._options_json(),
            "inject_queue": self._inject_queue.copy(),
            "injected": (
                self._injected.copy() if self._injected is not None
                else np.zeros((0, self.num_params))
            ),
        }
        best = self.best
        state.update(
            {
                "best.seed": best.seed if best else 0,
                "best.value": best.value if best else -np.inf,
                "best.parameters": best.parameters.copy() if best else np.zeros(self.num_params),
                "best.generation": best.generation if best else -1,
            }
        )
        state.update(self._stop_history.state())
        for key, value in self._state().items():
            state[key] = value
        return state

    def state_schema(self) -> dict[str, Entry]:
        """The declared rules of :meth:`state_dict`: one :class:`~asktell.state_schema.Entry`
        per key (``n`` is num_params, ``p`` the population size). A strategy adds its own
        keys in :meth:`_state_schema`."""
        schema = {
            "kind": Entry("str", check=_equal_to("kind", self.name)),
            "num_params": Entry("int", check=_equal_to("num_params", self.num_params)),
            "population_size": Entry(
                "int", check=_equal_to("population_size", self.population_size)
            ),
            "generation": Entry("int", low=0),
            "center": Entry("array", shape=("n",)),
            "rng": Entry("str", check=self._rng_problem),
            # Its shape depends on has_pending; _pending_problem checks it with the rest.
            "pending": Entry("array", dtype="int64", shape=("k",), check=self._pending_problem),
            "has_pending": Entry("bool"),
            "noise": Entry("str", check=self._noise_problem),
            "options": Entry("str", check=self._options_problem),
            # No best yet: value -inf and generation -1.
            "best.seed": Entry("int"),
            "best.value": Entry("float", finite=False),
            "best.parameters": Entry("array", shape=("n",)),
            "best.generation": Entry("int", low=-1),
            # "q": points waiting to be injected; "i": those of the pending generation.
            "inject_queue": Entry("array", shape=("q", "n")),
            "injected": Entry("array", shape=("i", "n")),
        }
        schema.update(self._stop_history.schema())
        schema.update(self._state_schema())
        return schema

    def _state_schema(self) -> dict[str, Entry]:
        """The rules of what :meth:`_state` adds (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Restore a :meth:`state_dict`; the strategy then continues exactly as the saved one.

        All or nothing: every key is checked against :meth:`state_schema` first (kind,
        dtype, shape, range); a :class:`~asktell.errors.CheckpointError` names each key that
        breaks its rule, the rule and the value, and the strategy is left unchanged.

        The state records the options of the strategy that saved it (``"options"``, JSON):
        one built with other options (``learning_rate``, ``sigma``, bounds, ...) would go on
        along another trajectory, so it is refused naming each difference. ``strict=False``
        loads it anyway, for a deliberate change (fine-tuning with a smaller step); a state
        written before options were recorded loads as it is.
        """
        owner = type(self).__name__
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{owner} state must be a dict; got {type(state).__name__}")
        state = self._with_options(state, strict)
        has_pending = state.get("has_pending")
        asked = isinstance(has_pending, (bool, np.bool_)) and bool(has_pending)
        # "k": the pending seeds are one per candidate while asked, none otherwise.
        sizes = {"n": self.num_params, "p": self.population_size, "k": self.population_size if asked else 0,
                 "q": state_rows(state.get("inject_queue")), "i": state_rows(state.get("injected"))}
        schema = self.state_schema()
        snapshot = self.state_dict()
        # A plugin that adds keys in _state() without declaring them in _state_schema() keeps
        # working: those keys are its own _load_state's to check (the snapshot still undoes
        # a failure there). Every built-in strategy declares all of its keys.
        undeclared = frozenset(snapshot) - frozenset(schema)
        check_state(owner, state, schema, sizes, undeclared=undeclared)
        # Checked: what follows cannot fail on the declared keys. Should it fail anyway (an
        # undeclared key, a bug, memory), the snapshot puts the strategy back as it was.
        try:
            self._assign_state(state)
        except CheckpointError:
            self._assign_state(snapshot)
            raise
        except Exception as exc:
            self._assign_state(snapshot)
            raise CheckpointError(
                f"{owner} state refused, nothing was loaded: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            self._assign_state(snapshot)
            raise

    def _assign_state(self, state: Mapping[str, Any]) -> None:
        self.generation = int(state["generation"])
        self._center = np.array(state["center"], dtype=np.float64)
        self.rng.bit_generator.state = json.loads(state["rng"])
        has_pending = bool(state["has_pending"])
        self._pending = np.array(state["pending"], dtype=np.int64) if has_pending else None
        if int(state["best.generation"]) < 0:
            self.best = None
        else:
            self.best = Best(
                int(state["best.seed"]),
                float(state["best.value"]),
                np.array(state["best.parameters"], dtype=np.float64),
                int(state["best.generation"]),
            )
        self._stop_history.load(state)
        self._inject_queue = np.array(state["inject_queue"], dtype=np.float64)
        injected = np.array(state["injected"], dtype=np.float64)
        self._injected = injected if has_pending and injected.shape[0] else None
        self._load_state(state)
        self._changed()

    # ------------------------------------------------------------------ state rules
    def _rng_problem(self, value: str, sizes: Mapping[str, int]) -> str | None:
        try:
            parsed = json.loads(value)
            probe = type(self.rng.bit_generator)()
            probe.state = parsed  # the generator's own check of its state
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            return f"not a state of this {type(self.rng.bit_generator).__name__} generator ({exc})"
        return None

    def _noise_problem(self, value: str, sizes: Mapping[str, int]) -> str | None:
        try:
            spec = json.loads(value)
        except (ValueError, RecursionError):
            return "not JSON"
        if spec != self.noise.spec():
            return f"saved with noise {spec} but this strategy uses {self.noise.spec()}"
        return None

    def _options_json(self) -> str:
        return json.dumps(self.config.model_dump(mode="json"), sort_keys=True)

    def _with_options(self, state: Mapping[str, Any], strict: bool) -> Mapping[str, Any]:
        """``state`` to check: this strategy's options stand in for the saved ones when
        ``strict`` is off or when the state has none (written before they were kept)."""
        if strict and "options" in state:
            return state
        return {**state, "options": self._options_json()}

    def _options_problem(self, value: str, sizes: Mapping[str, int]) -> str | None:
        """Options that differ between the saved strategy and this one. Only options both
        know are compared: a newer version's new option (or an old one's removed option)
        is not a difference of the run."""
        try:
            saved = json.loads(value)
        except (ValueError, RecursionError):
            return "not JSON"
        if not isinstance(saved, dict):
            return "not a JSON object of options"
        mine = json.loads(self._options_json())
        differ = [
            f"{key} {short_repr(saved[key])} saved, {short_repr(mine[key])} here"
            for key in sorted(set(saved) & set(mine))
            if saved[key] != mine[key]
        ]
        if not differ:
            return None
        return (
            "saved by a strategy with other options, so this one would go on along another "
            "trajectory: " + "; ".join(differ) + " (build it with the saved options, or "
            "pass strict=False to change them on purpose)"
        )

    def _pending_problem(self, value: np.ndarray, sizes: Mapping[str, int]) -> str | None:
        """Pending seeds must name noise rows this strategy's noise source has."""
        # Injected candidates (strategies that take them) name rows of "injected".
        marked = (value >= INJECT_BASE) & ("inject" in self.capabilities)
        if marked.any():
            count = int(sizes.get("i", 0))
            top = int(value[marked].max() - INJECT_BASE)
            if top >= count:
                return (
                    f"seeds outside the noise source: seed {int(value[marked].max())} names "
                    f"injected point {top}, but the "
                    f"state's 'injected' has {count}"
                )
        value = value[~marked]
        if value.size == 0:
            return None
        keys, _ = split_seeds(value)
        for key in (int(keys.min()), int(keys.max())):
            try:
                self.noise.get(key, self.num_params)
            except ConfigError as exc:
                return f"seeds outside the noise source: {exc}"
        return None

    @staticmethod
    def _prefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
        return {f"{prefix}.{k}": v for k, v in state.items()}

    @staticmethod
    def _unprefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
        p = prefix + "."
        return {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}


def _equal_to(name: str, mine: Any) -> Any:
    def check(value: Any, sizes: Mapping[str, int]) -> str | None:
        return None if value == mine else f"this strategy has {name} {mine!r}"

    return check


def state_rows(value: Any) -> int:
    """Rows of a 2-D array in a state (0 for anything else; its rule then names it)."""
    return int(value.shape[0]) if isinstance(value, np.ndarray) and value.ndim == 2 else 0
