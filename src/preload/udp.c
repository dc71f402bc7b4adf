/* SPDX-License-Identifier: MIT */
/* udp.c — UDP sockets over shared-memory inboxes (see udp.h).
 *
 * Receiver: a bound socket owns an inbox (sealed memfd, registered in the domain registry
 * with its descriptor number and a nonce). It reads the inbox first and the kernel socket
 * (remote senders, fallbacks) at least every FAIR_EVERY datagrams or FAIR_NS, so neither
 * starves; asleep, it waits in the kernel on its own socket.
 * Sender: the first datagram to a destination looks the registry up (then cached per socket,
 * revalidated per datagram with one load of the registry state word, and the owner's
 * liveness every LIVE_CHECK_NS); a live inbox is opened through /proc/PID/fd/N, checked
 * (seals, nonce) and mapped once per process. An unbound sender is bound to an ephemeral port
 * first, as the kernel would on its first send, so that the receiver reports the real source
 * address and replies reach it. */
#include "preload/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/inbox.h"
#include "platform/linux.h"
#include "preload/agg.h"
#include "preload/fdtab.h"
#include "preload/real.h"
#include "preload/sock.h"

#define DEST_CACHE 8                 /* destinations remembered per sending socket */
#define NEG_TTL_NS 100000000ull       /* a destination without inbox is looked up again after */
#define LIVE_CHECK_NS 100000000ull    /* a receiver's liveness is re-checked after */
#define ROUTE_TTL_NS 1000000000ull    /* source address choice cached for */
#define FAIR_EVERY 64                 /* the kernel queue is looked at after this many ... */
#define FAIR_NS 50000ull              /* ... inbox datagrams, or this long */
#define KERN_RECENT_NS 100000000ull   /* kernel traffic this recent: look there first */
#define FAIR_IDLE_NS 1000000ull       /* ... or this long without recent kernel traffic */
#define LOCK_SPIN_NS 20000ull         /* a producer waits this long for the inbox lock */
#define FULL_WAIT_NS 2000000ull       /* a blocking sender waits this long for space */
#define MAX_PEERS 256
#define UDP_MAX4 65507u
#define UDP_MAX6 65527u

/* Another socket's inbox, mapped once per process. */
struct peer {
	int refs;        /* destination cache entries pointing here (under peers_lock) */
	int dead;        /* withdrawn, corrupt or owner gone: no new datagrams */
	int slot;        /* registry slot and the state word it had when we attached */
	uint32_t state;
	uint32_t pid;
	uint64_t start;
	struct nsk_inbox ib;
	int waker[2];    /* our slot in its waker table for AF_INET, AF_INET6 (-1: none) */
	uint32_t waker_pid; /* the process that registered them (a forked child re-registers) */
	uint64_t checked_ns;
	uint64_t wake_key;       /* its wake-up secret, copied at attach */
	int may_defer;           /* sender and receiver may run at once (see wake_receiver) */
	struct nsk_src wake_dst; /* where our wake-up datagrams go (set at attach) */
	struct nsk_agg agg; /* packet aggregation of our wake-ups to this inbox */
	pthread_mutex_t wlock; /* waker registration */
};

struct dest {
	int valid;
	struct nsk_src dst;
	struct peer *p;      /* NULL: no inbox (kernel) until neg_until */
	uint64_t neg_until;
	struct nsk_src src;  /* the source address the kernel would use */
	uint32_t conn_seq;   /* the receiver's conn_seq when conn_state was computed (+1) */
	int conn_state;      /* 0: receiver not connected, 1: connected to us, 2: to another */
};

struct nsk_udp {
	/* receiver */
	int inbox_fd;         /* our inbox memfd, -1 when closed */
	struct nsk_inbox ib;  /* mapped while ib.h != NULL (until the last user is gone) */
	int reg_slot;
	int registered;       /* published in the registry and not withdrawn */
	int reg_failed;       /* do not try again (no domain, SO_REUSEPORT, port shared) */
	int v6only;
	int kern_pending;     /* a real datagram was seen at the head of the kernel queue */
	uint64_t kern_seq;    /* bumped whenever kern_pending is set (EPOLLET signature) */
	unsigned since_kern;  /* inbox datagrams delivered since the last kernel look */
	uint64_t kern_ns;
	uint64_t kern_data_ns; /* when the kernel last gave us a real datagram */
	/* both */
	int bound;            /* the kernel socket has a local port */
	struct nsk_src local;
	int connected;
	struct nsk_src peer;
	int corked;           /* UDP_CORK: datagrams are assembled by the kernel */
	uint64_t wake_key;    /* our inbox's wake-up secret (private copy) */
	uint64_t cpus;        /* CPUs this process may run on (at creation) */
	int sleeping;         /* a blocking receive waits in the kernel (see wake_seen) */
	atomic_int ready;     /* the inbox (ib, wake_key) is complete: release/acquire */
	atomic_int plain_waiters; /* receives blocked in the kernel from before the inbox */
	int polled;           /* poll/epoll waited on the kernel fd before the inbox existed */
	uint64_t spin_cur;    /* adaptive spin budget of blocking receives (ns) */
	unsigned spin_probe;
	uint64_t scpus;       /* the inbox's sender_cpus as last read, and when (it sits on */
	uint64_t scpus_ns;    /* the producers' lock line: read every 100 ms, not per receive) */
	/* sender */
	struct dest dests[DEST_CACHE];
};

static pthread_mutex_t peers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer *peers[MAX_PEERS];
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static int wake_fd[2] = {-1, -1}; /* AF_INET, AF_INET6 */
static uint16_t wake_port[2];
static pid_t wake_owner;
/* Our inbox memfds, so that an application closing one (or dup2-ing over it) is noticed. */
#define MARK_FDS 65536
static _Atomic uint8_t inbox_mark[MARK_FDS];
static struct nsk_udp *owned[1024];
static int n_owned;

#define CADD(x, n) nsk_store64(&(x), nsk_load64(&(x)) + (n))

static void udp_wake_fn(struct nsk_agg *a, uint32_t bits);

/* The socket's inbox is complete and usable (acquire pairs with the release in do_register). */
static inline int has_inbox(const struct nsk_udp *u)
{
	return atomic_load_explicit(&((struct nsk_udp *)u)->ready, memory_order_acquire);
}

static int fam_idx(uint16_t family)
{
	return family == AF_INET6;
}

/* ---------------------------------------------------------------- addresses ----------- */

