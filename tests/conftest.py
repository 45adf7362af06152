import os

import pytest

pytest.register_assert_rewrite("asktell.testing")

#: ``-n auto``'s ceiling (the README's test command): the suite's tests start Dask clusters
#: and process pools of their own, and some bound a hung candidate's cost in seconds, so
#: more workers than this load a machine more than they shorten the run.
MAX_AUTO_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """One worker more than the cores (many tests wait on a subprocess, a timeout or a
    cluster, so the cores are not kept busy by one test each), at most
    :data:`MAX_AUTO_WORKERS`: 3 on 2 cores. The cores are those this process may run on
    (a container's CPU set), not the host's."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores + 1, MAX_AUTO_WORKERS)
