/* SPDX-License-Identifier: MIT */
/* sock.c — per-socket upgrade state machine and exact data path (see sock.h).
 *
 * Switching is exact and out of band. Each side publishes, in the channel header, how many
 * application bytes it sent over TCP before it started using its ring (its switch point),
 * then sends one marker byte on TCP. A receiver delivers TCP bytes up to the peer's switch
 * point, then ring bytes; every TCP byte past a switch point is a control byte (marker or
 * wake-up) and never reaches the application. The sender publishes its switch point before
 * any byte past it is sent, so a receiver that re-reads the switch point after a TCP read
 * always knows where data stops.
 *
 * Switching back (evacuation) mirrors it: the sender publishes how many bytes its ring
 * carried in all (its ring stop), then sends the switch-back marker on TCP and raw data after
 * it. The receiver drains the ring up to the ring stop, consumes the control bytes up to and
 * including the marker (peeking, never past it), and reads TCP data again. Each direction
 * can go back and forth any number of times (epochs: see struct nsk_chan_side in layout.h);
 * a sender starts a new epoch only once the receiver has reached the previous one. */
#include "preload/sock.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/budget.h"
#include "core/switchpt.h"
#include "preload/ringsize.h"
#include "platform/linux.h"
#include "preload/fdtab.h"
#include "preload/real.h"
#include "preload/verify.h"
#include "preload/udp.h"
#include "preload/agg.h"
#include "preload/vmdom.h"

struct nsk_global nsk_g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.rv_fd = -1,
	.offer_fd = -1,
	.rq_fd = -1,
	.tab = {.fd = -1},
	.log_level = NSK_LOG_WARN,
};

static const char ctl_byte = NSK_CTL_WAKE; /* marker, wake-up or probe: never interpreted */
static const char back_byte = NSK_CTL_BACK; /* ends a ring epoch: raw TCP data follows */

/* ---------------------------------------------------------------- logging & config ---- */

void nsk_log(int level, const char *fmt, ...)
{
	if (level < nsk_g.log_level)
		return;
	char buf[512];
	static const char *names[] = {"debug", "info", "warn"};
	int n = snprintf(buf, sizeof(buf), "nearsock[%d] %s: ", (int)getpid(),
			 names[level < 3 ? level : 2]);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	int saved = errno;
	(void)!syscall(SYS_write, 2, buf, (size_t)n);
	errno = saved;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long long x = strtoull(v, &end, 0);
	if (*end == 'k' || *end == 'K')
		x <<= 10;
	else if (*end == 'm' || *end == 'M')
		x <<= 20;
	else if (*end == 'g' || *end == 'G')
		x <<= 30;
	return x;
}

void nsk_global_init(void)
{
	nsk_real_init();
	const char *v = getenv("NEARSOCK_DISABLE");
	nsk_g.disabled = v && *v && strcmp(v, "0") != 0;
	v = getenv("NEARSOCK_LOG");
	if (v) {
		if (!strcmp(v, "debug"))
			nsk_g.log_level = NSK_LOG_DEBUG;
		else if (!strcmp(v, "info"))
			nsk_g.log_level = NSK_LOG_INFO;
		else if (!strcmp(v, "off") || !strcmp(v, "none"))
			nsk_g.log_level = NSK_LOG_OFF;
	}
	const char *bad;
	nsk_rsz_conf_env(&nsk_g.rsz, &bad);
	if (bad)
		nsk_log(NSK_LOG_WARN, "%s is not a power of two in [4K, 64M]: default used", bad);
	nsk_g.ring_size = nsk_g.rsz.max;
	nsk_g.spin_ns = env_u64("NEARSOCK_SPIN_US", 50) * 1000;
	nsk_g.offer_timeout_ns = env_u64("NEARSOCK_OFFER_TIMEOUT_MS", 10000) * 1000000ull;
	nsk_g.mem_budget = env_u64("NEARSOCK_MEM_BUDGET", 0);
	v = getenv("NEARSOCK_UPGRADE");
	nsk_g.eager = v && !strcmp(v, "eager");
	nsk_g.pid = getpid();
}

int nsk_domain_ready(void)
{
	int st = __atomic_load_n(&nsk_g.domain_state, __ATOMIC_ACQUIRE);
	if (st)
		return st > 0;
	if (nsk_g.disabled)
		return 0;
	pthread_mutex_lock(&nsk_g.lock);
	if (nsk_g.domain_state == 0) {
		int r = nsk_domain_open(&nsk_g.dom, NULL, 1);
		if (r == 0) {
			/* our table may have been handed over by the image we were exec'ed from */
			r = nsk_g.tab.hdr ? 0 : nsk_proctab_create(&nsk_g.tab, &nsk_g.dom);
			if (r < 0)
				nsk_domain_close(&nsk_g.dom);
		}
		if (r < 0) {
			char dir[PATH_MAX];
			nsk_domain_default_dir(dir, sizeof(dir));
			nsk_log(NSK_LOG_WARN, "domain %s unusable (%s): running unaccelerated", dir,
				strerror(-r));
		} else {
			nsk_g.netns = nsk_netns_id();
			nsk_g.start_time = nsk_g.tab.hdr->start_time;
			nsk_log(NSK_LOG_INFO, "domain %s ready", nsk_g.dom.dir);
		}
		__atomic_store_n(&nsk_g.domain_state, r == 0 ? 1 : -1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&nsk_g.lock);
	return nsk_g.domain_state > 0;
}

static void pcount(int which)
{
	if (nsk_g.tab.hdr)
		nsk_add64(&nsk_g.tab.hdr->counters[which], 1);
}

/* A resource ran out: the connection (or listener) stays on TCP. Counted in total and by
 * cause (-errno @err, or -EDQUOT for the domain budget). */
static void pcount_fallback(int err)
{
	pcount(NSK_PC_FALLBACKS);
	if (err == -EMFILE || err == -ENFILE)
		pcount(NSK_PC_FB_FD);
	else if (err == -ENOMEM || err == -ENOSPC || err == -EFBIG)
		pcount(NSK_PC_FB_MEM);
	else if (err == -EDQUOT)
		pcount(NSK_PC_FB_BUDGET);
}

/* The channel mapping is set up by one thread while others may be in the data path:
 * readers test chan_ok() (acquire), writers publish with chan_publish() once s->chan is
 * complete, and a channel that stops being used (offer refused, withdrawn, claim lost) is
 * only retired: it stays mapped until the socket's last user is gone (finalize). */
static inline int chan_ok(struct nsk_sock *s)
{
	return atomic_load_explicit(&s->chan_ready, memory_order_acquire);
}

static inline void chan_publish(struct nsk_sock *s)
{
	atomic_store_explicit(&s->chan_ready, 1, memory_order_release);
}

static inline void chan_retire(struct nsk_sock *s)
{
	atomic_store_explicit(&s->chan_ready, 0, memory_order_release);
}

/* Counters and byte counts in the connection table: one writer at a time (under txlock or
 * rxlock), read anywhere (other threads, `nearsock status`): relaxed atomics. */
#define CGET(x) nsk_load64(&(x))
#define CADD(x, n) nsk_store64(&(x), nsk_load64(&(x)) + (n))

/* ---------------------------------------------------------------- futex mutex ---------- */
/* Locks live in the connection table so that forked children share them. */

static void xlock(uint32_t *l)
{
	uint32_t c = 0;
	if (atomic_compare_exchange_strong_explicit(NSK_A32(l), &c, 1, memory_order_acquire,
						    memory_order_relaxed))
		return;
	if (c != 2)
		c = atomic_exchange_explicit(NSK_A32(l), 2, memory_order_acquire);
	while (c != 0) {
		nsk_futex_wait(l, 2, -1);
		c = atomic_exchange_explicit(NSK_A32(l), 2, memory_order_acquire);
	}
}

static int xtrylock(uint32_t *l)
{
	uint32_t c = 0;
	return atomic_compare_exchange_strong_explicit(NSK_A32(l), &c, 1, memory_order_acquire,
						       memory_order_relaxed);
}

static void xunlock(uint32_t *l)
{
	/* Release pairs with the acquire in xlock/xtrylock of the next owner. */
	if (atomic_fetch_sub_explicit(NSK_A32(l), 1, memory_order_release) != 1) {
		nsk_store32_release(l, 0);
		nsk_futex_wake(l, 1);
	}
}

/* ---------------------------------------------------------------- objects -------------- */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nsk_sock *pool_free;

/* A recycled (or new) object for @fd on connection slot @c, initialised; NULL without memory. */
static struct nsk_sock *obj_init(int fd, int family, int kind, struct nsk_conn *c)
{
	pthread_mutex_lock(&pool_lock);
	struct nsk_sock *s = pool_free;
	if (s)
		pool_free = s->next_free;
	pthread_mutex_unlock(&pool_lock);
	/* Objects are never returned to malloc: a racing lookup may still hold one. */
	if (!s && !(s = calloc(1, sizeof(*s))))
		return NULL;
	memset((char *)s + offsetof(struct nsk_sock, fd), 0,
	       sizeof(*s) - offsetof(struct nsk_sock, fd));
	static atomic_uint_fast64_t ids;
	s->id = atomic_fetch_add(&ids, 1) + 1;
	s->fd = fd;
	s->family = family;
	s->kind = kind;
	s->conn = c;
	s->offer_memfd = -1;
	atomic_store(&s->keep_memfd, -1);
	s->reg_slot = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->spin_ns = nsk_cpus_online() > 1 ? nsk_g.spin_ns : 0;
	return s;
}

struct nsk_sock *nsk_sock_new(int fd, int family, int kind)
{
	if (!nsk_domain_ready())
		return NULL;
	struct nsk_conn *c = nsk_proctab_alloc(&nsk_g.tab, nsk_g.pid);
	if (!c) {
		pcount(NSK_PC_FALLBACKS);
		nsk_log(NSK_LOG_INFO, "fd %d: connection table full: not tracked", fd);
		return NULL;
	}
	struct nsk_sock *s = obj_init(fd, family, kind, c);
	if (!s) {
		nsk_proctab_free(&nsk_g.tab, c);
		return NULL;
	}
	c->kind = (uint32_t)kind;
	c->fd = (uint32_t)fd;
	c->family = (uint16_t)family;
	c->mode = NSK_MODE_TCP;
	nsk_store32(&c->holders, 1);
	atomic_store(&s->refs, 1);
	/* The +1 is the "open" reference, dropped by the last nsk_sock_put. */
	atomic_store_explicit(&s->busy, 1, memory_order_release);
	return s;
}

static void unkeep(struct nsk_sock *s);
static void switch_tx_locked(struct nsk_sock *s);
static void spin_policy(struct nsk_sock *s);

/* Last user in this process gone: unmap, release the slot (freed by the last holder),
 * recycle the object. */
static void finalize(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (s->agg) { /* before the unmap: a delayed wake-up touches the ring */
		nsk_agg_fini(s->agg);
		free(s->agg);
		s->agg = NULL;
	}
	nsk_vm_release(s); /* a channel in the ivshmem region: detached, never unmapped */
	nsk_chan_unmap(&s->chan);
	nsk_udp_free(s);
	/* Exchange: a forked copy of this socket finalizing too gives the share back once. */
	uint64_t charged = atomic_exchange_explicit(NSK_A64(&c->charged), 0, memory_order_relaxed);
	if (charged)
		nsk_budget_uncharge(&nsk_g.dom, &nsk_g.tab, charged);
	if (s->offer_memfd >= 0) {
		REAL(close)(s->offer_memfd);
		s->offer_memfd = -1;
	}
	unkeep(s);
	if (atomic_fetch_sub_explicit(NSK_A32(&c->holders), 1, memory_order_acq_rel) <= 1) {
		if (nsk_g.tab.hdr) {
			uint64_t *k = nsk_g.tab.hdr->counters;
			nsk_add64(&k[NSK_PC_CLOSED_SHM_TX], c->tx_shm_bytes);
			nsk_add64(&k[NSK_PC_CLOSED_SHM_RX], c->rx_shm_bytes);
			nsk_add64(&k[NSK_PC_CLOSED_TCP_TX], CGET(c->tx_tcp));
			nsk_add64(&k[NSK_PC_CLOSED_TCP_RX], CGET(c->rx_tcp));
		}
		nsk_proctab_free(&nsk_g.tab, c);
	}
	s->conn = NULL;
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_lock(&pool_lock);
	s->next_free = pool_free;
	pool_free = s;
	pthread_mutex_unlock(&pool_lock);
}

int nsk_sock_last_holder(struct nsk_sock *s)
{
	return nsk_load32(&s->conn->holders) <= 1;
}

struct nsk_sock *nsk_sock_enter(int fd)
{
	for (;;) {
		struct nsk_sock *s = nsk_fd_get(fd);
		if (!s)
			return NULL;
		int b = atomic_load_explicit(&s->busy, memory_order_acquire);
		do {
			if (b <= 0)
				break; /* being finalised: the fd is closed or reused */
		} while (!atomic_compare_exchange_weak_explicit(&s->busy, &b, b + 1,
								memory_order_acquire,
								memory_order_acquire));
		if (b <= 0) {
			if (nsk_fd_get(fd) == s)
				return NULL;
			continue;
		}
		if (nsk_fd_get(fd) == s)
			return s;
		nsk_sock_leave(s);
	}
}

void nsk_sock_leave(struct nsk_sock *s)
{
	if (atomic_fetch_sub_explicit(&s->busy, 1, memory_order_acq_rel) == 1)
		finalize(s);
}

void nsk_sock_put(struct nsk_sock *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s->kind == NSK_CK_LISTENER && nsk_sock_last_holder(s))
		nsk_sock_unlisten_closed(s);
	if (s->kind == NSK_CK_UDP)
		nsk_udp_release(s);
	if (chan_ok(s)) {
		/* Wake both of the peer's possible sleepers: it re-checks and sees our FIN soon. */
		struct nsk_ring_ctl *tx = s->chan.tx.ctl, *rx = s->chan.rx.ctl;
		nsk_fence();
		if (nsk_take(&tx->cons_armed) & NSK_ARM_FUTEX)
			nsk_futex_bump(&tx->data_seq);
		if (nsk_take(&rx->prod_armed) & NSK_ARM_FUTEX)
			nsk_futex_bump(&rx->space_seq);
	}
	nsk_sock_leave(s);
}

/* ---------------------------------------------------------------- kept memfds -------- */
/* The memfd of every channel is kept open (close-on-exec, in the upper half of the
 * descriptor range, away from the numbers applications expect) so that an exec can pass the
 * connection to the new program image. At most a quarter of RLIMIT_NOFILE is used for them;
 * beyond that a connection inherited across exec is failed cleanly in the new image. */
struct nsk_fdmap nsk_kept;
static atomic_int nkept;

static void keep_limits(int *base, int *limit)
{
	static int b, l; /* computed once; threads may race to do it (same values) */
	int nb = __atomic_load_n(&b, __ATOMIC_ACQUIRE);
	if (!nb) {
		struct rlimit rl;
		rlim_t cur = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
		if (cur == RLIM_INFINITY || cur > (1u << 20))
			cur = 1u << 20;
		__atomic_store_n(&l, (int)(cur / 4), __ATOMIC_RELAXED);
		nb = (int)(cur / 2) > 64 ? (int)(cur / 2) : 64;
		__atomic_store_n(&b, nb, __ATOMIC_RELEASE); /* after l: pairs with the acquire */
	}
	*base = nb;
	*limit = __atomic_load_n(&l, __ATOMIC_RELAXED);
}

static void keep(struct nsk_sock *s, int memfd)
{
	int base, limit;
	keep_limits(&base, &limit);
	if (atomic_load(&s->keep_memfd) >= 0 || atomic_fetch_add(&nkept, 1) >= limit) {
		if (atomic_load(&s->keep_memfd) < 0)
			atomic_fetch_sub(&nkept, 1);
		return;
	}
	int saved = errno;
	int k = REAL(fcntl)(memfd, F_DUPFD_CLOEXEC, base);
	errno = saved;
	if (k < 0) {
		atomic_fetch_sub(&nkept, 1);
		return;
	}
	nsk_fdmap_set(&nsk_kept, k, s);
	atomic_store(&s->keep_memfd, k);
}

