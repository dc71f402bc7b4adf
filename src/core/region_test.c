/* SPDX-License-Identifier: MIT */
/* region_test.c — unit tests of the ivshmem region (region.c, region_map.c): layout, format and
 * attach; 40+ malformed headers (-EPROTO); random scribbles over every metadata area followed by
 * every API (no crash, no hang, results in range); the chunk allocator (patterns,
 * fragmentation, exhaustion, two processes and two threads allocating at once); member death
 * (a SIGKILLed member's chunks, offers and registry entries are reclaimed), eviction, leave;
 * offer post/claim/withdraw races between two processes; fake sysfs discovery; region files.
 * Usage: nsk_region_test [TEST] (no argument: all). */
#include "core/region.h"

#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "core/atomics.h"
#include "core/test_util.h"
#include "platform/linux.h"

#define MS 1000000ull

static uint64_t seed;
static char tmpdir[128];

/* Small regions: 8 members, 16 offers, 64 registry entries, fast beats. */
static const struct nsk_region_params P = {
    .nmembers = 8, .noffers = 16, .reg_slots = 64, .beat_ns = 10 * MS, .dead_ns = 150 * MS};

static void *heap_region(uint64_t size)
{
	void *b = aligned_alloc(4096, size);
	CHECK(b);
	memset(b, 0xa5, size); /* not zero: format must not rely on it */
	CHECK_EQ(nsk_region_format(b, size, &P), 0);
	return b;
}

static void *shared_region(uint64_t size, const struct nsk_region_params *p)
{
	void *b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(b != MAP_FAILED);
	CHECK_EQ(nsk_region_format(b, size, p), 0);
	return b;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- layout -------------- */

static void test_layout(void)
{
	struct nsk_rgn_hdr h;
	CHECK_EQ(nsk_region_layout(&h, 16u << 20, NULL), 0);
	printf("   16 MiB default: members @%llu x%u, registry @%llu (%llu B), mailbox @%llu x%u, "
	       "chunk map @%llu, data @%llu, %u chunks\n",
	       (unsigned long long)h.member_off, h.nmembers, (unsigned long long)h.reg_off,
	       (unsigned long long)h.reg_size, (unsigned long long)h.mbox_off, h.noffers,
	       (unsigned long long)h.cmap_off, (unsigned long long)h.data_off, h.nchunks);
	CHECK_EQ(h.member_off, 4096);
	CHECK_EQ(h.data_off % NSK_RGN_CHUNK, 0);
	CHECK(h.data_off + ((uint64_t)h.nchunks << 16) <= 16u << 20);
	CHECK_EQ(h.nchunks, 247);
	CHECK_EQ(nsk_region_layout(&h, NSK_RGN_MIN_SIZE, NULL), 0);
	CHECK(h.nchunks >= 1);
	CHECK_EQ(nsk_region_layout(&h, NSK_RGN_MAX_SIZE, NULL), 0);
	CHECK(h.data_off + ((uint64_t)h.nchunks << 16) <= NSK_RGN_MAX_SIZE);
	CHECK_EQ(nsk_region_layout(&h, NSK_RGN_MIN_SIZE / 2, NULL), -EINVAL);
	CHECK_EQ(nsk_region_layout(&h, (1u << 20) + 4096, NULL), -EINVAL);
	CHECK_EQ(nsk_region_layout(&h, NSK_RGN_MAX_SIZE * 2, NULL), -EINVAL);
	struct nsk_region_params p = P;
	p.nmembers = NSK_RGN_MEMBERS_MAX + 1;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	p = P, p.noffers = NSK_RGN_OFFERS_MAX + 1;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	p = P, p.reg_slots = NSK_REG_SLOTS + 1;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	p = P, p.beat_ns = NSK_RGN_BEAT_MIN_NS - 1;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	p = P, p.dead_ns = 3 * p.beat_ns;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	p = P, p.dead_ns = NSK_RGN_DEAD_MAX_NS + 1;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
	/* 4096 offers and 4096 registry entries do not leave a chunk in 1 MiB */
	p = P, p.noffers = NSK_RGN_OFFERS_MAX, p.reg_slots = NSK_REG_SLOTS;
	CHECK_EQ(nsk_region_layout(&h, 1u << 20, &p), -EINVAL);
}

static void test_format_attach(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	struct nsk_region rg;
	CHECK_EQ(nsk_region_attach(&rg, b, size), 0);
	CHECK_EQ(rg.size, size);
	CHECK_EQ(rg.nmembers, 8);
	CHECK_EQ(rg.noffers, 16);
	CHECK_EQ(rg.reg.nslots, 64);
	CHECK_EQ(rg.self, -1);
	uint64_t end = rg.data_off + ((uint64_t)rg.nchunks << 16);
	CHECK(nsk_region_ptr(&rg, rg.data_off, NSK_RGN_CHUNK) == b + rg.data_off);
	CHECK(nsk_region_ptr(&rg, end - 1, 1) == b + end - 1);
	CHECK(!nsk_region_ptr(&rg, rg.data_off - 1, 1));
	CHECK(!nsk_region_ptr(&rg, end, 1));
	CHECK(!nsk_region_ptr(&rg, rg.data_off, 0));
	CHECK(!nsk_region_ptr(&rg, end - 1, 2));
	CHECK(!nsk_region_ptr(&rg, UINT64_MAX, UINT64_MAX));
	CHECK(!nsk_region_ptr(&rg, rg.data_off, UINT64_MAX));
	/* formats differ by generation */
	uint64_t g = rg.format_gen;
	CHECK_EQ(nsk_region_format(b, size, &P), 0);
	CHECK_EQ(nsk_region_attach(&rg, b, size), 0);
	CHECK(rg.format_gen != g);
	/* a mapping shorter than the region, a misaligned base, zeroes */
	CHECK_EQ(nsk_region_attach(&rg, b, size - 4096), -EPROTO);
	CHECK_EQ(nsk_region_attach(&rg, b + 4, size - 4), -EINVAL);
	CHECK_EQ(nsk_region_attach(&rg, NULL, size), -EINVAL);
	memset(b, 0, 4096);
	CHECK_EQ(nsk_region_attach(&rg, b, size), -EPROTO);
	free(b);
}

/* ---------------------------------------------------------------- malformed headers --- */

struct mut {
	const char *what;
	void (*fn)(struct nsk_rgn_hdr *h, uint8_t *b);
};
#define MUT(name, body)                                                                            \
	static void m_##name(struct nsk_rgn_hdr *h, uint8_t *b)                                    \
	{                                                                                          \
		(void)h;                                                                           \
		(void)b;                                                                           \
		body;                                                                              \
	}
MUT(magic, h->magic ^= 1)
MUT(version2, h->version = 2)
MUT(version0, h->version = 0)
MUT(size_big, h->size *= 2)
MUT(size_half, h->size /= 2)
MUT(size_npow2, h->size += 4096)
MUT(size_zero, h->size = 0)
MUT(hdr_size, h->hdr_size = 8192)
MUT(flags, h->flags = 1)
MUT(member_off_plus, h->member_off += 64)
MUT(member_off_end, h->member_off = h->size)
MUT(nmembers_zero, h->nmembers = 0)
MUT(nmembers_max, h->nmembers = NSK_RGN_MEMBERS_MAX + 1)
MUT(nmembers_overlap, h->nmembers = 64)
MUT(member_size, h->member_size = 128)
MUT(reg_off_plus, h->reg_off += 4096)
MUT(reg_off_zero, h->reg_off = 0)
MUT(reg_size_slot, h->reg_size += 128)
MUT(reg_size_tiny, h->reg_size = 10)
MUT(reg_size_odd, h->reg_size = sizeof(struct nsk_reg_hdr) + 100)
MUT(reg_size_huge, h->reg_size = UINT64_MAX - 63)
MUT(mbox_off_minus, h->mbox_off -= 4096)
MUT(mbox_off_out, h->mbox_off = h->size + 4096)
MUT(noffers_zero, h->noffers = 0)
MUT(noffers_max, h->noffers = 5000)
MUT(noffers_overlap, h->noffers *= 64)
MUT(offer_size, h->offer_size = 64)
MUT(cmap_off, h->cmap_off += 8)
MUT(nchunks_zero, h->nchunks = 0)
MUT(nchunks_plus, h->nchunks += 1)
MUT(nchunks_huge, h->nchunks = UINT32_MAX)
MUT(chunk_shift, h->chunk_shift = 12)
MUT(data_off_plus, h->data_off += NSK_RGN_CHUNK)
MUT(data_off_zero, h->data_off = 0)
MUT(beat_zero, h->beat_ns = 0)
MUT(beat_tiny, h->beat_ns = 1)
MUT(dead_small, h->dead_ns = h->beat_ns)
MUT(dead_huge, h->dead_ns = UINT64_MAX)
MUT(reg_magic, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->magic ^= 1)
MUT(reg_version, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->version = 9)
MUT(reg_entry_size, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->entry_size = 64)
MUT(reg_nslots_more, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->nslots += 1)
MUT(reg_nslots_less, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->nslots = 3)
MUT(reg_nslots_zero, ((struct nsk_reg_hdr *)(void *)(b + h->reg_off))->nslots = 0)

static const struct mut muts[] = {
#define M(n)                                                                                       \
	{                                                                                          \
#n, m_##n                                                                          \
	}
    M(magic),          M(version2),         M(version0),        M(size_big),
    M(size_half),      M(size_npow2),       M(size_zero),       M(hdr_size),
    M(flags),          M(member_off_plus),  M(member_off_end),  M(nmembers_zero),
    M(nmembers_max),   M(nmembers_overlap), M(member_size),     M(reg_off_plus),
    M(reg_off_zero),   M(reg_size_slot),    M(reg_size_tiny),   M(reg_size_odd),
    M(reg_size_huge),  M(mbox_off_minus),   M(mbox_off_out),    M(noffers_zero),
    M(noffers_max),    M(noffers_overlap),  M(offer_size),      M(cmap_off),
    M(nchunks_zero),   M(nchunks_plus),     M(nchunks_huge),    M(chunk_shift),
    M(data_off_plus),  M(data_off_zero),    M(beat_zero),       M(beat_tiny),
    M(dead_small),     M(dead_huge),        M(reg_magic),       M(reg_version),
    M(reg_entry_size), M(reg_nslots_more),  M(reg_nslots_less), M(reg_nslots_zero),
#undef M
};

static void test_malformed(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	uint8_t *copy = aligned_alloc(4096, size);
	CHECK(copy);
	memcpy(copy, b, size);
	struct nsk_region rg;
	int n = 0;
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		for (int resum = 0; resum < 2; resum++) {
			memcpy(b, copy, size);
			struct nsk_rgn_hdr *h = (struct nsk_rgn_hdr *)b;
			muts[i].fn(h, b);
			if (resum)
				h->sum = nsk_region_hdr_sum(h);
			int r = nsk_region_attach(&rg, b, size);
			if (r != -EPROTO)
				FAILF("malformed header '%s' (sum %s) attached: %d", muts[i].what,
				      resum ? "recomputed" : "stale", r);
			n++;
		}
	}
	/* whole-header checks */
	memcpy(b, copy, size);
	((struct nsk_rgn_hdr *)b)->sum ^= 1;
	CHECK_EQ(nsk_region_attach(&rg, b, size), -EPROTO);
	memcpy(b, copy, size);
	CHECK_EQ(nsk_region_attach(&rg, b, size - 1), -EPROTO);
	CHECK_EQ(nsk_region_attach(&rg, b, 100), -EPROTO);
	CHECK_EQ(nsk_region_attach(&rg, b, 0), -EPROTO);
	CHECK_EQ(nsk_region_attach(&rg, b, size), 0); /* the pristine copy still attaches */
	printf("   %zu malformed headers x 2 (sum stale / recomputed) + 4: all -EPROTO (%d)\n",
	       sizeof(muts) / sizeof(muts[0]), n + 4);
	free(copy);
	free(b);
}

