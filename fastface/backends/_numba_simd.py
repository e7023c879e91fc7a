"""Register-blocked GEMM micro-kernel for the numba backend, written as a Numba intrinsic.

Dimensions (one call computes one MR x NR tile of C):
    kc      depth of the update (the K extent of this block)
    MR      rows of the tile   (compile-time constant of the kernel)
    NV      vectors per tile row; NR = NV * L columns, L = VEC_BYTES // itemsize lanes
    m, n    valid rows / columns of the tile (m <= MR, n <= NR), the edges of C

    C[i, j] (+)= sum_k A[i, k] * B[k, j]      for i < m, j < n

Element (i, k) of A is read at ``A.data + a_off + i*a_rs + k*a_cs`` (any strides, so a packed
panel or a transposed view both work); row k of B at ``B.data + b_off + k*b_rs`` with unit
column stride; row i of C at ``C.data + c_off + i*c_rs`` with unit column stride. Offsets and
strides count elements, not bytes.

Why an intrinsic: Numba's auto-vectoriser follows LLVM's "prefer 256-bit" tuning on AVX-512
machines and cannot keep an MR x NR accumulator block in registers when NR is a runtime loop.
Here the accumulators are MR*NV SSA vector values (``<L x float>`` phis) updated with
``llvm.fma`` in a loop over k, so LLVM allocates them to registers: the shape of a BLIS
micro-kernel (NV vector loads of B and MR broadcasts of A feed MR*NV FMAs per k). Full tiles
(n == NR) use plain vector loads and stores; edge tiles use
``llvm.masked.load``/``llvm.masked.store`` on the columns (no read or write past column n) and
clamp the row index of A to the last valid row (rows >= m are computed from valid memory and
never stored). NaN and inf propagate exactly as in a plain loop: nothing is skipped.

The vector width comes from the host CPU as Numba sees it (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES
respected): 64 bytes with AVX-512F, 32 with AVX, otherwise 16. Numba's on-disk cache is keyed
by CPU name and features, so a cached kernel is never reused on a different vector width.
"""

from __future__ import annotations

import math

import llvmlite.binding as llvm
import numpy as np
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

__all__ = ["VEC_BYTES", "WIDE", "NARROW", "TAIL_ROWS", "COLUMN", "make_microkernel", "lanes", "flat_span", "exp_ieee", "tanh_ieee"]


def _host_vector_bytes() -> int:
    """Widest SIMD register (bytes) of the CPU Numba compiles for."""
    if numba.config.CPU_FEATURES:
        flags = {f[1:] for f in numba.config.CPU_FEATURES.split(",") if f.startswith("+")}
    elif numba.config.CPU_NAME:  # e.g. 'generic' for portable caches: assume the baseline
        flags = set()
    else:
        flags = {name for name, on in llvm.get_host_cpu_features().items() if on}
    if "avx512f" in flags:
        return 64
    if "avx" in flags and "fma" in flags:
        return 32
    return 16


VEC_BYTES = _host_vector_bytes()

# (MR, NV) register tiles per vector width. WIDE feeds the packed (large) path: MR*NV
# accumulators + NV loads of B + 1 broadcast stay within the register file (32 zmm with
# AVX-512, 16 ymm/xmm otherwise). NARROW (fewer columns, more rows) wastes fewer lanes on
# thin layers such as OUT = 25 in the unpacked small path. Its MR is bounded by the general
# registers too: the unpacked kernel keeps one row offset per row of A plus the A and B
# pointers, their strides and the counter; with MR = 12 that is more than x86-64's 15 and
# LLVM reloads offsets from the stack on every k (measured, AVX-512, 32x400x25 float32:
# 5.8 us with MR = 12, 3.3 us with MR = 8, the FMA-bound time of the 2-vector tile).
_TILES = {64: ((6, 4), (8, 2), 4), 32: ((6, 2), (4, 2), 4), 16: ((4, 2), (4, 2), 4)}
WIDE, NARROW, TAIL_ROWS = _TILES[VEC_BYTES]
# COLUMN: the unpacked tile for an A with unit row stride (x.T in dW = x.T @ dz, dz.T in
# dW^T = dz^T @ x): its row offsets are the constants 0..MR-1, so MR is bounded by the vector
# registers only (MR*NV + NV + 1 <= 32 zmm / 16 ymm). Measured, AVX-512, dW^T 25x32x400
# float32: 3.0 us with NARROW (bands of 8, 8, 8, 1), 2.7 us with (13, 2) (bands of 13, 12).
COLUMN = {64: (13, 2), 32: (6, 2), 16: (6, 2)}[VEC_BYTES]
# TAIL_ROWS: a shorter NARROW kernel for a last band of at most TAIL_ROWS rows (M = 36 is
# 8 + 8 + 8 + 8 + 4 rows, not 40 computed)


