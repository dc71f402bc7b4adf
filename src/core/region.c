/* SPDX-License-Identifier: MIT */
/* region.c — the ivshmem region's layout, members, liveness and reclaim, chunk allocator and
 * offer mailbox (see region.h). Nothing here maps memory or touches files: region_map.c does. */
#include "core/region.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/atomics.h"
#include "platform/linux.h"

#define PAGE 4096u
#define CAS64(p, exp, des, mo)                                                                     \
	atomic_compare_exchange_strong_explicit(NSK_A64(p), (exp), (des), (mo),                    \
	                                        memory_order_relaxed)
#define CAS32(p, exp, des, mo)                                                                     \
	atomic_compare_exchange_strong_explicit(NSK_A32(p), (exp), (des), (mo),                    \
	                                        memory_order_relaxed)

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Structures in the region are copied word by word with relaxed atomics: another member may
 * write them at any time, and a torn copy must be detectable (state re-check), never UB. */
static void words_out(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < bytes / 8; i++)
		d[i] = nsk_load64(&s[i]);
}

static void words_in(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < bytes / 8; i++)
		nsk_store64(&d[i], s[i]);
}

/* ---------------------------------------------------------------- format and attach ---- */

uint64_t nsk_region_hdr_sum(const struct nsk_rgn_hdr *h)
{
	const uint8_t *p = (const uint8_t *)h;
	uint64_t x = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < offsetof(struct nsk_rgn_hdr, sum); i++) {
		x ^= p[i];
		x *= 0x100000001b3ull;
	}
	return x;
}

int nsk_region_layout(struct nsk_rgn_hdr *h, uint64_t size, const struct nsk_region_params *p)
{
	static const struct nsk_region_params none;
	if (!p)
		p = &none;
	if (size < NSK_RGN_MIN_SIZE || size > NSK_RGN_MAX_SIZE || (size & (size - 1)))
		return -EINVAL;
	uint32_t nm = p->nmembers ? p->nmembers : NSK_RGN_MEMBERS_MAX;
	uint32_t no = p->noffers ? p->noffers : 256;
	uint64_t rs = p->reg_slots;
	if (!rs) {
		rs = size >> 12;
		rs = rs < 64 ? 64 : rs > NSK_REG_SLOTS ? NSK_REG_SLOTS : rs;
	}
	uint64_t beat = p->beat_ns ? p->beat_ns : 250000000ull;
	uint64_t dead = p->dead_ns ? p->dead_ns : 5000000000ull;
	if (nm > NSK_RGN_MEMBERS_MAX || no > NSK_RGN_OFFERS_MAX || rs > NSK_REG_SLOTS ||
	    beat < NSK_RGN_BEAT_MIN_NS || beat > NSK_RGN_BEAT_MAX_NS || dead < 4 * beat ||
	    dead > NSK_RGN_DEAD_MAX_NS)
		return -EINVAL;
	memset(h, 0, sizeof(*h));
	h->version = NSK_RGN_VERSION;
	h->size = size;
	h->hdr_size = NSK_RGN_HDR_SIZE;
	h->member_off = NSK_RGN_HDR_SIZE;
	h->nmembers = nm;
	h->member_size = sizeof(struct nsk_rgn_member);
	h->reg_off = align_up(h->member_off + (uint64_t)nm * sizeof(struct nsk_rgn_member), PAGE);
	h->reg_size = sizeof(struct nsk_reg_hdr) + rs * sizeof(struct nsk_reg_entry);
	h->mbox_off = align_up(h->reg_off + h->reg_size, PAGE);
	h->noffers = no;
	h->offer_size = sizeof(struct nsk_rgn_offer);
	h->cmap_off = align_up(h->mbox_off + (uint64_t)no * sizeof(struct nsk_rgn_offer), PAGE);
	h->chunk_shift = NSK_RGN_CHUNK_SHIFT;
	if (h->cmap_off >= size)
		return -EINVAL;
	/* As many chunks as fit after their map: at most two steps down from the estimate. */
	uint64_t n = (size - h->cmap_off) >> NSK_RGN_CHUNK_SHIFT;
	while (n && align_up(h->cmap_off + n * sizeof(struct nsk_rgn_chunk), NSK_RGN_CHUNK) +
	                    (n << NSK_RGN_CHUNK_SHIFT) >
	                size)
		n--;
	if (!n)
		return -EINVAL;
	h->nchunks = (uint32_t)n;
	h->data_off = align_up(h->cmap_off + n * sizeof(struct nsk_rgn_chunk), NSK_RGN_CHUNK);
	h->beat_ns = beat;
	h->dead_ns = dead;
	return 0;
}

