"""What the benchmarks share: the BLAS they run against, and the best-of-R timer.

NumPy's OpenBLAS picks its kernels for the CPU at import, unless ``OPENBLAS_CORETYPE`` names
one (some machines set it to dodge bugs of old OpenBLAS builds). Then every NumPy product, and
so the ``numpy-blas`` baseline, scikit-learn and fastface's fused training path (which calls
the same BLAS), runs those older kernels: on an AVX-512 CPU with ``Haswell`` the small sgemm of
the course's layer is 3x slower than with the kernels OpenBLAS would choose. The scripts print
the kernel set in use and warn when it is forced; for the figures a user's machine would give,
run them with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/...``.
"""

from __future__ import annotations

import os
import statistics
import time


def blas_line() -> str:
    """'openblas 0.3.31 (SkylakeX kernels, 2 threads)' for each BLAS NumPy has loaded."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (pip install threadpoolctl to name it)"
    import numpy  # noqa: F401  (loads the BLAS threadpoolctl reports)

    pools = [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture') or 'default'} kernels, "
        f"{p.get('num_threads')} threads)"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return ", ".join(pools) or "no BLAS pool found"


def blas_warning() -> str | None:
    """A one-line warning when OPENBLAS_CORETYPE forces OpenBLAS's kernel set, else None."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    return (f"# WARNING: OPENBLAS_CORETYPE={forced} forces OpenBLAS's {forced} kernels, not the best "
            "ones for this CPU: NumPy, scikit-learn and fastface's fused path run slower than on a "
            "user's machine. For those figures: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...")


def print_blas() -> None:
    """Print the BLAS line (and the warning, when the kernel set is forced)."""
    print(f"# NumPy's BLAS: {blas_line()}")
    warning = blas_warning()
    if warning:
        print(warning)


def best_of(fn, repeats):
    """(fastest, median) wall-clock seconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)
