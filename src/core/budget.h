/* SPDX-License-Identifier: MIT */
/* budget.h — the domain's shared-memory budget (NEARSOCK_MEM_BUDGET): the total bytes of
 * channel segments the domain's processes may hold at once. The registry header keeps the
 * domain-wide sum (mem_used) and each process's connection table its own share (mem_charged),
 * both changed by atomic adds. A process that dies cannot give its share back, so when a
 * charge would exceed the budget the charger first reclaims the shares of dead processes
 * (their tables are still in the directory until gc or pid reuse, which reclaim too). */
#ifndef NSK_BUDGET_H
#define NSK_BUDGET_H

#include <stdint.h>

#include "core/domain.h"

/* nsk_budget_charge - charge @bytes for this process (table @t) against @budget bytes in
 * domain @d. 0, or -EDQUOT when the budget would be exceeded even after reclaiming the shares
 * of dead processes. Thread-safe. */
int nsk_budget_charge(struct nsk_domain *d, struct nsk_proctab *t, uint64_t bytes, uint64_t budget);
/* nsk_budget_uncharge - give back @bytes charged by this process. */
void nsk_budget_uncharge(struct nsk_domain *d, struct nsk_proctab *t, uint64_t bytes);
/* nsk_budget_reclaim - return the shares of dead processes' tables in @d to the domain.
 * Returns bytes reclaimed. Tables we may not open (other users') are left alone. */
uint64_t nsk_budget_reclaim(struct nsk_domain *d);
/* nsk_budget_reclaim_table - reclaim the share of the (dead) process whose table file is
 * @path, if any; used before a table file is removed. Returns bytes reclaimed. */
uint64_t nsk_budget_reclaim_table(const struct nsk_domain *d, const char *path);

#endif
