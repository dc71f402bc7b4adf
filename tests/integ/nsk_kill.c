/* SPDX-License-Identifier: MIT */
/* nsk_kill — integration helper for a peer's death: a "peer" and a "survivor" process share
 * one TCP connection (either may be the connecting side). After a handshake that echoes 256 KiB
 * rounds until a preloaded pair is on shared memory both ways (the survivor's counters say
 * so; at most 20 rounds, 2 without the library; the survivor reports its counters),
 * the survivor's killer thread SIGKILLs the peer at a chosen moment, taking the time right
 * before kill(2); the survivor's I/O, which never stops, takes the time right after its
 * call returns EOF or an error. Scenarios (what the survivor is doing when the peer dies):
 *   stream  peer echoes; survivor sends and receives continuously (both directions
 *           must end), kill once --after bytes came back
 *   send    peer stopped reading; survivor blocked in send on a full ring/buffer
 *   recv    peer reads but never writes; survivor blocked in recv
 *   close   like recv, but the peer writes a last 64 KiB response and closes its socket
 *           normally (no kill), printing when on CLOCK_MONOTONIC (shared by all
 *           processes): the harness compares the times; the survivor must read the whole
 *           response, then EOF
 * Styles: blocking (two threads for stream), poll, epoll (one non-blocking loop).
 * Output: one JSON line per process; the survivor exits 0 only if every direction ended
 * with EOF/ECONNRESET/EPIPE within --limit-ms of the kill. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
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
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

#define HS_BYTES (256u << 10) /* per handshake round */
#define HS_ROUNDS 20
#define RESPONSE_BYTES 65536u
#define HELLO_MAGIC "NSKPEER1"

struct hello {
	char magic[8];
	uint32_t pid;
	uint32_t pad;
};

enum { ST_BLOCKING, ST_POLL, ST_EPOLL };

static struct {
	int listen; /* 1: accept one connection; 0: connect */
	const char *addr;
	int port;
	const char *behave;   /* peer */
	const char *scenario; /* survivor */
	int style;
	uint64_t after;
	int limit_ms;
	int close_ms;
} o = {.addr = "127.0.0.1",
       .behave = "echo",
       .scenario = "stream",
       .after = 16u << 20,
       .limit_ms = 1000,
       .close_ms = 300};

static int (*stats_fn)(int, struct nearsock_conn_stats *);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "nsk_kill: %s: %s\n", what, strerror(errno));
	printf("{\"ok\": 0, \"error\": \"%s: %s\"}\n", what, strerror(errno));
	fflush(stdout);
	exit(2);
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 11) * 13 + (i >> 19));
}

static int connection(void)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
	struct addrinfo *ai;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", o.port);
	if (getaddrinfo(o.addr, ps, &hints, &ai) != 0)
		die("getaddrinfo");
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	if (o.listen) {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4) < 0)
			die("listen");
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		getsockname(fd, (struct sockaddr *)&sa, &sl);
		printf("{\"listening\": %d}\n", ntohs(sa.sin_port));
		fflush(stdout);
		int c;
		while ((c = accept(fd, NULL, NULL)) < 0 && errno == EINTR)
			;
		if (c < 0)
			die("accept");
		/* The listener stays open for the life of the process: closing it right after
		 * accept() is a different test (the offer may still be on its way). */
		fd = c;
	} else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		die("connect");
	}
	freeaddrinfo(ai);
	return fd;
}

