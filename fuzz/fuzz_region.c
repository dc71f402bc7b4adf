/* SPDX-License-Identifier: MIT */
/* fuzz_region.c — libFuzzer target for the ivshmem region (src/core/region.c): every VM
 * attached to a region can write anything anywhere in it. A small region (256 KiB: 4
 * members, 8 offers, 16 registry entries, 2 chunks) is formatted in a heap block of exactly
 * its size, optionally populated (two members, chunks, offers, a listener), then patched with
 * bytes from the input anywhere in its metadata (header included; the header checksum is
 * recomputed if the input says so). Then attach, and a program of API calls taken from the
 * rest of the input, with more patches in between. AddressSanitizer reports any access outside
 * the block; every result must be in its documented range; everything must end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/region.h"
#include "fuzz_input.h"

#define SIZE (256u << 10)
static const struct nsk_region_params P = {
    .nmembers = 4, .noffers = 8, .reg_slots = 16, .beat_ns = 10000000ull, .dead_ns = 40000000ull};

static void patch(struct fin *f, uint8_t *b, uint64_t meta)
{
	uint64_t off = fin_u32(f) % meta;
	uint64_t len = 1 + fin_u8(f) % 32;
	if (off + len > meta)
		len = meta - off;
	fin_bytes(f, b + off, len);
}

static void populate(uint8_t *b)
{
	struct nsk_region a, c;
	if (nsk_region_attach(&a, b, SIZE) || nsk_region_attach(&c, b, SIZE))
		abort();
	nsk_region_join(&a, "a", 1);
	nsk_region_join(&c, "c", 2);
	int64_t off = nsk_region_chunk_alloc(&a, 1);
	struct nsk_region_offer_info o;
	memset(&o, 0, sizeof(o));
	o.to_tag = c.self_tag;
	o.chan_off = (uint64_t)off;
	o.chan_size = NSK_RGN_CHUNK;
	o.family = AF_INET;
	struct nsk_region_offer_handle h;
	nsk_region_offer_post(&a, &o, &h);
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	k.port = 80;
	k.netns = nsk_region_netns(a.self);
	nsk_registry_insert(&a.reg, &k, a.self + 1, a.self_gen, "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin f = {data, size};
	static uint8_t *b;
	if (!b)
		b = aligned_alloc(4096, SIZE);
	if (nsk_region_format(b, SIZE, &P) != 0)
		abort();
	struct nsk_rgn_hdr h0 = *(struct nsk_rgn_hdr *)b;
	uint8_t flags = fin_u8(&f);
	if (flags & 2)
		populate(b);
	uint64_t meta = h0.data_off;
	for (int n = fin_u8(&f) % 16; n > 0; n--)
		patch(&f, b, meta);
	if (flags & 1)
		((struct nsk_rgn_hdr *)b)->sum = nsk_region_hdr_sum((struct nsk_rgn_hdr *)b);
	struct nsk_region rg;
	int r = nsk_region_attach(&rg, b, SIZE);
	FUZZ_ASSERT(r == 0 || r == -EPROTO);
	if (r)
		return 0;
	FUZZ_ASSERT(rg.nmembers >= 1 && rg.nmembers <= NSK_RGN_MEMBERS_MAX && rg.nchunks >= 1);
	FUZZ_ASSERT(rg.data_off + ((uint64_t)rg.nchunks << NSK_RGN_CHUNK_SHIFT) <= SIZE);
	uint64_t now = 1000000000ull;
	struct nsk_region_offer_handle held = {0, 0, 0};
	for (int op = 0; op < 64 && fin_left(&f); op++) {
		uint8_t code = fin_u8(&f);
		switch (code % 16) {
		case 0:
			r = nsk_region_join(&rg, "fuzz", 3);
			FUZZ_ASSERT(r == -EALREADY || r == -ENOSPC ||
			            (r >= 0 && (uint32_t)r < rg.nmembers));
			break;
		case 1:
			r = nsk_region_beat(&rg);
			FUZZ_ASSERT(r == 0 || r == -ESTALE);
			break;
		case 2:
			now += (uint64_t)fin_u32(&f) * 1000;
			r = nsk_region_reap_at(&rg, now);
			FUZZ_ASSERT(r >= 0 && (uint32_t)r <= rg.nmembers);
			break;
		case 3: {
			uint32_t n = fin_u8(&f) % 4;
			int64_t off = nsk_region_chunk_alloc(&rg, n);
			FUZZ_ASSERT(
			    off == -ENOSPC || off == -EINVAL || off == -ESTALE ||
			    (off > 0 && nsk_region_ptr(&rg, (uint64_t)off, (uint64_t)n << 16)));
			break;
		}
		case 4: {
			uint32_t got = 0;
			int64_t off =
			    nsk_region_chunk_alloc_prop(&rg, fin_u8(&f) % 4, fin_u8(&f) % 3, &got);
			FUZZ_ASSERT(off == -ENOSPC || off == -EINVAL || off == -ESTALE ||
			            (off > 0 && got &&
			             nsk_region_ptr(&rg, (uint64_t)off, (uint64_t)got << 16)));
			break;
		}
		case 5:
			r = nsk_region_chunk_free(&rg, fin_u64(&f), fin_u8(&f) % 4);
			FUZZ_ASSERT(r == 0 || r == -EINVAL || r == -EPERM || r == -ESTALE);
			break;
		case 6: {
			struct nsk_region_offer_info o;
			memset(&o, 0, sizeof(o));
			o.to_tag = fin_u32(&f);
			o.chan_off = rg.data_off + ((uint64_t)(fin_u8(&f) % 4) << 16);
			o.chan_size = (uint64_t)(fin_u8(&f) % 3) << 16;
			r = nsk_region_offer_post(&rg, &o, &held);
			FUZZ_ASSERT(r == 0 || r == -ENOSPC || r == -EINVAL || r == -ESTALE);
			break;
		}
		case 7: {
			struct nsk_region_offer_info out;
			struct nsk_region_offer_handle ch;
			r = nsk_region_offer_claim(&rg, AF_INET, NULL, 0, NULL, 0, &out, &ch);
			FUZZ_ASSERT(r == 0 || r == -ENOENT);
			if (r == 0) {
				FUZZ_ASSERT(nsk_region_ptr(&rg, out.chan_off, out.chan_size) !=
				            NULL);
				held = ch;
			}
			break;
		}
		case 8:
			r = nsk_region_offer_withdraw(&rg, &held);
			FUZZ_ASSERT(r == 0 || r == -EALREADY || r == -ESTALE);
			break;
		case 9:
			r = nsk_region_offer_release(&rg, &held);
			FUZZ_ASSERT(r == 0 || r == -EBUSY || r == -ESTALE);
			r = nsk_region_offer_state(&rg, &held);
			FUZZ_ASSERT(r == -ESTALE || (r >= 0 && r < 8));
			break;
		case 10: {
			struct nsk_region_member_info mi;
			int slot = (int)(fin_u8(&f) % (rg.nmembers + 2)) - 1;
			r = nsk_region_member_read(&rg, slot, &mi);
			FUZZ_ASSERT(r == 0 || r == 1 || r == -EINVAL);
			FUZZ_ASSERT(mi.naddr <= 4 && mi.name[32] == 0);
			break;
		}
		case 11: {
			uint8_t a[16];
			fin_bytes(&f, a, 16);
			r = nsk_region_find_addr(&rg, AF_INET, a);
			FUZZ_ASSERT(r == -ENOENT || (r >= 0 && (uint32_t)r < rg.nmembers));
			break;
		}
		case 12:
			FUZZ_ASSERT(nsk_region_reclaim_tag(&rg, fin_u32(&f)) <= rg.nchunks);
			break;
		case 13: {
			struct nsk_region_chunk_stats st;
			nsk_region_chunk_stats(&rg, &st);
			FUZZ_ASSERT(st.free + st.used == rg.nchunks);
			uint32_t cnt[5];
			nsk_region_offer_count(&rg, cnt);
			struct nsk_rgn_offer ro;
			nsk_region_offer_read(&rg, (int)(fin_u8(&f) % (rg.noffers + 1)), &ro);
			break;
		}
		case 14:
			r = nsk_region_leave(&rg);
			FUZZ_ASSERT(r == 0 || r == -ESTALE);
			break;
		default:
			patch(&f, b, meta); /* another member writes meanwhile */
			break;
		}
	}
	return 0;
}
