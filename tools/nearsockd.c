/* SPDX-License-Identifier: MIT */
/* nearsockd — the optional host agent of a nearsock domain. Every interval it notices
 * processes joining (a new connection table) and leaving (the table's process died: pid and
 * start time, as gc checks), prints one event line per change, collects what dead processes
 * left (gc.c), and rewrites a Prometheus metrics file (metrics.c). It can set the domain's
 * memory budget. It keeps no state the domain needs: the library works without it, and it
 * may be stopped or restarted at any time. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/domain.h"
#include "gc.h"
#include "metrics.h"
#include "platform/linux.h"
#include "tables.h"

struct opts {
	const char *dir;
	const char *metrics;
	long interval_ms;
	int once;
	int json;
	int set_budget;
	uint64_t budget;
};

/* A member of the domain: one connection table, named by its process. */
struct member {
	uint32_t pid;
	uint64_t start;
	int seen; /* in this pass */
};

struct members {
	struct member *m;
	size_t n, cap;
	struct nsk_agent_stats *st;
	const struct opts *o;
};

static volatile sig_atomic_t stop_sig;

static void on_signal(int sig)
{
	stop_sig = sig;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: nearsockd [--dir DIR] [--interval MS] [--mem-budget BYTES[k|M|G]]\n"
		   "                 [--metrics-file PATH] [--once] [--json]\n"
		   "The nearsock host agent: membership events, garbage collection of what dead\n"
		   "processes left, Prometheus metrics, the domain's memory budget. Runs in the\n"
		   "foreground until SIGTERM or SIGINT (--once: one pass).\n");
}

