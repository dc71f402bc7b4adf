/* SPDX-License-Identifier: MIT */
/* vmdom.h — the ivshmem domain in the preload library: connections between processes whose
 * kernels differ (two VMs, a VM and the host) but which map one region (NEARSOCK_DOMAIN=
 * ivshmem:FILE | ivshmem:auto). The region is an additional domain: peers in our own kernel
 * keep using the local one. The process joins the region at the first socket call that needs
 * it, publishes its interface addresses, registers its listeners in the region's registry and
 * beats from a small thread; a client whose destination is another member's listener formats
 * a channel in chunks of the region and posts an offer to that member's mailbox; the accepted
 * socket claims it by 4-tuple. From then on the channel is an ordinary struct nsk_chan, driven
 * by sock.c; only waiting differs (futexes do not cross kernels: adaptive polling instead).
 * sock.c and lifecycle.c call the hooks below; all state of the region lives here. */
#ifndef NSK_VMDOM_H
#define NSK_VMDOM_H

#include <stdint.h>
#include <sys/socket.h>

struct nsk_sock;

/* nsk_vm_configured - NEARSOCK_DOMAIN names an ivshmem region (cheap after the first call). */
int nsk_vm_configured(void);
/* nsk_vm_ready - join the region on first use (once per process; also starts the heartbeat
 * thread). 1 if the region is usable now, 0 if not configured, unusable or stale. */
int nsk_vm_ready(void);

/* nsk_vm_listen - listener @s (bound, listening) is registered in the region's registry with
 * our member's namespace, so that other members' clients find it. No-op without a region. */
void nsk_vm_listen(struct nsk_sock *s);
/* nsk_vm_unlisten - withdraw @s's region registry entry (close). */
void nsk_vm_unlisten(struct nsk_sock *s);

/* nsk_vm_connected - client @s (4-tuple filled in) connected to an address of another member
 * of the region that has a listener there: 1 (the connection becomes a candidate of the
 * region; s->vm set), else 0. */
int nsk_vm_connected(struct nsk_sock *s);
/* nsk_vm_offer_due - may client @s (a candidate of the region) offer now? Not before its retry
 * time (after a failed or dropped channel), only while we are a member, and only to a live
 * member with a listener at its destination (looked up again if the one found before left:
 * an unplugged VM joins again as a new member). */
int nsk_vm_offer_due(struct nsk_sock *s);
/* nsk_vm_offer - the candidate @s is worth a channel: allocate it in the region, format it and
 * post the offer. Leaves mode OFFERED (channel published in s->chan), or TCP (a candidate
 * again after a while: region or listener's member gone, region full). Caller holds
 * s->lock. */
void nsk_vm_offer(struct nsk_sock *s);
/* nsk_vm_client_refresh - a client's offer was decided (claimed or withdrawn): give the
 * mailbox slot back. Caller holds s->lock. */
void nsk_vm_client_refresh(struct nsk_sock *s);

/* nsk_vm_accepted - @s came out of accept() on listener @ls from @peer: if @ls is registered in
 * the region and @peer is an address of another member, @s waits for that member's offer
 * (candidate, s->vm set). */
void nsk_vm_accepted(struct nsk_sock *s, struct nsk_sock *ls, const struct sockaddr *peer);
/* nsk_vm_take - accepted candidate @s: one load of our mailbox sequence; when it moved, claim
 * the offer for @s's exact 4-tuple and attach its channel into s->chan (published). 1 if the
 * caller must now claim the channel (nsk_chan_claim), 0 if nothing came, -1 if the offer was
 * bad (mode set PLAIN). Caller holds s->lock. */
int nsk_vm_take(struct nsk_sock *s);

/* nsk_vm_wait - replaces the futex sleep for a region channel: poll @ready(@s, @tx) with
 * adaptive back-off (sleeps of 50 µs doubling to NSK_VM_POLL_MAX_NS) for up to one liveness
 * slice (@slice_ns) or until @deadline (0: none). Checks the peer member's liveness and the
 * region's on the way (a dead peer or a stale region breaks the connection). 0 (re-check),
 * -ETIMEDOUT or -EINTR. A cancellation point; drops the caller's pin of @s if cancelled. */
int nsk_vm_wait(struct nsk_sock *s, int tx, uint64_t deadline, uint64_t slice_ns,
                int (*ready)(struct nsk_sock *, int));
#define NSK_VM_POLL_MIN_NS 50000ull
#define NSK_VM_POLL_MAX_NS 1000000ull

/* nsk_vm_detach - @s stops using its channel (retired by sock.c, chan_ok() false): detach from
 * its memory (the last endpoint frees it), give the offer slot back; @s stays a connection of
 * the region that can get a new channel later (client: offer again; server: claim again).
 * @locked: the caller holds vm.lock (the heartbeat thread). */
void nsk_vm_detach(struct nsk_sock *s, int locked);

/* nsk_vm_mark_done - sock.c found @s's channel done (both sides retired, every byte read):
 * should the region go before the drop, the connection forgets the channel instead of being
 * reset. */
void nsk_vm_mark_done(struct nsk_sock *s);

/* nsk_vm_release - the last user of @s in this process is gone: detach from the channel's
 * memory (the last endpoint frees its chunks), give the offer slot back, forget @s. */
void nsk_vm_release(struct nsk_sock *s);

/* nsk_vm_exit - process exit: leave the region (everything we own comes back at once) unless
 * a peer still reads a channel in our memory or a forked child may share the membership: then
 * the membership stops beating and is reclaimed after the region's dead time. */
void nsk_vm_exit(void);

#endif
