"""The fused fast path: a whole epoch of mini-batch training in one compiled Numba call.

Dimensions:
    N      examples in the training set          L     layers
    B      batch size (the last batch may be smaller: nb <= B)
    IN_l   inputs of layer l (IN_0 = features)   OUT_l units of layer l
    P      parameters of the model, all layers, flat

Buffers (every one allocated once by the caller, reused for every batch and every epoch):
    X      (N, IN_0)   training inputs, C-contiguous
    Y      (N, OUT_L)  targets (0/1 for BCE, one-hot for CCE, values for MSE)
    sw     (N,)        sample weights (ones when none)
    perm   (N,)        int64 order of the examples for this epoch (drawn in Python)
    theta  (P,)        parameters: layer l's W stored transposed, W^T (OUT_l, IN_l) row-major,
                       at table[l, 2] (so W (IN_l, OUT_l) is a column-major view), its b
                       (OUT_l,) at table[l, 3]; the model's layers are views into theta.
                       With W^T rows, BLAS runs x @ W and dW^T = dz^T @ x about 1.5x faster
                       for the short OUT of small networks than with W rows
    grad   (P,)        gradient, same layout (with plain SGD, train_epoch writes each
                       batch's new parameters over it and swaps the two buffers' roles;
                       theta holds the parameters again when it returns)
    s1, s2 (P,)        optimizer state (SGD: momentum buffer; Adam: first and second moments)
    table  (L, 6)      int64 per layer: IN, OUT, W offset, b offset, offset of its block in
                       A and D, activation code (ACT_CODES)
    xb     (B, IN_0)   the gathered batch
    A      (B * sum OUT_l,)  every layer's batch activations (layer l's block at table[l, 4])
    D      (B * sum OUT_l,)  their gradients, same layout
    stats  (4,)        float64 out: weighted loss sum, correct, counted, failed batch index

Loops index views from 0 (a row, a block: ``a = A[base : base + n]``, then ``a[i]``), not the
flat buffers at ``base + i``: Numba wraps negative indices, and an index it cannot prove
non-negative costs a select per access and keeps LLVM from vectorising the loop (the
derivative of a 32 x 25 block: 0.26 -> 0.03 us; the course epoch 0.42 -> 0.39 ms).

Every kernel compiles with error_model="numpy": a division by zero gives inf/NaN (caught by
the finiteness checks) instead of a Python exception, which lets LLVM vectorise loops that
divide.

Codes are small integers dispatched inside the compiled loop: activations ``ACT_CODES``,
losses ``LOSS_CODES``, optimizers ``OPT_CODES``, accuracy rule ``METRIC_CODES``.

The arithmetic is the one of the per-layer path (fastface.ops kernels + fastface.losses):
fused sigmoid/BCE and softmax/CCE from the logits, every loss a mean over the batch weighted
per example; the optimizers follow PyTorch's update formulas (see fastface.optim). L2 weight
decay adds ``weight_decay * W`` to the gradient of every W (biases are not decayed).

Divergence: the epoch stops at the first batch whose loss or gradient is not finite, before
updating; a weight whose update would overflow keeps its previous finite value. The caller
raises an error naming the epoch and batch.

The matrix products of OWN_GEMM_MIN_FLOPS to OWN_GEMM_FLOPS multiply-adds run on fastface's own serial
GEMM (the numba backend's unpacked micro-kernel, :func:`fastface.backends._numba_gemm._gemm_serial`:
at the course's 32 x 400 x 25 layer as fast as OpenBLAS's AVX-512 small-matrix kernels and
3x faster than its AVX2 ones); smaller and larger ones go to BLAS through np.dot with preallocated
outputs (numba calls the same BLAS as NumPy). Everything else is plain serial loops, so a run
is deterministic: the same seed gives bit-identical weights. fastface._fused_pair runs the
same epoch on two workers (opt-in: config.FUSED_WORKERS) from these helpers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray, njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from .backends._numba_act import NONE
from .backends._numba_act import _sigmoid1 as _sigmoid_ieee
from .backends._numba_gemm import _gemm_unpacked

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

ACT_CODES = {"linear": 0, "sigmoid": 1, "relu": 2, "tanh": 3, "softmax": 4}
LOSS_CODES = {"binary_crossentropy": 0, "categorical_crossentropy": 1, "mse": 2}
OPT_CODES = {"sgd": 0, "adam": 1}
METRIC_CODES = {"none": 0, "binary": 1, "argmax": 2}

# hyper array layout shared with fastface.optim (the last two slots are scratch)
H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_WD, H_C1, H_C2, H_STEP, H_BC2S = range(11)
N_HYPER = 11

EPS = 1e-7  # probability clip of the non-logit losses (fastface.losses.EPS)

# Products of OWN_GEMM_MIN_FLOPS to OWN_GEMM_FLOPS multiply-adds use the serial micro-kernel;
# smaller ones BLAS (its call costs less than the kernel's set-up: 15 -> 1 units, 0.1 vs
# 0.3 us), larger ones BLAS too (multithreaded, packed: faster once the product no longer
# fits in L1/L2)
OWN_GEMM_MIN_FLOPS = 1 << 13
# fewer rows than this (predict_one's single example) are matrix-vector products: BLAS's gemv
OWN_GEMM_MIN_ROWS = 4
OWN_GEMM_FLOPS = 1 << 21

# A network takes the fused path when its parameters and one batch's activations and
# gradients fit in this many bytes (a typical per-core L2 cache).
CACHE_BYTES = 2 * 1024 * 1024


def fits_in_cache(layer_sizes, batch_size: int, itemsize: int) -> bool:
    """True when parameters + one batch's activations/gradients of `layer_sizes` fit in cache.

    layer_sizes: [IN_0, OUT_0, OUT_1, ...].
    """
    params = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    acts = 2 * batch_size * sum(layer_sizes)
    return (params * 3 + acts) * itemsize <= CACHE_BYTES


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _finite(x):
    """x is neither NaN nor +-inf. Written as a comparison on purpose: under the fastmath set
    LLVM folded np.isfinite(x) to True in some loops; |x| < inf stays exact (no nnan/ninf)."""
    return abs(x) < np.inf


# --- buffers without reference counting -----------------------------------------------------
# Every view Numba makes (a slice, a reshape, .T) of an array passed in from Python holds a
# reference on that array, taken and dropped with an atomic add: about 100 views a batch
# through the layer and optimizer helpers cost 12% of the course net's epoch (perf: NRT_incref
# and NRT_decref). The entry points below re-view their own buffers through carray, which
# carries no reference (the caller's arrays outlive the call, and no view escapes it): the
# course epoch went from 0.455 to 0.42 ms (train_epoch alone, A/B in one process).
@intrinsic
def _void_pointer(typingctx, address):
    """The integer `address` as a void pointer (for carray)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit(cache=True, inline="always")
