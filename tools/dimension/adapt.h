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

/*
 * The spinning consumer (a refinement measured against the data path, docs/DIMENSION.md).
 * nearsock's consumer spins spin_us before it sleeps, so only a message that finds it
 * asleep needs a wake-up, and only such a message opens a container. One cycle: the
 * consumer falls asleep; a message opens a container, which closes at k messages or after
 * t_us (t_us <= 0: no timeout); the wake-up hands over in w_us (exponential); messages
 * arriving meanwhile wait for it; then the consumer takes every message at once (c_us)
 * until a gap longer than spin_us, and sleeps again. Poisson arrivals at lambda (per s).
 * Queueing between messages taken while spinning is ignored (low load).
 */
struct nsk_adapt_spin {
	double msgs_per_wake; /* messages per cycle: container + hand-over + spin period */
	double container;     /* mean messages in a container */
	double fill_us;       /* mean time a message waits for its container to close */
	double delay_us;      /* mean message delay */
	double wakes_per_msg; /* 1 / msgs_per_wake */
};

/*
 * nsk_adapt_eval_spin - the cycle model above. Returns 0, or -EINVAL for k == 0, negative or
 * non-finite input, lambda == 0.
 */
int nsk_adapt_eval_spin(double lambda, unsigned k, double t_us, double w_us, double spin_us,
                        double c_us, struct nsk_adapt_spin *out);

#endif
