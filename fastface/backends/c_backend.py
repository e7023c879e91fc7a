"""The ``c`` backend: fastface's C kernels (csrc/), compiled by cffi at install time.

Dimensions:
    N    examples in the batch (rows)
    IN   input features
    OUT  units of the layer
    M, K, P  matmul: (M, K) @ (K, P)

Same functions and semantics as :mod:`fastface.backends.reference`. Every matmul and every
activation (forward and backward, softmax included) runs in C; one C call per kernel.

Arrays reach C without a copy through ``ffi.from_buffer`` (C- or F-contiguous arrays) or
their data address (other views, kept alive for the call), with their strides in elements: the
C side reads any strides (sliced, transposed, broadcast, negative). A copy happens only for
arrays C cannot address element by element: non-native byte order, misaligned data, or a
stride that is not a multiple of the item size.

SIMD level and cache blocks: chosen by the C side (the widest SIMD the CPU runs, tuned
blocks); override with :func:`set_options` or ``$FASTFACE_C_SIMD`` (scalar, avx2, avx512),
e.g. to compare levels or to run under valgrind.

A C status code other than FF_OK becomes an exception carrying the C side's message
(``ff_strerror``): MemoryError for FF_ERR_NOMEM, ValueError otherwise.
"""

from __future__ import annotations

import os

import numpy as np

from . import BackendUnavailableError

NAME = "c"

try:
    from .._cfastface import ffi, lib
except ImportError as exc:  # not built (no compiler at install time) or cannot load
    ffi = lib = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

__all__ = [
    "check",
    "info",
    "set_options",
    "matmul",
    "matmul_naive",
    "sigmoid",
    "sigmoid_backward",
    "dense_forward",
    "dense_backward",
    "zeros",
]

SIMD_LEVELS = {"scalar": 0, "avx2": 1, "avx512": 2}
_OPTION_ERROR: str | None = None


def check() -> None:
    """Raise BackendUnavailableError with the reason when the extension cannot be used."""
    if _OPTION_ERROR is not None:
        raise BackendUnavailableError(_OPTION_ERROR)
    if _IMPORT_ERROR is None:
        return
    if isinstance(_IMPORT_ERROR, ModuleNotFoundError) and "_cfastface" in str(_IMPORT_ERROR):
        raise BackendUnavailableError(
            "fastface._cfastface was not built (no working C compiler at install time?); "
            "install a C compiler (gcc, clang or MSVC) and reinstall fastface "
            "(pip install --force-reinstall --no-deps <fastface source>)"
        )
    raise BackendUnavailableError(
        f"fastface._cfastface could not be loaded ({_IMPORT_ERROR}); reinstall fastface "
        "with a C compiler so the extension matches this Python"
    )


# ---- options --------------------------------------------------------------------------------
_options = {"simd": os.environ.get("FASTFACE_C_SIMD", "auto"), "mc": 0, "kc": 0, "nc": 0}
_cfg = None  # the ff_config * passed to C; NULL (defaults) until an option is set


def _simd_code(name) -> int:
    if name in (None, "auto"):
        return -1
    if name not in SIMD_LEVELS:
        raise ValueError(
            f"unknown SIMD level {name!r}; expected 'auto' or one of {list(SIMD_LEVELS)} "
            "(set by set_options(simd=...) or $FASTFACE_C_SIMD)"
        )
    code = SIMD_LEVELS[name]
    best = lib.ff_simd_best()
    if code > best:
        raise ValueError(
            f"SIMD level {name!r} is not supported on this CPU or build; the best here is "
            f"{ffi.string(lib.ff_simd_name(best)).decode()!r}"
        )
    return code


def set_options(simd=None, mc: int = 0, kc: int = 0, nc: int = 0) -> None:
    """Choose the C matmul's SIMD level and cache blocks (0 or None = the tuned default).

    simd: None/'auto', 'scalar', 'avx2' or 'avx512'. mc, kc, nc: rows of A, depth and
    columns of B per packed block (rounded to the micro-tile by C). Mainly for tests and
    benchmarks; the defaults are what you want.
    """
    global _cfg
    check()
    for name, value in (("mc", mc), ("kc", kc), ("nc", nc)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"set_options: {name} must be an integer >= 0 (0 = default); got {value!r}")
    code = _simd_code(simd)
    _options.update(simd=simd or "auto", mc=int(mc), kc=int(kc), nc=int(nc))
    if code == -1 and not (mc or kc or nc):
        _cfg = None
    else:
        _cfg = ffi.new("ff_config *", {"simd": code, "mc": int(mc), "kc": int(kc), "nc": int(nc)})


