/* SPDX-License-Identifier: MIT */
/*
 * Container filling with a size limit and a timeout. With N = Pois(lambda t) packets after
 * the first one, the size is J = 1 + min(N, k - 1); the time to close after the first packet
 * is M = min(S_{k-1}, t) with S_{k-1} the (k-1)-th arrival, and integrating the Poisson terms
 * gives every moment below in closed form (see docs/DIMENSION.md).
 */
#include "batch.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* pois_ge - ge[n] = P(Pois(x) >= n) for n = 0..nmax; x = INFINITY gives all ones. */
static void pois_ge(double x, unsigned nmax, double *ge)
{
	double cdf = 0.0;

	ge[0] = 1.0;
	for (unsigned n = 1; n <= nmax; n++) {
		if (isinf(x)) {
			ge[n] = 1.0;
			continue;
		}
		cdf += exp(-x + (n - 1) * log(x) - lgamma((double)n));
		ge[n] = cdf >= 1.0 ? 0.0 : 1.0 - cdf;
	}
}

int nsk_batch_eval(double lambda, unsigned k, double t, struct nsk_batch *b, double *pmf)
{
	double *ge, x, fill_sum = 0.0, m1 = 0.0, m2 = 0.0, j1 = 1.0, j2 = 0.0;

	if (!(lambda > 0.0) || !isfinite(lambda) || k == 0 || isnan(t))
		return -EINVAL;
	ge = malloc((k + 2) * sizeof(*ge));
	if (!ge)
		return -ENOMEM;
	x = (t > 0.0 && isfinite(t)) ? lambda * t : INFINITY;
	pois_ge(x, k + 1, ge);

	for (unsigned n = 0; n + 2 <= k; n++) {
		fill_sum += (n + 1) / lambda * ge[n + 1];
		m1 += ge[n + 1] / lambda;
		m2 += 2.0 * (n + 1) / (lambda * lambda) * ge[n + 2];
	}
	for (unsigned n = 1; n < k; n++)
		j1 += ge[n];
	/* P(J = j) = P(N = j - 1) for j < k, P(J = k) = P(N >= k - 1). */
	for (unsigned j = 1; j <= k; j++) {
		double p = j < k ? ge[j - 1] - ge[j] : ge[k - 1];

		j2 += (double)j * j * p;
		if (pmf)
			pmf[j] = p;
	}
	if (pmf)
		pmf[0] = 0.0;

	b->size_mean = j1;
	b->size_m2 = j2;
	b->fill_mean = fill_sum / j1;
	b->ia_mean = 1.0 / lambda + m1;
	b->ia_m2 = 2.0 / (lambda * lambda) + 2.0 * m1 / lambda + m2;
	b->p_timeout = k > 1 ? 1.0 - ge[k - 1] : 0.0;
	free(ge);
	return 0;
}
