"""Exact, signed saliency of any unit of any layer: d a[layer][unit] / d x, batched.

Dimensions:
    B     examples                    IN    input features (pixels)
    U     selected units of layer l   n_k   width of layer k (n_0 = IN)
    x (B, IN);  a_k (B, n_k);  W_k (n_{k-1}, n_k);  result (B, U, IN)

How: one forward pass keeps a_1..a_l; then a reverse-mode pass whose "batch" is the B*U rows
of the seed: every example gets the one-hot rows of the selected units (the identity when
every unit is asked for). Each layer k = l..1 maps the rows through the activation's
derivative (fastface.activations.DERIVATIVES, computed from the forward output, exactly what
the backends' dense_backward kernels do) and back through W_k with fastface.ops.matmul on
the chosen backend: G (B*U, n_k) -> G @ W_k.T (B*U, n_{k-1}). No Python loop over units.

At the top layer an elementwise activation keeps the seeded rows one-hot (a diagonal
Jacobian); there the step ``diag(d) @ W_l.T`` is a row scaling of W_l.T, done as such (U*IN
work instead of U*U*IN). Whether an activation is elementwise is probed once from its
derivative (no names), so softmax, whose Jacobian is dense, takes the matmul.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import ops
from ..activations import DERIVATIVES
from ._common import check_layer, check_units, check_x, network, resolve_backend

__all__ = ["saliency", "smoothgrad", "layer_activations", "most_sensitive_units"]

# Upper bound on the elements of one chunk of the reverse pass (rows * widest layer), so a
# big batch (SmoothGrad samples, IG steps) never materialises gigabytes at once.
CHUNK_ELEMENTS = 1 << 23


def _forward(net, x, upto: int, backend):
    """[x_net, a_1, ..., a_upto]; raw x (B, IN) -> a_k (B, n_k), through fastface.ops.dense_forward.

    x_net is what the first layer sees (x itself, or x standardised by the model).
    """
    x_net, stage_inputs = net.prepare(x, backend)
    acts = _Acts([x_net])
    acts.stage_inputs = stage_inputs
    for k in range(upto):
        acts.append(ops.dense_forward(acts[-1], net.Ws[k], net.bs[k], net.acts[k], backend=backend))
    return acts


class _Acts(list):
    """[x_net, a_1, ...] plus .stage_inputs, the raw input of each input stage."""

    stage_inputs: list


def layer_activations(model, x, layer, *, backend=None):
    """a[layer] for x (IN,) -> (n_l,) or (B, IN) -> (B, n_l), through fastface.ops kernels."""
    net = network(model, "layer_activations")
    layer = check_layer(net, layer, "layer_activations")
    x2, was_1d = check_x(net, x, "layer_activations")
    a = _forward(net, x2, layer, resolve_backend(net, backend))[-1]
    return a[0] if was_1d else a


@njit(cache=True, nogil=True)
def _scale_rows(WT, d, out):
    """out[b, u, :] = d[b, u] * WT[u, :], i.e. diag(d_b) @ W^T for every example b.

    WT (U, n) any layout, d (B, U), out (B, U, n) C-contiguous. One plain loop (LLVM
    vectorises the inner one): memory-bound, about 2x faster than NumPy's broadcast multiply
    for the 128 x 4096 first layer of a 64x64 face network. Serial on purpose: a parallel
    region right after a BLAS call competes with OpenBLAS's spinning threads on small machines.
    """
    B, U = d.shape
    n = WT.shape[1]
    for b in range(B):
        for u in range(U):
            s = d[b, u]
            for k in range(n):
                out[b, u, k] = WT[u, k] * s


_ELEMENTWISE: dict = {}


def _is_elementwise(name: str) -> bool:
    """Does DERIVATIVES[name] act element by element (a diagonal Jacobian)?

    Probed once per activation on random outputs (rows summing to 1, valid for every
    activation), so no activation is singled out by name: softmax's probe has non-zero
    off-diagonal terms (-a_i a_j), sigmoid/tanh/relu/linear do not.
    """
    if name not in _ELEMENTWISE:
        n = 4
        a = np.random.default_rng(12345).uniform(0.1, 0.9, (3, n))
        a /= a.sum(axis=1, keepdims=True)
        probe = DERIVATIVES[name](np.repeat(a, n, axis=0), np.tile(np.eye(n), (3, 1)))
        _ELEMENTWISE[name] = not np.any(probe.reshape(3, n, n) * (1.0 - np.eye(n)))
    return _ELEMENTWISE[name]


def _local_vjp(name: str, a, G):
    """Rows G (B, U, n) through the derivative of activation `name` at outputs a (B, n)."""
    B, U, n = G.shape
    if _is_elementwise(name):
        g = DERIVATIVES[name](a, np.ones_like(a))  # (B, n): the diagonal of the Jacobian
        return G * g[:, None, :]
    return DERIVATIVES[name](np.repeat(a, U, axis=0), G.reshape(B * U, n)).reshape(B, U, n)


def _jacobian(net, acts, layer: int, units: np.ndarray, backend) -> np.ndarray:
    """d a_layer[:, units] / d x for the batch held in acts -> (B, U, IN).

    acts = [x_net (B, n_0), a_1 (B, n_1), ..., a_layer (B, n_layer)] (+ .stage_inputs).
    """
    B = acts[0].shape[0]
    U = units.shape[0]
    a_l = acts[layer]
    n_l = a_l.shape[1]
    act = net.acts[layer - 1]
    W = net.Ws[layer - 1]
    if _is_elementwise(act):
        # The seeded rows stay one-hot: diag(d) @ W.T is a scaling of the selected rows of W.T.
        d = DERIVATIVES[act](a_l[:, units], np.ones((B, U), dtype=a_l.dtype))  # (B, U)
        WT = W.T if U == n_l and np.array_equal(units, np.arange(n_l)) else W.T[units]  # (U, n_{l-1})
        G = np.empty((B, U, WT.shape[1]), dtype=np.result_type(WT, d))
        _scale_rows(WT, d.astype(G.dtype, copy=False), G)  # (B, U, n_{l-1})
    else:
        # Seed: per example, the one-hot rows of the selected units (the identity for all).
        seed = np.zeros((B, U, n_l), dtype=a_l.dtype)
        seed[:, np.arange(U), units] = 1
        dz = _local_vjp(act, a_l, seed)
        G = ops.matmul(dz.reshape(B * U, n_l), W.T, backend=backend).reshape(B, U, -1)
    for k in range(layer - 1, 0, -1):
        dz = _local_vjp(net.acts[k - 1], acts[k], G)
        G = ops.matmul(dz.reshape(B * U, -1), net.Ws[k - 1].T, backend=backend).reshape(B, U, -1)
    for stage, x_in in zip(reversed(net.stages), reversed(acts.stage_inputs)):
        G = stage.vjp(x_in, G, backend)  # chain rule through the input stages, to raw x
    return G


def _chunk_rows(net, layer: int, U: int) -> int:
    widest = max([net.width(k) for k in range(layer + 1)] + [s.n_in for s in net.stages])
    return max(1, CHUNK_ELEMENTS // max(1, U * widest))


def jacobian_reduce(net, X, layer: int, units, weights, backend) -> np.ndarray:
    """sum_b weights[b] * J_b over a batch X (B, IN), in chunks -> (U, IN).

    Used by SmoothGrad (equal weights) and integrated gradients (quadrature weights).
    """
    step = _chunk_rows(net, layer, units.shape[0])
    total = np.zeros((units.shape[0], X.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], step):
        Xc = X[start : start + step]
        J = _jacobian(net, _forward(net, Xc, layer, backend), layer, units, backend)
        w = np.asarray(weights[start : start + step], dtype=np.float64)
        total += np.tensordot(w, J, axes=(0, 0))
    return total.astype(net.dtype, copy=False)


def saliency(model, x, layer, unit=None, abs=False, backend=None, *, keepdims=False):
    """Signed saliency d a[layer][unit] / d x, exact, through fastface's backward kernels.

    model   a fastface model (layers[i].W (IN_i, OUT_i), .b, .activation)
    x       one example (IN,) or (1, IN), or a batch (B, IN)
    layer   1..L (1 = first Dense layer; -1 = the output layer)
    unit    None: every unit of the layer at once (one batched pass); an int: that unit;
            a list of ints: those units
    abs     return |d a / d x| instead of the signed derivative (signed is the default)
    backend kernel backend name (default: the model's own, else fastface's automatic choice)
    keepdims  always keep the batch axis (B, U, IN), also for one example

    Returns, for one example: (units, IN) for unit=None or a list, (IN,) for an int unit;
    for a batch (B >= 2): (B, units, IN) or (B, IN). dtype: the model's.
    """
    net = network(model, "saliency")
    layer = check_layer(net, layer, "saliency")
    units, single = check_units(net, layer, unit, "saliency")
    x2, _ = check_x(net, x, "saliency")
    backend = resolve_backend(net, backend)
    step = _chunk_rows(net, layer, units.shape[0])
    if x2.shape[0] <= step:
        J = _jacobian(net, _forward(net, x2, layer, backend), layer, units, backend)
    else:
        J = np.concatenate(
            [
                _jacobian(net, _forward(net, x2[s : s + step], layer, backend), layer, units, backend)
                for s in range(0, x2.shape[0], step)
            ]
        )
    if abs:
        np.abs(J, out=J)
    if single:
        J = J[:, 0, :]
    if x2.shape[0] == 1 and not keepdims:
        J = J[0]
    return J


def most_sensitive_units(model, x, layer, k=8, *, backend=None):
    """The k units of `layer` this example can move most: largest ||d a[layer][j] / d x||_2.

    x (IN,) one example. One batched saliency pass over every unit; returns
    (units (k,) int64, norms (k,)) in decreasing order of the gradient norm (ties: lower unit first).
    """
    S = saliency(model, x, layer, backend=backend)
    if S.ndim != 2:
        raise ValueError(f"most_sensitive_units: x must be one example (IN,); got shape {np.shape(x)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"most_sensitive_units: k must be an integer >= 1; got {k!r}")
    norms = np.linalg.norm(S.astype(np.float64), axis=1)
    order = np.argsort(-norms, kind="stable")[: int(k)]
    return order.astype(np.int64), norms[order]


def smoothgrad(model, x, layer, unit=None, *, samples=32, noise=0.15, seed=0, abs=False,
               backend=None):
    """SmoothGrad (Smilkov et al. 2017): the mean saliency over noisy copies of x.

    x (IN,) or (1, IN), one example. Gaussian noise of standard deviation
    ``noise * (x.max() - x.min())`` (``noise`` a fraction of the input's range; with a
    constant x, of 1.0), `samples` copies drawn from ``numpy.random.default_rng(seed)``;
    all copies go through the batched saliency pass (chunked to bound memory). The signed
    mean is returned (abs=True: its absolute value). Returns (units, IN) or (IN,) for an int unit.
    """
    net = network(model, "smoothgrad")
    layer = check_layer(net, layer, "smoothgrad")
    units, single = check_units(net, layer, unit, "smoothgrad")
    x2, _ = check_x(net, x, "smoothgrad", batch_ok=False)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"smoothgrad: samples must be an integer >= 1; got {samples!r}")
    if not (isinstance(noise, (int, float, np.floating)) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"smoothgrad: noise must be a finite number >= 0; got {noise!r}")
    span = float(x2.max() - x2.min()) or 1.0
    rng = np.random.default_rng(seed)
    X = x2 + rng.normal(0.0, noise * span, size=(int(samples), x2.shape[1])).astype(net.dtype)
    weights = np.full(int(samples), 1.0 / samples)
    S = jacobian_reduce(net, X, layer, units, weights, resolve_backend(net, backend))
    if abs:
        np.abs(S, out=S)
    return S[0] if single else S
