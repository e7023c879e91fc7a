"""fastface.torch: DenseFunction / Dense inside PyTorch autograd and optimizers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fastface.torch needs PyTorch (pip install fastface[torch])")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastface  # noqa: E402
import fastface.ops  # noqa: E402
import fastface.torch as fft  # noqa: E402
from fastface.activations import NAMES  # noqa: E402

HOST_BACKENDS = [b for b in fastface.available_backends() if b != "cuda"]
TORCH_ACT = {
    "linear": lambda z: z,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softmax": lambda z: torch.softmax(z, dim=-1),
}
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


def _strided(shape, dtype, gen, requires_grad=False):
    """A tensor of `shape` sliced from a larger one: non-trivial strides, nonzero offset."""
    n, m = shape
    big = torch.randn(2 * n + 1, 3 * m, dtype=dtype, generator=gen)
    t = big[1::2, ::3]
    assert t.shape == shape and (min(shape) == 1 or not t.is_contiguous())
    return t.requires_grad_(requires_grad)


# --- gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_float64_every_activation(activation, bias):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    inputs = (x, W, b) if bias else (x, W)

    def f(x, W, b=None):
        return fft.DenseFunction.apply(x, W, b, activation)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", NAMES)
def test_gradcheck_strided_input(activation):
    gen = torch.Generator().manual_seed(2)
    x = _strided((6, 4), torch.float64, gen, requires_grad=True)
    W = torch.randn(4, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, W, b: fft.DenseFunction.apply(x, W, b, activation), (x, W, b), eps=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_backward_match_torch(backend, activation, dtype):
    """Same outputs and gradients as nn.Linear + activation, one random upstream gradient."""
    gen = torch.Generator().manual_seed(3)
    lin = torch.nn.Linear(13, 5, dtype=dtype)
    layer = fft.Dense.from_linear(lin, activation, backend=backend)
    x1 = torch.randn(11, 13, dtype=dtype, generator=gen, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn(11, 5, dtype=dtype, generator=gen)
    ref = TORCH_ACT[activation](lin(x1))
    out = layer(x2)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    ref.backward(g)
    out.backward(g)
    torch.testing.assert_close(x2.grad, x1.grad, **TOL[dtype])
    torch.testing.assert_close(layer.weight.grad, lin.weight.grad.T, **TOL[dtype])
    torch.testing.assert_close(layer.bias.grad, lin.bias.grad, **TOL[dtype])


@given(
    N=st.integers(1, 40), IN=st.integers(1, 37), OUT=st.integers(1, 19),
    activation=st.sampled_from(NAMES), backend=st.sampled_from(HOST_BACKENDS),
    dtype=st.sampled_from([torch.float32, torch.float64]), strided=st.booleans(), seed=st.integers(0, 2**16),
)
def test_random_shapes_match_torch(N, IN, OUT, activation, backend, dtype, strided, seed):
    """Sizes 1, primes, odd widths; inputs sliced from larger tensors; one random upstream grad."""
    gen = torch.Generator().manual_seed(seed)
    if strided:
        x = _strided((N, IN), dtype, gen)
    else:
        x = torch.randn(N, IN, dtype=dtype, generator=gen)
    W = torch.randn(IN, OUT, dtype=dtype, generator=gen) / IN**0.5
    b = torch.randn(OUT, dtype=dtype, generator=gen)
    g = torch.randn(N, OUT, dtype=dtype, generator=gen)
    x1, W1, b1 = (t.detach().clone().requires_grad_(True) for t in (x, W, b))
    x2, W2, b2 = (t.detach().clone().requires_grad_(True) for t in (x, W, b))
    ref = TORCH_ACT[activation](x1 @ W1 + b1)
    out = fft.DenseFunction.apply(x2, W2, b2, activation, backend)
    tol = TOL[dtype] if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5 * max(1.0, IN**0.5))
    torch.testing.assert_close(out, ref, **tol)
    ref.backward(g)
    out.backward(g)
    for mine, theirs in ((x2, x1), (W2, W1), (b2, b1)):
        torch.testing.assert_close(mine.grad, theirs.grad, **tol)


def test_leading_dimensions_are_flattened():
    layer = fft.Dense(6, 4, "tanh", dtype=torch.float64)
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out, torch.tanh(x @ layer.weight + layer.bias))


# --- zero copy -----------------------------------------------------------------------------------
def _record(monkeypatch, name):
    """Wrap fastface.ops.<name> to keep the arrays it receives and returns."""
    seen = {}
    original = getattr(fastface.ops, name)

    def spy(*args, **kwargs):
        seen["args"] = args
        seen["result"] = original(*args, **kwargs)
        return seen["result"]

    monkeypatch.setattr(fastface.ops, name, spy)
    return seen


@pytest.mark.parametrize("layout", ["contiguous", "strided", "transposed"])
def test_cpu_tensors_reach_ops_without_copy(monkeypatch, layout):
    gen = torch.Generator().manual_seed(4)
    if layout == "contiguous":
        x = torch.randn(8, 5, generator=gen)
    elif layout == "strided":
        x = _strided((8, 5), torch.float32, gen)
    else:
        x = torch.randn(5, 8, generator=gen).T
    x.requires_grad_(True)
    layer = fft.Dense(5, 3, "sigmoid")
    fwd = _record(monkeypatch, "dense_forward")
    bwd = _record(monkeypatch, "dense_backward")
    out = layer(x)

    xa, Wa, ba, _ = fwd["args"]
    base = x.detach()
    for arr, t in ((xa, base), (Wa, layer.weight.detach()), (ba, layer.bias.detach())):
        assert isinstance(arr, np.ndarray)
        assert np.shares_memory(arr, t.numpy()), "a CPU tensor was copied on its way to ops"
        assert arr.strides == tuple(s * t.element_size() for s in t.stride())
    assert np.shares_memory(out.detach().numpy(), fwd["result"]), "the kernel result was copied"

    grads = []
    x.register_hook(grads.append)  # sees the gradient DenseFunction returned, before accumulation
    out.sum().backward()
    bx, bW, ba_out, bda, _ = bwd["args"]
    assert np.shares_memory(bx, base.numpy())
    assert np.shares_memory(ba_out, out.detach().numpy())
    dx, dW, db = bwd["result"]
    assert np.shares_memory(grads[0].numpy(), dx), "the kernel's dx was copied on its way back"
    torch.testing.assert_close(x.grad, torch.from_numpy(dx))


def test_to_array_from_array_round_trip_shares_memory():
    t = torch.arange(12, dtype=torch.float64).reshape(3, 4)[:, 1:]
    arr = fft.to_array(t)
    assert np.shares_memory(arr, t.numpy())
    back = fft.from_array(arr, t)
    assert back.data_ptr() == t.data_ptr() and torch.equal(back, t)


class _ArrayInterfaceOnly:
    """A foreign CPU buffer: exposes only ``__array_interface__`` (as many C libraries do)."""

    def __init__(self, arr):
        self._arr = arr
        self.__array_interface__ = arr.__array_interface__


@pytest.mark.parametrize(
    "make",
    [
        lambda base: base,                                       # C-contiguous
        lambda base: base[1::2, ::3],                            # strided, offset
        lambda base: base.T,                                     # F-ordered
        lambda base: memoryview(base),                           # buffer protocol
        lambda base: _ArrayInterfaceOnly(base[::2]),             # __array_interface__
        lambda base: torch.from_numpy(base),                     # torch CPU tensor, no wrapper
        lambda base: torch.from_numpy(base)[:, 1::2],            # strided torch view
    ],
    ids=["contiguous", "strided", "fortran", "memoryview", "array_interface", "tensor", "tensor_view"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_boundary_passes_cpu_buffers_without_copy(monkeypatch, make, dtype):
    """Whatever CPU buffer comes in, the backend gets a view of that very memory."""
    from fastface.backends import reference

    base = np.random.default_rng(6).standard_normal((6, 9)).astype(dtype)
    src = make(base)
    got = {}

    def spy(a, b):
        got["a"] = a
        return a @ b

    monkeypatch.setattr(reference, "matmul", spy)
    a_shape = np.asarray(src).shape
    b = np.ones((a_shape[1], 2), dtype=dtype)
    out = fastface.ops.matmul(src, b, backend="numpy")
    assert isinstance(got["a"], np.ndarray) and got["a"].dtype == dtype
    assert np.shares_memory(got["a"], base), "ops copied a CPU buffer it could have viewed"
    np.testing.assert_allclose(out, np.asarray(src) @ b, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of PyTorch and a GPU")
def test_cuda_tensors_stay_on_device():
    if "cuda" not in fastface.available_backends():
        pytest.skip(f"fastface cuda backend unavailable: {fastface.unavailable_backends().get('cuda')}")
    lin = torch.nn.Linear(9, 4, device="cuda")
    layer = fft.Dense.from_linear(lin, "sigmoid")
    x = torch.randn(6, 9, device="cuda", requires_grad=True)
    out = layer(x)
    assert out.device.type == "cuda"
    ref = torch.sigmoid(lin(x))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert layer.weight.grad.device.type == "cuda"
    ref.sum().backward()
    torch.testing.assert_close(layer.weight.grad, lin.weight.grad.T, rtol=1e-4, atol=1e-5)


# --- training inside PyTorch ----------------------------------------------------------------------
def _course_nets(dtype, sizes=(40, 25, 15, 1)):
    torch.manual_seed(0)
    linears = [torch.nn.Linear(i, o, dtype=dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    ref = torch.nn.Sequential(linears[0], torch.nn.Sigmoid(), linears[1], torch.nn.Sigmoid(), linears[2])
    ours = torch.nn.Sequential(
        fft.Dense.from_linear(linears[0], "sigmoid"),
        fft.Dense.from_linear(linears[1], "sigmoid"),
        fft.Dense.from_linear(linears[2]),
    )
    return ref, ours


def _train(net, X, y, make_opt, steps, batch):
    opt = make_opt(net.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for step in range(steps):
        i = (step * batch) % len(X)
        opt.zero_grad()
        loss = loss_fn(net(X[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize(
    "dtype, make_opt, tol",
    [
        (torch.float64, lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9), 1e-10),
        (torch.float64, lambda p: torch.optim.Adam(p, lr=1e-2), 1e-9),
        (torch.float32, lambda p: torch.optim.SGD(p, lr=0.5), 2e-5),
    ],
    ids=["sgd-momentum-f64", "adam-f64", "sgd-f32"],
)
def test_training_loop_reaches_same_weights_as_nn_linear(dtype, make_opt, tol):
    gen = torch.Generator().manual_seed(5)
    X = torch.rand(96, 40, dtype=dtype, generator=gen)
    y = (X[:, :20].sum(1, keepdim=True) > X[:, 20:].sum(1, keepdim=True)).to(dtype)
    ref, ours = _course_nets(dtype)
    loss_ref = _train(ref, X, y, make_opt, steps=30, batch=32)
    loss_ours = _train(ours, X, y, make_opt, steps=30, batch=32)
    assert abs(loss_ref - loss_ours) < 10 * tol
    lin_layers = [m for m in ref if isinstance(m, torch.nn.Linear)]
    for lin, dense in zip(lin_layers, ours):
        torch.testing.assert_close(dense.weight, lin.weight.T, rtol=tol, atol=tol)
        torch.testing.assert_close(dense.bias, lin.bias, rtol=tol, atol=tol)
    # training moved the weights: the comparison is not between two untouched copies
    assert not torch.allclose(lin_layers[0].weight, _course_nets(dtype)[0][0].weight)


# --- module behaviour ------------------------------------------------------------------------------
def test_init_matches_nn_linear_under_same_seed():
    torch.manual_seed(7)
    lin = torch.nn.Linear(30, 11)
    torch.manual_seed(7)
    layer = fft.Dense(30, 11)
    assert layer.weight.shape == (30, 11)
    assert torch.equal(layer.weight, lin.weight.T) and torch.equal(layer.bias, lin.bias)


def test_state_dict_round_trip_and_linear_conversion():
    a = fft.Dense(6, 4, "relu", dtype=torch.float64)
    b = fft.Dense(6, 4, "relu", dtype=torch.float64)
    assert not torch.equal(a.weight, b.weight)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"weight", "bias"}
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.equal(a(x), b(x))
    lin = a.to_linear()
    torch.testing.assert_close(torch.relu(lin(x)), a(x))
    no_bias = fft.Dense(6, 4, bias=False)
    assert no_bias.bias is None and set(no_bias.state_dict()) == {"weight"}
    assert "activation='relu'" in repr(a)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: fft.Dense(0, 3), ValueError, "in_features must be a positive integer"),
        (lambda: fft.Dense(3, 2.5), ValueError, "out_features"),
        (lambda: fft.Dense(3, 2, "swish"), ValueError, "unknown activation"),
        (lambda: fft.Dense(3, 2, backend="fortran"), ValueError, "unknown backend"),
        (lambda: fft.Dense(3, 2)(torch.ones(4, 5)), ValueError, r"\(\*, 3\)"),
        (lambda: fft.Dense(3, 2)(torch.ones(4, 3, dtype=torch.int64)), TypeError, "float32 or float64"),
        (lambda: fft.Dense(3, 2)(torch.ones(4, 3, dtype=torch.float64)), TypeError, "share one dtype"),
        (lambda: fft.Dense(3, 2)(np.ones((4, 3), np.float32)), TypeError, "torch.Tensor"),
        (lambda: fft.Dense.from_linear(torch.nn.Conv1d(1, 1, 1)), TypeError, "nn.Linear"),
    ],
)
def test_bad_input_is_refused_clearly(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_double_backward_is_refused():
    layer = fft.Dense(4, 2, "tanh", dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = layer(x).sum()
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(out, x, create_graph=True)


def test_unsupported_device_is_refused_clearly():
    layer = fft.Dense(3, 2, device="meta")
    with pytest.raises(TypeError, match="device meta are not supported"):
        layer(torch.empty(4, 3, device="meta"))


def test_inference_mode_and_frozen_parameters():
    layer = fft.Dense(5, 3, "softmax", dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    want = torch.softmax(x @ layer.weight + layer.bias, dim=1)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), want)
    layer.requires_grad_(False)
    out = layer(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, want.detach())


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_outputs_are_not_overwritten_by_later_calls(backend):
    """Outputs and gradients are tensors over the kernels' result buffers (no copy), so those
    buffers must be fresh per call: a later call must not change an earlier result."""
    layer = fft.Dense(7, 4, "tanh", backend=backend, dtype=torch.float64)
    x1 = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    out1 = layer(x1)
    keep = out1.detach().clone()
    out1.sum().backward()
    g1 = (x1.grad.clone(), layer.weight.grad.clone())
    out2 = layer(x2)
    (2 * out2).sum().backward()
    assert torch.equal(out1.detach(), keep)
    assert torch.equal(x1.grad, g1[0])
    assert not torch.equal(out1, out2)


# --- whole networks: fastface model <-> torch ------------------------------------------------------
def test_model_round_trip_through_torch_training():
    """fastface model -> torch (train there) -> fastface model: predictions agree at every stage."""
    model = fastface.Sequential(
        [fastface.Dense(9, "tanh"), fastface.Dense(4, "relu"), fastface.Dense(3, "softmax")],
        input_dim=6, dtype="float64", seed=3,
    )
    X = np.random.default_rng(8).standard_normal((20, 6))
    net = fft.from_model(model)
    assert [m.activation for m in net] == ["tanh", "relu", "softmax"]
    torch.testing.assert_close(net(torch.from_numpy(X)), torch.from_numpy(model.predict(X)), **TOL[torch.float64])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    y = torch.from_numpy(np.arange(20) % 3)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.nll_loss(torch.log(net(torch.from_numpy(X))), y).backward()
        opt.step()
    back = fft.to_model(net)
    assert back.dtype == np.float64 and back.layer_sizes == [6, 9, 4, 3]
    np.testing.assert_allclose(back.predict(X), net(torch.from_numpy(X)).detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.allclose(back.predict(X), model.predict(X))  # the torch training is in it


def test_to_model_reads_plain_torch_mlps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(7, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 4, bias=False), torch.nn.Identity(),
        torch.nn.Linear(4, 2),
    )
    model = fft.to_model(net)
    assert [l.activation for l in model.layers] == ["sigmoid", "linear", "linear"]
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.layers[0].W, net[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(model.layers[1].b, np.zeros(4, np.float32))
    x = torch.rand(3, 7)
    np.testing.assert_allclose(model.predict(x.numpy()), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: fft.to_model(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1))), TypeError, "Conv1d"),
        (lambda: fft.to_model(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(dim=0))),
         ValueError, "last dim"),
        (lambda: fft.to_model(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Tanh())),
         ValueError, "does not follow a linear"),
        (lambda: fft.to_model(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(4, 2))),
         ValueError, "takes 4 inputs"),
        (lambda: fft.to_model(torch.nn.Sequential(torch.nn.ReLU())), ValueError, "does not follow"),
        (lambda: fft.from_model("model"), TypeError, "fastface Sequential"),
        (lambda: fft.from_model(fastface.Sequential([fastface.Dense(2)])), ValueError, "not built"),
        (lambda: fft.from_model(fastface.Sequential([fastface.Dense(2)], input_dim=3, normalize="standard")),
         ValueError, "transform_inputs"),
    ],
)
def test_model_conversion_refuses_what_it_cannot_represent(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("needs", ["x only (frozen layer)", "params only (first layer)", "weight only"])
def test_partial_backward_matches_torch(activation, needs):
    """Layers whose input needs no gradient, or whose parameters are frozen, compute only the
    products needed; the gradients that are asked for are still torch's."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    W = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(4, dtype=torch.float64, generator=gen)
    g = torch.randn(6, 4, dtype=torch.float64, generator=gen)
    flags = {
        "x only (frozen layer)": (True, False, False),
        "params only (first layer)": (False, True, True),
        "weight only": (False, True, False),
    }[needs]
    mine = [t.detach().clone().requires_grad_(f) for t, f in zip((x, W, b), flags)]
    ref = [t.detach().clone().requires_grad_(f) for t, f in zip((x, W, b), flags)]
    fft.DenseFunction.apply(*mine, activation).backward(g)
    TORCH_ACT[activation](ref[0] @ ref[1] + ref[2]).backward(g)
    for m, r, f in zip(mine, ref, flags):
        if f:
            torch.testing.assert_close(m.grad, r.grad, **TOL[torch.float64])
        else:
            assert m.grad is None
