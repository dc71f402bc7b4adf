// SPDX-License-Identifier: MIT
/*
 * main.c — nearsock-bench: command line, sweep, process orchestration and reporting.
 * For every point (mode, CPU placement, message size) and every repeat, the transports are run
 * back to back, each as freshly exec'd server and client processes pinned with sched_setaffinity;
 * "nearsock" is the tcp code path with LD_PRELOAD=libnearsock.so in both children's environment.
 * Results are medians over the repeats with min-max, printed as a table and optionally as CSV.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_SIZES 32
#define MAX_REPEAT 64
#define MAX_FLOWS 16
#define LINE_MAX_ 1024

static const char *const mode_names[NSK_MODE_COUNT] = {"tcp_stream", "tcp_rr", "tcp_crr",
                                                       "udp_stream", "udp_rr"};
static const char *const tr_names[NSK_TR_COUNT] = {"tcp", "unix", "ring", "nearsock"};
enum cpus { CPUS_SEPARATE, CPUS_SHARED, CPUS_ANY, CPUS_COUNT };
static const char *const cpus_names[CPUS_COUNT] = {"separate", "shared", "any"};

enum metric {
	M_GBPS,
	M_MSGS,
	M_LAT_MEAN,
	M_P50,
	M_P99,
	M_P999,
	M_CPU_S,
	M_CPU_C,
	M_VCS_S,
	M_IVCS_S,
	M_VCS_C,
	M_IVCS_C,
	M_LOSS,
	M_GBPS_LOCAL,
	M_GBPS_REMOTE,
	M_OTHER_CPU,
	M_STEAL,
	M_COUNT
};
static const char *const metric_names[M_COUNT] = {
    "gbps",        "msgs_s",      "lat_mean_us", "lat_p50_us",    "lat_p99_us", "lat_p999_us",
    "cpu_srv_pct", "cpu_cli_pct", "vcsw_srv_s",  "ivcsw_srv_s",   "vcsw_cli_s", "ivcsw_cli_s",
    "loss_pct",    "gbps_local",  "gbps_remote", "other_cpu_pct", "steal_pct"};

enum status { ST_OK, ST_NA, ST_FAIL };
static const char *const status_names[] = {"ok", "n/a", "fail"};

struct opts {
	int modes[NSK_MODE_COUNT], nmodes;
	int trs[NSK_TR_COUNT], ntrs;
	int cpus[CPUS_COUNT], ncpus;
	size_t sizes[MAX_SIZES];
	int nsizes; /* 0 = per-mode defaults */
	double duration;
	int repeat;
	int quick, quiet;
	const char *csv;
	const char *addr, *remote_addr, *remote_netns;
	int flows, local;
	size_t ring_size;
	long spin_ns; /* -1 = automatic */
	char exe[PATH_MAX];
	char lib[PATH_MAX];
	char lib_missing[PATH_MAX + 64]; /* why nearsock is n/a, empty if the library exists */
};

struct point {
	int mode, tr, cpus;
	size_t size;
	enum status st;
	char reason[256];
	int nruns;
	double v[MAX_REPEAT][M_COUNT];
	double med[M_COUNT], min[M_COUNT], max[M_COUNT];
};

/* One child process of a run. */
struct child {
	pid_t pid;
	int fd; /* read end of its control pipe, -1 once closed */
	char buf[LINE_MAX_];
	size_t len;
	int ready, port, done;
	struct nsk_bench_report rep;
	char err[256];
};

struct flow {
	struct child srv, cli;
	int shm_fd;
	int remote;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("nearsock-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static int kind_of(int mode)
{
	switch (mode) {
	case NSK_MODE_TCP_STREAM:
	case NSK_MODE_UDP_STREAM:
		return NSK_KIND_STREAM;
	case NSK_MODE_TCP_CRR:
		return NSK_KIND_CRR;
	default:
		return NSK_KIND_RR;
	}
}

static int is_dgram(int mode)
{
	return mode == NSK_MODE_UDP_STREAM || mode == NSK_MODE_UDP_RR;
}

static int lookup(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

/* parse_size — "64", "16K", "1M" (binary units); 0 on error. */
static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return 0;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (*end == 'i' || *end == 'B' || *end == 'b')
		end++;
	while (*end == 'B' || *end == 'b')
		end++;
	return *end ? 0 : (size_t)v;
}

static void fmt_size(size_t s, char *out, size_t n)
{
	if (s >= (1u << 20) && s % (1u << 20) == 0)
		snprintf(out, n, "%zuM", s >> 20);
	else if (s >= 1024 && s % 1024 == 0)
		snprintf(out, n, "%zuK", s >> 10);
	else
		snprintf(out, n, "%zu", s);
}

/* Parse a comma list of names into idx[]; returns the count. */
static int parse_list(const char *arg, const char *const *names, int n, int *idx, const char *what)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int cnt = 0;

	if (!copy)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int i = strcmp(tok, "all") == 0 ? -2 : lookup(names, n, tok);

		if (i == -2) {
			for (int j = 0; j < n && cnt < n; j++)
				idx[cnt++] = j;
			continue;
		}
		if (i < 0)
			die("unknown %s '%s'", what, tok);
		if (cnt < n)
			idx[cnt++] = i;
	}
	free(copy);
	return cnt;
}

