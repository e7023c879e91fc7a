"""C backend (csrc/ via cffi): status codes, strides, SIMD levels, edges of the blocking.

Cross-backend property tests live in tests/test_ops.py; this file tests what is specific
to the C code: the library called directly (bad sizes, NULL, strides, error codes), every
SIMD level this CPU runs against the float64 reference and the C naive matmul, shapes
around the micro-tile and the cache blocks (shrunk through ff_config so small shapes reach
every edge), and the wrapper's no-copy view handling.

Tolerances: a float matmul with reduction length K has |error| <= ~K eps (|A| @ |B|); the
checks use 2 (K + 2) eps (|A| @ |B|) elementwise, eps of the dtype.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastface import backends
from fastface.backends import BackendUnavailableError
from fastface.backends import reference as ref

REPO = Path(__file__).resolve().parents[1]

try:
    C = backends.get("c")
except BackendUnavailableError as exc:  # pragma: no cover - depends on the install
    C = None
    _WHY = str(exc)


def test_extension_is_built_where_a_compiler_exists():
    """With a C compiler on PATH the extension must have been built (pip install -e .)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on PATH: the c backend is legitimately unavailable")
    assert C is not None, (
        f"{_WHY if C is None else ''} -- build it with `pip install -e .` "
        "or `python csrc/ffi_build.py`"
    )


pytestmark_c = pytest.mark.skipif(C is None, reason="the C extension is not built here")

if C is not None:
    ffi, lib = C.ffi, C.lib
    LEVELS = list(range(lib.ff_simd_best() + 1))
else:  # pragma: no cover
    ffi = lib = None
    LEVELS = [0]

DTYPES = [np.float32, np.float64]
SUFFIX = {np.float32: "f32", np.float64: "f64"}
CTYPE = {np.float32: "float *", np.float64: "double *"}


def _ptr(arr):
    return ffi.cast(CTYPE[arr.dtype.type], arr.ctypes.data) if arr is not None else ffi.NULL