def lanes(itemsize: int) -> int:
    """Vector lanes L for an element of `itemsize` bytes."""
    return VEC_BYTES // itemsize


def make_microkernel(MR: int, NV: int):
    """An intrinsic ``mk(kc, A, a_off, a_rs, a_cs, B, b_off, b_rs, C, c_off, c_rs, m, n, accumulate)``.

    Computes the (m, n) tile C = A @ B (accumulate=False) or C += A @ B (accumulate=True),
    A (m, kc), B (kc, n) as described in the module docstring; n <= NV * L, m <= MR, m >= 1.
    """

    @intrinsic
    def mk(typingctx, kc, A, a_off, a_rs, a_cs, B, b_off, b_rs, C, c_off, c_rs, m, n, accumulate):
        for arr in (A, B, C):
            if not isinstance(arr, types.Array) or arr.dtype not in (types.float32, types.float64):
                return None
        if not (A.dtype == B.dtype == C.dtype):
            return None
        sig = types.void(kc, A, a_off, a_rs, a_cs, B, b_off, b_rs, C, c_off, c_rs, m, n, accumulate)

        def codegen(context, builder, sig, args):
            I = ir.IntType(64)
            i32 = ir.IntType(32)
            ints = []
            for pos in (0, 2, 3, 4, 6, 7, 9, 10, 11, 12):
                ints.append(context.cast(builder, args[pos], sig.args[pos], types.int64))
            kc, a_off, a_rs, a_cs, b_off, b_rs, c_off, c_rs, m, n = ints
            acc_flag = context.cast(builder, args[13], sig.args[13], types.boolean)

            T = context.get_value_type(sig.args[8].dtype)
            isz = context.get_abi_sizeof(T)
            L = VEC_BYTES // isz
            V = ir.VectorType(T, L)
            Mask = ir.VectorType(ir.IntType(1), L)
            pT = T.as_pointer()
            mod = builder.module
            sfx = f"v{L}f{isz * 8}"
            vfma = cgutils.get_or_insert_function(mod, ir.FunctionType(V, [V, V, V]), f"llvm.fma.{sfx}")
            mload = cgutils.get_or_insert_function(
                mod, ir.FunctionType(V, [pT, i32, Mask, V]), f"llvm.masked.load.{sfx}.p0"
            )
            mstore = cgutils.get_or_insert_function(
                mod, ir.FunctionType(ir.VoidType(), [V, pT, i32, Mask]), f"llvm.masked.store.{sfx}.p0"
            )

            def data(pos):
                return context.make_array(sig.args[pos])(context, builder, args[pos]).data

            abase = builder.gep(data(1), [a_off])
            bbase = builder.gep(data(5), [b_off])
            cbase = builder.gep(data(8), [c_off])
            align = ir.Constant(i32, isz)
            zero = ir.Constant(V, [ir.Constant(T, 0.0)] * L)
            splat0 = ir.Constant(ir.VectorType(i32, L), [0] * L)

            def splat(value, vty):
                v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(i32, 0))
                return builder.shuffle_vector(v, v, splat0)

            # column masks: lane j of vector v is live when v*L + j < n (integers of the element's
            # width, so the compare result is the mask register itself); used on edge tiles only
            IV = ir.VectorType(ir.IntType(isz * 8), L)
            n_w = builder.trunc(n, IV.element) if isz == 4 else n
            masks = []
            for v in range(NV):
                lane_ids = ir.Constant(IV, [ir.Constant(IV.element, v * L + j) for j in range(L)])
                masks.append(builder.icmp_signed("<", lane_ids, splat(n_w, IV)))
            full = builder.icmp_signed(">=", n, ir.Constant(I, NV * L))
            # row pointers of A, rows >= m clamped to row m - 1 (always valid memory)
            last = builder.sub(m, ir.Constant(I, 1))
            arows = []
            for i in range(MR):
                ii = ir.Constant(I, i)
                r = builder.select(builder.icmp_signed("<", ii, m), ii, last)
                arows.append(builder.gep(abase, [builder.mul(r, a_rs)]))

            # prefetch the C tile for writing: it is touched only after the k loop, and its rows
            # lie c_rs apart (usually not in cache), so without this the tile update stalls
            pf = cgutils.get_or_insert_function(
                mod, ir.FunctionType(ir.VoidType(), [pT, i32, i32, i32]), "llvm.prefetch.p0"
            )
            for i in range(MR):
                ii = ir.Constant(I, i)
                r = builder.select(builder.icmp_signed("<", ii, m), ii, last)
                crow = builder.gep(cbase, [builder.mul(r, c_rs)])
                for v in range(NV):
                    ptr = builder.gep(crow, [ir.Constant(I, v * L)])
                    builder.call(pf, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])

            def vload(ptr, v, masked):
                if masked:
                    return builder.call(mload, [ptr, align, masks[v], zero])
                return builder.load(builder.bitcast(ptr, V.as_pointer()), align=isz)

            def vstore(val, ptr, v, masked):
                if masked:
                    builder.call(mstore, [val, ptr, align, masks[v]])
                else:
                    builder.store(val, builder.bitcast(ptr, V.as_pointer()), align=isz)

            # two copies of the k loop: full tiles load B with plain vector loads (a masked
            # load is 2 uops and pins the mask registers), edge tiles with masked loads
            entry = builder.basic_block
            pick = builder.append_basic_block("mk.pick")
            done = builder.append_basic_block("mk.done")
            builder.cbranch(builder.icmp_signed(">", kc, ir.Constant(I, 0)), pick, done)
            builder.position_at_end(pick)
            loop_full = builder.append_basic_block("mk.loop.full")
            loop_edge = builder.append_basic_block("mk.loop.edge")
            builder.cbranch(full, loop_full, loop_edge)
            exits = []
            for blk, masked in ((loop_full, False), (loop_edge, True)):
                builder.position_at_end(blk)
                k = builder.phi(I)
                k.add_incoming(ir.Constant(I, 0), pick)
                acc = [[builder.phi(V) for _ in range(NV)] for _ in range(MR)]
                for row in acc:
                    for p in row:
                        p.add_incoming(zero, pick)
                brow = builder.gep(bbase, [builder.mul(k, b_rs)])
                bvec = [vload(builder.gep(brow, [ir.Constant(I, v * L)]), v, masked) for v in range(NV)]
                kcs = builder.mul(k, a_cs)
                new = []
                for i in range(MR):
                    av = splat(builder.load(builder.gep(arows[i], [kcs])), V)
                    new.append([builder.call(vfma, [av, bvec[v], acc[i][v]]) for v in range(NV)])
                k1 = builder.add(k, ir.Constant(I, 1))
                tail = builder.basic_block
                k.add_incoming(k1, tail)
                for i in range(MR):
                    for v in range(NV):
                        acc[i][v].add_incoming(new[i][v], tail)
                builder.cbranch(builder.icmp_signed("<", k1, kc), blk, done)
                exits.append((tail, new))

            builder.position_at_end(done)
            fin = []  # every phi first: they must open the block
            for i in range(MR):
                row = []
                for v in range(NV):
                    p = builder.phi(V)
                    p.add_incoming(zero, entry)
                    for tail, new in exits:
                        p.add_incoming(new[i][v], tail)
                    row.append(p)
                fin.append(row)
            for i in range(MR):
                with builder.if_then(builder.icmp_signed("<", ir.Constant(I, i), m)):
                    crow = builder.gep(cbase, [builder.mul(ir.Constant(I, i), c_rs)])
                    ptrs = [builder.gep(crow, [ir.Constant(I, v * L)]) for v in range(NV)]
                    with builder.if_else(full) as (whole, edge):
                        for branch, masked in ((whole, False), (edge, True)):
                            with branch:
                                with builder.if_else(acc_flag) as (then, otherwise):
                                    with then:
                                        for v in range(NV):
                                            old = vload(ptrs[v], v, masked)
                                            vstore(builder.fadd(old, fin[i][v]), ptrs[v], v, masked)
                                    with otherwise:
                                        for v in range(NV):
                                            vstore(fin[i][v], ptrs[v], v, masked)
            return context.get_dummy_value()

        return sig, codegen

    return mk


