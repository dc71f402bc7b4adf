/* SPDX-License-Identifier: MIT */
/*
 * Unit test of batch.c: container filling without a timeout (Erlang values), the limits of
 * the timeout, internal identities, and a small Monte Carlo run of filling with a timeout.
 */
#include "batch.h"
#include "dimension_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t lcg = 88172645463325252ull;

static double unif(void)
{
	lcg ^= lcg << 13;
	lcg ^= lcg >> 7;
	lcg ^= lcg << 17;
	return ((lcg >> 11) + 1) * 0x1.0p-53;
}

/* monte_carlo - packet-averaged fill and mean size with timeout t. */
static void monte_carlo(double lam, unsigned k, double t, double *fill, double *size)
{
	double fsum = 0.0, n = 0.0, c = 0.0;

	for (int rep = 0; rep < 200000; rep++) {
		double arr[64], now = 0.0, close;
		unsigned j = 1;

		arr[0] = 0.0;
		while (j < k) {
			now += -log(unif()) / lam;
			if (now > t)
				break;
			arr[j++] = now;
		}
		close = j == k ? arr[k - 1] : t;
		for (unsigned i = 0; i < j; i++)
			fsum += close - arr[i];
		n += j;
		c += 1.0;
	}
	*fill = fsum / n;
	*size = n / c;
}

int main(void)
{
	struct nsk_batch b;
	double pmf[65], sum = 0.0, fill, size;

	/* No timeout: J = k, fill (k-1)/(2 lambda), Erlang(k) interarrival. */
	CHECK(nsk_batch_eval(1e5, 8, 0.0, &b, pmf) == 0);
	CHECK_REL(b.size_mean, 8.0, 1e-12);
	CHECK_REL(b.size_m2, 64.0, 1e-12);
	CHECK_REL(b.fill_mean, 7.0 / 2e5, 1e-12);
	CHECK_REL(b.ia_mean, 8.0 / 1e5, 1e-12);
	CHECK_REL(b.ia_m2, 8.0 * 9.0 / 1e10, 1e-12);
	CHECK_ABS(b.p_timeout, 0.0, 0.0);
	CHECK_REL(pmf[8], 1.0, 1e-12);

	/* A huge timeout is no timeout; a tiny one makes singletons. */
	CHECK(nsk_batch_eval(1e5, 8, 10.0, &b, NULL) == 0);
	CHECK_REL(b.fill_mean, 7.0 / 2e5, 1e-9);
	CHECK(nsk_batch_eval(1e5, 8, 1e-12, &b, NULL) == 0);
	CHECK_ABS(b.size_mean, 1.0, 1e-6);
	CHECK_ABS(b.fill_mean, 0.0, 1e-12);

	/* Identities with a binding timeout, and Monte Carlo agreement. */
	CHECK(nsk_batch_eval(2e5, 32, 50e-6, &b, pmf) == 0);
	for (int j = 0; j <= 32; j++)
		sum += pmf[j];
	CHECK_REL(sum, 1.0, 1e-12);
	CHECK_REL(b.ia_mean, b.size_mean / 2e5, 1e-12);
	CHECK(b.p_timeout > 0.9);
	monte_carlo(2e5, 32, 50e-6, &fill, &size);
	CHECK_REL(b.size_mean, size, 0.01);
	CHECK_REL(b.fill_mean, fill, 0.01);
	CHECK(nsk_batch_eval(1e5, 16, 100e-6, &b, NULL) == 0);
	monte_carlo(1e5, 16, 100e-6, &fill, &size);
	CHECK_REL(b.size_mean, size, 0.01);
	CHECK_REL(b.fill_mean, fill, 0.01);

	/* Bad input. */
	CHECK(nsk_batch_eval(-1.0, 4, 0.0, &b, NULL) == -EINVAL);
	CHECK(nsk_batch_eval(1.0, 0, 0.0, &b, NULL) == -EINVAL);
	CHECK(nsk_batch_eval(NAN, 4, 0.0, &b, NULL) == -EINVAL);
	TEST_DONE("batch");
}
