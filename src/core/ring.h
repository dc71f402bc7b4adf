/* SPDX-License-Identifier: MIT */
/* ring.h — a single-producer/single-consumer byte ring in shared memory (one direction of a
 * channel). Free-running 64-bit indices, producer and consumer on separate cache lines, data
 * copied once in and once out. The peer may be buggy or hostile: every index read from shared
 * memory is checked, and a violation is reported as -EPROTO without touching memory outside
 * the ring. Callers serialise producers (and consumers) of one ring among themselves. */
#ifndef NSK_RING_H
#define NSK_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/layout.h"

struct nsk_ring {
	struct nsk_ring_ctl *ctl; /* shared control block */
	uint8_t *data;            /* validated private copy of the data pointer */
	uint64_t size;            /* capacity in use: validated power of two <= area */
	uint64_t area;            /* bytes of data area (the most the ring may grow to) */
	uint64_t head_cache;      /* producer: last head seen (never ahead of the real one) */
};

/* A position inside an iovec array (the application's buffers). */
struct nsk_iovcur {
	const struct iovec *iov;
	int cnt;
	size_t off; /* offset inside iov[0] */
};

void nsk_iovcur_init(struct nsk_iovcur *c, const struct iovec *iov, int cnt);
size_t nsk_iov_total(const struct iovec *iov, int cnt);

/* nsk_ring_init - bind @r to control block @ctl and a data area of @size bytes at @data.
 * @size must be a power of two in [NSK_RING_MIN, NSK_RING_MAX]; returns 0 or -EINVAL. The
 * capacity in use is the control block's `cap` (the whole area while it is 0). */
int nsk_ring_init(struct nsk_ring *r, struct nsk_ring_ctl *ctl, uint8_t *data, uint64_t size);
/* nsk_ring_format - zero the control block of a new ring; @cap (0: the whole area) is the
 * capacity it starts with. */
void nsk_ring_format(struct nsk_ring_ctl *ctl, uint64_t cap);

/* nsk_ring_used - bytes the consumer can read, or -EPROTO if the indices (or the published
 * capacity) are inconsistent. Takes up the capacity the producer published. */
int64_t nsk_ring_used(struct nsk_ring *r);
/* nsk_ring_free - bytes the producer can write, or -EPROTO. */
int64_t nsk_ring_free(struct nsk_ring *r);

/* Dynamic sizing (MemPipe's proportional memory): the data area is reserved at its largest
 * size, but only the first `cap` bytes are used, so only they need memory. The producer
 * changes the capacity while the ring is empty: nothing unread is placed modulo the old one.
 * nsk_ring_resize - set the capacity to @cap (power of two, NSK_RING_MIN .. area). 0,
 * -EBUSY if the ring is not empty, -EINVAL for a bad size, -EPROTO for corrupt indices.
 * Producer only (callers serialise producers). Memory beyond a smaller capacity may be
 * released afterwards (madvise MADV_REMOVE on the shared mapping); memory for a larger one
 * should be populated first (MADV_POPULATE_WRITE), so that a full tmpfs fails there and not
 * with SIGBUS later. */
int nsk_ring_resize(struct nsk_ring *r, uint64_t cap);
/* nsk_ring_cap - the capacity this side last took up (any thread: a relaxed atomic read). */
static inline uint64_t nsk_ring_cap(const struct nsk_ring *r)
{
	return __atomic_load_n(&r->size, __ATOMIC_RELAXED);
}
/* nsk_ring_write - copy up to @max bytes from @cur into the ring and publish them (a
 * sequentially consistent store, so that the nsk_take() that follows needs no fence).
 * Returns bytes written (0 when full) or -EPROTO. Advances @cur. Producer only. */
ssize_t nsk_ring_write(struct nsk_ring *r, struct nsk_iovcur *cur, size_t max);
/* nsk_ring_read - copy up to @max bytes out into @cur; with @peek the bytes stay in the ring.
 * Returns bytes read (0 when empty) or -EPROTO. Advances @cur. Consumer only. */
ssize_t nsk_ring_read(struct nsk_ring *r, struct nsk_iovcur *cur, size_t max, int peek);

/* Wake-up protocol (event suppression): a side about to sleep arms its request word, then
 * re-checks the ring; the other side, after publishing, takes the request and wakes it. */
/* nsk_arm - set @bits in *@armed; followed by a full fence (pairs with nsk_take's fence). */
void nsk_arm(uint32_t *armed, uint32_t bits);
/* nsk_disarm - clear @bits we set in *@armed. */
void nsk_disarm(uint32_t *armed, uint32_t bits);
/* nsk_take - after publishing (tail or head, with a sequentially consistent store, or after
 * nsk_fence()), take the peer's wake-up request: returns the armed bits (0 if nobody sleeps:
 * the common, syscall-free case). */
uint32_t nsk_take(uint32_t *armed);
/* nsk_futex_bump - advance @seq and wake every futex sleeper on it. */
void nsk_futex_bump(uint32_t *seq);

#endif
