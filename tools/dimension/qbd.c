/* SPDX-License-Identifier: MIT */
/*
 * Matrix-geometric solution of a QBD (Latouche & Ramaswami, Introduction to Matrix Analytic
 * Methods, 1999, ch. 6 and 8). All products and solves go to CBLAS/LAPACKE through linalg.
 */
#include "qbd.h"
#include "linalg.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LR_MAX_ITERS 64
#define LR_TOL 1e-14

void nsk_qbd_sol_fini(struct nsk_qbd_sol *sol)
{
	free(sol->R);
	free(sol->pi0);
	free(sol->pi1);
	free(sol->zeta);
	free(sol->eta);
	memset(sol, 0, sizeof(*sol));
}

static void transpose(size_t m, const double *A, double *At)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < m; j++)
			At[j * m + i] = A[i * m + j];
}

/* colsum_dev - max_j |1 - sum_i g[i][j]|: how far g^T is from stochastic. */
static double colsum_dev(size_t m, const double *g, double *acc)
{
	double worst = 0.0;

	memset(acc, 0, m * sizeof(double));
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < m; j++)
			acc[j] += g[i * m + j];
	for (size_t j = 0; j < m; j++)
		if (fabs(1.0 - acc[j]) > worst)
			worst = fabs(1.0 - acc[j]);
	return worst;
}

/*
 * log_reduction - G, the minimal nonnegative solution of A2 + A1 G + A0 G^2 = 0.
 * The iteration (H = (-A1)^{-1} A0, L = (-A1)^{-1} A2; U = HL + LH; H <- (I-U)^{-1} H^2,
 * L <- (I-U)^{-1} L^2; G += T L, T <- T H) runs on the transposes h = H^T, l = L^T, so that
 * every solve is a right solve, which LAPACK does in place on row-major data; h and l are
 * stacked (2m x m) to share one LU of I - U^T.
 */
static int log_reduction(const struct nsk_qbd *q, double *G, int *iters)
{
	size_t m = q->m, mm = m * m;
	double *hl = nsk_la_alloc(2 * m, m), *hln = nsk_la_alloc(2 * m, m), *W = nsk_la_alloc(m, m);
	double *t = nsk_la_alloc(m, m), *tn = nsk_la_alloc(m, m), *g = nsk_la_alloc(m, m);
	double *acc = nsk_la_alloc(1, m);
	int err = -ENOMEM, it;

	if (!hl || !hln || !W || !t || !tn || !g || !acc)
		goto out;
	transpose(m, q->A0, hl);
	transpose(m, q->A2, hl + mm);
	transpose(m, q->A1, W);
	for (size_t i = 0; i < mm; i++)
		W[i] = -W[i];
	err = nsk_la_solve_right(m, 2 * m, W, hl);
	if (err)
		goto out;
	memcpy(g, hl + mm, mm * sizeof(double));
	memcpy(t, hl, mm * sizeof(double));
	err = -ERANGE;
	for (it = 1; it <= LR_MAX_ITERS; it++) {
		const double *h = hl, *l = hl + mm;
		double *tmp;

		/* W = I - (l h + h l); hln = [h^2; l^2]; [h; l] = hln W^{-1}. */
		nsk_la_gemm(m, m, m, -1.0, l, h, 0.0, W);
		nsk_la_gemm(m, m, m, -1.0, h, l, 1.0, W);
		for (size_t i = 0; i < m; i++)
			W[i * m + i] += 1.0;
		nsk_la_gemm(m, m, m, 1.0, h, h, 0.0, hln);
		nsk_la_gemm(m, m, m, 1.0, l, l, 0.0, hln + mm);
		int e = nsk_la_solve_right(m, 2 * m, W, hln);

		if (e) {
			err = e;
			goto out;
		}
		tmp = hl;
		hl = hln;
		hln = tmp;
		h = hl;
		l = hl + mm;
		/* g += l t; t = h t. */
		nsk_la_gemm(m, m, m, 1.0, l, t, 1.0, g);
		nsk_la_gemm(m, m, m, 1.0, h, t, 0.0, tn);
		tmp = t;
		t = tn;
		tn = tmp;
		if (colsum_dev(m, g, acc) < LR_TOL * (double)m) {
			err = 0;
			break;
		}
	}
	*iters = it;
	transpose(m, g, G);
out:
	free(hl);
	free(hln);
	free(W);
	free(t);
	free(tn);
	free(g);
	free(acc);
	return err;
}

