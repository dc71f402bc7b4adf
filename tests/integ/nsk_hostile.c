/* SPDX-License-Identifier: MIT */
/* nsk_hostile — integration helper: a hostile peer. Run under the preload library as
 * `nsk_hostile ATTACK`: it starts a victim (itself, re-executed, inheriting the preload),
 * connects to it, moves data both ways until the connection is on shared memory, finds the
 * channel segment in its own /proc/self/maps ("memfd:nearsock-chan"), scribbles into the
 * shared ring header, and tells the victim (over a pipe) to make its next call. The victim's
 * call must fail with ECONNRESET — not crash, not hang, not return data — its later calls
 * too, and the victim must still serve a fresh connection afterwards and exit normally.
 * Attacks (the attacker is the client: ring 0 is what the victim receives, ring 1 what it
 * sends):
 *   rx_tail_huge    ring 0 tail = head + 2^40                     victim recv
 *   rx_tail_over    ring 0 tail = head + ring size + 1            victim recv
 *   rx_tail_behind  ring 0 tail = head - 1                        victim recv
 *   rx_fin_garbage  ring 0 fin = 0xdeadbeef (no data)             victim recv
 *   rx_garbage      ring 0 control block random, indices forced out of range; victim recv
 *   tx_head_ahead   ring 1 head = tail + 1                        victim send
 *   tx_head_behind  ring 1 head = tail - ring size - 1            victim send
 *   tx_garbage      ring 1 control block random, forced out of range; victim send
 *   rx_sleeping     victim already asleep in recv; ring 0 tail = head + 2^40, no wake-up:
 *                   the victim must notice within 1 s by itself
 *   rx_poll         victim asleep in poll(POLLIN); scribble, then one raw byte on the TCP
 *                   connection (as a wake-up would be): poll returns, recv fails
 *   hdr_garbage     segment header (magic, sizes, offsets, switch points) random, rings
 *                   intact: the victim keeps its validated private copies; its next
 *                   non-blocking recv gives EAGAIN or ECONNRESET, nothing else
 * Prints one JSON line; exit 0 iff the victim behaved. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/layout.h"
#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *ename(int e)
{
	static char buf[16];
	switch (e) {
	case 0:
		return "0";
	case ECONNRESET:
		return "ECONNRESET";
	case EPIPE:
		return "EPIPE";
	case EAGAIN:
		return "EAGAIN";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	}
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
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

static int mode_of(int fd, struct nearsock_conn_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!stats_fn || stats_fn(fd, st) != 0)
		return -1;
	return (int)st->mode;
}

/* ---------------------------------------------------------------- victim -------------- */

