/* SPDX-License-Identifier: MIT */
/* nsk_sem — socket semantics on connections that run through shared memory, with the
 * kernel as the reference: every case runs without the library too ("--plain") and must
 * behave the same; preloaded, each case also checks that the connection was on shared
 * memory while it ran.
 *
 *   dup        dup/dup2/dup3/F_DUPFD/F_DUPFD_CLOEXEC copies share one stream; closing copies
 *              leaves the last one working; reused fd numbers start fresh
 *   threads    one thread sends while another receives, on both ends at once (64 MiB each way,
 *              checked); 4 threads blocked in accept (200 connections, each accepted once);
 *              SO_REUSEPORT listeners; 2000 connections over 4 threads
 *   flags      MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT, MSG_MORE/TCP_CORK, FIONREAD/SIOCINQ/SIOCOUTQ,
 *              SO_RCVTIMEO, SO_SNDTIMEO, SO_RCVLOWAT (recv and poll), SO_LINGER {1,0} (reset),
 *              non-blocking connect (EINPROGRESS, POLLOUT, SO_ERROR, ECONNREFUSED), accept4
 *              and socket flags, sendfile (with and without offset), splice both ways,
 *              copy_file_range to a socket (same errno as the kernel), sendmmsg/recvmmsg
 *   signals    EINTR from blocking recv/send/accept/poll/epoll_wait/select without SA_RESTART,
 *              restarted recv/send/accept with SA_RESTART, poll timeout honoured,
 *              pthread_cancel of a thread blocked in recv (no lock left held)
 * Exit 0 on success; the first failure is printed. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
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
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);
static int plain;

#define FAIL(...)                                                                          \
	do {                                                                               \
		fprintf(stderr, "nsk_sem: " __VA_ARGS__);                                  \
		fputc('\n', stderr);                                                       \
		exit(1);                                                                   \
	} while (0)
#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			FAIL(__VA_ARGS__);                                                 \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int is_shm(int fd)
{
	struct nearsock_conn_stats st;
	return stats_fn && stats_fn(fd, &st) == 0 && st.mode == NEARSOCK_MODE_SHM;
}

static int listener_on(int port, int reuseport)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport)
		setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 1024) == 0, "listen: %s",
	      strerror(errno));
	return l;
}

static int port_of(int l)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	getsockname(l, (struct sockaddr *)&a, &al);
	return ntohs(a.sin_port);
}

static int dial(int port)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	return c;
}

static void xsend(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		CHECK(w > 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

static void xrecv(int fd, void *p, size_t n)
{
	char *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r > 0, "recv: %s", r ? strerror(errno) : "EOF");
		b += r;
		n -= (size_t)r;
	}
}

/* A connected pair in this process, on shared memory when preloaded. */
static void pair(int *a, int *b)
{
	int l = listener_on(0, 0);
	*a = dial(port_of(l));
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(*b >= 0, "accept: %s", strerror(errno));
	close(l);
	char buf[4096];
	for (int i = 0; i < 4; i++) {
		memset(buf, 'w', sizeof(buf));
		xsend(*a, buf, sizeof(buf));
		xrecv(*b, buf, sizeof(buf));
		xsend(*b, buf, sizeof(buf));
		xrecv(*a, buf, sizeof(buf));
	}
	CHECK(plain || (is_shm(*a) && is_shm(*b)), "pair not on shared memory");
}

/* ------------------------------------------------------------------ dup ------------- */

static void expect(int fd, const char *msg)
{
	char buf[64] = {0};
	xrecv(fd, buf, strlen(msg));
	CHECK(!memcmp(buf, msg, strlen(msg)), "expected '%s', got '%.*s'", msg, (int)strlen(msg), buf);
}

