/* SPDX-License-Identifier: MIT */
/* nsk_races — integration helper for the race tests (tests/integ/races.sh, survey Table IV).
 *
 * nsk_races pending-recv --sync DIR
 * nsk_races pending-send --sync DIR --port P [--more BYTES] [--self-evacuate]
 *     Pending data at an evacuation. Two processes (each with its own connection table, so
 *     the CLI can evacuate one of them alone). After eight checked round trips (enough for
 *     the upgrade; both must then be on the ring both ways) the receiver pauses; the sender
 *     fills the ring without blocking until it is full (its TCP counter must not move), then
 *     (--self-evacuate) calls nearsock_evacuate(); the script may evacuate either process or
 *     the domain instead. The sender then sends --more bytes and shuts its side down; the
 *     receiver, released, reads every byte and checks it in order up to EOF. Both print one
 *     JSON line with their byte counts and path counters. Synchronisation through files in
 *     DIR: recv-ready, filled (the sender), evacuated (the script), sending (the sender),
 *     go-read (the script).
 *
 * nsk_races teardown [--iters N] [--workers W] [--max-bytes B] [--switch-us U] [--hammer]
 *                    [--seed S]
 *     Evacuation racing with tear-down. The process forks a server; W client workers open N
 *     connections in all, each moving a random number of checked bytes (0..B) both ways and
 *     ending in one of several ways: both sides shutdown(SHUT_WR) then close after EOF; one
 *     side reads to EOF first, sends and close()s without shutdown; with nearsock_evacuate()
 *     or nearsock_attach() called inline just before shutdown/close. Meanwhile a switcher
 *     thread in each process pins random live connections to TCP or releases them every
 *     0..U µs — on descriptors that are being shut down, closed, or already closed and reused.
 *     With --hammer (evacuation racing with close), two threads per process instead call
 *     nearsock_evacuate/attach/fd_path/fd_stats on those descriptors without pause. Every
 *     call must return 0 or fail with ENOTSOCK, EBADF or EOPNOTSUPP; every stream must end
 *     in a clean EOF after exactly its bytes; afterwards each process has as many
 *     descriptors as before and no channel mapping. One JSON line per side; exit 0 if both
 *     sides are exact. --switch-us -1: no switcher; --no-inline-pins: no inline calls. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"
#include "stream.h"

#define CHUNK (64 << 10)
#define MAXW 64

static int (*p_evacuate)(int);
static int (*p_attach)(int);
static int (*p_stats)(int, struct nearsock_conn_stats *);
static int (*p_path)(int);
static uint64_t seed = 1;

static uint64_t key_of(uint32_t conn, int dir)
{
	return (seed * 0x100000001b3ull) ^ ((uint64_t)conn << 20) ^ ((uint64_t)dir << 40) ^
	       0x7a3c91d5u;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3;
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

static void get_stats(int fd, struct nearsock_conn_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (p_stats)
		p_stats(fd, st);
}

/* send_all / recv_exact - 0, or -errno (-EPIPE: early EOF). */
static int send_all(int fd, const uint8_t *b, size_t n)
{
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_exact(int fd, uint8_t *b, size_t n)
{
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---------------------------------------------------------------- pending -------------- */

static const char *syncdir = ".";

static void touch(const char *name)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", syncdir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* wait_file - 0 once DIR/name exists, -1 after secs seconds. */
static int wait_file(const char *name, int secs)
{
	char p[4096];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/%s", syncdir, name);
	for (uint64_t t0 = now_ns(); now_ns() - t0 < (uint64_t)secs * 1000000000ull;) {
		if (stat(p, &sb) == 0)
			return 0;
		usleep(2000);
	}
	fprintf(stderr, "nsk_races: %s did not appear within %d s\n", p, secs);
	return -1;
}

#define HS_ROUNDS 8
#define HS_BYTES 32

/* Eight checked round trips of 32 bytes: the client's send offers the upgrade, the
 * server's calls claim it. Offsets continue in the streams afterwards. */
static int handshake(int fd, int server, uint64_t *tx_off, uint64_t *rx_off)
{
	uint8_t b[HS_BYTES];
	for (int r = 0; r < HS_ROUNDS; r++) {
		for (int step = 0; step < 2; step++) {
			if (step == server) {
				fill(b, key_of(0, server), *tx_off, HS_BYTES);
				if (send_all(fd, b, HS_BYTES) < 0)
					return -1;
				*tx_off += HS_BYTES;
			} else {
				if (recv_exact(fd, b, HS_BYTES) < 0 ||
				    check(b, key_of(0, !server), *rx_off, HS_BYTES) >= 0)
					return -1;
				*rx_off += HS_BYTES;
			}
		}
	}
	return 0;
}

static int pending_recv(void)
{
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0) {
		perror("nsk_races: listen");
		return 1;
	}
	printf("{\"listening\": %d}\n", ntohs(sa.sin_port));
	fflush(stdout);
	int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		perror("nsk_races: accept");
		return 1;
	}
	close(l);
	uint64_t tx = 0, rx = 0;
	if (handshake(fd, 1, &tx, &rx) < 0) {
		fprintf(stderr, "nsk_races: receiver: handshake failed\n");
		return 1;
	}
	int path0 = p_path ? p_path(fd) : -1;
	touch("recv-ready");
	if (wait_file("go-read", 30) < 0)
		return 1;
	uint8_t *buf = malloc(CHUNK);
	long bad = -1;
	int err = 0;
	uint64_t key = key_of(0, 0), hs = rx;
	for (;;) {
		ssize_t n = recv(fd, buf, CHUNK, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			break;
		}
		long b = check(buf, key, rx, (size_t)n);
		if (b >= 0) {
			bad = (long)rx + b;
			break;
		}
		rx += (uint64_t)n;
	}
	struct nearsock_conn_stats st;
	get_stats(fd, &st);
	printf("{\"role\": \"receiver\", \"path_after_handshake\": %d, \"rcvd\": %llu, "
	       "\"bad_at\": %ld, \"error\": \"%s\", \"rx_shm\": %llu, \"rx_tcp\": %llu, "
	       "\"switches\": %u, \"mode\": %u}\n",
	       path0, (unsigned long long)(rx - hs), bad, err ? strerror(err) : "",
	       (unsigned long long)st.rx_shm_bytes, (unsigned long long)st.rx_tcp_bytes,
	       st.switches, st.mode);
	fflush(stdout);
	close(fd);
	free(buf);
	return bad < 0 && !err ? 0 : 1;
}

