/* SPDX-License-Identifier: MIT */
/* ring_test.c — unit tests of the SPSC byte ring (ring.c): limits, wrap-around with odd
 * sizes, iovec cursors, peek, index validation against a corrupt or hostile peer (the data
 * area sits between PROT_NONE guard pages, so any access outside the ring crashes), and a
 * two-process stream of >= 256 MiB (64 MiB under ThreadSanitizer) that sleeps through
 * nsk_arm/nsk_take and futexes, so a lost wake-up shows up as a timeout, plus a wake-up storm
 * that checks the no-lost-wake-up rule exactly, without timeouts. */
#include "core/ring.h"

#include <limits.h>
#include <sched.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "core/atomics.h"
#include "core/test_util.h"
#include "platform/linux.h"

static uint64_t seed;

/* ---------------------------------------------------------------- helpers ------------- */

/* A data area of @size bytes with an inaccessible page on each side. */
struct guarded {
	uint8_t *map;
	size_t maplen;
	uint8_t *data;
};

static void guarded_alloc(struct guarded *g, size_t size)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	CHECK(size % pg == 0);
	g->maplen = size + 2 * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(g->map != MAP_FAILED);
	CHECK(mprotect(g->map, pg, PROT_NONE) == 0);
	CHECK(mprotect(g->map + pg + size, pg, PROT_NONE) == 0);
	g->data = g->map + pg;
}

static void guarded_free(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

/* Word w of the test stream: a bijection of the sequence number, so streams never repeat. */
static inline uint64_t pat_word(uint64_t w)
{
	return (w + 1) * 0x9e3779b97f4a7c15ull;
}

/* pattern - the bytes [off, off+len) of the test stream into @dst. */
static void pattern(uint8_t *dst, uint64_t off, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint64_t pos = off + i;
		uint64_t v = pat_word(pos >> 3);
		unsigned b = (unsigned)(pos & 7);
		if (b == 0 && len - i >= 8) {
			memcpy(dst + i, &v, 8);
			i += 8;
			continue;
		}
		dst[i++] = (uint8_t)(v >> (8 * b));
	}
}

/* check_pattern - fail unless @buf holds bytes [off, off+len) of the stream. */
static void check_pattern(const uint8_t *buf, uint64_t off, size_t len, uint8_t *scratch)
{
	pattern(scratch, off, len);
	if (memcmp(buf, scratch, len) == 0)
		return;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != scratch[i])
			FAILF("stream byte %" PRIu64 ": got 0x%02x, expected 0x%02x", off + i,
			      buf[i], scratch[i]);
}

static ssize_t write1(struct nsk_ring *r, const void *p, size_t len)
{
	struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, &iov, 1);
	return nsk_ring_write(r, &cur, len);
}

static ssize_t read1(struct nsk_ring *r, void *p, size_t len, int peek)
{
	struct iovec iov = {.iov_base = p, .iov_len = len};
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, &iov, 1);
	return nsk_ring_read(r, &cur, len, peek);
}

/* ---------------------------------------------------------------- init ---------------- */

static void test_init(void)
{
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	static const uint64_t bad[] = {0,
	                               1,
	                               2,
	                               NSK_RING_MIN / 2,
	                               NSK_RING_MIN - 1,
	                               NSK_RING_MIN + 1,
	                               4095,
	                               4097,
	                               3 * 4096,
	                               NSK_RING_MAX - 1,
	                               NSK_RING_MAX + 1,
	                               (uint64_t)NSK_RING_MAX * 2,
	                               1ull << 40,
	                               1ull << 63,
	                               UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&r, 0xa5, sizeof(r));
		if (nsk_ring_init(&r, &ctl, NULL, bad[i]) != -EINVAL)
			FAILF("nsk_ring_init accepted size %" PRIu64, bad[i]);
	}
	for (uint64_t s = NSK_RING_MIN; s <= NSK_RING_MAX; s <<= 1) {
		CHECK_EQ(nsk_ring_init(&r, &ctl, (uint8_t *)&ctl, s), 0);
		CHECK(r.ctl == &ctl && r.data == (uint8_t *)&ctl && r.size == s);
	}
	memset(&ctl, 0xff, sizeof(ctl));
	nsk_ring_format(&ctl, 0);
	static const struct nsk_ring_ctl zero;
	CHECK(memcmp(&ctl, &zero, sizeof(ctl)) == 0);
}

/* ---------------------------------------------------------------- empty / full -------- */

