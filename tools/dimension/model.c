/* SPDX-License-Identifier: MIT */
/*
 * Packet-aggregation model: builds the container MAP and the service PH, sizes them against
 * the phase budget (exact, or Erlang orders reduced with means kept), solves the MAP/PH/1 QBD
 * and derives the packet-level delays. The waiting-time tail uses the matrix-geometric form
 * of the arrival-epoch law and uniformisation (see docs/DIMENSION.md).
 */
#include "model.h"
#include "batch.h"
#include "linalg.h"
#include "map.h"
#include "ph.h"
#include "qbd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_EPS 1e-12 /* below this P(timeout) a container is always full */
#define TAIL_MAX_STEPS 2000000

/* One model component whose phase order may be reduced: a source group or the service. */
struct comp {
	struct nsk_ph exact; /* exact PH, or n == 0 when only the fit exists */
	double mean, scv;
	size_t natural; /* order of the exact PH, or of the two-moment fit */
	size_t cap;     /* order allowed by the budget */
	unsigned count; /* identical sources (1 for the service) */
	struct nsk_ph used;
};

struct work {
	unsigned nsrc, ngroups;
	unsigned group_of[NSK_MODEL_MAX_SOURCES];
	struct nsk_batch b[NSK_MODEL_MAX_SOURCES];
	double lc[NSK_MODEL_MAX_SOURCES]; /* containers per second of each source */
	struct comp grp[NSK_MODEL_MAX_SOURCES];
	struct comp svc;
	double cmean, pmean;
	unsigned approx;
	struct nsk_map map;
	struct nsk_qbd_sol sol;
	double *r;                           /* service: mean residual from each phase */
	double *sx;                          /* service exit rates */
	double es;                           /* mean service */
	double lam_g[NSK_MODEL_MAX_SOURCES]; /* container rate of each group, from pi */
	double pk_g[NSK_MODEL_MAX_SOURCES];  /* packet rate of each group */
};

static int check(const struct nsk_model_cfg *c)
{
	const struct nsk_model_service *s = &c->svc;

	if (!c->nsrc || c->nsrc > NSK_MODEL_MAX_SOURCES || !c->rate || !c->k)
		return -EINVAL;
	for (unsigned i = 0; i < c->nsrc; i++)
		if (!(c->rate[i] > 0.0) || !isfinite(c->rate[i]) || c->k[i] == 0 ||
		    c->k[i] > NSK_MODEL_MAX_K)
			return -EINVAL;
	if (!(s->container_rate >= 0.0) || !(s->packet_rate >= 0.0) || isinf(s->container_rate) ||
	    isinf(s->packet_rate) || (s->container_rate == 0.0 && s->packet_rate == 0.0) ||
	    s->container_order > 1000)
		return -EINVAL;
	if (!(c->timeout >= 0.0) || isnan(c->y))
		return -EINVAL;
	return 0;
}

/* rates - batch laws, container rates and utilisation; fills res rates. */
static int rates(const struct nsk_model_cfg *c, struct work *w, double *rho, double *lc_tot,
                 double *lp_tot)
{
	double u = 0.0, lc = 0.0, lp = 0.0;

	w->cmean = c->svc.container_rate > 0.0 ? 1.0 / c->svc.container_rate : 0.0;
	w->pmean = c->svc.packet_rate > 0.0 ? 1.0 / c->svc.packet_rate : 0.0;
	for (unsigned i = 0; i < c->nsrc; i++) {
		int err = nsk_batch_eval(c->rate[i], c->k[i], c->timeout, &w->b[i], NULL);

		if (err)
			return err;
		w->lc[i] = c->rate[i] / w->b[i].size_mean;
		u += w->lc[i] * (w->cmean + w->b[i].size_mean * w->pmean);
		lc += w->lc[i];
		lp += c->rate[i];
	}
	*rho = u;
	*lc_tot = lc;
	*lp_tot = lp;
	return 0;
}