/* ---------------------------------------------------------------- scribbles ----------- */

static int ok_set(int r, const int *allowed, int n)
{
	for (int i = 0; i < n; i++)
		if (r == allowed[i])
			return 1;
	return 0;
}
#define EXPECT_IN(r, ...)                                                                          \
	do {                                                                                       \
		const int al_[] = {__VA_ARGS__};                                                   \
		int r_ = (r);                                                                      \
		if (!ok_set(r_, al_, (int)(sizeof(al_) / sizeof(al_[0]))))                         \
			FAILF("%s returned %d", #r, r_);                                           \
	} while (0)

/* exercise - every API on @rg with random arguments; results must stay in their ranges. */
static void exercise(struct nsk_region *rg, uint64_t *s, uint64_t now)
{
	int j = nsk_region_join(rg, "scribbled", 42);
	CHECK(j == -EALREADY || j == -ENOSPC || (j >= 0 && (uint32_t)j < rg->nmembers));
	EXPECT_IN(nsk_region_beat(rg), 0, -ESTALE);
	int reaped = nsk_region_reap_at(rg, now);
	CHECK(reaped >= 0 && (uint32_t)reaped <= rg->nmembers);
	reaped = nsk_region_reap_at(rg, now + rg->dead_ns + 1);
	CHECK(reaped >= 0 && (uint32_t)reaped <= rg->nmembers);
	for (int k = 0; k < 4; k++) {
		uint32_t n = (uint32_t)(t_rng(s) % (rg->nchunks + 2));
		int64_t off = nsk_region_chunk_alloc(rg, n);
		CHECK(off == -ENOSPC || off == -EINVAL || off == -ESTALE ||
		      (off > 0 && nsk_region_ptr(rg, (uint64_t)off, (uint64_t)n << 16)));
		uint32_t got = 0;
		off = nsk_region_chunk_alloc_prop(rg, n, (uint32_t)(t_rng(s) % 3), &got);
		CHECK(off == -ENOSPC || off == -EINVAL || off == -ESTALE ||
		      (off > 0 && got && nsk_region_ptr(rg, (uint64_t)off, (uint64_t)got << 16)));
		uint64_t foff = rg->data_off + ((t_rng(s) % (rg->nchunks + 2)) << 16) +
		                (t_rng(s) % 8 == 0 ? t_rng(s) % 4096 : 0);
		EXPECT_IN(nsk_region_chunk_free(rg, foff, (uint32_t)(t_rng(s) % 4)), 0, -EINVAL,
		          -EPERM, -ESTALE);
	}
	struct nsk_region_offer_info o;
	memset(&o, 0, sizeof(o));
	o.to_tag = t_rng(s) % 2 ? (uint32_t)t_rng(s) : NSK_RGN_TAG(t_rng(s) % 8, t_rng(s) % 4);
	o.chan_off = rg->data_off + ((t_rng(s) % (rg->nchunks + 1)) << 16);
	o.chan_size = (1 + t_rng(s) % 2) << 16;
	o.family = AF_INET;
	struct nsk_region_offer_handle h, hc;
	int r = nsk_region_offer_post(rg, &o, &h);
	EXPECT_IN(r, 0, -ENOSPC, -EINVAL, -ESTALE);
	struct nsk_region_offer_info out;
	int c = nsk_region_offer_claim(rg, AF_INET, NULL, 0, NULL, 0, &out, &hc);
	EXPECT_IN(c, 0, -ENOENT);
	if (c == 0) {
		CHECK(nsk_region_ptr(rg, out.chan_off, out.chan_size));
		CHECK(hc.slot >= 0 && (uint32_t)hc.slot < rg->noffers);
	}
	if (r == 0) {
		EXPECT_IN(nsk_region_offer_state(rg, &h), NSK_RO_POSTED, NSK_RO_CLAIMED,
		          NSK_RO_WITHDRAWN, -ESTALE, NSK_RO_EMPTY, NSK_RO_WRITING);
		EXPECT_IN(nsk_region_offer_withdraw(rg, &h), 0, -EALREADY, -ESTALE);
		EXPECT_IN(nsk_region_offer_release(rg, &h), 0, -ESTALE, -EBUSY);
	}
	struct nsk_region_offer_handle bad = {(int)(t_rng(s) % 40) - 10, (uint32_t)t_rng(s),
	                                      (uint32_t)t_rng(s)};
	CHECK(nsk_region_offer_state(rg, &bad) >= -ESTALE);
	EXPECT_IN(nsk_region_offer_withdraw(rg, &bad), 0, -EALREADY, -ESTALE);
	EXPECT_IN(nsk_region_offer_release(rg, &bad), 0, -ESTALE, -EBUSY);
	uint32_t cnt[5];
	nsk_region_offer_count(rg, cnt);
	CHECK(cnt[0] + cnt[1] + cnt[2] + cnt[3] + cnt[4] <= rg->noffers);
	for (int i = -1; i <= (int)rg->noffers; i++) {
		struct nsk_rgn_offer ro;
		int k = nsk_region_offer_read(rg, i, &ro);
		CHECK(k == -EINVAL ? (i < 0 || i == (int)rg->noffers) : (k >= 0 && k < 8));
	}
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(rg, &st);
	CHECK_EQ(st.free + st.used, rg->nchunks);
	CHECK(st.largest_free <= st.free);
	for (int i = -1; i <= (int)rg->nmembers; i++) {
		struct nsk_region_member_info mi;
		int m = nsk_region_member_read(rg, i, &mi);
		CHECK(m == 0 || m == 1 || (m == -EINVAL && (i < 0 || i == (int)rg->nmembers)));
		CHECK(mi.naddr <= 4 && mi.name[32] == 0 && mi.chunks <= rg->nchunks);
	}
	uint8_t a[16] = {10, 0, 0, (uint8_t)t_rng(s)};
	int fa = nsk_region_find_addr(rg, AF_INET, a);
	CHECK(fa == -ENOENT || (fa >= 0 && (uint32_t)fa < rg->nmembers));
	uint16_t fam[1] = {AF_INET};
	EXPECT_IN(nsk_region_set_addrs(rg, fam, (const uint8_t(*)[16])a, 1), 0, -ESTALE);
	(void)nsk_region_tag_live(rg, (uint32_t)t_rng(s));
	CHECK(nsk_region_reclaim_tag(rg, (uint32_t)t_rng(s)) <= rg->nchunks);
	CHECK(nsk_region_reclaim_tag(rg, NSK_RGN_TAG(t_rng(s) % 8, t_rng(s) % 3)) <= rg->nchunks);
	struct nsk_reg_key key;
	memset(&key, 0, sizeof(key));
	key.family = AF_INET;
	key.port = (uint16_t)(t_rng(s) % 4);
	key.netns = nsk_region_netns((int)(t_rng(s) % 8));
	struct nsk_reg_entry e;
	int l = nsk_registry_lookup(&rg->reg, &key, 1, &e);
	CHECK(l == -ENOENT || (l >= 0 && (uint32_t)l < rg->reg.nslots));
	if (l >= 0)
		(void)nsk_region_reg_owner(rg, &e);
	if (t_rng(s) % 4 == 0)
		EXPECT_IN(nsk_region_leave(rg), 0, -ESTALE);
}

/* populate - two members with chunks, offers to each other and registry entries. */
static void populate(struct nsk_region *a, struct nsk_region *b)
{
	CHECK(nsk_region_join(a, "a", 1) >= 0);
	CHECK(nsk_region_join(b, "b", 2) >= 0);
	for (int i = 0; i < 3; i++) {
		int64_t off = nsk_region_chunk_alloc(a, 1);
		if (off < 0)
			break;
		struct nsk_region_offer_info o;
		memset(&o, 0, sizeof(o));
		o.to_tag = b->self_tag;
		o.chan_off = (uint64_t)off;
		o.chan_size = NSK_RGN_CHUNK;
		o.family = AF_INET;
		o.nonce = (uint64_t)i;
		struct nsk_region_offer_handle h;
		CHECK_EQ(nsk_region_offer_post(a, &o, &h), 0);
	}
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	k.port = 1;
	k.netns = nsk_region_netns(a->self);
	CHECK(nsk_registry_insert(&a->reg, &k, a->self + 1, a->self_gen, "") >= 0);
}

static void scribble(uint8_t *b, uint64_t lo, uint64_t hi, uint64_t *s, const struct nsk_region *rg)
{
	uint64_t off = lo + t_rng(s) % (hi - lo);
	uint64_t len = 1 + t_rng(s) % 64;
	if (off + len > hi)
		len = hi - off;
	switch (t_rng(s) % 4) {
	case 0: /* random bytes */
		for (uint64_t i = 0; i < len; i++)
			b[off + i] = (uint8_t)t_rng(s);
		break;
	case 1: /* 0xff */
		memset(b + off, 0xff, len);
		break;
	case 2: { /* a plausible word: a tag, a state, a chunk offset */
		off &= ~7ull;
		if (off + 8 > hi)
			break;
		uint64_t v;
		switch (t_rng(s) % 4) {
		case 0:
			v = NSK_RGN_TAG(t_rng(s) % 8, t_rng(s) % 3);
			break;
		case 1:
			v = NSK_RO_MAKE(NSK_RGN_TAG(t_rng(s) % 8, 1), t_rng(s) % 4, t_rng(s) % 6);
			break;
		case 2:
			v = rg->data_off + ((t_rng(s) % (rg->nchunks + 2)) << 16);
			break;
		default:
			v = ((t_rng(s) % 3) << 32) | (t_rng(s) % 4);
		}
		memcpy(b + off, &v, 8);
		break;
	}
	default: /* zeroes */
		memset(b + off, 0, len);
	}
}

static void test_scribble(void)
{
	uint64_t size = 512u << 10;
	uint64_t s = seed;
	int rounds = t_tsan() ? 80 : t_sanitized() ? 250 : 600;
	uint64_t now = 1000000000ull;
	int attached = 0, refused = 0;
	for (int round = 0; round < rounds; round++) {
		uint8_t *b = heap_region(size);
		struct nsk_region a, bb, c;
		CHECK_EQ(nsk_region_attach(&a, b, size), 0);
		CHECK_EQ(nsk_region_attach(&bb, b, size), 0);
		populate(&a, &bb);
		struct nsk_rgn_hdr *h = (struct nsk_rgn_hdr *)b;
		/* areas: 0 member table, 1 registry, 2 mailbox, 3 chunk map, 4 any metadata,
		 * 5 the header (then re-attach, sum recomputed half of the time) */
		uint64_t lo[6] = {h->member_off, h->reg_off, h->mbox_off, h->cmap_off, 0, 0};
		uint64_t hi[6] = {h->reg_off,  h->mbox_off, h->cmap_off,
		                  h->data_off, h->data_off, sizeof(struct nsk_rgn_hdr)};
		int area = (int)(t_rng(&s) % 6);
		int writes = 1 + (int)(t_rng(&s) % 24);
		for (int w = 0; w < writes; w++)
			scribble(b, lo[area], hi[area], &s, &a);
		if (area == 5 && t_rng(&s) % 2)
			h->sum = nsk_region_hdr_sum(h);
		now += 10 * a.dead_ns;
		exercise(&a, &s, now);
		exercise(&bb, &s, now);
		int r = nsk_region_attach(&c, b, size);
		EXPECT_IN(r, 0, -EPROTO);
		if (r == 0) {
			attached++;
			exercise(&c, &s, now);
			exercise(&c, &s, now + 3 * c.dead_ns);
		} else {
			refused++;
		}
		free(b);
	}
	printf("   %d rounds: re-attach after the scribbles %d ok, %d -EPROTO\n", rounds, attached,
	       refused);
}

/* ---------------------------------------------------------------- allocator ----------- */

static void test_alloc_patterns(void)
{
	uint64_t size = 4u << 20;
	uint8_t *b = heap_region(size);
	struct nsk_region a, o;
	CHECK_EQ(nsk_region_attach(&a, b, size), 0);
	CHECK_EQ(nsk_region_attach(&o, b, size), 0);
	uint32_t n = a.nchunks;
	CHECK_EQ(nsk_region_chunk_alloc(&a, 1), -ESTALE); /* not a member */
	CHECK(nsk_region_join(&a, "a", 1) >= 0);
	CHECK(nsk_region_join(&o, "o", 2) >= 0);
	CHECK_EQ(nsk_region_join(&a, "a", 1), -EALREADY);
	CHECK_EQ(nsk_region_chunk_alloc(&a, 0), -EINVAL);
	CHECK_EQ(nsk_region_chunk_alloc(&a, n + 1), -EINVAL);
	/* singles until exhaustion */
	int64_t *offs = calloc(n, sizeof(*offs));
	for (uint32_t i = 0; i < n; i++) {
		offs[i] = nsk_region_chunk_alloc(&a, 1);
		CHECK(offs[i] > 0 &&
		      (uint64_t)(offs[i] - (int64_t)a.data_off) % NSK_RGN_CHUNK == 0);
		for (uint32_t k = 0; k < i; k++)
			CHECK(offs[k] != offs[i]);
	}
	CHECK_EQ(nsk_region_chunk_alloc(&a, 1), -ENOSPC);
	CHECK_EQ(nsk_region_chunk_alloc(&o, 1), -ENOSPC);
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&a, &st);
	CHECK_EQ(st.used, n);
	CHECK_EQ(st.by_slot[a.self], n);
	/* fragmentation: every other chunk free, no run of two */
	for (uint32_t i = 0; i < n; i += 2)
		CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)offs[i], 1), 0);
	nsk_region_chunk_stats(&a, &st);
	CHECK_EQ(st.free, (n + 1) / 2);
	CHECK_EQ(st.largest_free, 1);
	CHECK_EQ(nsk_region_chunk_alloc(&o, 2), -ENOSPC);
	int64_t one = nsk_region_chunk_alloc(&o, 1);
	CHECK(one > 0);
	/* someone else's chunk: refused, left alone */
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)one, 1), -EPERM);
	CHECK_EQ(nsk_region_chunk_free(&o, (uint64_t)offs[1], 1), -EPERM);
	CHECK_EQ(nsk_region_chunk_free(&o, (uint64_t)one, 1), 0);
	/* bad ranges */
	CHECK_EQ(nsk_region_chunk_free(&a, a.data_off + 1, 1), -EINVAL);
	CHECK_EQ(nsk_region_chunk_free(&a, a.data_off - NSK_RGN_CHUNK, 1), -EINVAL);
	CHECK_EQ(nsk_region_chunk_free(&a, a.data_off + ((uint64_t)n << 16), 1), -EINVAL);
	CHECK_EQ(nsk_region_chunk_free(&a, a.data_off, n + 1), -EINVAL);
	CHECK_EQ(nsk_region_chunk_free(&a, a.data_off, 0), -EINVAL);
	/* the rest back: one run of everything */
	for (uint32_t i = 1; i < n; i += 2)
		CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)offs[i], 1), 0);
	int64_t all = nsk_region_chunk_alloc(&a, n);
	CHECK_EQ(all, (int64_t)a.data_off);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)all, n), 0);
	nsk_region_chunk_stats(&a, &st);
	CHECK_EQ(st.free, n);
	/* proportional: at most a quarter of the free chunks, halved down to what fits */
	uint32_t got = 0;
	int64_t p1 = nsk_region_chunk_alloc_prop(&a, n, 1, &got);
	CHECK(p1 > 0 && got == n / 4);
	uint32_t got2 = 0;
	int64_t p2 = nsk_region_chunk_alloc_prop(&a, n, 1, &got2);
	CHECK(p2 > 0 && got2 == (n - got) / 4);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)p1, got), 0);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)p2, got2), 0);
	/* runs of two only: want 8 gets 2 */
	for (uint32_t i = 0; i < n; i++)
		offs[i] = nsk_region_chunk_alloc(&a, 1);
	for (uint32_t i = 0; i + 1 < n; i += 3) {
		CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)offs[i], 1), 0);
		CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)offs[i + 1], 1), 0);
		offs[i] = offs[i + 1] = 0;
	}
	got = 0;
	int64_t p3 = nsk_region_chunk_alloc_prop(&a, 8, 1, &got);
	CHECK(p3 > 0 && got == 2);
	CHECK_EQ(nsk_region_chunk_alloc_prop(&a, 8, 3, &got), -ENOSPC);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)p3, 2), 0);
	for (uint32_t i = 0; i < n; i++)
		if (offs[i] > 0)
			CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)offs[i], 1), 0);
	/* random pattern against a shadow map */
	uint64_t s = seed ^ 0x55;
	uint32_t *shadow = calloc(n, sizeof(*shadow)); /* 1 + index into held[], or 0 */
	struct {
		int64_t off;
		uint32_t len;
	} held[64];
	int nheld = 0;
	int ops = t_tsan() ? 2000 : 20000;
	for (int k = 0; k < ops; k++) {
		if (nheld < 64 && (nheld == 0 || t_rng(&s) % 2)) {
			uint32_t len = 1 + (uint32_t)(t_rng(&s) % 6);
			int64_t off = nsk_region_chunk_alloc(&a, len);
			if (off == -ENOSPC)
				continue;
			CHECK(off > 0);
			uint32_t i0 = (uint32_t)(((uint64_t)off - a.data_off) >> 16);
			for (uint32_t j = 0; j < len; j++) {
				if (shadow[i0 + j])
					FAILF("chunk %u handed out twice", i0 + j);
				shadow[i0 + j] = 1;
			}
			held[nheld].off = off;
			held[nheld++].len = len;
		} else {
			int x = (int)(t_rng(&s) % (uint64_t)nheld);
			CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)held[x].off, held[x].len), 0);
			uint32_t i0 = (uint32_t)(((uint64_t)held[x].off - a.data_off) >> 16);
			for (uint32_t j = 0; j < held[x].len; j++)
				shadow[i0 + j] = 0;
			held[x] = held[--nheld];
		}
	}
	uint32_t sh = 0;
	for (uint32_t i = 0; i < n; i++) {
		sh += shadow[i];
		CHECK_EQ(shadow[i] != 0, nsk_load32(&a.chunks[i].owner) == a.self_tag);
	}
	nsk_region_chunk_stats(&a, &st);
	CHECK_EQ(st.used, sh);
	free(shadow);
	free(offs);
	free(b);
}

