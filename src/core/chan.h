/* SPDX-License-Identifier: MIT */
/* chan.h — a channel: the private memory segment two endpoints of one TCP connection share
 * (header + one ring per direction), how the connecting side creates and offers it, and how
 * the accepting side validates, maps and claims it. On one host the segment is a sealed
 * memfd passed with SCM_RIGHTS to the listener's rendezvous socket. */
#ifndef NSK_CHAN_H
#define NSK_CHAN_H

#include <stdint.h>

#include "core/layout.h"
#include "core/ring.h"

struct nsk_chan {
	void *base;
	uint64_t size;
	struct nsk_chan_hdr *hdr;
	int side;          /* NSK_SIDE_CLIENT or NSK_SIDE_SERVER */
	struct nsk_ring tx; /* ring we produce into */
	struct nsk_ring rx; /* ring we consume from */
	uint64_t nonce;
};

/* nsk_chan_create - client side: a new sealed memfd with two rings of @ring_size bytes,
 * formatted and mapped into @c (state OFFERED). Returns the memfd (caller sends then closes
 * it) or -errno (EMFILE, ENOMEM, ENOSPC ... the connection then stays TCP). */
int nsk_chan_create(struct nsk_chan *c, uint64_t ring_size);
/* nsk_chan_create_sized - nsk_chan_create with rings that may change size: data areas of
 * @ring_size bytes each (the most a ring may grow to) of which the first @cap bytes are in
 * use and backed (0: all). Pages beyond @cap take no memory until a ring grows. */
int nsk_chan_create_sized(struct nsk_chan *c, uint64_t ring_size, uint64_t cap);
/* nsk_chan_attach - server side: check that @memfd is sealed and as large as the offer
 * says, map it and validate every header field against @o (magic, version, nonce, ring
 * offsets and sizes inside the segment). 0 or -errno (-EPROTO for a malformed segment). */
int nsk_chan_attach(struct nsk_chan *c, int memfd, const struct nsk_offer *o);
/* nsk_chan_adopt - map a channel this endpoint already took part in, from a descriptor kept
 * across exec: same validation as attach (nonce must match @nonce), as @side. 0 or -errno. */
int nsk_chan_adopt(struct nsk_chan *c, int memfd, int side, uint64_t nonce);
void nsk_chan_unmap(struct nsk_chan *c);
/* nsk_chan_claim - server: OFFERED → CLAIMED. 0, or -EALREADY if the client withdrew. */
int nsk_chan_claim(struct nsk_chan *c);
/* nsk_chan_withdraw - client: OFFERED → WITHDRAWN. 0, or -EALREADY if already claimed. */
int nsk_chan_withdraw(struct nsk_chan *c);
/* nsk_chan_state - current state word (acquire). */
uint32_t nsk_chan_state(const struct nsk_chan *c);

/* nsk_offer_send - send offer @o with @memfd to the rendezvous socket at @path through the
 * unbound datagram socket @sock (@path NULL: @sock is connected to it), without blocking.
 * 0 or -errno (-EAGAIN: queue full, -ECONNREFUSED / -ENOENT: nobody there any more). */
int nsk_offer_send(int sock, const char *path, const struct nsk_offer *o, int memfd);
/* nsk_offer_recv - take one offer from rendezvous socket @sock without blocking.
 * Returns 0 with *@memfd set (close-on-exec), -EAGAIN when none is queued, -EPROTO for a
 * malformed message (already discarded, its descriptors closed). */
int nsk_offer_recv(int sock, struct nsk_offer *o, int *memfd);
/* nsk_offer_recv_cred - nsk_offer_recv, also storing into @cred (if not NULL) the sender's
 * credentials as the kernel vouches for them (SO_PASSCRED must be set on @sock), or pid 0 /
 * uid and gid -1 when the message carried none. */
struct ucred;
int nsk_offer_recv_cred(int sock, struct nsk_offer *o, int *memfd, struct ucred *cred);

#endif