static int t_dup(void)
{
	int a, b;
	pair(&a, &b);
	int d[5];
	d[0] = dup(a);
	d[1] = dup2(a, 100);
	d[2] = dup3(a, 101, O_CLOEXEC);
	d[3] = fcntl(a, F_DUPFD, 200);
	d[4] = fcntl(a, F_DUPFD_CLOEXEC, 300);
	CHECK(d[1] == 100 && d[2] == 101 && d[3] >= 200 && d[4] >= 300, "dup numbers");
	CHECK(!(fcntl(d[1], F_GETFD) & FD_CLOEXEC) && (fcntl(d[2], F_GETFD) & FD_CLOEXEC) &&
	      (fcntl(d[4], F_GETFD) & FD_CLOEXEC), "dup close-on-exec flags");
	for (int i = 0; i < 5; i++) {
		char m[16];
		snprintf(m, sizeof(m), "via-copy-%d", i);
		xsend(d[i], m, strlen(m));
		expect(b, m);
		xsend(b, m, strlen(m));
		expect(d[(i + 1) % 5], m);
	}
	close(a);
	for (int i = 0; i < 4; i++)
		close(d[i]);
	xsend(d[4], "last-copy", 9);
	expect(b, "last-copy");
	xsend(b, "back", 4);
	expect(d[4], "back");
	CHECK(plain || is_shm(d[4]), "last copy not on shared memory");
	/* dup2 over a live connection closes that one: its peer sees EOF */
	int x, y;
	pair(&x, &y);
	CHECK(dup2(d[4], x) == x, "dup2 over a socket");
	char c;
	CHECK(recv(y, &c, 1, 0) == 0, "peer of a socket replaced by dup2 did not see EOF");
	xsend(x, "replaced", 8);
	expect(b, "replaced");
	close(x);
	close(y);
	close(d[4]);
	close(b);
	/* reused numbers: fresh connections start with fresh counters */
	int p, q;
	pair(&p, &q);
	struct nearsock_conn_stats st;
	if (!plain) {
		CHECK(stats_fn(p, &st) == 0 && st.tx_shm_bytes + st.tx_tcp_bytes <= 4 * 4096,
		      "a reused fd number shows stale counters (%llu bytes)",
		      (unsigned long long)(st.tx_shm_bytes + st.tx_tcp_bytes));
	}
	close(p);
	close(q);
	return 0;
}

/* ------------------------------------------------------------------ threads --------- */

#define STREAM (64u << 20)

static uint8_t pat(uint64_t i, int dir)
{
	uint64_t x = (i + (uint64_t)dir * 0x1234567) * 0x9e3779b97f4a7c15ull;
	return (uint8_t)(x >> 57);
}

struct dirarg {
	int fd, dir;
};

static void *sender(void *arg)
{
	struct dirarg *d = arg;
	static __thread uint8_t buf[65536];
	for (uint64_t off = 0; off < STREAM;) {
		size_t n = 1 + (size_t)((off * 7919) % sizeof(buf));
		if (n > STREAM - off)
			n = (size_t)(STREAM - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i, d->dir);
		xsend(d->fd, buf, n);
		off += n;
	}
	return NULL;
}

static void *receiver(void *arg)
{
	struct dirarg *d = arg;
	static __thread uint8_t buf[65536];
	for (uint64_t off = 0; off < STREAM;) {
		ssize_t r = recv(d->fd, buf, sizeof(buf), 0);
		CHECK(r > 0, "threads: recv: %s", r ? strerror(errno) : "EOF");
		for (ssize_t i = 0; i < r; i++)
			CHECK(buf[i] == pat(off + (uint64_t)i, d->dir), "threads: byte %llu differs",
			      (unsigned long long)(off + (uint64_t)i));
		off += (uint64_t)r;
	}
	return NULL;
}

static int acc_listener;
static atomic_int acc_count;
static int acc_fds[200];

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int c = accept4(acc_listener, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return NULL; /* listener shut down */
		}
		int k = atomic_fetch_add(&acc_count, 1);
		if (k < 200)
			acc_fds[k] = c;
		if (k >= 199)
			return NULL;
	}
}

struct many_arg {
	int port, n, shm;
};

static void *many_worker(void *arg)
{
	struct many_arg *m = arg;
	int l = listener_on(0, 0);
	int port = port_of(l);
	for (int i = 0; i < m->n; i++) {
		int a = dial(port), b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		CHECK(b >= 0, "many: accept: %s", strerror(errno));
		char q[32], r[32];
		for (int k = 0; k < 3; k++) {
			int len = snprintf(q, sizeof(q), "req-%d-%d", i, k);
			xsend(a, q, (size_t)len);
			xrecv(b, r, (size_t)len);
			CHECK(!memcmp(q, r, (size_t)len), "many: request");
			xsend(b, r, (size_t)len);
			xrecv(a, q, (size_t)len);
			CHECK(!memcmp(q, r, (size_t)len), "many: response");
		}
		m->shm += is_shm(a) && is_shm(b);
		close(a);
		close(b);
	}
	close(l);
	return NULL;
}

