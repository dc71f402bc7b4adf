// SPDX-License-Identifier: MIT
/*
 * udp_rr.c — request/response with one datagram each way (netperf UDP_RR), over UDP or AF_UNIX
 * datagrams. Each transaction is timed; loss is not retried (on one host there should be none:
 * a lost datagram stalls the test and the parent's watchdog reports it).
 */
#include "bench.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int server(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	struct sockaddr_storage from;
	size_t rsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(rsz);
	int fd, err, started = 0;
	uint32_t m;

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
		memcpy(&m, buf, sizeof(m));
		if (n >= (ssize_t)sizeof(m) && m == NSK_BENCH_END_MAGIC)
			break;
		if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) < 0)
			return nsk_bench_fail(c, "sendto", -errno);
		rep.msgs++;
	}
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	close(fd);
	return nsk_bench_report(c, &rep);
}

static int client(struct nsk_bench_ctx *c)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_lat lat = {0};
	struct nsk_bench_usage u;
	size_t bsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(bsz);
	uint32_t magic = NSK_BENCH_END_MAGIC;
	uint64_t t0, t1, end;
	int fd, err;

	if (!buf)
		return -ENOMEM;
	err = nsk_bench_dgram_client(c, &fd);
	if (err)
		return nsk_bench_fail(c, "connect", err);
	nsk_bench_usage_begin(&u);
	t0 = u.t_ns;
	end = t0 + (uint64_t)(c->duration * 1e9);
	do {
		ssize_t n;

		if (send(fd, buf, c->size, 0) < 0)
			return nsk_bench_fail(c, "send", -errno);
		do
			n = recv(fd, buf, bsz, 0);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return nsk_bench_fail(c, "recv", -errno);
		t1 = nsk_bench_now_ns();
		nsk_bench_lat_push(&lat, t1 - t0);
		rep.msgs++;
		t0 = t1;
	} while (t1 < end);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	memcpy(buf, &magic, sizeof(magic));
	for (int i = 0; i < 3; i++) /* the server stops at the first one */
		send(fd, buf, sizeof(magic), 0);
	close(fd);
	nsk_bench_lat_finish(&lat, &rep);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_udp_rr — run the UDP_RR role of c; returns 0 or -errno. */
int nsk_bench_udp_rr(struct nsk_bench_ctx *c)
{
	return c->server ? server(c) : client(c);
}