int nsk_region_format(void *base, uint64_t size, const struct nsk_region_params *p)
{
	struct nsk_rgn_hdr h;
	int r = nsk_region_layout(&h, size, p);
	if (r < 0)
		return r;
	if ((uintptr_t)base % 8)
		return -EINVAL;
	struct nsk_rgn_hdr *rh = base;
	/* Anyone attaching from now on sees no region until the magic comes back. */
	nsk_store32_release(&rh->magic, 0);
	memset((uint8_t *)base + sizeof(uint32_t), 0, h.data_off - sizeof(uint32_t));
	nsk_registry_format_slots(
	    (uint8_t *)base + h.reg_off,
	    (uint32_t)((h.reg_size - sizeof(struct nsk_reg_hdr)) / sizeof(struct nsk_reg_entry)));
	/* Member generations start at random: owner tags of this format's memberships differ
	 * from those a stale member of the previous format may still hold. */
	struct nsk_rgn_member *m =
	    (struct nsk_rgn_member *)(void *)((uint8_t *)base + h.member_off);
	for (uint32_t i = 0; i < h.nmembers; i++)
		m[i].state = (nsk_random64() & 0xffffff00000000ull) | NSK_RM_FREE;
	h.magic = NSK_RGN_MAGIC;
	h.format_gen = nsk_random64() | 1;
	h.format_wall_ns = wall_ns();
	h.sum = nsk_region_hdr_sum(&h);
	h.magic = 0;
	memcpy(rh, &h, sizeof(h));
	/* Release pairs with the acquire load of the magic in nsk_region_attach: the header and
	 * every area formatted above are visible before the region is. */
	nsk_store32_release(&rh->magic, NSK_RGN_MAGIC);
	return 0;
}

int nsk_region_attach(struct nsk_region *rg, void *base, uint64_t len)
{
	memset(rg, 0, sizeof(*rg));
	rg->self = -1;
	if (!base || (uintptr_t)base % 8)
		return -EINVAL;
	if (len < NSK_RGN_HDR_SIZE)
		return -EPROTO;
	struct nsk_rgn_hdr *rh = base;
	/* Acquire pairs with the formatter's store-release of the magic. */
	if (nsk_load32_acquire(&rh->magic) != NSK_RGN_MAGIC)
		return -EPROTO;
	struct nsk_rgn_hdr h; /* validated and used as a private copy: no re-reads */
	words_out(&h, rh, sizeof(h));
	if (h.magic != NSK_RGN_MAGIC || h.version != NSK_RGN_VERSION ||
	    h.sum != nsk_region_hdr_sum(&h) || h.flags != 0 || h.size > len)
		return -EPROTO;
	/* The geometry must be exactly what this build computes for the header's parameters. */
	if (h.reg_size < sizeof(struct nsk_reg_hdr) ||
	    (h.reg_size - sizeof(struct nsk_reg_hdr)) % sizeof(struct nsk_reg_entry))
		return -EPROTO;
	uint64_t rs = (h.reg_size - sizeof(struct nsk_reg_hdr)) / sizeof(struct nsk_reg_entry);
	if (!h.nmembers || !h.noffers || !rs || rs > NSK_REG_SLOTS)
		return -EPROTO;
	struct nsk_region_params p = {.nmembers = h.nmembers,
	                              .noffers = h.noffers,
	                              .reg_slots = (uint32_t)rs,
	                              .beat_ns = h.beat_ns,
	                              .dead_ns = h.dead_ns};
	struct nsk_rgn_hdr want;
	if (!h.beat_ns || !h.dead_ns || nsk_region_layout(&want, h.size, &p) < 0)
		return -EPROTO;
	want.magic = h.magic;
	want.format_gen = h.format_gen;
	want.format_wall_ns = h.format_wall_ns;
	want.sum = h.sum;
	if (memcmp(&want, &h, offsetof(struct nsk_rgn_hdr, pad0)) != 0)
		return -EPROTO;
	uint8_t *b = base;
	if (nsk_registry_attach(&rg->reg, b + h.reg_off, h.reg_size) < 0 || rg->reg.nslots != rs)
		return -EPROTO;
	rg->base = b;
	rg->map_len = len;
	rg->hdr = rh;
	rg->size = h.size;
	rg->format_gen = h.format_gen;
	rg->beat_ns = h.beat_ns;
	rg->dead_ns = h.dead_ns;
	rg->data_off = h.data_off;
	rg->nmembers = h.nmembers;
	rg->noffers = h.noffers;
	rg->nchunks = h.nchunks;
	rg->members = (struct nsk_rgn_member *)(void *)(b + h.member_off);
	rg->offers = (struct nsk_rgn_offer *)(void *)(b + h.mbox_off);
	rg->chunks = (struct nsk_rgn_chunk *)(void *)(b + h.cmap_off);
	return 0;
}

void *nsk_region_ptr(const struct nsk_region *rg, uint64_t off, uint64_t len)
{
	uint64_t end = rg->data_off + ((uint64_t)rg->nchunks << NSK_RGN_CHUNK_SHIFT);
	if (!rg->base || len == 0 || off < rg->data_off || off >= end || len > end - off)
		return NULL;
	return rg->base + off;
}

/* chunk_range - chunk index of region offset @off for @n chunks, or -1 if the range is not
 * whole chunks inside the data area. */
static int64_t chunk_range(const struct nsk_region *rg, uint64_t off, uint64_t n)
{
	if (off < rg->data_off || (off - rg->data_off) & (NSK_RGN_CHUNK - 1) || n == 0)
		return -1;
	uint64_t i = (off - rg->data_off) >> NSK_RGN_CHUNK_SHIFT;
	if (i >= rg->nchunks || n > rg->nchunks - i)
		return -1;
	return (int64_t)i;
}

