"""tell's metrics are computed when first read (strategies/_metrics.py): every way a caller
reads a dict sees the values, the values are the eager computation's bits however late
they are read, and the seeds and sums tell trusts are recognised only when they are the
strategy's own."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

import asktell.strategies._base as base_module
import asktell.strategies.openai_es as openai_module
from asktell.errors import ConfigError
from asktell.noise import NoiseTable, mirrored
from asktell.optim import Adam
from asktell.strategies import OpenAIES
from asktell.strategies._metrics import Metrics

NOISE = NoiseTable(seed=0, size=1 << 16)


class _Counted:
    """A deferred computation that counts its calls."""

    def __init__(self, values):
        self.values, self.calls = values, 0

    def __call__(self):
        self.calls += 1
        return self.values


def _metrics():
    """{"a": 1.5, "b": <deferred 2.5>, "c": <deferred 3.5>, "d": 4}, in that order."""
    m = Metrics(a=1.5)
    compute = _Counted((2.5, 3.5))
    m.defer(("b", "c"), compute)
    dict.__setitem__(m, "d", 4)
    return m, compute


WANT = {"a": 1.5, "b": 2.5, "c": 3.5, "d": 4}

READS = {
    "getitem": lambda m: {k: m[k] for k in ("a", "b", "c", "d")},
    "get": lambda m: {k: m.get(k) for k in ("a", "b", "c", "d")},
    "dict()": dict,
    "{**m}": lambda m: {**m},
    "f(**m)": lambda m: (lambda **kw: kw)(**m),
    "items": lambda m: dict(list(m.items())),
    "values": lambda m: dict(zip(["a", "b", "c", "d"], m.values())),
    "iter": lambda m: {k: dict.__getitem__(m, k) for k in m},
    "keys": lambda m: {k: dict.__getitem__(m, k) for k in m.keys()},
    "json": lambda m: json.loads(json.dumps(m)),
    "json indent": lambda m: json.loads(json.dumps(m, indent=1)),
    "json sort_keys": lambda m: json.loads(json.dumps(m, sort_keys=True)),
    "copy": lambda m: dict.copy(m.copy()),
    "copy.copy": lambda m: dict.copy(copy.copy(m)),
    "deepcopy": lambda m: dict.copy(copy.deepcopy(m)),
    "pickle": lambda m: dict.copy(pickle.loads(pickle.dumps(m))),
    "m | {}": lambda m: dict.copy(m | {}),
    "{} | m": lambda m: dict.copy({} | m),
    "repr": lambda m: eval(repr(m)),
    "str": lambda m: eval(str(m)),
    "f-string": lambda m: eval(f"{m}"),
    "popitem": lambda m: dict([m.popitem()] + list(dict.items(m))),
}


@pytest.mark.parametrize("read", list(READS))
def test_every_way_of_reading_metrics_sees_the_values_computed_once(read):
    m, compute = _metrics()
    assert len(m) == 4 and "b" in m  # the keys are there before any value
    assert compute.calls == 0 and dict.__getitem__(m, "b") is None  # a placeholder
    assert READS[read](m) == WANT and compute.calls == 1
    m.get("a"), dict(m)
    assert compute.calls == 1  # computed once


def test_metrics_compare_and_key_order_like_a_dict():
    m, _ = _metrics()
    assert m == WANT and WANT == m and not (m != WANT)
    assert list(m) == ["a", "b", "c", "d"]
    other, _ = _metrics()
    assert m == other and isinstance(m, dict)
    assert Metrics(a=1) != {"a": 2}


@pytest.mark.parametrize(
    "write",
    [
        lambda m: m.__setitem__("b", -1.0),
        lambda m: m.update(b=-1.0),
        lambda m: m.update({"b": -1.0}),
        lambda m: m.setdefault("b", 9.0) and m.__setitem__("b", -1.0),
        lambda m: m.__ior__({"b": -1.0}),
    ],
)
def test_a_written_value_is_never_overwritten_by_the_deferred_one(write):
    m, compute = _metrics()
    write(m)
    assert m["b"] == -1.0 and m["c"] == 3.5 and compute.calls == 1


def test_pop_and_delete_settle_first_and_a_failing_computation_is_retried():
    m, _ = _metrics()
    assert m.pop("b") == 2.5 and list(m) == ["a", "c", "d"]
    m, _ = _metrics()
    del m["a"]
    assert dict(m) == {"b": 2.5, "c": 3.5, "d": 4}
    broken = Metrics()
    calls = []

    def fails_once():
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError("overflow")
        return (1.0,)

    broken.defer(("x",), fails_once)
    with pytest.raises(FloatingPointError):
        broken["x"]
    assert broken["x"] == 1.0  # not a placeholder left behind


def _pair(**kw):
    """Two identical strategies; in the second every metric is computed eagerly."""
    def make():
        return OpenAIES(num_params=9, population_size=12, sigma=0.1, learning_rate=0.05,
                        noise=NOISE, seed=5, **kw)
    return make(), make()


def _bits(metrics):
    return {k: np.float64(v).tobytes() for k, v in dict(metrics).items()}


def test_deferred_metrics_are_the_eager_bits_even_when_read_generations_later(monkeypatch):
    for kw in ({}, {"weight_decay": 0.01}, {"optimizer": "sgd"}, {"optimizer": "clipup"}):
        lazy, eager = _pair(**kw)
        rng = np.random.default_rng(8)
        kept, eager_rows = [], []
        for g in range(8):
            lazy.ask(), eager.ask()
            r = rng.standard_normal(12) if g % 3 else np.round(rng.standard_normal(12))
            if g == 5:
                r[2] = np.nan  # a non-finite return: the masked path
            kept.append(lazy.tell(r))
            with monkeypatch.context() as patch:
                patch.setattr(openai_module, "_DEFER_NORMS", 0)
                patch.setattr(base_module, "_DEFER_RETURNS", 0)
                m = eager.tell(r.copy())
            assert type(m) is Metrics and m._later is None  # nothing deferred
            eager_rows.append(m)
            assert kept[-1]._later is not None  # nobody read it yet
        # Read only now, after the arrays the first generations used were replaced.
        for m, want in zip(kept, eager_rows):
            assert list(m) == list(want)
            assert _bits(m) == _bits(want)
        assert lazy.center.tobytes() == eager.center.tobytes()


def test_norms_are_computed_in_tell_when_the_optimiser_may_keep_its_update():
    class KeepsUpdate(Adam):
        """A user optimiser that returns its own buffer and rewrites it every step."""

        def step(self, gradient):
            update = super().step(gradient)
            self.buffer = getattr(self, "buffer", np.zeros_like(update))
            self.buffer[:] = update
            return self.buffer

    rng = np.random.default_rng(9)
    es = OpenAIES(num_params=9, population_size=12, sigma=0.1, learning_rate=0.05,
                  noise=NOISE, seed=5, optimizer=KeepsUpdate(9, 0.05))
    kept = []
    for _ in range(4):
        es.ask()
        before = es.center
        m = es.tell(rng.standard_normal(12))
        assert dict.__getitem__(m, "update_norm") is not None  # computed in tell
        kept.append((m, float(np.linalg.norm(es.center - before))))
    for m, want in kept:  # read later: the buffer has been rewritten since
        assert m["update_norm"] == pytest.approx(want, rel=1e-9)


def test_run_log_rows_and_restarts_carry_every_metric(tmp_path):
    from asktell.runner import run
    from asktell.strategies import Restarts

    cfg = {
        "seed": 0,
        "strategy": {"kind": "openai_es", "population_size": 8, "sigma": 0.1},
        "task": {"kind": "function", "name": "sphere", "num_params": 5},
        "noise": {"size": 1 << 16},
        "budget": {"generations": 3},
        "output": {"eval_every": 0},
    }
    rows = []
    run(cfg, out=tmp_path / "run", callback=rows.append)
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    logged = [row for row in map(json.loads, lines) if "event" not in row]
    assert len(rows) == len(logged) == 3
    for row in rows + logged:
        for key in ("grad_norm", "update_norm", "center_norm", "return_mean", "return_std"):
            assert isinstance(row[key], float), (key, row)
    es = Restarts(num_params=5, strategy={"kind": "openai_es", "population_size": 8}, noise=NOISE)
    es.ask()
    m = es.tell(np.arange(8.0))
    assert all(v is not None for v in m.values()) and "grad_norm" in m


def test_decode_recognises_only_the_seeds_the_table_issued():
    es = OpenAIES(num_params=8, population_size=6, sigma=0.1, learning_rate=0.05,
                  noise=NOISE, seed=1)
    seeds = es.ask()
    dist = es.distribution
    assert NOISE.issued_pairs(seeds, 8) and not NOISE.issued_pairs(seeds, 9)
    rows = dist.decode(seeds)
    one_by_one = np.stack([dist.decode(seeds[i : i + 1])[0] for i in range(6)])
    assert np.array_equal(rows, one_by_one)
    # The caller's copy edited: no longer recognised, checked the long way.
    broken = seeds.copy()
    broken[1] = broken[3]  # the first pair is no longer (k, ~k)
    assert not NOISE.issued_pairs(broken, 8)
    rows = dist.decode(broken)
    assert np.array_equal(rows, np.stack([dist.decode(broken[i : i + 1])[0] for i in range(6)]))
    out_of_range = seeds.copy()
    out_of_range[4], out_of_range[5] = NOISE.size - 7, ~(NOISE.size - 7)
    with pytest.raises(ConfigError, match="noise keys must lie in"):
        dist.decode(out_of_range)
    with pytest.raises(ConfigError, match="noise keys must lie in"):
        dist.decode(out_of_range, dtype=np.float32, out=np.empty((6, 8), np.float32))
    # Another table of the same size and seed did not issue them.
    other = NoiseTable(seed=0, size=1 << 16)
    assert not other.issued_pairs(seeds, 8)
    assert pickle.loads(pickle.dumps(NOISE))._issued is None  # never shipped


def test_best_so_far_is_the_first_maximum_of_the_best_generation():
    es = OpenAIES(num_params=5, population_size=8, sigma=0.1, learning_rate=0.05,
                  noise=NOISE, seed=2)
    rng = np.random.default_rng(10)
    best = (-np.inf, None, None)
    for g in range(30):
        seeds = es.ask()
        dist = es.distribution
        r = np.round(rng.standard_normal(8) + g / 10, 1)  # ties within and across generations
        i = int(np.argmax(r))
        if r[i] > best[0]:
            best = (r[i], int(seeds[i]), dist.decode(seeds[i : i + 1])[0], g)
        es.tell(r)
        assert (es.best.value, es.best.seed, es.best.generation) == (best[0], best[1], best[3])
        assert np.array_equal(es.best.parameters, best[2])


def test_mirrored_sampling_is_the_same_draws_through_the_table():
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    got = NOISE.sample_mirrored(a, 5, 30)
    assert np.array_equal(got, mirrored(NOISE.sample_keys(b, 5, 30)))
    assert NOISE.issued_pairs(got, 30)