static int t_threads(void)
{
	/* concurrent send and recv on one socket, both ends */
	int a, b;
	pair(&a, &b);
	struct dirarg d[4] = {{a, 0}, {b, 0}, {b, 1}, {a, 1}};
	pthread_t t[4];
	pthread_create(&t[0], NULL, sender, &d[0]);
	pthread_create(&t[1], NULL, receiver, &d[1]);
	pthread_create(&t[2], NULL, sender, &d[2]);
	pthread_create(&t[3], NULL, receiver, &d[3]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(plain || (is_shm(a) && is_shm(b)), "threads: not on shared memory");
	close(a);
	close(b);

	/* several threads blocked in accept */
	acc_listener = listener_on(0, 0);
	int port = port_of(acc_listener);
	pthread_t at[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&at[i], NULL, acceptor, NULL);
	usleep(50000);
	int cl[200];
	for (int i = 0; i < 200; i++)
		cl[i] = dial(port);
	for (int i = 0; i < 400 && atomic_load(&acc_count) < 200; i++)
		usleep(10000);
	CHECK(atomic_load(&acc_count) == 200, "accept threads: %d of 200 accepted",
	      atomic_load(&acc_count));
	shutdown(acc_listener, SHUT_RDWR); /* wakes the remaining acceptors */
	for (int i = 0; i < 4; i++)
		pthread_join(at[i], NULL);
	close(acc_listener);
	for (int i = 0; i < 200; i++) {
		close(cl[i]);
		close(acc_fds[i]);
	}

	/* SO_REUSEPORT: two listeners on one port share the connections */
	int l1 = listener_on(0, 1);
	int rp = port_of(l1);
	int l2 = listener_on(rp, 1);
	int got1 = 0, got2 = 0, shm = 0;
	for (int i = 0; i < 40; i++) {
		int c = dial(rp);
		struct pollfd p[2] = {{.fd = l1, .events = POLLIN}, {.fd = l2, .events = POLLIN}};
		CHECK(poll(p, 2, 5000) > 0, "reuseport: no listener readable");
		int s = accept4((p[0].revents & POLLIN) ? l1 : l2, NULL, NULL, SOCK_CLOEXEC);
		CHECK(s >= 0, "reuseport accept");
		(p[0].revents & POLLIN) ? got1++ : got2++;
		char m[8] = "rp-msg1", r[8];
		for (int k = 0; k < 3; k++) {
			xsend(c, m, sizeof(m));
			xrecv(s, r, sizeof(r));
			xsend(s, r, sizeof(r));
			xrecv(c, r, sizeof(r));
			CHECK(!memcmp(m, r, sizeof(m)), "reuseport data");
		}
		shm += is_shm(c) && is_shm(s);
		close(c);
		close(s);
	}
	CHECK(got1 + got2 == 40, "reuseport: accepted %d", got1 + got2);
	CHECK(plain || shm == 40, "reuseport: %d of 40 on shared memory", shm);
	close(l1);
	close(l2);

	/* 2000 connections over 4 threads */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 8192 && rl.rlim_max >= 8192) {
		rl.rlim_cur = 8192;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct many_arg m[4];
	pthread_t mt[4];
	for (int i = 0; i < 4; i++) {
		m[i] = (struct many_arg){.n = 500};
		pthread_create(&mt[i], NULL, many_worker, &m[i]);
	}
	int total_shm = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(mt[i], NULL);
		total_shm += m[i].shm;
	}
	CHECK(plain || total_shm == 2000, "many: %d of 2000 connections on shared memory", total_shm);
	printf("{\"case\":\"threads\",\"reuseport\":[%d,%d],\"many_shm\":%d}\n", got1, got2, total_shm);
	return 0;
}

/* ------------------------------------------------------------------ flags ----------- */

static void *late_send(void *arg)
{
	int *fd = arg;
	usleep(100000);
	xsend(*fd, "0123456789", 10);
	usleep(100000);
	static char rest[2000];
	memset(rest, 'r', sizeof(rest));
	xsend(*fd, rest, sizeof(rest));
	return NULL;
}

static void *drip(void *arg)
{
	int *fd = arg;
	char buf[1000];
	memset(buf, 'd', sizeof(buf));
	for (int i = 0; i < 100; i++) {
		xsend(*fd, buf, sizeof(buf));
		if (i % 10 == 0)
			usleep(2000);
	}
	return NULL;
}