static void unkeep(struct nsk_sock *s)
{
	int k = atomic_exchange(&s->keep_memfd, -1);
	if (k < 0)
		return;
	if (nsk_fdmap_get(&nsk_kept, k) == s) {
		nsk_fdmap_set(&nsk_kept, k, NULL);
		int saved = errno;
		REAL(close)(k);
		errno = saved;
	}
	atomic_fetch_sub(&nkept, 1);
}

/* The application closed (or replaced) kept descriptor @fd: forget it. */
static void kept_fd_gone(int fd)
{
	struct nsk_sock *s = nsk_fdmap_set(&nsk_kept, fd, NULL);
	if (s) {
		int expect = fd;
		if (atomic_compare_exchange_strong(&s->keep_memfd, &expect, -1))
			atomic_fetch_sub(&nkept, 1);
	}
}

/* ---------------------------------------------------------------- fork and exec ------- */

static void fork_count(int fd, void *obj, void *arg)
{
	(void)fd;
	(void)arg;
	struct nsk_sock *s = obj;
	/* The same object may be at several fds (dup): count each socket once. Pinned so that
	 * a concurrent close cannot finalise it under us. */
	struct nsk_sock *p = nsk_sock_enter(fd);
	if (p != s) {
		if (p)
			nsk_sock_leave(p);
		return;
	}
	if (s->fork_mark != nsk_g.fork_gen) {
		s->fork_mark = nsk_g.fork_gen;
		atomic_fetch_add_explicit(NSK_A32(&s->conn->holders), 1, memory_order_relaxed);
	}
	nsk_sock_leave(s);
}

void nsk_sock_fork_prepare(void)
{
	/* nsk_g.lock is held across the fork: the child gets it in a known state. */
	pthread_mutex_lock(&nsk_g.lock);
	if (nsk_g.domain_state <= 0)
		return;
	/* Counted before the child exists: the parent closing its copy right after the fork
	 * must not see itself as the last holder. (A failed fork leaves the count one high:
	 * those sockets then simply stay TCP.) */
	nsk_g.fork_gen++;
	nsk_fdmap_foreach(&nsk_socks, fork_count, NULL);
}

void nsk_sock_fork_parent(void)
{
	if (nsk_g.domain_state > 0 && nsk_g.rv_fd >= 0)
		nsk_g.rv_shared = 1;
	pthread_mutex_unlock(&nsk_g.lock);
}

static void fork_child_visit(int fd, void *obj, void *arg)
{
	(void)fd;
	(void)arg;
	struct nsk_sock *s = obj;
	if (s->agg) /* another thread may have held its lock at the fork: it is gone here */
		nsk_agg_child_reset(s->agg);
	/* An offer not yet delivered is the parent's to deliver (one offer per channel). */
	if (s->offer_pending && s->offer_memfd >= 0) {
		REAL(close)(s->offer_memfd);
		s->offer_memfd = -1;
		s->offer_pending = 0;
	}
}

void nsk_sock_fork_child(void)
{
	nsk_g.pid = getpid();
	/* The forking thread is the child's only thread and owns the lock taken in prepare:
	 * unlocked, not re-initialised (a locked mutex re-initialised stays locked for TSan). */
	pthread_mutex_unlock(&nsk_g.lock);
	if (nsk_g.domain_state <= 0)
		return;
	nsk_g.start_time = nsk_proc_start_time(nsk_g.pid);
	if (nsk_g.rv_fd >= 0)
		nsk_g.rv_shared = 1;
	nsk_fdmap_foreach(&nsk_socks, fork_child_visit, NULL);
}

int nsk_sock_exec_state(struct nsk_sock *s, int cloexec, int *memfd, int *side, uint64_t *nonce)
{
	struct nsk_conn *c = s->conn;
	if (s->kind != NSK_CK_CLIENT && s->kind != NSK_CK_SERVER)
		return 0;
	pthread_mutex_lock(&s->lock);
	uint32_t mode = nsk_load32(&c->mode);
	if (cloexec) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	/* Not upgraded yet: the new image carries on as a candidate (an inetd-style server
	 * execs before the first byte); one in the middle of connecting stays TCP for good. */
	if (mode == NSK_MODE_TCP && s->candidate && !s->connecting && s->reg_slot >= 0) {
		pthread_mutex_unlock(&s->lock);
		return 2;
	}
	if (mode == NSK_MODE_TCP) {
		s->candidate = 0;
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
	} else if (mode == NSK_MODE_OFFERED && chan_ok(s)) {
		if (nsk_chan_withdraw(&s->chan) == 0) {
			chan_retire(s);
			unkeep(s);
			nsk_store32(&c->mode, NSK_MODE_PLAIN);
		} else {
			nsk_store32(&c->mode, NSK_MODE_SHM); /* claimed meanwhile: switch now */
		}
	}
	mode = nsk_load32(&c->mode);
	if (mode == NSK_MODE_SHM && chan_ok(s) && !nsk_load32(&c->tx_switched)) {
		xlock(&c->txlock);
		switch_tx_locked(s);
		xunlock(&c->txlock);
	}
	pthread_mutex_unlock(&s->lock);
	mode = nsk_load32(&c->mode);
	if (mode == NSK_MODE_PLAIN)
		return 0;
	*memfd = chan_ok(s) ? atomic_load(&s->keep_memfd) : -1;
	*side = chan_ok(s) ? s->chan.side : -1;
	*nonce = c->nonce;
	return 1;
}

int nsk_sock_adopt_candidate(int fd, int family, int kind, struct nsk_conn *c, int reg_slot)
{
	if (reg_slot < 0 || (uint32_t)reg_slot >= NSK_REG_SLOTS || !nsk_domain_ready())
		return -EINVAL;
	struct nsk_sock *s = obj_init(fd, family, kind, c);
	if (!s)
		return -ENOMEM;
	int fl = REAL(fcntl)(fd, F_GETFL);
	s->nonblock = fl >= 0 && (fl & O_NONBLOCK);
	s->reg_slot = reg_slot;
	s->candidate = 1;
	if (kind == NSK_CK_CLIENT) {
		struct nsk_reg_entry e;
		if (!nsk_registry_read(&nsk_g.dom.reg, reg_slot, &e) ||
		    nsk_rv_path(&nsk_g.dom, e.rv, s->offer_path, sizeof(s->offer_path)) < 0) {
			s->candidate = 0;
			nsk_store32(&c->mode, NSK_MODE_PLAIN);
		}
	}
	atomic_store(&s->refs, 1);
	atomic_store_explicit(&s->busy, 1, memory_order_release);
	nsk_fd_set(fd, s);
	return 0;
}

