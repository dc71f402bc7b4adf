/* SPDX-License-Identifier: MIT */
/* nsk_echo — integration test program: an echo server and a client that streams a
 * pseudo-random byte sequence through it and checks every echoed byte. Four styles:
 * blocking (client sends and receives in two threads), poll, select and epoll (single
 * non-blocking event loop). Prints one JSON line with the outcome and, when libnearsock is
 * preloaded, the connection's path counters. Exit 0 only if every byte came back exactly.
 * --rate-mbs R (blocking style) paces the client's sending to R MB/s: a transfer that lasts
 * long enough for something to happen to the connection meanwhile. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

enum style { BLOCKING, POLL, SELECT, EPOLL };
static const char *style_names[] = {"blocking", "poll", "select", "epoll"};

struct opts {
	int server;
	const char *addr;
	int port;
	enum style style;
	uint64_t bytes;
	uint64_t seed;
	size_t chunk;
	int conns;
	int linger_ms; /* client: pause between connect and first send */
	double rate_mbs; /* client, blocking style: send at most this many MB/s (0: no limit) */
};

/* Deterministic stream: byte i of the sequence for seed s. Generated in 8-byte words. */
struct gen {
	uint64_t state;
	uint64_t word;
	int left;
};
static void gen_init(struct gen *g, uint64_t seed)
{
	g->state = seed * 0x9e3779b97f4a7c15ull + 1;
	g->left = 0;
}
static uint8_t gen_next(struct gen *g)
{
	if (!g->left) {
		uint64_t x = g->state;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		g->state = x;
		g->word = x;
		g->left = 8;
	}
	uint8_t b = (uint8_t)g->word;
	g->word >>= 8;
	g->left--;
	return b;
}
static void gen_fill(struct gen *g, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = gen_next(g);
}

static int (*stats_fn)(int, struct nearsock_conn_stats *);

static void print_stats(const char *role, int fd, const char *extra)
{
	struct nearsock_conn_stats st;
	memset(&st, 0, sizeof(st));
	int have = stats_fn && stats_fn(fd, &st) == 0;
	printf("{\"role\": \"%s\", %s\"preloaded\": %d, \"mode\": %u, \"tx_shm\": %llu, "
	       "\"rx_shm\": %llu, \"tx_tcp\": %llu, \"rx_tcp\": %llu, \"wakeups\": %llu}\n",
	       role, extra, have, st.mode, (unsigned long long)st.tx_shm_bytes,
	       (unsigned long long)st.rx_shm_bytes, (unsigned long long)st.tx_tcp_bytes,
	       (unsigned long long)st.rx_tcp_bytes, (unsigned long long)st.wakeups_sent);
	fflush(stdout);
}

static void die(const char *what)
{
	fprintf(stderr, "nsk_echo: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl");
}

/* Wait for @events on @fd with the chosen multiplexer. */
static void wait_fd(enum style st, int ep, int fd, int events)
{
	if (st == POLL) {
		struct pollfd p = {.fd = fd, .events = (short)events};
		if (poll(&p, 1, 10000) < 0 && errno != EINTR)
			die("poll");
	} else if (st == SELECT) {
		fd_set r, w;
		FD_ZERO(&r);
		FD_ZERO(&w);
		if (events & POLLIN)
			FD_SET(fd, &r);
		if (events & POLLOUT)
			FD_SET(fd, &w);
		struct timeval tv = {10, 0};
		if (select(fd + 1, &r, &w, NULL, &tv) < 0 && errno != EINTR)
			die("select");
	} else if (st == EPOLL) {
		struct epoll_event ev = {.events = 0, .data.fd = fd};
		if (events & POLLIN)
			ev.events |= EPOLLIN;
		if (events & POLLOUT)
			ev.events |= EPOLLOUT;
		if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
			die("epoll_ctl");
		struct epoll_event out[4];
		if (epoll_wait(ep, out, 4, 10000) < 0 && errno != EINTR)
			die("epoll_wait");
	}
}

/* ---------------------------------------------------------------- server -------------- */

static void serve_conn(struct opts *o, int c)
{
	static uint8_t buf[256 * 1024];
	uint64_t total = 0;
	int ep = -1;
	if (o->style != BLOCKING) {
		set_nonblock(c);
		if (o->style == EPOLL) {
			ep = epoll_create1(0);
			struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
			if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
				die("epoll");
		}
	}
	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			wait_fd(o->style, ep, c, POLLIN);
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "nsk_echo server: read: %s\n", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = write(c, buf + off, (size_t)(n - off));
			if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
				wait_fd(o->style, ep, c, POLLOUT);
				continue;
			}
			if (w < 0) {
				fprintf(stderr, "nsk_echo server: write: %s\n", strerror(errno));
				goto out;
			}
			off += w;
		}
	}
