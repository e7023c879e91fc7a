/*
 * fastface C kernels: cache-blocked matmul, sigmoid, fused bias + activation, dense layer.
 *
 * Dimensions: matmul A (M, K) @ B (K, N) -> C (M, N); dense x (N, IN), W (IN, OUT),
 * b (OUT,), a (N, OUT). Strides in elements (see fastface.h).
 *
 * The matmul follows the GotoBLAS/BLIS scheme, written for row-major C:
 *   for ic over M in MC blocks:                 pack A block (MC x KC), rows in MR-panels
 *     for pc over K in KC blocks:
 *       for jc over N in NC blocks:             pack B block (KC x NC), cols in NR-panels
 *         for ir over MC in MR steps:           A micro-panel (MR x KC) stays in L1
 *           for jr over NC in NR steps:         B micro-panel streams from L2
 *             micro-kernel: C[MR x NR] (+)= A micro-panel @ B micro-panel
 * Packing reads any strides (so transposed and sliced views cost nothing extra) and
 * zero-fills the ragged edge, so the micro-kernel always computes a full MR x NR tile; an
 * edge tile goes through a small local buffer and only its valid part is written to C.
 *
 * SIMD: the micro-kernel comes in three flavours with one source (FF_DEFINE_UKR):
 * plain C (any compiler, any CPU), AVX2+FMA and AVX-512F. The SIMD ones are compiled only
 * when the compiler understands GCC's target attribute on x86 (GCC, Clang), without any
 * -m flag for the whole file, and chosen at run time only when the CPU (and OS) supports
 * them (__builtin_cpu_supports). So one build runs everywhere and uses what it finds.
 *
 * Float semantics: compiled without -ffast-math, so NaN and inf propagate as in NumPy.
 * No printing, exit, assert or global state; every entry point validates its arguments
 * (defence in depth: the Python wrapper has checked them already) and returns an ff_status.
 */
#include "fastface.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define FF_RESTRICT __restrict
#else
#define FF_RESTRICT restrict
#endif

/* ---- status codes -------------------------------------------------------------------- */
const char *ff_strerror(int code)
{
    switch (code) {
    case FF_OK: return "success";
    case FF_ERR_NULL: return "a NULL pointer was passed for a non-empty array";
    case FF_ERR_SHAPE: return "a size is negative, or the sizes and strides address more "
                              "memory than an int64 index can reach";
    case FF_ERR_STRIDE: return "an output leading dimension is smaller than its row length "
                               "(rows would overlap)";
    case FF_ERR_ARG: return "an argument is out of range (unknown activation code, "
                            "negative blocking size or unknown SIMD level)";
    case FF_ERR_SIMD: return "the requested SIMD level is not supported by this build or "
                             "this CPU (see ff_simd_best)";
    case FF_ERR_NOMEM: return "out of memory while allocating the matmul packing buffer";
    default: return "unknown fastface status code";
    }
}

/* ---- SIMD levels ---------------------------------------------------------------------- */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(FF_NO_SIMD)
#define FF_X86 1
#include <immintrin.h>
#define FF_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FF_TARGET_AVX512 __attribute__((target("avx512f")))
#else
#define FF_X86 0
#endif

int ff_simd_best(void)
{
#if FF_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return FF_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FF_SIMD_AVX2;
#endif
    return FF_SIMD_SCALAR;
}

const char *ff_simd_name(int level)
{
    switch (level) {
    case FF_SIMD_SCALAR: return "scalar";
    case FF_SIMD_AVX2: return "avx2";
    case FF_SIMD_AVX512: return "avx512";
    default: return "unknown";
    }
}

/* ---- argument checks (shared by both dtypes) ------------------------------------------- */
#define FF_MAX_EXTENT (INT64_MAX / 16)

static uint64_t ff_abs64(int64_t v) { return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v; }

/* rows x cols elements at rs, cs strides: is the furthest offset representable? */
static int ff_extent_ok(int64_t rows, int64_t cols, int64_t rs, int64_t cs)
{
    if (rows < 0 || cols < 0)
        return 0;
    if (rows == 0 || cols == 0)
        return 1;
    if (rows > FF_MAX_EXTENT || cols > FF_MAX_EXTENT || rs == INT64_MIN || cs == INT64_MIN)
        return 0;
    uint64_t ars = ff_abs64(rs), acs = ff_abs64(cs);
    uint64_t r1 = (uint64_t)(rows - 1), c1 = (uint64_t)(cols - 1);
    if (r1 && ars > (uint64_t)FF_MAX_EXTENT / r1)
        return 0;
    if (c1 && acs > (uint64_t)FF_MAX_EXTENT / c1)
        return 0;
    return ars * r1 + acs * c1 <= (uint64_t)FF_MAX_EXTENT;
}

static int ff_check_in(int64_t rows, int64_t cols, const void *p, int64_t rs, int64_t cs)
{
    if (!ff_extent_ok(rows, cols, rs, cs))
        return FF_ERR_SHAPE;
    if (rows > 0 && cols > 0 && p == NULL)
        return FF_ERR_NULL;
    return FF_OK;
}

