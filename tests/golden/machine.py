"""Which machine's arithmetic is this? The golden rows are bitwise only on a machine whose
floating-point kernels match the one that wrote them.

OpenBLAS picks its kernels by CPU at run time (``DYNAMIC_ARCH``): a float32 ``w @ rows``
(the gradient over short noise rows), a float64 product or an eigendecomposition can differ
in their last bits between, say, an AVX-512 Xeon and an AVX2 EPYC, although each machine is
bitwise deterministic on its own. :func:`fingerprint` hashes the results of such operations
on fixed inputs, with numpy alone (never asktell's code, so a refactor that changes asktell's
bits cannot change the fingerprint and slip past the bitwise check).
"""

from __future__ import annotations

import hashlib

import numpy as np


def fingerprint() -> str:
    """A short hex digest of this machine's results for the kernels asktell's numbers use."""
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


if __name__ == "__main__":
    print(fingerprint())
