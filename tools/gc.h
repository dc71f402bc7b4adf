/* SPDX-License-Identifier: MIT */
/* gc.h — garbage collection of what dead processes left in a domain: registry entries,
 * memory-budget shares, connection tables and rendezvous sockets. Shared by `nearsock gc`
 * and the agent's periodic pass. Channel segments are memfds that exist in no directory:
 * the kernel frees them with their last mapping, so there is nothing of theirs to collect. */
#ifndef NSK_CLI_GC_H
#define NSK_CLI_GC_H

#include <stdint.h>

#include "core/domain.h"

struct nsk_gc_result {
	unsigned entries;      /* registry entries retired */
	unsigned tables;       /* connection tables removed */
	unsigned rendezvous;   /* rendezvous sockets removed */
	uint64_t budget_bytes; /* memory-budget bytes given back to the domain */
};

/* nsk_gc_run - one collection pass over domain @d; adds what it did to @r. Safe to run
 * while the domain is in use and concurrently with other collectors (each object is
 * retired by a CAS or an unlink that only one wins). Not thread-safe. */
void nsk_gc_run(struct nsk_domain *d, struct nsk_gc_result *r);

#endif