static int to_src(const struct sockaddr *sa, socklen_t len, struct nsk_src *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;
		out->family = AF_INET;
		memcpy(out->addr, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		out->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			out->family = AF_INET;
			memcpy(out->addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			if (in6->sin6_scope_id)
				return -EINVAL; /* link-local with a scope: leave it to the kernel */
			out->family = AF_INET6;
			memcpy(out->addr, &in6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* Format @a as the kernel reports it to a socket of family @sock_family. */
static socklen_t from_src(const struct nsk_src *a, int sock_family, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (sock_family == AF_INET) {
		struct sockaddr_in *in = (void *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (void *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(a->port);
	if (a->family == AF_INET) {
		in6->sin6_addr.s6_addr[10] = 0xff;
		in6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&in6->sin6_addr.s6_addr[12], a->addr, 4);
	} else {
		memcpy(&in6->sin6_addr, a->addr, 16);
	}
	return sizeof(*in6);
}

static int src_equal(const struct nsk_src *a, const struct nsk_src *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static int is_wildcard(const struct nsk_src *a)
{
	static const uint8_t zero[16];
	return memcmp(a->addr, zero, a->family == AF_INET ? 4 : 16) == 0;
}

static int is_loopback(const struct nsk_src *a)
{
	static const uint8_t lo6[16] = {[15] = 1};
	return a->family == AF_INET ? a->addr[0] == 127 : memcmp(a->addr, lo6, 16) == 0;
}

/* Multicast, broadcast and the unspecified address stay with the kernel. */
static int kernel_only_dst(const struct nsk_src *d)
{
	if (d->port == 0 || is_wildcard(d))
		return 1;
	if (d->family == AF_INET)
		return (d->addr[0] & 0xf0) == 0xe0 || (d->addr[0] == 255 && d->addr[1] == 255 &&
						       d->addr[2] == 255 && d->addr[3] == 255);
	return d->addr[0] == 0xff || (d->addr[0] == 0xfe && (d->addr[1] & 0xc0) == 0x80);
}

/* The source address the kernel picks for a datagram from a socket bound to a wildcard
 * address to @dst, and whether @dst is an address of this host. Cached process-wide. */
struct route {
	struct nsk_src dst; /* port ignored */
	struct nsk_src src;
	int local;
	uint64_t t;
};
static struct route routes[16];
static pthread_mutex_t route_lock = PTHREAD_MUTEX_INITIALIZER;

static int route_probe(const struct nsk_src *dst, int sock_family, struct nsk_src *src, int *local)
{
	uint64_t now = nsk_now_ns();
	unsigned h = (dst->addr[3] ^ dst->addr[15] ^ dst->family) & 15;
	pthread_mutex_lock(&route_lock);
	struct route *r = &routes[h];
	if (r->t && now - r->t < ROUTE_TTL_NS && r->dst.family == dst->family &&
	    !memcmp(r->dst.addr, dst->addr, 16) && r->src.family) {
		*src = r->src;
		*local = r->local;
		pthread_mutex_unlock(&route_lock);
		return 0;
	}
	pthread_mutex_unlock(&route_lock);
	struct nsk_src d = *dst;
	d.port = 9; /* any non-zero port: connect() on UDP sends nothing */
	struct sockaddr_storage ss;
	socklen_t sl = from_src(&d, sock_family == AF_INET6 ? AF_INET6 : AF_INET, &ss);
	int fd = REAL(socket)(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r2 = REAL(connect)(fd, (struct sockaddr *)&ss, sl);
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	if (r2 == 0)
		r2 = getsockname(fd, (struct sockaddr *)&la, &ll);
	int e = errno;
	REAL(close)(fd);
	if (r2 < 0)
		return -e;
	struct nsk_src s;
	if (to_src((struct sockaddr *)&la, ll, &s) < 0)
		return -EAFNOSUPPORT;
	s.port = 0;
	*src = s;
	*local = is_loopback(dst) || (s.family == dst->family &&
				      !memcmp(s.addr, dst->addr, dst->family == AF_INET ? 4 : 16));
	pthread_mutex_lock(&route_lock);
	r->dst = *dst;
	r->dst.port = 0;
	r->src = s;
	r->local = *local;
	r->t = now;
	pthread_mutex_unlock(&route_lock);
	return 0;
}

static int fill_local(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	if (getsockname(s->fd, (struct sockaddr *)&la, &ll) < 0 ||
	    to_src((struct sockaddr *)&la, ll, &u->local) < 0)
		return -EAFNOSUPPORT;
	u->bound = u->local.port != 0;
	return 0;
}

/* ---------------------------------------------------------------- objects ------------- */

int nsk_udp_wanted(int domain, int type, int protocol)
{
	return (domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_DGRAM &&
	       (protocol == 0 || protocol == IPPROTO_UDP);
}

struct nsk_sock *nsk_udp_new(int fd, int domain, int type)
{
	struct nsk_udp *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	struct nsk_sock *s = nsk_sock_new(fd, domain, NSK_CK_UDP);
	if (!s) {
		free(u);
		return NULL;
	}
	u->inbox_fd = -1;
	u->reg_slot = -1;
	s->udp = u;
	s->nonblock = !!(type & SOCK_NONBLOCK);
	u->cpus = nsk_cpu_mask();
	u->spin_cur = nsk_g.spin_ns;
	nsk_store32(&s->conn->rx_crossed, 1); /* no TCP prefix: readiness is ours (epoll ET) */
	return s;
}

struct nsk_sock *nsk_udp_enter(int fd)
{
	struct nsk_sock *s = nsk_fd_get(fd);
	if (!s || s->kind != NSK_CK_UDP)
		return NULL;
	s = nsk_sock_enter(fd);
	if (s && (s->kind != NSK_CK_UDP || !s->udp)) {
		nsk_sock_leave(s);
		return NULL;
	}
	return s;
}

static void peer_put_locked(struct peer *p)
{
	if (--p->refs > 0 || !p->dead)
		return;
	for (int i = 0; i < MAX_PEERS; i++)
		if (peers[i] == p)
			peers[i] = NULL;
	if (p->waker_pid == (uint32_t)getpid())
		for (int f = 0; f < 2; f++)
			nsk_inbox_waker_del(&p->ib, p->waker[f], p->waker_pid);
	nsk_agg_fini(&p->agg);
	nsk_inbox_unmap(&p->ib);
	pthread_mutex_destroy(&p->wlock);
	free(p);
}

static void dest_drop(struct dest *d)
{
	if (d->p) {
		pthread_mutex_lock(&peers_lock);
		peer_put_locked(d->p);
		pthread_mutex_unlock(&peers_lock);
	}
	memset(d, 0, sizeof(*d));
}

static void inbox_fd_note(struct nsk_udp *u)
{
	pthread_mutex_lock(&peers_lock);
	if (n_owned < (int)(sizeof(owned) / sizeof(owned[0])))
		owned[n_owned++] = u;
	if (u->inbox_fd < MARK_FDS)
		atomic_store_explicit(&inbox_mark[u->inbox_fd], 1, memory_order_relaxed);
	pthread_mutex_unlock(&peers_lock);
}

/* Close our inbox memfd (unless the application already closed it). */
static void inbox_fd_forget(struct nsk_udp *u)
{
	pthread_mutex_lock(&peers_lock);
	for (int i = 0; i < n_owned; i++)
		if (owned[i] == u) {
			owned[i] = owned[--n_owned];
			break;
		}
	if (u->inbox_fd >= 0) {
		if (u->inbox_fd < MARK_FDS)
			atomic_store_explicit(&inbox_mark[u->inbox_fd], 0, memory_order_relaxed);
		REAL(close)(u->inbox_fd);
		u->inbox_fd = -1;
	}
	pthread_mutex_unlock(&peers_lock);
}

/* Withdraw our inbox: senders see `closed` (or the registry change) and use the kernel. */
static void unregister(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	if (!u->registered)
		return;
	u->registered = 0;
	/* Release pairs with the senders' acquire in peer_usable(). */
	nsk_store32_release(&u->ib.h->closed, 1);
	nsk_registry_remove(&nsk_g.dom.reg, u->reg_slot, getpid());
	u->reg_slot = -1;
	inbox_fd_forget(u);
}

void nsk_udp_release(struct nsk_sock *s)
{
	if (s->udp)
		unregister(s);
}

void nsk_udp_free(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	if (!u)
		return;
	unregister(s);
	for (int i = 0; i < DEST_CACHE; i++)
		dest_drop(&u->dests[i]);
	nsk_inbox_unmap(&u->ib);
	s->udp = NULL;
	free(u);
}

/* ---------------------------------------------------------------- registration -------- */

/* Publish our connect() peer in the inbox (senders then wake us from the peer's socket). */
static void publish_conn(struct nsk_udp *u)
{
	struct nsk_inbox_hdr *h = u->ib.h;
	if (!h || !u->registered)
		return;
	uint32_t q = nsk_load32(&h->conn_seq);
	nsk_store32(&h->conn_seq, q | 1);
	/* Seqlock writer: the odd count is visible before the fields change (pairs with the
	 * reader's acquire fence before its re-check in peer_conn). */
	atomic_thread_fence(memory_order_release);
	nsk_store32((uint32_t *)&h->conn_family,
		    u->connected ? (uint32_t)u->peer.port << 16 | u->peer.family : 0);
	for (int i = 0; i < 16; i += 4) {
		uint32_t w;
		memcpy(&w, u->peer.addr + i, 4);
		nsk_store32((uint32_t *)(h->conn_addr + i), u->connected ? w : 0);
	}
	/* Release pairs with the reader's acquire load of conn_seq: fields first. */
	nsk_store32_release(&h->conn_seq, (q | 1) + 1);
}


static uint64_t inbox_size_for(int rcvbuf)
{
	static uint64_t env_size;
	if (!env_size) {
		const char *v = getenv("NEARSOCK_UDP_INBOX");
		uint64_t x = 0;
		if (v && *v) {
			char *end;
			x = strtoull(v, &end, 0);
			if (*end == 'k' || *end == 'K')
				x <<= 10;
			else if (*end == 'm' || *end == 'M')
				x <<= 20;
		}
		env_size = x >= NSK_INBOX_MIN && x <= NSK_INBOX_MAX && !(x & (x - 1)) ? x : (256u << 10);
	}
	uint64_t sz = env_size;
	while (sz < (uint64_t)rcvbuf && sz < (16u << 20))
		sz <<= 1;
	return sz;
}

static uint64_t limit_for(int rcvbuf, uint64_t size)
{
	uint64_t l = rcvbuf > 0 ? (uint64_t)rcvbuf : size;
	return l > size ? size : l;
}

static int wake_sock(int family, uint16_t *port);

/* A thread of ours may be blocked in the kernel on this socket since before the inbox existed
 * (a receive, poll or epoll): nobody would wake it for inbox datagrams. One keyed wake-up
 * datagram to our own address makes it look again (the key keeps it from the application). */
static void self_wake(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	struct nsk_src me = u->local;
	if (is_wildcard(&me)) {
		if (me.family == AF_INET) {
			me.addr[0] = 127;
			me.addr[3] = 1;
		} else {
			me.addr[15] = 1;
		}
	}
	uint16_t port;
	int fd = wake_sock(me.family, &port);
	if (fd < 0)
		return;
	/* Registered as a waker of our own inbox: the waiting receive may see only the first
	 * bytes of the datagram (a short buffer), the source port identifies it then. */
	if (nsk_inbox_waker_add(&u->ib, (uint32_t)nsk_g.pid, nsk_g.start_time, me.family, port) < 0)
		return;
	struct sockaddr_storage ss;
	socklen_t sl = from_src(&me, me.family, &ss);
	struct nsk_wake_dgram w = {NSK_WAKE_MAGIC, u->wake_key, nsk_now_ns()};
	int saved = errno;
	REAL(sendto)(fd, &w, sizeof(w), MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
	errno = saved;
}

/* Publish an inbox for bound socket @s (no-op when done, impossible or not wanted). */
static void do_register(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	if (u->registered || u->reg_failed || has_inbox(u))
		return;
	if (!nsk_domain_ready() || fill_local(s) < 0 || !u->bound) {
		if (!nsk_domain_ready())
			u->reg_failed = 1;
		return;
	}
	int one = 0;
	socklen_t ol = sizeof(one);
	/* SO_REUSEPORT spreads datagrams over several sockets: only the kernel knows where. */
	if (REAL(getsockopt)(s->fd, SOL_SOCKET, SO_REUSEPORT, &one, &ol) == 0 && one) {
		u->reg_failed = 1;
		return;
	}
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = u->local.family;
	k.port = u->local.port;
	memcpy(k.addr, u->local.addr, 16);
	k.netns = nsk_g.netns;
	if (s->family == AF_INET6 && u->local.family == AF_INET6) {
		int v6 = 0;
		ol = sizeof(v6);
		if (REAL(getsockopt)(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, &ol) == 0 && v6)
			k.flags |= NSK_RE_V6ONLY;
		u->v6only = v6;
	}
	/* The same key held by a live process: a socket sharing the port with SO_REUSEADDR. */
	struct nsk_reg_entry e;
	struct nsk_reg_key lk = k;
	lk.flags |= NSK_RE_UDP;
	int slot = nsk_registry_lookup(&nsk_g.dom.reg, &lk, 1, &e);
	if (slot >= 0 && e.port == k.port && !memcmp(e.addr, k.addr, 16) && e.family == k.family) {
		if (nsk_proc_alive((pid_t)e.pid, e.start_time)) {
			u->reg_failed = 1;
			nsk_log(NSK_LOG_INFO, "udp fd %d port %u: shared with pid %u: kernel only",
				s->fd, k.port, e.pid);
			return;
		}
	}
	int rcvbuf = 0;
	ol = sizeof(rcvbuf);
	REAL(getsockopt)(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &ol);
	uint64_t size = inbox_size_for(rcvbuf);
	struct nsk_inbox ib; /* published in u->ib (with `ready`) only once complete */
	int fd = nsk_inbox_create(&ib, size, getpid(), nsk_g.start_time);
	if (fd < 0) {
		u->reg_failed = 1;
		nsk_log(NSK_LOG_WARN, "udp fd %d: no inbox (%s): kernel only", s->fd, strerror(-fd));
		return;
	}
	nsk_store64(&ib.h->limit, limit_for(rcvbuf, size));
	ib.h->owner_cpus = u->cpus;
	/* Born armed: a thread of ours may already wait in the kernel on this socket (it could
	 * not arm an inbox that did not exist); the first datagram then wakes it — from the
	 * peer's own socket if we are connected, which self_wake() below cannot do. At worst
	 * one wake-up datagram too many, filtered like any other. */
	ib.h->armed = NSK_ARM_FD;
	slot = nsk_registry_insert_inbox(&nsk_g.dom.reg, &k, getpid(), nsk_g.start_time, fd,
					 ib.nonce);
	if (slot < 0) {
		REAL(close)(fd);
		nsk_inbox_unmap(&ib);
		u->reg_failed = 1;
		nsk_log(NSK_LOG_WARN, "udp fd %d port %u: registry full: kernel only", s->fd, k.port);
		return;
	}
	u->ib = ib;
	u->inbox_fd = fd;
	u->wake_key = ib.h->wake_key;
	inbox_fd_note(u);
	u->reg_slot = slot;
	u->registered = 1;
	struct nsk_conn *c = s->conn;
	c->family = k.family;
	memcpy(c->laddr, k.addr, 16);
	c->lport = k.port;
	nsk_store32(&c->mode, NSK_MODE_SHM);
	if (u->connected)
		publish_conn(u);
	/* Sequentially consistent: with the receivers' increment of plain_waiters and re-check
	 * of `ready` in udp_recv, either they see the inbox or we see them (Dekker). */
	atomic_store_explicit(&u->ready, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&u->plain_waiters, memory_order_seq_cst) || u->polled)
		self_wake(s);
	nsk_log(NSK_LOG_DEBUG, "udp fd %d port %u: inbox %llu KiB in slot %d", s->fd, k.port,
		(unsigned long long)(size >> 10), slot);
}

void nsk_udp_bound(int fd)
{
	int saved = errno;
	struct nsk_sock *s = nsk_udp_enter(fd);
	if (s) {
		nsk_shared_lock(&s->conn->rxlock);
		do_register(s);
		nsk_shared_unlock(&s->conn->rxlock);
		nsk_sock_leave(s);
	}
	errno = saved;
}

int nsk_udp_connect(struct nsk_sock *s, const struct sockaddr *sa, socklen_t len)
{
	struct nsk_udp *u = s->udp;
	int r = REAL(connect)(s->fd, sa, len);
	int e = errno;
	if (r == 0) {
		struct nsk_src p;
		if (sa && len >= sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC) {
			u->connected = 0;
		} else if (sa && to_src(sa, len, &p) == 0) {
			u->peer = p;
			u->connected = 1;
		} else {
			u->connected = 0; /* an address we do not model: the kernel only */
		}
		fill_local(s);
		s->conn->rport = u->connected ? u->peer.port : 0;
		nsk_shared_lock(&s->conn->rxlock);
		publish_conn(u);
		nsk_shared_unlock(&s->conn->rxlock);
	}
	nsk_sock_leave(s);
	errno = e;
	return r;
}

void nsk_udp_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	if (!((level == SOL_SOCKET && name == SO_RCVBUF) || (level == IPPROTO_UDP && name == UDP_CORK) ||
	      (level == SOL_SOCKET && (name == SO_TIMESTAMP || name == SO_TIMESTAMPNS ||
				       name == SO_TIMESTAMPING || name == SO_RXQ_OVFL)) ||
	      (level == IPPROTO_IP && (name == IP_PKTINFO || name == IP_RECVTOS || name == IP_RECVTTL ||
				       name == IP_RECVOPTS || name == IP_RETOPTS || name == IP_RECVERR ||
				       name == IP_RECVORIGDSTADDR)) ||
	      (level == IPPROTO_IPV6 && (name == IPV6_RECVPKTINFO || name == IPV6_RECVTCLASS ||
					 name == IPV6_RECVHOPLIMIT || name == IPV6_RECVERR))))
		return;
	int saved = errno;
	struct nsk_sock *s = nsk_udp_enter(fd);
	if (!s) {
		errno = saved;
		return;
	}
	struct nsk_udp *u = s->udp;
	int on = len >= sizeof(int) && *(const int *)val != 0;
	nsk_shared_lock(&s->conn->rxlock);
	if (level == SOL_SOCKET && name == SO_RCVBUF) {
		if (has_inbox(u)) {
			int rcvbuf = 0;
			socklen_t ol = sizeof(rcvbuf);
			if (REAL(getsockopt)(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &ol) == 0)
				nsk_store64(&u->ib.h->limit, limit_for(rcvbuf, u->ib.size));
		}
	} else if (level == IPPROTO_UDP) {
		u->corked = on;
	} else if (on) {
		/* The application wants ancillary data with every datagram (timestamps, packet
		 * info, ...): only the kernel has it. Withdraw the inbox; what it holds is still
		 * delivered. */
		unregister(s);
		u->reg_failed = 1;
	}
	nsk_shared_unlock(&s->conn->rxlock);
	nsk_sock_leave(s);
	errno = saved;
}

void nsk_udp_internal_fd_check(int fd)
{
	if (fd < 0 || (fd != wake_fd[0] && fd != wake_fd[1] &&
		       (fd >= MARK_FDS || !atomic_load_explicit(&inbox_mark[fd], memory_order_relaxed))))
		return;
	pthread_mutex_lock(&wake_lock);
	for (int f = 0; f < 2; f++)
		if (wake_fd[f] == fd)
			wake_fd[f] = -1; /* the application closes it: a new one on next use */
	pthread_mutex_unlock(&wake_lock);
	/* An inbox memfd: new senders cannot open it any more (mapped senders keep working),
	 * and we must not close the number again later. */
	pthread_mutex_lock(&peers_lock);
	for (int i = 0; i < n_owned; i++)
		if (owned[i]->inbox_fd == fd) {
			owned[i]->inbox_fd = -1;
			owned[i] = owned[--n_owned];
			break;
		}
	atomic_store_explicit(&inbox_mark[fd], 0, memory_order_relaxed);
	pthread_mutex_unlock(&peers_lock);
}

void nsk_udp_before_exec(void)
{
	for (int i = 0; i < 4096; i++) {
		struct nsk_sock *s = nsk_udp_enter(i);
		if (!s)
			continue;
		nsk_shared_lock(&s->conn->rxlock);
		unregister(s);
		nsk_shared_unlock(&s->conn->rxlock);
		nsk_sock_leave(s);
	}
}

/* ---------------------------------------------------------------- wake sockets -------- */

static void wake_after_fork(void)
{
	/* The child must not send from the parent's ports (the parent registered them, and may
	 * die while we live): it opens its own on first use. */
	for (int f = 0; f < 2; f++) {
		if (wake_fd[f] >= 0)
			REAL(close)(wake_fd[f]);
		wake_fd[f] = -1;
	}
	pthread_mutex_init(&wake_lock, NULL);
	pthread_mutex_init(&peers_lock, NULL);
	pthread_mutex_init(&route_lock, NULL);
	nsk_agg_after_fork();
}

__attribute__((constructor)) static void udp_ctor(void)
{
	pthread_atfork(NULL, NULL, wake_after_fork);
}

/* Our wake socket for @family (127.0.0.1 or ::1, bound, non-blocking). fd or -errno. */
static int wake_sock(int family, uint16_t *port)
{
	int f = fam_idx((uint16_t)family);
	pthread_mutex_lock(&wake_lock);
	if (wake_fd[f] < 0 || wake_owner != nsk_g.pid) {
		int fd = REAL(socket)(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		socklen_t sl;
		if (family == AF_INET) {
			struct sockaddr_in *in = (void *)&ss;
			in->sin_family = AF_INET;
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			sl = sizeof(*in);
		} else {
			struct sockaddr_in6 *in6 = (void *)&ss;
			in6->sin6_family = AF_INET6;
			in6->sin6_addr = in6addr_loopback;
			sl = sizeof(*in6);
		}
		/* No SO_REUSEADDR: while we hold the port, no application socket can bind it, so a
		 * datagram from it is always ours. */
		if (fd >= 0 && REAL(bind)(fd, (struct sockaddr *)&ss, sl) == 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			wake_fd[f] = fd;
			wake_port[f] = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
							      : ((struct sockaddr_in6 *)&ss)->sin6_port);
			wake_owner = nsk_g.pid;
		} else {
			int e = errno;
			if (fd >= 0)
				REAL(close)(fd);
			pthread_mutex_unlock(&wake_lock);
			return -e;
		}
	}
	int fd = wake_fd[f];
	*port = wake_port[f];
	pthread_mutex_unlock(&wake_lock);
	return fd;
}

/* Register our wake socket of @family with peer @p. 0 or -errno. Called with p->wlock. */
static int peer_waker(struct peer *p, uint16_t family)
{
	int f = fam_idx(family);
	uint32_t me = (uint32_t)nsk_g.pid;
	uint16_t port;
	int fd = wake_sock(family, &port);
	if (fd < 0)
		return fd;
	if (p->waker_pid != me) {
		p->waker[0] = p->waker[1] = -1;
		p->waker_pid = me;
	}
	if (p->waker[f] >= 0 && p->ib.h->wakers[p->waker[f]].port == port)
		return 0;
	int slot = nsk_inbox_waker_add(&p->ib, me, nsk_g.start_time, family, port);
	if (slot < 0)
		return slot;
	p->waker[f] = slot;
	return 0;
}

/* Is a kernel datagram from @from a wake-up? @w: its contents when it is exactly one
 * wake-up datagram long (else NULL). A wake-up carries the inbox's secret key, which only
 * processes that mapped the inbox know: that alone identifies it (a connected socket gets
 * wake-ups from its peer's own socket, the only source its kernel socket accepts). A datagram
 * from a loopback port that a live nearsock process registered as its wake socket is one as
 * well, whatever the caller's buffer showed of it: no application socket can send from there. */
static int is_wake(struct nsk_udp *u, const struct sockaddr_storage *from, socklen_t len,
		   const struct nsk_wake_dgram *w)
{
	if (!has_inbox(u))
		return 0;
	if (w && w->magic == NSK_WAKE_MAGIC && w->key == u->wake_key)
		return 1;
	if (u->connected || !from)
		return 0;
	struct nsk_src a;
	if (to_src((const struct sockaddr *)from, len, &a) < 0 || !is_loopback(&a))
		return 0;
	static const uint8_t lo4[4] = {127, 0, 0, 1};
	if (a.family == AF_INET && memcmp(a.addr, lo4, 4))
		return 0;
	uint32_t pid;
	int i = nsk_inbox_waker_find(&u->ib, a.family, a.port, &pid);
	if (i < 0)
		return 0;
	/* A dead registrant's port may have been taken by an application socket since. */
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
		nsk_inbox_waker_del(&u->ib, i, pid);
		return 0;
	}
	return 1;
}

/* The receiver's connect() peer, if it published one. */
static int peer_conn(struct peer *p, struct nsk_src *out)
{
	struct nsk_inbox_hdr *h = p->ib.h;
	for (int tries = 0; tries < 8; tries++) {
		/* Acquire pairs with the release store in publish_conn. */
		uint32_t q1 = nsk_load32_acquire(&h->conn_seq);
		if (q1 & 1)
			continue;
		uint32_t fp = nsk_load32((uint32_t *)&h->conn_family);
		for (int i = 0; i < 16; i += 4) {
			uint32_t w = nsk_load32((uint32_t *)(h->conn_addr + i));
			memcpy(out->addr + i, &w, 4);
		}
		atomic_thread_fence(memory_order_acquire);
		if (nsk_load32(&h->conn_seq) != q1)
			continue;
		out->family = (uint16_t)fp;
		out->port = (uint16_t)(fp >> 16);
		return out->family != 0;
	}
	return 0;
}

/* ---------------------------------------------------------------- peers (senders) ----- */

static struct peer *peer_attach(const struct nsk_reg_entry *e, int slot,
				const struct nsk_src *dst)
{
	pthread_mutex_lock(&peers_lock);
	for (int i = 0; i < MAX_PEERS; i++) {
		struct peer *p = peers[i];
		if (p && !p->dead && p->slot == slot && p->state == e->state) {
			p->refs++;
			pthread_mutex_unlock(&peers_lock);
			return p;
		}
	}
	pthread_mutex_unlock(&peers_lock);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/fd/%u", e->pid, e->inbox_fd);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct peer *p = calloc(1, sizeof(*p));
	if (!p) {
		REAL(close)(fd);
		return NULL;
	}
	int r = nsk_inbox_attach(&p->ib, fd, e->inbox_nonce);
	REAL(close)(fd);
	if (r < 0 || p->ib.h->owner_pid != e->pid) {
		if (r == 0)
			nsk_inbox_unmap(&p->ib);
		free(p);
		nsk_log(NSK_LOG_DEBUG, "udp: inbox of pid %u not usable (%s)", e->pid,
			strerror(r < 0 ? -r : EPROTO));
		return NULL;
	}
	p->refs = 1;
	p->slot = slot;
	p->state = e->state;
	p->pid = e->pid;
	p->start = e->start_time;
	p->waker[0] = p->waker[1] = -1;
	p->checked_ns = nsk_now_ns();
	p->wake_dst = *dst;
	uint64_t cpus = nsk_cpu_mask();
	uint64_t owner = nsk_load64(&p->ib.h->owner_cpus);
	p->may_defer = !cpus || !owner || __builtin_popcountll(cpus | owner) > 1;
	if (cpus)
		atomic_fetch_or_explicit(NSK_A64(&p->ib.h->sender_cpus), cpus, memory_order_relaxed);
	else /* unknown: assume senders elsewhere */
		atomic_fetch_or_explicit(NSK_A64(&p->ib.h->sender_cpus), ~0ull, memory_order_relaxed);
	p->wake_key = p->ib.h->wake_key;
	pthread_mutex_init(&p->wlock, NULL);
	nsk_agg_init(&p->agg, udp_wake_fn, p, &p->ib.h->svc_ns);
	pthread_mutex_lock(&peers_lock);
	int i;
	for (i = 0; i < MAX_PEERS && peers[i]; i++)
		;
	if (i == MAX_PEERS) {
		pthread_mutex_unlock(&peers_lock);
		nsk_agg_fini(&p->agg);
		nsk_inbox_unmap(&p->ib);
		free(p);
		return NULL;
	}
	peers[i] = p;
	pthread_mutex_unlock(&peers_lock);
	return p;
}

/* May we still put datagrams into @p? One registry load and one header load per datagram,
 * a liveness check every LIVE_CHECK_NS. */
static int peer_usable(struct peer *p, uint64_t now)
{
	if (p->dead)
		return 0;
	/* Acquire pairs with the owner's release store of `closed` in unregister(). */
	if (nsk_load32(&nsk_g.dom.reg.e[p->slot].state) != p->state ||
	    nsk_load32_acquire(&p->ib.h->closed)) {
		p->dead = 1;
		return 0;
	}
	if (now - p->checked_ns > LIVE_CHECK_NS) {
		p->checked_ns = now;
		if (!nsk_proc_alive((pid_t)p->pid, p->start)) {
			nsk_registry_mark_dead(&nsk_g.dom.reg, p->slot, p->state);
			p->dead = 1;
			return 0;
		}
	}
	return 1;
}

/* Make sure the kernel socket has a local address (bind to an ephemeral port as the kernel
 * would on the first send) and publish our own inbox so that replies come back the same way. */
static int ensure_bound(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	if (!u->bound && fill_local(s) == 0 && !u->bound) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		ss.ss_family = (sa_family_t)s->family;
		socklen_t sl = s->family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6);
		if (REAL(bind)(s->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINVAL)
			return -errno;
		if (fill_local(s) < 0 || !u->bound)
			return -EADDRNOTAVAIL;
	}
	if (!u->registered && !u->reg_failed) {
		nsk_shared_lock(&s->conn->rxlock);
		do_register(s);
		nsk_shared_unlock(&s->conn->rxlock);
	}
	return u->bound ? 0 : -EADDRNOTAVAIL;
}

/* The inbox for destination @dst, from the socket's cache or the registry; fills the source
 * address. NULL: use the kernel. Called with the socket's txlock. */
static struct dest *dest_get(struct nsk_sock *s, const struct nsk_src *dst, uint64_t now)
{
	struct nsk_udp *u = s->udp;
	unsigned h = (dst->port ^ dst->addr[3] ^ dst->addr[15] ^ (dst->port >> 8)) % DEST_CACHE;
	struct dest *d = &u->dests[h];
	if (d->valid && src_equal(&d->dst, dst)) {
		if (d->p && peer_usable(d->p, now))
			return d;
		if (!d->p && now < d->neg_until)
			return NULL;
	}
	if (d->valid)
		dest_drop(d);
	d->valid = 1;
	d->dst = *dst;
	d->neg_until = now + NEG_TTL_NS;
	if (!nsk_domain_ready())
		return NULL;
	struct nsk_src src;
	int local = 0;
	if (route_probe(dst, s->family, &src, &local) < 0 || !local)
		return NULL;
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = dst->family;
	k.port = dst->port;
	memcpy(k.addr, dst->addr, 16);
	k.netns = nsk_g.netns;
	k.flags = NSK_RE_UDP;
	struct nsk_reg_entry e;
	int slot = nsk_registry_lookup(&nsk_g.dom.reg, &k, 1, &e);
	if (slot < 0 || !nsk_proc_alive((pid_t)e.pid, e.start_time))
		return NULL;
	if (ensure_bound(s) < 0)
		return NULL;
	struct peer *p = peer_attach(&e, slot, dst);
	if (!p)
		return NULL;
	pthread_mutex_lock(&p->wlock);
	int wr = peer_waker(p, p->wake_dst.family);
	pthread_mutex_unlock(&p->wlock);
	d->p = p;
	if (wr < 0) {
		dest_drop(d); /* cannot wake a sleeping receiver: the kernel it is */
		d->valid = 1;
		d->dst = *dst;
		d->neg_until = now + NEG_TTL_NS;
		return NULL;
	}
	d->src = is_wildcard(&u->local) ? src : u->local;
	d->src.port = u->local.port;
	if (d->src.family != dst->family) {
		dest_drop(d);
		return NULL;
	}
	return d;
}

/* Whether the receiver of @d is connect()ed, and to us: one load of its conn_seq (on the line
 * producers read anyway) per datagram, the full read only when it changed. */
static int dest_conn(struct dest *d)
{
	uint32_t q = nsk_load32_acquire(&d->p->ib.h->conn_seq);
	if (q + 1 != d->conn_seq) {
		struct nsk_src c;
		d->conn_state = peer_conn(d->p, &c) ? (src_equal(&c, &d->src) ? 1 : 2) : 0;
		d->conn_seq = q + 1;
	}
	return d->conn_state;
}

/* Deliver wake-up request @bits to the receiver of @d's inbox: through aggregation (may be
 * delayed, @may_defer) from our wake socket, or — the receiver is connect()ed to us — at
 * once from the sending socket itself, the only source its kernel socket accepts. */
static void wake_receiver(struct nsk_sock *s, struct dest *d, uint32_t bits, int may_defer,
			  uint64_t now)
{
	struct peer *p = d->p;
	if (dest_conn(d) == 1) {
		struct nsk_wake_dgram w = {NSK_WAKE_MAGIC, p->wake_key, now};
		struct sockaddr_storage ss;
		socklen_t sl = from_src(&d->dst, s->family, &ss);
		int saved = errno;
		REAL(sendto)(s->fd, &w, sizeof(w), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ss, sl);
		errno = saved;
		CADD(s->conn->wakes_sent, 1);
		return;
	}
	/* Delaying a wake-up pays only when the receiver can run meanwhile: on one shared CPU
	 * the flusher's own wake-ups would compete with both. */
	if (may_defer && p->may_defer && nsk_agg_defer(&p->agg, now, bits)) {
		CADD(s->conn->udp_deferred, 1);
		return;
	}
	nsk_agg_wake(&p->agg, bits);
	CADD(s->conn->wakes_sent, 1);
}

/* After a datagram was put: wake the receiver if it asked for it (event suppression), now
 * or — packet aggregation — within the container's bounds. */
static void peer_wake(struct nsk_sock *s, struct dest *d, uint64_t now)
{
	struct peer *p = d->p;
	if (nsk_agg_on_put(&p->agg, now))
		return; /* a wake-up is owed already: this datagram joins its container */
	uint32_t a = nsk_take(&p->ib.h->armed);
	if (a)
		wake_receiver(s, d, a, 1, now);
}

/* Deliver a wake-up to peer @a->ctx: a datagram from our wake socket to its kernel socket,
 * carrying the send time (the receiver measures the hand-over latency for the model). */
static void udp_wake_fn(struct nsk_agg *a, uint32_t bits)
{
	struct peer *p = a->ctx;
	if (bits & NSK_ARM_FUTEX)
		nsk_futex_bump(&p->ib.h->seq);
	if (!(bits & NSK_ARM_FD))
		return;
	uint16_t port;
	if (p->waker_pid != (uint32_t)nsk_g.pid && pthread_mutex_trylock(&p->wlock) == 0) {
		/* A forked child: its wake socket is its own (best effort; the key suffices). */
		peer_waker(p, p->wake_dst.family);
		pthread_mutex_unlock(&p->wlock);
	}
	int fd = wake_sock(p->wake_dst.family, &port);
	if (fd < 0)
		return;
	struct sockaddr_storage ss;
	socklen_t sl = from_src(&p->wake_dst, p->wake_dst.family, &ss);
	struct nsk_wake_dgram w = {NSK_WAKE_MAGIC, p->wake_key, nsk_now_ns()};
	int saved = errno;
	REAL(sendto)(fd, &w, sizeof(w), MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
	errno = saved;
}

/* ---------------------------------------------------------------- send ---------------- */

static ssize_t kernel_send(struct nsk_sock *s, const struct msghdr *m, int flags)
{
	ssize_t r = REAL(sendmsg)(s->fd, m, flags);
	if (r >= 0) {
		int saved = errno;
		CADD(s->conn->tx_tcp, (uint64_t)r);
		CADD(s->conn->tx_tcp_msgs, 1);
		if (!s->udp->bound)
			fill_local(s);
		errno = saved;
	}
	return r < 0 ? -errno : r;
}

/* Queue one datagram into @d's inbox. 0: queued or dropped (counted) — the datagram is
 * gone as far as the sender is concerned; -EAGAIN: use the kernel. */
static int inbox_send(struct nsk_sock *s, struct dest *d, const struct iovec *iov, int cnt,
		      size_t len, int nonblock, uint64_t now)
{
	struct peer *p = d->p;
	uint32_t me = (uint32_t)nsk_g.pid;
	uint64_t waited = 0;
	for (;;) {
		if (nsk_inbox_lock(&p->ib, me, LOCK_SPIN_NS) < 0)
			return -EAGAIN; /* a live producer holds it too long: the kernel path */
		int r = nsk_inbox_put(&p->ib, &d->src, iov, cnt, len);
		nsk_inbox_unlock(&p->ib);
		if (r == 0) {
			peer_wake(s, d, now);
			return 0;
		}
		if (r != -ENOBUFS) {
			p->dead = 1; /* corrupt indices: leave this inbox alone */
			return -EAGAIN;
		}
		/* Full. Make sure the receiver is awake, then — if we may block — give it the CPU
		 * (on a shared core it cannot drain while we run) for a bounded time. */
		nsk_agg_flush(&p->agg);
		uint32_t a = nsk_take(&p->ib.h->armed);
		if (a)
			wake_receiver(s, d, a, 0, now);
		if (nonblock || waited >= FULL_WAIT_NS || !peer_usable(p, now)) {
			nsk_inbox_drop(&p->ib);
			CADD(s->conn->udp_tx_drops, 1);
			return 0;
		}
		uint64_t t0 = nsk_now_ns();
		sched_yield();
		if (nsk_inbox_empty(&p->ib) == 0)
			nsk_cpu_relax();
		now = nsk_now_ns();
		waited += now - t0 + 1000;
	}
}

static ssize_t udp_send(struct nsk_sock *s, const struct msghdr *m, int flags)
{
	struct nsk_udp *u = s->udp;
	struct nsk_src dst;
	if (flags & (MSG_OOB | MSG_MORE | MSG_ERRQUEUE) || m->msg_controllen || u->corked ||
	    m->msg_iovlen > IOV_MAX)
		return kernel_send(s, m, flags);
	if (m->msg_name && m->msg_namelen) {
		if (to_src(m->msg_name, m->msg_namelen, &dst) < 0)
			return kernel_send(s, m, flags);
		/* What the kernel refuses or routes in its own way stays with it. */
		if ((s->family == AF_INET && ((struct sockaddr *)m->msg_name)->sa_family != AF_INET) ||
		    (s->family == AF_INET6 && dst.family == AF_INET && u->v6only))
			return kernel_send(s, m, flags);
	} else if (u->connected) {
		dst = u->peer;
	} else {
		return kernel_send(s, m, flags);
	}
	if (is_wildcard(&dst) && dst.port) {
		/* Linux sends a datagram for 0.0.0.0 (or ::) to this host: to the socket's own
		 * bound address, else to loopback (sockperf's default address). */
		if (!u->bound)
			fill_local(s);
		if (u->bound && !is_wildcard(&u->local) && u->local.family == dst.family) {
			memcpy(dst.addr, u->local.addr, 16);
		} else if (dst.family == AF_INET) {
			dst.addr[0] = 127;
			dst.addr[3] = 1;
		} else {
			dst.addr[15] = 1;
		}
	}
	size_t len = nsk_iov_total(m->msg_iov, (int)m->msg_iovlen);
	if (len > (s->family == AF_INET ? UDP_MAX4 : UDP_MAX6) || kernel_only_dst(&dst))
		return kernel_send(s, m, flags);
	if (s->family == AF_INET6 && dst.family == AF_INET6 && u->bound && u->local.family == AF_INET)
		return kernel_send(s, m, flags); /* a v6 socket bound to a v4-mapped address */
	int nonblock = (flags & MSG_DONTWAIT) || s->nonblock;
	uint64_t now = nsk_now_ns();
	struct nsk_conn *c = s->conn;
	nsk_shared_lock(&c->txlock);
	struct dest *d = dest_get(s, &dst, now);
	/* A receiver connect()ed to another peer drops our datagrams: the kernel does that (and
	 * we must not take its wake-up request, which only its peer can fulfil). */
	if (d && dest_conn(d) == 2)
		d = NULL;
	int r = d ? inbox_send(s, d, m->msg_iov, (int)m->msg_iovlen, len, nonblock, now) : -EAGAIN;
	nsk_shared_unlock(&c->txlock);
	if (r == -EAGAIN)
		return kernel_send(s, m, flags);
	CADD(c->tx_shm_bytes, len);
	CADD(c->tx_shm_msgs, 1);
	return (ssize_t)len;
}

/* ---------------------------------------------------------------- receive ------------- */

/* Fold a wake-up's hand-over latency into the inbox header (the aggregation model's
 * service time). */
static void wake_seen(struct nsk_sock *s, const struct nsk_wake_dgram *w)
{
	uint64_t now = nsk_now_ns();
	/* Only a wake-up that ended a sleep measures the hand-over: one found later in the
	 * queue (we did not sleep after all) waited for our next look, not for a wake-up. */
	if (w && s->udp->sleeping && now >= w->sent_ns && now - w->sent_ns < 1000000000ull)
		nsk_agg_service(&s->udp->ib.h->svc_ns, now - w->sent_ns);
	CADD(s->conn->ctl_bytes, 1);
}

/* The first bytes of a received datagram of @r bytes, if it may be a wake-up. */
static int wake_bytes(const struct msghdr *m, ssize_t r, struct nsk_wake_dgram *w)
{
	if (r != (ssize_t)sizeof(*w) || nsk_iov_total(m->msg_iov, (int)m->msg_iovlen) < sizeof(*w))
		return 0;
	size_t got = 0;
	for (size_t i = 0; i < m->msg_iovlen && got < sizeof(*w); i++) {
		size_t n = m->msg_iov[i].iov_len < sizeof(*w) - got ? m->msg_iov[i].iov_len
								  : sizeof(*w) - got;
		memcpy((char *)w + got, m->msg_iov[i].iov_base, n);
		got += n;
	}
	return 1;
}

/* One datagram from the kernel queue into @m (our own name buffer: we need the source).
 * Returns bytes, -errno, or -EINPROGRESS when it was a wake-up datagram (discarded). */
static ssize_t kernel_recv(struct nsk_sock *s, struct msghdr *m, int flags)
{
	struct nsk_udp *u = s->udp;
	struct nsk_wake_dgram w = {0}; /* (filled by recv; initialised for the analysers) */
	if (has_inbox(u) && nsk_iov_total(m->msg_iov, (int)m->msg_iovlen) < sizeof(w)) {
		/* The caller's buffer cannot show us a whole wake-up datagram: look first. */
		ssize_t pr = REAL(recv)(s->fd, &w, sizeof(w), MSG_PEEK | MSG_TRUNC | (flags & MSG_DONTWAIT));
		if (pr < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				u->kern_pending = 0;
			return -errno;
		}
		if (pr == (ssize_t)sizeof(w) && is_wake(u, NULL, 0, &w)) {
			REAL(recv)(s->fd, &w, sizeof(w), MSG_DONTWAIT);
			wake_seen(s, &w);
			return -EINPROGRESS;
		}
	}
	struct sockaddr_storage from;
	struct msghdr km = *m;
	km.msg_name = &from;
	km.msg_namelen = sizeof(from);
	ssize_t r = REAL(recvmsg)(s->fd, &km, flags);
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			u->kern_pending = 0;
		return -errno;
	}
	u->kern_pending = 0;
	int whole = wake_bytes(&km, (km.msg_flags & MSG_TRUNC) ? -1 : r, &w);
	if (is_wake(u, &from, km.msg_namelen, whole ? &w : NULL)) {
		if (flags & MSG_PEEK)
			REAL(recv)(s->fd, &w, sizeof(w), MSG_DONTWAIT);
		wake_seen(s, whole && w.magic == NSK_WAKE_MAGIC ? &w : NULL);
		return -EINPROGRESS;
	}
	if (m->msg_name) {
		socklen_t n = km.msg_namelen < m->msg_namelen ? km.msg_namelen : m->msg_namelen;
		memcpy(m->msg_name, &from, n);
	}
	m->msg_namelen = km.msg_namelen;
	m->msg_controllen = km.msg_controllen;
	m->msg_flags = km.msg_flags;
	u->kern_data_ns = nsk_now_ns();
	if (!(flags & MSG_PEEK)) {
		CADD(s->conn->rx_tcp, (uint64_t)r);
		CADD(s->conn->rx_tcp_msgs, 1);
	}
	return r;
}

/* One datagram from the inbox (consumer lock held). Bytes or -EAGAIN when empty. */
static ssize_t inbox_recv(struct nsk_sock *s, struct msghdr *m, int flags)
{
	struct nsk_udp *u = s->udp;
	struct nsk_dgram_rec rec;
	while (nsk_inbox_peek(&u->ib, &rec) == 1) {
		struct nsk_src from = {.family = rec.family, .port = rec.port};
		memcpy(from.addr, rec.addr, 16);
		if (u->connected && !src_equal(&from, &u->peer)) {
			nsk_inbox_pop(&u->ib, &rec); /* the kernel drops these for a connected socket */
			continue;
		}
		struct nsk_iovcur cur;
		nsk_iovcur_init(&cur, m->msg_iov, (int)m->msg_iovlen);
		size_t room = nsk_iov_total(m->msg_iov, (int)m->msg_iovlen);
		size_t n = nsk_inbox_copy(&u->ib, &rec, &cur, room);
		if (!(flags & MSG_PEEK)) {
			nsk_inbox_pop(&u->ib, &rec);
			CADD(s->conn->rx_shm_bytes, rec.len);
			CADD(s->conn->rx_shm_msgs, 1);
		}
		if (m->msg_name) {
			struct sockaddr_storage ss;
			socklen_t sl = from_src(&from, s->family, &ss);
			memcpy(m->msg_name, &ss, sl < m->msg_namelen ? sl : m->msg_namelen);
			m->msg_namelen = sl;
		} else {
			m->msg_namelen = 0;
		}
		m->msg_controllen = 0;
		m->msg_flags = rec.len > n ? MSG_TRUNC : 0;
		return (flags & MSG_TRUNC) ? (ssize_t)rec.len : (ssize_t)n;
	}
	return -EAGAIN;
}

static ssize_t udp_recv(struct nsk_sock *s, struct msghdr *m, int flags)
{
	struct nsk_udp *u = s->udp;
	if ((flags & (MSG_ERRQUEUE | MSG_OOB)) || m->msg_iovlen > IOV_MAX) {
		ssize_t r = REAL(recvmsg)(s->fd, m, flags);
		return r < 0 ? -errno : r;
	}
	while (!has_inbox(u)) {
		/* No inbox (yet): the kernel alone — but another thread may create the inbox
		 * while we sleep here; it then wakes us with a keyed datagram (self_wake). */
		atomic_fetch_add_explicit(&u->plain_waiters, 1, memory_order_seq_cst);
		ssize_t r = -EINPROGRESS;
		if (!has_inbox(u))
			r = kernel_recv(s, m, flags);
		atomic_fetch_sub_explicit(&u->plain_waiters, 1, memory_order_relaxed);
		if (r != -EINPROGRESS)
			return r;
	}
	int nonblock = (flags & MSG_DONTWAIT) || s->nonblock;
	struct nsk_conn *c = s->conn;
	struct nsk_inbox_hdr *h = u->ib.h;
	nsk_agg_flush_all(); /* we may be about to sleep: owe nobody a wake-up */
	for (;;) {
		nsk_shared_lock(&c->rxlock);
		uint64_t now = nsk_now_ns();
		/* Without recent kernel traffic the kernel is looked at less often (a sleep looks
		 * there anyway); with it, every FAIR_NS. */
		uint64_t fair = now - u->kern_data_ns < KERN_RECENT_NS ? FAIR_NS : FAIR_IDLE_NS;
		int kfirst = u->since_kern >= FAIR_EVERY || (u->since_kern && now - u->kern_ns > fair);
		ssize_t r = -EAGAIN;
		if (kfirst) {
			u->since_kern = 0;
			u->kern_ns = now;
			r = kernel_recv(s, m, flags | MSG_DONTWAIT);
		}
		if (r == -EAGAIN) {
			r = inbox_recv(s, m, flags);
			if (r >= 0) {
				if (!u->since_kern++)
					u->kern_ns = now;
			} else if (!kfirst && (nonblock || now - u->kern_data_ns < KERN_RECENT_NS)) {
				/* Empty inbox: the kernel queue now — unless the socket has had no
				 * kernel traffic lately and we may wait: then the spin below watches
				 * the inbox without syscalls, and the sleep is a kernel receive
				 * that returns whatever the kernel holds. */
				u->since_kern = 0;
				r = kernel_recv(s, m, flags | MSG_DONTWAIT);
			}
		}
		nsk_shared_unlock(&c->rxlock);
		if (r == -EINPROGRESS)
			continue; /* a wake-up datagram: look again */
		if (r != -EAGAIN || nonblock)
			return r;
		/* Nothing anywhere: spin on the inbox (if a second CPU may be running the sender),
		 * then sleep in the kernel on our own socket. */
		uint64_t spin = __atomic_load_n(&s->spin_ns, __ATOMIC_RELAXED);
		/* Spinning pays only when a sender can run meanwhile on another CPU: not on a
		 * shared core, where it only delays the sender. */
		uint64_t all;
		if (now - __atomic_load_n(&u->scpus_ns, __ATOMIC_RELAXED) > 100000000ull) {
			all = nsk_load64(&h->sender_cpus);
			__atomic_store_n(&u->scpus, all, __ATOMIC_RELAXED);
			__atomic_store_n(&u->scpus_ns, now, __ATOMIC_RELAXED);
		} else {
			all = __atomic_load_n(&u->scpus, __ATOMIC_RELAXED);
		}
		all |= u->cpus;
		if (u->cpus && __builtin_popcountll(all) <= 1)
			spin = 0;
		/* Adaptive: a spin that ends in a sleep anyway only took the CPU from someone
		 * (the sender, or another thread of ours): each one takes an eighth of the budget
		 * away, a success restores it; at 0, a short probe now and then. */
		if (spin) {
			uint64_t budget = u->spin_cur;
			if (!budget && (++u->spin_probe & 15) == 0)
				budget = spin / 4;
			if (budget > spin)
				budget = spin;
			if (budget) {
				uint64_t t0 = nsk_now_ns();
				while (nsk_inbox_empty(&u->ib) && nsk_now_ns() - t0 < budget)
					for (int i = 0; i < 16; i++)
						nsk_cpu_relax();
				if (!nsk_inbox_empty(&u->ib)) {
					u->spin_cur = spin;
					continue;
				}
				u->spin_cur = u->spin_cur > spin / 8 ? u->spin_cur - spin / 8 : 0;
			}
		}
		nsk_arm(&h->armed, NSK_ARM_FD);
		if (!nsk_inbox_empty(&u->ib)) { /* re-check after arming (pairs with nsk_take) */
			nsk_disarm(&h->armed, NSK_ARM_FD);
			continue;
		}
		/* Blocking in the kernel's own recvmsg keeps its semantics: SO_RCVTIMEO, signals
		 * with and without SA_RESTART. A wake-up datagram lands in the caller's buffer
		 * and is then overwritten by the inbox datagram it announced. */
		u->sleeping = 1;
		r = kernel_recv(s, m, flags & ~MSG_DONTWAIT);
		u->sleeping = 0;
		nsk_disarm(&h->armed, NSK_ARM_FD);
		if (r != -EINPROGRESS)
			return r;
	}
}

/* ---------------------------------------------------------------- wrappers ------------ */

static ssize_t posix(ssize_t r, int saved)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	errno = saved;
	return r;
}

ssize_t nsk_udp_sendmsg(struct nsk_sock *s, const struct msghdr *msg, int flags)
{
	int saved = errno;
	ssize_t r = udp_send(s, msg, flags);
	nsk_sock_leave(s);
	return posix(r, saved);
}

ssize_t nsk_udp_recvmsg(struct nsk_sock *s, struct msghdr *msg, int flags)
{
	int saved = errno;
	ssize_t r = udp_recv(s, msg, flags);
	nsk_sock_leave(s);
	return posix(r, saved);
}

ssize_t nsk_udp_sendto(struct nsk_sock *s, const void *buf, size_t len, int flags,
		       const struct sockaddr *dst, socklen_t dlen)
{
	struct iovec iov = {(void *)buf, len};
	struct msghdr m = {.msg_name = (void *)dst, .msg_namelen = dst ? dlen : 0,
			   .msg_iov = &iov, .msg_iovlen = 1};
	return nsk_udp_sendmsg(s, &m, flags);
}

ssize_t nsk_udp_recvfrom(struct nsk_sock *s, void *buf, size_t len, int flags,
			 struct sockaddr *src, socklen_t *alen)
{
	struct iovec iov = {buf, len};
	struct msghdr m = {.msg_name = src && alen ? src : NULL,
			   .msg_namelen = src && alen ? *alen : 0, .msg_iov = &iov, .msg_iovlen = 1};
	ssize_t r = nsk_udp_recvmsg(s, &m, flags);
	if (r >= 0 && src && alen)
		*alen = m.msg_namelen;
	return r;
}

int nsk_udp_sendmmsg(struct nsk_sock *s, struct mmsghdr *vec, unsigned int n, int flags)
{
	int saved = errno;
	unsigned int i;
	ssize_t r = 0;
	if (n > UIO_MAXIOV)
		n = UIO_MAXIOV;
	for (i = 0; i < n; i++) {
		r = udp_send(s, &vec[i].msg_hdr, flags);
		if (r < 0)
			break;
		vec[i].msg_len = (unsigned int)r;
	}
	nsk_sock_leave(s);
	if (i == 0 && n > 0)
		return (int)posix(r, saved);
	errno = saved;
	return (int)i;
}

int nsk_udp_recvmmsg(struct nsk_sock *s, struct mmsghdr *vec, unsigned int n, int flags,
		     struct timespec *tmo)
{
	int saved = errno;
	unsigned int i;
	ssize_t r = 0;
	uint64_t deadline = tmo ? nsk_now_ns() + (uint64_t)tmo->tv_sec * 1000000000ull +
					  (uint64_t)tmo->tv_nsec
				: 0;
	if (n > UIO_MAXIOV)
		n = UIO_MAXIOV;
	for (i = 0; i < n; i++) {
		/* As the kernel: after the first datagram, MSG_WAITFORONE stops waiting; the
		 * timeout is checked after each datagram. */
		int f = flags & ~MSG_WAITFORONE;
		if (i && (flags & MSG_WAITFORONE))
			f |= MSG_DONTWAIT;
		r = udp_recv(s, &vec[i].msg_hdr, f);
		if (r < 0)
			break;
		vec[i].msg_len = (unsigned int)r;
		if (tmo && nsk_now_ns() >= deadline) {
			i++;
			break;
		}
	}
	nsk_sock_leave(s);
	if (i == 0 && n > 0)
		return (int)posix(r, saved);
	errno = saved;
	return (int)i;
}

/* ---------------------------------------------------------------- sock.c hooks -------- */

ssize_t nsk_udp_sendv(struct nsk_sock *s, const struct iovec *iov, int cnt, int flags)
{
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
	return udp_send(s, &m, flags);
}

ssize_t nsk_udp_recvv(struct nsk_sock *s, const struct iovec *iov, int cnt, int flags)
{
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
	return udp_recv(s, &m, flags);
}

int nsk_udp_is_shm(struct nsk_sock *s)
{
	if (s->udp && has_inbox(s->udp))
		return 1;
	if (s->udp)
		s->udp->polled = 1; /* waited on in the kernel: an inbox created later wakes it */
	return 0;
}

/* Look at the head of the kernel queue: discard wake-up datagrams, note a real one. */
static void drain_wakes(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	for (int i = 0; i < 64; i++) {
		char b;
		struct iovec iov = {&b, 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t r = kernel_recv(s, &m, MSG_PEEK | MSG_DONTWAIT);
		if (r == -EINPROGRESS)
			continue;
		if (r >= 0) {
			u->kern_pending = 1;
			u->kern_seq++;
		}
		return;
	}
}

int nsk_udp_ready(struct nsk_sock *s, int want, int *kernel_ev, int *kernel_decides, int arm)
{
	struct nsk_udp *u = s->udp;
	int ev = 0;
	/* The kernel fd is always watched for input: remote datagrams and wake-ups. Output,
	 * errors and priority data are the kernel's answer; a UDP socket is writable. */
	*kernel_ev = POLLIN | (want & (POLLOUT | POLLPRI));
	*kernel_decides = want & (POLLOUT | POLLPRI);
	if (want & POLLOUT)
		ev |= POLLOUT;
	if (!(want & POLLIN))
		return ev;
	if (!has_inbox(u)) { /* not ours to judge: the kernel's readiness */
		*kernel_decides |= POLLIN;
		return ev;
	}
	if (!nsk_inbox_empty(&u->ib) || u->kern_pending)
		return ev | POLLIN;
	if (arm) {
		nsk_agg_flush_all();
		nsk_arm(&u->ib.h->armed, NSK_ARM_FD);
		if (!nsk_inbox_empty(&u->ib)) /* re-check after arming (pairs with nsk_take) */
			ev |= POLLIN;
	}
	return ev;
}

void nsk_udp_disarm(struct nsk_sock *s)
{
	if (s->udp && has_inbox(s->udp))
		nsk_disarm(&s->udp->ib.h->armed, NSK_ARM_FD);
}

void nsk_udp_kernel_event(struct nsk_sock *s, int revents)
{
	if ((revents & POLLIN) && s->udp && has_inbox(s->udp))
		drain_wakes(s);
}

int nsk_udp_fionread(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	int k = 0;
	if (has_inbox(u)) {
		nsk_shared_lock(&s->conn->rxlock);
		struct nsk_dgram_rec rec;
		int have = nsk_inbox_peek(&u->ib, &rec);
		nsk_shared_unlock(&s->conn->rxlock);
		if (have == 1)
			return (int)rec.len; /* as the kernel: the size of the next datagram */
		drain_wakes(s);
	}
	if (REAL(ioctl)(s->fd, FIONREAD, &k) < 0)
		return -errno;
	return k;
}

uint64_t nsk_udp_sig(struct nsk_sock *s)
{
	struct nsk_udp *u = s->udp;
	uint64_t t = has_inbox(u) ? nsk_load64(&u->ib.h->tail) : 0;
	return ((t * 0x9e3779b97f4a7c15ull) ^ (u->kern_seq * 0xc2b2ae3d27d4eb4full) ^
		((uint64_t)u->kern_pending << 1)) | 1;
}

/* ---------------------------------------------------------------- public API ---------- */

#include "nearsock/nearsock.h"

int nearsock_udp_stats(int fd, struct nearsock_udp_stats *st)
{
	struct nsk_sock *s = nsk_udp_enter(fd);
	if (!s) {
		errno = ENOTSOCK;
		return -1;
	}
	struct nsk_conn *c = s->conn;
	struct nsk_udp *u = s->udp;
	memset(st, 0, sizeof(*st));
	st->inbox = u->registered;
	st->tx_shm = nsk_load64(&c->tx_shm_msgs);
	st->rx_shm = nsk_load64(&c->rx_shm_msgs);
	st->tx_shm_bytes = nsk_load64(&c->tx_shm_bytes);
	st->rx_shm_bytes = nsk_load64(&c->rx_shm_bytes);
	st->tx_kernel = nsk_load64(&c->tx_tcp_msgs);
	st->rx_kernel = nsk_load64(&c->rx_tcp_msgs);
	st->tx_drops = nsk_load64(&c->udp_tx_drops);
	st->wakeups_sent = nsk_load64(&c->wakes_sent);
	st->wakeups_filtered = nsk_load64(&c->ctl_bytes);
	st->wakeups_deferred = nsk_load64(&c->udp_deferred);
	nsk_shared_lock(&c->txlock); /* the destination cache */
	for (int i = 0; i < DEST_CACHE; i++) {
		struct peer *p = u->dests[i].valid ? u->dests[i].p : NULL;
		if (!p)
			continue;
		unsigned kf;
		uint64_t tf, target;
		nsk_agg_policy(&kf, &tf, &target);
		st->agg_k = p->agg.k;
		st->agg_adaptive = kf == 0;
		st->agg_t_ns = p->agg.t_ns;
		st->agg_rate = (uint64_t)p->agg.lambda;
		st->agg_svc_ns = nsk_load64(&p->ib.h->svc_ns) +
				 __atomic_load_n(&p->agg.wake_cost_ns, __ATOMIC_RELAXED);
		st->agg_containers = __atomic_load_n(&p->agg.containers, __ATOMIC_RELAXED);
	}
	nsk_shared_unlock(&c->txlock);
	if (has_inbox(u)) {
		st->inbox_drops = nsk_load64(&u->ib.h->drops);
		st->inbox_enqueued = nsk_load64(&u->ib.h->enq);
		st->inbox_corrupt = nsk_load64(&u->ib.h->corrupt);
	}
	nsk_sock_leave(s);
	return 0;
}
