"""Reference gradients against central finite differences (float64), and one case by hand.

Shapes: x (N, IN), W (IN, OUT), b (OUT,), a / z / G (N, OUT), y (N, OUT) or labels (N,).

- Every activation: L = sum(G * a) for a random G, so dL/da = G; ops.dense_backward on the
  NumPy reference must give dL/dx, dL/dW, dL/db equal to central differences of L.
- Every loss: ops.loss_grad against differences of the loss value (probabilities and logits),
  and fastface.losses.loss_and_dz (fused and unfused output layers, with and without
  sample_weight) against differences of its loss value with respect to z.
- One layer of 2 examples, 2 inputs, 1 sigmoid unit and binary cross-entropy, worked out by
  hand in the comments, on every backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastface import losses, ops
from fastface.activations import ACTIVATIONS, NAMES
from fastface.backends import available_backends

H = 1e-6  # central-difference step (float64: truncation ~H^2, rounding ~1e-16/H)
RTOL, ATOL = 1e-6, 1e-8


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (in place)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        up = f()
        flat[i] = old - H
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return grad


def assert_grad(analytic, numeric, what):
    np.testing.assert_allclose(
        analytic, numeric, rtol=RTOL, atol=ATOL,
        err_msg=f"{what}: analytic gradient != central finite differences (h={H})",
    )


def _layer(activation, seed=0, n=4, n_in=5, n_out=3):
    """Random float64 layer whose pre-activations keep clear of relu's kink at 0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in))
    W = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
    b = rng.standard_normal(n_out) * 0.1
    # shift b so no |z| is within 0.05 of 0 (finite differences would cross relu's kink)
    while np.min(np.abs(x @ W + b)) < 0.05:
        b += 0.07
    G = rng.standard_normal((n, n_out))
    return x, W, b, G


# --- every activation through dense_backward -------------------------------------------------
@pytest.mark.parametrize("activation", NAMES)
def test_dense_backward_matches_finite_differences(activation):
    x, W, b, G = _layer(activation)

    def loss():
        return float(np.sum(G * ops.dense_forward(x, W, b, activation, backend="numpy")))

    a = ops.dense_forward(x, W, b, activation, backend="numpy")
    dx, dW, db = ops.dense_backward(x, W, a, G, activation, backend="numpy")
    assert_grad(dx, numeric_grad(loss, x), f"{activation}: dx")
    assert_grad(dW, numeric_grad(loss, W), f"{activation}: dW")
    assert_grad(db, numeric_grad(loss, b), f"{activation}: db")


@pytest.mark.parametrize("activation", NAMES)
def test_activation_derivative_from_output(activation):
    """DERIVATIVES[act](a, da) is the Jacobian-vector product of the activation at z."""
    from fastface.activations import DERIVATIVES

    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 4)) + 0.2
    z[np.abs(z) < 0.05] = 0.3
    da = rng.standard_normal((3, 4))
    numeric = numeric_grad(lambda: float(np.sum(da * ACTIVATIONS[activation](z))), z)
    assert_grad(DERIVATIVES[activation](ACTIVATIONS[activation](z), da), numeric, f"d{activation}")


# --- every loss: ops.loss_grad ----------------------------------------------------------------
def _targets(loss, rng, n, c):
    if loss == "categorical_crossentropy":
        return rng.integers(0, c, size=n)
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, size=(n, c)).astype(np.float64)
    return rng.standard_normal((n, c))


LOSS_CASES = [
    ("binary_crossentropy", False, "labels"),
    ("binary_crossentropy", True, "labels"),
    ("categorical_crossentropy", False, "labels"),
    ("categorical_crossentropy", True, "labels"),
    ("categorical_crossentropy", False, "one-hot"),
    ("categorical_crossentropy", True, "one-hot"),
    ("mse", False, "values"),
]


@pytest.mark.parametrize("loss, from_logits, target_kind", LOSS_CASES)
def test_loss_grad_matches_finite_differences(loss, from_logits, target_kind):
    rng = np.random.default_rng(2)
    n, c = 5, 3
    y = _targets(loss, rng, n, c)
    if target_kind == "one-hot":
        y = np.eye(c)[y]
    if from_logits or loss == "mse":
        pred = rng.standard_normal((n, c)) * 2
    else:  # probabilities well inside (EPS, 1 - EPS), where no clipping happens
        pred = rng.uniform(0.05, 0.95, size=(n, c))
    kwargs = {"from_logits": True} if from_logits else {}
    value = getattr(ops, loss)

    def f():
        return value(y, pred, **kwargs)

    grad = ops.loss_grad(loss, y, pred, from_logits=from_logits)
    assert grad.shape == pred.shape
    assert_grad(grad, numeric_grad(f, pred), f"{loss} from_logits={from_logits} ({target_kind})")


