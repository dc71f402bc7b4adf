/* SPDX-License-Identifier: MIT */
/*
 * Closed-form E_k/M/1 dimensioning for the data path: a bisection for the GI/M/1 root sigma
 * and a downward scan over k from the bound set by filling and service alone.
 */
#include "adapt.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static double g(double lambda, unsigned k, double mu, double s)
{
	return pow(lambda / (lambda + mu * (1.0 - s)), (double)k) - s;
}

int nsk_adapt_sigma(double lambda, unsigned k, double mu, double *sigma)
{
	double lo = 0.0, hi = 0.5;
	int j;

	if (!(lambda > 0.0) || !(mu > 0.0) || !isfinite(lambda) || !isfinite(mu) || k == 0)
		return -EINVAL;
	if (!(lambda < (double)k * mu))
		return -ERANGE;
	/* g > 0 below the root, g < 0 between the root and 1 (g'(1) = 1/rho - 1 > 0). */
	for (j = 1; j < 60 && g(lambda, k, mu, hi) >= 0.0; j++) {
		lo = hi;
		hi = 1.0 - ldexp(1.0, -(j + 1));
	}
	if (j == 60)
		return -ERANGE;
	for (int it = 0; it < 200 && hi - lo > 1e-16; it++) {
		double mid = 0.5 * (lo + hi);

		if (g(lambda, k, mu, mid) > 0.0)
			lo = mid;
		else
			hi = mid;
	}
	*sigma = 0.5 * (lo + hi);
	return 0;
}

int nsk_adapt_eval(double lambda, unsigned k, double mu, struct nsk_adapt *out)
{
	double s;
	int err = nsk_adapt_sigma(lambda, k, mu, &s);

	memset(out, 0, sizeof(*out));
	out->k = k;
	if (err == -ERANGE)
		out->rho = lambda / ((double)k * mu);
	if (err)
		return err;
	out->rho = lambda / ((double)k * mu);
	out->fill_us = 1e6 * (k - 1) / (2.0 * lambda);
	out->wait_us = 1e6 * s / (mu * (1.0 - s));
	out->delay_us = out->fill_us + out->wait_us + 1e6 / mu;
	return 0;
}

/*
 * Expected total wait of a container's messages until it closes, and its expected size: the
 * opener at 0, later arrivals Poisson(lambda); open at time s while fewer than k - 1 arrived
 * and s < t. E[total] = int_0^t sum_{n<k-1} (1 + n) P(N(s) = n) ds (each message present
 * waits while the container is open), E[size] = 1 + E[min(N(t), k - 1)]. Midpoint rule on a
 * horizon where the container is almost surely closed.
 */
static void container_fill(double lam, unsigned k, double t, double *total, double *size)
{
	double horizon = t > 0 ? t : (k - 1 + 12.0 * sqrt((double)k) + 12.0) / lam;
	int steps = 2000;
	double h = horizon / steps, tot = 0.0;
	for (int i = 0; i < steps; i++) {
		double s = (i + 0.5) * h, p = exp(-lam * s), acc = 0.0;
		for (unsigned n = 0; n + 1 < k; n++) {
			acc += (1.0 + n) * p;
			p *= lam * s / (n + 1.0);
		}
		tot += acc * h;
	}
	/* E[min(N(t), k - 1)] (t <= 0: exactly k - 1) */
	double em = k - 1.0;
	if (t > 0) {
		double p = exp(-lam * t), cdf = 0.0;
		em = 0.0;
		for (unsigned n = 0; n + 1 < k; n++) {
			em += n * p;
			cdf += p;
			p *= lam * t / (n + 1.0);
		}
		em += (k - 1.0) * (1.0 - cdf);
	}
	*total = tot;
	*size = 1.0 + em;
}

int nsk_adapt_eval_spin(double lambda, unsigned k, double t_us, double w_us, double spin_us,
                        double c_us, struct nsk_adapt_spin *out)
{
	memset(out, 0, sizeof(*out));
	if (k == 0 || !(lambda > 0.0) || !(w_us >= 0.0) || !(spin_us >= 0.0) || !(c_us >= 0.0) ||
	    !isfinite(lambda) || !isfinite(w_us) || !isfinite(spin_us) || !isfinite(c_us) ||
	    !isfinite(t_us))
		return -EINVAL;
	double lam = lambda * 1e-6; /* per microsecond */
	double fill_total, size;
	if (k == 1) {
		fill_total = 0.0;
		size = 1.0;
	} else {
		container_fill(lam, k, t_us, &fill_total, &size);
	}
	/* Messages during the hand-over: lam w of them; their total wait lam E[W^2] / 2 =
	 * lam w^2 (exponential W). Spin period: messages until a gap > spin, geometric with
	 * mean (1 - p) / p, p = exp(-lam spin). */
	double p = exp(-lam * spin_us);
	double spin_msgs = p > 0.0 ? (1.0 - p) / p : 1e300;
	double n = size + lam * w_us + spin_msgs;
	double total = fill_total + size * w_us + lam * w_us * w_us;
	out->container = size;
	out->fill_us = fill_total / size;
	out->msgs_per_wake = n;
	out->wakes_per_msg = 1.0 / n;
	out->delay_us = c_us + total / n;
	return 0;
}

int nsk_adapt_choose(double lambda, double mu, double target_us, unsigned k_max,
                     struct nsk_adapt *out)
{
	struct nsk_adapt cur, best = {0};
	unsigned kmax = k_max ? k_max : NSK_ADAPT_K_MAX, top;
	double bound;
	int any = 0;

	memset(out, 0, sizeof(*out));
	if (!(lambda >= 0.0) || !(mu > 0.0) || !(target_us > 0.0) || !isfinite(lambda) ||
	    !isfinite(mu) || !isfinite(target_us) || kmax > NSK_ADAPT_K_MAX)
		return -EINVAL;
	if (lambda == 0.0) {
		out->k = 1;
		out->delay_us = 1e6 / mu;
		return 0;
	}
	/*
	 * delay >= fill + service, so k <= 1 + 2 lambda (target - 1/mu). Scanning down from that
	 * bound, the first k that meets the target is the answer; usually the first one tried.
	 */
	bound = 1.0 + floor(2.0 * lambda * (target_us * 1e-6 - 1.0 / mu));
	top = bound < 1.0 ? 0 : (unsigned)fmin((double)kmax, bound);
	for (unsigned k = top; k >= 1; k--) {
		if (nsk_adapt_eval(lambda, k, mu, &cur))
			break; /* rho >= 1 here and for every smaller k */
		if (cur.delay_us <= target_us) {
			*out = cur;
			out->t_us = k > 1 ? fmax(1.0, target_us - cur.wait_us - 1e6 / mu) : 0.0;
			return 0;
		}
	}
	/* No k meets the target: the stable k of smallest delay (rare path, full scan). */
	for (unsigned k = kmax; k >= 1; k--) {
		if (nsk_adapt_eval(lambda, k, mu, &cur))
			break;
		if (!any || cur.delay_us < best.delay_us)
			best = cur;
		any = 1;
	}
	if (any)
		*out = best;
	else
		(void)nsk_adapt_eval(lambda, kmax, mu, out);
	out->t_us = target_us;
	return -ENOENT;
}
