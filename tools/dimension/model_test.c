/* SPDX-License-Identifier: MIT */
/*
 * Unit test of model.c: exact lumping of identical sources, a superposition checked against
 * the simulator, the coarse approximation against the exact model, the k-selection logic and
 * bad input. Tolerance against simulation: |model - sim| <= 3 CI95 half-widths + 1% of model.
 */
#include "adapt.h"
#include "dimension_test.h"
#include "model.h"
#include "sim.h"

#include <errno.h>
#include <string.h>

#define CHECK_SIM(model, st)                                                                       \
	do {                                                                                       \
		double m_ = (model), s_ = (st).mean, h_ = (st).half;                               \
		if (!(fabs(m_ - s_) <= 3.0 * h_ + 0.01 * fabs(m_))) {                              \
			fprintf(stderr, "%s:%d: model %s = %.6g, sim %.6g +- %.3g\n", __FILE__,    \
			        __LINE__, #model, m_, s_, h_);                                     \
			nsk_test_failures++;                                                       \
		}                                                                                  \
	} while (0)

/* Three identical sources are lumped (C(6,3) = 20 phases instead of 64); separating them by
 * a relative 1e-12 in rate forces the plain Kronecker product: both must agree. */
static void lumping(void)
{
	double same[3] = {4e4, 4e4, 4e4}, apart[3] = {4e4, 4e4 * (1 + 1e-12), 4e4 * (1 - 1e-12)};
	unsigned k[3] = {4, 4, 4};
	struct nsk_model_cfg c = {.nsrc = 3,
	                          .rate = same,
	                          .k = k,
	                          .svc = {.container_rate = 4e4, .container_order = 1},
	                          .y = 20e-6};
	struct nsk_model_result a, b;

	CHECK(nsk_model_solve(&c, &a) == 0);
	c.rate = apart;
	CHECK(nsk_model_solve(&c, &b) == 0);
	CHECK(a.arrival_phases == 20);
	CHECK(b.arrival_phases == 64);
	CHECK_REL(a.wait_c, b.wait_c, 1e-9);
	CHECK_REL(a.mean_n, b.mean_n, 1e-9);
	CHECK_REL(a.p_wait_gt_y, b.p_wait_gt_y, 1e-9);
}

/* Two sources with different k (3 and 4): exact MAP/M/1 against the simulator. */
static void superposition_vs_sim(void)
{
	double lam[2] = {1e5, 5e4};
	unsigned k[2] = {3, 4};
	struct nsk_model_service svc = {.container_rate = 5.5e4, .container_order = 1};
	struct nsk_model_cfg c = {.nsrc = 2, .rate = lam, .k = k, .svc = svc, .y = 40e-6};
	struct nsk_sim_cfg sc = {
	    .nsrc = 2, .rate = lam, .k = k, .svc = svc, .packets = 600000, .seed = 7, .y = 40e-6};
	struct nsk_model_result r;
	struct nsk_sim_result s;

	CHECK(nsk_model_solve(&c, &r) == 0);
	CHECK(r.approx == 0);
	CHECK(r.rho > 0.8 && r.rho < 0.85);
	CHECK(nsk_sim_run(&sc, &s) == 0);
	CHECK_SIM(r.wait_c, s.wait_c);
	CHECK_SIM(r.wait, s.wait);
	CHECK_SIM(r.delay, s.delay);
	CHECK_SIM(r.fill, s.fill);
	CHECK_SIM(r.p_wait_gt_y, s.p_wait_gt_y);
	CHECK_SIM(r.rho, s.rho);
}

/*
 * Coarsening (max_phases too small for the exact chain): as is, it errs high and stays within
 * 10%; extrapolated from two reductions it is within 1% of the exact model.
 */
static void coarse_vs_exact(void)
{
	double lam[2] = {1e5, 5e4};
	unsigned k[2] = {16, 16};
	struct nsk_model_cfg c = {.nsrc = 2,
	                          .rate = lam,
	                          .k = k,
	                          .svc = {.container_rate = 1.2e4, .container_order = 1},
	                          .max_phases = 256,
	                          .y = 100e-6};
	struct nsk_model_result exact, coarse, ext;

	CHECK(nsk_model_solve(&c, &exact) == 0);
	CHECK(exact.approx == 0 && exact.phases == 256);
	c.max_phases = 100;
	c.no_extrapolate = 1;
	CHECK(nsk_model_solve(&c, &coarse) == 0);
	CHECK(coarse.approx == NSK_MODEL_APPROX_COARSE && coarse.phases <= 100);
	CHECK(coarse.wait_c >= exact.wait_c);
	CHECK_REL(coarse.wait_c, exact.wait_c, 0.10);
	CHECK_REL(coarse.delay, exact.delay, 0.02);
	CHECK_REL(coarse.rho, exact.rho, 1e-12);
	c.no_extrapolate = 0;
	CHECK(nsk_model_solve(&c, &ext) == 0);
	CHECK(ext.approx == (NSK_MODEL_APPROX_COARSE | NSK_MODEL_APPROX_EXTRAP));
	CHECK_REL(ext.wait_c, exact.wait_c, 0.01);
	CHECK_REL(ext.wait, exact.wait, 0.01);
	CHECK_REL(ext.delay, exact.delay, 0.002);
	CHECK_ABS(ext.p_wait_gt_y, exact.p_wait_gt_y, 0.003);
	CHECK_REL(ext.mean_nq, exact.mean_nq, 0.01);
}

static void pick_logic(void)
{
	struct nsk_model_row rows[6];
	struct nsk_model_sweep sw = {.k_min = 1, .k_max = 6, .target = 50e-6};
	double delay[6] = {0, 60e-6, 40e-6, 45e-6, 55e-6, 49e-6};

	memset(rows, 0, sizeof(rows));
	for (int i = 0; i < 6; i++) {
		rows[i].k = (unsigned)i + 1;
		rows[i].r.delay = delay[i];
		rows[i].r.p_wait_gt_y = 0.01 * i;
	}
	rows[0].status = -ERANGE;                 /* k = 1 unstable */
	CHECK(nsk_model_pick(rows, 6, &sw) == 5); /* largest feasible k, even past a gap */
	CHECK(!rows[0].feasible && !rows[1].feasible && rows[2].feasible && !rows[4].feasible);
	sw.p_max = 0.035; /* P(wait > target) <= 3.5% */
	CHECK(nsk_model_pick(rows, 6, &sw) == 3);
	sw.p_max = 0.0;
	sw.target = 10e-6;
	CHECK(nsk_model_pick(rows, 6, &sw) == -ENOENT);
	for (int i = 0; i < 6; i++)
		rows[i].status = -ERANGE;
	CHECK(nsk_model_pick(rows, 6, &sw) == -ERANGE);
}

/* One source: the QBD sweep and the closed-form adapter must choose the same k. */
static void choose_single_source(void)
{
	double lam = 2e5, mu = 5e4;
	unsigned k0 = 1;
	struct nsk_model_cfg c = {
	    .nsrc = 1, .rate = &lam, .k = &k0, .svc = {.container_rate = mu, .container_order = 1}};
	struct nsk_model_sweep sw = {.k_min = 1, .k_max = 40, .target = 80e-6};
	struct nsk_model_row rows[40];
	struct nsk_adapt a;
	int i = nsk_model_choose(&c, &sw, rows);

	CHECK(i >= 0);
	CHECK(nsk_adapt_choose(lam, mu, 80.0, 40, &a) == 0);
	if (i >= 0) {
		CHECK(rows[i].k == a.k);
		CHECK_REL(rows[i].r.delay * 1e6, a.delay_us, 1e-8);
		CHECK(rows[i].r.delay <= 80e-6);
		CHECK(rows[i].k == 40 || rows[i + 1].r.delay > 80e-6);
	}
	CHECK(rows[0].status == -ERANGE && rows[3].status == -ERANGE); /* k <= 4: rho >= 1 */
	CHECK(rows[4].status == 0);
	sw.target = 1e-6;
	CHECK(nsk_model_choose(&c, &sw, rows) == -ENOENT);
	sw.k_max = 3;
	sw.target = 1.0;
	CHECK(nsk_model_choose(&c, &sw, rows) == -ERANGE);
}

static void bad_input(void)
{
	double lam[2] = {1e5, -1.0}, big = 1e6;
	unsigned k[2] = {4, 4}, zero = 0;
	struct nsk_model_cfg c = {
	    .nsrc = 2, .rate = lam, .k = k, .svc = {.container_rate = 1e5, .container_order = 1}};
	struct nsk_model_result r;

	CHECK(nsk_model_solve(&c, &r) == -EINVAL); /* negative rate */
	c.nsrc = 1;
	c.k = &zero;
	CHECK(nsk_model_solve(&c, &r) == -EINVAL); /* k = 0 */
	c.k = k;
	c.svc.container_rate = 0.0;
	CHECK(nsk_model_solve(&c, &r) == -EINVAL); /* no service at all */
	c.svc.container_rate = 1e5;
	c.timeout = NAN;
	CHECK(nsk_model_solve(&c, &r) == -EINVAL);
	c.timeout = 0.0;
	c.rate = &big;
	CHECK(nsk_model_solve(&c, &r) == -ERANGE); /* rho = 2.5 */
	CHECK_REL(r.rho, 2.5, 1e-12);
	CHECK(isnan(nsk_model_rho(&(struct nsk_model_cfg){0})));
}

int main(void)
{
	lumping();
	superposition_vs_sim();
	coarse_vs_exact();
	pick_logic();
	choose_single_source();
	bad_input();
	TEST_DONE("model");
}