out:;
	char extra[64];
	snprintf(extra, sizeof(extra), "\"bytes\": %llu, ", (unsigned long long)total);
	print_stats("server", c, extra);
	if (ep >= 0)
		close(ep);
	close(c);
}

static int run_server(struct opts *o)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
	struct addrinfo *ai;
	char port[16];
	snprintf(port, sizeof(port), "%d", o->port);
	if (getaddrinfo(o->addr, port, &hints, &ai) != 0) {
		fprintf(stderr, "nsk_echo: bad address %s\n", o->addr);
		return 2;
	}
	int l = socket(ai->ai_family, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, ai->ai_addr, ai->ai_addrlen) < 0 || listen(l, 128) < 0)
		die("listen");
	freeaddrinfo(ai);
	if (o->port == 0) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		getsockname(l, (struct sockaddr *)&ss, &sl);
		o->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	printf("{\"listening\": %d}\n", o->port);
	fflush(stdout);
	for (int i = 0; o->conns <= 0 || i < o->conns; i++) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		serve_conn(o, c);
	}
	close(l);
	return 0;
}

/* ---------------------------------------------------------------- client -------------- */

struct xfer {
	struct opts *o;
	int fd;
	uint64_t sent, recvd;
	int64_t mismatch;
	struct gen tx, rx;
	int err;
};

static size_t next_chunk(struct xfer *x, uint64_t *rnd)
{
	*rnd ^= *rnd << 13;
	*rnd ^= *rnd >> 7;
	*rnd ^= *rnd << 17;
	return 1 + (size_t)(*rnd % x->o->chunk);
}

static int check(struct xfer *x, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] != gen_next(&x->rx)) {
			x->mismatch = (int64_t)(x->recvd + i);
			return -1;
		}
	}
	x->recvd += n;
	return 0;
}

/* pace - with --rate-mbs, sleep until @sent bytes are due since @t0. */
static void pace(const struct opts *o, const struct timespec *t0, uint64_t sent)
{
	if (o->rate_mbs <= 0)
		return;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double el = (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
	double due = (double)sent / (o->rate_mbs * 1e6);
	if (due > el)
		usleep((useconds_t)((due - el) * 1e6));
}

static void *sender(void *arg)
{
	struct xfer *x = arg;
	uint8_t *buf = malloc(x->o->chunk);
	uint64_t rnd = x->o->seed + 7;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (x->sent < x->o->bytes) {
		pace(x->o, &t0, x->sent);
		size_t n = next_chunk(x, &rnd);
		if (n > x->o->bytes - x->sent)
			n = (size_t)(x->o->bytes - x->sent);
		gen_fill(&x->tx, buf, n);
		size_t off = 0;
		while (off < n) {
			ssize_t w = send(x->fd, buf + off, n - off, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				x->err = errno;
				free(buf);
				return NULL;
			}
			off += (size_t)w;
		}
		x->sent += n;
	}
	shutdown(x->fd, SHUT_WR);
	free(buf);
	return NULL;
}

static void receiver_blocking(struct xfer *x)
{
	uint8_t *buf = malloc(256 * 1024);
	for (;;) {
		ssize_t n = recv(x->fd, buf, 256 * 1024, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			x->err = errno;
			break;
		}
		if (n == 0 || check(x, buf, (size_t)n) < 0)
			break;
	}
	free(buf);
}

static void loop_nonblocking(struct xfer *x)
{
	struct opts *o = x->o;
	int ep = -1;
	set_nonblock(x->fd);
	if (o->style == EPOLL) {
		ep = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = x->fd};
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &ev) < 0)
			die("epoll");
	}
	uint8_t *out = malloc(o->chunk), *in = malloc(256 * 1024);
	size_t outlen = 0, outoff = 0;
	uint64_t rnd = o->seed + 7;
	int wr_done = 0;
	for (;;) {
		int progress = 0;
		if (!wr_done) {
			if (outoff == outlen && x->sent < o->bytes) {
				size_t n = next_chunk(x, &rnd);
				if (n > o->bytes - x->sent)
					n = (size_t)(o->bytes - x->sent);
				gen_fill(&x->tx, out, n);
				outlen = n;
				outoff = 0;
				x->sent += n;
			}
			if (outoff < outlen) {
				ssize_t w = send(x->fd, out + outoff, outlen - outoff, MSG_NOSIGNAL);
				if (w > 0) {
					outoff += (size_t)w;
					progress = 1;
				} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
					x->err = errno;
					break;
				}
			}
			if (outoff == outlen && x->sent == o->bytes) {
				shutdown(x->fd, SHUT_WR);
				wr_done = 1;
			}
		}
		ssize_t n = recv(x->fd, in, 256 * 1024, 0);
		if (n > 0) {
			if (check(x, in, (size_t)n) < 0)
				break;
			progress = 1;
		} else if (n == 0) {
			break;
		} else if (errno != EAGAIN && errno != EINTR) {
			x->err = errno;
			break;
		}
		if (!progress)
			wait_fd(o->style, ep, x->fd, POLLIN | (wr_done ? 0 : POLLOUT));
	}
	free(out);
	free(in);
	if (ep >= 0)
		close(ep);
}