@intrinsic
def flat_span(typingctx, arr, lowest, span):
    """A 1-D contiguous view of the `span` elements of memory that `arr` occupies.

    ``lowest`` (elements, <= 0) is the offset of arr's lowest-addressed element from
    ``arr[0, ..., 0]``; the caller computes it and ``span`` from arr's shape and strides, so
    every element of arr lies inside the view and index ``-lowest + i*rs + j*cs`` is
    ``arr[i, j]``. Lets packing loops index with strides known to be 1 (vectorisable) instead
    of Numba's any-layout indexing. Shares arr's memory and keeps it alive (no copy).
    """
    if not isinstance(arr, types.Array):
        return None
    ret = types.Array(arr.dtype, 1, "C", readonly=not arr.mutable)

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        low = context.cast(builder, args[1], sig.args[1], types.intp)
        n = context.cast(builder, args[2], sig.args[2], types.intp)
        out = context.make_array(sig.return_type)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype)))
        populate_array(
            out,
            data=builder.gep(src.data, [low]),
            shape=cgutils.pack_array(builder, [n]),
            strides=cgutils.pack_array(builder, [itemsize]),
            itemsize=itemsize,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        return impl_ret_borrowed(context, builder, sig.return_type, out._getvalue())

    return ret(arr, lowest, span), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # 9 significant bits: n * _LN2_HI is exact for |n| < 2**15
_LN2_LO = -2.1219444005469058277e-4  # ln 2 - _LN2_HI
# Taylor coefficients 1/13!, ..., 1/1!, 1/0!: truncation below 5e-18 for |r| <= 0.35
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))
# float32 needs 1/7!, ..., 1/0!: the rest adds less than 0.35**8 / 8! = 5e-9 relative, a
# tenth of float32's half ulp (six fewer FMAs a value: bias + sigmoid of a 32 x 25 float32
# block about 0.1 us faster, the numba backend's sigmoid of 256 x 4096 float32 9.2 -> 7.6 ms)
_TAYLOR_F32 = _TAYLOR[-8:]


