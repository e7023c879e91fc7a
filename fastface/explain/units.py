"""What a hidden unit looks for: its weights as an image, and the input that excites it most.

Dimensions:
    IN   input features (H*W pixels, row-major)     n_k  width of layer k
    W_k (n_{k-1}, n_k);  unit images (n_l, H, W);   maximize_unit -> x (IN,)

Layer 1: unit j's incoming weights W_1[:, j] are a template over the pixels. Layer l >= 2: the
linear view projects back through the layers below, P_l = W_1 @ W_2 @ ... @ W_l (IN, n_l), and
column j is the picture (exact for linear activations; for the others it ignores each layer's
bias and slope, which maximize_unit does not).
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import ops
from ._common import check_layer, check_units, image_shape, network, resolve_backend
from .gradients import _forward, _jacobian

__all__ = ["unit_images", "projection", "maximize_unit"]


def projection(model, layer, *, raw=True, backend=None) -> np.ndarray:
    """P = W_1 @ ... @ W_layer (IN, n_layer), multiplied with fastface.ops.matmul.

    With input stages (a model's standardisation, a face task's whitening PCA) P is carried
    back to raw pixels through their transposes (diag(1/std) @ P, C @ diag(s) @ P); a
    per-image normalisation is non-linear and left out of this linear view. raw=False stops
    at the first layer's input (the weights as stored).

    The product is taken in the cheaper order (right to left when the layers narrow, which
    they do in the usual funnel), so no (IN, IN)-sized intermediate ever appears.
    """
    net = network(model, "projection")
    layer = check_layer(net, layer, "projection")
    backend = resolve_backend(net, backend)
    P = net.Ws[layer - 1]
    for k in range(layer - 2, -1, -1):
        P = ops.matmul(net.Ws[k], P, backend=backend)
    for stage in reversed(net.stages if raw else ()):  # linear input stages back to pixels
        Q = stage.pixels_T(P, backend)
        P = P if Q is None else Q
    return P


def unit_images(model, layer=1, shape=None, *, units=None, raw=True, backend=None):
    """Each unit of `layer` as an image: (n_layer, H, W), or (len(units), H, W).

    layer 1 -> the incoming weights W_1[:, j]; layer l >= 2 -> column j of W_1 @ ... @ W_l
    (the linear projection back to the pixels). shape (H, W): the argument, else the model's
    metadata, else a square sqrt(IN) x sqrt(IN). units: None (all) or a list of unit numbers.

    raw=True (default): in raw-pixel space, through the model's linear input stages (a
    standardising model's 1/std, a face task's whitening PCA), i.e. how each raw pixel
    drives the unit in the linear view; for a model without input stages this is exactly
    the weights. raw=False: the stored weights (the first layer's input space).
    """
    net = network(model, "unit_images")
    layer = check_layer(net, layer, "unit_images")
    width = net.input_dim if raw else net.width(0)
    H, W = image_shape(model, width, shape, "unit_images")
    idx, _ = check_units(net, layer, units, "unit_images")
    P = projection(model, layer, raw=raw, backend=backend)
    return np.ascontiguousarray(P.T[idx]).reshape(idx.shape[0], H, W)


def maximize_unit(model, layer, unit, *, norm=None, steps=200, lr=0.1, x0=None, seed=0,
                  shape=None, return_activation=False, backend=None):
    """The input of L2 norm `norm` that most excites unit `unit` of `layer` (activation maximisation).

    Projected gradient ascent on a[layer][unit](x) subject to ||x||_2 <= norm, the gradient
    coming from fastface's exact saliency pass. Each step moves by lr * norm along the
    normalised gradient, then projects back on the ball; the step size decays when the
    activation stops rising. For layer 1 with a monotonic activation the answer is
    norm * W_1[:, unit] / ||W_1[:, unit]|| (the unit image); deeper layers show what the
    non-linear network prefers.

    norm   radius (default 0.5 * sqrt(IN): a mid-grey image's norm on 0..1 pixels)
    x0     start (IN,) (default: small noise from default_rng(seed))
    shape  if given, or known from the model, the result is returned as an image (H, W)

    Returns x (IN,) or (H, W) when a shape is known; with return_activation, (x, activation).
    """
    net = network(model, "maximize_unit")
    layer = check_layer(net, layer, "maximize_unit")
    if unit is None or isinstance(unit, bool) or not isinstance(unit, numbers.Integral):
        raise TypeError(f"maximize_unit: unit must be one integer; got {unit!r}")
    units, _ = check_units(net, layer, unit, "maximize_unit")
    IN = net.input_dim
    radius = 0.5 * np.sqrt(IN) if norm is None else float(norm)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"maximize_unit: norm must be a finite number > 0; got {norm!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"maximize_unit: steps must be an integer >= 1; got {steps!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"maximize_unit: lr must be a finite number > 0; got {lr!r}")
    backend = resolve_backend(net, backend)
    if x0 is None:
        x = np.random.default_rng(seed).normal(0.0, 1e-3 * radius / np.sqrt(IN), IN)
    else:
        x = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x.shape[0] != IN or not np.all(np.isfinite(x)):
            raise ValueError(f"maximize_unit: x0 must be {IN} finite numbers; got shape {np.shape(x0)}")

    def value_and_grad(v):
        acts = _forward(net, v.astype(net.dtype)[None, :], layer, backend)
        g = _jacobian(net, acts, layer, units, backend)[0, 0].astype(np.float64)
        return float(acts[-1][0, units[0]]), g

    def project(v):
        n = np.linalg.norm(v)
        return v if n <= radius else v * (radius / n)

    x = project(x)
    best_val, g = value_and_grad(x)
    best = x
    step = lr * radius
    for _ in range(int(steps)):
        gn = np.linalg.norm(g)
        if gn == 0.0 or step < 1e-9 * radius:
            break
        cand = project(x + step * g / gn)
        val, g_c = value_and_grad(cand)
        if val >= best_val:
            x, g, best, best_val = cand, g_c, cand, val
        else:
            step *= 0.5
    out = best.astype(net.dtype)
    try:
        H, W = image_shape(model, IN, shape, "maximize_unit")
        out = out.reshape(H, W)
    except ValueError:
        if shape is not None:
            raise
    return (out, best_val) if return_activation else out
