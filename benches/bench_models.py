"""pytest-benchmark entries for model training and prediction (not collected by the CI tests).

    python -m pytest benches/bench_models.py --benchmark-only
    python -m pytest benches/bench_models.py --benchmark-only -k course   # the course net only

Course net: 400-25-15-1 sigmoid, BCE, SGD, batch 32, n = 1000, float32 (one epoch per round),
on the fused path (serial, and on two workers), the per-layer path, PyTorch eager and scikit-learn (peers skip when absent).
Wide net: 4096-1024-512-40 relu/softmax, batch 128, n = 2048. One-example predict latency.
Every entry warms up first (compilation excluded) and checks its result.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastface as ff

COURSE = (400, 25, 15, 1)
WIDE = (4096, 1024, 512, 40)


def _data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    proj = rng.normal(size=(sizes[0], max(sizes[-1], 2))).astype(np.float32)
    s = (X - 0.5) @ proj
    y = (s[:, 0] > 0).astype(np.int64) if sizes[-1] == 1 else s.argmax(axis=1)
    return X, y


def _model(sizes, hidden, fused="auto"):
    out = "sigmoid" if sizes[-1] == 1 else "softmax"
    layers = [ff.Dense(u, hidden) for u in sizes[1:-1]] + [ff.Dense(sizes[-1], out)]
    model = ff.Sequential(layers, input_dim=sizes[0], seed=0)
    model.compile(loss="binary_crossentropy" if sizes[-1] == 1 else "categorical_crossentropy",
                  optimizer="sgd", learning_rate=0.1 if sizes[-1] == 1 else 0.01, fused=fused)
    return model


@pytest.fixture(scope="module")
def course_data():
    return _data(COURSE, 1000)


@pytest.mark.parametrize("fused, workers", [(True, 1), (True, 2), (False, 1)], ids=["fused", "fused-2-workers", "per-layer"])
def test_course_epoch_fastface(benchmark, course_data, fused, workers, monkeypatch):
    from fastface import _fused_pair

    monkeypatch.setattr(ff.config, "FUSED_WORKERS", workers)
    if workers == 2 and not _fused_pair.worthwhile(_model(COURSE, "sigmoid")._table(32), 32, 1000):
        pytest.skip("the two-worker fused epoch needs two cores and two Numba threads")
    X, y = course_data
    model = _model(COURSE, "sigmoid", fused)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)  # compile
    history = benchmark(model.fit, X, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history["loss"][0])


def test_course_epoch_torch(benchmark, course_data):
    torch = pytest.importorskip("torch", reason="PyTorch peer not installed")
    X, y = course_data
    net = torch.nn.Sequential(torch.nn.Linear(400, 25), torch.nn.Sigmoid(), torch.nn.Linear(25, 15),
                              torch.nn.Sigmoid(), torch.nn.Linear(15, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    lossf = torch.nn.BCEWithLogitsLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.float32)[:, None])

    def epoch():
        perm = torch.randperm(len(tX))
        for s in range(0, len(tX), 32):
            idx = perm[s : s + 32]
            opt.zero_grad()
            loss = lossf(net(tX[idx]), ty[idx])
            loss.backward()
            opt.step()
        return loss.item()

    epoch()
    assert np.isfinite(benchmark(epoch))


def test_course_epoch_sklearn(benchmark, course_data):
    nn = pytest.importorskip("sklearn.neural_network", reason="scikit-learn peer not installed")
    X, y = course_data
    clf = nn.MLPClassifier(hidden_layer_sizes=(25, 15), activation="logistic", solver="sgd",
                           learning_rate_init=0.1, momentum=0.0, batch_size=32, alpha=0.0, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    benchmark(clf.partial_fit, X, y)
    assert np.isfinite(clf.loss_)


def test_predict_one_example(benchmark, course_data):
    X, y = course_data
    model = _model(COURSE, "sigmoid")
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    x = X[0].copy()
    model.predict(x)
    out = benchmark(model.predict, x)
    np.testing.assert_allclose(out, model.forward_all(x[None])[-1], rtol=1e-4, atol=1e-6)


def test_wide_epoch_fastface(benchmark):
    X, y = _data(WIDE, 2048)
    model = _model(WIDE, "relu")
    model.fit(X[:256], y[:256], epochs=1, batch_size=128, verbose=0)
    history = benchmark.pedantic(model.fit, args=(X, y), kwargs=dict(epochs=1, batch_size=128, verbose=0),
                                 rounds=3, iterations=1)
    assert np.isfinite(history["loss"][0])