/* Default message sizes of a mode; the quick set is a subset that still shows the targets. */
static int default_sizes(const struct opts *o, int mode, size_t *out)
{
	static const size_t stream_full[] = {4, 64, 1024, 16384, 65536, 1 << 20};
	static const size_t udp_full[] = {4, 64, 1024, 8192, 32768};
	static const size_t rr_full[] = {4, 64, 1024, 16384, 65536};
	static const size_t crr_full[] = {4, 64, 1024};
	static const size_t stream_quick[] = {64, 65536};
	static const size_t udp_quick[] = {64, 16384};
	static const size_t rr_quick[] = {64, 16384};
	static const size_t crr_quick[] = {64};
	const size_t *s;
	size_t n;

	if (o->nsizes) {
		memcpy(out, o->sizes, (size_t)o->nsizes * sizeof(*out));
		return o->nsizes;
	}
#define PICK(q, f)                                                                                 \
	(o->quick ? (s = q, n = sizeof(q) / sizeof(*q)) : (s = f, n = sizeof(f) / sizeof(*f)))
	switch (mode) {
	case NSK_MODE_TCP_STREAM:
		PICK(stream_quick, stream_full);
		break;
	case NSK_MODE_UDP_STREAM:
		PICK(udp_quick, udp_full);
		break;
	case NSK_MODE_TCP_CRR:
		PICK(crr_quick, crr_full);
		break;
	default:
		PICK(rr_quick, rr_full);
		break;
	}
#undef PICK
	memcpy(out, s, n * sizeof(*out));
	return (int)n;
}

/* Why a point cannot be measured (NULL if it can). */
static const char *not_applicable(const struct opts *o, int mode, int tr, size_t size)
{
	if (tr == NSK_TR_NEARSOCK && o->lib_missing[0])
		return o->lib_missing;
	if (o->local < o->flows && (tr == NSK_TR_UNIX || tr == NSK_TR_RING))
		return "no remote path: unix and ring reach co-resident peers only";
	if (tr == NSK_TR_RING && mode == NSK_MODE_TCP_CRR)
		return "a raw ring has no connection set-up";
	if (is_dgram(mode) && tr != NSK_TR_UNIX && tr != NSK_TR_RING && size > 65507)
		return "datagram larger than UDP allows (65507 B)";
	if (is_dgram(mode) && size > 65536)
		return "datagram sizes stop at 64 KiB";
	if (tr == NSK_TR_RING && (is_dgram(mode) || kind_of(mode) != NSK_KIND_STREAM) &&
	    size + 4 > o->ring_size)
		return "message larger than the ring (--ring-size)";
	if (kind_of(mode) != NSK_KIND_STREAM && size > 65536)
		return "request/response sizes stop at 64 KiB";
	if (size < 4 && is_dgram(mode))
		return "datagram modes need at least 4 bytes";
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Child side */

static int child_main(int argc, char **argv)
{
	struct nsk_bench_ctx c = {.ctl_fd = -1, .shm_fd = -1, .ring_size = 256 * 1024};
	static const struct option lo[] = {{"role", 1, 0, 'R'},      {"mode", 1, 0, 'm'},
	                                   {"transport", 1, 0, 't'}, {"size", 1, 0, 's'},
	                                   {"duration", 1, 0, 'd'},  {"addr", 1, 0, 'a'},
	                                   {"port", 1, 0, 'p'},      {"path", 1, 0, 'P'},
	                                   {"ctl-fd", 1, 0, 'c'},    {"shm-fd", 1, 0, 'f'},
	                                   {"ring-size", 1, 0, 'r'}, {"spin-ns", 1, 0, 'S'},
	                                   {"ring-lazy", 1, 0, 'z'}, {0, 0, 0, 0}};
	int opt, err;

	c.mode = NSK_MODE_COUNT;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'R':
			c.server = strcmp(optarg, "server") == 0;
			break;
		case 'm':
			c.mode = lookup(mode_names, NSK_MODE_COUNT, optarg);
			break;
		case 't':
			c.transport = lookup(tr_names, NSK_TR_COUNT, optarg);
			break;
		case 's':
			c.size = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			c.duration = strtod(optarg, NULL);
			break;
		case 'a':
			snprintf(c.addr, sizeof(c.addr), "%s", optarg);
			break;
		case 'p':
			c.port = atoi(optarg);
			break;
		case 'P':
			snprintf(c.path, sizeof(c.path), "%s", optarg);
			break;
		case 'c':
			c.ctl_fd = atoi(optarg);
			break;
		case 'f':
			c.shm_fd = atoi(optarg);
			break;
		case 'r':
			c.ring_size = strtoull(optarg, NULL, 10);
			break;
		case 'S':
			c.spin_ns = atol(optarg);
			break;
		case 'z':
			c.ring_lazy = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (c.ctl_fd < 0 || (int)c.mode < 0 || c.mode >= NSK_MODE_COUNT || (int)c.transport < 0 ||
	    c.size == 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (c.transport == NSK_TR_RING) {
		if (kind_of(c.mode) == NSK_KIND_STREAM)
			err = nsk_bench_ring_stream(&c, is_dgram(c.mode));
		else
			err = nsk_bench_ring_rr(&c, is_dgram(c.mode));
	} else {
		switch (c.mode) {
		case NSK_MODE_TCP_STREAM:
			err = nsk_bench_tcp_stream(&c);
			break;
		case NSK_MODE_TCP_RR:
			err = nsk_bench_tcp_rr(&c);
			break;
		case NSK_MODE_TCP_CRR:
			err = nsk_bench_tcp_crr(&c);
			break;
		case NSK_MODE_UDP_STREAM:
			err = nsk_bench_udp_stream(&c);
			break;
		default:
			err = nsk_bench_udp_rr(&c);
			break;
		}
	}
	return err ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent side: processes */

/* Environment of a child: the parent's, without LD_PRELOAD and NEARSOCK_DISABLE; nearsock runs
 * add LD_PRELOAD=<lib>. The strings live in static storage until the next call. */
static char **child_env(const struct opts *o, int tr)
{
	static char **env;
	static char preload[PATH_MAX + 16];
	size_t n = 0, k = 0;

	while (environ[n])
		n++;
	free(env);
	env = calloc(n + 2, sizeof(*env));
	if (!env)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "LD_PRELOAD=", 11) == 0 ||
		    strncmp(environ[i], "NEARSOCK_DISABLE=", 17) == 0)
			continue;
		env[k++] = environ[i];
	}
	if (tr == NSK_TR_NEARSOCK) {
		snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", o->lib);
		env[k++] = preload;
	}
	env[k] = NULL;
	return env;
}

static int enter_netns(const char *name)
{
	char path[PATH_MAX];
	int fd, r;

	if (strchr(name, '/'))
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r < 0 ? -errno : 0;
}

