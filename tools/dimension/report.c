/* SPDX-License-Identifier: MIT */
/*
 * Human table, JSON and gnuplot output of nearsock-dimension. Times are printed in
 * microseconds; NaN and infinities become "-" in the table and null in JSON.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void approx_text(unsigned a, char *buf, size_t len)
{
	if (!a) {
		snprintf(buf, len, "exact");
		return;
	}
	snprintf(buf, len, "approx:%s%s%s%s", a & NSK_MODEL_APPROX_TIMEOUT ? "t" : "",
	         a & NSK_MODEL_APPROX_COARSE ? "c" : "", a & NSK_MODEL_APPROX_EXTRAP ? "e" : "",
	         a & NSK_MODEL_APPROX_MIXSVC ? "s" : "");
}

static void svc_text(const struct nsk_run *run, char *buf, size_t len)
{
	const struct nsk_model_service *s = &run->svc;
	int n = 0;

	if (s->container_rate > 0.0)
		n += snprintf(buf + n, len - n, "%g containers/s per container (%s)",
		              s->container_rate, s->container_order > 1 ? "Erlang" : "exponential");
	if (s->container_rate > 0.0 && s->container_order > 1)
		n += snprintf(buf + n, len - n, " order %u", s->container_order);
	if (s->packet_rate > 0.0)
		snprintf(buf + n, len - n, "%s%g packets/s per packet (exponential)",
		         n ? " + " : "", s->packet_rate);
}

static void num(FILE *f, int width, int prec, double x)
{
	if (isfinite(x))
		fprintf(f, " %*.*f", width, prec, x);
	else
		fprintf(f, " %*s", width, "-");
}

void nsk_report_table(FILE *f, const struct nsk_run *run)
{
	const struct nsk_model_sweep *sw = &run->sweep;
	char buf[256];

	fprintf(f, "sources:  %u (", run->nsrc);
	for (unsigned i = 0; i < run->nsrc; i++)
		fprintf(f, "%s%g", i ? ", " : "", run->rate[i]);
	fprintf(f, " packets/s)\n");
	svc_text(run, buf, sizeof(buf));
	fprintf(f, "service:  %s\n", buf);
	if (run->timeout > 0.0)
		fprintf(f, "timeout:  %g us\n", run->timeout * 1e6);
	else
		fprintf(f, "timeout:  none (containers always full, as in the paper)\n");
	if (sw->target > 0.0)
		fprintf(f, "target:   mean packet delay <= %g us%s\n", sw->target * 1e6,
		        sw->p_max > 0.0 ? " and P(wait > target) <= p_max" : "");
	fprintf(f, "\n%5s %6s %9s %9s %9s %9s %10s %-10s", "k", "rho", "fill_us", "wait_us",
	        "svc_us", "delay_us", "P(W>tgt)", "model");
	if (run->simulate)
		fprintf(f, " %18s %18s", "sim_delay_us", "sim_p99_us");
	fprintf(f, "\n");
	for (size_t i = 0; i < run->nrows; i++) {
		const struct nsk_model_row *r = &run->rows[i];
		const struct nsk_model_result *m = &r->r;

		fprintf(f, "%5u", r->k);
		num(f, 6, 3, m->rho);
		if (r->status) {
			fprintf(f, "  %s\n",
			        r->status == -ERANGE ? "unstable (rho >= 1)"
			                             : strerror(-r->status));
			continue;
		}
		num(f, 9, 2, m->fill * 1e6);
		num(f, 9, 2, m->wait * 1e6);
		num(f, 9, 2, m->service * 1e6);
		num(f, 9, 2, m->delay * 1e6);
		num(f, 10, 4, m->p_wait_gt_y);
		approx_text(m->approx, buf, sizeof(buf));
		fprintf(f, " %-10s", buf);
		if (run->simulate && run->sim_status[i] == 0) {
			const struct nsk_sim_result *s = &run->sim[i];

			fprintf(f, " %9.2f +-%6.2f %9.2f +-%6.2f", s->delay.mean * 1e6,
			        s->delay.half * 1e6, s->p99.mean * 1e6, s->p99.half * 1e6);
		}
		fprintf(f, "%s\n", (int)i == run->chosen ? "  <= chosen" : "");
	}
	fprintf(f,
	        "\nmodel: exact = Markov model solved exactly; approx:t = timeout interarrivals "
	        "fitted by two moments,\n       c = Erlang orders reduced to fit max-phases (%zu), "
	        "e = waits extrapolated from two reductions,\n       s = mixed container sizes "
	        "served i.i.d. (docs/DIMENSION.md)\n",
	        run->max_phases ? run->max_phases : (size_t)NSK_MODEL_DEFAULT_PHASES);
	if (!(sw->target > 0.0))
		return;
	if (run->chosen >= 0) {
		const struct nsk_model_row *r = &run->rows[run->chosen];

		fprintf(
		    f,
		    "\nchosen k = %u: mean packet delay %.2f us (fill %.2f + wait %.2f + service "
		    "%.2f), utilisation %.3f",
		    r->k, r->r.delay * 1e6, r->r.fill * 1e6, r->r.wait * 1e6, r->r.service * 1e6,
		    r->r.rho);
		if (isfinite(r->r.p_wait_gt_y))
			fprintf(f, ", P(wait > %g us) = %.4f", sw->target * 1e6, r->r.p_wait_gt_y);
		fprintf(f, "\n");
		if (run->timeout > 0.0)
			fprintf(f, "timeout: %g us (as given)\n", run->timeout * 1e6);
		else
			fprintf(
			    f,
			    "suggested timeout: %.1f us (target - wait - service: bounds the first "
			    "packet of a container if the rate drops)\n",
			    run->suggested_timeout * 1e6);
	} else if (run->chosen == -ENOENT) {
		fprintf(f, "\nno k in %u..%u meets the target of %g us\n", sw->k_min, sw->k_max,
		        sw->target * 1e6);
	}
}

static void jnum(FILE *f, const char *key, double x, int comma)
{
	if (isfinite(x))
		fprintf(f, "\"%s\": %.9g%s", key, x, comma ? ", " : "");
	else
		fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
}

static const char *const approx_names[4] = {"timeout", "coarse", "mixed_service", "extrapolated"};

static void jstat(FILE *f, const char *key, const struct nsk_sim_stat *s, double scale, int comma)
{
	fprintf(f, "\"%s\": {", key);
	jnum(f, "mean", s->mean * scale, 1);
	jnum(f, "ci95", s->half * scale, 0);
	fprintf(f, "}%s", comma ? ", " : "");
}

void nsk_report_json(FILE *f, const struct nsk_run *run)
{
	const struct nsk_model_sweep *sw = &run->sweep;

	fprintf(f, "{\n  \"sources\": [");
	for (unsigned i = 0; i < run->nsrc; i++)
		fprintf(f, "%s{\"rate_pps\": %.9g}", i ? ", " : "", run->rate[i]);
	fprintf(f, "],\n  \"service\": {");
	jnum(f, "container_rate", run->svc.container_rate, 1);
	fprintf(f, "\"container_order\": %u, ",
	        run->svc.container_order ? run->svc.container_order : 1);
	jnum(f, "packet_rate", run->svc.packet_rate, 0);
	fprintf(f, "},\n  ");
	jnum(f, "timeout_us", run->timeout > 0.0 ? run->timeout * 1e6 : NAN, 1);
	jnum(f, "target_us", sw->target > 0.0 ? sw->target * 1e6 : NAN, 1);
	jnum(f, "p_max", sw->p_max > 0.0 ? sw->p_max : NAN, 1);
	fprintf(f, "\"k_min\": %u, \"k_max\": %u, \"max_phases\": %zu,\n  \"rows\": [\n", sw->k_min,
	        sw->k_max, run->max_phases ? run->max_phases : (size_t)NSK_MODEL_DEFAULT_PHASES);
	for (size_t i = 0; i < run->nrows; i++) {
		const struct nsk_model_row *r = &run->rows[i];
		const struct nsk_model_result *m = &r->r;

		fprintf(f, "    {\"k\": %u, \"status\": \"%s\", ", r->k,
		        r->status == 0         ? "ok"
		        : r->status == -ERANGE ? "unstable"
		                               : "error");
		jnum(f, "rho", m->rho, 1);
		jnum(f, "containers_per_s", m->lambda_c, r->status == 0);
		if (r->status == 0) {
			fprintf(f, "\"feasible\": %s, ", r->feasible ? "true" : "false");
			jnum(f, "fill_us", m->fill * 1e6, 1);
			jnum(f, "wait_us", m->wait * 1e6, 1);
			jnum(f, "service_us", m->service * 1e6, 1);
			jnum(f, "delay_us", m->delay * 1e6, 1);
			jnum(f, "container_wait_us", m->wait_c * 1e6, 1);
			jnum(f, "container_sojourn_us", m->sojourn_c * 1e6, 1);
			jnum(f, "mean_containers", m->mean_n, 1);
			jnum(f, "mean_containers_waiting", m->mean_nq, 1);
			jnum(f, "p_wait0", m->p_wait0, 1);
			jnum(f, "p_wait_gt_target", m->p_wait_gt_y, 1);
			fprintf(f, "\"phases\": %zu, \"lr_iterations\": %d, ", m->phases, m->iters);
			jnum(f, "residual", m->residual, 1);
			fprintf(f, "\"exact\": %s, \"approx\": [", m->approx ? "false" : "true");
			for (unsigned b = 0, n = 0; b < 4; b++)
				if (m->approx & (1u << b))
					fprintf(f, "%s\"%s\"", n++ ? ", " : "", approx_names[b]);
			fprintf(f, "], ");
			fprintf(f, "\"per_source\": [");
			for (unsigned s = 0; s < run->nsrc; s++) {
				fprintf(f, "%s{", s ? ", " : "");
				jnum(f, "fill_us", m->src[s].fill * 1e6, 1);
				jnum(f, "wait_us", m->src[s].wait * 1e6, 1);
				jnum(f, "service_us", m->src[s].service * 1e6, 1);
				jnum(f, "delay_us", m->src[s].delay * 1e6, 0);
				fprintf(f, "}");
			}
			fprintf(f, "]");
			if (run->simulate && run->sim_status[i] == 0) {
				const struct nsk_sim_result *s = &run->sim[i];

				fprintf(f, ", \"sim\": {\"packets\": %lu, ", s->packets);
				jstat(f, "delay_us", &s->delay, 1e6, 1);
				jstat(f, "fill_us", &s->fill, 1e6, 1);
				jstat(f, "wait_us", &s->wait, 1e6, 1);
				jstat(f, "container_wait_us", &s->wait_c, 1e6, 1);
				jstat(f, "p50_us", &s->p50, 1e6, 1);
				jstat(f, "p90_us", &s->p90, 1e6, 1);
				jstat(f, "p99_us", &s->p99, 1e6, 1);
				jstat(f, "p_wait_gt_target", &s->p_wait_gt_y, 1.0, 1);
				jstat(f, "rho", &s->rho, 1.0, 0);
				fprintf(f, "}");
			}
		}
		fprintf(f, "}%s\n", i + 1 < run->nrows ? "," : "");
	}
	fprintf(f, "  ],\n  \"chosen\": ");
	if (run->chosen >= 0) {
		const struct nsk_model_row *r = &run->rows[run->chosen];

		fprintf(f, "{\"k\": %u, ", r->k);
		jnum(f, "timeout_us",
		     run->timeout > 0.0 ? run->timeout * 1e6 : run->suggested_timeout * 1e6, 1);
		jnum(f, "delay_us", r->r.delay * 1e6, 0);
		fprintf(f, "}\n}\n");
	} else {
		fprintf(f, "null,\n  \"verdict\": \"%s\"\n}\n",
		        !(sw->target > 0.0)      ? "no target"
		        : run->chosen == -ENOENT ? "no k meets the target"
		                                 : "unstable");
	}
}

/* in_path - whether an executable named prog is in PATH. */
static int in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");

		if (len && len + strlen(prog) + 2 < sizeof(buf)) {
			memcpy(buf, path, len);
			buf[len] = '/';
			strcpy(buf + len + 1, prog);
			if (access(buf, X_OK) == 0)
				return 1;
		}
		path += len + (path[len] == ':');
	}
	return 0;
}