def _unowned(a):
    """The C-contiguous buffer a (any shape), viewed without reference counting."""
    if not a.flags.c_contiguous:  # carray would read another layout as garbage
        raise ValueError("fastface._fused: the parameter and workspace buffers must be C-contiguous")
    return carray(_void_pointer(a.ctypes.data), a.shape, a.dtype)


# --- activations in place on one row --------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _sigmoid1(z):
    """Overflow-safe logistic without a branch: exp is only taken of -|z| <= 0."""
    return _logistic(z, math.exp(-abs(z)))


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _logistic(z, e):
    """sigmoid(z) from e = exp(-|z|) (callers that need e for more than the sigmoid pass it)."""
    s = 1.0 / (1.0 + e)
    return s if z >= 0 else e * s


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _activate_row(A, base, OUT, code):
    """A[base:base+OUT] <- act(A[base:base+OUT]) for activation `code`."""
    a = A[base : base + OUT]
    if code == 1:
        for o in range(OUT):
            a[o] = _sigmoid1(a[o])
    elif code == 2:
        for o in range(OUT):
            if a[o] < 0:
                a[o] = 0.0
    elif code == 3:
        for o in range(OUT):
            a[o] = math.tanh(a[o])
    elif code == 4:
        m = a[0]
        for o in range(1, OUT):
            if a[o] > m:
                m = a[o]
        s = 0.0
        for o in range(OUT):
            e = math.exp(a[o] - m)
            a[o] = e
            s += e
        inv = 1.0 / s
        for o in range(OUT):
            a[o] *= inv


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _derivative_row(A, D, base, OUT, code):
    """D[base:base+OUT] <- act'(a) * da, from the forward output a = A[base:base+OUT]."""
    one = np.float32(1.0)  # float32 math on float32 rows (a 1.0 literal would promote to float64)
    a = A[base : base + OUT]
    d = D[base : base + OUT]
    if code == 1:
        for o in range(OUT):
            d[o] *= a[o] * (one - a[o])
    elif code == 2:
        for o in range(OUT):
            if not a[o] > 0:
                d[o] = 0.0
    elif code == 3:
        for o in range(OUT):
            d[o] *= one - a[o] * a[o]
    elif code == 4:
        s = 0.0
        for o in range(OUT):
            s += a[o] * d[o]
        for o in range(OUT):
            d[o] = a[o] * (d[o] - s)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _sigmoid_block(v):
    """v (n,) <- sigmoid(v) in place, overflow-safe (exp only of -|z|), NaN propagating.

    The numba backend's logistic (_numba_act._sigmoid1): its exp (_numba_simd.exp_ieee) is
    within 1 ulp of np.exp in the array's own dtype and vectorises, where libm's is a scalar
    call. (This replaced a float64 polynomial raised to the 1024th power for float32, and
    libm for float64.)
    """
    one = v.dtype.type(1)
    for i in range(v.shape[0]):
        v[i] = _sigmoid_ieee(v[i], one)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _bias_act_block(A, base, nb, OUT, b, code):
    """The (nb, OUT) block of A at base: z += b then a = act(z), in place.

    Elementwise activations run as one loop over the whole contiguous block per activation
    (the dispatch on `code` is outside the loops); softmax goes row by row.
    """
    for r in range(nb):
        row = A[base + r * OUT : base + (r + 1) * OUT]  # a row view vectorises (0.34 -> 0.20 us at 32 x 25)
        for o in range(OUT):
            row[o] += b[o]
    if code == 4:
        for r in range(nb):
            _activate_row(A, base + r * OUT, OUT, code)
    else:
        act_elementwise(A[base : base + nb * OUT], code)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def act_elementwise(z, code):
    """z (n,) <- act(z) in place for an elementwise activation `code` (not softmax)."""
    if code == 1:
        _sigmoid_block(z)
    elif code == 2:
        for i in range(z.shape[0]):
            v = z[i]
            z[i] = v if v > 0 else v * np.float32(0.0)  # v * 0 keeps NaN a NaN
    elif code == 3:
        for i in range(z.shape[0]):
            z[i] = math.tanh(z[i])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _derivative_block(A, D, base, nb, OUT, code):
    """D <- act'(a) * da on the (nb, OUT) block at base, from the forward output a in A."""
    n = nb * OUT
    one = np.float32(1.0)  # float32 math on float32 blocks, as the reference: a 1.0 literal
    zero = np.float32(0.0)  # promotes to float64 and leaves the loop scalar (0.15 -> 0.06 us at 32 x 25)
    a = A[base : base + n]
    d = D[base : base + n]
    if code == 1:
        for i in range(n):
            d[i] *= a[i] * (one - a[i])
    elif code == 2:
        for i in range(n):
            d[i] = d[i] if a[i] > 0 else d[i] * zero
    elif code == 3:
        for i in range(n):
            d[i] *= one - a[i] * a[i]
    elif code == 4:
        for r in range(nb):
            _derivative_row(A, D, base + r * OUT, OUT, code)


