/* SPDX-License-Identifier: MIT */
/* nsk_many — integration helper: opens --conns TCP connections to an echo server one after
 * another, moves --bytes bytes each way --rounds times on each (every byte checked), and
 * closes it. Reports, as one JSON line, how many connections were exact, the mode of each
 * connection when it closed (nearsock_fd_stats, if preloaded), the mode right after the
 * first connect() returned (before any other call could advance the upgrade), and its own
 * descriptors and channel mappings before and after (leak check: connection 0 is a warm-up,
 * the baseline is taken after it). --bind-port fixes the local port (to craft colliding
 * 4-tuples), --hold-ms pauses between connect and the first send. Exit 0 iff all exact. */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own descriptor */
}

static int count_chan_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "memfd:nearsock-chan"))
			n++;
	fclose(f);
	return n;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int get_mode(int fd, struct nearsock_conn_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!stats_fn || stats_fn(fd, st) != 0)
		return -1;
	return (int)st->mode;
}

static int xfer_all(int fd, uint8_t *buf, size_t n, int rd)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = rd ? recv(fd, buf + off, n - off, 0)
		               : send(fd, buf + off, n - off, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE; /* early EOF */
		off += (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1", *bind_addr = NULL;
	int port = 0, conns = 1, rounds = 2, bind_port = 0, hold_ms = 0;
	size_t bytes = 64;
	signal(SIGPIPE, SIG_IGN);
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--addr"))
			addr = v;
		else if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--conns"))
			conns = atoi(v);
		else if (!strcmp(a, "--bytes"))
			bytes = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--rounds"))
			rounds = atoi(v);
		else if (!strcmp(a, "--bind-port"))
			bind_port = atoi(v);
		else if (!strcmp(a, "--bind-addr"))
			bind_addr = v;
		else if (!strcmp(a, "--hold-ms"))
			hold_ms = atoi(v);
		else {
			fprintf(stderr, "nsk_many: unknown option %s\n", a);
			return 2;
		}
	}
	if (!port || conns < 1 || !bytes) {
		fprintf(stderr, "usage: nsk_many --port P [--addr A] [--conns N] [--bytes B] "
		                "[--rounds R] [--bind-port BP] [--bind-addr BA] [--hold-ms H]\n");
		return 2;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *ai, *bai = NULL;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	if (getaddrinfo(addr, ps, &hints, &ai) != 0) {
		fprintf(stderr, "nsk_many: bad address %s\n", addr);
		return 2;
	}
	if (bind_port || bind_addr) {
		char bs[16];
		snprintf(bs, sizeof(bs), "%d", bind_port);
		hints.ai_family = ai->ai_family;
		if (getaddrinfo(bind_addr ? bind_addr
		                          : (ai->ai_family == AF_INET6 ? "::1" : "127.0.0.1"),
		                bs, &hints, &bai) != 0) {
			fprintf(stderr, "nsk_many: bad bind address\n");
			return 2;
		}
	}
	uint8_t *out = malloc(bytes), *in = malloc(bytes);
	int fds_initial = count_fds(), fds_base = -1, maps_open = -1, mode_after_connect = -2;
	int ok = 0, modes[6] = {0};
	uint64_t tx_shm = 0, rx_shm = 0, tx_tcp = 0, rx_tcp = 0, shm_both = 0;
	char first_err[160] = "";
	/* time spent per phase (µs): connect, first round trip, later round trips, close */
	double ph[4] = {0}, tp;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int c = 0; c < conns; c++) {
		int fd = socket(ai->ai_family, SOCK_STREAM, 0);
		int err = 0;
		const char *what = "socket";
		if (fd < 0) {
			err = errno;
			goto bad;
		}
		if (bai) {
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			what = "bind";
			if (bind(fd, bai->ai_addr, bai->ai_addrlen) < 0) {
				err = errno;
				goto bad;
			}
		}
		what = "connect";
		tp = now_us();
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			err = errno;
			goto bad;
		}
		ph[0] += now_us() - tp;
		if (c == 0) {
			struct nearsock_conn_stats st;
			mode_after_connect = get_mode(fd, &st);
		}
		if (hold_ms)
			usleep((useconds_t)hold_ms * 1000);
		for (int r = 0; r < rounds; r++) {
			tp = now_us();
			for (size_t i = 0; i < bytes; i++)
				out[i] = (uint8_t)(c * 131 + r * 7 + i * 13 + (i >> 8));
			what = "send";
			if ((err = -xfer_all(fd, out, bytes, 0)) != 0)
				goto bad;
			what = "recv";
			if ((err = -xfer_all(fd, in, bytes, 1)) != 0)
				goto bad;
			what = "verify";
			if (memcmp(in, out, bytes) != 0) {
				err = EBADMSG;
				goto bad;
			}
			ph[r ? 2 : 1] += now_us() - tp;
		}
		struct nearsock_conn_stats st;
		int m = get_mode(fd, &st);
		modes[m + 1]++;
		tx_shm += st.tx_shm_bytes;
		rx_shm += st.rx_shm_bytes;
		tx_tcp += st.tx_tcp_bytes;
		rx_tcp += st.rx_tcp_bytes;
		if (st.tx_shm_bytes && st.rx_shm_bytes)
			shm_both++;
		if (c == 1 || conns == 1)
			maps_open = count_chan_maps();
		what = "close";
		tp = now_us();
		int cr = close(fd);
		ph[3] += now_us() - tp;
		if (cr < 0) {
			err = errno;
			fd = -1;
			goto bad;
		}
		ok++;
		if (c == 0)
			fds_base = count_fds();
		continue;
	bad:
		if (!first_err[0])
			snprintf(first_err, sizeof(first_err), "conn %d: %s: %s", c, what,
			         strerror(err));
		if (fd >= 0)
			close(fd);
		if (c == 0)
			fds_base = count_fds();
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("{\"conns\": %d, \"ok\": %d, \"first_error\": \"%s\", \"mode_after_connect\": %d, "
	       "\"untracked\": %d, \"mode_tcp\": %d, \"mode_offered\": %d, \"mode_shm\": %d, "
	       "\"mode_plain\": %d, \"mode_broken\": %d, \"shm_both_ways\": %llu, "
	       "\"tx_shm\": %llu, \"rx_shm\": %llu, \"tx_tcp\": %llu, \"rx_tcp\": %llu, "
	       "\"fds_initial\": %d, \"fds_base\": %d, \"fds_after\": %d, "
	       "\"chan_maps_open\": %d, \"chan_maps_after\": %d, \"seconds\": %.3f, "
	       "\"avg_us_connect\": %.0f, \"avg_us_round1\": %.0f, \"avg_us_later_rounds\": %.0f, "
	       "\"avg_us_close\": %.0f}\n",
	       conns, ok, first_err, mode_after_connect, modes[0], modes[1], modes[2], modes[3],
	       modes[4], modes[5], (unsigned long long)shm_both, (unsigned long long)tx_shm,
	       (unsigned long long)rx_shm, (unsigned long long)tx_tcp, (unsigned long long)rx_tcp,
	       fds_initial, fds_base, count_fds(), maps_open, count_chan_maps(), secs,
	       ph[0] / conns, ph[1] / conns, rounds > 1 ? ph[2] / conns / (rounds - 1) : 0.0,
	       ph[3] / conns);
	freeaddrinfo(ai);
	if (bai)
		freeaddrinfo(bai);
	free(out);
	free(in);
	return ok == conns ? 0 : 1;
}
