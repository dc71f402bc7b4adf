/* SPDX-License-Identifier: MIT */
/* chan_mem.h — channels in memory that is already shared (an ivshmem region's chunks) rather
 * than in a memfd: the same header and rings as a memfd segment (struct nsk_chan_hdr), formatted
 * in place by the connecting side and validated by the accepting side with the same checks as
 * nsk_chan_attach, minus what only a file has (seals, size). Nothing is mapped or unmapped here:
 * the region stays mapped for the process's life. */
#ifndef NSK_CHAN_MEM_H
#define NSK_CHAN_MEM_H

#include <stdint.h>

#include "core/chan.h"

/* Bits of struct nsk_chan_hdr.users: the endpoints still using the memory. */
#define NSK_CHAN_USER_CLIENT 1u
#define NSK_CHAN_USER_SERVER 2u

/* nsk_chan_mem_ring_size - the largest ring size (power of two, at most @max) two rings of which
 * fit with the header in @seg bytes; 0 if not even NSK_RING_MIN fits. */
uint64_t nsk_chan_mem_ring_size(uint64_t seg, uint64_t max);
/* nsk_chan_format_mem - client side: format a channel of @size bytes at @base (page aligned)
 * with two rings of @ring_size bytes, state OFFERED, users = client | server, and bind @c to it
 * as the client. 0 or -EINVAL. */
int nsk_chan_format_mem(struct nsk_chan *c, void *base, uint64_t size, uint64_t ring_size);
/* nsk_chan_attach_mem - bind @c as @side to the channel at @base (@size bytes, as the offer
 * said): every header field is copied once and validated as nsk_chan_attach does (magic,
 * version, nonce = @nonce, segment size, ring sizes powers of two, ring areas inside the
 * segment and disjoint). 0 or -EPROTO. */
int nsk_chan_attach_mem(struct nsk_chan *c, void *base, uint64_t size, uint64_t nonce, int side);
/* nsk_chan_mem_detach - endpoint @side stops using the memory: clears its bit of `users`.
 * Returns the bits still set afterwards (0: we were the last user). */
uint32_t nsk_chan_mem_detach(struct nsk_chan *c, int side);

#endif