struct spawn_args {
	const struct opts *o;
	const struct point *p;
	int server;
	int port;
	const char *addr;
	const char *netns;
	const char *path;
	int shm_fd;
	int cpu;
};

/* spawn — fork+exec this binary in a role; returns 0 with ch->pid and ch->fd set, or -errno. */
static int spawn(const struct spawn_args *a, struct child *ch)
{
	char size[32], dur[32], port[16], ctl[16], shm[16], rsz[32], spin[32], lazy[4];
	int pfd[2], tr = a->p->tr == NSK_TR_NEARSOCK ? NSK_TR_TCP : a->p->tr;
	long spin_ns = a->o->spin_ns;
	char **env = child_env(a->o, a->p->tr);
	pid_t pid;

	if (spin_ns < 0)
		spin_ns = a->p->cpus == CPUS_SEPARATE ? 50000 : 0;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	snprintf(size, sizeof(size), "%zu", a->p->size);
	snprintf(dur, sizeof(dur), "%.6f", a->o->duration);
	snprintf(port, sizeof(port), "%d", a->port);
	snprintf(ctl, sizeof(ctl), "%d", pfd[1]);
	snprintf(shm, sizeof(shm), "%d", a->shm_fd);
	snprintf(rsz, sizeof(rsz), "%zu", a->o->ring_size);
	snprintf(spin, sizeof(spin), "%ld", spin_ns);
	snprintf(lazy, sizeof(lazy), "%d", a->p->cpus == CPUS_SHARED);
	char *argv[] = {(char *)a->o->exe,
	                "--role",
	                a->server ? "server" : "client",
	                "--mode",
	                (char *)mode_names[a->p->mode],
	                "--transport",
	                (char *)tr_names[tr],
	                "--size",
	                size,
	                "--duration",
	                dur,
	                "--addr",
	                (char *)a->addr,
	                "--port",
	                port,
	                "--path",
	                (char *)a->path,
	                "--ctl-fd",
	                ctl,
	                "--shm-fd",
	                shm,
	                "--ring-size",
	                rsz,
	                "--spin-ns",
	                spin,
	                "--ring-lazy",
	                lazy,
	                NULL};

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(pfd[0]);
		close(pfd[1]);
		return err;
	}
	if (pid == 0) {
		char msg[PATH_MAX + 64];
		int err = 0;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (a->cpu >= 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(a->cpu, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				err = -errno,
				snprintf(msg, sizeof(msg), "error sched_setaffinity cpu%d: %s\n",
				         a->cpu, strerror(-err));
		}
		if (!err && a->netns && (err = enter_netns(a->netns)) < 0)
			snprintf(msg, sizeof(msg), "error setns %s: %s\n", a->netns,
			         strerror(-err));
		if (!err) {
			fcntl(pfd[1], F_SETFD, 0);
			if (a->shm_fd >= 0)
				fcntl(a->shm_fd, F_SETFD, 0);
			execve(a->o->exe, argv, env);
			err = -errno;
			snprintf(msg, sizeof(msg), "error exec %s: %s\n", a->o->exe,
			         strerror(-err));
		}
		if (write(pfd[1], msg, strlen(msg)) < 0)
			_exit(126);
		_exit(127);
	}
	close(pfd[1]);
	memset(ch, 0, sizeof(*ch));
	ch->pid = pid;
	ch->fd = pfd[0];
	return 0;
}

static double kv(const char *line, const char *key)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	return p ? strtod(p + strlen(pat), NULL) : 0;
}

static void child_line(struct child *ch, const char *line)
{
	if (strncmp(line, "ready", 5) == 0) {
		ch->ready = 1;
		ch->port = (int)kv(line, "port");
	} else if (strncmp(line, "result", 6) == 0) {
		ch->done = 1;
		ch->rep.bytes = (uint64_t)kv(line, "bytes");
		ch->rep.msgs = (uint64_t)kv(line, "msgs");
		ch->rep.elapsed = kv(line, "elapsed");
		ch->rep.lat_mean = kv(line, "mean");
		ch->rep.lat_p50 = kv(line, "p50");
		ch->rep.lat_p99 = kv(line, "p99");
		ch->rep.lat_p999 = kv(line, "p999");
		ch->rep.cpu = kv(line, "cpu");
		ch->rep.vcsw = kv(line, "vcsw");
		ch->rep.ivcsw = kv(line, "ivcsw");
	} else if (strncmp(line, "error ", 6) == 0 && !ch->err[0]) {
		snprintf(ch->err, sizeof(ch->err), "%s", line + 6);
	}
}

/* Read what a child wrote; closes ch->fd at EOF. */
static void child_read(struct child *ch)
{
	ssize_t n = read(ch->fd, ch->buf + ch->len, sizeof(ch->buf) - 1 - ch->len);
	char *nl;

	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		close(ch->fd);
		ch->fd = -1;
		return;
	}
	ch->len += (size_t)n;
	ch->buf[ch->len] = 0;
	while ((nl = strchr(ch->buf, '\n'))) {
		*nl = 0;
		child_line(ch, ch->buf);
		memmove(ch->buf, nl + 1, ch->len - (size_t)(nl + 1 - ch->buf) + 1);
		ch->len -= (size_t)(nl + 1 - ch->buf);
	}
	if (ch->len == sizeof(ch->buf) - 1)
		ch->len = 0; /* an over-long line: drop it */
}

/* Wait until pred(child) holds for all children in list, EOF, or the deadline. */
static void pump(struct child **list, int n, int (*pred)(const struct child *), uint64_t deadline)
{
	for (;;) {
		struct pollfd pf[2 * MAX_FLOWS];
		struct child *who[2 * MAX_FLOWS];
		int k = 0;
		uint64_t now = nsk_bench_now_ns();

		for (int i = 0; i < n; i++)
			if (list[i]->fd >= 0 && !pred(list[i])) {
				pf[k].fd = list[i]->fd;
				pf[k].events = POLLIN;
				who[k++] = list[i];
			}
		if (k == 0 || now >= deadline || interrupted)
			return;
		if (poll(pf, (nfds_t)k, (int)((deadline - now) / 1000000 + 1)) < 0 &&
		    errno != EINTR)
			return;
		for (int i = 0; i < k; i++)
			if (pf[i].revents)
				child_read(who[i]);
	}
}

