"""The functional kernel API: validate once, pick a backend, call it.

Shapes (rows are examples):
    matmul          a (M, K) @ b (K, P)                         -> (M, P)
    sigmoid         z (any shape)                               -> same shape
    dense_forward   x (N, IN), W (IN, OUT), b (OUT,)            -> a (N, OUT)
    dense_backward  x (N, IN), W (IN, OUT), a (N, OUT), da (N, OUT)
                                                                -> dx (N, IN), dW (IN, OUT), db (OUT,)

`backend=None` picks by the rule in :mod:`fastface.config`: device arrays go to ``cuda``;
host problems of at most ``SMALL_FLOPS`` multiply-adds to ``numba`` (then ``c``), larger ones
to ``numpy`` (multithreaded BLAS). Name a backend to force it.

dtypes: see :mod:`fastface._arrays` (float32/float64 kept; other real dtypes converted once;
bool/complex/object/string refused). Strided views are accepted. N = 0 gives empty results.
"""

from __future__ import annotations

import numpy as np

from . import backends, config, losses
from ._arrays import check_ndim, common_float_arrays
from .activations import ACTIVATIONS, check_activation

__all__ = [
    "matmul",
    "sigmoid",
    "dense_forward",
    "dense_backward",
    "binary_crossentropy",
    "categorical_crossentropy",
    "mse",
    "loss_grad",
    "choose_backend",
]


def choose_backend(flops: int, on_device: bool = False) -> str:
    """The backend name `backend=None` resolves to for a problem of `flops` multiply-adds."""
    if on_device:
        return "cuda"
    prefs = config.SMALL_PREFERENCE if flops <= config.SMALL_FLOPS else config.LARGE_PREFERENCE
    available = _available()
    for name in prefs:
        if name in available:
            return name
    return "numpy"


_AVAILABLE: list | None = None


def _available() -> list:
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = backends.available_backends()
    return _AVAILABLE


def _backend(backend, flops: int, on_device: bool, where: str):
    name = choose_backend(flops, on_device) if backend is None else backend
    module = backends.get(name)
    if on_device and name != "cuda":
        raise TypeError(
            f"{where}: device (GPU) arrays need backend='cuda' (or None); got backend={name!r}. "
            "Copy them to the host first to use a CPU backend"
        )
    return module


def _empty(module, shape, dtype, on_device):
    return module.zeros(shape, dtype) if on_device else np.zeros(shape, dtype=dtype)


def matmul(a, b, *, backend=None):
    """a (M, K) @ b (K, P) -> (M, P) on the chosen backend."""
    (a, b), dev, dtype = common_float_arrays({"a": a, "b": b}, "matmul")
    check_ndim(a, "a", 2, "(M, K)", "matmul")
    check_ndim(b, "b", 2, "(K, P)", "matmul")
    (M, K), (K2, P) = a.shape, b.shape
    if K != K2:
        raise ValueError(
            f"matmul: a is (M, K) = {tuple(a.shape)} and b is (K, P) = {tuple(b.shape)}; "
            f"their inner sizes differ ({K} != {K2}). Transpose or reshape one of them"
        )
    module = _backend(backend, M * K * P, dev, "matmul")
    if M == 0 or K == 0 or P == 0:
        return _empty(module, (M, P), dtype, dev)
    return module.matmul(a, b)


def sigmoid(z, *, backend=None):
    """Elementwise overflow-safe logistic function; any shape, same shape out."""
    (z,), dev, dtype = common_float_arrays({"z": z}, "sigmoid")
    module = _backend(backend, int(np.prod(z.shape, dtype=np.int64)), dev, "sigmoid")
    if dev:
        if len(z.shape) != 2:
            raise ValueError(f"sigmoid: device arrays must be 2-D; got shape {z.shape}")
        if 0 in z.shape:
            return _empty(module, z.shape, dtype, dev)
        return module.sigmoid(z)
    if z.size == 0:
        return np.empty(z.shape, dtype=z.dtype)
    z2 = z if z.ndim == 2 else z.reshape(-1, z.shape[-1] if z.ndim > 2 else z.size)
    return module.sigmoid(z2).reshape(z.shape)