/* churn - allocate and free runs for @iters rounds (or until @until_ns), stamping each chunk with a
 * token and checking the stamps (and the chunk map) before giving the run back: a chunk handed to
 * two members at once shows as a foreign stamp. Returns 0 or 1. */
static int churn(struct nsk_region *rg, int iters, uint64_t until_ns, uint64_t s)
{
	struct {
		int64_t off;
		uint32_t len;
		uint64_t token;
	} held[6];
	int nheld = 0;
	uint64_t seq = 0;
	for (int k = 0; k < iters || nheld; k++) {
		if (k < iters && (k & 255) == 0 && t_now_ns() > until_ns)
			iters = k; /* time is up: give back what we hold and stop */
		if (k < iters && nheld < 6 && t_rng(&s) % 3) {
			uint32_t len = 1 + (uint32_t)(t_rng(&s) % 4);
			int64_t off = nsk_region_chunk_alloc(rg, len);
			if (off == -ENOSPC)
				continue;
			if (off < 0)
				return 1;
			uint64_t token = ((uint64_t)rg->self_tag << 32) | ++seq;
			for (uint32_t j = 0; j < len; j++) {
				uint64_t *p =
				    nsk_region_ptr(rg, (uint64_t)off + ((uint64_t)j << 16), 8);
				uint64_t *q =
				    (uint64_t *)(void *)((uint8_t *)p + NSK_RGN_CHUNK - 8);
				*p = token;
				*q = token;
			}
			held[nheld].off = off;
			held[nheld].len = len;
			held[nheld++].token = token;
		} else if (nheld) {
			int x = (int)(t_rng(&s) % (uint64_t)nheld);
			for (uint32_t j = 0; j < held[x].len; j++) {
				uint64_t off = (uint64_t)held[x].off + ((uint64_t)j << 16);
				uint64_t *p = nsk_region_ptr(rg, off, 8);
				uint64_t *q =
				    (uint64_t *)(void *)((uint8_t *)p + NSK_RGN_CHUNK - 8);
				uint32_t idx = (uint32_t)((off - rg->data_off) >> 16);
				if (*p != held[x].token || *q != held[x].token ||
				    nsk_load32(&rg->chunks[idx].owner) != rg->self_tag) {
					fprintf(stderr, "chunk %u: token %llx/%llx, want %llx\n",
					        idx, (unsigned long long)*p, (unsigned long long)*q,
					        (unsigned long long)held[x].token);
					return 1;
				}
			}
			if (nsk_region_chunk_free(rg, (uint64_t)held[x].off, held[x].len) != 0)
				return 1;
			held[x] = held[--nheld];
		}
	}
	return 0;
}

