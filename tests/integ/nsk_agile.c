/* SPDX-License-Identifier: MIT */
/* nsk_agile — live switching under load (the chaos test's workhorse).
 *
 * One process forks a server; the client opens --conns connections to it. On every
 * connection both sides stream --bytes bytes of a per-(seed, connection, direction)
 * pseudo-random sequence at the same time, in random chunk sizes, and check every byte they
 * receive against the sequence, then that the stream ends exactly there (EOF, not one byte
 * more). Meanwhile a switcher thread in each process calls nearsock_evacuate() or
 * nearsock_attach() on a random connection every --switch-ms (randomised), so connections
 * go back and forth between the rings and TCP while data flows both ways. With
 * --kill-server-ms the server is killed with SIGKILL after that long: the client must then
 * see every connection end (error or EOF) within --max-hang-ms, with what it received before
 * still exact.
 *
 * Styles: --style blocking (a sender and a receiver thread per connection and side) or
 * --style epoll (the server runs one non-blocking epoll loop for all its connections).
 *
 * --measure-switch N instead measures what a switch costs: one 64-byte ping-pong
 * connection, N cycles of evacuate and attach (see measure()).
 *
 * Prints one JSON line per side; exit 0 when both are exact (and, with --need-switches, the
 * switches and both paths were really used), 1 otherwise, 2 for bad usage. Runs without the
 * library too (no switches then). */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"
#include "stream.h"

#define MAXC 256
#define CHUNK (64 << 10)

static int nconns = 8;
static uint64_t nbytes = 64ull << 20;
static int switch_ms = 5;
static uint64_t seed = 1;
static int epoll_style;
static int kill_ms;
static int max_hang_ms = 2000;
static int need_switches;
static int measure_switch; /* --measure-switch N: cost of a switch instead of the streams */

static int (*p_evacuate)(int);
static int (*p_attach)(int);
static int (*p_stats)(int, struct nearsock_conn_stats *);
static int (*p_path)(int);

static uint64_t key_of(int conn, int dir)
{
	return (seed * 0x100000001b3ull) ^ ((uint64_t)conn << 20) ^ ((uint64_t)dir << 40) ^ 0x5bd1e995u;
}

/* random chunk size, 1 byte to 64 KiB, skewed towards small */
static size_t chunk_len(unsigned *r)
{
	unsigned x = rand_r(r);
	switch (x % 4) {
	case 0:
		return 1 + x % 64;
	case 1:
		return 1 + x % 1500;
	case 2:
		return 1 + x % 16384;
	default:
		return 1 + x % CHUNK;
	}
}

struct conn {
	int fd;
	int idx;
	int role; /* 0 client, 1 server */
	/* results */
	uint64_t sent, rcvd;
	long bad_at;      /* receive offset of the first wrong byte, -1 none */
	int extra;        /* bytes after the end of the stream */
	int rx_err, tx_err; /* errno that ended a direction early (0: none) */
	uint64_t end_ns;  /* when the receive side ended */
	/* epoll style state */
	unsigned rnd;
	uint8_t *txbuf;
	size_t txlen, txoff;
	int tx_done, rx_done;
};

static struct conn conns[MAXC];
static atomic_int stop_switcher;
static atomic_ulong switch_calls;

