/* SPDX-License-Identifier: MIT */
/* nsk_ringsize.c — many connections, a few busy: the workload of dynamic ring sizing.
 *
 *   nsk_ringsize server [--port P]
 *       echoes every connection (a thread each, blocking calls) until EOF.
 *   nsk_ringsize client --port P [--conns N] [--busy B] [--seconds S] [--linger L] [--chunk C]
 *       opens N connections; all exchange six small messages (enough for the lazy upgrade both ways); the
 *       first B then stream checked pseudo-random data for S seconds (a writer and a reader
 *       thread each, every echoed byte compared), the others sit in blocking reads with a
 *       100 ms timeout. Then every connection idles the same way for L seconds, and all close.
 *
 * The client prints one JSON line per connection ({"conn", "port", "busy"}), then
 * {"phase": "busy", ...} when the streams start, {"phase": "linger", "bytes", "mb_s"} when
 * they end and {"ok": 1|0, ...} at the end, so that a script can look at `nearsock status`
 * in each phase (ring capacities per connection). Exit 0 only if every byte came back exact. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "stream.h"

static void die(const char *what)
{
	fprintf(stderr, "nsk_ringsize: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int send_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---------------------------------------------------------------- server ------------- */

static void *echo(void *arg)
{
	int fd = (int)(intptr_t)arg;
	size_t cap = 256 << 10;
	char *b = malloc(cap);
	for (;;) {
		ssize_t n = recv(fd, b, cap, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || send_all(fd, b, (size_t)n) < 0)
			break;
	}
	free(b);
	close(fd);
	return NULL;
}

static _Noreturn void server(int port)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 256) < 0)
		die("listen");
	socklen_t al = sizeof(a);
	getsockname(l, (struct sockaddr *)&a, &al);
	printf("{\"listening\": %d}\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		pthread_t t;
		if (pthread_create(&t, NULL, echo, (void *)(intptr_t)fd) != 0)
			die("pthread_create");
		pthread_detach(t);
	}
}

/* ---------------------------------------------------------------- client ------------- */

struct conn {
	int fd, busy;
	uint64_t key;
	uint64_t sent, got;
	int done;  /* the writer sent its last byte (atomic) */
	int rdone; /* the reader got the echo of every byte, or failed (atomic) */
	long bad;     /* offset of the first wrong byte, or -1 */
	int err;
};

static atomic_int streaming = 1, lingering = 1;
static size_t chunk = 64 << 10;

/* Blocking reads with a 100 ms timeout until @flag clears: the library's sleeps in the
 * meantime are where an idle connection's rings are looked at. */
static void idle_reads(struct conn *c, atomic_int *flag)
{
	char b[256];
	while (atomic_load(flag)) {
		ssize_t n = recv(c->fd, b, sizeof(b), 0);
		if (n > 0) {
			c->err = EPROTO; /* nothing is owed to an idle connection */
			return;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			c->err = n == 0 ? EPIPE : errno;
			return;
		}
	}
}