def _scale_pow2(builder, pv, nv, bits, mant, bias):
    """IR for pv * 2**nv, pv in [0.7, 1.42], nv an integral float (not NaN), rounded once.

    Numba stamps its fastmath flags ('reassoc' included) on every plain fadd/fmul, so the
    scaling avoids chained products that could be regrouped into an overflowing or
    underflowing 2**n: normal results add n to p's exponent field (integer arithmetic, exact);
    subnormal ones take a single multiply by 2**n built from bits (exact power, one
    rounding); the two exponents at the edges are finished by hand (p*2**(bias+1) is finite only
    for p < 1; p*2**(emin-1) rounds to the smallest subnormal only for p > 1).
    """
    T = pv.type
    I = ir.IntType(bits)
    emin = -(bias + mant - 1)  # exponent of the smallest subnormal

    def const(v):
        return ir.Constant(I, v)

    def clamp(x, lo, hi):
        x = builder.select(builder.icmp_signed("<", x, const(lo)), const(lo), x)
        return builder.select(builder.icmp_signed(">", x, const(hi)), const(hi), x)

    ni = builder.fptosi(clamp_f(builder, nv, float(emin - 2), float(bias + 2)), I)
    # normal range: exponent-field addition
    pb = builder.bitcast(pv, I)
    y_norm = builder.bitcast(builder.add(pb, builder.shl(clamp(ni, 1 - bias, bias + 1), const(mant))), T)
    # subnormal range: one multiply by an exact power of two
    ns = clamp(ni, emin, 1 - bias)
    sub_bits = builder.shl(const(1), builder.sub(ns, const(emin)))
    norm_bits = builder.shl(builder.add(ns, const(bias)), const(mant))
    pow2 = builder.bitcast(builder.select(builder.icmp_signed("<", ns, const(1 - bias)), sub_bits, norm_bits), T)
    y_sub = builder.fmul(pv, pow2)

    one = ir.Constant(T, 1.0)
    inf = ir.Constant(T, float("inf"))
    zero = ir.Constant(T, 0.0)
    tiny = builder.bitcast(const(1), T)
    p_below_1 = builder.fcmp_ordered("<", pv, one)
    y = builder.select(builder.icmp_signed("<=", ni, const(1 - bias)), y_sub, y_norm)
    y = builder.select(builder.icmp_signed("==", ni, const(bias + 1)), builder.select(p_below_1, y_norm, inf), y)
    y = builder.select(builder.icmp_signed(">", ni, const(bias + 1)), inf, y)
    y = builder.select(builder.icmp_signed("==", ni, const(emin - 1)),
                       builder.select(builder.fcmp_ordered(">", pv, one), tiny, zero), y)
    return builder.select(builder.icmp_signed("<", ni, const(emin - 1)), zero, y)


def clamp_f(builder, x, lo, hi):
    """IR: x clamped to [lo, hi] (x not NaN)."""
    lo_c, hi_c = ir.Constant(x.type, lo), ir.Constant(x.type, hi)
    x = builder.select(builder.fcmp_ordered("<", x, lo_c), lo_c, x)
    return builder.select(builder.fcmp_ordered(">", x, hi_c), hi_c, x)