def test_fused_logit_losses_equal_the_probability_forms():
    """BCE(y, sigmoid(z)) and CCE(y, softmax(z)) computed from logits agree where nothing clips."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 4))
    y_bin = rng.integers(0, 2, size=(6, 4)).astype(np.float64)
    labels = rng.integers(0, 4, size=6)
    assert ops.binary_crossentropy(y_bin, z, from_logits=True) == pytest.approx(
        ops.binary_crossentropy(y_bin, ACTIVATIONS["sigmoid"](z)), rel=1e-12)
    assert ops.categorical_crossentropy(labels, z, from_logits=True) == pytest.approx(
        ops.categorical_crossentropy(labels, ACTIVATIONS["softmax"](z)), rel=1e-12)
    # and stay finite where the probability form would need log(0)
    big = np.array([[800.0, -800.0]])
    assert math.isfinite(ops.binary_crossentropy(np.array([[0.0, 1.0]]), big, from_logits=True))
    assert ops.categorical_crossentropy(np.array([1]), big, from_logits=True) == pytest.approx(1600.0)


# --- every (activation, loss) output layer through loss_and_dz, with and without weights -------
OUTPUT_PAIRS = [
    ("sigmoid", "binary_crossentropy"),  # fused
    ("softmax", "categorical_crossentropy"),  # fused
    ("softmax", "binary_crossentropy"),
    ("sigmoid", "categorical_crossentropy"),
] + [(act, "mse") for act in NAMES]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
@pytest.mark.parametrize("activation, loss", OUTPUT_PAIRS)
def test_loss_and_dz_matches_finite_differences(activation, loss, weighted):
    rng = np.random.default_rng(4)
    n, c = 6, 3
    y = _targets(loss, rng, n, c)
    z = rng.standard_normal((n, c))
    z[np.abs(z) < 0.05] = 0.4  # relu's kink
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None

    def f():
        return losses.loss_and_dz(loss, activation, z, y, sample_weight=w)[0]

    value, a, dz = losses.loss_and_dz(loss, activation, z, y, sample_weight=w)
    np.testing.assert_allclose(a, ACTIVATIONS[activation](z), rtol=1e-14)
    assert dz.shape == z.shape and dz.dtype == z.dtype
    assert_grad(dz, numeric_grad(f, z), f"{activation}+{loss} weighted={weighted}")


def test_sample_weight_scales_each_example():
    """Weights of 2 on every example double the loss and its gradient; a zero weight removes one."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((4, 1))
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    base, _, dz = losses.loss_and_dz("binary_crossentropy", "sigmoid", z, y)
    double, _, dz2 = losses.loss_and_dz("binary_crossentropy", "sigmoid", z, y, sample_weight=np.full(4, 2.0))
    assert double == pytest.approx(2 * base, rel=1e-12)
    np.testing.assert_allclose(dz2, 2 * dz, rtol=1e-12)
    _, _, dz0 = losses.loss_and_dz("binary_crossentropy", "sigmoid", z, y, sample_weight=[1, 0, 1, 1])
    assert dz0[1, 0] == 0.0 and dz0[0, 0] == dz[0, 0]


# --- a case worked out by hand ----------------------------------------------------------------
@pytest.mark.parametrize("backend", available_backends())
def test_tiny_sigmoid_bce_by_hand(backend):
    # Two examples, two inputs, one sigmoid unit, binary cross-entropy (mean over N = 2).
    #   x = [[1, 1],     W = [[ ln 3],     b = [0]     y = [1, 0]
    #        [1, 0]]          [-ln 3]]
    # z = x @ W + b = [ln3 - ln3, ln3] = [0, ln 3]
    # a = sigmoid(z) = [1/2, 3/(3+1)] = [0.5, 0.75]
    # L = -(1/2) [ 1*log(0.5) + (1-0)*log(1-0.75) ] = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2 = 1.0397207708...
    # dL/da = (a - y) / (a (1 - a)) / N = [(-0.5)/0.25/2, 0.75/0.1875/2] = [-1, 2]
    # dz = dL/da * a (1 - a)            = [-1 * 0.25, 2 * 0.1875]    = [-0.25, 0.375]
    #    (the fused rule (a - y) / N   = [-0.5/2, 0.75/2]             = the same)
    # dW = x.T @ dz = [[1*-0.25 + 1*0.375], [1*-0.25 + 0*0.375]] = [[0.125], [-0.25]]
    # db = -0.25 + 0.375 = 0.125
    # dx = dz @ W.T = [[-0.25 ln3, 0.25 ln3], [0.375 ln3, -0.375 ln3]]
    ln3 = math.log(3.0)
    x = np.array([[1.0, 1.0], [1.0, 0.0]])
    W = np.array([[ln3], [-ln3]])
    b = np.array([0.0])
    y = np.array([[1.0], [0.0]])

    a = ops.dense_forward(x, W, b, "sigmoid", backend=backend)
    np.testing.assert_allclose(a, [[0.5], [0.75]], rtol=1e-14, err_msg=f"backend={backend}: a")

    assert ops.binary_crossentropy(y, a) == pytest.approx(1.5 * math.log(2.0), rel=1e-12)
    da = ops.loss_grad("binary_crossentropy", y, a)
    np.testing.assert_allclose(da, [[-1.0], [2.0]], rtol=1e-12)

    value, _, dz = losses.loss_and_dz("binary_crossentropy", "sigmoid", x @ W + b, y)
    assert value == pytest.approx(1.5 * math.log(2.0), rel=1e-12)
    np.testing.assert_allclose(dz, [[-0.25], [0.375]], rtol=1e-12)

    dx, dW, db = ops.dense_backward(x, W, a, da, "sigmoid", backend=backend)
    np.testing.assert_allclose(dW, [[0.125], [-0.25]], rtol=1e-12, err_msg=f"backend={backend}: dW")
    np.testing.assert_allclose(db, [0.125], rtol=1e-12, err_msg=f"backend={backend}: db")
    np.testing.assert_allclose(dx, [[-0.25 * ln3, 0.25 * ln3], [0.375 * ln3, -0.375 * ln3]], rtol=1e-12,
                               err_msg=f"backend={backend}: dx")