static void test_alloc_fork(void)
{
	uint64_t size = 1u << 20; /* 15 chunks: the two collide all the time */
	uint8_t *b = shared_region(size, &P);
	int iters = 1 << 30; /* the time bound decides: both run for the same 300 ms */
	uint64_t ms = t_sanitized() ? 150 : 300;
	uint32_t *ready =
	    mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(ready != MAP_FAILED);
	pid_t pids[2];
	for (int c = 0; c < 2; c++) {
		pids[c] = fork();
		CHECK(pids[c] >= 0);
		if (pids[c] == 0) {
			t_watchdog(60);
			struct nsk_region rg;
			if (nsk_region_attach(&rg, b, size) < 0 ||
			    nsk_region_join(&rg, "churn", getpid()) < 0)
				_exit(2);
			/* start together: both must be churning at the same time */
			atomic_fetch_add(NSK_A32(ready), 1);
			while (nsk_load32(ready) < 2)
				nsk_cpu_relax();
			_exit(churn(&rg, iters, t_now_ns() + ms * MS, seed + (uint64_t)c * 7919));
		}
	}
	for (int c = 0; c < 2; c++)
		t_wait_child(pids[c], "allocating child");
	struct nsk_region rg;
	CHECK_EQ(nsk_region_attach(&rg, b, size), 0);
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&rg, &st);
	CHECK_EQ(st.used, 0);
	printf("   2 processes x %llu ms over %u chunks: no chunk held twice, %llu allocations, "
	       "%llu failed for lack of space\n",
	       (unsigned long long)ms, rg.nchunks, (unsigned long long)nsk_load64(&rg.hdr->allocs),
	       (unsigned long long)nsk_load64(&rg.hdr->alloc_fails));
	munmap(ready, 4096);
	munmap(b, size);
}

struct thr_arg {
	uint8_t *base;
	uint64_t size;
	uint64_t seed;
	int iters;
	uint64_t until;
	int rc;
};

static void *churn_thread(void *p)
{
	struct thr_arg *a = p;
	struct nsk_region rg;
	if (nsk_region_attach(&rg, a->base, a->size) < 0 || nsk_region_join(&rg, "thr", 1) < 0) {
		a->rc = 2;
		return NULL;
	}
	a->rc = churn(&rg, a->iters, a->until, a->seed);
	nsk_region_leave(&rg);
	return NULL;
}