static int is_ready(const struct child *c)
{
	return c->ready || c->err[0];
}

static int is_done(const struct child *c)
{
	return c->done || c->err[0];
}

/* Reap a child: kill it if it is still running, collect its status into err if it failed. */
static void reap(struct child *ch, const char *role)
{
	int st = 0;

	if (ch->pid <= 0)
		return;
	if (waitpid(ch->pid, &st, WNOHANG) == 0) {
		kill(ch->pid, SIGKILL);
		waitpid(ch->pid, &st, 0);
		if (!ch->done && !ch->err[0])
			snprintf(ch->err, sizeof(ch->err), "%s timed out (killed)", role);
	} else if (!ch->done && !ch->err[0]) {
		if (WIFSIGNALED(st))
			snprintf(ch->err, sizeof(ch->err), "%s killed by signal %d (%s)", role,
			         WTERMSIG(st), strsignal(WTERMSIG(st)));
		else
			snprintf(ch->err, sizeof(ch->err), "%s exited with status %d and no result",
			         role, WEXITSTATUS(st));
	}
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
	ch->pid = 0;
}

static int cpu_of(int cpus, int server)
{
	if (cpus == CPUS_ANY)
		return -1;
	if (cpus == CPUS_SHARED)
		return 0;
	return server ? 0 : 1;
}

/* System-wide CPU ticks: busy (user, nice, system, irq, softirq), steal, and all. */
struct cpu_ticks {
	unsigned long long busy, steal, total;
};

static void read_ticks(struct cpu_ticks *t)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");

	memset(t, 0, sizeof(*t));
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	           &v[4], &v[5], &v[6], &v[7]) == 8) {
		t->busy = v[0] + v[1] + v[2] + v[5] + v[6];
		t->steal = v[7];
		for (int i = 0; i < 8; i++)
			t->total += v[i];
	}
	fclose(f);
}

