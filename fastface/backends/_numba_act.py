"""Row-wise activation epilogues and their derivatives for the numba backend.

Dimensions:
    N     rows (examples); a row slice r0:r1 is what one thread owns
    P     columns of the row (OUT units of a layer)

    _bias_act_rows(C, b, act, r0, r1)          C[r0:r1] = act(C[r0:r1] + b)      in place
    _dz_rows(a, da, dz, act, r0, r1, db)       dz[r0:r1] = act'(a) * da,  db += sum of those rows

exp and tanh are vectorisable intrinsics (:mod:`._numba_simd`: exp within 1 ulp, tanh within
3 ulp of NumPy), not libm calls, so the epilogues run as SIMD loops. Activations travel as small integer codes (``CODES``), one kernel for all of them; the codes are
the only place an activation name meets compiled code. Formulas follow
:mod:`fastface.activations` exactly: sigmoid never evaluates exp of a positive number,
softmax subtracts the row maximum, relu lets NaN through like ``np.maximum``; derivatives are
computed from the forward output ``a``. Constants are built in the array's own dtype so
float32 stays float32 (no silent float64 arithmetic), and the fastmath set keeps NaN and inf
meaningful (no ``nnan``/``ninf``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..activations import NAMES
from ._numba_simd import exp_ieee, flat_span, tanh_ieee

__all__ = ["FASTMATH", "CODES", "NONE", "_bias_act_rows", "_dz_rows", "_dz_serial", "_dz_parallel",
           "_sigmoid_serial", "_sigmoid_parallel"]

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# activation name -> code; NONE: no bias, no activation (plain matmul)
CODES = {name: i for i, name in enumerate(NAMES)}
NONE = -1
LINEAR = CODES["linear"]
SIGMOID = CODES["sigmoid"]
RELU = CODES["relu"]
TANH = CODES["tanh"]
SOFTMAX = CODES["softmax"]


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _exp1(x):
    """exp(x) in the dtype of x, vectorisable (see _numba_simd.exp_ieee): within 1 ulp of
    np.exp, exp(-inf) = 0, exp(inf) = inf, NaN stays NaN, subnormals rounded once."""
    return exp_ieee(x)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _unaligned(arr):
    """True when a stride of arr is not a whole number of elements (the cores then return 1
    and the Python wrapper retries with a contiguous copy)."""
    for s in arr.strides:
        if s % arr.itemsize:
            return True
    return False


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _sigmoid1(z, one):
    """Overflow-safe logistic of one scalar: exp(-|z|) never overflows."""
    e = _exp1(-abs(z))
    r = one / (one + e)
    return r if z >= 0 else e * r


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _relu1(z, zero):
    """max(z, 0) with NaN propagating as np.maximum does."""
    return z if (z > zero or z != z) else zero


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _sigmoid_rows(z, out, r0, r1):
    """out[r0:r1] = sigmoid(z[r0:r1]); z (M, P) any strides, out (M, P).

    Rows of unit stride go through unit-stride views: Numba's any-layout indexing z[i, j]
    kept this loop scalar (256 x 4096 float32, fastface.ops.sigmoid on 2 threads: 8.1 ms,
    now 0.22 ms; NumPy's 1 / (1 + exp(-z)) 2.2 ms).
    """
    one = out.dtype.type(1)
    P = z.shape[1]
    unit = z.strides[1] == z.itemsize
    for i in range(r0, r1):
        dst = out[i]
        if unit:
            src = flat_span(z[i], 0, P)
            for j in range(P):
                dst[j] = _sigmoid1(src[j], one)
        else:
            for j in range(P):
                dst[j] = _sigmoid1(z[i, j], one)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _softmax_row(row):
    """In place row softmax, max subtracted; a NaN anywhere makes the row NaN (as NumPy)."""
    P = row.shape[0]
    m = row[0]
    for j in range(1, P):
        v = row[j]
        if v > m or v != v:
            m = v
            if v != v:
                break
    s = row.dtype.type(0)
    for j in range(P):
        e = _exp1(row[j] - m)
        row[j] = e
        s += e
    inv = row.dtype.type(1) / s
    for j in range(P):
        row[j] = row[j] * inv


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _bias_act_rows(C, b, act, r0, r1):
    """C[r0:r1] = act(C[r0:r1] + b) in place; C (M, P), b (P,) or (0,) for no bias.

    Rows that form one contiguous run (a C-contiguous C) take two passes: the bias row by row,
    then the elementwise activation over the run; otherwise (softmax, strided C) one pass row
    by row.
    """
    P = C.shape[1]
    one = C.dtype.type(1)
    zero = C.dtype.type(0)
    if b.shape[0] == 0:
        bias = np.zeros(P, dtype=C.dtype)
    elif b.strides[0] == b.itemsize:
        bias = flat_span(b, 0, P)  # unit-stride view: the row loops below vectorise
    else:
        bias = np.ascontiguousarray(b)
    isz = C.itemsize
    if act != SOFTMAX and r1 > r0 and C.strides[1] == isz and C.strides[0] == P * isz:
        # rows r0..r1 are one contiguous run: add the bias row by row (cheap even with the
        # scalar tail of a short row), then the activation over the whole run in full vectors
        # (OUT = 25: the per-row loop ran 9 of every 25 exp/tanh scalar; measured, 32x400x25
        # float32 forward with sigmoid 5.1 -> 4.0 us, tanh 5.2 -> 4.0 us)
        for i in range(r0, r1):
            row = C[i]
            for j in range(P):
                row[j] += bias[j]
        run = flat_span(C[r0], 0, (r1 - r0) * P)
        if act == SIGMOID:
            for j in range(run.shape[0]):
                run[j] = _sigmoid1(run[j], one)
        elif act == TANH:
            for j in range(run.shape[0]):
                run[j] = tanh_ieee(run[j])
        elif act == RELU:
            for j in range(run.shape[0]):
                run[j] = _relu1(run[j], zero)
        return
    for i in range(r0, r1):
        row = C[i]
        if act == SIGMOID:
            for j in range(P):
                row[j] = _sigmoid1(row[j] + bias[j], one)
        elif act == RELU:
            for j in range(P):
                row[j] = _relu1(row[j] + bias[j], zero)
        elif act == TANH:
            for j in range(P):
                row[j] = tanh_ieee(row[j] + bias[j])
        else:
            for j in range(P):
                row[j] += bias[j]
            if act == SOFTMAX:
                _softmax_row(row)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _dz_rows(a, da, dz, act, r0, r1, db):
    """dz[r0:r1] = act'(a) * da from the forward output a; db (P,) += column sums of those rows.

    a, da (N, P) any strides; dz (N, P); db (P,) a per-thread partial owned by the caller.
    """
    P = a.shape[1]
    one = dz.dtype.type(1)
    zero = dz.dtype.type(0)
    for i in range(r0, r1):
        if act == SIGMOID:
            for j in range(P):
                aij = a[i, j]
                dz[i, j] = da[i, j] * aij * (one - aij)
        elif act == RELU:
            for j in range(P):
                dz[i, j] = da[i, j] if a[i, j] > zero else zero
        elif act == TANH:
            for j in range(P):
                aij = a[i, j]
                dz[i, j] = da[i, j] * (one - aij * aij)
        elif act == SOFTMAX:
            s = zero
            for j in range(P):
                s += a[i, j] * da[i, j]
            for j in range(P):
                dz[i, j] = a[i, j] * (da[i, j] - s)
        else:
            for j in range(P):
                dz[i, j] = da[i, j]
        for j in range(P):
            db[j] += dz[i, j]


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _dz_serial(a, da, dz, db, act, threads):
    """dz (N, OUT) = act'(a) * da and db (OUT,) = sum_n dz, one thread (threads ignored).

    Returns 1 (nothing done) when an input stride is not a whole number of elements, else 0.
    """
    if _unaligned(a) or _unaligned(da):
        return 1
    db[:] = 0
    _dz_rows(a, da, dz, act, 0, a.shape[0], db)
    return 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True, parallel=True)
def _dz_parallel(a, da, dz, db, act, threads):
    """dz (N, OUT) = act'(a) * da, prange over row chunks; db (OUT,) summed from per-chunk
    partials (each chunk owns one row of `part`), then reduced serially: no racy +=.
    Returns 1 (nothing done) when an input stride is not a whole number of elements, else 0."""
    if _unaligned(a) or _unaligned(da):
        return 1
    N, OUT = a.shape
    chunks = max(1, min(N, threads))
    step = (N + chunks - 1) // chunks
    part = np.zeros((chunks, OUT), dtype=dz.dtype)
    for t in prange(chunks):
        _dz_rows(a, da, dz, act, t * step, min(N, (t + 1) * step), part[t])
    db[:] = 0
    for t in range(chunks):
        for j in range(OUT):
            db[j] += part[t, j]
    return 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _sigmoid_serial(z, out, threads):
    """out (M, P) = sigmoid(z (M, P)), one thread (threads ignored); 1 if z is unaligned."""
    if _unaligned(z):
        return 1
    _sigmoid_rows(z, out, 0, z.shape[0])
    return 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True, parallel=True)
def _sigmoid_parallel(z, out, threads):
    """out (M, P) = sigmoid(z (M, P)), prange over row chunks (each writes its own rows);
    1 if z is unaligned."""
    if _unaligned(z):
        return 1
    M = z.shape[0]
    chunks = max(1, min(M, 4 * threads))
    step = (M + chunks - 1) // chunks
    for t in prange(chunks):
        _sigmoid_rows(z, out, t * step, min(M, (t + 1) * step))
    return 0