double nsk_model_rho(const struct nsk_model_cfg *cfg)
{
	struct work *w;
	double rho, lc, lp;

	if (check(cfg))
		return NAN;
	w = calloc(1, sizeof(*w));
	if (!w || rates(cfg, w, &rho, &lc, &lp))
		rho = NAN;
	free(w);
	return rho;
}

static void comp_fini(struct comp *cp)
{
	nsk_ph_fini(&cp->exact);
	nsk_ph_fini(&cp->used);
}

/* order - phases of a component under its cap. */
static size_t order(const struct comp *cp)
{
	if (cp->cap >= cp->natural)
		return cp->natural;
	return nsk_ph_fit_order(cp->scv, cp->cap);
}

/* budget - total QBD phases for the current caps, or 0 when above limit. */
static size_t budget(const struct work *w, size_t limit)
{
	size_t total = order(&w->svc);

	for (unsigned g = 0; g < w->ngroups; g++) {
		size_t s = nsk_map_group_size(order(&w->grp[g]), w->grp[g].count, limit);

		if (!s || total > limit / s)
			return 0;
		total *= s;
	}
	return total <= limit ? total : 0;
}

/* build_components - exact laws of the source groups and of the service. */
static int build_components(const struct nsk_model_cfg *c, struct work *w)
{
	double *pmf = NULL, *mix = NULL, lc = 0.0, m1, m2;
	unsigned kmax = 1;
	int err;

	for (unsigned i = 0; i < c->nsrc; i++) {
		unsigned g;

		for (g = 0; g < w->ngroups; g++) {
			unsigned j = 0;

			while (w->group_of[j] != g)
				j++;
			if (c->rate[j] == c->rate[i] && c->k[j] == c->k[i])
				break;
		}
		w->group_of[i] = g;
		if (g < w->ngroups) {
			w->grp[g].count++;
			continue;
		}
		w->ngroups++;
		struct comp *cp = &w->grp[g];
		const struct nsk_batch *b = &w->b[i];

		cp->count = 1;
		cp->mean = b->ia_mean;
		cp->scv = b->ia_m2 / (b->ia_mean * b->ia_mean) - 1.0;
		if (b->p_timeout <= TIMEOUT_EPS) {
			cp->scv = 1.0 / c->k[i];
			err = nsk_ph_erlang(&cp->exact, c->k[i], cp->mean);
			if (err)
				return err;
			cp->natural = c->k[i];
		} else {
			w->approx |= NSK_MODEL_APPROX_TIMEOUT;
			if (cp->scv < 1e-9)
				cp->scv = 1e-9;
			cp->natural = nsk_ph_fit_order(cp->scv, 0);
		}
		if (c->k[i] > kmax)
			kmax = c->k[i];
	}

	/* Service: size law mixed over sources by container rate. */
	pmf = calloc(kmax + 1, sizeof(*pmf));
	mix = calloc(kmax + 1, sizeof(*mix));
	if (!pmf || !mix) {
		err = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < c->nsrc; i++)
		lc += w->lc[i];
	for (unsigned i = 0; i < c->nsrc; i++) {
		err = nsk_batch_eval(c->rate[i], c->k[i], c->timeout, &w->b[i], pmf);
		if (err)
			goto out;
		for (unsigned j = 1; j <= c->k[i]; j++)
			mix[j] += w->lc[i] / lc * pmf[j];
	}
	unsigned atoms = 0, top = 1;

	for (unsigned j = 1; j <= kmax; j++)
		if (mix[j] > 0.0) {
			atoms++;
			top = j;
		}
	if (w->pmean > 0.0 && atoms > 1)
		w->approx |= NSK_MODEL_APPROX_MIXSVC;
	err =
	    nsk_ph_service(&w->svc.exact, w->cmean,
	                   c->svc.container_order ? c->svc.container_order : 1, w->pmean, mix, top);
	if (err)
		goto out;
	err = nsk_ph_moments(&w->svc.exact, &m1, &m2, NULL);
	if (err)
		goto out;
	w->svc.mean = m1;
	w->svc.scv = m2 / (m1 * m1) - 1.0;
	if (w->svc.scv < 1e-9)
		w->svc.scv = 1e-9;
	w->svc.natural = w->svc.exact.n;
	w->svc.count = 1;
out:
	free(pmf);
	free(mix);
	return err;
}

