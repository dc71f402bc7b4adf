/* SPDX-License-Identifier: MIT */
/* vmdom.c — the ivshmem domain backend of the preload library (see vmdom.h): joining the
 * region, the heartbeat thread, region listeners, offers through the region's mailbox, channels
 * in region chunks, polling waits, and the end of all of it (release, peer death, a stale
 * region, exit). */
#include "preload/vmdom.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/chan_mem.h"
#include "core/region.h"
#include "platform/linux.h"
#include "preload/real.h"
#include "preload/sock.h"

/* One connection whose channel lives (or will live) in the region. */
struct nsk_vmconn {
	struct nsk_sock *s;
	int side;          /* NSK_SIDE_CLIENT or NSK_SIDE_SERVER */
	uint32_t peer_tag; /* client: the listener's member; server: the poster's */
	int attached;      /* s->chan points into the region */
	uint64_t chan_off; /* region offset and size of the channel */
	uint64_t chan_size;
	uint32_t nchunks;
	struct nsk_region_offer_handle oh; /* client: our posted offer */
	int oh_live;
	uint64_t seen_mail; /* server: our mailbox sequence last looked at */
	int broken;
	int detached; /* our users bit is cleared: the memory is not touched any more */
	int done;     /* sock.c found the channel done (both sides retired, all read): if the
	               * region goes before the drop, the connection just forgets it */
	struct nsk_region *rg; /* the mapping the channel is in (attached only) */
	uint64_t retry_ns;     /* client: no offer before this time (a failed or dropped one) */
	struct nsk_vmconn *prev, *next;
};

/* Fields of struct nsk_vmconn that the heartbeat thread changes (under vm.lock) while the
 * application's threads may read them without it: relaxed atomics. */
#define VLD(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)
#define VST(f, x) __atomic_store_n(&(f), (x), __ATOMIC_RELAXED)

/* A mapping of the region, kept for the process's life: channel structs may point into it. */
struct rgbox {
	struct nsk_region rg;
	struct rgbox *older;
};

/* A listener of this process: registered in the region whenever we are a member, again after
 * a re-join (device unplugged and back). */
struct nsk_vmlisten {
	struct nsk_sock *s;
	struct nsk_reg_key k;
	struct nsk_region *rg; /* where it is registered (NULL: not now) */
	int slot;              /* its registry slot there */
	struct nsk_vmlisten *next;
};

/* While the region is stale (unplugged, reformatted), the heartbeat thread tries to join it
 * again this often; a client whose offer failed or whose channel was dropped waits this long
 * before its next offer. */
#define VM_REJOIN_NS 500000000ull
#define VM_RETRY_NS 1000000000ull
#define VM_REOFFER_NS 50000000ull
#define VM_EVAC_POLL_NS 100000000ull /* a client looks this often whether an evacuated
                                      * listener's process was attached again */

enum { VM_UNTRIED = 0, VM_JOINED = 1, VM_STALE = 2, VM_GONE = 3, VM_UNUSABLE = -1 };

static struct {
	pthread_mutex_t lock; /* join, the connection list, the handle's observers (reap) */
	int configured;       /* 0 not looked, 1 ivshmem, -1 not */
	struct nsk_region_spec spec;
	int state; /* VM_* (atomic reads) */
	struct nsk_region *rg; /* the current mapping: a new one per join (old ones stay mapped) */
	struct rgbox *boxes;   /* every mapping made, newest first (all stay reachable) */
	pid_t joiner;
	int forked; /* a fork happened since the join: children may share the membership */
	int atfork_done;
	struct nsk_vmconn *conns;
	struct nsk_vmlisten *listeners;
	int stale_logged;
	uint64_t offers, claims, broken, drops, rejoins;
} vm = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The current mapping: replaced (never freed) when the region is joined again. */
static struct nsk_region *rgn(void)
{
	return __atomic_load_n(&vm.rg, __ATOMIC_ACQUIRE);
}

static int vm_state(void)
{
	return __atomic_load_n(&vm.state, __ATOMIC_ACQUIRE);
}

int nsk_vm_configured(void)
{
	int c = __atomic_load_n(&vm.configured, __ATOMIC_RELAXED);
	if (c)
		return c > 0;
	pthread_mutex_lock(&vm.lock);
	if (!vm.configured) {
		int r = nsk_region_parse_domain(getenv("NEARSOCK_DOMAIN"), &vm.spec);
		if (r < 0)
			nsk_log(NSK_LOG_WARN,
			        "NEARSOCK_DOMAIN=%s: not a valid ivshmem domain; ignored",
			        getenv("NEARSOCK_DOMAIN"));
		__atomic_store_n(&vm.configured, r == 1 ? 1 : -1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&vm.lock);
	return __atomic_load_n(&vm.configured, __ATOMIC_RELAXED) > 0;
}

/* ---------------------------------------------------------------- addresses ----------- */

/* Publish up to 4 addresses of our interfaces (IPv4 first; no loopback, no IPv6 link-local:
 * every namespace has those). */
static void publish_addrs(void)
{
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) < 0)
		return;
	uint16_t fam[4];
	uint8_t addr[4][16];
	unsigned n = 0;
	for (int pass = 0; pass < 2; pass++)
		for (struct ifaddrs *i = ifa; i && n < 4; i = i->ifa_next) {
			if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) ||
			    (i->ifa_flags & IFF_LOOPBACK))
				continue;
			int f = i->ifa_addr->sa_family;
			if ((pass == 0 && f != AF_INET) || (pass == 1 && f != AF_INET6))
				continue;
			uint16_t port;
			if (nsk_norm_addr(i->ifa_addr, &fam[n], addr[n], &port) < 0 ||
			    nsk_is_loopback(fam[n], addr[n]))
				continue;
			if (fam[n] == AF_INET6 && addr[n][0] == 0xfe && (addr[n][1] & 0xc0) == 0x80)
				continue;
			n++;
		}
	freeifaddrs(ifa);
	nsk_region_set_addrs(rgn(), fam, (const uint8_t(*)[16])addr, n);
}

