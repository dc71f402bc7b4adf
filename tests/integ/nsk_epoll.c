/* SPDX-License-Identifier: MIT */
/* nsk_epoll — epoll corner cases on connections that run through shared memory, with the
 * kernel as reference (run it with and without the library; "--plain" when not preloaded).
 * A child process echoes; the parent gets each connection onto shared memory (1 MiB echo),
 * then checks one case:
 *   dupclose   register fd A, dup it to B, close A: data must still be reported (the
 *              registration belongs to the open file) and read through B
 *   nested     socket in set E1, E1 in set E2: epoll_wait(E2) reports E1, and poll() on E1
 *              says POLLIN; then epoll_wait(E1) reports the socket
 *   exclusive  EPOLLIN|EPOLLEXCLUSIVE registered while still on TCP: data is reported after
 *              the upgrade
 *   twosets    one fd in two sets: both report it
 *   threads    4 threads wait on one set (EPOLLONESHOT, re-armed with EPOLL_CTL_MOD) while
 *              2000 echoed messages arrive: each message is consumed exactly once
 *   rdhup      the peer's shutdown(SHUT_WR) is reported as EPOLLRDHUP, then EOF
 * Exit 0 on success. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
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
#include <unistd.h>

#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);
static int plain;

#define FAIL(...)                                                                          \
	do {                                                                               \
		fprintf(stderr, "nsk_epoll: " __VA_ARGS__);                                \
		fputc('\n', stderr);                                                       \
		exit(1);                                                                   \
	} while (0)

static void echo_peer(int c)
{
	char buf[65536];
	for (;;) {
		ssize_t r = recv(c, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t o = 0; o < r;) {
			ssize_t w = send(c, buf + o, (size_t)(r - o), MSG_NOSIGNAL);
			if (w <= 0)
				_exit(1);
			o += w;
		}
	}
	shutdown(c, SHUT_WR);
	_exit(0);
}

static pid_t peer_pid;

/* A connection to a fresh echo peer, on shared memory when preloaded. */
static int conn(int eager_upgrade)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		FAIL("listen: %s", strerror(errno));
	peer_pid = fork();
	if (peer_pid == 0) {
		int c = accept(l, NULL, NULL);
		echo_peer(c);
	}
	close(l);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		FAIL("connect: %s", strerror(errno));
	if (!eager_upgrade)
		return c;
	static char buf[65536];
	for (int i = 0; i < 16; i++) {
		memset(buf, i, sizeof(buf));
		if (send(c, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			FAIL("warm-up send");
		for (size_t got = 0; got < sizeof(buf);) {
			ssize_t r = recv(c, buf, sizeof(buf) - got, 0);
			if (r <= 0)
				FAIL("warm-up recv");
			got += (size_t)r;
		}
	}
	struct nearsock_conn_stats st;
	if (!plain && (stats_fn(c, &st) < 0 || st.mode != NEARSOCK_MODE_SHM))
		FAIL("connection not on shared memory after the warm-up");
	return c;
}

static void done_peer(void)
{
	int ws;
	if (waitpid(peer_pid, &ws, 0) != peer_pid || !WIFEXITED(ws) || WEXITSTATUS(ws))
		FAIL("peer failed");
}

static int wait_one(int ep, uint32_t *events, uint64_t *data, int tmo)
{
	struct epoll_event ev[4];
	int n;
	do
		n = epoll_wait(ep, ev, 4, tmo);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		*events = ev[0].events;
		*data = ev[0].data.u64;
	}
	return n;
}

static void ping(int fd, const char *msg)
{
	if (send(fd, msg, strlen(msg), 0) != (ssize_t)strlen(msg))
		FAIL("send: %s", strerror(errno));
}

static void expect_read(int fd, const char *msg)
{
	char buf[256];
	size_t want = strlen(msg), got = 0;
	while (got < want) {
		ssize_t r = recv(fd, buf + got, want - got, 0);
		if (r <= 0)
			FAIL("recv: %s", r ? strerror(errno) : "EOF");
		got += (size_t)r;
	}
	if (memcmp(buf, msg, want))
		FAIL("read back something else");
}

static int t_dupclose(void)
{
	int a = conn(1);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xabc};
	epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
	int b = dup(a);
	close(a);
	ping(b, "hello-dup");
	uint32_t e;
	uint64_t d;
	if (wait_one(ep, &e, &d, 5000) != 1 || d != 0xabc || !(e & EPOLLIN))
		FAIL("dupclose: the event of the closed fd's open file was not reported");
	expect_read(b, "hello-dup");
	close(b);
	done_peer();
	close(ep);
	return 0;
}

static int late_fd;

static void *late_ping(void *arg)
{
	(void)arg;
	usleep(100000);
	ping(late_fd, "later");
	return NULL;
}