def info() -> dict:
    """What the C side runs here: {'simd': level used, 'simd_best': ..., 'options': ...}."""
    check()
    best = lib.ff_simd_best()
    code = -1 if _cfg is None else _cfg.simd
    used = best if code == -1 else code
    name = lambda lvl: ffi.string(lib.ff_simd_name(lvl)).decode()  # noqa: E731
    return {"simd": name(used), "simd_best": name(best), "options": dict(_options)}


if lib is not None and _options["simd"] not in (None, "auto"):
    try:
        set_options(simd=_options["simd"])
    except ValueError as exc:  # a bad $FASTFACE_C_SIMD: say so when the backend is asked for
        _OPTION_ERROR = f"$FASTFACE_C_SIMD={_options['simd']!r} is invalid: {exc}"


# ---- calling C ------------------------------------------------------------------------------
# Per-call overhead matters for small layers (a few microseconds is the whole budget), so
# the common cases (C- or F-contiguous, native, aligned) take a short path through
# ffi.from_buffer; other views pay for their data address (arr.ctypes, ~2 us).
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_CTYPES = {_F32: "float *", _F64: "double *"}
_BUFTYPES = {_F32: "float[]", _F64: "double[]"}
_ACTIVATIONS = {"linear": 0, "sigmoid": 1, "relu": 2, "tanh": 3, "softmax": 4}
_ERRORS = {6: MemoryError}  # FF_ERR_NOMEM; every other code is a ValueError
_NAMES = ("matmul", "matmul_naive", "sigmoid", "sigmoid_backward", "dense_forward", "dense_backward")
# (kernel name, dtype) -> the C function; dict dispatch, one lookup per call
_KERNELS = (
    {}
    if lib is None
    else {(name, dt): getattr(lib, f"ff_{name}_{suf}") for name in _NAMES for dt, suf in ((_F32, "f32"), (_F64, "f64"))}
)


def _raise_for(rc: int, where: str) -> None:
    if rc != 0:
        message = ffi.string(lib.ff_strerror(rc)).decode()
        raise _ERRORS.get(rc, ValueError)(f"c backend {where}: {message} (C status {rc})")


def _in(arr: np.ndarray):
    """(pointer, row stride, column stride, array kept alive) of a 2-D input, strides in
    elements. A copy is made only when C cannot address the elements: non-native byte
    order, misaligned data, or a stride that is not a multiple of the item size."""
    flags = arr.flags
    dtype = arr.dtype
    if flags.aligned and dtype.isnative:
        if flags.c_contiguous:
            return ffi.from_buffer(_BUFTYPES[dtype], arr), arr.shape[1], 1, arr
        if flags.f_contiguous:  # a transposed array: its .T is C-contiguous, same first element
            return ffi.from_buffer(_BUFTYPES[dtype], arr.T), 1, arr.shape[0], arr
        item = arr.itemsize
        rs, cs = arr.strides
        if rs % item == 0 and cs % item == 0:  # any other view: its first element's address
            return ffi.cast(_CTYPES[dtype], arr.ctypes.data), rs // item, cs // item, arr
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))
    return ffi.from_buffer(_BUFTYPES[arr.dtype], arr), arr.shape[1], 1, arr


def _vec(arr: np.ndarray):
    """(pointer, stride, array kept alive) of a 1-D input."""
    flags = arr.flags
    if flags.c_contiguous and flags.aligned and arr.dtype.isnative:
        return ffi.from_buffer(_BUFTYPES[arr.dtype], arr), 1, arr
    ptr, _, inc, arr = _in(arr[None, :])
    return ptr, inc, arr


def _out(shape, dtype):
    arr = np.empty(shape, dtype=dtype if dtype.isnative else dtype.newbyteorder("="))
    return arr, ffi.from_buffer(_BUFTYPES[arr.dtype], arr, require_writable=True)