static int make_file(const char *path, size_t size, uint32_t *sum)
{
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(f >= 0, "open %s", path);
	uint8_t buf[65536];
	uint32_t h = 2166136261u;
	for (size_t off = 0; off < size;) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			buf[i] = pat(off + i, 7);
			h = (h ^ buf[i]) * 16777619u;
		}
		CHECK(write(f, buf, n) == (ssize_t)n, "write file");
		off += n;
	}
	*sum = h;
	lseek(f, 0, SEEK_SET);
	return f;
}

static uint32_t recv_sum(int fd, size_t size)
{
	uint8_t buf[65536];
	uint32_t h = 2166136261u;
	for (size_t got = 0; got < size;) {
		size_t want = size - got < sizeof(buf) ? size - got : sizeof(buf);
		ssize_t r = recv(fd, buf, want, 0);
		CHECK(r > 0, "recv_sum: %s", r ? strerror(errno) : "EOF");
		for (ssize_t i = 0; i < r; i++)
			h = (h ^ buf[i]) * 16777619u;
		got += (size_t)r;
	}
	return h;
}

struct sum_arg {
	int fd;
	size_t size;
	uint32_t sum;
};

static void *sum_thread(void *arg)
{
	struct sum_arg *s = arg;
	s->sum = recv_sum(s->fd, s->size);
	return NULL;
}

struct file_send {
	int sock, file;
	size_t size;
};

static void *file_sender(void *arg)
{
	struct file_send *fs = arg;
	for (size_t done = 0; done < fs->size;) {
		ssize_t k = sendfile(fs->sock, fs->file, NULL, fs->size - done);
		CHECK(k > 0, "sendfile: %s", strerror(errno));
		done += (size_t)k;
	}
	return NULL;
}