def _strides(arr):
    return tuple(s // arr.itemsize for s in arr.strides)


def _cfg(simd=-1, mc=0, kc=0, nc=0):
    return ffi.new("ff_config *", {"simd": simd, "mc": mc, "kc": kc, "nc": nc})


def _lib_matmul(a, b, cfg=None, naive=False):
    """Call ff_matmul[_naive]_{f32,f64} on NumPy views; return (status, C)."""
    (M, K), N = a.shape, b.shape[1]
    c = np.full((M, N), np.nan, dtype=a.dtype)
    args = (M, N, K, _ptr(a), *_strides(a), _ptr(b), *_strides(b), _ptr(c), N)
    suf = SUFFIX[a.dtype.type]
    if naive:
        rc = getattr(lib, f"ff_matmul_naive_{suf}")(*args)
    else:
        rc = getattr(lib, f"ff_matmul_{suf}")(*args, cfg if cfg is not None else ffi.NULL)
    return rc, c


def _assert_matmul_close(c, a, b, what):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = a64 @ b64
    bound = np.abs(a64) @ np.abs(b64)
    eps = np.finfo(a.dtype).eps
    K = a.shape[1]
    err = np.abs(c.astype(np.float64) - exact)
    tol = 2 * (K + 2) * eps * bound + np.finfo(a.dtype).tiny
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else None
    assert np.all(err <= tol), (
        f"{what}: {a.dtype} ({a.shape[0]}x{K}) @ (Kx{b.shape[1]}) max error {err.max():.3g}, "
        f"at {worst} error {err[worst]:.3g} > tolerance {tol[worst]:.3g}"
    )


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---- the header is the cdef ------------------------------------------------------------------
def _load_builder():
    spec = importlib.util.spec_from_file_location("_ff_build", REPO / "csrc" / "ffi_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytestmark_c
def test_every_declaration_in_the_header_is_in_the_library():
    builder = _load_builder()
    cdef = builder.read_cdef()
    assert "#" not in "".join(line.split("/*")[0] for line in cdef.splitlines())
    names = set(__import__("re").findall(r"\b(ff_\w+)\s*\(", cdef))
    assert {"ff_matmul_f32", "ff_matmul_naive_f64", "ff_strerror", "ff_dense_backward_f64"} <= names
    missing = [n for n in sorted(names) if not hasattr(lib, n)]
    assert not missing, f"declared in csrc/fastface.h but not in the built library: {missing}"


# ---- status codes ---------------------------------------------------------------------------
@pytestmark_c
def test_strerror_has_a_sentence_for_every_code():
    codes = ["FF_OK", "FF_ERR_NULL", "FF_ERR_SHAPE", "FF_ERR_STRIDE", "FF_ERR_ARG", "FF_ERR_SIMD",
             "FF_ERR_NOMEM"]
    messages = [ffi.string(lib.ff_strerror(getattr(lib, name))).decode() for name in codes]
    assert len(set(messages)) == len(codes) and all(len(m) > 5 for m in messages)
    assert "unknown" in ffi.string(lib.ff_strerror(12345)).decode()


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_status_codes(dtype):
    suf = SUFFIX[dtype]
    f, naive = getattr(lib, f"ff_matmul_{suf}"), getattr(lib, f"ff_matmul_naive_{suf}")
    a = np.ones((4, 3), dtype)
    b = np.ones((3, 5), dtype)
    c = np.zeros((4, 5), dtype)
    pa, pb, pc = _ptr(a), _ptr(b), _ptr(c)
    N = ffi.NULL
    for fn, extra in ((f, (N,)), (naive, ())):
        assert fn(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, *extra) == lib.FF_OK
        assert fn(-1, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, *extra) == lib.FF_ERR_SHAPE
        assert fn(4, 5, -3, pa, 3, 1, pb, 5, 1, pc, 5, *extra) == lib.FF_ERR_SHAPE
        assert fn(4, 5, 3, N, 3, 1, pb, 5, 1, pc, 5, *extra) == lib.FF_ERR_NULL
        assert fn(4, 5, 3, pa, 3, 1, N, 5, 1, pc, 5, *extra) == lib.FF_ERR_NULL
        assert fn(4, 5, 3, pa, 3, 1, pb, 5, 1, N, 5, *extra) == lib.FF_ERR_NULL
        assert fn(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 4, *extra) == lib.FF_ERR_STRIDE
        assert fn(4, 5, 3, pa, 2**62, 1, pb, 5, 1, pc, 5, *extra) == lib.FF_ERR_SHAPE
        assert fn(4, 5, 3, pa, 3, 1, pb, -(2**63), 1, pc, 5, *extra) == lib.FF_ERR_SHAPE
        # empty problems touch nothing, NULL allowed
        assert fn(0, 5, 3, N, 3, 1, pb, 5, 1, N, 5, *extra) == lib.FF_OK
    np.testing.assert_array_equal(c, a @ b)
    # K = 0 gives zeros
    c[:] = 7
    assert f(4, 5, 0, N, 0, 1, N, 5, 1, pc, 5, N) == lib.FF_OK
    assert not c.any()
    # bad configuration
    assert f(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, _cfg(mc=-1)) == lib.FF_ERR_ARG
    assert f(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, _cfg(simd=7)) == lib.FF_ERR_ARG
    assert f(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, _cfg(simd=-2)) == lib.FF_ERR_ARG
    if lib.ff_simd_best() < lib.FF_SIMD_AVX512:
        assert f(4, 5, 3, pa, 3, 1, pb, 5, 1, pc, 5, _cfg(simd=2)) == lib.FF_ERR_SIMD


@pytestmark_c
def test_matmul_reports_out_of_memory_instead_of_crashing():
    # 2^40 x 2^40 @ (2^40 x 1) through zero strides (a one-element buffer), blocks of 2^24:
    # the packing buffer (2^48 floats) cannot be allocated, which C reports before reading.
    one = np.ones(1, np.float32)
    out = np.zeros(1, np.float32)
    big = 2**40
    rc = lib.ff_matmul_f32(big, 1, big, _ptr(one), 0, 0, _ptr(one), 0, 0, _ptr(out), 1,
                           _cfg(mc=2**24, kc=2**24))
    assert rc == lib.FF_ERR_NOMEM


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_and_dense_status_codes(dtype):
    suf = SUFFIX[dtype]
    z = np.zeros((3, 4), dtype)
    pz, N = _ptr(z), ffi.NULL
    assert getattr(lib, f"ff_sigmoid_{suf}")(3, 4, pz, 4, 1, pz, 4) == lib.FF_OK
    assert getattr(lib, f"ff_sigmoid_{suf}")(3, 4, N, 4, 1, pz, 4) == lib.FF_ERR_NULL
    assert getattr(lib, f"ff_sigmoid_{suf}")(3, -4, pz, 4, 1, pz, 4) == lib.FF_ERR_SHAPE
    assert getattr(lib, f"ff_sigmoid_backward_{suf}")(3, 4, pz, 4, 1, pz, 4, 1, pz, 3) == lib.FF_ERR_STRIDE
    assert getattr(lib, f"ff_bias_act_{suf}")(3, 4, pz, 4, N, 1, 99) == lib.FF_ERR_ARG
    assert getattr(lib, f"ff_bias_act_{suf}")(3, 4, pz, 4, N, 1, lib.FF_ACT_TANH) == lib.FF_OK
    assert getattr(lib, f"ff_act_backward_{suf}")(3, 4, -1, pz, 4, 1, pz, 4, 1, pz, 4, N) == lib.FF_ERR_ARG
    fwd = getattr(lib, f"ff_dense_forward_{suf}")
    assert fwd(3, 4, 4, pz, 4, 1, pz, 4, 1, N, 0, 99, pz, 4, N) == lib.FF_ERR_ARG
    w = np.zeros((4, 2), dtype)
    out = np.zeros((3, 2), dtype)
    assert fwd(3, 4, 2, pz, 4, 1, _ptr(w), 2, 1, N, 0, 1, _ptr(out), 2, N) == lib.FF_OK
    np.testing.assert_array_equal(out, 0.5)
    assert fwd(3, 4, 2, pz, 4, 1, N, 2, 1, N, 0, 1, _ptr(out), 2, N) == lib.FF_ERR_NULL
    bwd = getattr(lib, f"ff_dense_backward_{suf}")
    a = np.zeros((3, 2), dtype)
    dz, dx, dW = np.zeros((3, 2), dtype), np.zeros((3, 4), dtype), np.zeros((4, 2), dtype)
    args = [3, 4, 2, pz, 4, 1, _ptr(w), 2, 1, _ptr(a), 2, 1, _ptr(a), 2, 1, 1,
            _ptr(dz), 2, _ptr(dx), 4, _ptr(dW), 2, _ptr(np.zeros(2, dtype)), N]
    assert bwd(*args) == lib.FF_OK
    bad = list(args)
    bad[22] = N  # db
    assert bwd(*bad) == lib.FF_ERR_NULL
    bad = list(args)
    bad[19] = 3  # lddx < IN
    assert bwd(*bad) == lib.FF_ERR_STRIDE


@pytestmark_c
def test_c_status_becomes_exception_with_the_c_message():
    with pytest.raises(ValueError, match=r"c backend matmul: .*NULL pointer.*C status 1"):
        C._raise_for(lib.FF_ERR_NULL, "matmul")
    with pytest.raises(MemoryError, match="out of memory"):
        C._raise_for(lib.FF_ERR_NOMEM, "matmul")
    C._raise_for(lib.FF_OK, "matmul")


# ---- correctness: every SIMD level, shapes around the tiles and blocks ------------------------
def _edge_sizes(tile):
    return sorted({1, 2, tile - 1, tile, tile + 1, 2 * tile + 3})


@pytestmark_c
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_around_micro_tile_and_blocks(level, dtype):
    mr, nr = ffi.new("int *"), ffi.new("int *")
    assert lib.ff_micro_tile(np.dtype(dtype).itemsize, level, mr, nr) == lib.FF_OK
    mr, nr = mr[0], nr[0]
    rng = np.random.default_rng(level)
    # Tiny blocks (two micro-tiles, depth 7) so these small shapes cross every block edge.
    cfg = _cfg(simd=level, mc=2 * mr, kc=7, nc=2 * nr)
    for M in _edge_sizes(mr) + [3 * mr + 5]:
        for N in _edge_sizes(nr):
            for K in (1, 6, 7, 8, 23):
                a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
                rc, c = _lib_matmul(a, b, cfg)
                assert rc == lib.FF_OK
                _assert_matmul_close(c, a, b, f"level {level} blocked M={M} N={N} K={K}")
    # default blocks: K above kc (accumulation across blocks), N above the in-place-A limit
    a, b = _rand(rng, (61, 300), dtype), _rand(rng, (300, 270), dtype)
    rc, c = _lib_matmul(a, b, _cfg(simd=level))
    assert rc == lib.FF_OK
    _assert_matmul_close(c, a, b, f"level {level} default blocks")


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_naive_matmul_matches_reference(dtype):
    rng = np.random.default_rng(1)
    for M, K, N in ((1, 1, 1), (2, 3, 5), (13, 17, 11), (40, 1, 3)):
        a, b = _rand(rng, (M, K), dtype), _rand(rng, (K, N), dtype)
        rc, c = _lib_matmul(a, b, naive=True)
        assert rc == lib.FF_OK
        _assert_matmul_close(c, a, b, "naive")


@pytestmark_c
@given(
    M=st.integers(1, 40), K=st.integers(1, 40), N=st.integers(1, 70),
    level=st.sampled_from(LEVELS), dtype=st.sampled_from(DTYPES),
    mc=st.integers(0, 50), kc=st.integers(0, 9), nc=st.integers(0, 80),
    trans_a=st.booleans(), trans_b=st.booleans(), step=st.integers(1, 3),
)
def test_matmul_property_views_levels_blocks(M, K, N, level, dtype, mc, kc, nc, trans_a, trans_b, step):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    big_a = _rand(rng, (K * step + 1, M * step + 2) if trans_a else (M * step + 1, K * step + 2), dtype)
    big_b = _rand(rng, (N * step, K * step + 1) if trans_b else (K * step, N * step + 1), dtype)
    a = big_a[1::step, 2::step][:K, :M].T if trans_a else big_a[1::step, 2::step][:M, :K]
    b = big_b[::step, 1::step][:N, :K].T if trans_b else big_b[::step, 1::step][:K, :N]
    rc, c = _lib_matmul(a, b, _cfg(simd=level, mc=mc, kc=kc, nc=nc))
    assert rc == lib.FF_OK
    _assert_matmul_close(c, a, b, f"level {level} mc={mc} kc={kc} nc={nc} views")
    rc, c2 = _lib_matmul(a, b, naive=True)
    _assert_matmul_close(c2, a, b, "naive views")


# ---- the Python wrapper: views reach C without a copy, odd arrays are copied -------------------
@pytest.fixture
def c_options():
    yield C
    C.set_options()


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_wrapper_matmul_views(dtype, c_options):
    rng = np.random.default_rng(2)
    base = _rand(rng, (60, 80), dtype)
    views = {
        "sliced": (base[3:40:2, 1:70:3], base[5:28, 10:60:2]),
        "transposed": (base[:30, :23].T, base[:30, 30:55]),
        "negative": (base[40:10:-1, ::-2][:, :19], base[:19, ::-3]),
        "broadcast": (np.broadcast_to(base[0, :11], (9, 11)), base[:11, :5]),
        "fortran": (np.asfortranarray(base[:17, :9]), np.asfortranarray(base[:9, :33])),
    }
    for level in LEVELS:
        c_options.set_options(simd=list(C.SIMD_LEVELS)[level])
        for name, (a, b) in views.items():
            _assert_matmul_close(C.matmul(a, b), a, b, f"wrapper {name} level {level}")
            _assert_matmul_close(C.matmul_naive(a, b), a, b, f"wrapper naive {name}")
    # byte-swapped and misaligned arrays cannot be addressed element by element: copied
    swapped = base[:7, :5].astype(np.dtype(dtype).newbyteorder(">"))
    raw = np.zeros(7 * 5 * np.dtype(dtype).itemsize + 1, np.uint8)[1:]
    misaligned = raw.view(dtype).reshape(7, 5)
    misaligned[...] = base[:7, :5]
    assert not misaligned.flags.aligned
    for odd in (swapped, misaligned):
        _assert_matmul_close(C.matmul(odd, base[:5, :4]), base[:7, :5], base[:5, :4], "copied")


@pytestmark_c
def test_wrapper_passes_contiguous_and_views_without_copy(monkeypatch):
    seen = []
    real = np.ascontiguousarray
    monkeypatch.setattr(np, "ascontiguousarray", lambda *a, **k: seen.append(1) or real(*a, **k))
    base = np.ones((20, 20), np.float32)
    C.matmul(base, base[::2, ::3].T[:10, :5][:, ::-1])
    assert not seen, "a strided float view was copied on its way to C"


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["linear", "sigmoid", "relu", "tanh", "softmax"])
def test_dense_forward_backward_match_reference(dtype, activation, c_options):
    rng = np.random.default_rng(3)
    N, IN, OUT = 37, 61, 29  # around the micro-tiles of every level, none a multiple
    xb, Wb = _rand(rng, (N + 5, 2 * IN), dtype), _rand(rng, (OUT, IN + 3), dtype)
    x, W = xb[5:, ::2], Wb[:, 3:].T  # strided and transposed views
    b = _rand(rng, 2 * OUT, dtype)[::2]
    eps = np.finfo(dtype).eps
    x64, W64, b64 = x.astype(np.float64), W.astype(np.float64), b.astype(np.float64)
    want = ref.dense_forward(x64, W64, b64, activation)
    da = _rand(rng, (N, OUT), dtype)
    for level in LEVELS:
        c_options.set_options(simd=list(C.SIMD_LEVELS)[level])
        a = C.dense_forward(x, W, b, activation)
        assert a.dtype == dtype and a.shape == (N, OUT)
        scale = np.abs(x64) @ np.abs(W64) + np.abs(b64)
        err = np.abs(a - want).max()
        assert err <= 4 * (IN + 4) * eps * scale.max(), f"level {level} forward {activation}: {err:.3g}"
        got = C.dense_backward(x, W, a, da, activation)
        exp = ref.dense_backward(x64, W64, a.astype(np.float64), da.astype(np.float64), activation)
        for name, g, e, k in zip(("dx", "dW", "db"), got, exp, (OUT, N, N)):
            assert g.dtype == dtype and g.shape == e.shape
            tol = 8 * (k + 4) * eps * max(1.0, np.abs(e).max()) * np.abs(da).max()
            assert np.abs(g - e).max() <= tol, (
                f"level {level} backward {activation} {name}: max error {np.abs(g - e).max():.3g}"
            )


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_overflow_safe_and_nan_propagation(dtype):
    z = np.array([[-1e4, -800.0, -88.0, -1.0, -0.0, 0.0, 1.0, 88.0, 800.0, 1e4],
                  [np.inf, -np.inf, np.nan, 0.5, -0.5, 20, -20, 40, -40, 3]], dtype)
    got = C.sigmoid(z)
    with np.errstate(over="raise", under="ignore", invalid="ignore"):
        want = ref.sigmoid(z)
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps, atol=0)
    assert got[0, 0] == 0 and got[0, -1] == 1 and got[1, 0] == 1 and got[1, 1] == 0
    assert np.isnan(got[1, 2])
    # strided view (a column slice read with a stride)
    np.testing.assert_allclose(C.sigmoid(z.T[::2]), ref.sigmoid(z.T[::2]), rtol=4 * np.finfo(dtype).eps)
    a, da = ref.sigmoid(z[:, 3:]), np.ones((2, 7), dtype)[:, ::-1]
    np.testing.assert_allclose(C.sigmoid_backward(a, da), da * a * (1 - a), rtol=2 * np.finfo(dtype).eps)