static int pending_send(int port, uint64_t more, int self_evac)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons((uint16_t)port)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("nsk_races: connect");
		return 1;
	}
	uint64_t tx = 0, rx = 0;
	if (handshake(fd, 0, &tx, &rx) < 0) {
		fprintf(stderr, "nsk_races: sender: handshake failed\n");
		return 1;
	}
	if (wait_file("recv-ready", 30) < 0)
		return 1;
	int path0 = p_path ? p_path(fd) : -1;
	struct nearsock_conn_stats st0, st1, st2;
	get_stats(fd, &st0);
	uint64_t hs = tx;
	/* Fill the ring: non-blocking sends until nothing more fits for 300 ms. */
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	uint8_t *buf = malloc(CHUNK);
	uint64_t key = key_of(0, 0);
	int err = 0;
	while (tx - hs < (256ull << 20)) {
		fill(buf, key, tx, CHUNK);
		ssize_t w = send(fd, buf, CHUNK, MSG_NOSIGNAL);
		if (w > 0) {
			tx += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, 300) == 0)
				break;
			continue;
		}
		err = w < 0 ? errno : EIO;
		break;
	}
	uint64_t filled = tx - hs;
	get_stats(fd, &st1);
	int evac_rc = 0, evac_errno = 0;
	if (self_evac && (evac_rc = p_evacuate ? p_evacuate(fd) : -1) < 0)
		evac_errno = errno;
	int path1 = p_path ? p_path(fd) : -1;
	printf("{\"role\": \"sender\", \"filled\": %llu, \"fill_tx_shm\": %llu, "
	       "\"fill_tx_tcp\": %llu, \"path_after_handshake\": %d, \"path_after_fill\": %d, "
	       "\"evacuate_rc\": %d, \"evacuate_errno\": %d}\n",
	       (unsigned long long)filled,
	       (unsigned long long)(st1.tx_shm_bytes - st0.tx_shm_bytes),
	       (unsigned long long)(st1.tx_tcp_bytes - st0.tx_tcp_bytes), path0, path1, evac_rc,
	       evac_errno);
	fflush(stdout);
	touch("filled");
	if (wait_file("evacuated", 30) < 0)
		return 1;
	fcntl(fd, F_SETFL, fl);
	touch("sending");
	uint64_t end = tx + more;
	while (!err && tx < end) {
		size_t n = end - tx < CHUNK ? (size_t)(end - tx) : CHUNK;
		fill(buf, key, tx, n);
		int r = send_all(fd, buf, n);
		if (r < 0)
			err = -r;
		else
			tx += n;
	}
	shutdown(fd, SHUT_WR);
	/* The receiver sends nothing more: wait for its close (EOF). */
	ssize_t r;
	while ((r = recv(fd, buf, CHUNK, 0)) < 0 && errno == EINTR)
		;
	get_stats(fd, &st2);
	printf("{\"role\": \"sender\", \"sent\": %llu, \"error\": \"%s\", \"tail_recv\": %zd, "
	       "\"tx_shm\": %llu, \"tx_tcp\": %llu, \"switches\": %u, \"path_at_end\": %d}\n",
	       (unsigned long long)(tx - hs), err ? strerror(err) : "", r,
	       (unsigned long long)st2.tx_shm_bytes, (unsigned long long)st2.tx_tcp_bytes,
	       st2.switches, p_path ? p_path(fd) : -1);
	fflush(stdout);
	close(fd);
	free(buf);
	return !err && r == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- teardown ------------- */

