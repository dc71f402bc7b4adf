/* SPDX-License-Identifier: MIT */
/*
 * Unit test of sim.c: the simulated M/M/1 queue against its closed forms (mean wait, P(W>y),
 * sojourn percentiles ln(1/(1-q))/(mu-lambda)), the filling with a timeout against batch.c,
 * determinism for a seed, and refusal of unstable or bad configurations.
 */
#include "batch.h"
#include "dimension_test.h"
#include "sim.h"

#include <errno.h>

#define CHECK_CI(st, want)                                                                         \
	do {                                                                                       \
		double w_ = (want);                                                                \
		if (!(fabs((st).mean - w_) <= 3.0 * (st).half + 0.01 * fabs(w_))) {                \
			fprintf(stderr, "%s:%d: sim %s = %.6g +- %.3g, want %.6g\n", __FILE__,     \
			        __LINE__, #st, (st).mean, (st).half, w_);                          \
			nsk_test_failures++;                                                       \
		}                                                                                  \
	} while (0)

int main(void)
{
	double lam = 6e4, mu = 1e5, rho = lam / mu, y = 20e-6;
	unsigned k = 1;
	struct nsk_sim_cfg c = {.nsrc = 1,
	                        .rate = &lam,
	                        .k = &k,
	                        .svc = {.container_rate = mu, .container_order = 1},
	                        .packets = 400000,
	                        .seed = 3,
	                        .y = y};
	struct nsk_sim_result r, r2;
	struct nsk_batch b;

	CHECK(nsk_sim_run(&c, &r) == 0);
	CHECK(r.packets == 400000);
	CHECK_CI(r.wait, rho / (mu - lam));
	CHECK_CI(r.delay, 1.0 / (mu - lam));
	CHECK_CI(r.p_wait_gt_y, rho * exp(-(mu - lam) * y));
	CHECK_CI(r.p50, log(2.0) / (mu - lam));
	CHECK_CI(r.p90, log(10.0) / (mu - lam));
	CHECK_CI(r.p99, log(100.0) / (mu - lam));
	CHECK_CI(r.rho, rho);
	CHECK(r.p99.half > 0.0 && r.delay.half > 0.0);

	/* Same seed, same numbers. */
	CHECK(nsk_sim_run(&c, &r2) == 0);
	CHECK(r.delay.mean == r2.delay.mean && r.p99.mean == r2.p99.mean);

	/* Timeout: the measured filling matches the closed form. */
	double lam2[2] = {5e4, 2e4};
	unsigned k2[2] = {16, 16};
	struct nsk_sim_cfg t = {.nsrc = 2,
	                        .rate = lam2,
	                        .k = k2,
	                        .timeout = 100e-6,
	                        .svc = {.container_rate = 5e4, .container_order = 1},
	                        .packets = 200000,
	                        .seed = 5};
	double fill = 0.0;

	CHECK(nsk_sim_run(&t, &r) == 0);
	for (int i = 0; i < 2; i++) {
		CHECK(nsk_batch_eval(lam2[i], 16, 100e-6, &b, NULL) == 0);
		fill += lam2[i] / 7e4 * b.fill_mean;
	}
	CHECK_CI(r.fill, fill);

	/* Unstable and bad configurations. */
	lam = 2e5;
	CHECK(nsk_sim_run(&c, &r) == -ERANGE);
	lam = -1.0;
	CHECK(nsk_sim_run(&c, &r) == -EINVAL);
	TEST_DONE("sim");
}
