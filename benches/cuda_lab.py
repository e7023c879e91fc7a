"""CUDA kernel lab for fastface, in the style of llm.c's dev/cuda.

For each kernel: a CPU reference (NumPy, float64), versions 1..n of the CUDA kernel, each
checked against the reference at every block size, then one timing line per
(kernel, version, block size) with GFLOP/s, warm-up (compilation) excluded, GPU synchronised.
Baselines on the same lines' scale: NumPy (CPU BLAS) and, when PyTorch sees a GPU, cuBLAS
through torch.

Shapes:
    matmul          C (M, P) = A (M, K) @ B (K, P)                     flops 2 M K P
    dense_forward   a (N, OUT) = act(x (N, IN) @ W (IN, OUT) + b)       flops 2 N IN OUT
    dense_backward  dx (N, IN), dW (IN, OUT), db (OUT,) from x, W, a, da  flops 4 N IN OUT
    (sizes are given as N x IN x OUT, i.e. M x K x P for matmul)

Versions (what changed):
    matmul
      v1  naive: one thread per output, the K loop reads A and B from global memory
      v2  shared-memory tiles T x T, one output per thread, zero-filled edges
          (the backend's kernel: fastface/backends/_cuda_kernels.py)
      v3  v2 + register blocking: each thread keeps 4 x 4 outputs in registers, a block
          computes a 4T x 4T tile of C, so each shared load feeds 4 multiply-adds
          (the backend's kernel for outputs of >= 4T rows and columns)
    dense_forward
      v1  v2 matmul, then a separate bias + activation kernel (a second pass over the output)
      v2  bias + activation fused into the tiled matmul's epilogue (the backend, small outputs)
      v3  v2 on the register-blocked matmul (the backend, large outputs)
    dense_backward
      v1  dz kernel; W.T and x.T materialised by a transpose kernel; tiled matmuls; db by
          atomicAdd per element of dz
      v2  dz fused with db (shared-memory tree per column block, no atomics); dx = dz @ W.T
          and dW = x.T @ dz read the transposed operand in place (the backend, small outputs)
      v3  v2 on the register-blocked matmul (the backend, large outputs)

Block size: the tile side T (T x T threads) for matmul and the dense kernels.

Usage:
    python benches/cuda_lab.py                         # every kernel and version, GPU sizes
    python benches/cuda_lab.py --kernel matmul --version 3 --block 16 32
    python benches/cuda_lab.py --sizes 32x400x25 1024x4096x1024 --dtype float32
    python benches/cuda_lab.py --sim                   # CUDA simulator: small shapes, smoke check
    python benches/cuda_lab.py --ptx 90                # no GPU: compile every kernel for sm_90,
                                                       # registers/spills/smem via ptxas if present
Without a GPU the simulator is switched on automatically (small shapes, no meaningful timings).
Exit status 1 if any check against the reference fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

GPU_SIZES = ("32x400x25", "256x1024x256", "1024x4096x1024")
SIM_SIZES = ("5x7x6", "9x6x10")
GPU_BLOCKS = (8, 16, 32)
SIM_BLOCKS = (2, 4)
KERNELS = ("matmul", "dense_forward", "dense_backward")
ACTIVATION = "sigmoid"


def _parse(argv=None):
    p = argparse.ArgumentParser(
        prog="cuda_lab.py",
        description="fastface CUDA kernel lab: versions 1..n of each kernel, checked against a "
        "NumPy reference at every block size, then timed (GFLOP/s), llm.c dev/cuda style.",
        epilog="Versions: matmul v1 naive, v2 shared-memory tiled, v3 tiled + 4x4 register "
        "blocking; dense_forward v1 unfused bias/activation, v2 fused epilogue, v3 fused on the "
        "register-blocked matmul; dense_backward v1 transposed copies + atomic db, v2 fused dz+db "
        "tree reduction + in-place transposed reads, v3 the same on register-blocked matmuls. "
        "Without a GPU the CUDA simulator runs small shapes (a smoke check).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kernel", choices=KERNELS, nargs="+", default=list(KERNELS), help="kernels to run (default: all)")
    p.add_argument("--version", type=int, nargs="+", default=None, help="versions to run (default: all of each kernel)")
    p.add_argument("--block", type=int, nargs="+", default=None,
                   help=f"tile sides T to sweep (T x T threads); default {GPU_BLOCKS} on a GPU, "
                   f"{SIM_BLOCKS} on the simulator")
    p.add_argument("--sizes", nargs="+", default=None,
                   help=f"N x IN x OUT (M x K x P) sizes; default {GPU_SIZES} on a GPU, {SIM_SIZES} on the simulator")
    p.add_argument("--dtype", choices=("float32", "float64"), nargs="+", default=["float32"],
                   help="dtypes (default float32)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed runs per line (default 20 on a GPU, 1 on the simulator)")
    p.add_argument("--sim", action="store_true", help="force Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--ptx", metavar="CC", nargs="?", const="90", default=None,
                   help="no GPU needed: compile every kernel of the backend to PTX for compute capability "
                   "CC (default 90, i.e. sm_90) with NVVM, and, when ptxas is found (PATH or $CUDA_HOME/bin), "
                   "report registers, spills and shared memory per thread block and whether a full block "
                   "fits the 65536-register file; exits 1 on a compile failure or a block that cannot launch")
    return p.parse_args(argv)


ARGS = _parse() if __name__ == "__main__" else None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastface._device import has_nvidia_gpu  # noqa: E402  (imports no numba)

_NO_GPU = ARGS is not None and "NUMBA_ENABLE_CUDASIM" not in os.environ and not has_nvidia_gpu()
if ARGS is not None and ARGS.ptx is None and (ARGS.sim or _NO_GPU):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # must happen before numba is imported


from numba import cuda  # noqa: E402

from fastface import config  # noqa: E402
from fastface.backends import _cuda_kernels as K  # noqa: E402
from fastface.backends import cuda_backend as CB  # noqa: E402
from fastface.backends import reference as REF  # noqa: E402

SIM = CB.simulating()
FM = K.FASTMATH
R = 4  # register block of matmul v3: each thread computes R x R outputs


def _grid(n: int, per: int) -> int:
    cap = CB.SIM_MAX_GRID if SIM else 65535
    return max(1, min((n + per - 1) // per, cap))


# --- lab-only kernels -------------------------------------------------------------------------
@lru_cache(maxsize=None)
def matmul_v1(nb_name):
    """One thread per output of C (M, P); K loop over global memory."""
    zero = np.dtype(nb_name).type(0)

    @cuda.jit(fastmath=FM)
    def kernel(A, B, C):
        M, P = C.shape
        Kd = A.shape[1]
        i0 = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for i in range(i0, M, cuda.gridDim.y * cuda.blockDim.y):
            for j in range(j0, P, cuda.gridDim.x * cuda.blockDim.x):
                acc = zero
                for k in range(Kd):
                    acc += A[i, k] * B[k, j]
                C[i, j] = acc

    return kernel


@lru_cache(maxsize=None)
def bias_act_v1(nb_name):
    """a (N, OUT) = act(a + b) in place, one thread per element (the unfused epilogue)."""
    act = K.device_functions(nb_name)[0][ACTIVATION]

    @cuda.jit(fastmath=FM)
    def kernel(a, b):
        N, P = a.shape
        for idx in range(cuda.grid(1), N * P, cuda.gridsize(1)):
            r = idx // P
            c = idx - r * P
            a[r, c] = act(a[r, c] + b[c])

    return kernel


@lru_cache(maxsize=None)
def dz_v1(nb_name):
    """dz (N, OUT) = act'(a) * da, one thread per element."""
    deriv = K.device_functions(nb_name)[1][ACTIVATION]

    @cuda.jit(fastmath=FM)
    def kernel(a, da, dz):
        N, P = a.shape
        for idx in range(cuda.grid(1), N * P, cuda.gridsize(1)):
            r = idx // P
            c = idx - r * P
            dz[r, c] = deriv(a[r, c], da[r, c])

    return kernel


