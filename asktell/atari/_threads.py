"""One BLAS thread in the process that runs an Atari task, unless the user chose otherwise.

The A3C network's products are small (a 16x8x8 convolution over 84x84 frames per step):
OpenBLAS's thread pool spends more time waking and synchronising threads than computing, and
on a loaded machine the spinning threads take cores from the environments. A short Pong run
on a loaded 2-core machine took 300 s with OpenBLAS's two threads and 92 s with one
(docs/atari.md).
Worker processes already start with ``OPENBLAS_NUM_THREADS=1``; this covers the main
process, which runs the serial evaluator's rollouts, the centre evaluations and ``tell``.

The limit is set through threadpoolctl (``pip install -e ".[atari]"`` brings it), for the
rest of the process, when an :class:`~asktell.atari.AtariTask` is built. Setting any of
:data:`USER_VARS` (e.g. ``OPENBLAS_NUM_THREADS=4``) keeps the user's choice.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["USER_VARS", "limit_blas_threads"]

#: Environment variables by which a user states a BLAS thread count; any one set wins.
USER_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_limiter: object | None = None  # kept alive: threadpoolctl's limit lasts as long as this


def limit_blas_threads() -> bool:
    """Limit this process's BLAS to one thread; ``False`` when the user set a count (or
    threadpoolctl is missing, with a warning naming the install command)."""
    global _limiter
    if any(os.environ.get(name) for name in USER_VARS):
        return False
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn(
            "Atari runs are several times faster with one BLAS thread in the main process; "
            'install threadpoolctl (pip install -e ".[atari]") or set OPENBLAS_NUM_THREADS=1',
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    _limiter = threadpool_limits(limits=1, user_api="blas")
    return True
