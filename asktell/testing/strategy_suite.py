"""The strategy conformance suite: checks every registered strategy must pass.

Each check takes the strategy class. Strategies are built with
``cls(num_params=..., population_size=..., seed=..., x0=..., **cls.suite_options)``, where
``suite_options`` (a class attribute, default empty) holds settings that make the short
learning check meaningful (a step size, say). Differences between strategies are read from
the built strategy's ``capabilities`` (``antithetic``: seeds come in mirrored pairs) and the
class's ``min_population_size`` (needed before one is built), never from names.

Expected values come from the rule, never from the implementation under test: the
non-finite check, for one, compares the strategy with itself told values the suite puts
below and above every finite return (see :func:`check_nonfinite_returns`).

Use from pytest::

    @pytest.mark.parametrize("check", STRATEGY_CHECKS)
    @pytest.mark.parametrize("cls", [MyStrategy])
    def test_conformance(cls, check):
        check(cls)
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

import numpy as np

from asktell.errors import AskTellOrderError, ConfigError, ReturnsError
from asktell.noise import NoiseTable

__all__ = ["STRATEGY_CHECKS", "make", "roundtrip_state"]

#: A small table keeps the suite fast; every check shares it (built once per process).
SUITE_NOISE = NoiseTable(seed=0, size=1 << 20)


def _pop(cls: type, wanted: int = 8) -> int:
    n = max(wanted, cls.min_population_size)
    return n + (n % 2)


def make(cls: type, num_params: int = 5, population_size: int | None = None, **kw: Any):
    options = dict(getattr(cls, "suite_options", {}))
    options.update(kw)
    options.setdefault("noise", SUITE_NOISE)
    options.setdefault("seed", 0)
    return cls(
        num_params=num_params,
        population_size=_pop(cls) if population_size is None else population_size,
        **options,
    )


def roundtrip_state(state: dict[str, Any]) -> dict[str, Any]:
    """Send a state_dict through the checkpoint formats (npz for arrays, JSON for the rest)."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    for key, value in scalars.items():
        if isinstance(value, np.generic):
            scalars[key] = value.item()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as data:
        loaded = {k: data[k] for k in data.files}
    loaded.update(json.loads(json.dumps(scalars)))
    return loaded


def _sphere_returns(X: np.ndarray, shift: float = 1.0) -> np.ndarray:
    return -np.sum((X - shift) ** 2, axis=1)


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x != y:
            return False
    return True


def check_ask_shapes(cls: type) -> None:
    es = make(cls)
    seeds = es.ask()
    assert seeds.dtype == np.int64 and seeds.shape == (es.population_size,)
    X = es.distribution.decode(seeds)
    assert X.shape == (es.population_size, es.num_params) and X.dtype == np.float64
    assert np.all(np.isfinite(X))
    assert es.center.shape == (es.num_params,)


def check_ask_is_repeatable_before_tell(cls: type) -> None:
    es = make(cls)
    assert np.array_equal(es.ask(), es.ask())


def check_deterministic_from_seed(cls: type) -> None:
    runs = []
    for _ in range(2):
        es = make(cls, seed=3)
        seen = []
        for _ in range(4):
            s = es.ask()
            seen.append(s)
            es.tell(_sphere_returns(es.distribution.decode(s)))
        runs.append((np.concatenate(seen), es.center))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])
    other = make(cls, seed=4)
    assert not np.array_equal(other.ask(), make(cls, seed=3).ask())


def check_decode_is_chunk_invariant(cls: type) -> None:
    es = make(cls)
    es.tell(_sphere_returns(es.distribution.decode(es.ask())))  # move off the start
    seeds = es.ask()
    dist = pickle.loads(pickle.dumps(es.distribution))
    whole = dist.decode(seeds)
    for i, s in enumerate(seeds):
        assert np.array_equal(dist.decode_one(s), whole[i]), "decode differs alone vs batched"
    for cut in range(1, seeds.size):
        parts = np.concatenate([dist.decode(seeds[:cut]), dist.decode(seeds[cut:])])
        assert np.array_equal(parts, whole)
    mirror = dist.decode(~seeds)
    assert np.allclose(whole + mirror, 2 * dist.center, atol=1e-9)