@lru_cache(maxsize=None)
def transpose_v1(nb_name):
    """out (P, M) = inp (M, P).T, one thread per element."""

    @cuda.jit(fastmath=FM)
    def kernel(inp, out):
        M, P = inp.shape
        for idx in range(cuda.grid(1), M * P, cuda.gridsize(1)):
            r = idx // P
            c = idx - r * P
            out[c, r] = inp[r, c]

    return kernel


@lru_cache(maxsize=None)
def colsum_atomic_v1(nb_name):
    """db (OUT,) += dz[n, j] by atomicAdd, one thread per element (db zeroed first)."""

    @cuda.jit(fastmath=FM)
    def kernel(dz, db):
        N, P = dz.shape
        for idx in range(cuda.grid(1), N * P, cuda.gridsize(1)):
            r = idx // P
            c = idx - r * P
            cuda.atomic.add(db, c, dz[r, c])

    return kernel


# --- versions: each is run(T, device inputs, device outputs) ----------------------------------
def _mm_tiled(T, A, B, C, ta=False, tb=False, bias=None, act="linear", rb=False):
    """The backend's tiled matmul kernels: one output per thread, or R x R when rb."""
    if rb:
        kern, per = K.matmul_rb(T, R, C.dtype.name, ta, tb, act, bias is not None), R * T
    else:
        kern, per = K.matmul(T, C.dtype.name, ta, tb, act, bias is not None), T
    M, P = C.shape
    kern[(_grid(P, per), _grid(M, per)), (T, T)](A, B, C[0] if bias is None else bias, C)