static int victim(int cfd, int rfd)
{
	alarm(30); /* a hang in here ends as SIGALRM, which the attacker reports */
	signal(SIGPIPE, SIG_IGN);
	FILE *cmd = fdopen(cfd, "r"), *res = fdopen(rfd, "w");
	setvbuf(res, NULL, _IOLBF, 0);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		return 2;
	fprintf(res, "port %d\n", ntohs(a.sin_port));
	int fd = accept(l, NULL, NULL);
	if (fd < 0)
		return 2;
	static uint8_t buf[1 << 18];
	char line[128];
	while (fgets(line, sizeof(line), cmd)) {
		struct nearsock_conn_stats st;
		size_t n;
		if (sscanf(line, "echo %zu", &n) == 1) {
			int ok = n <= sizeof(buf) && io_all(fd, buf, n, 1) == 0 &&
			         io_all(fd, buf, n, 0) == 0;
			fprintf(res, "%s\n", ok ? "ok" : "failed");
		} else if (!strncmp(line, "stats", 5)) {
			int m = mode_of(fd, &st);
			fprintf(res, "mode %d tx %" PRIu64 " rx %" PRIu64 "\n", m, st.tx_shm_bytes,
			        st.rx_shm_bytes);
		} else if (!strncmp(line, "recv_async", 10) || !strncmp(line, "recv_nb", 7) ||
		           !strncmp(line, "recv", 4)) {
			int flags = !strncmp(line, "recv_nb", 7) ? MSG_DONTWAIT : 0;
			if (!strncmp(line, "recv_async", 10))
				fprintf(res, "started\n");
			ssize_t r = recv(fd, buf, 4096, flags);
			int e = r < 0 ? errno : 0;
			fprintf(res, "recv %zd %s %" PRIu64 "\n", r, ename(e), now_ns());
		} else if (!strncmp(line, "send", 4)) {
			/* The producer caches the consumer's index and reads the shared one only when
			 * its cached view of the ring is full: a corrupted head must be caught within
			 * one ring's worth of bytes (64 MiB bounds any ring size). */
			memset(buf, 'v', 4096);
			ssize_t r = 0;
			int e = 0;
			for (int i = 0; i < (64 << 20) / 4096; i++) {
				r = send(fd, buf, 4096, MSG_NOSIGNAL | MSG_DONTWAIT);
				e = r < 0 ? errno : 0;
				if (r < 0)
					break;
			}
			fprintf(res, "send %zd %s %" PRIu64 "\n", r, ename(e), now_ns());
		} else if (!strncmp(line, "poll", 4)) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			fprintf(res, "started\n");
			int pr = poll(&p, 1, 5000);
			ssize_t r = recv(fd, buf, 4096, MSG_DONTWAIT);
			int e = r < 0 ? errno : 0;
			fprintf(res, "recv %zd %s %" PRIu64 " poll %d revents 0x%x\n", r, ename(e),
			        now_ns(), pr, (unsigned)p.revents);
		} else if (!strncmp(line, "close", 5)) {
			fprintf(res, "close %d\n", close(fd));
			fd = -1;
		} else if (!strncmp(line, "fresh", 5)) {
			/* A new connection on the same listener must work normally. */
			int c = accept(l, NULL, NULL);
			int ok = c >= 0;
			for (int i = 0; ok && i < 4; i++)
				ok = io_all(c, buf, sizeof(buf), 1) == 0 &&
				     io_all(c, buf, sizeof(buf), 0) == 0;
			int m = c >= 0 ? mode_of(c, &st) : -1;
			fprintf(res, "fresh %s mode %d\n", ok ? "ok" : "failed", m);
			if (c >= 0)
				close(c);
		} else if (!strncmp(line, "quit", 4)) {
			if (fd >= 0)
				close(fd);
			close(l);
			return 0;
		} else {
			fprintf(res, "unknown\n");
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- attacker ------------ */

static FILE *to_victim;
static int from_victim;

/* reply - one line from the victim within @ms, or "" (timeout / EOF). */
static char *reply(int ms)
{
	static char line[256];
	size_t n = 0;
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
	while (n + 1 < sizeof(line)) {
		int64_t left = (int64_t)(end - now_ns());
		if (left <= 0)
			break;
		struct pollfd p = {.fd = from_victim, .events = POLLIN};
		if (poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
			continue;
		char c;
		if (read(from_victim, &c, 1) != 1)
			break;
		if (c == '\n') {
			line[n] = 0;
			return line;
		}
		line[n++] = c;
	}
	line[0] = 0;
	return line;
}

static char *ask(const char *cmd, int ms)
{
	fprintf(to_victim, "%s\n", cmd);
	fflush(to_victim);
	return reply(ms);
}

static struct nsk_chan_hdr *find_segment(size_t *len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	void *found = NULL;
	int count = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (strstr(line, "memfd:nearsock-chan") && sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
			found = (void *)lo;
			*len = hi - lo;
			count++;
		}
	}
	if (f)
		fclose(f);
	if (count != 1)
		return NULL;
	return found;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void randomize(void *p, size_t n)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rnd();
}

/* volatile accesses: the victim reads these concurrently */
static void put64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static void put32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static uint64_t get64(uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* The out-of-range corruption of a ring's control block. */
static void break_ring(struct nsk_ring_ctl *r, uint64_t size, const char *how)
{
	uint64_t head = get64(&r->head), tail = get64(&r->tail);
	if (!strcmp(how, "tail_huge"))
		put64(&r->tail, head + (1ull << 40));
	else if (!strcmp(how, "tail_over"))
		put64(&r->tail, head + size + 1);
	else if (!strcmp(how, "tail_behind"))
		put64(&r->tail, head - 1);
	else if (!strcmp(how, "fin_garbage"))
		put32(&r->fin, 0xdeadbeefu);
	else if (!strcmp(how, "head_ahead"))
		put64(&r->head, tail + 1);
	else if (!strcmp(how, "head_behind"))
		put64(&r->head, tail - size - 1);
	else if (!strcmp(how, "garbage")) {
		randomize(r, sizeof(*r));
		uint64_t h = get64(&r->head);
		if (get64(&r->tail) - h <= size)
			put64(&r->tail, h + size + 12345);
	}
}

static int run_attack(const char *attack, const char *self)
{
	int c2v[2], v2c[2];
	if (pipe(c2v) < 0 || pipe(v2c) < 0)
		return 2;
	pid_t pid = fork();
	if (pid == 0) {
		close(c2v[1]);
		close(v2c[0]);
		char a[16], b[16];
		snprintf(a, sizeof(a), "%d", c2v[0]);
		snprintf(b, sizeof(b), "%d", v2c[1]);
		execl(self, self, "victim", a, b, (char *)NULL);
		_exit(127);
	}
	close(c2v[0]);
	close(v2c[1]);
	to_victim = fdopen(c2v[1], "w");
	from_victim = v2c[0];
	signal(SIGPIPE, SIG_IGN);

	const char *result = "?", *problem = "";
	char detail[512] = "";
	double ms = -1;
	int ok = 0;
	char *r = reply(5000);
	int port;
	if (sscanf(r, "port %d", &port) != 1) {
		problem = "victim did not start";
		goto out;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		problem = "connect failed";
		goto out;
	}
	/* Move data both ways until both ends are on shared memory in both directions. */
	static uint8_t buf[65536], back[65536];
	struct nearsock_conn_stats st;
	int vm = -1;
	uint64_t vtx = 0, vrx = 0;
	for (int i = 0; i < 50; i++) {
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (uint8_t)(k * 3 + (size_t)i);
		fprintf(to_victim, "echo %zu\n", sizeof(buf));
		fflush(to_victim);
		if (io_all(fd, buf, sizeof(buf), 0) < 0 || io_all(fd, back, sizeof(back), 1) < 0 ||
		    memcmp(buf, back, sizeof(buf)) != 0 || strcmp(reply(5000), "ok") != 0) {
			problem = "echo before the attack failed";
			goto out;
		}
		r = ask("stats", 5000);
		sscanf(r, "mode %d tx %" SCNu64 " rx %" SCNu64, &vm, &vtx, &vrx);
		if (mode_of(fd, &st) == NEARSOCK_MODE_SHM && st.tx_shm_bytes && st.rx_shm_bytes &&
		    vm == NEARSOCK_MODE_SHM && vtx && vrx)
			break;
	}
	if (vm != NEARSOCK_MODE_SHM || !vtx || !vrx || st.mode != NEARSOCK_MODE_SHM) {
		snprintf(detail, sizeof(detail),
		         "victim mode %d tx %" PRIu64 " rx %" PRIu64 ", attacker mode %u", vm, vtx,
		         vrx, st.mode);
		problem = "connection never reached shared memory";
		goto out;
	}
	size_t seglen = 0;
	struct nsk_chan_hdr *h = find_segment(&seglen);
	if (!h || seglen < NSK_CHAN_DATA_OFF || h->magic != NSK_CHAN_MAGIC) {
		problem = "channel segment not found in /proc/self/maps";
		goto out;
	}
	uint64_t size0 = h->ring_size[0], size1 = h->ring_size[1];

	/* The attack, then the victim's next call. */
	uint64_t t_attack = 0, t_end = 0;
	ssize_t rv;
	char err[32] = "", cmd[16] = "recv";
	int relaxed = 0;
	if (!strncmp(attack, "rx_", 3) && strcmp(attack, "rx_sleeping") &&
	    strcmp(attack, "rx_poll")) {
		break_ring(&h->ring[0], size0, attack + 3);
	} else if (!strncmp(attack, "tx_", 3)) {
		break_ring(&h->ring[1], size1, attack + 3);
		strcpy(cmd, "send");
		/* A head moved ahead by one byte becomes a consistent state once the victim's own
		 * tail has passed it (the producer reads the shared head only when its cached
		 * view is full): then the only correct outcome is backpressure (EAGAIN) with no
		 * access outside the segment, or the reset when it is still out of range. */
		relaxed = !strcmp(attack, "tx_head_ahead");
	} else if (!strcmp(attack, "hdr_garbage")) {
		randomize(h, offsetof(struct nsk_chan_hdr, ring));
		strcpy(cmd, "recv_nb");
		relaxed = 1;
	} else if (!strcmp(attack, "rx_sleeping") || !strcmp(attack, "rx_poll")) {
		int pollit = !strcmp(attack, "rx_poll");
		if (strcmp(ask(pollit ? "poll" : "recv_async", 5000), "started") != 0) {
			problem = "victim did not start waiting";
			goto out;
		}
		usleep(300000);
		t_attack = now_ns();
		break_ring(&h->ring[0], size0, "tail_huge");
		if (pollit) /* a wake-up byte, straight to the kernel (not through the library) */
			syscall(SYS_sendto, fd, "N", 1, MSG_DONTWAIT | MSG_NOSIGNAL, NULL, 0);
		r = reply(5000);
		goto judge;
	} else {
		problem = "unknown attack";
		goto out;
	}
	t_attack = now_ns();
	r = ask(cmd, 5000);
judge:
	if (!r[0]) {
		problem = "victim HUNG (no answer within 5 s) or died";
		goto out;
	}
	snprintf(detail, sizeof(detail), "%s", r);
	if (sscanf(r, "%*s %zd %31s %" SCNu64, &rv, err, &t_end) != 3) {
		problem = "bad victim answer";
		goto out;
	}
	result = rv >= 0 ? "data" : err;
	if (rv >= 0 && rv != 0)
		result = "data";
	else if (rv == 0)
		result = "EOF";
	ms = (double)(int64_t)(t_end - t_attack) / 1e6;
	if (relaxed) {
		if (strcmp(result, "EAGAIN") && strcmp(result, "ECONNRESET")) {
			problem = "unexpected outcome after header garbage";
			goto out;
		}
	} else if (strcmp(result, "ECONNRESET")) {
		problem = "the victim's call did not fail with ECONNRESET";
		goto out;
	}
	if (ms > 1000) {
		problem = "the victim noticed after more than 1 s";
		goto out;
	}
	/* Later calls on the broken connection fail too; the mode says so. */
	char again_recv[64], again_send[64];
	snprintf(again_recv, sizeof(again_recv), "%s", ask("recv_nb", 5000));
	snprintf(again_send, sizeof(again_send), "%s", ask("send", 5000));
	int mode_after = -9;
	sscanf(ask("stats", 5000), "mode %d", &mode_after);
	size_t dl = strlen(detail);
	snprintf(detail + dl, sizeof(detail) - dl, "; again: %s / %s; mode %d", again_recv,
	         again_send, mode_after);
	if (!relaxed || !strcmp(result, "ECONNRESET")) {
		if (!strstr(again_recv, "ECONNRESET") || !strstr(again_send, "ECONNRESET")) {
			problem =
			    "later calls on the broken connection did not fail with ECONNRESET";
			goto out;
		}
		if (mode_after != NEARSOCK_MODE_BROKEN) {
			problem = "the victim's connection is not marked broken";
			goto out;
		}
	}
	/* The victim closes the broken connection and serves a fresh one. */
	if (strncmp(ask("close", 5000), "close 0", 7) != 0) {
		problem = "close of the broken connection failed";
		goto out;
	}
	close(fd);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	fprintf(to_victim, "fresh\n");
	fflush(to_victim);
	static uint8_t big[1 << 18], bigback[1 << 18];
	int fresh_ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	for (int i = 0; fresh_ok && i < 4; i++) {
		for (size_t k = 0; k < sizeof(big); k++)
			big[k] = (uint8_t)(k * 5 + (size_t)i);
		fresh_ok = io_all(fd, big, sizeof(big), 0) == 0 &&
		           io_all(fd, bigback, sizeof(bigback), 1) == 0 &&
		           memcmp(big, bigback, sizeof(big)) == 0;
	}
	r = reply(5000);
	dl = strlen(detail);
	snprintf(detail + dl, sizeof(detail) - dl, "; %s", r);
	if (!fresh_ok || strncmp(r, "fresh ok mode 2", 15) != 0) {
		problem = "the victim did not serve a fresh connection over shared memory";
		goto out;
	}
	close(fd);
	ok = 1;
out:;
	/* The victim must exit normally (no crash, no sanitizer report, no watchdog). On a failure
	 * path it is told to quit too; one stuck in a call is killed after 3 s. */
	fprintf(to_victim, "quit\n");
	fclose(to_victim);
	int status = 0, waited = 0;
	for (int i = 0; i < 300 && !waited; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			waited = 1;
		else
			usleep(10000);
	}
	char vexit[48];
	if (!waited) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		snprintf(vexit, sizeof(vexit), "still running (killed)");
	} else if (WIFSIGNALED(status)) {
		snprintf(vexit, sizeof(vexit), "signal %d", WTERMSIG(status));
	} else {
		snprintf(vexit, sizeof(vexit), "exit %d", WEXITSTATUS(status));
	}
	if (ok && strcmp(vexit, "exit 0") != 0) {
		ok = 0;
		problem = "the victim did not exit normally";
	}
	printf("{\"attack\": \"%s\", \"ok\": %d, \"result\": \"%s\", \"ms\": %.3f, "
	       "\"victim\": \"%s\", \"problem\": \"%s\", \"detail\": \"%s\"}\n",
	       attack, ok, result, ms, vexit, problem, detail);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	if (argc == 4 && !strcmp(argv[1], "victim"))
		return victim(atoi(argv[2]), atoi(argv[3]));
	if (argc != 2) {
		fprintf(stderr, "usage: nsk_hostile ATTACK (under nearsock run; see the source)\n");
		return 2;
	}
	if (!stats_fn) {
		printf("{\"attack\": \"%s\", \"ok\": 0, \"problem\": \"not preloaded\"}\n",
		       argv[1]);
		return 2;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 2;
	self[n] = 0;
	return run_attack(argv[1], self);
}