static int iters = 300, workers = 4, switch_us = 300, hammer, no_inline;
static uint32_t max_bytes = 256 << 10;

/* what each connection does (sent by the client in a 16-byte header) */
struct hdr {
	uint32_t idx, flags, c2s, s2c;
};
#define F_SRV_FIRST 1  /* the server reads to EOF first, then sends and close()s */
#define F_CLI_FIRST 2  /* the client does that (never both) */
#define F_PIN_EVAC 4   /* nearsock_evacuate() just before shutdown/close */
#define F_PIN_ATTACH 8 /* nearsock_attach() just after shutdown */

struct result {
	uint64_t rcvd, sent;
	long bad_at;
	int err, done;
	uint32_t switches;
	uint64_t tx_shm, tx_tcp;
};

static struct result *results;
static atomic_int slots[MAXW];
static atomic_int stop_pinning;
static atomic_ulong pin_calls, pin_ok, pin_enotsock, pin_ebadf, pin_eopnotsupp, pin_other;
static atomic_int other_errno;

static void count_pin(int r)
{
	atomic_fetch_add(&pin_calls, 1);
	if (r == 0) {
		atomic_fetch_add(&pin_ok, 1);
		return;
	}
	int e = errno;
	if (e == ENOTSOCK)
		atomic_fetch_add(&pin_enotsock, 1);
	else if (e == EBADF)
		atomic_fetch_add(&pin_ebadf, 1);
	else if (e == EOPNOTSUPP)
		atomic_fetch_add(&pin_eopnotsupp, 1);
	else {
		atomic_fetch_add(&pin_other, 1);
		atomic_store(&other_errno, e);
	}
}

static void pin_call(int fd, int tcp)
{
	if (!p_evacuate)
		return;
	count_pin((tcp ? p_evacuate : p_attach)(fd));
}

/* The switcher (or with --hammer, one of two hammers): pins random live descriptors. */
static void *pinner(void *arg)
{
	unsigned r = (unsigned)(seed * 977 + (uint64_t)getpid() * 31 + (uintptr_t)arg);
	while (!atomic_load(&stop_pinning)) {
		if (!hammer && switch_us > 0)
			usleep((useconds_t)((unsigned)rand_r(&r) % (unsigned)switch_us));
		int fd = atomic_load(&slots[(unsigned)rand_r(&r) % (unsigned)workers]);
		if (fd < 0) {
			if (hammer)
				sched_yield();
			continue;
		}
		unsigned x = (unsigned)rand_r(&r);
		pin_call(fd, x & 1);
		if (hammer && p_path) {
			struct nearsock_conn_stats st;
			int pr = p_path(fd);
			if (pr < 0 && errno != ENOTSOCK && errno != EBADF) {
				atomic_fetch_add(&pin_other, 1);
				atomic_store(&other_errno, errno);
			}
			if (pr > 3) {
				atomic_fetch_add(&pin_other, 1);
				atomic_store(&other_errno, 1000 + pr);
			}
			if (p_stats(fd, &st) < 0 && errno != ENOTSOCK && errno != EBADF) {
				atomic_fetch_add(&pin_other, 1);
				atomic_store(&other_errno, errno);
			}
		}
	}
	return NULL;
}

