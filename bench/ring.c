// SPDX-License-Identifier: MIT
/*
 * ring.c — the limit: a raw single-producer/single-consumer byte ring in a shared memfd segment
 * between two processes, with no socket API at all. One ring per direction; stream mode moves
 * bytes like a socket, datagram mode moves length-prefixed records. Waiting is spin-then-futex
 * with event suppression, as in the design: the consumer arms before sleeping and the producer
 * wakes only an armed peer; with --cpus shared the wake-ups are also deferred (batched) until half
 * a ring is ready or the waker is about to sleep itself. Indices are free-running 64-bit counters;
 * memory order comments name the partner of every non-relaxed operation.
 */
#include "bench.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

#define HDR_BYTES 4096

/* Shared header of one direction. Each group sits on its own cache line: the producer line, the
 * consumer line, and the two wait flags (written only when a side goes to sleep). */
struct ring_hdr {
	_Alignas(64) _Atomic uint64_t head; /* producer: bytes published */
	_Atomic uint32_t data_seq;          /* producer: futex word the consumer sleeps on */
	_Alignas(64) _Atomic uint64_t tail; /* consumer: bytes consumed */
	_Atomic uint32_t space_seq;         /* consumer: futex word the producer sleeps on */
	_Alignas(64) _Atomic uint32_t cons_waiting;
	_Alignas(64) _Atomic uint32_t prod_waiting;
	_Alignas(64) _Atomic uint32_t done; /* producer: no more data will come */
};
_Static_assert(2 * sizeof(struct ring_hdr) <= HDR_BYTES, "ring headers fit the header page");

struct ring {
	struct ring_hdr *h;
	char *data;
	uint64_t cap, mask;
	uint64_t head, tail; /* own index (exact) and cached peer index */
	long spin_ns;
	int producer; /* this process produces (1) or consumes (0) on this ring */
	int lazy;     /* defer wake-ups to half a ring or until we wait ourselves */
	int pending;  /* a deferred wake-up is owed to the peer */
};

/* Rings this process uses: every deferred wake-up is delivered before this process sleeps, so
 * laziness batches work on a shared core but can never leave both sides asleep. */
static struct ring *mine[2];
static void flush_wakeups(void);

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* nsk_bench_ring_segment_size — bytes of the memfd for two rings of ring_size data bytes each. */
size_t nsk_bench_ring_segment_size(size_t ring_size)
{
	return HDR_BYTES + 2 * ring_size;
}

static void ring_attach(struct ring *r, char *seg, int dir, const struct nsk_bench_ctx *c,
                        int producer)
{
	r->h = (struct ring_hdr *)(void *)seg + dir;
	r->data = seg + HDR_BYTES + (size_t)dir * c->ring_size;
	r->cap = c->ring_size;
	r->mask = c->ring_size - 1;
	r->head = r->tail = 0;
	r->spin_ns = c->spin_ns;
	r->producer = producer;
	r->lazy = c->ring_lazy;
	r->pending = 0;
	mine[dir] = r;
}

/* Producer side ------------------------------------------------------------------------------ */

