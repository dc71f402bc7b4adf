/* SPDX-License-Identifier: MIT */
/* chan_mem.c — channels formatted in already shared memory (see chan_mem.h). */
#include "core/chan_mem.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"

static void bind_rings(struct nsk_chan *c, uint64_t off0, uint64_t sz0, uint64_t off1, uint64_t sz1)
{
	struct nsk_ring r0, r1;
	nsk_ring_init(&r0, &c->hdr->ring[0], (uint8_t *)c->base + off0, sz0);
	nsk_ring_init(&r1, &c->hdr->ring[1], (uint8_t *)c->base + off1, sz1);
	c->tx = c->side == NSK_SIDE_CLIENT ? r0 : r1;
	c->rx = c->side == NSK_SIDE_CLIENT ? r1 : r0;
}

uint64_t nsk_chan_mem_ring_size(uint64_t seg, uint64_t max)
{
	if (seg < NSK_CHAN_DATA_OFF + 2ull * NSK_RING_MIN)
		return 0;
	uint64_t fit = (seg - NSK_CHAN_DATA_OFF) / 2, r = NSK_RING_MIN;
	while (r * 2 <= fit && r * 2 <= max && r * 2 <= NSK_RING_MAX)
		r *= 2;
	return r;
}

int nsk_chan_format_mem(struct nsk_chan *c, void *base, uint64_t size, uint64_t ring_size)
{
	memset(c, 0, sizeof(*c));
	if (ring_size < NSK_RING_MIN || ring_size > NSK_RING_MAX || (ring_size & (ring_size - 1)) ||
	    size < NSK_CHAN_DATA_OFF + 2 * ring_size || ((uintptr_t)base & 4095))
		return -EINVAL;
	struct nsk_chan_hdr *h = base;
	/* The memory may hold a previous channel: clear the header (magic first, so a stale
	 * reader sees no channel) before writing the new one. */
	nsk_store32_release(&h->magic, 0);
	memset((char *)h + sizeof(h->magic), 0, sizeof(*h) - sizeof(h->magic));
	c->base = base;
	c->size = size;
	c->hdr = h;
	c->side = NSK_SIDE_CLIENT;
	c->nonce = nsk_random64();
	h->version = NSK_CHAN_VERSION;
	h->nonce = c->nonce;
	h->seg_size = size;
	h->hdr_size = sizeof(*h);
	h->ring_off[0] = NSK_CHAN_DATA_OFF;
	h->ring_size[0] = ring_size;
	h->ring_off[1] = NSK_CHAN_DATA_OFF + ring_size;
	h->ring_size[1] = ring_size;
	h->users = NSK_CHAN_USER_CLIENT | NSK_CHAN_USER_SERVER;
	h->side[NSK_SIDE_CLIENT].pid = (uint32_t)getpid();
	h->side[NSK_SIDE_CLIENT].cpumask = nsk_cpu_mask();
	/* Fixed capacity (the whole ring): region memory is not resized (no pages to give back
	 * in a BAR mapping, and the chunks are the channel's anyway). */
	nsk_ring_format(&h->ring[0], 0);
	nsk_ring_format(&h->ring[1], 0);
	h->state = NSK_CH_OFFERED;
	/* Release pairs with the acquire of the magic in nsk_chan_attach_mem: the peer reads the
	 * header only after the offer (posted with a release CAS after this) names it. */
	nsk_store32_release(&h->magic, NSK_CHAN_MAGIC);
	bind_rings(c, h->ring_off[0], ring_size, h->ring_off[1], ring_size);
	return 0;
}

int nsk_chan_attach_mem(struct nsk_chan *c, void *base, uint64_t size, uint64_t nonce, int side)
{
	memset(c, 0, sizeof(*c));
	if ((side != NSK_SIDE_CLIENT && side != NSK_SIDE_SERVER) ||
	    size < NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MIN ||
	    size > NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MAX || ((uintptr_t)base & 4095))
		return -EPROTO;
	/* Copy every field we rely on once, then validate the copies (as nsk_chan_attach): the
	 * peer, or any member of the region, can change the header at any time. */
	struct nsk_chan_hdr *h = base;
	uint32_t magic = nsk_load32_acquire(&h->magic);
	uint32_t version = nsk_load32(&h->version);
	uint64_t hn = nsk_load64(&h->nonce), seg = nsk_load64(&h->seg_size);
	uint64_t off0 = nsk_load64(&h->ring_off[0]), sz0 = nsk_load64(&h->ring_size[0]);
	uint64_t off1 = nsk_load64(&h->ring_off[1]), sz1 = nsk_load64(&h->ring_size[1]);
	struct nsk_ring tmp;
	if (magic != NSK_CHAN_MAGIC || version != NSK_CHAN_VERSION || hn != nonce || seg != size ||
	    nsk_ring_init(&tmp, &h->ring[0], NULL, sz0) < 0 ||
	    nsk_ring_init(&tmp, &h->ring[1], NULL, sz1) < 0 || off0 < NSK_CHAN_DATA_OFF ||
	    off1 < NSK_CHAN_DATA_OFF || off0 > size || off1 > size || sz0 > size - off0 ||
	    sz1 > size - off1 || (off0 < off1 ? off0 + sz0 > off1 : off1 + sz1 > off0))
		return -EPROTO;
	c->base = base;
	c->size = size;
	c->hdr = h;
	c->side = side;
	c->nonce = nonce;
	bind_rings(c, off0, sz0, off1, sz1);
	h->side[side].pid = (uint32_t)getpid();
	h->side[side].cpumask = nsk_cpu_mask();
	return 0;
}

uint32_t nsk_chan_mem_detach(struct nsk_chan *c, int side)
{
	uint32_t bit = side == NSK_SIDE_CLIENT ? NSK_CHAN_USER_CLIENT : NSK_CHAN_USER_SERVER;
	/* Acq_rel: our last ring accesses happen before the other user may free the memory
	 * (pairs with its own detach). */
	return atomic_fetch_and_explicit(NSK_A32(&c->hdr->users), ~bit, memory_order_acq_rel) &
	       ~bit & (NSK_CHAN_USER_CLIENT | NSK_CHAN_USER_SERVER);
}
