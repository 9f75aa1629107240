"""A stand-in for CuPy in ``device_check.sh --dry-run`` (no GPU): NumPy under CuPy's name.

It lets the dry run take every CuPy branch of device_check.py and ``fcinv bench forward
--backend cupy`` (asnumpy, cuda.is_available, cuda.Device().synchronize) on the CPU. It checks
the scripts, not CuPy: whether CuPy computes what NumPy does is what the real run measures.
"""

import numpy as _np

__version__ = f"NumPy {_np.__version__} standing in (dry run)"


def __getattr__(name):
    return getattr(_np, name)


def asnumpy(a):
    return _np.asarray(a)


class _Device:
    def synchronize(self) -> None:
        pass


class cuda:  # noqa: N801  (CuPy's name)
    Device = _Device

    @staticmethod
    def is_available() -> bool:
        return True
