/* SPDX-License-Identifier: MIT */
/* inbox.h — the datagram inbox of a bound UDP socket: a multi-producer/single-consumer queue
 * of whole datagrams (boundaries kept, up to 64 KiB) in a sealed memfd that local senders map.
 *
 * Producers serialise on a lock word held only while one record is copied in and published;
 * the consumer never waits for a producer: it sees a record only once the tail covers it, so
 * a sender killed or stopped in the middle of a copy cannot block or corrupt the queue. A
 * lock left by a dead producer is taken over; a lock held too long by a live one makes the
 * sender use the kernel for that datagram instead (nothing is lost). Every index and header
 * read from shared memory is checked: a malformed queue is reset (its contents dropped and
 * counted), never read outside the segment. */
#ifndef NSK_INBOX_H
#define NSK_INBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/layout.h"
#include "core/ring.h"

struct nsk_inbox {
	struct nsk_inbox_hdr *h;
	uint8_t *data;       /* validated private copy of the data pointer */
	uint64_t size;       /* validated power of two */
	uint64_t seg_size;
	uint64_t nonce;
	uint64_t head_cache; /* producer: last head seen (never ahead of the real one) */
	uint64_t tail_cache; /* consumer: last tail seen (never ahead of the real one) */
};

/* Source address of a datagram, normalised: AF_INET addresses in the first 4 bytes. */
struct nsk_src {
	uint16_t family;
	uint16_t port; /* host order */
	uint8_t addr[16];
};

/* nsk_inbox_seg_size - bytes of the segment for @data_size bytes of queue. */
uint64_t nsk_inbox_seg_size(uint64_t data_size);
/* nsk_inbox_create - a new sealed memfd holding an empty inbox of @data_size bytes (power of
 * two in [NSK_INBOX_MIN, NSK_INBOX_MAX]) owned by (@pid, @start), mapped into @ib.
 * Returns the memfd (close-on-exec; the owner keeps it open for senders) or -errno. */
int nsk_inbox_create(struct nsk_inbox *ib, uint64_t data_size, pid_t pid, uint64_t start);
/* nsk_inbox_attach - sender side: check that @fd is a sealed memfd holding an inbox with
 * nonce @nonce, map it and validate the header. 0 or -errno (-EPROTO: not a valid inbox). */
int nsk_inbox_attach(struct nsk_inbox *ib, int fd, uint64_t nonce);
void nsk_inbox_unmap(struct nsk_inbox *ib);

/* ---- producers ---- */
/* nsk_inbox_lock - take the producer lock as process @pid, spinning at most @spin_ns.
 * A lock held by a dead process is taken over (counted in steals). 0 or -EBUSY. */
int nsk_inbox_lock(struct nsk_inbox *ib, uint32_t pid, uint64_t spin_ns);
void nsk_inbox_unlock(struct nsk_inbox *ib);
/* nsk_inbox_fits - whether a datagram of @len bytes fits now (lock held). */
int nsk_inbox_fits(struct nsk_inbox *ib, size_t len);
/* nsk_inbox_put - append one datagram of @len bytes from @iov/@cnt with source @src and
 * publish it (sequentially consistent store of the tail: the nsk_take() that follows needs
 * no fence). Lock held. 0; -ENOBUFS when it does not fit (not counted: the caller decides
 * whether to wait or drop, see nsk_inbox_drop); -EPROTO if the shared indices are corrupt;
 * -EMSGSIZE above NSK_DGRAM_MAX. */
int nsk_inbox_put(struct nsk_inbox *ib, const struct nsk_src *src, const struct iovec *iov,
		  int cnt, size_t len);
/* nsk_inbox_drop - count a datagram dropped because the inbox was full. */
void nsk_inbox_drop(struct nsk_inbox *ib);

/* ---- consumer (one at a time; callers serialise) ---- */
/* nsk_inbox_peek - copy and validate the header of the oldest record into @rec.
 * 1: a record is there; 0: empty; a malformed queue is reset (counted) and reads as empty. */
int nsk_inbox_peek(struct nsk_inbox *ib, struct nsk_dgram_rec *rec);
/* nsk_inbox_copy - copy up to @max payload bytes of the oldest record (@rec from peek) out
 * into @cur. Returns the bytes copied. */
size_t nsk_inbox_copy(struct nsk_inbox *ib, const struct nsk_dgram_rec *rec,
		      struct nsk_iovcur *cur, size_t max);
/* nsk_inbox_pop - consume the oldest record (@rec from peek); sequentially consistent store
 * of the head, so a following nsk_take() of a producer's request needs no fence. */
void nsk_inbox_pop(struct nsk_inbox *ib, const struct nsk_dgram_rec *rec);
/* nsk_inbox_empty - no record is published (one acquire load; no validation). */
int nsk_inbox_empty(struct nsk_inbox *ib);
/* nsk_inbox_rec_size - bytes a record of @len payload bytes occupies. */
static inline uint64_t nsk_inbox_rec_size(uint64_t len)
{
	return sizeof(struct nsk_dgram_rec) + ((len + 7) & ~(uint64_t)7);
}

/* ---- wake-up sources ---- */
/* nsk_inbox_waker_add - register (@pid, @start) sending wake-ups from loopback port @port of
 * @family. Reuses our own slot or a slot whose owner is dead. Slot index or -ENOSPC. */
int nsk_inbox_waker_add(struct nsk_inbox *ib, uint32_t pid, uint64_t start, uint16_t family,
			uint16_t port);
/* nsk_inbox_waker_find - the slot registered for (@family, @port) or -1. */
int nsk_inbox_waker_find(struct nsk_inbox *ib, uint16_t family, uint16_t port, uint32_t *pid);
/* nsk_inbox_waker_del - free slot @i if it still belongs to @pid. */
void nsk_inbox_waker_del(struct nsk_inbox *ib, int i, uint32_t pid);

#endif
