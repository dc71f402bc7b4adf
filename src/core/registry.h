/* SPDX-License-Identifier: MIT */
/* registry.h — the domain's table of local listeners: (family, address, port, network
 * namespace) → owner (pid + start time) and its rendezvous socket. Open addressing over a
 * fixed array in a shared file; lock-free: writers claim a slot by CAS and publish it with a
 * store-release of its state word, readers copy an entry and re-check the state word
 * (seqlock style). Consulted at connect() only, never per message. Bound UDP sockets'
 * inboxes live in the same table (flag NSK_RE_UDP), consulted at a sender's first datagram
 * to a destination. */
#ifndef NSK_REGISTRY_H
#define NSK_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/layout.h"

struct nsk_registry {
	struct nsk_reg_hdr *hdr;
	struct nsk_reg_entry *e;
	uint32_t nslots; /* validated */
};

struct nsk_reg_key {
	uint16_t family; /* AF_INET or AF_INET6; v4-mapped v6 addresses are given as AF_INET */
	uint16_t port;   /* host order */
	uint8_t addr[16];
	uint64_t netns;
	uint32_t flags; /* NSK_RE_V6ONLY */
};

/* nsk_registry_format - write an empty registry into @base (NSK_REG_FILE_SIZE bytes). */
void nsk_registry_format(void *base);
/* nsk_registry_format_slots - the same with @nslots entries (a registry placed inside another
 * mapping, e.g. an ivshmem region): sizeof(struct nsk_reg_hdr) + @nslots entries. */
void nsk_registry_format_slots(void *base, uint32_t nslots);
/* nsk_registry_attach - validate the header at @base (@len bytes mapped). 0 or -EPROTO. */
int nsk_registry_attach(struct nsk_registry *r, void *base, size_t len);
/* nsk_registry_insert - publish a listener. Entries for the same key whose owner is dead are
 * reclaimed on the way. Returns the slot index or -ENOSPC (table full). */
int nsk_registry_insert(struct nsk_registry *r, const struct nsk_reg_key *k, pid_t pid,
			uint64_t start_time, const char *rv);
/* nsk_registry_insert_inbox - publish the inbox of a bound UDP socket (@k without
 * NSK_RE_UDP; it is added): the owner's descriptor @inbox_fd of the sealed memfd and the
 * inbox's @nonce. An entry for the same key whose owner is dead is retired on the way.
 * Returns the slot or -ENOSPC. Lookups with NSK_RE_UDP in the key find only inboxes. */
int nsk_registry_insert_inbox(struct nsk_registry *r, const struct nsk_reg_key *k, pid_t pid,
			      uint64_t start_time, int inbox_fd, uint64_t nonce);
/* nsk_registry_remove - withdraw slot @slot if it still holds the entry we published
 * (same owner @pid). */
void nsk_registry_remove(struct nsk_registry *r, int slot, pid_t pid);
/* nsk_registry_close - the listener in @slot (owner @pid) was closed: it keeps matching for
 * NSK_REG_CLOSE_GRACE_NS, then is ignored and reclaimed; the owner removes it at exit. */
void nsk_registry_close(struct nsk_registry *r, int slot, pid_t pid);
/* nsk_registry_lookup - find a live-looking listener for destination @k. @dst_local says the
 * destination address is an address of this host (wildcard listeners match only then).
 * Copies the entry to @out; returns its slot or -ENOENT. Liveness is the caller's business
 * (the rendezvous socket refuses when the owner is gone). */
int nsk_registry_lookup(struct nsk_registry *r, const struct nsk_reg_key *k, int dst_local,
			struct nsk_reg_entry *out);
/* nsk_registry_mark_dead - retire slot @slot if it still has state @state (stale owner). */
void nsk_registry_mark_dead(struct nsk_registry *r, int slot, uint32_t state);
/* nsk_registry_read - consistent copy of slot @slot; 1 if it holds a valid entry, else 0. */
int nsk_registry_read(struct nsk_registry *r, int slot, struct nsk_reg_entry *out);
/* nsk_registry_hash - probe start for a key (exposed for tests). */
uint32_t nsk_registry_hash(uint16_t port, uint64_t netns, uint32_t nslots);

/* nsk_registry_lookup_foreign - a TCP listener in another network namespace bound to exactly
 * the destination @k (a process group in its own namespace on this host, reached through a
 * veth: a co-resident "VM"). Wildcard binds never match across namespaces. Scans the whole
 * table: callers look only when hdr->exact_binds says such listeners exist. */
int nsk_registry_lookup_foreign(struct nsk_registry *r, const struct nsk_reg_key *k,
				struct nsk_reg_entry *out);

#endif
