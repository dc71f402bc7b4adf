/* SPDX-License-Identifier: MIT */
/* nsk_udp.c — UDP test driver for the integration tests (tests/integ/udp_*.sh). Runs with
 * and without libnearsock.so preloaded; finds nearsock_udp_stats() with dlsym and prints it.
 *
 *   nsk_udp server --addr A [--port P] [--style block|poll|epoll]
 *       echo every datagram to its source until an END datagram; prints {"listening": P}
 *       first and one JSON line of counters at the end (after --ends N END datagrams).
 *   nsk_udp client --addr A --port P --count N [--seed S] [--window-bytes B] [--max-size M]
 *       N datagrams of random sizes (1..65507, mostly small) with contents derived from
 *       (seed, sequence number); every echo must come back in order, byte for byte (so a
 *       wake-up datagram reaching the application is a failure); prints one JSON line.
 *   nsk_udp drops --count N
 *       a receiver that does not read, a non-blocking sender: sent = received + dropped,
 *       exactly, with nearsock's counters on both sides.
 *   nsk_udp features
 *       MSG_PEEK, MSG_TRUNC, zero-length datagrams, connected UDP, IPv6, dual-stack and
 *       wildcard binds (source addresses as the kernel reports them), sendmmsg/recvmmsg,
 *       poll/select/epoll readiness, FIONREAD, MSG_DONTWAIT/EAGAIN.
 * Exit 0 pass, 1 fail. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

#define END_MAGIC 0x454e4421u
#define MAXD 65507

static int (*stats_fn)(int, struct nearsock_udp_stats *);
static int failures;

#define CHECK(c, ...)                                                                              \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);                        \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			fflush(stdout);                                                            \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Datagram @seq of a run: size and contents are functions of (seed, seq). */
static size_t max_size = MAXD;

static size_t dgram_len(uint64_t seed, uint64_t seq)
{
	size_t n = 0;
	uint64_t r = mix(seed * 31 + seq);
	unsigned p = (unsigned)(r % 100);
	r >>= 8;
	if (p < 80)
		n = 1 + r % 128;
	else if (p < 95)
		n = 129 + r % (2048 - 128);
	else if (p < 99)
		n = 2049 + r % (16384 - 2048);
	else
		n = 16385 + r % (MAXD - 16384);
	return n > max_size ? 1 + n % max_size : n;
}

static void dgram_fill(uint64_t seed, uint64_t seq, uint8_t *b, size_t n)
{
	uint64_t x = mix(seed ^ (seq << 20) ^ 0x5555);
	for (size_t i = 0; i < n; i++) {
		if ((i & 7) == 0)
			x = mix(x + i);
		b[i] = (uint8_t)(x >> ((i & 7) * 8));
	}
	if (n >= 4)
		memcpy(b, &seq, 4); /* the sequence number first (low 32 bits) */
}

static int get_stats(int fd, struct nearsock_udp_stats *st)
{
	memset(st, 0, sizeof(*st));
	return stats_fn ? stats_fn(fd, st) : -1;
}

static void print_stats(const char *role, int fd, const char *extra)
{
	struct nearsock_udp_stats st;
	int have = get_stats(fd, &st) == 0;
	printf("{\"role\": \"%s\", \"preloaded\": %d, \"inbox\": %u, \"tx_shm\": %llu, "
	       "\"rx_shm\": %llu, \"tx_kernel\": %llu, \"rx_kernel\": %llu, \"tx_drops\": %llu, "
	       "\"inbox_drops\": %llu, \"inbox_enqueued\": %llu, \"wakeups_sent\": %llu, "
	       "\"wakeups_filtered\": %llu, \"wakeups_deferred\": %llu, \"inbox_corrupt\": %llu%s}\n",
	       role, have, st.inbox, (unsigned long long)st.tx_shm, (unsigned long long)st.rx_shm,
	       (unsigned long long)st.tx_kernel, (unsigned long long)st.rx_kernel,
	       (unsigned long long)st.tx_drops, (unsigned long long)st.inbox_drops,
	       (unsigned long long)st.inbox_enqueued, (unsigned long long)st.wakeups_sent,
	       (unsigned long long)st.wakeups_filtered, (unsigned long long)st.wakeups_deferred,
	       (unsigned long long)st.inbox_corrupt, extra ? extra : "");
	fflush(stdout);
}