/* run_once — one measurement of point p with o->flows concurrent flows; fills v[] or reason. */
static int run_once(const struct opts *o, const struct point *p, double *v, char *reason,
                    size_t rlen)
{
	static unsigned serial;
	struct flow fl[MAX_FLOWS];
	struct child *srv[MAX_FLOWS], *cli[MAX_FLOWS];
	int n = o->flows, err = 0, clients_ok;
	struct cpu_ticks t0, t1;
	uint64_t deadline;

	memset(fl, 0, sizeof(fl));
	for (int i = 0; i < M_COUNT; i++)
		v[i] = NAN;
	for (int f = 0; f < n; f++) {
		fl[f].shm_fd = -1;
		fl[f].srv.fd = fl[f].cli.fd = -1;
		fl[f].remote = f >= o->local;
		srv[f] = &fl[f].srv;
		cli[f] = &fl[f].cli;
	}
	/* Servers first; each reports the port it bound. */
	for (int f = 0; f < n && !err; f++) {
		char path[96];
		struct spawn_args a = {.o = o,
		                       .p = p,
		                       .server = 1,
		                       .port = 0,
		                       .path = path,
		                       .shm_fd = -1,
		                       .cpu = cpu_of(p->cpus, 1)};

		snprintf(path, sizeof(path), "nsk-bench-%d-%u-%d", (int)getpid(), serial, f);
		a.addr = fl[f].remote ? o->remote_addr : o->addr;
		a.netns = fl[f].remote ? o->remote_netns : NULL;
		if (p->tr == NSK_TR_RING) {
			size_t len = nsk_bench_ring_segment_size(o->ring_size);

			fl[f].shm_fd = memfd_create("nsk-bench-ring", MFD_CLOEXEC);
			if (fl[f].shm_fd < 0 || ftruncate(fl[f].shm_fd, (off_t)len) < 0) {
				snprintf(reason, rlen, "memfd for the ring: %s", strerror(errno));
				err = -1;
				break;
			}
			a.shm_fd = fl[f].shm_fd;
		}
		if (spawn(&a, &fl[f].srv) < 0) {
			snprintf(reason, rlen, "fork server: %s", strerror(errno));
			err = -1;
		}
	}
	deadline = nsk_bench_now_ns() + 5000000000ull;
	if (!err)
		pump(srv, n, is_ready, deadline);
	for (int f = 0; f < n && !err; f++) {
		char path[96];
		struct spawn_args a = {.o = o,
		                       .p = p,
		                       .server = 0,
		                       .port = fl[f].srv.port,
		                       .path = path,
		                       .shm_fd = fl[f].shm_fd,
		                       .cpu = cpu_of(p->cpus, 0)};

		if (!fl[f].srv.ready) {
			snprintf(reason, rlen, "server not ready: %s",
			         fl[f].srv.err[0] ? fl[f].srv.err : "timed out");
			err = -1;
			break;
		}
		snprintf(path, sizeof(path), "nsk-bench-%d-%u-%d", (int)getpid(), serial, f);
		a.addr = fl[f].remote ? o->remote_addr : o->addr;
		if (spawn(&a, &fl[f].cli) < 0) {
			snprintf(reason, rlen, "fork client: %s", strerror(errno));
			err = -1;
		}
	}
	serial++;
	/* Clients end by themselves after the duration; the slack covers exec, connect and the end
	 * handshakes (at most 1 s for udp_stream), so a hung transport costs a few seconds only. */
	deadline = nsk_bench_now_ns() + (uint64_t)((o->duration * 1.5 + 3 + 0.1 * n) * 1e9);
	read_ticks(&t0);
	if (!err)
		pump(cli, n, is_done, deadline);
	read_ticks(&t1);
	/* Servers report right after their client ends; after a failed client they may never. */
	clients_ok = !err;
	for (int f = 0; f < n; f++)
		clients_ok &= fl[f].cli.done;
	deadline = nsk_bench_now_ns() + 2000000000ull;
	if (clients_ok)
		pump(srv, n, is_done, deadline);
	for (int f = 0; f < n; f++) {
		reap(&fl[f].cli, "client");
		reap(&fl[f].srv, "server");
		if (fl[f].shm_fd >= 0)
			close(fl[f].shm_fd);
	}
	if (err)
		return -1;
	for (int f = 0; f < n; f++) {
		struct child *c = &fl[f].cli, *s = &fl[f].srv;

		if (!c->done || !s->done) {
			snprintf(reason, rlen, "%s", !c->done ? c->err : s->err);
			reason[strcspn(reason, "\n")] = 0;
			return -1;
		}
		if (c->rep.elapsed <= 0 || c->rep.msgs == 0) {
			snprintf(reason, rlen, "client moved no data");
			return -1;
		}
		if (p->mode == NSK_MODE_TCP_STREAM && s->rep.bytes != c->rep.bytes) {
			snprintf(reason, rlen, "byte count mismatch: sent %llu, received %llu",
			         (unsigned long long)c->rep.bytes,
			         (unsigned long long)s->rep.bytes);
			return -1;
		}
		if ((kind_of(p->mode) != NSK_KIND_STREAM) && s->rep.msgs != c->rep.msgs) {
			snprintf(reason, rlen,
			         "transaction count mismatch: client %llu, server %llu",
			         (unsigned long long)c->rep.msgs, (unsigned long long)s->rep.msgs);
			return -1;
		}
	}
	/* Aggregate over flows: rates add up; latencies and per-process figures are averaged
	 * (latencies) or summed (CPU, context switches). */
	for (int i = 0; i < M_COUNT; i++)
		v[i] = 0;
	for (int f = 0; f < n; f++) {
		struct nsk_bench_report *c = &fl[f].cli.rep, *s = &fl[f].srv.rep;
		int stream = kind_of(p->mode) == NSK_KIND_STREAM;
		double bytes = stream ? (double)s->bytes : (double)c->bytes;
		double msgs = stream ? (double)s->msgs : (double)c->msgs;
		double gbps = bytes * 8 / c->elapsed / 1e9;

		v[M_GBPS] += gbps;
		v[fl[f].remote ? M_GBPS_REMOTE : M_GBPS_LOCAL] += gbps;
		v[M_MSGS] += msgs / c->elapsed;
		v[M_LAT_MEAN] += c->lat_mean / n;
		v[M_P50] += c->lat_p50 / n;
		v[M_P99] += c->lat_p99 / n;
		v[M_P999] += c->lat_p999 / n;
		v[M_CPU_S] += s->cpu;
		v[M_CPU_C] += c->cpu;
		v[M_VCS_S] += s->vcsw;
		v[M_IVCS_S] += s->ivcsw;
		v[M_VCS_C] += c->vcsw;
		v[M_IVCS_C] += c->ivcsw;
		if (p->mode == NSK_MODE_UDP_STREAM && c->msgs)
			v[M_LOSS] += 100.0 * (1.0 - (double)s->msgs / (double)c->msgs) / n;
	}
	if (kind_of(p->mode) == NSK_KIND_STREAM)
		v[M_LAT_MEAN] = v[M_P50] = v[M_P99] = v[M_P999] = NAN;
	if (p->mode != NSK_MODE_UDP_STREAM)
		v[M_LOSS] = NAN;
	if (n == 1)
		v[M_GBPS_LOCAL] = v[M_GBPS_REMOTE] = NAN;
	/* What else ran on the machine meanwhile: all CPUs' busy time (in % of one CPU) less ours,
	 * and the hypervisor's steal. Both make a point noisy; the table shows the first. */
	if (t1.total > t0.total) {
		double scale =
		    100.0 * (double)sysconf(_SC_NPROCESSORS_ONLN) / (double)(t1.total - t0.total);
		double other = scale * (double)(t1.busy - t0.busy) - v[M_CPU_S] - v[M_CPU_C];

		v[M_OTHER_CPU] = other > 0 ? other : 0;
		v[M_STEAL] = scale * (double)(t1.steal - t0.steal);
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Statistics and output */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void summarize(struct point *p)
{
	for (int m = 0; m < M_COUNT; m++) {
		double tmp[MAX_REPEAT];
		int k = 0;

		for (int r = 0; r < p->nruns; r++)
			if (!isnan(p->v[r][m]))
				tmp[k++] = p->v[r][m];
		if (k == 0) {
			p->med[m] = p->min[m] = p->max[m] = NAN;
			continue;
		}
		qsort(tmp, (size_t)k, sizeof(*tmp), cmp_d);
		p->min[m] = tmp[0];
		p->max[m] = tmp[k - 1];
		p->med[m] = k % 2 ? tmp[k / 2] : (tmp[k / 2 - 1] + tmp[k / 2]) / 2;
	}
}

static const char *si(double v, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else if (v >= 1e9)
		snprintf(buf, n, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, n, "%.1fk", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
	return buf;
}

static const char *num(double v, const char *fmt, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, fmt, v);
	return buf;
}

static void print_header(const struct opts *o)
{
	printf("%-10s %-8s %5s %-9s %21s %21s %8s %8s %8s %8s %11s %15s %15s %6s%s\n", "mode",
	       "cpus", "size", "transport", "Gbit/s (min-max)", "msgs/s (min-max)", "mean_us",
	       "p50_us", "p99_us", "p999_us", "cpu% s/c", "vcsw/s s/c", "ivcsw/s s/c", "other%",
	       o->flows > 1 ? "   local/remote Gbit/s" : "");
}

static void print_point(const struct opts *o, const struct point *p)
{
	char sz[32], a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32];
	char t1[112], t2[112], t3[48], t4[72], t5[72];

	fmt_size(p->size, sz, sizeof(sz));
	printf("%-10s %-8s %5s %-9s ", mode_names[p->mode], cpus_names[p->cpus], sz,
	       tr_names[p->tr]);
	if (p->st != ST_OK) {
		printf("%s: %s\n", status_names[p->st], p->reason);
		return;
	}
	snprintf(t1, sizeof(t1), "%s (%s-%s)", num(p->med[M_GBPS], "%.3f", a, sizeof(a)),
	         num(p->min[M_GBPS], "%.3f", b, sizeof(b)),
	         num(p->max[M_GBPS], "%.3f", c, sizeof(c)));
	snprintf(t2, sizeof(t2), "%s (%s-%s)", si(p->med[M_MSGS], d, sizeof(d)),
	         si(p->min[M_MSGS], e, sizeof(e)), si(p->max[M_MSGS], f, sizeof(f)));
	snprintf(t3, sizeof(t3), "%.0f/%.0f", p->med[M_CPU_S], p->med[M_CPU_C]);
	snprintf(t4, sizeof(t4), "%s/%s", si(p->med[M_VCS_S], a, sizeof(a)),
	         si(p->med[M_VCS_C], b, sizeof(b)));
	snprintf(t5, sizeof(t5), "%s/%s", si(p->med[M_IVCS_S], c, sizeof(c)),
	         si(p->med[M_IVCS_C], d, sizeof(d)));
	printf("%21s %21s %8s %8s %8s %8s %11s %15s %15s", t1, t2,
	       num(p->med[M_LAT_MEAN], "%.2f", e, sizeof(e)),
	       num(p->med[M_P50], "%.2f", f, sizeof(f)), num(p->med[M_P99], "%.2f", g, sizeof(g)),
	       num(p->med[M_P999], "%.2f", h, sizeof(h)), t3, t4, t5);
	printf(" %6s", num(p->med[M_OTHER_CPU], "%.0f", a, sizeof(a)));
	if (!isnan(p->med[M_LOSS]))
		printf("  loss %.2f%%", p->med[M_LOSS]);
	if (o->flows > 1)
		printf("   %.3f/%.3f", p->med[M_GBPS_LOCAL], p->med[M_GBPS_REMOTE]);
	putchar('\n');
}

static void csv_header(FILE *f)
{
	fprintf(f, "mode,transport,cpus,size,flows,local,status,reason,runs,duration_s");
	for (int m = 0; m < M_COUNT; m++)
		fprintf(f, ",%s,%s_min,%s_max", metric_names[m], metric_names[m], metric_names[m]);
	fputc('\n', f);
}

static void csv_row(FILE *f, const struct opts *o, const struct point *p)
{
	char reason[256];

	snprintf(reason, sizeof(reason), "%s", p->reason);
	for (char *c = reason; *c; c++)
		if (*c == ',' || *c == '"' || *c == '\n')
			*c = ';';
	fprintf(f, "%s,%s,%s,%zu,%d,%d,%s,%s,%d,%g", mode_names[p->mode], tr_names[p->tr],
	        cpus_names[p->cpus], p->size, o->flows, o->local, status_names[p->st], reason,
	        p->nruns, o->duration);
	for (int m = 0; m < M_COUNT; m++) {
		const double *vals[3] = {p->med, p->min, p->max};

		for (int k = 0; k < 3; k++) {
			if (p->st != ST_OK || isnan(vals[k][m]))
				fputs(",", f);
			else
				fprintf(f, ",%.6g", vals[k][m]);
		}
	}
	fputc('\n', f);
	fflush(f);
}

/* Median msgs/s of a measured point, NaN if the point is missing, n/a, failed or unmeasured. */
static double msgs_of(const struct point *p)
{
	return p && p->st == ST_OK && p->nruns ? p->med[M_MSGS] : NAN;
}

/* Ratios printed side by side, on messages (or transactions) per second. */
static void print_ratios(const struct opts *o, struct point *pts, int npts)
{
	/* numerator, denominator of each ratio column */
	static const int ratio[4][2] = {{NSK_TR_NEARSOCK, NSK_TR_TCP},
	                                {NSK_TR_NEARSOCK, NSK_TR_UNIX},
	                                {NSK_TR_NEARSOCK, NSK_TR_RING},
	                                {NSK_TR_RING, NSK_TR_TCP}};
	int printed = 0;

	for (int i = 0; i < npts; i++) {
		struct point *row[NSK_TR_COUNT] = {0};
		char sz[32], buf[NSK_TR_COUNT][32], r[4][16];

		if (i > 0 && pts[i].mode == pts[i - 1].mode && pts[i].cpus == pts[i - 1].cpus &&
		    pts[i].size == pts[i - 1].size)
			continue;
		for (int j = i; j < npts && pts[j].mode == pts[i].mode &&
		                pts[j].cpus == pts[i].cpus && pts[j].size == pts[i].size;
		     j++)
			row[pts[j].tr] = &pts[j];
		if (!printed++) {
			printf("\nRatios of msgs/s (transactions/s for rr, crr), medians of this "
			       "run:\n");
			printf("%-10s %-8s %5s %9s %9s %9s %9s %8s %8s %8s %8s\n", "mode", "cpus",
			       "size", "tcp", "unix", "ring", "nearsock", "ns/tcp", "ns/unix",
			       "ns/ring", "ring/tcp");
		}
		for (int t = 0; t < NSK_TR_COUNT; t++) {
			if (!isnan(msgs_of(row[t])))
				si(msgs_of(row[t]), buf[t], sizeof(buf[t]));
			else
				snprintf(buf[t], sizeof(buf[t]), row[t] ? "n/a" : "-");
		}
		for (int k = 0; k < 4; k++) {
			double a = msgs_of(row[ratio[k][0]]), b = msgs_of(row[ratio[k][1]]);

			if (isnan(a) || isnan(b) || b <= 0)
				snprintf(r[k], sizeof(r[k]), "n/a");
			else
				snprintf(r[k], sizeof(r[k]), "%.2fx", a / b);
		}
		fmt_size(pts[i].size, sz, sizeof(sz));
		printf("%-10s %-8s %5s %9s %9s %9s %9s %8s %8s %8s %8s\n", mode_names[pts[i].mode],
		       cpus_names[pts[i].cpus], sz, buf[NSK_TR_TCP], buf[NSK_TR_UNIX],
		       buf[NSK_TR_RING], buf[NSK_TR_NEARSOCK], r[0], r[1], r[2], r[3]);
	}
	if (o->lib_missing[0])
		printf("\nnearsock: n/a (%s)\n", o->lib_missing);
}

/* ------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: nearsock-bench [options]\n"
	    "  --modes LIST       tcp_stream,tcp_rr,tcp_crr,udp_stream,udp_rr (default all)\n"
	    "  --transports LIST  tcp,unix,ring,nearsock (default all)\n"
	    "  --sizes LIST       message sizes, e.g. 4,64,1K,64K,1M (default per mode)\n"
	    "  --cpus LIST        separate (server cpu0, client cpu1), shared (both cpu0), any\n"
	    "                     (default separate; --quick: separate,shared)\n"
	    "  --duration SEC     measured seconds per point and run (default 1; quick 0.2)\n"
	    "  --repeat N         runs per point; medians with min-max (default 3)\n"
	    "  --quick            small sweep (fewer sizes, 0.2 s runs), under a minute\n"
	    "  --csv FILE         also write results as CSV\n"
	    "  --addr A           server address for co-resident flows (default 127.0.0.1)\n"
	    "  --flows N          concurrent flows per run, results summed (default 1)\n"
	    "  --local K          of which K go to --addr, the rest to the remote peer (default "
	    "N)\n"
	    "  --remote-addr A    address of the remote peer\n"
	    "  --remote-netns NS  network namespace (name in /run/netns, or a path) of remote "
	    "servers\n"
	    "  --lib PATH         libnearsock.so (default: next to this binary)\n"
	    "  --ring-size BYTES  raw ring bytes per direction, power of two (default 256K)\n"
	    "  --spin-us US       ring busy-wait before sleeping (default 50 separate, 0 shared)\n"
	    "  --quiet            no progress line\n");
}

static void find_lib(struct opts *o, const char *given)
{
	struct stat st;
	char dir[PATH_MAX], *slash;

	if (given) {
		snprintf(o->lib, sizeof(o->lib), "%s", given);
	} else {
		snprintf(dir, sizeof(dir), "%s", o->exe);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		if (snprintf(o->lib, sizeof(o->lib), "%s/libnearsock.so", dir) >=
		    (int)sizeof(o->lib))
			die("path too long: %s", dir);
		if (stat(o->lib, &st) != 0) {
			char alt[PATH_MAX + 32];

			snprintf(alt, sizeof(alt), "%s/../lib/libnearsock.so", dir);
			if (stat(alt, &st) == 0 && strlen(alt) < sizeof(o->lib))
				memcpy(o->lib, alt, strlen(alt) + 1);
		}
	}
	if (stat(o->lib, &st) != 0)
		snprintf(o->lib_missing, sizeof(o->lib_missing), "%s not found", o->lib);
}

static void parse(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {{"modes", 1, 0, 'm'},       {"mode", 1, 0, 'm'},
	                                   {"transports", 1, 0, 't'},  {"transport", 1, 0, 't'},
	                                   {"sizes", 1, 0, 's'},       {"size", 1, 0, 's'},
	                                   {"cpus", 1, 0, 'c'},        {"duration", 1, 0, 'd'},
	                                   {"repeat", 1, 0, 'r'},      {"quick", 0, 0, 'q'},
	                                   {"csv", 1, 0, 'C'},         {"addr", 1, 0, 'a'},
	                                   {"flows", 1, 0, 'F'},       {"local", 1, 0, 'L'},
	                                   {"remote-addr", 1, 0, 'A'}, {"remote-netns", 1, 0, 'N'},
	                                   {"lib", 1, 0, 'l'},         {"ring-size", 1, 0, 'R'},
	                                   {"spin-us", 1, 0, 'S'},     {"quiet", 0, 0, 'Q'},
	                                   {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
	const char *lib = NULL;
	int opt, dur_set = 0, local_set = 0;
	ssize_t n;

	memset(o, 0, sizeof(*o));
	o->repeat = 3;
	o->duration = 1.0;
	o->addr = "127.0.0.1";
	o->flows = 1;
	o->ring_size = 256 * 1024;
	o->spin_ns = -1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'm':
			o->nmodes =
			    parse_list(optarg, mode_names, NSK_MODE_COUNT, o->modes, "mode");
			break;
		case 't':
			o->ntrs = parse_list(optarg, tr_names, NSK_TR_COUNT, o->trs, "transport");
			break;
		case 'c':
			o->ncpus =
			    parse_list(optarg, cpus_names, CPUS_COUNT, o->cpus, "cpu placement");
			break;
		case 's': {
			char *copy = strdup(optarg), *save = NULL, *tok;

			o->nsizes = 0;
			for (tok = strtok_r(copy, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				size_t s = parse_size(tok);

				if (!s || o->nsizes == MAX_SIZES)
					die("bad size '%s'", tok);
				o->sizes[o->nsizes++] = s;
			}
			free(copy);
			break;
		}
		case 'd':
			o->duration = strtod(optarg, NULL);
			dur_set = 1;
			if (!(o->duration > 0) || o->duration > 3600)
				die("bad duration '%s'", optarg);
			break;
		case 'r':
			o->repeat = atoi(optarg);
			if (o->repeat < 1 || o->repeat > MAX_REPEAT)
				die("--repeat must be 1..%d", MAX_REPEAT);
			break;
		case 'q':
			o->quick = 1;
			break;
		case 'C':
			o->csv = optarg;
			break;
		case 'a':
			o->addr = optarg;
			break;
		case 'F':
			o->flows = atoi(optarg);
			if (o->flows < 1 || o->flows > MAX_FLOWS)
				die("--flows must be 1..%d", MAX_FLOWS);
			break;
		case 'L':
			o->local = atoi(optarg);
			local_set = 1;
			break;
		case 'A':
			o->remote_addr = optarg;
			break;
		case 'N':
			o->remote_netns = optarg;
			break;
		case 'l':
			lib = optarg;
			break;
		case 'R':
			o->ring_size = parse_size(optarg);
			if (o->ring_size < 4096 || (o->ring_size & (o->ring_size - 1)))
				die("--ring-size must be a power of two >= 4096");
			break;
		case 'S':
			o->spin_ns = (long)(strtod(optarg, NULL) * 1000);
			break;
		case 'Q':
			o->quiet = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
	if (!local_set)
		o->local = o->flows;
	if (o->local < 0 || o->local > o->flows)
		die("--local must be 0..--flows");
	if (o->local < o->flows && !o->remote_addr)
		die("remote flows need --remote-addr");
	if (o->quick && !dur_set)
		o->duration = 0.2;
	if (!o->nmodes)
		for (int i = 0; i < NSK_MODE_COUNT; i++)
			o->modes[o->nmodes++] = i;
	if (!o->ntrs)
		for (int i = 0; i < NSK_TR_COUNT; i++)
			o->trs[o->ntrs++] = i;
	if (!o->ncpus) {
		o->cpus[o->ncpus++] = CPUS_SEPARATE;
		if (o->quick)
			o->cpus[o->ncpus++] = CPUS_SHARED;
	}
	n = readlink("/proc/self/exe", o->exe, sizeof(o->exe) - 1);
	if (n <= 0)
		die("cannot find my own executable: %s", strerror(errno));
	o->exe[n] = 0;
	find_lib(o, lib);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct point *pts = NULL;
	int npts = 0, cap = 0, failures = 0, done_runs = 0, total_runs = 0, tty;
	FILE *csv = NULL;
	uint64_t t_start;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--role") == 0)
			return child_main(argc, argv);
	parse(&o, argc, argv);
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		for (int i = 0; i < o.ncpus; i++)
			if (o.cpus[i] == CPUS_SEPARATE)
				die("--cpus separate needs two CPUs (cpu0 and cpu1)");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	tty = isatty(2);

	/* Enumerate the points: mode, placement, size, transport. */
	for (int mi = 0; mi < o.nmodes; mi++) {
		size_t sizes[MAX_SIZES];
		int ns = default_sizes(&o, o.modes[mi], sizes);

		for (int ci = 0; ci < o.ncpus; ci++)
			for (int si_ = 0; si_ < ns; si_++)
				for (int ti = 0; ti < o.ntrs; ti++) {
					struct point *p;
					const char *na;

					if (npts == cap) {
						cap = cap ? cap * 2 : 64;
						struct point *np =
						    realloc(pts, (size_t)cap * sizeof(*pts));

						if (!np)
							die("out of memory");
						pts = np;
					}
					p = &pts[npts++];
					memset(p, 0, sizeof(*p));
					p->mode = o.modes[mi];
					p->cpus = o.cpus[ci];
					p->size = sizes[si_];
					p->tr = o.trs[ti];
					na = not_applicable(&o, p->mode, p->tr, p->size);
					if (na) {
						p->st = ST_NA;
						snprintf(p->reason, sizeof(p->reason), "%.200s",
						         na);
					} else {
						total_runs += o.repeat;
					}
				}
	}
	if (o.csv) {
		csv = fopen(o.csv, "w");
		if (!csv)
			die("cannot write %s: %s", o.csv, strerror(errno));
		csv_header(csv);
	}
	printf(
	    "# nearsock-bench: %d points, %d runs of %.2fs (about %.0f s); %d flow(s), %d local\n",
	    npts, total_runs, o.duration, total_runs * (o.duration + 0.15), o.flows, o.local);
	printf("# nearsock library: %s\n", o.lib_missing[0] ? o.lib_missing : o.lib);
	print_header(&o);
	fflush(stdout);
	t_start = nsk_bench_now_ns();

	/* Groups share mode, placement and size; within a group the transports alternate per repeat
	 * so that slow drifts of the machine hit every transport alike. */
	for (int g = 0; g < npts && !interrupted;) {
		int end = g;

		while (end < npts && pts[end].mode == pts[g].mode && pts[end].cpus == pts[g].cpus &&
		       pts[end].size == pts[g].size)
			end++;
		for (int r = 0; r < o.repeat && !interrupted; r++)
			for (int i = g; i < end && !interrupted; i++) {
				struct point *p = &pts[i];
				char sz[32], reason[256] = "";

				if (p->st != ST_OK)
					continue;
				fmt_size(p->size, sz, sizeof(sz));
				if (!o.quiet)
					fprintf(stderr, "%s[%d/%d %3.0fs] %s %s %s %s run %d/%d%s",
					        tty ? "\r\033[K" : "", ++done_runs, total_runs,
					        (double)(nsk_bench_now_ns() - t_start) / 1e9,
					        mode_names[p->mode], cpus_names[p->cpus], sz,
					        tr_names[p->tr], r + 1, o.repeat, tty ? "" : "\n");
				if (run_once(&o, p, p->v[p->nruns], reason, sizeof(reason)) == 0) {
					p->nruns++;
				} else {
					p->st = ST_FAIL;
					snprintf(p->reason, sizeof(p->reason), "%s", reason);
					failures++;
				}
			}
		if (!o.quiet && tty)
			fprintf(stderr, "\r\033[K");
		for (int i = g; i < end; i++) {
			if (pts[i].st == ST_OK)
				summarize(&pts[i]);
			print_point(&o, &pts[i]);
			if (csv)
				csv_row(csv, &o, &pts[i]);
		}
		fflush(stdout);
		g = end;
	}
	print_ratios(&o, pts, npts);
	printf("# done in %.1f s%s\n", (double)(nsk_bench_now_ns() - t_start) / 1e9,
	       interrupted ? " (interrupted)" : "");
	if (csv)
		fclose(csv);
	free(pts);
	if (interrupted)
		return 130;
	return failures ? 1 : 0;
}
