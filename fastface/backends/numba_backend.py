"""The numba backend: @njit CPU kernels, fused epilogues, prange over what is written.

Dimensions:
    N     examples (rows of x, a, da, dx)
    IN    input features (columns of x, rows of W)
    OUT   units (columns of W, a, da; length of b)
    M, K, P   matmul: a (M, K) @ b (K, P) -> (M, P)

    matmul(a, b)                            a (M, K), b (K, P)                 -> (M, P)
    sigmoid(z)                              z (M, P)                           -> (M, P)
    dense_forward(x, W, b, activation)      x (N, IN), W (IN, OUT), b (OUT,)  -> a (N, OUT)
    dense_backward(x, W, a, da, activation) -> dx (N, IN), dW (IN, OUT), db (OUT,)

Arrays arrive validated by :mod:`fastface.ops` (float32 or float64, one dtype, shapes
checked, N >= 1) and may be strided. Each public function picks a private jitted core from
a table by problem size and calls it with preallocated outputs:

- *small* problems (``config.NUMBA_SERIAL_FLOPS`` multiply-adds or fewer) run serially,
  unpacked, no threads: a row-major B (W, dz) on the narrow micro-kernel; a column-major B
  (a Fortran-ordered W as fastface.model stores it, or W.T in dx = dz @ W.T) as contiguous
  dot products of rows of A with columns of B (no copy of B); the backward adds dz (N, OUT);
- *large* ones pack panels and run ``prange`` over blocks of the output rows (see
  :mod:`._numba_gemm`). dx is parallel over rows of dx, dW over rows of dW (IN), db is summed
  in per-thread partials then reduced serially: no racy ``+=``.

Fusion: the forward adds the bias and applies the activation to each band of rows right
after its GEMM (still in cache); the backward computes dz = act'(a) * da and db in one pass
and feeds dz to both GEMMs (dx = dz @ W.T, dW = x.T @ dz).

The GEMM itself is a register-blocked SIMD micro-kernel (:mod:`._numba_simd`, AVX-512/AVX2
FMA vectors as LLVM IR) inside BLIS-style packing loops (:mod:`._numba_gemm`); activations
and their derivatives are :mod:`._numba_act` (exp is a vectorisable intrinsic, 1 ulp).
``config.NUMBA_KERNEL = "naive"`` switches every call to the plain-loop reference kernels.

Every core is compiled once per dtype with an explicit signature whose input arrays are
read-only, any-layout (``float32[:, :]``) and whose outputs are C-contiguous: C-contiguous,
transposed and sliced inputs all share one machine-code version, so the first call compiles a
fixed set of kernels (``cache=True`` keeps them on disk) instead of one per stride pattern.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import config
from . import BackendUnavailableError

try:
    import numba
    from numba import njit, types

    from ._numba_act import CODES, FASTMATH, NONE, _dz_parallel, _dz_serial, _sigmoid_parallel, _sigmoid_serial
    from ._numba_gemm import _gemm_naive, _gemm_parallel, _gemm_serial

    _IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - numba is a core dependency
    _IMPORT_ERROR = f"numba could not be imported ({exc}); pip install numba"

NAME = "numba"

__all__ = ["check", "matmul", "sigmoid", "dense_forward", "dense_backward", "compile_all", "KERNELS"]


def check() -> None:
    """Raise BackendUnavailableError when numba cannot run here."""
    if _IMPORT_ERROR is not None:
        raise BackendUnavailableError(_IMPORT_ERROR)


# --- the dispatch table of private jitted cores ----------------------------------------------
# (operation, kind) -> jitted core; kind is "small" (serial), "large" (prange) or "naive"
# (reference loops). Cores of one operation share one argument list:
#   gemm     (A (M, K), B (K, P), C (M, P), b (P,) or (0,), act, mc, kc, nc, threads)
#   dz       (a (N, OUT), da (N, OUT), dz (N, OUT), db (OUT,), act, threads)
#   sigmoid  (z (M, P), out (M, P), threads)
KERNELS = {}
_SIGNATURES = {}
if _IMPORT_ERROR is None:
    KERNELS = {
        ("gemm", "small"): _gemm_serial,
        ("gemm", "large"): _gemm_parallel,
        ("gemm", "naive"): _gemm_naive,
        ("dz", "small"): _dz_serial,
        ("dz", "large"): _dz_parallel,
        ("dz", "naive"): _dz_serial,
        ("sigmoid", "small"): _sigmoid_serial,
        ("sigmoid", "large"): _sigmoid_parallel,
        ("sigmoid", "naive"): _sigmoid_serial,
    }
    _i = types.int64
    # operation -> argument types from (read-only any-layout 1-D, 2-D; C-contiguous 1-D, 2-D)
    _SIGNATURES = {
        "gemm": lambda r1, r2, c1, c2: (r2, r2, c2, r1, _i, _i, _i, _i, _i),
        "dz": lambda r1, r2, c1, c2: (r2, r2, c2, c1, _i, _i),
        "sigmoid": lambda r1, r2, c1, c2: (r2, c2, _i),
    }

_COMPILED: dict = {}


def _core(op: str, kind: str, dtype: np.dtype):
    """The core (op, kind) for `dtype`, compiled (or loaded from the disk cache) on first use.

    Compiled for one explicit signature per dtype, inputs read-only and of any layout
    (``float32[:, :]``), outputs C-contiguous: C-ordered, transposed and sliced inputs all
    run the same machine code, so the first call compiles a fixed set of kernels instead of
    one per stride pattern. The dispatcher converts C/F-ordered arrays to that type for free.
    """
    key = (op, kind, dtype)
    fn = _COMPILED.get(key)
    if fn is None:
        disp = KERNELS[(op, kind)]
        nbt = numba.from_dtype(dtype)
        argtypes = _SIGNATURES[op](
            types.Array(nbt, 1, "A", readonly=True),
            types.Array(nbt, 2, "A", readonly=True),
            types.Array(nbt, 1, "C"),
            types.Array(nbt, 2, "C"),
        )
        options = {k: v for k, v in disp.targetoptions.items() if k != "nopython"}
        try:
            fn = njit([types.int64(*argtypes)], cache=True, **options)(disp.py_func)
        except Exception as exc:  # an LLVM target without the SIMD intrinsics: keep working
            if kind == "naive":
                raise
            warnings.warn(
                f"fastface numba backend: the blocked {op} kernel failed to compile for {dtype} "
                f"({type(exc).__name__}: {exc}); using the plain-loop reference kernel instead",
                RuntimeWarning,
                stacklevel=3,
            )
            fn = _core(op, "naive", dtype)
        _COMPILED[key] = fn
    return fn


def compile_all(dtypes=("float32", "float64"), kinds=("small", "large")) -> float:
    """Compile (or load from the disk cache) every core for `dtypes`; return the seconds taken."""
    import time

    t0 = time.perf_counter()
    for dt in dtypes:
        for op, kind in KERNELS:
            if kind in kinds:
                _core(op, kind, np.dtype(dt))
    return time.perf_counter() - t0


# --- validating wrappers (the backend interface) ----------------------------------------------
def _contiguous(*arrays):
    """Contiguous copies, for the rare arrays whose strides are not whole elements (e.g. a
    float field of a packed structured array); the cores report those by returning 1."""
    return [np.ascontiguousarray(a) for a in arrays]


def _unaligned(*arrays) -> int:
    """1 when Numba refused a call because an input is unaligned (strides that are not whole
    elements: numba types such arrays as unaligned and the cores check too), else re-raise."""
    if any(isinstance(a, np.ndarray) and not a.flags.aligned for a in arrays):
        return 1
    raise


def _call(fn, *args) -> int:
    """fn(*args): 0 when done, 1 when an input is unaligned and needs a contiguous copy."""
    try:
        return fn(*args)
    except TypeError:
        return _unaligned(*args)


def _kind(work: int) -> str:
    """'small', 'large' or 'naive' for a problem of `work` multiply-adds (config.NUMBA_*)."""
    if config.NUMBA_KERNEL == "naive":
        return "naive"
    return "small" if work <= config.NUMBA_SERIAL_FLOPS else "large"


_NO_BIAS = {np.dtype(np.float32): np.zeros(0, np.float32), np.dtype(np.float64): np.zeros(0, np.float64)}


def _gemm(A, B, b, act, kind):
    """act(A (M, K) @ B (K, P) + b) -> new C (M, P) through the (gemm, kind) core.

    Kept lean (no helper calls on the common path): at the course's 32 x 400 x 25 layer the
    whole kernel takes a few microseconds, so Python overhead here is a visible share.
    """
    C = np.empty((A.shape[0], B.shape[1]), dtype=A.dtype)
    fn = _COMPILED.get(("gemm", kind, A.dtype)) or _core("gemm", kind, A.dtype)
    threads = numba.get_num_threads() if kind == "large" else 1
    cfg = config
    try:
        bad = fn(A, B, C, b, act, cfg.NUMBA_MC, cfg.NUMBA_KC, cfg.NUMBA_NC, threads)
    except TypeError:
        bad = _unaligned(A, B, b)
    if bad:
        A, B, b = _contiguous(A, B, b)
        fn(A, B, C, b, act, cfg.NUMBA_MC, cfg.NUMBA_KC, cfg.NUMBA_NC, threads)
    return C


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, P) -> (M, P)."""
    return _gemm(a, b, _NO_BIAS[a.dtype], NONE, _kind(a.shape[0] * a.shape[1] * b.shape[1]))


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str) -> np.ndarray:
    """x (N, IN), W (IN, OUT), b (OUT,) -> a = act(x @ W + b) (N, OUT), bias and act fused."""
    return _gemm(x, W, b, CODES[activation], _kind(x.shape[0] * x.shape[1] * W.shape[1]))