struct txjob {
	int fd;
	uint64_t key, n;
	int err;
	int shut; /* shutdown(SHUT_WR) at the end */
	int pin;  /* F_PIN_* flags */
	uint64_t sent;
};

static void *tx_body(void *arg)
{
	struct txjob *j = arg;
	uint8_t *buf = malloc(CHUNK);
	unsigned r = (unsigned)(j->key ^ (j->key >> 32));
	while (j->sent < j->n) {
		size_t n = 1 + (unsigned)rand_r(&r) % CHUNK;
		if (n > j->n - j->sent)
			n = (size_t)(j->n - j->sent);
		fill(buf, j->key, j->sent, n);
		int e = send_all(j->fd, buf, n);
		if (e < 0) {
			j->err = -e;
			break;
		}
		j->sent += n;
	}
	if (j->pin & F_PIN_EVAC)
		pin_call(j->fd, 1);
	if (j->shut && shutdown(j->fd, SHUT_WR) < 0 && !j->err)
		j->err = errno;
	if (j->pin & F_PIN_ATTACH)
		pin_call(j->fd, 0);
	free(buf);
	return NULL;
}

/* rx_all - read and check to EOF; fills res. */
static void rx_all(int fd, uint64_t key, uint64_t expect, struct result *res)
{
	uint8_t *buf = malloc(CHUNK);
	for (;;) {
		ssize_t n = recv(fd, buf, CHUNK, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			res->err = errno;
			break;
		}
		if (n == 0)
			break;
		uint64_t room = expect - res->rcvd;
		long b = check(buf, key, res->rcvd, (size_t)n < room ? (size_t)n : (size_t)room);
		if (b >= 0 || (uint64_t)n > room) {
			if (res->bad_at < 0) {
				res->bad_at = (long)res->rcvd + (b >= 0 ? b : (long)room);
				long at = b >= 0 ? b : (long)room;
				fprintf(stderr, "nsk_races: pid %d fd %d: wrong byte at %ld of %llu (read of %zd): "
					"got 0x%02x%s, expected %llu bytes in all\n", (int)getpid(), fd,
					res->bad_at, (unsigned long long)res->rcvd, n,
					at < n ? buf[at] : 0, b >= 0 ? "" : " (past the end)",
					(unsigned long long)expect);
			}
			break;
		}
		res->rcvd += (uint64_t)n;
	}
	free(buf);
}

/* One connection end: exchange per hdr, then close. first: this side reads to EOF before
 * sending, and closes without shutdown. */
static void run_conn(int fd, const struct hdr *h, int server, struct result *res)
{
	int first = server ? (h->flags & F_SRV_FIRST) : (h->flags & F_CLI_FIRST);
	uint64_t txn = server ? h->s2c : h->c2s, rxn = server ? h->c2s : h->s2c;
	struct txjob j = {.fd = fd, .key = key_of(h->idx, server), .n = txn, .shut = !first,
			  .pin = (int)h->flags & (F_PIN_EVAC | F_PIN_ATTACH)};
	res->bad_at = -1;
	if (first) {
		rx_all(fd, key_of(h->idx, !server), rxn, res);
		tx_body(&j);
	} else {
		pthread_t th;
		pthread_create(&th, NULL, tx_body, &j);
		rx_all(fd, key_of(h->idx, !server), rxn, res);
		pthread_join(th, NULL);
	}
	struct nearsock_conn_stats st;
	get_stats(fd, &st);
	res->switches = st.switches;
	res->tx_shm = st.tx_shm_bytes;
	res->tx_tcp = st.tx_tcp_bytes;
	res->sent = j.sent;
	if (!res->err)
		res->err = j.err;
	if (res->rcvd != rxn && !res->err && res->bad_at < 0)
		res->bad_at = (long)res->rcvd; /* early EOF */
	if (res->rcvd != rxn || res->err || res->bad_at >= 0) {
		fprintf(stderr, "nsk_races: pid %d fd %d conn %u: ended after %llu of %llu bytes, "
			"sent %llu of %llu, err %d "
			"(switches %u, tx_shm %llu, rx_shm %llu, tx_tcp %llu, rx_tcp %llu)\n",
			(int)getpid(), fd, h->idx, (unsigned long long)res->rcvd, (unsigned long long)rxn,
			(unsigned long long)j.sent, (unsigned long long)txn, res->err, st.switches, (unsigned long long)st.tx_shm_bytes,
			(unsigned long long)st.rx_shm_bytes, (unsigned long long)st.tx_tcp_bytes,
			(unsigned long long)st.rx_tcp_bytes);
	}
	if (h->flags & F_PIN_EVAC)
		pin_call(fd, 1);
	close(fd);
	res->done = 1;
}

