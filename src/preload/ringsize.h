/* SPDX-License-Identifier: MIT */
/* ringsize.h — dynamic proportional ring memory (MemPipe's idea, MemNet's pressure rule): the
 * policy that decides a sending direction's ring capacity from measured demand. A channel's
 * data areas are reserved at the largest size, but a ring uses (and backs with memory) only its
 * capacity; the producer changes it while the ring is empty (core/ring.h), so no byte moves.
 *
 *   grow    the producer found the ring full twice since the last change: double, up to max,
 *           unless the domain is under memory pressure (or the budget refuses the bytes);
 *   shrink  no message sent for idle_ns: back to min — under pressure after one quiet tick
 *           (idle channels give their memory first), and after pressure lasted a second even
 *           busy rings halve, down to the initial size.
 *
 * Pure decisions here (unit-tested in ringsize_test.c); sock.c does the mechanics (locks,
 * populate/remove pages, budget charges). */
#ifndef NSK_RINGSIZE_H
#define NSK_RINGSIZE_H

#include <stdint.h>

struct nsk_rsz_conf {
	int dynamic;        /* 0: NEARSOCK_RING_SIZE fixes every ring's size */
	uint64_t min, init, max; /* powers of two: NSK_RING_MIN <= min <= init <= max */
	uint64_t idle_ns;   /* NEARSOCK_RING_IDLE_MS */
};

/* Per sending direction, owned by the producer (under its send lock or a trylock of it). */
struct nsk_rsz_state {
	uint32_t full;        /* writes that found the ring full since the last change */
	uint32_t quiet_ticks; /* consecutive ticks without a message sent */
	uint64_t tick_ns;     /* last tick */
	uint64_t msgs;        /* messages sent at the last tick */
	uint64_t pressure_ns; /* when this side first saw the current pressure (0: none) */
	uint64_t changes;     /* capacity changes made */
};

/* nsk_rsz_conf_env - the configuration from NEARSOCK_RING_SIZE (fixed), NEARSOCK_RING_MIN,
 * NEARSOCK_RING_INIT, NEARSOCK_RING_MAX (bytes, k/M suffixes), NEARSOCK_RING_IDLE_MS. Bad
 * values fall back to the defaults (16K, 64K, 512K, 500 ms) and are named in *@bad (or NULL). */
void nsk_rsz_conf_env(struct nsk_rsz_conf *c, const char **bad);

/* nsk_rsz_want_grow - after a write: should the next write try to double @size? */
uint64_t nsk_rsz_grow_target(const struct nsk_rsz_conf *c, const struct nsk_rsz_state *st,
			     uint64_t size, int pressure);

/* nsk_rsz_tick - maintenance look at time @now with @msgs messages sent so far: returns the
 * capacity the ring should shrink to (== @size: nothing to do). Updates @st's tick state; at
 * most one decision per tick period (idle_ns / 2, 50 ms under pressure). */
uint64_t nsk_rsz_tick(const struct nsk_rsz_conf *c, struct nsk_rsz_state *st, uint64_t size,
		      uint64_t now, uint64_t msgs, int pressure);

/* nsk_rsz_parse_size - "65536", "64k", "1M" → bytes; 0 on error. */
uint64_t nsk_rsz_parse_size(const char *s);

#endif
