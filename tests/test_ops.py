"""Property tests: every kernel x every available backend x float32/float64 vs the reference.

Dimensions (as in fastface.ops):
    matmul          a (M, K) @ b (K, P)                     -> (M, P)
    sigmoid         z (M, P)                                -> (M, P)
    dense_forward   x (N, IN), W (IN, OUT), b (OUT,)        -> a (N, OUT)
    dense_backward  x (N, IN), W (IN, OUT), a, da (N, OUT)  -> dx (N, IN), dW (IN, OUT), db (OUT,)

The reference is the NumPy backend run on float64 copies of the very inputs the backend got.
Inputs are views into larger buffers padded with NaN (row steps, column slices, transposed
and reversed views), so a kernel that ignores strides or reads outside the view shows NaN; the
buffers are compared before and after the call, so a kernel that writes into its inputs (or
outside its output) fails too.

Error bounds scale with the dtype's epsilon, the square root of the reduction length and the
magnitude of the terms summed (|x| @ |W| + |b| for a forward), never one global tolerance.
Every backend also runs under shrunken configurations (tiny cache blocks, naive kernels) so
small shapes cross many block edges. On the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), where
each GPU thread is a Python thread, the kernels get an 8 x 8 tile and 8-thread blocks, shapes
are capped at 12 (3 rows for softmax) and examples at 2; on a GPU the same tests run in full.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastface import config, ops
from fastface.activations import DERIVATIVES
from fastface.activations import NAMES as ACTIVATIONS
from fastface.backends import available_backends, reference

BACKENDS = available_backends()
DTYPES = (np.float32, np.float64)
ON_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
C_ERR = 16.0  # constant in front of eps * sqrt(K) in every bound

# The CUDA simulator runs every GPU thread as a Python thread (a 24-row softmax takes seconds),
# so there the kernels get a smaller tile and block (read at each launch, see fastface.config),
# shapes up to SIM_CAP (SIM_CAP_ROWS rows for the row-per-block softmax) and few examples.
# Tile edges stay reachable: SIM_TILE - 1, SIM_TILE, SIM_TILE + 1 <= SIM_CAP.
SIM_TILE, SIM_THREADS = 8, 8
SIM_CAP, SIM_CAP_ROWS, SIM_EXAMPLES = 12, 3, 2


def _on_sim(backend) -> bool:
    return backend == "cuda" and ON_SIM


# Every tile / cache block in fastface.config that hypothesis may draw around (blocks larger
# than MAX_TILE_DRAWN are crossed by the shrunken-block variants of the `backend` fixture).
TILE_NAMES = ("CUDA_TILE", "NUMBA_MC", "NUMBA_KC", "NUMBA_NC")
MAX_TILE_DRAWN = 300


def _tiles(backend):
    if _on_sim(backend):
        return [SIM_TILE]
    values = {getattr(config, name, None) for name in TILE_NAMES}
    return sorted(v for v in values if isinstance(v, int) and 1 < v <= MAX_TILE_DRAWN)


def special_dims(backend):
    """1, 2, primes, and one below / at / above every tile the kernels use."""
    return sorted({1, 2, 3, 5, 7, 13, 31, 61} | {t + d for t in _tiles(backend) for d in (-1, 0, 1)})


def _shrink_cuda_on_sim(monkeypatch):
    if ON_SIM:
        monkeypatch.setattr(config, "CUDA_TILE", SIM_TILE)
        monkeypatch.setattr(config, "CUDA_THREADS", SIM_THREADS)


def _numba_packed_tiny_blocks(monkeypatch):
    """Every problem through the packed, parallel path, with blocks of one register tile
    (rows, columns) and depth 7, so small shapes cross many block edges."""
    for name, value in (("NUMBA_SERIAL_FLOPS", 0), ("NUMBA_PARALLEL_ELEMENTS", 0),
                        ("NUMBA_MC", 1), ("NUMBA_KC", 7), ("NUMBA_NC", 1)):
        if hasattr(config, name):
            monkeypatch.setattr(config, name, value)


def _numba_naive(monkeypatch):
    monkeypatch.setattr(config, "NUMBA_KERNEL", "naive", raising=False)


def _c_tiny_blocks(monkeypatch):
    """The C matmul's cache blocks shrunk to one micro-tile (depth 7); restored afterwards."""
    from fastface.backends import c_backend

    before = c_backend.info()["options"]
    c_backend.set_options(simd=before["simd"], mc=1, kc=7, nc=1)
    return lambda: c_backend.set_options(**before)