static void test_empty_full(void)
{
	struct guarded g;
	guarded_alloc(&g, 4096);
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	nsk_ring_format(&ctl, 0);
	CHECK_EQ(nsk_ring_init(&r, &ctl, g.data, 4096), 0);
	uint8_t in[8192], out[8192], scratch[8192];

	CHECK_EQ(nsk_ring_used(&r), 0);
	CHECK_EQ(nsk_ring_free(&r), 4096);
	memset(out, 0xee, sizeof(out));
	CHECK_EQ(read1(&r, out, sizeof(out), 0), 0);
	CHECK_EQ(read1(&r, out, sizeof(out), 1), 0);
	CHECK(out[0] == 0xee && out[sizeof(out) - 1] == 0xee); /* empty read touches nothing */
	CHECK_EQ(write1(&r, in, 0), 0);                        /* zero-length write */

	/* A write larger than the ring fills it exactly and advances the cursor that far. */
	pattern(in, 0, sizeof(in));
	struct iovec iov = {.iov_base = in, .iov_len = sizeof(in)};
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, &iov, 1);
	CHECK_EQ(nsk_ring_write(&r, &cur, sizeof(in)), 4096);
	CHECK(cur.iov == &iov && cur.cnt == 1 && cur.off == 4096);
	CHECK_EQ(nsk_ring_used(&r), 4096);
	CHECK_EQ(nsk_ring_free(&r), 0);
	CHECK_EQ(ctl.tail, 4096);
	CHECK_EQ(ctl.head, 0);
	/* Full: writes return 0 and change nothing. */
	CHECK_EQ(nsk_ring_write(&r, &cur, 1), 0);
	CHECK_EQ(write1(&r, in, 1), 0);
	CHECK(cur.off == 4096);
	CHECK_EQ(ctl.tail, 4096);
	/* Reads with max 0 consume nothing. */
	CHECK_EQ(read1(&r, out, 0, 0), 0);
	CHECK_EQ(nsk_ring_used(&r), 4096);
	/* Drain in one read larger than the content. */
	memset(out, 0xee, sizeof(out));
	CHECK_EQ(read1(&r, out, sizeof(out), 0), 4096);
	check_pattern(out, 0, 4096, scratch);
	CHECK(out[4096] == 0xee); /* nothing written past what was returned */
	CHECK_EQ(nsk_ring_used(&r), 0);
	CHECK_EQ(nsk_ring_free(&r), 4096);
	CHECK_EQ(read1(&r, out, sizeof(out), 0), 0);
	/* Partial fill then exact fill. */
	CHECK_EQ(write1(&r, in, 1000), 1000);
	CHECK_EQ(nsk_ring_free(&r), 3096);
	CHECK_EQ(write1(&r, in + 1000, 5000), 3096);
	CHECK_EQ(nsk_ring_free(&r), 0);
	CHECK_EQ(read1(&r, out, 4096, 0), 4096);
	check_pattern(out, 0, 4096, scratch);
	guarded_free(&g);
}

/* ---------------------------------------------------------------- wrap-around --------- */

/* Stream @total bytes through a 4 KiB guarded ring whose indices start at @start, writing
 * chunks of @wl and reading chunks of @rl bytes. */
static void stream_odd(struct guarded *g, uint64_t start, size_t wl, size_t rl, uint64_t total)
{
	static uint8_t in[8192], out[8192], scratch[8192];
	memset(g->data, 0, 4096);
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	nsk_ring_format(&ctl, 0);
	ctl.head = ctl.tail = start;
	CHECK_EQ(nsk_ring_init(&r, &ctl, g->data, 4096), 0);
	uint64_t wr = 0, rd = 0;
	while (rd < total) {
		if (wr < total) {
			size_t want = wl < total - wr ? wl : (size_t)(total - wr);
			int64_t space = nsk_ring_free(&r);
			CHECK(space >= 0);
			pattern(in, wr, want);
			ssize_t n = write1(&r, in, want);
			CHECK_EQ(n, (size_t)space < want ? (size_t)space : want);
			wr += (uint64_t)n;
		}
		int64_t avail = nsk_ring_used(&r);
		CHECK_EQ(avail, (int64_t)(wr - rd));
		size_t want = (size_t)avail < rl ? (size_t)avail : rl;
		out[want] = 0xee; /* canary just past what the read may write */
		ssize_t n = read1(&r, out, rl, 0);
		CHECK_EQ(n, want);
		check_pattern(out, rd, (size_t)n, scratch);
		CHECK(out[n] == 0xee);
		rd += (uint64_t)n;
		CHECK_EQ(ctl.head, start + rd);
		CHECK_EQ(ctl.tail, start + wr);
	}
}

static void test_wrap_odd(void)
{
	static const size_t lens[] = {1, 7, 13, 2049, 4095, 4096, 4097};
	static const uint64_t starts[] = {
	    0, 1, 4095, 4097, (1ull << 32) - 3, UINT64_MAX - 5000, UINT64_MAX};
	const size_t nl = sizeof(lens) / sizeof(lens[0]);
	struct guarded g;
	guarded_alloc(&g, 4096);
	for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++)
		for (size_t i = 0; i < nl; i++)
			for (size_t j = 0; j < nl; j++) {
				/* enough bytes to wrap several times even for 1-byte chunks */
				uint64_t total = (lens[i] == 1 || lens[j] == 1) ? 9000 : 40000;
				if (t_tsan()) { /* byte loops are slow there: less volume */
					if (s > 1 && s < 5)
						continue; /* keep 0, 1, and the 2^64 wraps */
					total = total == 9000 ? 5000 : 12000;
				}
				stream_odd(&g, starts[s], lens[i], lens[j], total);
			}
	guarded_free(&g);
}

/* ---------------------------------------------------------------- iovecs -------------- */

