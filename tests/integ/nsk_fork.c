/* SPDX-License-Identifier: MIT */
/* nsk_fork — fork, exec and spawn with connections that run through shared memory.
 * One program plays both ends (a client in the parent, a server in a child) so that it can
 * be run with and without the preload library: the kernel's behaviour is the reference.
 *
 *   nsk_fork exec   --via execve|execvp|execl|spawn|vfork|daemon
 *       the server echoes a checksummed stream; once the connection is on shared memory (or
 *       after 1 MiB without the library) it hands the socket to a new program image (the
 *       same binary, --echo-fd N) mid-stream, which echoes the rest. The client checks every
 *       byte and the new image's counters (shared memory still used after the exec).
 *   nsk_fork share  the server forks after the upgrade: parent and child write 64-byte
 *       records at the same time (per-writer sequence numbers), then read alternately (the
 *       client's records, each reader its half, handing over through a pipe).
 *   nsk_fork perconn  fork per connection: the parent accepts, forks, closes its copy; 8
 *       connections, each child echoes 8 MiB; every one must reach shared memory.
 *   nsk_fork prefork  3 workers inherit the listener and accept; 12 connections, each
 *       echoed; every one must reach shared memory (offers routed to the right worker).
 * Exit 0 on success; failures print what went wrong. "--plain" tells it the library is not
 * loaded (then no shared memory is expected). */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);
static int plain;
static const char *self;

#define FAIL(...)                                                                          \
	do {                                                                               \
		fprintf(stderr, "nsk_fork: " __VA_ARGS__);                                 \
		fputc('\n', stderr);                                                       \
		exit(1);                                                                   \
	} while (0)

static int mode_of(int fd, struct nearsock_conn_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!stats_fn || stats_fn(fd, st) < 0)
		return -1;
	return (int)st->mode;
}

static uint8_t pattern(uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;
	return (uint8_t)(x >> 56 ^ x >> 29);
}

static int listener(int *port)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		FAIL("listen: %s", strerror(errno));
	*port = ntohs(a.sin_port);
	return l;
}

static int dial(int port)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		FAIL("connect: %s", strerror(errno));
	return c;
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			FAIL("send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

static void read_all(int fd, void *p, size_t n)
{
	char *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			FAIL("recv: %s", r ? strerror(errno) : "early EOF");
		b += r;
		n -= (size_t)r;
	}
}

/* ------------------------------------------------------------- echo client ----------- */

struct sender {
	int fd;
	uint64_t total;
};

static void *send_thread(void *arg)
{
	struct sender *s = arg;
	static __thread uint8_t buf[1 << 16];
	uint64_t off = 0, seed = 88172645463325252ull;
	while (off < s->total) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		size_t n = 1 + seed % sizeof(buf);
		if (n > s->total - off)
			n = (size_t)(s->total - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		write_all(s->fd, buf, n);
		off += n;
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

/* Send @total bytes of the pattern and check the echo, byte for byte, then EOF. */
static void echo_client(int fd, uint64_t total)
{
	struct sender s = {.fd = fd, .total = total};
	pthread_t t;
	pthread_create(&t, NULL, send_thread, &s);
	static uint8_t buf[1 << 16];
	uint64_t got = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			FAIL("client recv after %llu bytes: %s", (unsigned long long)got, strerror(errno));
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(got + (uint64_t)i))
				FAIL("echo byte %llu differs", (unsigned long long)(got + (uint64_t)i));
		got += (uint64_t)r;
	}
	pthread_join(t, NULL);
	if (got != total)
		FAIL("echo: %llu of %llu bytes", (unsigned long long)got, (unsigned long long)total);
}

/* Echo until EOF; if @handover > 0, return once that many bytes were echoed and the
 * connection is on shared memory (or plain). Returns bytes echoed. */