int nsk_report_plot(const char *png, const struct nsk_run *run)
{
	FILE *p;
	int st;

	if (!in_path("gnuplot"))
		return -ENOENT;
	p = popen("gnuplot", "w");
	if (!p)
		return -EIO;
	fprintf(p, "set terminal png size 960,600\nset output '");
	for (const char *c = png; *c; c++)
		fprintf(p, *c == '\'' ? "''" : "%c", *c);
	fprintf(p, "'\nset title 'nearsock dimension: mean packet delay vs container size'\n"
	           "set xlabel 'container size k (packets)'\nset ylabel 'delay (us)'\n"
	           "set key top center opaque\nset grid\nset yrange [0:*]\n");
	if (run->chosen >= 0)
		fprintf(
		    p,
		    "set arrow from %u, graph 0 to %u, graph 1 nohead dt 4 lc rgb 'dark-green'\n"
		    "set label 'chosen k = %u' at %u, graph 0.95 offset 1,0 tc rgb 'dark-green'\n",
		    run->rows[run->chosen].k, run->rows[run->chosen].k, run->rows[run->chosen].k,
		    run->rows[run->chosen].k);
	fprintf(p, "$model << EOD\n");
	for (size_t i = 0; i < run->nrows; i++) {
		const struct nsk_model_row *r = &run->rows[i];

		if (r->status == 0)
			fprintf(p, "%u %.6g %.6g %.6g\n", r->k, r->r.delay * 1e6, r->r.fill * 1e6,
			        r->r.wait * 1e6);
	}
	fprintf(p, "EOD\n$sim << EOD\n");
	for (size_t i = 0; run->simulate && i < run->nrows; i++)
		if (run->rows[i].status == 0 && run->sim_status[i] == 0)
			fprintf(p, "%u %.6g %.6g\n", run->rows[i].k, run->sim[i].delay.mean * 1e6,
			        run->sim[i].delay.half * 1e6);
	fprintf(p, "EOD\n");
	fprintf(p, "plot $model using 1:2 with linespoints lw 2 title 'model: mean delay', "
	           "$model using 1:3 with lines dt 2 title 'filling', "
	           "$model using 1:4 with lines dt 3 title 'queueing'");
	if (run->simulate)
		fprintf(p, ", $sim using 1:2:3 with yerrorbars pt 7 title 'simulation (95%% CI)'");
	if (run->sweep.target > 0.0)
		fprintf(p, ", %g with lines lc rgb 'red' title 'target'", run->sweep.target * 1e6);
	fprintf(p, "\n");
	st = pclose(p);
	return (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ? -EIO : 0;
}