static int chan_range_ok(const struct nsk_region *rg, uint64_t off, uint64_t size)
{
	return size && !(size & (NSK_RGN_CHUNK - 1)) &&
	       chunk_range(rg, off, size >> NSK_RGN_CHUNK_SHIFT) >= 0;
}

/* ---------------------------------------------------------------- members ------------- */

static uint64_t mstate(const struct nsk_region *rg, int slot)
{
	/* Acquire pairs with the CAS that set the state (join, reclaim): what the new owner of
	 * the slot wrote before... and what a reclaimer freed before it set FREE. */
	return nsk_load64_acquire(&rg->members[slot].state);
}

int nsk_region_tag_live(const struct nsk_region *rg, uint32_t tag)
{
	int slot = NSK_RGN_TAG_SLOT(tag);
	if (!rg->members || slot < 0 || (uint32_t)slot >= rg->nmembers)
		return 0;
	uint64_t s = mstate(rg, slot);
	return NSK_RM_KIND(s) == NSK_RM_LIVE && NSK_RGN_TAG(slot, NSK_RM_GEN(s)) == tag;
}

/* same_format - the region was not reformatted since we attached. */
static int same_format(const struct nsk_region *rg)
{
	return nsk_load64(&rg->hdr->format_gen) == rg->format_gen &&
	       nsk_load32(&rg->hdr->magic) == NSK_RGN_MAGIC;
}

/* am_member - our membership is still the one we took, and the region was not reformatted. */
static int am_member(const struct nsk_region *rg)
{
	if (rg->self < 0 || (uint32_t)rg->self >= rg->nmembers)
		return 0;
	uint64_t want = ((uint64_t)rg->self_gen << 32) | NSK_RM_LIVE;
	return mstate(rg, rg->self) == want && same_format(rg);
}

uint64_t nsk_region_netns(int slot)
{
	return 0x4e534b5200000000ull | (uint32_t)(slot + 1);
}

uint32_t nsk_region_reg_owner(const struct nsk_region *rg, const struct nsk_reg_entry *e)
{
	if (e->pid == 0 || e->pid > rg->nmembers || e->start_time > UINT32_MAX)
		return 0;
	return NSK_RGN_TAG(e->pid - 1, (uint32_t)e->start_time);
}

uint32_t nsk_region_reclaim_tag(struct nsk_region *rg, uint32_t tag)
{
	int slot = NSK_RGN_TAG_SLOT(tag);
	if (!rg->members || slot < 0 || (uint32_t)slot >= rg->nmembers)
		return 0;
	uint32_t freed = 0;
	for (uint32_t i = 0; i < rg->nchunks; i++) {
		uint32_t o = tag;
		/* Release pairs with the allocator's acquire CAS: the dead owner's writes to the
		 * chunk are ordered before the next owner's. */
		if (nsk_load32(&rg->chunks[i].owner) == tag &&
		    CAS32(&rg->chunks[i].owner, &o, 0, memory_order_release))
			freed++;
	}
	for (uint32_t i = 0; i < rg->noffers; i++) {
		uint64_t s = nsk_load64_acquire(&rg->offers[i].state);
		if (NSK_RO_OWNER(s) != tag || NSK_RO_KIND(s) == NSK_RO_EMPTY)
			continue;
		/* Release pairs with a poster's acquire CAS EMPTY → WRITING. */
		CAS64(&rg->offers[i].state, &s, NSK_RO_MAKE(0, NSK_RO_GEN(s), NSK_RO_EMPTY),
		      memory_order_release);
	}
	for (uint32_t i = 0; i < rg->reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (nsk_registry_read(&rg->reg, (int)i, &e) && nsk_region_reg_owner(rg, &e) == tag)
			nsk_registry_mark_dead(&rg->reg, (int)i, e.state);
	}
	if (freed)
		nsk_add64(&rg->hdr->frees, freed);
	return freed;
}

/* finish_reclaim - slot @slot is in RECLAIM with state word @s: give back what its
 * membership holds, then free the slot. 1 if we freed it. */
static int finish_reclaim(struct nsk_region *rg, int slot, uint64_t s)
{
	nsk_region_reclaim_tag(rg, NSK_RGN_TAG(slot, NSK_RM_GEN(s)));
	uint64_t fr = ((uint64_t)NSK_RM_GEN(s) << 32) | NSK_RM_FREE;
	/* Release pairs with the joiner's acquire CAS on FREE: everything reclaimed above is
	 * ordered before the slot's next membership. */
	if (!CAS64(&rg->members[slot].state, &s, fr, memory_order_release))
		return 0;
	nsk_add64(&rg->hdr->reclaims, 1);
	return 1;
}

/* observe - update our watch of slot @slot at @now; returns how long its (state, beat) has
 * stood still by our clock (0 when it just changed or was never seen). */
static uint64_t observe(struct nsk_region *rg, int slot, uint64_t now, uint64_t *state)
{
	struct nsk_region_watch *w = &rg->watch[slot];
	uint64_t s = mstate(rg, slot);
	uint64_t b = nsk_load64(&rg->members[slot].beat);
	*state = s;
	if (!w->since || w->state != s || w->beat != b || now < w->since) {
		w->state = s;
		w->beat = b;
		w->since = now ? now : 1;
		return 0;
	}
	return now - w->since;
}

