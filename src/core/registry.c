/* SPDX-License-Identifier: MIT */
/* registry.c — lock-free listener table (see registry.h). */
#include "core/registry.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/atomics.h"
#include "platform/linux.h"

/* A closed listener's entry past its grace period: no longer matched, reclaimable. */
static int closed_expired(const struct nsk_reg_entry *e)
{
	return e->closed_ns && nsk_now_ns() - e->closed_ns > NSK_REG_CLOSE_GRACE_NS;
}

/* Entries are copied word by word with relaxed atomics so that a torn read is merely
 * detected (by the state re-check), never undefined behaviour. */
#define WORDS (sizeof(struct nsk_reg_entry) / sizeof(uint64_t))

static void entry_copy_out(struct nsk_reg_entry *dst, const struct nsk_reg_entry *src)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;
	for (size_t i = 0; i < WORDS; i++)
		d[i] = nsk_load64(&s[i]);
}

static void entry_copy_in(struct nsk_reg_entry *dst, const struct nsk_reg_entry *src)
{
	uint64_t *d = (uint64_t *)(void *)dst;
	const uint64_t *s = (const uint64_t *)(const void *)src;
	/* word 0 holds the state word: the caller publishes it separately. */
	for (size_t i = 1; i < WORDS; i++)
		nsk_store64(&d[i], s[i]);
}

uint32_t nsk_registry_hash(uint16_t port, uint64_t netns, uint32_t nslots)
{
	uint64_t h = ((uint64_t)port * 0x9e3779b97f4a7c15ull) ^ (netns * 0xc2b2ae3d27d4eb4full);
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (uint32_t)(h % nslots);
}

void nsk_registry_format(void *base)
{
	nsk_registry_format_slots(base, NSK_REG_SLOTS);
}

void nsk_registry_format_slots(void *base, uint32_t nslots)
{
	memset(base, 0, sizeof(struct nsk_reg_hdr) + (size_t)nslots * sizeof(struct nsk_reg_entry));
	struct nsk_reg_hdr *h = base;
	h->nslots = nslots;
	h->entry_size = sizeof(struct nsk_reg_entry);
	h->version = NSK_REG_VERSION;
	h->magic = NSK_REG_MAGIC;
}

int nsk_registry_attach(struct nsk_registry *r, void *base, size_t len)
{
	struct nsk_reg_hdr *h = base;
	if (len < sizeof(*h) || h->magic != NSK_REG_MAGIC || h->version != NSK_REG_VERSION ||
	    h->entry_size != sizeof(struct nsk_reg_entry) || h->nslots == 0 ||
	    (uint64_t)h->nslots * sizeof(struct nsk_reg_entry) + sizeof(*h) > len)
		return -EPROTO;
	r->hdr = h;
	r->e = (struct nsk_reg_entry *)(h + 1);
	r->nslots = h->nslots; /* private copy: later changes to the header do not matter */
	return 0;
}

static int key_equal(const struct nsk_reg_entry *e, const struct nsk_reg_key *k)
{
	return e->family == k->family && e->port == k->port && e->netns == k->netns &&
	       (e->flags & NSK_RE_UDP) == (k->flags & NSK_RE_UDP) && memcmp(e->addr, k->addr, 16) == 0;
}

static int is_wildcard(const uint8_t addr[16])
{
	static const uint8_t zero[16];
	return memcmp(addr, zero, 16) == 0;
}

/* Does listener entry @e accept a connection to destination @k? */
static int entry_matches(const struct nsk_reg_entry *e, const struct nsk_reg_key *k, int dst_local)
{
	if (e->port != k->port || e->netns != k->netns ||
	    (e->flags & NSK_RE_UDP) != (k->flags & NSK_RE_UDP))
		return 0; /* TCP listeners and UDP inboxes share the table, never a key */
	if (is_wildcard(e->addr)) {
		if (!dst_local)
			return 0;
		if (e->family == k->family)
			return 1;
		/* A dual-stack [::] listener also takes IPv4. */
		return e->family == AF_INET6 && k->family == AF_INET && !(e->flags & NSK_RE_V6ONLY);
	}
	if (e->family != k->family)
		return 0;
	return memcmp(e->addr, k->addr, k->family == AF_INET ? 4 : 16) == 0;
}

