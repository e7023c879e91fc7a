/*
 * fastface C kernels: public declarations.
 *
 * Dimensions (rows are examples, matrices are row-major with explicit strides):
 *   matmul          A (M, K) @ B (K, N)                    -> C (M, N)
 *   dense forward   x (N, IN), W (IN, OUT), b (OUT,)       -> a (N, OUT)
 *   dense backward  x, W, a, da (N, OUT)                   -> dz (N, OUT), dx (N, IN),
 *                                                             dW (IN, OUT), db (OUT,)
 * Strides are counted in elements, not bytes. An input matrix X (R, S) is read at
 * X[r * rs + c * cs]: any strides work (negative, zero for broadcasts, transposed views),
 * so NumPy views pass without a copy. An output matrix Y (R, S) is written at
 * Y[r * ld + c] with ld >= S (rows may be padded, never overlap).
 *
 * Every function returns an ff_status: FF_OK, or an error code that ff_strerror() turns
 * into a sentence. Nothing here prints, exits, asserts or keeps global state; the only
 * allocation is the matmul's packing buffer (checked: FF_ERR_NOMEM).
 *
 * This header is also the cffi cdef: csrc/ffi_build.py feeds cffi the text between the
 * FF_CDEF_BEGIN and FF_CDEF_END markers, so declarations are written once. Keep that
 * region free of preprocessor lines.
 */
#ifndef FASTFACE_H
#define FASTFACE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* FF_CDEF_BEGIN */
typedef enum {
    FF_OK = 0,
    FF_ERR_NULL = 1,     /* a NULL pointer for a non-empty array                     */
    FF_ERR_SHAPE = 2,    /* a negative size, or sizes/strides whose extent overflows */
    FF_ERR_STRIDE = 3,   /* an output leading dimension smaller than its row length  */
    FF_ERR_ARG = 4,      /* an unknown activation code or bad blocking parameters    */
    FF_ERR_SIMD = 5,     /* a SIMD level this build or this CPU cannot run           */
    FF_ERR_NOMEM = 6     /* the packing buffer could not be allocated                */
} ff_status;

typedef enum {
    FF_ACT_LINEAR = 0,
    FF_ACT_SIGMOID = 1,
    FF_ACT_RELU = 2,
    FF_ACT_TANH = 3,
    FF_ACT_SOFTMAX = 4   /* row-wise, row maximum subtracted */
} ff_activation;

typedef enum {
    FF_SIMD_AUTO = -1,   /* the best level this CPU runs */
    FF_SIMD_SCALAR = 0,  /* plain C (the compiler may vectorise it for the baseline ISA) */
    FF_SIMD_AVX2 = 1,    /* AVX2 + FMA micro-kernels */
    FF_SIMD_AVX512 = 2   /* AVX-512F micro-kernels */
} ff_simd;

/* Options for the blocked matmul. Pass NULL for the defaults (FF_SIMD_AUTO, tuned
 * blocks). mc, kc, nc = 0 mean "default"; other values are rounded to the micro-kernel
 * tile (mc to a multiple of its rows, nc of its columns) and must be >= 0. */
typedef struct {
    int simd;
    int64_t mc;          /* rows of A packed per block     */
    int64_t kc;          /* depth packed per block         */
    int64_t nc;          /* columns of B packed per block  */
} ff_config;

const char *ff_strerror(int code);
int ff_simd_best(void);                 /* highest ff_simd level usable here */
const char *ff_simd_name(int level);    /* "scalar", "avx2", "avx512", or "unknown" */
int ff_micro_tile(int dtype_bytes, int level, int *mr, int *nr);   /* MR x NR of a level */

/* C (M, N) = A (M, K) @ B (K, N); cache-blocked, packed, SIMD micro-kernel. */
int ff_matmul_f32(int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t rsa, int64_t csa,
                  const float *B, int64_t rsb, int64_t csb,
                  float *C, int64_t ldc, const ff_config *cfg);
int ff_matmul_f64(int64_t M, int64_t N, int64_t K,
                  const double *A, int64_t rsa, int64_t csa,
                  const double *B, int64_t rsb, int64_t csb,
                  double *C, int64_t ldc, const ff_config *cfg);

/* The same product by the textbook triple loop: the reference and the fallback. */
int ff_matmul_naive_f32(int64_t M, int64_t N, int64_t K,
                        const float *A, int64_t rsa, int64_t csa,
                        const float *B, int64_t rsb, int64_t csb,
                        float *C, int64_t ldc);
