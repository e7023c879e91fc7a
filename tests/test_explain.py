"""fastface.explain: exact saliency against finite differences, backends, torch; unit images;
integrated gradients' completeness; occlusion; SmoothGrad; activation maximisation; errors."""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastface as ff
import fastface.explain as fx
from fastface.activations import ACTIVATIONS, NAMES


def make_model(sizes, activations, seed=0, dtype=np.float64, backend="numpy"):
    """A real ff.Sequential with weights drawn large enough that every activation bends."""
    rng = np.random.default_rng(seed)
    model = ff.Sequential([ff.Dense(n, a) for n, a in zip(sizes[1:], activations)],
                          input_dim=sizes[0], dtype=np.dtype(dtype).name, backend=backend, seed=seed)
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights += [rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_in, n_out)), rng.normal(0.0, 0.3, n_out)]
    model.set_weights(weights)
    return model


def stand_in(model):
    """The bare contract (layers[i].W/.b/.activation) wrapped like a face task (.model)."""
    layers = [types.SimpleNamespace(W=L.W.copy(), b=L.b.copy(), activation=L.activation) for L in model.layers]
    return types.SimpleNamespace(model=types.SimpleNamespace(layers=layers))


def forward(model, x, layer):
    """Plain NumPy forward to a[layer] (the oracle for finite differences)."""
    a = np.atleast_2d(x)
    for L in model.layers[:layer]:
        a = ACTIVATIONS[L.activation](a @ L.W + L.b)
    return a


def finite_differences(model, x, layer, h=1e-6):
    """d a[layer] / d x by central differences -> (units, IN)."""
    IN = x.shape[0]
    E = np.eye(IN) * h
    plus = forward(model, x[None, :] + E, layer)
    minus = forward(model, x[None, :] - E, layer)
    return ((plus - minus) / (2 * h)).T


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# --- exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("act", NAMES)
def test_saliency_matches_finite_differences(act, depth):
    sizes = [11, 7, 5, 3][: depth + 1]
    # every layer uses `act`, and a second net mixes it with the others at every position
    others = [a for a in NAMES if a != act]
    for acts in ([act] * depth, [act, *others][:depth][::-1]):
        model = make_model(sizes, acts, seed=depth)
        x = np.random.default_rng(1).normal(0.0, 1.0, 11)
        for layer in range(1, depth + 1):
            S = fx.saliency(model, x, layer)
            assert S.shape == (sizes[layer], 11)
            assert S.dtype == np.float64
            assert rel_err(S, finite_differences(model, x, layer)) <= 1e-6
            for j in range(sizes[layer]):
                np.testing.assert_allclose(fx.saliency(model, x, layer, unit=j), S[j], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(fx.saliency(model, x, layer, unit=[2, 0]), S[[2, 0]], rtol=1e-12, atol=1e-15)


@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    acts=st.lists(st.sampled_from(NAMES), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 3),
)
def test_saliency_matches_finite_differences_any_shape(sizes, acts, seed, batch):
    """Widths from 1 (a one-unit softmax is constant) to 6, any activation at any depth."""
    model = make_model(sizes, acts[: len(sizes) - 1], seed=seed)
    X = np.random.default_rng(seed).normal(size=(batch, sizes[0]))
    for layer in range(1, len(sizes)):
        S = fx.saliency(model, X, layer, keepdims=True)
        assert S.shape == (batch, sizes[layer], sizes[0])
        for i in range(batch):
            fd = finite_differences(model, X[i], layer)
            assert np.max(np.abs(S[i] - fd)) <= 1e-6 * max(np.max(np.abs(fd)), 1e-3)