static int io_all(int fd, void *buf, size_t n, int rd)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = rd ? recv(fd, (char *)buf + off, n - off, 0)
		               : send(fd, (char *)buf + off, n - off, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* ---------------------------------------------------------------- peer ---------------- */

static int run_peer(void)
{
	alarm(60); /* never outlive a failed test for long */
	int fd = connection();
	struct hello h = {.magic = HELLO_MAGIC, .pid = (uint32_t)getpid()};
	printf("{\"peer_pid\": %d}\n", (int)getpid());
	fflush(stdout);
	uint8_t *buf = malloc(HS_BYTES);
	if (io_all(fd, &h, sizeof(h), 0) < 0)
		die("hello");
	/* Handshake rounds: a length (0 ends), then that many bytes echoed. */
	for (;;) {
		uint32_t len;
		if (io_all(fd, &len, sizeof(len), 1) < 0 || len > HS_BYTES)
			die("handshake");
		if (!len)
			break;
		if (io_all(fd, buf, len, 1) < 0 || io_all(fd, buf, len, 0) < 0)
			die("handshake");
	}
	if (!strcmp(o.behave, "sink")) {
		for (;;)
			pause();
	}
	if (!strcmp(o.behave, "close")) {
		/* Like a request/response server: everything the survivor sent was read; send a
		 * last response and close. The survivor must read all of it, then EOF. */
		usleep((useconds_t)o.close_ms * 1000);
		for (uint32_t i = 0; i < RESPONSE_BYTES; i++)
			buf[i] = pattern(i);
		if (io_all(fd, buf, RESPONSE_BYTES, 0) < 0)
			die("response");
		uint64_t t = now_ns();
		int r = close(fd);
		printf("{\"closed_at_ns\": %llu, \"close_ret\": %d}\n", (unsigned long long)t, r);
		fflush(stdout);
		usleep(300 * 1000); /* stay alive a while: only the close may tell the survivor */
		return 0;
	}
	int echo = !strcmp(o.behave, "echo");
	for (;;) {
		ssize_t n = recv(fd, buf, HS_BYTES, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		if (echo && io_all(fd, buf, (size_t)n, 0) < 0)
			return 0;
	}
}

/* ---------------------------------------------------------------- survivor ------------ */

struct end {
	int done;   /* 1 once this direction ended */
	int result; /* 0: EOF, else errno */
	uint64_t t; /* when (ns) */
};

static struct {
	int fd;
	pid_t peer;
	_Atomic uint64_t sent, recvd; /* phase-2 bytes */
	_Atomic uint64_t t_kill;      /* 0 until the peer was killed */
	_Atomic int stop;
	struct end tx, rx;
	uint64_t mismatch_at;
	int mismatch;
} sv;

static void end_dir(struct end *e, int result)
{
	if (e->done)
		return;
	e->t = now_ns();
	e->result = result;
	e->done = 1;
}

static void *killer(void *arg)
{
	(void)arg;
	uint64_t t0 = now_ns(), last = 0, last_change = t0;
	for (;;) {
		usleep(1000);
		uint64_t t = now_ns();
		if (!strcmp(o.scenario, "stream")) {
			if (atomic_load(&sv.recvd) >= o.after)
				break;
		} else if (!strcmp(o.scenario, "send")) {
			uint64_t s = atomic_load(&sv.sent);
			if (s != last) {
				last = s;
				last_change = t;
			} else if (s > 0 && t - last_change > 300000000ull) {
				break; /* no progress for 300 ms: blocked in send */
			}
		} else if (t - t0 > 300000000ull) {
			break; /* recv: blocked by now */
		}
		if (t - t0 > 20000000000ull || atomic_load(&sv.stop))
			return NULL; /* never reached the moment: reported as not killed */
	}
	uint64_t t = now_ns();
	/* Published before the kill: the survivor's call may return before kill(2) does. */
	atomic_store(&sv.t_kill, t);
	if (kill(sv.peer, SIGKILL) != 0)
		atomic_store(&sv.t_kill, 0);
	return NULL;
}

/* Deadline check for the survivor's own loops: give up 5 s after the kill (reported as a
 * hang) or 30 s after the start. */
static int overdue(uint64_t start)
{
	uint64_t tk = atomic_load(&sv.t_kill), t = now_ns();
	if (tk && t - tk > 5000000000ull)
		return 1;
	return t - start > 30000000000ull;
}

static void *sender(void *arg)
{
	(void)arg;
	static uint8_t buf[65536];
	uint64_t pos = 0;
	while (!sv.tx.done) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(pos + i);
		size_t off = 0;
		while (off < sizeof(buf)) {
			ssize_t r = send(sv.fd, buf + off, sizeof(buf) - off, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				end_dir(&sv.tx, errno);
				return NULL;
			}
			off += (size_t)r;
			atomic_fetch_add(&sv.sent, (uint64_t)r);
		}
		pos += sizeof(buf);
	}
	return NULL;
}

static void receive_check(const uint8_t *buf, size_t n)
{
	uint64_t base = atomic_load(&sv.recvd);
	for (size_t i = 0; i < n && !sv.mismatch; i++)
		if (buf[i] != pattern(base + i)) {
			sv.mismatch = 1;
			sv.mismatch_at = base + i;
		}
	atomic_fetch_add(&sv.recvd, (uint64_t)n);
}

static void survive_blocking(void)
{
	static uint8_t buf[65536];
	pthread_t th;
	int stream = !strcmp(o.scenario, "stream"), sending = !strcmp(o.scenario, "send");
	if (stream || sending)
		pthread_create(&th, NULL, sender, NULL);
	if (sending) {
		/* Only the send direction is observed. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 30;
		if (pthread_timedjoin_np(th, NULL, &ts) != 0)
			return; /* hang: reported */
		return;
	}
	for (;;) {
		ssize_t n = recv(sv.fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			end_dir(&sv.rx, n == 0 ? 0 : errno);
			break;
		}
		if (stream || !strcmp(o.scenario, "close"))
			receive_check(buf, (size_t)n);
	}
	if (stream) {
		/* The sender must end too: wait at most 5 s more (a hang otherwise). */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		pthread_timedjoin_np(th, NULL, &ts);
	}
}

static void survive_nonblocking(void)
{
	static uint8_t out[65536], in[65536];
	int stream = !strcmp(o.scenario, "stream"), sending = !strcmp(o.scenario, "send");
	int want_tx = stream || sending, want_rx = !sending;
	int fl = fcntl(sv.fd, F_GETFL);
	fcntl(sv.fd, F_SETFL, fl | O_NONBLOCK);
	int ep = -1;
	if (o.style == ST_EPOLL) {
		ep = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = sv.fd};
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv.fd, &ev) < 0)
			die("epoll");
	}
	uint64_t start = now_ns(), pos = 0;
	size_t olen = 0, ooff = 0;
	while ((want_tx && !sv.tx.done) || (want_rx && !sv.rx.done)) {
		if (overdue(start))
			break;
		int progress = 0;
		if (want_tx && !sv.tx.done) {
			if (ooff == olen) {
				for (size_t i = 0; i < sizeof(out); i++)
					out[i] = pattern(pos + i);
				pos += sizeof(out);
				olen = sizeof(out);
				ooff = 0;
			}
			ssize_t r = send(sv.fd, out + ooff, olen - ooff, MSG_NOSIGNAL);
			if (r > 0) {
				ooff += (size_t)r;
				atomic_fetch_add(&sv.sent, (uint64_t)r);
				progress = 1;
			} else if (r < 0 && errno != EAGAIN && errno != EINTR) {
				end_dir(&sv.tx, errno);
			}
		}
		if (want_rx && !sv.rx.done) {
			ssize_t n = recv(sv.fd, in, sizeof(in), 0);
			if (n > 0) {
				if (stream || !strcmp(o.scenario, "close"))
					receive_check(in, (size_t)n);
				progress = 1;
			} else if (n == 0) {
				end_dir(&sv.rx, 0);
			} else if (errno != EAGAIN && errno != EINTR) {
				end_dir(&sv.rx, errno);
			}
		}
		if (progress)
			continue;
		int ev = 0;
		if (want_rx && !sv.rx.done)
			ev |= POLLIN;
		if (want_tx && !sv.tx.done)
			ev |= POLLOUT;
		if (!ev)
			break;
		/* Short timeouts only bound our own hang detection; wake-ups must come from events.
		 */
		if (o.style == ST_POLL) {
			struct pollfd p = {.fd = sv.fd, .events = (short)ev};
			poll(&p, 1, 200);
		} else {
			struct epoll_event e = {.events = 0, .data.fd = sv.fd};
			if (ev & POLLIN)
				e.events |= EPOLLIN;
			if (ev & POLLOUT)
				e.events |= EPOLLOUT;
			epoll_ctl(ep, EPOLL_CTL_MOD, sv.fd, &e);
			struct epoll_event got[2];
			epoll_wait(ep, got, 2, 200);
		}
	}
	if (ep >= 0)
		close(ep);
}

