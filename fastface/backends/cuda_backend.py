"""The ``cuda`` backend: Numba CUDA kernels (fastface/backends/_cuda_kernels.py) + host wrappers.

Dimensions:
    N    examples in the batch (rows)
    IN   input features
    OUT  units of the layer
    M, K, P  matmul: (M, K) @ (K, P)
    T    config.CUDA_TILE (square shared-memory tile; matmul blocks are T x T threads)
    R    config.CUDA_THREADS (threads per block of the row-wise and elementwise kernels)

Arrays in, arrays out:
    * NumPy inputs are made C-contiguous, copied to the device, computed on, and the results
      come back as NumPy arrays.
    * Device inputs (anything with ``__cuda_array_interface__``: Numba device arrays, CuPy
      arrays, PyTorch CUDA tensors; strided views too) are used in place through
      ``cuda.as_cuda_array`` (no host round trip) and results are Numba device arrays, which
      expose ``__cuda_array_interface__`` themselves (``torch.as_tensor(out, device="cuda")``,
      ``cupy.asarray(out)`` wrap them without a copy).

Streams: kernels run on the default stream, so device results are ordered with work queued
on the legacy default stream (PyTorch's and CuPy's default); ``cuda.as_cuda_array``
synchronises the stream a foreign input names in its interface before it is read.

Kernels per call:
    matmul          1 tiled matmul (register-blocked for outputs of >= REG_BLOCK * T rows
                    and columns, see _use_register_blocking)
    sigmoid         1 elementwise kernel
    dense_forward   1 tiled matmul with bias + activation fused in its epilogue
                    (+ 1 row-wise kernel for softmax)
    dense_backward  dz_colsum (dz = act'(a) * da fused with db, or softmax_dz then a column
                    sum), then dx = dz @ W.T and dW = x.T @ dz through the tiled matmul
                    reading the transposed operand in place

Inputs arrive validated by :mod:`fastface.ops` (float32/float64, one dtype, shapes checked,
every dimension >= 1). Every kernel bounds-checks its indices and grid-strides over its
output, so no validated input can make a kernel read or write out of bounds, whatever the
grid size. ``config.CUDA_TILE`` and ``config.CUDA_THREADS`` are read at each launch.

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before numba is imported) runs the very same
kernels on the CPU, slowly; tests use it with small shapes. The simulator's fake device
arrays lack ``__cuda_array_interface__``; this module gives them one (describing the host
buffer that plays device memory there) so that ``fastface.ops`` routes them here as it
routes real device arrays. Foreign device arrays (CuPy, PyTorch) are refused under the
simulator: their pointers would be real GPU memory.
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache

import numpy as np

from .. import config
from . import BackendUnavailableError

NAME = "cuda"

try:  # numba-cuda is an optional extra
    from numba import cuda
except ImportError as _exc:  # pragma: no cover - depends on the install
    cuda = None
    _IMPORT_ERROR = f"{type(_exc).__name__}: {_exc}"
else:
    _IMPORT_ERROR = ""

_MAX_GRID = 65535  # gridDim.y / .z limit; also plenty for x since every kernel grid-strides


@lru_cache(maxsize=1)
def simulating() -> bool:
    """True when numba.cuda is Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, read by numba
    at import, so fixed for the life of the process)."""
    if cuda is None:
        return False
    try:
        from numba.cuda.core import config as numba_cuda_config
    except ImportError:  # pragma: no cover - older numba-cuda keeps it in numba's config
        from numba.core import config as numba_cuda_config
    return bool(getattr(numba_cuda_config, "ENABLE_CUDASIM", False))


def check() -> None:
    """Raise BackendUnavailableError with the reason when neither a GPU nor the simulator runs."""
    if cuda is None:
        raise BackendUnavailableError(
            f"numba.cuda cannot be imported ({_IMPORT_ERROR}); install the CUDA extra with "
            "`pip install fastface[cuda]` (numba-cuda)"
        )
    if not cuda.is_available():
        raise BackendUnavailableError(
            "no usable CUDA GPU or driver was found (numba.cuda.is_available() is False); "
            "to run the CUDA kernels on the CPU simulator instead, set NUMBA_ENABLE_CUDASIM=1 "
            "in the environment before numba is imported"
        )
    if simulating():
        _give_simulator_arrays_an_interface()
        _make_simulator_shared_arrays_thread_safe()
    elif not _nvvm_available():
        raise BackendUnavailableError(
            "a CUDA GPU is present but NVVM, the CUDA compiler library numba-cuda needs to "
            "build kernels, cannot be loaded; install it with `pip install numba-cuda[cu12]` "
            "(CUDA 12 driver) or `pip install numba-cuda[cu13]` (CUDA 13 driver)"
        )


def _nvvm_available() -> bool:
    try:
        from numba.cuda.cudadrv import nvvm

        return bool(nvvm.is_available())
    except Exception:  # noqa: BLE001 - any failure to load the library means "not available"
        return False


def _give_simulator_arrays_an_interface() -> None:
    """Make the simulator's FakeCUDAArray expose __cuda_array_interface__ like a real one."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    if "__cuda_array_interface__" in FakeCUDAArray.__dict__:
        return

    def __cuda_array_interface__(self):
        ary = self._ary
        return {
            "shape": tuple(ary.shape),
            "strides": None if ary.flags["C_CONTIGUOUS"] else tuple(ary.strides),
            "typestr": ary.dtype.str,
            "data": (ary.__array_interface__["data"][0], False),
            "version": 3,
        }

    FakeCUDAArray.__cuda_array_interface__ = property(__cuda_array_interface__)