struct srvconn {
	int fd;
};

static atomic_int srv_done;

static void *srv_conn(void *arg)
{
	int fd = ((struct srvconn *)arg)->fd;
	free(arg);
	struct hdr h;
	if (recv_exact(fd, (uint8_t *)&h, sizeof(h)) < 0 || h.idx >= (uint32_t)iters ||
	    results[h.idx].done) {
		fprintf(stderr, "nsk_races: server: bad connection header\n");
		close(fd);
		atomic_fetch_add(&srv_done, 1);
		return NULL;
	}
	atomic_store(&slots[h.idx % (uint32_t)workers], fd);
	run_conn(fd, &h, 1, &results[h.idx]);
	atomic_fetch_add(&srv_done, 1);
	return NULL;
}

static atomic_int next_idx;
static int iters_now; /* connections cli_worker may start: 1 for the warm-up, then all */
static struct sockaddr_in srv_addr;

static void *cli_worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	unsigned r = (unsigned)(seed * 7919 + (uint64_t)w);
	int i;
	while ((i = atomic_fetch_add(&next_idx, 1)) < iters_now) {
		struct hdr h = {.idx = (uint32_t)i};
		unsigned x = (unsigned)rand_r(&r);
		/* sizes: 0, small, or up to max_bytes */
		h.c2s = x % 8 == 0 ? 0 : x % 8 < 4 ? (unsigned)rand_r(&r) % 2048
						     : (unsigned)rand_r(&r) % (max_bytes + 1);
		x = (unsigned)rand_r(&r);
		h.s2c = x % 8 == 0 ? 0 : x % 8 < 4 ? (unsigned)rand_r(&r) % 2048
						     : (unsigned)rand_r(&r) % (max_bytes + 1);
		x = (unsigned)rand_r(&r);
		h.flags = (x % 3 == 1 ? F_SRV_FIRST : x % 3 == 2 ? F_CLI_FIRST : 0) |
			  ((x >> 4) & 1 ? F_PIN_EVAC : 0) | ((x >> 5) & 1 ? F_PIN_ATTACH : 0);
		if (no_inline)
			h.flags &= ~(uint32_t)(F_PIN_EVAC | F_PIN_ATTACH);
		struct result *res = &results[i];
		res->bad_at = -1;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) < 0) {
			res->err = errno;
			res->done = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		atomic_store(&slots[w], fd);
		if (send_all(fd, (const uint8_t *)&h, sizeof(h)) < 0) {
			res->err = errno;
			res->done = 1;
			close(fd);
			continue;
		}
		run_conn(fd, &h, 0, res);
	}
	return NULL;
}

/* Descriptors and what they are: snap_fds() at the baseline, list_new_fds() prints those
 * open now that were not open then (stderr), for a leak. */
static char base_fds[256][96];
static int nbase_fds;

static int read_fds(char (*out)[96], int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		char p[300], t[64];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(p, t, sizeof(t) - 1);
		t[k > 0 ? k : 0] = 0;
		if (strstr(t, "/proc/") && strstr(t, "/fd"))
			continue; /* the listing's own */
		snprintf(out[n++], 96, "fd %.8s -> %.63s", e->d_name, t);
	}
	closedir(d);
	return n;
}

static void snap_fds(void)
{
	nbase_fds = read_fds(base_fds, 256);
}

/* tcp_inode - the socket inode is a TCP socket of this network namespace. */
static int tcp_inode(const char *ino)
{
	const char *files[] = {"/proc/self/net/tcp", "/proc/self/net/tcp6"};
	char line[512], tok[32];
	snprintf(tok, sizeof(tok), " %s ", ino);
	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		if (!fp)
			continue;
		while (fgets(line, sizeof(line), fp))
			if (strstr(line, tok)) {
				fclose(fp);
				return 1;
			}
		fclose(fp);
	}
	return 0;
}

/* list_new_fds - prints (with @who) and counts the descriptors opened since snap_fds() that
 * are leaks: channel memfds and TCP sockets. (The library opens a few descriptors of its
 * own once, lazily: a Unix socket, for instance; those are listed but not counted.) */