/* Does member slot @m (live, not us) publish (@family, @addr)? The member's fields are
 * untrusted: the count is bounded, nothing else is used. */
static int member_has(int m, uint16_t family, const uint8_t addr[16])
{
	struct nsk_rgn_member *mb = &rgn()->members[m];
	uint32_t n = nsk_load32(&mb->naddr);
	if (n > 4)
		n = 4;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t a[16];
		memcpy(a, (const void *)mb->addr[i], 16);
		if (__atomic_load_n(&mb->family[i], __ATOMIC_RELAXED) == family &&
		    !memcmp(a, addr, 16))
			return 1;
	}
	return 0;
}

static int member_live(int m)
{
	uint64_t st = nsk_load64_acquire(&rgn()->members[m].state);
	return NSK_RM_KIND(st) == NSK_RM_LIVE;
}

/* ---------------------------------------------------------------- connection list ----- */

static void link_locked(struct nsk_vmconn *v)
{
	v->prev = NULL;
	v->next = vm.conns;
	if (vm.conns)
		vm.conns->prev = v;
	vm.conns = v;
}

static void unlink_locked(struct nsk_vmconn *v)
{
	if (v->prev)
		v->prev->next = v->next;
	else if (vm.conns == v)
		vm.conns = v->next;
	if (v->next)
		v->next->prev = v->prev;
	v->prev = v->next = NULL;
}

static struct nsk_vmconn *vmconn_new(struct nsk_sock *s, int side, uint32_t peer_tag)
{
	struct nsk_vmconn *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->s = s;
	v->side = side;
	v->peer_tag = peer_tag;
	v->seen_mail = UINT64_MAX; /* the first call looks at the mailbox */
	pthread_mutex_lock(&vm.lock);
	link_locked(v);
	pthread_mutex_unlock(&vm.lock);
	return v;
}

/* The connection cannot go on: its peer member is dead (its memory is reclaimed and may be
 * reused) or the region is gone (reformatted, evicted, unplugged). As a peer that breaks the
 * protocol: ECONNRESET to the application, and the kernel socket shut down so that poll/epoll
 * sleepers wake and the peer (if alive) sees the end. Caller holds vm.lock. */
static void break_locked(struct nsk_vmconn *v, const char *why)
{
	struct nsk_sock *s = v->s;
	if (v->broken || !VLD(v->attached))
		return;
	uint32_t m = nsk_load32(&s->conn->mode);
	if (m != NSK_MODE_SHM && m != NSK_MODE_OFFERED)
		return;
	v->broken = 1;
	vm.broken++;
	nsk_log(NSK_LOG_WARN, "fd %d: ivshmem channel lost (%s): connection reset", s->fd, why);
	nsk_store32(&s->conn->mode, NSK_MODE_BROKEN);
	if (!atomic_load(&s->closing))
		REAL(shutdown)(s->fd, SHUT_RDWR);
}

/* Why an attached channel cannot be used any more, or NULL. The memory must still belong to
 * us or to a live member (a dead member's chunks are reclaimed and may be reused at once); a
 * peer member that is not live while its users bit is still set died without detaching (a
 * killed process, a dead VM: its TCP end may never close). A peer that detached and left is
 * done with the channel: its TCP FIN ends the stream after the ring's last bytes. */
static const char peer_dead[] = "peer member dead";

static const char *channel_lost(struct nsk_vmconn *v)
{
	if (!VLD(v->attached) || VLD(v->detached))
		return NULL;
	if (vm_state() != VM_JOINED || VLD(v->rg) != rgn())
		return "region stale";
	uint32_t owner = nsk_region_chunk_owner(rgn(), v->chan_off);
	if (owner != rgn()->self_tag && !nsk_region_tag_live(rgn(), owner))
		return "channel memory reclaimed";
	uint32_t peer_bit =
	    v->side == NSK_SIDE_CLIENT ? NSK_CHAN_USER_SERVER : NSK_CHAN_USER_CLIENT;
	if (!nsk_region_tag_live(rgn(), v->peer_tag) &&
	    (nsk_load32(&v->s->chan.hdr->users) & peer_bit))
		return peer_dead;
	return NULL;
}