static void test_iov(void)
{
	struct guarded g;
	guarded_alloc(&g, 4096);
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	nsk_ring_format(&ctl, 0);
	ctl.head = ctl.tail = 4000; /* the first write wraps */
	CHECK_EQ(nsk_ring_init(&r, &ctl, g.data, 4096), 0);
	static uint8_t src[8192], dst[8192], scratch[8192];
	pattern(src, 0, sizeof(src));

	/* nsk_iov_total and leading zero-length entries. */
	struct iovec z[3] = {{src, 0}, {src, 0}, {src, 5}};
	CHECK_EQ(nsk_iov_total(z, 3), 5);
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, z, 3);
	CHECK(cur.iov == &z[2] && cur.cnt == 1 && cur.off == 0);
	nsk_iovcur_init(&cur, z, 2); /* nothing but empty entries */
	CHECK_EQ(cur.cnt, 0);
	CHECK_EQ(nsk_ring_write(&r, &cur, 100), 0);
	CHECK_EQ(ctl.tail, 4000);

	/* Write from 6 pieces (with empty ones inside), stopping mid-piece via max. */
	struct iovec w[6] = {{src, 10},     {src + 10, 0}, {src + 10, 20},
	                     {src + 30, 1}, {src + 31, 0}, {src + 31, 4500}};
	CHECK_EQ(nsk_iov_total(w, 6), 4531);
	nsk_iovcur_init(&cur, w, 6);
	CHECK_EQ(nsk_ring_write(&r, &cur, 15), 15);
	CHECK(cur.iov == &w[2] && cur.off == 5 && cur.cnt == 4);
	CHECK_EQ(nsk_ring_write(&r, &cur, 15), 15); /* finishes w[2] exactly */
	CHECK(cur.iov == &w[3] && cur.off == 0 && cur.cnt == 3);
	CHECK_EQ(nsk_ring_write(&r, &cur, 1), 1); /* w[3]; the empty w[4] may stay ahead */
	CHECK(((cur.iov == &w[4] && cur.cnt == 2) || (cur.iov == &w[5] && cur.cnt == 1)) &&
	      cur.off == 0);
	CHECK_EQ(nsk_ring_write(&r, &cur, SIZE_MAX), 4096 - 31); /* ring full */
	CHECK(cur.iov == &w[5] && cur.off == 4096 - 31);
	CHECK_EQ(nsk_ring_used(&r), 4096);

	/* Read into scattered pieces, across the wrap. */
	memset(dst, 0xee, sizeof(dst));
	struct iovec rv[5] = {
	    {dst, 3}, {dst + 3, 0}, {dst + 3, 1000}, {dst + 1003, 93}, {dst + 1096, 5000}};
	nsk_iovcur_init(&cur, rv, 5);
	CHECK_EQ(nsk_ring_read(&r, &cur, 50, 0), 50);
	CHECK(cur.iov == &rv[2] && cur.off == 47);
	CHECK_EQ(nsk_ring_read(&r, &cur, SIZE_MAX, 0), 4096 - 50);
	CHECK(cur.iov == &rv[4] && cur.off == 4096 - 1096);
	check_pattern(dst, 0, 4096, scratch);
	CHECK(dst[4096] == 0xee);
	/* The rest of the writer's iovec, then a reader cursor that runs out first. */
	CHECK_EQ(nsk_ring_write(&r, &cur, 0), 0);
	nsk_iovcur_init(&cur, w, 6);
	cur.iov = &w[5];
	cur.cnt = 1;
	cur.off = 4096 - 31;
	CHECK_EQ(nsk_ring_write(&r, &cur, SIZE_MAX), 4531 - 4096);
	CHECK_EQ(cur.cnt, 0);
	struct iovec small[2] = {{dst, 100}, {dst + 100, 7}};
	nsk_iovcur_init(&cur, small, 2);
	CHECK_EQ(nsk_ring_read(&r, &cur, SIZE_MAX, 0), 107); /* cursor space, not max, limits */
	CHECK_EQ(cur.cnt, 0);
	check_pattern(dst, 4096, 107, scratch);
	CHECK_EQ(nsk_ring_used(&r), 4531 - 4096 - 107);
	guarded_free(&g);
}

/* ---------------------------------------------------------------- peek ---------------- */

static void test_peek(void)
{
	struct guarded g;
	guarded_alloc(&g, 4096);
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	nsk_ring_format(&ctl, 0);
	ctl.head = ctl.tail = 4096 * 7 - 30; /* data wraps */
	CHECK_EQ(nsk_ring_init(&r, &ctl, g.data, 4096), 0);
	uint8_t in[200], out[200], scratch[200];
	pattern(in, 0, 100);
	CHECK_EQ(write1(&r, in, 100), 100);
	for (int k = 0; k < 3; k++) {
		memset(out, 0, sizeof(out));
		CHECK_EQ(read1(&r, out, 50, 1), 50);
		check_pattern(out, 0, 50, scratch);
		CHECK_EQ(nsk_ring_used(&r), 100);
		CHECK_EQ(ctl.head, 4096 * 7 - 30);
	}
	CHECK_EQ(read1(&r, out, 200, 1), 100);
	check_pattern(out, 0, 100, scratch);
	CHECK_EQ(read1(&r, out, 40, 0), 40);
	check_pattern(out, 0, 40, scratch);
	CHECK_EQ(read1(&r, out, 200, 1), 60);
	check_pattern(out, 40, 60, scratch);
	CHECK_EQ(read1(&r, out, 200, 0), 60);
	check_pattern(out, 40, 60, scratch);
	CHECK_EQ(read1(&r, out, 200, 1), 0);
	guarded_free(&g);
}

/* ---------------------------------------------------------------- corrupt indices ----- */

