"""What the benchmarks share: the BLAS they run against, and the best-of-R timer.

NumPy's OpenBLAS kernels can be forced by ``OPENBLAS_CORETYPE`` (see fastface.commands.bench):
then NumPy, scikit-learn and fastface's fused training path (which calls the same BLAS) run
slower than on a user's machine. The scripts print the kernel set in use and warn when it is
forced; for the figures a user's machine would give, run them with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/...``.
"""

from __future__ import annotations

import statistics
import time

from fastface.commands.bench import blas_report


def print_blas() -> None:
    """Print NumPy's BLAS (kernel set, threads) and, when the kernel set is forced, a warning."""
    for line in blas_report():
        print(f"# {line}")


def best_of(fn, repeats):
    """(fastest, median) wall-clock seconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)
