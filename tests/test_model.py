"""fastface.model: the course labs on real data, the two training paths, hand-checked
arithmetic, determinism, divergence, the input contract, callbacks and every bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import fastface as ff
from fastface.callbacks import EarlyStopping
from fastface.model import InputRangeWarning, TrainingDivergedError


def course_net(out=1, act="sigmoid", hidden_act="sigmoid", **kw):
    return ff.Sequential([ff.Dense(25, hidden_act), ff.Dense(15, hidden_act), ff.Dense(out, act)], **kw)


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="the course labs use scikit-learn's digits")
    d = datasets.load_digits()
    return d.data / 16.0, d.target


def _split(X, y, seed=0):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


# --- the course labs ---------------------------------------------------------------------------
def test_lab_zero_vs_one_sigmoid_adam(digits):
    X, y = digits
    keep = y < 2
    Xtr, Xte, ytr, yte = _split(X[keep], y[keep])
    model = course_net(input_dim=64, seed=1)
    model.compile(loss="binary_crossentropy", optimizer="adam", learning_rate=1e-3)
    history = model.fit(Xtr, ytr, epochs=60, batch_size=32, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    acc = np.mean(model.predict_classes(Xte) == yte)
    assert acc >= 0.99, acc
    assert model.evaluate(Xte, yte)["accuracy"] == pytest.approx(acc)


def test_lab_ten_way_relu_softmax(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = _split(X, y)
    model = course_net(out=10, act="softmax", hidden_act="relu", seed=0)
    model.compile(loss="categorical_crossentropy", optimizer="adam", learning_rate=1e-3)
    history = model.fit(Xtr, ytr, epochs=80, batch_size=32, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    acc = np.mean(model.predict_classes(Xte) == yte)
    assert acc >= 0.95, acc
    p = model.predict(Xte)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


# --- one SGD step by hand ----------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_one_sgd_step_by_hand(fused):
    # x = [1, 2], W = [[0.5], [-0.25]], b = [0.1], y = 1, BCE on a sigmoid output, lr = 0.1:
    # z = 0.5 - 0.5 + 0.1 = 0.1; a = 1 / (1 + e^-0.1) = 0.52497918747894
    # loss = -ln a = 0.644396660073571; dz = a - y = -0.47502081252106
    # dW = x^T dz = [-0.47502081252106, -0.95004162504212]; db = dz
    # W' = W - 0.1 dW = [0.547502081252106, -0.154995837495788]; b' = 0.147502081252106
    model = ff.Sequential([ff.Dense(1, "sigmoid")], input_dim=2, dtype="float64")
    model.set_weights([np.array([[0.5], [-0.25]]), np.array([0.1])])
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1, fused=fused)
    assert model.uses_fused_path(1) is fused
    history = model.fit(np.array([[1.0, 2.0]]), np.array([1]), epochs=1, batch_size=1, verbose=0)
    assert history["loss"][0] == pytest.approx(0.644396660073571, rel=1e-12)
    assert history["accuracy"][0] == 1.0
    W, b = model.get_weights()
    np.testing.assert_allclose(W[:, 0], [0.547502081252106, -0.154995837495788], rtol=1e-13)
    np.testing.assert_allclose(b, [0.147502081252106], rtol=1e-13)


# --- fused path vs per-layer path ---------------------------------------------------------------
@pytest.mark.parametrize(
    "acts,loss,opt",
    [
        (("sigmoid", "sigmoid", "sigmoid"), "binary_crossentropy", dict(optimizer="sgd", learning_rate=0.5, momentum=0.9, nesterov=True)),
        (("relu", "tanh", "softmax"), "categorical_crossentropy", dict(optimizer="adam", learning_rate=1e-2, weight_decay=1e-3)),
        (("tanh", "relu", "linear"), "mse", dict(optimizer="sgd", learning_rate=0.05, momentum=0.5)),
        (("relu", "sigmoid", "sigmoid"), "mse", dict(optimizer="adam", learning_rate=1e-2)),
        (("linear", "relu", "softmax"), "mse", dict(optimizer="sgd", learning_rate=0.1)),
    ],
)
def test_fused_matches_per_layer(acts, loss, opt):
    rng = np.random.default_rng(3)
    N, IN, OUT = 53, 11, 3 if acts[-1] != "sigmoid" or loss == "mse" else 1
    X = rng.normal(size=(N, IN))
    if loss == "categorical_crossentropy":
        y = rng.integers(0, OUT, size=N)
    elif loss == "binary_crossentropy":
        y = (X[:, 0] + X[:, 1] > 0).astype(float)
    else:
        y = rng.random((N, OUT))
    weights = {}
    for fused in (True, False):
        model = ff.Sequential([ff.Dense(7, acts[0]), ff.Dense(5, acts[1]), ff.Dense(OUT, acts[2])], dtype="float64", seed=5)
        model.compile(loss=loss, fused=fused, **opt)
        h = model.fit(X, y, epochs=4, batch_size=8, verbose=0, sample_weight=np.linspace(0.5, 1.5, N))
        weights[fused] = (model.get_weights(), h.history)
    for a, b in zip(weights[True][0], weights[False][0]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    for key in weights[True][1]:
        np.testing.assert_allclose(weights[True][1][key], weights[False][1][key], rtol=1e-9)


def test_fused_matches_per_layer_float32_course_net():
    rng = np.random.default_rng(0)
    X = rng.random((200, 400), dtype=np.float32)
    y = (X[:, :200].sum(axis=1) > 100).astype(np.float32)
    out = []
    for fused in (True, False):
        model = course_net(input_dim=400, seed=0)
        model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1, fused=fused)
        model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        out.append(model.get_weights())
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_matmul_every_route(dtype):
    """The fused path's products (fastface._fused._matmul) in the layouts it uses: x @ W^T.T,
    dz^T @ x, dz @ W^T; BLAS below OWN_GEMM_MIN_FLOPS or OWN_GEMM_MIN_ROWS rows, the serial
    micro-kernel up to OWN_GEMM_FLOPS, BLAS above. The kernel's route is chosen from the
    layout while compiling: a one-input layer (IN = 1) makes W^T.T an F-ordered B with unit
    column stride, taken by the dot route (6 rows) and by the copy route (128 rows)."""
    from fastface import _fused

    rng = np.random.default_rng(3)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for N, IN, OUT in ((1, 400, 25), (3, 400, 25), (32, 25, 15), (32, 15, 1), (32, 400, 25), (64, 1024, 64),
                       (6, 1, 2048), (128, 1, 64)):
        x = rng.standard_normal((N, IN)).astype(dtype)
        WT = rng.standard_normal((OUT, IN)).astype(dtype)
        dz = rng.standard_normal((N, OUT)).astype(dtype)
        for A, B in ((x, WT.T), (dz.T, x), (dz, WT)):
            out = np.full((A.shape[0], B.shape[1]), np.nan, dtype=dtype)
            _fused._matmul(A, B, out)
            np.testing.assert_allclose(out, A.astype(np.float64) @ B.astype(np.float64), **tol,
                                       err_msg=f"{N}x{IN}x{OUT} {A.shape} @ {B.shape}")
    assert 64 * 1024 * 64 > _fused.OWN_GEMM_FLOPS > 32 * 400 * 25 >= _fused.OWN_GEMM_MIN_FLOPS > 32 * 15 * 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_plain_sgd_step_checks_like_the_optimizer_update(dtype):
    """fastface._fused.sgd_step (plain SGD, the finite checks inside its own pass, the new
    weights written over the gradient) against all_finite + update: the same weights, and
    the same outcome when a gradient is NaN (theta untouched: the caller keeps it) or an
    update overflows (that weight keeps its value, the others move)."""
    from fastface import _fused

    model = course_net(input_dim=400, dtype=dtype)
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1, weight_decay=1e-3)
    opt = model.optimizer
    opt.build(model.theta.size, model.dtype)
    table, hyper = model._table(32), opt.hyper(model.dtype)
    rng = np.random.default_rng(0)
    big = np.finfo(dtype).max
    for case in ("finite", "nan", "overflow"):
        g = (rng.random(model.theta.size) - 0.5).astype(dtype)
        theta = model.theta.copy()
        if case == "nan":
            g[7] = np.nan
        elif case == "overflow":
            theta[3], g[3] = big / 2, -big  # p - lr * g = 0.6 * max: fine; at 30: overflow
            hyper[_fused.H_LR] = 30
        ref, grad = theta.copy(), g.copy()
        finite = _fused.all_finite(grad)
        ok = finite and _fused.update(ref, grad, opt.s1, opt.s2, table, 0, hyper, opt.t)
        before, got = theta.copy(), g.copy()
        status = _fused.sgd_step(before, got, table, hyper)
        assert status == (0 if ok else 1 if not finite else 2), case
        np.testing.assert_array_equal(before, theta)  # read, never written
        if finite:
            np.testing.assert_array_equal(got, ref)
        if case == "overflow":
            assert got[3] == theta[3] and np.all(np.isfinite(got)) and not np.array_equal(got, theta)
        hyper[_fused.H_LR] = 0.1


@pytest.mark.parametrize("bad_batch", [0, 1, 2, 5])
def test_fused_epoch_stopped_by_a_nonfinite_batch_keeps_the_weights_before_it(bad_batch):
    """Plain SGD swaps the parameter and gradient buffers after every batch: whether the
    epoch stops after an even or an odd number of updates, theta ends as the weights of the
    last good batch, bit for bit those of an epoch over the good batches alone."""
    from fastface import _fused

    B, N, IN = 4, 24, 6
    rng = np.random.default_rng(bad_batch)
    X = rng.random((N, IN)).astype(np.float32)
    Y = (rng.random((N, 1)) > 0.5).astype(np.float32)
    perm = rng.permutation(N)
    model = ff.Sequential([ff.Dense(5, "sigmoid"), ff.Dense(1, "sigmoid")], input_dim=IN, seed=0)
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.5)
    model.optimizer.build(model.theta.size, model.dtype)
    table = model._table(B)

    def epoch(X, Y, perm):
        theta, opt = model.theta.copy(), model.optimizer
        stats = np.zeros(4)
        status = _fused.train_epoch(
            X, Y, np.ones(len(X), np.float32), perm, theta, np.zeros_like(theta), opt.s1, opt.s2, table, 0, 1, 0,
            opt.hyper(model.dtype), opt.t.copy(), model._workspace(B), model._workspace(B),
            np.empty((B, IN), np.float32), stats,
        )
        return status, theta, stats

    def reference(batches):  # the same steps, one helper call at a time, no buffer swapped
        theta, grad, opt = model.theta.copy(), np.zeros_like(model.theta), model.optimizer
        A, D, xb, stats = model._workspace(B), model._workspace(B), np.empty((B, IN), np.float32), np.zeros(4)
        hyper, t, ones = opt.hyper(model.dtype), opt.t.copy(), np.ones(N, np.float32)
        for start in range(0, batches * B, B):
            _fused.gather(X, perm, start, xb)
            _fused._forward(xb, B, theta, table, A, True)
            _fused._output_loss(A, D, Y, ones, perm, start, B, 1, table[-1, 4], table[-1, 5], 0, 1, stats)
            _fused._backward(xb, B, theta, grad, table, A, D)
            assert _fused.update(theta, grad, opt.s1, opt.s2, table, 0, hyper, t)
        return theta

    bad = Y.copy()
    bad[perm[bad_batch * B + 1]] = np.nan  # the loss of that batch is NaN
    status, theta, stats = epoch(X, bad, perm)
    assert status == 1 and stats[3] == bad_batch
    np.testing.assert_array_equal(theta, reference(bad_batch))
    np.testing.assert_array_equal(epoch(X, Y, perm)[1], reference(N // B))  # an even number of updates
    assert not np.array_equal(theta, reference(N // B))


def test_fused_entry_points_refuse_strided_buffers():
    """The fused entry points view their buffers without reference counting (carray), which
    needs C-contiguous memory: a strided buffer is refused, never read as another layout."""
    from fastface import _fused

    model = course_net(input_dim=400)
    x = np.zeros((1, 400), dtype=np.float32)
    A = model._workspace(1)
    lo, hi = _fused.predict_one(x, model.theta, model._table(1), A)
    assert lo == hi == 0.0
    with pytest.raises(ValueError, match="C-contiguous"):
        _fused.predict_one(x, np.repeat(model.theta, 2)[::2], model._table(1), A)
    with pytest.raises(ValueError, match="C-contiguous"):
        _fused.predict_one(x, model.theta, model._table(1), np.repeat(A, 2)[::2])


def test_auto_path_choice():
    small = course_net(input_dim=400)
    small.compile(loss="binary_crossentropy")
    assert small.uses_fused_path(32)
    wide = ff.Sequential([ff.Dense(1024, "relu"), ff.Dense(512, "relu"), ff.Dense(40, "softmax")], input_dim=4096)
    wide.compile(loss="categorical_crossentropy")
    assert not wide.uses_fused_path(128)
    forced = course_net(input_dim=400, backend="numpy")
    forced.compile(loss="binary_crossentropy")
    assert not forced.uses_fused_path(32)


# --- determinism, repeated fit, predict ----------------------------------------------------------
def _train(seed, epochs=3, **fit):
    rng = np.random.default_rng(7)
    X = rng.random((90, 20), dtype=np.float32)
    y = rng.integers(0, 4, size=90)
    model = ff.Sequential([ff.Dense(9, "relu"), ff.Dense(4, "softmax")], seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    model.fit(X, y, epochs=epochs, batch_size=16, verbose=0, **fit)
    return model, X, y


def test_same_seed_bit_identical_and_seed_matters():
    a, _, _ = _train(4)
    b, _, _ = _train(4)
    c, _, _ = _train(5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_repeated_fit_continues_like_one_long_fit():
    once, X, y = _train(2, epochs=4)
    twice, _, _ = _train(2, epochs=2)
    twice.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert twice.optimizer.iterations == once.optimizer.iterations == 4 * math.ceil(90 / 16)
    for a, b in zip(once.get_weights(), twice.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_predict_paths_agree_and_single_example():
    model, X, _ = _train(1)
    batch = model.predict(X)
    by_layers = model.forward_all(X)
    assert len(by_layers) == 3 and by_layers[0].shape == X.shape
    np.testing.assert_allclose(batch, by_layers[-1], rtol=1e-5, atol=1e-7)
    for i in (0, 17, 89):
        one = model.predict(X[i])
        assert one.shape == (1, 4)
        np.testing.assert_allclose(one[0], batch[i], rtol=1e-5, atol=1e-7)
        again = model.predict(X[i : i + 1])
        assert again is not one and np.array_equal(again, one)
    assert model.predict(X[0].astype(np.float64)).dtype == np.float32
    images = X.reshape(90, 4, 5)
    np.testing.assert_allclose(model.predict(images), batch, rtol=1e-5, atol=1e-7)


def test_predict_classes_threshold_rule():
    model = ff.Sequential([ff.Dense(1, "sigmoid")], input_dim=1, dtype="float64")
    model.set_weights([np.array([[1.0]]), np.array([0.0])])
    x = np.array([[-1.0], [0.0], [1.0]])  # p = 0.269, 0.5, 0.731
    np.testing.assert_array_equal(model.predict_classes(x), [0, 1, 1])  # p >= 0.5
    np.testing.assert_array_equal(model.predict_classes(x, threshold=0.7311), [0, 0, 0])  # sigmoid(1) = 0.7310586
    np.testing.assert_array_equal(model.predict_classes(x, threshold=0.0), [1, 1, 1])
    with pytest.raises(ValueError, match="threshold"):
        model.predict_classes(x, threshold=1.5)


def test_validation_split_history_and_early_stopping():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = rng.integers(0, 2, size=120)  # noise: validation loss soon stops improving
    model = ff.Sequential([ff.Dense(32, "relu"), ff.Dense(1, "sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam", learning_rate=0.05)
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(X, y, epochs=200, batch_size=16, validation_split=0.25, verbose=0, callbacks=[stop])
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert stop.stopped_epoch is not None and len(history["loss"]) == stop.stopped_epoch + 1 < 200
    best = int(np.argmin(history["val_loss"]))
    assert stop.best_epoch == best
    assert model.evaluate(X[90:], y[90:])["loss"] == pytest.approx(history["val_loss"][best], rel=1e-5)


def test_validation_data_and_class_weight():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4))
    y = (X[:, 0] > 1.0).astype(int)  # imbalanced
    out = {}
    for cw in (None, {0: 1.0, 1: 10.0}):
        model = ff.Sequential([ff.Dense(1, "sigmoid")], dtype="float64", seed=0)
        model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.5)
        h = model.fit(X, y, epochs=5, batch_size=10, validation_data=(X[:20], y[:20]), class_weight=cw, verbose=0)
        assert "val_loss" in h
        out[cw is None] = model.predict(X).mean()
    assert out[False] > out[True]  # up-weighting the positives raises the predicted probabilities


def test_progress_output(capsys):
    model, X, y = _train(0, epochs=1)
    model.fit(X, y, epochs=2, batch_size=16, verbose=2)
    err = capsys.readouterr().err
    assert "Epoch 2/2" in err and "loss:" in err and "samples/s" in err
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_summary_and_repr():
    model = course_net(input_dim=400)
    text = model.summary(print_fn=None)
    assert "10025" in text and "390" in text and "16" in text and "10431" in text
    assert repr(model).startswith("Sequential([Dense(25, activation='sigmoid')")
    assert model.layers[0].W.shape == (400, 25) and model.layers[2].b.shape == (1,)
    assert model.layers[1].activation == "sigmoid"


def test_layer_weight_assignment_writes_through():
    model = ff.Sequential([ff.Dense(2, "linear")], input_dim=3, dtype="float64")
    model.layers[0].W = np.ones((3, 2))
    model.layers[0].b = [1.0, -1.0]
    np.testing.assert_array_equal(model.predict(np.array([[1.0, 2.0, 3.0]])), [[7.0, 5.0]])
    with pytest.raises(ValueError, match="shape"):
        model.layers[0].W = np.ones((2, 3))


# --- divergence -------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_divergence_names_epoch_and_batch_and_keeps_finite_weights(fused):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)) * 1e3
    y = rng.normal(size=(64, 1)) * 1e3
    model = ff.Sequential([ff.Dense(8, "linear"), ff.Dense(1, "linear")], seed=0)
    model.compile(loss="mse", optimizer="sgd", learning_rate=10.0, fused=fused)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, batch \d+") as info:
        model.fit(X, y, epochs=50, batch_size=8, verbose=0)
    assert info.value.epoch is not None and info.value.batch is not None
    assert isinstance(info.value, ValueError)  # the CLI reports it as a one-line error
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_refused_before_training(bad):
    model = ff.Sequential([ff.Dense(1, "sigmoid")], input_dim=3, seed=0)
    model.compile(loss="binary_crossentropy")
    before = model.get_weights()
    X = np.ones((4, 3))
    X[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(X, np.ones(4), verbose=0)
    y = np.ones(4)
    y[0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(np.ones((4, 3)), y, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(X[2])


# --- input contract ---------------------------------------------------------------------------
def test_input_range_warning_once_and_no_rescaling():
    rng = np.random.default_rng(0)
    X = rng.random((40, 16))
    model = ff.Sequential([ff.Dense(1, "sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy")
    model.fit(X, (X[:, 0] > 0.5).astype(int), epochs=1, verbose=0)
    assert model.input_contract["range"] == [pytest.approx(X.min()), pytest.approx(X.max())]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X[:5])  # same range: silent
    pixels = (X * 255).astype(np.float32)
    with pytest.warns(InputRangeWarning, match="divide by 255"):
        p255 = model.predict(pixels[:3])
    manual = model.forward_all(pixels[:3])[-1]
    np.testing.assert_allclose(p255, manual, rtol=1e-5, atol=1e-7)  # never rescaled behind the user's back
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(pixels[:3])  # warned once only
        model.predict(pixels[0])


def test_input_range_warning_on_single_example_path():
    model = ff.Sequential([ff.Dense(2, "softmax")], seed=0)
    model.compile(loss="categorical_crossentropy")
    X = np.random.default_rng(0).integers(0, 256, size=(30, 8)).astype(np.float32)
    model.fit(X, np.arange(30) % 2, epochs=1, verbose=0)
    model.predict(X[0])  # prepares the one-example path
    with pytest.warns(InputRangeWarning, match="multiply by 255"):
        model.predict(X[1] / 255.0)


def test_standard_normalisation_fitted_once_and_applied():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=100.0, scale=20.0, size=(80, 5))
    y = (X[:, 0] > 100).astype(int)
    model = ff.Sequential([ff.Dense(1, "sigmoid")], dtype="float64", seed=0, normalize="standard")
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.5)
    model.fit(X, y, epochs=30, batch_size=8, verbose=0)
    xt = model.forward_all(X)[0]
    np.testing.assert_allclose(xt.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(xt.std(axis=0), 1, rtol=1e-9)
    np.testing.assert_allclose(model.transform_inputs(X), xt)
    np.testing.assert_allclose((X - model.input_mean) / model.input_std, xt, rtol=1e-12)
    assert ff.Sequential([ff.Dense(1)]).input_mean is None
    assert np.mean(model.predict_classes(X) == y) > 0.9
    mean_before = model._mean.copy()
    model.fit(X + 50, y, epochs=1, verbose=0)  # refit keeps the first normalisation
    np.testing.assert_array_equal(model._mean, mean_before)
    with pytest.warns(InputRangeWarning):
        model.predict(xt)  # data normalised twice is caught by the range check
    one = model.predict(X[3])
    np.testing.assert_allclose(one[0], model.predict(X)[3], rtol=1e-12)


# --- bad input --------------------------------------------------------------------------------
def test_bad_constructor_and_compile_arguments():
    with pytest.raises(ValueError, match="units"):
        ff.Dense(0)
    with pytest.raises(ValueError, match="activation"):
        ff.Dense(3, "swish")
    with pytest.raises(TypeError, match="dtype"):
        ff.Sequential([ff.Dense(1)], dtype="int32")
    with pytest.raises(ValueError, match="unknown backend"):
        ff.Sequential([ff.Dense(1)], backend="tpu")
    with pytest.raises(ValueError, match="seed"):
        ff.Sequential([ff.Dense(1)], seed=-1)
    with pytest.raises(TypeError, match="Dense"):
        ff.Sequential(["dense"])
    with pytest.raises(ValueError, match="normalize"):
        ff.Sequential([ff.Dense(1)], normalize="minmax")
    with pytest.raises(ValueError, match="input_dim"):
        ff.Sequential([ff.Dense(1)], input_dim=0)
    with pytest.raises(ValueError, match="no layers"):
        ff.Sequential([], input_dim=3)
    m = ff.Sequential([ff.Dense(1, "sigmoid")], input_dim=2)
    with pytest.raises(ValueError, match="unknown loss"):
        m.compile(loss="hinge")
    with pytest.raises(ValueError, match="unknown optimizer"):
        m.compile(optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate"):
        m.compile(optimizer="sgd", learning_rate=-1)
    with pytest.raises(ValueError, match="momentum"):
        m.compile(optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="fused"):
        m.compile(fused="yes")
    with pytest.raises(ValueError, match="compile"):
        m.fit(np.ones((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="not built"):
        ff.Sequential([ff.Dense(1)]).predict(np.ones((1, 2)))


def test_bad_fit_and_predict_arguments():
    m = ff.Sequential([ff.Dense(3, "softmax")], input_dim=2)
    m.compile(loss="categorical_crossentropy")
    X = np.ones((6, 2))
    y = np.array([0, 1, 2, 0, 1, 2])
    cases = [
        (dict(X=np.ones((6, 3)), y=y), ValueError, "expects 2"),
        (dict(X=np.ones((0, 2)), y=y[:0]), ValueError, "empty"),
        (dict(X=X.astype(complex), y=y), TypeError, "real numbers"),
        (dict(X=X, y=y[:5]), ValueError, "one entry per example"),
        (dict(X=X, y=y + 1), ValueError, "labels must lie in 0..2"),
        (dict(X=X, y=y + 0.5), ValueError, "integer class labels"),
        (dict(X=X, y=np.ones((6, 4))), ValueError, r"\(N, 3\)"),
        (dict(X=X, y=y, epochs=-1), ValueError, "epochs"),
        (dict(X=X, y=y, batch_size=0), ValueError, "batch_size"),
                (dict(X=X, y=y, validation_split=1.0), ValueError, "validation_split"),
        (dict(X=X, y=y, validation_split=0.1), ValueError, "leaves no validation"),
        (dict(X=X, y=y, validation_split=0.5, validation_data=(X, y)), ValueError, "not both"),
        (dict(X=X, y=y, validation_data=X), ValueError, "tuple"),
        (dict(X=X, y=y, sample_weight=np.ones(5)), ValueError, "sample_weight"),
        (dict(X=X, y=y, sample_weight=-np.ones(6)), ValueError, "sample_weight"),
        (dict(X=X, y=y, class_weight={0: 1.0, 1: 1.0}), ValueError, "no weight for label"),
        (dict(X=X, y=y, class_weight=[1, 2, 3]), TypeError, "class_weight"),
        (dict(X=X, y=y, callbacks=[print]), TypeError, "callbacks"),
        (dict(X=X, y=y, shuffle="yes"), TypeError, "shuffle"),
    ]
    for kwargs, exc, match in cases:
        with pytest.raises(exc, match=match):
            m.fit(**{"verbose": 0, **kwargs})
    with pytest.raises(ValueError, match="verbose"):
        m.fit(X, y, verbose=3)
    with pytest.raises(ValueError, match="expects 2"):
        m.predict(np.ones(5))
    with pytest.raises(TypeError, match="real numbers"):
        m.predict(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="monitor 'val_loss'"):
        m.fit(X, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])
    b = ff.Sequential([ff.Dense(1, "sigmoid")], input_dim=2)
    b.compile(loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"targets in \[0, 1\]"):
        b.fit(X, np.arange(6), verbose=0)
    with pytest.raises(ValueError, match="set_weights"):
        b.set_weights([np.ones((2, 1))])
    with pytest.raises(ValueError, match="shape"):
        b.set_weights([np.ones((3, 1)), np.ones(1)])


def test_progress_bar_verbose_1(capsys):
    model, X, y = _train(0, epochs=1)
    model.fit(X, y, epochs=3, batch_size=16, verbose=1)
    err = capsys.readouterr().err
    assert "loss" in err and ("3/3" in err or "Epoch 3/3" in err)


def test_per_layer_path_agrees_across_backends():
    rng = np.random.default_rng(2)
    X = rng.random((40, 9))
    y = rng.integers(0, 3, size=40)
    results = {}
    for name in [b for b in ff.available_backends() if b != "cuda"]:
        model = ff.Sequential([ff.Dense(6, "tanh"), ff.Dense(3, "softmax")], dtype="float64", backend=name, seed=0)
        model.compile(loss="categorical_crossentropy", optimizer="sgd", learning_rate=0.3, momentum=0.9, fused=False)
        model.fit(X, y, epochs=3, batch_size=8, verbose=0)
        assert not model.uses_fused_path(8)
        results[name] = model.get_weights()
    ref = results.pop("numpy")
    for name, weights in results.items():
        for a, b in zip(weights, ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


def test_copies_keep_layers_bound_to_the_trained_weights():
    """deepcopy/pickle (used by joblib and scikit-learn's clone paths) must not detach layer.W
    from the storage that fit and predict update."""
    import copy
    import pickle

    rng = np.random.default_rng(3)
    X = rng.random((40, 6)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.float32)
    model = ff.Sequential([ff.Dense(4, "tanh"), ff.Dense(1, "sigmoid")], input_dim=6, seed=1)
    model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.5)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.fit(X, y, epochs=3, batch_size=8, verbose=0)
        by_layers = clone.forward_all(X)[-1]
        np.testing.assert_allclose(clone.predict(X), by_layers, rtol=1e-5, atol=1e-6)
        assert not np.array_equal(clone.layers[0].W, model.layers[0].W)
