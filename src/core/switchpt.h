/* SPDX-License-Identifier: MIT */
/* switchpt.h — the receiver's reading of what the peer publishes in the shared channel
 * header about the TCP part of the stream: its switch point (how many application bytes it
 * sent over TCP before it started using its ring) and its FIN flag. Every TCP byte past the
 * switch point is a control byte (marker or wake-up) whose content is never interpreted, so
 * these few pure functions are the whole "control parser". The peer may write anything there
 * at any time: each function takes one copied value and answers with a bounded result or
 * -EPROTO, and never trusts a value it was given for anything but arithmetic. */
#ifndef NSK_SWITCHPT_H
#define NSK_SWITCHPT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* nsk_sp_limit - how many bytes a receiver that has delivered @rx_tcp TCP data bytes may read
 * from TCP for a buffer of @want bytes: @want when the peer's switch point is not known
 * (@known 0), else at most the data bytes left before switch point @at. 0 when the switch
 * point is at or behind @rx_tcp (the caller checks nsk_sp_crossed for the latter). */
static inline size_t nsk_sp_limit(uint64_t rx_tcp, int known, uint64_t at, size_t want)
{
	if (!known)
		return want;
	if (at <= rx_tcp)
		return 0;
	return at - rx_tcp < want ? (size_t)(at - rx_tcp) : want;
}

/* nsk_sp_data - of @n bytes just read from TCP (after @rx_tcp delivered data bytes), how
 * many are application data given the switch point (@known, @at) re-read after the read:
 * the rest are control bytes. Returns a value in [0, @n], or -EPROTO when the switch point
 * lies behind bytes already delivered (a peer that moved it back, or a hostile one). */
static inline int64_t nsk_sp_data(uint64_t rx_tcp, int known, uint64_t at, uint64_t n)
{
	if (!known)
		return (int64_t)n;
	if (at < rx_tcp)
		return -EPROTO;
	return at - rx_tcp < n ? (int64_t)(at - rx_tcp) : (int64_t)n;
}

/* nsk_sp_crossed - has the receiver delivered every TCP data byte (1), not yet (0), or is
 * the switch point behind what was delivered (-EPROTO)? */
static inline int nsk_sp_crossed(uint64_t rx_tcp, int known, uint64_t at)
{
	if (!known)
		return 0;
	if (at < rx_tcp)
		return -EPROTO;
	return at == rx_tcp;
}

/* nsk_sp_fin - the peer's FIN word: 0 (open), 1 (no more bytes after the ring's tail), or
 * -EPROTO for any other value. */
static inline int nsk_sp_fin(uint32_t v)
{
	return v <= 1 ? (int)v : -EPROTO;
}

#endif