static uint64_t echo_server(int fd, uint64_t handover)
{
	static uint8_t buf[1 << 16];
	uint64_t done = 0;
	for (;;) {
		struct nearsock_conn_stats st;
		if (handover && done >= handover && (plain || mode_of(fd, &st) == NEARSOCK_MODE_SHM))
			return done;
		if (handover && done >= 64 * handover)
			FAIL("server: no shared memory after %llu bytes", (unsigned long long)done);
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			FAIL("server recv: %s", strerror(errno));
		if (r == 0) {
			shutdown(fd, SHUT_WR);
			return done;
		}
		write_all(fd, buf, (size_t)r);
		done += (uint64_t)r;
	}
}

/* The new program image: echo the rest, report its counters. */
static int echo_child(int fd)
{
	uint64_t n = echo_server(fd, 0);
	struct nearsock_conn_stats st;
	int m = mode_of(fd, &st);
	printf("{\"image\":\"after-exec\",\"echoed\":%llu,\"mode\":%d,\"rx_shm\":%llu,\"tx_shm\":%llu}\n",
	       (unsigned long long)n, m, (unsigned long long)st.rx_shm_bytes,
	       (unsigned long long)st.tx_shm_bytes);
	fflush(stdout);
	if (!plain && (m != NEARSOCK_MODE_SHM || st.rx_shm_bytes == 0 || st.tx_shm_bytes == 0))
		FAIL("after exec: the connection did not continue on shared memory (mode %d)", m);
	close(fd);
	return 0;
}

/* ------------------------------------------------------------- scenarios ------------- */

static void hand_over(int fd, const char *via)
{
	char fds[16];
	snprintf(fds, sizeof(fds), "%d", fd);
	int fl = fcntl(fd, F_GETFD);
	fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
	char *argv[] = {(char *)self, (char *)"--echo-fd", fds, plain ? (char *)"--plain" : NULL, NULL};
	extern char **environ;
	if (!strcmp(via, "execve")) {
		execve(self, argv, environ);
	} else if (!strcmp(via, "execvp")) {
		execvp(self, argv);
	} else if (!strcmp(via, "execl")) {
		execl(self, self, "--echo-fd", fds, plain ? "--plain" : NULL, (char *)NULL);
	} else if (!strcmp(via, "daemon")) {
		/* daemon() forks and the parent exits: the connection lives on in the child. */
		if (daemon(1, 1) < 0)
			FAIL("daemon: %s", strerror(errno));
		execve(self, argv, environ);
	} else if (!strcmp(via, "spawn") || !strcmp(via, "vfork")) {
		pid_t pid;
		if (!strcmp(via, "spawn")) {
			int r = posix_spawn(&pid, self, NULL, NULL, argv, environ);
			if (r)
				FAIL("posix_spawn: %s", strerror(r));
		} else {
			pid = vfork();
			if (pid == 0) {
				execve(self, argv, environ);
				_exit(127);
			}
		}
		/* This process no longer touches the connection; it waits for the new image. */
		close(fd);
		int st;
		waitpid(pid, &st, 0);
		exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	} else {
		FAIL("unknown --via %s", via);
	}
	FAIL("exec (%s): %s", via, strerror(errno));
}

static int scen_exec(const char *via)
{
	int port, l = listener(&port);
	pid_t pid = fork();
	if (pid == 0) {
		int c = accept4(l, NULL, NULL, 0); /* no SOCK_CLOEXEC: it is handed over */
		close(l);
		echo_server(c, 1u << 20);
		hand_over(c, via);
	}
	close(l);
	int c = dial(port);
	echo_client(c, 64ull << 20);
	struct nearsock_conn_stats st;
	int m = mode_of(c, &st);
	close(c);
	int ws;
	if (!strcmp(via, "daemon")) {
		/* the server's first process exits at once; the daemon reports on stdout */
		waitpid(pid, &ws, 0);
	} else if (waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws) || WEXITSTATUS(ws))
		FAIL("server side failed");
	printf("{\"scenario\":\"exec\",\"via\":\"%s\",\"client_mode\":%d,\"client_rx_shm\":%llu}\n",
	       via, m, (unsigned long long)st.rx_shm_bytes);
	if (!plain && (m != NEARSOCK_MODE_SHM || st.rx_shm_bytes == 0))
		FAIL("client: not on shared memory (mode %d)", m);
	return 0;
}

