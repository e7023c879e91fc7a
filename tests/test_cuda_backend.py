"""The cuda backend against the NumPy reference, on a GPU or on Numba's CUDA simulator.

conftest.py switches the simulator on (NUMBA_ENABLE_CUDASIM=1) when there is no GPU, so these
tests run in CI; the very same tests run on a GPU. The simulator runs every CUDA thread as a
Python thread, so shapes stay small and the tile is shrunk to 4 (config.CUDA_TILE), which puts
1, 2, 3 = tile - 1, 4 = tile, 5 = tile + 1 and several-tile sizes within reach. The launch
grids are capped at 2 blocks a dimension so that the grid-stride loops are exercised too.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastface import backends, config, ops
from fastface.backends import BackendUnavailableError
from fastface.backends import cuda_backend as cb
from fastface.backends import reference as ref

ACTIVATIONS = ("linear", "sigmoid", "relu", "tanh", "softmax")
DTYPES = (np.float32, np.float64)
TILE = 4


def _cuda_or_skip():
    try:
        return backends.get("cuda")
    except BackendUnavailableError as exc:
        pytest.skip(f"neither a GPU nor the CUDA simulator can run here: {exc}")


@pytest.fixture
def cuda_backend(monkeypatch):
    """The cuda backend with a 4 x 4 tile, 4-thread row kernels and grids of <= 2 blocks."""
    module = _cuda_or_skip()
    monkeypatch.setattr(config, "CUDA_TILE", TILE)
    monkeypatch.setattr(config, "CUDA_THREADS", 4)
    monkeypatch.setattr(cb, "_MAX_GRID", 2)
    monkeypatch.setattr(cb, "SIM_MAX_GRID", 2)
    return module


def _device():
    from numba import cuda

    return cuda


def _rng(seed=0):
    return np.random.default_rng(seed)


def _strided(rng, shape, dtype):
    """An array of `shape` sliced from a larger one (non-trivial strides, not contiguous)."""
    big = rng.standard_normal(tuple(2 * n + 1 for n in shape)).astype(dtype)
    return big[tuple(slice(1, None, 2) for _ in shape)]


def _host(x):
    return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)


def _close(name, got, want, dtype, depth):
    """Compare got to the float64 reference want; tolerance scaled by dtype and reduction depth."""
    got = _host(got)
    assert got.shape == want.shape, f"cuda {name}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == np.dtype(dtype), f"cuda {name}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    eps = np.finfo(dtype).eps
    scale = max(1.0, float(np.nanmax(np.abs(want))) if want.size else 1.0)
    tol = 8 * eps * max(1, depth) * scale
    err = np.abs(got.astype(np.float64) - want)
    same_nan = np.isnan(got) == np.isnan(want)
    assert same_nan.all(), f"cuda {name} ({np.dtype(dtype)}): NaN pattern differs from the reference"
    worst = float(np.nanmax(err)) if err.size else 0.0
    assert worst <= tol, f"cuda {name} ({np.dtype(dtype)}): max error {worst:.3g} > tolerance {tol:.3g}"


def _layer(rng, N, IN, OUT, dtype, strided=False):
    make = (lambda s: _strided(rng, s, dtype)) if strided else (
        lambda s: rng.standard_normal(s).astype(dtype)
    )
    return make((N, IN)), make((IN, OUT)), make((OUT,))


# --- availability ----------------------------------------------------------------------------
def test_check_without_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setattr(cb, "cuda", None)
    monkeypatch.setattr(cb, "_IMPORT_ERROR", "ModuleNotFoundError: No module named 'numba.cuda'")
    with pytest.raises(BackendUnavailableError, match=r"pip install fastface\[cuda\]"):
        cb.check()


def test_check_without_gpu_mentions_the_simulator(monkeypatch):
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="NUMBA_ENABLE_CUDASIM=1"):
        cb.check()


def test_check_with_gpu_but_no_nvvm_says_how_to_install(monkeypatch):
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cb, "simulating", lambda: False)
    monkeypatch.setattr(cb, "_nvvm_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match=r"numba-cuda\[cu12\]"):
        cb.check()


def test_listed_as_available(cuda_backend):
    assert "cuda" in backends.available_backends()


# --- kernels against the reference (host arrays in, host arrays out) -------------------------
MATMUL_SHAPES = [(1, 1, 1), (2, 3, 5), (3, 4, 5), (5, 5, 4), (9, 6, 10), (4, 13, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul(cuda_backend, shape, dtype):
    M, K, P = shape
    rng = _rng(M * 100 + K * 10 + P)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, P)).astype(dtype)
    _close("matmul", cuda_backend.matmul(a, b), a.astype(np.float64) @ b, dtype, K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_overflow_safe_and_propagates_nan(cuda_backend, dtype):
    z = np.array(
        [[-1e30, -1000.0, -30.0, -1.0, -0.0], [0.0, 1.0, 30.0, 1000.0, 1e30], [np.inf, -np.inf, np.nan, 0.5, -0.5]]
    ).astype(dtype)
    with np.errstate(all="raise"):
        got = cuda_backend.sigmoid(z)
    _close("sigmoid", got, ref.sigmoid(z.astype(np.float64)), dtype, 1)
    assert got[0, 0] == 0.0 and got[1, 4] == 1.0 and got[2, 0] == 1.0 and got[2, 1] == 0.0


FORWARD_SHAPES = [(1, 1, 1), (3, 5, 4), (6, 3, 9)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward(cuda_backend, activation, dtype):
    for N, IN, OUT in FORWARD_SHAPES:
        x, W, b = _layer(_rng(N + IN + OUT), N, IN, OUT, dtype)
        want = ref.dense_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64), activation)
        got = cuda_backend.dense_forward(x, W, b, activation)
        _close(f"dense_forward[{activation}] {N}x{IN}x{OUT}", got, want, dtype, IN + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward(cuda_backend, activation, dtype):
    for N, IN, OUT in [(1, 2, 1), (9, 5, 6)]:
        rng = _rng(N * IN * OUT)
        x, W, b = _layer(rng, N, IN, OUT, dtype)
        x64, W64 = x.astype(np.float64), W.astype(np.float64)
        a = ref.dense_forward(x64, W64, b.astype(np.float64), activation).astype(dtype)
        da = rng.standard_normal((N, OUT)).astype(dtype)
        want = ref.dense_backward(x64, W64, a.astype(np.float64), da.astype(np.float64), activation)
        got = cuda_backend.dense_backward(x, W, a, da, activation)
        assert len(got) == 3
        for name, g, w, depth in zip(("dx", "dW", "db"), got, want, (OUT + 1, N + 1, N + 1)):
            _close(f"dense_backward[{activation}] {name} {N}x{IN}x{OUT}", g, w, dtype, depth)


@pytest.mark.parametrize("dtype", DTYPES)
def test_register_blocked_matmul_path(cuda_backend, monkeypatch, dtype):
    """Outputs of >= REG_BLOCK * TILE (16) rows and columns take the register-blocked kernel:
    matmul, the forward epilogue, and both transposed reads of the backward (dx, dW)."""
    from fastface.backends import _cuda_kernels as K

    launched = []
    real = K.matmul_rb
    monkeypatch.setattr(K, "matmul_rb", lambda *key: launched.append(key[3:5]) or real(*key))
    rng = _rng(8)
    M, Kd, P = 17, 6, 35  # 2 x 3 blocks of 16 x 16 outputs: edges and the grid-stride loop
    a = rng.standard_normal((M, Kd)).astype(dtype)
    b = rng.standard_normal((Kd, P)).astype(dtype)
    _close("matmul_rb", cuda_backend.matmul(a, b), a.astype(np.float64) @ b, dtype, Kd)
    N, IN, OUT = 18, 17, 16
    x, W, bias = _layer(rng, N, IN, OUT, dtype)
    x64, W64, b64 = (v.astype(np.float64) for v in (x, W, bias))
    got_a = cuda_backend.dense_forward(x, W, bias, "tanh")
    _close("dense_forward_rb", got_a, ref.dense_forward(x64, W64, b64, "tanh"), dtype, IN + 1)
    da = rng.standard_normal((N, OUT)).astype(dtype)
    a = got_a.astype(np.float64)
    want = ref.dense_backward(x64, W64, a, da.astype(np.float64), "tanh")
    got = cuda_backend.dense_backward(x, W, got_a, da, "tanh")
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        _close(f"dense_backward_rb {name}", g, w, dtype, N + OUT)
    assert {(False, False), (False, True), (True, False)} <= set(launched), launched


def test_softmax_rows_wider_and_narrower_than_the_block(cuda_backend):
    rng = _rng(3)
    for OUT in (1, 3, 4, 5, 11):  # block of 4 threads: below, at and past it
        x, W, b = _layer(rng, 3, 2, OUT, np.float64)
        x[0, 0] = 1000.0  # large logits: the max subtraction keeps exp finite
        got = cuda_backend.dense_forward(x, W, b, "softmax")
        _close(f"softmax OUT={OUT}", got, ref.dense_forward(x, W, b, "softmax"), np.float64, 3)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


def test_nan_propagates_like_numpy(cuda_backend):
    rng = _rng(4)
    x, W, b = _layer(rng, 3, 2, 5, np.float64)
    x[1, 0] = np.nan
    for activation in ACTIVATIONS:
        got = cuda_backend.dense_forward(x, W, b, activation)
        want = ref.dense_forward(x, W, b, activation)
        _close(f"dense_forward[{activation}] with NaN", got, want, np.float64, 3)
        assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2]]).any()


# --- strided host inputs ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_host_inputs(cuda_backend, dtype):
    rng = _rng(5)
    N, IN, OUT = 5, 3, 6
    x, W, b = _layer(rng, N, IN, OUT, dtype, strided=True)
    assert not x.flags["C_CONTIGUOUS"] and not W.flags["C_CONTIGUOUS"]
    Wt = np.ascontiguousarray(W.T).T  # Fortran-ordered view
    x64, W64, b64 = (v.astype(np.float64) for v in (x, W, b))
    _close("matmul strided", ops.matmul(x, Wt, backend="cuda"), x64 @ W64, dtype, IN)
    a = ops.dense_forward(x, Wt, b, "tanh", backend="cuda")
    _close("dense_forward strided", a, ref.dense_forward(x64, W64, b64, "tanh"), dtype, IN + 1)
    da = _strided(rng, (N, OUT), dtype)
    a_view = np.asfortranarray(a)
    want = ref.dense_backward(x64, W64, a.astype(np.float64), da.astype(np.float64), "tanh")
    got = ops.dense_backward(x, Wt, a_view, da, "tanh", backend="cuda")
    for name, g, w in zip(("dx", "dW", "db"), got, want):
        _close(f"dense_backward strided {name}", g, w, dtype, N + OUT)
    z = _strided(rng, (4, 3), dtype)
    _close("sigmoid strided", ops.sigmoid(z, backend="cuda"), ref.sigmoid(z.astype(np.float64)), dtype, 1)


# --- device arrays through fastface.ops: no host round trip, device arrays out ---------------
def _is_device(x):
    return not isinstance(x, np.ndarray) and hasattr(x, "__cuda_array_interface__")


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_arrays_in_and_out_through_ops(cuda_backend, dtype):
    cuda = _device()
    rng = _rng(6)
    N, IN, OUT = 6, 5, 3
    x, W, b = _layer(rng, N, IN, OUT, dtype)
    xd, Wd, bd = (cuda.to_device(v) for v in (x, W, b))
    x64, W64, b64 = (v.astype(np.float64) for v in (x, W, b))

    c = ops.matmul(xd, Wd)  # backend=None: device arrays go to cuda
    assert _is_device(c)
    _close("matmul device", c, x64 @ W64, dtype, IN)

    s = ops.sigmoid(xd)
    assert _is_device(s)
    _close("sigmoid device", s, ref.sigmoid(x64), dtype, 1)

    for activation in ("sigmoid", "softmax"):
        a = ops.dense_forward(xd, Wd, bd, activation)
        assert _is_device(a)
        want_a = ref.dense_forward(x64, W64, b64, activation)
        _close(f"dense_forward device [{activation}]", a, want_a, dtype, IN + 1)
        da = rng.standard_normal((N, OUT)).astype(dtype)
        grads = ops.dense_backward(xd, Wd, a, cuda.to_device(da), activation)
        want = ref.dense_backward(x64, W64, _host(a).astype(np.float64), da.astype(np.float64), activation)
        for name, g, w in zip(("dx", "dW", "db"), grads, want):
            assert _is_device(g), f"dense_backward device {name} came back as {type(g)}"
            _close(f"dense_backward device [{activation}] {name}", g, w, dtype, N + OUT)


def test_strided_device_arrays(cuda_backend):
    cuda = _device()
    rng = _rng(7)
    big_x = rng.standard_normal((11, 9))
    big_W = rng.standard_normal((7, 8))
    b = rng.standard_normal(4)
    x, W = big_x[1::2, ::3], big_W[::2, 1::2]  # (5, 3), (4, 4) -> use W[:3]
    W = W[:3]
    xd = cuda.to_device(big_x)[1::2, ::3]
    Wd = cuda.to_device(big_W)[::2, 1::2][:3]
    a = ops.dense_forward(xd, Wd, cuda.to_device(b), "relu")
    assert _is_device(a)
    want_a = ref.dense_forward(x, W, b, "relu")
    _close("dense_forward strided device", a, want_a, np.float64, 4)
    big_da = rng.standard_normal((5, 9))
    da_d = cuda.to_device(big_da)[:, ::2][:, :4]  # (5, 4) with a column stride of 2
    grads = ops.dense_backward(xd, Wd, a, da_d, "relu")
    want = ref.dense_backward(x, W, want_a, big_da[:, ::2][:, :4], "relu")
    for name, g, w in zip(("dx", "dW", "db"), grads, want):
        assert _is_device(g)
        _close(f"dense_backward strided device {name}", g, w, np.float64, 6)


def test_mixing_host_and_device_is_refused(cuda_backend):
    cuda = _device()
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="mixed"):
        ops.matmul(cuda.to_device(x), x.T.copy())


def test_foreign_device_arrays_refused_under_the_simulator(cuda_backend):
    if not cb.simulating():
        pytest.skip("only the simulator refuses foreign device arrays (a GPU takes them)")

    class Foreign:  # looks like a CuPy array / torch CUDA tensor: its pointer is GPU memory
        shape, ndim, dtype = (2, 2), 2, np.dtype(np.float32)
        __cuda_array_interface__ = {
            "shape": (2, 2), "typestr": "<f4", "data": (0, False), "version": 3, "strides": None
        }

    with pytest.raises(TypeError, match="simulator"):
        ops.matmul(Foreign(), Foreign())


# --- empty batches and zeros -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_host(cuda_backend, dtype):
    x = np.zeros((0, 3), dtype)
    W = np.ones((3, 2), dtype)
    a = ops.dense_forward(x, W, np.zeros(2, dtype), "softmax", backend="cuda")
    assert isinstance(a, np.ndarray) and a.shape == (0, 2) and a.dtype == dtype
    dx, dW, db = ops.dense_backward(x, W, a, a, "sigmoid", backend="cuda")
    assert (dx.shape, dW.shape, db.shape) == ((0, 3), (3, 2), (2,))
    assert not dW.any() and not db.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_device(cuda_backend, dtype):
    cuda = _device()
    x = cuda.to_device(np.zeros((0, 3), dtype))
    W = cuda.to_device(np.ones((3, 2), dtype))
    a = ops.dense_forward(x, W, cuda.to_device(np.zeros(2, dtype)), "sigmoid")
    assert _is_device(a) and a.shape == (0, 2)
    dx, dW, db = ops.dense_backward(x, W, a, a, "sigmoid")
    assert all(_is_device(g) for g in (dx, dW, db))
    assert (dx.shape, dW.shape, db.shape) == ((0, 3), (3, 2), (2,))
    assert not _host(dW).any() and not _host(db).any()
    c = ops.matmul(cuda.to_device(np.ones((3, 0), dtype)), cuda.to_device(np.ones((0, 4), dtype)))
    assert _is_device(c) and _host(c).shape == (3, 4) and not _host(c).any()


def test_zeros(cuda_backend):
    for shape, dtype in (((5, 7), np.float32), ((9,), np.float64), ((2, 3, 2), np.float32), ((0, 4), np.float64)):
        z = cuda_backend.zeros(shape, dtype)
        assert _is_device(z)
        host = _host(z)
        assert host.shape == shape and host.dtype == dtype and not host.any()


# --- tunables are validated ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,value",
    [("CUDA_TILE", 0), ("CUDA_TILE", 33), ("CUDA_TILE", 2.5), ("CUDA_THREADS", 0), ("CUDA_THREADS", 2048)],
)
def test_bad_tunables_are_refused(cuda_backend, monkeypatch, name, value):
    monkeypatch.setattr(config, name, value)
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match=name):
        cuda_backend.dense_forward(x, x, np.ones(2, np.float32), "softmax")


def test_launch_shape_follows_config(cuda_backend, monkeypatch):
    """Tiles and row-kernel threads come from config at launch; the simulator caps them."""
    monkeypatch.setattr(config, "CUDA_TILE", 16)
    monkeypatch.setattr(config, "CUDA_THREADS", 128)
    if cb.simulating():
        assert cb._tile() == cb.SIM_MAX_TILE and cb._threads(100) == cb.SIM_MAX_THREADS
    else:
        assert cb._tile() == 16 and cb._threads() == 128
        assert cb._threads(20) == 32 and cb._threads(3) == cb.WARP  # a row never gets idle warps
    monkeypatch.setattr(config, "CUDA_TILE", 3)
    assert cb._tile() == 3


# --- property test: random small layers, every activation, both dtypes -----------------------
@settings(max_examples=6)
@given(
    N=st.integers(1, 7),
    IN=st.integers(1, 6),
    OUT=st.integers(1, 6),
    activation=st.sampled_from(ACTIVATIONS),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_random_layers_match_reference(N, IN, OUT, activation, dtype, seed):
    module = _cuda_or_skip()
    old = config.CUDA_TILE, config.CUDA_THREADS
    config.CUDA_TILE, config.CUDA_THREADS = TILE, 4
    try:
        rng = _rng(seed)
        x, W, b = _layer(rng, N, IN, OUT, dtype, strided=True)
        x64, W64, b64 = (v.astype(np.float64) for v in (x, W, b))
        a = module.dense_forward(np.ascontiguousarray(x), np.ascontiguousarray(W), b, activation)
        want_a = ref.dense_forward(x64, W64, b64, activation)
        _close(f"dense_forward[{activation}] {N}x{IN}x{OUT}", a, want_a, dtype, IN + 1)
        da = rng.standard_normal((N, OUT)).astype(dtype)
        got = ops.dense_backward(x, W, a, da, activation, backend="cuda")
        want = ref.dense_backward(x64, W64, a.astype(np.float64), da.astype(np.float64), activation)
        for name, g, w in zip(("dx", "dW", "db"), got, want):
            _close(f"dense_backward[{activation}] {name} {N}x{IN}x{OUT}", g, w, dtype, N + OUT + 1)
    finally:
        config.CUDA_TILE, config.CUDA_THREADS = old


def test_simulator_shared_arrays_are_one_per_line_when_threads_race(cuda_backend, monkeypatch):
    """A block's threads reaching the same cuda.shared.array line at once get one array. The
    simulator looks the line's array up and allocates it without a lock, so two threads could
    each allocate their own (a wrong dW in a CI run); the backend installs a locked version.
    A slow allocation widens the window: the simulator's own version then hands out several."""
    if not cb.simulating():
        pytest.skip("on a GPU shared memory is the hardware's; only the simulator allocates it in Python")
    import threading
    import time

    from numba.cuda.simulator import kernelapi

    class SlowEmpty:  # numpy, but each np.empty lets the other threads run first
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(*args, **kwargs):
            time.sleep(0.001)
            return np.empty(*args, **kwargs)

    monkeypatch.setattr(kernelapi, "np", SlowEmpty())
    monkeypatch.setattr(cb, "np", SlowEmpty())
    shared = kernelapi.FakeCUDAShared(0)
    n = 16
    start = threading.Barrier(n)
    got = [None] * n

    def thread(i):
        start.wait()
        got[i] = shared.array((4, 5), np.float32)  # one line: one array for the block

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(a) for a in got}) == 1
    assert got[0].shape == (4, 5) and got[0].dtype == np.float32