/*
 * size_components - caps within the phase budget (largest order first), or the given caps
 * (groups, then the service), then the laws used.
 */
static int size_components(struct work *w, size_t limit, const size_t *caps)
{
	struct comp *all[NSK_MODEL_MAX_SOURCES + 1];
	unsigned n = 0;
	int err;

	for (unsigned g = 0; g < w->ngroups; g++)
		all[n++] = &w->grp[g];
	all[n++] = &w->svc;
	for (unsigned i = 0; i < n; i++)
		all[i]->cap = caps ? caps[i] : all[i]->natural;
	while (!caps && !budget(w, limit)) {
		struct comp *big = NULL;

		for (unsigned i = 0; i < n; i++)
			if (order(all[i]) > 1 && (!big || order(all[i]) > order(big)))
				big = all[i];
		if (!big)
			return -E2BIG;
		big->cap = order(big) - 1;
	}
	for (unsigned i = 0; i < n; i++) {
		struct comp *cp = all[i];

		if (cp->cap >= cp->natural && cp->exact.n) {
			err = nsk_ph_init(&cp->used, cp->exact.n);
			if (err)
				return err;
			memcpy(cp->used.alpha, cp->exact.alpha, cp->exact.n * sizeof(double));
			memcpy(cp->used.T, cp->exact.T, cp->exact.n * cp->exact.n * sizeof(double));
			continue;
		}
		err = nsk_ph_fit(&cp->used, cp->mean, cp->scv, cp->cap);
		if (err < 0)
			return err;
		if (cp->cap < cp->natural)
			w->approx |= NSK_MODEL_APPROX_COARSE;
	}
	return 0;
}

/* build_qbd - the MAP/PH/1 QBD blocks; index (a, s) = a * mS + s. */
static int build_qbd(struct work *w, double **blk, struct nsk_qbd *q)
{
	const struct nsk_map *map = &w->map;
	const struct nsk_ph *S = &w->svc.used;
	size_t mA = map->m, mS = S->n, m = mA * mS;

	for (int i = 0; i < 6; i++) {
		size_t r = i < 3 ? m : (i == 3 ? mA : (i == 4 ? mA : m));
		size_t c = i < 3 ? m : (i == 3 ? mA : (i == 4 ? m : mA));

		blk[i] = nsk_la_alloc(r, c);
		if (!blk[i])
			return -ENOMEM;
	}
	double *A0 = blk[0], *A1 = blk[1], *A2 = blk[2], *B00 = blk[3], *B01 = blk[4],
	       *B10 = blk[5];

	for (size_t a = 0; a < mA; a++) {
		for (size_t b = 0; b < mA; b++) {
			double d0 = map->D0[a * mA + b], d1 = map->D1[a * mA + b];

			B00[a * mA + b] = d0;
			for (size_t s = 0; s < mS; s++) {
				A0[(a * mS + s) * m + b * mS + s] = d1;
				A1[(a * mS + s) * m + b * mS + s] += d0;
				B01[a * m + b * mS + s] = d1 * S->alpha[s];
			}
		}
		for (size_t s = 0; s < mS; s++) {
			for (size_t s2 = 0; s2 < mS; s2++) {
				A1[(a * mS + s) * m + a * mS + s2] += S->T[s * mS + s2];
				A2[(a * mS + s) * m + a * mS + s2] = w->sx[s] * S->alpha[s2];
			}
			B10[(a * mS + s) * mA + a] = w->sx[s];
		}
	}
	q->m = m;
	q->m0 = mA;
	q->A0 = A0;
	q->A1 = A1;
	q->A2 = A2;
	q->B00 = B00;
	q->B01 = B01;
	q->B10 = B10;
	return 0;
}

static void work_fini(struct work *w)
{
	for (unsigned g = 0; g < w->ngroups; g++)
		comp_fini(&w->grp[g]);
	comp_fini(&w->svc);
	nsk_map_fini(&w->map);
	nsk_qbd_sol_fini(&w->sol);
	free(w->r);
	free(w->sx);
}

