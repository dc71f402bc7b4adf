/* SPDX-License-Identifier: MIT */
/*
 * Discrete-event simulation of the aggregation system the model describes: Poisson packets
 * per source, containers closed at k packets or at the timeout, one FIFO server whose service
 * per container is an Erlang part plus one exponential part per packet. It checks the model
 * where the model approximates (timeouts, large state spaces) and gives delay percentiles.
 */
#ifndef NSK_DIMENSION_SIM_H
#define NSK_DIMENSION_SIM_H

#include <stdint.h>

#include "model.h"

struct nsk_sim_cfg {
	unsigned nsrc;
	const double *rate; /* packets per second of each source */
	const unsigned *k;  /* container size of each source */
	double timeout;     /* seconds; 0: none */
	struct nsk_model_service svc;
	unsigned long packets; /* packets measured after the warm-up; 0: 1000000 */
	unsigned batches;      /* batches for the confidence intervals; 0: 20 */
	uint64_t seed;
	double y; /* P(wait > y) is estimated for this y (s); <= 0: skipped */
};

/* An estimate with the half-width of its 95% confidence interval (batch means, Student t). */
struct nsk_sim_stat {
	double mean;
	double half;
};

struct nsk_sim_result {
	struct nsk_sim_stat delay;  /* packet: arrival to end of its container's service (s) */
	struct nsk_sim_stat fill;   /* packet: arrival to container close */
	struct nsk_sim_stat wait;   /* packet: queueing of its container */
	struct nsk_sim_stat wait_c; /* container: queueing (container average) */
	struct nsk_sim_stat p50, p90, p99; /* packet delay percentiles (s) */
	struct nsk_sim_stat p_wait_gt_y;   /* fraction of packets whose container queued > y */
	struct nsk_sim_stat rho;           /* server busy fraction */
	unsigned long packets, containers;
};

/*
 * nsk_sim_run - simulate cfg. Returns 0, -EINVAL (bad parameters), -ERANGE (utilisation >= 1:
 * no steady state) or -ENOMEM. Deterministic for a given seed; thread-safe.
 */
int nsk_sim_run(const struct nsk_sim_cfg *cfg, struct nsk_sim_result *res);

#endif
