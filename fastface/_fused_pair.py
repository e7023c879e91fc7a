"""The fused epoch on two workers: one Numba parallel region per epoch, two threads.

Dimensions and buffers as in fastface._fused (N, B, nb, L, IN_l, OUT_l, P, theta, table, ...);
in addition:
    t                    a worker, 0 or 1
    o0, o1               worker t's layer-0 units: [0, h) for t = 0, [h, OUT_0) for t = 1,
                         h = ceil(OUT_0 / 2)
    P1 = table[1, 2]     theta[:P1] is layer 0 (W^T then b), theta[P1:] layers 1..
    xb     (2, B*IN_0)   each worker's gathered batch (the whole batch: both need every row)
    z0     (2, B*h)      layer 0's activations, shared: by worker, (nb, its units); one buffer
                         each is enough: a worker writes the next batch's only after meeting
                         2, which the other reaches after copying this batch's
    mine   (2, P)        each worker's copy of theta for layers 1.. (its [P1:])
    grads  (2, P)        each worker's gradient: its own layer-0 rows, and layers 1..
    m1, m2 (2, P)        each worker's optimizer state for layers 1..
    hypers (2, N_HYPER)  each worker's hyper (its scratch slots are written per step)
    steps  (2, 1)        each worker's step counter
    A, D   (2, B*sum OUT_l)  each worker's activations and gradients
                         (every per-worker buffer: its two rows on separate cache lines)
    stats  (2, 4)        each worker's stats (worker 0's are returned)
    sync   (1,)          int64 meeting counter; flags (2, 2) int64: a flag per worker, per
                         meeting parity; status (2,) int64: each worker's return code

Split of one batch (n = nb rows):
    each worker     gathers the batch, computes its layer-0 units
                    z0[:, o0:o1] = act(x W[:, o0:o1] + b[o0:o1]) into its half of z0
    meeting 1       (the flag: did the previous update stay finite everywhere?)
    both            copy z0 into their own A and run, redundantly and with identical
                    arithmetic, layers 1.. forward, the loss, layers 1.. backward and dz0;
                    then worker t computes dW^T[o0:o1] and db[o0:o1] of layer 0
    meeting 2       (the flag: is every gradient finite?)
    both            update: worker t its layer-0 rows in the shared theta (only it reads or
                    writes them), each its own copy of layers 1..
Layer 0 is where the work is in the small networks this serves (the course net: 320k of
332k multiply-adds a batch, per pass). Each value is computed by the serial path's own
kernels in the same order, so the weights equal the serial fused epoch's: bit for bit on
the course net (tested), and run after run. After the epoch worker 0's copy of layers 1..
becomes theta's.

The meeting is an atomic counter that only grows (the k-th meeting is passed when it
reaches 2k): a spin with a yield to the OS after SPINS turns, so that a machine with more
busy threads than cores loses time, not progress. The first meeting is a handshake with a
time limit: when the second worker does not arrive (one thread runs both iterations, the
threads are not there), nothing has been changed yet, the epoch returns NO_PAIR, and the
caller trains it on the serial path.

Nothing inside the workers raises (every buffer is checked before the parallel region): a
raise in one worker would leave the other waiting at a meeting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numba
import numpy as np
from llvmlite import ir
from numba import carray, njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import _fused as F
from . import config

NO_PAIR = 3  # status: the second worker never arrived; nothing was changed
SPINS = 2000  # turns of a meeting's spin before each further turn yields to the OS
HANDSHAKE_YIELDS = 200_000  # yields (about 0.1-1 s) the first meeting waits for the second worker


def _has_sched_yield() -> bool:
    """POSIX sched_yield is in this process (then the pair path is offered)."""
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or None), "sched_yield")
    except (OSError, TypeError):
        return False


AVAILABLE = os.name == "posix" and _has_sched_yield()


# --- atomics on an int64 array element ------------------------------------------------------
def _element_pointer(context, builder, sig, args):
    data = context.make_array(sig.args[0])(context, builder, args[0]).data
    return builder.gep(data, [args[1]])


@intrinsic
def _atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val atomically (sequentially consistent); the old value."""

    def codegen(context, builder, sig, args):
        return builder.atomic_rmw("add", _element_pointer(context, builder, sig, args), args[2], "seq_cst")

    return types.int64(arr, idx, val), codegen


