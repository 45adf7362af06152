"""Which floating-point kernels does this machine run? Bits are reproducible on one machine,
and between machines only when their kernels agree.

Every asktell result is a function of the config and seed on a given machine: the same run
gives the same bits with any evaluator. Between machines, elementwise arithmetic (decoding a
candidate from the noise table, Adam's step) is bitwise the same, but BLAS and LAPACK are not:
OpenBLAS picks its kernels by CPU at run time, so a float32 ``w @ rows`` (the gradient over
short noise rows, a policy layer), a float64 product or an eigendecomposition can differ in
their last bits between, say, an AVX-512 Xeon and an AVX2 EPYC (measured: 2e-8 to 5e-7
relative in the logged gradient norms of the same run). :func:`kernel_fingerprint` hashes the
results of such operations on fixed inputs with numpy alone, so a checkpoint can say which
kernels wrote it and a resume on other kernels says that it continues on other bits.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

__all__ = ["kernel_fingerprint", "resume_note"]


@functools.lru_cache(maxsize=1)
def kernel_fingerprint() -> str:
    """A 16-hex-digit digest of this machine's results for the kernels asktell's numbers use
    (float32 and float64 matrix-vector products, a dot, a small matrix product and a
    symmetric eigendecomposition, on fixed inputs). Equal digests: the same bits."""
    rng = np.random.default_rng(20261202)
    h = hashlib.sha256()
    for k, d in ((256, 100), (128, 6), (300, 33), (16, 2), (64, 4096)):
        rows = rng.standard_normal((k, d)).astype(np.float32)
        w = rng.standard_normal(k).astype(np.float32)
        h.update((w @ rows).tobytes())
        h.update((w.astype(np.float64) @ rows.astype(np.float64)).tobytes())
        h.update(np.dot(rows[0], rows[1]).tobytes())
    a = rng.standard_normal((6, 6))
    s = a @ a.T + 6.0 * np.eye(6)
    vals, vecs = np.linalg.eigh(s)
    for x in (s, a @ a, vals, np.abs(vecs)):
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


def resume_note(meta: dict[str, Any]) -> str | None:
    """A note for a resume whose checkpoint (``meta``: its JSON record) was written by other
    floating-point kernels or another numpy: the run continues from the saved state exactly,
    but its later bits may differ from those the original machine would have computed."""
    written = meta.get("kernels")
    saved = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    what = []
    if isinstance(written, str) and written != kernel_fingerprint():
        what.append(f"floating-point kernels {written} (here {kernel_fingerprint()})")
    if saved.get("numpy") not in (None, np.__version__):
        what.append(f"numpy {saved['numpy']} (here {np.__version__})")
    if not what:
        return None
    return (
        "this checkpoint was written with other " + " and ".join(what) + ": the run "
        "continues from the saved state, but its results may differ in their last bits from "
        "those the original machine would have computed (docs/failures.md, 'Another "
        "machine')"
    )
