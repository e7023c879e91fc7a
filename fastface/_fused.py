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
    theta  (P,)        parameters: layer l's W (IN_l, OUT_l) row-major at table[l, 2],
                       its b (OUT_l,) at table[l, 3]; the model's layers are views into theta
    grad   (P,)        gradient, same layout
    s1, s2 (P,)        optimizer state (SGD: momentum buffer; Adam: first and second moments)
    table  (L, 5)      int64 per layer: IN, OUT, W offset, b offset, activation offset
    acts   (L,)        int64 activation codes (ACT_CODES)
    A      (B * sum OUT_l,)  every layer's batch activations (layer l's block at table[l, 4])
    D      (B * sum OUT_l,)  their gradients, same layout
    stats  (4,)        float64 out: weighted loss sum, correct, counted, failed batch index

Codes are small integers dispatched inside the compiled loop: activations ``ACT_CODES``,
losses ``LOSS_CODES``, optimizers ``OPT_CODES``, accuracy rule ``METRIC_CODES``.

The arithmetic is the one of the per-layer path (fastface.ops kernels + fastface.losses):
fused sigmoid/BCE and softmax/CCE from the logits, every loss a mean over the batch weighted
per example; the optimizers follow PyTorch's update formulas (see fastface.optim). L2 weight
decay adds ``weight_decay * W`` to the gradient of every W (biases are not decayed).

Divergence: the epoch stops at the first batch whose loss or gradient is not finite, before
updating; a weight whose update would overflow keeps its previous finite value. The caller
raises an error naming the epoch and batch.

Serial on purpose: small networks are too small to share between threads per step, and the
serial loop is bit-for-bit deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

ACT_CODES = {"linear": 0, "sigmoid": 1, "relu": 2, "tanh": 3, "softmax": 4}
LOSS_CODES = {"binary_crossentropy": 0, "categorical_crossentropy": 1, "mse": 2}
OPT_CODES = {"sgd": 0, "adam": 1}
METRIC_CODES = {"none": 0, "binary": 1, "argmax": 2}

# hyper (float64 array) layout shared with fastface.optim
H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_WD = range(7)
N_HYPER = 7

EPS = 1e-7  # probability clip of the non-logit losses (fastface.losses.EPS)

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