def _threads1d():
    return 8 if SIM else 256


def mm_v1(T, A, B, C):
    M, P = C.shape
    matmul_v1(C.dtype.name)[(_grid(P, T), _grid(M, T)), (T, T)](A, B, C)


def mm_v2(T, A, B, C):
    _mm_tiled(T, A, B, C)


def mm_v3(T, A, B, C):
    _mm_tiled(T, A, B, C, rb=True)


def fwd_v1(T, x, W, b, out):
    _mm_tiled(T, x, W, out)
    n = out.shape[0] * out.shape[1]
    tpb = _threads1d()
    bias_act_v1(out.dtype.name)[_grid(n, tpb), tpb](out, b)


def fwd_v2(T, x, W, b, out):
    _mm_tiled(T, x, W, out, bias=b, act=ACTIVATION)


def fwd_v3(T, x, W, b, out):
    _mm_tiled(T, x, W, out, bias=b, act=ACTIVATION, rb=True)


def bwd_v1(T, x, W, a, da, dz, dx, dW, db, scratch):
    N, OUT = dz.shape
    IN = x.shape[1]
    nb = dz.dtype.name
    tpb = _threads1d()
    dz_v1(nb)[_grid(N * OUT, tpb), tpb](a, da, dz)
    Wt, xt = scratch
    transpose_v1(nb)[_grid(IN * OUT, tpb), tpb](W, Wt)
    transpose_v1(nb)[_grid(N * IN, tpb), tpb](x, xt)
    _mm_tiled(T, dz, Wt, dx)
    _mm_tiled(T, xt, dz, dW)
    K.fill(nb)[_grid(OUT, tpb), tpb](db, np.dtype(nb).type(0))
    colsum_atomic_v1(nb)[_grid(N * OUT, tpb), tpb](dz, db)


def bwd_v2(T, x, W, a, da, dz, dx, dW, db, scratch):
    OUT = dz.shape[1]
    kern = K.dz_colsum(T, dz.dtype.name, ACTIVATION, True)
    kern[_grid(OUT, T), (T, T)](a, da, dz, db)
    _mm_tiled(T, dz, W, dx, tb=True)
    _mm_tiled(T, x, dz, dW, ta=True)


def bwd_v3(T, x, W, a, da, dz, dx, dW, db, scratch):
    OUT = dz.shape[1]
    kern = K.dz_colsum(T, dz.dtype.name, ACTIVATION, True)
    kern[_grid(OUT, T), (T, T)](a, da, dz, db)
    _mm_tiled(T, dz, W, dx, tb=True, rb=True)
    _mm_tiled(T, x, dz, dW, ta=True, rb=True)


