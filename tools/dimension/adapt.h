/* SPDX-License-Identifier: MIT */
/*
 * Online choice of the container size k and timeout t for one channel, for the adaptive
 * batching of issue 6. One channel is one Poisson source filling containers served by one
 * consumer, i.e. an E_k/M/1 queue: it has a closed form (the GI/M/1 root sigma), so the data
 * path needs neither the QBD nor LAPACK. Depends on libm only.
 */
#ifndef NSK_DIMENSION_ADAPT_H
#define NSK_DIMENSION_ADAPT_H

#define NSK_ADAPT_K_MAX 4096

struct nsk_adapt {
	unsigned k;      /* container size (packets) */
	double t_us;     /* container timeout (microseconds); 0 when k == 1 */
	double rho;      /* consumer utilisation at k */
	double fill_us;  /* predicted mean wait for the container to fill, (k-1)/(2 lambda) */
	double wait_us;  /* predicted mean queueing of a container, sigma / (mu (1 - sigma)) */
	double delay_us; /* fill + wait + one container service 1/mu */
};

/*
 * nsk_adapt_sigma - the root in (0,1) of sigma = (lambda / (lambda + mu (1 - sigma)))^k of the
 * E_k/M/1 queue with packet rate lambda, containers of k packets, service rate mu per
 * container. Returns 0, -EINVAL (bad arguments) or -ERANGE (lambda / (k mu) >= 1).
 */
int nsk_adapt_sigma(double lambda, unsigned k, double mu, double *sigma);

/*
 * nsk_adapt_eval - predicted delays (struct nsk_adapt, without t_us) at a given k.
 * Returns 0, -EINVAL or -ERANGE as nsk_adapt_sigma.
 */
int nsk_adapt_eval(double lambda, unsigned k, double mu, struct nsk_adapt *out);

/*
 * nsk_adapt_choose - the largest k <= k_max (0: NSK_ADAPT_K_MAX) whose predicted mean packet
 * delay meets target_us, for a measured packet rate lambda (packets/s) and consumer service
 * rate mu (containers/s: one wake-up and hand-over), and the timeout t = target - wait - 1/mu
 * (at least 1 us) that bounds the first packet of a container when the rate falls.
 * lambda == 0 (idle channel) gives k = 1, t = 0. Returns 0; -ENOENT when no k meets the
 * target (out then holds the stable k with the smallest delay, or k_max when none is stable,
 * with t = target); -EINVAL for negative or non-finite input. Thread-safe, no allocation.
 */
int nsk_adapt_choose(double lambda, double mu, double target_us, unsigned k_max,
                     struct nsk_adapt *out);

#endif
