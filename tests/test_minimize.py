import re
import numpy as np
import pytest

import asktell
from asktell import ConfigError
from asktell.functions import rosenbrock


def test_minimize_finds_the_minimum_and_respects_the_budget():
    res = asktell.minimize(lambda x: float(np.sum((x - 1) ** 2)), np.zeros(5), budget=4000,
                           sigma=0.1, learning_rate=0.05, seed=0, strategy="openai_es")
    assert res.fun < 1e-2 and res.nfev <= 4000
    assert res.x.shape == (5,) and np.allclose(res.x, 1.0, atol=0.1)
    assert len(res.history) == res.generations
    assert [h["best_fun"] for h in res.history] == sorted((h["best_fun"] for h in res.history), reverse=True)


def test_minimize_is_reproducible_and_vectorized_agrees():
    kw = dict(budget=2000, sigma=0.05, learning_rate=0.02, seed=3, population_size=20,
              strategy="openai_es")
    a = asktell.minimize(lambda x: float(rosenbrock(x)), np.zeros(4), **kw)
    b = asktell.minimize(rosenbrock, np.zeros(4), vectorized=True, **kw)
    assert a.fun == b.fun and np.array_equal(a.center, b.center)


def test_minimize_stops_at_target():
    """pycma's ftarget: the first generation whose best evaluated loss (a candidate or the
    centre) meets the target ends the search (it waited for the centre's loss)."""
    res = asktell.minimize(lambda x: float(np.sum(x**2)), np.ones(3), budget=50_000,
                           sigma=0.1, learning_rate=0.05, target=1e-2, strategy="openai_es")
    assert res.fun <= 1e-2 and res.message.startswith("target 0.01 reached")
    assert [row["best_fun"] <= 1e-2 for row in res.history].index(True) == len(res.history) - 1
    # an x0 that meets it is not searched from
    met = asktell.minimize(lambda x: float(np.sum(x**2)), np.zeros(3), target=1e-3)
    assert met.nfev == 1 and met.generations == 0 and met.message.startswith("target")


def test_a_callback_returning_numpy_true_stops_and_a_2d_x0_is_refused():
    res = asktell.minimize(lambda x: float(np.sum(x**2)), np.ones(3), budget=2000,
                           callback=lambda row: np.bool_(row["generation"] >= 2))
    assert res.generations == 2 and res.message == "stopped by callback"
    with pytest.raises(ConfigError, match=r"'x0' must be a 1-D array .*got shape \(2, 2\)"):
        asktell.minimize(lambda x: 0.0, np.zeros((2, 2)), budget=100)


def test_minimize_survives_nan_losses():
    def f(x):
        return float("nan") if x[0] > 1.5 else float(np.sum((x - 1) ** 2))

    res = asktell.minimize(f, np.zeros(3), budget=3000, sigma=0.2, learning_rate=0.05,
                           strategy="openai_es")
    assert np.isfinite(res.fun) and res.fun < 0.1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_minimize_says_it_failed_when_no_evaluation_gave_a_finite_loss(value):
    res = asktell.minimize(lambda x: value, np.arange(3.0), budget=100)
    assert res.success is False
    assert np.isnan(res.fun)  # never inf, which reads as a measured (if bad) loss
    assert np.array_equal(res.x, np.arange(3.0))
    assert res.message.startswith(f"failed: all {res.nfev} evaluations returned NaN")
    assert "success=False" in repr(res)


def test_minimize_succeeds_once_any_evaluation_is_finite():
    res = asktell.minimize(lambda x: float(np.sum(x**2)), np.zeros(3), budget=100)
    assert res.success is True and res.fun == 0.0


def test_minimize_bad_arguments():
    with pytest.raises(ConfigError, match="unknown strategy 'openai-es'; did you mean 'openai_es'"):
        asktell.minimize(np.sum, np.zeros(2), strategy="openai-es")
    with pytest.raises(ConfigError, match="'budget'"):
        asktell.minimize(np.sum, np.zeros(2), budget=5)


class CountingEvaluator:
    """A serial evaluator that counts what it is asked to evaluate."""

    def __init__(self, task):
        from asktell.evaluators import SerialEvaluator

        self.inner = SerialEvaluator(task)
        self.calls, self.candidates, self.zero_sigma_calls = 0, 0, 0

    def evaluate(self, distribution, seeds):
        self.calls += 1
        self.candidates += len(seeds)
        self.zero_sigma_calls += np.ndim(distribution.sigma) == 0 and distribution.sigma == 0
        return self.inner.evaluate(distribution, seeds)

    def close(self):
        self.inner.close()


