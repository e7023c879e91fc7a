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
                    and B in place) for a B with unit column stride; ``_gemm_dot`` (blocks of
                    contiguous dot products, vectorised by LLVM under 'reassoc') for a B with
                    unit row stride (Fortran-ordered W, W.T); other B are copied row-major
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
from numba.extending import overload

from ._numba_act import FASTMATH, NONE, _bias_act_rows, _unaligned
from ._numba_simd import COLUMN, NARROW, TAIL_ROWS, VEC_BYTES, WIDE, flat_span, make_microkernel

__all__ = ["_gemm_naive", "_gemm_direct", "_gemm_serial", "_gemm_unpacked", "_gemm_parallel", "MR_WIDE", "MR_NARROW"]

MR_WIDE, NV_WIDE = WIDE
MR_NARROW, NV_NARROW = NARROW
_mk_wide = make_microkernel(MR_WIDE, NV_WIDE)
_mk_narrow = make_microkernel(MR_NARROW, NV_NARROW)
_mk_tail = make_microkernel(TAIL_ROWS, NV_NARROW)
MR_COLUMN, NV_COLUMN = COLUMN
_mk_column = make_microkernel(MR_COLUMN, NV_COLUMN)
# one-row bands (N = 1 inference) get their own kernel: NV_ROW independent accumulators instead
# of TAIL_ROWS rows of which all but one are discarded
NV_ROW = 8
_mk_row = make_microkernel(1, NV_ROW)
# serial path, B with unit row stride: dot products when M <= max(DOT_MAX_ROWS, K // DOT_DEPTH_PER_ROW)
# (measured: the copy of B pays off only for many rows of short reductions), else a row-major
# copy of B (transposed in bands of COPY_ROWS rows) for the direct kernel. Rows of the copy
# COPY_FAR_BYTES or more apart fall into few L1 sets (a multiple of 4 KB apart: all into one,
# with 12 ways), so their bands are COPY_ROWS_FAR rows (measured, W.T of a 1024 x 64 W:
# 376 us in bands of 32, 34 us in bands of 8; 400 x 25: 5.3 and 6.1 us)
DOT_MAX_ROWS = 8
DOT_DEPTH_PER_ROW = 4
COPY_ROWS = 32
COPY_ROWS_FAR = 8
COPY_FAR_BYTES = 2048


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
def _gemm_column(A, B, C, b, act):
    """C (M, P) = act(A (M, K) @ B (K, P) + b) for an A with unit row stride (x.T, dz.T) and
    B with unit column stride: the COLUMN tile over bands of MR_COLUMN rows (25 rows: 13 + 12,
    not 8 + 8 + 8 + 1), each finished with its epilogue before the next.

    Kept out of :func:`_gemm_direct`: with a fifth micro-kernel inlined there, LLVM compiled
    this loop 1.6x slower than in a function of its own. (Bands balanced by M * band // bands
    measured 15% slower than these fixed steps, for reasons in LLVM's code, not the tile.)
    """
    M, K = A.shape
    P = B.shape[1]
    isz = A.itemsize
    NR = NV_COLUMN * (VEC_BYTES // isz)
    a_cs = A.strides[1] // isz
    b_rs = B.strides[0] // isz
    c_rs = C.strides[0] // isz
    for i0 in range(0, M, MR_COLUMN):
        i1 = min(M, i0 + MR_COLUMN)
        for j0 in range(0, P, NR):
            _mk_column(K, A, i0, 1, a_cs, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, i1 - i0, min(NR, P - j0), False)
        if act != NONE:
            _bias_act_rows(C, b, act, i0, i1)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_direct(A, B, C, b, act):
    """C (M, P) = act(A (M, K) @ B (K, P) + b), serial, unpacked; B.strides[1] == itemsize.

    Each band of MR_NARROW rows (MR_COLUMN for an A with unit row stride) is finished (all
    columns, then the epilogue) before the next, so the epilogue reads C from L1.
    """
    M, K = A.shape
    P = B.shape[1]
    isz = A.itemsize
    NR = NV_NARROW * (VEC_BYTES // isz)
    NR_ROW = NV_ROW * (VEC_BYTES // isz)
    a_rs = A.strides[0] // isz
    a_cs = A.strides[1] // isz
    b_rs = B.strides[0] // isz
    c_rs = C.strides[0] // isz
    if a_rs == 1 and M > 1:  # column-major A (x.T, dz.T)
        _gemm_column(A, B, C, b, act)
        return
    for i0 in range(0, M, MR_NARROW):
        m = min(MR_NARROW, M - i0)
        if m == 1:  # a single row (N = 1): NV_ROW vectors wide, nothing computed twice
            for j0 in range(0, P, NR_ROW):
                _mk_row(K, A, i0 * a_rs, a_rs, a_cs, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, 1, min(NR_ROW, P - j0), False)
        elif m <= TAIL_ROWS < MR_NARROW:  # last band: the shorter kernel wastes fewer rows
            for j0 in range(0, P, NR):
                _mk_tail(K, A, i0 * a_rs, a_rs, a_cs, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, m, min(NR, P - j0), False)
        elif a_cs == 1:  # row-major A (x, dz): a literal stride frees a register in the k loop
            for j0 in range(0, P, NR):
                _mk_narrow(K, A, i0 * a_rs, a_rs, 1, B, j0, b_rs, C, i0 * c_rs + j0, c_rs, m, min(NR, P - j0), False)
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
    """A C-contiguous copy of B (K, P), reading along whichever axis of B is contiguous.

    A column-major B (W.T, x.T) is transposed in bands of COPY_ROWS rows of the copy
    (COPY_ROWS_FAR when its rows lie COPY_FAR_BYTES or more apart), so the strided writes of
    one band stay in L1 instead of touching K cache lines per column.
    """
    K, P = B.shape
    out = np.empty((K, P), dtype=B.dtype)
    flat, off, rs, cs = _flat(B)
    if rs == 1:  # column-major views (W.T): read down columns, write with stride P
        band = COPY_ROWS_FAR if P * B.itemsize >= COPY_FAR_BYTES else COPY_ROWS
        for k0 in range(0, K, band):
            k1 = min(K, k0 + band)
            for j in range(P):
                col = flat[off + j * cs + k0: off + j * cs + k1]  # sliced: k >= 0, no wraparound
                for k in range(k1 - k0):
                    out[k0 + k, j] = col[k]
    else:
        for k in range(K):
            s = off + k * rs
            for j in range(P):
                out[k, j] = flat[s + j * cs]
    return out


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _dot1x4(af, a0, bf, b0, b1, b2, b3, K):
    """Four dot products of length K: af[a0:a0+K] . bf[bj:bj+K] for bj = b0..b3.

    Rows are sliced first so the loop indexes from 0 (no negative-index wraparound select,
    which would turn the loads into gathers); with 'reassoc' LLVM vectorises the reductions.
    """
    z = af.dtype.type(0)
    s0 = z
    s1 = z
    s2 = z
    s3 = z
    x = af[a0:a0 + K]
    r0 = bf[b0:b0 + K]
    r1 = bf[b1:b1 + K]
    r2 = bf[b2:b2 + K]
    r3 = bf[b3:b3 + K]
    for k in range(K):
        xk = x[k]
        s0 += xk * r0[k]
        s1 += xk * r1[k]
        s2 += xk * r2[k]
        s3 += xk * r3[k]
    return s0, s1, s2, s3


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _dot4x4(af, a0, ars, bf, b0, b1, b2, b3, K, C, i0, j0, n):
    """C[i0 + r, j0 + c] = af[a0 + r*ars : +K] . bf[bc : bc+K] for r < 4, c < n (n <= 4).

    A 4 x 4 block of dot products sharing each load of A and of B four times (16 vector
    accumulators after vectorisation); the c >= n columns repeat a valid one, never stored.
    """
    z = af.dtype.type(0)
    s00 = s01 = s02 = s03 = z
    s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = z
    s30 = s31 = s32 = s33 = z
    x0 = af[a0:a0 + K]
    x1 = af[a0 + ars:a0 + ars + K]
    x2 = af[a0 + 2 * ars:a0 + 2 * ars + K]
    x3 = af[a0 + 3 * ars:a0 + 3 * ars + K]
    r0 = bf[b0:b0 + K]
    r1 = bf[b1:b1 + K]
    r2 = bf[b2:b2 + K]
    r3 = bf[b3:b3 + K]
    for k in range(K):
        w0 = r0[k]
        w1 = r1[k]
        w2 = r2[k]
        w3 = r3[k]
        v = x0[k]
        s00 += v * w0
        s01 += v * w1
        s02 += v * w2
        s03 += v * w3
        v = x1[k]
        s10 += v * w0
        s11 += v * w1
        s12 += v * w2
        s13 += v * w3
        v = x2[k]
        s20 += v * w0
        s21 += v * w1
        s22 += v * w2
        s23 += v * w3
        v = x3[k]
        s30 += v * w0
        s31 += v * w1
        s32 += v * w2
        s33 += v * w3
    C[i0, j0] = s00
    C[i0 + 1, j0] = s10
    C[i0 + 2, j0] = s20
    C[i0 + 3, j0] = s30
    if n > 1:
        C[i0, j0 + 1] = s01
        C[i0 + 1, j0 + 1] = s11
        C[i0 + 2, j0 + 1] = s21
        C[i0 + 3, j0 + 1] = s31
    if n > 2:
        C[i0, j0 + 2] = s02
        C[i0 + 1, j0 + 2] = s12
        C[i0 + 2, j0 + 2] = s22
        C[i0 + 3, j0 + 2] = s32
    if n > 3:
        C[i0, j0 + 3] = s03
        C[i0 + 1, j0 + 3] = s13
        C[i0 + 2, j0 + 3] = s23
        C[i0 + 3, j0 + 3] = s33


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _dot4x5(af, a0, ars, bf, b0, bcs, K, C, i0, j0):
    """C[i0 + r, j0 + c] = af[a0 + r*ars : +K] . bf[b0 + (j0 + c)*bcs : +K], r < 4, c < 5.

    The 5-column sibling of :func:`_dot4x4` (20 vector accumulators): with blocks of 4 and
    5 columns every P >= 12 splits without a wasted column (P = 25: 5 blocks of 5, not 7
    blocks of 4 computing 28); only full blocks.
    """
    z = af.dtype.type(0)
    s00 = s01 = s02 = s03 = s04 = z
    s10 = s11 = s12 = s13 = s14 = z
    s20 = s21 = s22 = s23 = s24 = z
    s30 = s31 = s32 = s33 = s34 = z
    x0 = af[a0:a0 + K]
    x1 = af[a0 + ars:a0 + ars + K]
    x2 = af[a0 + 2 * ars:a0 + 2 * ars + K]
    x3 = af[a0 + 3 * ars:a0 + 3 * ars + K]
    c0 = b0 + j0 * bcs
    r0 = bf[c0:c0 + K]
    r1 = bf[c0 + bcs:c0 + bcs + K]
    r2 = bf[c0 + 2 * bcs:c0 + 2 * bcs + K]
    r3 = bf[c0 + 3 * bcs:c0 + 3 * bcs + K]
    r4 = bf[c0 + 4 * bcs:c0 + 4 * bcs + K]
    for k in range(K):
        w0 = r0[k]
        w1 = r1[k]
        w2 = r2[k]
        w3 = r3[k]
        w4 = r4[k]
        v = x0[k]
        s00 += v * w0
        s01 += v * w1
        s02 += v * w2
        s03 += v * w3
        s04 += v * w4
        v = x1[k]
        s10 += v * w0
        s11 += v * w1
        s12 += v * w2
        s13 += v * w3
        s14 += v * w4
        v = x2[k]
        s20 += v * w0
        s21 += v * w1
        s22 += v * w2
        s23 += v * w3
        s24 += v * w4
        v = x3[k]
        s30 += v * w0
        s31 += v * w1
        s32 += v * w2
        s33 += v * w3
        s34 += v * w4
    C[i0, j0] = s00
    C[i0, j0 + 1] = s01
    C[i0, j0 + 2] = s02
    C[i0, j0 + 3] = s03
    C[i0, j0 + 4] = s04
    C[i0 + 1, j0] = s10
    C[i0 + 1, j0 + 1] = s11
    C[i0 + 1, j0 + 2] = s12
    C[i0 + 1, j0 + 3] = s13
    C[i0 + 1, j0 + 4] = s14
    C[i0 + 2, j0] = s20
    C[i0 + 2, j0 + 1] = s21
    C[i0 + 2, j0 + 2] = s22
    C[i0 + 2, j0 + 3] = s23
    C[i0 + 2, j0 + 4] = s24
    C[i0 + 3, j0] = s30
    C[i0 + 3, j0 + 1] = s31
    C[i0 + 3, j0 + 2] = s32
    C[i0 + 3, j0 + 3] = s33
    C[i0 + 3, j0 + 4] = s34


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_dot(A, B, C, b, act):
    """C (M, P) = act(A (M, K) @ B (K, P) + b) as dot products, serial, unpacked.

    For A with unit column stride and B with unit *row* stride (B.T row-major: a Fortran-
    ordered W, or W.T in dx = dz @ W.T for a C-ordered W): C[i, j] = A[i, :] . B[:, j], both
    operands read contiguously, no copy of B. Rows go in bands of 4 (4 x 5 and 4 x 4 blocks of
    dots, chosen so that no column is computed twice), the last M % 4 rows one at a time
    (1 x 4 blocks); each band gets its epilogue at once.
    """
    M, K = A.shape
    P = B.shape[1]
    af, aoff, ars, _ = _flat(A)
    bf, boff, _, bcs = _flat(B)
    last = P - 1
    # columns [0, split) in blocks of 5, the rest in blocks of 4: the most 5-blocks with
    # P = 5 * fives + 4 * fours exactly (any P >= 12; smaller P: blocks of 4, the last clamped)
    fives = P // 5
    while fives > 0 and (P - 5 * fives) % 4:
        fives -= 1
    split = 5 * fives
    i0 = 0
    while i0 < M:
        a0 = aoff + i0 * ars
        if M - i0 >= 4:
            for j0 in range(0, split, 5):
                _dot4x5(af, a0, ars, bf, boff, bcs, K, C, i0, j0)
            for j0 in range(split, P, 4):
                _dot4x4(af, a0, ars, bf, boff + j0 * bcs, boff + min(j0 + 1, last) * bcs,
                        boff + min(j0 + 2, last) * bcs, boff + min(j0 + 3, last) * bcs, K, C, i0, j0, min(4, P - j0))
            i1 = i0 + 4
        else:
            for j0 in range(0, P, 4):
                s0, s1, s2, s3 = _dot1x4(af, a0, bf, boff + j0 * bcs, boff + min(j0 + 1, last) * bcs,
                                         boff + min(j0 + 2, last) * bcs, boff + min(j0 + 3, last) * bcs, K)
                n = min(4, P - j0)
                C[i0, j0] = s0
                if n > 1:
                    C[i0, j0 + 1] = s1
                if n > 2:
                    C[i0, j0 + 2] = s2
                if n > 3:
                    C[i0, j0 + 3] = s3
            i1 = i0 + 1
        if act != NONE:
            _bias_act_rows(C, b, act, i0, i1)
        i0 = i1


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_serial(A, B, C, b, act, mc, kc, nc, threads):
    """C (M, P) = act(A (M, K) @ B (K, P) + b) on one thread (mc, kc, nc, threads ignored).

    By the layout of B (strides in elements):
    - unit column stride (W, dz): the unpacked direct kernel, A read in place;
    - unit row stride (a Fortran-ordered W; W.T of a C-ordered W): dot products of rows of A
      with columns of B (:func:`_gemm_dot`, no copy of B) when there are few rows
      (M <= DOT_MAX_ROWS: a copy of B would cost as much as the product) or the reductions
      are long (M <= K // DOT_DEPTH_PER_ROW); an A without unit column stride is copied
      row-major first (M*K elements). Many rows of short reductions copy B instead;
    - otherwise B is copied row-major (K*P elements), then the direct kernel.
    Returns 1 for unaligned strides (nothing done), else 0.
    """
    if _unaligned(A) or _unaligned(B) or _unaligned(b):
        return 1
    _gemm_unpacked(A, B, C, b, act)
    return 0


def _gemm_unpacked(A, B, C, b, act):
    """_gemm_serial's routes, by the layout of B (see there); strides already checked."""
    if B.strides[1] == B.itemsize:
        _gemm_direct(A, B, C, b, act)
    else:
        _gemm_strided_b(A, B, C, b, act)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
def _gemm_strided_b(A, B, C, b, act):
    """_gemm_serial for a B without unit column stride: dot products or a copy of B."""
    isz = A.itemsize
    M, K = A.shape
    if B.strides[0] == isz and M <= max(DOT_MAX_ROWS, K // DOT_DEPTH_PER_ROW):
        if A.strides[1] == isz:
            _gemm_dot(A, B, C, b, act)
        else:
            _gemm_dot(_copy_rows(A), B, C, b, act)
    else:
        _gemm_direct(A, _copy_rows(B), C, b, act)


@overload(_gemm_unpacked, jit_options={"fastmath": FASTMATH, "error_model": "numpy", "nogil": True})
def _gemm_unpacked_by_layout(A, B, C, b, act):
    """In compiled code the route is chosen from B's layout while compiling, so that each
    signature compiles only the kernels it can reach: a C-ordered B always has unit column
    stride; an F-ordered one has it only with a single row, where the dot route (or the
    copy) computes the same single products. The course net's first fit compiled 4.5 s less."""
    if B.layout == "C":
        return lambda A, B, C, b, act: _gemm_direct(A, B, C, b, act)
    if B.layout == "F":
        return lambda A, B, C, b, act: _gemm_strided_b(A, B, C, b, act)
    return _gemm_unpacked


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