static int t_flags(void)
{
	int a, b;
	pair(&a, &b);
	char buf[200000];
	/* MSG_DONTWAIT on empty */
	CHECK(recv(b, buf, 10, MSG_DONTWAIT) < 0 && errno == EAGAIN, "MSG_DONTWAIT: not EAGAIN");
	/* MSG_PEEK then read */
	xsend(a, "peekaboo", 8);
	usleep(20000);
	int n = 0;
	CHECK(ioctl(b, FIONREAD, &n) == 0 && n == 8, "FIONREAD %d, want 8", n);
	CHECK(ioctl(b, SIOCINQ, &n) == 0 && n == 8, "SIOCINQ %d, want 8", n);
	/* unacknowledged (kernel) or unread (ring) bytes: at most what was sent */
	CHECK(ioctl(a, SIOCOUTQ, &n) == 0 && n >= 0 && n <= 8, "SIOCOUTQ %d, want 0..8", n);
	CHECK(recv(b, buf, 4, MSG_PEEK) == 4 && !memcmp(buf, "peek", 4), "MSG_PEEK");
	CHECK(recv(b, buf, 8, 0) == 8 && !memcmp(buf, "peekaboo", 8), "read after peek");
	usleep(50000); /* the peer's ACK (kernel) */
	CHECK(ioctl(a, SIOCOUTQ, &n) == 0 && n == 0, "SIOCOUTQ %d after the peer read, want 0", n);
	/* MSG_WAITALL against a dripping sender */
	pthread_t t;
	pthread_create(&t, NULL, drip, &a);
	CHECK(recv(b, buf, 100000, MSG_WAITALL) == 100000, "MSG_WAITALL short");
	pthread_join(t, NULL);
	/* MSG_MORE and TCP_CORK: a hint; the bytes arrive complete and in order */
	xsend(a, "head-", 5);
	CHECK(send(a, "more-", 5, MSG_MORE) == 5, "MSG_MORE send");
	xsend(a, "tail", 4);
	expect(b, "head-more-tail");
	int one = 1, zero = 0, v = 0;
	socklen_t vl = sizeof(v);
	CHECK(setsockopt(a, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0, "TCP_CORK on");
	CHECK(getsockopt(a, IPPROTO_TCP, TCP_CORK, &v, &vl) == 0 && v == 1, "TCP_CORK reads back %d", v);
	xsend(a, "cor", 3);
	xsend(a, "ked", 3);
	CHECK(setsockopt(a, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)) == 0, "TCP_CORK off");
	expect(b, "corked");
	/* SO_RCVTIMEO */
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
	setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint64_t t0 = now_ms();
	CHECK(recv(b, buf, 10, 0) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "SO_RCVTIMEO: %s",
	      strerror(errno));
	uint64_t el = now_ms() - t0;
	CHECK(el >= 180 && el < 3000, "SO_RCVTIMEO took %llu ms", (unsigned long long)el);
	tv.tv_usec = 0;
	setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* SO_SNDTIMEO: nobody reads b's side */
	tv.tv_usec = 200000;
	setsockopt(a, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ssize_t w;
	uint64_t sent = 0;
	t0 = now_ms();
	while ((w = send(a, buf, sizeof(buf), 0)) > 0 && now_ms() - t0 < 20000)
		sent += (uint64_t)w;
	CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "SO_SNDTIMEO: %s", strerror(errno));
	tv.tv_usec = 0;
	setsockopt(a, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* drain what was sent */
	for (uint64_t got = 0; got < sent;) {
		ssize_t r = recv(b, buf, sizeof(buf), 0);
		CHECK(r > 0, "drain");
		got += (uint64_t)r;
	}
	/* SO_RCVLOWAT: 10 bytes do not make b readable; 1000 do */
	int lowat = 1000;
	CHECK(setsockopt(b, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0, "SO_RCVLOWAT");
	pthread_create(&t, NULL, late_send, &a);
	usleep(150000); /* the first 10 bytes are there now */
	struct pollfd p = {.fd = b, .events = POLLIN};
	CHECK(poll(&p, 1, 0) == 0, "SO_RCVLOWAT: poll says readable with 10 bytes");
	ssize_t r = recv(b, buf, 4096, 0);
	CHECK(r >= 1000, "SO_RCVLOWAT: recv returned %zd bytes", r);
	pthread_join(t, NULL);
	lowat = 1;
	setsockopt(b, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	CHECK(plain || (is_shm(a) && is_shm(b)), "flags: not on shared memory");

	/* sendfile, with and without an offset; splice both ways; copy_file_range */
	char path[] = "/tmp/nsk_sem.XXXXXX";
	int tmpfd = mkstemp(path);
	close(tmpfd);
	uint32_t fsum;
	size_t fsize = 8u << 20;
	int f = make_file(path, fsize, &fsum);
	struct sum_arg sa = {.fd = b, .size = fsize};
	pthread_create(&t, NULL, sum_thread, &sa);
	for (size_t done = 0; done < fsize;) {
		ssize_t k = sendfile(a, f, NULL, fsize - done);
		CHECK(k > 0, "sendfile: %s", strerror(errno));
		done += (size_t)k;
	}
	pthread_join(t, NULL);
	CHECK(sa.sum == fsum, "sendfile: checksum differs");
	sa.sum = 0;
	pthread_create(&t, NULL, sum_thread, &sa);
	off_t off = 0;
	while ((size_t)off < fsize) {
		ssize_t k = sendfile(a, f, &off, fsize - (size_t)off);
		CHECK(k > 0, "sendfile with offset: %s", strerror(errno));
	}
	pthread_join(t, NULL);
	CHECK(sa.sum == fsum && lseek(f, 0, SEEK_CUR) == (off_t)fsize,
	      "sendfile with offset: checksum or file position");
	int pp[2];
	CHECK(pipe(pp) == 0, "pipe");
	sa.sum = 0;
	pthread_create(&t, NULL, sum_thread, &sa);
	lseek(f, 0, SEEK_SET);
	for (size_t done = 0; done < fsize;) {
		ssize_t k = splice(f, NULL, pp[1], NULL, 65536, 0);
		CHECK(k > 0, "splice file->pipe: %s", strerror(errno));
		for (ssize_t m = 0; m < k;) {
			ssize_t s2 = splice(pp[0], NULL, a, NULL, (size_t)(k - m), 0);
			CHECK(s2 > 0, "splice pipe->socket: %s", strerror(errno));
			m += s2;
		}
		done += (size_t)k;
	}
	pthread_join(t, NULL);
	CHECK(sa.sum == fsum, "splice to socket: checksum differs");
	/* socket -> pipe: the file goes out with sendfile, comes in with splice */
	struct file_send fs = {a, f, fsize};
	lseek(f, 0, SEEK_SET);
	pthread_create(&t, NULL, file_sender, &fs);
	uint32_t h = 2166136261u;
	for (size_t done = 0; done < fsize;) {
		ssize_t k = splice(b, NULL, pp[1], NULL, 65536, 0);
		CHECK(k > 0, "splice socket->pipe: %s", k ? strerror(errno) : "EOF");
		uint8_t pbuf[65536];
		for (ssize_t m = 0; m < k;) {
			ssize_t rr = read(pp[0], pbuf, (size_t)(k - m));
			CHECK(rr > 0, "read pipe");
			for (ssize_t i = 0; i < rr; i++)
				h = (h ^ pbuf[i]) * 16777619u;
			m += rr;
		}
		done += (size_t)k;
	}
	pthread_join(t, NULL);
	CHECK(h == fsum, "splice from socket: checksum differs");
	close(pp[0]);
	close(pp[1]);
	off_t o1 = 0;
	errno = 0;
	ssize_t cfr = copy_file_range(f, &o1, a, NULL, 4096, 0);
	printf("{\"case\":\"flags\",\"copy_file_range\":%zd,\"errno\":%d}\n", cfr, cfr < 0 ? errno : 0);
	CHECK(cfr < 0 && (errno == EINVAL || errno == EBADF || errno == EXDEV),
	      "copy_file_range to a socket: %zd (%s)", cfr, strerror(errno));
	close(f);
	unlink(path);

	/* sendmmsg / recvmmsg */
	struct mmsghdr mm[4];
	struct iovec iv[4];
	char msgs[4][6] = {"mmsg0", "mmsg1", "mmsg2", "mmsg3"};
	for (int i = 0; i < 4; i++) {
		iv[i] = (struct iovec){msgs[i], 5};
		memset(&mm[i], 0, sizeof(mm[i]));
		mm[i].msg_hdr.msg_iov = &iv[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	CHECK(sendmmsg(a, mm, 4, 0) == 4, "sendmmsg");
	char in[4][20];
	for (int i = 0; i < 4; i++) {
		iv[i] = (struct iovec){in[i], 5};
		memset(&mm[i], 0, sizeof(mm[i]));
		mm[i].msg_hdr.msg_iov = &iv[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	usleep(20000);
	int got = 0, k2;
	while (got < 4 && (k2 = recvmmsg(b, mm + got, (unsigned)(4 - got), MSG_WAITFORONE, NULL)) > 0)
		got += k2;
	for (int i = 0; i < 4; i++)
		CHECK(mm[i].msg_len == 5 && !memcmp(in[i], msgs[i], 5), "recvmmsg message %d", i);

	/* SO_LINGER {1, 0}: close resets, the peer sees ECONNRESET */
	struct linger lg = {1, 0};
	CHECK(setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "SO_LINGER");
	close(a);
	r = recv(b, buf, 10, 0);
	CHECK(r < 0 && errno == ECONNRESET, "SO_LINGER 0: peer got %zd (%s), want ECONNRESET", r,
	      strerror(errno));
	close(b);

	/* non-blocking connect, accept4 and socket flags */
	int l = listener_on(0, 0);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK((fcntl(c, F_GETFL) & O_NONBLOCK) && (fcntl(c, F_GETFD) & FD_CLOEXEC), "socket flags");
	struct sockaddr_in sa4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of(l)),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int cr = connect(c, (struct sockaddr *)&sa4, sizeof(sa4));
	CHECK(cr == 0 || errno == EINPROGRESS, "non-blocking connect: %s", strerror(errno));
	p = (struct pollfd){.fd = c, .events = POLLOUT};
	CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLOUT), "non-blocking connect: not writable");
	int soe = -1;
	socklen_t sl = sizeof(soe);
	CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &soe, &sl) == 0 && soe == 0, "SO_ERROR %d", soe);
	int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	CHECK(s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) && (fcntl(s, F_GETFD) & FD_CLOEXEC),
	      "accept4 flags");
	for (int i = 0; i < 4; i++) {
		char m[5] = "nbc!";
		while (send(c, m, 4, 0) < 0)
			CHECK(errno == EAGAIN, "nb send");
		p = (struct pollfd){.fd = s, .events = POLLIN};
		poll(&p, 1, 5000);
		CHECK(recv(s, buf, 4, 0) == 4, "nb recv");
		while (send(s, m, 4, 0) < 0)
			CHECK(errno == EAGAIN, "nb send back");
		p = (struct pollfd){.fd = c, .events = POLLIN};
		poll(&p, 1, 5000);
		CHECK(recv(c, buf, 4, 0) == 4, "nb recv back");
	}
	CHECK(plain || (is_shm(c) && is_shm(s)), "non-blocking connect: not on shared memory");
	close(c);
	close(s);
	int port = port_of(l);
	close(l);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	sa4.sin_port = htons((uint16_t)port);
	cr = connect(c, (struct sockaddr *)&sa4, sizeof(sa4));
	if (cr < 0 && errno == EINPROGRESS) {
		p = (struct pollfd){.fd = c, .events = POLLOUT};
		poll(&p, 1, 5000);
		sl = sizeof(soe);
		getsockopt(c, SOL_SOCKET, SO_ERROR, &soe, &sl);
		CHECK(soe == ECONNREFUSED, "refused non-blocking connect: SO_ERROR %d", soe);
	} else {
		CHECK(cr < 0 && errno == ECONNREFUSED, "refused connect: %s", strerror(errno));
	}
	close(c);
	return 0;
}

/* ------------------------------------------------------------------ signals --------- */

static void on_sig(int sig)
{
	(void)sig;
}

static void handler(int restart)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(SIGUSR1, &sa, NULL);
}