static const char *result_name(const struct end *e)
{
	if (!e->done)
		return "none";
	switch (e->result) {
	case 0:
		return "EOF";
	case ECONNRESET:
		return "ECONNRESET";
	case EPIPE:
		return "EPIPE";
	default:
		return strerror(e->result);
	}
}

static int acceptable(const struct end *e)
{
	return e->done && (e->result == 0 || e->result == ECONNRESET || e->result == EPIPE);
}

static struct {
	int hs_ok, preloaded;
	struct nearsock_conn_stats st;
	_Atomic int reported;
} rep;

/* report - print the survivor's line once (from the main thread, or from the watchdog with
 * @hang set while a call is still stuck) and exit. */
static void report(int hang)
{
	if (atomic_exchange(&rep.reported, 1))
		return;
	uint64_t tk = atomic_load(&sv.t_kill);
	int closing = !strcmp(o.scenario, "close");
	int stream = !strcmp(o.scenario, "stream"), sending = !strcmp(o.scenario, "send");
	int need_tx = stream || sending, need_rx = !sending;
	double tx_ms = sv.tx.done && tk ? (double)(int64_t)(sv.tx.t - tk) / 1e6 : -1;
	double rx_ms = sv.rx.done && tk ? (double)(int64_t)(sv.rx.t - tk) / 1e6 : -1;
	double max_ms = 0;
	int ok = rep.hs_ok && !sv.mismatch && !hang;
	if (!closing)
		ok = ok && tk;
	if (need_tx) {
		ok = ok && acceptable(&sv.tx);
		if (tx_ms > max_ms)
			max_ms = tx_ms;
	}
	if (need_rx) {
		ok = ok && acceptable(&sv.rx);
		if (rx_ms > max_ms)
			max_ms = rx_ms;
	}
	if (!closing && max_ms >= o.limit_ms)
		ok = 0;
	static const char *styles[] = {"blocking", "poll", "epoll"};
	printf(
	    "{\"role\": \"survivor\", \"listening_side\": %d, \"scenario\": \"%s\", "
	    "\"style\": \"%s\", \"handshake_ok\": %d, \"preloaded\": %d, \"mode\": %u, "
	    "\"tx_shm\": %llu, \"rx_shm\": %llu, \"killed\": %d, \"sent_after_handshake\": %llu, "
	    "\"received_after_handshake\": %llu, \"mismatch\": %d, \"hang\": %d, "
	    "\"tx_result\": \"%s\", \"tx_ms\": %.3f, \"rx_result\": \"%s\", \"rx_ms\": %.3f, "
	    "\"max_ms\": %.3f, \"rx_end_ns\": %llu, \"ok\": %d}\n",
	    o.listen, o.scenario, styles[o.style], rep.hs_ok, rep.preloaded, rep.st.mode,
	    (unsigned long long)rep.st.tx_shm_bytes, (unsigned long long)rep.st.rx_shm_bytes,
	    tk != 0, (unsigned long long)atomic_load(&sv.sent),
	    (unsigned long long)atomic_load(&sv.recvd), sv.mismatch, hang,
	    need_tx ? result_name(&sv.tx) : "-", tx_ms, need_rx ? result_name(&sv.rx) : "-", rx_ms,
	    max_ms, (unsigned long long)sv.rx.t, ok);
	fflush(stdout);
	/* A thread may still be stuck in a call (the failure being reported): do not wait. */
	_exit(ok ? 0 : 1);
}