int nsk_registry_read(struct nsk_registry *r, int slot, struct nsk_reg_entry *out)
{
	if (slot < 0 || (uint32_t)slot >= r->nslots)
		return 0;
	struct nsk_reg_entry *e = &r->e[slot];
	for (int tries = 0; tries < 4; tries++) {
		/* Acquire pairs with the writer's store-release of the state in insert: the fields
		 * we copy next were written before the entry became VALID. */
		uint32_t s1 = nsk_load32_acquire(&e->state);
		if (NSK_RE_KIND(s1) != NSK_RE_VALID)
			return 0;
		entry_copy_out(out, e);
		atomic_thread_fence(memory_order_acquire);
		uint32_t s2 = nsk_load32(&e->state);
		if (s1 == s2) {
			out->state = s1;
			out->rv[sizeof(out->rv) - 1] = 0;
			return 1;
		}
	}
	return 0;
}

int nsk_registry_lookup(struct nsk_registry *r, const struct nsk_reg_key *k, int dst_local,
			struct nsk_reg_entry *out)
{
	uint32_t n = r->nslots;
	uint32_t h = nsk_registry_hash(k->port, k->netns, n);
	int wildcard_slot = -1, closed_slot = -1;
	struct nsk_reg_entry wild, closed;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = (h + i) % n;
		uint32_t s = nsk_load32_acquire(&r->e[slot].state);
		if (NSK_RE_KIND(s) == NSK_RE_EMPTY)
			break;
		if (NSK_RE_KIND(s) != NSK_RE_VALID)
			continue;
		struct nsk_reg_entry tmp;
		if (!nsk_registry_read(r, (int)slot, &tmp) || !entry_matches(&tmp, k, dst_local) ||
		    closed_expired(&tmp))
			continue;
		if (tmp.closed_ns) { /* a listener just closed: only if no open one matches */
			if (closed_slot < 0) {
				closed_slot = (int)slot;
				closed = tmp;
			}
			continue;
		}
		if (!is_wildcard(tmp.addr)) { /* an exact bind wins over a wildcard one */
			*out = tmp;
			return (int)slot;
		}
		if (wildcard_slot < 0) {
			wildcard_slot = (int)slot;
			wild = tmp;
		}
	}
	if (wildcard_slot >= 0) {
		*out = wild;
		return wildcard_slot;
	}
	if (closed_slot >= 0) {
		*out = closed;
		return closed_slot;
	}
	return -ENOENT;
}

void nsk_registry_mark_dead(struct nsk_registry *r, int slot, uint32_t state)
{
	if (slot < 0 || (uint32_t)slot >= r->nslots || NSK_RE_KIND(state) != NSK_RE_VALID)
		return;
	uint32_t dead = (state & ~3u) | NSK_RE_DEAD;
	atomic_compare_exchange_strong_explicit(NSK_A32(&r->e[slot].state), &state, dead,
						memory_order_acq_rel, memory_order_relaxed);
}

static int insert_tmpl(struct nsk_registry *r, const struct nsk_reg_key *k,
		       const struct nsk_reg_entry *tmpl, pid_t pid, uint64_t start_time);

int nsk_registry_lookup_foreign(struct nsk_registry *r, const struct nsk_reg_key *k,
				struct nsk_reg_entry *out)
{
	for (uint32_t slot = 0; slot < r->nslots; slot++) {
		uint32_t s = nsk_load32_acquire(&r->e[slot].state);
		if (NSK_RE_KIND(s) != NSK_RE_VALID)
			continue;
		struct nsk_reg_entry tmp;
		if (!nsk_registry_read(r, (int)slot, &tmp) || tmp.port != k->port ||
		    tmp.netns == k->netns || (tmp.flags & NSK_RE_UDP) || tmp.family != k->family ||
		    is_wildcard(tmp.addr) || memcmp(tmp.addr, k->addr, 16) != 0 || tmp.closed_ns)
			continue;
		*out = tmp;
		return (int)slot;
	}
	return -1;
}

