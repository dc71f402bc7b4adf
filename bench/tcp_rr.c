// SPDX-License-Identifier: MIT
/*
 * tcp_rr.c — request/response over one persistent stream connection (netperf TCP_RR): the client
 * sends size bytes, the server answers with size bytes, one transaction in flight. Every
 * transaction is timed with clock_gettime for the latency percentiles.
 */
#include "bench.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

/* serve_one — answer one request on fd; 1 on a clean EOF before a request, 0 done, or -errno. */
static int serve_one(int fd, char *buf, size_t size)
{
	ssize_t n;
	int err;

	do
		n = recv(fd, buf, size, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 1;
	if (n < 0)
		return -errno;
	if ((size_t)n < size) {
		err = nsk_bench_read_exact(fd, buf + n, size - (size_t)n);
		if (err)
			return err;
	}
	return nsk_bench_write_all(fd, buf, size);
}

static int server(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	char *buf = nsk_bench_buf(c->size);
	int lfd, fd, err;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_listen(c, SOCK_STREAM, &lfd);
	if (err)
		return nsk_bench_fail(c, "listen", err);
	nsk_bench_ready(c);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return nsk_bench_fail(c, "accept", -errno);
	nsk_bench_usage_begin(&u);
	while ((err = serve_one(fd, buf, c->size)) == 0)
		rep.msgs++;
	if (err < 0)
		return nsk_bench_fail(c, "serve", err);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	close(fd);
	close(lfd);
	return nsk_bench_report(c, &rep);
}

static int client(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_lat lat = {0};
	struct nsk_bench_usage u;
	char *buf = nsk_bench_buf(c->size);
	uint64_t t0, t1, end;
	int fd, err;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_connect(c, SOCK_STREAM, &fd);
	if (err)
		return nsk_bench_fail(c, "connect", err);
	nsk_bench_usage_begin(&u);
	t0 = u.t_ns;
	end = t0 + (uint64_t)(c->duration * 1e9);
	do {
		err = nsk_bench_write_all(fd, buf, c->size);
		if (!err)
			err = nsk_bench_read_exact(fd, buf, c->size);
		if (err)
			return nsk_bench_fail(c, "transaction", err);
		t1 = nsk_bench_now_ns();
		nsk_bench_lat_push(&lat, t1 - t0);
		rep.msgs++;
		t0 = t1;
	} while (t1 < end);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	close(fd);
	nsk_bench_lat_finish(&lat, &rep);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_tcp_rr — run the TCP_RR role of c; returns 0 or -errno. */
int nsk_bench_tcp_rr(struct nsk_bench_ctx *c)
{
	return c->server ? server(c) : client(c);
}
