/* SPDX-License-Identifier: MIT */
/* inbox_test.c — unit tests of the UDP inbox (inbox.[ch]): record framing across the wrap,
 * the SO_RCVBUF limit and exact drop accounting, attach-side validation, a multi-process
 * stress (several producer processes, one consumer, every datagram checked), a producer
 * killed while it holds the lock in the middle of a copy, a live producer holding the lock
 * too long, hostile contents (garbage indices and records from a "producer" that writes the
 * shared memory directly) and the wake-up source table. */
#include <sched.h>
#include <sys/mman.h>

#include "core/atomics.h"
#include "core/inbox.h"
#include "platform/linux.h"
#include "test_util.h"

static uint64_t seed;

static struct nsk_src src_of(uint16_t port)
{
	struct nsk_src s = {.family = 2 /* AF_INET */, .port = port};
	s.addr[0] = 127;
	s.addr[3] = 1;
	return s;
}

/* Datagram contents are a function of (producer, sequence, length). */
static void fill(uint8_t *b, size_t n, uint32_t who, uint32_t seq)
{
	uint64_t x = ((uint64_t)who << 32 | seq) * 0x9e3779b97f4a7c15ull + n;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
	if (n >= 8) {
		memcpy(b, &who, 4);
		memcpy(b + 4, &seq, 4);
	}
}

static int put1(struct nsk_inbox *ib, uint16_t port, const void *p, size_t n)
{
	struct nsk_src s = src_of(port);
	struct iovec iov = {(void *)p, n};
	CHECK(nsk_inbox_lock(ib, (uint32_t)getpid(), 1000000) == 0);
	int r = nsk_inbox_put(ib, &s, &iov, 1, n);
	nsk_inbox_unlock(ib);
	return r;
}

/* Take one datagram: its length (or -1 when empty), payload into @buf. */
static ssize_t get1(struct nsk_inbox *ib, void *buf, size_t cap, struct nsk_dgram_rec *rec)
{
	if (nsk_inbox_peek(ib, rec) != 1)
		return -1;
	struct iovec iov = {buf, cap};
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, &iov, 1);
	size_t n = nsk_inbox_copy(ib, rec, &cur, cap);
	CHECK(n == (rec->len < cap ? rec->len : cap));
	nsk_inbox_pop(ib, rec);
	return rec->len;
}

static void test_basic_wrap(void)
{
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	CHECK(nsk_inbox_empty(&ib));
	struct nsk_dgram_rec rec;
	CHECK(nsk_inbox_peek(&ib, &rec) == 0);
	static uint8_t out[NSK_DGRAM_MAX], in[NSK_DGRAM_MAX];
	uint64_t s = seed;
	/* Many laps with sizes 0..NSK_DGRAM_MAX: records wrap at every possible offset mod 8. */
	uint32_t seq_put = 0, seq_get = 0;
	for (int round = 0; round < 20000; round++) {
		size_t n = (t_rng(&s) & 3) == 0 ? t_rng(&s) % (NSK_DGRAM_MAX + 1) : t_rng(&s) % 300;
		fill(out, n, 1, seq_put);
		int r = put1(&ib, 1000, out, n);
		if (r == -ENOBUFS) {
			/* full: drain a few, then the same datagram must fit */
			for (int i = 0; i < 4 && !nsk_inbox_empty(&ib); i++) {
				ssize_t g = get1(&ib, in, sizeof(in), &rec);
				CHECK(g >= 0);
				uint8_t exp[NSK_DGRAM_MAX];
				fill(exp, (size_t)g, 1, seq_get);
				CHECK(memcmp(in, exp, (size_t)g) == 0);
				CHECK(rec.port == 1000 && rec.family == 2 && rec.addr[0] == 127);
				seq_get++;
			}
			round--;
			continue;
		}
		CHECK_EQ(r, 0);
		seq_put++;
		if (t_rng(&s) % 3 == 0) {
			ssize_t g = get1(&ib, in, sizeof(in), &rec);
			CHECK(g >= 0);
			uint8_t exp[NSK_DGRAM_MAX];
			fill(exp, (size_t)g, 1, seq_get);
			CHECK(memcmp(in, exp, (size_t)g) == 0);
			seq_get++;
		}
	}
	while (get1(&ib, in, sizeof(in), &rec) >= 0)
		seq_get++;
	CHECK_EQ(seq_get, seq_put);
	CHECK_EQ(ib.h->enq, seq_put);
	CHECK_EQ(ib.h->corrupt, 0);
	/* Oversized payloads are refused before touching the queue. */
	struct nsk_src sr = src_of(1);
	struct iovec iov = {out, 10};
	CHECK_EQ(nsk_inbox_put(&ib, &sr, &iov, 1, NSK_DGRAM_MAX + 1), -EMSGSIZE);
	nsk_inbox_unmap(&ib);
	close(fd);
}