/* The same with two threads (each its own member handle): what ThreadSanitizer can follow. */
static void test_alloc_threads(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	struct thr_arg args[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		args[i] = (struct thr_arg){b,
		                           size,
		                           seed + (uint64_t)i * 31,
		                           1 << 30,
		                           t_now_ns() + (t_tsan() ? 150 : 300) * MS,
		                           0};
		CHECK_EQ(pthread_create(&th[i], NULL, churn_thread, &args[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(args[i].rc, 0);
	}
	free(b);
}

/* ---------------------------------------------------------------- members and death --- */

static int reg_entries_of(struct nsk_region *rg, uint32_t tag)
{
	int n = 0;
	for (uint32_t i = 0; i < rg->reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (nsk_registry_read(&rg->reg, (int)i, &e) && nsk_region_reg_owner(rg, &e) == tag)
			n++;
	}
	return n;
}

static int offers_of(struct nsk_region *rg, uint32_t tag)
{
	int n = 0;
	for (uint32_t i = 0; i < rg->noffers; i++) {
		uint64_t st = nsk_load64(&rg->offers[i].state);
		n += NSK_RO_OWNER(st) == tag && NSK_RO_KIND(st) != NSK_RO_EMPTY;
	}
	return n;
}

static void test_member_death(void)
{
	uint64_t size = 2u << 20;
	uint8_t *b = shared_region(size, &P);
	struct nsk_region me;
	CHECK_EQ(nsk_region_attach(&me, b, size), 0);
	CHECK(nsk_region_join(&me, "observer", getpid()) >= 0);
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		struct nsk_region rg;
		if (nsk_region_attach(&rg, b, size) < 0 ||
		    nsk_region_join(&rg, "victim", getpid()) < 0)
			_exit(2);
		uint16_t fam[1] = {AF_INET};
		uint8_t addr[1][16] = {{169, 254, 0, 2}};
		int64_t off = nsk_region_chunk_alloc(&rg, 3);
		if (off < 0 || nsk_region_set_addrs(&rg, fam, (const uint8_t(*)[16])addr, 1) < 0)
			_exit(3);
		for (int i = 0; i < 2; i++) {
			struct nsk_region_offer_info o;
			memset(&o, 0, sizeof(o));
			o.to_tag = me.self_tag;
			o.chan_off = (uint64_t)off;
			o.chan_size = NSK_RGN_CHUNK;
			o.family = AF_INET;
			o.cport = (uint16_t)(40000 + i);
			o.sport = 6379;
			o.nonce = 77 + (uint64_t)i;
			struct nsk_region_offer_handle h;
			if (nsk_region_offer_post(&rg, &o, &h) < 0)
				_exit(4);
		}
		struct nsk_reg_key k;
		memset(&k, 0, sizeof(k));
		k.family = AF_INET;
		k.port = 6379;
		k.netns = nsk_region_netns(rg.self);
		if (nsk_registry_insert(&rg.reg, &k, rg.self + 1, rg.self_gen, "") < 0)
			_exit(5);
		(void)!write(p[1], &rg.self_tag, sizeof(rg.self_tag));
		for (;;) { /* beats until killed */
			nsk_region_beat(&rg);
			sleep_ms(5);
		}
	}
	close(p[1]);
	uint32_t tag = 0;
	CHECK_EQ(read(p[0], &tag, sizeof(tag)), (long)sizeof(tag));
	close(p[0]);
	int slot = NSK_RGN_TAG_SLOT(tag);
	uint8_t a2[16] = {169, 254, 0, 2};
	CHECK_EQ(nsk_region_find_addr(&me, AF_INET, a2), slot);
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&me, &st);
	CHECK_EQ(st.by_slot[slot], 3);
	CHECK_EQ(offers_of(&me, tag), 2);
	CHECK_EQ(reg_entries_of(&me, tag), 1);
	/* claim one of its offers: a CLAIMED slot is reclaimed as well */
	struct nsk_region_offer_info got;
	struct nsk_region_offer_handle gh;
	uint8_t ca[16] = {0}, sa[16] = {0};
	CHECK_EQ(nsk_region_offer_claim(&me, AF_INET, ca, 40001, sa, 6379, &got, &gh), 0);
	CHECK_EQ(got.nonce, 78);
	CHECK_EQ(got.from_tag, tag);
	/* alive: several dead_ns of observation reclaim nothing */
	uint64_t t0 = nsk_now_ns();
	while (nsk_now_ns() - t0 < 3 * me.dead_ns) {
		CHECK_EQ(nsk_region_reap(&me), 0);
		sleep_ms(10);
	}
	CHECK(nsk_region_tag_live(&me, tag));
	kill(child, SIGKILL);
	int wst;
	CHECK_EQ(waitpid(child, &wst, 0), child);
	uint64_t k0 = nsk_now_ns();
	int reaped = 0;
	while (!reaped && nsk_now_ns() - k0 < 5000 * MS) {
		reaped = nsk_region_reap(&me);
		sleep_ms(5);
	}
	uint64_t took = nsk_now_ns() - k0;
	CHECK_EQ(reaped, 1);
	CHECK(took >= me.dead_ns - 10 * MS);
	printf("   SIGKILLed member reclaimed %.0f ms after the kill (dead_ns %.0f ms)\n",
	       (double)took / 1e6, (double)me.dead_ns / 1e6);
	CHECK(!nsk_region_tag_live(&me, tag));
	nsk_region_chunk_stats(&me, &st);
	CHECK_EQ(st.used, 0);
	CHECK_EQ(offers_of(&me, tag), 0);
	CHECK_EQ(reg_entries_of(&me, tag), 0);
	CHECK_EQ(nsk_region_find_addr(&me, AF_INET, a2), -ENOENT);
	CHECK_EQ(NSK_RM_KIND(nsk_load64(&me.members[slot].state)), NSK_RM_FREE);
	CHECK_EQ(nsk_load64(&me.hdr->reclaims), 1);
	/* the slot is joinable again, with a new generation (a new tag) */
	struct nsk_region again;
	CHECK_EQ(nsk_region_attach(&again, b, size), 0);
	CHECK_EQ(nsk_region_join(&again, "again", 1), slot);
	CHECK(again.self_tag != tag);
	CHECK_EQ(nsk_region_leave(&again), 0);
	CHECK_EQ(nsk_region_leave(&me), 0);
	munmap(b, size);
}

/* A member that stalls past dead_ns is evicted: its next beat says so, and what it held is
 * gone. Then: leave, a reclaimer that died half-way, a scribbled slot kind. */
static void test_evict_leave(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	struct nsk_region a, o;
	CHECK_EQ(nsk_region_attach(&a, b, size), 0);
	CHECK_EQ(nsk_region_attach(&o, b, size), 0);
	CHECK(nsk_region_join(&a, "staller", 1) >= 0);
	CHECK(nsk_region_join(&o, "observer", 2) >= 0);
	int64_t off = nsk_region_chunk_alloc(&a, 2);
	CHECK(off > 0);
	uint64_t t = 5000 * MS;
	CHECK_EQ(nsk_region_reap_at(&o, t), 0);
	CHECK_EQ(nsk_region_reap_at(&o, t + o.dead_ns - 1), 0);
	CHECK_EQ(nsk_region_beat(&a), 0); /* a beat restarts the clock */
	CHECK_EQ(nsk_region_reap_at(&o, t + o.dead_ns + 1), 0);
	CHECK_EQ(nsk_region_reap_at(&o, t + 2 * o.dead_ns + 2), 1);
	CHECK_EQ(nsk_region_beat(&a), -ESTALE);
	CHECK_EQ(nsk_region_chunk_alloc(&a, 1), -ESTALE);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)off, 2), -EPERM); /* reclaimed already */
	CHECK_EQ(nsk_region_leave(&a), -ESTALE);
	/* leave gives everything back */
	struct nsk_region l;
	CHECK_EQ(nsk_region_attach(&l, b, size), 0);
	int ls = nsk_region_join(&l, "leaver", 3);
	CHECK(ls >= 0);
	CHECK(nsk_region_chunk_alloc(&l, 3) > 0);
	struct nsk_region_offer_info of;
	memset(&of, 0, sizeof(of));
	of.to_tag = o.self_tag;
	of.chan_off = l.data_off;
	of.chan_size = NSK_RGN_CHUNK;
	struct nsk_region_offer_handle oh;
	CHECK_EQ(nsk_region_offer_post(&l, &of, &oh), 0);
	uint32_t ltag = l.self_tag;
	CHECK_EQ(nsk_region_leave(&l), 0);
	CHECK_EQ(offers_of(&o, ltag), 0);
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&o, &st);
	CHECK_EQ(st.used, 0);
	CHECK_EQ(nsk_region_beat(&l), -ESTALE);
	/* a reclaimer died after RECLAIM: the next reaper (or joiner) finishes the job */
	struct nsk_region d;
	CHECK_EQ(nsk_region_attach(&d, b, size), 0);
	int ds = nsk_region_join(&d, "half", 4);
	CHECK(nsk_region_chunk_alloc(&d, 4) > 0);
	uint64_t rec = ((uint64_t)d.self_gen << 32) | NSK_RM_RECLAIM;
	nsk_store64(&o.members[ds].state, rec);
	CHECK_EQ(nsk_region_reap(&o), 1);
	nsk_region_chunk_stats(&o, &st);
	CHECK_EQ(st.used, 0);
	CHECK_EQ(NSK_RM_KIND(nsk_load64(&o.members[ds].state)), NSK_RM_FREE);
	/* a slot scribbled to an unknown kind is freed once it stood still for dead_ns */
	nsk_store64(&o.members[ds].state, ((uint64_t)9 << 32) | 7);
	CHECK_EQ(nsk_region_reap_at(&o, 1000 * t), 0);
	CHECK_EQ(nsk_region_reap_at(&o, 1000 * t + o.dead_ns), 1);
	CHECK_EQ(NSK_RM_KIND(nsk_load64(&o.members[ds].state)), NSK_RM_FREE);
	/* full table */
	struct nsk_region many[8];
	int joined = 0;
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(nsk_region_attach(&many[i], b, size), 0);
		if (nsk_region_join(&many[i], "m", 10 + i) >= 0)
			joined++;
		else
			CHECK_EQ(nsk_region_join(&many[i], "m", 10 + i), -ENOSPC);
	}
	CHECK_EQ(joined, 7); /* o holds the eighth slot */
	free(b);
}

