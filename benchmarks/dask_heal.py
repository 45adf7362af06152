"""How fast the embedded Dask cluster gets a lost worker back (evaluators/_dask_heal.py).

    python benchmarks/dask_heal.py [--repeats 5]

For each of the two states ``distributed`` can leave a slot in for good (a nanny closed and
dropped by ``SpecCluster``'s lost-worker check; a nanny closed after a failed restart; put
there as ``tests/test_dask_heal.py`` does), a two-worker ``DaskEvaluator`` loses worker 0
and the seconds until the cluster has two live nannies and two workers again are timed,
with no generation running. Prints the median and the largest of ``--repeats`` runs. The
time is the healer's look (each second) plus a worker process's start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_dask_heal as states

    from asktell import FunctionTask
    from asktell.evaluators import DaskEvaluator
    from asktell.testing.evaluator_suite import first_coordinate

    for lose in (states._lost_worker_check, states._closed_itself):
        seconds = []
        for _ in range(args.repeats):
            with DaskEvaluator(FunctionTask(first_coordinate), num_workers=2) as ev:
                ev.link.cluster.sync(states._on_loop(lose), ev.link.cluster, 0)
                seconds.append(states._wait_whole(ev, 2))
        print(
            f"{lose.__name__.strip('_'):18s} back in {statistics.median(seconds):.2f} s "
            f"(median of {len(seconds)}), at most {max(seconds):.2f} s"
        )


if __name__ == "__main__":
    main()