#define REC 64
#define NREC 20000

struct rec {
	uint32_t writer, seq;
	uint8_t fill[REC - 8];
};

static void write_records(int fd, uint32_t writer)
{
	struct rec r;
	for (uint32_t i = 0; i < NREC; i++) {
		r.writer = writer;
		r.seq = i;
		memset(r.fill, (int)(writer * 31 + i), sizeof(r.fill));
		write_all(fd, &r, sizeof(r));
	}
}

static int scen_share(void)
{
	int port, l = listener(&port);
	int go[2], turn[2];
	if (pipe(go) < 0 || pipe(turn) < 0)
		FAIL("pipe");
	pid_t srv = fork();
	if (srv == 0) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		/* get onto shared memory first: a small echo exchange */
		echo_server(c, 1u << 20);
		struct nearsock_conn_stats st;
		int m = mode_of(c, &st);
		if (!plain && m != NEARSOCK_MODE_SHM)
			FAIL("share: server not on shared memory before the fork");
		pid_t kid = fork();
		/* both write at once */
		write_records(c, kid == 0 ? 2 : 1);
		/* then read alternately: parent the first half, child the second */
		char tok;
		if (kid != 0) {
			struct rec r;
			for (uint32_t i = 0; i < NREC / 2; i++) {
				read_all(c, &r, sizeof(r));
				if (r.writer != 9 || r.seq != i)
					FAIL("share: parent read record (%u,%u), want (9,%u)", r.writer, r.seq, i);
			}
			if (write(turn[1], "x", 1) != 1)
				FAIL("pipe");
			int ws;
			waitpid(kid, &ws, 0);
			if (!WIFEXITED(ws) || WEXITSTATUS(ws))
				FAIL("share: child failed");
			m = mode_of(c, &st);
			printf("{\"scenario\":\"share\",\"server_mode\":%d,\"tx_shm\":%llu,\"rx_shm\":%llu}\n",
			       m, (unsigned long long)st.tx_shm_bytes, (unsigned long long)st.rx_shm_bytes);
			if (!plain && m != NEARSOCK_MODE_SHM)
				FAIL("share: left shared memory");
			close(c);
			exit(0);
		}
		if (read(turn[0], &tok, 1) != 1)
			FAIL("pipe");
		struct rec r;
		for (uint32_t i = NREC / 2; i < NREC; i++) {
			read_all(c, &r, sizeof(r));
			if (r.writer != 9 || r.seq != i)
				FAIL("share: child read record (%u,%u), want (9,%u)", r.writer, r.seq, i);
		}
		exit(0);
	}
	close(l);
	int c = dial(port);
	/* the warm-up echo */
	{
		static uint8_t buf[1 << 16];
		uint64_t sent = 0, got = 0;
		while (sent < (1u << 20)) {
			size_t n = sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = pattern(sent + i);
			write_all(c, buf, n);
			sent += n;
			while (got < sent) {
				ssize_t r = recv(c, buf, (size_t)(sent - got) < sizeof(buf) ? (size_t)(sent - got) : sizeof(buf), 0);
				if (r <= 0)
					FAIL("share warm-up recv");
				for (ssize_t i = 0; i < r; i++)
					if (buf[i] != pattern(got + (uint64_t)i))
						FAIL("share warm-up byte %llu", (unsigned long long)(got + (uint64_t)i));
				got += (uint64_t)r;
			}
		}
	}
	/* Records from two writers: each writer's own order, all present, none twice. */
	uint32_t next[3] = {0, 0, 0};
	for (uint32_t k = 0; k < 2 * NREC; k++) {
		struct rec r;
		read_all(c, &r, sizeof(r));
		if (r.writer < 1 || r.writer > 2 || r.seq != next[r.writer])
			FAIL("share: record %u is (%u,%u), expected seq %u", k, r.writer, r.seq,
			     r.writer <= 2 ? next[r.writer] : 0);
		for (size_t i = 0; i < sizeof(r.fill); i++)
			if (r.fill[i] != (uint8_t)(r.writer * 31 + r.seq))
				FAIL("share: record (%u,%u) corrupted", r.writer, r.seq);
		next[r.writer]++;
	}
	write_records(c, 9);
	int ws;
	if (waitpid(srv, &ws, 0) != srv || !WIFEXITED(ws) || WEXITSTATUS(ws))
		FAIL("share: server failed");
	close(c);
	return 0;
}

