"""Numba backend vs NumPy (BLAS): one line per (size, dtype, stage), GFLOP/s and the ratio.

    python benches/numba_kernels.py                 # the three sizes of the issue, both dtypes
    python benches/numba_kernels.py --sizes 32x400x25 --repeat 200
    python benches/numba_kernels.py --ops           # per-call cost through fastface.ops too
    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benches/numba_kernels.py --clock thread
                                                    # per-core efficiency: one thread each, timed
                                                    # by CPU time (steady on a shared machine)

Compilation is excluded (every kernel is warmed up first), each result is checked against the
NumPy reference before timing, and the time is the minimum over --repeat calls.
forward = act(x @ W + b), backward = (dx, dW, db); flops count 2 per multiply-add
(forward 2*N*IN*OUT, backward 4*N*IN*OUT), the same arithmetic for both backends.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastface import ops
from fastface.activations import sigmoid as np_sigmoid
from fastface.backends import get

SIZES = ["32x400x25", "256x1024x256", "1024x4096x1024"]


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def best_time(fn, repeat, clock=time.perf_counter):
    """Minimum over `repeat` calls (batched so each sample is >= ~2 ms), after one warm-up."""
    fn()
    t0 = clock()
    fn()
    once = max(clock() - t0, 1e-7)
    batch = max(1, int(2e-3 / once))
    best = float("inf")
    for _ in range(max(1, repeat // batch)):
        t0 = clock()
        for _ in range(batch):
            fn()
        best = min(best, (clock() - t0) / batch)
    return best


def check(got, want, dtype, k, what):
    tol = (1e-3 if dtype == np.float32 else 1e-9) * max(1.0, np.sqrt(k) / 10)
    for g, w in zip(got, want):
        err = np.max(np.abs(g - w)) / max(1.0, np.max(np.abs(w)))
        if not err <= tol:
            raise SystemExit(f"{what}: result differs from NumPy (max relative error {err:.3g})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=SIZES, help="NxINxOUT, e.g. 32x400x25")
    p.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    p.add_argument("--activation", default="sigmoid")
    p.add_argument("--repeat", type=int, default=0, help="timed calls (default: by size)")
    p.add_argument("--ops", action="store_true", help="also time the public fastface.ops calls")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall (perf_counter) or thread (CPU time of this thread: only meaningful "
                        "with OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1)")
    args = p.parse_args(argv)
    nb, ref = get("numba"), get("numpy")
    act = args.activation
    rng = np.random.default_rng(0)
    print(f"{'size':>16} {'dtype':>7} {'stage':>9} {'numpy us':>10} {'numba us':>10} "
          f"{'numpy GF/s':>10} {'numba GF/s':>10} {'numba/numpy':>11}")
    for size in args.sizes:
        N, IN, OUT = (int(v) for v in size.split("x"))
        repeat = args.repeat or max(3, min(2000, int(2e8 / (N * IN * OUT))))
        for dt in args.dtypes:
            dtype = np.dtype(dt)
            x = rng.standard_normal((N, IN)).astype(dtype)
            W = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(dtype)
            b = rng.standard_normal(OUT).astype(dtype)
            a = ref.dense_forward(x, W, b, act)
            da = rng.standard_normal((N, OUT)).astype(dtype)
            check([nb.dense_forward(x, W, b, act)], [a], dtype, IN, f"forward {size} {dt}")
            check(nb.dense_backward(x, W, a, da, act), ref.dense_backward(x, W, a, da, act), dtype, N,
                  f"backward {size} {dt}")
            rows = [
                ("forward", 2, lambda: ref.dense_forward(x, W, b, act), lambda: nb.dense_forward(x, W, b, act)),
                ("backward", 4, lambda: ref.dense_backward(x, W, a, da, act),
                 lambda: nb.dense_backward(x, W, a, da, act)),
            ]
            if args.ops:
                rows += [
                    ("ops.fwd", 2, lambda: ops.dense_forward(x, W, b, act, backend="numpy"),
                     lambda: ops.dense_forward(x, W, b, act, backend="numba")),
                    ("plain.fwd", 2, lambda: np_sigmoid(x @ W + b),
                     lambda: ops.dense_forward(x, W, b, "sigmoid", backend="numba")),
                    ("ops.bwd", 4, lambda: ops.dense_backward(x, W, a, da, act, backend="numpy"),
                     lambda: ops.dense_backward(x, W, a, da, act, backend="numba")),
                ]
            for stage, mul, f_np, f_nb in rows:
                clock = CLOCKS[args.clock]
                t_np, t_nb = best_time(f_np, repeat, clock), best_time(f_nb, repeat, clock)
                flops = mul * N * IN * OUT
                print(f"{size:>16} {dt:>7} {stage:>9} {t_np * 1e6:10.1f} {t_nb * 1e6:10.1f} "
                      f"{flops / t_np / 1e9:10.1f} {flops / t_nb / 1e9:10.1f} {t_np / t_nb:11.2f}", flush=True)


if __name__ == "__main__":
    main()