def _dense_args(where, x, W, b=None):
    check_ndim(x, "x", 2, "(N, IN)", where)
    check_ndim(W, "W", 2, "(IN, OUT)", where)
    N, IN = x.shape
    IN2, OUT = W.shape
    if IN != IN2:
        raise ValueError(
            f"{where}: x is (N, IN) = {tuple(x.shape)} but W is (IN, OUT) = {tuple(W.shape)}; "
            f"x has {IN} features and W expects {IN2}. W must have one row per input feature"
        )
    if IN == 0 or OUT == 0:
        raise ValueError(f"{where}: a layer needs IN >= 1 and OUT >= 1; got W of shape {tuple(W.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != OUT):
        raise ValueError(
            f"{where}: b must be 1-D (OUT,) = ({OUT},) to match W {tuple(W.shape)}; "
            f"got shape {tuple(b.shape)}"
        )
    return N, IN, OUT


def dense_forward(x, W, b, activation="sigmoid", *, backend=None):
    """a = activation(x @ W + b).

    x (N, IN), W (IN, OUT), b (OUT,) -> a (N, OUT). `activation` is one of
    'linear', 'sigmoid', 'relu', 'tanh', 'softmax' (row-wise).
    """
    if activation not in ACTIVATIONS:
        activation = check_activation(activation)
    (x, W, b), dev, dtype = common_float_arrays({"x": x, "W": W, "b": b}, "dense_forward")
    xs, ws = x.shape, W.shape
    # One cheap test for the common case; the detailed checks (and messages) otherwise.
    if not (len(xs) == 2 and len(ws) == 2 and xs[1] == ws[0] and ws[0] and ws[1]
            and len(b.shape) == 1 and b.shape[0] == ws[1]):
        _dense_args("dense_forward", x, W, b)
    N, IN, OUT = xs[0], ws[0], ws[1]
    module = _backend(backend, N * IN * OUT, dev, "dense_forward")
    if N == 0:
        return _empty(module, (0, OUT), dtype, dev)
    return module.dense_forward(x, W, b, activation)


def dense_backward(x, W, a, da, activation="sigmoid", *, backend=None):
    """Gradients through one dense layer of a scalar loss L, given da = dL/da.

    x (N, IN) the layer input, W (IN, OUT), a (N, OUT) the forward output, da (N, OUT)
    -> (dx (N, IN), dW (IN, OUT), db (OUT,)). No averaging happens here: the 1/N of a mean
    loss is already in da.
    """
    if activation not in ACTIVATIONS:
        activation = check_activation(activation)
    (x, W, a, da), dev, dtype = common_float_arrays(
        {"x": x, "W": W, "a": a, "da": da}, "dense_backward"
    )
    xs, ws = x.shape, W.shape
    if not (len(xs) == 2 and len(ws) == 2 and xs[1] == ws[0] and ws[0] and ws[1]):
        _dense_args("dense_backward", x, W)
    N, IN, OUT = xs[0], ws[0], ws[1]
    for name, arr in (("a", a), ("da", da)):
        if tuple(arr.shape) != (N, OUT):
            raise ValueError(
                f"dense_backward: {name} must be (N, OUT) = ({N}, {OUT}) like the layer output "
                f"for x {tuple(x.shape)} and W {tuple(W.shape)}; got shape {tuple(arr.shape)}"
            )
    module = _backend(backend, N * IN * OUT, dev, "dense_backward")
    if N == 0:
        return (
            _empty(module, (0, IN), dtype, dev),
            _empty(module, (IN, OUT), dtype, dev),
            _empty(module, (OUT,), dtype, dev),
        )
    return module.dense_backward(x, W, a, da, activation)


# --- losses ----------------------------------------------------------------------------------
def _loss_inputs(where, y_true, y_pred, labels_ok=False):
    (y_pred,), _, _ = common_float_arrays({"y_pred": y_pred}, where)
    y_true = np.asarray(y_true)
    if y_true.dtype.kind not in "biuf":
        raise TypeError(f"{where}: y_true must be numeric; got dtype {y_true.dtype}")
    if y_pred.ndim not in (1, 2):
        raise ValueError(f"{where}: y_pred must be (N,) or (N, OUT); got shape {y_pred.shape}")
    if y_pred.shape[0] == 0:
        raise ValueError(f"{where}: the batch is empty (N = 0); a mean loss needs N >= 1")
    if labels_ok and y_pred.ndim == 2 and y_true.shape == (y_pred.shape[0],):
        C = y_pred.shape[1]
        if y_true.dtype.kind == "f" and not np.all(np.mod(y_true, 1) == 0):
            raise ValueError(f"{where}: integer labels expected in y_true (N,); got fractional values")
        if y_true.size and (y_true.min() < 0 or y_true.max() >= C):
            raise ValueError(
                f"{where}: labels must lie in 0..{C - 1} for y_pred with {C} columns; "
                f"got values from {y_true.min()} to {y_true.max()}"
            )
        return y_true, y_pred
    shape_pred = y_pred.shape if y_pred.ndim == 2 else (y_pred.shape[0], 1)
    shape_true = y_true.shape if y_true.ndim == 2 else (y_true.shape[0], 1)
    if y_true.ndim not in (1, 2) or shape_true != shape_pred:
        expect = "(N,) integer labels or " if labels_ok else ""
        raise ValueError(
            f"{where}: y_true must be {expect}the shape of y_pred {tuple(y_pred.shape)}; "
            f"got shape {tuple(y_true.shape)}"
        )
    return y_true, y_pred


def binary_crossentropy(y_true, y_pred, *, from_logits=False):
    """Mean binary cross-entropy; `from_logits=True` takes pre-sigmoid z (stable form)."""
    y_true, y_pred = _loss_inputs("binary_crossentropy", y_true, y_pred)
    return losses.binary_crossentropy(y_true, y_pred, from_logits=from_logits)


def categorical_crossentropy(y_true, y_pred, *, from_logits=False):
    """Mean categorical cross-entropy; y_true integer labels (N,) or one-hot (N, C)."""
    y_true, y_pred = _loss_inputs("categorical_crossentropy", y_true, y_pred, labels_ok=True)
    return losses.categorical_crossentropy(y_true, y_pred, from_logits=from_logits)


def mse(y_true, y_pred):
    """Mean squared error over every element."""
    y_true, y_pred = _loss_inputs("mse", y_true, y_pred)
    return losses.mse(y_true, y_pred)


def loss_grad(loss, y_true, y_pred, *, from_logits=False):
    """d loss / d y_pred (2-D), for `loss` one of the names in fastface.losses.LOSSES."""
    losses.check_loss(loss)
    y_true, y_pred = _loss_inputs(loss, y_true, y_pred, labels_ok=loss == "categorical_crossentropy")
    return losses.LOSSES[loss][1](y_true, y_pred, from_logits=from_logits)