static void test_corrupt(void)
{
	struct guarded g;
	guarded_alloc(&g, 4096);
	struct nsk_ring_ctl ctl;
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, &ctl, g.data, 4096), 0);
	struct {
		uint64_t head, tail;
		int64_t used; /* expected, -EPROTO for a violation */
	} cases[] = {
	    {0, 4097, -EPROTO}, /* tail - head > size */
	    {100, 100 + 4096 + 1, -EPROTO},
	    {0, 1ull << 32, -EPROTO},
	    {1, 0, -EPROTO}, /* head > tail */
	    {5000, 4999, -EPROTO},
	    {UINT64_MAX, UINT64_MAX - 1, -EPROTO},
	    {0, UINT64_MAX, -EPROTO}, /* huge */
	    {1ull << 63, 0, -EPROTO},
	    {0, 1ull << 63, -EPROTO},
	    {0x8000000000000000ull, 0x7fffffffffffffffull, -EPROTO},
	    {12345, 12345 + (1ull << 40), -EPROTO},
	    /* legal extremes: full, empty and indices wrapping past 2^64 */
	    {0, 4096, 4096},
	    {UINT64_MAX, UINT64_MAX, 0},
	    {UINT64_MAX - 9, 4086, 4096},
	    {UINT64_MAX - 10, 5, 16},
	    {UINT64_MAX, 0, 1},
	};
	uint8_t buf[8192], saved[4096];
	for (size_t i = 0; i < 4096; i++)
		g.data[i] = (uint8_t)(i * 7 + 1);
	memcpy(saved, g.data, 4096);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nsk_ring_format(&ctl, 0);
		ctl.head = cases[i].head;
		ctl.tail = cases[i].tail;
		int64_t u = nsk_ring_used(&r), f = nsk_ring_free(&r);
		if (u != cases[i].used)
			FAILF("case %zu head %" PRIu64 " tail %" PRIu64 ": used %" PRId64
			      ", expected %" PRId64,
			      i, cases[i].head, cases[i].tail, u, cases[i].used);
		CHECK_EQ(f, cases[i].used < 0 ? -EPROTO : 4096 - cases[i].used);

		memset(buf, 0xee, sizeof(buf));
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct nsk_iovcur cur;
		nsk_iovcur_init(&cur, &iov, 1);
		ssize_t n = nsk_ring_read(&r, &cur, sizeof(buf), 1);
		if (cases[i].used < 0) {
			CHECK_EQ(n, -EPROTO);
			CHECK_EQ(cur.off, 0);
			CHECK(buf[0] == 0xee && buf[4095] == 0xee);
			CHECK_EQ(nsk_ring_read(&r, &cur, sizeof(buf), 0), -EPROTO);
			CHECK_EQ(cur.off, 0);
			CHECK_EQ(ctl.head, cases[i].head); /* nothing consumed */
			nsk_iovcur_init(&cur, &iov, 1);
			CHECK_EQ(nsk_ring_write(&r, &cur, sizeof(buf)), -EPROTO);
			CHECK_EQ(cur.off, 0);
			CHECK_EQ(ctl.tail, cases[i].tail);       /* nothing produced */
			CHECK(memcmp(g.data, saved, 4096) == 0); /* ring memory untouched */
		} else {
			/* The legal cases read exactly the used bytes, from the masked position. */
			CHECK_EQ(n, cases[i].used);
			for (ssize_t k = 0; k < n; k++)
				CHECK(buf[k] == saved[(cases[i].head + (uint64_t)k) & 4095]);
			nsk_iovcur_init(&cur, &iov, 1);
			CHECK_EQ(nsk_ring_write(&r, &cur, sizeof(buf)), 4096 - cases[i].used);
			CHECK_EQ(ctl.tail, cases[i].head + 4096);
			CHECK_EQ(nsk_ring_read(&r, &cur, sizeof(buf), 0), 4096);
			CHECK_EQ(ctl.head, ctl.tail);
			for (size_t k = 0; k < 4096; k++)
				g.data[k] = saved[k];
		}
	}
	guarded_free(&g);
}

/* A hostile peer rewrites both indices at random while we use the ring: every call must
 * return -EPROTO or a count within its limit, and stay inside the guarded data area. */
struct hostile {
	struct nsk_ring_ctl *ctl;
	_Atomic int stop;
	uint64_t seed;
};

static void *hostile_thread(void *arg)
{
	struct hostile *h = arg;
	uint64_t s = h->seed;
	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		uint64_t v = t_rng(&s);
		uint64_t base = t_rng(&s);
		switch (v & 3) {
		case 0: /* garbage */
			nsk_store64(&h->ctl->head, t_rng(&s));
			nsk_store64(&h->ctl->tail, t_rng(&s));
			break;
		case 1: /* plausible */
			nsk_store64(&h->ctl->head, base);
			nsk_store64(&h->ctl->tail, base + (t_rng(&s) % 4097));
			break;
		case 2: /* one past */
			nsk_store64(&h->ctl->head, base);
			nsk_store64(&h->ctl->tail, base + 4097 + (t_rng(&s) & 0xffff));
			break;
		default: /* head ahead */
			nsk_store64(&h->ctl->tail, base);
			nsk_store64(&h->ctl->head, base + 1 + (t_rng(&s) & 0xff));
			break;
		}
	}
	return NULL;
}

