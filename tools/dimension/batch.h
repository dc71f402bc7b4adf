/* SPDX-License-Identifier: MIT */
/*
 * Closed forms for one source filling containers: Poisson packets at rate lambda, a container
 * closes at k packets or t seconds after its first packet, whichever comes first. Gives the
 * container size law, the packet-averaged filling delay and the container interarrival moments.
 * No dependencies beyond libm, so the online adapter can use it on a data path.
 */
#ifndef NSK_DIMENSION_BATCH_H
#define NSK_DIMENSION_BATCH_H

struct nsk_batch {
	double size_mean; /* E[J], packets per container */
	double size_m2;   /* E[J^2] */
	double fill_mean; /* mean time a packet waits for its container to close (s) */
	double ia_mean;   /* mean container interarrival (s) = E[J] / lambda */
	double ia_m2;     /* second moment of the container interarrival (s^2) */
	double p_timeout; /* probability a container is closed by the timeout */
};

/*
 * nsk_batch_eval - evaluate the filling of containers of at most k packets with timeout t
 * (seconds; t <= 0 or infinite: no timeout) for Poisson packets at lambda per second.
 * If pmf is not NULL it receives P(J = j) for j = 0..k (pmf[0] = 0).
 * Returns 0 or -EINVAL (lambda <= 0 or not finite, k == 0).
 */
int nsk_batch_eval(double lambda, unsigned k, double t, struct nsk_batch *b, double *pmf);

#endif
