"""The fused epoch on two workers (fastface._fused_pair) against the serial fused epoch.

The pair path must give the serial path's weights, history and divergence report; when the
second worker never comes it must change nothing and fit must go on serially.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastface as ff
from fastface import _fused, _fused_pair, config
from fastface.model import TrainingDivergedError

needs_two = pytest.mark.skipif(
    numba.get_num_threads() < 2 or not _fused_pair.AVAILABLE,
    reason="the pair path needs two Numba threads (NUMBA_NUM_THREADS >= 2) and POSIX sched_yield",
)


def course_net(out=1, act="sigmoid", hidden="sigmoid", **kw):
    return ff.Sequential([ff.Dense(25, hidden), ff.Dense(15, hidden), ff.Dense(out, act)], input_dim=400, seed=0, **kw)


@pytest.fixture
def pair_calls(monkeypatch):
    """Counts the epochs trained on two workers (and keeps the module's state per test)."""
    monkeypatch.setattr(_fused_pair, "failed", False)
    calls = []
    real = _fused_pair.train_epoch

    def spy(*args):
        status = real(*args)
        calls.append(status)
        return status

    monkeypatch.setattr(_fused_pair, "train_epoch", spy)
    return calls


def _faces_20x20(olivetti_npz):
    """Olivetti at the course's 20 x 20 = 400 pixels (3 x 3 block means of the centre 60 x 60)."""
    images = olivetti_npz["images"][:, 2:62, 2:62].astype(np.float32) / 255.0
    return images.reshape(-1, 20, 3, 20, 3).mean(axis=(2, 4)).reshape(-1, 400), olivetti_npz["target"]


def _fit(workers, monkeypatch, X, y, *, out, act, loss, epochs, **compile_kw):
    monkeypatch.setattr(config, "FUSED_WORKERS", workers)
    model = course_net(out, act)
    model.compile(loss=loss, **compile_kw)
    history = model.fit(X, y, epochs=epochs, batch_size=32, verbose=0)
    return model, history


@needs_two
@pytest.mark.parametrize(
    "task",
    [
        dict(out=40, act="softmax", loss="categorical_crossentropy", optimizer="adam", learning_rate=0.01),
        dict(out=1, act="sigmoid", loss="binary_crossentropy", optimizer="sgd", learning_rate=0.5, momentum=0.9,
             nesterov=True),
    ],
    ids=["40-way-adam", "person-vs-rest-nesterov"],
)
def test_pair_trains_faces_exactly_like_the_serial_path(olivetti_npz, monkeypatch, pair_calls, task):
    X, y = _faces_20x20(olivetti_npz)
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for person in range(40):
        test[rng.choice(np.flatnonzero(y == person), 3, replace=False)] = True
    target = y if task["out"] == 40 else (y == 3).astype(np.int64)
    runs = {}
    for workers in (1, 2):
        before = len(pair_calls)
        runs[workers] = _fit(workers, monkeypatch, X[~test], target[~test], epochs=150, **task)
        assert (len(pair_calls) > before) == (workers == 2)  # the path under test was taken
    (serial, hs), (pair, hp) = runs[1], runs[2]
    assert set(pair_calls) == {0}
    assert np.array_equal(serial.theta, pair.theta)  # bit for bit
    assert np.array_equal(serial.optimizer.s1, pair.optimizer.s1)
    assert np.array_equal(serial.optimizer.t, pair.optimizer.t)
    assert hs.history == hp.history
    if task["out"] == 40:  # and it learned faces: 40 people, 7 photos each, chance 2.5%
        accuracy = (pair.predict(X[test]).argmax(axis=1) == y[test]).mean()
        assert accuracy >= 0.45, accuracy


def _epoch_args(model, X, y, B=32):
    model.optimizer.build(model.theta.size, model.dtype)
    state = ff.model._EpochState(model, X, model._targets(y, len(X), "test")[0], np.ones(len(X), X.dtype), B, True)
    return state, np.random.default_rng(1).permutation(len(X)).astype(np.int64)


def _both_paths(model, X, y, B, epochs):
    """`epochs` epochs from the model's state through the serial entry point and through the
    pair's, on copies: ([(serial status, pair status)], [serial stats, pair stats],
    [[theta, s1, s2, t, hyper] of the serial run, of the pair run])."""
    state, perm = _epoch_args(model, X, y, B)
    o = model.optimizer
    copies = [[model.theta.copy(), o.s1.copy(), o.s2.copy(), o.t.copy(), o.hyper(model.dtype)] for _ in range(2)]
    stats = [np.zeros(4), np.zeros(4)]
    ws = _fused_pair.Workspace(state.table, B, model.dtype)
    statuses = []
    for _ in range(epochs):
        theta, s1, s2, t, h = copies[0]
        a = _fused.train_epoch(X, state.Y, state.w, perm, theta, model._grad, s1, s2, state.table, state.loss_code,
                               state.metric_code, o.code, h, t, state.A, state.D, state.xb, stats[0])
        theta, s1, s2, t, h = copies[1]
        b = _fused_pair.train_epoch(X, state.Y, state.w, perm, theta, s1, s2, state.table, state.loss_code,
                                    state.metric_code, o.code, h, t, ws, stats[1])
        statuses.append((a, b))
    return statuses, stats, copies


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "opt",
    [dict(optimizer="sgd", learning_rate=0.1), dict(optimizer="sgd", learning_rate=0.05, momentum=0.9),
     dict(optimizer="sgd", learning_rate=0.1, weight_decay=1e-3), dict(optimizer="adam", learning_rate=1e-3)],
    ids=["sgd", "momentum", "decay", "adam"],
)
def test_pair_epoch_matches_serial_epoch(opt, dtype):
    """Three epochs through both entry points from the same state, 200 rows (the last batch 8)."""
    rng = np.random.default_rng(0)
    X = rng.random((200, 400)).astype(dtype)
    y = (X[:, :7].sum(axis=1) > 3.5).astype(np.int64)
    model = course_net(dtype=dtype)
    model.compile(loss="binary_crossentropy", **opt)
    statuses, stats, copies = _both_paths(model, X, y, 32, epochs=3)
    assert statuses == [(0, 0)] * 3
    np.testing.assert_array_equal(stats[0], stats[1])
    for a, b in zip(copies[0], copies[1]):
        if opt["optimizer"] == "adam":  # its division vectorises by range: the rounding of a few weights
            np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == "float32" else 1e-14, atol=1e-12)
        else:
            np.testing.assert_array_equal(a, b)