def test_saliency_batch_and_keepdims():
    model = make_model([13, 6, 4], ["tanh", "softmax"])
    X = np.random.default_rng(2).normal(size=(5, 13))
    S = fx.saliency(model, X, 2)
    assert S.shape == (5, 4, 13)
    for i in range(5):
        np.testing.assert_allclose(S[i], fx.saliency(model, X[i], 2), rtol=1e-12, atol=1e-15)
        assert rel_err(S[i], finite_differences(model, X[i], 2)) <= 1e-6
    assert fx.saliency(model, X[:1], 2).shape == (4, 13)  # (1, IN) is one example (DESIGN.md)
    assert fx.saliency(model, X[:1], 2, keepdims=True).shape == (1, 4, 13)
    assert fx.saliency(model, X, 2, unit=1).shape == (5, 13)
    np.testing.assert_array_equal(fx.saliency(model, X, -1), S)  # -1 is the output layer
    np.testing.assert_array_equal(fx.saliency(model, X, 2, abs=True), np.abs(S))


def test_saliency_of_a_standardising_model_is_wrt_raw_pixels():
    rng = np.random.default_rng(20)
    X = rng.random((40, 12)) * np.linspace(0.5, 3.0, 12) + np.linspace(-1, 1, 12)
    y = (X[:, 0] > X[:, 1]).astype(int)
    model = ff.Sequential([ff.Dense(6, "tanh"), ff.Dense(2, "softmax")], input_dim=12, dtype="float64",
                          backend="numpy", seed=0, normalize="standard")
    model.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=1e-2)
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    x = X[3]
    E = np.eye(12) * 1e-6
    fd = ((model.forward_all(x + E)[2] - model.forward_all(x - E)[2]) / 2e-6).T
    assert rel_err(fx.saliency(model, x, 2), fd) <= 1e-6
    A, gap = fx.integrated_gradients(model, x, 2, unit=1, return_gap=True)
    a = model.predict(np.stack([x, np.zeros(12)]))[:, 1]
    assert A.sum() == pytest.approx(a[0] - a[1], rel=1e-2) and gap < 0.01


def test_face_task_objects_and_bare_layers_work_too():
    model = make_model([10, 5, 3], ["relu", "sigmoid"])
    x = np.random.default_rng(21).normal(size=10)
    np.testing.assert_allclose(fx.saliency(stand_in(model), x, 2), fx.saliency(model, x, 2), rtol=1e-13)
    np.testing.assert_allclose(fx.unit_images(stand_in(model), 2, (2, 5)), fx.unit_images(model, 2, (2, 5)))


def face_task_with_front_end(normalize=True, whiten=True, seed=22):
    """A face-task-like object: .front_end (per-image normalisation, whitening PCA) + .model."""
    rng = np.random.default_rng(seed)
    D, K = 20, 6
    net = make_model([K if whiten else D, 5, 3], ["tanh", "softmax"], seed=seed)
    pca = None
    if whiten:
        C = np.linalg.qr(rng.normal(size=(D, K)))[0]
        pca = types.SimpleNamespace(mean=rng.normal(0, 0.1, D), components=C, scale=rng.uniform(0.5, 2.0, K))
    fe = types.SimpleNamespace(normalize=normalize, pca=pca, shape=(4, 5))

    def pipeline(X):
        X = np.atleast_2d(X).astype(np.float64)
        if normalize:
            c = X - X.mean(axis=1, keepdims=True)
            X = c / (np.sqrt((c * c).mean(axis=1, keepdims=True)) + 1e-6)
        if whiten:
            X = ((X - pca.mean) @ pca.components) * pca.scale
        return X

    return types.SimpleNamespace(front_end=fe, model=net), pipeline