int nsk_region_join(struct nsk_region *rg, const char *name, pid_t pid)
{
	if (!rg->members)
		return -EINVAL;
	if (rg->self >= 0)
		return -EALREADY;
	for (uint32_t i = 0; i < rg->nmembers; i++) {
		uint64_t s = mstate(rg, (int)i);
		if (NSK_RM_KIND(s) == NSK_RM_RECLAIM && finish_reclaim(rg, (int)i, s))
			s = mstate(rg, (int)i);
		if (NSK_RM_KIND(s) != NSK_RM_FREE)
			continue;
		uint32_t gen = NSK_RM_GEN(s) + 1;
		uint64_t live = ((uint64_t)gen << 32) | NSK_RM_LIVE;
		/* Acquire pairs with the release CAS that freed the slot (finish_reclaim, leave).
		 */
		if (!CAS64(&rg->members[i].state, &s, live, memory_order_acquire))
			continue;
		struct nsk_rgn_member m;
		memset(&m, 0, sizeof(m));
		m.beat_wall_ns = m.join_wall_ns = wall_ns();
		m.pid = (uint32_t)pid;
		if (name)
			strncpy(m.name, name, sizeof(m.name) - 1);
		/* words 0 and 1 are the state and the beat counter: the counter keeps running
		 * across memberships (observers key on the state word as well) */
		words_in((uint8_t *)&rg->members[i] + 16, (uint8_t *)&m + 16, sizeof(m) - 16);
		rg->self = (int)i;
		rg->self_gen = gen;
		rg->self_tag = NSK_RGN_TAG(i, gen);
		nsk_region_beat(rg);
		return (int)i;
	}
	return -ENOSPC;
}

int nsk_region_beat(struct nsk_region *rg)
{
	if (!am_member(rg))
		return -ESTALE;
	struct nsk_rgn_member *m = &rg->members[rg->self];
	nsk_store64(&m->beat_wall_ns, wall_ns());
	/* Release: the wall time above is published with the beat (observers read it relaxed,
	 * for display only). */
	atomic_fetch_add_explicit(NSK_A64(&m->beat), 1, memory_order_release);
	return 0;
}

int nsk_region_leave(struct nsk_region *rg)
{
	if (rg->self < 0)
		return -ESTALE;
	int slot = rg->self;
	uint64_t live = ((uint64_t)rg->self_gen << 32) | NSK_RM_LIVE;
	uint64_t rec = ((uint64_t)rg->self_gen << 32) | NSK_RM_RECLAIM;
	rg->self = -1;
	if (nsk_load64(&rg->hdr->format_gen) != rg->format_gen)
		return -ESTALE; /* reformatted: nothing of ours is left */
	uint64_t s = live;
	if (!CAS64(&rg->members[slot].state, &s, rec, memory_order_acq_rel))
		return -ESTALE; /* reclaimed by someone else already */
	finish_reclaim(rg, slot, rec);
	return 0;
}

int nsk_region_set_addrs(struct nsk_region *rg, const uint16_t *family, const uint8_t (*addr)[16],
                         unsigned n)
{
	if (n > 4 || (n && (!family || !addr)))
		return -EINVAL;
	if (!am_member(rg))
		return -ESTALE;
	struct nsk_rgn_member *m = &rg->members[rg->self];
	struct nsk_rgn_member tmp;
	memset(&tmp, 0, sizeof(tmp));
	for (unsigned i = 0; i < n; i++) {
		tmp.family[i] = family[i];
		memcpy(tmp.addr[i], addr[i], 16);
	}
	/* naddr shares its 64-bit word with family[0..1]; the region is accessed in whole
	 * words: first the list with a count of 0, then the word holding the count. */
	size_t at = offsetof(struct nsk_rgn_member, naddr);
	words_in((uint8_t *)m + at, (uint8_t *)&tmp + at,
	         offsetof(struct nsk_rgn_member, chunks_allocd) - at);
	tmp.naddr = n;
	uint64_t w;
	memcpy(&w, (uint8_t *)&tmp + at, 8);
	/* Release pairs with the acquire in nsk_region_find_addr: addresses before count. */
	nsk_store64_release((uint64_t *)(void *)((uint8_t *)m + at), w);
	return 0;
}

int nsk_region_find_addr(struct nsk_region *rg, uint16_t family, const uint8_t addr[16])
{
	for (uint32_t i = 0; rg->members && i < rg->nmembers; i++) {
		if (NSK_RM_KIND(mstate(rg, (int)i)) != NSK_RM_LIVE)
			continue;
		struct nsk_rgn_member *m = &rg->members[i];
		size_t at = offsetof(struct nsk_rgn_member, naddr);
		uint64_t w =
		    nsk_load64_acquire((const uint64_t *)(const void *)((uint8_t *)m + at));
		struct nsk_rgn_member c;
		words_out(&c, m, sizeof(c));
		memcpy((uint8_t *)&c + at, &w, 8);
		for (uint32_t k = 0; k < c.naddr && k < 4; k++)
			if (c.family[k] == family &&
			    !memcmp(c.addr[k], addr, family == 2 /* AF_INET */ ? 4 : 16))
				return (int)i;
	}
	return -ENOENT;
}

