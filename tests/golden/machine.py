"""The golden rows' machine key: :func:`asktell._machine.kernel_fingerprint`, which hashes
this machine's results for the BLAS/LAPACK kernels asktell's numbers use with numpy alone
(never asktell's own code, so a refactor that changes asktell's bits cannot change the key
and slip past the bitwise check)."""

from asktell._machine import kernel_fingerprint as fingerprint

__all__ = ["fingerprint"]

if __name__ == "__main__":
    print(fingerprint())