/* prepare - everything up to the solved QBD. */
static int prepare(const struct nsk_model_cfg *cfg, struct work *w, struct nsk_model_result *res,
                   const size_t *caps)
{
	struct nsk_map_group mg[NSK_MODEL_MAX_SOURCES];
	double *blk[6] = {0};
	struct nsk_qbd q;
	size_t limit = cfg->max_phases ? cfg->max_phases : NSK_MODEL_DEFAULT_PHASES;
	int err;

	memset(res, 0, sizeof(*res));
	res->p_wait_gt_y = NAN;
	err = check(cfg);
	if (err)
		return err;
	w->nsrc = cfg->nsrc;
	err = rates(cfg, w, &res->rho, &res->lambda_c, &res->lambda_p);
	if (err)
		return err;
	if (!(res->rho < 1.0))
		return -ERANGE;
	err = build_components(cfg, w);
	if (!err)
		err = size_components(w, limit, caps);
	if (err)
		return err;
	for (unsigned g = 0; g < w->ngroups; g++) {
		mg[g].ph = &w->grp[g].used;
		mg[g].count = w->grp[g].count;
	}
	err = nsk_map_build(&w->map, mg, w->ngroups);
	if (err)
		return err;

	const struct nsk_ph *S = &w->svc.used;

	w->r = nsk_la_alloc(1, S->n);
	w->sx = nsk_la_alloc(1, S->n);
	if (!w->r || !w->sx)
		return -ENOMEM;
	nsk_ph_exit(S, w->sx);
	err = nsk_ph_moments(S, &w->es, NULL, w->r);
	if (err)
		return err;
	err = build_qbd(w, blk, &q);
	if (!err)
		err = nsk_qbd_solve(&q, &w->sol);
	for (int i = 0; i < 6; i++)
		free(blk[i]);
	if (err)
		return err;
	res->arrival_phases = w->map.m;
	res->service_phases = S->n;
	res->phases = q.m;
	res->approx = w->approx;
	res->iters = w->sol.iters;
	res->residual = w->sol.residual;
	return 0;
}

/* measures - waits and delays from the solved QBD. */
static void measures(const struct nsk_model_cfg *cfg, struct work *w, struct nsk_model_result *res)
{
	const struct nsk_qbd_sol *sol = &w->sol;
	size_t mA = w->map.m, mS = w->svc.used.n;
	double p0 = 0.0, L = 0.0, wsum = 0.0, lsum = 0.0, pw0 = 0.0;
	double wg[NSK_MODEL_MAX_SOURCES] = {0};

	for (size_t a = 0; a < mA; a++)
		p0 += sol->pi0[a];
	for (size_t i = 0; i < sol->m; i++)
		L += sol->eta[i];
	res->mean_n = L;
	res->mean_nq = L - (1.0 - p0);

	for (unsigned g = 0; g < w->ngroups; g++) {
		const double *d = w->map.d1g + g * mA;
		double lam = 0.0, num = 0.0, empty = 0.0;

		for (size_t a = 0; a < mA; a++) {
			empty += sol->pi0[a] * d[a];
			for (size_t s = 0; s < mS; s++) {
				size_t i = a * mS + s;

				lam += sol->zeta[i] * d[a];
				num += d[a] * (sol->zeta[i] * w->r[s] +
				               w->es * (sol->eta[i] - sol->zeta[i]));
			}
		}
		lam += empty;
		w->lam_g[g] = lam;
		wg[g] = num / lam;
		wsum += lam * wg[g];
		lsum += lam;
		w->pk_g[g] = 0.0;
		for (unsigned i = 0; i < cfg->nsrc; i++)
			if (w->group_of[i] == g)
				w->pk_g[g] += cfg->rate[i];
		pw0 += w->pk_g[g] / res->lambda_p * empty / lam;
	}
	res->wait_c = wsum / lsum;
	res->p_wait0 = pw0;

	double es_c = 0.0;

	for (unsigned i = 0; i < cfg->nsrc; i++) {
		struct nsk_model_src *s = &res->src[i];
		const struct nsk_batch *b = &w->b[i];
		double share = cfg->rate[i] / res->lambda_p;

		s->fill = b->fill_mean;
		s->wait = wg[w->group_of[i]];
		s->service = w->cmean + w->pmean * b->size_m2 / b->size_mean;
		s->delay = s->fill + s->wait + s->service;
		res->fill += share * s->fill;
		res->wait += share * s->wait;
		res->service += share * s->service;
		res->delay += share * s->delay;
		es_c += w->lc[i] / res->lambda_c * (w->cmean + w->pmean * b->size_mean);
	}
	res->sojourn_c = res->wait_c + es_c;
}