int ff_matmul_naive_f64(int64_t M, int64_t N, int64_t K,
                        const double *A, int64_t rsa, int64_t csa,
                        const double *B, int64_t rsb, int64_t csb,
                        double *C, int64_t ldc);

/* out (M, N) = 1 / (1 + exp(-Z)), overflow-safe (exp of a positive number is never taken).
 * out may be Z itself when Z is written row-major with rsz = ldo, csz = 1. */
int ff_sigmoid_f32(int64_t M, int64_t N, const float *Z, int64_t rsz, int64_t csz,
                   float *out, int64_t ldo);
int ff_sigmoid_f64(int64_t M, int64_t N, const double *Z, int64_t rsz, int64_t csz,
                   double *out, int64_t ldo);

/* dz (M, N) = da * a * (1 - a): the sigmoid's backward from its output a. */
int ff_sigmoid_backward_f32(int64_t M, int64_t N,
                            const float *a, int64_t rsa, int64_t csa,
                            const float *da, int64_t rsd, int64_t csd,
                            float *dz, int64_t lddz);
int ff_sigmoid_backward_f64(int64_t M, int64_t N,
                            const double *a, int64_t rsa, int64_t csa,
                            const double *da, int64_t rsd, int64_t csd,
                            double *dz, int64_t lddz);

/* In place: Z (M, N) = act(Z + b); b (N,) read at b[j * incb], or NULL for no bias. */
int ff_bias_act_f32(int64_t M, int64_t N, float *Z, int64_t ldz,
                    const float *b, int64_t incb, int act);
int ff_bias_act_f64(int64_t M, int64_t N, double *Z, int64_t ldz,
                    const double *b, int64_t incb, int act);

/* dz (M, N) = act'(a) * da from the forward output a (softmax: its Jacobian-vector
 * product a * (da - sum_j a da)); db (N,) = column sums of dz, or NULL to skip them. */
int ff_act_backward_f32(int64_t M, int64_t N, int act,
                        const float *a, int64_t rsa, int64_t csa,
                        const float *da, int64_t rsd, int64_t csd,
                        float *dz, int64_t lddz, float *db);
int ff_act_backward_f64(int64_t M, int64_t N, int act,
                        const double *a, int64_t rsa, int64_t csa,
                        const double *da, int64_t rsd, int64_t csd,
                        double *dz, int64_t lddz, double *db);

/* a (N, OUT) = act(x (N, IN) @ W (IN, OUT) + b (OUT,)); b may be NULL. */
int ff_dense_forward_f32(int64_t N, int64_t IN, int64_t OUT,
                         const float *x, int64_t rsx, int64_t csx,
                         const float *W, int64_t rsw, int64_t csw,
                         const float *b, int64_t incb, int act,
                         float *out, int64_t ldo, const ff_config *cfg);
int ff_dense_forward_f64(int64_t N, int64_t IN, int64_t OUT,
                         const double *x, int64_t rsx, int64_t csx,
                         const double *W, int64_t rsw, int64_t csw,
                         const double *b, int64_t incb, int act,
                         double *out, int64_t ldo, const ff_config *cfg);

/* Backward through one dense layer, given the forward output a and da = dL/da:
 *   dz (N, OUT) = act'(a) * da   (written: the caller's workspace, also a result)
 *   dx (N, IN)  = dz @ W.T,   dW (IN, OUT) = x.T @ dz,   db (OUT,) = sum over rows of dz */
int ff_dense_backward_f32(int64_t N, int64_t IN, int64_t OUT,
                          const float *x, int64_t rsx, int64_t csx,
                          const float *W, int64_t rsw, int64_t csw,
                          const float *a, int64_t rsa, int64_t csa,
                          const float *da, int64_t rsd, int64_t csd, int act,
                          float *dz, int64_t lddz, float *dx, int64_t lddx,
                          float *dW, int64_t lddw, float *db, const ff_config *cfg);
int ff_dense_backward_f64(int64_t N, int64_t IN, int64_t OUT,
                          const double *x, int64_t rsx, int64_t csx,
                          const double *W, int64_t rsw, int64_t csw,
                          const double *a, int64_t rsa, int64_t csa,
                          const double *da, int64_t rsd, int64_t csd, int act,
                          double *dz, int64_t lddz, double *dx, int64_t lddx,
                          double *dW, int64_t lddw, double *db, const ff_config *cfg);
/* FF_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* FASTFACE_H */
