"""Every registered strategy and evaluator runs the same conformance checks.

A new plugin is checked by registering it (and, for an evaluator, adding its factory below).
"""

import pytest

from asktell.registry import EVALUATORS, STRATEGIES
from asktell.testing.evaluator_suite import EVALUATOR_CHECKS
from asktell.testing.strategy_suite import STRATEGY_CHECKS

STRATEGY_NAMES = STRATEGIES.names()


@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_conformance(name, check):
    check(STRATEGIES.get(name))


def _serial(task, **options):
    return EVALUATORS.get("serial")(task, **options)


# How the suite builds each evaluator; evaluators needing a server get a fixture-backed
# factory here. Every registered evaluator must appear (see the test below).
def _vector(task, **options):
    # FunctionTask has no environments: the vector evaluator evaluates it in-process like
    # the serial one (Gym equivalence is tested in tests/test_gym_vector.py).
    return EVALUATORS.get("vector")(task, num_envs=4, **options)


EVALUATOR_FACTORIES = {
    "serial": _serial,
    "vector": _vector,
}


def test_every_evaluator_has_a_factory():
    assert sorted(EVALUATOR_FACTORIES) == EVALUATORS.names()


@pytest.mark.parametrize("check", EVALUATOR_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(EVALUATOR_FACTORIES))
def test_evaluator_conformance(name, check):
    check(EVALUATOR_FACTORIES[name])
