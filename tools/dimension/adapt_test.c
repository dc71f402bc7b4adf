/* SPDX-License-Identifier: MIT */
/*
 * Unit test of adapt.c: the E_k/M/1 root against fixed-point iteration and the QBD model,
 * the choice of the largest k meeting the target, the timeout rule, an idle channel, the
 * fallback when no k meets the target, and bad input.
 */
#include "adapt.h"
#include "dimension_test.h"
#include "model.h"

#include <errno.h>

/* The spinning-consumer cycle model: its limits. */
static void spin_model(void)
{
	struct nsk_adapt_spin m;
	/* No spin: every message (k = 1) wakes the consumer and waits one hand-over. */
	CHECK(nsk_adapt_eval_spin(5e4, 1, 0, 30, 0, 1, &m) == 0);
	CHECK_REL(m.wakes_per_msg, 1.0 / (1.0 + 0.05 * 30), 1e-12);
	CHECK_REL(m.delay_us, 1.0 + 30.0, 1e-12);
	/* Slow traffic against a long spin: the consumer almost never sleeps. */
	CHECK(nsk_adapt_eval_spin(1e5, 1, 0, 30, 200, 1, &m) == 0);
	CHECK(m.wakes_per_msg < 1e-8);
	CHECK(m.delay_us < 1.0 + 1e-6);
	/* A container of k without timeout holds k; its messages wait (k - 1) / (2 lambda). */
	CHECK(nsk_adapt_eval_spin(5e4, 8, 0, 30, 0, 1, &m) == 0);
	CHECK_REL(m.container, 8.0, 1e-9);
	CHECK_REL(m.fill_us, 7.0 / (2.0 * 0.05), 1e-3);
	/* A timeout shorter than the fill closes it early: fewer messages, shorter waits. */
	struct nsk_adapt_spin t;
	CHECK(nsk_adapt_eval_spin(5e4, 8, 20, 30, 0, 1, &t) == 0);
	CHECK_REL(t.container, 1.0 + 0.05 * 20.0, 0.05); /* about 1 + lambda t */
	CHECK(t.fill_us < m.fill_us);
	/* The measured case of docs/BENCHMARKS.md: 50 k/s, spin 50 us, k = 1, hand-over 34.3 us:
	 * about 7 % of the messages need a wake-up (measured 7.9 %). */
	CHECK(nsk_adapt_eval_spin(5e4, 1, 0, 34.3, 50, 1, &m) == 0);
	CHECK(m.wakes_per_msg > 0.06 && m.wakes_per_msg < 0.085);
	CHECK(nsk_adapt_eval_spin(0, 1, 0, 1, 1, 1, &m) == -EINVAL);
	CHECK(nsk_adapt_eval_spin(1, 0, 0, 1, 1, 1, &m) == -EINVAL);
}

int main(void)
{
	spin_model();
	struct nsk_adapt a, b;
	double s, fp = 0.0, lam = 3e5, mu = 6e4;

	/* sigma for k = 8: fixed point from 0 converges to the minimal root. */
	CHECK(nsk_adapt_sigma(lam, 8, mu, &s) == 0);
	for (int i = 0; i < 200000; i++)
		fp = pow(lam / (lam + mu * (1.0 - fp)), 8.0);
	CHECK_REL(s, fp, 1e-9);
	CHECK(s > 0.0 && s < 1.0);

	/* The closed form equals the QBD model for one source. */
	unsigned k = 8;
	struct nsk_model_cfg c = {
	    .nsrc = 1, .rate = &lam, .k = &k, .svc = {.container_rate = mu, .container_order = 1}};
	struct nsk_model_result r;

	CHECK(nsk_adapt_eval(lam, 8, mu, &a) == 0);
	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK_REL(a.wait_us, r.wait_c * 1e6, 1e-8);
	CHECK_REL(a.delay_us, r.delay * 1e6, 1e-8);
	CHECK_REL(a.rho, r.rho, 1e-12);

	/* Choice: largest k meeting 100 us; k + 1 does not; timeout = target - wait - 1/mu. */
	CHECK(nsk_adapt_choose(lam, mu, 100.0, 0, &a) == 0);
	CHECK(a.delay_us <= 100.0);
	CHECK(nsk_adapt_eval(lam, a.k + 1, mu, &b) == 0);
	CHECK(b.delay_us > 100.0);
	CHECK_REL(a.t_us, 100.0 - a.wait_us - 1e6 / mu, 1e-12);
	for (unsigned j = a.k + 1; j < a.k + 50; j++)
		CHECK(nsk_adapt_eval(lam, j, mu, &b) == 0 && b.delay_us > 100.0);

	/* Idle channel: no batching. */
	CHECK(nsk_adapt_choose(0.0, mu, 100.0, 0, &a) == 0);
	CHECK(a.k == 1 && a.t_us == 0.0);

	/* No k meets 10 us (one service is 16.7 us): smallest-delay stable k, t = target. */
	CHECK(nsk_adapt_choose(lam, mu, 10.0, 64, &a) == -ENOENT);
	CHECK(a.k >= 6 && a.t_us == 10.0);
	/* Overloaded for every k <= 4. */
	CHECK(nsk_adapt_choose(lam, mu, 100.0, 4, &a) == -ENOENT);
	CHECK(a.k == 4);

	CHECK(nsk_adapt_sigma(lam, 5, mu, &s) == -ERANGE); /* rho = 1 */
	CHECK(nsk_adapt_sigma(-1.0, 5, mu, &s) == -EINVAL);
	CHECK(nsk_adapt_choose(-1.0, mu, 100.0, 0, &a) == -EINVAL);
	CHECK(nsk_adapt_choose(lam, 0.0, 100.0, 0, &a) == -EINVAL);
	CHECK(nsk_adapt_choose(lam, mu, NAN, 0, &a) == -EINVAL);
	CHECK(nsk_adapt_choose(lam, mu, 100.0, NSK_ADAPT_K_MAX + 1, &a) == -EINVAL);
	TEST_DONE("adapt");
}