static int t_nested(void)
{
	int c = conn(1);
	int e1 = epoll_create1(0), e2 = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
	epoll_ctl(e1, EPOLL_CTL_ADD, c, &ev);
	ev.data.u64 = 2;
	if (epoll_ctl(e2, EPOLL_CTL_ADD, e1, &ev) < 0)
		FAIL("nested add: %s", strerror(errno));
	ping(c, "nested");
	uint32_t e;
	uint64_t d;
	if (wait_one(e2, &e, &d, 5000) != 1 || d != 2)
		FAIL("nested: the outer set did not report the inner one");
	struct pollfd p = {.fd = e1, .events = POLLIN};
	if (poll(&p, 1, 5000) != 1 || !(p.revents & POLLIN))
		FAIL("nested: poll() on the inner set did not say POLLIN");
	if (wait_one(e1, &e, &d, 0) != 1 || d != 1)
		FAIL("nested: the inner set did not report the socket");
	expect_read(c, "nested");
	/* and a wake-up while sleeping in poll() on the set: sent 100 ms later */
	pthread_t th;
	late_fd = c;
	pthread_create(&th, NULL, late_ping, NULL);
	p.revents = 0;
	if (poll(&p, 1, 5000) != 1)
		FAIL("nested: poll() on the set missed a later message");
	pthread_join(th, NULL);
	expect_read(c, "later");
	close(c);
	done_peer();
	close(e2);
	close(e1);
	return 0;
}

static int t_exclusive(void)
{
	int c = conn(0);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 7};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
		FAIL("exclusive add: %s", strerror(errno));
	/* traffic until shared memory, through the set */
	for (int i = 0; i < 64; i++) {
		char msg[32];
		snprintf(msg, sizeof(msg), "exclusive-%03d", i);
		ping(c, msg);
		uint32_t e;
		uint64_t d;
		if (wait_one(ep, &e, &d, 5000) != 1 || d != 7)
			FAIL("exclusive: message %d not reported", i);
		expect_read(c, msg);
	}
	struct nearsock_conn_stats st;
	if (!plain && (stats_fn(c, &st) < 0 || st.mode != NEARSOCK_MODE_SHM || !st.rx_shm_bytes))
		FAIL("exclusive: not on shared memory");
	close(c);
	done_peer();
	close(ep);
	return 0;
}

static int t_twosets(void)
{
	int c = conn(1);
	int e1 = epoll_create1(0), e2 = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 11};
	epoll_ctl(e1, EPOLL_CTL_ADD, c, &ev);
	ev.data.u64 = 22;
	epoll_ctl(e2, EPOLL_CTL_ADD, c, &ev);
	ping(c, "two");
	uint32_t e;
	uint64_t d;
	if (wait_one(e1, &e, &d, 5000) != 1 || d != 11)
		FAIL("twosets: first set");
	if (wait_one(e2, &e, &d, 5000) != 1 || d != 22)
		FAIL("twosets: second set");
	expect_read(c, "two");
	close(c);
	done_peer();
	return 0;
}

#define MSGS 2000
static int th_ep, th_fd;
static atomic_int th_seen[MSGS];
static atomic_int th_total, th_stop;

static void *th_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&th_stop)) {
		uint32_t e;
		uint64_t d;
		int n = wait_one(th_ep, &e, &d, 100);
		if (n <= 0)
			continue;
		/* records of 8 bytes "m%06d\n" */
		char buf[8];
		for (;;) {
			ssize_t r = recv(th_fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
			if (r < (ssize_t)sizeof(buf))
				break;
			r = recv(th_fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r != (ssize_t)sizeof(buf))
				FAIL("threads: short read %zd", r);
			int k = atoi(buf + 1);
			if (k < 0 || k >= MSGS || atomic_fetch_add(&th_seen[k], 1))
				FAIL("threads: message %d seen twice", k);
			atomic_fetch_add(&th_total, 1);
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 5};
		epoll_ctl(th_ep, EPOLL_CTL_MOD, th_fd, &ev);
	}
	return NULL;
}

static int t_threads(void)
{
	th_fd = conn(1);
	th_ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 5};
	epoll_ctl(th_ep, EPOLL_CTL_ADD, th_fd, &ev);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, th_main, NULL);
	for (int k = 0; k < MSGS; k++) {
		char msg[16];
		snprintf(msg, sizeof(msg), "m%06d\n", k);
		ping(th_fd, msg);
		if (k % 100 == 99)
			usleep(1000);
	}
	for (int i = 0; i < 500 && atomic_load(&th_total) < MSGS; i++)
		usleep(10000);
	atomic_store(&th_stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	if (atomic_load(&th_total) != MSGS)
		FAIL("threads: %d of %d messages consumed", atomic_load(&th_total), MSGS);
	close(th_fd);
	done_peer();
	return 0;
}