static int ff_check_out(int64_t rows, int64_t cols, const void *p, int64_t ld)
{
    if (rows < 0 || cols < 0)
        return FF_ERR_SHAPE;
    if (rows == 0 || cols == 0)
        return FF_OK;
    if (p == NULL)
        return FF_ERR_NULL;
    if (rows > 1 && ld < cols)
        return FF_ERR_STRIDE;
    return ff_extent_ok(rows, cols, ld, 1) ? FF_OK : FF_ERR_SHAPE;
}

static int ff_check_cfg(const ff_config *cfg, int *level)
{
    int best = ff_simd_best();
    *level = best;
    if (cfg == NULL)
        return FF_OK;
    if (cfg->mc < 0 || cfg->kc < 0 || cfg->nc < 0 || cfg->simd < FF_SIMD_AUTO ||
        cfg->simd > FF_SIMD_AVX512)
        return FF_ERR_ARG;
    if (cfg->simd != FF_SIMD_AUTO) {
        if (cfg->simd > best)
            return FF_ERR_SIMD;
        *level = cfg->simd;
    }
    return FF_OK;
}

#define FF_TRY(expr)              \
    do {                          \
        int ff_rc_ = (expr);      \
        if (ff_rc_ != FF_OK)      \
            return ff_rc_;        \
    } while (0)

static int ff_check_act(int act)
{
    return (act >= FF_ACT_LINEAR && act <= FF_ACT_SOFTMAX) ? FF_OK : FF_ERR_ARG;
}

/* Aligned scratch from malloc (64-byte boundary for the SIMD loads), NULL on failure. */
static void *ff_alloc_aligned(size_t bytes, void **base)
{
    if (bytes > SIZE_MAX - 64)
        return *base = NULL;
    *base = malloc(bytes + 64);
    if (*base == NULL)
        return NULL;
    uintptr_t p = ((uintptr_t)*base + 63) & ~(uintptr_t)63;
    return (void *)p;
}

/* GCC turns short copy loops (an edge tile's 12 x 25 floats) into memcpy calls, one per
 * row, each costing more than the copy; keep them as inline vector loops. */
#if defined(__GNUC__) && !defined(__clang__)
#define FF_NO_MEMCPY_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FF_NO_MEMCPY_IDIOM
#endif

static int64_t ff_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static int64_t ff_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Block size: the request (or the default), rounded down to a multiple of the tile, then
 * evened out so that `size` splits into equal blocks (no thin remainder block, which would
 * cost a full repacking for little work); never larger than the problem needs. */
static int64_t ff_block(int64_t request, int64_t deflt, int64_t tile, int64_t size)
{
    int64_t v = request > 0 ? request : deflt;
    if (v > ((int64_t)1 << 24))
        v = (int64_t)1 << 24;
    v = v / tile * tile;
    if (v < tile)
        v = tile;
    if (size <= v)
        return ff_round_up(size, tile);
    int64_t blocks = (size + v - 1) / v;
    return ff_min64(v, ff_round_up((size + blocks - 1) / blocks, tile));
}

#if defined(__GNUC__)
#define FF_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define FF_PREFETCH_W(p) ((void)0)
#endif

/* ---- micro-kernels --------------------------------------------------------------------
 * C (MR, NR) = [C +] A (MR x kc) @ Bp (kc x NR, packed row by row, NR = NV * VL).
 * One source for every SIMD flavour: VT c[MR][NV] are the accumulators (NV vectors of VL
 * lanes per row), fully unrolled into registers. Two entry points share the body:
 *   NAME_packed(kc, Ap, Bp, C, ldc, acc)      A packed column by column (Ap[p * MR + i])
 *   NAME_rows(kc, A, lda, Bp, C, ldc, acc)    A read in place from rows lda apart
 *                                             (small problems: packing A would not pay)
 * The C tile is prefetched first so that its lines arrive while the loop runs. */
#if defined(_MSC_VER)
#define FF_INLINE static __forceinline
#else
#define FF_INLINE static inline __attribute__((always_inline))
#endif