def check_misuse_changes_nothing(cls: type) -> None:
    es = make(cls)
    before = es.state_dict()
    try:
        es.tell(np.zeros(es.population_size))
    except AskTellOrderError as exc:
        assert "before ask" in str(exc)
    else:
        raise AssertionError("tell() before ask() must raise AskTellOrderError")
    assert _same_state(before, es.state_dict())

    seeds = es.ask()
    before = es.state_dict()
    bad_inputs = [
        np.zeros(seeds.size - 1),
        np.zeros((seeds.size, 1)),
        np.zeros((2, seeds.size)),
        ["a"] * seeds.size,
        [None] * seeds.size,
        np.zeros(seeds.size + 1),
    ]
    for bad in bad_inputs:
        try:
            es.tell(bad)
        except ReturnsError:
            pass
        else:
            raise AssertionError(f"tell({bad!r}) must raise ReturnsError")
        assert _same_state(before, es.state_dict()), "a rejected tell() changed the state"
    try:
        es.tell(np.zeros(seeds.size - 1))
    except ReturnsError as exc:
        assert f"{seeds.size - 1} returns for {seeds.size} asked seeds" in str(exc)

    es.tell(_sphere_returns(es.distribution.decode(seeds)))
    after = es.state_dict()
    try:
        es.tell(np.zeros(seeds.size))
    except AskTellOrderError as exc:
        assert "twice" in str(exc)
    else:
        raise AssertionError("a second tell() for one ask() must raise AskTellOrderError")
    assert _same_state(after, es.state_dict())


def check_rejects_bad_constructor_values(cls: type) -> None:
    for kwargs, field in (
        ({"population_size": cls.min_population_size - 1}, "population_size"),
        ({"num_params": 0}, "num_params"),
    ):
        try:
            make(cls, **kwargs)
        except ConfigError as exc:
            assert field in str(exc), f"error should name {field!r}: {exc}"
        else:
            raise AssertionError(f"{cls.__name__}({kwargs}) must raise ConfigError")
    if "antithetic" in make(cls).capabilities:
        try:
            make(cls, population_size=_pop(cls) + 1)
        except ConfigError as exc:
            assert "population_size" in str(exc) and "even" in str(exc)
        else:
            raise AssertionError("an odd population with antithetic sampling must be rejected")
    try:
        make(cls, num_params=2000, noise=NoiseTable(seed=0, size=1000))
    except ConfigError as exc:
        assert "noise" in str(exc) and "num_params" in str(exc)
    else:
        raise AssertionError("a noise table smaller than num_params must be rejected")


def _twins(cls: type, count: int) -> list[Any]:
    """``count`` strategies built alike, each with the same generation asked."""
    twins = [make(cls) for _ in range(count)]
    seeds = [es.ask() for es in twins]
    assert all(np.array_equal(seeds[0], s) for s in seeds), "twins asked different seeds"
    return twins


def _after(es: Any, probe: np.ndarray) -> np.ndarray:
    """Where the strategy now puts the probe seeds: centre, step sizes and shape at once."""
    return es.distribution.decode(probe)