# test id -> (backend name, configuration applied for the test, largest dim drawn or None).
# The shrunken-block variants draw small shapes only (they cross many block edges already)
# and VARIANT_EXAMPLES examples each.
VARIANTS = {
    "numpy": ("numpy", None, None),
    "numba": ("numba", None, None),
    "numba-packed-tiny-blocks": ("numba", _numba_packed_tiny_blocks, 40),
    "numba-naive": ("numba", _numba_naive, 40),
    "c": ("c", None, None),
    "c-tiny-blocks": ("c", _c_tiny_blocks, 40),
    "cuda": ("cuda", _shrink_cuda_on_sim, None),
}
VARIANT_EXAMPLES = 10
BACKEND_IDS = [v for v, (name, _, _) in VARIANTS.items() if name in BACKENDS]
BACKEND_IDS += [name for name in BACKENDS if name not in BACKEND_IDS]  # backends added later


class Case(str):
    """A backend name (what fastface.ops receives) carrying the variant's largest dim."""

    cap: int | None = None
    examples: int | None = None


@pytest.fixture(params=BACKEND_IDS)
def backend(request, monkeypatch):
    """Each available backend by name, also under the shrunken configurations of VARIANTS
    (on the CUDA simulator: a smaller tile and block)."""
    name, setup, cap = VARIANTS.get(request.param, (request.param, None, None))
    undo = setup(monkeypatch) if setup is not None else None
    case = Case(name)
    case.cap = cap
    case.examples = VARIANT_EXAMPLES if cap else None
    yield case
    if undo is not None:
        undo()


def _limits(backend, rows_heavy=False):
    """(largest dim, largest N, max examples) for a backend: tiny on the CUDA simulator."""
    if _on_sim(backend):
        return SIM_CAP, SIM_CAP_ROWS if rows_heavy else SIM_CAP, SIM_EXAMPLES
    cap = getattr(backend, "cap", None) or max(special_dims(backend))
    return cap, cap, getattr(backend, "examples", None) or settings().max_examples


def dims(backend, cap=None):
    cap = cap or _limits(backend)[0]
    special = [d for d in special_dims(backend) if d <= cap]
    return st.one_of(st.sampled_from(special), st.integers(1, min(cap, 70)))


# layout name -> (shape of the NaN-filled buffer for a (R, C) view, the view of that buffer).
# Every view has NaN around it, so reading past its edges poisons the result.
LAYOUTS_2D = {
    # contiguous, with a NaN row before and after it
    "C": (lambda r, c: (r + 2, c), lambda buf, r, c: buf[1 : r + 1]),
    # transposed view of a (padded) C buffer: Fortran order
    "F": (lambda r, c: (c + 2, r), lambda buf, r, c: buf[1 : c + 1].T),
    "rows": (lambda r, c: (2 * r + 1, c), lambda buf, r, c: buf[1::2]),  # every other row
    "cols": (lambda r, c: (r, c + 3), lambda buf, r, c: buf[:, 2 : 2 + c]),  # a column slice
    "both": (lambda r, c: (2 * r, 3 * c), lambda buf, r, c: buf[::2, 1::3]),  # row and column steps
    "reversed": (lambda r, c: (r, c + 1), lambda buf, r, c: buf[::-1, c:0:-1]),  # negative strides
}
LAYOUTS_1D = {
    "C": (lambda n: n + 2, lambda buf, n: buf[1 : n + 1]),
    "step": (lambda n: 2 * n + 1, lambda buf, n: buf[1::2]),
    "reversed": (lambda n: n + 1, lambda buf, n: buf[n:0:-1]),
}