static void test_limit_drops(void)
{
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	/* limit 1000 bytes: records of 100 B payload take 132 B; the queue accepts while it
	 * holds no more than the limit (as the kernel's rmem check), then refuses. */
	ib.h->limit = 1000;
	uint8_t b[100] = {0};
	int ok = 0, full = 0;
	for (int i = 0; i < 50; i++) {
		int r = put1(&ib, 7, b, sizeof(b));
		if (r == 0)
			ok++;
		else if (r == -ENOBUFS) {
			nsk_inbox_drop(&ib);
			full++;
		} else
			FAILF("put: %d", r);
	}
	CHECK_EQ(ok, 1000 / 132 + 1);
	CHECK_EQ(full, 50 - ok);
	CHECK_EQ(ib.h->drops, (uint64_t)full);
	/* One datagram larger than the limit still goes through an empty queue. */
	struct nsk_dgram_rec rec;
	uint8_t big[4000];
	while (get1(&ib, big, sizeof(big), &rec) >= 0)
		;
	CHECK_EQ(put1(&ib, 7, big, sizeof(big)), 0);
	CHECK_EQ(put1(&ib, 7, b, 10), -ENOBUFS);
	nsk_inbox_unmap(&ib);
	close(fd);
}

static void test_attach_checks(void)
{
	struct nsk_inbox ib, s;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	CHECK_EQ(nsk_inbox_attach(&s, fd, ib.nonce ^ 1), -EPROTO); /* wrong nonce */
	CHECK_EQ(nsk_inbox_attach(&s, fd, ib.nonce), 0);
	CHECK(s.size == ib.size && s.h != ib.h);
	nsk_inbox_unmap(&s);
	/* A header whose size fields disagree with the file is refused. */
	ib.h->data_size = NSK_INBOX_MIN * 2;
	CHECK_EQ(nsk_inbox_attach(&s, fd, ib.nonce), -EPROTO);
	ib.h->data_size = NSK_INBOX_MIN;
	ib.h->magic = 0;
	CHECK_EQ(nsk_inbox_attach(&s, fd, ib.nonce), -EPROTO);
	ib.h->magic = NSK_INBOX_MAGIC;
	nsk_inbox_unmap(&ib);
	close(fd);
	/* An unsealed file is refused (it could shrink under us: SIGBUS). */
	int raw = nsk_memfd_create("not-sealed", NSK_INBOX_DATA_OFF + NSK_INBOX_MIN);
	CHECK(raw >= 0);
	CHECK(nsk_inbox_attach(&s, raw, 1) < 0);
	close(raw);
}

/* Multi-process stress: P producer processes (attached through the memfd like real
 * senders) each send N datagrams; the consumer checks every one and per-producer order. */
struct stress_stats {
	uint64_t sent[8], dropped[8];
};