/* Lost, unless the channel was done with anyway: a connection both sides had evacuated
 * (all its data on TCP) only drops the channel; its memory is still ours or a live member's.
 * Caller holds vm.lock. */
static void lost_locked(struct nsk_vmconn *v, const char *why)
{
	if (why == peer_dead && nsk_sock_vm_drop(v->s, 1))
		return;
	/* An offer the dead member never claimed: ours to withdraw, and try again later. */
	if (why == peer_dead && v->side == NSK_SIDE_CLIENT && nsk_sock_vm_unoffer(v->s, 1))
		return;
	break_locked(v, why);
}

/* Forget @v's channel without touching its memory (the region is gone). Caller holds
 * vm.lock. */
static void forget_locked(struct nsk_vmconn *v)
{
	VST(v->attached, 0);
	VST(v->detached, 0);
	VST(v->oh_live, 0);
	VST(v->rg, NULL);
	v->broken = 0;
	VST(v->done, 0);
	v->chan_off = v->chan_size = 0;
	v->nchunks = 0;
	VST(v->seen_mail, UINT64_MAX);
	VST(v->retry_ns, nsk_now_ns() + VM_REOFFER_NS);
}

void nsk_vm_mark_done(struct nsk_sock *s)
{
	VST(s->vm->done, 1);
}

/* ---------------------------------------------------------------- heartbeat ----------- */

static int join_locked(void);
static void register_all_locked(void);

/* Our membership is gone (reformatted, evicted after a stall, or unplugged: the device's
 * memory reads as zeros). Channels in it cannot be used any more: connections still on one
 * are reset. Those already dropped are not attached any more; those found done but not yet
 * dropped (all their data on TCP) only forget the channel. */
static void stale_locked(void)
{
	nsk_log(NSK_LOG_WARN,
	        "ivshmem region %s: our membership is gone: connections still on its channels "
	        "are reset; joining again when it is back",
	        rgn()->path);
	__atomic_store_n(&vm.state, VM_STALE, __ATOMIC_RELEASE);
	for (struct nsk_vmconn *v = vm.conns; v; v = v->next) {
		if (VLD(v->attached) && VLD(v->done) && nsk_sock_vm_forget(v->s))
			forget_locked(v); /* evacuated both ways, not dropped yet: TCP already */
		else
			break_locked(v, "region stale");
	}
	for (struct nsk_vmlisten *l = vm.listeners; l; l = l->next)
		l->rg = NULL;
	vm.stale_logged = 0;
}

/* The region is back (a device hot-plugged again, a region file formatted again): join it as
 * a new member and register our listeners there. Connections on TCP become candidates of
 * the region again by themselves (sock.c offers; nsk_vm_offer_due finds the members). */
static void rejoin_locked(void)
{
	if (join_locked() < 0)
		return;
	vm.rejoins++;
	register_all_locked();
}

static void *beat_main(void *arg)
{
	(void)arg;
	uint64_t n = 0;
	for (;;) {
		/* Beat twice per interval: a guest under emulation may be descheduled for a while.
		 */
		uint64_t t = vm_state() == VM_STALE ? VM_REJOIN_NS : rgn()->beat_ns / 2;
		struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
		                      .tv_nsec = (long)(t % 1000000000ull)};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&vm.lock);
		if (vm.state == VM_STALE)
			rejoin_locked();
		if (vm.state != VM_JOINED) {
			int stay = vm.state == VM_STALE;
			pthread_mutex_unlock(&vm.lock);
			if (stay)
				continue;
			break;
		}
		if (nsk_region_beat(rgn()) < 0) {
			stale_locked();
			pthread_mutex_unlock(&vm.lock);
			continue;
		}
		if ((++n & 3) == 0)
			nsk_region_reap(rgn());
		/* Our evacuation wish, for clients of our listeners: no offers while it stands. */
		uint32_t *fl = &rgn()->members[rgn()->self].flags;
		uint32_t want = nsk_sock_proc_want_tcp() ? NSK_RM_F_EVAC : 0;
		if ((nsk_load32(fl) & NSK_RM_F_EVAC) != want)
			nsk_store32(fl, (nsk_load32(fl) & ~NSK_RM_F_EVAC) | want);
		for (struct nsk_vmconn *v = vm.conns; v; v = v->next) {
			const char *why = channel_lost(v);
			if (why)
				lost_locked(v, why);
			else if (VLD(v->attached) && !VLD(v->detached)) {
				nsk_sock_vm_follow(v->s); /* an evacuation wish, for an idle process */
				nsk_sock_vm_drop(v->s, 1); /* evacuated both ways: drop the channel */
			}
		}
		pthread_mutex_unlock(&vm.lock);
	}
	return NULL;
}

static void start_beat_thread(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits: no signal lands there */
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 << 10);
	pthread_t th;
	int r = pthread_create(&th, &a, beat_main, NULL);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		nsk_log(NSK_LOG_WARN, "ivshmem region: no heartbeat thread (%s)", strerror(r));
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&vm.lock);
}

