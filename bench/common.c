// SPDX-License-Identifier: MIT
/*
 * common.c — helpers shared by the benchmark modes: clocks, getrusage windows, latency percentiles,
 * socket set-up for each transport, and the one-line protocol a child speaks to the parent.
 * Everything here runs in the children, outside the measured loops except the clock reads.
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

uint64_t nsk_bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

/* nsk_bench_usage_begin — start the measured window: wall clock, CPU time, context switches. */
void nsk_bench_usage_begin(struct nsk_bench_usage *u)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	u->cpu_ns = tv_ns(&ru.ru_utime) + tv_ns(&ru.ru_stime);
	u->nvcsw = ru.ru_nvcsw;
	u->nivcsw = ru.ru_nivcsw;
	u->t_ns = nsk_bench_now_ns();
}

/* nsk_bench_usage_end — close the window begun by nsk_bench_usage_begin; fills elapsed, cpu, csw.
 */
void nsk_bench_usage_end(const struct nsk_bench_usage *u, struct nsk_bench_report *rep)
{
	struct rusage ru;
	uint64_t now = nsk_bench_now_ns();
	double secs;

	getrusage(RUSAGE_SELF, &ru);
	secs = (double)(now - u->t_ns) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	rep->elapsed = secs;
	rep->cpu =
	    100.0 * (double)(tv_ns(&ru.ru_utime) + tv_ns(&ru.ru_stime) - u->cpu_ns) / 1e9 / secs;
	rep->vcsw = (double)(ru.ru_nvcsw - u->nvcsw) / secs;
	rep->ivcsw = (double)(ru.ru_nivcsw - u->nivcsw) / secs;
}

/* nsk_bench_lat_push — append one sample; returns 0 or -ENOMEM (the sample is then dropped). */
int nsk_bench_lat_push(struct nsk_bench_lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(const struct nsk_bench_lat *l, double p)
{
	size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);

	return (double)l->v[i] / 1e3;
}