@pytest.mark.parametrize("normalize, whiten", [(True, True), (True, False), (False, True)])
def test_face_task_front_end_is_chained_to_raw_pixels(normalize, whiten):
    task, pipeline = face_task_with_front_end(normalize, whiten)
    x = np.random.default_rng(23).random(20)
    E = np.eye(20) * 1e-6
    for layer in (1, 2):
        def f(X, layer=layer):
            return forward(task.model, pipeline(X), layer)
        fd = ((f(x + E) - f(x - E)) / 2e-6).T
        S = fx.saliency(task, x, layer)
        assert S.shape == (task.model.layers[layer - 1].units, 20)
        assert rel_err(S, fd) <= 1e-6
    A, gap = fx.integrated_gradients(task, x, 2, baseline=0.3 * x, return_gap=True)
    want = f(x)[0] - f(0.3 * x)[0]
    np.testing.assert_allclose(A.sum(axis=1), want, rtol=1e-2, atol=1e-9)
    U = fx.unit_images(task, 1)  # shape (4, 5) read from the front end
    assert U.shape == (5, 4, 5)
    W1 = task.model.layers[0].W
    lin = (task.front_end.pca.components * task.front_end.pca.scale) @ W1 if whiten else W1
    np.testing.assert_allclose(U.reshape(5, 20), lin.T, rtol=1e-12)


def test_most_sensitive_units_rank_by_gradient_norm():
    model = make_model([14, 9, 4], ["sigmoid", "softmax"], seed=24)
    x = np.random.default_rng(25).normal(size=14)
    units, norms = fx.most_sensitive_units(model, x, 1, k=4)
    all_norms = np.linalg.norm(fx.saliency(model, x, 1), axis=1)
    np.testing.assert_array_equal(units, np.argsort(-all_norms, kind="stable")[:4])
    np.testing.assert_allclose(norms, all_norms[units])
    assert np.all(np.diff(norms) <= 0)
    assert fx.most_sensitive_units(model, x, 2, k=10)[0].shape == (4,)  # k capped by the width
    with pytest.raises(ValueError, match="k must be"):
        fx.most_sensitive_units(model, x, 1, k=0)
    with pytest.raises(ValueError, match="one example"):
        fx.most_sensitive_units(model, np.zeros((2, 14)), 1)


def test_saliency_chunks_large_batches(monkeypatch):
    import importlib

    mod = importlib.import_module("fastface.explain.gradients")

    model = make_model([9, 8, 3], ["sigmoid", "relu"])
    X = np.random.default_rng(3).normal(size=(7, 9))
    whole = fx.saliency(model, X, 2)
    monkeypatch.setattr(mod, "CHUNK_ELEMENTS", 40)  # forces chunks of a few examples
    np.testing.assert_allclose(fx.saliency(model, X, 2), whole, rtol=1e-13, atol=1e-15)


def test_saliency_strided_and_integer_inputs():
    model = make_model([10, 4], ["sigmoid"])
    big = np.random.default_rng(4).normal(size=(3, 20))
    x = big[1, ::2]  # strided view
    np.testing.assert_allclose(fx.saliency(model, x, 1), fx.saliency(model, x.copy(), 1))
    xi = np.arange(10, dtype=np.int32)
    np.testing.assert_allclose(fx.saliency(model, xi, 1), fx.saliency(model, xi.astype(float), 1))


@pytest.mark.parametrize("backend", ff.available_backends())
def test_saliency_same_on_every_backend(backend):
    sizes = [37, 17, 9, 5]  # primes-ish, non-square
    model64 = make_model(sizes, ["tanh", "relu", "softmax"], seed=5)
    model32 = make_model(sizes, ["tanh", "relu", "softmax"], seed=5, dtype=np.float32)
    X = np.random.default_rng(6).normal(size=(3, 37))
    for layer in (1, 2, 3):
        ref = fx.saliency(model64, X, layer, backend="numpy")
        got = fx.saliency(model32, X.astype(np.float32), layer, backend=backend)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5 * np.abs(ref).max())


