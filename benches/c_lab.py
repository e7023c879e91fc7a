"""Lab for the C backend's kernels, in the style of llm.c's dev/cuda: versions side by side.

    python benches/c_lab.py                 # matmul 512^3 + the course layer, both dtypes
    python benches/c_lab.py --sizes 256 512 1024 --dtype float32 --sweep
    python benches/c_lab.py --sizes --shapes 1024x4096x1024 32x400x25
    python benches/c_lab.py --quick         # smoke run (small sizes), checks only

Versions of C = A @ B (one line per configuration, GFLOP/s and the ratio to NumPy):
    numpy-1t   NumPy/OpenBLAS pinned to one thread (OPENBLAS_NUM_THREADS=1 is set before
               NumPy loads): the baseline the C matmul is held to (>= 50% at 512^3 f32)
    naive      ff_matmul_naive: the textbook triple loop (reference and fallback)
    scalar     blocked + packed, plain-C micro-kernel (4x8), whatever the compiler vectorises
    avx2       blocked + packed, AVX2/FMA micro-kernel (6x16 f32, 6x8 f64)
    avx512     blocked + packed, AVX-512F micro-kernel (12x32 f32, 12x16 f64)
Every result is checked against a float64 product (error bound scaled by K and the dtype)
before it is timed; compilation is not a thing here, but each version runs once first.

Timing: the best of --repeats runs of the *CPU time of this thread* (time.thread_time),
not wall time: on a shared machine a descheduled run would otherwise count the time spent
waiting. Both NumPy (one thread) and C run on this thread, so the comparison is fair.
--sweep adds a block-size sweep (mc, kc, nc) of the fastest level.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastface import backends  # noqa: E402
from fastface.backends import BackendUnavailableError  # noqa: E402
from fastface.backends import reference  # noqa: E402


def best_time(fn, repeats: int, min_time: float = 0.05) -> float:
    """Best per-call CPU seconds over `repeats` batches of calls lasting >= min_time."""
    fn()
    t0 = time.thread_time()
    fn()
    once = max(time.thread_time() - t0, 1e-7)
    number = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - t0) / number)
    return best


def check(c, a, b, label):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    err = np.abs(c - a64 @ b64)
    tol = 2 * (a.shape[1] + 2) * np.finfo(a.dtype).eps * (np.abs(a64) @ np.abs(b64))
    if not np.all(err <= tol):
        raise SystemExit(f"{label}: WRONG RESULT, max error {err.max():.3g}")
    return float(err.max())


def matmul_lines(C, M, K, N, dtype, repeats, levels, sweep):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    flops = 2.0 * M * N * K
    tag = f"matmul {np.dtype(dtype).name:7s} {M}x{K}x{N}"
    check(a @ b, a, b, f"{tag} numpy")
    base = flops / best_time(lambda: a @ b, repeats) / 1e9
    print(f"{tag:32s} {'numpy-1t':14s} {base:8.1f} GFLOP/s   1.00x", flush=True)
    versions = []
    if M * N * K <= 256**3:
        versions.append(("naive", "scalar", C.matmul_naive))
    versions += [(lvl, lvl, C.matmul) for lvl in levels]
    for label, lvl, fn in versions:
        C.set_options(simd=lvl)
        err = check(fn(a, b), a, b, f"{tag} {label}")
        g = flops / best_time(lambda: fn(a, b), repeats) / 1e9
        print(f"{tag:32s} {'c ' + label:14s} {g:8.1f} GFLOP/s  {g / base:5.2f}x  max err {err:.2g}", flush=True)
    if sweep:
        lvl = levels[-1]
        for mc in (96, 480, 1024):
            for kc in (128, 256, 384, 512):
                for nc in (256, 512, 1024, 2048):
                    C.set_options(simd=lvl, mc=mc, kc=kc, nc=nc)
                    check(C.matmul(a, b), a, b, f"{tag} sweep")
                    g = flops / best_time(lambda: C.matmul(a, b), max(1, repeats // 2)) / 1e9
                    print(f"{tag:32s} {lvl} mc={mc:<5d} kc={kc:<4d} nc={nc:<5d} {g:8.1f} GFLOP/s  {g / base:5.2f}x", flush=True)
    C.set_options()


def layer_lines(C, N, IN, OUT, dtype, repeats):
    """dense_forward + dense_backward per call, backend level (the ops layer adds its checks)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, IN)).astype(dtype)
    W = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(dtype)
    bias = np.zeros(OUT, dtype)
    a = reference.dense_forward(x, W, bias, "sigmoid")
    da = rng.standard_normal(a.shape).astype(dtype)
    tag = f"dense   {np.dtype(dtype).name:7s} {N}x{IN}x{OUT}"
    times = {}
    for name, mod in (("numpy", reference), ("c", C)):
        got = mod.dense_forward(x, W, bias, "sigmoid")
        np.testing.assert_allclose(got, a, rtol=1e-4, atol=1e-5)
        fwd = best_time(lambda: mod.dense_forward(x, W, bias, "sigmoid"), repeats)
        bwd = best_time(lambda: mod.dense_backward(x, W, a, da, "sigmoid"), repeats)
        times[name] = fwd + bwd
        print(f"{tag:32s} {name:14s} fwd {fwd * 1e6:7.1f} us  bwd {bwd * 1e6:7.1f} us  "
              f"{times['numpy'] / times[name]:5.2f}x", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[512], help="square matmul sizes")
    parser.add_argument("--shapes", nargs="*", default=[], metavar="MxKxN",
                        help="more matmul shapes, e.g. 1024x4096x1024 (A is M x K, B is K x N)")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep", action="store_true", help="block-size sweep of the best level")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke run)")
    args = parser.parse_args(argv)
    try:
        C = backends.get("c")
    except BackendUnavailableError as exc:
        print(f"c backend unavailable: {exc}")
        return 1
    info = C.info()
    levels = list(C.SIMD_LEVELS)[: list(C.SIMD_LEVELS).index(info["simd_best"]) + 1]
    dtypes = [np.float32, np.float64] if args.dtype == "both" else [np.dtype(args.dtype).type]
    sizes, repeats = ([64, 131], 2) if args.quick else (args.sizes, args.repeats)
    print(f"# c backend: SIMD levels here {levels}; numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; CPU time of one thread")
    for dtype in dtypes:
        shapes = [(n, n, n) for n in sizes]
        for text in [] if args.quick else args.shapes:
            try:
                shapes.append(tuple(int(v) for v in text.lower().split("x")))
            except ValueError:
                parser.error(f"--shapes takes MxKxN like 1024x4096x1024; got {text!r}")
            if len(shapes[-1]) != 3:
                parser.error(f"--shapes takes MxKxN like 1024x4096x1024; got {text!r}")
        for M, K, N in shapes:
            matmul_lines(C, M, K, N, dtype, repeats, levels, args.sweep and not args.quick)
        layer_lines(C, 32, 400, 25, dtype, repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