# --- matrix products ------------------------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _matmul(A, B, out):
    """out (M, P) = A (M, K) @ B (K, P); A and B any strides (views such as W^T.T, dz.T)."""
    flops = A.shape[0] * A.shape[1] * B.shape[1]
    if A.shape[0] >= OWN_GEMM_MIN_ROWS and OWN_GEMM_MIN_FLOPS <= flops <= OWN_GEMM_FLOPS:
        matmul_own(A, B, out)
    else:
        np.dot(A, B, out)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def matmul_own(A, B, out):
    """out = A @ B on fastface's serial kernel, whatever the size; out may be a strided view.
    The route follows B's layout: the unpacked direct kernel for unit column stride (dz^T @ x,
    dz @ W^T), dot products for W^T's transpose (x @ W); see _numba_gemm._gemm_serial."""
    _gemm_unpacked(A, B, out, out[0, :0], NONE)


# --- forward --------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _weights(theta, table, l):
    """Views of layer l's W^T (OUT, IN) (C-contiguous; W is its transpose) and b (OUT,)."""
    IN = table[l, 0]
    OUT = table[l, 1]
    WT = theta[table[l, 2] : table[l, 2] + IN * OUT].reshape((OUT, IN))
    b = theta[table[l, 3] : table[l, 3] + OUT]
    return WT, b


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _block(A, table, l, nb):
    """View of layer l's (nb, OUT) block of the activation workspace A."""
    OUT = table[l, 1]
    return A[table[l, 4] : table[l, 4] + nb * OUT].reshape((nb, OUT))


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _forward(xb, nb, theta, table, A, activated):
    """Forward pass of the batch xb (nb, IN_0) through every layer into A.

    Each layer is one matrix product (:func:`_matmul`, into the preallocated block) then
    a row loop adding b and applying the activation. Layers from `activated` on are left
    unapplied (their blocks hold z): L for predictions, L - 1 in training, whose loss takes
    the output layer's z. (A count, not a flag: the callers pass a value computed at run
    time, so training and prediction share one compilation; the literals True and False
    compiled it twice.)
    """
    L = table.shape[0]
    for l in range(L):
        WT, b = _weights(theta, table, l)
        W = WT.T
        OUT = table[l, 1]
        out = _block(A, table, l, nb)
        if l == 0:
            _matmul(xb, W, out)
        else:
            _matmul(_block(A, table, l - 1, nb), W, out)
        code = table[l, 5] if l < activated else 0
        _bias_act_block(A, table[l, 4], nb, OUT, b, code)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def predict_into(X, theta, table, A, xb, out):
    """Predictions of every row of X (N, IN_0) into out (N, OUT_L), B rows at a time.

    A is a workspace of B * sum OUT_l elements, xb a (B, IN_0) C-contiguous buffer.
    """
    theta = _unowned(theta)
    A = _unowned(A)
    xb = _unowned(xb)
    N = X.shape[0]
    L = table.shape[0]
    B = xb.shape[0]
    for start in range(0, N, B):
        nb = min(B, N - start)
        xv = xb[:nb]
        for r in range(nb):
            copy(X[start + r], xv[r])
        _forward(xv, nb, theta, table, A, L)
        z = _block(A, table, L - 1, nb)
        for r in range(nb):
            copy(z[r], out[start + r])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def predict_one(x, theta, table, A):
    """One example x (1, IN_0) -> the output layer's block of A (its first OUT_L elements
    at table[L-1, 4]); A is the reused workspace (sum OUT_l elements).

    Returns the smallest and largest input value (for the model's input-range check);
    both NaN when some input is NaN or infinite.
    """
    # run-time values, not the literals 1 and L: no compilation of its own
    _forward(x, x.shape[0], _unowned(theta), table, _unowned(A), table.shape[0])
    lo = x[0, 0]
    hi = x[0, 0]
    finite = True
    for k in range(x.shape[1]):
        v = x[0, k]
        finite &= _finite(v)
        lo = min(lo, v)
        hi = max(hi, v)
    if not finite:
        return np.nan, np.nan
    return lo, hi


