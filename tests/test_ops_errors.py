"""Bad input, the dtype policy, empty batches, NaN/inf, unavailable backends, choose_backend.

Shapes: x (N, IN), W (IN, OUT), b (OUT,), a / da (N, OUT); matmul a (M, K) @ b (K, P).

Every refusal must be a ValueError or TypeError whose message names what was expected and
what came; these tests check both halves of the message, not just the exception type.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from fastface import backends, config, ops
from fastface.activations import NAMES as ACTIVATIONS
from fastface.backends import BackendUnavailableError, available_backends, reference

BACKENDS = available_backends()
rng = np.random.default_rng(0)
X = rng.standard_normal((4, 3))
W = rng.standard_normal((3, 2))
B = rng.standard_normal(2)
A = reference.dense_forward(X, W, B, "sigmoid")
DA = rng.standard_normal((4, 2))


def raises(exc, *fragments):
    """pytest.raises(exc) whose message contains every fragment (plain text, not regex)."""
    return pytest.raises(exc, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# --- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_shape_mismatches_name_expected_and_received(backend):
    with raises(ValueError, "(M, K) = (4, 3)", "(K, P) = (4, 2)", "3 != 4"):
        ops.matmul(X, np.ones((4, 2)), backend=backend)
    with raises(ValueError, "x is (N, IN) = (4, 3)", "W is (IN, OUT) = (5, 2)", "W expects 5"):
        ops.dense_forward(X, np.ones((5, 2)), B, backend=backend)
    with raises(ValueError, "x is (N, IN) = (4, 3)", "(IN, OUT) = (2, 2)"):
        ops.dense_backward(X, np.ones((2, 2)), A, DA, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_ndim(backend):
    with raises(ValueError, "x must be 2-D (N, IN)", "got shape (3,)", "x[None, :]"):
        ops.dense_forward(X[0], W, B, backend=backend)
    with raises(ValueError, "W must be 2-D (IN, OUT)", "got shape (3, 2, 1)"):
        ops.dense_forward(X, W[:, :, None], B, backend=backend)
    with raises(ValueError, "a must be 2-D (M, K)", "got shape (3,)"):
        ops.matmul(X[0], W, backend=backend)
    with raises(ValueError, "b must be 2-D (K, P)", "got shape ()"):
        ops.matmul(X, np.float64(2.0), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_of_the_wrong_length_or_ndim(backend):
    with raises(ValueError, "b must be 1-D (OUT,) = (2,)", "got shape (3,)"):
        ops.dense_forward(X, W, np.zeros(3), backend=backend)
    with raises(ValueError, "b must be 1-D (OUT,) = (2,)", "got shape (1, 2)"):
        ops.dense_forward(X, W, B[None, :], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_and_da_of_the_wrong_shape(backend):
    with raises(ValueError, "da must be (N, OUT) = (4, 2)", "got shape (4, 3)"):
        ops.dense_backward(X, W, A, np.zeros((4, 3)), backend=backend)
    with raises(ValueError, "da must be (N, OUT) = (4, 2)", "got shape (2, 4)"):
        ops.dense_backward(X, W, A, DA.T, backend=backend)
    with raises(ValueError, "a must be (N, OUT) = (4, 2)", "got shape (3, 2)"):
        ops.dense_backward(X, W, A[:3], DA, backend=backend)


def test_layer_without_units_or_inputs():
    with raises(ValueError, "IN >= 1 and OUT >= 1", "(3, 0)"):
        ops.dense_forward(X, np.zeros((3, 0)), np.zeros(0))
    with raises(ValueError, "IN >= 1 and OUT >= 1", "(0, 2)"):
        ops.dense_forward(np.zeros((4, 0)), np.zeros((0, 2)), B)


# --- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["softplus", "Sigmoid", 3])
def test_unknown_activation_lists_the_valid_names(bad):
    for call in (lambda: ops.dense_forward(X, W, B, bad), lambda: ops.dense_backward(X, W, A, DA, bad)):
        with raises(ValueError, f"unknown activation {bad!r}", *ACTIVATIONS):
            call()


def test_activation_none_means_linear():
    np.testing.assert_array_equal(ops.dense_forward(X, W, B, None, backend="numpy"), X @ W + B)


@pytest.mark.parametrize("bad", ["blas", "CUDA", "", 0])
def test_unknown_backend_lists_the_valid_names(bad):
    with raises(ValueError, f"unknown backend {bad!r}", *backends.BACKENDS, "None"):
        ops.matmul(X, W, backend=bad)
    with raises(ValueError, f"unknown backend {bad!r}"):
        ops.dense_forward(X, W, B, backend=bad)


def test_unknown_loss_lists_the_valid_names():
    with raises(ValueError, "unknown loss 'hinge'", "binary_crossentropy", "mse"):
        ops.loss_grad("hinge", [1.0], [0.5])


# --- dtypes ------------------------------------------------------------------------------------
REFUSED = {
    "complex": lambda: X.astype(np.complex128),
    "object": lambda: X.astype(object),
    "bool": lambda: X > 0,
    "string": lambda: X.astype(str),
    "bytes": lambda: X.astype("S8"),
    "datetime": lambda: np.zeros((4, 3), dtype="datetime64[s]"),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_refused_dtypes_name_the_kind_and_the_fix(kind):
    bad = REFUSED[kind]()
    with raises(TypeError, "x must hold real numbers", f"a {kind} array", "astype"):
        ops.dense_forward(bad, W, B, backend="numpy")
    with raises(TypeError, "a must hold real numbers", f"a {kind} array"):
        ops.matmul(bad, W)
    with raises(TypeError, "z must hold real numbers", f"a {kind} array"):
        ops.sigmoid(bad)
    with raises(TypeError, "da must hold real numbers", f"a {kind} array"):
        ops.dense_backward(X, W, A, bad[:, :2], backend="numpy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtypes, expected",
    [
        ((np.int64, np.int64, np.int64), np.float64),  # integers -> float64
        ((np.int32, np.int8, np.uint8), np.float64),
        ((np.float16, np.float16, np.float16), np.float32),  # float16 -> float32
        ((np.float16, np.float32, np.float16), np.float32),
        ((np.float32, np.float64, np.float32), np.float64),  # mixed floats -> float64
        ((np.int64, np.float32, np.float32), np.float64),  # NumPy's promotion of int64 + float32
        ((np.float32, np.float32, np.float32), np.float32),
    ],
    ids=["int", "ints", "f16", "f16+f32", "f32+f64", "int+f32", "f32"],
)
def test_dtype_policy(backend, dtypes, expected):
    x = (X * 3).astype(dtypes[0])
    w = (W * 3).astype(dtypes[1])
    b = (B * 3).astype(dtypes[2])
    got = ops.dense_forward(x, w, b, "linear", backend=backend)
    assert got.dtype == expected, f"backend={backend}: {dtypes} gave {got.dtype}, expected {expected}"
    want = x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5 if expected == np.float32 else 1e-12, atol=1e-5)
    assert ops.matmul(x, w, backend=backend).dtype == expected
    a, da = got.astype(dtypes[0]), got.astype(dtypes[1])
    dx, dW, db = ops.dense_backward(x, w, a, da, "linear", backend=backend)
    assert dx.dtype == dW.dtype == db.dtype == expected


def test_python_lists_become_float64():
    got = ops.matmul([[1, 2]], [[3], [4]], backend="numpy")
    assert got.dtype == np.float64 and got.tolist() == [[11.0]]


@pytest.mark.skipif(np.finfo(np.longdouble).bits == 64, reason="longdouble is float64 on this platform")
def test_longdouble_becomes_float64():
    assert ops.matmul(X.astype(np.longdouble), W, backend="numpy").dtype == np.float64


# --- empty batches -----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_gives_empty_results(backend, dtype):
    x0 = np.zeros((0, 3), dtype)
    w, b = W.astype(dtype), B.astype(dtype)
    a0 = ops.dense_forward(x0, w, b, "softmax", backend=backend)
    assert a0.shape == (0, 2) and a0.dtype == dtype, f"backend={backend}: {a0.shape} {a0.dtype}"
    dx, dW, db = ops.dense_backward(x0, w, np.zeros((0, 2), dtype), np.zeros((0, 2), dtype), backend=backend)
    assert (dx.shape, dW.shape, db.shape) == ((0, 3), (3, 2), (2,)), f"backend={backend}"
    assert dx.dtype == dW.dtype == db.dtype == dtype
    assert not dW.any() and not db.any(), f"backend={backend}: an empty batch contributes no gradient"
    empty_cases = [((0, 3), (3, 2), (0, 2)), ((4, 0), (0, 2), (4, 2)), ((4, 3), (3, 0), (4, 0))]
    for shape_a, shape_b, out in empty_cases:
        c = ops.matmul(np.ones(shape_a, dtype), np.ones(shape_b, dtype), backend=backend)
        assert c.shape == out and c.dtype == dtype and not c.any(), (
            f"backend={backend} matmul {shape_a}@{shape_b}"
        )
    for shape in [(0, 5), (5, 0), (0,)]:
        s = ops.sigmoid(np.zeros(shape, dtype), backend=backend)
        assert s.shape == shape and s.dtype == dtype, f"backend={backend} sigmoid {shape}"


# --- NaN and inf propagate as NumPy would ------------------------------------------------------
def _same_specials(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf positions")
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6,
                               err_msg=f"{what}: finite values")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_propagate_like_numpy(backend, dtype):
    x = rng.standard_normal((5, 4)).astype(dtype)
    w = np.abs(rng.standard_normal((4, 3))).astype(dtype) + 0.5  # no zeros: inf * w stays inf
    b = rng.standard_normal(3).astype(dtype)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    x[4, 1] = -np.inf
    where = f"backend={backend} dtype={np.dtype(dtype).name}"
    x64, w64, b64 = (v.astype(np.float64) for v in (x, w, b))
    with np.errstate(invalid="ignore", over="ignore"):
        _same_specials(ops.matmul(x, w, backend=backend), x64 @ w64, f"{where} matmul")
        for act in ACTIVATIONS:
            want = reference.dense_forward(x64, w64, b64, act)
            _same_specials(ops.dense_forward(x, w, b, act, backend=backend), want, f"{where} forward[{act}]")
        z = np.array([[np.nan, np.inf, -np.inf, 0.0]], dtype)
        _same_specials(ops.sigmoid(z, backend=backend), [[np.nan, 1.0, 0.0, 0.5]], f"{where} sigmoid")

        # backward: a NaN in da poisons its row of dx, every dW entry fed by it, and its db column
        xs = rng.standard_normal((5, 4)).astype(dtype)
        a = reference.dense_forward(xs.astype(np.float64), w64, b64, "tanh").astype(dtype)
        da = rng.standard_normal((5, 3)).astype(dtype)
        da[2, 1] = np.nan
        want = reference.dense_backward(xs.astype(np.float64), w64, a.astype(np.float64),
                                        da.astype(np.float64), "tanh")
        got = ops.dense_backward(xs, w, a, da, "tanh", backend=backend)
        for stage, g, e in zip(("dx", "dW", "db"), got, want):
            _same_specials(g, e, f"{where} backward[tanh] {stage}")


# --- unavailable backends and the automatic choice --------------------------------------------
def _fake_backend(monkeypatch, name, reason):
    module = types.ModuleType(f"fastface_test_{name}")

    def check():
        raise BackendUnavailableError(reason)

    module.check = check
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(backends.BACKENDS, name, module.__name__)
    monkeypatch.setattr(backends, "_failed", dict(backends._failed))
    monkeypatch.setattr(backends, "_loaded", dict(backends._loaded))


def test_unavailable_backend_error_carries_the_reason(monkeypatch):
    _fake_backend(monkeypatch, "quantum", "no quantum computer attached (install qpu-sdk)")
    assert "quantum" not in available_backends()
    assert "no quantum computer attached" in backends.unavailable_backends()["quantum"]
    for call in (lambda: ops.matmul(X, W, backend="quantum"),
                 lambda: ops.dense_forward(X, W, B, backend="quantum"),
                 lambda: ops.dense_backward(X, W, A, DA, backend="quantum")):
        with raises(BackendUnavailableError, "backend 'quantum' is unavailable",
                    "no quantum computer attached"):
            call()


def test_real_unavailable_backends_say_why():
    for name, reason in backends.unavailable_backends().items():
        assert name not in BACKENDS
        with pytest.raises(BackendUnavailableError) as info:
            ops.matmul(X, W, backend=name)
        assert str(info.value) == reason and len(reason) > len(f"backend {name!r} is unavailable: ")


def test_choose_backend_follows_the_documented_rule(monkeypatch):
    monkeypatch.setattr(config, "SMALL_FLOPS", 1000)
    monkeypatch.setattr(config, "SMALL_PREFERENCE", ("numba", "c", "numpy"))
    monkeypatch.setattr(config, "LARGE_PREFERENCE", ("c", "numpy"))
    monkeypatch.setattr(ops, "_AVAILABLE", ["numpy", "numba", "c"])
    assert ops.choose_backend(1000) == "numba"  # at most SMALL_FLOPS: small preference
    assert ops.choose_backend(1001) == "c"  # above: large preference
    assert ops.choose_backend(10**12, on_device=True) == "cuda"  # device arrays: always cuda
    assert ops.choose_backend(0, on_device=True) == "cuda"
    monkeypatch.setattr(ops, "_AVAILABLE", ["numpy", "c"])
    assert ops.choose_backend(10) == "c"  # first *available* of the preference
    monkeypatch.setattr(ops, "_AVAILABLE", ["numpy"])
    assert ops.choose_backend(10) == "numpy" and ops.choose_backend(10**9) == "numpy"
    monkeypatch.setattr(config, "LARGE_PREFERENCE", ("c",))
    assert ops.choose_backend(10**9) == "numpy"  # nothing preferred is available: numpy


def test_backend_none_dispatches_by_problem_size(monkeypatch):
    """matmul counts M*K*P, a dense layer N*IN*OUT multiply-adds; the boundary is inclusive."""
    picked = []
    real_get = backends.get

    def spy(name):
        picked.append(name)
        return real_get("numpy")

    monkeypatch.setattr(ops.backends, "get", spy)
    monkeypatch.setattr(ops, "_AVAILABLE", ["numpy", "numba", "c"])
    monkeypatch.setattr(config, "SMALL_PREFERENCE", ("numba",))
    monkeypatch.setattr(config, "LARGE_PREFERENCE", ("c",))
    monkeypatch.setattr(config, "SMALL_FLOPS", 4 * 3 * 2)
    ops.matmul(X, W)
    ops.dense_forward(X, W, B)
    ops.dense_backward(X, W, A, DA)
    ops.dense_forward(np.vstack([X, X]), W, B)
    assert picked == ["numba", "numba", "numba", "c"]


def test_choose_backend_only_returns_available_backends():
    avail = available_backends()
    for flops in (1, config.SMALL_FLOPS, config.SMALL_FLOPS + 1, 10**12):
        assert ops.choose_backend(flops) in avail


# --- device arrays on the host path -----------------------------------------------------------
class _FakeDeviceArray:
    """Just enough of a CuPy/Numba device array for the boundary checks (never dereferenced)."""

    def __init__(self, shape, typestr="<f4"):
        self.shape, self.ndim, self.dtype = shape, len(shape), np.dtype(typestr)
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0, False), "version": 3}


def test_device_arrays_refused_where_they_cannot_go():
    with raises(TypeError, "device (GPU) arrays mixed with host arrays", "b"):
        ops.matmul(_FakeDeviceArray((2, 3)), np.ones((3, 2), np.float32))
    with raises(TypeError, "device arrays must all be float32 or all float64", "float16"):
        ops.matmul(_FakeDeviceArray((2, 3)), _FakeDeviceArray((3, 2), "<f2"))
    with raises(TypeError, "need backend='cuda'", "backend='numpy'"):
        ops.matmul(_FakeDeviceArray((2, 3)), _FakeDeviceArray((3, 2)), backend="numpy")


# --- losses ------------------------------------------------------------------------------------
def test_loss_inputs_are_checked():
    p = np.full((3, 2), 0.5)
    with raises(ValueError, "labels must lie in 0..1", "from 0 to 2"):
        ops.categorical_crossentropy(np.array([0, 1, 2]), p)
    with raises(ValueError, "integer labels expected", "fractional"):
        ops.categorical_crossentropy(np.array([0.5, 1, 0]), p)
    with raises(ValueError, "y_true must be", "(3, 2)", "got shape (2, 2)"):
        ops.binary_crossentropy(np.zeros((2, 2)), p)
    with raises(ValueError, "N = 0"):
        ops.mse(np.zeros((0, 2)), np.zeros((0, 2)))
    with raises(TypeError, "y_true must be numeric", "<U1"):
        ops.mse(np.array([["a", "b"]] * 3), p)
    with raises(TypeError, "y_pred must hold real numbers", "complex"):
        ops.mse(np.zeros((3, 2)), p.astype(complex))


# --- the `fastface bench` command ----------------------------------------------------------------
def test_bench_command_prints_a_checked_table(capsys):
    from fastface.cli import main

    host = [b for b in BACKENDS if b != "cuda"]
    status = main(["bench", "--sizes", "3x5x2", "--dtype", "float64", "--repeat", "1", "--min-time", "0",
                   "--threads", "1", "--backends", ",".join(host + ["numpy-blas"]),
                   "--kernels", "matmul,dense_backward"])
    out = capsys.readouterr().out
    assert status == 0, out
    lines = [line for line in out.splitlines() if "GFLOP/s" in line]
    assert len(lines) == 2 * (len(host) + 1), out
    for line in lines:
        assert re.search(r"3x5x2\s+float64", line) and line.rstrip().split()[-3] == "ok", line
    assert "1 thread(s) everywhere" in out


@pytest.mark.parametrize("forced", [None, "Haswell"])
def test_bench_command_names_the_blas_and_warns_when_its_kernels_are_forced(capsys, monkeypatch, forced):
    from fastface.cli import main

    if forced is None:
        monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_CORETYPE", forced)
    status = main(["bench", "--sizes", "2x3x2", "--repeat", "1", "--min-time", "0", "--backends", "numpy-blas",
                   "--kernels", "matmul"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "NumPy's BLAS: " in out
    warnings_ = [line for line in out.splitlines() if line.startswith("WARNING: OPENBLAS_CORETYPE")]
    if forced is None:
        assert not warnings_, out
    else:
        assert len(warnings_) == 1 and "Haswell" in warnings_[0] and "env -u OPENBLAS_CORETYPE" in warnings_[0]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--sizes", "32x400"], ["N x IN x OUT", "'32x400'"]),
        (["--sizes", "0x4x4"], ["positive integers", "'0x4x4'"]),
        (["--backends", "blas"], ["unknown name 'blas'", "numpy-blas"]),
        (["--kernels", "conv"], ["unknown kernel 'conv'", "dense_forward"]),
        (["--repeat", "0"], ["--repeat must be >= 1", "got 0"]),
        (["--activation", "gelu"], ["unknown activation 'gelu'", "sigmoid"]),
        (["--threads", "0"], ["--threads must be an integer >= 1", "got 0"]),
    ],
)
def test_bench_command_refuses_bad_options(capsys, argv, fragments):
    from fastface.cli import main

    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastface bench: error:") and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
