"""Numba-backend specifics: every kernel version (small/serial, large/parallel, naive) against
the NumPy reference at register-tile edges, strided / transposed / read-only inputs, NaN and inf,
overflow-safe sigmoid, shrunken cache blocks, and the fastmath contract.

The cross-backend property tests live in tests/test_ops.py; these pin down the paths that
only exist here (the packed parallel GEMM is only reached above NUMBA_SERIAL_FLOPS, so the
tests force each path through fastface.config).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastface import config
from fastface.activations import NAMES
from fastface.backends import reference

nb = pytest.importorskip("fastface.backends.numba_backend", reason="numba backend module")
try:
    nb.check()
except Exception as exc:  # pragma: no cover - numba is a core dependency
    pytest.skip(f"numba backend unavailable: {exc}", allow_module_level=True)

from fastface.backends._numba_gemm import MR_NARROW, MR_WIDE  # noqa: E402
from fastface.backends._numba_simd import NARROW, WIDE, lanes  # noqa: E402

KINDS = ("small", "large", "naive")
DTYPES = (np.float32, np.float64)


@pytest.fixture
def kind(request, monkeypatch):
    """Force one kernel version through the config switches (restored afterwards)."""
    name = request.param
    monkeypatch.setattr(config, "NUMBA_KERNEL", "naive" if name == "naive" else "blocked")
    monkeypatch.setattr(config, "NUMBA_SERIAL_FLOPS", -1 if name == "large" else 1 << 62)
    return name


def _tol(dtype, k):
    """Relative tolerance for a reduction of length k in `dtype` (vs a float64 reference)."""
    eps = np.finfo(dtype).eps
    return 8 * eps * max(1.0, np.sqrt(k)) + (2e-6 if dtype == np.float32 else 1e-13)


def _close(got, want, dtype, k, what):
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert err <= _tol(dtype, k), f"numba {what}: max relative error {err:.3g} > {_tol(dtype, k):.3g}"


def _strided(rng, shape, dtype, how):
    """An array of `shape` that is C-contiguous, sliced from a larger one, transposed or reversed."""
    if how == "contiguous":
        return rng.standard_normal(shape).astype(dtype)
    if how == "sliced":
        big = rng.standard_normal((shape[0] * 2 + 1, shape[1] * 3 + 2)).astype(dtype)
        return big[1::2, 2::3][: shape[0], : shape[1]]
    if how == "transposed":
        return np.ascontiguousarray(rng.standard_normal(shape[::-1]).astype(dtype)).T
    if how == "reversed":
        return rng.standard_normal(shape).astype(dtype)[::-1, ::-1]
    raise AssertionError(how)


def _edge_sizes():
    """Rows around both micro-kernel heights, columns around both tile widths (float32)."""
    nr = NARROW[1] * lanes(4)
    nrw = WIDE[1] * lanes(4)
    return [
        (1, 1, 1),
        (2, 3, 2),
        (MR_NARROW - 1, 7, nr - 1),
        (MR_NARROW + 1, 13, nr + 1),
        (MR_WIDE + 1, 31, nrw + 1),
        (2 * MR_WIDE - 1, 64, 2 * nrw - 1),
        (32, 400, 25),
    ]


@pytest.mark.parametrize("kind", KINDS, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_backward_every_activation_at_tile_edges(kind, dtype):
    rng = np.random.default_rng(1)
    for N, IN, OUT in _edge_sizes():
        for act in NAMES:
            x = rng.standard_normal((N, IN)).astype(dtype)
            W = (rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(dtype)
            b = rng.standard_normal(OUT).astype(dtype)
            f64 = [v.astype(np.float64) for v in (x, W, b)]
            a_ref = reference.dense_forward(*f64, act)
            a = nb.dense_forward(x, W, b, act)
            _close(a, a_ref, dtype, IN, f"{kind} dense_forward {act} {N}x{IN}x{OUT}")
            da = rng.standard_normal((N, OUT)).astype(dtype)
            a_in = a_ref.astype(dtype)
            want = reference.dense_backward(f64[0], f64[1], a_in.astype(np.float64), da.astype(np.float64), act)
            got = nb.dense_backward(x, W, a_in, da, act)
            for name, g, w, k in zip(("dx", "dW", "db"), got, want, (OUT, N, N)):
                assert g.shape == w.shape, f"{kind} {name} shape {g.shape} != {w.shape}"
                _close(g, w, dtype, k, f"{kind} dense_backward {act} {name} {N}x{IN}x{OUT}")


@pytest.mark.parametrize("kind", KINDS, indirect=True)
@pytest.mark.parametrize("how", ["sliced", "transposed", "reversed"])
def test_strided_and_readonly_inputs(kind, how):
    rng = np.random.default_rng(2)
    for dtype in DTYPES:
        N, IN, OUT = 37, 45, 53
        x = _strided(rng, (N, IN), dtype, how)
        W = _strided(rng, (IN, OUT), dtype, how)
        b = rng.standard_normal(2 * OUT).astype(dtype)[::2]
        for arr in (x, W):
            arr.flags.writeable = False
        f64 = [np.array(v, dtype=np.float64) for v in (x, W, b)]
        a_ref = reference.dense_forward(*f64, "tanh")
        _close(nb.dense_forward(x, W, b, "tanh"), a_ref, dtype, IN, f"{kind} forward {how}")
        _close(nb.matmul(x, W), f64[0] @ f64[1], dtype, IN, f"{kind} matmul {how}")
        a = _strided(rng, (N, OUT), dtype, how)
        da = _strided(rng, (N, OUT), dtype, how)
        want = reference.dense_backward(f64[0], f64[1], np.array(a, np.float64), np.array(da, np.float64), "sigmoid")
        got = nb.dense_backward(x, W, a, da, "sigmoid")
        for name, g, w, k in zip(("dx", "dW", "db"), got, want, (OUT, N, N)):
            _close(g, w, dtype, k, f"{kind} backward {name} {how}")


@pytest.mark.parametrize("kind", ["small", "large"], indirect=True)
def test_tiny_cache_blocks_hit_every_block_edge(kind, monkeypatch):
    """mc, kc, nc far below the problem: many K blocks (accumulate), partial M and N blocks."""
    monkeypatch.setattr(config, "NUMBA_MC", 1)  # rounded up to one register tile
    monkeypatch.setattr(config, "NUMBA_KC", 5)
    monkeypatch.setattr(config, "NUMBA_NC", 1)
    rng = np.random.default_rng(3)
    for dtype in DTYPES:
        a = rng.standard_normal((29, 23)).astype(dtype)
        b = rng.standard_normal((23, 71)).astype(dtype)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        _close(nb.matmul(a, b), ref, dtype, 23, f"{kind} matmul tiny blocks")
        _close(nb.matmul(a, np.asfortranarray(b)), ref, dtype, 23, f"{kind} matmul tiny blocks, B F-ordered")


@pytest.mark.parametrize("kind", KINDS, indirect=True)
def test_nan_and_inf_propagate_like_numpy(kind):
    x = np.ones((7, 5), np.float32)
    W = np.ones((5, 3), np.float32)
    b = np.zeros(3, np.float32)
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    W[3, 2] = np.inf  # inf * 1 in every row of column 2
    for act in NAMES:
        with np.errstate(all="ignore"):
            want = reference.dense_forward(x, W, b, act)
            got = nb.dense_forward(x, W, b, act)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{kind} {act}: NaN pattern")
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{kind} {act}: +inf pattern")


def test_sigmoid_is_overflow_safe_and_exact_at_the_ends():
    z = np.array([[-1e30, -1000.0, -88.0, -20.0, 0.0, 20.0, 88.0, 1000.0, 1e30, np.nan]], np.float32)
    with np.errstate(all="raise"):
        got = nb.sigmoid(z)
    want = reference.sigmoid(z.astype(np.float64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[:, :-1], want[:, :-1], rtol=1e-6, atol=1e-30)
    assert got[0, 0] == 0.0 and got[0, 8] == 1.0 and np.isnan(got[0, -1])
    big = np.random.default_rng(4).standard_normal((300, 301)) * 50  # parallel path
    np.testing.assert_allclose(nb.sigmoid(big), reference.sigmoid(big), rtol=1e-14, atol=1e-300)


def test_every_core_uses_the_explicit_fastmath_set():
    allowed = {"nsz", "arcp", "contract", "afn", "reassoc"}
    for (op, kind), disp in nb.KERNELS.items():
        fm = disp.targetoptions.get("fastmath")
        assert fm == allowed, f"{op}/{kind}: fastmath={fm!r}, expected exactly {sorted(allowed)}"


def test_one_compiled_version_per_dtype_whatever_the_layout():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    W = rng.standard_normal((6, 4)).astype(np.float32)
    b = np.zeros(4, np.float32)
    for xv, Wv in ((x, W), (x[:, ::-1], W.T.copy().T), (np.asfortranarray(x), W[::-1])):
        nb.dense_forward(xv, Wv, b, "relu")
    core = nb._core("gemm", "small", np.dtype(np.float32))
    assert len(core.signatures) == 1, f"expected one compiled signature, got {core.signatures}"


def test_unaligned_strides_are_copied_not_misread():
    """A float field of a packed structured array: strides that are not whole elements."""
    rng = np.random.default_rng(6)
    for dtype in DTYPES:
        rec = np.zeros((9, 7), dtype=[("v", dtype), ("pad", np.int8)])
        rec["v"] = rng.standard_normal((9, 7))
        x = rec["v"]
        assert x.strides[1] % x.itemsize, "test setup: expected an unaligned view"
        W = rng.standard_normal((7, 5)).astype(dtype)
        b = np.zeros(5, dtype)
        want = reference.dense_forward(np.array(x, np.float64), W.astype(np.float64), b.astype(np.float64), "relu")
        _close(nb.dense_forward(x, W, b, "relu"), want, dtype, 7, "forward, unaligned x")
        a = np.array(want, dtype)
        got = nb.dense_backward(x, W, a, x[:, :5], "linear")
        _close(got[2], np.array(x[:, :5], np.float64).sum(axis=0), dtype, 9, "db, unaligned da")
        _close(nb.sigmoid(x), reference.sigmoid(np.array(x, np.float64)), dtype, 1, "sigmoid, unaligned z")


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_and_tanh_epilogues_are_accurate_across_the_range(dtype):
    """The vectorised exp/tanh intrinsics: tiny, subnormal-producing, huge and infinite inputs."""
    z = np.concatenate([
        np.linspace(-800, 800, 4001), np.geomspace(1e-30, 30, 400), -np.geomspace(1e-30, 30, 400),
        [0.0, -0.0, np.inf, -np.inf, np.nan],
    ]).astype(dtype)[None, :]
    eye = np.eye(1, dtype=dtype)
    zero = np.zeros(z.shape[1], dtype)
    with np.errstate(all="ignore"):
        for act, ulps in (("sigmoid", 4), ("tanh", 6)):
            got = nb.dense_forward(eye, z, zero, act)  # 1 x 1 @ 1 x P: the activation of z itself
            want = reference.dense_forward(eye.astype(np.float64), z.astype(np.float64), zero.astype(np.float64), act)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{act}: NaN pattern")
            ok = ~np.isnan(want)
            tiny = np.finfo(dtype).smallest_subnormal
            bound = ulps * np.spacing(np.abs(want[ok]).astype(dtype)).astype(np.float64) + tiny
            err = np.abs(got[ok].astype(np.float64) - want[ok])
            worst = int(np.argmax(err / bound))
            assert np.all(err <= bound), (
                f"numba {act} {np.dtype(dtype).name}: z={z[ok][worst]!r} got {got[ok][worst]!r}, "
                f"want {want[ok][worst]!r}"
            )


def test_a_kernel_that_cannot_compile_falls_back_to_the_reference_loops(monkeypatch):
    from numba import njit

    @njit
    def broken(A, B, C, b, act, mc, kc, nc, threads):  # pragma: no cover - never runs
        return A.no_such_attribute

    monkeypatch.setattr(nb, "_COMPILED", {})
    monkeypatch.setitem(nb.KERNELS, ("gemm", "small"), broken)
    monkeypatch.setattr(config, "NUMBA_SERIAL_FLOPS", 1 << 62)
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = np.ones((4, 2))
    with pytest.warns(RuntimeWarning, match="plain-loop reference kernel"):
        got = nb.matmul(a, b)
    np.testing.assert_allclose(got, a @ b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_major_weights_take_every_serial_route(dtype, monkeypatch):
    """W Fortran-ordered (as fastface.model stores it) and W.T in the backward: the dot-product
    kernel (few rows or long reductions, 4-row bands and 1-row tails, column edges of the
    4-wide blocks, 5-wide blocks splitting OUT = 10, 13, 14, 15, 25 exactly) and the copy route
    (many rows, short reductions; IN = 520 puts the copy's rows >= 2 KB apart, its narrow
    bands), x row- or column-major."""
    monkeypatch.setattr(config, "NUMBA_KERNEL", "blocked")
    monkeypatch.setattr(config, "NUMBA_SERIAL_FLOPS", 1 << 62)
    rng = np.random.default_rng(7)
    for N, IN, OUT in ((1, 1, 1), (1, 300, 5), (3, 70, 6), (5, 9, 7), (8, 130, 13), (9, 200, 3), (21, 20, 10),
                          (12, 400, 25), (4, 50, 15), (6, 33, 14), (21, 520, 10)):
        for x_order in ("C", "F"):
            x = np.asarray(rng.standard_normal((N, IN)), dtype=dtype, order=x_order)
            W = np.asfortranarray((rng.standard_normal((IN, OUT)) / np.sqrt(IN)).astype(dtype))
            b = rng.standard_normal(OUT).astype(dtype)
            f64 = [v.astype(np.float64) for v in (x, W, b)]
            a_ref = reference.dense_forward(*f64, "sigmoid")
            _close(nb.dense_forward(x, W, b, "sigmoid"), a_ref, dtype, IN, f"forward F-ordered W {N}x{IN}x{OUT}")
            _close(nb.matmul(x, W), f64[0] @ f64[1], dtype, IN, f"matmul F-ordered W {N}x{IN}x{OUT}")
            da = rng.standard_normal((N, OUT)).astype(dtype)
            a = a_ref.astype(dtype)
            want = reference.dense_backward(f64[0], f64[1], a.astype(np.float64), da.astype(np.float64), "sigmoid")
            for W_ in (W, np.ascontiguousarray(W)):
                got = nb.dense_backward(x, W_, a, da, "sigmoid")
                for name, g, w, k in zip(("dx", "dW", "db"), got, want, (OUT, N, N)):
                    _close(g, w, dtype, k, f"backward {name} W {W_.flags.f_contiguous} {N}x{IN}x{OUT}")
