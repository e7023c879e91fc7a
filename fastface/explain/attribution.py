"""Attribution maps: integrated gradients (with its completeness gap) and occlusion.

Dimensions:
    IN   input features (pixels, H*W row-major)     U  selected units of the explained layer
    S    quadrature nodes (IG steps)                P  occlusion window positions
    x (IN,);  attributions (U, IN), or (IN,) for one int unit

Integrated gradients (Sundararajan et al. 2017):
    A_i = (x_i - x'_i) * integral_0^1 d a_u / d x_i (x' + t (x - x')) dt
and completeness says sum_i A_i = a_u(x) - a_u(x'). The integral is a quadrature over S
nodes, all S points going through one batched saliency pass (fastface's backward kernels).
Gauss-Legendre (default) is exact for polynomials of degree 2S-1 and converges
geometrically on the smooth paths of sigmoid/tanh/softmax networks; ReLU paths are
piecewise linear, where every rule converges more slowly: by default the node count starts at
64 and doubles, for the units still above a 1% completeness gap only, up to 1024 (the gap
is reported, not hidden).
"""

from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np

from ._common import check_layer, check_units, check_x, image_shape, network, resolve_backend
from .gradients import _forward, jacobian_reduce

__all__ = ["integrated_gradients", "occlusion", "QUADRATURES", "completeness_gap"]


@functools.lru_cache(maxsize=16)
def _gauss_legendre(n: int):
    """Nodes and weights on [0, 1]; scipy's O(n) roots when available (NumPy's eigenvalue
    route is O(n^3): seconds at n = 1024), cached either way."""
    try:
        from scipy.special import roots_legendre

        t, w = roots_legendre(n)
    except ImportError:
        t, w = np.polynomial.legendre.leggauss(n)  # on [-1, 1]
    t, w = (t + 1.0) / 2.0, w / 2.0
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


def _trapezoid(n: int):
    if n < 2:
        raise ValueError("integrated_gradients: the trapezoid rule needs steps >= 2")
    t = np.linspace(0.0, 1.0, n)
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] /= 2.0
    return t, w


def _riemann_midpoint(n: int):
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


# name -> (steps -> (nodes t in [0, 1] (S,), weights (S,) summing to 1))
QUADRATURES = {
    "gauss-legendre": _gauss_legendre,
    "trapezoid": _trapezoid,
    "midpoint": _riemann_midpoint,
}

DEFAULT_STEPS = 64
MAX_STEPS = 1024
GAP_WARNING = 0.01


def completeness_gap(attributions, delta, floor=0.0):
    """Relative completeness gap per unit: |sum_i A_ui - delta_u| / max(|delta_u|, floor).

    attributions (U, IN), delta = a(x) - a(baseline) (U,). integrated_gradients passes
    floor = 1% of the largest |delta| among the explained units (and 1e-12), so a unit that
    barely changes between baseline and x (a dead ReLU, a softmax class near 0 at both ends,
    whose delta is a small difference of large path contributions) is judged on the layer's
    scale instead of dividing by almost zero; for one unit the gap is relative to its own delta.
    """
    total = attributions.sum(axis=-1, dtype=np.float64)
    return np.abs(total - delta) / np.maximum(np.abs(delta), max(float(floor), 1e-12))