/* A region reformatted under attached members: each of their calls fails, none touches what
 * the new format's members own (whose tags start from new random generations). */
static void test_reformat(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	struct nsk_region old, nw;
	CHECK_EQ(nsk_region_attach(&old, b, size), 0);
	CHECK(nsk_region_join(&old, "old", 1) >= 0);
	int64_t off = nsk_region_chunk_alloc(&old, 2);
	CHECK(off > 0);
	uint32_t old_tag = old.self_tag;
	CHECK_EQ(nsk_region_format(b, size, &P), 0);
	CHECK_EQ(nsk_region_attach(&nw, b, size), 0);
	CHECK(nsk_region_join(&nw, "new", 2) >= 0);
	CHECK(nw.self_tag != old_tag);
	CHECK_EQ(nsk_region_chunk_alloc(&nw, 2), off); /* the same chunks, new owner */
	CHECK_EQ(nsk_region_beat(&old), -ESTALE);
	CHECK_EQ(nsk_region_chunk_alloc(&old, 1), -ESTALE);
	CHECK_EQ(nsk_region_chunk_free(&old, (uint64_t)off, 2), -ESTALE);
	struct nsk_region_offer_info o;
	memset(&o, 0, sizeof(o));
	o.to_tag = old.self_tag;
	o.chan_off = (uint64_t)off;
	o.chan_size = NSK_RGN_CHUNK;
	struct nsk_region_offer_handle h;
	CHECK_EQ(nsk_region_offer_post(&old, &o, &h), -EINVAL); /* addressee not live */
	o.to_tag = nw.self_tag;
	CHECK_EQ(nsk_region_offer_post(&old, &o, &h), -ESTALE);
	CHECK_EQ(nsk_region_offer_post(&nw, &o, &h), 0);
	struct nsk_region_offer_handle hc;
	struct nsk_region_offer_info got;
	CHECK_EQ(nsk_region_offer_claim(&old, AF_INET, NULL, 0, NULL, 0, &got, &hc), -ENOENT);
	CHECK_EQ(nsk_region_offer_withdraw(&old, &h), -ESTALE);
	CHECK_EQ(nsk_region_offer_release(&old, &h), -ESTALE);
	CHECK_EQ(nsk_region_leave(&old), -ESTALE);
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&nw, &st);
	CHECK_EQ(st.by_slot[nw.self], 2);
	CHECK_EQ(nsk_region_offer_state(&nw, &h), NSK_RO_POSTED);
	free(b);
}

/* ---------------------------------------------------------------- offers -------------- */

static void test_offer_match(void)
{
	uint64_t size = 1u << 20;
	uint8_t *b = heap_region(size);
	struct nsk_region c, s, x;
	CHECK_EQ(nsk_region_attach(&c, b, size), 0);
	CHECK_EQ(nsk_region_attach(&s, b, size), 0);
	CHECK_EQ(nsk_region_attach(&x, b, size), 0);
	CHECK(nsk_region_join(&c, "client", 1) >= 0);
	CHECK(nsk_region_join(&s, "server", 2) >= 0);
	CHECK(nsk_region_join(&x, "bystander", 3) >= 0);
	int64_t off = nsk_region_chunk_alloc(&c, 2);
	CHECK(off > 0);
	struct nsk_region_offer_info o;
	memset(&o, 0, sizeof(o));
	o.to_tag = s.self_tag;
	o.chan_off = (uint64_t)off;
	o.chan_size = 2 * NSK_RGN_CHUNK;
	o.family = AF_INET;
	uint8_t ca[16] = {169, 254, 0, 1}, sa[16] = {169, 254, 0, 2};
	memcpy(o.caddr, ca, 16);
	memcpy(o.saddr, sa, 16);
	o.sport = 80;
	struct nsk_region_offer_handle h[3];
	for (int i = 0; i < 3; i++) {
		o.cport = (uint16_t)(1000 + i);
		o.nonce = 500 + (uint64_t)i;
		CHECK_EQ(nsk_region_offer_post(&c, &o, &h[i]), 0);
		CHECK_EQ(nsk_region_offer_state(&c, &h[i]), NSK_RO_POSTED);
	}
	uint32_t cnt[5];
	nsk_region_offer_count(&c, cnt);
	CHECK_EQ(cnt[NSK_RO_POSTED], 3);
	struct nsk_region_offer_info got;
	struct nsk_region_offer_handle gh;
	CHECK_EQ(nsk_region_offer_claim(&x, AF_INET, NULL, 0, NULL, 0, &got, &gh), -ENOENT);
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, ca, 1003, sa, 80, &got, &gh), -ENOENT);
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, sa, 1001, ca, 80, &got, &gh), -ENOENT);
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, ca, 1001, sa, 80, &got, &gh), 0);
	CHECK_EQ(got.nonce, 501);
	CHECK_EQ(got.chan_off, (uint64_t)off);
	CHECK_EQ(got.from_tag, c.self_tag);
	CHECK_EQ(nsk_region_offer_state(&c, &h[1]), NSK_RO_CLAIMED);
	CHECK_EQ(nsk_region_offer_withdraw(&c, &h[1]), -EALREADY);
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, ca, 1001, sa, 80, &got, &gh), -ENOENT);
	CHECK_EQ(nsk_region_offer_withdraw(&c, &h[0]), 0);
	CHECK_EQ(nsk_region_offer_withdraw(&c, &h[0]), 0); /* idempotent */
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, ca, 1000, sa, 80, &got, &gh), -ENOENT);
	CHECK_EQ(nsk_region_offer_release(&c, &h[2]), -EBUSY);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(nsk_region_offer_release(&c, &h[i]), 0);
		CHECK_EQ(nsk_region_offer_state(&c, &h[i]), -ESTALE);
		CHECK_EQ(nsk_region_offer_release(&c, &h[i]), -ESTALE);
	}
	/* a malformed channel range is never posted, and never claimed if scribbled in */
	o.chan_off = c.data_off + 1;
	CHECK_EQ(nsk_region_offer_post(&c, &o, &h[0]), -EINVAL);
	o.chan_off = c.data_off;
	o.chan_size = (uint64_t)(c.nchunks + 1) << 16;
	CHECK_EQ(nsk_region_offer_post(&c, &o, &h[0]), -EINVAL);
	o.to_tag = 0;
	o.chan_size = NSK_RGN_CHUNK;
	CHECK_EQ(nsk_region_offer_post(&c, &o, &h[0]), -EINVAL);
	nsk_store64(&c.offers[h[2].slot].chan_size, 1ull << 40);
	CHECK_EQ(nsk_region_offer_claim(&s, AF_INET, NULL, 0, NULL, 0, &got, &gh), -ENOENT);
	/* an addressee that left is not a live membership */
	uint32_t xtag = x.self_tag;
	CHECK_EQ(nsk_region_leave(&x), 0);
	o.to_tag = xtag;
	o.chan_off = c.data_off;
	o.chan_size = NSK_RGN_CHUNK;
	CHECK_EQ(nsk_region_offer_post(&c, &o, &h[0]), -EINVAL);
	/* a full mailbox */
	o.to_tag = s.self_tag;
	int posted = 0;
	struct nsk_region_offer_handle tmp;
	while (nsk_region_offer_post(&c, &o, &tmp) == 0)
		posted++;
	CHECK_EQ(posted, (int)c.noffers - 1);
	CHECK_EQ(nsk_region_offer_post(&c, &o, &tmp), -ENOSPC);
	/* the addressee learns of offers through its mail_seq */
	CHECK(nsk_load64(&s.members[s.self].mail_seq) >= 3);
	free(b);
}

struct race_ctl {
	uint8_t *base;
	uint64_t size;
	int n;
	uint32_t server_tag;
	uint32_t stop;
	int rc;
	uint64_t claims;
	uint8_t claimed[]; /* per nonce: times the server claimed it */
};