static void *watchdog(void *arg)
{
	uint64_t start = *(uint64_t *)arg;
	while (!overdue(start))
		usleep(10000);
	report(1);
	return NULL;
}

static int run_survivor(void)
{
	signal(SIGPIPE, SIG_IGN);
	sv.fd = connection();
	struct hello h;
	if (io_all(sv.fd, &h, sizeof(h), 1) < 0 || memcmp(h.magic, HELLO_MAGIC, 8) != 0)
		die("hello");
	sv.peer = (pid_t)h.pid;
	uint8_t *a = malloc(HS_BYTES), *b = malloc(HS_BYTES);
	rep.hs_ok = 1;
	for (int round = 0; round < HS_ROUNDS; round++) {
		uint32_t len = HS_BYTES;
		for (uint32_t i = 0; i < HS_BYTES; i++)
			a[i] = (uint8_t)(i * 31 + 7 + (uint32_t)round);
		if (io_all(sv.fd, &len, sizeof(len), 0) < 0 || io_all(sv.fd, a, HS_BYTES, 0) < 0 ||
		    io_all(sv.fd, b, HS_BYTES, 1) < 0)
			die("handshake");
		rep.hs_ok &= memcmp(a, b, HS_BYTES) == 0;
		rep.preloaded = stats_fn && stats_fn(sv.fd, &rep.st) == 0;
		if (rep.preloaded ? rep.st.mode == NEARSOCK_MODE_SHM && rep.st.tx_shm_bytes &&
		                        rep.st.rx_shm_bytes
		                  : round >= 1)
			break;
	}
	uint32_t zero = 0;
	if (io_all(sv.fd, &zero, sizeof(zero), 0) < 0)
		die("handshake");

	static uint64_t start;
	start = now_ns();
	pthread_t kt, wt;
	pthread_create(&wt, NULL, watchdog, &start);
	if (strcmp(o.scenario, "close") != 0)
		pthread_create(&kt, NULL, killer, NULL);
	if (o.style == ST_BLOCKING)
		survive_blocking();
	else
		survive_nonblocking();
	atomic_store(&sv.stop, 1);
	report(0);
	return 1;
}