/* nsk_bench_lat_finish — sort the samples, store mean/p50/p99/p99.9 in microseconds, free them. */
void nsk_bench_lat_finish(struct nsk_bench_lat *l, struct nsk_bench_report *rep)
{
	double sum = 0;

	if (l->n == 0)
		return;
	qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
	for (size_t i = 0; i < l->n; i++)
		sum += (double)l->v[i];
	rep->lat_mean = sum / (double)l->n / 1e3;
	rep->lat_p50 = pct(l, 0.50);
	rep->lat_p99 = pct(l, 0.99);
	rep->lat_p999 = pct(l, 0.999);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* nsk_bench_write_all — write len bytes, retrying short writes and EINTR; 0 or -errno. */
int nsk_bench_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* nsk_bench_read_exact — read exactly len bytes; 0, -EPIPE on early EOF, or -errno. */
int nsk_bench_read_exact(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static socklen_t unix_addr(const char *name, const char *suffix, struct sockaddr_un *sun)
{
	int n;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	/* Abstract namespace: nothing to clean up in the file system. */
	n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "%s%s", name, suffix);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static int inet_addr_of(const struct nsk_bench_ctx *c, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)c->port);
	if (inet_pton(AF_INET, c->addr, &sin->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

/*
 * nsk_bench_listen — create the server socket for c->transport (tcp or unix) and type (SOCK_STREAM:
 * bound and listening; SOCK_DGRAM: bound). A tcp port of 0 is replaced by the port the kernel
 * chose. Returns 0 and the fd in *fd_out, or -errno.
 */
int nsk_bench_listen(struct nsk_bench_ctx *c, int type, int *fd_out)
{
	int fd, one = 1, err;

	if (c->transport == NSK_TR_UNIX) {
		struct sockaddr_un sun;
		socklen_t len = unix_addr(c->path, "", &sun);

		fd = socket(AF_UNIX, type, 0);
		if (fd < 0)
			return -errno;
		if (bind(fd, (struct sockaddr *)&sun, len) < 0)
			goto fail;
	} else {
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);

		err = inet_addr_of(c, &sin);
		if (err)
			return err;
		fd = socket(AF_INET, type, 0);
		if (fd < 0)
			return -errno;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			goto fail;
		if (getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
			goto fail;
		c->port = ntohs(sin.sin_port);
	}
	if (type == SOCK_STREAM && listen(fd, 128) < 0)
		goto fail;
	*fd_out = fd;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

/*
 * nsk_bench_connect — connect a client socket of type to the server of c; for tcp stream sockets
 * TCP_NODELAY is set in rr/crr modes (request/response traffic, as sockperf does).
 * Returns 0 and the fd in *fd_out, or -errno.
 */
int nsk_bench_connect(const struct nsk_bench_ctx *c, int type, int *fd_out)
{
	int fd, err, one = 1;

	if (c->transport == NSK_TR_UNIX) {
		struct sockaddr_un sun;
		socklen_t len = unix_addr(c->path, "", &sun);

		fd = socket(AF_UNIX, type, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sun, len) < 0)
			goto fail;
	} else {
		struct sockaddr_in sin;

		err = inet_addr_of(c, &sin);
		if (err)
			return err;
		fd = socket(AF_INET, type, 0);
		if (fd < 0)
			return -errno;
		if (type == SOCK_STREAM && c->mode != NSK_MODE_TCP_STREAM)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			goto fail;
	}
	*fd_out = fd;
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

/*
 * nsk_bench_dgram_client — a connected datagram socket to the server. An AF_UNIX client binds its
 * own abstract name first, so that the server can answer. Returns 0 and the fd, or -errno.
 */
int nsk_bench_dgram_client(const struct nsk_bench_ctx *c, int *fd_out)
{
	struct sockaddr_un me, srv;
	socklen_t ml, sl;
	int fd, err;

	if (c->transport != NSK_TR_UNIX)
		return nsk_bench_connect(c, SOCK_DGRAM, fd_out);
	ml = unix_addr(c->path, "-c", &me);
	sl = unix_addr(c->path, "", &srv);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&me, ml) < 0 ||
	    connect(fd, (struct sockaddr *)&srv, sl) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

static int ctl_line(const struct nsk_bench_ctx *c, const char *line)
{
	size_t len = strlen(line);
	const char *p = line;

	while (len) {
		ssize_t n = write(c->ctl_fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* nsk_bench_ready — tell the parent the server is listening (and on which port). */
int nsk_bench_ready(const struct nsk_bench_ctx *c)
{
	char line[64];

	snprintf(line, sizeof(line), "ready port=%d\n", c->port);
	return ctl_line(c, line);
}

/* nsk_bench_report — send the result line to the parent; 0 or -errno. */
int nsk_bench_report(const struct nsk_bench_ctx *c, const struct nsk_bench_report *r)
{
	char line[512];

	snprintf(line, sizeof(line),
	         "result bytes=%llu msgs=%llu elapsed=%.9f mean=%.4f p50=%.4f p99=%.4f p999=%.4f "
	         "cpu=%.3f vcsw=%.3f ivcsw=%.3f\n",
	         (unsigned long long)r->bytes, (unsigned long long)r->msgs, r->elapsed, r->lat_mean,
	         r->lat_p50, r->lat_p99, r->lat_p999, r->cpu, r->vcsw, r->ivcsw);
	return ctl_line(c, line);
}

/* nsk_bench_fail — tell the parent what failed in this child; returns err (-errno) for chaining. */
int nsk_bench_fail(const struct nsk_bench_ctx *c, const char *what, int err)
{
	char line[256];

	snprintf(line, sizeof(line), "error %s %s: %s\n", c->server ? "server" : "client", what,
	         err ? strerror(err < 0 ? -err : err) : "failed");
	ctl_line(c, line);
	return err < 0 ? err : -EIO;
}

/* nsk_bench_buf — a page-aligned, pre-faulted message buffer of size bytes (never freed). */
void *nsk_bench_buf(size_t size)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, size < 64 ? 64 : size))
		return NULL;
	memset(p, 0x5a, size < 64 ? 64 : size);
	return p;
}

/* nsk_bench_check_every — how many messages to send between clock reads (keeps reads < 1%). */
int nsk_bench_check_every(size_t size)
{
	size_t n = 4096 / (size ? size : 1);

	return n ? (int)n : 1;
}
