/* SPDX-License-Identifier: MIT */
/*
 * Dense row-major matrices of doubles for the dimensioning model: thin wrappers over CBLAS
 * (dgemm, dgemv) and LAPACKE (dgetrf/dgetrs/dgesv), so that no solver is written by hand.
 * Every function is reentrant; none keeps state.
 */
#ifndef NSK_DIMENSION_LINALG_H
#define NSK_DIMENSION_LINALG_H

#include <stddef.h>

/* nsk_la_alloc - zeroed r x c matrix; NULL on overflow or ENOMEM. Free with free(). */
double *nsk_la_alloc(size_t r, size_t c);

/* nsk_la_init - limit the BLAS library to one thread (the tool shares small machines). */
void nsk_la_init(void);

/* nsk_la_gemm - C = alpha * A(m x k) * B(k x n) + beta * C(m x n), all densely packed. */
void nsk_la_gemm(size_t m, size_t k, size_t n, double alpha, const double *A, const double *B,
                 double beta, double *C);

/* nsk_la_gemm_ld - as nsk_la_gemm with explicit row strides (leading dimensions). */
void nsk_la_gemm_ld(size_t m, size_t k, size_t n, double alpha, const double *A, size_t lda,
                    const double *B, size_t ldb, double beta, double *C, size_t ldc);

/* nsk_la_vecmat - y(row n) = x(row m) * A(m x n). */
void nsk_la_vecmat(size_t m, size_t n, const double *x, const double *A, double *y);

/* nsk_la_matvec - y(m) = A(m x n) * x(n). */
void nsk_la_matvec(size_t m, size_t n, const double *A, const double *x, double *y);

/*
 * nsk_la_solve_left - B(n x nrhs) := A^{-1} B. A (n x n) is overwritten by its LU factors.
 * Returns 0, -ENOMEM, or -EDOM when A is singular.
 */
int nsk_la_solve_left(size_t n, size_t nrhs, double *A, double *B);

/*
 * nsk_la_solve_right - B(nrhs x n) := B A^{-1}. A (n x n) is overwritten by its LU factors.
 * Returns 0, -ENOMEM, or -EDOM when A is singular.
 */
int nsk_la_solve_right(size_t n, size_t nrhs, double *A, double *B);

/* nsk_la_rowsum_dev - max_i |1 - sum_j G[i][j]|: how far G is from stochastic. */
double nsk_la_rowsum_dev(size_t n, const double *G);

#endif
