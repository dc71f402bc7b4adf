/* SPDX-License-Identifier: MIT */
/*
 * Markovian arrival process (MAP) of containers: the superposition of independent renewal
 * sources with PH interarrivals, built as Kronecker sums D0 = (+)T_g, D1 = (+)t_g alpha_g.
 * Identical sources are lumped exactly (a group's state counts its sources in each phase), so
 * n copies of an order-p source cost C(n+p-1, n) phases instead of p^n.
 */
#ifndef NSK_DIMENSION_MAP_H
#define NSK_DIMENSION_MAP_H

#include <stddef.h>

#include "ph.h"

struct nsk_map_group {
	const struct nsk_ph *ph; /* interarrival law of each source of the group */
	unsigned count;          /* number of identical, independent sources */
};

struct nsk_map {
	size_t m;   /* phases */
	double *D0; /* m x m: transitions without an arrival */
	double *D1; /* m x m: transitions with an arrival */
	size_t ngroups;
	double *d1g; /* ngroups x m: arrival rate of group g from each phase, D1^(g) 1 */
};

/* nsk_map_group_size - phases of one lumped group, or 0 when above limit (or overflow). */
size_t nsk_map_group_size(size_t order, unsigned count, size_t limit);

/* nsk_map_build - build the superposition of the groups. Returns 0, -EINVAL or -ENOMEM. */
int nsk_map_build(struct nsk_map *map, const struct nsk_map_group *g, size_t ngroups);

/* nsk_map_fini - release a MAP (safe on a zeroed struct). */
void nsk_map_fini(struct nsk_map *map);

#endif