static void wake_consumer(struct ring *r)
{
	/* Pairs with the seq_cst store of cons_waiting + load of head in wait_data (Dekker): either
	 * we see the flag, or the consumer sees our new head before it sleeps. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->h->cons_waiting, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&r->h->data_seq, 1, memory_order_release);
		futex_wake(&r->h->data_seq);
	}
}

static uint64_t space(struct ring *r)
{
	return r->cap - (r->head - r->tail);
}

/* wait_space — until at least need bytes are free (r->tail refreshed). */
static void wait_space(struct ring *r, uint64_t need)
{
	uint64_t start = 0;

	for (unsigned i = 0;; i++) {
		/* Pairs with the store_release of tail in pop_done: the consumer finished reading.
		 */
		r->tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
		if (space(r) >= need)
			return;
		if (r->spin_ns <= 0)
			break;
		if ((i & 63) == 0) {
			uint64_t now = nsk_bench_now_ns();

			if (!start)
				start = now;
			else if ((long)(now - start) >= r->spin_ns)
				break;
		}
		cpu_relax();
	}
	for (;;) {
		uint32_t seq = atomic_load_explicit(&r->h->space_seq, memory_order_acquire);

		/* Arm, then re-check (pairs with the fence in wake_producer). */
		atomic_store_explicit(&r->h->prod_waiting, 1, memory_order_seq_cst);
		r->tail = atomic_load_explicit(&r->h->tail, memory_order_seq_cst);
		if (space(r) >= need)
			break;
		flush_wakeups();
		futex_wait(&r->h->space_seq, seq);
	}
	atomic_store_explicit(&r->h->prod_waiting, 0, memory_order_relaxed);
}

static void copy_in(struct ring *r, uint64_t at, const void *src, size_t len)
{
	size_t off = (size_t)(at & r->mask), first = r->cap - off;

	if (first >= len) {
		memcpy(r->data + off, src, len);
	} else {
		memcpy(r->data + off, src, first);
		memcpy(r->data, (const char *)src + first, len - first);
	}
}

static void publish(struct ring *r, uint64_t n)
{
	r->head += n;
	/* Pairs with the load_acquire of head in wait_data/avail: the copied bytes are visible. */
	atomic_store_explicit(&r->h->head, r->head, memory_order_release);
	if (r->lazy) {
		/* Fresh tail, not the cached one (pairs with the store_release in pop_done). */
		r->tail = atomic_load_explicit(&r->h->tail, memory_order_acquire);
		if (r->head - r->tail < r->cap / 2) {
			r->pending = 1;
			return;
		}
	}
	r->pending = 0;
	wake_consumer(r);
}

/* push_stream — write len bytes, in pieces as space frees up. */
static void push_stream(struct ring *r, const char *src, size_t len)
{
	while (len) {
		uint64_t n;

		if (space(r) == 0)
			wait_space(r, 1);
		n = space(r) < len ? space(r) : len;
		copy_in(r, r->head, src, n);
		publish(r, n);
		src += n;
		len -= n;
	}
}

/* push_record — write one length-prefixed record (len + 4 <= cap), published at once. */
static void push_record(struct ring *r, const char *src, size_t len)
{
	uint32_t l = (uint32_t)len;
	uint64_t need = sizeof(l) + len;

	if (space(r) < need)
		wait_space(r, need);
	copy_in(r, r->head, &l, sizeof(l));
	copy_in(r, r->head + sizeof(l), src, len);
	publish(r, need);
}

static void finish(struct ring *r)
{
	/* Pairs with the load_acquire of done in wait_data: everything before it is published. */
	atomic_store_explicit(&r->h->done, 1, memory_order_release);
	wake_consumer(r);
}

/* Consumer side ------------------------------------------------------------------------------ */

static void wake_producer(struct ring *r)
{
	/* Pairs with the seq_cst arm + tail load in wait_space. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->h->prod_waiting, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&r->h->space_seq, 1, memory_order_release);
		futex_wake(&r->h->space_seq);
	}
}

static uint64_t avail(struct ring *r)
{
	return r->head - r->tail;
}

/* wait_data — until at least need bytes are readable; returns 0, or 1 if the producer is done
 * and fewer than need bytes will ever come. */
static int wait_data(struct ring *r, uint64_t need)
{
	uint64_t start = 0;
	int done;

	for (unsigned i = 0;; i++) {
		/* Pairs with the store_release of head in publish. */
		r->head = atomic_load_explicit(&r->h->head, memory_order_acquire);
		if (avail(r) >= need)
			return 0;
		if (r->spin_ns <= 0)
			break;
		if ((i & 63) == 0) {
			uint64_t now = nsk_bench_now_ns();

			if (!start)
				start = now;
			else if ((long)(now - start) >= r->spin_ns)
				break;
		}
		cpu_relax();
	}
	for (;;) {
		uint32_t seq = atomic_load_explicit(&r->h->data_seq, memory_order_acquire);

		/* Arm, then re-check (pairs with the fence in wake_consumer). */
		atomic_store_explicit(&r->h->cons_waiting, 1, memory_order_seq_cst);
		/* done before head: head read after done covers everything published before it
		 * (pairs with the store_release of done in finish). */
		done = atomic_load_explicit(&r->h->done, memory_order_acquire);
		r->head = atomic_load_explicit(&r->h->head, memory_order_seq_cst);
		if (avail(r) >= need || done)
			break;
		flush_wakeups();
		futex_wait(&r->h->data_seq, seq);
	}
	atomic_store_explicit(&r->h->cons_waiting, 0, memory_order_relaxed);
	return avail(r) >= need ? 0 : 1;
}

static void copy_out(struct ring *r, uint64_t at, void *dst, size_t len)
{
	size_t off = (size_t)(at & r->mask), first = r->cap - off;

	if (first >= len) {
		memcpy(dst, r->data + off, len);
	} else {
		memcpy(dst, r->data + off, first);
		memcpy((char *)dst + first, r->data, len - first);
	}
}

static void pop_done(struct ring *r, uint64_t n)
{
	r->tail += n;
	/* Pairs with the load_acquire of tail in wait_space: we finished reading those bytes. */
	atomic_store_explicit(&r->h->tail, r->tail, memory_order_release);
	if (r->lazy) {
		/* Fresh head (pairs with the store_release in publish). */
		r->head = atomic_load_explicit(&r->h->head, memory_order_acquire);
		if (avail(r) > r->cap / 2) {
			r->pending = 1;
			return;
		}
	}
	r->pending = 0;
	wake_producer(r);
}

static void flush_wakeups(void)
{
	for (int i = 0; i < 2; i++) {
		struct ring *r = mine[i];

		if (!r || !r->pending)
			continue;
		r->pending = 0;
		if (r->producer)
			wake_consumer(r);
		else
			wake_producer(r);
	}
}

/* pop_stream — read up to max bytes (at least 1); returns the count, or 0 at end of stream. */
static size_t pop_stream(struct ring *r, char *dst, size_t max)
{
	uint64_t n;

	if (avail(r) == 0 && wait_data(r, 1))
		return 0;
	n = avail(r) < max ? avail(r) : max;
	copy_out(r, r->tail, dst, n);
	pop_done(r, n);
	return n;
}

/* pop_exact — read exactly len bytes; 0, or -EPIPE at end of stream. */
static int pop_exact(struct ring *r, char *dst, size_t len)
{
	while (len) {
		size_t n = pop_stream(r, dst, len);

		if (!n)
			return -EPIPE;
		dst += n;
		len -= n;
	}
	return 0;
}

/* pop_record — read one record into dst (max bytes); returns its length, or -EPIPE at the end,
 * or -EPROTO if the length word is out of bounds. */
static long pop_record(struct ring *r, char *dst, size_t max)
{
	uint32_t l;

	if (avail(r) < sizeof(l) && wait_data(r, sizeof(l)))
		return -EPIPE;
	copy_out(r, r->tail, &l, sizeof(l));
	if (l > max || l > avail(r) - sizeof(l)) /* published with its header, bounds-checked */
		return -EPROTO;
	copy_out(r, r->tail + sizeof(l), dst, l);
	pop_done(r, sizeof(l) + l);
	return (long)l;
}

/* Modes ---------------------------------------------------------------------------------------- */

static int map(struct nsk_bench_ctx *c, char **seg)
{
	size_t len = nsk_bench_ring_segment_size(c->ring_size);
	void *p;

	if (c->ring_size < 4096 || (c->ring_size & (c->ring_size - 1)))
		return -EINVAL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, c->shm_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	*seg = p;
	return 0;
}

static int stream_server(struct nsk_bench_ctx *c, struct ring *r, int dgram)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	size_t rsz = c->size > 65536 ? c->size : 65536;
	char *buf = nsk_bench_buf(rsz);

	if (!buf)
		return -ENOMEM;
	nsk_bench_ready(c);
	if (wait_data(r, 1) == 0) /* the window opens with the first byte, as accept() does */
		nsk_bench_usage_begin(&u);
	else
		return nsk_bench_fail(c, "no data", -EPIPE);
	for (;;) {
		if (dgram) {
			long n = pop_record(r, buf, rsz);

			if (n == -EPIPE)
				break;
			if (n < 0)
				return nsk_bench_fail(c, "pop_record", (int)n);
			rep.msgs++;
			rep.bytes += (uint64_t)n;
		} else {
			size_t n = pop_stream(r, buf, rsz);

			if (!n)
				break;
			rep.bytes += n;
		}
	}
	nsk_bench_usage_end(&u, &rep);
	if (!dgram)
		rep.msgs = rep.bytes / c->size;
	return nsk_bench_report(c, &rep);
}

static int stream_client(struct nsk_bench_ctx *c, struct ring *r, int dgram)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	char *buf = nsk_bench_buf(c->size);
	int every = nsk_bench_check_every(c->size), i = 0;
	uint64_t end;

	if (!buf)
		return -ENOMEM;
	if (dgram && c->size + 4 > r->cap)
		return nsk_bench_fail(c, "record larger than the ring", -EMSGSIZE);
	nsk_bench_usage_begin(&u);
	end = u.t_ns + (uint64_t)(c->duration * 1e9);
	for (;;) {
		if (dgram)
			push_record(r, buf, c->size);
		else
			push_stream(r, buf, c->size);
		rep.msgs++;
		if (++i == every) {
			i = 0;
			if (nsk_bench_now_ns() >= end)
				break;
		}
	}
	finish(r);
	wait_space(r, r->cap); /* the consumer has read everything */
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size;
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_ring_stream — one-way transfer through the raw ring (server consumes, client
 * produces); dgram selects record framing. Returns 0 or -errno. */
int nsk_bench_ring_stream(struct nsk_bench_ctx *c, int dgram)
{
	struct ring r;
	char *seg;
	int err = map(c, &seg);

	if (err)
		return nsk_bench_fail(c, "map ring", err);
	ring_attach(&r, seg, 0, c, !c->server);
	return c->server ? stream_server(c, &r, dgram) : stream_client(c, &r, dgram);
}

static int rr_server(struct nsk_bench_ctx *c, struct ring *in, struct ring *out, int dgram)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_usage u;
	size_t bsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(bsz);
	int started = 0;

	if (!buf)
		return -ENOMEM;
	nsk_bench_ready(c);
	for (;;) {
		long n;

		if (!started && wait_data(in, 1) == 0) {
			nsk_bench_usage_begin(&u);
			started = 1;
		}
		n = dgram ? pop_record(in, buf, bsz) : pop_exact(in, buf, c->size);
		if (n == -EPIPE)
			break;
		if (n < 0)
			return nsk_bench_fail(c, "pop", (int)n);
		if (dgram)
			push_record(out, buf, (size_t)n);
		else
			push_stream(out, buf, c->size);
		rep.msgs++;
	}
	if (!started)
		return nsk_bench_fail(c, "no data", -EPIPE);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	return nsk_bench_report(c, &rep);
}