@pytestmark_c
def test_activations_propagate_nan_and_inf_like_numpy():
    x = np.array([[np.nan, 1.0], [2.0, 3.0], [np.inf, 1.0]])
    W = np.eye(2)
    b = np.zeros(2)
    for activation in ("linear", "sigmoid", "relu", "tanh", "softmax"):
        with np.errstate(invalid="ignore"):
            want = ref.dense_forward(x, W, b, activation)
        got = C.dense_forward(x, W, b, activation)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=activation)
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-15)


@pytestmark_c
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sizes_give_the_reference_shapes_and_values(dtype):
    e = np.ones((0, 3), dtype)
    assert C.matmul(e, np.ones((3, 2), dtype)).shape == (0, 2)
    np.testing.assert_array_equal(C.matmul(np.ones((2, 0), dtype), np.ones((0, 3), dtype)), np.zeros((2, 3)))
    assert C.sigmoid(np.ones((3, 0), dtype)).shape == (3, 0)
    for activation in ("sigmoid", "softmax"):
        got = C.dense_backward(e, np.ones((3, 2), dtype), np.ones((0, 2), dtype), np.ones((0, 2), dtype), activation)
        want = ref.dense_backward(e, np.ones((3, 2), dtype), np.ones((0, 2), dtype), np.ones((0, 2), dtype), activation)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == dtype
            np.testing.assert_array_equal(g, w)