#define FF_DEFINE_UKR(NAME, TARGET, T, VT, VL, MR, NV, ZERO, LOADU, STOREU, SET1, FMA, ADD) \
    TARGET FF_INLINE void NAME##_body(int64_t kc, const T *FF_RESTRICT A, int64_t ars,      \
                                      int64_t acs, const T *FF_RESTRICT Bp,                \
                                      T *FF_RESTRICT C, int64_t ldc, int accumulate)       \
    {                                                                                      \
        VT c[MR][NV];                                                                      \
        for (int i = 0; i < MR; i++) {                                                     \
            FF_PREFETCH_W(C + i * ldc);                                                    \
            FF_PREFETCH_W(C + i * ldc + NV * VL - 1);                                      \
            for (int v = 0; v < NV; v++)                                                   \
                c[i][v] = ZERO();                                                          \
        }                                                                                  \
        for (int64_t p = 0; p < kc; p++) {                                                 \
            VT b[NV];                                                                      \
            for (int v = 0; v < NV; v++)                                                   \
                b[v] = LOADU(Bp + v * VL);                                                 \
            for (int i = 0; i < MR; i++) {                                                 \
                VT a = SET1(A[i * ars]);                                                   \
                for (int v = 0; v < NV; v++)                                               \
                    c[i][v] = FMA(a, b[v], c[i][v]);                                       \
            }                                                                              \
            A += acs;                                                                      \
            Bp += NV * VL;                                                                 \
        }                                                                                  \
        for (int i = 0; i < MR; i++)                                                       \
            for (int v = 0; v < NV; v++) {                                                 \
                T *dst = C + i * ldc + v * VL;                                             \
                STOREU(dst, accumulate ? ADD(LOADU(dst), c[i][v]) : c[i][v]);              \
            }                                                                              \
    }                                                                                      \
    TARGET static void NAME##_packed(int64_t kc, const T *FF_RESTRICT Ap,                  \
                                     const T *FF_RESTRICT Bp, T *FF_RESTRICT C,            \
                                     int64_t ldc, int accumulate)                          \
    {                                                                                      \
        NAME##_body(kc, Ap, 1, MR, Bp, C, ldc, accumulate);                                \
    }                                                                                      \
    TARGET static void NAME##_rows(int64_t kc, const T *FF_RESTRICT A, int64_t lda,        \
                                   const T *FF_RESTRICT Bp, T *FF_RESTRICT C, int64_t ldc, \
                                   int accumulate)                                         \
    {                                                                                      \
        NAME##_body(kc, A, lda, 1, Bp, C, ldc, accumulate);                                \
    }

/* Plain C flavour: a "vector" is one scalar; -O3 vectorises the lanes for the baseline ISA. */
#define FF_S_ZERO() 0
#define FF_S_LOAD(p) (*(p))
#define FF_S_STORE(p, v) (*(p) = (v))
#define FF_S_SET1(x) (x)
#define FF_S_FMA(a, b, c) ((c) + (a) * (b))
#define FF_S_ADD(a, b) ((a) + (b))
#define FF_NO_TARGET
FF_DEFINE_UKR(ukr_scalar_f32, FF_NO_TARGET, float, float, 1, 4, 8, FF_S_ZERO, FF_S_LOAD,
              FF_S_STORE, FF_S_SET1, FF_S_FMA, FF_S_ADD)
FF_DEFINE_UKR(ukr_scalar_f64, FF_NO_TARGET, double, double, 1, 4, 8, FF_S_ZERO, FF_S_LOAD,
              FF_S_STORE, FF_S_SET1, FF_S_FMA, FF_S_ADD)

#if FF_X86
FF_DEFINE_UKR(ukr_avx2_f32, FF_TARGET_AVX2, float, __m256, 8, 6, 2, _mm256_setzero_ps,
              _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
FF_DEFINE_UKR(ukr_avx2_f64, FF_TARGET_AVX2, double, __m256d, 4, 6, 2, _mm256_setzero_pd,
              _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd)
FF_DEFINE_UKR(ukr_avx512_f32, FF_TARGET_AVX512, float, __m512, 16, 12, 2, _mm512_setzero_ps,
              _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
FF_DEFINE_UKR(ukr_avx512_f64, FF_TARGET_AVX512, double, __m512d, 8, 12, 2, _mm512_setzero_pd,
              _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd)
#endif

/* Largest micro-tile of any flavour (sizes the edge buffer). */
#define FF_MAX_MR 12
#define FF_MAX_NR 32

/* ---- the dtype-generic kernels: one source, instantiated for float and double ---------- */
#define FF_T float
#define FF_SUF f32
#define FF_EXP expf
#define FF_TANH tanhf
#define FF_FABS fabsf
#include "fastface_kernels.inc"
#undef FF_T
#undef FF_SUF
#undef FF_EXP
#undef FF_TANH
#undef FF_FABS

#define FF_T double
#define FF_SUF f64
#define FF_EXP exp
#define FF_TANH tanh
#define FF_FABS fabs
#include "fastface_kernels.inc"
#undef FF_T
#undef FF_SUF
#undef FF_EXP
#undef FF_TANH
#undef FF_FABS

int ff_micro_tile(int dtype_bytes, int level, int *mr, int *nr)
{
    const ff_kernel_f32 *k32 = NULL;
    const ff_kernel_f64 *k64 = NULL;
    if (mr == NULL || nr == NULL)
        return FF_ERR_NULL;
    if (level < FF_SIMD_SCALAR || level > FF_SIMD_AVX512)
        return FF_ERR_ARG;
    if (level > ff_simd_best())
        return FF_ERR_SIMD;
    if (dtype_bytes == 4) {
        k32 = &ff_kernels_f32[level];
        *mr = k32->mr;
        *nr = k32->nr;
    } else if (dtype_bytes == 8) {
        k64 = &ff_kernels_f64[level];
        *mr = k64->mr;
        *nr = k64->nr;
    } else {
        return FF_ERR_ARG;
    }
    return FF_OK;
}
