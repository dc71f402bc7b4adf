/* SPDX-License-Identifier: MIT */
/*
 * The packet-aggregation model of seed 002 (Bourguiba et al.): N+1 Poisson packet sources,
 * each filling containers of k packets (optionally closed early by a timeout), feed one FIFO
 * server. Containers arrive as a superposition of Erlang renewal processes (a MAP), service is
 * phase-type, and the MAP/PH/1 queue is solved as a QBD. Answers utilisation, mean waits,
 * P(wait > y) and the largest container size meeting a packet-delay target.
 */
#ifndef NSK_DIMENSION_MODEL_H
#define NSK_DIMENSION_MODEL_H

#include <stddef.h>

#define NSK_MODEL_MAX_SOURCES 32
#define NSK_MODEL_MAX_K 4096
#define NSK_MODEL_DEFAULT_PHASES 400

/* Why a result is not exact (bits of nsk_model_result.approx). */
#define NSK_MODEL_APPROX_TIMEOUT 0x1 /* a binding timeout: interarrivals fitted by two moments */
#define NSK_MODEL_APPROX_COARSE 0x2  /* phases above max_phases: Erlang orders reduced */
#define NSK_MODEL_APPROX_MIXSVC 0x4  /* per-packet service with varying sizes, taken as i.i.d. */
#define NSK_MODEL_APPROX_EXTRAP 0x8  /* coarse waits extrapolated to the exact scv (with COARSE) */

/*
 * Container service time: an Erlang(container_order) part of rate container_rate per container
 * (the paper's exponential service when container_order = 1) plus, when packet_rate > 0, one
 * exponential part of rate packet_rate per packet in the container. Rates are per second; a
 * rate of 0 omits that part.
 */
struct nsk_model_service {
	double container_rate;
	unsigned container_order;
	double packet_rate;
};

struct nsk_model_cfg {
	unsigned nsrc;      /* sources (driver domain + N VMs in the paper) */
	const double *rate; /* packets per second of each source */
	const unsigned *k;  /* container size of each source */
	double timeout;     /* container timeout in seconds; 0: none */
	struct nsk_model_service svc;
	size_t max_phases;  /* exact while the QBD has at most this many phases; 0: default */
	double y;           /* P(wait > y) is evaluated for this y in seconds; <= 0: skipped */
	int no_extrapolate; /* coarse results as they are (upper estimates), no extrapolation */
};

struct nsk_model_src {
	double fill;    /* mean wait of a packet for its container to close (s) */
	double wait;    /* mean queueing wait of its containers (s) */
	double service; /* mean service time of the container a packet travels in (s) */
	double delay;   /* fill + wait + service */
};

struct nsk_model_result {
	double rho;       /* server utilisation */
	double lambda_c;  /* containers per second */
	double lambda_p;  /* packets per second */
	double mean_n;    /* mean number of containers in the system */
	double mean_nq;   /* mean number of containers waiting */
	double wait_c;    /* mean queueing wait of a container (s) */
	double sojourn_c; /* mean wait + service of a container (s) */
	double fill;      /* packet averages (s): filling, queueing, service, total */
	double wait;
	double service;
	double delay;
	double p_wait0;     /* probability that a packet's container does not queue */
	double y;           /* the y of p_wait_gt_y (s) */
	double p_wait_gt_y; /* P(a packet's container queues longer than y); NaN if skipped */
	size_t phases;      /* QBD phases per level (arrival x service) */
	size_t arrival_phases;
	size_t service_phases;
	unsigned approx; /* NSK_MODEL_APPROX_* bits; 0 = exact */
	int iters;       /* logarithmic-reduction iterations */
	double residual; /* relative residual of the R equation */
	struct nsk_model_src src[NSK_MODEL_MAX_SOURCES];
};

/*
 * nsk_model_rho - utilisation of the server for cfg (no QBD solved). Returns the utilisation,
 * or NaN when cfg is invalid.
 */
double nsk_model_rho(const struct nsk_model_cfg *cfg);

/*
 * nsk_model_solve - solve the model. res is fully written on success; on -ERANGE (rho >= 1)
 * only res->rho, lambda_c and lambda_p are meaningful. Returns 0, -EINVAL (bad parameters),
 * -ERANGE (unstable), -E2BIG, -ENOMEM or -EDOM (numerical failure). Thread-safe.
 */
int nsk_model_solve(const struct nsk_model_cfg *cfg, struct nsk_model_result *res);

/*
 * nsk_model_wait_tail - P(a packet's container queues longer than y[i]) for n values of y
 * (seconds), written to p[i]. Same arguments and returns as nsk_model_solve.
 */
int nsk_model_wait_tail(const struct nsk_model_cfg *cfg, const double *y, size_t n, double *p);

struct nsk_model_sweep {
	unsigned k_min, k_max; /* container sizes tried (same k for every source) */
	double target;         /* mean packet delay target (s) */
	double p_max;          /* if > 0, also require P(wait > target) <= p_max */
};

struct nsk_model_row {
	unsigned k;
	int status;   /* 0, or the -errno of nsk_model_solve for this k */
	int feasible; /* meets the target */
	struct nsk_model_result r;
};

/*
 * nsk_model_pick - index of the largest-k feasible row, marking each row's feasible flag
 * from its status, delay and p_wait_gt_y. Returns the index, or -ENOENT when no row is
 * feasible, or -ERANGE when every row is unstable.
 */
int nsk_model_pick(struct nsk_model_row *rows, size_t n, const struct nsk_model_sweep *sw);

/*
 * nsk_model_choose - solve base (its k is ignored) for every k of sw, filling rows (k_max -
 * k_min + 1 entries), and pick the largest k whose mean packet delay meets the target: the
 * largest container, so the fewest transfers, that keeps the delay. Returns the row index,
 * -ENOENT (no k meets the target), -ERANGE (unstable for every k) or another -errno.
 */
int nsk_model_choose(const struct nsk_model_cfg *base, const struct nsk_model_sweep *sw,
                     struct nsk_model_row *rows);

#endif
