/* SPDX-License-Identifier: MIT */
/* fuzz_ring.c — libFuzzer target for the ring reader and writer (src/core/ring.c) with
 * arbitrary shared control-block contents. The input is a program: the initial control block
 * (or a fresh one) and a sequence of operations — read, peek, write, used/free, the wake-up
 * handshake, capacity changes (dynamic sizing) — interleaved with a hostile peer's stores of
 * arbitrary values into the shared indices, capacity, FIN and wake-up words. The data area is
 * a heap block of exactly the ring's largest size, so AddressSanitizer reports any access
 * outside it. While no hostile store happened, a model of the byte stream checks that reads
 * return exactly the bytes written, in order, at whatever capacity the ring has. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomics.h"
#include "core/ring.h"
#include "fuzz_input.h"

#define RING NSK_RING_MIN /* smallest capacity: wrap-arounds happen often */
#define AREA (4 * RING)   /* the area reserved: capacities RING, 2*RING, 4*RING */
#define MAXOP (3 * AREA)

struct model {
	int valid;         /* no hostile store since the start: the stream must be exact */
	uint64_t produced; /* bytes written (the byte at stream offset i is pattern(i)) */
	uint64_t consumed; /* bytes read */
	uint64_t cap;      /* capacity in use */
};

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 131 + (i >> 8) * 7 + 1);
}

/* An iovec array of up to 3 pieces over @buf, cut where the input says. */
static int cut_iov(struct fin *f, struct iovec *iov, uint8_t *buf, size_t len)
{
	size_t a = len ? fin_u16(f) % (len + 1) : 0;
	size_t b = len - a ? fin_u16(f) % (len - a + 1) : 0;
	iov[0] = (struct iovec){buf, a};
	iov[1] = (struct iovec){buf + a, b};
	iov[2] = (struct iovec){buf + a + b, len - a - b};
	return 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin f = {data, size};
	static struct nsk_ring_ctl ctl __attribute__((aligned(64)));
	uint8_t *ring = malloc(AREA); /* exact size: one byte past it is an ASan report */
	uint8_t *buf = malloc(MAXOP);
	struct model m = {1, 0, 0, RING};
	uint8_t flags = fin_u8(&f);
	if (flags & 1) {
		fin_bytes(&f, &ctl, sizeof(ctl)); /* arbitrary initial shared contents */
		m.valid = 0;
	} else {
		nsk_ring_format(&ctl, RING);
	}
	struct nsk_ring r;
	FUZZ_ASSERT(nsk_ring_init(&r, &ctl, ring, AREA) == 0);
	int ops = 0;
	while (fin_left(&f) && ops++ < 256) {
		uint8_t op = fin_u8(&f);
		size_t len = fin_u16(&f) % (MAXOP + 1);
		struct iovec iov[3];
		struct nsk_iovcur cur;
		switch (op % 12) {
		case 0:
		case 1: { /* read or peek */
			int peek = op % 10 == 1;
			memset(buf, 0, MAXOP);
			nsk_iovcur_init(&cur, iov, cut_iov(&f, iov, buf, len));
			int64_t used = nsk_ring_used(&r);
			ssize_t n = nsk_ring_read(&r, &cur, len, peek);
			FUZZ_ASSERT(n >= -EPROTO && (n < 0 ? n == -EPROTO : (size_t)n <= len));
			FUZZ_ASSERT(n <= AREA);
			if (m.valid) {
				FUZZ_ASSERT(used == (int64_t)(m.produced - m.consumed));
				FUZZ_ASSERT(n ==
				            (ssize_t)((size_t)used < len ? (size_t)used : len));
				for (ssize_t i = 0; i < n; i++)
					FUZZ_ASSERT(buf[i] == pattern(m.consumed + (uint64_t)i));
				if (!peek)
					m.consumed += (uint64_t)n;
			}
			break;
		}
		case 2:
		case 3: { /* write */
			for (size_t i = 0; i < len; i++)
				buf[i] = pattern(m.produced + i);
			nsk_iovcur_init(&cur, iov, cut_iov(&f, iov, buf, len));
			int64_t fr = nsk_ring_free(&r);
			ssize_t n = nsk_ring_write(&r, &cur, len);
			FUZZ_ASSERT(n < 0 ? n == -EPROTO : (size_t)n <= len && n <= AREA);
			if (m.valid) {
				FUZZ_ASSERT(fr == (int64_t)(m.cap - (m.produced - m.consumed)));
				FUZZ_ASSERT(n == (ssize_t)((size_t)fr < len ? (size_t)fr : len));
				m.produced += (uint64_t)n;
			}
			break;
		}
		case 4: { /* readiness as poll sees it */
			int64_t u = nsk_ring_used(&r), fr = nsk_ring_free(&r);
			FUZZ_ASSERT(u == -EPROTO || (u >= 0 && u <= AREA));
			FUZZ_ASSERT(fr == -EPROTO || (fr >= 0 && fr <= AREA));
			break;
		}
		case 5: /* wake-up handshake on whatever the words hold */
			nsk_arm(&ctl.cons_armed, NSK_ARM_FD);
			(void)nsk_take(&ctl.cons_armed);
			nsk_disarm(&ctl.prod_armed, NSK_ARM_FUTEX);
			(void)nsk_take(&ctl.prod_armed);
			break;
		/* the hostile peer */
		case 6:
			nsk_store64(&ctl.tail, len & 1 ? fin_u64(&f) : nsk_load64(&ctl.tail) + len);
			m.valid = 0;
			break;
		case 7:
			nsk_store64(&ctl.head, len & 1 ? fin_u64(&f) : nsk_load64(&ctl.head) - len);
			m.valid = 0;
			break;
		case 8:
			nsk_store32(&ctl.fin, fin_u32(&f));
			break;
		case 9:
			nsk_store32(&ctl.cons_armed, fin_u32(&f));
			nsk_store32(&ctl.prod_armed, fin_u32(&f));
			break;
		case 10: { /* the producer changes the capacity (any value, valid or not) */
			uint64_t cap = len & 1 ? fin_u64(&f) : (uint64_t)RING << (len % 3);
			int rc = nsk_ring_resize(&r, cap);
			FUZZ_ASSERT(rc == 0 || rc == -EBUSY || rc == -EINVAL || rc == -EPROTO);
			if (rc == 0) {
				FUZZ_ASSERT(cap >= RING && cap <= AREA && !(cap & (cap - 1)));
				FUZZ_ASSERT(nsk_ring_cap(&r) == cap);
			}
			if (m.valid) {
				int empty = m.produced == m.consumed;
				int good = cap >= RING && cap <= AREA && !(cap & (cap - 1));
				FUZZ_ASSERT(rc == (!good ? -EINVAL : empty ? 0 : -EBUSY));
				if (rc == 0)
					m.cap = cap;
			}
			break;
		}
		case 11: /* the hostile peer stores its own capacity word */
			nsk_store64(&ctl.cap, len & 1 ? fin_u64(&f) : (uint64_t)RING << (len % 4));
			m.valid = 0;
			break;
		}
	}
	free(buf);
	free(ring);
	return 0;
}
