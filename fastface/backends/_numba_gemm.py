"""GEMM drivers of the numba backend: C (M, P) = A (M, K) @ B (K, P), then an optional epilogue.

Dimensions:
    M, K, P     C (M, P) = A (M, K) @ B (K, P); A and B may have any strides (views,
                transposes such as W.T or x.T); C has unit column stride
    MR, NR      register tile of a micro-kernel (NR = NV * L, L = SIMD lanes of the dtype)
    mc, kc, nc  cache blocks: rows of A packed per panel set, depth, columns of B packed

Three versions, same arguments ``(A, B, C, b, act, mc, kc, nc, threads)``, same result up to
summation order:

    _gemm_naive     i-k-j loops; the algorithmic reference and the fallback (tests compare)
    _gemm_serial    one thread, for small problems where packing and threads cost more than
                    they save: ``_gemm_direct`` (no packing, the NARROW micro-kernel reads A
                    and B in place); a B without unit column stride is copied row-major first
    _gemm_parallel  BLIS-style: per thread, pack a kc x nc block of B into NR-wide panels and
                    an mc x kc block of A into MR-high panels (contiguous, zero-padded: packing
                    also turns strided inputs contiguous), then run the WIDE micro-kernel over
                    the panels. prange over tasks that each own a block of rows of C (and a
                    block of columns when there are fewer row blocks than threads): every
                    element of C has exactly one writer, no atomics, no racy +=

The epilogue (bias + activation, :func:`_numba_act._bias_act_rows`) runs on rows a task owns
completely, right after their last K block while they are still in cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_act import FASTMATH, NONE, _bias_act_rows, _unaligned
from ._numba_simd import NARROW, TAIL_ROWS, VEC_BYTES, WIDE, flat_span, make_microkernel

__all__ = ["_gemm_naive", "_gemm_direct", "_gemm_serial", "_gemm_parallel", "MR_WIDE", "MR_NARROW"]

MR_WIDE, NV_WIDE = WIDE
MR_NARROW, NV_NARROW = NARROW
_mk_wide = make_microkernel(MR_WIDE, NV_WIDE)
_mk_narrow = make_microkernel(MR_NARROW, NV_NARROW)
_mk_tail = make_microkernel(TAIL_ROWS, NV_NARROW)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_naive(A, B, C, b, act, mc, kc, nc, threads):
    """C (M, P) = act(A (M, K) @ B (K, P) + b): plain loops, the reference and fallback.

    mc, kc, nc, threads are ignored (same arguments as the other versions). Like every
    version, returns 1 (nothing done) when an input stride is not a whole number of elements
    (the wrapper retries with contiguous copies), else 0.
    """
    if _unaligned(A) or _unaligned(B) or _unaligned(b):
        return 1
    M, K = A.shape
    P = B.shape[1]
    zero = C.dtype.type(0)
    for i in range(M):
        for j in range(P):
            C[i, j] = zero
        for k in range(K):
            aik = A[i, k]
            for j in range(P):
                C[i, j] += aik * B[k, j]
    if act != NONE:
        _bias_act_rows(C, b, act, 0, M)
    return 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_direct(A, B, C, b, act):
    """C (M, P) = act(A (M, K) @ B (K, P) + b), serial, unpacked; B.strides[1] == itemsize.

    Each band of MR_NARROW rows is finished (all columns, then the epilogue) before the next,
    so the epilogue reads C from L1.
    """
    M, K = A.shape
    P = B.shape[1]
    isz = A.itemsize
    NR = NV_NARROW * (VEC_BYTES // isz)
    a_rs = A.strides[0] // isz
    a_cs = A.strides[1] // isz
    b_rs = B.strides[0] // isz
    c_rs = C.strides[0] // isz
    for i0 in range(0, M, MR_NARROW):
        m = min(MR_NARROW, M - i0)
        if m <= TAIL_ROWS < MR_NARROW:  # last band: the shorter kernel wastes fewer rows
            for j0 in range(0, P, NR):
                _mk_tail(K, A, i0 * a_rs, a_rs, a_cs, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, m, min(NR, P - j0), False)
        else:
            for j0 in range(0, P, NR):
                _mk_narrow(K, A, i0 * a_rs, a_rs, a_cs, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, m, min(NR, P - j0), False)
        if act != NONE:
            _bias_act_rows(C, b, act, i0, i0 + m)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _flat(A):
    """(flat, off, rs, cs): A[i, j] == flat[off + i*rs + j*cs] for a 2-D A of any strides."""
    isz = A.itemsize
    rs = A.strides[0] // isz
    cs = A.strides[1] // isz
    low = min(0, (A.shape[0] - 1) * rs) + min(0, (A.shape[1] - 1) * cs)
    high = max(0, (A.shape[0] - 1) * rs) + max(0, (A.shape[1] - 1) * cs)
    return flat_span(A, low, high - low + 1), -low, rs, cs


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _pack_a(A, i0, mcur, p0, kcur, Ap):
    """Ap[(ip*kcur + k)*MR + r] = A[i0 + ip*MR + r, p0 + k]; rows past mcur are zero."""
    MR = MR_WIDE
    zero = Ap.dtype.type(0)
    flat, off, rs, cs = _flat(A)
    npan = (mcur + MR - 1) // MR
    if rs == 1 and cs != 1:
        # column-major views (x.T): row k of the block is contiguous in memory; walk k
        # outermost so each source row (one page) is read once, MR values per panel
        full = mcur // MR
        for k in range(kcur):
            s = off + i0 + (p0 + k) * cs
            for ip in range(full):
                d = ip * kcur * MR + k * MR
                for r in range(MR):
                    Ap[d + r] = flat[s + ip * MR + r]
        if full < npan:
            rows = mcur - full * MR
            base = full * kcur * MR
            for k in range(kcur):
                s = off + i0 + full * MR + (p0 + k) * cs
                for r in range(rows):
                    Ap[base + k * MR + r] = flat[s + r]
                for r in range(rows, MR):
                    Ap[base + k * MR + r] = zero
        return
    for ip in range(npan):
        base = ip * kcur * MR
        rows = min(MR, mcur - ip * MR)
        src = off + (i0 + ip * MR) * rs + p0 * cs
        if cs == 1:  # row-major A (x, dz): each row of the panel is a contiguous run
            for r in range(rows):
                s = src + r * rs
                for k in range(kcur):
                    Ap[base + k * MR + r] = flat[s + k]
        else:
            for k in range(kcur):
                for r in range(rows):
                    Ap[base + k * MR + r] = flat[src + r * rs + k * cs]
        for r in range(rows, MR):
            for k in range(kcur):
                Ap[base + k * MR + r] = zero


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _pack_b(B, p0, kcur, j0, ncur, Bp):
    """Bp[(jp*kcur + k)*NR + c] = B[p0 + k, j0 + jp*NR + c]; columns past ncur are zero."""
    NR = NV_WIDE * (VEC_BYTES // B.itemsize)
    zero = Bp.dtype.type(0)
    flat, off, rs, cs = _flat(B)
    for jp in range((ncur + NR - 1) // NR):
        base = jp * kcur * NR
        cols = min(NR, ncur - jp * NR)
        src = off + p0 * rs + (j0 + jp * NR) * cs
        if cs == 1:  # row-major B (W, dz): a contiguous copy of `cols` values per k
            for k in range(kcur):
                s = src + k * rs
                d = base + k * NR
                for c in range(cols):
                    Bp[d + c] = flat[s + c]
        elif rs == 1:  # column-major views (W.T): read down the columns, 16 rows of the
            for k0 in range(0, kcur, 16):  # panel at a time so the writes stay in L1
                k1 = min(kcur, k0 + 16)
                for c in range(cols):
                    s = src + c * cs
                    for k in range(k0, k1):
                        Bp[base + k * NR + c] = flat[s + k]
        else:
            for k in range(kcur):
                for c in range(cols):
                    Bp[base + k * NR + c] = flat[src + k * rs + c * cs]
        if cols < NR:
            for k in range(kcur):
                for c in range(cols, NR):
                    Bp[base + k * NR + c] = zero


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_block(A, B, C, r0, r1, c0, c1, mc, kc, nc, Ap, Bp):
    """C[r0:r1, c0:c1] = A[r0:r1] @ B[:, c0:c1] through packed panels (one thread).

    Ap holds ceil(mc/MR)*MR*kc elements, Bp ceil(nc/NR)*NR*kc; mc % MR == nc % NR == 0.
    """
    K = A.shape[1]
    MR = MR_WIDE
    NR = NV_WIDE * (VEC_BYTES // A.itemsize)
    c_rs = C.strides[0] // C.itemsize
    for j0 in range(c0, c1, nc):
        ncur = min(nc, c1 - j0)
        for p0 in range(0, K, kc):
            kcur = min(kc, K - p0)
            _pack_b(B, p0, kcur, j0, ncur, Bp)
            for i0 in range(r0, r1, mc):
                mcur = min(mc, r1 - i0)
                _pack_a(A, i0, mcur, p0, kcur, Ap)
                for jp in range((ncur + NR - 1) // NR):
                    jj = j0 + jp * NR
                    n = min(NR, j0 + ncur - jj)
                    boff = jp * kcur * NR
                    for ip in range((mcur + MR - 1) // MR):
                        ii = i0 + ip * MR
                        _mk_wide(kcur, Ap, ip * kcur * MR, 1, MR, Bp, boff, NR,
                                 C, ii * c_rs + jj, c_rs, min(MR, r1 - ii), n, p0 > 0)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _copy_rows(B):
    """A C-contiguous copy of B (K, P), reading along whichever axis of B is contiguous."""
    K, P = B.shape
    out = np.empty((K, P), dtype=B.dtype)
    flat, off, rs, cs = _flat(B)
    if rs == 1:  # column-major views (W.T): read down columns, write with stride P
        for j in range(P):
            s = off + j * cs
            for k in range(K):
                out[k, j] = flat[s + k]
    else:
        for k in range(K):
            s = off + k * rs
            for j in range(P):
                out[k, j] = flat[s + j * cs]
    return out


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_serial(A, B, C, b, act, mc, kc, nc, threads):
    """C (M, P) = act(A (M, K) @ B (K, P) + b) on one thread (mc, kc, nc, threads ignored).

    The unpacked direct kernel; a B without unit column stride (e.g. B = W.T in dx = dz @ W.T)
    is first copied row-major (K*P elements: cheap at the sizes routed here).
    Returns 1 for unaligned strides (nothing done), else 0.
    """
    if _unaligned(A) or _unaligned(B) or _unaligned(b):
        return 1
    if B.strides[1] == B.itemsize:
        _gemm_direct(A, B, C, b, act)
    else:
        _gemm_direct(A, _copy_rows(B), C, b, act)
    return 0


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True, parallel=True)
def _gemm_parallel(A, B, C, b, act, mc, kc, nc, threads):
    """C (M, P) = act(A (M, K) @ B (K, P) + b) with packed panels, prange over owned blocks.

    mc, kc, nc: cache blocks (rounded here to multiples of the register tile); threads: the
    number of Numba threads (passed in: reading it in compiled code defeats the disk cache).
    Returns 1 (nothing done) for unaligned strides, else 0.
    """
    if _unaligned(A) or _unaligned(B) or _unaligned(b):
        return 1
    M, K = A.shape
    P = B.shape[1]
    MR = MR_WIDE
    NR = NV_WIDE * (VEC_BYTES // A.itemsize)
    threads = max(1, threads)
    rpan = (M + MR - 1) // MR
    cpan = (P + NR - 1) // NR
    nrb = min(threads, rpan)
    ncb = 1
    if nrb < threads:
        ncb = min((threads + nrb - 1) // nrb, cpan)
    rows = (rpan + nrb - 1) // nrb * MR
    cols = (cpan + ncb - 1) // ncb * NR
    mcb = min(max(MR, mc // MR * MR), rows)
    ncbk = min(max(NR, nc // NR * NR), cols)
    kcb = max(1, min(kc, K))
    for t in prange(nrb * ncb):
        r0 = (t // ncb) * rows
        c0 = (t % ncb) * cols
        r1 = min(M, r0 + rows)
        c1 = min(P, c0 + cols)
        if r0 < r1 and c0 < c1:
            Ap = np.empty(mcb * kcb, dtype=C.dtype)
            Bp = np.empty(ncbk * kcb, dtype=C.dtype)
            _gemm_block(A, B, C, r0, r1, c0, c1, mcb, kcb, ncbk, Ap, Bp)
            if act != NONE and ncb == 1:
                _bias_act_rows(C, b, act, r0, r1)
    if act != NONE and ncb > 1:
        step = (M + threads - 1) // threads
        for t in prange(threads):
            _bias_act_rows(C, b, act, t * step, min(M, (t + 1) * step))
    return 0