/*
 * tail - P(packet wait > y). An arrival that finds n >= 1 containers with service phase s
 * waits for the residual service and n - 1 full services. With K(0) = v (x) I, where v
 * weights each arrival phase by the packet share of its group, the mass still waiting at
 * time y is zeta K(y) 1 with K' = K S + R K s beta; K(y) is computed by uniformisation,
 * whose step operator K -> K (I + S/theta) + R K s beta / theta is nonnegative.
 */
static int tail(struct work *w, const double *y, size_t ny, double *p)
{
	const struct nsk_qbd_sol *sol = &w->sol;
	const struct nsk_ph *S = &w->svc.used;
	size_t mA = w->map.m, mS = S->n, m = sol->m;
	double *v = nsk_la_alloc(1, mA), *K = nsk_la_alloc(m, mS), *Kn = nsk_la_alloc(m, mS);
	double *P = nsk_la_alloc(mS, mS), *ks = nsk_la_alloc(1, m), *rks = nsk_la_alloc(1, m);
	double *acc = nsk_la_alloc(1, m), theta = 0.0, lp = 0.0;
	int err = -ENOMEM;

	if (!v || !K || !Kn || !P || !ks || !rks || !acc)
		goto out;
	for (unsigned g = 0; g < w->ngroups; g++)
		lp += w->pk_g[g];
	for (unsigned g = 0; g < w->ngroups; g++)
		for (size_t a = 0; a < mA; a++)
			v[a] += w->pk_g[g] / lp * w->map.d1g[g * mA + a] / w->lam_g[g];
	for (size_t s = 0; s < mS; s++)
		if (-S->T[s * mS + s] > theta)
			theta = -S->T[s * mS + s];
	for (size_t s = 0; s < mS; s++)
		for (size_t s2 = 0; s2 < mS; s2++)
			P[s * mS + s2] = (s == s2) + S->T[s * mS + s2] / theta;

	for (size_t iy = 0; iy < ny; iy++) {
		double x = theta * y[iy], cum = 0.0, sum = 0.0;

		p[iy] = NAN;
		if (!(y[iy] >= 0.0) || x > TAIL_MAX_STEPS / 2)
			continue;
		memset(K, 0, m * mS * sizeof(double));
		memset(acc, 0, m * sizeof(double));
		for (size_t a = 0; a < mA; a++)
			for (size_t s = 0; s < mS; s++)
				K[(a * mS + s) * mS + s] = v[a];
		for (size_t j = 0; j < TAIL_MAX_STEPS; j++) {
			double wj = x > 0.0 ? exp(-x + j * log(x) - lgamma(j + 1.0)) : (j == 0);
			double *t;

			cum += wj;
			if (wj > 0.0)
				for (size_t i = 0; i < m; i++) {
					double row = 0.0;

					for (size_t s = 0; s < mS; s++)
						row += K[i * mS + s];
					acc[i] += wj * row;
				}
			if (cum >= 1.0 - 1e-13 || (j > x && wj < 1e-300))
				break;
			/* K <- K P + R (K s) beta / theta. */
			nsk_la_matvec(m, mS, K, w->sx, ks);
			nsk_la_matvec(m, m, sol->R, ks, rks);
			nsk_la_gemm(m, mS, mS, 1.0, K, P, 0.0, Kn);
			for (size_t i = 0; i < m; i++)
				for (size_t s = 0; s < mS; s++)
					Kn[i * mS + s] += rks[i] * S->alpha[s] / theta;
			t = K;
			K = Kn;
			Kn = t;
		}
		for (size_t i = 0; i < m; i++)
			sum += sol->zeta[i] * acc[i];
		p[iy] = sum;
	}
	err = 0;
out:
	free(v);
	free(K);
	free(Kn);
	free(P);
	free(ks);
	free(rks);
	free(acc);
	return err;
}