static int list_new_fds(const char *who, int print)
{
	static char now[256][96];
	int n = read_fds(now, 256), leaks = 0;
	for (int i = 0; i < n; i++) {
		int seen = 0;
		for (int j = 0; j < nbase_fds && !seen; j++)
			seen = !strcmp(now[i], base_fds[j]);
		if (seen)
			continue;
		const char *sk = strstr(now[i], "socket:[");
		char ino[32] = "";
		if (sk)
			snprintf(ino, sizeof(ino), "%.*s", (int)strcspn(sk + 8, "]"), sk + 8);
		int leak = strstr(now[i], "memfd:") || (sk && tcp_inode(ino));
		leaks += leak;
		if (print)
			fprintf(stderr, "nsk_races: %s: still open: %s%s\n", who, now[i],
				leak ? " (leak)" : " (library's own, not counted)");
	}
	return leaks;
}

static int settle_listener = -1;

static void settle(int *leaks, int *maps_end)
{
	for (int i = 0; i < 300; i++) {
		/* the server's library expires unclaimed offers (their memfds) at its calls */
		if (settle_listener >= 0) {
			int fd = accept4(settle_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0)
				close(fd);
		}
		/* and a socket call in each process gives the library a chance to act */
		int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (sfd >= 0)
			close(sfd);
		*leaks = list_new_fds(NULL, 0);
		*maps_end = count_chan_maps();
		if (*maps_end == 0 && *leaks == 0)
			return;
		usleep(10000);
	}
}

static int report_side(int server, int fds_base, uint64_t t0)
{
	int exact = 0, fds_end, maps_end;
	uint64_t bytes = 0, sw = 0, shm = 0, tcp = 0;
	char first[200] = "";
	for (int i = 0; i < iters; i++) {
		struct result *r = &results[i];
		bytes += r->rcvd;
		sw += r->switches;
		shm += r->tx_shm;
		tcp += r->tx_tcp;
		if (r->done && r->bad_at < 0 && !r->err)
			exact++;
		else if (!first[0])
			snprintf(first, sizeof(first), "conn %d: done %d, rcvd %llu, bad_at %ld, %s",
				 i, r->done, (unsigned long long)r->rcvd, r->bad_at,
				 r->err ? strerror(r->err) : "no error");
	}
	int leaks;
	settle(&leaks, &maps_end);
	fds_end = count_fds();
	if (fds_end > fds_base)
		list_new_fds(server ? "server" : "client", 1);
	int oe = atomic_load(&other_errno);
	printf("{\"role\": \"%s\", \"conns\": %d, \"exact\": %d, \"rx_bytes\": %llu, "
	       "\"switches\": %llu, \"tx_shm\": %llu, \"tx_tcp\": %llu, \"pin_calls\": %lu, "
	       "\"pin_ok\": %lu, \"pin_enotsock\": %lu, \"pin_ebadf\": %lu, "
	       "\"pin_eopnotsupp\": %lu, \"pin_other\": %lu, \"other_errno\": \"%s\", "
	       "\"fds_base\": %d, \"fds_end\": %d, \"leaked_fds\": %d, \"chan_maps_end\": %d, \"first_bad\": \"%s\", "
	       "\"secs\": %.3f}\n",
	       server ? "server" : "client", iters, exact, (unsigned long long)bytes,
	       (unsigned long long)sw, (unsigned long long)shm, (unsigned long long)tcp,
	       atomic_load(&pin_calls), atomic_load(&pin_ok), atomic_load(&pin_enotsock),
	       atomic_load(&pin_ebadf), atomic_load(&pin_eopnotsupp), atomic_load(&pin_other),
	       oe >= 1000 ? "fd_path out of range" : oe ? strerror(oe) : "", fds_base, fds_end,
	       leaks, maps_end, first, (double)(now_ns() - t0) / 1e9);
	fflush(stdout);
	return exact == iters && atomic_load(&pin_other) == 0 && maps_end == 0 && leaks == 0;
}

static void start_pinners(pthread_t *th, int *n)
{
	atomic_store(&stop_pinning, 0);
	*n = hammer ? 2 : switch_us < 0 ? 0 : 1; /* --switch-us -1: no switcher */
	for (int i = 0; i < *n; i++)
		pthread_create(&th[i], NULL, pinner, (void *)(intptr_t)i);
}