static uint32_t chunks_of(const struct nsk_region *rg, uint32_t tag)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < rg->nchunks; i++)
		n += nsk_load32(&rg->chunks[i].owner) == tag;
	return n;
}

int nsk_region_member_read(struct nsk_region *rg, int slot, struct nsk_region_member_info *out)
{
	memset(out, 0, sizeof(*out));
	if (!rg->members || slot < 0 || (uint32_t)slot >= rg->nmembers)
		return -EINVAL;
	uint64_t s;
	uint64_t still = observe(rg, slot, nsk_now_ns(), &s);
	struct nsk_rgn_member c;
	words_out(&c, &rg->members[slot], sizeof(c));
	out->state = s;
	out->beat = c.beat;
	out->beat_wall_ns = c.beat_wall_ns;
	out->join_wall_ns = c.join_wall_ns;
	out->since_ns = still;
	out->pid = c.pid;
	out->naddr = c.naddr > 4 ? 4 : c.naddr;
	memcpy(out->family, c.family, sizeof(out->family));
	memcpy(out->addr, c.addr, sizeof(out->addr));
	memcpy(out->name, c.name, sizeof(c.name));
	out->name[32] = 0;
	if (NSK_RM_KIND(s) == NSK_RM_FREE)
		return 0;
	out->tag = NSK_RGN_TAG(slot, NSK_RM_GEN(s));
	out->chunks = chunks_of(rg, out->tag);
	out->dead = (NSK_RM_KIND(s) == NSK_RM_LIVE && still >= rg->dead_ns && slot != rg->self) ||
	            NSK_RM_KIND(s) == NSK_RM_RECLAIM;
	return 1;
}

int nsk_region_reap_at(struct nsk_region *rg, uint64_t now)
{
	int n = 0;
	for (uint32_t i = 0; rg->members && i < rg->nmembers; i++) {
		uint64_t s;
		uint64_t still = observe(rg, (int)i, now, &s);
		if ((int)i == rg->self)
			continue; /* we are alive as long as we run; a stall shows in our beat */
		/* A kind no build writes (a scribble) is treated like a silent member. */
		if ((NSK_RM_KIND(s) == NSK_RM_LIVE || NSK_RM_KIND(s) > NSK_RM_RECLAIM) &&
		    still >= rg->dead_ns) {
			uint64_t rec = (s & ~0xffffffffull) | NSK_RM_RECLAIM;
			uint64_t exp = s;
			/* acq_rel: we read the dead member's resources after this */
			if (!CAS64(&rg->members[i].state, &exp, rec, memory_order_acq_rel) &&
			    exp != rec)
				continue; /* it beat (or was reclaimed and rejoined) meanwhile */
			s = rec;
		}
		if (NSK_RM_KIND(s) == NSK_RM_RECLAIM)
			n += finish_reclaim(rg, (int)i, s);
	}
	return n;
}

int nsk_region_reap(struct nsk_region *rg)
{
	return nsk_region_reap_at(rg, nsk_now_ns());
}

int nsk_region_live_members(struct nsk_region *rg, uint64_t wait_ns)
{
	uint64_t first[NSK_RGN_MEMBERS_MAX], t0 = nsk_now_ns();
	int live[NSK_RGN_MEMBERS_MAX] = {0};
	int n = 0, candidates = 0;
	for (uint32_t i = 0; i < rg->nmembers; i++) {
		first[i] = nsk_load64(&rg->members[i].beat);
		candidates += NSK_RM_KIND(mstate(rg, (int)i)) == NSK_RM_LIVE;
	}
	while (candidates > n) {
		for (uint32_t i = 0; i < rg->nmembers; i++) {
			if (!live[i] && NSK_RM_KIND(mstate(rg, (int)i)) == NSK_RM_LIVE &&
			    nsk_load64(&rg->members[i].beat) != first[i]) {
				live[i] = 1;
				n++;
			}
		}
		if (nsk_now_ns() - t0 >= wait_ns)
			break;
		struct timespec ts = {0, 10000000};
		nanosleep(&ts, NULL);
	}
	return n;
}

/* ---------------------------------------------------------------- chunk allocator ----- */

/* try_run - take chunks [p, p + n) for @tag: 0 when all are ours, else the index (>= 1) just
 * past the chunk that was taken (the chunks taken before it are given back). */
static uint32_t try_run(struct nsk_region *rg, uint32_t p, uint32_t n, uint32_t tag)
{
	for (uint32_t j = 0; j < n; j++) {
		uint32_t zero = 0;
		/* Acquire pairs with the release that freed the chunk (free, reclaim, roll-back).
		 */
		if (nsk_load32(&rg->chunks[p + j].owner) == 0 &&
		    CAS32(&rg->chunks[p + j].owner, &zero, tag, memory_order_acquire))
			continue;
		for (uint32_t k = 0; k < j; k++) {
			/* a CAS, not a store: if we were evicted meanwhile, a chunk reclaimed from
			 * us may belong to someone else already. Release pairs with the CAS above.
			 */
			uint32_t mine = tag;
			CAS32(&rg->chunks[p + k].owner, &mine, 0, memory_order_release);
		}
		return p + j + 1;
	}
	return 0;
}