def _make_simulator_shared_arrays_thread_safe() -> None:
    """Make the simulator's cuda.shared.array safe to call from a block's threads at once.

    The simulator runs each CUDA thread as a Python thread and gives a block one array per
    source line of cuda.shared.array: the first thread to reach the line allocates it, the
    others look it up. The look-up and the allocation are not under a lock (numba-cuda 0.30),
    so two threads can each allocate their own array; the values one writes are then never
    seen by the others (a dW of the CUDA backend came out wrong, one run in several hundred,
    in a CI run). Same key (the caller's file and line), same arrays, under a lock; the key
    comes from the caller's frame instead of a whole extracted stack.
    """
    from numba.cuda.simulator import kernelapi

    FakeCUDAShared = kernelapi.FakeCUDAShared
    if getattr(FakeCUDAShared, "_fastface_thread_safe", False):
        return
    original = FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory (one buffer), or the simulator's error
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):  # the simulator's own conversion
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            found = self._allocations.get(key)
            if found is None:
                found = self._allocations[key] = np.empty(shape, dtype)
        return found

    FakeCUDAShared.array = array
    FakeCUDAShared._fastface_thread_safe = True


# --- launch configuration --------------------------------------------------------------------
# Under the simulator every CUDA thread is a Python thread and every block is started anew, so
# launches there use few blocks (the kernels grid-stride over the rest, which the tests thereby
# exercise), tiles of at most SIM_MAX_TILE and row kernels few threads (config values below
# these caps are used as they are); the interpreter's thread switch interval is shortened
# for the duration of a simulated launch (the simulator's block manager busy-polls its threads,
# and at the default 5 ms each syncthreads costs milliseconds). None of this applies on a GPU.
SIM_MAX_GRID = 2
SIM_MAX_THREADS = 8
SIM_MAX_TILE = 8  # 16 x 16 = 256 Python threads a block is 3-6x slower than 8 x 8 there
SIM_SWITCH_INTERVAL_S = 1e-4
WARP = 32


def _tile() -> int:
    tile = config.CUDA_TILE
    if not isinstance(tile, (int, np.integer)) or not 1 <= tile <= 32:
        raise ValueError(
            f"fastface.config.CUDA_TILE must be an int from 1 to 32 (a block holds TILE**2 <= "
            f"1024 threads); got {tile!r}. Set it back to 16, the default"
        )
    return min(int(tile), SIM_MAX_TILE) if simulating() else int(tile)


