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
SMALL_FLOPS = 1 << 21
SMALL_PREFERENCE = ("numba", "c", "numpy")
LARGE_PREFERENCE = ("numpy", "numba", "c")

# --- CPU kernels -----------------------------------------------------------------------------
# Cache-blocking tile for the C matmul (rows of A, columns of B, depth) and the Numba kernels.
TILE_M = 64
TILE_N = 256
TILE_K = 256

# --- CUDA kernels ----------------------------------------------------------------------------
# Side of the square shared-memory tile of the tiled matmul (threads per block = TILE**2).
CUDA_TILE = 16
# Threads per block of the 1-D elementwise and reduction kernels.
CUDA_THREADS = 128