def layout_2d(values: np.ndarray, layout: str) -> np.ndarray:
    """A view equal to `values` (R, C) with the given memory layout, inside a NaN-padded buffer."""
    buffer_shape, view_of = LAYOUTS_2D[layout]
    r, c = values.shape
    view = view_of(np.full(buffer_shape(r, c), np.nan, values.dtype), r, c)
    view[...] = values
    return view


def layout_1d(values: np.ndarray, layout: str) -> np.ndarray:
    """A view equal to `values` (N,) with the given memory layout, inside a NaN-padded buffer."""
    buffer_shape, view_of = LAYOUTS_1D[layout]
    n = values.shape[0]
    view = view_of(np.full(buffer_shape(n), np.nan, values.dtype), n)
    view[...] = values
    return view


@st.composite
def arrays(draw, shape, dtype, scale=1.0):
    """A strided view holding standard-normal values * scale, in `dtype`."""
    seed = draw(st.integers(0, 2**32 - 1))
    values = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    if len(shape) == 1:
        return layout_1d(values, draw(st.sampled_from(list(LAYOUTS_1D))))
    return layout_2d(values, draw(st.sampled_from(list(LAYOUTS_2D))))


def _base(view):
    return view.base if view.base is not None else view


def _snapshot(*views):
    return [(_base(v), _base(v).copy()) for v in views]


def _assert_untouched(snapshot, where):
    for buf, before in snapshot:
        assert np.array_equal(buf, before, equal_nan=True), (
            f"{where}: the kernel modified an input buffer (inside or outside the view)"
        )


def assert_close(got, expected, bound, *, backend, stage, dtype, shape):
    """|got - expected| <= bound elementwise; the message names backend, stage, dtype, shape."""
    where = f"backend={backend} stage={stage} dtype={np.dtype(dtype).name} shape={shape}"
    assert isinstance(got, np.ndarray), f"{where}: expected a NumPy array for host inputs, got {type(got)}"
    assert got.shape == expected.shape, f"{where}: shape {got.shape}, expected {expected.shape}"
    assert got.dtype == np.dtype(dtype), f"{where}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    err = np.abs(got.astype(np.float64) - expected)
    bad = ~(err <= bound)  # NaN counts as bad
    if bad.any():
        score = np.where(bad, np.nan_to_num(err, nan=np.inf) / bound, -1)
        idx = np.unravel_index(int(np.argmax(score)), err.shape)
        max_err = float(np.nanmax(np.where(np.isnan(err), np.inf, err)))
        pytest.fail(
            f"{where}: max error {max_err:.3g}; at {tuple(int(i) for i in idx)} got "
            f"{got[idx]!r}, expected {expected[idx]!r}, allowed {bound[idx]:.3g} "
            f"({int(bad.sum())} of {bad.size} elements out of bounds)"
        )


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _f64(*arrays_):
    return [np.asarray(a, dtype=np.float64) for a in arrays_]


def _settings_for(backend):
    return settings(max_examples=_limits(backend)[2])


# --- matmul ------------------------------------------------------------------------------------
def check_matmul(backend, dtype, a, b):
    snap = _snapshot(a, b)
    got = ops.matmul(a, b, backend=backend)
    _assert_untouched(snap, f"backend={backend} matmul")
    a64, b64 = _f64(a, b)
    K = a.shape[1]
    bound = C_ERR * _eps(dtype) * math.sqrt(K + 1) * (np.abs(a64) @ np.abs(b64)) + np.finfo(dtype).tiny
    assert_close(got, reference.matmul(a64, b64), bound, backend=backend, stage="matmul", dtype=dtype,
                 shape=(a.shape, b.shape))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matmul_matches_reference(backend, dtype):
    @_settings_for(backend)
    @given(data=st.data())
    def run(data):
        m, k, p = (data.draw(dims(backend), label=n) for n in "MKP")
        a = data.draw(arrays((m, k), dtype), label="a")
        b = data.draw(arrays((k, p), dtype), label="b")
        check_matmul(backend, dtype, a, b)

    run()


