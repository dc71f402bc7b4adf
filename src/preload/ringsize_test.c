/* SPDX-License-Identifier: MIT */
/* ringsize_test.c — the dynamic ring sizing policy (ringsize.c): configuration from the
 * environment, growth only with demand and without pressure, shrinking after idle ticks, idle
 * rings first under memory pressure and busy ones only after pressure persisted. */
#include "preload/ringsize.h"

#include "core/layout.h"
#include "core/test_util.h"

#define MS 1000000ull

static struct nsk_rsz_conf conf(void)
{
	struct nsk_rsz_conf c = {.dynamic = 1, .min = 16 << 10, .init = 64 << 10,
				 .max = 1 << 20, .idle_ns = 500 * MS};
	return c;
}

static void test_env(void)
{
	struct nsk_rsz_conf c;
	const char *bad;
	unsetenv("NEARSOCK_RING_SIZE");
	unsetenv("NEARSOCK_RING_MIN");
	unsetenv("NEARSOCK_RING_INIT");
	unsetenv("NEARSOCK_RING_MAX");
	unsetenv("NEARSOCK_RING_IDLE_MS");
	nsk_rsz_conf_env(&c, &bad);
	CHECK(c.dynamic && !bad);
	CHECK_EQ(c.min, 16u << 10);
	CHECK_EQ(c.init, 64u << 10);
	CHECK_EQ(c.max, 512u << 10);
	CHECK_EQ(c.idle_ns, 500 * MS);
	setenv("NEARSOCK_RING_MAX", "4M", 1);
	setenv("NEARSOCK_RING_INIT", "8k", 1); /* below min: raised to min */
	setenv("NEARSOCK_RING_IDLE_MS", "20", 1);
	nsk_rsz_conf_env(&c, &bad);
	CHECK(c.dynamic && !bad);
	CHECK_EQ(c.max, 4u << 20);
	CHECK_EQ(c.init, 16u << 10);
	CHECK_EQ(c.idle_ns, 20 * MS);
	setenv("NEARSOCK_RING_MAX", "3000", 1); /* not a power of two */
	nsk_rsz_conf_env(&c, &bad);
	CHECK(bad && !strcmp(bad, "NEARSOCK_RING_MAX"));
	CHECK_EQ(c.max, 512u << 10);
	setenv("NEARSOCK_RING_SIZE", "256K", 1); /* fixed: not dynamic */
	nsk_rsz_conf_env(&c, &bad);
	CHECK(!c.dynamic && !bad);
	CHECK(c.min == (256u << 10) && c.init == c.min && c.max == c.min);
	setenv("NEARSOCK_RING_SIZE", "1G", 1);
	nsk_rsz_conf_env(&c, &bad);
	CHECK(!c.dynamic && bad && c.max == (512u << 10));
	unsetenv("NEARSOCK_RING_SIZE");
	unsetenv("NEARSOCK_RING_MAX");
	unsetenv("NEARSOCK_RING_INIT");
	unsetenv("NEARSOCK_RING_IDLE_MS");
	CHECK_EQ(nsk_rsz_parse_size("64k"), 65536u);
	CHECK_EQ(nsk_rsz_parse_size("2M"), 2u << 20);
	CHECK_EQ(nsk_rsz_parse_size("12x"), 0u);
	CHECK_EQ(nsk_rsz_parse_size(""), 0u);
}

static void test_grow(void)
{
	struct nsk_rsz_conf c = conf();
	struct nsk_rsz_state st = {0};
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 64 << 10, 0), 64u << 10); /* no demand yet */
	st.full = 1;
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 64 << 10, 0), 64u << 10);
	st.full = 2;
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 64 << 10, 0), 128u << 10);
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 64 << 10, 1), 64u << 10); /* pressure: no growth */
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 1 << 20, 0), 1u << 20);   /* at max */
	c.dynamic = 0;
	CHECK_EQ(nsk_rsz_grow_target(&c, &st, 64 << 10, 0), 64u << 10);
}

static void test_idle(void)
{
	struct nsk_rsz_conf c = conf();
	struct nsk_rsz_state st = {0};
	uint64_t t = 1000 * MS, size = 256 << 10, msgs = 10;
	CHECK_EQ(nsk_rsz_tick(&c, &st, size, t, msgs, 0), size); /* first look: a baseline */
	/* busy: messages between ticks, never shrinks */
	for (int i = 0; i < 10; i++) {
		t += 250 * MS;
		msgs += 5;
		CHECK_EQ(nsk_rsz_tick(&c, &st, size, t, msgs, 0), size);
	}
	/* not due yet (tick period idle_ns / 2): nothing decided */
	CHECK_EQ(nsk_rsz_tick(&c, &st, size, t + 10 * MS, msgs, 0), size);
	/* one quiet tick is not idle yet; two are (>= idle_ns) */
	t += 250 * MS;
	CHECK_EQ(nsk_rsz_tick(&c, &st, size, t, msgs, 0), size);
	t += 250 * MS;
	CHECK_EQ(nsk_rsz_tick(&c, &st, size, t, msgs, 0), c.min);
	/* already at the minimum */
	t += 250 * MS;
	CHECK_EQ(nsk_rsz_tick(&c, &st, c.min, t, msgs, 0), c.min);
}

/* MemNet's rule: under pressure idle channels give memory first (one quiet tick of 50 ms);
 * busy ones keep theirs until the pressure has lasted a second, then halve down to init. */
static void test_pressure(void)
{
	struct nsk_rsz_conf c = conf();
	struct nsk_rsz_state idle = {0}, busy = {0};
	uint64_t t = 5000 * MS, isize = 256 << 10, bsize = 1 << 20, bm = 0;
	nsk_rsz_tick(&c, &idle, isize, t, 7, 0);
	nsk_rsz_tick(&c, &busy, bsize, t, bm, 0);
	t += 50 * MS;
	CHECK_EQ(nsk_rsz_tick(&c, &idle, isize, t, 7, 1), c.min); /* idle: at the first tick */
	CHECK_EQ(nsk_rsz_tick(&c, &busy, bsize, t, bm += 100, 1), bsize);
	int ticks = 0;
	while (nsk_rsz_tick(&c, &busy, bsize, t += 50 * MS, bm += 100, 1) == bsize)
		ticks++;
	CHECK(ticks >= 18 && ticks <= 20); /* ~1 s of pressure */
	CHECK_EQ(nsk_rsz_tick(&c, &busy, bsize / 2, t += 50 * MS, bm += 100, 1), bsize / 4);
	CHECK_EQ(nsk_rsz_tick(&c, &busy, 128 << 10, t += 50 * MS, bm += 100, 1), 64u << 10);
	CHECK_EQ(nsk_rsz_tick(&c, &busy, 64 << 10, t += 50 * MS, bm += 100, 1), 64u << 10);
	/* pressure over: the busy ring keeps its size, its pressure clock restarts */
	CHECK_EQ(nsk_rsz_tick(&c, &busy, 64 << 10, t += 250 * MS, bm += 100, 0), 64u << 10);
	CHECK_EQ(busy.pressure_ns, 0u);
}

int main(void)
{
	RUN(test_env);
	RUN(test_grow);
	RUN(test_idle);
	RUN(test_pressure);
	return 0;
}