static void *sender(void *arg)
{
	struct conn *c = arg;
	unsigned r = (unsigned)(seed * 31 + (uint64_t)c->idx * 7 + (uint64_t)c->role);
	uint8_t *buf = malloc(CHUNK);
	uint64_t key = key_of(c->idx, c->role);
	while (c->sent < nbytes) {
		size_t n = chunk_len(&r);
		if (n > nbytes - c->sent)
			n = (size_t)(nbytes - c->sent);
		fill(buf, key, c->sent, n);
		size_t off = 0;
		while (off < n) {
			ssize_t w = send(c->fd, buf + off, n - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				c->tx_err = w < 0 ? errno : EIO;
				free(buf);
				return NULL;
			}
			off += (size_t)w;
			c->sent += (uint64_t)w;
		}
	}
	shutdown(c->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static void *receiver(void *arg)
{
	struct conn *c = arg;
	unsigned r = (unsigned)(seed * 17 + (uint64_t)c->idx * 5 + (uint64_t)c->role);
	uint8_t *buf = malloc(CHUNK);
	uint64_t key = key_of(c->idx, !c->role);
	for (;;) {
		size_t want = chunk_len(&r);
		ssize_t n = recv(c->fd, buf, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			c->rx_err = errno;
			break;
		}
		if (n == 0)
			break;
		if (c->rcvd + (uint64_t)n > nbytes) {
			c->extra += (int)(c->rcvd + (uint64_t)n - nbytes);
			n = (ssize_t)(nbytes - c->rcvd);
		}
		long bad = check(buf, key, c->rcvd, (size_t)n);
		if (bad >= 0 && c->bad_at < 0)
			c->bad_at = (long)c->rcvd + bad;
		c->rcvd += (uint64_t)n;
		if (c->bad_at >= 0)
			break;
	}
	c->end_ns = now_ns();
	free(buf);
	return NULL;
}

/* ---- epoll style (server side) ---- */

static void ep_tx(struct conn *c)
{
	uint64_t key = key_of(c->idx, c->role);
	while (!c->tx_done) {
		if (c->txoff == c->txlen) {
			if (c->sent == nbytes) {
				shutdown(c->fd, SHUT_WR);
				c->tx_done = 1;
				return;
			}
			size_t n = chunk_len(&c->rnd);
			if (n > nbytes - c->sent)
				n = (size_t)(nbytes - c->sent);
			fill(c->txbuf, key, c->sent, n);
			c->txlen = n;
			c->txoff = 0;
		}
		ssize_t w = send(c->fd, c->txbuf + c->txoff, c->txlen - c->txoff, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (w <= 0) {
			c->tx_err = w < 0 ? errno : EIO;
			c->tx_done = 1;
			return;
		}
		c->txoff += (size_t)w;
		c->sent += (uint64_t)w;
	}
}

static void ep_rx(struct conn *c, uint8_t *buf)
{
	uint64_t key = key_of(c->idx, !c->role);
	while (!c->rx_done) {
		ssize_t n = recv(c->fd, buf, chunk_len(&c->rnd), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			if (n < 0)
				c->rx_err = errno;
			c->rx_done = 1;
			c->end_ns = now_ns();
			return;
		}
		if (c->rcvd + (uint64_t)n > nbytes) {
			c->extra += (int)(c->rcvd + (uint64_t)n - nbytes);
			n = (ssize_t)(nbytes - c->rcvd);
		}
		long bad = check(buf, key, c->rcvd, (size_t)n);
		if (bad >= 0 && c->bad_at < 0)
			c->bad_at = (long)c->rcvd + bad;
		c->rcvd += (uint64_t)n;
		if (c->bad_at >= 0) {
			c->rx_done = 1;
			return;
		}
	}
}

static void epoll_loop(int n)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint8_t *buf = malloc(CHUNK);
	for (int i = 0; i < n; i++) {
		struct conn *c = &conns[i];
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		c->txbuf = malloc(CHUNK);
		c->rnd = (unsigned)(seed * 13 + (uint64_t)i);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	int left = n;
	uint64_t idle_since = now_ns();
	while (left > 0) {
		struct epoll_event evs[64];
		int k = epoll_wait(ep, evs, 64, 1000);
		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0 && now_ns() - idle_since > 20000000000ull) {
			fprintf(stderr, "server: epoll loop idle for 20 s with %d connections open\n", left);
			break;
		}
		if (k > 0)
			idle_since = now_ns();
		for (int j = 0; j < k; j++) {
			struct conn *c = &conns[evs[j].data.u32];
			if (evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				ep_rx(c, buf);
			if (evs[j].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				ep_tx(c);
			if (c->tx_done && c->rx_done) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				left--;
			} else if (c->tx_done) {
				struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)c->idx};
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			}
		}
	}
	for (int i = 0; i < n; i++)
		free(conns[i].txbuf);
	free(buf);
	close(ep);
}

static void *switcher(void *arg)
{
	int n = *(int *)arg;
	unsigned r = (unsigned)(seed * 101 + (uint64_t)getpid());
	int *tcp = calloc((size_t)n, sizeof(int));
	while (!atomic_load(&stop_switcher)) {
		int us = switch_ms * 1000;
		usleep((useconds_t)(us / 2 + (int)((unsigned)rand_r(&r) % (unsigned)(us + 1))));
		int i = rand_r(&r) % n;
		if (!p_evacuate)
			continue;
		tcp[i] = !tcp[i];
		(tcp[i] ? p_evacuate : p_attach)(conns[i].fd);
		atomic_fetch_add(&switch_calls, 1);
	}
	for (int i = 0; i < n; i++) /* leave every connection free to use the rings */
		if (tcp[i])
			p_attach(conns[i].fd);
	free(tcp);
	return NULL;
}

static pid_t victim;
static uint64_t killed_at;

/* The server is killed mid-transfer (SIGKILL: no chance to clean up anything). */
static void *kill_server(void *arg)
{
	(void)arg;
	usleep((useconds_t)kill_ms * 1000);
	killed_at = now_ns();
	kill(victim, SIGKILL);
	return NULL;
}

/* Run one side over conns[0..n): returns when all its streams ended. */
static void run_side(int n, int role)
{
	pthread_t sw;
	atomic_store(&stop_switcher, 0);
	int nn = n;
	if (switch_ms > 0)
		pthread_create(&sw, NULL, switcher, &nn);
	if (role == 1 && epoll_style) {
		epoll_loop(n);
	} else {
		pthread_t th[2 * MAXC];
		for (int i = 0; i < n; i++) {
			pthread_create(&th[2 * i], NULL, sender, &conns[i]);
			pthread_create(&th[2 * i + 1], NULL, receiver, &conns[i]);
		}
		for (int i = 0; i < 2 * n; i++)
			pthread_join(th[i], NULL);
	}
	atomic_store(&stop_switcher, 1);
	if (switch_ms > 0)
		pthread_join(sw, NULL);
}

/* One JSON line for this side; returns 1 if exact. */
static int report(int n, int role, uint64_t t0, uint64_t kill_ns)
{
	uint64_t rx = 0, tx = 0, sw = 0, shm_tx = 0, tcp_tx = 0, hang_ms = 0;
	int ok = 1, errs = 0, extra = 0, on_ring = 0;
	long bad = -1;
	for (int i = 0; i < n; i++) {
		struct conn *c = &conns[i];
		rx += c->rcvd;
		tx += c->sent;
		extra += c->extra;
		if (c->bad_at >= 0) {
			ok = 0;
			if (bad < 0)
				bad = c->bad_at;
		}
		if (c->extra)
			ok = 0;
		if (c->rx_err || c->tx_err)
			errs++;
		if (!kill_ns && (c->rcvd != nbytes || c->sent != nbytes || c->rx_err || c->tx_err))
			ok = 0;
		if (kill_ns && c->end_ns > kill_ns && (c->end_ns - kill_ns) / 1000000 > hang_ms)
			hang_ms = (c->end_ns - kill_ns) / 1000000;
		struct nearsock_conn_stats st;
		if (p_stats && p_stats(c->fd, &st) == 0) {
			sw += st.switches;
			shm_tx += st.tx_shm_bytes;
			tcp_tx += st.tx_tcp_bytes;
			on_ring += p_path && p_path(c->fd) == (NEARSOCK_TX_RING | NEARSOCK_RX_RING);
		}
	}
	if (kill_ns && hang_ms > (uint64_t)max_hang_ms)
		ok = 0;
	double secs = (double)(now_ns() - t0) / 1e9;
	printf("{\"role\": \"%s\", \"ok\": %d, \"conns\": %d, \"tx_bytes\": %llu, \"rx_bytes\": %llu, "
	       "\"bad_at\": %ld, \"extra\": %d, \"errors\": %d, \"switches\": %llu, "
	       "\"switch_calls\": %lu, \"tx_shm_bytes\": %llu, \"tx_tcp_bytes\": %llu, "
	       "\"on_ring_at_end\": %d, \"hang_ms\": %llu, \"secs\": %.3f}\n",
	       role ? "server" : "client", ok, n, (unsigned long long)tx, (unsigned long long)rx,
	       bad, extra, errs, (unsigned long long)sw, atomic_load(&switch_calls),
	       (unsigned long long)shm_tx, (unsigned long long)tcp_tx, on_ring,
	       (unsigned long long)hang_ms, secs);
	fflush(stdout);
	if (need_switches && !kill_ns && (sw == 0 || shm_tx == 0 || tcp_tx == 0)) {
		printf("{\"role\": \"%s\", \"error\": \"switching not exercised (switches %llu, "
		       "shm %llu, tcp %llu)\"}\n",
		       role ? "server" : "client", (unsigned long long)sw,
		       (unsigned long long)shm_tx, (unsigned long long)tcp_tx);
		ok = 0;
	}
	return ok;
}

/* ---- --measure-switch: what a switch costs on an idle ping-pong connection ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return n ? v[n / 2] : 0;
}

static int exact_io(int fd, char *b, size_t n, int tx)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = tx ? send(fd, b + off, n - off, MSG_NOSIGNAL) : recv(fd, b + off, n - off, 0);
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

static void echo_server(int fd)
{
	char b[64];
	while (exact_io(fd, b, sizeof(b), 0) == 0 && exact_io(fd, b, sizeof(b), 1) == 0)
		;
}

static uint64_t rtt(int fd)
{
	char b[64] = {1};
	uint64_t t0 = now_ns();
	if (exact_io(fd, b, sizeof(b), 1) < 0 || exact_io(fd, b, sizeof(b), 0) < 0)
		return UINT64_MAX;
	return now_ns() - t0;
}

/* Client side: N cycles of (ring round trips, evacuate + one round trip, TCP round trips,
 * attach + one round trip). A switch's cost is the time from the call to the end of the
 * first round trip on the new path (both directions switched: the peer follows on its next
 * call), minus a round trip on that path. */
static int measure(int fd, int n)
{
	enum { RT = 30 };
	uint64_t *ring = calloc((size_t)n * RT, 8), *tcp = calloc((size_t)n * RT, 8);
	uint64_t *ev = calloc((size_t)n, 8), *at = calloc((size_t)n, 8);
	int nr = 0, nt = 0, bad = 0;
	for (int i = 0; i < RT * 4; i++)
		rtt(fd); /* warm up: upgrade, caches */
	for (int c = 0; c < n; c++) {
		for (int i = 0; i < RT; i++)
			ring[nr++] = rtt(fd);
		uint64_t t0 = now_ns();
		p_evacuate(fd);
		rtt(fd);
		ev[c] = now_ns() - t0;
		bad += p_path(fd) != 0;
		for (int i = 0; i < RT; i++)
			tcp[nt++] = rtt(fd);
		t0 = now_ns();
		p_attach(fd);
		rtt(fd);
		at[c] = now_ns() - t0;
		bad += p_path(fd) != (NEARSOCK_TX_RING | NEARSOCK_RX_RING);
	}
	uint64_t mr = median(ring, nr), mt = median(tcp, nt), me = median(ev, n), ma = median(at, n);
	struct nearsock_conn_stats st;
	p_stats(fd, &st);
	printf("{\"role\": \"switch-cost\", \"cycles\": %d, \"rtt_ring_us\": %.2f, \"rtt_tcp_us\": %.2f, "
	       "\"evacuate_rtt_us\": %.2f, \"attach_rtt_us\": %.2f, \"evacuate_cost_us\": %.2f, "
	       "\"attach_cost_us\": %.2f, \"switches\": %u, \"not_switched\": %d}\n",
	       n, mr / 1e3, mt / 1e3, me / 1e3, ma / 1e3, ((double)me - (double)mt) / 1e3,
	       ((double)ma - (double)mr) / 1e3, st.switches, bad);
	free(ring);
	free(tcp);
	free(ev);
	free(at);
	return bad == 0;
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);
	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'm' || *end == 'M')
		v <<= 20;
	else if (*end == 'g' || *end == 'G')
		v <<= 30;
	return v;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--need-switches")) {
			need_switches = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "usage: nsk_agile [--conns N] [--bytes B] [--switch-ms M] "
					"[--seed S] [--style blocking|epoll] [--kill-server-ms K] "
					"[--max-hang-ms H] [--need-switches]\n");
			return 2;
		}
		i++;
		if (!strcmp(a, "--conns"))
			nconns = atoi(v);
		else if (!strcmp(a, "--bytes"))
			nbytes = parse_size(v);
		else if (!strcmp(a, "--switch-ms"))
			switch_ms = atoi(v);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--style"))
			epoll_style = !strcmp(v, "epoll");
		else if (!strcmp(a, "--kill-server-ms"))
			kill_ms = atoi(v);
		else if (!strcmp(a, "--max-hang-ms"))
			max_hang_ms = atoi(v);
		else if (!strcmp(a, "--measure-switch"))
			measure_switch = atoi(v);
		else {
			fprintf(stderr, "nsk_agile: unknown option %s\n", a);
			return 2;
		}
	}
	if (measure_switch)
		nconns = 1;
	if (nconns < 1 || nconns > MAXC) {
		fprintf(stderr, "nsk_agile: --conns must be 1..%d\n", MAXC);
		return 2;
	}
	p_evacuate = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_evacuate");
	p_attach = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_attach");
	p_stats = (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	p_path = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_fd_path");
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAXC; i++) {
		conns[i].idx = i;
		conns[i].bad_at = -1;
	}

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 512) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("nsk_agile: listen");
		return 1;
	}
	int rp[2];
	if (pipe(rp) < 0)
		return 1;
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	if (child == 0) {
		close(rp[0]);
		for (int i = 0; i < nconns; i++) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				perror("nsk_agile: accept");
				_exit(1);
			}
			int idx = -1;
			/* the client announces the connection's index in its first 4 bytes */
			if (recv(fd, &idx, sizeof(idx), MSG_WAITALL) != sizeof(idx) || idx < 0 ||
			    idx >= nconns || conns[idx].fd) {
				fprintf(stderr, "nsk_agile: bad connection index\n");
				_exit(1);
			}
			conns[idx].fd = fd;
			conns[idx].role = 1;
		}
		close(lfd);
		if (measure_switch) {
			echo_server(conns[0].fd);
			_exit(0);
		}
		uint64_t t0 = now_ns();
		run_side(nconns, 1);
		int ok = report(nconns, 1, t0, 0);
		char r = ok ? 'y' : 'n';
		(void)!write(rp[1], &r, 1);
		_exit(ok ? 0 : 1);
	}
	close(rp[1]);
	close(lfd);
	for (int i = 0; i < nconns; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("nsk_agile: connect");
			kill(child, SIGKILL);
			return 1;
		}
		if (send(fd, &i, sizeof(i), MSG_NOSIGNAL) != sizeof(i)) {
			perror("nsk_agile: send");
			kill(child, SIGKILL);
			return 1;
		}
		conns[i].fd = fd;
		conns[i].role = 0;
	}
	if (measure_switch) {
		if (!p_evacuate || !p_path || !p_stats) {
			fprintf(stderr, "nsk_agile: --measure-switch needs the library preloaded\n");
			kill(child, SIGKILL);
			return 2;
		}
		int ok = measure(conns[0].fd, measure_switch);
		close(conns[0].fd);
		waitpid(child, NULL, 0);
		return ok ? 0 : 1;
	}
	uint64_t t0 = now_ns(), kill_ns = 0;
	pthread_t killer;
	if (kill_ms > 0) {
		victim = child;
		pthread_create(&killer, NULL, kill_server, NULL);
	}
	run_side(nconns, 0);
	if (kill_ms > 0) {
		pthread_join(killer, NULL);
		kill_ns = killed_at;
	}
	int status = 0;
	waitpid(child, &status, 0);
	int ok = report(nconns, 0, t0, kill_ns);
	if (kill_ms > 0)
		return ok ? 0 : 1;
	char r = 'n';
	if (read(rp[0], &r, 1) != 1)
		r = 'n';
	int srv_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && r == 'y';
	return ok && srv_ok ? 0 : 1;
}