int main(int argc, char **argv)
{
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	if (argc < 2) {
	usage:
		fprintf(stderr, "usage: nsk_kill peer (--listen P | --connect P) [--addr A] "
		                "[--behave echo|sink|quiet|close] [--close-ms M]\n"
		                "       nsk_kill survivor (--listen P | --connect P) [--addr A] "
		                "[--scenario stream|send|recv|close] [--style blocking|poll|epoll] "
		                "[--after BYTES] [--limit-ms MS]\n");
		return 2;
	}
	int peer = !strcmp(argv[1], "peer");
	if (!peer && strcmp(argv[1], "survivor"))
		goto usage;
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (!strcmp(a, "--listen")) {
			o.listen = 1;
			o.port = atoi(v);
		} else if (!strcmp(a, "--connect")) {
			o.listen = 0;
			o.port = atoi(v);
		} else if (!strcmp(a, "--addr"))
			o.addr = v;
		else if (!strcmp(a, "--behave"))
			o.behave = v;
		else if (!strcmp(a, "--scenario"))
			o.scenario = v;
		else if (!strcmp(a, "--style"))
			o.style = !strcmp(v, "poll")    ? ST_POLL
			          : !strcmp(v, "epoll") ? ST_EPOLL
			                                : ST_BLOCKING;
		else if (!strcmp(a, "--after"))
			o.after = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--limit-ms"))
			o.limit_ms = atoi(v);
		else if (!strcmp(a, "--close-ms"))
			o.close_ms = atoi(v);
		else
			goto usage;
	}
	return peer ? run_peer() : run_survivor();
}