/* race_server - claim every offer addressed to us until told to stop; 0 or an error code. */
static int race_server(struct race_ctl *ctl)
{
	struct nsk_region s;
	if (nsk_region_attach(&s, ctl->base, ctl->size) < 0 ||
	    nsk_region_join(&s, "server", getpid()) < 0)
		return 2;
	/* Release pairs with the client's acquire: our membership is set up before it posts. */
	nsk_store32_release(&ctl->server_tag, s.self_tag);
	for (;;) {
		/* acquire pairs with the client's release of stop after its last withdraw */
		int stop = nsk_load32_acquire(&ctl->stop) != 0;
		struct nsk_region_offer_info o;
		struct nsk_region_offer_handle h;
		int r = nsk_region_offer_claim(&s, AF_INET, NULL, 0, NULL, 0, &o, &h);
		if (r == 0) {
			if (o.nonce >= (uint64_t)ctl->n ||
			    !nsk_region_ptr(&s, o.chan_off, o.chan_size))
				return 3;
			ctl->claimed[o.nonce]++;
			ctl->claims++;
		} else if (stop) {
			return 0;
		}
	}
}

static void *race_server_thread(void *p)
{
	struct race_ctl *ctl = p;
	ctl->rc = race_server(ctl);
	return NULL;
}

/* race_client - post ctl->n offers, three in flight, and withdraw each after a random pause:
 * exactly one of withdraw and claim wins, and both sides must agree on which. */
static void race_client(struct race_ctl *ctl, uint8_t *outcome, int *won, int *lost)
{
	struct nsk_region c;
	CHECK_EQ(nsk_region_attach(&c, ctl->base, ctl->size), 0);
	CHECK(nsk_region_join(&c, "client", getpid()) >= 0);
	int64_t off = nsk_region_chunk_alloc(&c, 1);
	CHECK(off > 0);
	while (!nsk_load32_acquire(&ctl->server_tag))
		sleep_ms(1);
	uint64_t s = seed;
	struct nsk_region_offer_handle inflight[3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}};
	int nin = 0, n = ctl->n;
	for (int i = 0; i < n || nin; i++) {
		if (i < n) {
			struct nsk_region_offer_info o;
			memset(&o, 0, sizeof(o));
			o.to_tag = nsk_load32(&ctl->server_tag);
			o.chan_off = (uint64_t)off;
			o.chan_size = NSK_RGN_CHUNK;
			o.family = AF_INET;
			o.nonce = (uint64_t)i;
			CHECK_EQ(nsk_region_offer_post(&c, &o, &inflight[nin]), 0);
			nin++;
			for (uint64_t spin = t_rng(&s) % (t_sanitized() ? 20000 : 2000); spin;
			     spin--)
				nsk_cpu_relax();
		}
		if (nin == 3 || i >= n) {
			/* the oldest: withdraw it, or learn that the server has it */
			struct nsk_region_offer_handle h = inflight[0];
			memmove(inflight, inflight + 1, sizeof(inflight[0]) * (size_t)--nin);
			int r = nsk_region_offer_withdraw(&c, &h);
			int st = nsk_region_offer_state(&c, &h);
			uint64_t nonce = nsk_load64(&c.offers[h.slot].nonce);
			CHECK(nonce < (uint64_t)n);
			if (r == 0) {
				CHECK_EQ(st, NSK_RO_WITHDRAWN);
				outcome[nonce] = 1;
				(*won)++;
			} else {
				CHECK_EQ(r, -EALREADY);
				CHECK_EQ(st, NSK_RO_CLAIMED);
				outcome[nonce] = 2;
				(*lost)++;
			}
			CHECK_EQ(nsk_region_offer_release(&c, &h), 0);
		}
	}
	nsk_store32_release(&ctl->stop, 1); /* pairs with the server's acquire */
	uint32_t cnt[5];
	nsk_region_offer_count(&c, cnt);
	CHECK_EQ(cnt[NSK_RO_EMPTY], c.noffers);
}

/* offer_race - the race with the server in another process (@threads 0) or thread (1). */
static void offer_race(int threads)
{
	struct nsk_region_params p = P;
	p.noffers = 4; /* slots reused all the time */
	uint64_t size = 1u << 20;
	uint8_t *b = shared_region(size, &p);
	int n = t_tsan() ? 2000 : t_sanitized() ? 3000 : 20000;
	size_t clen = sizeof(struct race_ctl) + (size_t)n;
	struct race_ctl *ctl =
	    mmap(NULL, clen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(ctl != MAP_FAILED);
	ctl->base = b;
	ctl->size = size;
	ctl->n = n;
	pid_t child = -1;
	pthread_t th;
	if (threads) {
		CHECK_EQ(pthread_create(&th, NULL, race_server_thread, ctl), 0);
	} else {
		child = fork();
		CHECK(child >= 0);
		if (child == 0) {
			t_watchdog(120);
			_exit(race_server(ctl));
		}
	}
	uint8_t *outcome = calloc((size_t)n, 1); /* 1 withdrawn, 2 claimed */
	int won = 0, lost = 0;
	race_client(ctl, outcome, &won, &lost);
	if (threads) {
		pthread_join(th, NULL);
		CHECK_EQ(ctl->rc, 0);
	} else {
		t_wait_child(child, "claiming server");
	}
	int claims = 0;
	for (int i = 0; i < n; i++) {
		if (ctl->claimed[i] > 1)
			FAILF("offer %d claimed %u times", i, ctl->claimed[i]);
		if (!outcome[i])
			FAILF("offer %d has no outcome", i);
		if ((ctl->claimed[i] == 1) != (outcome[i] == 2))
			FAILF("offer %d: server claimed %u, client saw %s", i, ctl->claimed[i],
			      outcome[i] == 2 ? "claimed" : "withdrawn");
		claims += ctl->claimed[i];
	}
	CHECK_EQ(claims, lost);
	CHECK_EQ((uint64_t)claims, ctl->claims);
	printf("   %d offers through 4 slots (server in a %s): %d claimed by the server, %d "
	       "withdrawn first; every one exactly once\n",
	       n, threads ? "thread" : "process", lost, won);
	free(outcome);
	munmap(ctl, clen);
	munmap(b, size);
}

static void test_offer_race(void)
{
	offer_race(0);
}

static void test_offer_threads(void)
{
	offer_race(1);
}

/* ---------------------------------------------------------------- mapping ------------- */

static void put_file(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	CHECK(f);
	fputs(text, f);
	fclose(f);
}

static void make_dev(const char *root, const char *bdf, const char *vendor, const char *device,
                     uint64_t size, int format)
{
	char d[512];
	snprintf(d, sizeof(d), "%s/bus/pci/devices/%s", root, bdf);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", d);
	CHECK(system(cmd) == 0);
	put_file(d, "vendor", vendor);
	put_file(d, "device", device);
	put_file(d, "enable", "0\n");
	char res[256];
	snprintf(res, sizeof(res),
	         "0x00000000febf1000 0x00000000febf10ff 0x0000000000040200\n"
	         "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
	         "0x0000000800000000 0x%016llx 0x000000000014220c\n",
	         (unsigned long long)(0x800000000ull + size - 1));
	put_file(d, "resource", res);
	if (!size)
		return;
	char p[600];
	snprintf(p, sizeof(p), "%s/resource2", d);
	if (format) {
		CHECK_EQ(nsk_region_create_file(p, size, &P, 1, 0), 0);
	} else {
		int fd = open(p, O_RDWR | O_CREAT, 0600);
		CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
		close(fd);
	}
}

static void test_parse(void)
{
	struct nsk_region_spec sp;
	CHECK_EQ(nsk_region_parse_domain(NULL, &sp), 0);
	CHECK_EQ(nsk_region_parse_domain("", &sp), 0);
	CHECK_EQ(nsk_region_parse_domain("/dev/shm/nearsock-1000", &sp), 0);
	CHECK_EQ(nsk_region_parse_domain("dir:/x", &sp), 0);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:/dev/shm/vmregion", &sp), 1);
	CHECK_EQ(sp.where, NSK_RGN_FILE);
	CHECK(!strcmp(sp.arg, "/dev/shm/vmregion"));
	CHECK_EQ(nsk_region_parse_domain("ivshmem:auto", &sp), 1);
	CHECK_EQ(sp.where, NSK_RGN_PCI_AUTO);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:pci:0000:00:04.0", &sp), 1);
	CHECK_EQ(sp.where, NSK_RGN_PCI_DEV);
	CHECK(!strcmp(sp.arg, "0000:00:04.0"));
	CHECK_EQ(nsk_region_parse_domain("ivshmem:", &sp), -EINVAL);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:relative/file", &sp), -EINVAL);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:pci:00:04.0", &sp), -EINVAL);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:pci:0000:00:04.0x", &sp), -EINVAL);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:pci:zzzz:00:04.0", &sp), -EINVAL);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:autox", &sp), -EINVAL);
	unsetenv("NEARSOCK_SYSFS");
	CHECK(!strcmp(nsk_region_sysfs_root(), "/sys"));
	setenv("NEARSOCK_SYSFS", "/tmp/fake", 1);
	CHECK(!strcmp(nsk_region_sysfs_root(), "/tmp/fake"));
	unsetenv("NEARSOCK_SYSFS");
}