# --- loss on the output layer ---------------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _output_loss(A, D, Y, sw, perm, start, nb, OUT, base, act, loss, metric, stats):
    """A holds z (nb, OUT) at base. Writes the activation into A, dL/dz into D; adds the
    batch loss (times nb) and the accuracy counts to stats. Returns the batch loss."""
    total = 0.0
    size = nb * OUT if loss != 1 else nb  # BCE and MSE average over elements, CCE over rows
    inv = 1.0 / size
    fused = (act == 1 and loss == 0) or (act == 4 and loss == 1)
    for r in range(nb):
        n = perm[start + r]
        w = sw[n]
        b = base + r * OUT
        arow = A[b : b + OUT]  # row views: indices from 0 (see the legend)
        drow = D[b : b + OUT]
        yrow = Y[n]
        if fused and loss == 0:
            for o in range(OUT):
                z = arow[o]
                y = yrow[o]
                e = math.exp(-abs(z))  # one exp for the loss and the sigmoid
                total += w * (max(z, 0.0) - z * y + math.log1p(e))
                a = _logistic(z, e)
                arow[o] = a
                drow[o] = w * inv * (a - y)
        elif fused:
            m = arow[0]
            for o in range(1, OUT):
                if arow[o] > m:
                    m = arow[o]
            s = 0.0
            for o in range(OUT):
                s += math.exp(arow[o] - m)
            lse = m + math.log(s)
            for o in range(OUT):
                z = arow[o]
                y = yrow[o]
                total += w * y * (lse - z)
                a = math.exp(z - lse)
                arow[o] = a
                drow[o] = w * inv * (a - y)
        else:
            _activate_row(A, b, OUT, act)
            for o in range(OUT):
                a = arow[o]
                y = yrow[o]
                if loss == 0:
                    q = min(max(a, EPS), 1.0 - EPS)
                    total += -w * (y * math.log(q) + (1.0 - y) * math.log1p(-q))
                    if a > EPS and a < 1.0 - EPS:
                        drow[o] = w * inv * (q - y) / (q * (1.0 - q))
                    else:
                        drow[o] = 0.0
                elif loss == 1:
                    q = min(max(a, EPS), 1.0)
                    total += -w * y * math.log(q)
                    if a > EPS:
                        drow[o] = -w * inv * y / q
                    else:
                        drow[o] = 0.0
                else:
                    d = a - y
                    total += w * d * d
                    drow[o] = 2.0 * w * inv * d
            _derivative_row(A, D, b, OUT, act)
        # accuracy on the outputs before this batch's update
        if metric == 1:
            for o in range(OUT):
                if (arow[o] >= 0.5) == (yrow[o] >= 0.5):
                    stats[1] += 1.0
                stats[2] += 1.0
        elif metric == 2:
            ia = 0
            iy = 0
            for o in range(1, OUT):
                if arow[o] > arow[ia]:
                    ia = o
                if yrow[o] > yrow[iy]:
                    iy = o
            if ia == iy:
                stats[1] += 1.0
            stats[2] += 1.0
    return total * inv