# --- rounding of the activations themselves ---------------------------------------------------
# |d act / d z| from the output a; relu and linear involve no exp, so no argument rounding.
SLOPES = {
    "linear": lambda a: np.zeros_like(a),
    "relu": lambda a: np.zeros_like(a),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a * a,
    "softmax": lambda a: a * (1 - a),
}


def activation_rounding(z64, a64, activation, dtype):
    """Bound on the error of act(z) for exact z: relative eps * |a|, plus the slope times eps|z|
    (an exp allowed to approximate, e.g. exp2(z * log2 e), rounds its argument, and exp's
    condition number is |z|), plus the smallest normal number (subnormal results may be
    rounded or flushed to zero)."""
    span = np.abs(z64)
    if activation == "softmax":  # exp(z - max z): arguments up to 2 max|z| of the row
        span = 2 * span.max(axis=1, keepdims=True)
    eps = C_ERR * _eps(dtype)
    return eps * (np.abs(a64) + span * np.abs(SLOPES[activation](a64))) + np.finfo(dtype).tiny * 4


# --- sigmoid -----------------------------------------------------------------------------------
def check_sigmoid(backend, dtype, z):
    snap = _snapshot(z)
    got = ops.sigmoid(z, backend=backend)
    _assert_untouched(snap, f"backend={backend} sigmoid")
    z64 = np.asarray(z, np.float64)
    expected = reference.sigmoid(z64)
    bound = activation_rounding(z64, expected, "sigmoid", dtype)
    assert_close(got, expected, bound, backend=backend, stage="sigmoid", dtype=dtype, shape=z.shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sigmoid_matches_reference(backend, dtype):
    @_settings_for(backend)
    @given(data=st.data())
    def run(data):
        m, p = (data.draw(dims(backend), label=n) for n in "MP")
        scale = data.draw(st.sampled_from([1.0, 10.0, 100.0, 1000.0]), label="scale")
        z = data.draw(arrays((m, p), dtype, scale), label="z")
        check_sigmoid(backend, dtype, z)

    run()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sigmoid_extremes_and_any_shape(backend, dtype):
    """Overflow-safe at +-1e4 and the dtype's max; 1-D and 3-D inputs keep their shape."""
    big = float(np.finfo(dtype).max)
    z = np.array([[-big, -1e4, -745.0, -100.0, -1.0, 0.0, 1.0, 100.0, 745.0, 1e4, big]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # the reference never overflows
        expected = reference.sigmoid(z.astype(np.float64))
    got = ops.sigmoid(z, backend=backend)
    assert np.all(np.isfinite(got)), f"backend={backend} sigmoid dtype={np.dtype(dtype).name}: {got}"
    bound = activation_rounding(z.astype(np.float64), expected, "sigmoid", dtype)
    assert_close(got, expected, bound,
                 backend=backend, stage="sigmoid-extremes", dtype=dtype, shape=z.shape)
    for shape in [(7,), (2, 3, 5)]:
        zz = np.linspace(-5, 5, int(np.prod(shape))).astype(dtype).reshape(shape)
        out = ops.sigmoid(zz, backend=backend)
        assert out.shape == shape and out.dtype == np.dtype(dtype), f"backend={backend} shape {shape}"
        np.testing.assert_allclose(out, reference.sigmoid(zz.astype(np.float64)), rtol=C_ERR * _eps(dtype),
                                   err_msg=f"backend={backend} sigmoid shape {shape}")


# --- dense forward -----------------------------------------------------------------------------
def forward_bound(x64, W64, b64, expected, activation, dtype):
    """Elementwise error bound on a = act(x @ W + b): the error of z passed through act
    (every activation here is 1-Lipschitz; softmax mixes the errors of a row), plus the
    rounding of the activation itself (relative, times exp's condition number 1 + |z|)."""
    K = x64.shape[1]
    zmag = np.abs(x64) @ np.abs(W64) + np.abs(b64)
    zerr = C_ERR * _eps(dtype) * math.sqrt(K + 2) * zmag
    if activation == "softmax":
        zerr = np.broadcast_to(zerr.max(axis=1, keepdims=True), zerr.shape)
    return zerr + activation_rounding(x64 @ W64 + b64, expected, activation, dtype)


def check_forward(backend, dtype, activation, x, W, b):
    snap = _snapshot(x, W, b)
    got = ops.dense_forward(x, W, b, activation, backend=backend)
    _assert_untouched(snap, f"backend={backend} dense_forward")
    x64, W64, b64 = _f64(x, W, b)
    expected = reference.dense_forward(x64, W64, b64, activation)
    assert_close(got, expected, forward_bound(x64, W64, b64, expected, activation, dtype),
                 backend=backend, stage=f"forward[{activation}]", dtype=dtype,
                 shape=(x.shape, W.shape))


def draw_layer(data, backend, dtype, activation, w_scale):
    """x (N, IN) and W (IN, OUT) of shapes drawn for `backend`, W entries ~ w_scale / sqrt(IN)."""
    n = data.draw(dims(backend, _limits(backend, activation == "softmax")[1]), label="N")
    n_in, n_out = (data.draw(dims(backend), label=s) for s in ("IN", "OUT"))
    x = data.draw(arrays((n, n_in), dtype), label="x")
    W = data.draw(arrays((n_in, n_out), dtype, w_scale / math.sqrt(n_in)), label="W")
    return x, W


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_forward_matches_reference(backend, dtype, activation):
    @_settings_for(backend)
    @given(data=st.data())
    def run(data):
        scale = data.draw(st.sampled_from([0.1, 1.0, 5.0]), label="w_scale")
        x, W = draw_layer(data, backend, dtype, activation, scale)
        b = data.draw(arrays((W.shape[1],), dtype), label="b")
        check_forward(backend, dtype, activation, x, W, b)

    run()


# --- dense backward ----------------------------------------------------------------------------
def backward_bounds(x64, W64, a64, da64, activation, dtype):
    """Bounds on dx, dW, db: |dz| magnitude (with the softmax row sum's terms) times the
    magnitudes summed by each product, eps(dtype) * sqrt(reduction length) * C_ERR."""
    N, OUT = a64.shape
    if activation == "softmax":
        dzmag = np.abs(a64) * (np.abs(da64) + np.sum(np.abs(a64 * da64), axis=1, keepdims=True))
    elif activation in ("sigmoid", "tanh"):
        # a (1 - a) and 1 - a^2 may be formed as a - a*a / 1 - a*a: the rounding of a*a counts
        dzmag = np.abs(DERIVATIVES[activation](a64, da64)) + np.abs(da64) * a64 * a64
    else:
        dzmag = np.abs(DERIVATIVES[activation](a64, da64))
    eps = C_ERR * _eps(dtype)
    tiny = np.finfo(dtype).tiny * 4
    return (
        eps * math.sqrt(OUT + 3) * (dzmag @ np.abs(W64).T) + tiny,
        eps * math.sqrt(N + 3) * (np.abs(x64).T @ dzmag) + tiny,
        eps * math.sqrt(N + 3) * dzmag.sum(axis=0) + tiny,
    )


def _forward_output(x, W, activation, dtype, rng):
    """A consistent forward output a (N, OUT) for the backward: relu gets some exact zeros."""
    b = rng.standard_normal(W.shape[1])
    x64, W64 = _f64(x, W)
    return reference.dense_forward(x64, W64, b, activation).astype(dtype)


def check_backward(backend, dtype, activation, x, W, a, da):
    snap = _snapshot(x, W, a, da)
    got = ops.dense_backward(x, W, a, da, activation, backend=backend)
    _assert_untouched(snap, f"backend={backend} dense_backward")
    assert isinstance(got, tuple) and len(got) == 3, (
        f"backend={backend}: expected (dx, dW, db), got {type(got)}"
    )
    x64, W64, a64, da64 = _f64(x, W, a, da)
    expected = reference.dense_backward(x64, W64, a64, da64, activation)
    bounds = backward_bounds(x64, W64, a64, da64, activation, dtype)
    for stage, g, e, bd in zip(("dx", "dW", "db"), got, expected, bounds):
        assert_close(g, e, bd, backend=backend, stage=f"{stage}[{activation}]", dtype=dtype,
                     shape=(x.shape, W.shape))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_dense_backward_matches_reference(backend, dtype, activation):
    @_settings_for(backend)
    @given(data=st.data())
    def run(data):
        x, W = draw_layer(data, backend, dtype, activation, 1.0)
        n, n_out = x.shape[0], W.shape[1]
        seed = data.draw(st.integers(0, 2**32 - 1), label="a_seed")
        a_values = _forward_output(x, W, activation, dtype, np.random.default_rng(seed))
        a = layout_2d(a_values, data.draw(st.sampled_from(list(LAYOUTS_2D)), label="a_layout"))
        da = data.draw(arrays((n, n_out), dtype, 1.0 / n), label="da")
        check_backward(backend, dtype, activation, x, W, a, da)

    run()


# --- one large case per backend (not drawn every time) ----------------------------------------
def _large_shape(backend):
    if _on_sim(backend):
        return None
    return (129, config.NUMBA_KC * 2 + 3, 261)  # several K blocks, ragged edges


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_large_layer_float32(backend, activation):
    shape = _large_shape(backend)
    if shape is None:
        pytest.skip("large shapes take minutes on the CUDA simulator; the same test runs on a GPU")
    n, n_in, n_out = shape
    rng = np.random.default_rng(7)
    dtype = np.float32
    x = layout_2d(rng.standard_normal((n, n_in)).astype(dtype), "rows")
    W = layout_2d((rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(dtype), "F")
    b = layout_1d(rng.standard_normal(n_out).astype(dtype), "C")
    check_matmul(backend, dtype, x, W)
    check_forward(backend, dtype, activation, x, W, b)
    a = _forward_output(x, W, activation, dtype, rng)
    da = (rng.standard_normal((n, n_out)) / n).astype(dtype)
    check_backward(backend, dtype, activation, x, W, a, da)


# --- the same answers whichever way the inputs are laid out ------------------------------------
def test_layout_does_not_change_the_answer(backend):
    """Contiguous and strided copies of the same values give results equal to rounding."""
    rng = np.random.default_rng(3)
    n, n_in, n_out = (5, 11, 9) if _on_sim(backend) else (17, 31, 13)
    xs = rng.standard_normal((n, n_in)).astype(np.float64)
    Ws = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
    bs = rng.standard_normal(n_out)
    want = ops.dense_forward(xs, Ws, bs, "tanh", backend=backend)
    for layout in LAYOUTS_2D:
        got = ops.dense_forward(layout_2d(xs, layout), layout_2d(Ws, layout), layout_1d(bs, "reversed"),
                                "tanh", backend=backend)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12,
                                   err_msg=f"backend={backend} layout={layout}")


# --- every tile edge, explicitly (hypothesis draws them only sometimes) -------------------------
def _tile_edges(backend):
    cap = _limits(backend)[0]
    return [t + d for t in _tiles(backend) for d in (-1, 0, 1) if t + d <= cap]


def test_every_tile_edge(backend):
    """M, K and P each at tile - 1, tile, tile + 1 of every tile in fastface.config."""
    rng = np.random.default_rng(11)
    dtype = np.float32
    for d in _tile_edges(backend):
        for n, k, p in [(d, 5, 3), (3, d, 2), (2, 7, d)]:
            x = layout_2d(rng.standard_normal((n, k)).astype(dtype), "cols")
            W = (rng.standard_normal((k, p)) / math.sqrt(k)).astype(dtype)
            b = rng.standard_normal(p).astype(dtype)
            check_matmul(backend, dtype, x, W)
            check_forward(backend, dtype, "relu", x, W, b)
            a = _forward_output(x, W, "sigmoid", dtype, rng)
            da = (rng.standard_normal((n, p)) / n).astype(dtype)
            check_backward(backend, dtype, "sigmoid", x, W, a, da)