/* Phase caps of one solve and the scv each reduced component was given. */
struct levels {
	unsigned n; /* components: groups, then the service */
	size_t cap[NSK_MODEL_MAX_SOURCES + 1];
	double delta[NSK_MODEL_MAX_SOURCES + 1]; /* scv used - exact scv (0: not reduced) */
	double scv[NSK_MODEL_MAX_SOURCES + 1];
};

static double comp_delta(const struct comp *cp)
{
	if (cp->cap >= cp->natural || nsk_ph_fit_order(cp->scv, 0) <= cp->cap)
		return 0.0; /* exact, or two moments matched */
	return 1.0 / (double)cp->cap - cp->scv;
}

/* solve_level - one model solve with the given caps (NULL: the budget); tails at y[0..ny). */
static int solve_level(const struct nsk_model_cfg *cfg, const size_t *caps, const double *y,
                       size_t ny, double *p, struct nsk_model_result *res, struct levels *lv)
{
	struct work *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	err = prepare(cfg, w, res, caps);
	if (!err) {
		measures(cfg, w, res);
		if (ny)
			err = tail(w, y, ny, p);
		lv->n = 0;
		for (unsigned g = 0; g <= w->ngroups; g++) {
			const struct comp *cp = g < w->ngroups ? &w->grp[g] : &w->svc;

			lv->cap[lv->n] = cp->cap;
			lv->scv[lv->n] = cp->scv;
			lv->delta[lv->n++] = comp_delta(cp);
		}
	}
	work_fini(w);
	free(w);
	return err;
}

/* extrap - X0 = XA - (XB - XA) / (uB - 1): linear in the scv perturbation. */
static double extrap(double a, double b, double ub)
{
	return a - (b - a) / (ub - 1.0);
}

static double clamp01(double x)
{
	return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
}

/*
 * solve_full - solve, and when Erlang orders had to be reduced, solve again with every
 * reduced component's scv perturbation doubled and extrapolate each waiting measure
 * linearly back to the exact scv (the waits are close to linear in the scv of the
 * interarrivals and services: docs/DIMENSION.md).
 */
static int solve_full(const struct nsk_model_cfg *cfg, const double *y, size_t ny, double *p,
                      struct nsk_model_result *res)
{
	struct nsk_model_result *rb = NULL;
	struct levels a, b;
	double *pb = NULL, ub = 0.0;
	unsigned nred = 0;
	int err;

	nsk_la_init();
	err = solve_level(cfg, NULL, y, ny, p, res, &a);
	if (err || !(res->approx & NSK_MODEL_APPROX_COARSE) || cfg->no_extrapolate)
		return err;
	b = a;
	for (unsigned i = 0; i < a.n; i++) {
		double target;
		long pbk;

		if (a.delta[i] <= 0.0)
			continue;
		target = a.scv[i] + 2.0 * a.delta[i];
		pbk = lround(1.0 / target);
		if (pbk >= (long)a.cap[i])
			pbk = (long)a.cap[i] - 1;
		if (pbk < 1)
			return 0; /* cannot perturb further: keep the coarse result */
		b.cap[i] = (size_t)pbk;
		ub += (1.0 / (double)pbk - a.scv[i]) / a.delta[i];
		nred++;
	}
	if (!nred)
		return 0;
	ub /= nred;
	rb = calloc(1, sizeof(*rb));
	pb = calloc(ny ? ny : 1, sizeof(*pb));
	if (!rb || !pb) {
		err = -ENOMEM;
		goto out;
	}
	err = solve_level(cfg, b.cap, y, ny, pb, rb, &b);
	if (err || ub < 1.2)
		goto out; /* keep the coarse result */
	double w0 = extrap(res->wait_c, rb->wait_c, ub);