static void fork_parent(void)
{
	if (vm.state == VM_JOINED)
		vm.forked = 1;
	pthread_mutex_unlock(&vm.lock);
}

/* The child shares the membership (and the connections it inherited): it beats too — or,
 * while the region is stale, tries to join it again. */
static void fork_child(void)
{
	pthread_mutex_init(&vm.lock, NULL);
	if (vm.state == VM_JOINED || vm.state == VM_STALE) {
		vm.forked = vm.state == VM_JOINED;
		start_beat_thread();
	}
}

/* ---------------------------------------------------------------- join ---------------- */

/* Map the region (again: a new mapping each time, the old one stays mapped for the channels
 * that may still point into it) and join it. 0, or -errno with the state unchanged. */
static int join_locked(void)
{
	int first = vm.state == VM_UNTRIED;
	struct rgbox *box = calloc(1, sizeof(*box));
	struct nsk_region *rg = box ? &box->rg : NULL;
	int r = rg ? nsk_region_open_spec(rg, &vm.spec) : -ENOMEM;
	if (r < 0) {
		if (first || !vm.stale_logged)
			nsk_log(first ? NSK_LOG_WARN : NSK_LOG_INFO,
			        "ivshmem region %s unusable (%s): connections to other VMs "
			        "stay on TCP%s",
			        vm.spec.arg[0] ? vm.spec.arg : "(auto)", strerror(-r),
			        first ? "" : " until it is back");
		vm.stale_logged = 1;
		free(box);
		return r;
	}
	char host[64] = "", name[33];
	gethostname(host, sizeof(host) - 1);
	snprintf(name, sizeof(name), "%.20s/%d", host, (int)getpid());
	int slot = nsk_region_join(rg, name, getpid());
	if (slot < 0) {
		if (first || !vm.stale_logged)
			nsk_log(NSK_LOG_WARN, "ivshmem region %s: cannot join (%s)", rg->path,
			        strerror(-slot));
		vm.stale_logged = 1;
		nsk_region_close(rg);
		free(box);
		return slot;
	}
	box->older = vm.boxes;
	vm.boxes = box;
	__atomic_store_n(&vm.rg, rg, __ATOMIC_RELEASE); /* read by rgn() without the lock */
	nsk_store32(&rg->members[slot].flags, nsk_sock_proc_want_tcp() ? NSK_RM_F_EVAC : 0);
	publish_addrs();
	vm.joiner = getpid();
	vm.forked = 0;
	if (!vm.atfork_done) {
		pthread_atfork(fork_prepare, fork_parent, fork_child);
		vm.atfork_done = 1;
	}
	__atomic_store_n(&vm.state, VM_JOINED, __ATOMIC_RELEASE);
	if (first)
		start_beat_thread();
	nsk_log(NSK_LOG_INFO, "ivshmem region %s %sjoined as member %d (tag %08x)", rg->path,
	        first ? "" : "re-", slot, rg->self_tag);
	return 0;
}

int nsk_vm_ready(void)
{
	int st = vm_state();
	if (st != VM_UNTRIED)
		return st == VM_JOINED;
	if (!nsk_vm_configured())
		return 0;
	pthread_mutex_lock(&vm.lock);
	if (vm.state == VM_UNTRIED && join_locked() < 0)
		vm.state = VM_UNUSABLE;
	st = vm.state;
	pthread_mutex_unlock(&vm.lock);
	return st == VM_JOINED;
}

/* ---------------------------------------------------------------- listeners ----------- */

static void register_locked(struct nsk_vmlisten *l)
{
	struct nsk_reg_key k = l->k;
	k.netns = nsk_region_netns(rgn()->self);
	int r = nsk_registry_insert(&rgn()->reg, &k, rgn()->self + 1, rgn()->self_gen, "");
	if (r < 0) {
		nsk_log(NSK_LOG_WARN,
		        "listener fd %d port %u: region registry full: connections "
		        "from other VMs stay on TCP",
		        l->s->fd, k.port);
		return;
	}
	l->rg = rgn();
	l->slot = r;
	nsk_log(NSK_LOG_DEBUG, "listener fd %d port %u registered in the region (slot %d)",
	        l->s->fd, k.port, r);
}

static void register_all_locked(void)
{
	for (struct nsk_vmlisten *l = vm.listeners; l; l = l->next)
		if (!l->rg)
			register_locked(l);
}

void nsk_vm_listen(struct nsk_sock *s)
{
	if (s->vm_reg || !nsk_vm_configured())
		return;
	nsk_vm_ready();
	struct nsk_vmlisten *l = calloc(1, sizeof(*l));
	if (!l || nsk_listen_key(s, &l->k) < 0 || nsk_is_loopback(l->k.family, l->k.addr)) {
		free(l); /* (a loopback listener is only reachable from our own kernel) */
		return;
	}
	l->s = s;
	pthread_mutex_lock(&vm.lock);
	if (vm.state == VM_JOINED || vm.state == VM_STALE) {
		l->next = vm.listeners;
		vm.listeners = l;
		s->vm_reg = 1;
		if (vm.state == VM_JOINED)
			register_locked(l);
		l = NULL;
	}
	pthread_mutex_unlock(&vm.lock);
	free(l);
}