static void test_stress(void)
{
	enum { P = 4 };
	uint32_t n = t_sanitized() ? 20000 : 100000;
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	struct stress_stats *st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(st != MAP_FAILED);
	memset(st, 0, sizeof(*st));
	pid_t kids[P];
	for (int p = 0; p < P; p++) {
		kids[p] = fork();
		CHECK(kids[p] >= 0);
		if (kids[p] == 0) {
			t_watchdog(100);
			struct nsk_inbox mine;
			CHECK(nsk_inbox_attach(&mine, fd, ib.nonce) == 0);
			uint64_t s = seed + (uint64_t)p * 7919;
			static uint8_t b[4096];
			struct nsk_src src = src_of((uint16_t)(2000 + p));
			for (uint32_t i = 0; i < n; i++) {
				size_t len = 8 + t_rng(&s) % (t_rng(&s) % 16 == 0 ? 4000 : 120);
				fill(b, len, (uint32_t)p, i);
				struct iovec iov[2] = {{b, len / 2}, {b + len / 2, len - len / 2}};
				for (int tries = 0;; tries++) {
					CHECK(nsk_inbox_lock(&mine, (uint32_t)getpid(), 1000000000ull) == 0);
					int r = nsk_inbox_put(&mine, &src, iov, 2, len);
					nsk_inbox_unlock(&mine);
					if (r == 0)
						break;
					CHECK_EQ(r, -ENOBUFS);
					if (tries == 2000) { /* give up on this one: a counted drop */
						nsk_inbox_drop(&mine);
						st->dropped[p]++;
						break;
					}
					sched_yield();
				}
				st->sent[p]++;
			}
			_exit(0);
		}
	}
	uint32_t next[P] = {0};
	uint64_t got = 0, dropped_seen = 0;
	static uint8_t in[8192], exp[8192];
	uint64_t t0 = t_now_ns();
	for (;;) {
		struct nsk_dgram_rec rec;
		ssize_t g = get1(&ib, in, sizeof(in), &rec);
		if (g < 0) {
			int alive = 0;
			for (int p = 0; p < P; p++)
				alive += kids[p] > 0 && waitpid(kids[p], NULL, WNOHANG) == 0;
			if (!alive && nsk_inbox_empty(&ib))
				break;
			sched_yield();
			continue;
		}
		CHECK(g >= 8);
		uint32_t who, seq;
		memcpy(&who, in, 4);
		memcpy(&seq, in + 4, 4);
		CHECK(who < P);
		CHECK_EQ(rec.port, 2000 + who);
		/* In order per producer; a gap is a counted drop. */
		CHECK(seq >= next[who]);
		dropped_seen += seq - next[who];
		next[who] = seq + 1;
		fill(exp, (size_t)g, who, seq);
		CHECK(memcmp(in, exp, (size_t)g) == 0);
		got++;
		if (t_now_ns() - t0 > 90000000000ull)
			FAILF("stress: too slow");
	}
	uint64_t sent = 0, dropped = 0;
	for (int p = 0; p < P; p++) {
		sent += st->sent[p];
		dropped += st->dropped[p];
		dropped_seen += st->sent[p] - next[p]; /* drops at the very end */
	}
	printf("   %llu datagrams from %d processes, %llu dropped\n", (unsigned long long)got, P,
	       (unsigned long long)dropped);
	CHECK_EQ(sent, (uint64_t)P * n);
	CHECK_EQ(got + dropped, sent);
	CHECK_EQ(dropped_seen, dropped);
	CHECK_EQ(ib.h->drops, dropped);
	CHECK_EQ(ib.h->corrupt, 0);
	munmap(st, sizeof(*st));
	nsk_inbox_unmap(&ib);
	close(fd);
}

/* A producer killed while it holds the lock, half-way through a copy: the consumer never
 * sees a partial record and the next producer takes the lock over. */
