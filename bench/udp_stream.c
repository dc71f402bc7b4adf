// SPDX-License-Identifier: MIT
/*
 * udp_stream.c — one-way datagrams (netperf UDP_STREAM) over UDP, or AF_UNIX datagrams for "unix".
 * The client sends size-byte datagrams for the duration; the server counts what arrives, so the
 * parent reports the received rate and the loss. An end datagram (retried until acknowledged)
 * closes the test.
 */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define END_TRIES 50
#define END_WAIT_MS 20

static int is_end(const char *buf, ssize_t n)
{
	uint32_t m;

	if (n < (ssize_t)sizeof(m))
		return 0;
	memcpy(&m, buf, sizeof(m));
	return m == NSK_BENCH_END_MAGIC;
}

static int server(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	struct sockaddr_storage from;
	size_t rsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(rsz);
	int fd, err, started = 0;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_listen(c, SOCK_DGRAM, &fd);
	if (err)
		return nsk_bench_fail(c, "bind", err);
	nsk_bench_ready(c);
	for (;;) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, rsz, 0, (struct sockaddr *)&from, &fl);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return nsk_bench_fail(c, "recvfrom", -errno);
		}
		if (!started) {
			nsk_bench_usage_begin(&u);
			started = 1;
		}
		if (is_end(buf, n)) {
			nsk_bench_usage_end(&u, &rep);
			if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) < 0)
				return nsk_bench_fail(c, "sendto (end ack)", -errno);
			break;
		}
		rep.msgs++;
		rep.bytes += (uint64_t)n;
	}
	close(fd);
	return nsk_bench_report(c, &rep);
}

static int client(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	size_t bsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(bsz);
	int every = nsk_bench_check_every(c->size), fd, err, i = 0, acked = 0;
	uint32_t magic = NSK_BENCH_END_MAGIC;
	uint64_t end;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_dgram_client(c, &fd);
	if (err)
		return nsk_bench_fail(c, "connect", err);
	nsk_bench_usage_begin(&u);
	end = u.t_ns + (uint64_t)(c->duration * 1e9);
	for (;;) {
		ssize_t n = send(fd, buf, c->size, 0);

		if (n < 0 && errno != EINTR && errno != ENOBUFS && errno != ECONNREFUSED)
			return nsk_bench_fail(c, "send", -errno);
		if (n > 0)
			rep.msgs++;
		if (++i == every) {
			i = 0;
			if (nsk_bench_now_ns() >= end)
				break;
		}
	}
	rep.bytes = rep.msgs * c->size;
	memcpy(buf, &magic, sizeof(magic));
	for (int t = 0; t < END_TRIES && !acked; t++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (send(fd, buf, sizeof(magic), 0) < 0 && errno != ENOBUFS)
			return nsk_bench_fail(c, "send (end)", -errno);
		if (poll(&p, 1, END_WAIT_MS) == 1 && recv(fd, buf, bsz, 0) > 0 &&
		    is_end(buf, sizeof(magic)))
			acked = 1;
	}
	nsk_bench_usage_end(&u, &rep);
	close(fd);
	if (!acked)
		return nsk_bench_fail(c, "end of test not acknowledged", -ETIMEDOUT);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_udp_stream — run the UDP_STREAM role of c; returns 0 or -errno. */
int nsk_bench_udp_stream(struct nsk_bench_ctx *c)
{
	return c->server ? server(c) : client(c);
}
