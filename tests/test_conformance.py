"""Every registered strategy and evaluator runs the same conformance checks.

A new plugin is checked by registering it (and, for an evaluator, adding its factory below).
That the checks catch broken plugins is shown in tests/test_suite_mutations.py.
"""

import pytest

from asktell.registry import EVALUATORS, STRATEGIES
from asktell.testing.evaluator_suite import EVALUATOR_CHECKS
from asktell.testing.strategy_suite import STRATEGY_CHECKS
from asktell.testing.dask_cluster import loopback_cluster

STRATEGY_NAMES = STRATEGIES.names()


@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_strategy_conformance(name, check):
    check(STRATEGIES.get(name))


def _serial(task, **options):
    return EVALUATORS.get("serial")(task, **options)


@pytest.fixture(scope="module")
def dask_factory():
    """DaskEvaluator on a loopback LocalCluster (2 processes x 1 thread) shared by the suite."""
    distributed = pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator

    with loopback_cluster(2) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield lambda task, **options: DaskEvaluator(task, client=client, **options)


@pytest.fixture(scope="module")
def dask_node_factory():
    """DaskEvaluator in node mode: one embedded node (a non-daemonic worker) running its
    chunk on 2 local processes, the cluster shared by the suite."""
    pytest.importorskip("distributed")
    from asktell.evaluators import DaskEvaluator
    from asktell.tasks import FunctionTask

    with DaskEvaluator(FunctionTask.named("sphere"), num_workers=1, node_processes=2) as host:
        yield lambda task, **options: DaskEvaluator(
            task, client=host.client, node_processes=2, **options
        )


# How the suite builds each evaluator: a factory ``make(task, **options)``, or the name of a
# fixture returning one (for evaluators that need a server). Every registered evaluator
# must appear (see the test below).
def _vector(task, **options):
    # The suite reads the instance's capabilities: with ``needs_batch_runner`` it runs the
    # Gym checks only (an evaluator that steps environments has nothing to offer a function).
    return EVALUATORS.get("vector")(task, num_envs=4, **options)


EVALUATOR_FACTORIES = {
    "serial": _serial,
    "dask": "dask_factory",
    "vector": _vector,
}


#: Modes of a registered evaluator that change how it runs candidates, checked as well.
EVALUATOR_MODES = {"dask-node": "dask_node_factory"}


def test_every_evaluator_has_a_factory():
    assert sorted(EVALUATOR_FACTORIES) == EVALUATORS.names()


@pytest.mark.parametrize("check", EVALUATOR_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(EVALUATOR_FACTORIES) + sorted(EVALUATOR_MODES))
def test_evaluator_conformance(name, check, request):
    make = {**EVALUATOR_FACTORIES, **EVALUATOR_MODES}[name]
    if isinstance(make, str):
        make = request.getfixturevalue(make)
    check(make)
