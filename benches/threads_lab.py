"""Lab: the course net's fused epoch on two threads, against the serial fused path.

    python benches/threads_lab.py [--epochs 300] [--check 3]

An experiment toward issue 3's 20x target, not a code path of fastface. One Numba parallel
region per epoch runs two workers for the whole epoch; per batch they meet at one spin
barrier (an atomic counter, about 0.06 us here). Split:
    worker t    gathers the whole batch into its own buffer, computes its half of the layer-0
                outputs (W^T rows o0..o1: 32 x 400 x 13 or x 12), publishes them in an exchange
                buffer (two, by batch parity, so a worker one batch ahead cannot overwrite what
                the other still reads), then
    barrier     and both, redundantly, on private copies: the layer-0 activations from both
                halves, layers 1.. forward, the loss, layers 1.. backward and dz0, the update of
                layers 1.. (identical arithmetic, so identical copies); then worker t computes
                dW^T and db for its layer-0 rows and updates them, which only it reads.
The serial path's arithmetic per value is kept: after --check epochs the weights equal the
serial fused epoch's bit for bit (checked before timing).

Measured 2026-12-04 (2 cores, AMD EPYC): serial 0.44 ms an epoch, two threads 0.34 ms with
OpenMP's default spinning workers, 0.40 against 0.42 with OMP_WAIT_POLICY=PASSIVE (waking the
sleeping worker each epoch costs most of what the split saves). The redundant middle (4.4 us
a batch) and the gather stay on both threads, so this split is about 15x PyTorch's one
thread, not 20x; splitting the middle too needs more barriers and exchanges per batch.
Needs two workers that really run at once: with fewer threads, or a threading layer that may
run both iterations on one thread, it says so and stops instead of spinning forever.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402
from numba.core import types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

import fastface as ff  # noqa: E402
from fastface import _fused as F  # noqa: E402
from fastface.backends._numba_act import NONE  # noqa: E402
from fastface.backends._numba_gemm import _gemm_direct, _gemm_serial  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_peers import COURSE, make_data  # noqa: E402


@intrinsic
def _atomic_add(typingctx, arr, idx, val):
    def codegen(context, builder, sig, args):
        ptr = builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return types.int64(arr, idx, val), codegen


@intrinsic
def _atomic_load(typingctx, arr, idx):
    def codegen(context, builder, sig, args):
        ptr = builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, idx), codegen


@njit(inline="always")
def _barrier(count, k):
    """The k-th meeting of the two workers (count only grows: no reset, no sense flag)."""
    _atomic_add(count, 0, 1)
    while _atomic_load(count, 0) < 2 * k:
        pass


@njit(fastmath=F.FASTMATH, error_model="numpy")
def _worker(t, X, Y, sw, perm, theta, mine, grad, table, lr, A, D, xb, ex, count, stats):
    theta, mine, grad, xb = F._unowned(theta), F._unowned(mine), F._unowned(grad), F._unowned(xb)
    A, D = F._unowned(A), F._unowned(D)
    N, IN = X.shape
    B = xb.shape[0]
    L = table.shape[0]
    OUT0 = table[0, 1]
    o0 = 0 if t == 0 else (OUT0 + 1) // 2
    o1 = (OUT0 + 1) // 2 if t == 0 else OUT0
    WT0, b0 = F._weights(theta, table, 0)
    gWT0, _ = F._weights(grad, table, 0)
    base0 = table[0, 4]
    rest = table[1:]  # layers 1.. as a network whose input is layer 0's block
    total = 0.0
    k = 0
    for start in range(0, N, B):
        nb = min(B, N - start)
        for r in range(nb):
            src = perm[start + r]
            for c in range(IN):
                xb[r, c] = X[src, c]
        xv = xb[:nb]
        own = ex[k % 2, t, : nb * OUT0].reshape((nb, OUT0))
        _gemm_serial(xv, WT0[o0:o1].T, own[:, o0:o1], own[0, :0], NONE, 0, 0, 0, 1)
        k += 1
        _barrier(count, k)
        other = ex[(k - 1) % 2, 1 - t, : nb * OUT0].reshape((nb, OUT0))
        for r in range(nb):
            for o in range(OUT0):
                A[base0 + r * OUT0 + o] = own[r, o] if o0 <= o < o1 else other[r, o]
        F._bias_act_block(A, base0, nb, OUT0, b0, table[0, 5])
        a0 = F._block(A, table, 0, nb)
        F._forward(a0, nb, mine, rest, A, True)
        total += nb * F._output_loss(A, D, Y, sw, perm, start, nb, table[L - 1, 1], table[L - 1, 4],
                                     table[L - 1, 5], 0, 0, stats)
        F._backward(a0, nb, mine, grad, rest, A, D)  # layers 1..; their first dx is ours to do
        WT1, _ = F._weights(mine, table, 1)
        F._matmul(F._block(D, table, 1, nb), WT1, F._block(D, table, 0, nb))
        F._derivative_block(A, D, base0, nb, OUT0, table[0, 5])
        dz0 = F._block(D, table, 0, nb)
        rows = gWT0[o0:o1]
        _gemm_direct(dz0[:, o0:o1].T, xv, rows, rows[0, :0], NONE)
        for o in range(o0, o1):
            s = lr - lr
            for r in range(nb):
                s += dz0[r, o]
            b0[o] -= lr * s
            for c in range(IN):
                WT0[o, c] -= lr * gWT0[o, c]
        for i in range(table[1, 2], mine.shape[0]):
            mine[i] -= lr * grad[i]
    return total


@njit(parallel=True)
def epoch_two_threads(X, Y, sw, perm, theta, mine, grad, table, lr, A, D, xb, ex, count, stats):
    """One epoch of plain SGD (no decay) on two workers; theta gets the result."""
    for t in prange(2):
        _worker(t, X, Y, sw, perm, theta, mine[t], grad[t], table, lr, A[t], D[t], xb[t], ex, count, stats[t])
    theta[table[1, 2]:] = mine[0, table[1, 2]:]


@njit(parallel=True)
def _who_runs(ids):
    for t in prange(2):
        ids[t] = numba.get_thread_id()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=300, help="timed epochs per repeat (default 300)")
    ap.add_argument("--check", type=int, default=3, help="epochs compared with the serial path first")
    args = ap.parse_args(argv)
    ids = np.full(2, -1, np.int64)
    _who_runs(ids)
    if numba.get_num_threads() < 2 or ids[0] == ids[1]:
        print(f"needs two Numba threads that run at once; have {numba.get_num_threads()} "
              f"(threading layer {numba.threading_layer()}, both iterations on thread {ids[0]}): stopping")
        return 1
    X, y = make_data(COURSE)
    model = ff.Sequential([ff.Dense(25, "sigmoid"), ff.Dense(15, "sigmoid"), ff.Dense(1, "sigmoid")],
                          input_dim=400, dtype="float32", seed=0)
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=COURSE["lr"])
    model.fit(X, y, epochs=1, batch_size=COURSE["batch"], verbose=0)  # builds and compiles
    state = ff.model._EpochState(model, np.ascontiguousarray(X), model._targets(y, len(X), "lab")[0],
                                 np.ones(len(X), np.float32), COURSE["batch"], True)
    perm = np.random.default_rng(1).permutation(len(X)).astype(np.int64)
    opt = model.optimizer
    theta0 = model.theta.copy()

    def serial(theta):
        F.train_epoch(state.X, state.Y, state.w, perm, theta, model._grad, opt.s1, opt.s2, state.table,
                      state.loss_code, state.metric_code, opt.code, opt.hyper(model.dtype), opt.t,
                      state.A, state.D, state.xb, state.stats)

    two = {"grad": np.zeros((2, theta0.size), np.float32), "A": np.zeros((2, state.A.size), np.float32),
           "D": np.zeros((2, state.D.size), np.float32), "xb": np.zeros((2,) + state.xb.shape, np.float32),
           "ex": np.zeros((2, 2, state.xb.shape[0] * int(state.table[0, 1])), np.float32), "stats": np.zeros((2, 4))}
    lr = np.float32(COURSE["lr"])

    def parallel(theta):
        mine = np.stack([theta, theta])
        epoch_two_threads(state.X, state.Y, state.w, perm, theta, mine, two["grad"], state.table, lr,
                          two["A"], two["D"], two["xb"], two["ex"], np.zeros(1, np.int64), two["stats"])

    a, b = theta0.copy(), theta0.copy()
    for _ in range(args.check):
        serial(a)
        parallel(b)
    print(f"after {args.check} epochs: max |serial - two threads| = {np.abs(a - b).max():.2e} "
          f"(weights up to {np.abs(a).max():.2f})")
    for name, fn in (("serial fused epoch", serial), ("two threads", parallel)) * 2:
        w = theta0.copy()
        best = np.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(args.epochs):
                fn(w)
            best = min(best, (time.perf_counter() - t0) / args.epochs)
        print(f"{name:20s} {best * 1e3:.3f} ms an epoch  (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