static int run_client(struct opts *o)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST};
	struct addrinfo *ai;
	char port[16];
	snprintf(port, sizeof(port), "%d", o->port);
	if (getaddrinfo(o->addr, port, &hints, &ai) != 0) {
		fprintf(stderr, "nsk_echo: bad address %s\n", o->addr);
		return 2;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	freeaddrinfo(ai);
	if (o->linger_ms)
		usleep((useconds_t)o->linger_ms * 1000);
	struct xfer x = {.o = o, .fd = fd, .mismatch = -1};
	gen_init(&x.tx, o->seed);
	gen_init(&x.rx, o->seed);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (o->style == BLOCKING) {
		pthread_t th;
		pthread_create(&th, NULL, sender, &x);
		receiver_blocking(&x);
		pthread_join(th, NULL);
	} else {
		loop_nonblocking(&x);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	int ok = x.err == 0 && x.mismatch < 0 && x.recvd == o->bytes;
	char extra[256];
	snprintf(extra, sizeof(extra),
		 "\"ok\": %d, \"style\": \"%s\", \"bytes\": %llu, \"echoed\": %llu, "
		 "\"mismatch_at\": %lld, \"error\": \"%s\", \"seconds\": %.3f, \"gbit_s\": %.2f, ",
		 ok, style_names[o->style], (unsigned long long)o->bytes,
		 (unsigned long long)x.recvd, (long long)x.mismatch, x.err ? strerror(x.err) : "",
		 secs, secs > 0 ? (double)x.recvd * 8 / secs / 1e9 : 0.0);
	print_stats("client", fd, extra);
	close(fd);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct opts o = {.addr = "127.0.0.1", .bytes = 1 << 20, .seed = 1, .chunk = 65536,
			 .conns = 1};
	signal(SIGPIPE, SIG_IGN);
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	if (argc < 2) {
		fprintf(stderr, "usage: nsk_echo server|client [--addr A] [--port P] "
				"[--style blocking|poll|select|epoll] [--bytes N] [--seed S] "
				"[--chunk C] [--conns N] [--linger-ms M] [--rate-mbs R]\n");
		return 2;
	}
	o.server = !strcmp(argv[1], "server");
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			break;
		if (!strcmp(a, "--addr"))
			o.addr = v;
		else if (!strcmp(a, "--port"))
			o.port = atoi(v);
		else if (!strcmp(a, "--bytes"))
			o.bytes = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--seed"))
			o.seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--chunk"))
			o.chunk = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--conns"))
			o.conns = atoi(v);
		else if (!strcmp(a, "--linger-ms"))
			o.linger_ms = atoi(v);
		else if (!strcmp(a, "--rate-mbs"))
			o.rate_mbs = atof(v);
		else if (!strcmp(a, "--style")) {
			for (int s = 0; s < 4; s++)
				if (!strcmp(v, style_names[s]))
					o.style = (enum style)s;
		} else {
			fprintf(stderr, "nsk_echo: unknown option %s\n", a);
			return 2;
		}
		i++;
	}
	if (o.chunk == 0)
		o.chunk = 1;
	if (o.rate_mbs > 0 && o.style != BLOCKING) {
		fprintf(stderr, "nsk_echo: --rate-mbs needs --style blocking\n");
		return 2;
	}
	return o.server ? run_server(&o) : run_client(&o);
}