void nsk_vm_unlisten(struct nsk_sock *s)
{
	if (!s->vm_reg)
		return;
	pthread_mutex_lock(&vm.lock);
	struct nsk_vmlisten **pp = &vm.listeners, *l;
	while ((l = *pp) && l->s != s)
		pp = &l->next;
	if (l) {
		*pp = l->next;
		if (l->rg && l->rg == rgn() && vm.state == VM_JOINED && nsk_sock_last_holder(s))
			nsk_registry_remove(&rgn()->reg, l->slot, rgn()->self + 1);
	}
	pthread_mutex_unlock(&vm.lock);
	free(l);
	s->vm_reg = 0;
}

/* ---------------------------------------------------------------- client -------------- */

/* The live member (tag) that has a listener at @c's destination, or 0. */
static uint32_t resolve_listener(const struct nsk_conn *c)
{
	for (uint32_t m = 0; m < rgn()->nmembers; m++) {
		if ((int)m == rgn()->self || !member_live((int)m) ||
		    !member_has((int)m, c->family, c->raddr))
			continue;
		struct nsk_reg_key k;
		memset(&k, 0, sizeof(k));
		k.family = c->family;
		memcpy(k.addr, c->raddr, 16);
		k.port = c->rport;
		k.netns = nsk_region_netns((int)m);
		struct nsk_reg_entry e;
		if (nsk_registry_lookup(&rgn()->reg, &k, 1, &e) < 0)
			continue;
		uint32_t t = nsk_region_reg_owner(rgn(), &e);
		if (t && NSK_RGN_TAG_SLOT(t) == (int)m && nsk_region_tag_live(rgn(), t))
			return t;
	}
	return 0;
}

int nsk_vm_connected(struct nsk_sock *s)
{
	if (!nsk_vm_configured() || !nsk_vm_ready())
		return 0;
	struct nsk_conn *c = s->conn;
	if (nsk_is_loopback(c->family, c->raddr))
		return 0;
	uint32_t tag = resolve_listener(c);
	if (!tag)
		return 0;
	s->vm = vmconn_new(s, NSK_SIDE_CLIENT, tag);
	return s->vm != NULL;
}

/* No offer now: the connection stays on TCP, a candidate that tries again later. */
static void retry_later(struct nsk_sock *s, uint64_t after_ns)
{
	VST(s->vm->retry_ns, nsk_now_ns() + after_ns);
	s->candidate = 1;
	nsk_store32(&s->conn->mode, NSK_MODE_TCP);
}

int nsk_vm_offer_due(struct nsk_sock *s)
{
	struct nsk_vmconn *v = s->vm;
	uint64_t now = nsk_now_ns();
	if (now < VLD(v->retry_ns))
		return 0;
	if (vm_state() != VM_JOINED) {
		VST(v->retry_ns, now + VM_RETRY_NS);
		return 0;
	}
	struct nsk_region *rg = rgn();
	if (!nsk_region_tag_live(rg, v->peer_tag)) {
		/* The listener's member left (its VM's device unplugged, the process gone): look
		 * for the listener again, under whatever membership it has now. */
		uint32_t t = resolve_listener(s->conn);
		if (!t) {
			VST(v->retry_ns, now + VM_RETRY_NS);
			return 0;
		}
		pthread_mutex_lock(&vm.lock);
		v->peer_tag = t;
		pthread_mutex_unlock(&vm.lock);
	}
	/* The listener's process is evacuated (a VM about to migrate): it would not claim. */
	if (nsk_load32(&rg->members[NSK_RGN_TAG_SLOT(v->peer_tag)].flags) & NSK_RM_F_EVAC) {
		VST(v->retry_ns, now + VM_EVAC_POLL_NS);
		return 0;
	}
	return 1;
}

/* Give back chunks allocated in mapping @rg, unless a re-join replaced it meanwhile (the
 * memory then belongs to another format of the region). */
static void chunk_free_current(struct nsk_region *rg, uint64_t off, uint32_t n)
{
	pthread_mutex_lock(&vm.lock);
	if (vm.state == VM_JOINED && rg == vm.rg)
		nsk_region_chunk_free(rg, off, n);
	pthread_mutex_unlock(&vm.lock);
}