def integrated_gradients(model, x, layer, unit=None, *, baseline=None, steps=None,
                         method="gauss-legendre", tol=GAP_WARNING, max_steps=MAX_STEPS, abs=False,
                         return_gap=False, backend=None):
    """Integrated gradients of a[layer][unit] along the straight path baseline -> x.

    x          one example (IN,) or (1, IN)
    baseline   None (zeros: a black image), a number, or an array like x
    steps      None (default): adaptive, DEFAULT_STEPS (64) quadrature nodes; the units whose
               completeness gap is above tol (1%) are recomputed with twice the nodes, until
               none is or max_steps (1024) is reached; an int: exactly that many nodes
    method     one of QUADRATURES: 'gauss-legendre' (default), 'trapezoid', 'midpoint'
    return_gap also return the relative completeness gap (see completeness_gap): a float for
               an int unit, else an array (U,), where units that barely change are measured
               against 1% of the largest change. A RuntimeWarning is issued when it exceeds tol.

    Returns attributions (U, IN), or (IN,) for an int unit; with return_gap, (attributions, gap).
    """
    net = network(model, "integrated_gradients")
    layer = check_layer(net, layer, "integrated_gradients")
    units, single = check_units(net, layer, unit, "integrated_gradients")
    x2, _ = check_x(net, x, "integrated_gradients", batch_ok=False)
    if method not in QUADRATURES:
        raise ValueError(
            f"integrated_gradients: method must be one of {sorted(QUADRATURES)}; got {method!r}"
        )
    for name, value in (("steps", steps), ("max_steps", max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"integrated_gradients: {name} must be an integer >= 1; got {value!r}")
    if not (isinstance(tol, (int, float, np.floating)) and tol > 0):
        raise ValueError(f"integrated_gradients: tol must be a number > 0; got {tol!r}")
    if baseline is None:
        base = np.zeros_like(x2)
    elif np.ndim(baseline) == 0:
        if not np.isfinite(baseline):
            raise ValueError(f"integrated_gradients: baseline must be finite; got {baseline!r}")
        base = np.full_like(x2, float(baseline))
    else:
        base, _ = check_x(net, baseline, "integrated_gradients (baseline)", batch_ok=False)
    backend = resolve_backend(net, backend)
    diff = (x2 - base).astype(np.float64)
    ends = _forward(net, np.concatenate([x2, base]), layer, backend)[-1][:, units].astype(np.float64)
    delta = ends[0] - ends[1]
    floor = 0.01 * float(np.max(np.abs(delta))) if units.shape[0] > 1 else 0.0
    n = int(steps) if steps is not None else min(DEFAULT_STEPS, int(max_steps))

    def attribute(which, nodes):
        """Attributions (len(which), IN) and their gaps with `nodes` quadrature nodes."""
        t, w = QUADRATURES[method](nodes)
        path = (base + t[:, None] * diff).astype(net.dtype)  # (S, IN)
        mean_grad = jacobian_reduce(net, path, layer, units[which], w, backend)  # (len, IN)
        A_ = (mean_grad * diff).astype(net.dtype, copy=False)
        return A_, completeness_gap(A_, delta[which], floor)

    every = np.arange(units.shape[0])
    A, gap = attribute(every, n)
    # Adaptive: only the units still above tol are recomputed with twice the nodes.
    while steps is None and gap.max() > tol and 2 * n <= max_steps:
        n *= 2
        bad = np.flatnonzero(gap > tol)
        A[bad], gap[bad] = attribute(bad, n)
    worst = float(gap.max())
    if worst > tol:
        warnings.warn(
            f"integrated_gradients: completeness gap {worst:.2%} > {tol:.0%} with {n} {method} "
            f"steps (layer {layer}); raise steps for a tighter attribution",
            RuntimeWarning,
            stacklevel=2,
        )
    if abs:
        np.abs(A, out=A)
    if single:
        A, gap = A[0], float(gap[0])
    return (A, gap) if return_gap else A


def _window(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"occlusion: {name} must be an int or a pair (h, w); got {value!r}") from None
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"occlusion: {name} must be >= 1 (an int or a pair (h, w)); got {value}")
    return value


def _starts(size: int, window: int, stride: int):
    """Window starts covering 0..size-1, the last one flush with the edge."""
    last = max(size - window, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion(model, x, layer, unit=None, *, shape=None, window=8, stride=4, baseline=0.0,
              abs=False, backend=None, batch=256):
    """Occlusion sensitivity (Zeiler & Fergus 2014) of a[layer][unit].

    Slides a `window` (int or (h, w)) with `stride` over the image (shape (H, W) from the
    argument, the model's metadata, or a square), replaces the patch by `baseline` (a number),
    and records a(x) - a(x occluded) (exactly 0 for a patch already equal to the baseline,
    which is not even evaluated). Each pixel gets the mean change over the windows that
    cover it (positive: hiding the pixel lowers the unit). All occluded copies go through
    batched forward passes of `batch` images.

    Returns (U, IN), or (IN,) for an int unit.
    """
    net = network(model, "occlusion")
    layer = check_layer(net, layer, "occlusion")
    units, single = check_units(net, layer, unit, "occlusion")
    x2, _ = check_x(net, x, "occlusion", batch_ok=False)
    H, W = image_shape(model, net.input_dim, shape, "occlusion")
    wh, ww = _window(window, "window")
    sh, sw = _window(stride, "stride")
    if wh > H or ww > W:
        raise ValueError(f"occlusion: window {(wh, ww)} is larger than the image {(H, W)}")
    if not np.isfinite(baseline) or np.ndim(baseline) != 0:
        raise ValueError(f"occlusion: baseline must be a finite number; got {baseline!r}")
    backend = resolve_backend(net, backend)
    positions = [(r, c) for r in _starts(H, wh, sh) for c in _starts(W, ww, sw)]
    ref = _forward(net, x2, layer, backend)[-1][0, units].astype(np.float64)  # (U,)
    total = np.zeros((units.shape[0], H, W), dtype=np.float64)
    count = np.zeros((H, W), dtype=np.float64)
    img = x2.reshape(H, W)
    for s in range(0, len(positions), batch):
        chunk = positions[s : s + batch]
        # a patch already equal to the baseline changes nothing: no forward pass for it
        moved = [(r, c) for r, c in chunk if np.any(img[r : r + wh, c : c + ww] != baseline)]
        for r, c in chunk:
            count[r : r + wh, c : c + ww] += 1.0
        if not moved:
            continue
        X = np.broadcast_to(img, (len(moved), H, W)).copy()
        for i, (r, c) in enumerate(moved):
            X[i, r : r + wh, c : c + ww] = baseline
        out = _forward(net, X.reshape(len(moved), H * W), layer, backend)[-1][:, units]
        change = ref[None, :] - out.astype(np.float64)  # (P_moved, U)
        for i, (r, c) in enumerate(moved):
            total[:, r : r + wh, c : c + ww] += change[i][:, None, None]
    A = (total / count).reshape(units.shape[0], H * W).astype(net.dtype)
    if abs:
        np.abs(A, out=A)
    return A[0] if single else A
