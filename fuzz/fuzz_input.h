/* SPDX-License-Identifier: MIT */
/* fuzz_input.h — a cursor over a fuzzer's input: fixed-width values taken in order, zeros once
 * the input is used up (so every input is a valid program for the harness). Header-only;
 * shared by the fuzz targets in this directory. */
#ifndef NSK_FUZZ_INPUT_H
#define NSK_FUZZ_INPUT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fin {
	const uint8_t *p;
	size_t n;
};

static inline int fin_left(const struct fin *f)
{
	return f->n > 0;
}

/* fin_bytes - copy @len bytes to @dst (zero-filled past the end of the input). */
static inline void fin_bytes(struct fin *f, void *dst, size_t len)
{
	size_t k = len < f->n ? len : f->n;
	memcpy(dst, f->p, k);
	memset((uint8_t *)dst + k, 0, len - k);
	f->p += k;
	f->n -= k;
}

static inline uint8_t fin_u8(struct fin *f)
{
	uint8_t v;
	fin_bytes(f, &v, 1);
	return v;
}

static inline uint16_t fin_u16(struct fin *f)
{
	uint16_t v;
	fin_bytes(f, &v, 2);
	return v;
}

static inline uint32_t fin_u32(struct fin *f)
{
	uint32_t v;
	fin_bytes(f, &v, 4);
	return v;
}

static inline uint64_t fin_u64(struct fin *f)
{
	uint64_t v;
	fin_bytes(f, &v, 8);
	return v;
}

/* FUZZ_ASSERT - an invariant of the code under test: abort (a finding) when it fails. */
#define FUZZ_ASSERT(c)                                                                             \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