def dense_backward(x: np.ndarray, W: np.ndarray, a: np.ndarray, da: np.ndarray, activation: str):
    """Gradients through one dense layer given da = dL/da.

    x (N, IN), W (IN, OUT), a (N, OUT) forward output, da (N, OUT)
    -> dx (N, IN) = dz @ W.T, dW (IN, OUT) = x.T @ dz, db (OUT,) = sum_n dz,
    with dz = act'(a) * da (softmax: a * (da - sum(a * da))) and db computed in one fused pass
    (per-thread partials of db on the large path), then dx parallel over the rows of dx and
    dW over the rows of dW.
    """
    N, IN = x.shape
    OUT = W.shape[1]
    dtype = x.dtype
    kind = _kind(N * IN * OUT)
    dz = np.empty((N, OUT), dtype=dtype)
    db = np.empty(OUT, dtype=dtype)
    threads = numba.get_num_threads() if kind == "large" else 1
    dz_core = _core("dz", kind, dtype)
    if _call(dz_core, a, da, dz, db, CODES[activation], threads):
        a, da = _contiguous(a, da)
        dz_core(a, da, dz, db, CODES[activation], threads)
    nob = _NO_BIAS[dtype]
    dx = _gemm(dz, W.T, nob, NONE, kind)
    dW = _gemm(x.T, dz, nob, NONE, kind)
    return dx, dW, db


def sigmoid(z: np.ndarray) -> np.ndarray:
    """z (M, P) -> 1 / (1 + exp(-z)) (M, P), overflow-safe."""
    out = np.empty(z.shape, dtype=z.dtype)
    if config.NUMBA_KERNEL != "naive" and z.size > config.NUMBA_PARALLEL_ELEMENTS:
        fn, threads = _core("sigmoid", "large", z.dtype), numba.get_num_threads()
    else:
        fn, threads = _core("sigmoid", "small", z.dtype), 1
    if _call(fn, z, out, threads):
        fn(np.ascontiguousarray(z), out, threads)
    return out
