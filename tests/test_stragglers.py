"""Straggler-tolerant generations (issue 14): a generation closes on a quorum, the strategy
learns from the told candidates only, and the told subset is recorded so a run resumes exactly.

The Dask clusters here are in-process (``processes=False``: inproc transport, no socket)
and closed by each test. A slow candidate is one whose seed the test names: it sleeps in
small steps until the test releases it (module flag), so no thread outlives its test.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from asktell.checkpoint import load_checkpoint, save_checkpoint
from asktell.errors import ConfigError, ReturnsError
from asktell.noise import NoiseTable
from asktell.protocol import Evaluation, TaskHooks
from asktell.strategies import CMAES, OpenAIES
from asktell.testing.dask_cluster import loopback_cluster

distributed = pytest.importorskip("distributed")

POP = 8
RELEASED = {"now": False}
#: The generation whose chunks ran last: a held candidate is released as soon as a chunk
#: of another generation starts (so stale rollouts never pile up on the workers' threads).
CURRENT = {"token": None}


class SlowSeedsTask(TaskHooks):
    """Sphere (maximised as its negative) whose candidates ``(generation, seed)`` named in
    ``slow`` are held until the next generation starts (or ``hold`` seconds, or the test
    ends): deterministic stragglers."""

    num_params = 3

    def __init__(self, slow: set[tuple[int, int]], hold: float = 20.0):
        self.slow, self.hold = set(slow), hold

    def evaluate(self, params, seeds, distribution):
        token = (distribution.generation, distribution.center.tobytes())
        CURRENT["token"] = token
        for s in np.asarray(seeds).tolist():
            if (distribution.generation, s) in self.slow:
                stop = time.monotonic() + self.hold
                while (
                    time.monotonic() < stop and not RELEASED["now"] and CURRENT["token"] == token
                ):
                    time.sleep(0.01)
        returns = -np.sum(np.asarray(params) ** 2, axis=1)
        return Evaluation(returns, np.ones(len(returns), dtype=np.int64))


@pytest.fixture
def client():
    RELEASED["now"] = False
    with loopback_cluster(4, processes=False) as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        try:
            yield c
        finally:
            RELEASED["now"] = True  # let the held rollouts end before the cluster closes


def _es(seed: int = 1) -> OpenAIES:
    return OpenAIES(3, population_size=POP, sigma=0.5, seed=seed, noise=NoiseTable(0, 4096))


def _planned_seeds(generations: int) -> list[np.ndarray]:
    """The seeds OpenAI-ES asks in each generation (they do not depend on the returns)."""
    es, out = _es(), []
    for _ in range(generations):
        out.append(es.ask())
        es.tell(np.zeros(POP))
    return out


def _step(es, ev, task):
    from asktell.loop import GenerationStep

    return GenerationStep(es, ev, task)


def test_generation_closes_on_min_candidates_and_learns_from_the_told_ones(client):
    from asktell.evaluators import DaskEvaluator

    seeds = _planned_seeds(1)[0]
    slow = int(seeds[3])
    task = SlowSeedsTask({(0, slow)})
    es = _es()
    with DaskEvaluator(task, client=client, stragglers={"min_candidates": POP - 1}) as ev:
        t0 = time.monotonic()
        record = _step(es, ev, task)()
        took = time.monotonic() - t0
    expected = np.zeros(POP, dtype=bool)
    expected[3] = True
    np.testing.assert_array_equal(record.evaluation.dropped, expected)
    assert took < task.hold  # closed without the straggler (a bound, not a speed claim)
    assert record.metrics["told"] == POP - 1
    assert record.steps == POP - 1 and record.episodes == POP - 1  # told ones only
    # The same subset told by hand, through the serial path, gives the same centre, bitwise.
    by_hand = _es()
    asked = by_hand.ask()
    params = by_hand.distribution.decode(asked)
    returns = -np.sum(params**2, axis=1)
    by_hand.tell(np.where(expected, np.nan, returns), dropped=expected)
    assert np.array_equal(by_hand.center, es.center)
    # ... which is not the update of the full population (the drop mattered).
    full = _es()
    full.ask()
    full.tell(returns)
    assert not np.array_equal(full.center, es.center)


def test_partial_tell_is_the_update_on_the_subset_not_a_nan_ranking():
    """The dropped candidates are left out, not ranked worst: the result differs from
    telling NaN for them (which ranks them last), and equals an update whose weights are
    computed on the told returns alone."""
    from asktell.shaping import get_shaping

    es, ranked = _es(), _es()
    seeds = es.ask()
    ranked.ask()
    returns = np.linspace(-1.0, 1.0, POP)
    dropped = np.zeros(POP, dtype=bool)
    dropped[[0, 5]] = True
    metrics = es.tell(np.where(dropped, np.nan, returns), dropped=dropped)
    ranked.tell(np.where(dropped, np.nan, returns))
    assert metrics["told"] == POP - 2 and metrics["num_nonfinite"] == 0
    assert not np.array_equal(es.center, ranked.center)
    # the rule: grad = sum_k w_k eps_k / (n_told sigma), w = centred ranks of the told
    told = ~dropped
    w = get_shaping(es.config.shaping)(returns[told])
    eps = _es().distribution.decode(seeds[told]) / 0.5
    grad = w @ eps / (told.sum() * 0.5)
    reference = _es()
    reference.ask()
    step = reference.optimizer.step(grad)
    np.testing.assert_allclose(es.center, step, rtol=1e-12, atol=1e-15)


def test_a_strategy_without_partial_tell_refuses_dropped_candidates_unchanged():
    es = CMAES(3, population_size=POP, sigma=0.5)
    es.ask()
    before = es.state_dict()
    dropped = np.zeros(POP, dtype=bool)
    dropped[2] = True
    with pytest.raises(ReturnsError, match="CMAES cannot learn from a subset.*partial_tell"):
        es.tell(np.zeros(POP), dropped=dropped)
    assert es.pending
    after = es.state_dict()
    assert all(np.array_equal(np.asarray(before[k]), np.asarray(after[k])) for k in before)
    # nothing dropped is accepted by every strategy (a generation that closed complete)
    es.tell(np.zeros(POP), dropped=np.zeros(POP, dtype=bool))


def test_resumed_run_continues_bitwise_given_the_same_told_subsets(client, tmp_path):
    """One seed per generation always sleeps past the close, so the told subsets are
    deterministic; a run checkpointed after generation 2 and resumed from the checkpoint
    files matches the uninterrupted run bitwise, dropped candidates included."""
    from asktell.evaluators import DaskEvaluator

    planned = _planned_seeds(4)
    slow = {(g, int(s[(2 * g + 1) % POP])) for g, s in enumerate(planned)}
    task = SlowSeedsTask(slow)
    opts = {"client": client, "stragglers": {"min_candidates": POP - 1}}

    with DaskEvaluator(task, **opts) as ev:
        es = _es()
        step = _step(es, ev, task)
        whole = [step() for _ in range(4)]
        es_resumed = _es()
        step = _step(es_resumed, ev, task)
        first = [step() for _ in range(2)]
        save_checkpoint(tmp_path, "gen-000002", {"strategy": es_resumed.state_dict()},
                        {"generation": 2, "config": {}})
        fresh = _es(seed=99)  # another seed: everything must come from the checkpoint
        fresh.load_state_dict(load_checkpoint(tmp_path).state["strategy"])
        step = _step(fresh, ev, task)
        rest = [step() for _ in range(2)]
    for g, (a, b) in enumerate(zip(whole, first + rest)):
        dropped = np.zeros(POP, dtype=bool)
        dropped[(2 * g + 1) % POP] = True
        np.testing.assert_array_equal(a.evaluation.dropped, dropped)
        np.testing.assert_array_equal(b.evaluation.dropped, dropped)
        assert np.array_equal(a.seeds, b.seeds)
        assert a.metrics == b.metrics
    assert np.array_equal(es.center, fresh.center)


def test_run_log_and_checkpoint_record_the_dropped_candidates(client, tmp_path):
    """Every row of a straggler-tolerant run says which candidates were dropped, as index
    ranges, consistent with its told count; the checkpoint holds the last one."""
    from asktell import runner
    from asktell.runlog import mask_of_ranges, read_log

    module = tmp_path / "slowfn.py"
    module.write_text(
        "import time\nimport numpy as np\n"
        "def f(x):\n"
        "    if x[0] > 0.6:\n"
        "        time.sleep(0.5)\n"
        "    return float(np.sum(x ** 2))\n"
    )
    config = {
        "strategy": {"kind": "openai_es", "population_size": 16, "sigma": 0.5},
        "evaluator": {"kind": "dask", "client": client, "stragglers": {"min_candidates": 12}},
        "task": {"kind": "function", "function": "slowfn:f", "function_dir": str(tmp_path),
                 "num_params": 3},
        "budget": {"generations": 3},
        "output": {"log_format": "none"},
        "seed": 3,
    }
    result = runner.run(config, out=tmp_path / "run")
    rows = read_log(result.run_dir)
    assert len(rows) == 3
    for row in rows:
        dropped = mask_of_ranges(row["dropped"], 16)
        assert row["told"] == 16 - dropped.sum() >= 12
        assert row["generation_episodes"] == row["told"]
    assert any(row["dropped"] for row in rows)  # 12 of 16 back closes: the rest are dropped
    state = load_checkpoint(result.run_dir).state["runner"]
    assert state["last_dropped"] == {"generation": 3, "ranges": rows[-1]["dropped"]}
    RELEASED["now"] = True


def test_log_rows_of_plain_runs_have_no_straggler_fields(tmp_path):
    from asktell import runner
    from asktell.runlog import read_log

    config = {
        "strategy": {"kind": "openai_es", "population_size": 8},
        "evaluator": {"kind": "serial"},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
        "budget": {"generations": 1},
        "output": {"log_format": "none"},
    }
    row = read_log(runner.run(config, out=tmp_path / "run").run_dir)[0]
    assert "dropped" not in row and "told" not in row


def test_stragglers_with_a_strategy_lacking_partial_tell_is_refused_naming_both():
    from asktell.config import config_from_dict

    base = {
        "budget": {"generations": 1},
        "evaluator": {"kind": "dask", "stragglers": {"min_candidates": 6}},
        "task": {"kind": "function", "name": "sphere", "num_params": 3},
    }
    with pytest.raises(ConfigError, match=r"(?s)stragglers.*'cma_es'.*partial_tell.*'openai_es'"):
        config_from_dict({**base, "strategy": {"kind": "cma_es", "population_size": 8}})
    config_from_dict({**base, "strategy": {"kind": "openai_es", "population_size": 8}})


def test_stragglers_options_are_validated():
    from asktell.config import config_from_dict
    from asktell.evaluators import DaskEvaluator, DaskEvaluatorConfig

    task = {"kind": "function", "name": "sphere", "num_params": 3}
    message = "min_candidates=12 exceeds the population_size=8 of strategy 'openai_es'.*at most 8"
    with pytest.raises(ConfigError, match=message):
        config_from_dict({
            "budget": {"generations": 1},
            "strategy": {"kind": "openai_es", "population_size": 8},
            "evaluator": {"kind": "dask", "stragglers": {"min_candidates": 12}},
            "task": task,
        })
    # a default population (snes in 3-D: 7) is checked once the strategy is built, before
    # the cluster starts (asktell check included)
    defaulted = config_from_dict({
        "budget": {"generations": 1}, "strategy": {"kind": "snes"},
        "evaluator": {"kind": "dask", "stragglers": {"min_candidates": 1000}}, "task": task,
    })
    with pytest.raises(ConfigError, match="min_candidates=1000 exceeds the 7 candidates .* SNES"):
        defaulted.check()
    with pytest.raises(ConfigError, match="min_candidates=1000 exceeds the 7 candidates"):
        defaulted.build()
    with pytest.raises(Exception, match="at least one of min_candidates"):
        DaskEvaluatorConfig.model_validate({"stragglers": {}})
    with pytest.raises(Exception, match="'stragglers' cannot be combined with 'deadline_seconds'"):
        DaskEvaluatorConfig.model_validate(
            {"stragglers": {"min_episodes": 4}, "deadline_seconds": 5.0}
        )
    with pytest.raises(ConfigError, match="stragglers.min_candidates"):
        DaskEvaluator(None, stragglers={"min_candidates": 0})


def test_min_candidates_above_the_batch_is_refused_at_evaluate(client):
    from asktell.evaluators import DaskEvaluator

    es = _es()
    with DaskEvaluator(SlowSeedsTask(set()), client=client,
                       stragglers={"min_candidates": POP + 1}) as ev:
        with pytest.raises(ConfigError, match=f"min_candidates={POP + 1} exceeds the {POP}"):
            ev.evaluate(es.distribution, es.ask(), partial=True)
        # a centre evaluation (not partial) is always whole and never refused
        out = ev.evaluate(es.distribution, es.ask())
        assert out.dropped is None and np.isfinite(out.returns).all()


def test_min_timesteps_and_episodes_close_on_the_told_sums(client):
    from asktell.evaluators import DaskEvaluator

    seeds = _planned_seeds(1)[0]
    task = SlowSeedsTask({(0, int(seeds[0])), (0, int(seeds[6]))})
    es = _es()
    rule = {"min_timesteps": POP - 2, "min_episodes": POP - 2}
    with DaskEvaluator(task, client=client, stragglers=rule) as ev:
        out = ev.evaluate(es.distribution, es.ask(), partial=True)
    assert out.dropped.tolist() == [True] + [False] * 5 + [True, False]
    assert int(out.steps.sum()) == POP - 2


def test_dropped_merges_through_place():
    whole = Evaluation.empty(6)
    mask = np.array([False, True, False])
    part = Evaluation(np.ones(3), np.ones(3, dtype=np.int64), dropped=mask)
    whole.place(slice(2, 5), part)
    assert whole.dropped.tolist() == [False, False, False, True, False, False]
    assert whole.told_mask.sum() == 5
    assert json.loads(json.dumps(whole.told_mask.tolist()))  # plain bools


def _partial_strategies():
    from asktell.registry import STRATEGIES

    return sorted(n for n in STRATEGIES.names()
                  if "partial_tell" in getattr(STRATEGIES.get(n), "capabilities", ()))


def test_the_strategies_that_declare_partial_tell():
    assert {"openai_es", "snes", "xnes"} <= set(_partial_strategies())


@pytest.mark.parametrize("name", _partial_strategies())
def test_dropped_candidates_do_not_reach_the_update(name):
    """Whatever value a dropped candidate carries (NaN, a huge return, a tiny one), the
    strategy's state after tell is the same: it learns from the told ones only. A strategy
    that ranked dropped candidates (as NaN-worst, say) would fail this."""
    from asktell.registry import STRATEGIES

    cls = STRATEGIES.get(name)
    states = []
    dropped = np.zeros(10, dtype=bool)
    dropped[[1, 4, 9]] = True
    for filler in (np.nan, 1e9, -1e9):
        es = cls(4, population_size=10, seed=5, noise=NoiseTable(0, 4096))
        seeds = es.ask()
        returns = -np.sum(es.distribution.decode(seeds) ** 2, axis=1)
        metrics = es.tell(np.where(dropped, filler, returns), dropped=dropped)
        assert metrics["told"] == 7 and metrics["num_nonfinite"] == 0
        states.append(es.state_dict())
    for other in states[1:]:
        for key, value in states[0].items():
            assert np.array_equal(np.asarray(value), np.asarray(other[key])), key


def test_resuming_mid_generation_says_the_told_subset_is_decided_again(tmp_path, capsys):
    """A checkpoint taken after ask (``gen-N-asked``) holds the asked seeds but no results:
    the resumed run evaluates the same seeds, closes on a new quorum, says so, and logs
    the subset it told."""
    from asktell import runner
    from asktell.checkpoint import load_checkpoint
    from asktell.config import config_from_dict
    from asktell.run_loop import Runner
    from asktell.runlog import read_log

    with loopback_cluster(2, processes=False) as cluster:
        config = {
            "strategy": {"kind": "openai_es", "population_size": 8},
            "evaluator": {"kind": "dask", "address": cluster.scheduler_address,
                          "stragglers": {"min_candidates": 6}},
            "task": {"kind": "function", "name": "sphere", "num_params": 3},
            "budget": {"generations": 2},
            "output": {"log_format": "plain"},
        }
        run_dir = runner.run(config, out=tmp_path / "run").run_dir
        # Interrupted after the next generation's ask: the checkpoint Ctrl-C would write.
        cfg = config_from_dict({**config, "budget": {"generations": 3},
                                "output": {"log_format": "none", "dir": str(run_dir)}})
        with cfg.build() as built:
            interrupted = Runner(cfg, run_dir, built)
            interrupted.load_state(load_checkpoint(run_dir).state)
            asked = built.strategy.ask()
            saved = interrupted.checkpoint(asked=True)
        assert np.array_equal(load_checkpoint(saved).state["strategy"]["pending"], asked)
        capsys.readouterr()
        runner.resume(run_dir, overrides=["budget.generations=3"])
    said = capsys.readouterr().out
    assert "resumed in the middle of generation 2" in said
    assert "told subset may differ" in said
    rows = read_log(run_dir)
    assert [r["generation"] for r in rows] == [1, 2, 3]
    assert rows[-1]["told"] >= 6 and "dropped" in rows[-1]
    final = load_checkpoint(run_dir)
    assert final.generation == 3 and final.state["runner"]["last_dropped"]["generation"] == 3


def test_straggler_chunks_cap_their_scheduler_time_at_scale_and_keep_eight_when_small():
    from asktell.evaluators.dask import STRAGGLER_CHUNKS, straggler_chunks

    assert STRAGGLER_CHUNKS == 8
    # A small cluster keeps 8 chunks per thread, measured or not (16 tasks: ~6 ms).
    assert straggler_chunks(None, 2) == 8
    assert straggler_chunks(0.001, 2) == 8
    # 1,440 threads with 6 s of work each: 8 chunks would be 11,520 tasks (~4.6 s of
    # scheduler time); the cap leaves one chunk per thread, also before anything is measured.
    assert straggler_chunks(6.0 * 1440, 1440) == 1
    assert straggler_chunks(None, 1440) == 1
    # 64 threads with 1 s each: 5% of 1 s is 125 tasks, the 0.1 s floor 250: 3 per thread.
    assert straggler_chunks(64.0, 64) == 3
    # Much work per thread lifts the cap back to 8.
    assert straggler_chunks(1000.0 * 64, 64) == 8


def test_a_straggler_generation_sizes_its_chunks_from_the_previous_ones_work(client, monkeypatch):
    import asktell.evaluators.dask as dask_module
    from asktell.evaluators import DaskEvaluator

    calls = []

    def spy(compute_seconds, threads):
        calls.append((compute_seconds, threads))
        return 2

    monkeypatch.setattr(dask_module, "straggler_chunks", spy)
    task = SlowSeedsTask(set())
    es = _es()
    with DaskEvaluator(task, client=client, stragglers={"min_candidates": POP - 2}) as ev:
        for _ in range(2):
            _step(es, ev, task)()
    assert calls[0] == (None, 4)  # nothing measured before the first generation
    assert calls[1][1] == 4 and calls[1][0] is not None and calls[1][0] > 0
