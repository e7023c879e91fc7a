"""Activations by name: the NumPy reference forward and its derivative.

Shapes: z, a, da, dz are (N, OUT); every function is row-wise (softmax) or elementwise.

Derivatives are computed from the forward *output* ``a`` (never from ``z``), as in
scikit-learn's ``DERIVATIVES``: ``sigmoid' = a (1 - a)``, ``tanh' = 1 - a^2``,
``relu' = [a > 0]``, softmax's Jacobian-vector product ``a * (da - sum(a * da))``.
So a backward pass needs only what the forward pass returned.

The functions here are the specification the compiled backends are tested against.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ACTIVATIONS", "DERIVATIVES", "NAMES", "check_activation"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-safe logistic function: never evaluates exp of a positive number."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def linear(z: np.ndarray) -> np.ndarray:
    return z.copy()


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)  # NaN propagates (np.maximum does)


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax with the row maximum subtracted (no overflow)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def d_linear(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return da.copy()


def d_sigmoid(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return da * a * (1 - a)


def d_relu(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return np.where(a > 0, da, 0).astype(da.dtype, copy=False)


def d_tanh(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return da * (1 - a * a)


def d_softmax(a: np.ndarray, da: np.ndarray) -> np.ndarray:
    return a * (da - np.sum(a * da, axis=1, keepdims=True))


ACTIVATIONS = {
    "linear": linear,
    "sigmoid": sigmoid,
    "relu": relu,
    "tanh": tanh,
    "softmax": softmax,
}

DERIVATIVES = {
    "linear": d_linear,
    "sigmoid": d_sigmoid,
    "relu": d_relu,
    "tanh": d_tanh,
    "softmax": d_softmax,
}

NAMES = tuple(ACTIVATIONS)


def check_activation(activation) -> str:
    """Return `activation` if it is a known name, else raise a ValueError listing the names."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {list(NAMES)} "
            "(None means 'linear')"
        )
    return activation