VERSIONS = {
    "matmul": {1: ("naive, one thread per output", mm_v1),
               2: ("shared-memory tiles, one output per thread", mm_v2),
               3: ("tiles + 4x4 register blocking per thread", mm_v3)},
    "dense_forward": {1: ("tiled matmul + separate bias/activation kernel", fwd_v1),
                      2: ("bias + activation fused into the matmul epilogue", fwd_v2),
                      3: ("v2 on the register-blocked matmul", fwd_v3)},
    "dense_backward": {1: ("dz kernel, transposed copies, atomic db", bwd_v1),
                       2: ("fused dz+db tree reduction, in-place transposed reads", bwd_v2),
                       3: ("v2 on the register-blocked matmul", bwd_v3)},
}


RB_VERSIONS = {mm_v3, fwd_v3, bwd_v3}  # register-blocked: shared tiles grow with R


# --- problems: host inputs, reference, device buffers, flops ----------------------------------
class Problem:
    def __init__(self, kernel, size, dtype, rng):
        N, IN, OUT = size
        self.kernel, self.size, self.dtype = kernel, size, np.dtype(dtype)
        f = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
        if kernel == "matmul":
            A, B = f(N, IN), f(IN, OUT)
            self.host_in = (A, B)
            self.ref = (A.astype(np.float64) @ B,)
            self.out_shapes = ((N, OUT),)
            self.flops = 2 * N * IN * OUT
            self.depth = IN
            self.cpu = lambda: A @ B
        elif kernel == "dense_forward":
            x, W, b = f(N, IN), f(IN, OUT), f(OUT)
            self.host_in = (x, W, b)
            self.ref = (REF.dense_forward(*(v.astype(np.float64) for v in (x, W, b)), ACTIVATION),)
            self.out_shapes = ((N, OUT),)
            self.flops = 2 * N * IN * OUT
            self.depth = IN + 1
            self.cpu = lambda: REF.dense_forward(x, W, b, ACTIVATION)
        else:
            x, W, b = f(N, IN), f(IN, OUT), f(OUT)
            a = REF.dense_forward(x, W, b, ACTIVATION)
            da = f(N, OUT)
            self.host_in = (x, W, a, da)
            self.ref = REF.dense_backward(*(v.astype(np.float64) for v in (x, W, a, da)), ACTIVATION)
            self.out_shapes = ((N, OUT), (N, IN), (IN, OUT), (OUT,))  # dz, dx, dW, db
            self.flops = 4 * N * IN * OUT
            self.depth = max(N, OUT) + 1
            self.cpu = lambda: REF.dense_backward(x, W, a, da, ACTIVATION)
        self.dev_in = [cuda.to_device(v) for v in self.host_in]
        self.dev_out = [cuda.device_array(s, dtype=dtype) for s in self.out_shapes]
        if kernel == "dense_backward":
            self.scratch = (cuda.device_array((OUT, IN), dtype=dtype), cuda.device_array((IN, N), dtype=dtype))

    def run(self, fn, T):
        if self.kernel == "dense_backward":
            fn(T, *self.dev_in, *self.dev_out, self.scratch)
        else:
            fn(T, *self.dev_in, *self.dev_out)

    def check(self):
        """Largest error relative to the tolerance (<= 1 passes)."""
        outs = [d.copy_to_host() for d in self.dev_out]
        if self.kernel == "dense_backward":
            outs = outs[1:]  # dx, dW, db (dz is scratch)
        eps = np.finfo(self.dtype).eps
        worst = 0.0
        for got, want in zip(outs, self.ref):
            scale = max(1.0, float(np.abs(want).max()))
            err = float(np.abs(got.astype(np.float64) - want).max())
            worst = max(worst, err / (8 * eps * self.depth * scale))
        return worst


