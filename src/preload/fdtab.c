/* SPDX-License-Identifier: MIT */
/* fdtab.c — lock-free fd maps (see fdtab.h). */
#include "preload/fdtab.h"

#include <stdlib.h>

#define L2_SIZE (1 << NSK_FDMAP_L2_BITS)

struct nsk_fdmap nsk_socks, nsk_epolls;

void *nsk_fdmap_get(struct nsk_fdmap *m, int fd)
{
	if (fd < 0 || (fd >> NSK_FDMAP_L2_BITS) >= NSK_FDMAP_L1)
		return NULL;
	/* Acquire pairs with the release CAS that publishes a second-level array. */
	_Atomic(void *) *l2 = atomic_load_explicit(&m->l1[fd >> NSK_FDMAP_L2_BITS], memory_order_acquire);
	if (!l2)
		return NULL;
	/* Acquire pairs with the exchange in nsk_fdmap_set: the object is initialised. */
	return atomic_load_explicit(&l2[fd & (L2_SIZE - 1)], memory_order_acquire);
}

void *nsk_fdmap_set(struct nsk_fdmap *m, int fd, void *p)
{
	if (fd < 0 || (fd >> NSK_FDMAP_L2_BITS) >= NSK_FDMAP_L1)
		return NULL;
	_Atomic(void *) *l2 = atomic_load_explicit(&m->l1[fd >> NSK_FDMAP_L2_BITS], memory_order_acquire);
	if (!l2) {
		if (!p)
			return NULL;
		_Atomic(void *) *fresh = calloc(L2_SIZE, sizeof(*fresh));
		if (!fresh)
			return NULL;
		_Atomic(void *) *expect = NULL;
		if (atomic_compare_exchange_strong_explicit(&m->l1[fd >> NSK_FDMAP_L2_BITS], &expect,
							    fresh, memory_order_acq_rel,
							    memory_order_acquire))
			l2 = fresh;
		else {
			free(fresh);
			l2 = expect;
		}
	}
	return atomic_exchange_explicit(&l2[fd & (L2_SIZE - 1)], p, memory_order_acq_rel);
}

void nsk_fdmap_foreach(struct nsk_fdmap *m, void (*fn)(int fd, void *obj, void *arg), void *arg)
{
	for (int i = 0; i < NSK_FDMAP_L1; i++) {
		_Atomic(void *) *l2 = atomic_load_explicit(&m->l1[i], memory_order_acquire);
		if (!l2)
			continue;
		for (int j = 0; j < L2_SIZE; j++) {
			void *p = atomic_load_explicit(&l2[j], memory_order_acquire);
			if (p)
				fn((i << NSK_FDMAP_L2_BITS) | j, p, arg);
		}
	}
}
