/* SPDX-License-Identifier: MIT */
/*
 * nearsock-dimension: choose the container size of packet aggregation for a delay target
 * (seed 002). Parses the command line, sweeps k with the QBD model, optionally checks each k
 * against the built-in simulator, and prints a table, JSON or a gnuplot plot.
 */
#include "model.h"
#include "report.h"
#include "sim.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "nearsock-dimension"

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " PROG " --rate R[,R...] --service-rate MU [options]\n"
	    "\n"
	    "Dimension packet aggregation (containers of k packets) for a delay target with the\n"
	    "PH/PH/1 QBD model of seed 002; see docs/DIMENSION.md.\n"
	    "\n"
	    "  --rate R[,R...]           packets/s of each source (driver domain + VMs); k/M/G "
	    "suffixes\n"
	    "  --service-rate MU         containers/s: per-container service rate (exponential)\n"
	    "  --service-order M         make the per-container service Erlang of order M (default "
	    "1)\n"
	    "  --packet-service-rate MP  packets/s: add an exponential per-packet service part\n"
	    "  --delay-target-us D       mean packet delay target (fill + wait + service), us\n"
	    "  --k K | A..B              container sizes to evaluate (default 1..64)\n"
	    "  --timeout-us T            container timeout, us (default: none, as in the paper)\n"
	    "  --prob-max P              also require P(container wait > target) <= P\n"
	    "  --max-phases N            solve exactly up to N QBD phases (default %d, max 4000)\n"
	    "  --no-extrapolate          beyond max-phases, report the reduced-order model as is\n"
	    "  --simulate                also run the discrete-event simulator for every k\n"
	    "  --sim-packets N           packets per simulation (default 200000)\n"
	    "  --seed S                  simulator seed (default 1)\n"
	    "  --json                    machine-readable output\n"
	    "  --plot FILE.png           plot delay vs k with gnuplot\n"
	    "  -h, --help\n"
	    "\n"
	    "Exit status: 0 a k was chosen (or no target given), 2 no k meets the target,\n"
	    "1 bad input, overload (utilisation >= 1 for every k) or failure.\n",
	    NSK_MODEL_DEFAULT_PHASES);
}

static int fail(const char *opt, const char *what, const char *val)
{
	fprintf(stderr, PROG ": %s: %s '%s'\n", opt, what, val);
	return -EINVAL;
}

/* parse_num - a finite number with an optional k/M/G suffix. */
static int parse_num(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno)
		return -EINVAL;
	if (*end == 'k' || *end == 'K')
		v *= 1e3, end++;
	else if (*end == 'M')
		v *= 1e6, end++;
	else if (*end == 'G')
		v *= 1e9, end++;
	if (*end || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_pos(const char *opt, const char *s, double *out, int allow_zero)
{
	if (parse_num(s, out) || *out < 0.0 || (!allow_zero && *out == 0.0))
		return fail(
		    opt, allow_zero ? "not a non-negative number:" : "not a positive number:", s);
	return 0;
}

static int parse_uint(const char *opt, const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	if (*s == '-' || !*s)
		return fail(opt, "not a positive integer:", s);
	*out = strtoul(s, &end, 10);
	if (*end || errno || *out == 0 || *out > max)
		return fail(opt, "not an integer in range:", s);
	return 0;
}

static int parse_rates(const char *s, struct nsk_run *run)
{
	char buf[1024], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return fail("--rate", "list too long:", s);
	strcpy(buf, s);
	run->nsrc = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (run->nsrc == NSK_MODEL_MAX_SOURCES)
			return fail("--rate", "too many sources (max 32):", s);
		if (parse_num(tok, &run->rate[run->nsrc]) || !(run->rate[run->nsrc] > 0.0))
			return fail("--rate", "not a positive packet rate:", tok);
		run->nsrc++;
	}
	if (!run->nsrc)
		return fail("--rate", "empty list:", s);
	return 0;
}

static int parse_k(const char *s, struct nsk_model_sweep *sw)
{
	unsigned long a, b;
	char *end;
	const char *sep = strstr(s, "..");

	errno = 0;
	if (*s == '-' || !*s)
		return fail("--k", "not a size or range:", s);
	a = strtoul(s, &end, 10);
	if (end == s || errno)
		return fail("--k", "not a size or range:", s);
	if (sep && end == sep) {
		if (sep[2] == '-')
			return fail("--k", "not a size or range:", s);
		b = strtoul(sep + 2, &end, 10);
		if (end == sep + 2 || *end || errno)
			return fail("--k", "not a size or range:", s);
	} else if (*end == 0) {
		b = a;
	} else {
		return fail("--k", "not a size or range:", s);
	}
	if (a == 0 || b < a || b > NSK_MODEL_MAX_K)
		return fail("--k", "range must satisfy 1 <= A <= B <= 4096:", s);
	sw->k_min = (unsigned)a;
	sw->k_max = (unsigned)b;
	return 0;
}