def _threads(width: int | None = None) -> int:
    """Threads per block of a 1-D kernel; for a row kernel, at most the row `width` rounded up
    to a power of two (at least a warp on a GPU): more threads would only idle."""
    threads = config.CUDA_THREADS
    if not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 1024:
        raise ValueError(
            f"fastface.config.CUDA_THREADS must be an int from 1 to 1024 (threads per block); "
            f"got {threads!r}. Set it back to 128, the default"
        )
    threads = int(threads)
    sim = simulating()
    if width is not None:
        floor = 1 if sim else WARP
        threads = min(threads, max(floor, 1 << max(0, int(width) - 1).bit_length()))
    if sim:
        threads = min(threads, SIM_MAX_THREADS)
    return threads


def _blocks(n: int, per_block: int) -> int:
    """Blocks covering n items, per_block a block, capped (the kernels grid-stride past it)."""
    cap = SIM_MAX_GRID if simulating() else _MAX_GRID
    return max(1, min((n + per_block - 1) // per_block, cap))


def _launch(kernel, grid, block, *args) -> None:
    if not simulating():
        kernel[grid, block](*args)
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SIM_SWITCH_INTERVAL_S)
    try:
        kernel[grid, block](*args)
    finally:
        sys.setswitchinterval(previous)


# --- arrays in and out -----------------------------------------------------------------------
def _is_numba_device_array(x) -> bool:
    return bool(getattr(x, "__cuda_ndarray__", False))


def _device_view(x):
    """A Numba device array viewing the device input x (no copy)."""
    if _is_numba_device_array(x):
        return x
    if simulating():
        raise TypeError(
            f"the CUDA simulator can only take Numba device arrays (numba.cuda.to_device); "
            f"got {type(x).__module__}.{type(x).__name__}, whose memory is on a real GPU. "
            "Copy it to the host first, or run without NUMBA_ENABLE_CUDASIM on a GPU"
        )
    return cuda.as_cuda_array(x)


def _inputs(*arrays):
    """(device arrays, on_device) for the validated inputs of one call (all host or all device)."""
    if isinstance(arrays[0], np.ndarray):
        return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays], False
    return [_device_view(a) for a in arrays], True


def _output(d, on_device: bool):
    return d if on_device else d.copy_to_host()


def zeros(shape, dtype):
    """A Numba device array of `shape` and `dtype`, filled with zeros on the device."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(np.asarray(shape, dtype=np.int64)))
    size = int(np.prod(shape, dtype=np.int64))
    flat = cuda.device_array(size, dtype=dtype)
    if size:
        from . import _cuda_kernels as K

        threads = _threads()
        _launch(K.fill(dtype.name), _blocks(size, threads), threads, flat, dtype.type(0))
    return flat.reshape(shape)


# --- kernels launched ------------------------------------------------------------------------
# Register blocking of the matmul: with outputs of at least REG_BLOCK * T rows and columns,
# each thread computes REG_BLOCK x REG_BLOCK outputs (kernel matmul_rb), provided its two
# shared tiles fit the 48 KiB of static shared memory a block may use and the block has at
# most RB_MAX_THREADS threads (more would force the compiler to spill); smaller outputs (the
# course's 32 x 25 layer, dW of a narrow layer) keep one output per thread (kernel matmul),
# which leaves more blocks to spread over the multiprocessors.
REG_BLOCK = 4
SHARED_BYTES = 48 * 1024
RB_MAX_THREADS = 256  # 16 x 16: the 80-124 registers a thread wants still fit a block


def _use_register_blocking(M: int, P: int, tile: int, itemsize: int) -> bool:
    bm = REG_BLOCK * tile
    shared = (bm * (tile + 1) + tile * (bm + 1)) * itemsize
    return min(M, P) >= bm and shared <= SHARED_BYTES and tile * tile <= RB_MAX_THREADS


def _launch_matmul(A, B, bias, C, trans_a: bool, trans_b: bool, activation: str) -> None:
    """C (M, P) = act(opA @ opB [+ bias]) on the device; bias None for none."""
    from . import _cuda_kernels as K

    tile = _tile()
    M, P = C.shape
    has_bias = bias is not None
    if _use_register_blocking(M, P, tile, C.dtype.itemsize):
        kernel = K.matmul_rb(tile, REG_BLOCK, C.dtype.name, trans_a, trans_b, activation, has_bias)
        per_block = REG_BLOCK * tile
    else:
        kernel = K.matmul(tile, C.dtype.name, trans_a, trans_b, activation, has_bias)
        per_block = tile
    grid = (_blocks(P, per_block), _blocks(M, per_block))
    # without a bias, C[0] is an unused 1-D stand-in (the kernel never reads it)
    _launch(kernel, grid, (tile, tile), A, B, bias if has_bias else C[0], C)


def _launch_dz_db(a, da, dz, db, activation: str) -> None:
    """dz (N, OUT) = act'(a) * da and db (OUT,) = sum_n dz on the device."""
    from . import _cuda_kernels as K

    dtype = dz.dtype.name
    N, OUT = dz.shape
    if activation == "softmax":
        threads = _threads(OUT)
        _launch(K.softmax_dz(threads, dtype), _blocks(N, 1), threads, a, da, dz)
        tile = _tile()
        colsum = K.dz_colsum(tile, dtype, "linear", False)
        _launch(colsum, _blocks(OUT, tile), (tile, tile), dz, dz, dz, db)
    else:
        tile = _tile()
        kernel = K.dz_colsum(tile, dtype, activation, True)
        _launch(kernel, _blocks(OUT, tile), (tile, tile), a, da, dz, db)