static socklen_t make_addr(const char *a, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in = (void *)ss;
	struct sockaddr_in6 *in6 = (void *)ss;
	if (inet_pton(AF_INET, a, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		return sizeof(*in);
	}
	if (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		return sizeof(*in6);
	}
	fprintf(stderr, "bad address %s\n", a);
	exit(2);
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return -1;
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int udp_bound(const char *addr, int port, int v6only)
{
	struct sockaddr_storage ss;
	socklen_t l = make_addr(addr, port, &ss);
	int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	if (ss.ss_family == AF_INET6 && v6only >= 0)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	if (bind(fd, (struct sockaddr *)&ss, l) < 0) {
		fprintf(stderr, "bind %s:%d: %s\n", addr, port, strerror(errno));
		exit(1);
	}
	return fd;
}

/* ---------------------------------------------------------------- echo server ------- */

static int wait_in(int fd, const char *style, int epfd)
{
	if (!strcmp(style, "poll")) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		return poll(&p, 1, -1) == 1 && (p.revents & POLLIN) ? 0 : -1;
	}
	if (!strcmp(style, "select")) {
		fd_set r;
		FD_ZERO(&r);
		FD_SET(fd, &r);
		return select(fd + 1, &r, NULL, NULL, NULL) == 1 && FD_ISSET(fd, &r) ? 0 : -1;
	}
	if (!strcmp(style, "epoll")) {
		struct epoll_event ev;
		int n;
		do
			n = epoll_wait(epfd, &ev, 1, -1);
		while (n < 0 && errno == EINTR);
		return n == 1 && (ev.events & EPOLLIN) ? 0 : -1;
	}
	return 0;
}

static int run_server(const char *addr, int port, const char *style, int ends)
{
	int fd = udp_bound(addr, port, -1);
	int nb = strcmp(style, "block") != 0;
	int epfd = -1;
	if (!strcmp(style, "epoll")) {
		epfd = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
	printf("{\"listening\": %d}\n", port_of(fd));
	fflush(stdout);
	static uint8_t buf[MAXD + 1];
	uint64_t n = 0, bytes = 0, spurious = 0;
	for (;;) {
		if (nb && wait_in(fd, style, epfd) < 0) {
			perror("wait");
			return 1;
		}
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(fd, buf, sizeof(buf), nb ? MSG_DONTWAIT : 0,
				     (struct sockaddr *)&from, &fl);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (nb && errno == EAGAIN) {
				spurious++; /* readiness with nothing to read */
				continue;
			}
			perror("recvfrom");
			return 1;
		}
		uint32_t m = 0;
		if (r >= 4)
			memcpy(&m, buf, 4);
		if (r == 8 && m == END_MAGIC) {
			sendto(fd, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
			if (--ends > 0)
				continue; /* more clients to come (a retried END counts again: the
					   * client stops retrying once echoed) */
			char extra[160];
			snprintf(extra, sizeof(extra),
				 ", \"received\": %llu, \"bytes\": %llu, \"spurious\": %llu",
				 (unsigned long long)n, (unsigned long long)bytes,
				 (unsigned long long)spurious);
			print_stats("server", fd, extra);
			return 0;
		}
		n++;
		bytes += (uint64_t)r;
		if (sendto(fd, buf, (size_t)r, 0, (struct sockaddr *)&from, fl) != r) {
			perror("sendto");
			return 1;
		}
	}
}

/* ---------------------------------------------------------------- echo client ------- */

static int run_client(const char *addr, int port, uint64_t count, uint64_t seed, size_t wbytes)
{
	struct sockaddr_storage dst;
	socklen_t dl = make_addr(addr, port, &dst);
	int fd = socket(dst.ss_family, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	static uint8_t out[MAXD + 1], in[MAXD + 1];
	uint64_t next_send = 0, next_recv = 0, bad = 0, bad_src = 0, lost = 0;
	size_t outstanding = 0;
	uint64_t t0 = now_ns();
	int my_port = -1;
	while (next_recv < count) {
		while (next_send < count && (next_send == next_recv || outstanding < wbytes) &&
		       next_send - next_recv < 64) {
			size_t n = dgram_len(seed, next_send);
			dgram_fill(seed, next_send, out, n);
			if (sendto(fd, out, n, 0, (struct sockaddr *)&dst, dl) != (ssize_t)n) {
				printf("FAIL sendto %llu: %s\n", (unsigned long long)next_send,
				       strerror(errno));
				return 1;
			}
			if (my_port < 0)
				my_port = port_of(fd);
			outstanding += n;
			next_send++;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, 2000);
		if (pr == 0) {
			/* Nothing for 2 s: what is outstanding is lost. */
			lost += next_send - next_recv;
			for (; next_recv < next_send; next_recv++)
				outstanding -= dgram_len(seed, next_recv);
			continue;
		}
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(fd, in, sizeof(in), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			perror("recvfrom");
			return 1;
		}
		if (fl != dl || memcmp(&from, &dst, dl) != 0)
			bad_src++;
		size_t n = dgram_len(seed, next_recv);
		dgram_fill(seed, next_recv, out, n);
		if ((size_t)r != n || memcmp(in, out, n) != 0) {
			/* A datagram lost on the way (kernel path): resynchronise on a later one. */
			for (uint64_t j = next_recv + 1; j < next_send; j++) {
				size_t nj = dgram_len(seed, j);
				if ((size_t)r != nj)
					continue;
				dgram_fill(seed, j, out, nj);
				if (memcmp(in, out, nj) == 0) {
					for (; next_recv < j; next_recv++, lost++)
						outstanding -= dgram_len(seed, next_recv);
					n = nj;
					break;
				}
			}
		}
		if ((size_t)r != n || memcmp(in, out, n) != 0) {
			if (bad < 5)
				printf("mismatch at %llu: got %zd bytes, expected %zu\n",
				       (unsigned long long)next_recv, r, n);
			bad++;
		}
		outstanding -= n;
		next_recv++;
	}
	double secs = (double)(now_ns() - t0) * 1e-9;
	/* End: the server reports and echoes the END datagram. */
	uint8_t end[8];
	uint32_t m = END_MAGIC;
	memcpy(end, &m, 4);
	memset(end + 4, 0, 4);
	int acked = 0;
	for (int i = 0; i < 50 && !acked; i++) {
		sendto(fd, end, sizeof(end), 0, (struct sockaddr *)&dst, dl);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		while (poll(&p, 1, 100) == 1) {
			ssize_t r = recv(fd, in, sizeof(in), MSG_DONTWAIT);
			if (r == 8 && !memcmp(in, end, 4)) {
				acked = 1;
				break;
			}
		}
	}
	char extra[320];
	snprintf(extra, sizeof(extra),
		 ", \"count\": %llu, \"echoed\": %llu, \"bad\": %llu, \"bad_src\": %llu, "
		 "\"lost\": %llu, \"acked\": %d, \"port\": %d, \"secs\": %.3f, \"dgrams_s\": %.0f",
		 (unsigned long long)count, (unsigned long long)(count - lost), (unsigned long long)bad,
		 (unsigned long long)bad_src, (unsigned long long)lost, acked, my_port, secs,
		 (double)count / secs);
	print_stats("client", fd, extra);
	return bad || bad_src || !acked ? 1 : 0;
}

/* ---------------------------------------------------------------- drops ------------- */

static int run_drops(uint64_t count)
{
	int r = udp_bound("127.0.0.1", 0, -1);
	int port = port_of(r);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage dst;
	socklen_t dl = make_addr("127.0.0.1", port, &dst);
	uint8_t b[100];
	memset(b, 7, sizeof(b));
	uint64_t ok = 0;
	for (uint64_t i = 0; i < count; i++) {
		memcpy(b, &i, sizeof(i));
		if (sendto(s, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&dst, dl) == sizeof(b))
			ok++;
	}
	uint64_t got = 0, last = 0, order = 0;
	int first = 1;
	for (;;) {
		ssize_t n = recv(r, b, sizeof(b), MSG_DONTWAIT);
		if (n < 0)
			break;
		uint64_t seq;
		memcpy(&seq, b, sizeof(seq));
		if (!first && seq <= last)
			order++;
		first = 0;
		last = seq;
		got++;
	}
	struct nearsock_udp_stats ss, rs;
	int have = get_stats(s, &ss) == 0 && get_stats(r, &rs) == 0;
	printf("{\"role\": \"drops\", \"preloaded\": %d, \"sent\": %llu, \"send_ok\": %llu, "
	       "\"received\": %llu, \"out_of_order\": %llu, \"tx_shm\": %llu, \"tx_drops\": %llu, "
	       "\"inbox_drops\": %llu, \"inbox_enqueued\": %llu, \"rx_shm\": %llu, \"rx_kernel\": %llu}\n",
	       have, (unsigned long long)count, (unsigned long long)ok, (unsigned long long)got,
	       (unsigned long long)order, (unsigned long long)ss.tx_shm,
	       (unsigned long long)ss.tx_drops, (unsigned long long)rs.inbox_drops,
	       (unsigned long long)rs.inbox_enqueued, (unsigned long long)rs.rx_shm,
	       (unsigned long long)rs.rx_kernel);
	if (have) {
		CHECK(ok == count, "every send succeeds, as with the kernel");
		CHECK(got + rs.inbox_drops == count, "received %llu + dropped %llu != sent %llu",
		      (unsigned long long)got, (unsigned long long)rs.inbox_drops,
		      (unsigned long long)count);
		CHECK(ss.tx_drops == rs.inbox_drops, "sender counted %llu drops, inbox %llu",
		      (unsigned long long)ss.tx_drops, (unsigned long long)rs.inbox_drops);
		CHECK(rs.inbox_enqueued == got && rs.rx_shm == got, "enqueued %llu, rx_shm %llu, got %llu",
		      (unsigned long long)rs.inbox_enqueued, (unsigned long long)rs.rx_shm,
		      (unsigned long long)got);
		CHECK(rs.inbox_drops > 0 && got > 0, "the test must overflow the inbox");
		CHECK(order == 0, "datagrams from one sender arrive in order");
	}
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------- features ---------- */

static int shm_used(int fd, int tx)
{
	struct nearsock_udp_stats st;
	if (get_stats(fd, &st) < 0)
		return 1; /* not preloaded: nothing to prove */
	return tx ? st.tx_shm > 0 : st.rx_shm > 0;
}

static void expect_from(const struct sockaddr_storage *from, socklen_t fl, int fam,
			const char *addr, int port, const char *what)
{
	struct sockaddr_storage want;
	socklen_t wl = make_addr(addr, port, &want);
	CHECK(fam == want.ss_family && fl == wl && memcmp(from, &want, wl) == 0,
	      "%s: source address differs from %s:%d (family %d, len %u)", what, addr, port,
	      from->ss_family, (unsigned)fl);
}

static void feat_basic(void)
{
	int r = udp_bound("127.0.0.1", 0, -1), rp = port_of(r);
	int s = udp_bound("127.0.0.1", 0, -1), sp = port_of(s);
	struct sockaddr_storage d, from;
	socklen_t dl = make_addr("127.0.0.1", rp, &d), fl;
	char b[256];
	/* MSG_PEEK then a real read; MSG_TRUNC reports the real length. */
	CHECK(sendto(s, "hello world", 11, 0, (struct sockaddr *)&d, dl) == 11, "sendto");
	CHECK(sendto(s, "", 0, 0, (struct sockaddr *)&d, dl) == 0, "zero-length sendto");
	struct pollfd p = {.fd = r, .events = POLLIN};
	CHECK(poll(&p, 1, 2000) == 1 && (p.revents & POLLIN), "poll: readable");
	int avail = -1;
	CHECK(ioctl(r, FIONREAD, &avail) == 0 && avail == 11, "FIONREAD %d, expected 11", avail);
	fl = sizeof(from);
	CHECK(recvfrom(r, b, 5, MSG_PEEK, (struct sockaddr *)&from, &fl) == 5 && !memcmp(b, "hello", 5),
	      "MSG_PEEK");
	expect_from(&from, fl, from.ss_family, "127.0.0.1", sp, "peek");
	struct iovec iov = {b, 4};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	CHECK(recvmsg(r, &m, MSG_TRUNC) == 11 && (m.msg_flags & MSG_TRUNC) && !memcmp(b, "hell", 4),
	      "MSG_TRUNC returns the datagram length and sets msg_flags");
	fl = sizeof(from);
	CHECK(recvfrom(r, b, sizeof(b), 0, (struct sockaddr *)&from, &fl) == 0, "zero-length datagram");
	expect_from(&from, fl, from.ss_family, "127.0.0.1", sp, "zero-length");
	CHECK(recv(r, b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN, "MSG_DONTWAIT: EAGAIN");
	p.revents = 0;
	CHECK(poll(&p, 1, 0) == 0, "poll: nothing left");
	CHECK(shm_used(s, 1) && shm_used(r, 0), "the datagrams went through the inbox");
	/* Connected UDP: send/recv without addresses; datagrams from others are dropped. */
	CHECK(connect(s, (struct sockaddr *)&d, dl) == 0, "connect");
	struct sockaddr_storage sd;
	socklen_t sdl = make_addr("127.0.0.1", sp, &sd);
	CHECK(connect(r, (struct sockaddr *)&sd, sdl) == 0, "connect back");
	int o = udp_bound("127.0.0.1", 0, -1);
	CHECK(sendto(o, "intruder", 8, 0, (struct sockaddr *)&d, dl) == 8, "sendto from a third");
	CHECK(send(s, "ping", 4, 0) == 4, "send on connected");
	CHECK(recv(r, b, sizeof(b), 0) == 4 && !memcmp(b, "ping", 4),
	      "connected receiver gets only its peer's datagram");
	CHECK(write(r, "pong", 4) == 4, "write on connected");
	CHECK(read(s, b, sizeof(b)) == 4 && !memcmp(b, "pong", 4), "read on connected");
	/* sendmmsg / recvmmsg */
	struct mmsghdr mv[4];
	struct iovec iv[4];
	char bufs[4][16];
	for (int i = 0; i < 4; i++) {
		snprintf(bufs[i], sizeof(bufs[i]), "mm%d", i);
		iv[i].iov_base = bufs[i];
		iv[i].iov_len = strlen(bufs[i]);
		memset(&mv[i], 0, sizeof(mv[i]));
		mv[i].msg_hdr.msg_iov = &iv[i];
		mv[i].msg_hdr.msg_iovlen = 1;
	}
	CHECK(sendmmsg(s, mv, 4, 0) == 4, "sendmmsg");
	char rb[4][16];
	struct sockaddr_storage names[4];
	for (int i = 0; i < 4; i++) {
		iv[i].iov_base = rb[i];
		iv[i].iov_len = sizeof(rb[i]);
		mv[i].msg_hdr.msg_name = &names[i];
		mv[i].msg_hdr.msg_namelen = sizeof(names[i]);
	}
	struct timespec tmo = {2, 0};
	int got = 0;
	while (got < 4) {
		int n = recvmmsg(r, mv + got, (unsigned)(4 - got), MSG_WAITFORONE, &tmo);
		if (n <= 0)
			break;
		got += n;
	}
	CHECK(got == 4, "recvmmsg got %d", got);
	for (int i = 0; i < got; i++) {
		CHECK(mv[i].msg_len == 3 && !memcmp(rb[i], bufs[i], 3), "recvmmsg datagram %d", i);
		expect_from(&names[i], mv[i].msg_hdr.msg_namelen, names[i].ss_family, "127.0.0.1", sp,
			    "recvmmsg");
	}
	close(o);
	close(r);
	close(s);
}

/* Family/bind combinations: @raddr receiver bind, @saddr sender bind, @dst, expected
 * source as reported. */
static void feat_addr(const char *raddr, int v6only, const char *saddr, const char *dst,
		      const char *want_src, const char *what)
{
	int r = udp_bound(raddr, 0, v6only), rp = port_of(r);
	struct sockaddr_storage d, from;
	socklen_t dl = make_addr(dst, rp, &d), fl = sizeof(from);
	int s;
	if (saddr) {
		s = udp_bound(saddr, 0, -1);
	} else {
		s = socket(d.ss_family, SOCK_DGRAM, 0); /* unbound: bound at the first send */
	}
	char b[64];
	CHECK(sendto(s, what, strlen(what), 0, (struct sockaddr *)&d, dl) == (ssize_t)strlen(what),
	      "%s: sendto: %s", what, strerror(errno));
	struct pollfd p = {.fd = r, .events = POLLIN};
	CHECK(poll(&p, 1, 2000) == 1, "%s: readable", what);
	ssize_t n = recvfrom(r, b, sizeof(b), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	CHECK(n == (ssize_t)strlen(what) && !memcmp(b, what, (size_t)n), "%s: data", what);
	expect_from(&from, fl, from.ss_family, want_src, port_of(s), what);
	/* The reply reaches the (implicitly) bound sender. */
	CHECK(sendto(r, "re", 2, 0, (struct sockaddr *)&from, fl) == 2, "%s: reply", what);
	p.fd = s;
	CHECK(poll(&p, 1, 2000) == 1 && recv(s, b, sizeof(b), MSG_DONTWAIT) == 2, "%s: reply received",
	      what);
	CHECK(shm_used(s, 1) && shm_used(r, 0), "%s: through the inbox", what);
	close(r);
	close(s);
}

static void feat_epoll(void)
{
	int r = udp_bound("127.0.0.1", 0, -1), rp = port_of(r);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage d;
	socklen_t dl = make_addr("127.0.0.1", rp, &d);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 42}, out[4];
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, r, &ev) == 0, "epoll_ctl");
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "epoll: nothing yet");
	pid_t c = fork();
	if (c == 0) {
		usleep(100000); /* the parent is asleep in epoll_wait by then: a wake-up */
		sendto(s, "e1", 2, 0, (struct sockaddr *)&d, dl);
		_exit(0);
	}
	int n = epoll_wait(ep, out, 4, 3000);
	CHECK(n == 1 && out[0].data.u64 == 42 && (out[0].events & EPOLLIN), "epoll: woken (n=%d)", n);
	CHECK(epoll_wait(ep, out, 4, 0) == 0, "epoll ET: no second report");
	char b[8];
	CHECK(recv(r, b, sizeof(b), MSG_DONTWAIT) == 2, "epoll: the datagram, not a wake-up");
	CHECK(recv(r, b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN, "and nothing else");
	waitpid(c, NULL, 0);
	/* select wakes the same way */
	c = fork();
	if (c == 0) {
		usleep(100000);
		sendto(s, "s1", 2, 0, (struct sockaddr *)&d, dl);
		_exit(0);
	}
	fd_set rs;
	FD_ZERO(&rs);
	FD_SET(r, &rs);
	struct timeval tv = {3, 0};
	CHECK(select(r + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(r, &rs), "select: woken");
	CHECK(recv(r, b, sizeof(b), MSG_DONTWAIT) == 2 && !memcmp(b, "s1", 2), "select: data");
	waitpid(c, NULL, 0);
	/* a blocking recv wakes too */
	c = fork();
	if (c == 0) {
		usleep(100000);
		sendto(s, "b1", 2, 0, (struct sockaddr *)&d, dl);
		_exit(0);
	}
	CHECK(recv(r, b, sizeof(b), 0) == 2 && !memcmp(b, "b1", 2), "blocking recv: data");
	waitpid(c, NULL, 0);
	struct nearsock_udp_stats st;
	if (get_stats(r, &st) == 0) {
		CHECK(st.rx_shm == 3, "rx_shm %llu", (unsigned long long)st.rx_shm);
		CHECK(st.wakeups_filtered >= 1, "wake-ups were needed and filtered (%llu)",
		      (unsigned long long)st.wakeups_filtered);
	}
	close(ep);
	close(r);
	close(s);
}

/* A sender socket used before fork(), used by the child while the receiver sleeps: the
 * child's wake-ups come from its own wake socket and must still never reach the receiver. */
static void feat_fork(void)
{
	int r = udp_bound("127.0.0.1", 0, -1), rp = port_of(r);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_storage d;
	socklen_t dl = make_addr("127.0.0.1", rp, &d);
	char b[64];
	CHECK(sendto(s, "pre", 3, 0, (struct sockaddr *)&d, dl) == 3, "sendto before fork");
	CHECK(recv(r, b, sizeof(b), 0) == 3, "receive before fork");
	pid_t c = fork();
	if (c == 0) {
		usleep(150000); /* the parent sleeps in recv by then */
		sendto(s, "child", 5, 0, (struct sockaddr *)&d, dl);
		usleep(150000);
		sendto(s, "again", 5, 0, (struct sockaddr *)&d, dl);
		_exit(0);
	}
	ssize_t n = recv(r, b, sizeof(b), 0);
	CHECK(n == 5 && !memcmp(b, "child", 5), "child's datagram (got %zd bytes)", n);
	n = recv(r, b, 4, 0); /* a buffer too small to show a whole wake-up datagram */
	CHECK(n == 4 && !memcmp(b, "agai", 4), "second datagram, short buffer (got %zd bytes)", n);
	CHECK(recv(r, b, sizeof(b), MSG_DONTWAIT) < 0 && errno == EAGAIN, "nothing else");
	waitpid(c, NULL, 0);
	close(r);
	close(s);
}

/* A receiver connect()ed to S, asleep: a datagram from another socket O must neither reach
 * it nor use up its wake-up, so that S's datagram then wakes it. */
static void feat_connected_sleeper(void)
{
	int r = udp_bound("127.0.0.1", 0, -1), rp = port_of(r);
	int s = udp_bound("127.0.0.1", 0, -1), sp = port_of(s);
	int o = udp_bound("127.0.0.1", 0, -1);
	struct sockaddr_storage d, sd;
	socklen_t dl = make_addr("127.0.0.1", rp, &d), sdl = make_addr("127.0.0.1", sp, &sd);
	CHECK(connect(r, (struct sockaddr *)&sd, sdl) == 0, "connect");
	char b[16];
	pid_t c = fork();
	if (c == 0) {
		usleep(150000);
		sendto(o, "other", 5, 0, (struct sockaddr *)&d, dl);
		usleep(50000);
		sendto(s, "peer", 4, 0, (struct sockaddr *)&d, dl);
		_exit(0);
	}
	struct timeval tv = {3, 0};
	setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = recv(r, b, sizeof(b), 0);
	CHECK(n == 4 && !memcmp(b, "peer", 4), "the peer's datagram wakes the receiver (got %zd)", n);
	waitpid(c, NULL, 0);
	close(o);
	close(r);
	close(s);
}

/* A thread blocked in recv() on a socket that has no inbox yet; another thread's first send
 * binds the socket and creates the inbox: the reply (through the inbox) must wake it. */
struct waiter {
	int fd;
	ssize_t n;
	char b[16];
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	w->n = recv(w->fd, w->b, sizeof(w->b), 0);
	return NULL;
}

static void feat_early_waiter(void)
{
	int r = udp_bound("127.0.0.1", 0, -1), rp = port_of(r);
	struct sockaddr_storage d, from;
	socklen_t dl = make_addr("127.0.0.1", rp, &d), fl = sizeof(from);
	struct waiter w = {.fd = socket(AF_INET, SOCK_DGRAM, 0), .n = -2};
	struct timeval tv = {3, 0};
	setsockopt(w.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* unbound: the first send binds it (and creates its inbox) */
	pthread_t t;
	pthread_create(&t, NULL, waiter_main, &w);
	usleep(100000); /* the waiter is blocked in the kernel by now */
	CHECK(sendto(w.fd, "q", 1, 0, (struct sockaddr *)&d, dl) == 1, "send from the other thread");
	char b[8];
	CHECK(recvfrom(r, b, sizeof(b), 0, (struct sockaddr *)&from, &fl) == 1, "request");
	CHECK(sendto(r, "answer", 6, 0, (struct sockaddr *)&from, fl) == 6, "reply");
	pthread_join(t, NULL);
	CHECK(w.n == 6 && !memcmp(w.b, "answer", 6), "the blocked thread gets the reply (got %zd)", w.n);
	close(w.fd);
	close(r);
}

static int run_features(void)
{
	feat_basic();
	feat_addr("127.0.0.1", -1, "127.0.0.1", "127.0.0.1", "127.0.0.1", "v4 exact");
	feat_addr("0.0.0.0", -1, NULL, "127.0.0.1", "127.0.0.1", "v4 wildcard, unbound sender");
	feat_addr("::1", 1, "::1", "::1", "::1", "v6 exact");
	feat_addr("::", 0, NULL, "127.0.0.1", "::ffff:127.0.0.1", "dual-stack [::] from v4");
	feat_addr("::", 1, NULL, "::1", "::1", "v6only [::], unbound sender");
	feat_addr("0.0.0.0", -1, NULL, "127.0.0.2", "127.0.0.1", "v4 wildcard via 127.0.0.2");
	feat_epoll();
	feat_fork();
	feat_connected_sleeper();
	feat_early_waiter();
	printf("{\"role\": \"features\", \"failures\": %d}\n", failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_udp_stats");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: nsk_udp server|client|drops|features [options]\n");
		return 2;
	}
	const char *addr = "127.0.0.1", *style = "block";
	int port = 0, ends = 1;
	uint64_t count = 1000, seed = 1;
	size_t wbytes = 96 << 10;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--addr"))
			addr = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--style"))
			style = argv[i + 1];
		else if (!strcmp(argv[i], "--max-size"))
			max_size = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--ends"))
			ends = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--window-bytes"))
			wbytes = strtoull(argv[i + 1], NULL, 0);
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!strcmp(argv[1], "server"))
		return run_server(addr, port, style, ends);
	if (!strcmp(argv[1], "client"))
		return run_client(addr, port, count, seed, wbytes);
	if (!strcmp(argv[1], "drops"))
		return run_drops(count);
	if (!strcmp(argv[1], "features"))
		return run_features();
	fprintf(stderr, "unknown mode %s\n", argv[1]);
	return 2;
}