/* scan - look for a free run of @n chunks starting in [lo, hi). */
static int64_t scan(struct nsk_region *rg, uint32_t lo, uint32_t hi, uint32_t n, uint32_t tag)
{
	uint32_t p = lo;
	while (p < hi && n <= rg->nchunks - p) {
		uint32_t busy = 0;
		for (uint32_t j = 0; j < n && !busy; j++)
			if (nsk_load32(&rg->chunks[p + j].owner))
				busy = p + j + 1;
		if (!busy)
			busy = try_run(rg, p, n, tag);
		if (!busy)
			return p;
		p = busy; /* always > p: the loop ends */
	}
	return -1;
}

int64_t nsk_region_chunk_alloc(struct nsk_region *rg, uint32_t n)
{
	if (!rg->chunks || n == 0 || n > rg->nchunks)
		return -EINVAL;
	if (!am_member(rg))
		return -ESTALE;
	uint32_t tag = rg->self_tag;
	uint32_t start = (uint32_t)(nsk_load64(&rg->hdr->alloc_hint) % rg->nchunks);
	int64_t p = scan(rg, start, rg->nchunks, n, tag);
	if (p < 0 && start)
		p = scan(rg, 0, start, n, tag);
	if (p < 0) {
		nsk_add64(&rg->hdr->alloc_fails, 1);
		return -ENOSPC;
	}
	for (uint32_t j = 0; j < n; j++)
		nsk_store32(&rg->chunks[p + j].run, j ? 0 : n);
	nsk_store64(&rg->hdr->alloc_hint, (uint64_t)p + n);
	nsk_add64(&rg->hdr->allocs, 1);
	nsk_add64(&rg->members[rg->self].chunks_allocd, n);
	return (int64_t)(rg->data_off + ((uint64_t)p << NSK_RGN_CHUNK_SHIFT));
}

int64_t nsk_region_chunk_alloc_prop(struct nsk_region *rg, uint32_t want, uint32_t min_n,
                                    uint32_t *got)
{
	if (!rg->chunks)
		return -EINVAL;
	if (min_n == 0)
		min_n = 1;
	if (want < min_n)
		want = min_n;
	if (min_n > rg->nchunks)
		return -EINVAL;
	uint32_t nfree = 0;
	for (uint32_t i = 0; i < rg->nchunks; i++)
		nfree += nsk_load32(&rg->chunks[i].owner) == 0;
	uint32_t cap = nfree / 4 > min_n ? nfree / 4 : min_n;
	if (want > cap)
		want = cap;
	for (uint32_t n = want;; n = n / 2 > min_n ? n / 2 : min_n) {
		int64_t off = nsk_region_chunk_alloc(rg, n);
		if (off >= 0) {
			*got = n;
			return off;
		}
		if (off != -ENOSPC || n == min_n)
			return off;
	}
}

static int chunk_free_tag(struct nsk_region *rg, uint64_t off, uint32_t n, uint32_t tag)
{
	if (!rg->chunks)
		return -EINVAL;
	int64_t i0 = chunk_range(rg, off, n);
	if (i0 < 0)
		return -EINVAL;
	if (rg->self < 0 || !same_format(rg))
		return -ESTALE;
	int r = 0;
	uint32_t freed = 0;
	for (uint32_t j = 0; j < n; j++) {
		struct nsk_rgn_chunk *c = &rg->chunks[i0 + j];
		uint32_t o = tag;
		if (nsk_load32(&c->owner) != o) {
			r = -EPERM;
			continue;
		}
		nsk_store32(&c->run, 0);
		/* Release pairs with the next owner's acquire CAS in try_run. */
		if (CAS32(&c->owner, &o, 0, memory_order_release))
			freed++;
		else
			r = -EPERM;
	}
	nsk_add64(&rg->hdr->frees, freed);
	if (tag == rg->self_tag && am_member(rg))
		nsk_add64(&rg->members[rg->self].chunks_freed, freed);
	return r;
}

int nsk_region_chunk_free(struct nsk_region *rg, uint64_t off, uint32_t n)
{
	return chunk_free_tag(rg, off, n, rg->self_tag);
}

int nsk_region_chunk_give(struct nsk_region *rg, uint64_t off, uint32_t n, uint32_t to_tag)
{
	if (!rg->chunks)
		return -EINVAL;
	int64_t i0 = chunk_range(rg, off, n);
	if (i0 < 0 || !to_tag)
		return -EINVAL;
	if (!am_member(rg))
		return -ESTALE;
	if (!nsk_region_tag_live(rg, to_tag))
		return -EINVAL;
	int r = 0;
	for (uint32_t j = 0; j < n; j++) {
		uint32_t o = rg->self_tag;
		/* Release pairs with the new owner's acquire load in its free/reclaim: our last
		 * writes to the chunk come first. */
		if (!CAS32(&rg->chunks[i0 + j].owner, &o, to_tag, memory_order_release))
			r = -EPERM;
	}
	return r;
}

uint32_t nsk_region_chunk_owner(const struct nsk_region *rg, uint64_t off)
{
	int64_t i = rg->chunks ? chunk_range(rg, off, 1) : -1;
	/* Acquire pairs with the release CAS of the owner's alloc/free/give. */
	return i < 0 ? 0 : nsk_load32_acquire(&rg->chunks[i].owner);
}

