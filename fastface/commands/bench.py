"""`fastface bench`: a quick kernel throughput table, every backend against NumPy (BLAS).

Sizes are N x IN x OUT (a dense layer of OUT units over IN inputs, batch N):
    matmul          x (N, IN) @ W (IN, OUT)                         2*N*IN*OUT flops
    dense_forward   a = act(x @ W + b)                              2*N*IN*OUT flops
    dense_backward  dx = dz @ W.T, dW = x.T @ dz, db = sum(dz)      4*N*IN*OUT flops

Rows are the fastface backends, called through :mod:`fastface.ops` (validation and dispatch
overhead included, as a user sees them), and peers doing the same arithmetic directly:
``numpy-blas`` (plain NumPy expressions; the baseline every ratio is taken against) and
``torch`` (PyTorch CPU, when importable). Every result is checked against the float64
reference before it is timed; the first (compiling) call is excluded from the timing.

The same machinery drives ``python benches/bench_kernels.py`` (the full table and the targets).

On a machine with few cores (or a busy one) set ``OMP_WAIT_POLICY=PASSIVE``: otherwise the
OpenMP pools of PyTorch and Numba spin after each call and starve the next library's threads
(measured here: PyTorch's 32x400x25 forward took 4-8 ms per call right after NumPy's BLAS
instead of 13 us), or use ``--threads 1`` for a per-core comparison.

NumPy's OpenBLAS picks its kernels for the CPU at import, unless ``OPENBLAS_CORETYPE`` names
one (some machines set it to dodge bugs of old OpenBLAS builds). Then every NumPy product, and
so the ``numpy-blas`` baseline, runs those older kernels: on an AVX-512 CPU with ``Haswell``
the course layer's small sgemm is 3x slower than with the kernels OpenBLAS would choose.
The table's header names the kernel set in use (:func:`blas_line`) and warns when it is forced.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "KERNELS",
    "PEERS",
    "Row",
    "parse_sizes",
    "make_args",
    "make_callable",
    "tolerance",
    "measure",
    "check_result",
    "bench_one",
    "run_table",
    "limit_threads",
    "blas_line",
    "blas_warning",
    "blas_report",
    "register",
]

DEFAULT_SIZES = "32x400x25,256x1024x256"
DTYPES = ("float32", "float64")


# --- the kernels: flops, inputs, calls ---------------------------------------------------------
def _np_sigmoid_(z):
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    return np.reciprocal(z, out=z)


def _np_softmax_(z):
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# The baseline's arithmetic in plain NumPy: activation in place on z (N, OUT), and
# dz = act'(a) * da from the output a (N, OUT).
_NP_ACT = {
    "linear": lambda z: z,
    "sigmoid": _np_sigmoid_,
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "softmax": _np_softmax_,
}
_NP_DACT = {
    "linear": lambda a, da: da,
    "sigmoid": lambda a, da: da * a * (1 - a),
    "relu": lambda a, da: np.where(a > 0, da, 0).astype(da.dtype, copy=False),
    "tanh": lambda a, da: da * (1 - a * a),
    "softmax": lambda a, da: a * (da - np.sum(a * da, axis=1, keepdims=True)),
}


def _numpy_matmul(args, activation):
    a, b = args
    return a @ b


def _numpy_forward(args, activation):
    x, W, b = args
    z = x @ W
    z += b
    return _NP_ACT[activation](z)


def _numpy_backward(args, activation):
    x, W, a, da = args
    dz = _NP_DACT[activation](a, da)
    return dz @ W.T, x.T @ dz, dz.sum(axis=0)


# PyTorch's versions (torch passed in: it is imported only when asked for).
_TORCH_ACT = {
    "linear": lambda t, torch: t,
    "sigmoid": lambda t, torch: torch.sigmoid(t),
    "relu": lambda t, torch: torch.relu(t),
    "tanh": lambda t, torch: torch.tanh(t),
    "softmax": lambda t, torch: torch.softmax(t, dim=1),
}
_TORCH_DACT = {
    "linear": lambda a, da, torch: da,
    "sigmoid": lambda a, da, torch: da * a * (1 - a),
    "relu": lambda a, da, torch: torch.where(a > 0, da, torch.zeros_like(da)),
    "tanh": lambda a, da, torch: da * (1 - a * a),
    "softmax": lambda a, da, torch: a * (da - (a * da).sum(dim=1, keepdim=True)),
}


def _torch_matmul(args, activation, torch):
    a, b = args
    return torch.mm(a, b)


def _torch_forward(args, activation, torch):
    x, W, b = args
    return _TORCH_ACT[activation](torch.addmm(b, x, W), torch)


def _torch_backward(args, activation, torch):
    x, W, a, da = args
    dz = _TORCH_DACT[activation](a, da, torch)
    return torch.mm(dz, W.t()), torch.mm(x.t(), dz), dz.sum(dim=0)


def _ops_matmul(args, activation, backend):
    from .. import ops

    return ops.matmul(*args, backend=backend)


def _ops_forward(args, activation, backend):
    from .. import ops

    return ops.dense_forward(*args, activation, backend=backend)


def _ops_backward(args, activation, backend):
    from .. import ops

    return ops.dense_backward(*args, activation, backend=backend)


def _reference_call(name):
    """The float64 reference of kernel `name`, called like the peers: f(args, activation)."""

    def call(args, activation):
        from ..backends import reference

        args64 = [np.asarray(a, dtype=np.float64) for a in args]
        if name == "matmul":
            return reference.matmul(*args64)
        return getattr(reference, name)(*args64, activation)

    return call


@dataclass(frozen=True)
class Kernel:
    """One benchmarked kernel: its flop count, the fastface call, the peers' versions and
    the names of its inputs (x, W, b, a, da), which make_args builds."""

    name: str
    flop_factor: int  # flops = flop_factor * N * IN * OUT
    inputs: tuple
    ops_call: Callable
    numpy_call: Callable
    torch_call: Callable

    def flops(self, n: int, n_in: int, n_out: int) -> int:
        return self.flop_factor * n * n_in * n_out

    def reference(self, args, activation):
        return _reference_call(self.name)(args, activation)


KERNELS: dict[str, Kernel] = {
    "matmul": Kernel("matmul", 2, ("x", "W"), _ops_matmul, _numpy_matmul, _torch_matmul),
    "dense_forward": Kernel("dense_forward", 2, ("x", "W", "b"), _ops_forward, _numpy_forward,
                            _torch_forward),
    "dense_backward": Kernel("dense_backward", 4, ("x", "W", "a", "da"), _ops_backward, _numpy_backward,
                             _torch_backward),
}

# Peers: not fastface backends; they do the same arithmetic directly.
PEERS = ("numpy-blas", "torch")


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """'32x400x25,256x1024x256' -> [(32, 400, 25), (256, 1024, 256)]."""
    sizes = []
    for item in str(text).split(","):
        item = item.strip().lower()
        if not item:
            continue
        parts = item.split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) != 3 or min(dims) < 1:
            raise ValueError(
                f"--sizes expects comma-separated N x IN x OUT triples of positive integers, "
                f"e.g. 32x400x25,256x1024x256; got {item!r}"
            )
        sizes.append(dims)
    if not sizes:
        raise ValueError(f"--sizes names no size; got {text!r}. Example: 32x400x25")
    return sizes


def make_args(kernel: str, n: int, n_in: int, n_out: int, dtype, activation="sigmoid", seed=0):
    """Random inputs for `kernel` at N x IN x OUT in `dtype` (weights scaled like an init):
    x (N, IN), W (IN, OUT), b (OUT,), a = act(x @ W + b) (N, OUT), da (N, OUT) / N."""
    from ..backends import reference

    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    x = rng.standard_normal((n, n_in))
    W = rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)
    b = 0.1 * rng.standard_normal(n_out)
    values = {"x": x, "W": W, "b": b}
    if "a" in KERNELS[kernel].inputs:
        values["a"] = reference.dense_forward(x, W, b, activation)
        values["da"] = rng.standard_normal((n, n_out)) / n
    return tuple(values[name].astype(dtype) for name in KERNELS[kernel].inputs)


def _as_tuple(result):
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def check_result(kernel: str, args, activation, result) -> float:
    """Largest error of `result` against the float64 reference, relative to the output's scale.

    Returns max |got - ref| / max |ref| over every output (dx, dW, db for the backward).
    """
    expected = _as_tuple(KERNELS[kernel].reference(args, activation))
    got = _as_tuple(result)
    worst = 0.0
    for g, e in zip(got, expected):
        g = np.asarray(g.cpu() if hasattr(g, "cpu") else g, dtype=np.float64)
        if g.shape != e.shape:
            return math.inf
        scale = max(float(np.max(np.abs(e))) if e.size else 0.0, np.finfo(np.float64).tiny)
        err = float(np.max(np.abs(g - e))) / scale if e.size else 0.0
        worst = max(worst, err if math.isfinite(err) else math.inf)
    return worst


def tolerance(dtype, size) -> float:
    """Acceptable relative error: machine epsilon times the square root of the longest reduction."""
    return 64 * float(np.finfo(np.dtype(dtype)).eps) * math.sqrt(max(max(size), 1))


def measure(fn: Callable[[], object], repeat: int = 5, min_time: float = 0.02) -> float:
    """Best seconds per call of `fn` over `repeat` rounds (fn already warmed up).

    Each round loops fn enough times to last about `min_time` seconds, so microsecond calls
    are not swamped by the timer.
    """
    t0 = time.perf_counter()
    fn()
    single = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_time / single))
    best = math.inf
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t0) / loops)
    return best


@dataclass
class Row:
    kernel: str
    size: tuple
    dtype: str
    who: str  # backend name or peer name
    seconds: float  # best per call
    gflops: float
    error: float  # relative to the reference (see check_result)
    ok: bool
    ratio: float = math.nan  # throughput / numpy-blas throughput

    def line(self) -> str:
        n, i, o = self.size
        size = f"{n}x{i}x{o}"
        ratio = "" if math.isnan(self.ratio) else f"{self.ratio:6.2f}x numpy-blas"
        status = "ok" if self.ok else "WRONG"
        return (
            f"{self.kernel:<15} {size:<15} {self.dtype:<8} {self.who:<11} "
            f"{self.gflops:9.2f} GFLOP/s {self.seconds * 1e6:12.1f} us/call  {ratio:<17} "
            f"{status} (err {self.error:.1e})"
        )


def _torch_module():
    try:
        import torch
    except ImportError:
        return None
    return torch


def make_callable(kernel: str, who: str, args, activation="sigmoid") -> Callable[[], object]:
    """A no-argument callable running `kernel` on `args` by backend or peer `who`."""
    spec = KERNELS[kernel]
    if who == "numpy-blas":
        return lambda: spec.numpy_call(args, activation)
    if who == "torch":
        torch = _torch_module()
        if torch is None:
            raise ValueError("peer 'torch' needs PyTorch (pip install fastface[torch])")
        targs = [torch.from_numpy(np.ascontiguousarray(a)) for a in args]
        return lambda: spec.torch_call(targs, activation, torch)
    return lambda: spec.ops_call(args, activation, who)


def bench_one(kernel: str, size, dtype, who: str, activation="sigmoid", repeat=5,
              min_time=0.02, args=None) -> Row:
    """Time one (kernel, size, dtype, backend-or-peer); check the result first."""
    spec = KERNELS[kernel]
    n, n_in, n_out = size
    if args is None:
        args = make_args(kernel, n, n_in, n_out, dtype, activation)
    fn = make_callable(kernel, who, args, activation)
    result = fn()  # warm-up: compilation, caches, thread pools
    error = check_result(kernel, args, activation, result)
    seconds = measure(fn, repeat=repeat, min_time=min_time)
    return Row(
        kernel=kernel, size=tuple(size), dtype=str(np.dtype(dtype)), who=who, seconds=seconds,
        gflops=spec.flops(*size) / seconds / 1e9, error=error,
        ok=error <= tolerance(dtype, size),
    )


@contextlib.contextmanager
def limit_threads(n: int | None):
    """Run everything on at most `n` threads (None: leave the defaults): BLAS and OpenMP pools
    through threadpoolctl, Numba's prange, PyTorch's intra-op pool. Restores them after."""
    if n is None:
        yield
        return
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"--threads must be an integer >= 1; got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ValueError("--threads needs threadpoolctl (pip install threadpoolctl)") from None
    import numba

    torch = _torch_module()
    old_numba = numba.get_num_threads()
    old_torch = torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(old_numba)
        if torch is not None:
            torch.set_num_threads(old_torch)


def blas_line() -> str:
    """'openblas 0.3.31 (SkylakeX kernels, 2 threads)' for each BLAS NumPy has loaded."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (pip install threadpoolctl to name it)"
    pools = [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture') or 'default'} kernels, "
        f"{p.get('num_threads')} threads)"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return ", ".join(pools) or "no BLAS pool found"


def blas_warning() -> str | None:
    """A one-line warning when OPENBLAS_CORETYPE forces OpenBLAS's kernel set, else None."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    return (f"WARNING: OPENBLAS_CORETYPE={forced} forces OpenBLAS's {forced} kernels, not the best "
            "ones for this CPU: NumPy, scikit-learn and fastface's fused path run slower than on a "
            "user's machine. For those figures: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...")


def blas_report() -> list[str]:
    """The lines a benchmark header prints about NumPy's BLAS: what it is, and the warning
    when its kernel set is forced."""
    warning = blas_warning()
    return [f"NumPy's BLAS: {blas_line()}"] + ([warning] if warning else [])


def default_backends() -> list[str]:
    """Available fastface backends worth timing here (the CUDA simulator is not)."""

    from ..backends import available_backends

    names = available_backends()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        names = [n for n in names if n != "cuda"]
    return names


def run_table(kernels, sizes, dtype, whos, activation="sigmoid", repeat=5, min_time=0.02,
              emit=print) -> list[Row]:
    """Bench every (kernel, size, who); ratios against numpy-blas (always measured)."""
    rows = []
    for kernel in kernels:
        for size in sizes:
            args = make_args(kernel, *size, dtype, activation)
            base = bench_one(kernel, size, dtype, "numpy-blas", activation, repeat, min_time, args)
            base.ratio = 1.0
            group = [base]
            emit(base.line())
            for who in whos:
                if who == "numpy-blas":
                    continue
                row = bench_one(kernel, size, dtype, who, activation, repeat, min_time, args)
                row.ratio = row.gflops / base.gflops
                group.append(row)
                emit(row.line())
            rows.extend(group)
    return rows


# --- the CLI sub-command ---------------------------------------------------------------------
def _split(text):
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _resolve_whos(text) -> list[str]:
    from ..backends import BACKENDS, get

    if text is None:
        whos = default_backends() + ["numpy-blas"]
        if _torch_module() is not None:
            whos.append("torch")
        return whos
    whos = _split(text)
    valid = list(BACKENDS) + list(PEERS)
    for who in whos:
        if who not in valid:
            raise ValueError(f"--backends: unknown name {who!r}; expected a comma-separated list of {valid}")
        if who in BACKENDS:
            get(who)  # BackendUnavailableError with the reason
        if who == "torch" and _torch_module() is None:
            raise ValueError("--backends torch needs PyTorch installed (pip install fastface[torch])")
    return whos


def _run(args) -> int:
    from ..activations import check_activation

    sizes = parse_sizes(args.sizes)
    kernels = _split(args.kernels)
    for k in kernels:
        if k not in KERNELS:
            raise ValueError(f"--kernels: unknown kernel {k!r}; expected some of {list(KERNELS)}")
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1; got {args.repeat}")
    activation = check_activation(args.activation)
    whos = _resolve_whos(args.backends)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be an integer >= 1; got {args.threads}")
    threads = "default threads" if args.threads is None else f"{args.threads} thread(s) everywhere"
    print(
        f"fastface bench: {args.dtype}, activation {activation}, best of {args.repeat}, {threads}; "
        "ratios are throughput / numpy-blas (plain NumPy doing the same arithmetic)",
        flush=True,
    )
    for line in blas_report():
        print(line, flush=True)
    with limit_threads(args.threads):
        rows = run_table(kernels, sizes, args.dtype, whos, activation, args.repeat, args.min_time,
                         emit=lambda line: print(line, flush=True))
    wrong = [r for r in rows if not r.ok]
    if wrong:
        print(f"fastface bench: {len(wrong)} result(s) disagree with the reference (marked WRONG)")
        return 1
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the kernels on every backend against NumPy (GFLOP/s)",
        description=(
            "Time matmul, dense_forward and dense_backward on every available backend and "
            "print GFLOP/s and the ratio to numpy-blas (plain NumPy, same arithmetic). Results "
            "are checked against the float64 reference; compilation is excluded. Full table: "
            "python benches/bench_kernels.py"
        ),
    )
    p.add_argument("--sizes", default=DEFAULT_SIZES,
                   help=f"comma-separated N x IN x OUT sizes (default {DEFAULT_SIZES})")
    p.add_argument("--backends", default=None,
                   help="comma-separated backends and peers to time, from numpy, numba, c, cuda, "
                        "numpy-blas, torch (default: every available one; not the CUDA simulator)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="element type (default float32)")
    p.add_argument("--repeat", type=int, default=5, help="timing rounds; the best is kept (default 5)")
    p.add_argument("--kernels", default=",".join(KERNELS),
                   help=f"comma-separated kernels (default {','.join(KERNELS)})")
    p.add_argument("--activation", default="sigmoid",
                   help="activation of the dense kernels (default sigmoid)")
    p.add_argument("--min-time", type=float, default=0.02, dest="min_time",
                   help="seconds each timing round lasts at least (default 0.02)")
    p.add_argument("--threads", type=int, default=None,
                   help="limit BLAS, Numba and PyTorch to this many threads (e.g. 1 for a per-core "
                        "comparison on a busy machine; default: each library's own)")
    p.set_defaults(func=_run)
