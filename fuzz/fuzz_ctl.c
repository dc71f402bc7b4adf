/* SPDX-License-Identifier: MIT */
/* fuzz_ctl.c — libFuzzer target for the control parser (src/core/switchpt.h): how a receiver
 * splits the TCP byte stream into application data (up to the peer's switch point) and
 * control bytes (markers, wake-ups), and reads the peer's FIN word. The receive loop of
 * src/preload/sock.c is replayed against a simulated TCP stream — D data bytes, then control
 * bytes once the sender published its switch point — in read sizes the input chooses.
 * In honest mode the switch point is published as the protocol says (before any byte past it
 * is sent) and the receiver must deliver exactly the D data bytes, never a control byte. In
 * hostile mode the input writes arbitrary switch points and FIN words between reads: results
 * must stay in range, the receiver must never deliver past a known switch point, and a
 * switch point moved behind delivered bytes must be detected (-EPROTO). */
#include <stdio.h>
#include <stdlib.h>

#include "core/switchpt.h"
#include "fuzz_input.h"

/* Stream byte i: data below D, control bytes ('N') from D on. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin f = {data, size};
	uint8_t mode = fin_u8(&f);
	int hostile = mode & 1;
	uint64_t D = fin_u32(&f) % 100000; /* data bytes the sender sent over TCP */
	uint64_t rx = 0;                   /* data bytes delivered (rx_tcp) */
	uint64_t pos = 0;                  /* stream bytes consumed from the kernel */
	int known = 0;                     /* the switch point is published */
	uint64_t at = 0;                   /* published switch point */
	int broken = 0, crossed = 0;
	for (int step = 0; fin_left(&f) && step < 512 && !broken && !crossed; step++) {
		uint8_t op = fin_u8(&f);
		if (op % 4 == 3) { /* the sender acts */
			if (hostile) {
				known = fin_u8(&f) & 1;
				at = fin_u8(&f) & 1 ? fin_u64(&f)
				                    : rx + (uint64_t)(int16_t)fin_u16(&f);
				int fv = nsk_sp_fin(fin_u32(&f));
				FUZZ_ASSERT(fv == 0 || fv == 1 || fv == -EPROTO);
			} else if (!known) {
				known = 1;
				at = D;
			}
			continue;
		}
		size_t want = 1 + fin_u16(&f) % 70000;
		/* read limit, before the read */
		size_t lim = nsk_sp_limit(rx, known, at, want);
		FUZZ_ASSERT(lim <= want);
		if (known && at >= rx)
			FUZZ_ASSERT(lim <= at - rx);
		/* The sender may publish its switch point (and send control bytes) between the
		 * receiver's look at it and the read: the race the re-read after the read covers.
		 */
		if (!hostile && !known && (op & 4)) {
			known = 1;
			at = D;
		}
		/* What the kernel has: the data, plus control bytes once the switch point is
		 * published (an honest sender sends nothing past D before that). */
		uint64_t avail_end = hostile || known ? D + 1000 : D;
		uint64_t n = avail_end - pos < lim ? avail_end - pos : lim;
		int64_t d = nsk_sp_data(rx, known, at, n);
		if (d < 0) {
			FUZZ_ASSERT(d == -EPROTO && known && at < rx);
			FUZZ_ASSERT(hostile); /* an honest peer never moves its switch point back */
			broken = 1;
			break;
		}
		FUZZ_ASSERT((uint64_t)d <= n);
		if (known)
			FUZZ_ASSERT(rx + (uint64_t)d <= at);
		if (!hostile) /* never a control byte delivered as data */
			FUZZ_ASSERT(pos + (uint64_t)d <= D);
		rx += (uint64_t)d;
		pos += n;
		int c = nsk_sp_crossed(rx, known, at);
		FUZZ_ASSERT(c == 0 || c == 1 || c == -EPROTO);
		if (c < 0) {
			FUZZ_ASSERT(hostile);
			broken = 1;
		}
		if (c == 1) {
			FUZZ_ASSERT(known && rx == at);
			crossed = 1;
		}
	}
	if (!hostile) {
		FUZZ_ASSERT(!broken);
		FUZZ_ASSERT(rx <= D);
		if (crossed)
			FUZZ_ASSERT(rx == D); /* every data byte delivered, then the ring */
	}
	return 0;
}