def test_saliency_against_torch_autograd():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch cross-check is optional")
    model = make_model([16, 9, 6, 4], ["sigmoid", "tanh", "softmax"], seed=7)
    x = np.random.default_rng(8).normal(size=16)
    torch_act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
                 "linear": lambda z: z, "softmax": lambda z: torch.softmax(z, dim=-1)}

    def f(xt, layer):
        a = xt
        for L in model.layers[:layer]:
            a = torch_act[L.activation](a @ torch.from_numpy(L.W) + torch.from_numpy(L.b))
        return a

    for layer in (1, 2, 3):
        J = torch.func.jacrev(lambda v: f(v, layer))(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(fx.saliency(model, x, layer), J, rtol=1e-10, atol=1e-13)


# --- unit images ---------------------------------------------------------------------------------
def test_unit_images_are_projected_weights():
    model = make_model([12, 5, 4, 3], ["relu", "sigmoid", "softmax"])
    W1, W2, W3 = (L.W for L in model.layers)
    U1 = fx.unit_images(model, 1, (3, 4))
    U2 = fx.unit_images(model, 2, (3, 4))
    U3 = fx.unit_images(model, layer=3, shape=(4, 3))
    assert U1.shape == (5, 3, 4) and U2.shape == (4, 3, 4) and U3.shape == (3, 4, 3)
    for j in range(5):
        np.testing.assert_array_equal(U1[j], W1[:, j].reshape(3, 4))
    P2 = W1 @ W2
    for j in range(4):
        np.testing.assert_allclose(U2[j], P2[:, j].reshape(3, 4), rtol=1e-12)
    np.testing.assert_allclose(U3, (W1 @ W2 @ W3).T.reshape(3, 4, 3), rtol=1e-12)
    np.testing.assert_allclose(fx.unit_images(model, 2, (3, 4), units=[3, 1]), U2[[3, 1]])


def test_unit_images_shape_from_meta_or_square():
    model = make_model([16, 3], ["sigmoid"])
    assert fx.unit_images(model, 1).shape == (3, 4, 4)  # square
    model = make_model([12, 3], ["sigmoid"])
    with pytest.raises(ValueError, match="shape"):
        fx.unit_images(model, 1)
    model.meta["image_shape"] = [2, 6]
    assert fx.unit_images(model, 1).shape == (3, 2, 6)
    with pytest.raises(ValueError, match="H \\* W = 12"):
        fx.unit_images(model, 1, (5, 5))


def test_maximize_unit_layer1_is_the_weight_direction():
    model = make_model([20, 6, 2], ["sigmoid", "softmax"])
    w = model.layers[0].W[:, 4]
    x, value = fx.maximize_unit(model, 1, 4, norm=2.0, steps=300, return_activation=True, shape=(4, 5))
    assert x.shape == (4, 5)
    assert np.linalg.norm(x) <= 2.0 + 1e-9
    cos = x.ravel() @ w / (np.linalg.norm(x) * np.linalg.norm(w))
    assert cos > 0.999
    best = ACTIVATIONS["sigmoid"](np.array([[2.0 * np.linalg.norm(w) + model.layers[0].b[4]]]))[0, 0]
    assert value == pytest.approx(best, rel=1e-4)
    # a deeper unit: the found input excites the unit more than random inputs of the same norm
    x2, v2 = fx.maximize_unit(model, 2, 1, norm=2.0, return_activation=True, shape=(4, 5))
    R = np.random.default_rng(9).normal(size=(200, 20))
    R *= 2.0 / np.linalg.norm(R, axis=1, keepdims=True)
    assert v2 >= forward(model, R, 2)[:, 1].max()


# --- SmoothGrad, IG, occlusion ---------------------------------------------------------------------
def test_smoothgrad_is_the_mean_saliency_of_noisy_copies():
    model = make_model([10, 6, 3], ["tanh", "sigmoid"])
    x = np.random.default_rng(10).normal(size=10)
    np.testing.assert_allclose(fx.smoothgrad(model, x, 2, noise=0.0, samples=3), fx.saliency(model, x, 2))
    got = fx.smoothgrad(model, x, 2, unit=1, samples=9, noise=0.2, seed=4)
    rng = np.random.default_rng(4)
    noisy = x + rng.normal(0.0, 0.2 * (x.max() - x.min()), size=(9, 10))
    want = np.mean([fx.saliency(model, v, 2, unit=1) for v in noisy], axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("acts", [("sigmoid", "softmax"), ("tanh", "sigmoid", "linear"), ("relu", "relu", "sigmoid")])
def test_integrated_gradients_completeness(acts):
    sizes = [30, 12, 8, 4][: len(acts) + 1]
    model = make_model(sizes, list(acts), seed=11)
    x = np.random.default_rng(12).random(30)
    A, gap = fx.integrated_gradients(model, x, len(acts), return_gap=True)
    delta = forward(model, x, len(acts))[0] - forward(model, np.zeros(30), len(acts))[0]
    np.testing.assert_allclose(A.sum(axis=1), delta, rtol=1e-2, atol=1e-9)
    assert gap.shape == (sizes[-1],) and gap.max() < 0.01
    # an int unit gives one map and one gap; a baseline image is honoured
    base = np.full(30, 0.5)
    a1, g1 = fx.integrated_gradients(model, x, 1, unit=2, baseline=base, return_gap=True)
    d1 = forward(model, x, 1)[0, 2] - forward(model, base, 1)[0, 2]
    assert a1.shape == (30,) and isinstance(g1, float)
    assert a1.sum() == pytest.approx(d1, rel=1e-2, abs=1e-9)


def test_integrated_gradients_quadratures_agree_and_linear_is_exact():
    model = make_model([8, 3], ["linear"])
    x = np.random.default_rng(13).normal(size=8)
    for method in fx.QUADRATURES:
        A = fx.integrated_gradients(model, x, 1, steps=4, method=method)
        np.testing.assert_allclose(A, model.layers[0].W.T * x, rtol=1e-12)  # x * w exactly
    smooth = make_model([8, 5, 2], ["sigmoid", "tanh"])
    gl = fx.integrated_gradients(smooth, x, 2, steps=64)
    tr = fx.integrated_gradients(smooth, x, 2, steps=2000, method="trapezoid")
    np.testing.assert_allclose(gl, tr, rtol=1e-4, atol=1e-8)


def test_integrated_gradients_refines_relu_paths_until_complete():
    model = make_model([30, 12, 8, 4], ["relu", "relu", "sigmoid"], seed=0)
    x = 3 * np.random.default_rng(12).random(30)
    with pytest.warns(RuntimeWarning, match="completeness gap"):
        _, g64 = fx.integrated_gradients(model, x, 3, steps=64, return_gap=True)
    assert g64.max() > 0.01  # 64 fixed nodes are not enough on this piecewise-linear path
    A, gap = fx.integrated_gradients(model, x, 3, return_gap=True)  # adaptive default
    assert gap.max() <= 0.01
    delta = forward(model, x, 3)[0] - forward(model, np.zeros(30), 3)[0]
    np.testing.assert_allclose(A.sum(axis=1), delta, rtol=0.01, atol=0.01 * np.abs(delta).max())


def test_integrated_gradients_warns_when_steps_too_few():
    model = make_model([20, 10, 3], ["relu", "sigmoid"], seed=14)
    x = 3 * np.random.default_rng(15).random(20)
    with pytest.warns(RuntimeWarning, match="completeness gap"):
        fx.integrated_gradients(model, x, 2, steps=1)


def brute_force_occlusion(model, x, layer, H, W, window, stride, baseline):
    ref = forward(model, x, layer)[0]
    total = np.zeros((ref.shape[0], H, W))
    count = np.zeros((H, W))
    rows = sorted(set(range(0, H - window + 1, stride)) | {H - window})
    cols = sorted(set(range(0, W - window + 1, stride)) | {W - window})
    for r in rows:
        for c in cols:
            img = x.reshape(H, W).copy()
            img[r : r + window, c : c + window] = baseline
            total[:, r : r + window, c : c + window] += (ref - forward(model, img.ravel(), layer)[0])[:, None, None]
            count[r : r + window, c : c + window] += 1
    return (total / count).reshape(ref.shape[0], H * W)


def test_occlusion_matches_brute_force_and_blank_regions_change_nothing():
    model = make_model([63, 8, 3], ["sigmoid", "softmax"], seed=16)  # 7 x 9 image
    x = np.random.default_rng(17).random(63)
    got = fx.occlusion(model, x, 2, shape=(7, 9), window=3, stride=2, baseline=0.25, batch=5)
    np.testing.assert_allclose(got, brute_force_occlusion(model, x, 2, 7, 9, 3, 2, 0.25), rtol=1e-12, atol=1e-15)
    # a constant image occluded by its own value: nothing changes anywhere
    const = np.full(63, 0.7)
    assert not np.any(fx.occlusion(model, const, 2, shape=(7, 9), window=3, stride=1, baseline=0.7))
    # a blank (zero) image with one bright corner: far from the corner every window is blank
    img = np.zeros((7, 9))
    img[:2, :2] = 1.0
    occ = fx.occlusion(model, img.ravel(), 2, unit=1, shape=(7, 9), window=3, stride=1).reshape(7, 9)
    assert np.all(occ[4:, :] == 0) and np.all(occ[:, 4:] == 0)
    assert np.any(occ[:2, :2] != 0)


# --- errors ------------------------------------------------------------------------------------
def test_bad_inputs_say_what_was_expected():
    model = make_model([16, 4, 2], ["sigmoid", "softmax"])
    x = np.zeros(16)
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        fx.saliency(model, x, 0)
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        fx.saliency(model, x, 3)
    with pytest.raises(TypeError, match="layer must be an integer"):
        fx.saliency(model, x, 1.5)
    with pytest.raises(ValueError, match="4 units, numbered 0..3; got unit 4"):
        fx.saliency(model, x, 1, unit=4)
    with pytest.raises(TypeError, match="unit must be None"):
        fx.saliency(model, x, 1, unit=True)
    with pytest.raises(ValueError, match=r"\(IN,\) = \(16,\)"):
        fx.saliency(model, np.zeros(15), 1)
    with pytest.raises(ValueError, match="flatten images"):
        fx.saliency(model, np.zeros((4, 4)), 1)
    with pytest.raises(ValueError, match="NaN or inf"):
        fx.saliency(model, np.full(16, np.nan), 1)
    with pytest.raises(TypeError, match="real numbers"):
        fx.saliency(model, np.array(["a"] * 16), 1)
    with pytest.raises(TypeError, match="expected a fastface model"):
        fx.saliency(object(), x, 1)
    with pytest.raises(ValueError, match="one example at a time"):
        fx.integrated_gradients(model, np.zeros((2, 16)), 1)
    with pytest.raises(ValueError, match="method must be one of"):
        fx.integrated_gradients(model, x, 1, method="simpson")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        fx.integrated_gradients(model, x, 1, steps=0)
    with pytest.raises(ValueError, match="samples must be"):
        fx.smoothgrad(model, x, 1, samples=0)
    with pytest.raises(ValueError, match="larger than the image"):
        fx.occlusion(model, x, 1, window=5)
    with pytest.raises(TypeError, match="unit must be one integer"):
        fx.maximize_unit(model, 1, None)
    with pytest.raises(ValueError, match="norm must be"):
        fx.maximize_unit(model, 1, 0, norm=-1)
    with pytest.raises(ValueError, match="unknown backend"):
        fx.saliency(model, x, 1, backend="fortran")
    empty = types.SimpleNamespace(layers=[])
    with pytest.raises(ValueError, match="no layers"):
        fx.saliency(empty, x, 1)
    unbuilt = ff.Sequential([ff.Dense(3, "relu")])
    with pytest.raises(ValueError, match="no weights yet"):
        fx.saliency(unbuilt, x, 1)