@intrinsic
def _atomic_load(typingctx, arr, idx):
    """arr[idx], an acquire load (what the other worker wrote before its atomic add is seen)."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element_pointer(context, builder, sig, args), "acquire", 8)

    return types.int64(arr, idx), codegen


@intrinsic
def _atomic_cas(typingctx, arr, idx, expected, new):
    """arr[idx] = new if it equals expected, atomically; True when it did."""

    def codegen(context, builder, sig, args):
        pair = builder.cmpxchg(_element_pointer(context, builder, sig, args), args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(arr, idx, expected, new), codegen


@intrinsic
def _sched_yield(typingctx):
    """POSIX sched_yield(), declared by name (a ctypes pointer would keep the workers out of
    Numba's on-disk cache: 20 s of compilation in every new process)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(fn, [])

    return types.int32(), codegen


@njit(cache=True, inline="always")
def _view(a):
    """a (C-contiguous: checked before the parallel region) without reference counting, as
    fastface._fused._unowned but with no raise in it."""
    return carray(F._void_pointer(a.ctypes.data), a.shape, a.dtype)


# --- meetings -------------------------------------------------------------------------------
@njit(cache=True)
def _meet(sync, k):
    """The k-th meeting of the two workers (k = 1, 2, ...)."""
    _atomic_add(sync, 0, 1)
    turns = 0
    while _atomic_load(sync, 0) < 2 * k:
        turns += 1
        if turns > SPINS:
            _sched_yield()


@njit(cache=True)
def _meet_flag(sync, flags, k, t, flag):
    """The k-th meeting, exchanging one flag: True when both workers' flags are true.

    flags[k % 2] holds the flags of meeting k: a worker writes those of meeting k + 2 only
    after passing meeting k + 1, which the other reaches after reading those of meeting k.
    """
    flags[k % 2, t] = flag
    _meet(sync, k)
    return flags[k % 2, 0] != 0 and flags[k % 2, 1] != 0


@njit(cache=True)
def _handshake(sync):
    """The first meeting, with a time limit: True when both workers are there. The one that
    gives up marks the counter so that the other, should it come later, gives up too."""
    if _atomic_add(sync, 0, 1) < 0:
        return False  # the other worker gave up already
    turns = 0
    while _atomic_load(sync, 0) < 2:
        turns += 1
        if turns > SPINS:
            _sched_yield()
            if turns > SPINS + HANDSHAKE_YIELDS and _atomic_cas(sync, 0, 1, -(1 << 40)):
                return False
    return True


# --- one worker -----------------------------------------------------------------------------
@njit(fastmath=F.FASTMATH, error_model="numpy", cache=True)
def _worker(t, X, Y, sw, perm, theta, s1, s2, table, loss, metric, opt,
            mine, grad, m1, m2, hyper, step, A, D, xb, z0, sync, flags, stats):
    """Worker t's part of the epoch (module legend); returns the status of train_epoch."""
    theta, s1, s2 = _view(theta), _view(s1), _view(s2)
    mine, grad, m1, m2, A, D = _view(mine), _view(grad), _view(m1), _view(m2), _view(A), _view(D)
    xb = _view(xb)
    N = X.shape[0]
    L = table.shape[0]
    B = xb.shape[0] // table[0, 0]
    OUT = table[L - 1, 1]
    IN0 = table[0, 0]
    OUT0 = table[0, 1]
    half = (OUT0 + 1) // 2
    o0 = 0 if t == 0 else half
    o1 = half if t == 0 else OUT0
    P1 = table[1, 2]
    zero = hyper[F.H_LR] - hyper[F.H_LR]
    rest = table[1:]  # layers 1.. as a network whose input is layer 0's block
    WT0, b0 = F._weights(theta, table, 0)
    gWT0, gb0 = F._weights(grad, table, 0)
    act0 = table[0, 5]
    base0 = table[0, 4]
    stats[0] = 0.0
    stats[1] = 0.0
    stats[2] = 0.0
    stats[3] = -1.0
    if not _handshake(sync):
        return NO_PAIR
    k = 1  # meetings passed
    batch = 0
    updated = True  # the previous batch's update stayed finite (for this worker's part)
    for start in range(0, N, B):
        nb = min(B, N - start)
        xv = xb[: nb * IN0].reshape((nb, IN0))
        F.gather(X, perm, start, xv)  # the whole batch: sharing halves across cores costs more
        # this worker's layer-0 units, (nb, o1 - o0) contiguous in its own exchange buffer
        # (the two halves of one row share cache lines: written by both, they would bounce)
        w = o1 - o0
        own = _view(z0[t])
        zb = own[: nb * w].reshape((nb, w))
        F.matmul_own(xv, WT0[o0:o1].T, zb)
        for r in range(nb):
            row = zb[r]
            for o in range(w):
                row[o] += b0[o0 + o]
        F.act_elementwise(own[: nb * w], act0)
        k += 1
        if not _meet_flag(sync, flags, k, t, updated):
            stats[3] = batch - 1
            return 2
        a0 = F._block(A, table, 0, nb)
        for u in range(2):  # both halves into this worker's own layer-0 block
            lo = 0 if u == 0 else half
            wu = half if u == 0 else OUT0 - half
            zu = _view(z0[u])[: nb * wu].reshape((nb, wu))
            for r in range(nb):
                F.copy(zu[r], a0[r, lo : lo + wu])
        F._forward(a0, nb, mine, rest, A, L - 2)  # layers 1..L-2 activated, the output's z kept
        value = F._output_loss(A, D, Y, sw, perm, start, nb, OUT, table[L - 1, 4], table[L - 1, 5], loss, metric, stats)
        if not F._finite(value):  # the same value on both workers: both stop here
            stats[3] = batch
            return 1
        F._backward(a0, nb, mine, grad, rest, A, D)  # layers 1..; the dx of layer 1 is below
        WT1, _ = F._weights(mine, table, 1)
        F._matmul(F._block(D, table, 1, nb), WT1, F._block(D, table, 0, nb))
        F._derivative_block(A, D, base0, nb, OUT0, act0)
        dz0 = F._block(D, table, 0, nb)
        F.matmul_own(dz0[:, o0:o1].T, xv, gWT0[o0:o1])  # dW^T = dz^T x, this worker's rows
        gb = gb0[o0:o1]
        gb[:] = 0.0
        for r in range(nb):
            row = dz0[r, o0:o1]
            for o in range(o1 - o0):
                gb[o] += row[o]
        W0 = table[0, 2]
        finite = F.all_finite(grad[W0 + o0 * IN0 : W0 + o1 * IN0]) and F.all_finite(gb) and F.all_finite(grad[P1:])
        k += 1
        if not _meet_flag(sync, flags, k, t, finite):
            stats[3] = batch
            return 1
        stats[0] += value * nb
        F.next_step(hyper, step)
        ok = F.update_range(theta, grad, s1, s2, W0 + o0 * IN0, W0 + o1 * IN0, hyper[F.H_WD], opt, hyper)
        ok &= F.update_range(theta, grad, s1, s2, table[0, 3] + o0, table[0, 3] + o1, zero, opt, hyper)
        for l in range(1, L):
            IN = table[l, 0]
            W = table[l, 2]
            b = table[l, 3]
            ok &= F.update_range(mine, grad, m1, m2, W, W + IN * table[l, 1], hyper[F.H_WD], opt, hyper)
            ok &= F.update_range(mine, grad, m1, m2, b, b + table[l, 1], zero, opt, hyper)
        updated = ok
        batch += 1
    if not _meet_flag(sync, flags, k + 1, t, updated):
        stats[3] = batch - 1
        return 2
    return 0


@njit(parallel=True, cache=True)
def _pair(X, Y, sw, perm, theta, s1, s2, table, loss, metric, opt, hyper, t,
          mine, grads, m1, m2, hypers, steps, A, D, xb, z0, sync, flags, stats, status):
    P1 = table[1, 2]
    for r in range(2):
        mine[r, P1:] = theta[P1:]
        m1[r, P1:] = s1[P1:]
        m2[r, P1:] = s2[P1:]
        hypers[r, :] = hyper
        steps[r, :] = t
    sync[0] = 0
    flags[:, :] = 1
    for w in prange(2):
        # np.int64: Numba types the loop body as int64, its parallel version as uint64; one
        # type for both compiles _worker once (5 s less on the first two-worker fit)
        status[w] = _worker(np.int64(w), X, Y, sw, perm, theta, s1, s2, table, loss, metric, opt, mine[w], grads[w],
                            m1[w], m2[w], hypers[w], steps[w], A[w], D[w], xb[w], z0, sync, flags, stats[w])
    if status[0] == NO_PAIR or status[1] == NO_PAIR:
        return NO_PAIR
    theta[P1:] = mine[0, P1:]
    s1[P1:] = m1[0, P1:]
    s2[P1:] = m2[0, P1:]
    hyper[:] = hypers[0]
    t[:] = steps[0]
    return status[0]


LINE = 128  # bytes between the two workers' rows of a per-worker buffer (two 64-byte cache lines)


def _rows(n, dtype):
    """(2, n) zeros whose two rows never share a cache line (each padded by LINE bytes, so
    that one worker's writes do not evict the line the other is writing)."""
    dtype = np.dtype(dtype)
    per_line = LINE // dtype.itemsize
    return np.zeros((2, -(-n // per_line) * per_line + per_line), dtype)[:, :n]


class Workspace:
    """The two workers' buffers for one fit (allocated once, reused every epoch)."""

    def __init__(self, table, B, dtype):
        P = int(table[-1, 3] + table[-1, 1])
        acts = B * int(table[:, 1].sum())
        self.mine = _rows(P, dtype)
        self.grads = _rows(P, dtype)
        self.m1 = _rows(P, dtype)
        self.m2 = _rows(P, dtype)
        self.hypers = _rows(F.N_HYPER, dtype)
        self.steps = _rows(1, np.int64)
        self.A = _rows(acts, dtype)
        self.D = _rows(acts, dtype)
        self.xb = _rows(B * int(table[0, 0]), dtype)
        self.z0 = _rows(B * ((int(table[0, 1]) + 1) // 2), dtype)
        self.sync = np.zeros(LINE // 8, np.int64)[:1]
        self.flags = np.zeros((2, 2), np.int64)
        self.stats = _rows(4, np.float64)
        self.status = np.zeros(2, np.int64)


def train_epoch(X, Y, sw, perm, theta, s1, s2, table, loss, metric, opt, hyper, t, ws, stats):
    """fastface._fused.train_epoch on two workers (same arguments and results, bit for bit
    with SGD where worthwhile() holds; `ws` is this fit's Workspace); returns NO_PAIR, having
    changed nothing, when the second worker did not come."""
    for a in (X, Y, sw, perm, theta, s1, s2, hyper, t, ws.mine[0], ws.xb[1], ws.z0[1]):
        if not a.flags.c_contiguous:
            raise ValueError("fastface._fused_pair: every buffer must be C-contiguous")
    status = _pair(X, Y, sw, perm, theta, s1, s2, table, loss, metric, opt, hyper, t, ws.mine, ws.grads, ws.m1,
                   ws.m2, ws.hypers, ws.steps, ws.A, ws.D, ws.xb, ws.z0, ws.sync, ws.flags, ws.stats, ws.status)
    if status != NO_PAIR:
        stats[:] = ws.stats[0]
    return int(status)


# --- when to use it -------------------------------------------------------------------------
failed = False  # set when a second worker did not come: this process stays on the serial path


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worthwhile(table, B, N) -> bool:
    """True when fit should train the fused epochs of this network (its fastface._fused
    table for batch capacity B, N examples) on two workers.

    Needs config.FUSED_WORKERS >= 2, two Numba threads (numba.set_num_threads /
    NUMBA_NUM_THREADS) and two cores for this process; a network of at least two layers whose
    layer 0 is elementwise (not softmax) and holds enough of the work
    (config.FUSED_PAIR_MIN_FLOPS multiply-adds a batch); and no product large enough to start
    BLAS's own threads inside the workers. Every batch, the last one too, must have layer 0's
    two products on fastface's own kernel in the serial path as well (at least
    _fused.OWN_GEMM_MIN_ROWS rows and units, OWN_GEMM_MIN_FLOPS to OWN_GEMM_FLOPS
    multiply-adds), which the workers use for their halves: so both paths compute every value
    alike.
    """
    workers = config.FUSED_WORKERS
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"fastface.config.FUSED_WORKERS must be 1 (serial) or 2 (two workers); got {workers!r}")
    if failed or not AVAILABLE or workers < 2 or len(table) < 2:
        return False
    IN0, OUT0 = int(table[0, 0]), int(table[0, 1])
    last = N - (N - 1) // B * B  # rows of the last batch
    if table[0, 5] == F.ACT_CODES["softmax"] or min(OUT0, last) < F.OWN_GEMM_MIN_ROWS:
        return False
    if B * IN0 * OUT0 < config.FUSED_PAIR_MIN_FLOPS or last * IN0 * OUT0 < F.OWN_GEMM_MIN_FLOPS:
        return False
    if max(B * int(row[0]) * int(row[1]) for row in table) > F.OWN_GEMM_FLOPS:
        return False
    return numba.get_num_threads() >= 2 and _cores() >= 2