def _cfg_ptr():
    return _cfg if _cfg is not None else ffi.NULL


# ---- kernels --------------------------------------------------------------------------------
def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, P) -> (M, P), blocked SIMD matmul."""
    (M, K), P = a.shape, b.shape[1]
    pa, rsa, csa, _a = _in(a)
    pb, rsb, csb, _b = _in(b)
    c, pc = _out((M, P), a.dtype)
    _raise_for(_KERNELS["matmul", c.dtype](M, P, K, pa, rsa, csa, pb, rsb, csb, pc, P, _cfg_ptr()), "matmul")
    return c


def matmul_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, P) -> (M, P) by the C triple loop (the reference inside C)."""
    (M, K), P = a.shape, b.shape[1]
    pa, rsa, csa, _a = _in(a)
    pb, rsb, csb, _b = _in(b)
    c, pc = _out((M, P), a.dtype)
    _raise_for(_KERNELS["matmul_naive", c.dtype](M, P, K, pa, rsa, csa, pb, rsb, csb, pc, P), "matmul_naive")
    return c


def sigmoid(z: np.ndarray) -> np.ndarray:
    """z (M, P) -> 1 / (1 + exp(-z)) (M, P), overflow-safe."""
    M, P = z.shape
    pz, rsz, csz, _z = _in(z)
    out, po = _out((M, P), z.dtype)
    _raise_for(_KERNELS["sigmoid", out.dtype](M, P, pz, rsz, csz, po, P), "sigmoid")
    return out


def sigmoid_backward(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    """a (M, P) sigmoid output, da (M, P) -> dz = da * a * (1 - a) (M, P)."""
    M, P = a.shape
    pa, rsa, csa, _a = _in(a)
    pd, rsd, csd, _d = _in(da)
    dz, pdz = _out((M, P), a.dtype)
    _raise_for(_KERNELS["sigmoid_backward", dz.dtype](M, P, pa, rsa, csa, pd, rsd, csd, pdz, P), "sigmoid_backward")
    return dz


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str) -> np.ndarray:
    """x (N, IN), W (IN, OUT), b (OUT,) -> a = act(x @ W + b) (N, OUT), one C call."""
    (N, IN), OUT = x.shape, W.shape[1]
    px, rsx, csx, _x = _in(x)
    pw, rsw, csw, _w = _in(W)
    pb, incb, _b = _vec(b)
    out, po = _out((N, OUT), x.dtype)
    rc = _KERNELS["dense_forward", out.dtype](
        N, IN, OUT, px, rsx, csx, pw, rsw, csw, pb, incb, _ACTIVATIONS[activation], po, OUT,
        _cfg_ptr(),
    )
    _raise_for(rc, "dense_forward")
    return out


def dense_backward(x: np.ndarray, W: np.ndarray, a: np.ndarray, da: np.ndarray, activation: str):
    """Gradients through one dense layer, given a (N, OUT) the forward output and da = dL/da.

    x (N, IN), W (IN, OUT) -> dx (N, IN) = dz @ W.T, dW (IN, OUT) = x.T @ dz,
    db (OUT,) = sum_n dz, where dz = act'(a) * da; one C call.
    """
    (N, IN), OUT = x.shape, W.shape[1]
    px, rsx, csx, _x = _in(x)
    pw, rsw, csw, _w = _in(W)
    pa, rsa, csa, _a = _in(a)
    pd, rsd, csd, _d = _in(da)
    dz, pdz = _out((N, OUT), x.dtype)
    dx, pdx = _out((N, IN), x.dtype)
    dW, pdW = _out((IN, OUT), x.dtype)
    db, pdb = _out((OUT,), x.dtype)
    rc = _KERNELS["dense_backward", dx.dtype](
        N, IN, OUT, px, rsx, csx, pw, rsw, csw, pa, rsa, csa, pd, rsd, csd,
        _ACTIVATIONS[activation], pdz, OUT, pdx, IN, pdW, OUT, pdb, _cfg_ptr(),
    )
    _raise_for(rc, "dense_backward")
    return dx, dW, db


def zeros(shape, dtype) -> np.ndarray:
    """Host zeros (the C backend works on NumPy arrays)."""
    return np.zeros(shape, dtype=dtype)
