/* SPDX-License-Identifier: MIT */
/* ringsize.c — dynamic ring sizing policy (see ringsize.h). */
#include "preload/ringsize.h"

#include <stdlib.h>
#include <string.h>

#include "core/layout.h"

#define DEF_MIN (16u << 10)
#define DEF_INIT (64u << 10)
#define DEF_MAX (512u << 10) /* the fixed size nearsock used before: the same peak throughput */
#define DEF_IDLE_MS 500u
#define PRESSURE_TICK_NS (50ull * 1000000ull)
#define PRESSURE_BUSY_NS (1000ull * 1000000ull) /* pressure this long: busy rings halve too */

static int pow2_ok(uint64_t v)
{
	return v >= NSK_RING_MIN && v <= NSK_RING_MAX && !(v & (v - 1));
}

uint64_t nsk_rsz_parse_size(const char *s)
{
	if (!s || !*s)
		return 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return 0;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	return *end ? 0 : (uint64_t)v;
}

static uint64_t env_size(const char *name, uint64_t def, const char **bad)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	uint64_t n = nsk_rsz_parse_size(v);
	if (!pow2_ok(n)) {
		if (bad)
			*bad = name;
		return def;
	}
	return n;
}

void nsk_rsz_conf_env(struct nsk_rsz_conf *c, const char **bad)
{
	if (bad)
		*bad = NULL;
	memset(c, 0, sizeof(*c));
	const char *fixed = getenv("NEARSOCK_RING_SIZE");
	if (fixed && *fixed) {
		uint64_t n = nsk_rsz_parse_size(fixed);
		if (!pow2_ok(n)) {
			if (bad)
				*bad = "NEARSOCK_RING_SIZE";
			n = 512u << 10; /* the fixed size nearsock always used */
		}
		c->min = c->init = c->max = n;
		c->idle_ns = (uint64_t)DEF_IDLE_MS * 1000000ull;
		return;
	}
	c->dynamic = 1;
	c->min = env_size("NEARSOCK_RING_MIN", DEF_MIN, bad);
	c->init = env_size("NEARSOCK_RING_INIT", DEF_INIT, bad);
	c->max = env_size("NEARSOCK_RING_MAX", DEF_MAX, bad);
	if (c->init < c->min)
		c->init = c->min;
	if (c->max < c->init)
		c->max = c->init;
	const char *ms = getenv("NEARSOCK_RING_IDLE_MS");
	uint64_t idle = ms && *ms ? strtoull(ms, NULL, 10) : DEF_IDLE_MS;
	if (idle == 0)
		idle = DEF_IDLE_MS;
	c->idle_ns = idle * 1000000ull;
	if (c->min == c->max)
		c->dynamic = 0;
}

uint64_t nsk_rsz_grow_target(const struct nsk_rsz_conf *c, const struct nsk_rsz_state *st,
			     uint64_t size, int pressure)
{
	if (!c->dynamic || pressure || st->full < 2 || size >= c->max)
		return size;
	return size * 2 > c->max ? c->max : size * 2;
}

uint64_t nsk_rsz_tick(const struct nsk_rsz_conf *c, struct nsk_rsz_state *st, uint64_t size,
		      uint64_t now, uint64_t msgs, int pressure)
{
	if (!c->dynamic)
		return size;
	uint64_t period = pressure ? PRESSURE_TICK_NS : c->idle_ns / 2;
	if (st->tick_ns && now - st->tick_ns < period)
		return size;
	int first = st->tick_ns == 0;
	st->tick_ns = now;
	int quiet = !first && msgs == st->msgs;
	st->msgs = msgs;
	st->quiet_ticks = quiet ? st->quiet_ticks + 1 : 0;
	if (!pressure)
		st->pressure_ns = 0;
	else if (!st->pressure_ns)
		st->pressure_ns = now;
	if (size <= c->min)
		return size;
	/* Idle: a quiet tick under pressure (idle channels first), two (>= idle_ns) otherwise. */
	if (st->quiet_ticks >= (pressure ? 1u : 2u))
		return c->min;
	/* Pressure that idle channels did not relieve: busy rings halve, not below init. */
	if (pressure && now - st->pressure_ns >= PRESSURE_BUSY_NS && size > c->init)
		return size / 2 < c->init ? c->init : size / 2;
	return size;
}