@needs_two
@settings(max_examples=20)
@given(
    IN=st.sampled_from([64, 97, 400, 1000]), OUT0=st.sampled_from([4, 5, 13, 25, 64]), OUT1=st.sampled_from([1, 4, 15]),
    N=st.integers(4, 210), B=st.sampled_from([4, 7, 16, 32, 64]), dtype=st.sampled_from(["float32", "float64"]),
    hidden=st.sampled_from(["sigmoid", "relu", "tanh", "linear"]),
    opt=st.sampled_from([dict(optimizer="sgd", learning_rate=0.1), dict(optimizer="sgd", learning_rate=0.05, momentum=0.9),
                         dict(optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True),
                         dict(optimizer="sgd", learning_rate=0.1, weight_decay=1e-2)]),
)
def test_pair_equals_serial_wherever_the_rule_allows_it(IN, OUT0, OUT1, N, B, dtype, hidden, opt):
    """Any shape whose layer-0 products worthwhile() admits (its kernel conditions; the speed
    threshold aside) trains bit for bit like the serial fused epoch: SGD, momentum, Nesterov,
    weight decay; 1 to 53 batches, a short last one; both dtypes."""
    B = min(B, N)
    last = N - (N - 1) // B * B
    assume(min(OUT0, last) >= _fused.OWN_GEMM_MIN_ROWS)
    assume(all(_fused.OWN_GEMM_MIN_FLOPS <= n * IN * OUT0 <= _fused.OWN_GEMM_FLOPS for n in (B, last)))
    model = ff.Sequential([ff.Dense(OUT0, hidden), ff.Dense(OUT1, "sigmoid"), ff.Dense(1, "sigmoid")], input_dim=IN,
                          dtype=dtype, seed=N)
    model.compile(loss="binary_crossentropy", **opt)
    rng = np.random.default_rng(N)
    X = rng.random((N, IN)).astype(dtype)
    y = rng.integers(0, 2, N)
    statuses, stats, copies = _both_paths(model, X, y, B, epochs=2)
    assert all(a == b for a, b in statuses)
    np.testing.assert_array_equal(stats[0], stats[1])
    for u, v in zip(copies[0], copies[1]):
        np.testing.assert_array_equal(u, v)


@needs_two
def test_pair_divergence_reports_what_the_serial_path_reports(monkeypatch, pair_calls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 400)) * 1e3
    y = rng.normal(size=(256, 1)) * 1e3
    outcome = {}
    for workers in (1, 2):
        monkeypatch.setattr(config, "FUSED_WORKERS", workers)
        model = course_net(hidden="linear", act="linear", dtype="float64")
        model.compile(loss="mse", optimizer="sgd", learning_rate=10.0)
        with pytest.raises(TrainingDivergedError) as info:
            model.fit(X, y, epochs=50, batch_size=32, verbose=0)
        outcome[workers] = (info.value.epoch, info.value.batch, str(info.value), model.theta.copy())
        assert np.all(np.isfinite(model.theta))
    assert pair_calls and pair_calls[-1] in (1, 2)
    assert outcome[1][:3] == outcome[2][:3]
    assert np.array_equal(outcome[1][3], outcome[2][3])