def _time(fn, repeat):
    """Median seconds per call; compilation excluded by a warm-up, the GPU synchronised."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        if SIM:
            t0 = time.perf_counter()
            fn()
            cuda.synchronize()
            times.append(time.perf_counter() - t0)
        else:
            start, end = cuda.event(), cuda.event()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cuda.event_elapsed_time(start, end) / 1e3)
    return float(np.median(times))


def _time_host(fn, repeat):
    fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _torch_peer(prob, repeat):
    """Seconds per call of the same arithmetic in PyTorch on the GPU (cuBLAS), or None."""
    if SIM:
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    t = [torch.as_tensor(v, device="cuda") for v in prob.host_in]
    if prob.kernel == "matmul":
        fn = lambda: t[0] @ t[1]  # noqa: E731
    elif prob.kernel == "dense_forward":
        fn = lambda: torch.sigmoid(torch.addmm(t[2], t[0], t[1]))  # noqa: E731
    else:
        def fn():
            dz = t[3] * t[2] * (1 - t[2])
            return dz @ t[1].T, t[0].T @ dz, dz.sum(0)
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return float(np.median(times))


def ptx_report(cc_text: str) -> int:
    """Compile every backend kernel variant to PTX for sm_<cc> and report its resources."""
    import re
    import shutil
    import subprocess
    import tempfile
    import types

    if SIM:
        raise SystemExit("--ptx compiles for a real GPU: run it without NUMBA_ENABLE_CUDASIM=1")
    cc = (int(cc_text[:-1]), int(cc_text[-1]))
    # Device functions called by a kernel are compiled for the current device's compute
    # capability, which needs a driver; without a GPU, name the target instead.
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    ptxas = shutil.which("ptxas") or (
        os.path.join(os.environ["CUDA_HOME"], "bin", "ptxas") if os.environ.get("CUDA_HOME") else None
    )
    print(f"# fastface cuda kernels compiled for sm_{cc_text}; ptxas: {ptxas or 'not found (PTX only)'}")
    failures = 0
    variants = []
    for dt in ("float32", "float64"):
        m2, m1 = f"{dt}[:, ::1]", f"{dt}[::1]"
        mm_sig = f"void({m2},{m2},{m1},{m2})"
        for T in (4, 8, 16, 32):
            for ta, tb, act, hb in ((False, False, "sigmoid", True), (False, True, "linear", False),
                                    (True, False, "linear", False), (False, False, "tanh", True)):
                tag = f"ta={int(ta)} tb={int(tb)} {act}{'+bias' if hb else ''}"
                variants.append((f"matmul T={T} {tag}", K.matmul(T, dt, ta, tb, act, hb), mm_sig, T * T, dt))
                bm = R * T
                if (bm * (T + 1) + T * (bm + 1)) * np.dtype(dt).itemsize <= CB.SHARED_BYTES:
                    rb = K.matmul_rb(T, R, dt, ta, tb, act, hb)
                    variants.append((f"matmul_rb T={T} {tag}", rb, mm_sig, T * T, dt))
            for act in ("linear", "sigmoid", "relu", "tanh"):
                kern = K.dz_colsum(T, dt, act, True)
                variants.append((f"dz_colsum T={T} {act}", kern, f"void({m2},{m2},{m2},{m1})", T * T, dt))
        for Rt in (32, 128, 1024):
            variants.append((f"softmax_rows R={Rt}", K.softmax_rows(Rt, dt), f"void({m2},{m2})", Rt, dt))
            variants.append((f"softmax_dz R={Rt}", K.softmax_dz(Rt, dt), f"void({m2},{m2},{m2})", Rt, dt))
        variants.append(("sigmoid", K.sigmoid(dt), f"void({m2},{m2})", 1024, dt))
        variants.append(("fill", K.fill(dt), f"void({m1},{dt})", 1024, dt))
    with tempfile.TemporaryDirectory() as tmp:
        for name, kern, sig, threads, dt in variants:
            try:
                ptx, _ = cuda.compile_ptx(kern.py_func, sig, cc=cc, launch_bounds=threads)
            except Exception as exc:  # noqa: BLE001 - report every failure, keep going
                failures += 1
                print(f"{name:38s} {dt}  COMPILE FAILED: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            f64 = len(re.findall(r"\.f64\b", ptx)) if dt == "float32" else 0
            line = f"{name:38s} {dt}  threads {threads:4d}  ptx ok"
            if dt == "float32":
                line += f"  f64 ops {f64}"
            if ptxas:
                path = os.path.join(tmp, "k.ptx")
                with open(path, "w") as fh:
                    fh.write(ptx)
                out = subprocess.run([ptxas, f"-arch=sm_{cc_text}", "-v", path, "-o", path + ".cubin"],
                                     capture_output=True, text=True)
                regs = re.search(r"Used (\d+) registers", out.stderr)
                spill = re.search(r"(\d+) bytes spill stores", out.stderr)
                smem = re.search(r"(\d+) bytes smem", out.stderr)
                if out.returncode or not regs:
                    failures += 1
                    line += f"  PTXAS FAILED: {out.stderr.strip()[:300]}"
                else:
                    n = int(regs.group(1))
                    fits = n * threads <= 65536
                    failures += not fits
                    line += (f"  regs {n:3d}  spill {spill.group(1) if spill else '?':>3s} B  smem "
                             f"{smem.group(1) if smem else '0':>5s} B  block {'fits' if fits else 'CANNOT LAUNCH'}")
            print(line)
    print(f"# {len(variants)} kernels, {failures} failure(s)")
    return 1 if failures else 0


def main(args) -> int:
    sizes = []
    for text in args.sizes or (SIM_SIZES if SIM else GPU_SIZES):
        try:
            size = tuple(int(v) for v in text.lower().split("x"))
        except ValueError:
            size = ()
        if len(size) != 3 or min(size) < 1:
            raise SystemExit(f"--sizes wants N x IN x OUT with three positive integers, e.g. 32x400x25; got {text!r}")
        sizes.append(size)
    blocks = args.block or (SIM_BLOCKS if SIM else GPU_BLOCKS)
    for T in blocks:
        if not 1 <= T <= 32:
            raise SystemExit(f"--block wants tile sides from 1 to 32 (T x T <= 1024 threads); got {T}")
    repeat = args.repeat or (1 if SIM else 20)
    if SIM:
        sys.setswitchinterval(CB.SIM_SWITCH_INTERVAL_S)
    where = "CUDA simulator (smoke check: timings meaningless)" if SIM else cuda.get_current_device().name
    if isinstance(where, bytes):
        where = where.decode()
    print(f"# fastface cuda_lab on {where}; activation {ACTIVATION}; repeat {repeat}; "
          f"config.CUDA_TILE={config.CUDA_TILE}")
    rng = np.random.default_rng(0)
    failures = 0
    for kernel in args.kernel:
        versions = {v: VERSIONS[kernel][v] for v in (args.version or VERSIONS[kernel]) if v in VERSIONS[kernel]}
        for dtype in args.dtype:
            for size in sizes:
                prob = Problem(kernel, size, dtype, rng)
                label = f"{kernel:14s} {'x'.join(map(str, size)):>15s} {dtype}"
                t_cpu = _time_host(prob.cpu, min(repeat, 5))
                gf = lambda t: prob.flops / t / 1e9 if t > 0 else float("nan")  # noqa: E731
                print(f"{label}  numpy-cpu            {t_cpu * 1e3:10.3f} ms {gf(t_cpu):9.1f} GFLOP/s")
                t_torch = _torch_peer(prob, repeat)
                if t_torch is not None:
                    print(f"{label}  torch-cuda (cuBLAS)  {t_torch * 1e3:10.3f} ms {gf(t_torch):9.1f} GFLOP/s")
                base = {}
                for v, (what, fn) in versions.items():
                    for T in blocks:
                        shared = (R * T * (T + 1) + T * (R * T + 1)) * prob.dtype.itemsize
                        if fn in RB_VERSIONS and shared > CB.SHARED_BYTES:
                            print(f"{label}  v{v} block {T:2d}x{T:<2d}     skipped: its shared tiles "
                                  f"need {shared} bytes > {CB.SHARED_BYTES}  # {what}")
                            continue
                        prob.run(fn, T)
                        cuda.synchronize()
                        worst = prob.check()
                        ok = worst <= 1.0
                        failures += not ok
                        t = _time(lambda: prob.run(fn, T), repeat)
                        base.setdefault(T, t)
                        peers = f"x{base[T] / t:5.2f} vs v{min(versions)}  x{t_cpu / t:7.2f} vs numpy"
                        if t_torch is not None:
                            peers += f"  x{t_torch / t:5.2f} vs torch"
                        print(
                            f"{label}  v{v} block {T:2d}x{T:<2d}     {t * 1e3:10.3f} ms {gf(t):9.1f} GFLOP/s  "
                            f"{peers}  check {'OK' if ok else 'MISMATCH'} (err/tol {worst:.2g})  # {what}"
                        )
    print(f"# {'all checks passed' if not failures else f'{failures} check(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(ptx_report(ARGS.ptx) if ARGS.ptx is not None else main(ARGS))
