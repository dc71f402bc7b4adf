/* SPDX-License-Identifier: MIT */
/* stream.h — checked pseudo-random byte streams for the switching tests (nsk_agile,
 * nsk_races): byte i of a stream is a function of (key, i) alone, so a receiver checks any
 * chunk at any offset without state, and a lost, duplicated or reordered byte shows at its
 * exact offset. Header-only: each test program includes it once. */
#ifndef NSK_TEST_STREAM_H
#define NSK_TEST_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint8_t stream_byte(uint64_t key, uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull ^ key;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x >> ((i & 7) * 8));
}

/* fill - @n bytes of stream @key from offset @off into @b */
static inline void fill(uint8_t *b, uint64_t key, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = stream_byte(key, off + i);
}

/* check - index of the first byte of @b (@n bytes at offset @off) that is not stream @key's,
 * or -1 */
static inline long check(const uint8_t *b, uint64_t key, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != stream_byte(key, off + i))
			return (long)i;
	return -1;
}

#endif
