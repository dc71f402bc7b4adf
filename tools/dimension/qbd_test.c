/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the QBD solver, directly on the scalar M/M/1 chain and through the model
 * against closed forms: M/M/1 (mean wait, P(W > y), L), E_k/M/1 (GI/M/1 root sigma, solved
 * here by fixed-point iteration) and M/E_m/1 (Pollaczek-Khinchine), plus Little's law.
 */
#include "dimension_test.h"
#include "model.h"
#include "qbd.h"

#include <errno.h>

static void direct_mm1(void)
{
	double lam = 3.0, mu = 5.0, rho = lam / mu;
	double A0 = lam, A1 = -(lam + mu), A2 = mu, B00 = -lam, B01 = lam, B10 = mu;
	struct nsk_qbd q = {.m = 1,
	                    .m0 = 1,
	                    .A0 = &A0,
	                    .A1 = &A1,
	                    .A2 = &A2,
	                    .B00 = &B00,
	                    .B01 = &B01,
	                    .B10 = &B10};
	struct nsk_qbd_sol sol;

	CHECK(nsk_qbd_solve(&q, &sol) == 0);
	CHECK_REL(sol.R[0], rho, 1e-12);
	CHECK_REL(sol.pi0[0], 1.0 - rho, 1e-12);
	CHECK_REL(sol.pi1[0], (1.0 - rho) * rho, 1e-12);
	CHECK_REL(sol.eta[0], rho / (1.0 - rho), 1e-12); /* L = sum n pi_n */
	CHECK(sol.residual < 1e-12);
	nsk_qbd_sol_fini(&sol);
}

static void model_mm1(void)
{
	double lam = 7e4, mu = 1e5, rho = lam / mu, y[3] = {10e-6, 50e-6, 100e-6}, p[3];
	unsigned k = 1;
	struct nsk_model_cfg c = {.nsrc = 1,
	                          .rate = &lam,
	                          .k = &k,
	                          .svc = {.container_rate = mu, .container_order = 1},
	                          .y = 20e-6};
	struct nsk_model_result r;

	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK(r.approx == 0);
	CHECK_REL(r.rho, rho, 1e-12);
	CHECK_REL(r.wait_c, rho / (mu - lam), 1e-9);
	CHECK_REL(r.wait, rho / (mu - lam), 1e-9);
	CHECK_REL(r.delay, 1.0 / (mu - lam), 1e-9);
	CHECK_REL(r.mean_n, rho / (1.0 - rho), 1e-9);
	CHECK_REL(r.p_wait0, 1.0 - rho, 1e-9);
	CHECK_REL(r.p_wait_gt_y, rho * exp(-(mu - lam) * 20e-6), 1e-9);
	CHECK(nsk_model_wait_tail(&c, y, 3, p) == 0);
	for (int i = 0; i < 3; i++)
		CHECK_REL(p[i], rho * exp(-(mu - lam) * y[i]), 1e-9);
}

/* sigma_fp - the GI/M/1 root of sigma = (lam / (lam + mu (1 - sigma)))^k, by iteration. */
static double sigma_fp(double lam, unsigned k, double mu)
{
	double s = 0.0;

	for (int i = 0; i < 100000; i++) {
		double n = pow(lam / (lam + mu * (1.0 - s)), (double)k);

		if (fabs(n - s) < 1e-15)
			return n;
		s = n;
	}
	return s;
}

static void model_ekm1(unsigned k, double lam, double mu)
{
	double s = sigma_fp(lam, k, mu), y = 30e-6, p;
	struct nsk_model_cfg c = {.nsrc = 1,
	                          .rate = &lam,
	                          .k = &k,
	                          .svc = {.container_rate = mu, .container_order = 1},
	                          .y = y};
	struct nsk_model_result r;

	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK(r.approx == 0);
	CHECK_REL(r.wait_c, s / (mu * (1.0 - s)), 1e-8);
	CHECK_REL(r.p_wait_gt_y, s * exp(-mu * (1.0 - s) * y), 1e-8);
	CHECK_REL(r.fill, (k - 1) / (2.0 * lam), 1e-12);
	CHECK(nsk_model_wait_tail(&c, &y, 1, &p) == 0);
	CHECK_REL(p, r.p_wait_gt_y, 1e-12);
	CHECK_REL(r.mean_nq, r.lambda_c * r.wait_c, 1e-8); /* Little */
}

static void model_mem1(unsigned m)
{
	double lam = 6e4, mu = 1e5, rho = lam / mu, es2 = (1.0 + 1.0 / m) / (mu * mu);
	unsigned k = 1;
	struct nsk_model_cfg c = {.nsrc = 1,
	                          .rate = &lam,
	                          .k = &k,
	                          .svc = {.container_rate = mu, .container_order = m},
	                          .y = 1e-13};
	struct nsk_model_result r;

	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK_REL(r.wait_c, lam * es2 / (2.0 * (1.0 - rho)), 1e-8);
	CHECK_REL(r.p_wait_gt_y, rho, 1e-5); /* P(W > 0+) = rho for Poisson arrivals */
	CHECK_REL(r.mean_nq, r.lambda_c * r.wait_c, 1e-8);
}

static void little_superposition(void)
{
	double lam[3] = {5e4, 3e4, 2e4};
	unsigned k[3] = {3, 2, 4};
	struct nsk_model_cfg c = {
	    .nsrc = 3,
	    .rate = lam,
	    .k = k,
	    .svc = {.container_rate = 5e4, .container_order = 2, .packet_rate = 1e6}};
	struct nsk_model_result r;

	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK_REL(r.mean_nq, r.lambda_c * r.wait_c, 1e-7);
	CHECK_REL(r.mean_n - r.mean_nq, r.rho, 1e-7); /* P(busy) = rho */
	CHECK(r.residual < 1e-10);
}

int main(void)
{
	direct_mm1();
	model_mm1();
	model_ekm1(5, 8e4, 2e4);
	model_ekm1(2, 1.5e5, 1e5);
	model_ekm1(12, 1e5, 9e3);
	model_mem1(2);
	model_mem1(5);
	little_superposition();
	TEST_DONE("qbd");
}