# --- backward -------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _backward(xb, nb, theta, grad, table, A, D):
    """Gradients of every layer into grad; D's output block already holds dL/dz.

    dW = x.T @ dz and dx = dz @ W.T are :func:`_matmul` products into preallocated views; db
    is a row sum; the first layer's dx is not computed (nothing needs it).
    """
    L = table.shape[0]
    for l in range(L - 1, -1, -1):
        OUT = table[l, 1]
        WT, _ = _weights(theta, table, l)
        gWT, gb = _weights(grad, table, l)
        dz = _block(D, table, l, nb)
        if l == 0:
            _matmul(dz.T, xb, gWT)  # dW^T = dz^T x
        else:
            _matmul(dz.T, _block(A, table, l - 1, nb), gWT)
        gb[:] = 0.0
        for r in range(nb):
            row = dz[r]
            for o in range(OUT):
                gb[o] += row[o]
        if l > 0:
            IN = table[l, 0]
            _matmul(dz, WT, _block(D, table, l - 1, nb))
            _derivative_block(A, D, table[l - 1, 4], nb, IN, table[l - 1, 5])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def all_finite(v):
    ok = True
    for i in range(v.shape[0]):
        ok &= _finite(v[i])
    return ok


# --- optimizer update -----------------------------------------------------------------------
# Each rule works on views of one parameter block (W or b of one layer) and reads its
# constants from `hyper`, an array of the parameters' dtype, so float32 models update in float32
# (as PyTorch does). A weight whose new value is not finite keeps its old value.
# SGD takes two passes: the first only checks that every new value is finite (a sum of new * 0 is 0, or
# NaN as soon as one term is inf or NaN: a plain vectorised float reduction); when they all are
# (always, short of divergence) the second stores every new value unconditionally. A single pass with the
# keep-the-old-value select compiles to masked stores (vmaskmovps), which are slow on AMD
# cores: 7.0 us instead of 2.8 for the course net's 10416 weights (Zen 3, float32). Momentum
# and Adam store their state unconditionally anyway and measured faster in one pass.
@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def _sgd_new(old, gi, lr, decay):
    return old - lr * (gi + decay * old)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _sgd(p, g, lr, decay):
    zero = lr * 0
    s = zero
    if decay == zero:  # biases, and every weight without weight decay: 1.37 -> 0.86 us for 10^4
        for i in range(p.shape[0]):
            s += (p[i] - lr * g[i]) * zero
        if s == zero:
            for i in range(p.shape[0]):
                p[i] = p[i] - lr * g[i]
            return True
    else:
        for i in range(p.shape[0]):
            s += _sgd_new(p[i], g[i], lr, decay) * zero
        if s == zero:
            for i in range(p.shape[0]):
                p[i] = _sgd_new(p[i], g[i], lr, decay)
            return True
    for i in range(p.shape[0]):
        new = _sgd_new(p[i], g[i], lr, decay)
        if _finite(new):
            p[i] = new
    return False


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _momentum(p, g, buf, lr, decay, mom, nesterov):
    ok = True
    for i in range(p.shape[0]):
        old = p[i]
        gi = g[i] + decay * old
        bi = mom * buf[i] + gi
        buf[i] = bi
        new = old - lr * (gi + mom * bi if nesterov else bi)
        good = _finite(new)
        ok &= good
        p[i] = new if good else old
    return ok


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _adam(p, g, m1, m2, step, b1, b2, c1, c2, eps, bc2s, decay):
    ok = True
    for i in range(p.shape[0]):
        old = p[i]
        gi = g[i] + decay * old
        m = b1 * m1[i] + c1 * gi
        v = b2 * m2[i] + c2 * gi * gi
        m1[i] = m
        m2[i] = v
        new = old - step * m / (np.sqrt(v) / bc2s + eps)
        good = _finite(new)
        ok &= good
        p[i] = new if good else old
    return ok


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def update(theta, grad, s1, s2, table, opt, hyper, t):
    """One optimizer step on the flat parameters (fastface.optim has the formulas).

    hyper: N_HYPER values of theta's dtype (see fastface.optim.Optimizer.hyper; its last
    slots are scratch for the bias corrections); t (1,) int64 is the step counter.
    Returns False when some weight's update was not finite (that weight is left unchanged).
    """
    next_step(hyper, t)
    zero = hyper[H_LR] - hyper[H_LR]
    ok = True
    for l in range(table.shape[0]):
        IN = table[l, 0]
        OUT = table[l, 1]
        W = table[l, 2]
        b = table[l, 3]
        ok &= update_range(theta, grad, s1, s2, W, W + IN * OUT, hyper[H_WD], opt, hyper)  # W, decayed
        ok &= update_range(theta, grad, s1, s2, b, b + OUT, zero, opt, hyper)  # b, not decayed
    return ok


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def next_step(hyper, t):
    """t[0] += 1, and Adam's bias corrections for that step into hyper's scratch slots."""
    t[0] += 1
    # in float64, then stored (rounded) in hyper's dtype
    hyper[H_STEP] = float(hyper[H_LR]) / (1.0 - float(hyper[H_BETA1]) ** t[0])
    hyper[H_BC2S] = math.sqrt(1.0 - float(hyper[H_BETA2]) ** t[0])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def update_range(theta, grad, s1, s2, lo, hi, decay, opt, hyper):
    """The optimizer step (after next_step) on the parameters theta[lo:hi]; False when a new
    value was not finite (that weight kept its value)."""
    p = theta[lo:hi]
    g = grad[lo:hi]
    lr = hyper[H_LR]
    mom = hyper[H_MOMENTUM]
    if opt == 1:
        return _adam(p, g, s1[lo:hi], s2[lo:hi], hyper[H_STEP], hyper[H_BETA1], hyper[H_BETA2],
                     hyper[H_C1], hyper[H_C2], hyper[H_EPS], hyper[H_BC2S], decay)
    if mom != 0:
        return _momentum(p, g, s1[lo:hi], lr, decay, mom, hyper[H_NESTEROV] != 0)
    return _sgd(p, g, lr, decay)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def sgd_step(theta, grad, table, hyper):
    """Plain SGD (no momentum) on every parameter: the new parameters are written into grad.

    One pass writes each new value (p - lr * (g + decay * p)) over its gradient and sums
    g * 0 and new * 0 (0, or NaN as soon as one term is inf or NaN). The caller then takes
    grad as the parameters and theta as the next gradient buffer (train_epoch swaps the
    two): no copy. Returns 0; 1 when a gradient was not finite (theta is unchanged and grad
    is garbage: keep theta); 2 when an update was not finite (grad holds the old value of
    those weights and the new value of the others). Replaces all_finite + update for plain
    SGD: three passes over the parameters became two (the course net's 10416: 0.75 -> 0.40
    us a batch), then one (the copy of 10416 float32 took 0.76 us a batch on a Zen 4 core).
    """
    lr = hyper[H_LR]
    zero = lr - lr
    sg = zero
    sn = zero
    for l in range(table.shape[0]):
        IN = table[l, 0]
        OUT = table[l, 1]
        for part in range(2):
            lo = table[l, 2] if part == 0 else table[l, 3]
            n = IN * OUT if part == 0 else OUT
            decay = hyper[H_WD] if part == 0 else zero
            p = theta[lo : lo + n]
            g = grad[lo : lo + n]
            if decay == zero:  # two loops, as in _sgd: one loop with a select costs 0.08 us a batch
                for i in range(n):
                    gi = g[i]
                    new = p[i] - lr * gi
                    sg += gi * zero
                    sn += new * zero
                    g[i] = new
            else:
                for i in range(n):
                    gi = g[i]
                    new = _sgd_new(p[i], gi, lr, decay)
                    sg += gi * zero
                    sn += new * zero
                    g[i] = new
    if sg != zero:
        return 1
    if sn == zero:
        return 0
    for i in range(theta.shape[0]):
        if not _finite(grad[i]):
            grad[i] = theta[i]
    return 2