static void test_killed_producer(void)
{
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	uint8_t b[64];
	fill(b, sizeof(b), 9, 0);
	CHECK_EQ(put1(&ib, 1, b, sizeof(b)), 0);
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	pid_t k = fork();
	CHECK(k >= 0);
	if (k == 0) {
		struct nsk_inbox mine;
		CHECK(nsk_inbox_attach(&mine, fd, ib.nonce) == 0);
		CHECK(nsk_inbox_lock(&mine, (uint32_t)getpid(), 1000000) == 0);
		/* Half a record past the tail, as a copy interrupted by SIGKILL leaves it. */
		uint64_t tail = mine.h->tail;
		memset(mine.data + (tail & (mine.size - 1)), 0xab, 20);
		(void)!write(pfd[1], "x", 1);
		pause();
		_exit(0);
	}
	char c;
	CHECK(read(pfd[0], &c, 1) == 1);
	CHECK_EQ(ib.h->plock, (uint32_t)k);
	/* While it lives, the lock is not taken from it: -EBUSY after the spin budget. */
	CHECK_EQ(nsk_inbox_lock(&ib, (uint32_t)getpid(), 2000000), -EBUSY);
	kill(k, SIGKILL);
	waitpid(k, NULL, 0);
	CHECK_EQ(nsk_inbox_lock(&ib, (uint32_t)getpid(), 1000000000ull), 0);
	CHECK_EQ(ib.h->steals, 1);
	struct nsk_src s = src_of(1);
	struct iovec iov = {b, sizeof(b)};
	CHECK_EQ(nsk_inbox_put(&ib, &s, &iov, 1, sizeof(b)), 0);
	nsk_inbox_unlock(&ib);
	struct nsk_dgram_rec rec;
	uint8_t in[64];
	CHECK_EQ(get1(&ib, in, sizeof(in), &rec), 64);
	CHECK(memcmp(in, b, 64) == 0);
	CHECK_EQ(get1(&ib, in, sizeof(in), &rec), 64);
	CHECK(memcmp(in, b, 64) == 0);
	CHECK_EQ(get1(&ib, in, sizeof(in), &rec), -1);
	CHECK_EQ(ib.h->corrupt, 0);
	close(pfd[0]);
	close(pfd[1]);
	nsk_inbox_unmap(&ib);
	close(fd);
}

/* A hostile producer writes the shared memory directly: the consumer must reset the queue
 * (counted) and never read outside the segment, whatever it finds. Run under ASan this
 * also proves no out-of-bounds access. */
static void test_hostile(void)
{
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	uint64_t s = seed ^ 0xabcdef;
	uint8_t in[NSK_DGRAM_MAX];
	uint64_t corrupt0 = 0;
	for (int round = 0; round < 20000; round++) {
		/* a few honest records, then garbage in one of: tail, head-tail gap, a header */
		uint8_t b[200];
		for (int i = 0; i < 3; i++) {
			fill(b, 100, 3, (uint32_t)i);
			if (put1(&ib, 5, b, 100) == -ENOBUFS)
				break;
		}
		switch (t_rng(&s) % 5) {
		case 0:
			ib.h->tail = t_rng(&s); /* anywhere */
			break;
		case 1:
			ib.h->tail = ib.h->head + (t_rng(&s) % (2 * ib.size)); /* maybe > size */
			break;
		case 2: { /* garbage over the next record header */
			uint64_t pos = ib.h->head & (ib.size - 1);
			for (int i = 0; i < 32; i++)
				ib.data[(pos + (uint64_t)i) & (ib.size - 1)] = (uint8_t)t_rng(&s);
			break;
		}
		case 3: { /* a plausible header with a length past the tail */
			struct nsk_dgram_rec r = {.len = (uint32_t)(t_rng(&s) % 70000), .family = 2,
						  .check = NSK_DGRAM_CHECK};
			r.sum = r.len ^ r.family ^ ((uint32_t)r.port << 16) ^ r.check;
			uint64_t pos = ib.h->head & (ib.size - 1);
			for (size_t i = 0; i < sizeof(r); i++)
				ib.data[(pos + i) & (ib.size - 1)] = ((uint8_t *)&r)[i];
			break;
		}
		default: /* an unaligned tail */
			ib.h->tail |= 3;
			break;
		}
		struct nsk_dgram_rec rec;
		for (int i = 0; i < 10; i++) {
			ssize_t g = get1(&ib, in, sizeof(in), &rec);
			if (g < 0)
				break;
			CHECK(g <= NSK_DGRAM_MAX);
		}
		/* Producers refuse corrupt indices (-EPROTO), never write out of bounds. */
		struct nsk_src sr = src_of(5);
		struct iovec iov = {b, 100};
		CHECK(nsk_inbox_lock(&ib, (uint32_t)getpid(), 1000000) == 0);
		int r = nsk_inbox_put(&ib, &sr, &iov, 1, 100);
		nsk_inbox_unlock(&ib);
		CHECK(r == 0 || r == -EPROTO || r == -ENOBUFS);
		/* the consumer resynchronises: afterwards the queue works again */
		ib.h->head = ib.h->tail = ib.h->tail & ~7ull;
		ib.head_cache = ib.tail_cache = ib.h->head;
	}
	corrupt0 = ib.h->corrupt;
	CHECK(corrupt0 > 0);
	uint8_t b[50];
	fill(b, 50, 4, 4);
	CHECK_EQ(put1(&ib, 6, b, 50), 0);
	struct nsk_dgram_rec rec;
	CHECK_EQ(get1(&ib, in, sizeof(in), &rec), 50);
	CHECK(memcmp(in, b, 50) == 0);
	printf("   %llu malformed states detected and reset\n", (unsigned long long)corrupt0);
	nsk_inbox_unmap(&ib);
	close(fd);
}

