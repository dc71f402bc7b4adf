/* SPDX-License-Identifier: MIT */
/* fuzz_registry.c — libFuzzer target for the registry reader (src/core/registry.c) over
 * arbitrary bytes: any process of the domain can write anything into the shared registry
 * file. The input is either the raw mapping (header included) or, to reach deeper, a valid
 * header with a small slot count followed by arbitrary entries. Then: attach, a consistent
 * read of every slot, lookups for keys taken from the entries and from the input, an insert,
 * a remove and a mark-dead. The mapping is a heap block of exactly the input's size, so
 * AddressSanitizer reports any access outside it; lookups must end (no infinite probe). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/registry.h"
#include "fuzz_input.h"

static void key_from_entry(struct nsk_reg_key *k, const struct nsk_reg_entry *e)
{
	memset(k, 0, sizeof(*k));
	k->family = e->family;
	k->port = e->port;
	memcpy(k->addr, e->addr, 16);
	k->netns = e->netns;
	k->flags = e->flags;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin f = {data, size};
	uint8_t mode = fin_u8(&f);
	size_t len;
	uint8_t *base;
	if (mode & 1) {
		/* valid header, 1..64 slots, entries from the input */
		uint32_t nslots = 1 + fin_u8(&f) % 64;
		len = sizeof(struct nsk_reg_hdr) + nslots * sizeof(struct nsk_reg_entry);
		base = malloc(len);
		struct nsk_reg_hdr *h = (struct nsk_reg_hdr *)base;
		memset(h, 0, sizeof(*h));
		h->magic = NSK_REG_MAGIC;
		h->version = NSK_REG_VERSION;
		h->nslots = nslots;
		h->entry_size = sizeof(struct nsk_reg_entry);
		fin_bytes(&f, base + sizeof(*h), len - sizeof(*h));
	} else {
		/* the raw mapping: whatever length and contents */
		len = f.n;
		base = malloc(len ? len : 1); /* malloc: 16-byte aligned, like a mapping's words */
		fin_bytes(&f, base, len);
	}
	struct nsk_registry r;
	if (nsk_registry_attach(&r, base, len) == 0) {
		FUZZ_ASSERT(r.nslots > 0);
		FUZZ_ASSERT(sizeof(struct nsk_reg_hdr) +
		                (size_t)r.nslots * sizeof(struct nsk_reg_entry) <=
		            len);
		struct nsk_reg_entry e, out;
		for (uint32_t i = 0; i < r.nslots; i++) {
			if (!nsk_registry_read(&r, (int)i, &e))
				continue;
			FUZZ_ASSERT(e.rv[sizeof(e.rv) - 1] ==
			            0); /* rendezvous name always terminated */
			struct nsk_reg_key k;
			key_from_entry(&k, &e);
			for (int local = 0; local < 2; local++) {
				int s = nsk_registry_lookup(&r, &k, local, &out);
				FUZZ_ASSERT(s == -ENOENT || (s >= 0 && (uint32_t)s < r.nslots));
				if (s >= 0)
					FUZZ_ASSERT(out.rv[sizeof(out.rv) - 1] == 0 &&
					            out.port == k.port);
			}
		}
		/* out-of-range slots are refused */
		FUZZ_ASSERT(!nsk_registry_read(&r, -1, &e) &&
		            !nsk_registry_read(&r, (int)r.nslots, &e));
		struct nsk_reg_key k;
		memset(&k, 0, sizeof(k));
		k.family = AF_INET;
		k.port = (uint16_t)(data[size / 2 % (size ? size : 1)] | 1);
		k.netns = 7;
		k.addr[0] = 127;
		k.addr[3] = 1;
		int s = nsk_registry_lookup(&r, &k, 1, &e);
		FUZZ_ASSERT(s == -ENOENT || (s >= 0 && (uint32_t)s < r.nslots));
		int slot = nsk_registry_insert(&r, &k, 4242, 99, "rv-4242-0000");
		FUZZ_ASSERT(slot == -ENOSPC || (slot >= 0 && (uint32_t)slot < r.nslots));
		if (slot >= 0) {
			FUZZ_ASSERT(nsk_registry_read(&r, slot, &e) && e.pid == 4242);
			s = nsk_registry_lookup(&r, &k, 1, &out);
			FUZZ_ASSERT(s >= 0);
			nsk_registry_remove(&r, slot, 4242);
			FUZZ_ASSERT(!nsk_registry_read(&r, slot, &e) || e.pid != 4242 ||
			            e.start_time != 99);
		}
		nsk_registry_mark_dead(&r, (int)(size % (r.nslots + 2)) - 1, (uint32_t)size);
	}
	free(base);
	return 0;
}