	if (!(w0 >= 0.5 * res->wait_c) || !(w0 <= 1.5 * res->wait_c))
		goto out; /* far from linear: keep the coarse result */
	res->wait = res->delay = 0.0;
	for (unsigned i = 0; i < cfg->nsrc; i++) {
		struct nsk_model_src *s = &res->src[i];
		double share = cfg->rate[i] / res->lambda_p;

		s->wait = fmax(0.0, extrap(s->wait, rb->src[i].wait, ub));
		s->delay = s->fill + s->wait + s->service;
		res->wait += share * s->wait;
		res->delay += share * s->delay;
	}
	res->sojourn_c += w0 - res->wait_c;
	res->wait_c = w0;
	res->mean_n = extrap(res->mean_n, rb->mean_n, ub);
	res->mean_nq = extrap(res->mean_nq, rb->mean_nq, ub);
	res->p_wait0 = clamp01(extrap(res->p_wait0, rb->p_wait0, ub));
	for (size_t i = 0; i < ny; i++)
		p[i] = clamp01(extrap(p[i], pb[i], ub));
	res->approx |= NSK_MODEL_APPROX_EXTRAP;
out:
	free(rb);
	free(pb);
	return err == -ENOMEM ? err : 0;
}

int nsk_model_solve(const struct nsk_model_cfg *cfg, struct nsk_model_result *res)
{
	double y = cfg->y, p = NAN;
	int err = solve_full(cfg, &y, y > 0.0 ? 1 : 0, &p, res);

	if (!err) {
		res->y = y;
		res->p_wait_gt_y = y > 0.0 ? p : NAN;
	}
	return err;
}

int nsk_model_wait_tail(const struct nsk_model_cfg *cfg, const double *y, size_t n, double *p)
{
	struct nsk_model_result *res = calloc(1, sizeof(*res));
	int err = res ? solve_full(cfg, y, n, p, res) : -ENOMEM;

	free(res);
	return err;
}

int nsk_model_pick(struct nsk_model_row *rows, size_t n, const struct nsk_model_sweep *sw)
{
	int best = -ENOENT;
	size_t stable = 0;

	for (size_t i = 0; i < n; i++) {
		struct nsk_model_row *r = &rows[i];

		r->feasible = 0;
		if (r->status)
			continue;
		stable++;
		if (!(r->r.delay <= sw->target))
			continue;
		if (sw->p_max > 0.0 && !(r->r.p_wait_gt_y <= sw->p_max))
			continue;
		r->feasible = 1;
		if (best < 0 || r->k > rows[best].k)
			best = (int)i;
	}
	if (best < 0 && stable == 0)
		return -ERANGE;
	return best;
}

int nsk_model_choose(const struct nsk_model_cfg *base, const struct nsk_model_sweep *sw,
                     struct nsk_model_row *rows)
{
	unsigned ks[NSK_MODEL_MAX_SOURCES];
	struct nsk_model_cfg c = *base;
	size_t n;

	if (!sw || sw->k_min == 0 || sw->k_max < sw->k_min || sw->k_max > NSK_MODEL_MAX_K ||
	    !(sw->target > 0.0) || !(sw->p_max >= 0.0) || sw->p_max > 1.0 || !base->nsrc ||
	    base->nsrc > NSK_MODEL_MAX_SOURCES)
		return -EINVAL;
	c.k = ks;
	if (sw->p_max > 0.0)
		c.y = sw->target;
	n = sw->k_max - sw->k_min + 1;
	for (size_t i = 0; i < n; i++) {
		for (unsigned s = 0; s < c.nsrc; s++)
			ks[s] = sw->k_min + (unsigned)i;
		rows[i].k = sw->k_min + (unsigned)i;
		rows[i].status = nsk_model_solve(&c, &rows[i].r);
		if (rows[i].status == -EINVAL)
			return -EINVAL;
	}
	return nsk_model_pick(rows, n, sw);
}
