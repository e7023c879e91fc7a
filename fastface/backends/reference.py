"""The NumPy reference: the specification every other backend is tested against.

Dimensions:
    N    examples in the batch (rows)
    IN   input features
    OUT  units of the layer
    M, K, P  matmul: (M, K) @ (K, P)

Plain, obvious NumPy in the dtype it is given (so float64 inputs give float64-exact
answers; tests feed float64 copies to check float32 backends). Also the ``numpy`` backend:
at large sizes its BLAS matmul is the fastest thing on a CPU.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS, DERIVATIVES
from ..activations import sigmoid as _sigmoid

NAME = "numpy"


def check() -> None:
    """NumPy is always there."""


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, K) @ b (K, P) -> (M, P)."""
    return a @ b


def sigmoid(z: np.ndarray) -> np.ndarray:
    """z (M, P) -> 1 / (1 + exp(-z)) (M, P), overflow-safe."""
    return _sigmoid(z)


def dense_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, activation: str) -> np.ndarray:
    """x (N, IN), W (IN, OUT), b (OUT,) -> a = act(x @ W + b) (N, OUT)."""
    return ACTIVATIONS[activation](x @ W + b)


def dense_backward(x: np.ndarray, W: np.ndarray, a: np.ndarray, da: np.ndarray, activation: str):
    """Gradients of a scalar loss L through one dense layer, given da = dL/da.

    x (N, IN), W (IN, OUT), a (N, OUT) the forward output, da (N, OUT)
    -> dx (N, IN) = dz @ W.T,  dW (IN, OUT) = x.T @ dz,  db (OUT,) = sum_n dz
    where dz = dL/dz = act'(a) * da (a Jacobian-vector product for softmax).
    """
    dz = DERIVATIVES[activation](a, da)
    return dz @ W.T, x.T @ dz, dz.sum(axis=0)