static int rr_client(struct nsk_bench_ctx *c, struct ring *out, struct ring *in, int dgram)
{
	struct nsk_bench_report rep = {0};
	struct nsk_bench_lat lat = {0};
	struct nsk_bench_usage u;
	size_t bsz = c->size < 64 ? 64 : c->size;
	char *buf = nsk_bench_buf(bsz);
	uint64_t t0, t1, end;

	if (!buf)
		return -ENOMEM;
	if (c->size + 4 > out->cap)
		return nsk_bench_fail(c, "message larger than the ring", -EMSGSIZE);
	nsk_bench_usage_begin(&u);
	t0 = u.t_ns;
	end = t0 + (uint64_t)(c->duration * 1e9);
	do {
		long n;

		if (dgram)
			push_record(out, buf, c->size);
		else
			push_stream(out, buf, c->size);
		n = dgram ? pop_record(in, buf, bsz) : pop_exact(in, buf, c->size);
		if (n < 0)
			return nsk_bench_fail(c, "pop", (int)n);
		t1 = nsk_bench_now_ns();
		nsk_bench_lat_push(&lat, t1 - t0);
		rep.msgs++;
		t0 = t1;
	} while (t1 < end);
	nsk_bench_usage_end(&u, &rep);
	rep.bytes = rep.msgs * c->size * 2;
	finish(out);
	nsk_bench_lat_finish(&lat, &rep);
	return nsk_bench_report(c, &rep);
}

/* nsk_bench_ring_rr — ping-pong through two raw rings (request ring 0, response ring 1).
 * Returns 0 or -errno. */
int nsk_bench_ring_rr(struct nsk_bench_ctx *c, int dgram)
{
	struct ring req, resp;
	char *seg;
	int err = map(c, &seg);

	if (err)
		return nsk_bench_fail(c, "map ring", err);
	ring_attach(&req, seg, 0, c, !c->server);
	ring_attach(&resp, seg, 1, c, c->server);
	return c->server ? rr_server(c, &req, &resp, dgram) : rr_client(c, &req, &resp, dgram);
}