int nsk_registry_insert(struct nsk_registry *r, const struct nsk_reg_key *k, pid_t pid,
			uint64_t start_time, const char *rv)
{
	struct nsk_reg_entry tmpl;
	memset(&tmpl, 0, sizeof(tmpl));
	strncpy(tmpl.rv, rv, sizeof(tmpl.rv) - 1);
	return insert_tmpl(r, k, &tmpl, pid, start_time);
}

int nsk_registry_insert_inbox(struct nsk_registry *r, const struct nsk_reg_key *k, pid_t pid,
			      uint64_t start_time, int inbox_fd, uint64_t nonce)
{
	struct nsk_reg_entry tmpl;
	memset(&tmpl, 0, sizeof(tmpl));
	struct nsk_reg_key uk = *k;
	uk.flags |= NSK_RE_UDP;
	tmpl.inbox_fd = (uint32_t)inbox_fd;
	tmpl.inbox_nonce = nonce;
	return insert_tmpl(r, &uk, &tmpl, pid, start_time);
}

static int insert_tmpl(struct nsk_registry *r, const struct nsk_reg_key *k,
		       const struct nsk_reg_entry *t, pid_t pid, uint64_t start_time)
{
	struct nsk_reg_entry tmpl = *t;
	tmpl.family = k->family;
	tmpl.port = k->port;
	memcpy(tmpl.addr, k->addr, 16);
	tmpl.netns = k->netns;
	tmpl.flags = k->flags;
	tmpl.pid = (uint32_t)pid;
	tmpl.start_time = start_time;

	uint32_t n = r->nslots;
	uint32_t h = nsk_registry_hash(k->port, k->netns, n);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = (h + i) % n;
		struct nsk_reg_entry *e = &r->e[slot];
		uint32_t s = nsk_load32_acquire(&e->state);
		uint32_t kind = NSK_RE_KIND(s);
		if (kind == NSK_RE_BUSY)
			continue;
		if (kind == NSK_RE_VALID) {
			/* Same key held by our own pid with another start time = a dead predecessor. */
			struct nsk_reg_entry cur;
			if (nsk_registry_read(r, (int)slot, &cur) && key_equal(&cur, k) &&
			    ((cur.pid == (uint32_t)pid && cur.start_time != start_time) ||
			     closed_expired(&cur)))
				nsk_registry_mark_dead(r, (int)slot, s);
			/* A UDP port is held by one socket (the kernel let us bind it): an entry for
			 * the same key whose owner is gone was left by a killed process. */
			else if ((k->flags & NSK_RE_UDP) && key_equal(&cur, k) &&
				 !nsk_proc_alive((pid_t)cur.pid, cur.start_time))
				nsk_registry_mark_dead(r, (int)slot, s);
			continue;
		}
		/* EMPTY or DEAD: claim it with a new generation. */
		uint32_t busy = (((s >> 2) + 1) << 2) | NSK_RE_BUSY;
		if (!atomic_compare_exchange_strong_explicit(NSK_A32(&e->state), &s, busy,
							     memory_order_acquire,
							     memory_order_relaxed))
			continue;
		/* Seqlock writer: BUSY must be visible before any field changes (pairs with the
		 * reader's acquire fence before its state re-check). */
		atomic_thread_fence(memory_order_release);
		entry_copy_in(e, &tmpl);
		/* Release pairs with the acquire in nsk_registry_read: fields before state. */
		nsk_store32_release(&e->state, (busy & ~3u) | NSK_RE_VALID);
		return (int)slot;
	}
	return -ENOSPC;
}

void nsk_registry_close(struct nsk_registry *r, int slot, pid_t pid)
{
	struct nsk_reg_entry cur;
	if (!nsk_registry_read(r, slot, &cur) || cur.pid != (uint32_t)pid)
		return;
	nsk_store64(&r->e[slot].closed_ns, nsk_now_ns());
}

void nsk_registry_remove(struct nsk_registry *r, int slot, pid_t pid)
{
	struct nsk_reg_entry cur;
	if (!nsk_registry_read(r, slot, &cur) || cur.pid != (uint32_t)pid)
		return;
	nsk_registry_mark_dead(r, slot, cur.state);
}