# --- activations in place on one row --------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True, inline="always")
def _sigmoid1(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(fastmath=FASTMATH, cache=True)
def _activate_row(A, base, OUT, code):
    """A[base:base+OUT] <- act(A[base:base+OUT]) for activation `code`."""
    if code == 1:
        for o in range(OUT):
            A[base + o] = _sigmoid1(A[base + o])
    elif code == 2:
        for o in range(OUT):
            v = A[base + o]
            if v < 0:
                A[base + o] = 0.0
    elif code == 3:
        for o in range(OUT):
            A[base + o] = math.tanh(A[base + o])
    elif code == 4:
        m = A[base]
        for o in range(1, OUT):
            if A[base + o] > m:
                m = A[base + o]
        s = 0.0
        for o in range(OUT):
            e = math.exp(A[base + o] - m)
            A[base + o] = e
            s += e
        inv = 1.0 / s
        for o in range(OUT):
            A[base + o] *= inv


@njit(fastmath=FASTMATH, cache=True)
def _derivative_row(A, D, base, OUT, code):
    """D[base:base+OUT] <- act'(a) * da, from the forward output a = A[base:base+OUT]."""
    if code == 1:
        for o in range(OUT):
            a = A[base + o]
            D[base + o] *= a * (1.0 - a)
    elif code == 2:
        for o in range(OUT):
            if not A[base + o] > 0:
                D[base + o] = 0.0
    elif code == 3:
        for o in range(OUT):
            a = A[base + o]
            D[base + o] *= 1.0 - a * a
    elif code == 4:
        s = 0.0
        for o in range(OUT):
            s += A[base + o] * D[base + o]
        for o in range(OUT):
            D[base + o] = A[base + o] * (D[base + o] - s)


# --- forward --------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True)
def _layer_forward(X, xrow, theta, A, inbase, IN, OUT, wo, bo, outbase):
    """One row: A[outbase:+OUT] = x @ W + b, x = X[xrow] (layer 0) or A[inbase:+IN]."""
    for o in range(OUT):
        A[outbase + o] = theta[bo + o]
    for k in range(IN):
        if xrow >= 0:
            xv = X[xrow, k]
        else:
            xv = A[inbase + k]
        if xv != 0:
            w = wo + k * OUT
            for o in range(OUT):
                A[outbase + o] += xv * theta[w + o]


@njit(fastmath=FASTMATH, cache=True)
def _forward_rows(X, rows, nrows, theta, table, acts, A, B, last_linear):
    """Forward pass of rows X[rows[:nrows]] through every layer into A (batch capacity B).

    With last_linear the output layer's activation is left unapplied (A holds z).
    """
    L = table.shape[0]
    for l in range(L):
        IN = table[l, 0]
        OUT = table[l, 1]
        wo = table[l, 2]
        bo = table[l, 3]
        ao = table[l, 4]
        code = acts[l]
        for r in range(nrows):
            outbase = ao + r * OUT
            if l == 0:
                _layer_forward(X, rows[r], theta, A, 0, IN, OUT, wo, bo, outbase)
            else:
                inbase = table[l - 1, 4] + r * IN
                _layer_forward(X, -1, theta, A, inbase, IN, OUT, wo, bo, outbase)
            if not (last_linear and l == L - 1):
                _activate_row(A, outbase, OUT, code)


@njit(fastmath=FASTMATH, cache=True)
def predict_into(X, theta, table, acts, A, B, out):
    """Predictions of every row of X (N, IN_0) into out (N, OUT_L), B rows at a time.

    A is a workspace of B * sum OUT_l elements.
    """
    N = X.shape[0]
    L = table.shape[0]
    OUT = table[L - 1, 1]
    ao = table[L - 1, 4]
    rows = np.empty(B, dtype=np.int64)
    for start in range(0, N, B):
        nb = min(B, N - start)
        for r in range(nb):
            rows[r] = start + r
        _forward_rows(X, rows, nb, theta, table, acts, A, B, False)
        for r in range(nb):
            for o in range(OUT):
                out[start + r, o] = A[ao + r * OUT + o]


@njit(fastmath=FASTMATH, cache=True)
def predict_one(x, theta, table, acts, A, rows, out):
    """One example x (1, IN_0) -> out (1, OUT_L); A and rows (1,) are reused workspaces.

    Returns the smallest and largest input value (for the model's input-range check);
    both NaN when some input is NaN or infinite.
    """
    L = table.shape[0]
    OUT = table[L - 1, 1]
    ao = table[L - 1, 4]
    _forward_rows(x, rows, 1, theta, table, acts, A, 1, False)
    for o in range(OUT):
        out[0, o] = A[ao + o]
    lo = x[0, 0]
    hi = x[0, 0]
    finite = True
    for k in range(x.shape[1]):
        v = x[0, k]
        finite &= np.isfinite(v)
        lo = min(lo, v)
        hi = max(hi, v)
    if not finite:
        return np.nan, np.nan
    return lo, hi


# --- loss on the output layer ---------------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True)
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
        if fused and loss == 0:
            for o in range(OUT):
                z = A[b + o]
                y = Y[n, o]
                total += w * (max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z))))
                a = _sigmoid1(z)
                A[b + o] = a
                D[b + o] = w * inv * (a - y)
        elif fused:
            m = A[b]
            for o in range(1, OUT):
                if A[b + o] > m:
                    m = A[b + o]
            s = 0.0
            for o in range(OUT):
                s += math.exp(A[b + o] - m)
            lse = m + math.log(s)
            for o in range(OUT):
                z = A[b + o]
                y = Y[n, o]
                total += w * y * (lse - z)
                a = math.exp(z - lse)
                A[b + o] = a
                D[b + o] = w * inv * (a - y)
        else:
            _activate_row(A, b, OUT, act)
            for o in range(OUT):
                a = A[b + o]
                y = Y[n, o]
                if loss == 0:
                    q = min(max(a, EPS), 1.0 - EPS)
                    total += -w * (y * math.log(q) + (1.0 - y) * math.log1p(-q))
                    if a > EPS and a < 1.0 - EPS:
                        D[b + o] = w * inv * (q - y) / (q * (1.0 - q))
                    else:
                        D[b + o] = 0.0
                elif loss == 1:
                    q = min(max(a, EPS), 1.0)
                    total += -w * y * math.log(q)
                    if a > EPS:
                        D[b + o] = -w * inv * y / q
                    else:
                        D[b + o] = 0.0
                else:
                    d = a - y
                    total += w * d * d
                    D[b + o] = 2.0 * w * inv * d
            _derivative_row(A, D, b, OUT, act)
        # accuracy on the outputs before this batch's update
        if metric == 1:
            for o in range(OUT):
                if (A[b + o] >= 0.5) == (Y[n, o] >= 0.5):
                    stats[1] += 1.0
                stats[2] += 1.0
        elif metric == 2:
            ia = 0
            iy = 0
            for o in range(1, OUT):
                if A[b + o] > A[b + ia]:
                    ia = o
                if Y[n, o] > Y[n, iy]:
                    iy = o
            if ia == iy:
                stats[1] += 1.0
            stats[2] += 1.0
    return total * inv