# --- PyTorch CUDA tensors (zero-copy through __cuda_array_interface__) ------------------------
def test_torch_cuda_tensors(cuda_backend):
    if cb.simulating():
        pytest.skip("PyTorch CUDA tensors need a real GPU; the CUDA simulator is on (no GPU here)")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install fastface[torch])")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA GPU (CPU-only build or no driver)")
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(7, 5, generator=gen).cuda()
    W = torch.randn(5, 6, generator=gen).cuda()
    b = torch.randn(6, generator=gen).cuda()
    a = ops.dense_forward(x, W, b, "sigmoid")
    assert _is_device(a)
    a_t = torch.as_tensor(a, device="cuda")  # zero-copy view of the result
    want = torch.sigmoid(x.double() @ W.double() + b.double()).cpu().numpy()
    _close("dense_forward torch", a_t.cpu().numpy(), want, np.float32, 6)
    da = torch.randn(7, 6, generator=gen).cuda()
    dx, dW, db = ops.dense_backward(x, W, a_t, da, "sigmoid")
    want = ref.dense_backward(*(t.double().cpu().numpy() for t in (x, W, a_t, da)), "sigmoid")
    for name, g, w in zip(("dx", "dW", "db"), (dx, dW, db), want):
        _close(f"dense_backward torch {name}", g, w, np.float32, 8)
