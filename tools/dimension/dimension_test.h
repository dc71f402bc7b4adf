/* SPDX-License-Identifier: MIT */
/*
 * Minimal checks for the dimensioning unit tests: each failed check prints its location and
 * the compared values and makes the test exit 1 at the end.
 */
#ifndef NSK_DIMENSION_TEST_H
#define NSK_DIMENSION_TEST_H

#include <math.h>
#include <stdio.h>

static int nsk_test_failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			nsk_test_failures++;                                                       \
		}                                                                                  \
	} while (0)

/* CHECK_REL - |got - want| <= rel * |want| (+ a tiny absolute slack). */
#define CHECK_REL(got, want, rel)                                                                  \
	do {                                                                                       \
		double g_ = (got), w_ = (want);                                                    \
		if (!(fabs(g_ - w_) <= (rel)*fabs(w_) + 1e-300)) {                                 \
			fprintf(stderr, "%s:%d: %s = %.12g, want %.12g (rel tol %g)\n", __FILE__,  \
			        __LINE__, #got, g_, w_, (double)(rel));                            \
			nsk_test_failures++;                                                       \
		}                                                                                  \
	} while (0)

/* CHECK_ABS - |got - want| <= tol. */
#define CHECK_ABS(got, want, tol)                                                                  \
	do {                                                                                       \
		double g_ = (got), w_ = (want);                                                    \
		if (!(fabs(g_ - w_) <= (tol))) {                                                   \
			fprintf(stderr, "%s:%d: %s = %.12g, want %.12g (abs tol %g)\n", __FILE__,  \
			        __LINE__, #got, g_, w_, (double)(tol));                            \
			nsk_test_failures++;                                                       \
		}                                                                                  \
	} while (0)

#define TEST_DONE(name)                                                                            \
	do {                                                                                       \
		if (nsk_test_failures) {                                                           \
			fprintf(stderr, "%s: %d check(s) failed\n", name, nsk_test_failures);      \
			return 1;                                                                  \
		}                                                                                  \
		printf("%s: ok\n", name);                                                          \
		return 0;                                                                          \
	} while (0)

#endif
