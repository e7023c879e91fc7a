"""Is there an NVIDIA GPU? Asked before numba is imported (so without numba).

The tests and ``benches/cuda_lab.py`` switch Numba to its CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, which must be set before numba loads) when the answer is no.
"""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["has_nvidia_gpu"]


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi -L`` runs and succeeds (a driver and at least one GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