def test_without_a_second_worker_nothing_changes_and_fit_goes_on_serially(monkeypatch, pair_calls):
    """One Numba thread runs both workers one after the other: the first gives up at the
    handshake (after its time limit), the second sees that, and the epoch changes nothing."""
    rng = np.random.default_rng(0)
    X = rng.random((96, 400), dtype=np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        model = course_net()
        model.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1)
        state, perm = _epoch_args(model, X, y)
        o = model.optimizer
        before = (model.theta.copy(), o.s1.copy(), o.t.copy())
        status = _fused_pair.train_epoch(X, state.Y, state.w, perm, model.theta, o.s1, o.s2, state.table,
                                         state.loss_code, state.metric_code, o.code, o.hyper(model.dtype), o.t,
                                         _fused_pair.Workspace(state.table, 32, model.dtype), state.stats)
        assert status == _fused_pair.NO_PAIR
        for a, b in zip(before, (model.theta, o.s1, o.t)):
            assert np.array_equal(a, b)
        # fit, told the pair path is worthwhile, falls back to the serial path and stays there
        monkeypatch.setattr(_fused_pair, "worthwhile", lambda table, B, N: True)
        monkeypatch.setattr(config, "FUSED_WORKERS", 2)
        history = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    finally:
        numba.set_num_threads(threads)
    assert _fused_pair.failed and pair_calls == [_fused_pair.NO_PAIR, _fused_pair.NO_PAIR]
    monkeypatch.setattr(config, "FUSED_WORKERS", 1)
    serial = course_net()
    serial.compile(loss="binary_crossentropy", optimizer="sgd", learning_rate=0.1)
    assert serial.fit(X, y, epochs=3, batch_size=32, verbose=0).history == history.history
    assert np.array_equal(serial.theta, model.theta)


def test_when_the_pair_path_is_taken(monkeypatch):
    assert config.FUSED_WORKERS == 1  # opt-in
    monkeypatch.setattr(config, "FUSED_WORKERS", 2)
    monkeypatch.setattr(_fused_pair, "failed", False)
    monkeypatch.setattr(_fused_pair, "AVAILABLE", True)
    monkeypatch.setattr(_fused_pair, "_cores", lambda: 2)
    monkeypatch.setattr(_fused_pair.numba, "get_num_threads", lambda: 2)

    def table(sizes, acts, B=32):
        model = ff.Sequential([ff.Dense(u, a) for u, a in zip(sizes[1:], acts)], input_dim=sizes[0])
        return model._table(B)

    course = table((400, 25, 15, 1), ("sigmoid",) * 3)
    assert _fused_pair.worthwhile(course, 32, 1000)  # the last batch: 8 rows
    assert not _fused_pair.worthwhile(course, 32, 993)  # a last batch of 1 row: BLAS in the serial path
    assert not _fused_pair.worthwhile(table((400, 25, 15, 1), ("sigmoid",) * 3, B=8), 8, 1000)  # 80k multiply-adds
    assert not _fused_pair.worthwhile(table((64, 25, 15, 10), ("relu", "relu", "softmax")), 32, 1000)  # digits: 51k
    assert not _fused_pair.worthwhile(table((4096, 25, 1), ("sigmoid",) * 2), 32, 1000)  # 3.3M: BLAS's range
    assert not _fused_pair.worthwhile(table((400, 25), ("sigmoid",)), 32, 1000)  # one layer
    assert not _fused_pair.worthwhile(table((400, 25, 1), ("softmax", "sigmoid")), 32, 1000)  # softmax layer 0
    assert not _fused_pair.worthwhile(table((2000, 3, 1), ("sigmoid",) * 2), 32, 1000)  # 3 units: BLAS's dW
    monkeypatch.setattr(_fused_pair.numba, "get_num_threads", lambda: 1)
    assert not _fused_pair.worthwhile(course, 32, 1000)
    monkeypatch.setattr(_fused_pair.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(_fused_pair, "_cores", lambda: 1)
    assert not _fused_pair.worthwhile(course, 32, 1000)
    monkeypatch.setattr(_fused_pair, "_cores", lambda: 2)
    monkeypatch.setattr(config, "FUSED_WORKERS", 1)
    assert not _fused_pair.worthwhile(course, 32, 1000)
    monkeypatch.setattr(config, "FUSED_WORKERS", 2)
    monkeypatch.setattr(_fused_pair, "failed", True)
    assert not _fused_pair.worthwhile(course, 32, 1000)


def test_pair_refuses_strided_buffers():
    model = course_net()
    model.compile(loss="binary_crossentropy")
    X = np.zeros((64, 400), np.float32)
    state, perm = _epoch_args(model, X, np.zeros(64, np.int64))
    o = model.optimizer
    with pytest.raises(ValueError, match="C-contiguous"):
        _fused_pair.train_epoch(X, state.Y, state.w, perm, np.repeat(model.theta, 2)[::2], o.s1, o.s2, state.table,
                                state.loss_code, state.metric_code, o.code, o.hyper(model.dtype), o.t,
                                _fused_pair.Workspace(state.table, 32, model.dtype), state.stats)


@pytest.mark.parametrize("bad", ["two", 0, True, 1.5])
def test_a_bad_workers_setting_is_refused_by_fit(monkeypatch, bad):
    monkeypatch.setattr(config, "FUSED_WORKERS", bad)
    model = course_net()
    model.compile(loss="binary_crossentropy")
    with pytest.raises(ValueError, match="FUSED_WORKERS must be 1"):
        model.fit(np.zeros((64, 400), np.float32), np.zeros(64, np.int64), verbose=0)