int nsk_region_chunk_free_as(struct nsk_region *rg, uint64_t off, uint32_t n, uint32_t tag)
{
	if (!tag)
		return -EINVAL;
	return chunk_free_tag(rg, off, n, tag);
}

void nsk_region_chunk_stats(const struct nsk_region *rg, struct nsk_region_chunk_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->total = rg->nchunks;
	uint32_t run = 0;
	for (uint32_t i = 0; rg->chunks && i < rg->nchunks; i++) {
		uint32_t o = nsk_load32(&rg->chunks[i].owner);
		if (!o) {
			st->free++;
			if (++run > st->largest_free)
				st->largest_free = run;
			continue;
		}
		run = 0;
		st->used++;
		int slot = NSK_RGN_TAG_SLOT(o);
		if (nsk_region_tag_live(rg, o))
			st->by_slot[slot]++;
		else
			st->orphan++;
	}
}

/* ---------------------------------------------------------------- offer mailbox ------- */

int nsk_region_offer_post(struct nsk_region *rg, const struct nsk_region_offer_info *o,
                          struct nsk_region_offer_handle *h)
{
	if (!rg->offers)
		return -EINVAL;
	int to = NSK_RGN_TAG_SLOT(o->to_tag);
	if (to < 0 || (uint32_t)to >= rg->nmembers || !nsk_region_tag_live(rg, o->to_tag) ||
	    !chan_range_ok(rg, o->chan_off, o->chan_size))
		return -EINVAL;
	if (!am_member(rg))
		return -ESTALE;
	uint32_t tag = rg->self_tag;
	/* members start their search at different slots: less contention on the first ones */
	uint32_t start = (uint32_t)rg->self * 7u;
	for (uint32_t k = 0; k < rg->noffers; k++) {
		uint32_t i = (start + k) % rg->noffers;
		struct nsk_rgn_offer *slot = &rg->offers[i];
		uint64_t s = nsk_load64_acquire(&slot->state);
		if (NSK_RO_KIND(s) != NSK_RO_EMPTY)
			continue;
		uint32_t gen = NSK_RO_GEN(s) + 1;
		uint64_t writing = NSK_RO_MAKE(tag, gen, NSK_RO_WRITING);
		/* Acquire pairs with the release that emptied the slot (release, reclaim). Readers
		 * (claim) copy the fields only while the state is POSTED: a new generation is
		 * never confused with the old one. */
		if (!CAS64(&slot->state, &s, writing, memory_order_acquire))
			continue;
		struct nsk_rgn_offer tmp;
		memset(&tmp, 0, sizeof(tmp));
		tmp.to_tag = o->to_tag;
		tmp.nonce = o->nonce;
		tmp.chan_off = o->chan_off;
		tmp.chan_size = o->chan_size;
		tmp.family = o->family;
		tmp.cport = o->cport;
		tmp.sport = o->sport;
		memcpy(tmp.caddr, o->caddr, 16);
		memcpy(tmp.saddr, o->saddr, 16);
		tmp.from_pid = o->from_pid;
		tmp.posted_wall_ns = wall_ns();
		words_in((uint8_t *)slot + 8, (uint8_t *)&tmp + 8, sizeof(tmp) - 8);
		/* Release pairs with the acquire load of the state in claim: fields before
		 * POSTED. A CAS, not a store: if we were evicted meanwhile the slot is not ours. */
		uint64_t exp = writing;
		if (!CAS64(&slot->state, &exp, NSK_RO_MAKE(tag, gen, NSK_RO_POSTED),
		           memory_order_release))
			return -ESTALE;
		/* Release pairs with the addressee's acquire load of its mail_seq. */
		atomic_fetch_add_explicit(NSK_A64(&rg->members[to].mail_seq), 1,
		                          memory_order_release);
		nsk_add64(&rg->hdr->offers_posted, 1);
		h->slot = (int)i;
		h->gen = gen;
		h->owner = tag;
		return 0;
	}
	return -ENOSPC;
}

static int addr_eq(uint16_t family, const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, family == 2 /* AF_INET */ ? 4 : 16);
}