/* parse_size - "123", "64k", "512M", "2G" (binary multiples) into *@v. 0 or -1. */
static int parse_size(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	int shift = 0;
	switch (*end) {
	case 0:
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		return -1;
	}
	if (*end && end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB"))
		return -1;
	if (shift && n > (~0ull >> shift))
		return -1;
	*v = (uint64_t)n << shift;
	return 0;
}

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ev_member(const struct opts *o, const char *what, uint32_t pid)
{
	char comm[32];
	if (!strcmp(what, "join"))
		nsk_proc_comm(pid, comm, sizeof(comm));
	else
		comm[0] = 0;
	if (o->json)
		printf("{\"event\": \"%s\", \"time\": %.3f, \"pid\": %u%s%s%s}\n", what, now_real(),
		       pid, comm[0] ? ", \"comm\": \"" : "", comm, comm[0] ? "\"" : "");
	else
		printf("%s pid=%u%s%s\n", what, pid, comm[0] ? " comm=" : "", comm);
}

static void see_table(struct nsk_proctab *t, void *arg)
{
	struct members *ms = arg;
	uint32_t pid = t->hdr->pid;
	uint64_t start = t->hdr->start_time;
	for (size_t i = 0; i < ms->n; i++) {
		if (ms->m[i].pid == pid && ms->m[i].start == start) {
			ms->m[i].seen = 1;
			return;
		}
	}
	if (ms->n == ms->cap) {
		size_t cap = ms->cap ? 2 * ms->cap : 64;
		struct member *m = realloc(ms->m, cap * sizeof(*m));
		if (!m)
			return; /* seen again next pass */
		ms->m = m;
		ms->cap = cap;
	}
	ms->m[ms->n++] = (struct member){.pid = pid, .start = start, .seen = 1};
	ms->st->joins++;
	ev_member(ms->o, "join", pid);
}

/* membership - one pass: join events for new tables, leave events for tables gone or
 * whose process died. */
static void membership(struct nsk_domain *d, struct members *ms)
{
	for (size_t i = 0; i < ms->n; i++)
		ms->m[i].seen = 0;
	nsk_tables_each(d->dir, see_table, ms, 0);
	size_t k = 0;
	for (size_t i = 0; i < ms->n; i++) {
		if (ms->m[i].seen) {
			ms->m[k++] = ms->m[i];
			continue;
		}
		ms->st->leaves++;
		ev_member(ms->o, "leave", ms->m[i].pid);
	}
	ms->n = k;
}

/* Memory pressure (MemNet): above 90 % of the domain's budget the processes stop growing
 * rings and give back the memory of idle ones first (preload/ringsize.h); below 75 % it ends. */
static void pressure(struct nsk_domain *d, const struct opts *o)
{
	uint64_t budget = nsk_load64(&d->reg.hdr->mem_budget);
	uint64_t used = nsk_load64(&d->reg.hdr->mem_used);
	uint32_t cur = nsk_load32(&d->reg.hdr->mem_pressure);
	uint32_t want = cur;
	if (!budget)
		want = 0;
	else if (used > budget / 10 * 9)
		want = 1;
	else if (used < budget / 4 * 3)
		want = 0;
	if (want == cur)
		return;
	nsk_store32(&d->reg.hdr->mem_pressure, want);
	if (o->json)
		printf("{\"event\": \"pressure\", \"time\": %.3f, \"on\": %u, \"mem_used\": %llu, "
		       "\"mem_budget\": %llu}\n",
		       now_real(), want, (unsigned long long)used, (unsigned long long)budget);
	else
		printf("pressure %s mem_used=%llu mem_budget=%llu\n", want ? "on" : "off",
		       (unsigned long long)used, (unsigned long long)budget);
	fflush(stdout);
}

static void collect(struct nsk_domain *d, const struct opts *o, struct nsk_agent_stats *st)
{
	struct nsk_gc_result r = {0};
	nsk_gc_run(d, &r);
	st->gc.entries += r.entries;
	st->gc.tables += r.tables;
	st->gc.rendezvous += r.rendezvous;
	st->gc.budget_bytes += r.budget_bytes;
	if (!r.entries && !r.tables && !r.rendezvous && !r.budget_bytes)
		return;
	if (o->json)
		printf("{\"event\": \"gc\", \"time\": %.3f, \"registry_entries\": %u, \"tables\": %u, "
		       "\"rendezvous\": %u, \"budget_bytes\": %llu}\n",
		       now_real(), r.entries, r.tables, r.rendezvous,
		       (unsigned long long)r.budget_bytes);
	else
		printf("gc registry_entries=%u tables=%u rendezvous=%u budget_bytes=%llu\n",
		       r.entries, r.tables, r.rendezvous, (unsigned long long)r.budget_bytes);
}

static int parse(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		if (!strcmp(a, "--once")) {
			o->once = 1;
		} else if (!strcmp(a, "--json")) {
			o->json = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else if (!v) {
			fprintf(stderr, "nearsockd: unknown option or missing value: %s\n", a);
			return -1;
		} else if (!strcmp(a, "--dir")) {
			o->dir = argv[++i];
		} else if (!strcmp(a, "--metrics-file")) {
			o->metrics = argv[++i];
		} else if (!strcmp(a, "--interval")) {
			o->interval_ms = strtol(v, &end, 10);
			if (*end || o->interval_ms < 10 || o->interval_ms > 3600000) {
				fprintf(stderr, "nearsockd: bad --interval %s (10..3600000 ms)\n", v);
				return -1;
			}
			i++;
		} else if (!strcmp(a, "--mem-budget")) {
			if (parse_size(v, &o->budget) < 0) {
				fprintf(stderr, "nearsockd: bad --mem-budget %s (bytes, k/M/G)\n", v);
				return -1;
			}
			o->set_budget = 1;
			i++;
		} else {
			fprintf(stderr, "nearsockd: unknown option %s\n", a);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {.interval_ms = 500};
	if (parse(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* one event per line, also into a pipe or file */

	/* Blocked except while sleeping in ppoll: a signal never lands between the check of
	 * stop_sig and the sleep. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct nsk_domain d;
	int r = nsk_domain_open(&d, o.dir, 1);
	if (r < 0) {
		char def[PATH_MAX];
		nsk_domain_default_dir(def, sizeof(def));
		fprintf(stderr, "nearsockd: cannot open domain %s: %s\n", o.dir ? o.dir : def,
			strerror(-r));
		return 1;
	}
	if (o.set_budget)
		nsk_store64(&d.reg.hdr->mem_budget, o.budget);
	if (o.json)
		printf("{\"event\": \"start\", \"time\": %.3f, \"pid\": %d, \"dir\": \"%s\", "
		       "\"interval_ms\": %ld, \"mem_budget\": %llu}\n",
		       now_real(), (int)getpid(), d.dir, o.interval_ms,
		       (unsigned long long)nsk_load64(&d.reg.hdr->mem_budget));
	else
		printf("start pid=%d dir=%s interval_ms=%ld mem_budget=%llu\n", (int)getpid(), d.dir,
		       o.interval_ms, (unsigned long long)nsk_load64(&d.reg.hdr->mem_budget));

	struct nsk_agent_stats st;
	memset(&st, 0, sizeof(st));
	struct members ms = {.st = &st, .o = &o};
	int metrics_failed = 0;
	while (!stop_sig) {
		membership(&d, &ms);
		collect(&d, &o, &st);
		pressure(&d, &o);
		st.passes++;
		if (o.metrics) {
			r = nsk_metrics_write_file(o.metrics, &d, &st);
			if (r < 0 && !metrics_failed)
				fprintf(stderr, "nearsockd: cannot write metrics file %s: %s\n",
					o.metrics, strerror(-r));
			metrics_failed = r < 0;
		}
		if (o.once)
			break;
		struct timespec ts = {o.interval_ms / 1000, (o.interval_ms % 1000) * 1000000};
		ppoll(NULL, 0, &ts, &old);
	}
	if (o.json)
		printf("{\"event\": \"stop\", \"time\": %.3f, \"signal\": %d}\n", now_real(),
		       (int)stop_sig);
	else
		printf("stop signal=%d\n", (int)stop_sig);
	free(ms.m);
	nsk_domain_close(&d);
	return 0;
}
