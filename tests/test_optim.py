"""fastface.optim: each update rule against arithmetic worked out by hand, weight decay on W
only, state kept between calls, overflow protection, and a cross-check against torch.optim."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastface as ff
from fastface import optim

# One layer with a single weight W and a single bias b: theta = [W, b].
TABLE = np.array([[1, 1, 0, 1, 0, 0]], dtype=np.int64)


def _steps(opt, grads, theta=(1.0, 1.0), dtype=np.float64):
    theta = np.array(theta, dtype=dtype)
    out = []
    for g in grads:
        assert opt.step(theta, np.array(g, dtype=dtype), TABLE)
        out.append(theta.copy())
    return out


def test_sgd_plain_by_hand():
    # p -= 0.1 * 0.5  ->  0.95, then 0.9
    (s1, s2) = _steps(optim.SGD(learning_rate=0.1), [(0.5, 0.5), (0.5, 0.5)])
    np.testing.assert_allclose(s1, [0.95, 0.95], rtol=1e-15)
    np.testing.assert_allclose(s2, [0.90, 0.90], rtol=1e-15)


def test_sgd_momentum_by_hand():
    # buf = 0.5 -> p = 1 - 0.05 = 0.95; buf = 0.9 * 0.5 + 0.5 = 0.95 -> p = 0.95 - 0.095 = 0.855
    (s1, s2) = _steps(optim.SGD(learning_rate=0.1, momentum=0.9), [(0.5, 0.5), (0.5, 0.5)])
    np.testing.assert_allclose(s1, [0.95, 0.95], rtol=1e-15)
    np.testing.assert_allclose(s2, [0.855, 0.855], rtol=1e-15)


def test_sgd_nesterov_by_hand():
    # step 1: buf = 0.5, g = 0.5 + 0.9 * 0.5 = 0.95 -> p = 0.905
    # step 2: buf = 0.45 + 0.5 = 0.95, g = 0.5 + 0.855 = 1.355 -> p = 0.905 - 0.1355 = 0.7695
    (s1, s2) = _steps(optim.SGD(learning_rate=0.1, momentum=0.9, nesterov=True), [(0.5, 0.5), (0.5, 0.5)])
    np.testing.assert_allclose(s1, [0.905, 0.905], rtol=1e-15)
    np.testing.assert_allclose(s2, [0.7695, 0.7695], rtol=1e-14)


def test_weight_decay_applies_to_W_only():
    # W: g = 0.5 + 0.1 * 1.0 = 0.6 -> 1 - 0.06 = 0.94 ; b: g = 0.5 -> 0.95
    (s1,) = _steps(optim.SGD(learning_rate=0.1, weight_decay=0.1), [(0.5, 0.5)])
    np.testing.assert_allclose(s1, [0.94, 0.95], rtol=1e-15)


def test_adam_by_hand():
    # t = 1: m = 0.1 g, v = 0.001 g^2; step = lr / (1 - 0.9) ; sqrt(v) / sqrt(1 - 0.999) = |g|
    # so p = 1 - lr * g / (|g| + eps): the first Adam step moves by lr against the sign of g.
    opt = optim.Adam(learning_rate=0.1, epsilon=1e-7)
    (s1,) = _steps(opt, [(0.5, -2.0)])
    np.testing.assert_allclose(s1, [1 - 0.1 * 0.5 / (0.5 + 1e-7), 1 + 0.1 * 2.0 / (2.0 + 1e-7)], rtol=1e-14)
    # t = 2 with g = 0.5 again: m = 0.09*0.5*... worked out in closed form
    theta = s1.copy()
    opt.step(theta, np.array([0.5, 0.5]), TABLE)
    m = 0.9 * 0.05 + 0.1 * 0.5
    v = 0.999 * 0.00025 + 0.001 * 0.25
    expect_W = s1[0] - 0.1 / (1 - 0.9**2) * m / (math.sqrt(v) / math.sqrt(1 - 0.999**2) + 1e-7)
    np.testing.assert_allclose(theta[0], expect_W, rtol=1e-14)
    assert opt.iterations == 2


def test_float32_update_stays_float32():
    (s1,) = _steps(optim.Adam(), [(0.5, 0.5)], dtype=np.float32)
    assert s1.dtype == np.float32


def test_overflowing_update_keeps_the_old_value():
    opt = optim.SGD(learning_rate=1e30)
    theta = np.array([1.0, 2.0], dtype=np.float32)
    ok = opt.step(theta, np.array([1e30, 1.0], dtype=np.float32), TABLE)
    assert not ok
    assert theta[0] == 1.0 and theta[1] == np.float32(2.0 - 1e30)


def test_get_and_bad_arguments():
    assert isinstance(optim.get("SGD", learning_rate=0.1, momentum=None), optim.SGD)
    adam = optim.Adam(learning_rate=0.5)
    assert optim.get(adam) is adam
    assert optim.from_config(adam.get_config()).get_config() == adam.get_config()
    assert "learning_rate=0.5" in repr(adam)
    with pytest.raises(ValueError, match="optimizer object and also"):
        optim.get(adam, learning_rate=0.1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        optim.SGD(nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(momentum=1.0)
    with pytest.raises(TypeError, match="nesterov"):
        optim.SGD(momentum=0.9, nesterov="yes")
    with pytest.raises(ValueError, match="beta_2"):
        optim.Adam(beta_2=1.5)
    with pytest.raises(TypeError, match="learning_rate"):
        optim.SGD(learning_rate="fast")
    with pytest.raises(ValueError, match="learning_rate"):
        optim.SGD(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="weight_decay"):
        optim.Adam(weight_decay=-1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.from_config({"name": "lbfgs"})


# --- cross-check against PyTorch ------------------------------------------------------------
@pytest.mark.parametrize(
    "acts,loss,make",
    [
        (("sigmoid", "sigmoid", "sigmoid"), "binary_crossentropy", "sgd_nesterov"),
        (("relu", "tanh", "softmax"), "categorical_crossentropy", "adam"),
        (("tanh", "relu", "linear"), "mse", "sgd_momentum"),
    ],
)
@pytest.mark.parametrize("fused", [True, False])
def test_same_weights_as_torch(acts, loss, make, fused):
    torch = pytest.importorskip("torch", reason="the PyTorch cross-check needs torch")
    rng = np.random.default_rng(0)
    N, IN, H1, H2 = 24, 6, 5, 4
    OUT = 3 if loss != "binary_crossentropy" else 1
    X = rng.normal(size=(N, IN))
    if loss == "categorical_crossentropy":
        y = rng.integers(0, OUT, size=N)
    elif loss == "binary_crossentropy":
        y = (X[:, 0] > 0).astype(np.float64)
    else:
        y = rng.normal(size=(N, OUT))

    model = ff.Sequential([ff.Dense(H1, acts[0]), ff.Dense(H2, acts[1]), ff.Dense(OUT, acts[2])], input_dim=IN, dtype="float64", seed=1)
    wd = 1e-2
    if make == "adam":
        opt = optim.Adam(learning_rate=0.05, epsilon=1e-7, weight_decay=wd)
    else:
        opt = optim.SGD(learning_rate=0.2, momentum=0.9, nesterov=make == "sgd_nesterov", weight_decay=wd)
    model.compile(loss=loss, optimizer=opt, fused=fused)

    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}
    mods = []
    for i, layer in enumerate(model.layers):
        lin = torch.nn.Linear(layer.W.shape[0], layer.units).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
        mods.append(lin)
        if i < 2:
            mods.append(act[layer.activation]())
    net = torch.nn.Sequential(*mods)
    weights = [m.weight for m in mods if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in mods if isinstance(m, torch.nn.Linear)]
    groups = [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]
    if make == "adam":
        topt = torch.optim.Adam(groups, lr=0.05, eps=1e-7)
    else:
        topt = torch.optim.SGD(groups, lr=0.2, momentum=0.9, nesterov=make == "sgd_nesterov")
    if loss == "binary_crossentropy":
        lossf, ty = torch.nn.BCEWithLogitsLoss(), torch.from_numpy(y[:, None])
    elif loss == "categorical_crossentropy":
        lossf, ty = torch.nn.CrossEntropyLoss(), torch.from_numpy(y)
    else:
        lossf, ty = torch.nn.MSELoss(), torch.from_numpy(y)
    tX = torch.from_numpy(X)
    B, epochs = 8, 3
    for _ in range(epochs):
        for s in range(0, N, B):
            topt.zero_grad()
            lossf(net(tX[s : s + B]), ty[s : s + B]).backward()
            topt.step()
    model.fit(X, y, epochs=epochs, batch_size=B, shuffle=False, verbose=0)
    for i, layer in enumerate(model.layers):
        np.testing.assert_allclose(layer.W, weights[i].detach().numpy().T, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.b, biases[i].detach().numpy(), rtol=1e-10, atol=1e-12)