# --- one epoch ------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def gather(X, perm, start, xv):
    """xv (nb, IN_0) <- the rows perm[start : start + nb] of X."""
    for r in range(xv.shape[0]):
        copy(X[perm[start + r]], xv[r])


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="always")
def copy(src, dst):
    """dst[:n] <- src (n,), 1-D views. A loop, not slice assignment: that one's broadcasting
    checks and their error messages took 4 s of compilation in predict_into."""
    for k in range(src.shape[0]):
        dst[k] = src[k]


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def train_epoch(X, Y, sw, perm, theta, grad, s1, s2, table, loss, metric, opt, hyper, t, A, D, xb, stats):
    """Every mini-batch of one epoch: gather, forward, loss, backward, update (module legend).

    xb is a (B, IN_0) C-contiguous buffer; B = xb.shape[0] is the batch size.
    stats <- [sum of batch loss * nb, correct, counted, failed batch index or -1].
    Returns 0 on success, 1 when a batch's loss or gradient was not finite (no update made),
    2 when an update overflowed (the overflowing weights kept their value).
    """
    theta = _unowned(theta)
    grad = _unowned(grad)
    s1 = _unowned(s1)
    s2 = _unowned(s2)
    A = _unowned(A)
    D = _unowned(D)
    xb = _unowned(xb)
    N = X.shape[0]
    L = table.shape[0]
    B = xb.shape[0]
    OUT = table[L - 1, 1]
    stats[0] = 0.0
    stats[1] = 0.0
    stats[2] = 0.0
    stats[3] = -1.0
    # plain SGD writes the new parameters into the gradient buffer, and the two swap roles:
    # `cur` holds the parameters, `spare` takes the next gradient; theta gets cur at the end
    cur = theta
    spare = grad
    swapped = False
    plain = opt == 0 and hyper[H_MOMENTUM] == 0
    status = 0
    batch = 0
    for start in range(0, N, B):
        nb = min(B, N - start)
        xv = xb[:nb]
        gather(X, perm, start, xv)
        _forward(xv, nb, cur, table, A, L - 1)
        value = _output_loss(A, D, Y, sw, perm, start, nb, OUT, table[L - 1, 4], table[L - 1, 5], loss, metric, stats)
        if not _finite(value):
            status = 1
            break
        _backward(xv, nb, cur, spare, table, A, D)
        if plain:  # the finite checks in the update's own pass
            status = sgd_step(cur, spare, table, hyper)
            if status == 1:
                break
            next_step(hyper, t)
            cur, spare = spare, cur
            swapped = not swapped
        else:
            if not all_finite(grad):
                status = 1
                break
            status = 0 if update(theta, grad, s1, s2, table, opt, hyper, t) else 2
        stats[0] += value * nb
        if status == 2:
            break
        batch += 1
    if swapped:  # an odd number of updates: the parameters are in grad's buffer
        copy(grad, theta)
    if status:
        stats[3] = batch
    return status