def _exp_ir(builder, xv, f32):
    """IR for exp(xv) (see exp_ieee)."""
    T = xv.type
    sfx = "f32" if f32 else "f64"
    mod = builder.module
    floor = cgutils.get_or_insert_function(mod, ir.FunctionType(T, [T]), f"llvm.floor.{sfx}")
    fma = cgutils.get_or_insert_function(mod, ir.FunctionType(T, [T, T, T]), f"llvm.fma.{sfx}")

    def c(v):
        return ir.Constant(T, float(np.float32(v)) if f32 else v)

    x0 = xv
    xv = builder.select(builder.fcmp_ordered(">", xv, c(-1.0e4)), xv, c(-1.0e4))  # NaN -> -1e4
    xv = builder.select(builder.fcmp_ordered("<", xv, c(1.0e4)), xv, c(1.0e4))
    n = builder.call(floor, [builder.call(fma, [xv, c(_LOG2E), c(0.5)])])
    # as llvm.fma calls: Numba stamps its fastmath flags on every plain fadd/fmul of the
    # function, and reassoc + nsz would regroup (x - n*hi) - n*lo into x - n*ln2
    neg_n = builder.fneg(n)
    r = builder.call(fma, [neg_n, c(_LN2_HI), xv])
    r = builder.call(fma, [neg_n, c(_LN2_LO), r])
    coefs = _TAYLOR_F32 if f32 else _TAYLOR
    p = c(coefs[0])
    for coef in coefs[1:]:
        p = builder.call(fma, [p, r, c(coef)])
    bits = (32, 23, 127) if f32 else (64, 52, 1023)
    y = _scale_pow2(builder, p, n, *bits)
    return builder.select(builder.fcmp_unordered("uno", x0, x0), x0, y)


@intrinsic
def tanh_ieee(typingctx, x):
    """tanh(x) in the type of x, branch-free and vectorisable (libm's tanh is a scalar call).

    tanh|x| = -m / (2 + m) with m = expm1(-2|x|): for |2x| < 0.35 m comes from its Taylor
    series (Horner with llvm.fma, no cancellation for small x), else from exp(-2|x|) - 1;
    the sign of x is copied back. tanh(+-inf) = +-1, NaN stays NaN; a few ulp.
    """
    if x not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        xv = args[0]
        T = xv.type
        f32 = sig.args[0] == types.float32
        sfx = "f32" if f32 else "f64"
        mod = builder.module
        fabs = cgutils.get_or_insert_function(mod, ir.FunctionType(T, [T]), f"llvm.fabs.{sfx}")
        fma = cgutils.get_or_insert_function(mod, ir.FunctionType(T, [T, T, T]), f"llvm.fma.{sfx}")
        copysign = cgutils.get_or_insert_function(mod, ir.FunctionType(T, [T, T]), f"llvm.copysign.{sfx}")

        def c(v):
            return ir.Constant(T, float(np.float32(v)) if f32 else v)

        t = builder.fmul(builder.call(fabs, [xv]), c(-2.0))
        q = c(1.0 / math.factorial(14))  # expm1(t) = t * (1 + t/2! + ... + t**13/14!)
        for k in range(13, 0, -1):
            q = builder.call(fma, [q, t, c(1.0 / math.factorial(k))])
        m_small = builder.fmul(q, t)
        m_big = builder.fsub(_exp_ir(builder, t, f32), c(1.0))
        m = builder.select(builder.fcmp_ordered(">", t, c(-0.35)), m_small, m_big)
        r = builder.fdiv(builder.fneg(m), builder.fadd(m, c(2.0)))
        return builder.call(copysign, [r, xv])

    return x(x), codegen


@intrinsic
def exp_ieee(typingctx, x):
    """exp(x) in the type of x, branch-free: exp(-inf) = 0, exp(inf) = inf, NaN stays NaN.

    x is clamped to [-1e4, 1e4] (beyond, the result is already 0 or inf), then

    exp(x) = 2**n * exp(r), n = floor(x log2 e + 1/2), r = (x - n*LN2_HI) - n*LN2_LO
    (Cody-Waite: exact up to the last rounding), exp(r) by Horner with llvm.fma over the
    Taylor coefficients to 1/13!, 2**n from exponent bits. The reduction is written as fma
    calls, which the caller's fastmath flags cannot regroup (regrouped, it loses hundreds of
    ulp); within 1 ulp of NumPy's exp in float64 and float32, and a loop calling it
    vectorises (libm's exp is a scalar call).
    """
    if x not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        return _exp_ir(builder, args[0], sig.args[0] == types.float32)

    return x(x), codegen