static void stop_pinners(pthread_t *th, int n)
{
	atomic_store(&stop_pinning, 1);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

static int teardown(void)
{
	results = calloc((size_t)iters, sizeof(*results));
	for (int i = 0; i < MAXW; i++)
		atomic_store(&slots[i], -1);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	srv_addr = (struct sockaddr_in){.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(srv_addr);
	if (bind(l, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) < 0 || listen(l, 512) < 0 ||
	    getsockname(l, (struct sockaddr *)&srv_addr, &sl) < 0) {
		perror("nsk_races: listen");
		return 1;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	pthread_t pt[2];
	int npt;
	/* Connection 0 is a warm-up made alone: what the library opens once (its table, its
	 * rendezvous socket) is open when the descriptors are counted. */
	if (child == 0) {
		uint64_t t0 = now_ns();
		int fd0 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (fd0 < 0) {
			perror("nsk_races: accept");
			_exit(1);
		}
		struct srvconn *sc0 = malloc(sizeof(*sc0));
		sc0->fd = fd0;
		srv_conn(sc0);
		int fds_base = count_fds();
		snap_fds();
		start_pinners(pt, &npt);
		for (int i = 1; i < iters; i++) {
			int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EINTR) {
					i--;
					continue;
				}
				perror("nsk_races: accept");
				_exit(1);
			}
			struct srvconn *sc = malloc(sizeof(*sc));
			sc->fd = fd;
			pthread_t th;
			pthread_attr_t at;
			pthread_attr_init(&at);
			pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
			pthread_create(&th, &at, srv_conn, sc);
			pthread_attr_destroy(&at);
		}
		while (atomic_load(&srv_done) < iters)
			usleep(1000);
		stop_pinners(pt, npt);
		fcntl(l, F_SETFL, fcntl(l, F_GETFL) | O_NONBLOCK);
		settle_listener = l;
		_exit(report_side(1, fds_base, t0) ? 0 : 1);
	}
	close(l);
	uint64_t t0 = now_ns();
	atomic_store(&next_idx, 0);
	iters_now = 1;
	cli_worker((void *)(intptr_t)0);
	iters_now = iters;
	atomic_store(&next_idx, 1);
	int fds_base = count_fds();
	snap_fds();
	start_pinners(pt, &npt);
	pthread_t wt[MAXW];
	for (int w = 0; w < workers; w++)
		pthread_create(&wt[w], NULL, cli_worker, (void *)(intptr_t)w);
	for (int w = 0; w < workers; w++)
		pthread_join(wt[w], NULL);
	stop_pinners(pt, npt);
	int status = 0;
	waitpid(child, &status, 0);
	int ok = report_side(0, fds_base, t0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("{\"role\": \"server\", \"error\": \"server ended with status 0x%x\"}\n",
		       status);
		ok = 0;
	}
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
	usage:
		fprintf(stderr, "usage: nsk_races pending-recv --sync DIR | pending-send --sync DIR "
				"--port P [--more B] [--self-evacuate] | teardown [--iters N] "
				"[--workers W] [--max-bytes B] [--switch-us U] [--hammer] [--seed S]\n");
		return 2;
	}
	const char *mode = argv[1];
	int port = 0, self_evac = 0;
	uint64_t more = 4 << 20;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--self-evacuate")) {
			self_evac = 1;
			continue;
		}
		if (!strcmp(a, "--no-inline-pins")) {
			no_inline = 1;
			continue;
		}
		if (!strcmp(a, "--hammer")) {
			hammer = 1;
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--sync"))
			syncdir = v;
		else if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--more"))
			more = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--iters"))
			iters = atoi(v);
		else if (!strcmp(a, "--workers"))
			workers = atoi(v);
		else if (!strcmp(a, "--max-bytes"))
			max_bytes = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--switch-us"))
			switch_us = atoi(v);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else
			goto usage;
	}
	if (iters < 1 || workers < 1 || workers > MAXW)
		goto usage;
	p_evacuate = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_evacuate");
	p_attach = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_attach");
	p_stats = (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	p_path = (int (*)(int))dlsym(RTLD_DEFAULT, "nearsock_fd_path");
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "pending-recv"))
		return pending_recv();
	if (!strcmp(mode, "pending-send"))
		return port ? pending_send(port, more, self_evac) : 2;
	if (!strcmp(mode, "teardown"))
		return teardown();
	goto usage;
}