def test_minimize_refuses_an_evaluator_built_for_another_task():
    """A caller's evaluator evaluates its own task: one of another f, of f as a return
    (minimize=False: the search would maximise the loss) or of other constraints would
    silently optimise something else."""
    from asktell.evaluators import SerialEvaluator
    from asktell.tasks import FunctionTask

    f = lambda x: float(np.sum((x - 1) ** 2))  # noqa: E731
    g = lambda x: np.array([x[0] - 0.5])  # noqa: E731
    cases = [
        (FunctionTask(lambda x: 0.0, minimize=True), "got one built for another function"),
        (FunctionTask(f), "minimize=False, so it would return f itself"),
        (FunctionTask(f, minimize=True, constraints=g), "constraints are <lambda>, minimize was given none"),
    ]
    for task, words in cases:
        with SerialEvaluator(task) as ev, pytest.raises(ConfigError, match=re.escape(words)):
            asktell.minimize(f, np.zeros(3), budget=200, evaluator=ev)
    with SerialEvaluator(FunctionTask(f, minimize=True, constraints=g)) as ev:
        res = asktell.minimize(f, np.zeros(3), budget=300, evaluator=ev, constraints=g)
    assert res.x[0] <= 0.5 + 1e-9  # the constraint was applied


def test_minimize_evaluates_x0_and_every_centre_through_the_evaluator():
    from asktell.tasks import FunctionTask

    calls = {"f": 0}

    def f(x):
        calls["f"] += 1
        return float(np.sum((x - 1) ** 2))

    ev = CountingEvaluator(FunctionTask(f, minimize=True))
    res = asktell.minimize(f, np.zeros(3), budget=200, population_size=10, sigma=0.1,
                           learning_rate=0.05, evaluator=ev, strategy="openai_es")
    assert calls["f"] == ev.candidates  # every call of f went through the evaluator
    plain = asktell.minimize(f, np.zeros(3), budget=200, population_size=10, sigma=0.1,
                             learning_rate=0.05, strategy="openai_es")
    # x0, then per generation the population and the centre
    assert ev.calls == 1 + 2 * res.generations and ev.zero_sigma_calls == 1 + res.generations
    assert ev.candidates == res.nfev == 1 + 11 * res.generations <= 200
    assert res.fun == plain.fun and res.center_fun == plain.center_fun
    assert np.array_equal(res.center, plain.center)
    ev.close()


def test_restarts_reach_what_one_run_does_not_and_keep_to_the_budget():
    """IPOP/BIPOP through minimize: on Rastrigin one CMA-ES run stops in a local optimum;
    restarted runs find the global one, and never spend more than the budget even as the
    population grows."""
    from asktell.functions import rastrigin

    def f(x):
        return float(rastrigin(np.asarray(x)[None])[0])

    x0 = np.full(6, 3.0)
    one = asktell.minimize(f, x0, sigma=2.0, budget=60_000, seed=1)
    assert one.fun > 1.0 and one.stop_reason.startswith("strategy stopped")
    for mode in ("ipop", "bipop"):
        res = asktell.minimize(f, x0, sigma=2.0, budget=60_000, seed=1, restarts=mode)
        assert res.fun < 1e-8, mode
        assert res.nfev <= 60_000 and res.strategy == "restarts"
    with pytest.raises(ConfigError, match=r"'restarts' must be 'ipop', 'bipop' or None; got 'ipopp'"):
        asktell.minimize(f, x0, restarts="ipopp")


def test_the_pycma_users_call_runs_bounded_and_restarted():
    """The call the issue asks for: sigma, bounds, BIPOP restarts, a budget and a seed."""
    def f(x):
        return float(np.sum((np.asarray(x) - 2.0) ** 2))  # optimum outside the box

    res = asktell.minimize(f, np.zeros(4), sigma=0.5, bounds=(-1.0, 1.0), restarts="bipop",
                           budget=20_000, seed=0)
    assert np.allclose(res.x, 1.0, atol=1e-4) and res.nfev <= 20_000
    assert isinstance(res.stop_reason, str) and res.fun == pytest.approx(4.0, abs=1e-3)


def test_minimize_closes_the_evaluator_it_built_and_leaves_yours_open(monkeypatch):
    """An evaluator named by string is minimize's own: closed when the search ends, even
    by an exception; an evaluator instance is the caller's and stays open."""
    import sys

    from asktell.evaluators import SerialEvaluator

    module = sys.modules["asktell.minimize"]  # the package's name for it is the function

    closed = []

    class Recording(SerialEvaluator):
        def close(self):
            closed.append(self)
            super().close()

    monkeypatch.setattr(module.EVALUATORS, "get", lambda name: Recording)
    f = lambda x: float(np.sum(x ** 2))  # noqa: E731

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asktell.minimize(f, np.ones(3), budget=200, callback=interrupt)
    assert len(closed) == 1
    asktell.minimize(f, np.ones(3), budget=200)
    assert len(closed) == 2
    from asktell.tasks import FunctionTask

    mine = Recording(FunctionTask(f, minimize=True))
    asktell.minimize(f, np.ones(3), budget=200, evaluator=mine)
    assert len(closed) == 2  # yours is left open
    mine.close()