void nsk_vm_offer(struct nsk_sock *s)
{
	struct nsk_vmconn *v = s->vm;
	struct nsk_conn *c = s->conn;
	/* One mapping for the whole offer: a re-join may replace rgn() meanwhile (checked
	 * again under vm.lock before the offer is posted). */
	struct nsk_region *rg = rgn();
	if (vm_state() != VM_JOINED || !nsk_region_tag_live(rg, v->peer_tag)) {
		retry_later(s, VM_RETRY_NS);
		return;
	}
	uint64_t want_b = NSK_CHAN_DATA_OFF + 2 * nsk_g.ring_size;
	uint64_t min_b = NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MIN;
	uint32_t want = (uint32_t)((want_b + NSK_RGN_CHUNK - 1) / NSK_RGN_CHUNK);
	uint32_t min_n = (uint32_t)((min_b + NSK_RGN_CHUNK - 1) / NSK_RGN_CHUNK);
	uint32_t got = 0;
	int64_t off = nsk_region_chunk_alloc_prop(rg, want, min_n, &got);
	const char *why = NULL;
	struct nsk_chan ch;
	if (off < 0) {
		why = strerror((int)-off);
	} else {
		uint64_t size = (uint64_t)got * NSK_RGN_CHUNK;
		void *p = nsk_region_ptr(rg, (uint64_t)off, size);
		uint64_t ring = nsk_chan_mem_ring_size(size, nsk_g.ring_size);
		if (!p || !ring || nsk_chan_format_mem(&ch, p, size, ring) < 0) {
			why = "bad chunk range";
		} else {
			struct nsk_region_offer_info o;
			memset(&o, 0, sizeof(o));
			o.to_tag = v->peer_tag;
			o.nonce = ch.nonce;
			o.chan_off = (uint64_t)off;
			o.chan_size = size;
			o.family = c->family;
			o.cport = c->lport;
			o.sport = c->rport;
			memcpy(o.caddr, c->laddr, 16);
			memcpy(o.saddr, c->raddr, 16);
			o.from_pid = (uint32_t)getpid();
			/* The heartbeat thread looks at attached connections (vm.lock). */
			pthread_mutex_lock(&vm.lock);
			int r = vm.state != VM_JOINED || rg != vm.rg
			            ? -ESTALE
			            : nsk_region_offer_post(rg, &o, &v->oh);
			if (r < 0) {
				why = strerror(-r);
			} else {
				s->chan = ch; /* (retired before: chan_ok() is 0 until published) */
				v->chan_off = (uint64_t)off;
				v->chan_size = size;
				v->nchunks = got;
				VST(v->done, 0);
				VST(v->oh_live, 1);
				VST(v->rg, rg);
				VST(v->attached, 1);
			}
			pthread_mutex_unlock(&vm.lock);
		}
		if (why)
			chunk_free_current(rg, (uint64_t)off, got);
	}
	if (why) {
		nsk_log(NSK_LOG_INFO, "fd %d: no ivshmem channel (%s): TCP for now", s->fd, why);
		retry_later(s, VM_RETRY_NS);
		return;
	}
	__atomic_add_fetch(&vm.offers, 1, __ATOMIC_RELAXED);
	c->nonce = s->chan.nonce;
	s->deadline_ns = nsk_now_ns() + nsk_g.offer_timeout_ns;
	/* Release pairs with chan_ok()'s acquire in sock.c: s->chan is complete. */
	atomic_store_explicit(&s->chan_ready, 1, memory_order_release);
	nsk_store32(&c->mode, NSK_MODE_OFFERED);
	nsk_log(NSK_LOG_DEBUG, "fd %d: ivshmem offer posted (%u chunks, rings %llu)", s->fd, got,
	        (unsigned long long)nsk_ring_cap(&s->chan.tx));
}

static void offer_done(struct nsk_vmconn *v, int force)
{
	struct nsk_region *rg = VLD(v->rg);
	if (!VLD(v->oh_live) || rg != rgn())
		return;
	int k = nsk_region_offer_state(rg, &v->oh);
	if (k == NSK_RO_POSTED && force)
		k = nsk_region_offer_withdraw(rg, &v->oh) == 0 ? NSK_RO_WITHDRAWN : NSK_RO_CLAIMED;
	if (k == NSK_RO_CLAIMED || k == NSK_RO_WITHDRAWN)
		nsk_region_offer_release(rg, &v->oh);
	if (k < 0 || k == NSK_RO_CLAIMED || k == NSK_RO_WITHDRAWN)
		VST(v->oh_live, 0);
}

void nsk_vm_client_refresh(struct nsk_sock *s)
{
	struct nsk_vmconn *v = s->vm;
	if (!v || !VLD(v->oh_live) || !VLD(v->attached))
		return;
	/* The header decides (claim or our withdrawal); the slot follows. */
	if (nsk_load32_acquire(&s->chan.hdr->state) != NSK_CH_OFFERED)
		offer_done(v, 1);
	else if (vm_state() == VM_JOINED && VLD(v->rg) == rgn() &&
	         !nsk_region_tag_live(rgn(), v->peer_tag))
		s->deadline_ns = 0; /* the member we offered to is gone: withdraw at once */
}

/* ---------------------------------------------------------------- server -------------- */