static void test_wakers(void)
{
	struct nsk_inbox ib;
	int fd = nsk_inbox_create(&ib, NSK_INBOX_MIN, getpid(), 1);
	CHECK(fd >= 0);
	uint32_t pid;
	CHECK_EQ(nsk_inbox_waker_find(&ib, 2, 4000, &pid), -1);
	int a = nsk_inbox_waker_add(&ib, (uint32_t)getpid(), 11, 2, 4000);
	CHECK(a >= 0);
	CHECK_EQ(nsk_inbox_waker_add(&ib, (uint32_t)getpid(), 11, 2, 4000), a); /* idempotent */
	CHECK_EQ(nsk_inbox_waker_find(&ib, 2, 4000, &pid), a);
	CHECK_EQ(pid, (uint32_t)getpid());
	CHECK_EQ(nsk_inbox_waker_find(&ib, 10, 4000, &pid), -1); /* other family */
	/* A full table of live processes refuses. */
	int n = 1;
	while (nsk_inbox_waker_add(&ib, (uint32_t)getpid(), 12, 2, (uint16_t)(5000 + n)) >= 0)
		n++;
	CHECK_EQ(n, NSK_INBOX_WAKERS);
	CHECK_EQ(nsk_inbox_waker_add(&ib, (uint32_t)getpid(), 13, 10, 4001), -ENOSPC);
	/* Slots of a dead process are reused. */
	pid_t k = fork();
	if (k == 0)
		_exit(0);
	waitpid(k, NULL, 0);
	for (int i = 0; i < NSK_INBOX_WAKERS; i++)
		if (i != a) {
			ib.h->wakers[i].pid = (uint32_t)k;
		}
	int b = nsk_inbox_waker_add(&ib, (uint32_t)getpid(), 11, 10, 4001);
	CHECK(b >= 0 && b != a);
	CHECK_EQ(nsk_inbox_waker_find(&ib, 10, 4001, &pid), b);
	CHECK_EQ(nsk_inbox_waker_find(&ib, 2, 4000, &pid), a); /* the live one untouched */
	nsk_inbox_waker_del(&ib, a, (uint32_t)getpid());
	CHECK_EQ(nsk_inbox_waker_find(&ib, 2, 4000, &pid), -1);
	nsk_inbox_unmap(&ib);
	close(fd);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(115);
	seed = t_seed();
	RUN(test_basic_wrap);
	RUN(test_limit_drops);
	RUN(test_attach_checks);
	RUN(test_stress);
	RUN(test_killed_producer);
	RUN(test_hostile);
	RUN(test_wakers);
	return 0;
}
