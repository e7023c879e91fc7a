"""Losses by name, their gradients, and the fused output-layer rule.

Shapes: y_pred / z (N, OUT); y_true (N, OUT), or integer labels (N,) for
categorical cross-entropy; sample_weight (N,) or None. Every loss is a mean over the
batch (binary cross-entropy and mse: over every element, as Keras does), each example
multiplied by its weight when weights are given.

Fused pairs (sigmoid + binary cross-entropy, softmax + categorical cross-entropy) are
computed from the logits z, stably: BCE = max(z, 0) - z y + log1p(exp(-|z|)),
CCE = logsumexp(z) - z[label], and their gradient w.r.t. z is simply (a - y) / N.
Probabilities given to the non-logit forms are clipped to [EPS, 1 - EPS] as Keras does.
"""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, DERIVATIVES

__all__ = [
    "LOSSES",
    "FUSED",
    "EPS",
    "binary_crossentropy",
    "binary_crossentropy_grad",
    "categorical_crossentropy",
    "categorical_crossentropy_grad",
    "mse",
    "mse_grad",
    "loss_and_dz",
    "check_loss",
]

EPS = 1e-7


def _weights(sample_weight, n, dtype):
    if sample_weight is None:
        return None
    return np.asarray(sample_weight, dtype=dtype).reshape(n, 1)


def _as_2d(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=y_pred.dtype)
    if y_pred.ndim == 1:
        y_pred = y_pred[:, None]
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    return y_true, y_pred


def _weighted_mean(per_elem, w, n):
    """Mean over the batch of per-example sums; per_elem (N, C)."""
    if w is not None:
        per_elem = per_elem * w
    return float(per_elem.sum() / n)


# --- binary cross-entropy ------------------------------------------------------------------
def binary_crossentropy(y_true, y_pred, *, from_logits=False, sample_weight=None) -> float:
    """Mean binary cross-entropy; y_true in [0, 1], y_pred probabilities or logits (N, OUT)."""
    y, p = _as_2d(y_true, y_pred)
    w = _weights(sample_weight, len(p), p.dtype)
    if from_logits:
        per = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
    else:
        q = np.clip(p, EPS, 1 - EPS)
        per = -(y * np.log(q) + (1 - y) * np.log1p(-q))
    return _weighted_mean(per, w, p.size)


def binary_crossentropy_grad(y_true, y_pred, *, from_logits=False, sample_weight=None):
    """d binary_crossentropy / d y_pred, same shape as y_pred (2-D)."""
    y, p = _as_2d(y_true, y_pred)
    w = _weights(sample_weight, len(p), p.dtype)
    if from_logits:
        g = ACTIVATIONS["sigmoid"](p) - y
    else:
        q = np.clip(p, EPS, 1 - EPS)
        g = (q - y) / (q * (1 - q))
        g = np.where((p > EPS) & (p < 1 - EPS), g, 0).astype(p.dtype, copy=False)
    g = g / p.size
    return g * w if w is not None else g


# --- categorical cross-entropy ---------------------------------------------------------------
def _one_hot(y_true, shape, dtype):
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape == shape:
        return y.astype(dtype, copy=False)
    labels = y.reshape(-1).astype(np.int64)
    hot = np.zeros(shape, dtype=dtype)
    hot[np.arange(shape[0]), labels] = 1
    return hot


def categorical_crossentropy(y_true, y_pred, *, from_logits=False, sample_weight=None) -> float:
    """Mean categorical cross-entropy; y_true integer labels (N,) or one-hot (N, C)."""
    p = np.asarray(y_pred)
    hot = _one_hot(y_true, p.shape, p.dtype)
    w = _weights(sample_weight, len(p), p.dtype)
    if from_logits:
        m = p.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(p - m).sum(axis=1, keepdims=True))
        per = hot * (lse - p)
    else:
        per = -hot * np.log(np.clip(p, EPS, 1.0))
    return _weighted_mean(per, w, len(p))


def categorical_crossentropy_grad(y_true, y_pred, *, from_logits=False, sample_weight=None):
    """d categorical_crossentropy / d y_pred (N, C)."""
    p = np.asarray(y_pred)
    hot = _one_hot(y_true, p.shape, p.dtype)
    w = _weights(sample_weight, len(p), p.dtype)
    if from_logits:
        g = ACTIVATIONS["softmax"](p) - hot
    else:
        g = np.where(p > EPS, -hot / np.clip(p, EPS, 1.0), 0).astype(p.dtype, copy=False)
    g = g / len(p)
    return g * w if w is not None else g


# --- mean squared error ----------------------------------------------------------------------
def mse(y_true, y_pred, *, from_logits=False, sample_weight=None) -> float:
    """Mean squared error over every element."""
    y, p = _as_2d(y_true, y_pred)
    w = _weights(sample_weight, len(p), p.dtype)
    return _weighted_mean((p - y) ** 2, w, p.size)


def mse_grad(y_true, y_pred, *, from_logits=False, sample_weight=None):
    y, p = _as_2d(y_true, y_pred)
    w = _weights(sample_weight, len(p), p.dtype)
    g = 2 * (p - y) / p.size
    return g * w if w is not None else g


LOSSES = {
    "binary_crossentropy": (binary_crossentropy, binary_crossentropy_grad),
    "categorical_crossentropy": (categorical_crossentropy, categorical_crossentropy_grad),
    "mse": (mse, mse_grad),
}

# (output activation, loss) pairs computed from the logits.
FUSED = {("sigmoid", "binary_crossentropy"), ("softmax", "categorical_crossentropy")}


def check_loss(loss) -> str:
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {list(LOSSES)}")
    return loss


def loss_and_dz(loss: str, activation: str, z, y_true, sample_weight=None):
    """Loss of the output layer and its gradient w.r.t. the pre-activation z (N, OUT).

    Fused pairs work from the logits; any other pair goes a = act(z), L(a), dz = act'(a) dL/da.
    Returns (loss: float, a: (N, OUT), dz: (N, OUT)).
    """
    value, grad = LOSSES[loss]
    a = ACTIVATIONS[activation](z)
    if (activation, loss) in FUSED:
        return (
            value(y_true, z, from_logits=True, sample_weight=sample_weight),
            a,
            grad(y_true, z, from_logits=True, sample_weight=sample_weight).astype(z.dtype, copy=False),
        )
    da = grad(y_true, a, sample_weight=sample_weight).reshape(a.shape)
    return value(y_true, a, sample_weight=sample_weight), a, DERIVATIVES[activation](a, da).astype(z.dtype, copy=False)