void nsk_vm_accepted(struct nsk_sock *s, struct nsk_sock *ls, const struct sockaddr *peer)
{
	if (!ls->vm_reg || vm_state() != VM_JOINED)
		return;
	struct nsk_conn *c = s->conn;
	uint16_t fam, port, lfam, lport;
	uint8_t addr[16], laddr[16];
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	if (nsk_norm_addr(peer, &fam, addr, &port) < 0 || nsk_is_loopback(fam, addr) ||
	    getsockname(s->fd, (struct sockaddr *)&la, &ll) < 0 ||
	    nsk_norm_addr((struct sockaddr *)&la, &lfam, laddr, &lport) < 0 || lfam != fam)
		return;
	int found = 0;
	for (uint32_t m = 0; m < rgn()->nmembers && !found; m++)
		found =
		    (int)m != rgn()->self && member_live((int)m) && member_has((int)m, fam, addr);
	uint32_t mode = nsk_load32(&c->mode);
	if (!found || (mode != NSK_MODE_TCP && mode != NSK_MODE_PLAIN))
		return;
	struct nsk_vmconn *v = vmconn_new(s, NSK_SIDE_SERVER, 0);
	if (!v)
		return;
	c->family = fam;
	memcpy(c->raddr, addr, 16);
	c->rport = port;
	memcpy(c->laddr, laddr, 16);
	c->lport = lport;
	s->tuple_ok = 1;
	s->vm = v;
	nsk_store32(&c->mode, NSK_MODE_TCP);
	s->candidate = 1; /* TCP until the member behind the peer's address posts an offer */
}

int nsk_vm_take(struct nsk_sock *s)
{
	struct nsk_vmconn *v = s->vm;
	struct nsk_region *rg = rgn(); /* one mapping throughout (see nsk_vm_offer) */
	if (VLD(v->attached) || vm_state() != VM_JOINED)
		return 0;
	/* Acquire pairs with the poster's bump after its release CAS to POSTED. */
	uint64_t seq = nsk_load64_acquire(&rg->members[rg->self].mail_seq);
	if (seq == VLD(v->seen_mail) || !nsk_sock_last_holder(s))
		return 0;
	VST(v->seen_mail, seq);
	struct nsk_conn *c = s->conn;
	struct nsk_region_offer_info o;
	struct nsk_region_offer_handle h;
	if (nsk_region_offer_claim(rg, c->family, c->raddr, c->rport, c->laddr, c->lport, &o, &h) <
	    0)
		return 0;
	struct nsk_chan ch;
	void *p = nsk_region_ptr(rg, o.chan_off, o.chan_size);
	int r = !p ? -EPROTO : nsk_chan_attach_mem(&ch, p, o.chan_size, o.nonce, NSK_SIDE_SERVER);
	if (r == 0 && !nsk_region_tag_live(rg, o.from_tag))
		r = -ESTALE;
	if (r == 0) {
		pthread_mutex_lock(&vm.lock); /* the heartbeat thread looks at attached ones */
		if (vm.state != VM_JOINED || rg != vm.rg) {
			r = -ESTALE; /* re-joined meanwhile: the offer was in the old mapping */
		} else {
			s->chan = ch; /* (retired before: chan_ok() is 0 until published) */
			v->peer_tag = o.from_tag;
			v->chan_off = o.chan_off;
			v->chan_size = o.chan_size;
			v->nchunks = (uint32_t)(o.chan_size / NSK_RGN_CHUNK);
			VST(v->done, 0);
			VST(v->rg, rg);
			VST(v->attached, 1);
		}
		pthread_mutex_unlock(&vm.lock);
	}
	if (r == -ESTALE && vm_state() == VM_JOINED && rgn() != rg)
		return 0; /* the client offers again in the new mapping */
	if (r < 0) {
		nsk_log(NSK_LOG_WARN, "fd %d: ivshmem offer rejected (%s): staying on TCP", s->fd,
		        strerror(-r));
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return -1;
	}
	__atomic_add_fetch(&vm.claims, 1, __ATOMIC_RELAXED);
	/* Release pairs with chan_ok()'s acquire in sock.c. */
	atomic_store_explicit(&s->chan_ready, 1, memory_order_release);
	return 1;
}

/* ---------------------------------------------------------------- waiting ------------- */

static void wait_cancelled(void *arg)
{
	nsk_sock_leave(arg);
}

static int wait_loop(struct nsk_sock *s, int tx, uint64_t deadline, uint64_t slice_ns,
                     int (*ready)(struct nsk_sock *, int))
{
	struct nsk_vmconn *v = s->vm;
	uint64_t now = nsk_now_ns(), end = now + slice_ns, d = NSK_VM_POLL_MIN_NS;
	if (deadline && deadline < end)
		end = deadline;
	for (;;) {
		if (ready(s, tx) || nsk_load32(&s->conn->mode) == NSK_MODE_BROKEN)
			return 0;
		/* (under vm.lock: the heartbeat thread changes the connection's fields) */
		pthread_mutex_lock(&vm.lock);
		const char *why = channel_lost(v);
		if (why)
			break_locked(v, why);
		pthread_mutex_unlock(&vm.lock);
		if (why)
			return 0;
		now = nsk_now_ns();
		if (now >= end)
			return deadline && now >= deadline ? -ETIMEDOUT : 0;
		uint64_t t = d < end - now ? d : end - now;
		struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
		                      .tv_nsec = (long)(t % 1000000000ull)};
		if (nanosleep(&ts, NULL) < 0 && errno == EINTR)
			return -EINTR;
		if (d < NSK_VM_POLL_MAX_NS)
			d *= 2;
	}
}

