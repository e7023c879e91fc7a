"""Tunables in one place (tile sizes, block sizes, the automatic backend rule).

Tests may shrink these to reach edge cases (tile - 1, tile + 1) with small shapes; kernels
read them when they are compiled or launched, never inside hot loops.
"""

from __future__ import annotations

# --- automatic backend choice (ops.* with backend=None) --------------------------------------
# The rule, in order: device arrays (objects with __cuda_array_interface__) go to "cuda";
# otherwise a problem of at most SMALL_FLOPS multiply-adds (M*K*N for matmul, N*IN*OUT for a
# dense layer) goes to the first available backend of SMALL_PREFERENCE (the per-call overhead
# of BLAS and of NumPy's temporaries dominates there), and a larger one to the first available
# of LARGE_PREFERENCE (multithreaded BLAS wins there). Measured by benches/bench_kernels.py.
# Measured (2-core AVX-512 x86, float32, dense_forward + dense_backward per call through ops,
# best of 25 interleaved rounds on a shared machine, so multithreaded times are noisy;
# reproduce with: python -m fastface bench --kernels dense_forward,dense_backward --sizes ...):
#   32x400x25 (0.3M)  numba 35 us, numpy 46, c 46     64x400x64 (1.6M)  numba 102, c 123
#   128x256x64 (2.1M) numba 158, c 164, numpy 578     32x1024x64 (2.1M) numba 316, c 482
#   64x512x128 (4.2M) c 285, numpy 376, numba 379     128x512x128 (8.4M) c 512, numpy 826
#   128x1024x128 (17M) numpy 883, c 969, numba 1131   256x1024x256 (67M) numpy 2494, numba 2982, c 3558
# so the serial numba kernels win up to 2^21 multiply-adds; above, BLAS (2 threads on a quiet
# machine: ~290 GFLOP/s at 256x1024x256) and then the single-threaded blocked C kernel.
SMALL_FLOPS = 1 << 21
SMALL_PREFERENCE = ("numba", "c", "numpy")
LARGE_PREFERENCE = ("numpy", "c", "numba")

# --- the fused training path (fastface._fused, fastface._fused_pair) ------------------------
# FUSED_WORKERS = 2: fit trains the fused epochs of a network on two workers (threads) when
# fastface._fused_pair.worthwhile says so (two Numba threads and two cores for the process;
# layer 0 doing at least FUSED_PAIR_MIN_FLOPS multiply-adds a batch); the weights are the
# serial path's (bit for bit with SGD, momentum and weight decay; Adam within rounding).
# 1 (the default): the serial fused epoch. Read at the start of every fit.
# Opt-in, because the two workers meet twice a batch and so need two cores that are really
# free. Measured on a 2-core VM, the course net 400-25-15-1 at batch 32, in a fit
# (python benches/compare_peers.py): 0.35-0.44 against 0.43-0.46 ms an epoch with OpenMP's
# default spinning threads (the less, the busier the other core: interleaved with PyTorch's
# and OpenBLAS's spinning pools, 0.44 against 0.46); with OMP_WAIT_POLICY=PASSIVE 1.2 ms,
# 2.7x slower than serial.
FUSED_WORKERS = 1
FUSED_PAIR_MIN_FLOPS = 1 << 17

# --- C kernels --------------------------------------------------------------------------------
# The C GEMM picks its cache blocks per SIMD level in csrc/ (fastface_kernels.inc);
# fastface.backends.c_backend.set_options(mc=, kc=, nc=, simd=) overrides them at run time.

# --- CUDA kernels ----------------------------------------------------------------------------
# Side of the square shared-memory tile of the tiled matmul (threads per block = TILE**2).
CUDA_TILE = 16
# Threads per block of the 1-D elementwise and reduction kernels.
CUDA_THREADS = 128

# --- Numba kernels (fastface/backends/numba_backend.py) ---------------------------------------
# Read at every call (never compiled in), so tests may shrink them to reach the edge cases.
# Problems of at most NUMBA_SERIAL_FLOPS multiply-adds (N*IN*OUT, M*K*P) run serially on the
# unpacked micro-kernel (no thread start-up, no packing); larger ones pack panels and prange.
NUMBA_SERIAL_FLOPS = 1 << 22
# sigmoid(z) runs in parallel above this many elements.
NUMBA_PARALLEL_ELEMENTS = 1 << 16
# Cache blocks of the packed GEMM: rows of A per packed block (L2), depth (the B micro-panel
# kc x NR stays in L1), columns of B per packed block (L2/L3). Rounded to the register tile.
NUMBA_MC = 192
NUMBA_KC = 256
NUMBA_NC = 1024
# "blocked" (default) or "naive": the plain-loop reference kernels, as a fallback.
NUMBA_KERNEL = "blocked"
