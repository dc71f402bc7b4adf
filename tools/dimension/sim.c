/* SPDX-License-Identifier: MIT */
/*
 * Event-driven simulation of packets -> containers (size k, timeout t) -> FIFO server.
 * Events are few per packet and the sources few, so the next event is found by a linear scan.
 * Statistics are split into equal batches of measured packets for confidence intervals.
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ctr {
	double close; /* time the container was closed (queued) */
	unsigned src, n;
	double *arr; /* packet arrival times */
	struct ctr *next_free;
};

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman & Vigna). */
static uint64_t next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* expo - exponential of the given mean; the uniform is in (0, 1]. */
static double expo(struct rng *r, double mean)
{
	return -mean * log(((next(r) >> 11) + 1) * 0x1.0p-53);
}

static double student95(unsigned dof)
{
	static const double t[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
	                           2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
	                           2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
	                           2.060,  2.056, 2.052, 2.048, 2.045, 2.042};

	if (dof == 0)
		return INFINITY;
	return dof <= 30 ? t[dof - 1] : 1.96 + 2.4 / dof;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double quantile(double *v, size_t n, double q)
{
	size_t i = (size_t)ceil(q * (double)n);

	if (n == 0)
		return NAN;
	return v[i ? i - 1 : 0];
}

/* batch statistics: sums per batch; stat() turns them into mean and CI. */
struct acc {
	unsigned nb;
	double *sum, *cnt;
};

static void stat(const struct acc *a, struct nsk_sim_stat *out)
{
	double m = 0.0, v = 0.0;
	unsigned n = 0;

	for (unsigned b = 0; b < a->nb; b++)
		if (a->cnt[b] > 0) {
			m += a->sum[b] / a->cnt[b];
			n++;
		}
	if (!n) {
		out->mean = out->half = NAN;
		return;
	}
	m /= n;
	for (unsigned b = 0; b < a->nb; b++)
		if (a->cnt[b] > 0) {
			double d = a->sum[b] / a->cnt[b] - m;

			v += d * d;
		}
	out->mean = m;
	out->half = n > 1 ? student95(n - 1) * sqrt(v / (n - 1) / n) : INFINITY;
}

enum { A_DELAY, A_FILL, A_WAIT, A_WAITC, A_PW, A_BUSY, A_N };

struct state {
	const struct nsk_sim_cfg *c;
	struct rng rng;
	struct ctr *pool_free;
	struct ctr **ring;
	size_t rcap, rhead, rlen;
	double *delays;
	unsigned long measured, target, per_batch;
	double t_warm;
	struct acc a[A_N];
	unsigned long containers;
	unsigned kmax;
};

static struct ctr *ctr_get(struct state *st, unsigned src)
{
	struct ctr *c = st->pool_free;

	if (c) {
		st->pool_free = c->next_free;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
		c->arr = malloc(st->kmax * sizeof(double));
		if (!c->arr) {
			free(c);
			return NULL;
		}
	}
	c->src = src;
	c->n = 0;
	return c;
}

static void ctr_put(struct state *st, struct ctr *c)
{
	c->next_free = st->pool_free;
	st->pool_free = c;
}

static int push(struct state *st, struct ctr *c)
{
	if (st->rlen == st->rcap) {
		size_t ncap = st->rcap ? 2 * st->rcap : 64;
		struct ctr **nr = malloc(ncap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		for (size_t i = 0; i < st->rlen; i++)
			nr[i] = st->ring[(st->rhead + i) % st->rcap];
		free(st->ring);
		st->ring = nr;
		st->rcap = ncap;
		st->rhead = 0;
	}
	st->ring[(st->rhead + st->rlen++) % st->rcap] = c;
	return 0;
}

static struct ctr *pop(struct state *st)
{
	struct ctr *c;

	if (!st->rlen)
		return NULL;
	c = st->ring[st->rhead];
	st->rhead = (st->rhead + 1) % st->rcap;
	st->rlen--;
	return c;
}

static double service_time(struct state *st, const struct ctr *c)
{
	const struct nsk_model_service *s = &st->c->svc;
	double t = 0.0;

	if (s->container_rate > 0.0) {
		unsigned m = s->container_order ? s->container_order : 1;

		for (unsigned i = 0; i < m; i++)
			t += expo(&st->rng, 1.0 / (m * s->container_rate));
	}
	if (s->packet_rate > 0.0)
		for (unsigned i = 0; i < c->n; i++)
			t += expo(&st->rng, 1.0 / s->packet_rate);
	return t;
}

static void add(struct acc *a, unsigned long b, double x, double w)
{
	a->sum[b] += x;
	a->cnt[b] += w;
}

/* depart - record the packets of a container whose service ended at now. */
static void depart(struct state *st, const struct ctr *c, double start, double now)
{
	double wait = start - c->close;
	int counted = 0;

	for (unsigned i = 0; i < c->n && st->measured < st->target; i++) {
		unsigned long b;

		if (c->arr[i] < st->t_warm)
			continue;
		b = st->measured / st->per_batch;
		st->delays[st->measured++] = now - c->arr[i];
		add(&st->a[A_DELAY], b, now - c->arr[i], 1);
		add(&st->a[A_FILL], b, c->close - c->arr[i], 1);
		add(&st->a[A_WAIT], b, wait, 1);
		if (st->c->y > 0.0)
			add(&st->a[A_PW], b, wait > st->c->y, 1);
		if (!counted) {
			add(&st->a[A_WAITC], b, wait, 1);
			st->containers++;
			counted = 1;
		}
	}
}

static int run(struct state *st)
{
	const struct nsk_sim_cfg *c = st->c;
	unsigned n = c->nsrc, nb = st->a[A_BUSY].nb;
	double next_arr[NSK_MODEL_MAX_SOURCES], now = 0.0, last = 0.0, end = INFINITY, start = 0.0;
	struct ctr *open[NSK_MODEL_MAX_SOURCES] = {0}, *serving = NULL;

	for (unsigned i = 0; i < n; i++)
		next_arr[i] = expo(&st->rng, 1.0 / c->rate[i]);
	while (st->measured < st->target) {
		/* Next event: an arrival, a timeout or the end of a service. */
		int kind = 0; /* 0 arrival, 1 timeout, 2 service end */
		unsigned who = 0;
		double t = INFINITY;
		struct ctr *closed = NULL;

		for (unsigned i = 0; i < n; i++) {
			if (next_arr[i] < t) {
				t = next_arr[i];
				kind = 0;
				who = i;
			}
			if (c->timeout > 0.0 && open[i] && open[i]->arr[0] + c->timeout < t) {
				t = open[i]->arr[0] + c->timeout;
				kind = 1;
				who = i;
			}
		}
		if (end < t) {
			t = end;
			kind = 2;
		}
		now = t;
		/* Busy fraction, accumulated in the batch being measured. */
		if (st->measured > 0) {
			unsigned long b = st->measured / st->per_batch;

			add(&st->a[A_BUSY], b < nb ? b : nb - 1, serving ? now - last : 0.0,
			    now - last);
		}
		last = now;
		if (kind == 0) {
			struct ctr *o = open[who];

			if (!o) {
				o = open[who] = ctr_get(st, who);
				if (!o)
					return -ENOMEM;
			}
			o->arr[o->n++] = now;
			if (o->n == c->k[who])
				closed = o;
			next_arr[who] = now + expo(&st->rng, 1.0 / c->rate[who]);
		} else if (kind == 1) {
			closed = open[who];
		} else {
			depart(st, serving, start, now);
			ctr_put(st, serving);
			serving = NULL;
			end = INFINITY;
		}
		if (closed) {
			open[closed->src] = NULL;
			closed->close = now;
			if (push(st, closed))
				return -ENOMEM;
		}
		if (!serving && st->rlen) {
			serving = pop(st);
			start = now;
			end = now + service_time(st, serving);
		}
	}
	if (serving)
		ctr_put(st, serving);
	while ((serving = pop(st)))
		ctr_put(st, serving);
	for (unsigned i = 0; i < n; i++)
		if (open[i])
			ctr_put(st, open[i]);
	return 0;
}

int nsk_sim_run(const struct nsk_sim_cfg *cfg, struct nsk_sim_result *res)
{
	struct nsk_model_cfg mc = {.nsrc = cfg->nsrc,
	                           .rate = cfg->rate,
	                           .k = cfg->k,
	                           .timeout = cfg->timeout,
	                           .svc = cfg->svc};
	struct state st = {.c = cfg};
	double rho = nsk_model_rho(&mc), lam = 0.0, *tmp = NULL;
	unsigned nb = cfg->batches ? cfg->batches : 20;
	int err = -ENOMEM;

	memset(res, 0, sizeof(*res));
	if (isnan(rho) || nb < 2 || nb > 1000)
		return -EINVAL;
	if (!(rho < 1.0))
		return -ERANGE;
	for (unsigned i = 0; i < cfg->nsrc; i++) {
		lam += cfg->rate[i];
		if (cfg->k[i] > st.kmax)
			st.kmax = cfg->k[i];
	}
	st.target = cfg->packets ? cfg->packets : 1000000;
	if (st.target < nb)
		st.target = nb;
	st.per_batch = (st.target + nb - 1) / nb;
	st.t_warm = 0.1 * (double)st.target / lam;
	for (uint64_t x = cfg->seed, i = 0; i < 4; i++)
		st.rng.s[i] = splitmix(&x);
	st.delays = malloc(st.target * sizeof(double));
	tmp = malloc(st.per_batch * sizeof(double));
	for (int i = 0; i < A_N; i++) {
		st.a[i].nb = nb;
		st.a[i].sum = calloc(nb, sizeof(double));
		st.a[i].cnt = calloc(nb, sizeof(double));
		if (!st.a[i].sum || !st.a[i].cnt)
			goto out;
	}
	if (!st.delays || !tmp)
		goto out;
	err = run(&st);
	if (err)
		goto out;

	stat(&st.a[A_DELAY], &res->delay);
	stat(&st.a[A_FILL], &res->fill);
	stat(&st.a[A_WAIT], &res->wait);
	stat(&st.a[A_WAITC], &res->wait_c);
	stat(&st.a[A_BUSY], &res->rho);
	if (cfg->y > 0.0)
		stat(&st.a[A_PW], &res->p_wait_gt_y);
	else
		res->p_wait_gt_y.mean = res->p_wait_gt_y.half = NAN;

	/* Percentiles: point estimate from all packets, interval from the batch spread. */
	static const double qs[3] = {0.50, 0.90, 0.99};
	struct nsk_sim_stat *qo[3] = {&res->p50, &res->p90, &res->p99};

	for (int q = 0; q < 3; q++) {
		struct acc a = {.nb = nb, .sum = st.a[A_DELAY].sum, .cnt = st.a[A_DELAY].cnt};
		double *bq = calloc(nb, sizeof(double)), *one = calloc(nb, sizeof(double));

		if (!bq || !one) {
			free(bq);
			free(one);
			err = -ENOMEM;
			goto out;
		}
		for (unsigned b = 0; b < nb; b++) {
			size_t lo = (size_t)b * st.per_batch, len;

			if (lo >= st.measured)
				break;
			len = st.measured - lo < st.per_batch ? st.measured - lo : st.per_batch;
			memcpy(tmp, st.delays + lo, len * sizeof(double));
			qsort(tmp, len, sizeof(double), cmp_double);
			bq[b] = quantile(tmp, len, qs[q]);
			one[b] = 1.0;
		}
		a.sum = bq;
		a.cnt = one;
		stat(&a, qo[q]);
		free(bq);
		free(one);
	}
	qsort(st.delays, st.measured, sizeof(double), cmp_double);
	for (int q = 0; q < 3; q++)
		qo[q]->mean = quantile(st.delays, st.measured, qs[q]);
	res->packets = st.measured;
	res->containers = st.containers;
out:
	for (int i = 0; i < A_N; i++) {
		free(st.a[i].sum);
		free(st.a[i].cnt);
	}
	while (st.pool_free) {
		struct ctr *c = st.pool_free;

		st.pool_free = c->next_free;
		free(c->arr);
		free(c);
	}
	free(st.ring);
	free(st.delays);
	free(tmp);
	return err;
}
