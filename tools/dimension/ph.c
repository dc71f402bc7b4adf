/* SPDX-License-Identifier: MIT */
/*
 * Phase-type distributions for the dimensioning model. Fits follow Tijms (A First Course in
 * Stochastic Models, 2003, sec. 2.3.4); moments come from LAPACK solves with -T.
 */
#include "ph.h"
#include "linalg.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int nsk_ph_init(struct nsk_ph *ph, size_t n)
{
	if (n == 0)
		return -EINVAL;
	ph->n = n;
	ph->alpha = nsk_la_alloc(1, n);
	ph->T = nsk_la_alloc(n, n);
	if (!ph->alpha || !ph->T) {
		nsk_ph_fini(ph);
		return -ENOMEM;
	}
	return 0;
}

void nsk_ph_fini(struct nsk_ph *ph)
{
	free(ph->alpha);
	free(ph->T);
	ph->alpha = ph->T = NULL;
	ph->n = 0;
}

/* chain - phases from..n-1 in series at the given rate (the last one absorbs). */
static void chain(struct nsk_ph *ph, size_t from, double rate)
{
	for (size_t i = from; i < ph->n; i++) {
		ph->T[i * ph->n + i] = -rate;
		if (i + 1 < ph->n)
			ph->T[i * ph->n + i + 1] = rate;
	}
}

int nsk_ph_erlang(struct nsk_ph *ph, size_t k, double mean)
{
	int err;

	if (k == 0 || !(mean > 0.0) || !isfinite(mean))
		return -EINVAL;
	err = nsk_ph_init(ph, k);
	if (err)
		return err;
	ph->alpha[0] = 1.0;
	chain(ph, 0, (double)k / mean);
	return 0;
}

size_t nsk_ph_fit_order(double scv, size_t max_order)
{
	size_t n;

	if (scv >= 1.0 - 1e-12)
		n = scv > 1.0 + 1e-12 ? 2 : 1;
	else
		n = (size_t)ceil(1.0 / scv - 1e-9);
	if (n < 1)
		n = 1;
	return (max_order && n > max_order) ? max_order : n;
}

int nsk_ph_fit(struct nsk_ph *ph, double mean, double scv, size_t max_order)
{
	size_t n;
	int err;

	if (!(mean > 0.0) || !isfinite(mean) || !(scv > 0.0) || !isfinite(scv))
		return -EINVAL;
	n = nsk_ph_fit_order(scv, 0);
	if (max_order && n > max_order) {
		err = nsk_ph_erlang(ph, max_order, mean);
		return err ? err : 1;
	}
	if (scv > 1.0 + 1e-12) {
		/* Balanced means: p1/mu1 = p2/mu2. */
		double p1 = 0.5 * (1.0 + sqrt((scv - 1.0) / (scv + 1.0)));

		err = nsk_ph_init(ph, 2);
		if (err)
			return err;
		ph->alpha[0] = p1;
		ph->alpha[1] = 1.0 - p1;
		ph->T[0] = -2.0 * p1 / mean;
		ph->T[3] = -2.0 * (1.0 - p1) / mean;
		return 0;
	}
	if (n == 1)
		return nsk_ph_erlang(ph, 1, mean);
	/* Mixture: E(n-1, theta) with probability p, E(n, theta) otherwise. */
	double c2 = scv, dn = (double)n;
	double p = (dn * c2 - sqrt(dn * (1.0 + c2) - dn * dn * c2)) / (1.0 + c2);

	if (p < 0.0)
		p = 0.0;
	err = nsk_ph_init(ph, n);
	if (err)
		return err;
	chain(ph, 0, (dn - p) / mean);
	ph->alpha[0] = 1.0 - p;
	ph->alpha[1] = p;
	return 0;
}

int nsk_ph_service(struct nsk_ph *ph, double cmean, size_t corder, double pmean, const double *jpmf,
                   size_t kmax)
{
	size_t nc = cmean > 0.0 ? (corder ? corder : 1) : 0, np = pmean > 0.0 ? kmax : 0;
	int err;

	if (nc + np == 0 || (np && !jpmf))
		return -EINVAL;
	err = nsk_ph_init(ph, nc + np);
	if (err)
		return err;
	if (nc) {
		chain(ph, 0, (double)nc / cmean);
		ph->alpha[0] = 1.0;
	}
	if (np) {
		/* Packet phase nc + i has kmax - i packets left; J = j enters at kmax - j. */
		chain(ph, nc, 1.0 / pmean);
		for (size_t j = 1; j <= kmax; j++) {
			size_t to = nc + kmax - j;

			if (nc)
				ph->T[(nc - 1) * ph->n + to] = jpmf[j] * (double)nc / cmean;
			else
				ph->alpha[to] = jpmf[j];
		}
	}
	return 0;
}

void nsk_ph_exit(const struct nsk_ph *ph, double *t)
{
	for (size_t i = 0; i < ph->n; i++) {
		double s = 0.0;

		for (size_t j = 0; j < ph->n; j++)
			s += ph->T[i * ph->n + j];
		t[i] = s < 0.0 ? -s : 0.0;
	}
}

int nsk_ph_moments(const struct nsk_ph *ph, double *m1, double *m2, double *r)
{
	size_t n = ph->n;
	double *A = nsk_la_alloc(n, n), *r1 = nsk_la_alloc(1, n), *r2 = nsk_la_alloc(1, n);
	double a1 = 0.0, a2 = 0.0;
	int err = -ENOMEM;

	if (!A || !r1 || !r2)
		goto out;
	/* r1 = (-T)^{-1} 1 and r2 = (-T)^{-1} r1: E[X] = alpha r1, E[X^2] = 2 alpha r2. */
	for (size_t i = 0; i < n * n; i++)
		A[i] = -ph->T[i];
	for (size_t i = 0; i < n; i++)
		r1[i] = 1.0;
	err = nsk_la_solve_left(n, 1, A, r1);
	if (err)
		goto out;
	for (size_t i = 0; i < n * n; i++)
		A[i] = -ph->T[i];
	memcpy(r2, r1, n * sizeof(*r2));
	err = nsk_la_solve_left(n, 1, A, r2);
	if (err)
		goto out;
	for (size_t i = 0; i < n; i++) {
		a1 += ph->alpha[i] * r1[i];
		a2 += ph->alpha[i] * r2[i];
	}
	if (m1)
		*m1 = a1;
	if (m2)
		*m2 = 2.0 * a2;
	if (r)
		memcpy(r, r1, n * sizeof(*r));
out:
	free(A);
	free(r1);
	free(r2);
	return err;
}
