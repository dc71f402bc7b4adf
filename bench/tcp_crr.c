// SPDX-License-Identifier: MIT
/*
 * tcp_crr.c — connect, request, response, close (netperf TCP_CRR): one new connection per
 * transaction, so the cost of setting a connection up (and, under nearsock, of deciding whether
 * to upgrade it) is in every sample. The client closes first; an empty connection ends the test.
 */
#include "bench.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static int server(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	char *buf = nsk_bench_buf(c->size);
	int lfd, err, started = 0;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_listen(c, SOCK_STREAM, &lfd);
	if (err)
		return nsk_bench_fail(c, "listen", err);
	nsk_bench_ready(c);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		ssize_t n;
		char b;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return nsk_bench_fail(c, "accept", -errno);
		}
		if (!started) {
			nsk_bench_usage_begin(&u);
			started = 1;
		}
		do
			n = recv(fd, buf, c->size, 0);
		while (n < 0 && errno == EINTR);
		if (n == 0) { /* the client's end-of-test connection */
			close(fd);
			break;
		}
		if (n < 0)
			return nsk_bench_fail(c, "recv", -errno);
		err = (size_t)n < c->size ? nsk_bench_read_exact(fd, buf + n, c->size - (size_t)n)
		                          : 0;
		if (!err)
			err = nsk_bench_write_all(fd, buf, c->size);
		if (err)
			return nsk_bench_fail(c, "transaction", err);
		/* Wait for the client's close, so that the client side holds TIME_WAIT. */
		do
			n = recv(fd, &b, 1, 0);
		while (n < 0 && errno == EINTR);
		close(fd);
		rep.msgs++;
	}
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
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
	nsk_bench_usage_begin(&u);
	t0 = u.t_ns;
	end = t0 + (uint64_t)(c->duration * 1e9);
	do {
		err = nsk_bench_connect(c, SOCK_STREAM, &fd);
		if (err)
			return nsk_bench_fail(c, "connect", err);
		err = nsk_bench_write_all(fd, buf, c->size);
		if (!err)
			err = nsk_bench_read_exact(fd, buf, c->size);
		if (err)
			return nsk_bench_fail(c, "transaction", err);
		close(fd);
		t1 = nsk_bench_now_ns();
		nsk_bench_lat_push(&lat, t1 - t0);
		rep.msgs++;
		t0 = t1;
	} while (t1 < end);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	/* End of test: a connection that sends nothing. */
	err = nsk_bench_connect(c, SOCK_STREAM, &fd);
	if (err)
		return nsk_bench_fail(c, "connect (end)", err);
	close(fd);
	nsk_bench_lat_finish(&lat, &rep);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_tcp_crr — run the TCP_CRR role of c; returns 0 or -errno. */
int nsk_bench_tcp_crr(struct nsk_bench_ctx *c)
{
	return c->server ? server(c) : client(c);
}