enum {
	O_RATE = 256,
	O_SVC,
	O_SVC_ORDER,
	O_PKT_SVC,
	O_TARGET,
	O_K,
	O_TIMEOUT,
	O_PMAX,
	O_PHASES,
	O_SIM,
	O_SIM_PKTS,
	O_SEED,
	O_JSON,
	O_PLOT,
	O_NOEXT,
};

static const struct option opts[] = {
    {"rate", required_argument, NULL, O_RATE},
    {"service-rate", required_argument, NULL, O_SVC},
    {"service-order", required_argument, NULL, O_SVC_ORDER},
    {"packet-service-rate", required_argument, NULL, O_PKT_SVC},
    {"delay-target-us", required_argument, NULL, O_TARGET},
    {"k", required_argument, NULL, O_K},
    {"timeout-us", required_argument, NULL, O_TIMEOUT},
    {"prob-max", required_argument, NULL, O_PMAX},
    {"max-phases", required_argument, NULL, O_PHASES},
    {"no-extrapolate", no_argument, NULL, O_NOEXT},
    {"simulate", no_argument, NULL, O_SIM},
    {"sim-packets", required_argument, NULL, O_SIM_PKTS},
    {"seed", required_argument, NULL, O_SEED},
    {"json", no_argument, NULL, O_JSON},
    {"plot", required_argument, NULL, O_PLOT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

struct args {
	int json;
	const char *plot;
	int have_rate, have_svc;
};

static int parse(int argc, char **argv, struct nsk_run *run, struct args *a)
{
	double v;
	unsigned long u;
	int c;

	run->sweep.k_min = 1;
	run->sweep.k_max = 64;
	run->sim_packets = 200000;
	run->seed = 1;
	run->svc.container_order = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int err = 0;

		switch (c) {
		case O_RATE:
			err = parse_rates(optarg, run);
			a->have_rate = 1;
			break;
		case O_SVC:
			err = parse_pos("--service-rate", optarg, &run->svc.container_rate, 0);
			a->have_svc = 1;
			break;
		case O_SVC_ORDER:
			err = parse_uint("--service-order", optarg, 1000, &u);
			run->svc.container_order = (unsigned)u;
			break;
		case O_PKT_SVC:
			err = parse_pos("--packet-service-rate", optarg, &run->svc.packet_rate, 0);
			a->have_svc = 1;
			break;
		case O_TARGET:
			err = parse_pos("--delay-target-us", optarg, &v, 0);
			run->sweep.target = v * 1e-6;
			break;
		case O_K:
			err = parse_k(optarg, &run->sweep);
			break;
		case O_TIMEOUT:
			err = parse_pos("--timeout-us", optarg, &v, 1);
			run->timeout = v * 1e-6;
			break;
		case O_PMAX:
			if (parse_num(optarg, &run->sweep.p_max) || !(run->sweep.p_max > 0.0) ||
			    run->sweep.p_max >= 1.0)
				err = fail("--prob-max", "not a probability in (0, 1):", optarg);
			break;
		case O_PHASES:
			err = parse_uint("--max-phases", optarg, 4000, &u);
			run->max_phases = u;
			break;
		case O_NOEXT:
			run->no_extrapolate = 1;
			break;
		case O_SIM:
			run->simulate = 1;
			break;
		case O_SIM_PKTS:
			err = parse_uint("--sim-packets", optarg, 1000000000ul, &run->sim_packets);
			break;
		case O_SEED:
			err = parse_uint("--seed", optarg, (unsigned long)-1, &u);
			run->seed = u;
			break;
		case O_JSON:
			a->json = 1;
			break;
		case O_PLOT:
			a->plot = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, PROG ": unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			usage(stderr);
			return -EINVAL;
		}
		if (err)
			return err;
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (!a->have_rate || !a->have_svc) {
		fprintf(stderr, PROG ": --rate and --service-rate (or --packet-service-rate) are "
		                     "required\n");
		usage(stderr);
		return -EINVAL;
	}
	if (run->sweep.p_max > 0.0 && !(run->sweep.target > 0.0)) {
		fprintf(stderr, PROG ": --prob-max needs --delay-target-us\n");
		return -EINVAL;
	}
	return 0;
}

static int solve(struct nsk_run *run)
{
	struct nsk_model_cfg base = {.nsrc = run->nsrc,
	                             .rate = run->rate,
	                             .timeout = run->timeout,
	                             .svc = run->svc,
	                             .max_phases = run->max_phases,
	                             .y = run->sweep.target,
	                             .no_extrapolate = run->no_extrapolate};
	unsigned ks[NSK_MODEL_MAX_SOURCES];
	struct nsk_model_sweep sw = run->sweep;
	size_t stable = 0;

	run->nrows = sw.k_max - sw.k_min + 1;
	run->rows = calloc(run->nrows, sizeof(*run->rows));
	run->sim = calloc(run->nrows, sizeof(*run->sim));
	run->sim_status = calloc(run->nrows, sizeof(*run->sim_status));
	if (!run->rows || !run->sim || !run->sim_status)
		return -ENOMEM;
	if (!(sw.target > 0.0))
		sw.target = INFINITY; /* table only: every stable row "feasible" */
	base.k = ks;
	for (unsigned s = 0; s < run->nsrc; s++)
		ks[s] = sw.k_min;
	if (isnan(nsk_model_rho(&base))) {
		fprintf(stderr, PROG ": invalid model parameters\n");
		return -EINVAL;
	}
	for (size_t i = 0; i < run->nrows; i++) {
		struct nsk_model_row *r = &run->rows[i];

		r->k = sw.k_min + (unsigned)i;
		for (unsigned s = 0; s < run->nsrc; s++)
			ks[s] = r->k;
		r->status = nsk_model_solve(&base, &r->r);
		if (r->status == 0)
			stable++;
		if (r->status && r->status != -ERANGE) {
			fprintf(stderr, PROG ": model failed for k = %u: %s\n", r->k,
			        strerror(-r->status));
			return r->status;
		}
		if (run->simulate && r->status == 0) {
			struct nsk_sim_cfg sc = {.nsrc = run->nsrc,
			                         .rate = run->rate,
			                         .k = ks,
			                         .timeout = run->timeout,
			                         .svc = run->svc,
			                         .packets = run->sim_packets,
			                         .seed = run->seed,
			                         .y = run->sweep.target};

			run->sim_status[i] = nsk_sim_run(&sc, &run->sim[i]);
		} else {
			run->sim_status[i] = -ENODATA;
		}
	}
	if (!stable) {
		fprintf(stderr,
		        PROG
		        ": overloaded: utilisation >= 1 for every k in %u..%u (rho = %.3f at k "
		        "= %u, %.3f at k = %u); lower the rates or raise the service rate\n",
		        sw.k_min, sw.k_max, run->rows[0].r.rho, sw.k_min,
		        run->rows[run->nrows - 1].r.rho, sw.k_max);
		return -ERANGE;
	}
	run->chosen = nsk_model_pick(run->rows, run->nrows, &sw);
	if (!(run->sweep.target > 0.0))
		run->chosen = -ENODATA;
	if (run->chosen >= 0) {
		const struct nsk_model_result *m = &run->rows[run->chosen].r;

		run->suggested_timeout = run->rows[run->chosen].k > 1
		                             ? fmax(1e-6, run->sweep.target - m->wait - m->service)
		                             : 0.0;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct nsk_run run = {0};
	struct args a = {0};
	int err, rc = 0;

	/*
	 * The model allocates and frees many matrices of a few MB per k; keeping them on the heap
	 * instead of fresh mmaps halves the run time (page faults dominated).
	 */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (parse(argc, argv, &run, &a))
		return 1;
	err = solve(&run);
	if (err) {
		rc = 1;
		goto out;
	}
	if (a.json)
		nsk_report_json(stdout, &run);
	else
		nsk_report_table(stdout, &run);
	if (a.plot) {
		err = nsk_report_plot(a.plot, &run);
		if (err == -ENOENT) {
			fprintf(stderr,
			        PROG ": --plot %s: gnuplot not found in PATH (install "
			             "gnuplot-nox, see scripts/setup.sh)\n",
			        a.plot);
			rc = 1;
		} else if (err) {
			fprintf(stderr, PROG ": --plot %s: gnuplot failed\n", a.plot);
			rc = 1;
		} else if (!a.json) {
			printf("plot written to %s\n", a.plot);
		}
	}
	if (!rc && run.chosen == -ENOENT)
		rc = 2;
out:
	free(run.rows);
	free(run.sim);
	free(run.sim_status);
	return rc;
}