static void test_hostile(void)
{
	struct guarded g;
	guarded_alloc(&g, 4096);
	struct nsk_ring_ctl *ctl = aligned_alloc(64, sizeof(*ctl));
	CHECK(ctl);
	nsk_ring_format(ctl, 0);
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, ctl, g.data, 4096), 0);
	struct hostile h = {.ctl = ctl, .seed = seed ^ 0x5555};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, hostile_thread, &h), 0);
	static uint8_t buf[3][3000];
	uint64_t s = seed, calls = 0, eproto = 0, moved = 0;
	uint64_t t_end = t_now_ns() + 200000000ull;
	while (t_now_ns() < t_end) {
		for (int k = 0; k < 64; k++, calls++) {
			struct iovec iov[3];
			for (int j = 0; j < 3; j++) {
				iov[j].iov_base = buf[j];
				iov[j].iov_len = t_rng(&s) % 3000;
			}
			size_t total = nsk_iov_total(iov, 3);
			size_t max = t_rng(&s) % 9000;
			size_t lim = max < total ? max : total;
			struct nsk_iovcur cur;
			nsk_iovcur_init(&cur, iov, 3);
			uint64_t op = t_rng(&s) % 3;
			ssize_t n = op == 0   ? nsk_ring_write(&r, &cur, max)
			            : op == 1 ? nsk_ring_read(&r, &cur, max, 0)
			                      : nsk_ring_read(&r, &cur, max, 1);
			if (n == -EPROTO) {
				eproto++;
				continue;
			}
			if (n < 0 || (size_t)n > lim || (size_t)n > 4096)
				FAILF("op %" PRIu64 " returned %zd (limit %zu)", op, n, lim);
			/* the cursor moved by exactly n bytes */
			size_t adv = 0;
			for (const struct iovec *p = iov; p < cur.iov; p++)
				adv += p->iov_len;
			adv += cur.off;
			CHECK_EQ(adv, n);
			moved += (uint64_t)n;
		}
	}
	atomic_store(&h.stop, 1);
	pthread_join(th, NULL);
	printf("   %" PRIu64 " calls under a hostile peer, %" PRIu64 " -EPROTO, %" PRIu64
	       " bytes moved, no out-of-ring access\n",
	       calls, eproto, moved);
	CHECK(eproto > 0);
	free(ctl);
	guarded_free(&g);
}

/* ---------------------------------------------------------------- two-process stress -- */

#define STRESS_RING (64u << 10)
#define STRESS_WAIT_NS (3ull * 1000000000ull) /* one futex sleep longer than this: lost wake-up */
#define STRESS_LIMIT_NS (90ull * 1000000000ull)

struct stress_shared {
	struct nsk_ring_ctl ctl;
	uint64_t total;
	uint64_t cons_sleeps, cons_wakes_sent, cons_reads;
	uint64_t prod_sleeps, prod_wakes_sent, prod_writes;
	uint64_t resize, resizes, resize_busy; /* producer resizes at random (dynamic sizing) */
	uint8_t pad[4096 - sizeof(struct nsk_ring_ctl) - 10 * 8];
	uint8_t data[STRESS_RING];
};
_Static_assert(offsetof(struct stress_shared, data) == 4096, "data on its own page");

/* Random sizes: mostly small, sometimes larger than the ring (partial writes). */
static size_t rand_len(uint64_t *s)
{
	uint64_t v = t_rng(s);
	switch (v % 10) {
	case 0:
	case 1:
	case 2:
	case 3:
		return 1 + (size_t)((v >> 8) % 64);
	case 4:
	case 5:
	case 6:
		return 1 + (size_t)((v >> 8) % 4096);
	default:
		return 1 + (size_t)((v >> 8) % (2 * STRESS_RING));
	}
}

/* Split [buf, buf+len) into 1-4 iovecs, some of them empty. */
static int rand_iov(uint64_t *s, uint8_t *buf, size_t len, struct iovec *iov)
{
	int n = 1 + (int)(t_rng(s) % 4);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		size_t l = i == n - 1 ? len - off : (size_t)(t_rng(s) % (len - off + 1));
		iov[i].iov_base = buf + off;
		iov[i].iov_len = l;
		off += l;
	}
	return n;
}

/* Sleep until the ring has data (cons) or space (!cons); the real protocol of sock.c:
 * read the sequence word, arm, re-check, futex_wait. Returns 1 if it slept. */
static int stress_sleep(struct stress_shared *sh, struct nsk_ring *r, int cons, pid_t peer)
{
	uint32_t *armed = cons ? &sh->ctl.cons_armed : &sh->ctl.prod_armed;
	uint32_t *seqw = cons ? &sh->ctl.data_seq : &sh->ctl.space_seq;
	/* Acquire pairs with nsk_futex_bump's release by the peer. */
	uint32_t seq = nsk_load32_acquire(seqw);
	nsk_arm(armed, NSK_ARM_FUTEX);
	int64_t ready = cons ? nsk_ring_used(r) : nsk_ring_free(r);
	CHECK(ready >= 0);
	if (ready) {
		nsk_disarm(armed, NSK_ARM_FUTEX);
		return 0;
	}
	uint64_t t0 = t_now_ns();
	for (;;) {
		int64_t left = (int64_t)STRESS_WAIT_NS - (int64_t)(t_now_ns() - t0);
		int ret = left > 0 ? nsk_futex_wait(seqw, seq, left) : -ETIMEDOUT;
		if (ret == 0)
			break;
		if (ret == -EINTR)
			continue;
		CHECK_EQ(ret, -ETIMEDOUT);
		if (peer > 0 && waitpid(peer, NULL, WNOHANG) == peer)
			FAILF("%s: peer process died", cons ? "consumer" : "producer");
		FAILF("%s slept %.1f s without a wake-up (lost wake-up): used %" PRId64
		      " armed cons %u prod %u seq %u/%u head %" PRIu64 " tail %" PRIu64,
		      cons ? "consumer" : "producer", STRESS_WAIT_NS / 1e9, nsk_ring_used(r),
		      nsk_load32(&sh->ctl.cons_armed), nsk_load32(&sh->ctl.prod_armed), seq,
		      nsk_load32(seqw), nsk_load64(&sh->ctl.head), nsk_load64(&sh->ctl.tail));
	}
	nsk_disarm(armed, NSK_ARM_FUTEX);
	return 1;
}

