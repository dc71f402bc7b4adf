/* SPDX-License-Identifier: MIT */
/*
 * Continuous phase-type (PH) distributions (alpha, T): the time to absorption of a Markov
 * chain with initial law alpha and sub-generator T. Builders for Erlang, two-moment fits
 * (mixed Erlang, balanced hyperexponential) and the container service laws of the model.
 */
#ifndef NSK_DIMENSION_PH_H
#define NSK_DIMENSION_PH_H

#include <stddef.h>

struct nsk_ph {
	size_t n;      /* order (number of phases) */
	double *alpha; /* n initial probabilities, summing to 1 */
	double *T;     /* n x n row-major sub-generator */
};

/* nsk_ph_init - allocate a zeroed PH of order n. Returns 0 or -ENOMEM/-EINVAL. */
int nsk_ph_init(struct nsk_ph *ph, size_t n);

/* nsk_ph_fini - release a PH (safe on a zeroed struct). */
void nsk_ph_fini(struct nsk_ph *ph);

/* nsk_ph_erlang - Erlang of k phases with the given mean (seconds). Returns 0 or -errno. */
int nsk_ph_erlang(struct nsk_ph *ph, size_t k, double mean);

/*
 * nsk_ph_fit - two-moment fit: exponential (scv = 1), balanced-means H2 (scv > 1), mixed
 * Erlang E(n-1,n) of order n = ceil(1/scv) (scv < 1). If that order exceeds max_order the
 * result is Erlang(max_order) with the same mean and a larger scv (1/max_order).
 * Returns 0 when both moments are matched, 1 when the order cap raised the scv, or -errno.
 */
int nsk_ph_fit(struct nsk_ph *ph, double mean, double scv, size_t max_order);

/* nsk_ph_fit_order - the order nsk_ph_fit would use, without building anything. */
size_t nsk_ph_fit_order(double scv, size_t max_order);

/*
 * nsk_ph_service - container service law: an Erlang(corder) part of mean cmean (omitted when
 * cmean <= 0) followed by J exponential per-packet parts of mean pmean each (omitted when
 * pmean <= 0), where P(J = j) = jpmf[j], j = 1..kmax. Returns 0 or -errno.
 */
int nsk_ph_service(struct nsk_ph *ph, double cmean, size_t corder, double pmean, const double *jpmf,
                   size_t kmax);

/* nsk_ph_exit - t = -T 1, the absorption rate from each phase (n doubles). */
void nsk_ph_exit(const struct nsk_ph *ph, double *t);

/*
 * nsk_ph_moments - mean and second moment; r (n doubles, optional) receives the mean time to
 * absorption from each phase, (-T)^{-1} 1. Returns 0 or -errno.
 */
int nsk_ph_moments(const struct nsk_ph *ph, double *m1, double *m2, double *r);

#endif
