// SPDX-License-Identifier: MIT
/*
 * tcp_stream.c — bulk transfer over a stream socket (TCP, or AF_UNIX stream for "unix"), in the
 * spirit of netperf TCP_STREAM: the client sends size-byte messages for the duration, half-closes,
 * and stops the clock when the server acknowledges that every byte arrived.
 */
#include "bench.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_MIN (64 * 1024) /* receive buffer, as netperf's default receive size */

static int server(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	size_t rsz = c->size > RECV_MIN ? c->size : RECV_MIN;
	char *buf = nsk_bench_buf(rsz);
	int lfd, fd, err;
	char ack = 'k';

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
	for (;;) {
		ssize_t n = recv(fd, buf, rsz, 0);

		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return nsk_bench_fail(c, "recv", -errno);
		}
		rep.bytes += (uint64_t)n;
	}
	nsk_bench_usage_end(&u, &rep);
	rep.msgs = rep.bytes / c->size;
	err = nsk_bench_write_all(fd, &ack, 1);
	if (err)
		return nsk_bench_fail(c, "send ack", err);
	close(fd);
	close(lfd);
	return nsk_bench_report(c, &rep);
}

static int client(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	char *buf = nsk_bench_buf(c->size);
	int every = nsk_bench_check_every(c->size), fd, err, i = 0;
	uint64_t end;
	char ack;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_connect(c, SOCK_STREAM, &fd);
	if (err)
		return nsk_bench_fail(c, "connect", err);
	nsk_bench_usage_begin(&u);
	end = u.t_ns + (uint64_t)(c->duration * 1e9);
	for (;;) {
		err = nsk_bench_write_all(fd, buf, c->size);
		if (err)
			return nsk_bench_fail(c, "send", err);
		rep.msgs++;
		if (++i == every) {
			i = 0;
			if (nsk_bench_now_ns() >= end)
				break;
		}
	}
	rep.bytes = rep.msgs * c->size;
	if (shutdown(fd, SHUT_WR) < 0)
		return nsk_bench_fail(c, "shutdown", -errno);
	err = nsk_bench_read_exact(fd, &ack, 1);
	if (err)
		return nsk_bench_fail(c, "wait for ack", err);
	nsk_bench_usage_end(&u, &rep);
	close(fd);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_tcp_stream — run the TCP_STREAM role of c; returns 0 or -errno. */
int nsk_bench_tcp_stream(struct nsk_bench_ctx *c)
{
	return c->server ? server(c) : client(c);
}
