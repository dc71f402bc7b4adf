/* SPDX-License-Identifier: MIT */
/* nsk_pingpong — round-trip latency and idle cost of one TCP connection, for the ivshmem
 * domain (two namespaces or two VMs): the client sends a message of --size bytes and waits for
 * its echo, for --seconds after a warm-up (the connection upgrades meanwhile), and prints the
 * median, 99th percentile and mean round trip; then it stays silent for --idle-ms and sends one
 * last message. The server echoes and reports the CPU time it used while blocked in the read
 * that spanned the silence (the cost of waiting: polling back-off on a region channel).
 * Both print one JSON line with the connection's path counters when libnearsock is preloaded. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

static uint64_t now_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int full(int fd, void *buf, size_t n, int wr)
{
	size_t d = 0;
	while (d < n) {
		ssize_t r = wr ? write(fd, (char *)buf + d, n - d) : read(fd, (char *)buf + d, n - d);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		d += (size_t)r;
	}
	return 0;
}

static void stats(int fd, char *out, size_t len)
{
	int (*fn)(int, struct nearsock_conn_stats *) =
		(int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	struct nearsock_conn_stats st;
	memset(&st, 0, sizeof(st));
	int have = fn && fn(fd, &st) == 0;
	snprintf(out, len, "\"preloaded\": %d, \"mode\": %u, \"tx_shm\": %llu, \"tx_tcp\": %llu", have,
		 st.mode, (unsigned long long)st.tx_shm_bytes, (unsigned long long)st.tx_tcp_bytes);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1";
	int port = 0, server = argc > 1 && !strcmp(argv[1], "server"), conns = 1;
	size_t size = 64;
	double seconds = 1;
	int idle_ms = 1000;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--addr"))
			addr = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--size"))
			size = (size_t)atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--idle-ms"))
			idle_ms = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--conns"))
			conns = atoi(argv[i + 1]);
	}
	if (argc < 2 || size == 0 || size > (1 << 20)) {
		fprintf(stderr, "usage: nsk_pingpong server|client --addr A --port P [--size N] "
				"[--seconds S] [--idle-ms MS] [--conns N]\n");
		return 2;
	}
	char *buf = calloc(1, size);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | (server ? AI_PASSIVE : 0)};
	struct addrinfo *ai;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	if (!buf || getaddrinfo(addr, ps, &hints, &ai) != 0) {
		fprintf(stderr, "nsk_pingpong: bad address %s\n", addr);
		return 2;
	}
	int one = 1;
	char st[256];
	if (server) {
		int l = socket(ai->ai_family, SOCK_STREAM, 0);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (l < 0 || bind(l, ai->ai_addr, ai->ai_addrlen) < 0 || listen(l, 16) < 0) {
			perror("nsk_pingpong: listen");
			return 1;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		getsockname(l, (struct sockaddr *)&ss, &sl);
		printf("{\"listening\": %d}\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
		fflush(stdout);
		for (int k = 0; k < conns; k++) {
			int c = accept(l, NULL, NULL);
			if (c < 0)
				return 1;
			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			uint64_t n = 0, idle_wall = 0, idle_cpu = 0;
			for (;;) {
				uint64_t w0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
				if (full(c, buf, size, 0) < 0)
					break;
				uint64_t w = now_ns(CLOCK_MONOTONIC) - w0;
				if (w > idle_wall) {
					idle_wall = w;
					idle_cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
				}
				if (full(c, buf, size, 1) < 0)
					break;
				n++;
			}
			stats(c, st, sizeof(st));
			printf("{\"role\": \"server\", \"messages\": %llu, \"idle_wall_ms\": %.1f, "
			       "\"idle_cpu_ms\": %.2f, \"idle_cpu_pct\": %.2f, %s}\n",
			       (unsigned long long)n, idle_wall / 1e6, idle_cpu / 1e6,
			       idle_wall ? 100.0 * (double)idle_cpu / (double)idle_wall : 0.0, st);
			fflush(stdout);
			close(c);
		}
		freeaddrinfo(ai);
		free(buf);
		return 0;
	}
	int fd = -1;
	for (int tries = 0; tries < 100; tries++) { /* the server may still be starting */
		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
		usleep(100000);
	}
	if (fd < 0) {
		perror("nsk_pingpong: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < 200; i++) /* warm-up: the upgrade happens here */
		if (full(fd, buf, size, 1) < 0 || full(fd, buf, size, 0) < 0)
			return 1;
	size_t cap = 1 << 20, n = 0;
	uint64_t *rtt = malloc(cap * sizeof(*rtt)), sum = 0;
	uint64_t end = now_ns(CLOCK_MONOTONIC) + (uint64_t)(seconds * 1e9);
	while (n < cap) {
		uint64_t t0 = now_ns(CLOCK_MONOTONIC);
		if (full(fd, buf, size, 1) < 0 || full(fd, buf, size, 0) < 0)
			return 1;
		uint64_t t1 = now_ns(CLOCK_MONOTONIC);
		rtt[n++] = t1 - t0;
		sum += t1 - t0;
		if (t1 > end)
			break;
	}
	qsort(rtt, n, sizeof(*rtt), cmp);
	usleep((useconds_t)idle_ms * 1000);
	if (full(fd, buf, size, 1) < 0 || full(fd, buf, size, 0) < 0)
		return 1;
	stats(fd, st, sizeof(st));
	printf("{\"role\": \"client\", \"ok\": 1, \"size\": %zu, \"round_trips\": %zu, "
	       "\"rtt_median_us\": %.2f, \"rtt_p99_us\": %.2f, \"rtt_mean_us\": %.2f, %s}\n",
	       size, n, rtt[n / 2] / 1e3, rtt[n * 99 / 100] / 1e3, (double)sum / (double)n / 1e3, st);
	close(fd);
	freeaddrinfo(ai);
	free(rtt);
	free(buf);
	return 0;
}