int nsk_region_offer_claim(struct nsk_region *rg, uint16_t family, const uint8_t *caddr,
                           uint16_t cport, const uint8_t *saddr, uint16_t sport,
                           struct nsk_region_offer_info *out, struct nsk_region_offer_handle *h)
{
	if (!rg->offers || rg->self < 0 || !same_format(rg))
		return -ENOENT;
	uint32_t me = rg->self_tag;
	for (uint32_t i = 0; i < rg->noffers; i++) {
		struct nsk_rgn_offer *slot = &rg->offers[i];
		/* Acquire pairs with the poster's release CAS WRITING → POSTED. */
		uint64_t s = nsk_load64_acquire(&slot->state);
		if (NSK_RO_KIND(s) != NSK_RO_POSTED)
			continue;
		struct nsk_rgn_offer c;
		words_out(&c, slot, sizeof(c));
		/* Seqlock re-check: the copy belongs to generation s only if the state is still s.
		 */
		atomic_thread_fence(memory_order_acquire);
		if (nsk_load64(&slot->state) != s || c.to_tag != me)
			continue;
		if (caddr && (c.family != family || c.cport != cport || c.sport != sport ||
		              !addr_eq(family, c.caddr, caddr) ||
		              (saddr && !addr_eq(family, c.saddr, saddr))))
			continue;
		if (!chan_range_ok(rg, c.chan_off, c.chan_size))
			continue; /* malformed: its poster withdraws it in time */
		uint64_t claimed = NSK_RO_MAKE(NSK_RO_OWNER(s), NSK_RO_GEN(s), NSK_RO_CLAIMED);
		/* acq_rel: pairs with the poster's release (fields) and its acquire load of the
		 * state in withdraw / offer_state (it learns we own the channel now). */
		if (!CAS64(&slot->state, &s, claimed, memory_order_acq_rel))
			continue;
		memset(out, 0, sizeof(*out));
		out->to_tag = c.to_tag;
		out->from_tag = NSK_RO_OWNER(claimed);
		out->nonce = c.nonce;
		out->chan_off = c.chan_off;
		out->chan_size = c.chan_size;
		out->family = c.family;
		out->cport = c.cport;
		out->sport = c.sport;
		memcpy(out->caddr, c.caddr, 16);
		memcpy(out->saddr, c.saddr, 16);
		out->from_pid = c.from_pid;
		h->slot = (int)i;
		h->gen = NSK_RO_GEN(claimed);
		h->owner = NSK_RO_OWNER(claimed);
		return 0;
	}
	return -ENOENT;
}

static struct nsk_rgn_offer *offer_of(const struct nsk_region *rg,
                                      const struct nsk_region_offer_handle *h)
{
	if (!rg->offers || h->slot < 0 || (uint32_t)h->slot >= rg->noffers || !same_format(rg))
		return NULL;
	return &rg->offers[h->slot];
}

static int same_offer(uint64_t s, const struct nsk_region_offer_handle *h)
{
	return NSK_RO_OWNER(s) == h->owner && NSK_RO_GEN(s) == (h->gen & 0x1fffffffu);
}

int nsk_region_offer_withdraw(struct nsk_region *rg, const struct nsk_region_offer_handle *h)
{
	struct nsk_rgn_offer *o = offer_of(rg, h);
	if (!o)
		return -ESTALE;
	uint64_t exp = NSK_RO_MAKE(h->owner, h->gen, NSK_RO_POSTED);
	/* acq_rel: pairs with the claimer's CAS (exactly one of the two wins). */
	if (CAS64(&o->state, &exp, NSK_RO_MAKE(h->owner, h->gen, NSK_RO_WITHDRAWN),
	          memory_order_acq_rel))
		return 0;
	if (!same_offer(exp, h))
		return -ESTALE;
	if (NSK_RO_KIND(exp) == NSK_RO_CLAIMED)
		return -EALREADY;
	return NSK_RO_KIND(exp) == NSK_RO_WITHDRAWN ? 0 : -ESTALE;
}

int nsk_region_offer_state(const struct nsk_region *rg, const struct nsk_region_offer_handle *h)
{
	struct nsk_rgn_offer *o = offer_of(rg, h);
	if (!o)
		return -ESTALE;
	/* Acquire pairs with the claimer's acq_rel CAS. */
	uint64_t s = nsk_load64_acquire(&o->state);
	return same_offer(s, h) ? (int)NSK_RO_KIND(s) : -ESTALE;
}

int nsk_region_offer_release(struct nsk_region *rg, const struct nsk_region_offer_handle *h)
{
	struct nsk_rgn_offer *o = offer_of(rg, h);
	if (!o)
		return -ESTALE;
	for (int tries = 0; tries < 2; tries++) {
		uint64_t s = nsk_load64_acquire(&o->state);
		if (!same_offer(s, h))
			return -ESTALE;
		uint32_t k = NSK_RO_KIND(s);
		if (k == NSK_RO_POSTED || k == NSK_RO_WRITING)
			return -EBUSY;
		if (k != NSK_RO_CLAIMED && k != NSK_RO_WITHDRAWN)
			return -ESTALE;
		/* Release pairs with the next poster's acquire CAS EMPTY → WRITING. */
		if (CAS64(&o->state, &s, NSK_RO_MAKE(0, h->gen, NSK_RO_EMPTY),
		          memory_order_release))
			return 0;
	}
	return -ESTALE;
}

int nsk_region_offer_read(const struct nsk_region *rg, int slot, struct nsk_rgn_offer *out)
{
	memset(out, 0, sizeof(*out));
	if (!rg->offers || slot < 0 || (uint32_t)slot >= rg->noffers)
		return -EINVAL;
	words_out(out, &rg->offers[slot], sizeof(*out));
	return (int)NSK_RO_KIND(out->state);
}

void nsk_region_offer_count(const struct nsk_region *rg, uint32_t count[5])
{
	memset(count, 0, 5 * sizeof(uint32_t));
	for (uint32_t i = 0; rg->offers && i < rg->noffers; i++) {
		uint32_t k = NSK_RO_KIND(nsk_load64(&rg->offers[i].state));
		if (k < 5)
			count[k]++;
	}
}