def check_nonfinite_returns(cls: type) -> None:
    """The rule: a failed candidate (NaN/inf return) ranks below every finite return, so it
    is never ranked best. Expected values come from the rule, computed here: the same
    generation is told three times, with the failed candidates as NaN/inf, as a value the
    suite puts below every finite return, and as one above every finite return. The
    strategy must end nearer to "below" than to "above" (exactly on it for strategies that
    use ranks only; the distance covers those that use the values, such as ARS)."""
    es_nan, es_low, es_high = _twins(cls, 3)
    seeds = es_nan.ask()
    r = _sphere_returns(es_nan.distribution.decode(seeds))
    failed = np.zeros(seeds.size, dtype=bool)
    failed[[0, 3]] = True
    finite = r[~failed]
    spread = float(finite.max() - finite.min()) + 1.0
    r_nan, r_low, r_high = r.copy(), r.copy(), r.copy()
    r_nan[[0, 3]] = [np.nan, np.inf]  # +inf would be best if it were ranked as a number
    r_low[failed] = finite.min() - spread
    r_high[failed] = finite.max() + spread
    es_nan.tell(r_nan)
    es_low.tell(r_low)
    es_high.tell(r_high)
    assert np.all(np.isfinite(es_nan.center)), "non-finite returns made the centre non-finite"
    x_nan, x_low, x_high = (_after(es, seeds) for es in (es_nan, es_low, es_high))
    assert np.all(np.isfinite(x_nan)), "non-finite returns made the distribution non-finite"
    to_low = float(np.max(np.abs(x_nan - x_low)))
    to_high = float(np.max(np.abs(x_nan - x_high)))
    assert to_low < to_high, (
        f"{cls.__name__} treated failed candidates (NaN/inf) as better than every finite "
        f"return: after the update it is {to_high:.3g} from the 'failed = best' update and "
        f"{to_low:.3g} from the 'failed = worst' one"
    )

    all_nan = make(cls)
    all_nan.ask()
    all_nan.tell(np.full(all_nan.population_size, np.nan))
    assert np.all(np.isfinite(all_nan.center)), "a generation of failures made the centre non-finite"

    strict = make(cls, nonfinite="raise")
    seeds = strict.ask()
    before = strict.state_dict()
    r_nan = np.zeros(seeds.size)
    r_nan[1] = np.nan
    try:
        strict.tell(r_nan)
    except ReturnsError as exc:
        assert "#1" in str(exc) and str(int(seeds[1])) in str(exc)
    else:
        raise AssertionError("nonfinite='raise' must raise ReturnsError naming the candidate")
    assert _same_state(before, strict.state_dict())


def check_state_dict_resumes_identically(cls: type) -> None:
    straight = make(cls, seed=7)
    for _ in range(6):
        s = straight.ask()
        straight.tell(_sphere_returns(straight.distribution.decode(s)))
    first = make(cls, seed=7)
    for _ in range(3):
        s = first.ask()
        first.tell(_sphere_returns(first.distribution.decode(s)))
    first.ask()  # a checkpoint may be taken with an ask outstanding
    state = roundtrip_state(first.state_dict())
    resumed = make(cls, seed=99)  # a different seed: everything must come from the state
    resumed.load_state_dict(state)
    for _ in range(3):
        s = resumed.ask()
        resumed.tell(_sphere_returns(resumed.distribution.decode(s)))
    assert resumed.generation == straight.generation
    assert np.array_equal(resumed.center, straight.center), "resume diverged"
    assert np.array_equal(resumed.ask(), straight.ask())


def check_improves_on_sphere(cls: type) -> None:
    es = make(cls, num_params=5, population_size=_pop(cls, 16), seed=1)
    start = float(np.sum((es.center - 1.0) ** 2))
    for _ in range(150):
        s = es.ask()
        es.tell(_sphere_returns(es.distribution.decode(s)))
    end = float(np.sum((es.center - 1.0) ** 2))
    assert end < 0.1 * start, f"{cls.__name__} did not improve the sphere: {start} -> {end}"


STRATEGY_CHECKS = [
    check_ask_shapes,
    check_ask_is_repeatable_before_tell,
    check_deterministic_from_seed,
    check_decode_is_chunk_invariant,
    check_misuse_changes_nothing,
    check_rejects_bad_constructor_values,
    check_nonfinite_returns,
    check_state_dict_resumes_identically,
    check_improves_on_sphere,
]