static int scen_perconn(void)
{
	int port, l = listener(&port);
	enum { N = 8 };
	pid_t srv = fork();
	if (srv == 0) {
		pid_t kids[N];
		for (int i = 0; i < N; i++) {
			int c = accept4(l, NULL, NULL, 0);
			if (c < 0)
				FAIL("accept: %s", strerror(errno));
			kids[i] = fork();
			if (kids[i] == 0) {
				close(l);
				echo_server(c, 0);
				exit(0);
			}
			close(c); /* the parent's copy */
		}
		int bad = 0;
		for (int i = 0; i < N; i++) {
			int ws;
			waitpid(kids[i], &ws, 0);
			bad |= !WIFEXITED(ws) || WEXITSTATUS(ws);
		}
		exit(bad);
	}
	close(l);
	int shm = 0;
	for (int i = 0; i < N; i++) {
		int c = dial(port);
		echo_client(c, 8u << 20);
		struct nearsock_conn_stats st;
		shm += mode_of(c, &st) == NEARSOCK_MODE_SHM && st.rx_shm_bytes > 0;
		close(c);
	}
	int ws;
	if (waitpid(srv, &ws, 0) != srv || !WIFEXITED(ws) || WEXITSTATUS(ws))
		FAIL("perconn: server failed");
	printf("{\"scenario\":\"perconn\",\"connections\":%d,\"on_shm\":%d}\n", N, shm);
	if (!plain && shm != N)
		FAIL("perconn: %d of %d connections on shared memory", shm, N);
	return 0;
}

static int scen_prefork(void)
{
	int port, l = listener(&port);
	enum { W = 3, N = 12 };
	pid_t w[W];
	for (int i = 0; i < W; i++) {
		w[i] = fork();
		if (w[i] == 0) {
			for (;;) {
				int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0) {
					if (errno == EINTR)
						continue;
					FAIL("worker accept: %s", strerror(errno));
				}
				echo_server(c, 0);
				close(c);
			}
		}
	}
	close(l);
	/* Connections at once, so that every worker gets some. */
	int c[N], shm = 0;
	for (int i = 0; i < N; i++)
		c[i] = dial(port);
	for (int i = 0; i < N; i++) {
		echo_client(c[i], 4u << 20);
		struct nearsock_conn_stats st;
		shm += mode_of(c[i], &st) == NEARSOCK_MODE_SHM && st.rx_shm_bytes > 0;
		close(c[i]);
	}
	for (int i = 0; i < W; i++) {
		kill(w[i], SIGTERM);
		waitpid(w[i], NULL, 0);
	}
	printf("{\"scenario\":\"prefork\",\"workers\":%d,\"connections\":%d,\"on_shm\":%d}\n", W, N,
	       shm);
	if (!plain && shm != N)
		FAIL("prefork: %d of %d connections on shared memory", shm, N);
	return 0;
}

int main(int argc, char **argv)
{
	self = argv[0];
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--plain"))
			plain = 1;
	if (!stats_fn)
		plain = 1;
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && !strcmp(argv[1], "--echo-fd"))
		return echo_child(atoi(argv[2]));
	if (argc >= 2 && !strcmp(argv[1], "exec"))
		return scen_exec(argc >= 4 && !strcmp(argv[2], "--via") ? argv[3] : "execve");
	if (argc >= 2 && !strcmp(argv[1], "share"))
		return scen_share();
	if (argc >= 2 && !strcmp(argv[1], "perconn"))
		return scen_perconn();
	if (argc >= 2 && !strcmp(argv[1], "prefork"))
		return scen_prefork();
	fprintf(stderr, "usage: nsk_fork exec --via V | share | perconn | prefork [--plain]\n");
	return 2;
}