int nsk_qbd_solve(const struct nsk_qbd *q, struct nsk_qbd_sol *sol)
{
	size_t m = q->m, m0 = q->m0;
	double *G = nsk_la_alloc(m, m), *N = nsk_la_alloc(m, m), *X = nsk_la_alloc(m0, m);
	double *C = nsk_la_alloc(m0, m0), *u = nsk_la_alloc(1, m), *nv = nsk_la_alloc(1, m0);
	double scale = 0.0, res = 0.0;
	int err = -ENOMEM;

	memset(sol, 0, sizeof(*sol));
	sol->m = m;
	sol->m0 = m0;
	sol->R = nsk_la_alloc(m, m);
	sol->pi0 = nsk_la_alloc(1, m0);
	sol->pi1 = nsk_la_alloc(1, m);
	sol->zeta = nsk_la_alloc(1, m);
	sol->eta = nsk_la_alloc(1, m);
	if (!G || !N || !X || !C || !u || !nv || !sol->R || !sol->pi0 || !sol->pi1 || !sol->zeta ||
	    !sol->eta)
		goto out;

	err = log_reduction(q, G, &sol->iters);
	if (err)
		goto out;

	/* R = A0 (-A1 - A0 G)^{-1}. */
	nsk_la_gemm(m, m, m, -1.0, q->A0, G, 0.0, N);
	for (size_t i = 0; i < m * m; i++)
		N[i] -= q->A1[i];
	memcpy(sol->R, q->A0, m * m * sizeof(double));
	err = nsk_la_solve_right(m, m, N, sol->R);
	if (err)
		goto out;

	/* Residual of A0 + R A1 + R^2 A2 = 0, relative to the largest rate. */
	nsk_la_gemm(m, m, m, 1.0, sol->R, q->A2, 0.0, G); /* G := R A2 (G no longer needed) */
	for (size_t i = 0; i < m * m; i++) {
		N[i] = q->A1[i] + G[i]; /* N := A1 + R A2 */
		if (fabs(q->A1[i]) > scale)
			scale = fabs(q->A1[i]);
	}
	memcpy(G, q->A0, m * m * sizeof(double));
	nsk_la_gemm(m, m, m, 1.0, sol->R, N, 1.0, G);
	for (size_t i = 0; i < m * m; i++)
		if (fabs(G[i]) > res)
			res = fabs(G[i]);
	sol->residual = scale > 0.0 ? res / scale : res;

	/*
	 * Boundary: pi0 B00 + pi1 B10 = 0 and pi0 B01 + pi1 (A1 + R A2) = 0, so
	 * pi1 = pi0 X with X = B01 (-(A1 + R A2))^{-1} and pi0 (B00 + X B10) = 0.
	 */
	for (size_t i = 0; i < m * m; i++)
		N[i] = -N[i];
	memcpy(X, q->B01, m0 * m * sizeof(double));
	err = nsk_la_solve_right(m, m0, N, X);
	if (err)
		goto out;
	memcpy(C, q->B00, m0 * m0 * sizeof(double));
	nsk_la_gemm(m0, m, m0, 1.0, X, q->B10, 1.0, C);

	/* Normalisation: pi0 1 + pi1 (I-R)^{-1} 1 = pi0 (1 + X u) = 1 with u = (I-R)^{-1} 1. */
	for (size_t i = 0; i < m * m; i++)
		N[i] = -sol->R[i];
	for (size_t i = 0; i < m; i++) {
		N[i * m + i] += 1.0;
		u[i] = 1.0;
	}
	err = nsk_la_solve_left(m, 1, N, u);
	if (err)
		goto out;
	nsk_la_matvec(m0, m, X, u, nv);
	/* Replace the last balance equation (column m0-1 of C) by the normalisation. */
	for (size_t i = 0; i < m0; i++) {
		C[i * m0 + m0 - 1] = 1.0 + nv[i];
		sol->pi0[i] = 0.0;
	}
	sol->pi0[m0 - 1] = 1.0;
	err = nsk_la_solve_right(m0, 1, C, sol->pi0);
	if (err)
		goto out;
	nsk_la_vecmat(m0, m, sol->pi0, X, sol->pi1);

	/* zeta = pi1 (I-R)^{-1}, eta = zeta (I-R)^{-1}. */
	for (int pass = 0; pass < 2; pass++) {
		double *dst = pass ? sol->eta : sol->zeta;

		memcpy(dst, pass ? sol->zeta : sol->pi1, m * sizeof(double));
		for (size_t i = 0; i < m * m; i++)
			N[i] = -sol->R[i];
		for (size_t i = 0; i < m; i++)
			N[i * m + i] += 1.0;
		err = nsk_la_solve_right(m, 1, N, dst);
		if (err)
			goto out;
	}
out:
	free(G);
	free(N);
	free(X);
	free(C);
	free(u);
	free(nv);
	if (err)
		nsk_qbd_sol_fini(sol);
	return err;
}