static void stress_consumer(struct stress_shared *sh, uint64_t s)
{
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, &sh->ctl, sh->data, STRESS_RING), 0);
	size_t bufsz = 2 * STRESS_RING + 16;
	uint8_t *buf = malloc(bufsz), *scratch = malloc(bufsz);
	CHECK(buf && scratch);
	uint64_t got = 0, total = sh->total, t0 = t_now_ns();
	while (got < total) {
		size_t want = rand_len(&s);
		struct iovec iov[4];
		int n = rand_iov(&s, buf, want, iov);
		struct nsk_iovcur cur;
		nsk_iovcur_init(&cur, iov, n);
		ssize_t k = nsk_ring_read(&r, &cur, want, 0);
		CHECK(k >= 0 && (size_t)k <= want);
		if (k == 0) {
			sh->cons_sleeps += (uint64_t)stress_sleep(sh, &r, 1, getppid());
			continue;
		}
		sh->cons_reads++;
		check_pattern(buf, got, (size_t)k, scratch);
		got += (uint64_t)k;
		/* we freed space: wake the producer if it asked */
		if (nsk_take(&sh->ctl.prod_armed) & NSK_ARM_FUTEX) {
			nsk_futex_bump(&sh->ctl.space_seq);
			sh->cons_wakes_sent++;
		}
		if (t_now_ns() - t0 > STRESS_LIMIT_NS)
			FAILF("consumer: time limit after %" PRIu64 " bytes", got);
	}
	CHECK_EQ(nsk_ring_used(&r), 0);
	free(buf);
	free(scratch);
}

static void stress_producer(struct stress_shared *sh, uint64_t s, pid_t child)
{
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, &sh->ctl, sh->data, STRESS_RING), 0);
	size_t bufsz = 2 * STRESS_RING + 16;
	uint8_t *buf = malloc(bufsz);
	CHECK(buf);
	uint64_t sent = 0, total = sh->total, t0 = t_now_ns();
	while (sent < total) {
		size_t len = rand_len(&s);
		if (len > total - sent)
			len = (size_t)(total - sent);
		pattern(buf, sent, len);
		struct iovec iov[4];
		int n = rand_iov(&s, buf, len, iov);
		struct nsk_iovcur cur;
		nsk_iovcur_init(&cur, iov, n);
		size_t left = len;
		if (sh->resize && t_rng(&s) % 4 == 0) {
			/* a random capacity, taken only if the ring is empty (else -EBUSY) */
			uint64_t cap = (uint64_t)NSK_RING_MIN << (t_rng(&s) % 5);
			int rr = nsk_ring_resize(&r, cap);
			CHECK(rr == 0 || rr == -EBUSY);
			if (rr == 0)
				sh->resizes++;
			else
				sh->resize_busy++;
		}
		while (left) {
			ssize_t k = nsk_ring_write(&r, &cur, left);
			CHECK(k >= 0 && (size_t)k <= left);
			if (k == 0) {
				sh->prod_sleeps += (uint64_t)stress_sleep(sh, &r, 0, child);
				continue;
			}
			sh->prod_writes++;
			left -= (size_t)k;
			/* we published data: wake the consumer if it asked */
			if (nsk_take(&sh->ctl.cons_armed) & NSK_ARM_FUTEX) {
				nsk_futex_bump(&sh->ctl.data_seq);
				sh->prod_wakes_sent++;
			}
		}
		sent += len;
		if (t_now_ns() - t0 > STRESS_LIMIT_NS)
			FAILF("producer: time limit after %" PRIu64 " bytes", sent);
	}
	free(buf);
}

