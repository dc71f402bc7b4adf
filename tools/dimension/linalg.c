/* SPDX-License-Identifier: MIT */
/*
 * Dense linear algebra for the dimensioning model, delegated to CBLAS and LAPACKE.
 * Matrices are row-major; right-hand solves use the column-major view of a row-major
 * matrix (its transpose), which avoids copying.
 */
#include "linalg.h"

#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef NSK_HAVE_OPENBLAS
void openblas_set_num_threads(int num_threads);
#endif

double *nsk_la_alloc(size_t r, size_t c)
{
	if (r != 0 && c > SIZE_MAX / sizeof(double) / r)
		return NULL;
	return calloc((r && c) ? r * c : 1, sizeof(double));
}

void nsk_la_init(void)
{
#ifdef NSK_HAVE_OPENBLAS
	openblas_set_num_threads(1);
#endif
}

void nsk_la_gemm(size_t m, size_t k, size_t n, double alpha, const double *A, const double *B,
                 double beta, double *C)
{
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, A,
	            (int)k, B, (int)n, beta, C, (int)n);
}

void nsk_la_gemm_ld(size_t m, size_t k, size_t n, double alpha, const double *A, size_t lda,
                    const double *B, size_t ldb, double beta, double *C, size_t ldc)
{
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, A,
	            (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void nsk_la_vecmat(size_t m, size_t n, const double *x, const double *A, double *y)
{
	cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, 1.0, A, (int)n, x, 1, 0.0, y, 1);
}

void nsk_la_matvec(size_t m, size_t n, const double *A, const double *x, double *y)
{
	cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0, A, (int)n, x, 1, 0.0, y, 1);
}

static int solve(int layout, size_t n, size_t nrhs, double *A, double *B, size_t ldb)
{
	lapack_int *ipiv = malloc((n ? n : 1) * sizeof(*ipiv));
	lapack_int info;

	if (!ipiv)
		return -ENOMEM;
	info = LAPACKE_dgesv(layout, (lapack_int)n, (lapack_int)nrhs, A, (lapack_int)n, ipiv, B,
	                     (lapack_int)ldb);
	free(ipiv);
	if (info > 0)
		return -EDOM;
	return info < 0 ? -EINVAL : 0;
}

int nsk_la_solve_left(size_t n, size_t nrhs, double *A, double *B)
{
	return solve(LAPACK_ROW_MAJOR, n, nrhs, A, B, nrhs);
}

int nsk_la_solve_right(size_t n, size_t nrhs, double *A, double *B)
{
	/*
	 * Read as column-major, the row-major A is A^T and the row-major B (nrhs x n) is
	 * B^T (n x nrhs); solving A^T X = B^T gives X = (B A^{-1})^T, i.e. B A^{-1} row-major.
	 */
	return solve(LAPACK_COL_MAJOR, n, nrhs, A, B, n);
}

double nsk_la_rowsum_dev(size_t n, const double *G)
{
	double worst = 0.0;

	for (size_t i = 0; i < n; i++) {
		double s = 0.0;

		for (size_t j = 0; j < n; j++)
			s += G[i * n + j];
		if (fabs(1.0 - s) > worst)
			worst = fabs(1.0 - s);
	}
	return worst;
}