int nsk_vm_wait(struct nsk_sock *s, int tx, uint64_t deadline, uint64_t slice_ns,
                int (*ready)(struct nsk_sock *, int))
{
	int saved = errno, ret;
	/* nanosleep is a cancellation point, as recv/send are: drop the wrapper's pin then. */
	pthread_cleanup_push(wait_cancelled, s);
	ret = wait_loop(s, tx, deadline, slice_ns, ready);
	pthread_cleanup_pop(0);
	errno = saved;
	return ret;
}

/* ---------------------------------------------------------------- the end ------------- */

/* We stop using @v's channel memory (close, or exit). The last user owns the memory: a client
 * leaving while the server still reads hands its chunks to the server's membership; whoever
 * detaches last frees them. Caller holds vm.lock. */
static void detach_locked(struct nsk_vmconn *v)
{
	struct nsk_sock *s = v->s;
	if (!VLD(v->attached) || VLD(v->detached) || vm.state != VM_JOINED || VLD(v->rg) != rgn())
		return;
	VST(v->detached, 1);
	if (v->side == NSK_SIDE_CLIENT) {
		/* Not claimed yet: withdraw first, so the server cannot start using it. */
		if (nsk_chan_state(&s->chan) == NSK_CH_OFFERED)
			nsk_chan_withdraw(&s->chan);
		if (nsk_chan_state(&s->chan) == NSK_CH_CLAIMED &&
		    (nsk_load32(&s->chan.hdr->users) & NSK_CHAN_USER_SERVER) &&
		    nsk_region_chunk_give(rgn(), v->chan_off, v->nchunks, v->peer_tag) == 0) {
			/* Handed over before our bit goes: if the server detached meanwhile, we
			 * were the last after all and free what is now its. */
			if (!nsk_chan_mem_detach(&s->chan, NSK_SIDE_CLIENT))
				nsk_region_chunk_free_as(rgn(), v->chan_off, v->nchunks,
				                         v->peer_tag);
		} else {
			nsk_chan_mem_detach(&s->chan, NSK_SIDE_CLIENT);
			nsk_region_chunk_free(rgn(), v->chan_off, v->nchunks);
		}
		return;
	}
	/* Server: only a channel we claimed (try_claim records its nonce only then), and only
	 * while its memory is ours or a live member's. */
	uint32_t owner = nsk_region_chunk_owner(rgn(), v->chan_off);
	if (s->conn->nonce != s->chan.nonce ||
	    (owner != rgn()->self_tag && !nsk_region_tag_live(rgn(), owner)))
		return;
	if (!nsk_chan_mem_detach(&s->chan, NSK_SIDE_SERVER))
		nsk_region_chunk_free(rgn(), v->chan_off, v->nchunks); /* handed to us */
}

void nsk_vm_detach(struct nsk_sock *s, int locked)
{
	struct nsk_vmconn *v = s->vm;
	if (!locked)
		pthread_mutex_lock(&vm.lock);
	if (VLD(v->attached)) {
		detach_locked(v);
		offer_done(v, 1);
		vm.drops++;
	}
	forget_locked(v); /* (a server looks at its mailbox again) */
	if (!locked)
		pthread_mutex_unlock(&vm.lock);
}

void nsk_vm_release(struct nsk_sock *s)
{
	struct nsk_vmconn *v = s->vm;
	if (!v)
		return;
	pthread_mutex_lock(&vm.lock);
	unlink_locked(v);
	if (nsk_sock_last_holder(s))
		detach_locked(v);
	if (vm.state == VM_JOINED)
		offer_done(v, 1);
	pthread_mutex_unlock(&vm.lock);
	/* Region memory is never unmapped per channel (nsk_chan_unmap sees no mapping); s->chan
	 * may still point at a channel dropped earlier. */
	s->chan.base = NULL;
	s->chan.hdr = NULL;
	s->vm = NULL;
	free(v);
}

void nsk_vm_exit(void)
{
	if (vm_state() == VM_STALE) { /* no re-join during exit */
		pthread_mutex_lock(&vm.lock);
		if (vm.state == VM_STALE)
			__atomic_store_n(&vm.state, VM_GONE, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&vm.lock);
	}
	if (vm_state() != VM_JOINED)
		return;
	pthread_mutex_lock(&vm.lock);
	/* A forked child may share the membership: it keeps beating, and the membership is
	 * reclaimed once nobody does. */
	int shared = vm.forked || getpid() != vm.joiner;
	for (struct nsk_vmconn *v = vm.conns; v && !shared; v = v->next)
		detach_locked(v);
	nsk_log(NSK_LOG_DEBUG,
	        "ivshmem region: %llu offers, %llu claims, %llu reset, %llu dropped, %llu "
	        "re-joins; %s",
	        (unsigned long long)vm.offers, (unsigned long long)vm.claims,
	        (unsigned long long)vm.broken, (unsigned long long)vm.drops,
	        (unsigned long long)vm.rejoins, shared ? "membership left to expire" : "leaving");
	if (!shared)
		nsk_region_leave(rgn());
	__atomic_store_n(&vm.state, VM_GONE, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm.lock);
}