void nsk_sock_adopt_rv(int fd, const char *name)
{
	pthread_mutex_lock(&nsk_g.lock);
	if (nsk_g.rv_fd < 0 && strlen(name) < sizeof(nsk_g.rv_name)) {
		nsk_g.rv_fd = fd;
		snprintf(nsk_g.rv_name, sizeof(nsk_g.rv_name), "%s", name);
		int pid = 0;
		nsk_g.rv_owned = sscanf(name, "rv-%d-", &pid) == 1 && pid == (int)getpid();
		nsk_g.rv_shared = 1; /* the process that made it may still read it (fork + exec) */
		struct sockaddr_un sun;
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		int q = -1;
		if (nsk_rv_path(&nsk_g.dom, name, sun.sun_path, sizeof(sun.sun_path)) == 0 &&
		    (q = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0 &&
		    connect(q, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			REAL(close)(q);
			q = -1;
		}
		nsk_g.rq_fd = q;
		int fl = REAL(fcntl)(fd, F_GETFD);
		if (fl >= 0)
			REAL(fcntl)(fd, F_SETFD, fl | FD_CLOEXEC);
	} else {
		REAL(close)(fd);
	}
	pthread_mutex_unlock(&nsk_g.lock);
}

int nsk_sock_adopt(int fd, int family, int kind, struct nsk_conn *c, int memfd, int side,
		   uint64_t nonce)
{
	struct nsk_sock *s = obj_init(fd, family, kind, c);
	if (!s)
		return -ENOMEM;
	s->tuple_ok = 1;
	int fl = REAL(fcntl)(fd, F_GETFL);
	s->nonblock = fl >= 0 && (fl & O_NONBLOCK);
	int r = memfd >= 0 ? nsk_chan_adopt(&s->chan, memfd, side, nonce) : -EBADF;
	if (r == 0) {
		keep(s, memfd);
		chan_publish(s);
		spin_policy(s);
	} else {
		/* No mapping for a connection that runs through shared memory: fail it cleanly
		 * (ECONNRESET) rather than hand control bytes to the application. */
		nsk_log(NSK_LOG_WARN, "fd %d: connection inherited across exec without its channel "
				      "(%s): reset", fd, strerror(-r));
		nsk_store32(&c->mode, NSK_MODE_BROKEN);
	}
	atomic_store(&s->refs, 1);
	atomic_store_explicit(&s->busy, 1, memory_order_release);
	nsk_fd_set(fd, s);
	return r;
}

/* ---------------------------------------------------------------- addresses ----------- */

int nsk_norm_addr(const struct sockaddr *sa, uint16_t *family, uint8_t addr[16], uint16_t *port)
{
	memset(addr, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		*family = AF_INET;
		memcpy(addr, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		*port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, &in6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

int nsk_is_loopback(uint16_t family, const uint8_t addr[16])
{
	if (family == AF_INET)
		return addr[0] == 127;
	static const uint8_t lo6[16] = {[15] = 1};
	return memcmp(addr, lo6, 16) == 0;
}

static int is_wildcard_addr(const uint8_t addr[16])
{
	static const uint8_t zero[16];
	return memcmp(addr, zero, 16) == 0;
}

/* Is the peer's end of this connection in our network namespace? (loopback, or our own
 * address: the same stack). Otherwise it is behind a veth or on another host. */
static int peer_in_our_netns(const struct nsk_conn *c)
{
	return nsk_is_loopback(c->family, c->raddr) || !memcmp(c->laddr, c->raddr, 16);
}

/* Fill the connection slot's local/remote addresses from the kernel socket. */
static int fill_tuple(struct nsk_sock *s)
{
	struct sockaddr_storage la, ra;
	socklen_t ll = sizeof(la), rl = sizeof(ra);
	if (getsockname(s->fd, (struct sockaddr *)&la, &ll) < 0 ||
	    getpeername(s->fd, (struct sockaddr *)&ra, &rl) < 0)
		return -errno;
	uint16_t f1, f2;
	if (nsk_norm_addr((struct sockaddr *)&la, &f1, s->conn->laddr, &s->conn->lport) < 0 ||
	    nsk_norm_addr((struct sockaddr *)&ra, &f2, s->conn->raddr, &s->conn->rport) < 0)
		return -EAFNOSUPPORT;
	s->conn->family = f1;
	s->tuple_ok = 1;
	return 0;
}

/* Accepted sockets: our own address only (the peer's was recorded from accept()); unlike
 * getpeername it still works once the connection was reset. */
static int fill_local(struct nsk_sock *s)
{
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	uint16_t f;
	if (s->kind != NSK_CK_SERVER || getsockname(s->fd, (struct sockaddr *)&la, &ll) < 0 ||
	    nsk_norm_addr((struct sockaddr *)&la, &f, s->conn->laddr, &s->conn->lport) < 0)
		return -1;
	s->tuple_ok = 1;
	return 0;
}

/* ---------------------------------------------------------------- listeners ----------- */

static int rendezvous_open_locked(void)
{
	if (nsk_g.rv_fd >= 0)
		return 0;
	snprintf(nsk_g.rv_name, sizeof(nsk_g.rv_name), "rv-%d-%08x", (int)getpid(),
		 (unsigned)nsk_random64());
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	int r = nsk_rv_path(&nsk_g.dom, nsk_g.rv_name, sun.sun_path, sizeof(sun.sun_path));
	if (r < 0)
		return r;
	int fd = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(sun.sun_path);
	/* The kernel attaches each sender's credentials (checked in shared domains). */
	int one = 1;
	/* In a shared domain the members (the domain's group) may send offers: 0660. */
	if (REAL(bind)(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    REAL(setsockopt)(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    (nsk_g.dom.shared && chmod(sun.sun_path, 0660) < 0)) {
		r = -errno;
		REAL(close)(fd);
		unlink(sun.sun_path);
		return r;
	}
	nsk_g.rv_fd = fd;
	nsk_g.rv_owned = 1;
	/* Connected to it: offers are passed on to the processes sharing it (fork) through
	 * this socket, which keeps working after a worker drops privileges (nginx). */
	int q = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (q >= 0 && connect(q, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		REAL(close)(q);
		q = -1;
	}
	nsk_g.rq_fd = q;
	return 0;
}

/* Listeners of this process per registry slot (SO_REUSEPORT listeners share one). */
static int listen_refs[NSK_REG_SLOTS];

int nsk_listen_key(struct nsk_sock *s, struct nsk_reg_key *k)
{
	struct sockaddr_storage la;
	socklen_t ll = sizeof(la);
	if (getsockname(s->fd, (struct sockaddr *)&la, &ll) < 0)
		return -errno;
	memset(k, 0, sizeof(*k));
	if (nsk_norm_addr((struct sockaddr *)&la, &k->family, k->addr, &k->port) < 0)
		return -EAFNOSUPPORT;
	if (la.ss_family == AF_INET6) {
		int v6only = 0;
		socklen_t ol = sizeof(v6only);
		if (REAL(getsockopt)(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol) == 0 && v6only)
			k->flags |= NSK_RE_V6ONLY;
	}
	return 0;
}

void nsk_sock_listen(struct nsk_sock *s)
{
	nsk_vm_listen(s); /* also visible to other kernels sharing an ivshmem region */
	if (s->reg_slot >= 0 || !nsk_domain_ready())
		return;
	struct nsk_reg_key k;
	if (nsk_listen_key(s, &k) < 0)
		return;
	k.netns = nsk_g.netns;
	pthread_mutex_lock(&nsk_g.lock);
	int r = rendezvous_open_locked();
	pthread_mutex_unlock(&nsk_g.lock);
	if (r < 0) {
		pcount_fallback(r);
		nsk_log(NSK_LOG_WARN, "listener fd %d: no rendezvous socket (%s)", s->fd,
			strerror(-r));
		return;
	}
	/* SO_REUSEPORT: another listener of this process on the same address shares its entry
	 * (one rendezvous socket per process; clients bump that entry's offer_seq). */
	struct nsk_reg_entry cur;
	int same = nsk_registry_lookup(&nsk_g.dom.reg, &k, 1, &cur);
	if (same >= 0 && cur.pid == (uint32_t)getpid() && cur.start_time == nsk_g.start_time &&
	    cur.family == k.family && cur.port == k.port && cur.flags == k.flags &&
	    !memcmp(cur.addr, k.addr, 16)) {
		pthread_mutex_lock(&nsk_g.lock);
		listen_refs[same]++;
		pthread_mutex_unlock(&nsk_g.lock);
		s->reg_slot = same;
		s->reg_pid = (uint32_t)getpid();
		s->seen_seq = nsk_load64(&nsk_g.dom.reg.e[same].offer_seq);
		s->conn->family = k.family;
		memcpy(s->conn->laddr, k.addr, 16);
		s->conn->lport = k.port;
		return;
	}
	r = nsk_registry_insert(&nsk_g.dom.reg, &k, getpid(), nsk_g.start_time, nsk_g.rv_name);
	if (r < 0) {
		pcount(NSK_PC_FALLBACKS);
		pcount(NSK_PC_FB_REGISTRY);
		nsk_log(NSK_LOG_WARN, "listener fd %d port %u: registry full: connections to it stay "
				      "on TCP", s->fd, k.port);
		return;
	}
	s->reg_slot = r;
	s->reg_pid = (uint32_t)getpid();
	if (!is_wildcard_addr(k.addr) && !nsk_is_loopback(k.family, k.addr))
		atomic_fetch_add_explicit(NSK_A32(&nsk_g.dom.reg.hdr->exact_binds), 1,
					  memory_order_relaxed); /* reachable from other namespaces */
	pthread_mutex_lock(&nsk_g.lock);
	listen_refs[r] = 1;
	pthread_mutex_unlock(&nsk_g.lock);
	s->seen_seq = nsk_load64(&nsk_g.dom.reg.e[r].offer_seq);
	s->conn->family = k.family;
	memcpy(s->conn->laddr, k.addr, 16);
	s->conn->lport = k.port;
	nsk_log(NSK_LOG_DEBUG, "listener fd %d port %u registered in slot %d", s->fd, k.port, r);
}

/* Entries of listeners this process closed (kept matching for a grace period), removed at
 * exit by nsk_sock_unlisten_all_closed(). */
static int closed_slots[256];
static int nclosed;

void nsk_sock_unlisten_closed(struct nsk_sock *s)
{
	nsk_vm_unlisten(s);
	if (s->reg_slot < 0)
		return;
	pthread_mutex_lock(&nsk_g.lock);
	int left = listen_refs[s->reg_slot] > 0 ? --listen_refs[s->reg_slot] : 0;
	if (left == 0) {
		nsk_registry_close(&nsk_g.dom.reg, s->reg_slot, (pid_t)s->reg_pid);
		if (nclosed < 256 && s->reg_pid == (uint32_t)getpid())
			closed_slots[nclosed++] = s->reg_slot;
		else
			nsk_registry_remove(&nsk_g.dom.reg, s->reg_slot, (pid_t)s->reg_pid);
	}
	pthread_mutex_unlock(&nsk_g.lock);
	s->reg_slot = -1;
}

void nsk_sock_unlisten_all_closed(void)
{
	pthread_mutex_lock(&nsk_g.lock);
	for (int i = 0; i < nclosed; i++)
		nsk_registry_remove(&nsk_g.dom.reg, closed_slots[i], getpid());
	nclosed = 0;
	pthread_mutex_unlock(&nsk_g.lock);
}

void nsk_sock_unlisten(struct nsk_sock *s)
{
	nsk_vm_unlisten(s);
	if (s->reg_slot < 0)
		return;
	pthread_mutex_lock(&nsk_g.lock);
	int left = listen_refs[s->reg_slot] > 0 ? --listen_refs[s->reg_slot] : 0;
	pthread_mutex_unlock(&nsk_g.lock);
	if (left == 0)
		nsk_registry_remove(&nsk_g.dom.reg, s->reg_slot, (pid_t)s->reg_pid);
	s->reg_slot = -1;
}

/* ---------------------------------------------------------------- offers (server) ----- */

#define PENDING_MAX 512
struct pending {
	struct nsk_offer o;
	int memfd;
	uint64_t t;
	struct ucred cred; /* the sender, as the kernel vouches for it */
};
static struct pending pend[PENDING_MAX];
static int npend;
/* Writers hold nsk_g.lock; nsk_sock_internal_fd_check reads npend without it. */
#define NPEND_SET(v) __atomic_store_n(&npend, (v), __ATOMIC_RELAXED)
/* Per listener slot: the offer_seq value up to which offers were drained. */
static uint64_t drained_seq[NSK_REG_SLOTS];

/* The registry key of a destination in our network namespace. */
static void dst_key(struct nsk_reg_key *k, uint16_t family, const uint8_t addr[16], uint16_t port)
{
	memset(k, 0, sizeof(*k));
	k->family = family;
	memcpy(k->addr, addr, 16);
	k->port = port;
	k->netns = nsk_g.netns;
}

/* Several processes may read one rendezvous socket (a listener inherited across fork: pre-fork
 * servers, a fork per connection). An offer for a connection this process does not hold is
 * queued again for the others, a bounded number of times (it may also arrive before the
 * connection is accepted anywhere; it then waits in the pending table of the last reader). */
#define REQUEUE_HOPS 10000
/* After passing offers on, this process leaves the queue to the others for a while: an offer
 * for a connection not yet accepted anywhere circulates at most about once a millisecond. */
#define REQUEUE_QUIET_NS 1000000ull
static uint64_t requeue_quiet_until;

struct cand_match {
	const struct nsk_offer *o;
	int found;
};

static void cand_visit(int fd, void *obj, void *arg)
{
	struct cand_match *m = arg;
	if (m->found)
		return;
	/* Pinned while looked at: another thread may be closing it (finalize). */
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return;
	struct nsk_conn *c = s->conn;
	if (s == obj && s->kind == NSK_CK_SERVER && s->candidate && c->family == m->o->family &&
	    c->rport == m->o->cport && c->lport == m->o->sport && !memcmp(c->raddr, m->o->caddr, 16))
		m->found = 1;
	nsk_sock_leave(s);
}

/* Whether a connection of this process waits for offer @o (client address and port and our
 * port identify it; no syscall). Caller holds nsk_g.lock. */
static int local_candidate(const struct nsk_offer *o)
{
	struct cand_match m = {.o = o, .found = 0};
	nsk_fdmap_foreach(&nsk_socks, cand_visit, &m);
	return m.found;
}

/* Queue offer @o with @memfd to our own rendezvous socket again and tell its listener's
 * readers. Consumes @memfd. Caller holds nsk_g.lock. */
static void requeue_locked(struct nsk_offer *o, int memfd)
{
	o->hops++;
	int r = nsk_g.rq_fd >= 0 ? nsk_offer_send(nsk_g.rq_fd, NULL, o, memfd) : -EBADF;
	REAL(close)(memfd);
	nsk_log(NSK_LOG_DEBUG, "offer for port %u re-queued (hop %u): %s", o->cport, o->hops,
		r < 0 ? strerror(-r) : "ok");
	if (r < 0) {
		pcount(NSK_PC_OFFERS_EXPIRED); /* the client withdraws it at its deadline */
		return;
	}
	struct nsk_reg_key k;
	dst_key(&k, o->family, o->saddr, o->sport);
	struct nsk_reg_entry e;
	int slot = nsk_registry_lookup(&nsk_g.dom.reg, &k, 1, &e);
	if (slot >= 0)
		nsk_add64(&nsk_g.dom.reg.e[slot].offer_seq, 1);
}

void nsk_sock_exec_requeue(void)
{
	pthread_mutex_lock(&nsk_g.lock);
	for (int i = 0; i < npend; i++)
		requeue_locked(&pend[i].o, pend[i].memfd);
	NPEND_SET(0);
	pthread_mutex_unlock(&nsk_g.lock);
}


/* Pull every queued offer into the pending table. Caller holds nsk_g.lock. */
/* Has the client given up on this offer (its connection closed or its deadline passed
 * before anyone claimed it)? Read from the segment's header without mapping it. */
static int offer_withdrawn(int memfd)
{
	uint32_t st = 0;
	return pread(memfd, &st, sizeof(st), offsetof(struct nsk_chan_hdr, state)) == sizeof(st) &&
	       st == NSK_CH_WITHDRAWN;
}

/* Drop pending offers nobody will claim: withdrawn by their client, or older than twice the
 * offer timeout. Caller holds nsk_g.lock. */
static void expire_offers_locked(void)
{
	uint64_t now = nsk_now_ns();
	for (int i = 0; i < npend;) {
		if (now - pend[i].t > 2 * nsk_g.offer_timeout_ns || offer_withdrawn(pend[i].memfd)) {
			REAL(close)(pend[i].memfd);
			pend[i] = pend[npend - 1];
			NPEND_SET(npend - 1);
			pcount(NSK_PC_OFFERS_EXPIRED);
		} else {
			i++;
		}
	}
}

void nsk_sock_expire_offers(void)
{
	if (!__atomic_load_n(&npend, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&nsk_g.lock);
	expire_offers_locked();
	pthread_mutex_unlock(&nsk_g.lock);
}

static void drain_offers_locked(void)
{
	uint64_t now = nsk_now_ns();
	expire_offers_locked();
	if (nsk_g.rv_fd < 0)
		return;
	uint64_t requeued[32];
	int nrq = 0;
	for (;;) {
		struct nsk_offer o;
		struct ucred cred;
		int memfd;
		int r = nsk_offer_recv_cred(nsk_g.rv_fd, &o, &memfd, &cred);
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			if (r == -EPROTO) {
				pcount(NSK_PC_BROKEN);
				nsk_log(NSK_LOG_WARN, "malformed offer discarded");
				continue;
			}
			break;
		}
		if (nsk_g.rv_shared && o.hops < REQUEUE_HOPS && !local_candidate(&o)) {
			/* for another process sharing the listener; it went to the end of the
			 * queue, so stop reading once we meet one of ours again */
			uint64_t nonce = o.nonce;
			requeue_locked(&o, memfd);
			__atomic_store_n(&requeue_quiet_until, now + REQUEUE_QUIET_NS, __ATOMIC_RELAXED);
			int again = 0;
			for (int k = 0; k < nrq; k++)
				again |= requeued[k] == nonce;
			if (again)
				break;
			if (nrq < (int)(sizeof(requeued) / sizeof(requeued[0])))
				requeued[nrq++] = nonce;
			continue;
		}
		if (npend == PENDING_MAX) {
			REAL(close)(pend[0].memfd);
			pend[0] = pend[npend - 1];
			NPEND_SET(npend - 1);
			pcount(NSK_PC_OFFERS_EXPIRED);
		}
		pend[npend].o = o;
		pend[npend].cred = cred;
		pend[npend].memfd = memfd;
		pend[npend].t = now;
		NPEND_SET(npend + 1);
	}
}

/* Find and remove the offer for @s's 4-tuple (its sender's credentials into @cred if not
 * NULL). Caller holds nsk_g.lock. */
static int take_offer_locked(struct nsk_sock *s, struct nsk_offer *o, struct ucred *cred)
{
	struct nsk_conn *c = s->conn;
	for (int i = 0; i < npend; i++) {
		struct nsk_offer *p = &pend[i].o;
		if (p->family == c->family && p->cport == c->rport && p->sport == c->lport &&
		    !memcmp(p->caddr, c->raddr, 16) && !memcmp(p->saddr, c->laddr, 16)) {
			*o = *p;
			if (cred)
				*cred = pend[i].cred;
			int fd = pend[i].memfd;
			pend[i] = pend[npend - 1];
			NPEND_SET(npend - 1);
			return fd;
		}
	}
	return -1;
}

void nsk_sock_internal_fd_check(int fd)
{
	nsk_udp_internal_fd_check(fd);
	/* Fast path for every close(): nothing of ours can be at this number. */
	if (fd < 0)
		return;
	if (nsk_fdmap_get(&nsk_kept, fd))
		kept_fd_gone(fd);
	if (fd == __atomic_load_n(&nsk_g.tab.fd, __ATOMIC_RELAXED))
		__atomic_store_n(&nsk_g.tab.fd, -1, __ATOMIC_RELAXED);
	if (fd == __atomic_load_n(&nsk_g.rq_fd, __ATOMIC_RELAXED))
		__atomic_store_n(&nsk_g.rq_fd, -1, __ATOMIC_RELAXED);
	if (fd != __atomic_load_n(&nsk_g.rv_fd, __ATOMIC_RELAXED) &&
	    fd != __atomic_load_n(&nsk_g.offer_fd, __ATOMIC_RELAXED) &&
	    __atomic_load_n(&npend, __ATOMIC_RELAXED) == 0)
		return;
	/* The application closes (or dup2s over) one of our descriptors: forget it. */
	pthread_mutex_lock(&nsk_g.lock);
	if (fd == nsk_g.rv_fd)
		nsk_g.rv_fd = -1;
	if (fd == nsk_g.offer_fd)
		nsk_g.offer_fd = -1;
	for (int i = 0; i < npend; i++)
		if (pend[i].memfd == fd) {
			pend[i] = pend[npend - 1];
			NPEND_SET(npend - 1);
			break;
		}
	pthread_mutex_unlock(&nsk_g.lock);
}

/* From the switch on, TCP carries only 1-byte control segments: they must not wait for
 * Nagle (the application's own TCP_NODELAY is remembered and reported by getsockopt). */
static void ctl_nodelay(struct nsk_sock *s)
{
	int one = 1, zero = 0;
	REAL(setsockopt)(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (s->app_cork) /* a corked kernel socket would hold control bytes back */
		REAL(setsockopt)(s->fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero));
}

static struct nsk_chan_side *side_me(struct nsk_sock *s);

/* Send one control byte if our sending direction is inside a ring epoch (past its switch
 * point, before any switch-back marker), where the peer takes it for one: 1 if sent, 0 if
 * not allowed now, -1 with errno if the kernel refused it. */
static int send_ctl_byte(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	int r = 0;
	xlock(&c->ctllock);
	if (nsk_load32(&c->tx_switched) && !atomic_load(&s->closing)) {
		r = REAL(send)(s->fd, &ctl_byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 1 : -1;
		if (r == 1)
			nsk_store64(&side_me(s)->ctl_sent, nsk_load64(&side_me(s)->ctl_sent) + 1);
	}
	int e = errno;
	xunlock(&c->ctllock);
	errno = e;
	return r;
}

static void send_ctl(struct nsk_sock *s)
{
	if (send_ctl_byte(s) == 1)
		nsk_add64(&s->conn->wakes_sent, 1);
}

/* Spinning only pays when the two sides can run at the same time: not when both are
 * confined to the same single CPU (or the machine has one). */
static void spin_policy(struct nsk_sock *s)
{
	uint64_t mine = nsk_cpu_mask();
	uint64_t peer = nsk_load64(&s->chan.hdr->side[1 - s->chan.side].cpumask);
	int single = mine && peer && mine == peer && !(mine & (mine - 1));
	/* A peer in another kernel (ivshmem region) runs on a CPU of its own whatever the masks
	 * say: spinning only delays the processes of our own kernel, bounded by the budget. */
	__atomic_store_n(&s->spin_ns, s->vm || (nsk_cpus_online() > 1 && !single) ? nsk_g.spin_ns : 0,
			 __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- ring sizing --------- */
/* Dynamic proportional memory: the policy is ringsize.c's; here the mechanics. The client
 * charges the domain's memory account for the channel as it starts; each side then charges
 * or gives back changes of the ring it produces into, in its own connection slot (`charged`,
 * given back at the last close or with the process's table). */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int mem_pressure(void)
{
	return nsk_g.dom.reg.hdr && nsk_load32(&nsk_g.dom.reg.hdr->mem_pressure) != 0;
}

/* Our own NEARSOCK_MEM_BUDGET, else the one the agent set for the domain (none: unlimited,
 * but still counted: the domain's memory use is what `nearsock status` and the agent show). */
static uint64_t mem_budget_now(void)
{
	uint64_t b = nsk_g.mem_budget ? nsk_g.mem_budget : nsk_load64(&nsk_g.dom.reg.hdr->mem_budget);
	return b ? b : UINT64_MAX;
}

static int mem_charge(struct nsk_conn *c, uint64_t bytes)
{
	int r = nsk_budget_charge(&nsk_g.dom, &nsk_g.tab, bytes, mem_budget_now());
	if (r == 0)
		nsk_add64(&c->charged, bytes);
	else if (r == -EDQUOT && !mem_pressure())
		nsk_store32(&nsk_g.dom.reg.hdr->mem_pressure, 1); /* idle rings give memory back */
	return r;
}

static void mem_uncharge(struct nsk_conn *c, uint64_t bytes)
{
	uint64_t cur = nsk_load64(&c->charged);
	while (!atomic_compare_exchange_weak_explicit(NSK_A64(&c->charged), &cur,
						      cur > bytes ? cur - bytes : 0,
						      memory_order_relaxed, memory_order_relaxed))
		;
	if (cur)
		nsk_budget_uncharge(&nsk_g.dom, &nsk_g.tab, cur > bytes ? bytes : cur);
}

/* Change our sending ring's capacity to @cap. Caller holds txlock. 0, -EBUSY (not empty),
 * -EDQUOT (budget), -ENOMEM (no memory for the new pages), -EPROTO. */
static int ring_set_cap_errno(struct nsk_sock *s, uint64_t cap);

static int ring_set_cap(struct nsk_sock *s, uint64_t cap)
{
	int saved = errno; /* the application's errno survives a successful call */
	int r = ring_set_cap_errno(s, cap);
	errno = saved;
	return r;
}

static int ring_set_cap_errno(struct nsk_sock *s, uint64_t cap)
{
	struct nsk_conn *c = s->conn;
	struct nsk_ring *r = &s->chan.tx;
	int64_t fr = nsk_ring_free(r);
	uint64_t old = r->size;
	if (fr < 0)
		return -EPROTO;
	if (cap == old)
		return 0;
	if ((uint64_t)fr != old)
		return -EBUSY; /* only an empty ring changes size (cheap test first) */
	if (cap > old) {
		int e = mem_charge(c, cap - old);
		if (e < 0)
			return e;
		/* Back the new pages now: a full tmpfs fails here, not with SIGBUS later. */
		if (madvise(r->data + old, cap - old, MADV_POPULATE_WRITE) < 0 && errno != EINVAL) {
			mem_uncharge(c, cap - old);
			return -ENOMEM;
		}
	}
	int e = nsk_ring_resize(r, cap);
	if (e < 0) {
		if (cap > old)
			mem_uncharge(c, cap - old);
		return e;
	}
	if (cap < old) {
		/* Nothing unread lies beyond the new capacity: give those pages back (the peer's
		 * mapping of the same memfd loses them too). */
		madvise(r->data + cap, old - cap, MADV_REMOVE);
		mem_uncharge(c, old - cap);
	}
	s->rsz.full = 0;
	s->rsz.changes++;
	nsk_store32(&c->tx_ring_kb, (uint32_t)(cap >> 10));
	nsk_store32(&c->ring_changes, nsk_load32(&c->ring_changes) + 1);
	nsk_log(NSK_LOG_DEBUG, "fd %d: send ring %llu -> %llu KiB", s->fd,
		(unsigned long long)(old >> 10), (unsigned long long)(cap >> 10));
	return 0;
}

/* Before a ring write (txlock held): grow if demand asked for it and the ring is empty. */
static void ring_maybe_grow(struct nsk_sock *s)
{
	if (!nsk_g.rsz.dynamic || s->rsz.full < 2 || s->vm) /* (region rings: fixed size) */
		return;
	uint64_t t = nsk_rsz_grow_target(&nsk_g.rsz, &s->rsz, nsk_ring_cap(&s->chan.tx), mem_pressure());
	if (t == nsk_ring_cap(&s->chan.tx))
		return;
	int e = ring_set_cap(s, t);
	if (e == -EDQUOT || e == -ENOMEM)
		s->rsz.full = 0; /* not now: measure demand again */
}

static uint64_t coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Maintenance look, wherever a thread is about to sleep on the socket (blocking calls,
 * poll/select/epoll arming; their sleeps are bounded to a second while sizing is dynamic):
 * shrink an idle ring, or one under memory pressure. Not on the data path: a thread that
 * never sleeps keeps its rings busy. Cheap when not due (one coarse clock read). */
static void ring_tick(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!nsk_g.rsz.dynamic || !chan_ok(s) || !nsk_load32(&c->tx_switched) || s->vm)
		return; /* (region rings: fixed size) */
	uint64_t now = coarse_ns();
	if (now < __atomic_load_n(&s->rsz_next_ns, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&s->rsz_next_ns, now + 20000000ull, __ATOMIC_RELAXED);
	if (!xtrylock(&c->txlock))
		return;
	int p = mem_pressure();
	if (p && nsk_load64(&nsk_g.dom.reg.hdr->mem_used) < mem_budget_now() / 4 * 3)
		nsk_store32(&nsk_g.dom.reg.hdr->mem_pressure, p = 0); /* relieved */
	uint64_t t = nsk_rsz_tick(&nsk_g.rsz, &s->rsz, nsk_ring_cap(&s->chan.tx), now,
				  CGET(c->tx_shm_msgs), p);
	if (t != nsk_ring_cap(&s->chan.tx) && nsk_load32(&c->tx_switched))
		ring_set_cap(s, t);
	xunlock(&c->txlock);
}

/* ---------------------------------------------------------------- live switching ------ */

/* Does this side want its connections on TCP? The socket's own wish (nearsock_evacuate),
 * the process's (nearsock evacuate PID) or the domain's (nearsock evacuate --all). */
int nsk_sock_proc_want_tcp(void)
{
	if (nsk_g.tab.hdr && nsk_load32(&nsk_g.tab.hdr->want_tcp))
		return 1;
	return nsk_g.dom.reg.hdr && nsk_load32(&nsk_g.dom.reg.hdr->want_tcp) != 0;
}

static int local_want_tcp(struct nsk_sock *s)
{
	if (__atomic_load_n(&s->pin_tcp, __ATOMIC_RELAXED))
		return 1;
	return nsk_sock_proc_want_tcp();
}

static struct nsk_chan_side *side_me(struct nsk_sock *s)
{
	return &s->chan.hdr->side[s->chan.side];
}

static struct nsk_chan_side *side_peer(struct nsk_sock *s)
{
	return &s->chan.hdr->side[1 - s->chan.side];
}

/* Should the connection be on TCP? Either side may ask (evacuation is a property of the
 * connection: the ring goes away for both directions). Publishes our own wish. */
static int conn_want_tcp(struct nsk_sock *s)
{
	uint32_t lw = (uint32_t)local_want_tcp(s);
	struct nsk_chan_side *me = side_me(s);
	if (nsk_load32(&me->evac) != lw)
		nsk_store32(&me->evac, lw);
	if (lw || nsk_load32(&side_peer(s)->evac) != 0)
		return 1;
	/* A region channel either side retired is finished for both: the other side follows,
	 * so that it can be dropped (an attach right after an evacuation may have come before
	 * the peer saw the wish), and an attach gets a fresh channel. */
	return s->vm && (nsk_load32(&me->retired) || nsk_load32_acquire(&side_peer(s)->retired));
}

/* May our sending direction start epoch e+1? Only once the peer's receiver is in epoch e:
 * then no TCP read it started earlier can run past our next switch point or marker, and
 * no ring read past our next ring stop (the ring may carry bytes of a later epoch). */
static int peer_caught_up(struct nsk_sock *s, uint32_t e)
{
	return nsk_load32_acquire(&side_peer(s)->rx_epoch) >= e;
}

/* Publish our switch point: from now on our application bytes go through the ring.
 * Caller holds txlock. */
static void switch_tx_locked(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (nsk_load32(&c->tx_switched) || !chan_ok(s))
		return;
	if (nsk_load32(&c->mode) == NSK_MODE_OFFERED && nsk_chan_state(&s->chan) == NSK_CH_CLAIMED)
		nsk_store32(&c->mode, NSK_MODE_SHM); /* the server claimed: we may switch */
	if (nsk_load32(&c->mode) != NSK_MODE_SHM || nsk_load32(&c->tx_shut))
		return;
	struct nsk_chan_side *me = side_me(s);
	uint32_t e = nsk_load32(&me->epoch);
	if ((e & 1) || conn_want_tcp(s) || !peer_caught_up(s, e) || atomic_load(&s->closing))
		return; /* (odd: our own record disagrees with tx_switched; leave it alone) */
	if (s->vm && nsk_load32(&me->retired))
		return; /* a region channel once evacuated is only dropped (nsk_sock_vm_drop) */
	nsk_store64(&me->switch_at, CGET(c->tx_tcp));
	xlock(&c->ctllock);
	if (atomic_load(&s->closing)) { /* our fd number may belong to another socket now */
		xunlock(&c->ctllock);
		return;
	}
	/* Release pairs with the peer's acquire of `epoch` in peer_switch(): switch_at is
	 * visible first. The marker byte below is sent after, so the peer sees the switch point
	 * before any byte past it. */
	nsk_store32_release(&me->epoch, e + 1);
	nsk_store32_release(&me->switched, 1);
	nsk_store32(&c->tx_switched, 1);
	if (e == 0) {
		spin_policy(s);
		ctl_nodelay(s);
	}
	if (REAL(send)(s->fd, &ctl_byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
		nsk_store64(&me->ctl_sent, nsk_load64(&me->ctl_sent) + 1);
	xunlock(&c->ctllock);
	CADD(c->switches, 1);
	nsk_log(NSK_LOG_DEBUG, "fd %d: tx switched to shm after %llu TCP bytes (epoch %u)", s->fd,
		(unsigned long long)CGET(c->tx_tcp), e + 1);
}

/* Send the switch-back marker: it must arrive, or the peer would wait for it. The kernel
 * socket may be non-blocking and its buffer full of our earlier control bytes. */
static int send_back_marker(struct nsk_sock *s)
{
	for (int tries = 0; tries < 100; tries++) {
		ssize_t n = REAL(send)(s->fd, &back_byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == 1)
			return 0;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		struct pollfd p = {.fd = s->fd, .events = POLLOUT};
		REAL(poll)(&p, 1, 100);
	}
	return -ETIMEDOUT;
}

/* Evacuation of our sending direction: publish our ring stop, send the switch-back marker,
 * and from now on send on TCP. Caller holds txlock. */
static void evacuate_tx_locked(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!nsk_load32(&c->tx_switched) || !chan_ok(s) || nsk_load32(&c->mode) != NSK_MODE_SHM ||
	    nsk_load32(&c->tx_shut))
		return;
	struct nsk_chan_side *me = side_me(s);
	uint32_t e = nsk_load32(&me->epoch);
	if (!(e & 1) || !peer_caught_up(s, e))
		return;
	if (s->agg)
		nsk_agg_flush(s->agg); /* no delayed wake-up of the ring after this */
	xlock(&c->ctllock);
	if (atomic_load(&s->closing)) { /* our fd number may belong to another socket now */
		xunlock(&c->ctllock);
		return;
	}
	nsk_store64(&me->ring_stop, nsk_load64(&s->chan.tx.ctl->tail));
	/* Release pairs with the peer's acquire of `epoch` in peer_epoch(): the ring stop and
	 * every ring byte before it are visible first. */
	nsk_store32_release(&me->epoch, e + 1);
	nsk_store32(&c->tx_switched, 0);
	int r = send_back_marker(s);
	xunlock(&c->ctllock);
	/* A receiver asleep on the ring re-checks and finds the marker; one asleep in
	 * poll/epoll is woken by the marker itself. */
	nsk_futex_bump(&s->chan.tx.ctl->data_seq);
	CADD(c->switches, 1);
	if (r < 0)
		nsk_log(NSK_LOG_DEBUG, "fd %d: switch-back marker not sent (%s)", s->fd, strerror(-r));
	nsk_log(NSK_LOG_DEBUG, "fd %d: tx switched back to TCP after %llu ring bytes (epoch %u)",
		s->fd, (unsigned long long)nsk_load64(&me->ring_stop), e + 1);
}

/* A region connection's sending direction on TCP for good in this channel: once both sides
 * retired theirs and read everything, the channel is dropped (nsk_sock_vm_drop) and an attach
 * makes a new one. (The region may be about to go away: a VM migrating out evacuates first;
 * a channel kept for a later attach would be lost with the device.) Caller holds txlock. */
static void retire_tx_locked(struct nsk_sock *s)
{
	struct nsk_chan_side *me = side_me(s);
	if (!s->vm || nsk_load32(&s->conn->tx_switched) || (nsk_load32(&me->epoch) & 1) ||
	    nsk_load32(&me->retired))
		return;
	/* Release pairs with the peer's acquire in vm_done(): our final epoch and control-byte
	 * count are visible first. */
	nsk_store32_release(&me->retired, 1);
	nsk_log(NSK_LOG_DEBUG, "fd %d: region channel retired by our side", s->fd);
}

int nsk_sock_pin_tcp(struct nsk_sock *s, int tcp)
{
	int kind = s->kind; /* (atomic: connect() may be setting it) */
	if (kind != NSK_CK_CLIENT && kind != NSK_CK_SERVER)
		return -EOPNOTSUPP;
	__atomic_store_n(&s->pin_tcp, tcp ? 1 : 0, __ATOMIC_RELAXED);
	nsk_sock_refresh(s);
	return 0;
}

/* Follow the connection's wish (TCP or shared memory) with our sending direction, if no
 * other thread is sending right now (it will be done at a later call). */
static void follow_wish(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!chan_ok(s) || nsk_load32(&c->mode) != NSK_MODE_SHM)
		return;
	int want = conn_want_tcp(s);
	int on_ring = (int)nsk_load32(&c->tx_switched);
	if (want == !on_ring) {
		if (want && s->vm && !nsk_load32(&side_me(s)->retired) && xtrylock(&c->txlock)) {
			retire_tx_locked(s);
			xunlock(&c->txlock);
		}
		return;
	}
	if (!want && nsk_load32(&side_me(s)->epoch) < 2)
		return; /* the first switch is the upgrade's (nsk_sock_refresh) */
	if (!xtrylock(&c->txlock))
		return;
	if (want) {
		evacuate_tx_locked(s);
		retire_tx_locked(s);
	} else {
		switch_tx_locked(s);
	}
	xunlock(&c->txlock);
}

static uint64_t ctl_pending(struct nsk_sock *s);
static int rx_trylock(struct nsk_sock *s);

/* Is the region channel done with? Both sides retired their sending directions, our
 * receiver read the peer's last ring byte and its switch-back marker, and every control byte
 * the peer counted. */
static int vm_done(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	struct nsk_chan_side *me = side_me(s), *pe = side_peer(s);
	if (nsk_chan_state(&s->chan) != NSK_CH_CLAIMED || !nsk_load32(&me->retired) ||
	    !nsk_load32_acquire(&pe->retired) || nsk_load32(&c->tx_switched) ||
	    nsk_load32(&c->rx_crossed))
		return 0;
	uint32_t re = nsk_load32(&me->rx_epoch);
	return !(re & 1) && nsk_load32(&pe->epoch) == re && !ctl_pending(s) &&
	       nsk_ring_used(&s->chan.rx) == 0;
}

/* A region connection is finished with its channel (done, withdrawn, or never claimed):
 * mode @from -> TCP by CAS (a concurrent reset to BROKEN wins: the application sees the
 * reset, not a clean EOF), the channel retired, and the connection a TCP candidate of the
 * region again. @detach: give its memory back (nsk_vm_detach; @vm_locked as there); 0 when
 * the region is gone and the memory must not be touched. */
static int vm_recandidate(struct nsk_sock *s, uint32_t from, int detach, int vm_locked)
{
	struct nsk_conn *c = s->conn;
	if (!atomic_compare_exchange_strong_explicit(NSK_A32(&c->mode), &from, NSK_MODE_TCP,
						     memory_order_acq_rel, memory_order_relaxed))
		return 0;
	chan_retire(s);
	if (detach)
		nsk_vm_detach(s, vm_locked);
	/* The next channel starts its epochs and control-byte counts afresh; switch points
	 * stay absolute byte counts of the connection. */
	nsk_store64(&c->ctl_bytes, 0);
	s->candidate = 1;
	return 1;
}

int nsk_sock_vm_drop(struct nsk_sock *s, int vm_locked)
{
	struct nsk_conn *c = s->conn;
	if (!s->vm || !chan_ok(s) || nsk_load32(&c->mode) != NSK_MODE_SHM || !vm_done(s))
		return 0;
	/* Shared with another process (fork): its copy would go on reading the channel. */
	if (!nsk_sock_last_holder(s))
		return 0;
	nsk_vm_mark_done(s);
	if (!xtrylock(&c->txlock))
		return 0; /* a sender is busy: it drops at its next call, or the next beat does */
	/* A reader in the connection's last TCP epoch (blocked in the kernel, holding rxlock)
	 * touches the channel only through chan_ok()-gated checks: the drop need not wait for
	 * it (it may wait for a long time, and the region may be about to go). */
	int rx = rx_trylock(s);
	int ok = chan_ok(s) && vm_done(s) && vm_recandidate(s, NSK_MODE_SHM, 1, vm_locked);
	if (rx)
		xunlock(&c->rxlock);
	xunlock(&c->txlock);
	if (ok)
		nsk_log(NSK_LOG_DEBUG, "fd %d: region channel dropped (evacuated both ways)", s->fd);
	return ok;
}

void nsk_sock_vm_follow(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!s->vm || !chan_ok(s) || nsk_load32(&c->mode) != NSK_MODE_SHM ||
	    atomic_load(&s->closing) || !nsk_sock_last_holder(s))
		return;
	/* Only if the switch-back marker can go at once: the caller must not wait. */
	struct pollfd p = {.fd = s->fd, .events = POLLOUT};
	if (REAL(poll)(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
		return;
	follow_wish(s);
}

int nsk_sock_vm_forget(struct nsk_sock *s)
{
	int ok = vm_recandidate(s, NSK_MODE_SHM, 0, 0);
	if (ok)
		nsk_log(NSK_LOG_DEBUG, "fd %d: region gone after the channel was done: on TCP",
			s->fd);
	return ok;
}

int nsk_sock_vm_unoffer(struct nsk_sock *s, int vm_locked)
{
	struct nsk_conn *c = s->conn;
	if (!s->vm || !chan_ok(s) || nsk_load32(&c->mode) != NSK_MODE_OFFERED ||
	    pthread_mutex_trylock(&s->lock) != 0)
		return 0;
	/* (detached: the chunks are freed, never claimed, ours alone) */
	int ok = nsk_chan_withdraw(&s->chan) == 0 &&
		 vm_recandidate(s, NSK_MODE_OFFERED, 1, vm_locked);
	pthread_mutex_unlock(&s->lock);
	if (ok)
		nsk_log(NSK_LOG_DEBUG, "fd %d: region offer withdrawn (its member is gone)", s->fd);
	return ok;
}

static void try_claim(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	uint64_t nonce;
	if (s->vm) { /* a peer in another kernel: its offer comes through the region's mailbox */
		if (local_want_tcp(s) || nsk_vm_take(s) <= 0)
			return; /* (evacuated: the client's offer waits until we are attached) */
		nonce = s->chan.nonce;
		goto claim;
	}
	if (s->reg_slot < 0)
		return;
	/* Shared with another process (fork): they could not both map the channel. Looked at
	 * again once the others have closed it. */
	if (!nsk_sock_last_holder(s))
		return;
	/* Nothing new was posted to the listener since we last looked: no syscall, no lock. */
	uint64_t seq = nsk_load64_acquire(&nsk_g.dom.reg.e[s->reg_slot].offer_seq);
	if (seq == s->seen_seq)
		return;
	if (nsk_g.rv_shared && nsk_now_ns() < __atomic_load_n(&requeue_quiet_until, __ATOMIC_RELAXED))
		return; /* we just passed offers on: let the others look first (seq kept) */
	s->seen_seq = seq;
	struct nsk_offer o;
	struct ucred cred;
	int memfd;
	pthread_mutex_lock(&nsk_g.lock);
	if (atomic_load(&s->closing)) {
		/* Closed meanwhile (a call still holds the object): once the kernel socket is
		 * gone a new connection may have the same addresses and ports, and its offer
		 * would match — it is that socket's to claim, not this one's. (Closing is set
		 * under nsk_g.lock: it cannot change while we take offers.) */
		pthread_mutex_unlock(&nsk_g.lock);
		return;
	}
	drain_offers_locked();
	drained_seq[s->reg_slot] = seq;
	for (;;) {
		memfd = npend && (s->tuple_ok || fill_tuple(s) == 0) ? take_offer_locked(s, &o, &cred)
								      : -1;
		const char *why;
		if (memfd < 0 || !nsk_g.dom.shared || nsk_verify_offerer(c, &o, &cred, &why) == 0)
			break;
		/* Not from the owner of the client end: discarded. The genuine client's offer may
		 * be pending too, or still come: the connection stays a TCP candidate. */
		REAL(close)(memfd);
		pcount(NSK_PC_UNPROVEN);
		nsk_log(NSK_LOG_WARN, "fd %d: offer from pid %d uid %d refused (%s)", s->fd,
			(int)cred.pid, (int)cred.uid, why);
	}
	pthread_mutex_unlock(&nsk_g.lock);
	if (memfd < 0)
		return;
	int r = nsk_chan_attach(&s->chan, memfd, &o);
	if (r == 0)
		keep(s, memfd);
	REAL(close)(memfd);
	if (r == 0)
		chan_publish(s);
	if (r < 0) {
		if (r == -EPROTO)
			pcount(NSK_PC_BROKEN);
		else
			pcount_fallback(r);
		nsk_log(NSK_LOG_WARN, "fd %d: offer rejected (%s): staying on TCP", s->fd,
			strerror(-r));
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	nonce = o.nonce;
claim:
	xlock(&c->txlock);
	if (nsk_chan_claim(&s->chan) < 0) {
		xunlock(&c->txlock);
		if (s->vm) { /* withdrawn by its client meanwhile: it offers again */
			vm_recandidate(s, NSK_MODE_TCP, 1, 0);
			return;
		}
		chan_retire(s);
		unkeep(s);
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	c->nonce = nonce;
	s->candidate = 0;
	nsk_store64(&c->charged, 0); /* the client charged the channel as it starts */
	nsk_store32(&c->tx_ring_kb, (uint32_t)(nsk_ring_cap(&s->chan.tx) >> 10));
	nsk_store32(&c->mode, NSK_MODE_SHM);
	/* Claimed: switch our sending side at once, still holding txlock (no TCP send can slip
	 * in between the switch point and the marker). */
	switch_tx_locked(s);
	xunlock(&c->txlock);
	pcount(NSK_PC_CLAIMS);
	if (s->reg_slot >= 0)
		nsk_add64(&nsk_g.dom.reg.e[s->reg_slot].upgraded, 1);
	nsk_log(NSK_LOG_DEBUG, "fd %d: claimed channel", s->fd);
}

void nsk_sock_accepted(struct nsk_sock *s, int reg_slot, const struct sockaddr *peer)
{
	s->reg_slot = reg_slot;
	if (reg_slot < 0) {
		nsk_store32(&s->conn->mode, NSK_MODE_PLAIN);
		return;
	}
	nsk_add64(&nsk_g.dom.reg.e[reg_slot].accepted, 1);
	/* A peer on another host (or another namespace) can never offer: plain TCP at once. */
	uint16_t fam, port;
	uint8_t addr[16];
	/* ... unless the listener is bound to exactly one non-loopback address: clients in
	 * other network namespaces of this host find it (nsk_registry_lookup_foreign). */
	int exact = !is_wildcard_addr(nsk_g.dom.reg.e[reg_slot].addr);
	if (nsk_norm_addr(peer, &fam, addr, &port) < 0 ||
	    (!nsk_is_loopback(fam, addr) && (fill_tuple(s) < 0 || (!exact && memcmp(s->conn->laddr, addr, 16))))) {
		nsk_store32(&s->conn->mode, NSK_MODE_PLAIN);
		return;
	}
	/* What status shows until an offer needs the exact local address (fill_tuple). */
	s->conn->family = fam;
	memcpy(s->conn->raddr, addr, 16);
	s->conn->rport = port;
	pthread_mutex_lock(&nsk_g.lock);
	s->seen_seq = drained_seq[reg_slot];
	pthread_mutex_unlock(&nsk_g.lock);
	s->candidate = 1; /* TCP until a matching offer arrives */
	pthread_mutex_lock(&s->lock);
	try_claim(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---------------------------------------------------------------- offers (client) ----- */

static void deliver_offer(struct nsk_sock *s)
{
	pthread_mutex_lock(&nsk_g.lock);
	if (nsk_g.offer_fd < 0)
		nsk_g.offer_fd = REAL(socket)(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int ofd = nsk_g.offer_fd;
	int r = ofd < 0 ? -errno : nsk_offer_send(ofd, s->offer_path, &s->offer, s->offer_memfd);
	pthread_mutex_unlock(&nsk_g.lock);
	if (r == -EAGAIN || r == -ENOBUFS)
		return; /* the listener's queue is full: retry on a later call */
	REAL(close)(s->offer_memfd);
	s->offer_memfd = -1;
	s->offer_pending = 0;
	if (r < 0) {
		pcount(NSK_PC_OFFERS_FAILED);
		nsk_log(NSK_LOG_DEBUG, "fd %d: offer to %s failed (%s): TCP", s->fd, s->offer_path,
			strerror(-r));
		if (r == -ECONNREFUSED || r == -ENOENT) {
			/* The listener's process is gone: retire its stale entry. */
			struct nsk_reg_entry e;
			if (nsk_registry_read(&nsk_g.dom.reg, s->reg_slot, &e) &&
			    !nsk_proc_alive((pid_t)e.pid, e.start_time))
				nsk_registry_mark_dead(&nsk_g.dom.reg, s->reg_slot, e.state);
		}
		chan_retire(s);
		unkeep(s);
		nsk_store32(&s->conn->mode, NSK_MODE_PLAIN);
		return;
	}
	pcount(NSK_PC_OFFERS_SENT);
	nsk_log(NSK_LOG_DEBUG, "fd %d: offer sent (port %u)", s->fd, s->conn->lport);
	/* Tell the owner something is queued (it polls this word instead of the socket). */
	nsk_add64(&nsk_g.dom.reg.e[s->reg_slot].offer_seq, 1);
}

static void offer(struct nsk_sock *s);

void nsk_sock_connected(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (nsk_load32(&c->mode) != NSK_MODE_TCP || !nsk_domain_ready() || fill_tuple(s) < 0) {
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	struct nsk_reg_key k;
	dst_key(&k, c->family, c->raddr, c->rport);
	int dst_local = nsk_is_loopback(k.family, k.addr) || !memcmp(c->raddr, c->laddr, 16);
	struct nsk_reg_entry e;
	int slot = nsk_registry_lookup(&nsk_g.dom.reg, &k, dst_local, &e);
	/* Not in our namespace: a listener of this host in another one, bound to exactly this
	 * address (its own veth address), is a co-resident peer too. The offer's tuple is
	 * matched against the accepted connection, so a wrong guess only costs an offer. */
	if (slot < 0 && !dst_local && nsk_load32(&nsk_g.dom.reg.hdr->exact_binds))
		slot = nsk_registry_lookup_foreign(&nsk_g.dom.reg, &k, &e);
	if (slot < 0 && nsk_vm_connected(s)) { /* a listener of another kernel in our region */
		s->candidate = 1;
		if (nsk_g.eager && !local_want_tcp(s))
			offer(s);
		return;
	}
	if (slot < 0 || nsk_rv_path(&nsk_g.dom, e.rv, s->offer_path, sizeof(s->offer_path)) < 0) {
		/* no co-resident nearsock listener: TCP for good, at no further cost */
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	s->reg_slot = slot;
	s->candidate = 1;
	if (nsk_g.eager && !local_want_tcp(s))
		offer(s);
}

/* Create the channel and offer it to the listener found at connect time. */
static void offer(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	s->candidate = 0;
	if (s->vm) {
		nsk_vm_offer(s); /* channel in the ivshmem region, offer through its mailbox */
		return;
	}
	if (nsk_g.dom.shared) {
		/* Anyone in the domain can write the registry: prove the entry's process owns the
		 * listener before handing it our memory. */
		struct nsk_reg_entry e;
		const char *why = "registry entry gone";
		if (!nsk_registry_read(&nsk_g.dom.reg, s->reg_slot, &e) ||
		    nsk_verify_listener(c, &e, s->offer_path, &why) < 0) {
			pcount(NSK_PC_UNPROVEN);
			nsk_log(NSK_LOG_WARN, "fd %d: listener %s not proven (%s): TCP", s->fd,
				s->offer_path, why);
			nsk_store32(&c->mode, NSK_MODE_PLAIN);
			return;
		}
	}
	/* The channel as it starts (header page and both rings' first capacity) is charged
	 * here, where admission is decided; later changes of a ring's capacity are charged or
	 * given back by its producer, in its own slot (never below zero: a server shrinking its
	 * ring below the start overcounts until the client closes, never undercounts). */
	nsk_store64(&c->charged, 0);
	int memfd = mem_charge(c, NSK_CHAN_DATA_OFF + 2 * nsk_g.rsz.init);
	if (memfd == 0) {
		memfd = nsk_chan_create_sized(&s->chan, nsk_g.ring_size, nsk_g.rsz.init);
		nsk_store32(&c->tx_ring_kb, (uint32_t)(nsk_g.rsz.init >> 10));
	}
	if (memfd >= 0) {
		keep(s, memfd);
		chan_publish(s);
	}
	if (memfd < 0) {
		uint64_t charged = atomic_exchange_explicit(NSK_A64(&c->charged), 0,
							    memory_order_relaxed);
		if (charged)
			nsk_budget_uncharge(&nsk_g.dom, &nsk_g.tab, charged);
		pcount_fallback(memfd);
		nsk_log(NSK_LOG_INFO, "fd %d: no channel (%s): TCP", s->fd,
			memfd == -EDQUOT ? "domain memory budget reached" : strerror(-memfd));
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	struct nsk_offer *o = &s->offer;
	memset(o, 0, sizeof(*o));
	o->magic = NSK_OFFER_MAGIC;
	o->version = NSK_CHAN_VERSION;
	o->nonce = s->chan.nonce;
	o->seg_size = s->chan.size;
	o->family = c->family;
	o->cport = c->lport;
	o->sport = c->rport;
	memcpy(o->caddr, c->laddr, 16);
	memcpy(o->saddr, c->raddr, 16);
	o->pid = (uint32_t)nsk_g.pid;
	c->nonce = o->nonce;
	s->offer_memfd = memfd;
	s->offer_pending = 1;
	s->deadline_ns = nsk_now_ns() + nsk_g.offer_timeout_ns;
	nsk_store32(&c->mode, NSK_MODE_OFFERED);
	deliver_offer(s);
}

/* Lazy upgrade: a connection that carried a single request (and its answer) never pays for
 * a channel. Offer once the client sends a second time or 256 KiB moved either way. */
static int offer_due(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!nsk_sock_last_holder(s))
		return 0; /* shared with another process (fork): stays TCP while it is */
	if (local_want_tcp(s))
		return 0; /* evacuated: no new channels until attached again */
	if (s->vm && !nsk_vm_offer_due(s))
		return 0;
	return CGET(c->tx_tcp_msgs) >= 1 && (CGET(c->tx_tcp_msgs) >= 2 || CGET(c->tx_tcp) >= (256u << 10) ||
				       CGET(c->rx_tcp) >= (256u << 10));
}

static void client_refresh(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (s->vm)
		nsk_vm_client_refresh(s);
	if (s->offer_pending)
		deliver_offer(s);
	if (nsk_load32(&c->mode) != NSK_MODE_OFFERED)
		return;
	uint32_t st = nsk_chan_state(&s->chan);
	if (st == NSK_CH_OFFERED && nsk_now_ns() > s->deadline_ns &&
	    nsk_chan_withdraw(&s->chan) == 0) {
		pcount(NSK_PC_OFFERS_EXPIRED);
		nsk_log(NSK_LOG_DEBUG, "fd %d: offer not claimed in time: TCP", s->fd);
		if (s->vm) { /* a region peer may claim a later one (evacuated, or re-joining) */
			vm_recandidate(s, NSK_MODE_OFFERED, 1, 0);
			return;
		}
		if (s->offer_memfd >= 0) {
			REAL(close)(s->offer_memfd);
			s->offer_memfd = -1;
			s->offer_pending = 0;
		}
		chan_retire(s);
		unkeep(s);
		nsk_store32(&c->mode, NSK_MODE_PLAIN);
		return;
	}
	if (nsk_chan_state(&s->chan) == NSK_CH_CLAIMED)
		nsk_store32(&c->mode, NSK_MODE_SHM);
}

/* A non-blocking connect finished? Gives up (PLAIN) once it failed. */
static int connecting_done(struct nsk_sock *s)
{
	struct sockaddr_storage ra;
	socklen_t rl = sizeof(ra);
	if (getpeername(s->fd, (struct sockaddr *)&ra, &rl) == 0)
		return 1;
	struct pollfd p = {.fd = s->fd, .events = POLLOUT};
	if (REAL(poll)(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)))
		nsk_store32(&s->conn->mode, NSK_MODE_PLAIN);
	return 0;
}

void nsk_sock_refresh(struct nsk_sock *s)
{
	if (s->kind == NSK_CK_UDP)
		return; /* nothing to upgrade: udp.c decides per datagram */
	struct nsk_conn *c = s->conn;
	uint32_t mode = nsk_load32(&c->mode);
	if (mode == NSK_MODE_SHM) {
		follow_wish(s); /* evacuation or attach asked for (live switching) */
		if (s->vm && nsk_sock_vm_drop(s, 0))
			mode = NSK_MODE_TCP;
	}
	if (mode == NSK_MODE_PLAIN || mode == NSK_MODE_BROKEN || nsk_load32(&c->tx_switched))
		return;
	if (!chan_ok(s) && mode == NSK_MODE_SHM)
		return; /* inherited across fork after the upgrade: nothing to do here */
	pthread_mutex_lock(&s->lock);
	mode = nsk_load32(&c->mode);
	if (s->kind == NSK_CK_CLIENT) {
		if (mode == NSK_MODE_TCP && s->connecting && connecting_done(s)) {
			s->connecting = 0;
			nsk_sock_connected(s);
		} else if (mode == NSK_MODE_TCP && s->candidate && offer_due(s)) {
			offer(s);
		} else {
			client_refresh(s);
		}
	} else if (s->kind == NSK_CK_SERVER && mode == NSK_MODE_TCP && s->candidate) {
		try_claim(s);
	}
	if (nsk_load32(&c->mode) == NSK_MODE_SHM && !nsk_load32(&c->tx_switched) &&
	    nsk_load32(&side_me(s)->epoch) == 0 && xtrylock(&c->txlock)) {
		switch_tx_locked(s);
		xunlock(&c->txlock);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---------------------------------------------------------------- data path ----------- */

/* Epoch of the peer's sending direction as published (0: no claimed channel). */
static uint32_t peer_epoch(struct nsk_sock *s)
{
	if (!chan_ok(s) || nsk_chan_state(&s->chan) != NSK_CH_CLAIMED)
		return 0;
	/* Acquire pairs with the release in switch_tx_locked()/evacuate_tx_locked() on the
	 * peer: the switch point or ring stop it validates is visible. */
	return nsk_load32_acquire(&side_peer(s)->epoch);
}

/* Epoch of the peer's direction our receiver is in (even: TCP, odd: ring). */
static uint32_t my_rx_epoch(struct nsk_sock *s)
{
	return chan_ok(s) ? nsk_load32(&side_me(s)->rx_epoch) : 0;
}

static void mark_broken(struct nsk_sock *s, const char *what);
static int drain_ctl(struct nsk_sock *s);
static uint64_t ctl_pending(struct nsk_sock *s);

/* The peer's switch point ending the TCP epoch we receive in, if published. */
static int peer_switch(struct nsk_sock *s, uint64_t *at)
{
	/* Judge from the shared header, not our local mode: the peer may have claimed (and
	 * switched) before this side noticed. */
	uint32_t pe = peer_epoch(s);
	uint32_t re = my_rx_epoch(s);
	if (pe <= re || (re & 1))
		return 0;
	if (pe > re + 1) { /* a sender never runs more than one epoch ahead */
		mark_broken(s, "epoch ahead of the receiver");
		return 0;
	}
	*at = nsk_load64(&side_peer(s)->switch_at);
	return 1;
}

static void mark_broken(struct nsk_sock *s, const char *what)
{
	if (nsk_load32(&s->conn->mode) != NSK_MODE_BROKEN) {
		pcount(NSK_PC_BROKEN);
		nsk_log(NSK_LOG_WARN, "fd %d: peer broke the channel (%s): connection reset", s->fd,
			what);
		nsk_store32(&s->conn->mode, NSK_MODE_BROKEN);
		REAL(shutdown)(s->fd, SHUT_RDWR);
	}
}

/* The peer's FIN flag on the ring we consume: 0 or 1; anything else is a protocol
 * violation (the connection is reset and 1 returned so that callers stop waiting). */
static int peer_fin(struct nsk_sock *s)
{
	/* Acquire pairs with the release store of fin in nsk_sock_shutdown(): every byte
	 * written before the FIN is visible. */
	int f = nsk_sp_fin(nsk_load32_acquire(&s->chan.rx.ctl->fin));
	if (f < 0) {
		mark_broken(s, "FIN flag");
		return 1;
	}
	return f;
}

/* Has the receiver crossed the peer's switch point? Updates rx_crossed. */
static int rx_crossed(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (nsk_load32(&c->rx_crossed))
		return 1;
	uint64_t at = 0;
	int known = peer_switch(s, &at);
	int r = nsk_sp_crossed(CGET(c->rx_tcp), known, at);
	if (r < 0) {
		mark_broken(s, "switch point behind delivered bytes");
		return 0;
	}
	if (r) {
		/* Release pairs with the peer's acquire in peer_caught_up(). Two callers may
		 * cross at once: the CAS lets the epoch move once. */
		uint32_t re = my_rx_epoch(s);
		if (!(re & 1))
			__atomic_compare_exchange_n(&side_me(s)->rx_epoch, &re, re + 1, 0,
						    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
		nsk_store32(&c->rx_crossed, 1);
	}
	return r;
}

/* The receiver in a ring epoch with the ring empty: has the peer switched back to TCP?
 * Consumes the control bytes up to and including its switch-back marker (peeked first:
 * raw data follows the marker) and moves our receiver to the TCP epoch. Caller holds
 * rxlock. 1: crossed back; 0: nothing to do; 2: switched back, marker not here yet. */
static int rx_back_locked(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!nsk_load32(&c->rx_crossed))
		return 0;
	uint32_t re = my_rx_epoch(s);
	uint32_t pe = peer_epoch(s);
	if (!(re & 1) || pe <= re)
		return 0;
	if (pe > re + 1) {
		mark_broken(s, "epoch ahead of the receiver");
		return 0;
	}
	uint64_t stop = nsk_load64(&side_peer(s)->ring_stop);
	uint64_t head = nsk_load64(&s->chan.rx.ctl->head);
	if (head != stop) {
		if (head > stop || nsk_ring_used(&s->chan.rx) == 0)
			mark_broken(s, "ring stop behind the ring's contents");
		return 0; /* ring bytes before the stop still to read */
	}
	if (ctl_pending(s)) {
		drain_ctl(s);
		if (ctl_pending(s))
			return 2; /* wake-ups sent before the marker still on their way */
	}
	char m = 0; /* (initialised: cppcheck does not see recv fill it) */
	ssize_t n;
	/* (wake-ups whose count is not visible yet may still come before the marker) */
	while ((n = REAL(recv)(s->fd, &m, 1, MSG_DONTWAIT)) == 1 && m == NSK_CTL_WAKE)
		nsk_add64(&c->ctl_bytes, 1);
	if (n == 0) {
		nsk_store32(&c->tcp_eof, 1); /* closed without its marker: a killed peer */
		return 0;
	}
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 2 : 0;
	if (m != NSK_CTL_BACK) {
		mark_broken(s, "no switch-back marker after the ring stop");
		return 0;
	}
	nsk_store32(&c->rx_crossed, 0);
	nsk_store32_release(&side_me(s)->rx_epoch, re + 1);
	nsk_log(NSK_LOG_DEBUG, "fd %d: rx back on TCP after %llu ring bytes (epoch %u)", s->fd,
		(unsigned long long)stop, re + 1);
	return 1;
}

/* rxlock for callers outside an application call on this socket (readiness scans, close):
 * not taken if a reader holds it (it does the work), nor once the last fd is closing (the
 * number may belong to another socket already). 1 if taken. */
static int rx_trylock(struct nsk_sock *s)
{
	if (atomic_load(&s->closing) || !xtrylock(&s->conn->rxlock))
		return 0;
	if (atomic_load(&s->closing)) { /* set while we took it: nsk_sock_closing() waits */
		xunlock(&s->conn->rxlock);
		return 0;
	}
	return 1;
}

/* rx_back_locked for callers that do not hold rxlock: skipped if a reader is busy (it
 * will do it). */
static int rx_back_try(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (!nsk_load32(&c->rx_crossed) || peer_epoch(s) <= my_rx_epoch(s) ||
	    nsk_ring_used(&s->chan.rx) != 0 || !rx_trylock(s))
		return 0;
	int r = rx_back_locked(s);
	xunlock(&c->rxlock);
	return r;
}

/* Control bytes the peer sent that we have not consumed yet (all before any marker). */
static uint64_t ctl_pending(struct nsk_sock *s)
{
	uint64_t sent = nsk_load64(&side_peer(s)->ctl_sent);
	uint64_t seen = nsk_load64(&s->conn->ctl_bytes);
	return sent > seen ? sent - seen : 0; /* (fewer: a hostile count; read nothing) */
}

/* Consume control bytes that wait on the kernel socket (only past the peer's switch point,
 * in a ring epoch). Never more than the peer says it sent: a switch-back marker and raw
 * data may follow them. Records EOF / reset. Returns 1 if something changed. Caller holds
 * rxlock. */
static int drain_ctl(struct nsk_sock *s)
{
	char buf[256] = {0}; /* (initialised: cppcheck does not see recv fill it) */
	int changed = 0;
	for (;;) {
		uint64_t due = ctl_pending(s);
		size_t want = due < sizeof(buf) ? (size_t)due : sizeof(buf);
		/* Nothing due: look without taking. What is there may be wake-ups whose count is
		 * not visible yet (the peer counts after sending: it may be preempted in between,
		 * and an edge-triggered waiter would never hear of them again), EOF, a reset, or
		 * the switch-back marker: the wake-ups before the first marker are taken. */
		ssize_t n = REAL(recv)(s->fd, buf, want ? want : sizeof(buf),
				       MSG_DONTWAIT | (want ? 0 : MSG_PEEK));
		if (n > 0 && !want) {
			ssize_t i = 0;
			while (i < n && buf[i] == NSK_CTL_WAKE)
				i++;
			if (i && REAL(recv)(s->fd, buf, (size_t)i, MSG_DONTWAIT) != i) {
				mark_broken(s, "control bytes vanished");
				return 1;
			}
			if (i)
				nsk_add64(&s->conn->ctl_bytes, (uint64_t)i);
			return changed | (i > 0); /* a marker stays for rx_back_locked() */
		}
		if (n > 0) {
			nsk_add64(&s->conn->ctl_bytes, (uint64_t)n);
			changed = 1;
			if ((size_t)n < want)
				return changed;
			continue;
		}
		if (n == 0) {
			if (!nsk_load32(&s->conn->tcp_eof))
				nsk_store32(&s->conn->tcp_eof, 1);
			return 1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return changed;
		if (!nsk_load32(&s->conn->tcp_eof))
			nsk_store32(&s->conn->tcp_eof, errno == ECONNRESET ? 2 : 1);
		return 1;
	}
}

/* drain_ctl for callers without rxlock (readiness, close): skipped if a reader holds it. */
static int drain_ctl_try(struct nsk_sock *s)
{
	if (!rx_trylock(s))
		return 0;
	int r = drain_ctl(s);
	xunlock(&s->conn->rxlock);
	return r;
}

static int is_nonblocking(struct nsk_sock *s, int flags)
{
	if (flags & MSG_DONTWAIT)
		return 1;
	if (s->nonblock)
		return 1;
	/* We are about to sleep: ask the kernel (another process may have set it). */
	int fl = REAL(fcntl)(s->fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

static void wake_after_read(struct nsk_sock *s)
{
	uint32_t w = nsk_take(&s->chan.rx.ctl->prod_armed);
	if (!w)
		return;
	if (w & NSK_ARM_FUTEX)
		nsk_futex_bump(&s->chan.rx.ctl->space_seq);
	if (w & NSK_ARM_FD) {
		struct nsk_conn *c = s->conn;
		if (!nsk_load32(&c->tx_switched)) {
			xlock(&c->txlock);
			switch_tx_locked(s);
			xunlock(&c->txlock);
		}
		/* A control byte before our switch point would be taken for data. */
		if (nsk_load32(&c->tx_switched))
			send_ctl(s);
	}
}

/* Deliver a delayed wake-up of the consumer (packet aggregation, agg.c). */
static void tcp_agg_wake(struct nsk_agg *a, uint32_t bits)
{
	struct nsk_sock *s = a->ctx;
	if (bits & NSK_ARM_FUTEX)
		nsk_futex_bump(&s->chan.tx.ctl->data_seq);
}

#define AGG_SMALL 2048 /* writes below this may share a wake-up (a container) */

/* Wake the consumer after a write of @n bytes. @more (MSG_MORE, TCP_CORK): the application
 * says more is coming at once: a reader asleep on the futex is left to the next write (or
 * its 100 ms liveness slice, like the kernel's 200 ms cork timer); a poll/epoll waiter is
 * always woken (it has no slice). */
static void wake_after_write_hint(struct nsk_sock *s, size_t n, int more)
{
	struct nsk_agg *a = s->agg;
	if (a && nsk_agg_on_put_serial(a))
		return; /* a wake-up is owed already: this write joins its container */
	if (more) {
		nsk_fence();
		uint32_t armed = nsk_load32(&s->chan.tx.ctl->cons_armed);
		if (!(armed & NSK_ARM_FD))
			return;
	}
	uint32_t w = nsk_take(&s->chan.tx.ctl->cons_armed);
	if (!w)
		return;
	if (a)
		nsk_agg_took(a);
	/* Small writes to a consumer asleep in a blocking call may share one wake-up (bounded
	 * delay). Not for poll/epoll sleepers: their wake-up is a byte on the kernel socket,
	 * which a delayed delivery could send after the application closed and reused the fd. */
	if (w == NSK_ARM_FUTEX && n < AGG_SMALL && __atomic_load_n(&s->spin_ns, __ATOMIC_RELAXED) &&
	    nsk_agg_tcp_enabled()) {
		/* (spin_ns != 0: the two sides may run at once; on one shared CPU the flusher's
		 * wake-ups would only compete with both) */
		if (!a && (a = calloc(1, sizeof(*a))) != NULL) {
			nsk_agg_init(a, tcp_agg_wake, s, NULL);
			a->serial = 1; /* senders hold txlock */
			nsk_agg_took(a);
			s->agg = a; /* under txlock; read by this socket's senders only */
		}
		if (a && nsk_agg_defer(a, nsk_now_ns(), w))
			return;
	}
	if (w & NSK_ARM_FUTEX)
		nsk_futex_bump(&s->chan.tx.ctl->data_seq);
	if (w & NSK_ARM_FD)
		send_ctl(s);
}

static void wake_after_write(struct nsk_sock *s, size_t n)
{
	wake_after_write_hint(s, n, 0);
}

void nsk_sock_uncork(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	xlock(&c->txlock);
	if (nsk_load32(&c->tx_switched) && chan_ok(s))
		wake_after_write(s, SIZE_MAX);
	xunlock(&c->txlock);
}

#define SLICE_NS (100ull * 1000000ull) /* liveness re-check period while sleeping */

static int ring_ready(struct nsk_sock *s, int tx)
{
	if (tx)
		return nsk_ring_free(&s->chan.tx) != 0;
	/* (a peer that switched back to TCP: the receiver goes and reads there) */
	return nsk_ring_used(&s->chan.rx) != 0 || peer_fin(s) || peer_epoch(s) > my_rx_epoch(s);
}

/* Spin (no syscalls) up to the socket's budget until direction @tx (0: data to read,
 * 1: space to write) is ready. Returns 1 if it became ready. Caller holds no lock. */
static int spin_ring(struct nsk_sock *s, int tx)
{
	uint64_t budget = __atomic_load_n(&s->spin_ns, __ATOMIC_RELAXED);
	if (!budget)
		return 0;
	uint64_t t0 = nsk_now_ns();
	for (int i = 0;; i++) {
		if (ring_ready(s, tx))
			return 1;
		nsk_cpu_relax();
		if ((i & 63) == 63 && nsk_now_ns() - t0 > budget)
			return 0;
	}
}

/* Sleep on the futex of direction @tx until the peer wakes us, a liveness slice ends, or
 * @deadline (0: none) passes. 0, -EINTR (signal without SA_RESTART) or -ETIMEDOUT.
 * Caller holds no lock and re-checks everything afterwards. */
static void sleep_cancelled(void *arg)
{
	struct nsk_sock *s = arg;
	nsk_disarm(&s->chan.rx.ctl->cons_armed, NSK_ARM_FUTEX);
	nsk_disarm(&s->chan.tx.ctl->prod_armed, NSK_ARM_FUTEX);
	nsk_sock_leave(s);
}

/* A sleep interrupted by a signal handler: the kernel restarts recv/send after handlers
 * installed with SA_RESTART (without SO_RCVTIMEO/SO_SNDTIMEO). Our sliced futex sleep is
 * never restarted, so decide like the kernel would: restart unless some caught signal has a
 * handler without SA_RESTART (which signal came is not known; such mixes are rare). */
static int restart_after_signal(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		/* fault signals (crash handlers) are synchronous: they never interrupt a sleep */
		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS ||
		    sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS ||
		    sigaction(sig, NULL, &sa) < 0)
			continue;
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return 0;
	}
	return 1;
}

static int sleep_ring(struct nsk_sock *s, int tx, uint64_t deadline)
{
	nsk_agg_flush_all(); /* owe nobody a wake-up while we sleep */
	if (s->vm) /* futexes do not cross kernels: poll the ring with back-off */
		return nsk_vm_wait(s, tx, deadline, SLICE_NS, ring_ready);
	struct nsk_ring *r = tx ? &s->chan.tx : &s->chan.rx;
	uint32_t *armed = tx ? &r->ctl->prod_armed : &r->ctl->cons_armed;
	uint32_t *seqw = tx ? &r->ctl->space_seq : &r->ctl->data_seq;
	/* Acquire pairs with nsk_futex_bump's release by the waker. */
	uint32_t seq = nsk_load32_acquire(seqw);
	nsk_arm(armed, NSK_ARM_FUTEX);
	if (ring_ready(s, tx)) {
		nsk_disarm(armed, NSK_ARM_FUTEX);
		return 0;
	}
	int64_t t = (int64_t)SLICE_NS;
	if (deadline) {
		uint64_t now = nsk_now_ns();
		if (now >= deadline) {
			nsk_disarm(armed, NSK_ARM_FUTEX);
			return -ETIMEDOUT;
		}
		if (deadline - now < (uint64_t)t)
			t = (int64_t)(deadline - now);
	}
	/* The sleep is a cancellation point, as recv/send are; no lock is held here, and the
	 * cleanup drops the wrapper's pin of the socket. */
	int ret;
	pthread_cleanup_push(sleep_cancelled, s);
	pthread_testcancel();
	ret = nsk_futex_wait(seqw, seq, t);
	pthread_testcancel();
	pthread_cleanup_pop(0);
	nsk_disarm(armed, NSK_ARM_FUTEX);
	return ret;
}

ssize_t nsk_sock_recv(struct nsk_sock *s, const struct iovec *iov, int iovcnt, int flags)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_recvv(s, iov, iovcnt, flags);
	nsk_agg_flush_all(); /* a reply may depend on what we owe a wake-up for */
	struct nsk_conn *c = s->conn;
	size_t total = nsk_iov_total(iov, iovcnt);
	int peek = flags & MSG_PEEK;
	int waitall = (flags & MSG_WAITALL) && !peek;
	/* SO_RCVLOWAT: a blocking read returns once this many bytes (or all asked for) came. */
	size_t lowat = s->rcvlowat > 1 && !peek && !is_nonblocking(s, flags) ? (size_t)s->rcvlowat : 1;
	uint64_t deadline = s->rcvtimeo_ns ? nsk_now_ns() + s->rcvtimeo_ns : 0;
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, iov, iovcnt);
	size_t got = 0;
	ssize_t ret;
	int spun = 0;
	if (total == 0)
		return REAL(recv)(s->fd, NULL, 0, flags) < 0 ? -errno : 0;

	xlock(&c->rxlock);
	for (;;) {
		uint32_t mode = nsk_load32(&c->mode);
		if (mode == NSK_MODE_BROKEN) {
			ret = got ? (ssize_t)got : -ECONNRESET;
			break;
		}
		if (nsk_load32(&c->rx_shut) && (mode != NSK_MODE_SHM || nsk_load32(&c->rx_crossed))) {
			ret = (ssize_t)got;
			break;
		}
		if (!rx_crossed(s)) {
			if (nsk_load32(&c->mode) == NSK_MODE_BROKEN)
				continue; /* the peer's switch point is invalid */
			/* TCP part of the stream: at most up to the peer's switch point. */
			uint64_t at = 0;
			int known = peer_switch(s, &at);
			size_t lim = nsk_sp_limit(CGET(c->rx_tcp), known, at, total - got);
			if (lim == 0)
				continue; /* the switch point was published meanwhile: cross it (a
					   * zero-length read would look like EOF) */
			/* Build an iovec view of the remaining buffer limited to lim bytes. */
			struct iovec view[64];
			int nv = 0;
			size_t left = lim, off = cur.off;
			for (int i = 0; i < cur.cnt && left && nv < 64; i++) {
				size_t len = cur.iov[i].iov_len - off;
				if (len > left)
					len = left;
				view[nv].iov_base = (char *)cur.iov[i].iov_base + off;
				view[nv].iov_len = len;
				nv++;
				left -= len;
				off = 0;
			}
			/* Once we have bytes, do not block for more, unless MSG_WAITALL asks for it
			 * (the rest then arrives on TCP, or as the peer's marker when it switches). */
			int kflags = (flags & (MSG_PEEK | MSG_OOB | MSG_TRUNC | MSG_CMSG_CLOEXEC)) |
				     (((got && !waitall) || (flags & MSG_DONTWAIT)) ? MSG_DONTWAIT : 0);
			struct msghdr mh = {.msg_iov = view, .msg_iovlen = (size_t)nv};
			/* A blocking kernel read may sleep here holding rxlock: only other readers of
			 * this socket wait for it, as they would in the kernel. */
			ssize_t n = REAL(recvmsg)(s->fd, &mh, kflags);
			if (n < 0) {
				int e = errno;
				if (got) {
					ret = (ssize_t)got;
					break;
				}
				if ((e == EAGAIN || e == EWOULDBLOCK) && rx_crossed(s))
					continue; /* crossed meanwhile: continue on the ring */
				ret = -e;
				break;
			}
			if (n == 0) {
				/* EOF before the switch point: plain TCP end (or the peer switched and
				 * closed: the ring may still hold data). */
				if (peer_switch(s, &at) && at == CGET(c->rx_tcp)) {
					nsk_store32(&c->tcp_eof, 1);
					continue;
				}
				ret = (ssize_t)got;
				break;
			}
			/* Bytes past a switch point published meanwhile are control bytes. */
			known = peer_switch(s, &at);
			int64_t data = nsk_sp_data(CGET(c->rx_tcp), known, at, (uint64_t)n);
			if (data < 0) {
				mark_broken(s, "switch point behind delivered bytes");
				continue;
			}
			if (!peek && (uint64_t)n > (uint64_t)data)
				nsk_add64(&c->ctl_bytes, (uint64_t)n - (uint64_t)data);
			n = (ssize_t)data;
			if (n > 0) {
				struct nsk_iovcur skip = cur;
				/* advance the cursor by n */
				size_t adv = (size_t)n;
				while (adv && skip.cnt) {
					size_t l = skip.iov->iov_len - skip.off;
					if (l > adv)
						l = adv;
					skip.off += l;
					adv -= l;
					if (skip.off == skip.iov->iov_len) {
						skip.iov++;
						skip.cnt--;
						skip.off = 0;
					}
				}
				cur = skip;
				got += (size_t)n;
				if (!peek) {
					CADD(c->rx_tcp, (uint64_t)n);
					CADD(c->rx_tcp_msgs, 1);
				}
			}
			if (peek && got) {
				ret = (ssize_t)got;
				break;
			}
			if (got == total || (got && !waitall)) {
				ret = (ssize_t)got;
				break;
			}
			continue;
		}
		/* Ring part of the stream. */
		ssize_t n = nsk_ring_read(&s->chan.rx, &cur, total - got, peek);
		if (n < 0) {
			mark_broken(s, "receive ring indices");
			ret = got ? (ssize_t)got : -ECONNRESET;
			break;
		}
		if (n > 0) {
			got += (size_t)n;
			if (!peek) {
				CADD(c->rx_shm_bytes, (uint64_t)n);
				CADD(c->rx_shm_msgs, 1);
				wake_after_read(s);
			}
			if (got == total || (!waitall && got >= lowat)) {
				ret = (ssize_t)got;
				break;
			}
			continue;
		}
		/* Ring empty: has the peer switched back to TCP? */
		int back = rx_back_locked(s);
		if (back == 1)
			continue;
		if (back == 2) { /* its marker is on its way */
			if ((got && !waitall && got >= lowat) || is_nonblocking(s, flags)) {
				ret = got ? (ssize_t)got : -EAGAIN;
				break;
			}
			xunlock(&c->rxlock);
			struct pollfd p = {.fd = s->fd, .events = POLLIN};
			int pr = REAL(poll)(&p, 1, 100);
			int pe = errno;
			xlock(&c->rxlock);
			if (pr < 0 && pe == EINTR && !restart_after_signal()) {
				ret = got ? (ssize_t)got : -EINTR;
				break;
			}
			continue;
		}
		/* Ring empty: end of stream? */
		if (peer_fin(s) || nsk_load32(&c->tcp_eof)) {
			if (nsk_load32(&c->mode) == NSK_MODE_BROKEN)
				continue;
			if (nsk_ring_used(&s->chan.rx) != 0)
				continue; /* data raced in before the FIN */
			if (nsk_load32(&c->tcp_eof) == 2 && !got) {
				nsk_store32(&c->tcp_eof, 1);
				ret = -ECONNRESET;
				break;
			}
			ret = (ssize_t)got;
			break;
		}
		if (got && !waitall && got >= lowat) {
			ret = (ssize_t)got;
			break;
		}
		if ((flags & MSG_DONTWAIT) || s->nonblock) {
			/* Poll/epoll users learn EOF from the kernel fd; a busy-polling reader still
			 * notices it within a millisecond. */
			uint64_t now = nsk_now_ns();
			if (now - s->last_drain_ns > 1000000) {
				s->last_drain_ns = now;
				if (drain_ctl(s))
					continue;
			}
			ret = got ? (ssize_t)got : -EAGAIN;
			break;
		}
		if (!spun) {
			xunlock(&c->rxlock);
			spin_ring(s, 0);
			xlock(&c->rxlock);
			spun = 1;
			continue;
		}
		if (drain_ctl(s))
			continue;
		if (is_nonblocking(s, flags)) {
			ret = got ? (ssize_t)got : -EAGAIN;
			break;
		}
		xunlock(&c->rxlock);
		int w = sleep_ring(s, 0, deadline);
		ring_tick(s); /* a reader asleep for long: our sending ring may be idle */
		xlock(&c->rxlock);
		spun = 0;
		if (w == -EINTR && !got && !deadline && restart_after_signal())
			w = 0; /* as the kernel restarts recv after an SA_RESTART handler */
		if (w == -EINTR || (w == -ETIMEDOUT && deadline && nsk_now_ns() >= deadline)) {
			ret = got ? (ssize_t)got : (w == -EINTR ? -EINTR : -EAGAIN);
			break;
		}
	}
	xunlock(&c->rxlock);
	return ret;
}

/* Is the peer's socket gone for good? Probe with a control byte: after the peer closed,
 * the kernel answers the first byte with a reset and fails the next send (EPIPE). */
static int peer_gone(struct nsk_sock *s)
{
	struct nsk_conn *c = s->conn;
	if (nsk_load32(&c->peer_gone))
		return 1;
	struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};
	if (REAL(poll)(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		/* The kernel shows nothing. A peer killed while its data waited for our receive
		 * window (unread TCP bytes before its switch point) has its FIN stuck behind that
		 * data, and its empty receive queue sends no reset: ask the kernel whether any
		 * process still holds the peer's socket (at most every 50 ms). */
		uint64_t now = nsk_now_ns();
		/* last_diag_ns: a poller and a sender may both get here (relaxed: a rate limit) */
		if (nsk_load32(&c->rx_crossed) || !s->tuple_ok || !peer_in_our_netns(c) ||
		    now - __atomic_load_n(&s->last_diag_ns, __ATOMIC_RELAXED) < 50000000)
			return 0;
		__atomic_store_n(&s->last_diag_ns, now, __ATOMIC_RELAXED);
		if (nsk_tcp_peer_closed(c->family, c->laddr, c->lport, c->raddr, c->rport) != 1)
			return 0;
		nsk_log(NSK_LOG_DEBUG, "fd %d: the peer's socket is closed (its FIN waits behind "
				       "unread data): EPIPE", s->fd);
		nsk_store32(&c->peer_gone, 1);
		return 1;
	}
	if (!(p.revents & (POLLHUP | POLLERR))) {
		/* Half-closed or closed: the probe tells (only inside a ring epoch, where the peer
		 * takes it for a control byte; on TCP the kernel answers the send itself). */
		if (send_ctl_byte(s) >= 0)
			return 0;
		if (errno != EPIPE && errno != ECONNRESET)
			return 0;
	}
	/* Our probes may have left an error on the kernel socket: the application gets its own
	 * EPIPE from us, so its SO_ERROR must read as after a plain TCP send. */
	int err = 0;
	socklen_t el = sizeof(err);
	REAL(getsockopt)(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	nsk_store32(&c->peer_gone, 1);
	return 1;
}

static ssize_t epipe(int flags)
{
	if (!(flags & MSG_NOSIGNAL))
		raise(SIGPIPE);
	return -EPIPE;
}

/* Send what is left at @cur over TCP (the sending direction is in a TCP epoch). */
static ssize_t tcp_send_rest(struct nsk_sock *s, const struct nsk_iovcur *cur, int flags)
{
	struct iovec v[64];
	int n = 0;
	for (int i = 0; i < cur->cnt && n < 64; i++) {
		size_t off = i == 0 ? cur->off : 0;
		if (cur->iov[i].iov_len == off)
			continue;
		v[n].iov_base = (char *)cur->iov[i].iov_base + off;
		v[n].iov_len = cur->iov[i].iov_len - off;
		n++;
	}
	struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n};
	ssize_t r = REAL(sendmsg)(s->fd, &mh, flags);
	if (r < 0)
		return -errno;
	CADD(s->conn->tx_tcp, (uint64_t)r);
	CADD(s->conn->tx_tcp_msgs, 1);
	return r;
}

ssize_t nsk_sock_send(struct nsk_sock *s, const struct iovec *iov, int iovcnt, int flags)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_sendv(s, iov, iovcnt, flags);
	struct nsk_conn *c = s->conn;
	size_t total = nsk_iov_total(iov, iovcnt);
	uint64_t deadline = s->sndtimeo_ns ? nsk_now_ns() + s->sndtimeo_ns : 0;
	ssize_t ret;
	xlock(&c->txlock);
	if (!nsk_load32(&c->tx_switched) && chan_ok(s))
		switch_tx_locked(s);
	if (!nsk_load32(&c->tx_switched)) {
		struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
		ret = REAL(sendmsg)(s->fd, &mh, flags);
		if (ret < 0)
			ret = -errno;
		else {
			CADD(c->tx_tcp, (uint64_t)ret);
			CADD(c->tx_tcp_msgs, 1);
		}
		xunlock(&c->txlock);
		return ret;
	}
	if (nsk_load32(&c->mode) == NSK_MODE_BROKEN) {
		xunlock(&c->txlock);
		return -ECONNRESET;
	}
	if (nsk_load32(&c->tx_shut) || nsk_load32(&c->peer_gone) || (nsk_load32(&c->tcp_eof) && peer_gone(s))) {
		xunlock(&c->txlock);
		return epipe(flags);
	}
	if (total == 0) {
		xunlock(&c->txlock);
		return 0;
	}
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, iov, iovcnt);
	size_t sent = 0;
	int spun = 0;
	for (;;) {
		if (!nsk_load32(&c->tx_switched)) {
			/* Evacuated while we waited for space (txlock was free): the rest goes on
			 * TCP, after the switch-back marker. */
			ssize_t r = tcp_send_rest(s, &cur, flags);
			ret = r < 0 ? (sent ? (ssize_t)sent : r) : (ssize_t)(sent + (size_t)r);
			break;
		}
		ring_maybe_grow(s);
		ssize_t n = nsk_ring_write(&s->chan.tx, &cur, total - sent);
		if ((size_t)n < total - sent)
			s->rsz.full++; /* demand beyond the ring's capacity */
		if (n < 0) {
			mark_broken(s, "send ring indices");
			ret = sent ? (ssize_t)sent : -ECONNRESET;
			break;
		}
		if (n > 0) {
			sent += (size_t)n;
			CADD(c->tx_shm_bytes, (uint64_t)n);
			CADD(c->tx_shm_msgs, 1);
			/* the hint only holds while the whole write fits */
			wake_after_write_hint(s, (size_t)n,
					      sent == total && ((flags & MSG_MORE) || s->app_cork));
			if (sent == total) {
				ret = (ssize_t)sent;
				break;
			}
		}
		/* Ring full. */
		if ((flags & MSG_DONTWAIT) || s->nonblock) {
			ret = sent ? (ssize_t)sent : -EAGAIN;
			break;
		}
		if (!spun) {
			xunlock(&c->txlock);
			spin_ring(s, 1);
			xlock(&c->txlock);
			spun = 1;
			continue;
		}
		if (peer_gone(s)) {
			ret = sent ? (ssize_t)sent : epipe(flags);
			break;
		}
		if (is_nonblocking(s, flags)) {
			ret = sent ? (ssize_t)sent : -EAGAIN;
			break;
		}
		xunlock(&c->txlock);
		int w = sleep_ring(s, 1, deadline);
		xlock(&c->txlock);
		spun = 0;
		/* Interrupted: what was sent is returned; with nothing sent the kernel restarts
		 * the call after an SA_RESTART handler (not with SO_SNDTIMEO). */
		if (w == -EINTR && !sent && !deadline && restart_after_signal())
			w = 0;
		if (w == -EINTR || (w == -ETIMEDOUT && deadline && nsk_now_ns() >= deadline)) {
			ret = sent ? (ssize_t)sent : (w == -EINTR ? -EINTR : -EAGAIN);
			break;
		}
	}
	xunlock(&c->txlock);
	return ret;
}

int nsk_sock_shutdown(struct nsk_sock *s, int how)
{
	struct nsk_conn *c = s->conn;
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	int khow = how;
	if (how != SHUT_RD) {
		xlock(&c->txlock);
		/* Our FIN goes through the ring if it can: the kernel socket's sending direction
		 * must stay open while the peer's direction uses its ring, because our space
		 * wake-ups travel there (a kernel FIN first would make them fail with EPIPE and
		 * leave the peer's writer asleep: found with asyncio's write_eof). */
		if (!nsk_load32(&c->tx_switched) && chan_ok(s) && !nsk_load32(&c->tx_shut))
			switch_tx_locked(s);
		if (nsk_load32(&c->tx_switched) && chan_ok(s)) {
			/* Release pairs with the consumer's acquire of fin: all ring data first. */
			nsk_store32_release(&s->chan.tx.ctl->fin, 1);
			nsk_fence(); /* orders the FIN before nsk_take's load */
			if (s->agg)
				nsk_agg_flush(s->agg); /* the FIN is not delayed */
			wake_after_write(s, SIZE_MAX);
			/* The kernel FIN follows at the last close. */
			khow = how == SHUT_WR ? -1 : SHUT_RD;
		}
		nsk_store32(&c->tx_shut, 1);
		xunlock(&c->txlock);
	}
	if (how != SHUT_WR)
		nsk_store32(&c->rx_shut, 1);
	if (khow >= 0 && REAL(shutdown)(s->fd, khow) < 0)
		return -errno;
	if (how != SHUT_WR && chan_ok(s)) {
		/* Wake our own sleepers: their recv returns 0 now. */
		nsk_futex_bump(&s->chan.rx.ctl->data_seq);
	}
	return 0;
}

int nsk_sock_outq(struct nsk_sock *s)
{
	if (!chan_ok(s) || !nsk_load32(&s->conn->tx_switched))
		return -ENOTSUP; /* before the switch the kernel answers */
	int64_t used = nsk_ring_used(&s->chan.tx);
	return used < 0 ? 0 : (int)used;
}

int nsk_sock_fionread(struct nsk_sock *s)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_fionread(s);
	int k = 0;
	struct nsk_conn *c = s->conn;
	if (!rx_crossed(s)) {
		if (REAL(ioctl)(s->fd, FIONREAD, &k) < 0)
			return -errno;
		uint64_t at = 0;
		int known = peer_switch(s, &at);
		int64_t data = nsk_sp_data(CGET(c->rx_tcp), known, at, (uint64_t)k);
		if (data < 0) {
			mark_broken(s, "switch point behind delivered bytes");
			return -ECONNRESET;
		}
		return (int)data;
	}
	int64_t used = nsk_ring_used(&s->chan.rx);
	if (used < 0)
		return -ECONNRESET;
	return used > INT_MAX ? INT_MAX : (int)used;
}

/* ---------------------------------------------------------------- readiness ----------- */

int nsk_sock_is_shm(struct nsk_sock *s)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_is_shm(s);
	/* Either direction on its ring (both back on TCP after an evacuation: not any more).
	 * The receiving direction counts once every TCP byte before the peer's switch point was
	 * read, even if the marker byte never came (it is sent without blocking and may find
	 * the sender's socket buffer full): a waiter left on the kernel socket would sleep for
	 * good, since nothing more arrives there. */
	return chan_ok(s) && nsk_load32(&s->conn->mode) == NSK_MODE_SHM &&
	       (nsk_load32(&s->conn->tx_switched) || rx_crossed(s));
}

int nsk_sock_ready(struct nsk_sock *s, int want, int *kernel_ev, int *kernel_decides, int arm)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_ready(s, want, kernel_ev, kernel_decides, arm);
	if (arm) {
		nsk_agg_flush_all(); /* about to sleep in poll/epoll */
		ring_tick(s);
	}
	struct nsk_conn *c = s->conn;
	int ready = 0, kev = 0, kdec = 0;
	*kernel_decides = 0;
	if (nsk_load32(&c->mode) == NSK_MODE_BROKEN) {
		*kernel_ev = 0;
		return (want & (POLLIN | POLLOUT | POLLRDHUP)) | POLLERR | POLLHUP;
	}
	if (want & (POLLIN | POLLRDHUP)) {
		if (nsk_load32(&c->rx_crossed) && nsk_ring_used(&s->chan.rx) == 0)
			rx_back_try(s); /* the peer switched back: the kernel decides again */
		if (!rx_crossed(s)) {
			kev |= want & (POLLIN | POLLRDHUP | POLLPRI);
			kdec |= want & (POLLIN | POLLRDHUP | POLLPRI);
		} else {
			int64_t used = nsk_ring_used(&s->chan.rx);
			if (used < 0) {
				mark_broken(s, "receive ring indices");
				*kernel_ev = 0;
				return (want & POLLIN) | POLLERR | POLLHUP;
			}
			int fin = peer_fin(s) || nsk_load32(&c->tcp_eof);
			if (nsk_load32(&c->mode) == NSK_MODE_BROKEN) {
				*kernel_ev = 0;
				return (want & POLLIN) | POLLERR | POLLHUP;
			}
			if (used >= (s->rcvlowat > 1 ? s->rcvlowat : 1) || fin ||
			    nsk_load32(&c->rx_shut))
				ready |= want & POLLIN;
			if ((fin || nsk_load32(&c->rx_shut)) && used == 0)
				ready |= want & POLLRDHUP;
			if (!(ready & POLLIN)) {
				kev |= POLLIN;
				if (arm)
					nsk_arm(&s->chan.rx.ctl->cons_armed, NSK_ARM_FD);
				/* re-check after arming (pairs with the producer's nsk_take) */
				if (nsk_ring_used(&s->chan.rx) >= (s->rcvlowat > 1 ? s->rcvlowat : 1) ||
				    peer_fin(s))
					ready |= want & POLLIN;
			}
		}
	}
	if (want & POLLOUT) {
		if (!nsk_load32(&c->tx_switched)) {
			kev |= POLLOUT;
			kdec |= POLLOUT;
		} else if (nsk_load32(&c->tx_shut) || nsk_load32(&c->peer_gone)) {
			ready |= POLLOUT;
		} else {
			int64_t fr = nsk_ring_free(&s->chan.tx);
			if (fr < 0) {
				mark_broken(s, "send ring indices");
				*kernel_ev = 0;
				return POLLOUT | POLLERR | POLLHUP;
			}
			if ((uint64_t)fr >= nsk_ring_cap(&s->chan.tx) / 4) {
				ready |= POLLOUT;
			} else if (!nsk_sock_space_wake_reliable(s) && peer_gone(s)) {
				ready |= POLLOUT; /* the peer's socket is closed: the send fails (EPIPE) */
			} else {
				/* The peer's space wake-up arrives as a control byte on our rx side. */
				kev |= POLLIN;
				if (arm) {
					nsk_arm(&s->chan.tx.ctl->prod_armed, NSK_ARM_FD);
					if ((uint64_t)nsk_ring_free(&s->chan.tx) >= nsk_ring_cap(&s->chan.tx) / 4)
						ready |= POLLOUT;
				}
			}
		}
	}
	*kernel_ev = kev;
	*kernel_decides = kdec;
	return ready;
}

int nsk_sock_space_wake_reliable(struct nsk_sock *s)
{
	/* The peer's space wake-up is a control byte queued behind any TCP data we have not
	 * read yet; before we cross its switch point it may sit behind a closed window. */
	return !nsk_load32(&s->conn->tx_switched) || rx_crossed(s);
}

void nsk_sock_disarm(struct nsk_sock *s)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_disarm(s);
	if (!chan_ok(s))
		return;
	nsk_disarm(&s->chan.rx.ctl->cons_armed, NSK_ARM_FD);
	nsk_disarm(&s->chan.tx.ctl->prod_armed, NSK_ARM_FD);
}

void nsk_sock_kernel_event(struct nsk_sock *s, int revents)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_kernel_event(s, revents);
	if ((revents & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) && chan_ok(s) && rx_crossed(s))
		drain_ctl_try(s);
}

struct other_fd {
	struct nsk_sock *s;
	int skip, found;
};

static void find_other_fd(int fd, void *obj, void *arg)
{
	struct other_fd *o = arg;
	if (obj == o->s && fd != o->skip && o->found < 0)
		o->found = fd;
}

void nsk_sock_closing(struct nsk_sock *s, int fd)
{
	struct nsk_conn *c = s->conn;
	if (atomic_load(&s->refs) > 1) {
		/* Another descriptor stays open (dup): control bytes go through it. */
		struct other_fd o = {.s = s, .skip = fd, .found = -1};
		if (s->fd == fd) {
			nsk_fdmap_foreach(&nsk_socks, find_other_fd, &o);
			if (o.found >= 0) {
				xlock(&c->ctllock);
				s->fd = o.found;
				xunlock(&c->ctllock);
			}
		}
		return;
	}
	/* The last one: after the kernel close the number may be the next socket's. Senders of
	 * control bytes hold ctllock; readers of the kernel socket outside an application
	 * call (readiness scans) hold rxlock briefly: wait for those. */
	pthread_mutex_lock(&nsk_g.lock); /* excludes try_claim taking offers (see there) */
	xlock(&c->ctllock);
	atomic_store(&s->closing, 1);
	xunlock(&c->ctllock);
	pthread_mutex_unlock(&nsk_g.lock);
	for (int i = 0; i < 1000; i++) {
		if (xtrylock(&c->rxlock)) {
			xunlock(&c->rxlock);
			break;
		}
		/* (an application thread blocked in recv on this socket may hold it: not waited
		 * for, it reads its own socket) */
		nsk_cpu_relax();
	}
}

void nsk_sock_before_close(struct nsk_sock *s)
{
	/* A client closing before its offer was claimed: withdraw it, a late claim then fails. */
	int last = atomic_load(&s->refs) == 1;
	int alone = last && nsk_sock_last_holder(s);
	if (alone && s->kind == NSK_CK_CLIENT && chan_ok(s) &&
	    nsk_load32(&s->conn->mode) == NSK_MODE_OFFERED)
		nsk_chan_withdraw(&s->chan);
	/* A server socket closing before its claim: an offer for it may be pending (its memfd
	 * would otherwise be held until the offer expires). If another process still holds the
	 * socket (fork per connection), the offer is passed on to it instead. */
	if (last && s->kind == NSK_CK_SERVER && s->candidate) {
		pthread_mutex_lock(&nsk_g.lock);
		drain_offers_locked();
		struct nsk_offer o;
		int fd;
		/* A reset connection has no peer name any more (getpeername fails): ours is enough,
		 * the peer's came with accept(). Found by the crash test (a killed client's offer
		 * stayed pending in the server, its segment with it). If another process still holds
		 * the socket (fork per connection), the offer is passed on to it instead. */
		while (npend && (s->tuple_ok || fill_tuple(s) == 0 || fill_local(s) == 0) &&
		       (fd = take_offer_locked(s, &o, NULL)) >= 0) {
			if (!alone && nsk_g.rv_shared && o.hops < REQUEUE_HOPS)
				requeue_locked(&o, fd);
			else
				REAL(close)(fd);
		}
		pthread_mutex_unlock(&nsk_g.lock);
	}
	/* Unread control bytes in the kernel socket would turn our FIN into a reset (the kernel
	 * resets connections closed with unread data): consume them first. Only past the peer's
	 * switch point, where every TCP byte is a control byte. */
	if (atomic_load(&s->refs) == 1 && chan_ok(s) && rx_crossed(s))
		drain_ctl_try(s);
}

/* ---------------------------------------------------------------- shared helpers ------ */

void nsk_shared_lock(uint32_t *l)
{
	xlock(l);
}

void nsk_shared_unlock(uint32_t *l)
{
	xunlock(l);
}