static void test_sysfs(void)
{
	char root[256];
	snprintf(root, sizeof(root), "%s/sys", tmpdir);
	struct nsk_region rg;
	CHECK_EQ(nsk_region_open_pci(&rg, root, NULL), -ENODEV);      /* no tree at all */
	make_dev(root, "0000:00:02.0", "0x8086\n", "0x100e\n", 0, 0); /* e1000 */
	CHECK_EQ(nsk_region_open_pci(&rg, root, NULL), -ENODEV);
	make_dev(root, "0000:00:03.0", "0x1af4\n", "0x1000\n", 0, 0);        /* virtio-net */
	make_dev(root, "0000:00:04.0", "0x1af4\n", "0x1110\n", 1u << 20, 0); /* unformatted */
	CHECK_EQ(nsk_region_open_pci(&rg, root, NULL), -EPROTO);
	make_dev(root, "0000:00:05.0", "0x1af4\n", "0x1110\n", 1u << 20, 1); /* a region */
	CHECK_EQ(nsk_region_open_pci(&rg, root, NULL), 0);
	CHECK(strstr(rg.path, "0000:00:05.0/resource2"));
	CHECK_EQ(rg.size, 1u << 20);
	CHECK(nsk_region_join(&rg, "guest", getpid()) >= 0);
	nsk_region_close(&rg);
	char p[512];
	snprintf(p, sizeof(p), "%s/bus/pci/devices/0000:00:05.0/enable", root);
	FILE *f = fopen(p, "r");
	CHECK(f);
	CHECK_EQ(fgetc(f), '1');
	fclose(f);
	CHECK_EQ(nsk_region_open_pci(&rg, root, "0000:00:04.0"), -EPROTO);
	CHECK_EQ(nsk_region_open_pci(&rg, root, "0000:00:09.0"), -ENODEV);
	CHECK_EQ(nsk_region_open_pci(&rg, root, "0000:00:05.0"), 0);
	/* the same bytes through the host's path */
	snprintf(p, sizeof(p), "%s/bus/pci/devices/0000:00:05.0/resource2", root);
	struct nsk_region host;
	CHECK_EQ(nsk_region_open_path(&host, p), 0);
	struct nsk_region_member_info mi;
	int found = 0;
	for (uint32_t i = 0; i < host.nmembers; i++)
		if (nsk_region_member_read(&host, (int)i, &mi) == 1 && !strcmp(mi.name, "guest"))
			found = 1;
	CHECK(found);
	nsk_region_close(&host);
	nsk_region_close(&rg);
	/* through the spec and NEARSOCK_SYSFS */
	setenv("NEARSOCK_SYSFS", root, 1);
	struct nsk_region_spec sp;
	CHECK_EQ(nsk_region_parse_domain("ivshmem:auto", &sp), 1);
	CHECK_EQ(nsk_region_open_spec(&rg, &sp), 0);
	nsk_region_close(&rg);
	CHECK_EQ(nsk_region_parse_domain("ivshmem:pci:0000:00:04.0", &sp), 1);
	CHECK_EQ(nsk_region_open_spec(&rg, &sp), -EPROTO);
	unsetenv("NEARSOCK_SYSFS");
}

static void test_files(void)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/region", tmpdir);
	struct nsk_region rg;
	CHECK_EQ(nsk_region_open_path(&rg, path), -ENOENT);
	CHECK_EQ(nsk_region_create_file(path, (1u << 20) + 1, &P, 0, 0), -EINVAL);
	CHECK_EQ(nsk_region_create_file(path, 1u << 20, &P, 0, 0), 0);
	CHECK_EQ(nsk_region_open_path(&rg, path), 0);
	CHECK_EQ(rg.size, 1u << 20);
	nsk_region_close(&rg);
	/* a file whose size differs from its header's */
	CHECK(truncate(path, 2u << 20) == 0);
	CHECK_EQ(nsk_region_open_path(&rg, path), -EPROTO);
	CHECK(truncate(path, 0) == 0);
	CHECK_EQ(nsk_region_open_path(&rg, path), -EPROTO);
	CHECK_EQ(nsk_region_open_path(&rg, tmpdir), -EISDIR); /* a directory */
	CHECK_EQ(nsk_region_create_file(path, 1u << 20, &P, 0, 0), 0);
	/* a live member: no reformat without force; with force, the member learns it */
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		t_watchdog(30);
		struct nsk_region m;
		if (nsk_region_open_path(&m, path) < 0 || nsk_region_join(&m, "live", getpid()) < 0)
			_exit(2);
		(void)!write(p[1], "x", 1);
		while (nsk_region_beat(&m) == 0)
			sleep_ms(5);
		_exit(0); /* -ESTALE: reformatted under us */
	}
	char x;
	CHECK_EQ(read(p[0], &x, 1), 1);
	CHECK_EQ(nsk_region_create_file(path, 1u << 20, &P, 0, 300 * MS), -EBUSY);
	CHECK_EQ(nsk_region_create_file(path, 2u << 20, &P, 1, 0), 0);
	t_wait_child(child, "member of the reformatted region");
	CHECK_EQ(nsk_region_open_path(&rg, path), 0);
	CHECK_EQ(rg.size, 2u << 20);
	nsk_region_close(&rg);
	/* a member that died: its slot stands still, a reformat goes ahead */
	child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		struct nsk_region m;
		if (nsk_region_open_path(&m, path) < 0 || nsk_region_join(&m, "dies", getpid()) < 0)
			_exit(2);
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	CHECK_EQ(read(p[0], &x, 1), 1);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	CHECK_EQ(nsk_region_create_file(path, 2u << 20, &P, 0, 100 * MS), 0);
	close(p[0]);
	close(p[1]);
	unlink(path);
}

/* member PATH MS - play a member of the region file PATH for MS milliseconds (for the CLI
 * test): join, hold 2 chunks, post an offer to ourselves, register a listener on port 6379,
 * publish 169.254.0.9, beat at half the interval, then exit without leaving (a dead member). */
static int play_member(const char *path, unsigned ms)
{
	struct nsk_region rg;
	int r = nsk_region_open_path(&rg, path);
	if (r < 0 || (r = nsk_region_join(&rg, "member-test", getpid())) < 0) {
		fprintf(stderr, "member: %s: %s\n", path, strerror(-r));
		return 1;
	}
	uint16_t fam[1] = {AF_INET};
	const uint8_t addr[1][16] = {{169, 254, 0, 9}};
	int64_t off = nsk_region_chunk_alloc(&rg, 2);
	struct nsk_region_offer_info o;
	memset(&o, 0, sizeof(o));
	o.to_tag = rg.self_tag;
	o.chan_off = (uint64_t)off;
	o.chan_size = 2 * NSK_RGN_CHUNK;
	o.family = AF_INET;
	memcpy(o.caddr, addr[0], 4);
	memcpy(o.saddr, addr[0], 4);
	o.cport = 40000;
	o.sport = 6379;
	struct nsk_region_offer_handle h;
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	k.port = 6379;
	k.netns = nsk_region_netns(rg.self);
	if (off < 0 || nsk_region_set_addrs(&rg, fam, addr, 1) < 0 ||
	    nsk_region_offer_post(&rg, &o, &h) < 0 ||
	    nsk_registry_insert(&rg.reg, &k, rg.self + 1, rg.self_gen, "") < 0) {
		fprintf(stderr, "member: setting up failed\n");
		return 1;
	}
	printf("joined %d\n", rg.self);
	uint64_t end = t_now_ns() + (uint64_t)ms * MS;
	while (t_now_ns() < end) {
		if (nsk_region_beat(&rg) < 0) {
			printf("evicted\n");
			return 0;
		}
		sleep_ms((unsigned)(rg.beat_ns / MS / 2 + 1));
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "member"))
		return play_member(argv[2], (unsigned)atoi(argv[3]));
	seed = t_seed();
	t_watchdog(t_sanitized() ? 240 : 100);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/nsk-region-test.XXXXXX");
	CHECK(mkdtemp(tmpdir));
	const char *only = argc > 1 ? argv[1] : NULL;
#define T(fn)                                                                                      \
	if (!only || !strcmp(only, #fn))                                                           \
	RUN(fn)
	T(test_layout);
	T(test_format_attach);
	T(test_malformed);
	T(test_scribble);
	T(test_alloc_patterns);
	T(test_alloc_fork);
	T(test_alloc_threads);
	T(test_member_death);
	T(test_evict_leave);
	T(test_reformat);
	T(test_offer_match);
	T(test_offer_race);
	T(test_offer_threads);
	T(test_parse);
	T(test_sysfs);
	T(test_files);
#undef T
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	(void)!system(cmd);
	printf("region: all tests passed\n");
	return 0;
}
