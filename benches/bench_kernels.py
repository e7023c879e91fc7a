"""Kernel benchmarks: matmul, dense_forward, dense_backward per backend and size, vs NumPy (BLAS).

Sizes are N x IN x OUT (x (N, IN), W (IN, OUT), b (OUT,), a / da (N, OUT)):
    matmul          x @ W                                        2*N*IN*OUT flops
    dense_forward   sigmoid(x @ W + b)                           2*N*IN*OUT flops
    dense_backward  dz = da * a (1 - a); dz @ W.T, x.T @ dz, sum  4*N*IN*OUT flops

Two ways to run it:

    python -m pytest benches/bench_kernels.py --benchmark-only    # pytest-benchmark table
    python benches/bench_kernels.py [--quick]                      # one line per configuration
                                                                   #   and the three issue targets

Rows: every available fastface backend through ``fastface.ops`` (per-call validation and
dispatch included), ``numpy-blas`` (plain NumPy expressions doing the same arithmetic: the
baseline line every ratio is taken against) and ``torch`` (PyTorch CPU) when importable.
Every result is checked against the float64 reference before timing, the first (compiling)
call is excluded, GFLOP/s go in ``benchmark.extra_info``. The CUDA backend is skipped on the
simulator (NUMBA_ENABLE_CUDASIM=1): its timings mean nothing there.

On a 2-core or busy machine run with ``OMP_WAIT_POLICY=PASSIVE`` (spinning OpenMP pools of
PyTorch/Numba starve the next library's threads) or ``--threads 1`` (per-core table).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys

import numpy as np
import pytest

try:
    import fastface  # noqa: F401
except ImportError:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_blas
from fastface.backends import available_backends
from fastface.commands.bench import (
    KERNELS,
    Row,
    bench_one,
    check_result,
    limit_threads,
    make_args,
    make_callable,
    run_table,
    tolerance,
)

SIZES_F32 = [(32, 400, 25), (128, 1024, 128), (256, 1024, 256), (512, 512, 512), (1024, 4096, 1024)]
SIZES_F64 = [(32, 400, 25), (128, 1024, 128)]
COURSE = (32, 400, 25)  # the course's first layer: 32 examples, 20x20 pixels, 25 units
LARGE = (1024, 4096, 1024)
CUBE = (512, 512, 512)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def timed_backends() -> list[str]:
    names = available_backends()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        names = [n for n in names if n != "cuda"]
    return names


def contenders() -> list[str]:
    return timed_backends() + ["numpy-blas"] + (["torch"] if _torch_available() else [])


# --- pytest-benchmark -------------------------------------------------------------------------
def _cases():
    cases = []
    for kernel in KERNELS:
        for dtype, sizes in (("float32", SIZES_F32), ("float64", SIZES_F64)):
            for size in sizes:
                for who in contenders():
                    sid = "x".join(map(str, size))
                    cases.append(pytest.param(kernel, size, dtype, who, id=f"{kernel}-{sid}-{dtype}-{who}"))
    return cases


@pytest.mark.parametrize("kernel, size, dtype, who", _cases())
def test_kernel(benchmark, kernel, size, dtype, who):
    args = make_args(kernel, *size, dtype)
    fn = make_callable(kernel, who, args)
    result = fn()  # warm-up: compilation and caches excluded from the timing
    error = check_result(kernel, args, "sigmoid", result)
    assert error <= tolerance(dtype, size), f"{who} {kernel} {size} {dtype}: relative error {error:.2e}"
    flops = KERNELS[kernel].flops(*size)
    benchmark.group = f"{kernel} {'x'.join(map(str, size))} {dtype}"
    benchmark.extra_info.update(kernel=kernel, size=list(size), dtype=dtype, backend=who,
                                flops=flops, max_rel_error=error)
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # absent under --benchmark-disable
        benchmark.extra_info["gflops"] = flops / stats.stats.min / 1e9
        benchmark.extra_info["gflops_median"] = flops / stats.stats.median / 1e9


# --- summary script ---------------------------------------------------------------------------
def _time_pair(who, size, dtype, repeat):
    """Seconds per (dense_forward, dense_backward) call of `who` at `size`, results checked."""
    rows = [bench_one(k, size, dtype, who, repeat=repeat, min_time=0.05)
            for k in ("dense_forward", "dense_backward")]
    for row in rows:
        if not row.ok:
            raise AssertionError(f"{row.who} {row.kernel} {row.size}: result off by {row.error:.2e}")
    return rows


def target_numba_large(repeat) -> str:
    if "numba" not in timed_backends():
        return "target 1: numba fwd+bwd 1024x4096x1024 float32 >= 0.7x numpy-blas: numba unavailable"
    nb = _time_pair("numba", LARGE, "float32", repeat)
    npb = _time_pair("numpy-blas", LARGE, "float32", repeat)
    t_nb = sum(r.seconds for r in nb)
    t_np = sum(r.seconds for r in npb)
    ratio = t_np / t_nb
    flops = sum(KERNELS[r.kernel].flops(*LARGE) for r in nb)
    verdict = "MET" if ratio >= 0.7 else "NOT MET"
    return (f"target 1: numba dense_forward+dense_backward 1024x4096x1024 float32: "
            f"{flops / t_nb / 1e9:.1f} GFLOP/s vs numpy-blas {flops / t_np / 1e9:.1f} GFLOP/s "
            f"= {ratio:.2f}x (target >= 0.70x): {verdict}")


def target_c_cube(repeat) -> str:
    if "c" not in timed_backends():
        return "target 2: C matmul 512^3 >= 50% of single-thread NumPy sgemm: c unavailable"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "target 2: needs threadpoolctl to run NumPy single-threaded (pip install threadpoolctl)"
    c_row = bench_one("matmul", CUBE, "float32", "c", repeat=repeat, min_time=0.1)
    with threadpool_limits(limits=1, user_api="blas"):
        np1 = bench_one("matmul", CUBE, "float32", "numpy-blas", repeat=repeat, min_time=0.1)
    npn = bench_one("matmul", CUBE, "float32", "numpy-blas", repeat=repeat, min_time=0.1)
    ratio = c_row.gflops / np1.gflops
    verdict = "MET" if ratio >= 0.5 and c_row.ok else "NOT MET"
    return (f"target 2: C matmul 512x512x512 float32: {c_row.gflops:.1f} GFLOP/s vs NumPy sgemm "
            f"single-thread {np1.gflops:.1f} GFLOP/s = {ratio:.2f}x (target >= 0.50x): {verdict} "
            f"[NumPy multithreaded: {npn.gflops:.1f} GFLOP/s; C result {'ok' if c_row.ok else 'WRONG'}]")


def target_course_layer(repeat) -> str:
    lines = []
    for kernels in (("dense_forward",), ("dense_forward", "dense_backward")):
        base = sum(bench_one(k, COURSE, "float32", "numpy-blas", repeat=repeat, min_time=0.05).seconds
                   for k in kernels)
        ops_np = sum(bench_one(k, COURSE, "float32", "numpy", repeat=repeat, min_time=0.05).seconds
                     for k in kernels)
        best_name, best = None, math.inf
        for name in timed_backends():
            rows = [bench_one(k, COURSE, "float32", name, repeat=repeat, min_time=0.05) for k in kernels]
            t = sum(r.seconds for r in rows)
            if all(r.ok for r in rows) and t < best:
                best_name, best = name, t
        ratio = base / best
        verdict = "MET" if ratio >= 2.0 else "NOT MET"
        what = "+".join(kernels)
        lines.append(
            f"target 3: fastest backend at 32x400x25 float32 ({what}, per call through fastface.ops): "
            f"{best_name} {best * 1e6:.1f} us vs numpy-blas {base * 1e6:.1f} us = {ratio:.2f}x "
            f"(target >= 2.00x): {verdict} "
            f"[vs ops backend='numpy' {ops_np * 1e6:.1f} us: {ops_np / best:.2f}x]"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only, fewer rounds")
    parser.add_argument("--repeat", type=int, default=5, help="timing rounds; the best is kept")
    parser.add_argument("--no-targets", action="store_true", help="skip the three issue targets")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS, Numba and PyTorch to this many threads for the table "
                             "(the targets always run as the issue states them)")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    sizes32 = SIZES_F32[:2] if args.quick else SIZES_F32
    sizes64 = SIZES_F64[:1] if args.quick else SIZES_F64
    print(f"# fastface kernel benchmarks on {platform.machine()} / {os.cpu_count()} CPUs, "
          f"NumPy {np.__version__}")
    print_blas()
    print(f"# rows: {', '.join(contenders())}; ratio = throughput / numpy-blas; best of {repeat}")
    if args.threads is not None:
        print(f"# table on {args.threads} thread(s) for BLAS, Numba and PyTorch")
    rows: list[Row] = []
    with limit_threads(args.threads):
        for dtype, sizes in (("float32", sizes32), ("float64", sizes64)):
            rows += run_table(list(KERNELS), sizes, dtype, contenders(), repeat=repeat,
                              emit=lambda line: print(line, flush=True))
    if not args.no_targets:
        print("# targets (issue 2)")
        for target in (target_numba_large, target_c_cube, target_course_layer):
            print(target(repeat), flush=True)
    wrong = [r for r in rows if not r.ok]
    if wrong:
        print(f"# {len(wrong)} result(s) disagree with the reference (marked WRONG)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