static void stress_2proc(int resize)
{
	uint64_t mib = t_tsan() ? 64 : 256; /* ThreadSanitizer: ~40 MiB/s */
	const char *e = getenv("NSK_RING_STRESS_MIB");
	if (e && *e)
		mib = strtoull(e, NULL, 0);
	if (resize)
		mib /= 4;
	struct stress_shared *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED);
	nsk_ring_format(&sh->ctl, resize ? NSK_RING_MIN : 0);
	sh->resize = (uint64_t)resize;
	/* start near a 2^32 boundary of the byte counters (the futex words are 32-bit too) */
	sh->ctl.head = sh->ctl.tail = (1ull << 32) - 12345;
	sh->total = mib << 20;
	uint64_t s = seed;
	uint64_t cseed = t_rng(&s), pseed = t_rng(&s);
	uint64_t t0 = t_now_ns();
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(110);
		stress_consumer(sh, cseed);
		_exit(0);
	}
	stress_producer(sh, pseed, pid);
	t_wait_child(pid, "consumer");
	double sec = (double)(t_now_ns() - t0) / 1e9;
	printf("   %" PRIu64 " MiB in %.2f s (%.0f MiB/s); producer %" PRIu64 " writes, %" PRIu64
	       " sleeps, %" PRIu64 " wakes sent; consumer %" PRIu64 " reads, %" PRIu64
	       " sleeps, %" PRIu64 " wakes sent\n",
	       mib, sec, (double)mib / sec, sh->prod_writes, sh->prod_sleeps, sh->prod_wakes_sent,
	       sh->cons_reads, sh->cons_sleeps, sh->cons_wakes_sent);
	if (resize) {
		printf("   capacity changed %" PRIu64 " times (%" PRIu64 " refused: ring not empty)\n",
		       sh->resizes, sh->resize_busy);
		CHECK(sh->resizes > 2); /* ~200 normally, 10-60 under ThreadSanitizer (load) */
	}
	CHECK_EQ(sh->ctl.tail - sh->ctl.head, 0);
	CHECK_EQ(sh->ctl.tail - ((1ull << 32) - 12345), sh->total);
	/* the sleep/wake protocol was actually exercised */
	CHECK(sh->prod_sleeps + sh->cons_sleeps > 0);
	munmap(sh, sizeof(*sh));
}

static void test_stress_2proc(void)
{
	stress_2proc(0);
}

/* The same stream while the producer changes the capacity at random (4 KiB .. 64 KiB) whenever
 * the ring is empty: the consumer, in another process, must read every byte in order. */
static void test_stress_resize(void)
{
	stress_2proc(1);
}

/* Dynamic sizing, one process: capacity changes only while empty, data placed modulo the new
 * capacity is read back exactly, and a capacity word scribbled by a hostile peer is refused
 * without any access outside the area (guard pages). */
static void test_resize(void)
{
	struct guarded g;
	const uint64_t area = 64u << 10;
	guarded_alloc(&g, area);
	struct nsk_ring_ctl ctl;
	nsk_ring_format(&ctl, NSK_RING_MIN);
	struct nsk_ring p, c; /* producer's and consumer's views */
	CHECK_EQ(nsk_ring_init(&p, &ctl, g.data, area), 0);
	CHECK_EQ(nsk_ring_init(&c, &ctl, g.data, area), 0);
	CHECK_EQ(p.size, NSK_RING_MIN);
	CHECK_EQ(nsk_ring_free(&p), NSK_RING_MIN);
	static uint8_t buf[1u << 17], scratch[1u << 17];
	uint64_t off = 0, got = 0, s = seed;
	uint64_t caps[] = {NSK_RING_MIN, 8192, 65536, 16384, 4096, 32768, 65536, 4096};
	for (int round = 0; round < 64; round++) {
		uint64_t cap = caps[round % 8];
		CHECK_EQ(nsk_ring_resize(&p, cap), 0);
		CHECK_EQ(nsk_ring_free(&p), (int64_t)cap);
		/* fill to a random level (wrapping), then empty it in random pieces */
		size_t n = 1 + (size_t)(t_rng(&s) % cap);
		pattern(buf, off, n);
		CHECK_EQ(write1(&p, buf, n), (ssize_t)n);
		off += n;
		/* not empty: refused, nothing changed */
		CHECK_EQ(nsk_ring_resize(&p, cap == 4096 ? 8192 : 4096), -EBUSY);
		CHECK_EQ(nsk_ring_used(&c), (int64_t)n);
		CHECK_EQ(c.size, cap); /* the consumer took up the capacity */
		while (got < off) {
			size_t want = 1 + (size_t)(t_rng(&s) % 5000);
			ssize_t k = read1(&c, buf, want, 0);
			CHECK(k > 0);
			check_pattern(buf, got, (size_t)k, scratch);
			got += (uint64_t)k;
		}
	}
	/* bad sizes */
	CHECK_EQ(nsk_ring_resize(&p, 3), -EINVAL);
	CHECK_EQ(nsk_ring_resize(&p, 2048), -EINVAL);
	CHECK_EQ(nsk_ring_resize(&p, 2 * area), -EINVAL);
	CHECK_EQ(nsk_ring_resize(&p, 12288), -EINVAL);
	/* a hostile capacity word: refused by both sides */
	uint64_t bad[] = {3, 2048, 2 * area, 12288, UINT64_MAX, 1ull << 40};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ctl.cap = bad[i];
		CHECK_EQ(nsk_ring_used(&c), -EPROTO);
		CHECK_EQ(nsk_ring_free(&p), -EPROTO);
		CHECK_EQ(write1(&p, buf, 10), -EPROTO);
		CHECK_EQ(read1(&c, buf, 10, 0), -EPROTO);
		CHECK_EQ(nsk_ring_resize(&p, 4096), -EPROTO);
	}
	/* 0 means the whole area */
	ctl.cap = 0;
	CHECK_EQ(nsk_ring_free(&p), (int64_t)area);
	guarded_free(&g);
}

