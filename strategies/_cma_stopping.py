"""The stopping rules that read a covariance matrix (CMA-ES and sep-CMA-ES): pycma's
``tolconditioncov``, ``tolupsigma``, ``noeffectaxis`` and ``noeffectcoord``. The generic
rules, their history and :class:`~._stopping.StopMixin` are in :mod:`._stopping`."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from asktell.config_base import Bool, Float

from ._stopping import StoppingConfig

__all__ = ["CMAStoppingConfig", "covariance_stops"]


class CMAStoppingConfig(StoppingConfig):
    """The rules that read a covariance matrix (CMA-ES and sep-CMA-ES)."""

    tolconditioncov: Float | None = Field(
        1e14,
        ge=1,
        description="Stop when the condition number of the covariance exceeds this "
        "(pycma's tolconditioncov). null: off.",
    )
    tolupsigma: Float | None = Field(
        1e20,
        gt=0,
        description="Stop when sigma / (largest axis of the covariance's square root) "
        "exceeds this times the initial sigma: sigma grows while the covariance shrinks, "
        "a run creeping with little progress (pycma's tolupsigma). null: off.",
    )
    noeffectaxis: Bool = Field(
        True,
        description="Stop when a tenth of a standard deviation along a principal axis "
        "(one axis a generation, in turn) leaves the centre unchanged (pycma's noeffectaxis).",
    )
    noeffectcoord: Bool = Field(
        True,
        description="Stop when a fifth of a coordinate's standard deviation leaves that "
        "coordinate of the centre unchanged (pycma's noeffectcoord).",
    )


def covariance_stops(
    cfg: Any,
    center: np.ndarray,
    sigma: float,
    axis_sds: np.ndarray,
    axes: np.ndarray | None,
    generation: int,
    sigma0: float | None = None,
    coord_sds: np.ndarray | None = None,
) -> dict[str, str]:
    """CMA-ES's covariance rules (pycma's ``tolconditioncov``, ``noeffectaxis``,
    ``noeffectcoord``) for ``N(center, sigma**2 C)``.

    Args:
        axis_sds: the square roots of C's eigenvalues (the diagonal for sep-CMA-ES).
        axes: C's eigenvectors as columns, or ``None`` for a diagonal C.
        generation: picks the axis tested (one a generation, in turn, as pycma does).
        sigma0: the initial sigma, for ``tolupsigma`` (None: that rule is not checked).
        coord_sds: each coordinate's standard deviation of C, ``sqrt(diag(C))`` of the
            current C as pycma reads it for ``noeffectcoord`` (None: from the factor).
    """
    out: dict[str, str] = {}
    ratio = float(axis_sds.max() / axis_sds.min())
    if cfg.tolconditioncov and ratio**2 > cfg.tolconditioncov:
        out["tolconditioncov"] = (
            f"covariance condition number {ratio**2:.3g} > tolconditioncov={cfg.tolconditioncov:g}"
        )
    creep = float(sigma / axis_sds.max())
    if cfg.tolupsigma and sigma0 is not None and creep > sigma0 * cfg.tolupsigma:
        out["tolupsigma"] = (
            f"sigma / largest axis {creep:.3g} > tolupsigma={cfg.tolupsigma:g} x initial "
            f"sigma {sigma0:g}: sigma grows while the covariance shrinks"
        )
    n = center.size
    if cfg.noeffectaxis:
        i = generation % n
        if axes is None:
            step = np.zeros(n)
            step[i] = 0.1 * sigma * axis_sds[i]
        else:
            step = 0.1 * sigma * axis_sds[i] * axes[:, i]
        if np.array_equal(center + step, center):
            out["noeffectaxis"] = f"a tenth of a standard deviation along axis {i} leaves the centre unchanged"
    if cfg.noeffectcoord:
        if coord_sds is not None:
            sds = coord_sds
        elif axes is None:
            sds = axis_sds
        else:
            sds = np.sqrt(np.sum((axes * axis_sds) ** 2, axis=1))
        same = np.flatnonzero(center + 0.2 * sigma * sds == center)
        if same.size:
            out["noeffectcoord"] = (
                f"a fifth of a standard deviation leaves coordinate(s) {same[:5].tolist()} "
                "of the centre unchanged"
            )
    return out
