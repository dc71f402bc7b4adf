/* SPDX-License-Identifier: MIT */
/* Unit test of ph.c: Erlang moments, two-moment fits, the container service law. */
#include "dimension_test.h"
#include "ph.h"

#include <errno.h>

static void fit_case(double mean, double scv)
{
	struct nsk_ph ph = {0};
	double m1, m2;

	CHECK(nsk_ph_fit(&ph, mean, scv, 0) == 0);
	CHECK(nsk_ph_moments(&ph, &m1, &m2, NULL) == 0);
	CHECK_REL(m1, mean, 1e-9);
	CHECK_REL(m2 / (m1 * m1) - 1.0, scv, 1e-7);
	nsk_ph_fini(&ph);
}

int main(void)
{
	struct nsk_ph ph = {0};
	double m1, m2, r[4], pmf[5] = {0, 0.1, 0.2, 0.3, 0.4};

	CHECK(nsk_ph_erlang(&ph, 4, 2.0) == 0);
	CHECK(nsk_ph_moments(&ph, &m1, &m2, r) == 0);
	CHECK_REL(m1, 2.0, 1e-12);
	CHECK_REL(m2, 4.0 * 5.0 / 4.0, 1e-12); /* k(k+1)/rate^2, rate 2 */
	CHECK_REL(r[3], 0.5, 1e-12);           /* one phase left */
	nsk_ph_fini(&ph);

	for (double scv = 0.04; scv < 4.0; scv *= 1.7)
		fit_case(3e-6, scv);
	fit_case(1.0, 1.0);
	fit_case(1.0, 0.25);

	/* The order cap keeps the mean and raises the scv to 1/cap. */
	CHECK(nsk_ph_fit(&ph, 5.0, 0.01, 10) == 1);
	CHECK(ph.n == 10);
	CHECK(nsk_ph_moments(&ph, &m1, &m2, NULL) == 0);
	CHECK_REL(m1, 5.0, 1e-12);
	CHECK_REL(m2 / (m1 * m1) - 1.0, 0.1, 1e-9);
	nsk_ph_fini(&ph);
	CHECK(nsk_ph_fit_order(0.01, 0) == 100);
	CHECK(nsk_ph_fit_order(2.0, 0) == 2);

	/* Service: Erlang(3) part of mean 1 plus J ~ pmf exponential parts of mean 0.5. */
	CHECK(nsk_ph_service(&ph, 1.0, 3, 0.5, pmf, 4) == 0);
	CHECK(nsk_ph_moments(&ph, &m1, &m2, NULL) == 0);
	double ej = 3.0, ej2 = 0.1 + 0.8 + 2.7 + 6.4;
	double var = 1.0 / 3.0 + ej * 0.25 + (ej2 - ej * ej) * 0.25;

	CHECK_REL(m1, 1.0 + ej * 0.5, 1e-12);
	CHECK_REL(m2 - m1 * m1, var, 1e-12);
	nsk_ph_fini(&ph);

	/* Per-packet only: J = 4 always gives Erlang(4). */
	double det[5] = {0, 0, 0, 0, 1};

	CHECK(nsk_ph_service(&ph, 0.0, 1, 0.25, det, 4) == 0);
	CHECK(nsk_ph_moments(&ph, &m1, &m2, NULL) == 0);
	CHECK_REL(m1, 1.0, 1e-12);
	CHECK_REL(m2 - m1 * m1, 0.25, 1e-12);
	nsk_ph_fini(&ph);

	CHECK(nsk_ph_erlang(&ph, 0, 1.0) == -EINVAL);
	CHECK(nsk_ph_fit(&ph, -1.0, 1.0, 0) == -EINVAL);
	CHECK(nsk_ph_service(&ph, 0.0, 1, 0.0, pmf, 4) == -EINVAL);
	TEST_DONE("ph");
}
