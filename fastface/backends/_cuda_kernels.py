"""Numba CUDA kernels of the ``cuda`` backend (private; the host wrappers are in cuda_backend.py).

Dimensions:
    N        examples (rows of x, a, da, dz)
    IN       input features
    OUT      units of the layer
    M, K, P  matmul: C (M, P) = opA (M, K) @ opB (K, P), where opA is A or A.T, opB is B or B.T
    T        side of the square shared-memory tile (config.CUDA_TILE); a matmul block is T x T
    R        threads per block of the row-wise and elementwise kernels (config.CUDA_THREADS)

Kernels (all bounds-checked, grid-stride over their blocks of output, so any grid size is safe):
    matmul(A, B, bias, C)       C = act(opA @ opB + bias): tiled over K through shared memory,
                                zero-filled edge tiles; transposed operands are read in place
                                (dx = dz @ W.T and dW = x.T @ dz need no transposed copy)
    matmul_rb(A, B, bias, C)    the same with register blocking: each thread computes a
                                reg x reg block of C (used for outputs of at least reg T
                                rows and columns)
    softmax_rows(Z, out)        row-wise max-subtracted softmax, one block per row (out may be Z)
    softmax_dz(a, da, dz)       dz = a * (da - sum_j a * da), one block per row
    dz_colsum(a, da, dz, db)    dz = act'(a) * da fused with db = sum_n dz: T x T threads per
                                block of T columns, each column reduced by a shared-memory tree
                                inside one block (no atomics, no race)
    sigmoid(z, out)             elementwise, overflow-safe (never exp of a positive number)
    fill(out, value)            1-D fill, used by zeros()

Compile-time constants (tile side, thread count, dtype, activation, transposition) are bound
by factories cached on them: shared arrays need constant shapes and dtypes, and the activation
is inlined into each kernel's epilogue instead of being dispatched per element.

Fast math: the CUDA target takes only a boolean ``fastmath``, and ``True`` brings flush-to-zero,
approximate division/exp and the LLVM ``nnan``/``ninf`` flags, so NaN/inf would stop meaning
what NumPy means. Every kernel here is compiled with ``fastmath=False`` explicitly; NVVM still
contracts a*b + c into FMA (the ``contract`` of the CPU kernels' flag set), and nothing else.
"""

from __future__ import annotations

import math
from functools import lru_cache

import inspect
import os

import numpy as np
from numba import cuda

FASTMATH = False
_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
try:  # the config numba-cuda itself read at import (numba-cuda >= 0.20 keeps it here)
    from numba.cuda.core import config as _numba_cuda_config

    _SIMULATOR = bool(_numba_cuda_config.ENABLE_CUDASIM)
except ImportError:  # pragma: no cover - older numba-cuda
    pass
_HAS_LAUNCH_BOUNDS = "launch_bounds" in inspect.signature(cuda.jit).parameters