/* Wake-up storm: the no-lost-wake-up rule checked exactly, at a high rate. The producer
 * publishes single bytes at random short intervals; after each publication it takes the
 * consumer's request (bumping the futex word if it was armed) and then announces
 * "take done for tail T". The consumer empties the ring, arms, re-checks, and if the ring is
 * still empty at head T0 it waits, spinning on the futex word instead of sleeping so that
 * rounds are short. The protocol promises: the take after the publication of byte T0+1 sees
 * the request, or the re-check sees that byte. So "take done for tail > T0" while the futex
 * word is unchanged is a lost wake-up, detected without any timeout. This is the window of a
 * missing fence in nsk_arm/nsk_take (store buffering); test_stress_2proc covers the futex
 * sleep itself. */
struct storm_shared {
	struct nsk_ring_ctl ctl;
	uint64_t take_done; /* producer: the take after publishing up to this tail is done */
	uint64_t stop;
	uint64_t waits, rechecks, consumed;
	uint8_t pad[4096 - sizeof(struct nsk_ring_ctl) - 40];
	uint8_t data[NSK_RING_MIN];
};

static void storm_consumer(struct storm_shared *sh)
{
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, &sh->ctl, sh->data, NSK_RING_MIN), 0);
	static uint8_t buf[NSK_RING_MIN], scratch[NSK_RING_MIN];
	uint64_t got = 0, t0 = t_now_ns();
	for (;;) {
		ssize_t k = read1(&r, buf, sizeof(buf), 0);
		CHECK(k >= 0);
		if (k > 0) {
			check_pattern(buf, got, (size_t)k, scratch);
			got += (uint64_t)k;
			continue;
		}
		/* Acquire pairs with nsk_futex_bump's release by the producer. */
		uint32_t seq = nsk_load32_acquire(&sh->ctl.data_seq);
		nsk_arm(&sh->ctl.cons_armed, NSK_ARM_FUTEX);
		if (nsk_ring_used(&r) != 0) {
			nsk_disarm(&sh->ctl.cons_armed, NSK_ARM_FUTEX);
			sh->rechecks++;
			continue;
		}
		uint64_t head = nsk_load64(&sh->ctl.head); /* == the tail the re-check saw */
		for (unsigned n = 0;; n++) {
			if (nsk_load32_acquire(&sh->ctl.data_seq) != seq)
				break; /* woken */
			/* keep reading the tail line as a spinning reader does: the producer's
			 * tail store then waits in its store buffer, which widens the window */
			CHECK(nsk_ring_used(&r) >= 0);
			/* Acquire pairs with the producer's store-release of take_done, which
			 * follows its bump: a bump it made is visible to the seq load below. */
			uint64_t td = nsk_load64_acquire(&sh->take_done);
			if (td > head && nsk_load32_acquire(&sh->ctl.data_seq) == seq)
				FAILF("storm: lost wake-up: armed and re-checked at tail %" PRIu64
				      ", producer took the request after publishing up to %" PRIu64
				      " without seeing it (armed %u)",
				      head, td, nsk_load32(&sh->ctl.cons_armed));
			if (nsk_load64_acquire(&sh->stop) && nsk_ring_used(&r) == 0) {
				sh->consumed = got;
				return;
			}
			if ((n & 0xffff) == 0xffff) {
				sched_yield(); /* the producer may share our CPU */
				if (t_now_ns() - t0 > 60000000000ull)
					FAILF("storm: consumer time limit");
			}
		}
		nsk_disarm(&sh->ctl.cons_armed, NSK_ARM_FUTEX);
		sh->waits++;
	}
}

static void test_wake_storm(void)
{
	struct storm_shared *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED);
	nsk_ring_format(&sh->ctl, 0);
	uint64_t dur = 400000000ull, sent = 0, s = seed ^ 0x77;
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(90);
		storm_consumer(sh);
		_exit(0);
	}
	struct nsk_ring r;
	CHECK_EQ(nsk_ring_init(&r, &sh->ctl, sh->data, NSK_RING_MIN), 0);
	uint64_t t_end = t_now_ns() + dur;
	while (t_now_ns() < t_end) {
		for (int k = 0; k < 256; k++) {
			uint8_t b;
			pattern(&b, sent, 1);
			ssize_t n = write1(&r, &b, 1);
			CHECK(n >= 0);
			if (n == 0) { /* full: the consumer is behind */
				sched_yield();
				continue;
			}
			sent++;
			if (nsk_take(&sh->ctl.cons_armed) & NSK_ARM_FUTEX)
				nsk_futex_bump(&sh->ctl.data_seq);
			/* Release pairs with the consumer's acquire of take_done. */
			nsk_store64_release(&sh->take_done, nsk_load64(&sh->ctl.tail));
			unsigned delay = (unsigned)(t_rng(&s) % 256);
			for (volatile unsigned d = 0; d < delay; d++)
				;
		}
	}
	nsk_store64_release(&sh->stop, 1);
	t_wait_child(pid, "storm consumer");
	CHECK_EQ(sh->consumed, sent);
	printf("   %" PRIu64 " one-byte publications; consumer armed and waited %" PRIu64
	       " times, re-check after arming found data %" PRIu64 " times\n",
	       sent, sh->waits, sh->rechecks);
	munmap(sh, sizeof(*sh));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(115);
	seed = t_seed();
	RUN(test_init);
	RUN(test_empty_full);
	RUN(test_wrap_odd);
	RUN(test_iov);
	RUN(test_peek);
	RUN(test_corrupt);
	RUN(test_hostile);
	RUN(test_stress_2proc);
	RUN(test_resize);
	RUN(test_stress_resize);
	RUN(test_wake_storm);
	return 0;
}