@pytestmark_c
def test_calls_from_threads_are_independent():
    rng = np.random.default_rng(4)
    pairs = [(_rand(rng, (50 + i, 70), np.float32), _rand(rng, (70, 40 + i), np.float32)) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: C.matmul(*p), pairs))
    for (a, b), c in zip(pairs, results):
        _assert_matmul_close(c, a, b, "threaded")


# ---- availability and options ----------------------------------------------------------------
@pytestmark_c
def test_options_and_info(c_options):
    info = C.info()
    assert info["simd"] == info["simd_best"] in C.SIMD_LEVELS
    with pytest.raises(ValueError, match="unknown SIMD level 'avx3'"):
        C.set_options(simd="avx3")
    with pytest.raises(ValueError, match="mc must be an integer >= 0"):
        C.set_options(mc=-3)
    C.set_options(simd="scalar", mc=8, kc=3, nc=16)
    assert C.info()["simd"] == "scalar"
    a = np.arange(600, dtype=np.float64).reshape(20, 30) / 100
    _assert_matmul_close(C.matmul(a, a.T), a, a.T, "scalar small blocks")


def test_unbuilt_extension_reports_the_reason(monkeypatch):
    from fastface.backends import c_backend

    monkeypatch.setattr(c_backend, "_IMPORT_ERROR", ModuleNotFoundError("No module named 'fastface._cfastface'"))
    with pytest.raises(BackendUnavailableError, match="was not built.*C compiler.*reinstall"):
        c_backend.check()
    monkeypatch.setattr(c_backend, "_IMPORT_ERROR", ImportError("undefined symbol: ff_x"))
    with pytest.raises(BackendUnavailableError, match="could not be loaded.*undefined symbol"):
        c_backend.check()


@pytestmark_c
def test_bad_simd_environment_variable_makes_the_backend_unavailable_with_reason():
    env = dict(os.environ, FASTFACE_C_SIMD="avx3", PYTHONPATH=str(REPO))
    code = "import fastface as ff; print(ff.unavailable_backends().get('c'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    assert "FASTFACE_C_SIMD='avx3' is invalid" in out.stdout


@pytestmark_c
def test_ops_reaches_the_c_backend():
    import fastface as ff

    assert "c" in ff.available_backends()
    rng = np.random.default_rng(5)
    x, W, b = _rand(rng, (32, 400), np.float32), _rand(rng, (400, 25), np.float32) / 20, np.zeros(25, np.float32)
    a = ff.ops.dense_forward(x, W, b, "sigmoid", backend="c")
    np.testing.assert_allclose(a, ref.dense_forward(x, W, b, "sigmoid"), rtol=1e-5, atol=1e-6)
    dx, dW, db = ff.ops.dense_backward(x, W, a, np.ones_like(a), "sigmoid", backend="c")
    assert dx.shape == (32, 400) and dW.shape == (400, 25) and db.shape == (25,)