def _kernel(threads_per_block: int):
    """cuda.jit for a kernel launched with at most `threads_per_block` threads a block.

    The launch bound makes the compiler keep registers within what a full block may use
    (65536 / threads_per_block per thread), so a launch never fails with "too many
    resources requested" (the register-blocked matmul wants 80-124 registers otherwise).
    The simulator takes no launch bounds; a numba-cuda without them gets the same register
    cap as max_registers.
    """
    if _SIMULATOR:
        return cuda.jit(fastmath=FASTMATH)
    if _HAS_LAUNCH_BOUNDS:
        return cuda.jit(fastmath=FASTMATH, launch_bounds=int(threads_per_block))
    return cuda.jit(fastmath=FASTMATH, max_registers=min(255, 65536 // int(threads_per_block)))


# --- per-dtype device functions --------------------------------------------------------------
@lru_cache(maxsize=None)
def device_functions(dtype_name: str):
    """(activations, derivatives): name -> device function, constants typed as `dtype_name`.

    activations take z and return act(z); derivatives take (a, da) and return dz = act'(a) * da
    from the forward output a. Softmax is row-wise and lives in its own kernels.
    """
    ftype = np.dtype(dtype_name).type
    zero = ftype(0)
    one = ftype(1)

    @cuda.jit(device=True, fastmath=FASTMATH)
    def linear(z):
        return z

    @cuda.jit(device=True, fastmath=FASTMATH)
    def sigmoid(z):
        e = math.exp(-abs(z))
        if z >= zero:
            return one / (one + e)
        return e / (one + e)  # also the NaN branch: NaN in, NaN out

    @cuda.jit(device=True, fastmath=FASTMATH)
    def relu(z):
        if z <= zero:
            return zero
        return z  # NaN propagates, as np.maximum(z, 0) does

    @cuda.jit(device=True, fastmath=FASTMATH)
    def tanh(z):
        return math.tanh(z)

    @cuda.jit(device=True, fastmath=FASTMATH)
    def d_linear(a, da):
        return da

    @cuda.jit(device=True, fastmath=FASTMATH)
    def d_sigmoid(a, da):
        return da * a * (one - a)

    @cuda.jit(device=True, fastmath=FASTMATH)
    def d_relu(a, da):
        if a > zero:
            return da
        return zero

    @cuda.jit(device=True, fastmath=FASTMATH)
    def d_tanh(a, da):
        return da * (one - a * a)

    activations = {"linear": linear, "sigmoid": sigmoid, "relu": relu, "tanh": tanh}
    derivatives = {"linear": d_linear, "sigmoid": d_sigmoid, "relu": d_relu, "tanh": d_tanh}
    return activations, derivatives


@cuda.jit(device=True)
def _element_or_zero(X, i, j, zero):
    """X[i, j] of a 2-D array, or `zero` past its edges (the zero fill of edge tiles)."""
    if i < X.shape[0] and j < X.shape[1]:
        return X[i, j]
    return zero


# --- tiled matmul with fused bias + activation epilogue --------------------------------------
@lru_cache(maxsize=None)
def matmul(tile: int, dtype_name: str, trans_a: bool, trans_b: bool, activation: str, has_bias: bool):
    """Kernel C (M, P) = act(opA (M, K) @ opB (K, P) [+ bias (P,)]); launch with block (T, T).

    A is (M, K), or (K, M) when trans_a; B is (K, P), or (P, K) when trans_b; bias is read
    only when has_bias (pass any 1-D array otherwise). Thread (tx, ty) of a block writes
    C[row0 + ty, col0 + tx]; the K loop runs ceil(K / T) tiles, zero-filling past the edges.
    Each operand tile is loaded with threadIdx.x running along the operand's memory rows
    (coalesced for C-contiguous arrays) and stored in shared memory padded to T + 1 columns,
    so the transposed store does not bank-conflict.
    """
    T = tile
    T1 = tile + 1  # shared rows padded by one: shapes must be compile-time constants
    nb = np.dtype(dtype_name)
    zero = nb.type(0)
    act = device_functions(dtype_name)[0][activation]

    @_kernel(T * T)
    def kernel(A, B, bias, C):
        sA = cuda.shared.array((T, T1), nb)  # sA[i, k] = opA[row0 + i, k0 + k]
        sB = cuda.shared.array((T, T1), nb)  # sB[k, j] = opB[k0 + k, col0 + j]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        M = C.shape[0]
        P = C.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        n_k = (K + T - 1) // T
        for bi in range(cuda.blockIdx.y, (M + T - 1) // T, cuda.gridDim.y):
            row0 = bi * T
            for bj in range(cuda.blockIdx.x, (P + T - 1) // T, cuda.gridDim.x):
                col0 = bj * T
                acc = zero
                for t in range(n_k):
                    k0 = t * T
                    # A tile: memory-contiguous axis of A follows tx.
                    if trans_a:  # A (K, M): element (k, i) = A[k0 + ty, row0 + tx]
                        sA[tx, ty] = _element_or_zero(A, k0 + ty, row0 + tx, zero)
                    else:  # A (M, K): element (i, k) = A[row0 + ty, k0 + tx]
                        sA[ty, tx] = _element_or_zero(A, row0 + ty, k0 + tx, zero)
                    if trans_b:  # B (P, K): element (k, j) = B[col0 + ty, k0 + tx]
                        sB[tx, ty] = _element_or_zero(B, col0 + ty, k0 + tx, zero)
                    else:  # B (K, P): element (k, j) = B[k0 + ty, col0 + tx]
                        sB[ty, tx] = _element_or_zero(B, k0 + ty, col0 + tx, zero)
                    cuda.syncthreads()
                    for k in range(T):
                        acc += sA[ty, k] * sB[k, tx]
                    cuda.syncthreads()
                r = row0 + ty
                c = col0 + tx
                if r < M and c < P:
                    if has_bias:
                        acc += bias[c]
                    C[r, c] = act(acc)

    return kernel


@lru_cache(maxsize=None)
def matmul_rb(tile: int, reg: int, dtype_name: str, trans_a: bool, trans_b: bool, activation: str, has_bias: bool):
    """Register-blocked variant of :func:`matmul`, same arguments and result; block (T, T).

    A block computes a (reg T) x (reg T) tile of C; thread (tx, ty) keeps reg x reg outputs
    (ty + T r, tx + T c), r, c < reg, in registers (strided by T, so the stores of a warp stay
    coalesced), and each value it reads from shared memory feeds reg multiply-adds instead
    of one. Shared tiles: sA (reg T, T + 1), sB (T, reg T + 1), loaded along the operands'
    contiguous axis and zero-filled past the edges, as in :func:`matmul`.
    """
    T = tile
    Rg = reg
    BM = reg * tile
    T1 = tile + 1
    BM1 = BM + 1
    nb = np.dtype(dtype_name)
    zero = nb.type(0)
    act = device_functions(dtype_name)[0][activation]

    @_kernel(T * T)
    def kernel(A, B, bias, C):
        sA = cuda.shared.array((BM, T1), nb)  # sA[i, k] = opA[row0 + i, k0 + k]
        sB = cuda.shared.array((T, BM1), nb)  # sB[k, j] = opB[k0 + k, col0 + j]
        acc = cuda.local.array((Rg, Rg), nb)
        a_reg = cuda.local.array(Rg, nb)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        M = C.shape[0]
        P = C.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        for bi in range(cuda.blockIdx.y, (M + BM - 1) // BM, cuda.gridDim.y):
            row0 = bi * BM
            for bj in range(cuda.blockIdx.x, (P + BM - 1) // BM, cuda.gridDim.x):
                col0 = bj * BM
                for r in range(Rg):
                    for c in range(Rg):
                        acc[r, c] = zero
                for k0 in range(0, K, T):
                    for r in range(Rg):
                        if trans_a:  # A (K, M): tx runs along M
                            sA[tx + T * r, ty] = _element_or_zero(A, k0 + ty, row0 + tx + T * r, zero)
                        else:  # A (M, K): tx runs along K
                            sA[ty + T * r, tx] = _element_or_zero(A, row0 + ty + T * r, k0 + tx, zero)
                        if trans_b:  # B (P, K): tx runs along K
                            sB[tx, ty + T * r] = _element_or_zero(B, col0 + ty + T * r, k0 + tx, zero)
                        else:  # B (K, P): tx runs along P
                            sB[ty, tx + T * r] = _element_or_zero(B, k0 + ty, col0 + tx + T * r, zero)
                    cuda.syncthreads()
                    for kk in range(T):
                        for r in range(Rg):
                            a_reg[r] = sA[ty + T * r, kk]
                        for c in range(Rg):
                            bv = sB[kk, tx + T * c]
                            for r in range(Rg):
                                acc[r, c] += a_reg[r] * bv
                    cuda.syncthreads()
                for r in range(Rg):
                    gi = row0 + ty + T * r
                    for c in range(Rg):
                        gj = col0 + tx + T * c
                        if gi < M and gj < P:
                            v = acc[r, c]
                            if has_bias:
                                v += bias[gj]
                            C[gi, gj] = act(v)

    return kernel


# --- row-wise softmax: forward and the Jacobian-vector product --------------------------------
@lru_cache(maxsize=None)
def softmax_rows(threads: int, dtype_name: str):
    """Kernel out (N, P) = softmax(Z (N, P)) row-wise, max subtracted; block (R,), out may be Z.

    One block per row (grid-stride over rows): a strided pass for the row max (NaN sticks, as
    in NumPy), a shared-memory tree for the block max, exp and partial sums, a tree for the
    sum, then a division pass.
    """
    R = threads
    nb = np.dtype(dtype_name)
    zero = nb.type(0)

    @_kernel(R)
    def kernel(Z, out):
        buf = cuda.shared.array(R, nb)
        t = cuda.threadIdx.x
        N = Z.shape[0]
        P = Z.shape[1]
        for r in range(cuda.blockIdx.x, N, cuda.gridDim.x):
            m = Z[r, 0]
            for j in range(t, P, R):
                v = Z[r, j]
                if v > m or v != v:
                    m = v
            buf[t] = m
            cuda.syncthreads()
            s = 1
            while s < R:
                s *= 2
            s //= 2
            while s > 0:
                if t < s and t + s < R:
                    w = buf[t + s]
                    if w > buf[t] or w != w:
                        buf[t] = w
                cuda.syncthreads()
                s //= 2
            m = buf[0]
            cuda.syncthreads()
            acc = zero
            for j in range(t, P, R):
                e = math.exp(Z[r, j] - m)
                out[r, j] = e
                acc += e
            buf[t] = acc
            cuda.syncthreads()
            s = 1
            while s < R:
                s *= 2
            s //= 2
            while s > 0:
                if t < s and t + s < R:
                    buf[t] += buf[t + s]
                cuda.syncthreads()
                s //= 2
            total = buf[0]
            cuda.syncthreads()
            for j in range(t, P, R):
                out[r, j] = out[r, j] / total

    return kernel


@lru_cache(maxsize=None)
def softmax_dz(threads: int, dtype_name: str):
    """Kernel dz (N, P) = a * (da - sum_j a * da) from a, da (N, P); block (R,), one block per row."""
    R = threads
    nb = np.dtype(dtype_name)
    zero = nb.type(0)

    @_kernel(R)
    def kernel(a, da, dz):
        buf = cuda.shared.array(R, nb)
        t = cuda.threadIdx.x
        N = a.shape[0]
        P = a.shape[1]
        for r in range(cuda.blockIdx.x, N, cuda.gridDim.x):
            acc = zero
            for j in range(t, P, R):
                acc += a[r, j] * da[r, j]
            buf[t] = acc
            cuda.syncthreads()
            s = 1
            while s < R:
                s *= 2
            s //= 2
            while s > 0:
                if t < s and t + s < R:
                    buf[t] += buf[t + s]
                cuda.syncthreads()
                s //= 2
            dot = buf[0]
            cuda.syncthreads()
            for j in range(t, P, R):
                dz[r, j] = a[r, j] * (da[r, j] - dot)

    return kernel


# --- dz = act'(a) * da fused with db = column sums of dz --------------------------------------
@lru_cache(maxsize=None)
def dz_colsum(tile: int, dtype_name: str, activation: str, write_dz: bool):
    """Kernel: dz (N, P) = act'(a) * da and db (P,) = sum_n dz; launch with block (T, T).

    Block b owns columns b*T .. b*T + T - 1 (grid-stride over column blocks): thread (tx, ty)
    walks rows ty, ty + T, ... of column b*T + tx, writing dz (when write_dz) and summing;
    the T partial sums of each column are then reduced by a shared-memory tree. With
    activation 'linear' and write_dz False it is the plain column sum of da (softmax's db).
    """
    T = tile
    T1 = tile + 1
    nb = np.dtype(dtype_name)
    zero = nb.type(0)
    deriv = device_functions(dtype_name)[1][activation]

    @_kernel(T * T)
    def kernel(a, da, dz, db):
        buf = cuda.shared.array((T, T1), nb)  # buf[ty, tx]: partial sum of column tx
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        N = da.shape[0]
        P = da.shape[1]
        for cb in range(cuda.blockIdx.x, (P + T - 1) // T, cuda.gridDim.x):
            c = cb * T + tx
            acc = zero
            if c < P:
                for r in range(ty, N, T):
                    v = deriv(a[r, c], da[r, c])
                    if write_dz:
                        dz[r, c] = v
                    acc += v
            buf[ty, tx] = acc
            cuda.syncthreads()
            s = 1
            while s < T:
                s *= 2
            s //= 2
            while s > 0:
                if ty < s and ty + s < T:
                    buf[ty, tx] += buf[ty + s, tx]
                cuda.syncthreads()
                s //= 2
            if ty == 0 and c < P:
                db[c] = buf[0, tx]
            cuda.syncthreads()

    return kernel


# --- elementwise ------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def sigmoid(dtype_name: str):
    """Kernel out (M, P) = sigmoid(z (M, P)); 1-D launch, grid-stride over the M * P elements."""
    sig = device_functions(dtype_name)[0]["sigmoid"]

    @_kernel(1024)
    def kernel(z, out):
        M = z.shape[0]
        P = z.shape[1]
        for idx in range(cuda.grid(1), M * P, cuda.gridsize(1)):
            r = idx // P
            c = idx - r * P
            out[r, c] = sig(z[r, c])

    return kernel


@lru_cache(maxsize=None)
def fill(dtype_name: str):
    """Kernel out (L,) = value; 1-D launch, grid-stride."""

    @_kernel(1024)
    def kernel(out, value):
        for idx in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            out[idx] = value

    return kernel
