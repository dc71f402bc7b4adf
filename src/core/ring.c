/* SPDX-License-Identifier: MIT */
/* ring.c — SPSC byte ring (see ring.h). */
#include "core/ring.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "core/atomics.h"
#include "platform/linux.h"

void nsk_iovcur_init(struct nsk_iovcur *c, const struct iovec *iov, int cnt)
{
	c->iov = iov;
	c->cnt = cnt;
	c->off = 0;
	while (c->cnt > 0 && c->iov->iov_len == 0) {
		c->iov++;
		c->cnt--;
	}
}

size_t nsk_iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;
	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/* Copy between the ring span [p, p+n) and the cursor; to_ring selects the direction. */
static size_t iov_copy(struct nsk_iovcur *c, uint8_t *p, size_t n, int to_ring)
{
	size_t done = 0;
	while (done < n && c->cnt > 0) {
		size_t chunk = c->iov->iov_len - c->off;
		if (chunk > n - done)
			chunk = n - done;
		uint8_t *u = (uint8_t *)c->iov->iov_base + c->off;
		if (to_ring)
			memcpy(p + done, u, chunk);
		else
			memcpy(u, p + done, chunk);
		done += chunk;
		c->off += chunk;
		if (c->off == c->iov->iov_len) {
			c->iov++;
			c->cnt--;
			c->off = 0;
		}
	}
	return done;
}

/* The capacity in use: published in the control block (the peer's word: validated), also
 * kept in r->size for callers (a relaxed atomic: readiness checks read it from other threads
 * while a sender takes up a new value). Returns it, or -EPROTO. */
static int64_t cur_cap(struct nsk_ring *r)
{
	uint64_t cap = nsk_load64_acquire(&r->ctl->cap);
	if (cap == 0)
		cap = r->area;
	if (cap < NSK_RING_MIN || cap > r->area || (cap & (cap - 1)))
		return -EPROTO;
	if (__atomic_load_n(&r->size, __ATOMIC_RELAXED) != cap)
		__atomic_store_n(&r->size, cap, __ATOMIC_RELAXED);
	return (int64_t)cap;
}

int nsk_ring_init(struct nsk_ring *r, struct nsk_ring_ctl *ctl, uint8_t *data, uint64_t size)
{
	if (size < NSK_RING_MIN || size > NSK_RING_MAX || (size & (size - 1)))
		return -EINVAL;
	r->ctl = ctl;
	r->data = data;
	r->size = size;
	r->area = size;
	r->head_cache = 0;
	if (ctl)
		(void)cur_cap(r); /* a bad value is reported by the first use */
	return 0;
}

void nsk_ring_format(struct nsk_ring_ctl *ctl, uint64_t cap)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->cap = cap;
}

int64_t nsk_ring_used(struct nsk_ring *r)
{
	/* Acquire pairs with the producer's store-release of tail in nsk_ring_write: bytes up to
	 * tail are visible once we see tail, and so is the capacity they were placed with (tail
	 * first: the capacity changes only while the ring is empty). */
	uint64_t tail = nsk_load64_acquire(&r->ctl->tail);
	int64_t sz = cur_cap(r);
	if (sz < 0)
		return -EPROTO;
	uint64_t head = nsk_load64(&r->ctl->head);
	uint64_t used = tail - head;
	if (used > (uint64_t)sz)
		return -EPROTO;
	return (int64_t)used;
}

int64_t nsk_ring_free(struct nsk_ring *r)
{
	int64_t sz = cur_cap(r); /* another producer process (fork) may have resized */
	if (sz < 0)
		return -EPROTO;
	/* Acquire pairs with the consumer's store-release of head in nsk_ring_read: the consumer
	 * finished copying those bytes out before we overwrite them. */
	uint64_t head = nsk_load64_acquire(&r->ctl->head);
	uint64_t tail = nsk_load64(&r->ctl->tail);
	uint64_t used = tail - head;
	if (used > (uint64_t)sz)
		return -EPROTO;
	return (int64_t)((uint64_t)sz - used);
}

int nsk_ring_resize(struct nsk_ring *r, uint64_t cap)
{
	if (cap < NSK_RING_MIN || cap > r->area || (cap & (cap - 1)))
		return -EINVAL;
	int64_t sz = cur_cap(r);
	if (sz < 0)
		return -EPROTO;
	/* Acquire pairs with the consumer's store of head: it is done with every byte. */
	uint64_t head = nsk_load64_acquire(&r->ctl->head);
	uint64_t tail = nsk_load64(&r->ctl->tail);
	if (tail - head > (uint64_t)sz)
		return -EPROTO;
	if (head != tail)
		return -EBUSY;
	/* Release, and before the next tail (seq_cst): a consumer that sees bytes past this tail
	 * sees the capacity they were placed with. */
	nsk_store64_release(&r->ctl->cap, cap);
	__atomic_store_n(&r->size, cap, __ATOMIC_RELAXED);
	r->head_cache = head;
	return 0;
}