static void *reader(void *arg)
{
	struct conn *c = arg;
	uint8_t *b = malloc(256 << 10);
	/* until the writer has stopped and every byte it sent came back */
	for (;;) {
		int done = __atomic_load_n(&c->done, __ATOMIC_ACQUIRE);
		if (done && c->got == __atomic_load_n(&c->sent, __ATOMIC_ACQUIRE))
			break;
		ssize_t n = recv(c->fd, b, 256 << 10, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) { /* (the writer looks at err: atomic) */
			__atomic_store_n(&c->err, n == 0 ? EPIPE : errno, __ATOMIC_RELAXED);
			break;
		}
		long k = check(b, c->key, c->got, (size_t)n);
		if (k >= 0 && c->bad < 0)
			c->bad = (long)c->got + k;
		c->got += (uint64_t)n;
	}
	free(b);
	__atomic_store_n(&c->rdone, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	if (c->busy) {
		pthread_t r;
		pthread_create(&r, NULL, reader, c);
		uint8_t *b = malloc(chunk);
		while (atomic_load(&streaming) && !__atomic_load_n(&c->err, __ATOMIC_RELAXED)) {
			fill(b, c->key, c->sent, chunk);
			if (send_all(c->fd, b, chunk) < 0) {
				__atomic_store_n(&c->err, errno, __ATOMIC_RELAXED);
				break;
			}
			__atomic_store_n(&c->sent, c->sent + chunk, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
		free(b);
		pthread_join(r, NULL);
	} else {
		idle_reads(c, &streaming);
	}
	if (!c->err)
		idle_reads(c, &lingering);
	return NULL;
}

static int client(int port, int nconns, int nbusy, double seconds, double linger)
{
	struct conn *cs = calloc((size_t)nconns, sizeof(*cs));
	pthread_t *th = calloc((size_t)nconns, sizeof(*th));
	struct timeval tv = {0, 100000};
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &cs[i];
		c->fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		c->busy = i < nbusy;
		c->key = 0x5eed0000ull + (uint64_t)i;
		c->bad = -1;
		/* small messages, echoed: the lazy upgrade offers at the second send, the server
		 * claims when it next looks, and our sending side switches at the send after that */
		char h[100], e[100];
		memset(h, 'h', sizeof(h));
		for (int k = 0; k < 6; k++) {
			if (send_all(c->fd, h, sizeof(h)) < 0)
				die("send hello");
			size_t got = 0;
			while (got < sizeof(e)) {
				ssize_t n = recv(c->fd, e + got, sizeof(e) - got, 0);
				if (n <= 0)
					die("recv hello");
				got += (size_t)n;
			}
		}
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		struct sockaddr_in me;
		socklen_t ml = sizeof(me);
		getsockname(c->fd, (struct sockaddr *)&me, &ml);
		printf("{\"conn\": %d, \"port\": %d, \"busy\": %d}\n", i, ntohs(me.sin_port), c->busy);
	}
	printf("{\"phase\": \"busy\", \"conns\": %d, \"busy\": %d}\n", nconns, nbusy);
	fflush(stdout);
	uint64_t t0 = now_ns();
	for (int i = 0; i < nconns; i++)
		pthread_create(&th[i], NULL, conn_main, &cs[i]);
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&streaming, 0);
	uint64_t t1 = now_ns();
	/* the busy connections finish their echo, then linger */
	uint64_t bytes = 0;
	for (int i = 0; i < nbusy; i++)
		while (!__atomic_load_n(&cs[i].rdone, __ATOMIC_ACQUIRE))
			usleep(1000);
	for (int i = 0; i < nbusy; i++)
		bytes += cs[i].got;
	double sec = (double)(t1 - t0) / 1e9;
	printf("{\"phase\": \"linger\", \"bytes\": %llu, \"mb_s\": %.1f}\n", (unsigned long long)bytes,
	       (double)bytes / sec / 1e6);
	fflush(stdout);
	usleep((useconds_t)(linger * 1e6));
	atomic_store(&lingering, 0);
	int ok = 1;
	for (int i = 0; i < nconns; i++) {
		pthread_join(th[i], NULL);
		struct conn *c = &cs[i];
		if (c->err || c->bad >= 0 || c->got != c->sent) {
			ok = 0;
			fprintf(stderr, "conn %d: err %s, first bad byte %ld, sent %llu got %llu\n", i,
				strerror(c->err), c->bad, (unsigned long long)c->sent,
				(unsigned long long)c->got);
		}
		close(c->fd);
	}
	printf("{\"ok\": %d, \"bytes\": %llu, \"seconds\": %.3f}\n", ok, (unsigned long long)bytes, sec);
	free(cs);
	free(th);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		goto usage;
	int port = 0, conns = 16, busy = 2;
	double seconds = 2, linger = 2;
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--conns"))
			conns = atoi(v);
		else if (!strcmp(a, "--busy"))
			busy = atoi(v);
		else if (!strcmp(a, "--seconds"))
			seconds = atof(v);
		else if (!strcmp(a, "--linger"))
			linger = atof(v);
		else if (!strcmp(a, "--chunk"))
			chunk = (size_t)atol(v);
		else
			goto usage;
	}
	if (!strcmp(argv[1], "server"))
		server(port);
	if (!strcmp(argv[1], "client") && port > 0 && conns > 0 && busy >= 0 && busy <= conns &&
	    chunk > 0)
		return client(port, conns, busy, seconds, linger);
usage:
	fprintf(stderr, "usage: nsk_ringsize server [--port P] | client --port P [--conns N] "
			"[--busy B] [--seconds S] [--linger L] [--chunk C]\n");
	return 2;
}