# --- backward -------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True)
def _backward(X, perm, start, nb, theta, grad, table, acts, A, D):
    """Gradients of every layer into grad; D of the output layer already holds dL/dz."""
    L = table.shape[0]
    for l in range(L - 1, -1, -1):
        IN = table[l, 0]
        OUT = table[l, 1]
        wo = table[l, 2]
        bo = table[l, 3]
        ao = table[l, 4]
        for i in range(IN * OUT):
            grad[wo + i] = 0.0
        for o in range(OUT):
            grad[bo + o] = 0.0
        for r in range(nb):
            db = ao + r * OUT
            for o in range(OUT):
                grad[bo + o] += D[db + o]
            for k in range(IN):
                if l == 0:
                    xv = X[perm[start + r], k]
                else:
                    xv = A[table[l - 1, 4] + r * IN + k]
                if xv != 0:
                    w = wo + k * OUT
                    for o in range(OUT):
                        grad[w + o] += xv * D[db + o]
        if l > 0:
            po = table[l - 1, 4]
            pcode = acts[l - 1]
            for r in range(nb):
                db = ao + r * OUT
                pb = po + r * IN
                for k in range(IN):
                    w = wo + k * OUT
                    s = 0.0
                    for o in range(OUT):
                        s += D[db + o] * theta[w + o]
                    D[pb + k] = s
                _derivative_row(A, D, pb, IN, pcode)


@njit(fastmath=FASTMATH, cache=True)
def all_finite(v, n):
    for i in range(n):
        if not np.isfinite(v[i]):
            return False
    return True


# --- optimizer update -----------------------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True)
def update(theta, grad, s1, s2, table, opt, hyper, t):
    """One optimizer step on the flat parameters; t (1,) int64 is the step counter.

    Returns False when some weight's update was not finite (that weight is left unchanged).
    """
    lr = hyper[0]
    mom = hyper[1]
    nesterov = hyper[2] != 0.0
    b1 = hyper[3]
    b2 = hyper[4]
    eps = hyper[5]
    wd = hyper[6]
    t[0] += 1
    bc1 = 1.0 - b1 ** t[0]
    bc2s = math.sqrt(1.0 - b2 ** t[0])
    ok = True
    L = table.shape[0]
    for l in range(L):
        IN = table[l, 0]
        OUT = table[l, 1]
        for part in range(2):
            if part == 0:
                lo = table[l, 2]
                hi = lo + IN * OUT
                decay = wd
            else:
                lo = table[l, 3]
                hi = lo + OUT
                decay = 0.0
            for i in range(lo, hi):
                p = theta[i]
                g = grad[i] + decay * p
                if opt == 0:
                    if mom != 0.0:
                        buf = mom * s1[i] + g
                        s1[i] = buf
                        if nesterov:
                            g = g + mom * buf
                        else:
                            g = buf
                    pn = p - lr * g
                else:
                    m = b1 * s1[i] + (1.0 - b1) * g
                    v = b2 * s2[i] + (1.0 - b2) * g * g
                    s1[i] = m
                    s2[i] = v
                    pn = p - (lr / bc1) * m / (math.sqrt(v) / bc2s + eps)
                if np.isfinite(pn):
                    theta[i] = pn
                else:
                    ok = False
    return ok


# --- one epoch ------------------------------------------------------------------------------
@njit(fastmath=FASTMATH, cache=True)
def train_epoch(X, Y, sw, perm, B, theta, grad, s1, s2, table, acts, loss, metric, opt, hyper, t, A, D, stats):
    """Every mini-batch of one epoch: forward, loss, backward, update. See the module legend.

    stats <- [sum of batch loss * nb, correct, counted, failed batch index or -1].
    Returns 0 on success, 1 when a batch's loss or gradient was not finite (no update made),
    2 when an update overflowed (the overflowing weights kept their value).
    """
    N = X.shape[0]
    L = table.shape[0]
    OUT = table[L - 1, 1]
    ao = table[L - 1, 4]
    P = theta.shape[0]
    stats[0] = 0.0
    stats[1] = 0.0
    stats[2] = 0.0
    stats[3] = -1.0
    batch = 0
    for start in range(0, N, B):
        nb = min(B, N - start)
        _forward_rows(X, perm[start:], nb, theta, table, acts, A, B, True)
        value = _output_loss(A, D, Y, sw, perm, start, nb, OUT, ao, acts[L - 1], loss, metric, stats)
        if not np.isfinite(value):
            stats[3] = batch
            return 1
        _backward(X, perm, start, nb, theta, grad, table, acts, A, D)
        if not all_finite(grad, P):
            stats[3] = batch
            return 1
        stats[0] += value * nb
        if not update(theta, grad, s1, s2, table, opt, hyper, t):
            stats[3] = batch
            return 2
        batch += 1
    return 0