ssize_t nsk_ring_write(struct nsk_ring *r, struct nsk_iovcur *cur, size_t max)
{
	int64_t csz = cur_cap(r);
	if (csz < 0)
		return -EPROTO;
	uint64_t sz = (uint64_t)csz;
	uint64_t tail = nsk_load64(&r->ctl->tail);
	/* Free space from the cached head first: reading the consumer's line on every write
	 * would cost a cache-line transfer per message. The cache is never ahead of the real
	 * head, so the space it shows is always really free. */
	uint64_t used = tail - r->head_cache;
	if (used > sz || sz - used < max) {
		/* Acquire pairs with the consumer's store of head in nsk_ring_read: it finished
		 * copying those bytes out before we overwrite them. */
		uint64_t head = nsk_load64_acquire(&r->ctl->head);
		used = tail - head;
		if (used > sz)
			return -EPROTO;
		r->head_cache = head;
	}
	size_t space = (size_t)(sz - used);
	size_t n = space < max ? space : max;
	if (n == 0)
		return 0;
	uint64_t pos = tail & (sz - 1);
	size_t first = sz - pos < n ? (size_t)(sz - pos) : n;
	size_t done = iov_copy(cur, r->data + pos, first, 1);
	if (done == first && n > first)
		done += iov_copy(cur, r->data, n - first, 1);
	/* Sequentially consistent: pairs with the consumer's acquire of tail (the bytes above are
	 * visible first) and orders this store before the load in nsk_take() (Dekker handshake
	 * with nsk_arm's fence on the consumer side; one xchg instead of a release + mfence). */
	atomic_store_explicit(NSK_A64(&r->ctl->tail), tail + done, memory_order_seq_cst);
	return (ssize_t)done;
}

ssize_t nsk_ring_read(struct nsk_ring *r, struct nsk_iovcur *cur, size_t max, int peek)
{
	uint64_t tail = nsk_load64_acquire(&r->ctl->tail); /* as in nsk_ring_used */
	int64_t csz = cur_cap(r);
	if (csz < 0)
		return -EPROTO;
	uint64_t sz = (uint64_t)csz;
	uint64_t head = nsk_load64(&r->ctl->head);
	uint64_t used = tail - head;
	if (used > sz)
		return -EPROTO;
	size_t n = used < max ? (size_t)used : max;
	if (n == 0)
		return 0;
	uint64_t pos = head & (sz - 1);
	size_t first = sz - pos < n ? (size_t)(sz - pos) : n;
	size_t done = iov_copy(cur, r->data + pos, first, 0);
	if (done == first && n > first)
		done += iov_copy(cur, r->data, n - first, 0);
	if (!peek) {
		/* Sequentially consistent: pairs with the producer's acquire of head (we are done
		 * reading these bytes before their space is reused) and orders this store before
		 * the load in nsk_take(). */
		atomic_store_explicit(NSK_A64(&r->ctl->head), head + done, memory_order_seq_cst);
	}
	return (ssize_t)done;
}

void nsk_arm(uint32_t *armed, uint32_t bits)
{
	atomic_fetch_or_explicit(NSK_A32(armed), bits, memory_order_seq_cst);
	/* Full fence pairs with the publisher's seq_cst index store and nsk_take's seq_cst load:
	 * either the publisher sees our request, or
	 * our re-check after this call sees its published index (no lost wake-up). */
	nsk_fence();
}

void nsk_disarm(uint32_t *armed, uint32_t bits)
{
	atomic_fetch_and_explicit(NSK_A32(armed), ~bits, memory_order_relaxed);
}

uint32_t nsk_take(uint32_t *armed)
{
	/* Sequentially consistent load: after the caller's seq_cst publication (or nsk_fence()),
	 * either we see the sleeper's request or its re-check after nsk_arm's fence sees our
	 * index (no lost wake-up). */
	if (atomic_load_explicit(NSK_A32(armed), memory_order_seq_cst) == 0)
		return 0;
	return atomic_exchange_explicit(NSK_A32(armed), 0, memory_order_acq_rel);
}

void nsk_futex_bump(uint32_t *seq)
{
	atomic_fetch_add_explicit(NSK_A32(seq), 1, memory_order_release);
	nsk_futex_wake(seq, INT_MAX);
}