/* EPOLLET: reported once per arrival, not again while unread; EPOLL_CTL_MOD to EPOLLOUT;
 * EPOLL_CTL_DEL: no more reports. */
static int t_etmod(void)
{
	int c = conn(1);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 3};
	epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	uint32_t e;
	uint64_t d;
	ping(c, "edge-1");
	if (wait_one(ep, &e, &d, 5000) != 1 || !(e & EPOLLIN))
		FAIL("etmod: first arrival not reported");
	if (wait_one(ep, &e, &d, 200) != 0)
		FAIL("etmod: edge-triggered event reported twice for one arrival");
	ping(c, "edge-2");
	if (wait_one(ep, &e, &d, 5000) != 1)
		FAIL("etmod: second arrival not reported");
	expect_read(c, "edge-1edge-2");
	ev.events = EPOLLOUT;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev) < 0)
		FAIL("etmod: MOD: %s", strerror(errno));
	if (wait_one(ep, &e, &d, 5000) != 1 || !(e & EPOLLOUT) || (e & EPOLLIN))
		FAIL("etmod: after MOD to EPOLLOUT got events 0x%x", e);
	if (epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL) < 0)
		FAIL("etmod: DEL: %s", strerror(errno));
	ping(c, "after-del");
	if (wait_one(ep, &e, &d, 300) != 0)
		FAIL("etmod: reported after EPOLL_CTL_DEL");
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev) == 0 || errno != ENOENT)
		FAIL("etmod: MOD after DEL: want ENOENT");
	expect_read(c, "after-del");
	close(c);
	done_peer();
	close(ep);
	return 0;
}

/* An fd closed while registered (no other copy): its registration goes with it; the fd
 * number reused by a new connection reports only what the new one registers. */
static int t_closereg(void)
{
	int a = conn(1);
	pid_t first = peer_pid;
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 41};
	epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
	ping(a, "gone");
	usleep(50000);
	close(a); /* unread echo pending: the kernel drops the registration with the file */
	uint32_t e;
	uint64_t d;
	if (wait_one(ep, &e, &d, 200) != 0)
		FAIL("closereg: an event of a closed fd was reported (data %llu)", (unsigned long long)d);
	int ws;
	waitpid(first, &ws, 0);
	int b = conn(1); /* likely the same fd number */
	if (wait_one(ep, &e, &d, 200) != 0)
		FAIL("closereg: the reused fd number reported an event it never registered");
	ev.data.u64 = 42;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) < 0)
		FAIL("closereg: ADD of the reused number: %s", strerror(errno));
	ping(b, "fresh");
	if (wait_one(ep, &e, &d, 5000) != 1 || d != 42)
		FAIL("closereg: the new registration did not report");
	expect_read(b, "fresh");
	close(b);
	done_peer();
	close(ep);
	return 0;
}

static int t_rdhup(void)
{
	int c = conn(1);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = 9};
	epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
	shutdown(c, SHUT_WR); /* the echo peer answers with its own shutdown */
	uint32_t e = 0;
	uint64_t d;
	for (int i = 0; i < 50 && !(e & EPOLLRDHUP); i++)
		if (wait_one(ep, &e, &d, 100) < 0)
			FAIL("rdhup: epoll_wait: %s", strerror(errno));
	if (!(e & EPOLLRDHUP))
		FAIL("rdhup: EPOLLRDHUP not reported (events 0x%x)", e);
	char b;
	if (recv(c, &b, 1, 0) != 0)
		FAIL("rdhup: no EOF after EPOLLRDHUP");
	close(c);
	done_peer();
	return 0;
}

int main(int argc, char **argv)
{
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	plain = !stats_fn || (argc > 2 && !strcmp(argv[2], "--plain"));
	signal(SIGPIPE, SIG_IGN);
	const char *t = argc > 1 ? argv[1] : "";
	if (!strcmp(t, "dupclose"))
		return t_dupclose();
	if (!strcmp(t, "nested"))
		return t_nested();
	if (!strcmp(t, "exclusive"))
		return t_exclusive();
	if (!strcmp(t, "twosets"))
		return t_twosets();
	if (!strcmp(t, "threads"))
		return t_threads();
	if (!strcmp(t, "rdhup"))
		return t_rdhup();
	if (!strcmp(t, "etmod"))
		return t_etmod();
	if (!strcmp(t, "closereg"))
		return t_closereg();
	fprintf(stderr, "usage: nsk_epoll dupclose|nested|exclusive|twosets|threads|rdhup [--plain]\n");
	return 2;
}