def matmul(a, b):
    """a (M, K) @ b (K, P) -> (M, P)."""
    (a_d, b_d), on_device = _inputs(a, b)
    c = cuda.device_array((a_d.shape[0], b_d.shape[1]), dtype=a_d.dtype)
    _launch_matmul(a_d, b_d, None, c, False, False, "linear")
    return _output(c, on_device)


def sigmoid(z):
    """z (M, P) -> 1 / (1 + exp(-z)) (M, P), overflow-safe."""
    from . import _cuda_kernels as K

    (z_d,), on_device = _inputs(z)
    out = cuda.device_array(z_d.shape, dtype=z_d.dtype)
    threads = _threads()
    n = z_d.shape[0] * z_d.shape[1]
    _launch(K.sigmoid(z_d.dtype.name), _blocks(n, threads), threads, z_d, out)
    return _output(out, on_device)


def dense_forward(x, W, b, activation):
    """x (N, IN), W (IN, OUT), b (OUT,) -> a = act(x @ W + b) (N, OUT)."""
    from . import _cuda_kernels as K

    (x_d, W_d, b_d), on_device = _inputs(x, W, b)
    N, OUT = x_d.shape[0], W_d.shape[1]
    out = cuda.device_array((N, OUT), dtype=x_d.dtype)
    if activation == "softmax":
        _launch_matmul(x_d, W_d, b_d, out, False, False, "linear")
        threads = _threads(OUT)
        _launch(K.softmax_rows(threads, out.dtype.name), _blocks(N, 1), threads, out, out)
    else:
        _launch_matmul(x_d, W_d, b_d, out, False, False, activation)
    return _output(out, on_device)


def dense_backward(x, W, a, da, activation):
    """Gradients through one dense layer of a scalar loss L, given da = dL/da.

    x (N, IN), W (IN, OUT), a (N, OUT) the forward output, da (N, OUT)
    -> dx (N, IN) = dz @ W.T,  dW (IN, OUT) = x.T @ dz,  db (OUT,) = sum_n dz
    where dz = act'(a) * da (the Jacobian-vector product for softmax).
    """
    (x_d, W_d, a_d, da_d), on_device = _inputs(x, W, a, da)
    N, IN = x_d.shape
    OUT = W_d.shape[1]
    dtype = x_d.dtype
    dz = cuda.device_array((N, OUT), dtype=dtype)
    db = cuda.device_array(OUT, dtype=dtype)
    _launch_dz_db(a_d, da_d, dz, db, activation)
    dx = cuda.device_array((N, IN), dtype=dtype)
    _launch_matmul(dz, W_d, None, dx, False, True, "linear")  # dz (N, OUT) @ W.T (OUT, IN)
    dW = cuda.device_array((IN, OUT), dtype=dtype)
    _launch_matmul(x_d, dz, None, dW, True, False, "linear")  # x.T (IN, N) @ dz (N, OUT)
    return _output(dx, on_device), _output(dW, on_device), _output(db, on_device)
