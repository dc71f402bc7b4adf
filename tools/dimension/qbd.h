/* SPDX-License-Identifier: MIT */
/*
 * Level-independent quasi-birth-and-death processes with a distinct level 0: G by the
 * logarithmic reduction of Latouche and Ramaswami (1993), R = A0 (-A1 - A0 G)^{-1}, and the
 * matrix-geometric stationary law pi_n = pi_1 R^{n-1} (n >= 1).
 */
#ifndef NSK_DIMENSION_QBD_H
#define NSK_DIMENSION_QBD_H

#include <stddef.h>

/*
 * Generator blocks: A0 (up one level), A1 (same level), A2 (down one level) for levels >= 1,
 * all m x m; level 0 has m0 phases with B00 (m0 x m0), B01 (m0 x m, 0 -> 1), B10 (m x m0).
 */
struct nsk_qbd {
	size_t m, m0;
	const double *A0, *A1, *A2;
	const double *B00, *B01, *B10;
};

struct nsk_qbd_sol {
	size_t m, m0;
	double *R;       /* m x m rate matrix */
	double *pi0;     /* m0: level 0 */
	double *pi1;     /* m: level 1 */
	double *zeta;    /* m: sum_{n>=1} pi_n = pi1 (I-R)^{-1} */
	double *eta;     /* m: sum_{n>=1} n pi_n = pi1 (I-R)^{-2} */
	int iters;       /* logarithmic-reduction iterations */
	double residual; /* max |A0 + R A1 + R^2 A2| relative to max |A1| */
};

/*
 * nsk_qbd_solve - stationary law of a positive recurrent QBD. sol is allocated here; release
 * it with nsk_qbd_sol_fini. Returns 0, -ENOMEM, -EDOM (singular system) or -ERANGE (no
 * convergence: the process is not positive recurrent or is too close to the boundary).
 */
int nsk_qbd_solve(const struct nsk_qbd *q, struct nsk_qbd_sol *sol);

/* nsk_qbd_sol_fini - release a solution (safe on a zeroed struct). */
void nsk_qbd_sol_fini(struct nsk_qbd_sol *sol);

#endif