struct blocked {
	int fd, op; /* 0 recv, 1 send, 2 accept, 3 poll, 4 epoll_wait, 5 select */
	ssize_t ret;
	int err;
	atomic_int started, finished;
};

static struct blocked *cur_blocked;

static void *blocker(void *arg)
{
	struct blocked *b = arg;
	static __thread char buf[1 << 16];
	atomic_store(&b->started, 1);
	errno = 0;
	switch (b->op) {
	case 0:
		b->ret = recv(b->fd, buf, 16, 0);
		break;
	case 1:
		/* fill without blocking, then one send that blocks; interrupted, it returns what
		 * it sent, or fails with EINTR (restarted after an SA_RESTART handler) */
		while (send(b->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
		b->ret = send(b->fd, buf, sizeof(buf), 0);
		break;
	case 2:
		b->ret = accept(b->fd, NULL, NULL);
		break;
	case 3: {
		struct pollfd p = {.fd = b->fd, .events = POLLIN};
		b->ret = poll(&p, 1, -1);
		break;
	}
	case 4: {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN};
		epoll_ctl(ep, EPOLL_CTL_ADD, b->fd, &ev);
		b->ret = epoll_wait(ep, &ev, 1, -1);
		b->err = errno;
		close(ep);
		atomic_store(&b->finished, 1);
		return NULL;
	}
	case 5: {
		fd_set rs;
		FD_ZERO(&rs);
		FD_SET(b->fd, &rs);
		b->ret = select(b->fd + 1, &rs, NULL, NULL, NULL);
		break;
	}
	}
	b->err = errno;
	atomic_store(&b->finished, 1);
	return NULL;
}

static const char *opname[] = {"recv", "send", "accept", "poll", "epoll_wait", "select"};

/* Block @op on @fd in a thread, signal it; returns the thread's result (restarted calls
 * are completed by @finish). */
static void interrupt(int fd, int op, int restart, void (*finish)(void), struct blocked *b)
{
	handler(restart);
	memset(b, 0, sizeof(*b));
	b->fd = fd;
	b->op = op;
	cur_blocked = b;
	pthread_t t;
	pthread_create(&t, NULL, blocker, b);
	while (!atomic_load(&b->started))
		usleep(1000);
	/* Signal until one lands inside the blocking call (the thread may not even have got
	 * there yet on a loaded machine): a call that fails with EINTR ends the thread; one
	 * that is restarted just keeps waiting through every signal. */
	for (int i = 0; i < 50 && !atomic_load(&b->finished); i++) {
		usleep(100000);
		pthread_kill(t, SIGUSR1);
		if (restart && i >= 3)
			break;
	}
	usleep(50000);
	if (finish)
		finish();
	pthread_join(t, NULL);
}

static int sig_peer, sig_listen;

static void finish_recv(void)
{
	xsend(sig_peer, "restarted!", 10);
}

static void finish_send(void)
{
	/* drain the peer until the blocked sender completes its write */
	char buf[65536];
	for (int i = 0; i < 2000 && !atomic_load(&cur_blocked->finished); i++) {
		ssize_t r = recv(sig_peer, buf, sizeof(buf), MSG_DONTWAIT);
		if (r <= 0)
			usleep(5000);
	}
}

static void finish_accept(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	getsockname(sig_listen, (struct sockaddr *)&a, &al);
	int c = dial(ntohs(a.sin_port));
	usleep(50000);
	close(c);
}

static atomic_int cancel_started;

static void *cancel_victim(void *arg)
{
	int fd = *(int *)arg;
	char buf[16];
	atomic_store(&cancel_started, 1);
	recv(fd, buf, sizeof(buf), 0);
	return (void *)1; /* not reached when cancelled */
}

static int t_signals(void)
{
	int a, b;
	pair(&a, &b);
	sig_peer = b;
	struct blocked r;
	/* without SA_RESTART: EINTR */
	for (int op = 0; op < 6; op++) {
		if (op == 2)
			continue;
		interrupt(a, op, 0, NULL, &r);
		if (op == 1) /* a send interrupted after some bytes returns their count */
			CHECK((r.ret < 0 && r.err == EINTR) || (r.ret >= 0 && r.ret < 65536),
			      "send without SA_RESTART: ret %zd errno %s", r.ret, strerror(r.err));
		else
			CHECK(r.ret < 0 && r.err == EINTR, "%s without SA_RESTART: ret %zd errno %s",
			      opname[op], r.ret, strerror(r.err));
		if (op == 1) {
			/* the interrupted sender filled a's direction: drain it */
			char buf[65536];
			while (recv(b, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
		}
	}
	/* with SA_RESTART: recv and send continue; poll/epoll_wait/select still fail (the
	 * kernel never restarts them) */
	interrupt(a, 0, 1, finish_recv, &r);
	CHECK(r.ret == 10, "recv with SA_RESTART: ret %zd errno %s", r.ret, strerror(r.err));
	interrupt(a, 1, 1, finish_send, &r);
	CHECK(r.ret >= 0, "send with SA_RESTART: %s", strerror(r.err));
	{
		char buf[65536];
		usleep(50000);
		while (recv(b, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
	}
	for (int op = 3; op <= 5; op++) {
		interrupt(a, op, 1, NULL, &r);
		CHECK(r.ret < 0 && r.err == EINTR, "%s with SA_RESTART: ret %zd errno %s", opname[op],
		      r.ret, strerror(r.err));
	}
	/* accept: EINTR, and restarted */
	sig_listen = listener_on(0, 0);
	interrupt(sig_listen, 2, 0, NULL, &r);
	CHECK(r.ret < 0 && r.err == EINTR, "accept without SA_RESTART: %s", strerror(r.err));
	interrupt(sig_listen, 2, 1, finish_accept, &r);
	CHECK(r.ret >= 0, "accept with SA_RESTART: %s", strerror(r.err));
	close((int)r.ret);
	close(sig_listen);
	/* poll timeout honoured on a shared-memory socket */
	struct pollfd p = {.fd = a, .events = POLLIN};
	uint64_t t0 = now_ms();
	CHECK(poll(&p, 1, 200) == 0, "poll timeout: not 0");
	uint64_t el = now_ms() - t0;
	CHECK(el >= 190 && el < 3000, "poll timeout took %llu ms", (unsigned long long)el);
	/* pthread_cancel in a blocking recv: no lock is left held */
	pthread_t t;
	pthread_create(&t, NULL, cancel_victim, &a);
	while (!atomic_load(&cancel_started))
		usleep(1000);
	usleep(200000);
	pthread_cancel(t);
	void *res;
	pthread_join(t, &res);
	CHECK(res == PTHREAD_CANCELED, "pthread_cancel: the thread was not cancelled");
	xsend(b, "after-cancel", 12);
	expect(a, "after-cancel");
	xsend(a, "both-ways", 9);
	expect(b, "both-ways");
	CHECK(plain || (is_shm(a) && is_shm(b)), "signals: not on shared memory");
	close(a);
	close(b);
	return 0;
}

int main(int argc, char **argv)
{
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	plain = !stats_fn || (argc > 2 && !strcmp(argv[2], "--plain"));
	signal(SIGPIPE, SIG_IGN);
	const char *t = argc > 1 ? argv[1] : "";
	if (!strcmp(t, "dup"))
		return t_dup();
	if (!strcmp(t, "threads"))
		return t_threads();
	if (!strcmp(t, "flags"))
		return t_flags();
	if (!strcmp(t, "signals"))
		return t_signals();
	fprintf(stderr, "usage: nsk_sem dup|threads|flags|signals [--plain]\n");
	return 2;
}
