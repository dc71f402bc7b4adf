/* SPDX-License-Identifier: MIT */
/* epoll.c — epoll_create/epoll_create1/epoll_ctl/epoll_wait/epoll_pwait.
 *
 * Every epoll set created under the library keeps a shadow of its members: the kernel is
 * given our own token (fd and generation) as event data and we hand the application its
 * own data back. Members that are accelerated sockets are registered with the kernel for
 * EPOLLIN only (control bytes: wake-ups and EOF); their readiness comes from the rings, with
 * EPOLLET and EPOLLONESHOT applied here. Everything else keeps the kernel's semantics. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/atomics.h"
#include "platform/linux.h"
#include "preload/fdtab.h"
#include "preload/real.h"
#include "preload/sock.h"
#include "preload/udp.h"

struct member {
	int used;
	uint32_t gen;
	uint32_t app_events;  /* what the application asked for (with EPOLLET/ONESHOT/...) */
	epoll_data_t app_data;
	struct nsk_sock *sock; /* socket members: pinned while registered (the registration
				* belongs to the open file, which may outlive this fd number) */
	int nested;           /* the member is itself a shadowed epoll set */
	int converted;        /* kernel registration switched to control-byte mode */
	int disabled;         /* EPOLLONESHOT fired (until EPOLL_CTL_MOD) */
	uint64_t last_sig;    /* EPOLLET: ring state at the last report */
};

struct ep {
	pthread_mutex_t lock;
	struct member *m; /* indexed by fd */
	int cap;
	int *cand;        /* fds of socket members (candidates for ring readiness) */
	int ncand, capcand;
	uint32_t gen;
	uint64_t last_kernel_ns;
};

static uint64_t token(int fd, uint32_t gen)
{
	return (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32);
}

static struct ep *ep_get(int epfd)
{
	return nsk_fdmap_get(&nsk_epolls, epfd);
}

static void unpin(struct member *m)
{
	if (m->sock) {
		nsk_sock_leave(m->sock);
		m->sock = NULL;
	}
}

static void ep_free(struct ep *e)
{
	for (int i = 0; i < e->cap; i++)
		unpin(&e->m[i]);
	pthread_mutex_destroy(&e->lock);
	free(e->m);
	free(e->cand);
	free(e);
}

/* Called from close/dup2 paths: forget epoll state of @fd (closing an epoll fd). */
void nsk_epoll_forget(int fd)
{
	struct ep *e = nsk_fdmap_set(&nsk_epolls, fd, NULL);
	if (e)
		ep_free(e); /* a racing epoll_wait on a closed epoll fd is the app's bug */
}

static int track_ep(int fd)
{
	if (fd < 0 || nsk_g.disabled)
		return fd;
	struct ep *e = calloc(1, sizeof(*e));
	if (e) {
		pthread_mutex_init(&e->lock, NULL);
		struct ep *old = nsk_fdmap_set(&nsk_epolls, fd, e);
		if (old)
			ep_free(old);
	}
	return fd;
}

int epoll_create(int size)
{
	return track_ep(REAL(epoll_create)(size));
}

int epoll_create1(int flags)
{
	return track_ep(REAL(epoll_create1)(flags));
}

static int grow(struct ep *e, int fd)
{
	if (fd < e->cap)
		return 0;
	int cap = e->cap ? e->cap : 64;
	while (cap <= fd)
		cap *= 2;
	struct member *m = realloc(e->m, (size_t)cap * sizeof(*m));
	if (!m)
		return -ENOMEM;
	memset(m + e->cap, 0, (size_t)(cap - e->cap) * sizeof(*m));
	e->m = m;
	e->cap = cap;
	return 0;
}

static void cand_add(struct ep *e, int fd)
{
	for (int i = 0; i < e->ncand; i++)
		if (e->cand[i] == fd)
			return;
	if (e->ncand == e->capcand) {
		int cap = e->capcand ? e->capcand * 2 : 16;
		int *c = realloc(e->cand, (size_t)cap * sizeof(int));
		if (!c)
			return;
		e->cand = c;
		e->capcand = cap;
	}
	e->cand[e->ncand++] = fd;
}

static void cand_del(struct ep *e, int fd)
{
	for (int i = 0; i < e->ncand; i++)
		if (e->cand[i] == fd) {
			e->cand[i] = e->cand[--e->ncand];
			return;
		}
}

/* Kernel events for a member in control-byte mode. */
static uint32_t converted_events(uint32_t app)
{
	/* Level-triggered while the application wants input (the TCP part of the stream before
	 * the switch point is read through the kernel); edge-triggered otherwise, so unread
	 * data never spins a writer-only waiter. */
	return (app & EPOLLIN) ? EPOLLIN : (EPOLLIN | EPOLLET);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct ep *e = ep_get(epfd);
	if (!e)
		return REAL(epoll_ctl)(epfd, op, fd, ev);
	int saved = errno;
	pthread_mutex_lock(&e->lock);
	int r;
	if (op == EPOLL_CTL_DEL) {
		r = REAL(epoll_ctl)(epfd, op, fd, ev);
		if (r == 0 && fd < e->cap) {
			e->m[fd].used = 0;
			unpin(&e->m[fd]);
			cand_del(e, fd);
		}
		goto out;
	}
	if ((op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD) || !ev) {
		r = REAL(epoll_ctl)(epfd, op, fd, ev);
		goto out;
	}
	if (grow(e, fd) < 0) {
		errno = ENOMEM;
		r = -1;
		goto out;
	}
	struct member *m = &e->m[fd];
	struct nsk_sock *s = nsk_sock_enter(fd);
	int sockm = s && (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER ||
			  s->kind == NSK_CK_UDP);
	int nested = !s && fd != epfd && ep_get(fd) != NULL;
	/* EPOLLEXCLUSIVE cannot be modified later: converted at ADD, or by DEL + ADD later. */
	int shm = sockm && nsk_sock_is_shm(s) && (op == EPOLL_CTL_ADD || !(ev->events & EPOLLEXCLUSIVE));
	uint32_t gen = op == EPOLL_CTL_ADD ? ++e->gen : m->gen;
	struct epoll_event kev = {
		.events = shm ? converted_events(ev->events) | (ev->events & EPOLLEXCLUSIVE)
			      : ev->events,
		.data.u64 = token(fd, gen),
	};
	r = REAL(epoll_ctl)(epfd, op, fd, &kev);
	if (r == 0) {
		/* ADD over a member whose file was closed meanwhile (the kernel dropped it) */
		if (m->sock != s)
			unpin(m);
		else if (s)
			nsk_sock_leave(s); /* already pinned by this registration */
		m->used = 1;
		m->gen = gen;
		m->app_events = ev->events;
		m->app_data = ev->data;
		m->sock = sockm ? s : NULL;
		m->nested = nested;
		m->converted = shm;
		m->disabled = 0;
		m->last_sig = 0;
		if (sockm || nested)
			cand_add(e, fd);
		else
			cand_del(e, fd);
		if (s && !sockm)
			nsk_sock_leave(s);
	} else if (s) {
		nsk_sock_leave(s);
	}
out:
	if (r == 0)
		errno = saved;
	pthread_mutex_unlock(&e->lock);
	return r;
}

static int ep_to_poll(uint32_t ev)
{
	int p = 0;
	if (ev & EPOLLIN)
		p |= POLLIN;
	if (ev & EPOLLOUT)
		p |= POLLOUT;
	if (ev & EPOLLRDHUP)
		p |= POLLRDHUP;
	if (ev & EPOLLPRI)
		p |= POLLPRI;
	return p;
}

static uint32_t poll_to_ep(int p)
{
	uint32_t ev = 0;
	if (p & POLLIN)
		ev |= EPOLLIN;
	if (p & POLLOUT)
		ev |= EPOLLOUT;
	if (p & POLLRDHUP)
		ev |= EPOLLRDHUP;
	if (p & POLLPRI)
		ev |= EPOLLPRI;
	if (p & POLLERR)
		ev |= EPOLLERR;
	if (p & POLLHUP)
		ev |= EPOLLHUP;
	return ev;
}

/* Ring state signature for EPOLLET: changes whenever new input or new space appears. */
static uint64_t ring_sig(struct nsk_sock *s)
{
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_sig(s);
	struct nsk_ring_ctl *rx = s->chan.rx.ctl, *tx = s->chan.tx.ctl;
	uint64_t sig = nsk_load64(&rx->tail) * 0x9e3779b97f4a7c15ull;
	sig ^= nsk_load64(&tx->head) * 0xc2b2ae3d27d4eb4full;
	sig ^= (uint64_t)nsk_load32(&rx->fin) << 1 | (uint64_t)s->conn->tcp_eof << 2 |
	       (uint64_t)s->conn->rx_shut << 3 | (uint64_t)nsk_load32(&s->conn->rx_crossed) << 4;
	return sig | 1;
}

static int nested_ready(int epfd, int arm);
static void nested_disarm(int epfd);

/* The member's socket if it is still open somewhere in this process; a member whose every
 * fd was closed is dropped (the kernel removed its registration with the file). */
static struct nsk_sock *member_sock(struct ep *e, int fd)
{
	struct member *m = &e->m[fd];
	struct nsk_sock *s = m->sock;
	if (s && atomic_load(&s->refs) == 0) {
		unpin(m);
		m->used = 0;
		cand_del(e, fd);
		return NULL;
	}
	return s;
}

/* Readiness of accelerated member @fd (caller holds e->lock). Converts the kernel
 * registration on first sight. Returns epoll events to report (after ET/ONESHOT, unless
 * @peek: then nothing is consumed). */
/* A converted member whose connection went back to TCP both ways (evacuation): register
 * the application's own events again. Kernel events pending meanwhile are reported by the
 * next wait (level-triggered, or a new edge: EPOLL_CTL_MOD re-evaluates readiness). */
static void revert(int epfd, int fd, struct member *m)
{
	uint32_t evs = m->disabled ? (m->app_events & EPOLLONESHOT) : m->app_events;
	struct epoll_event kev = {.events = evs & ~EPOLLEXCLUSIVE, .data.u64 = token(fd, m->gen)};
	int r;
	if (!(m->app_events & EPOLLEXCLUSIVE)) {
		r = REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &kev);
	} else {
		kev.events |= EPOLLEXCLUSIVE;
		r = REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, fd, NULL);
		if (r == 0)
			r = REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, fd, &kev);
	}
	if (r == 0) {
		m->converted = 0;
		m->last_sig = 0;
	}
}

static uint32_t member_ready(struct ep *e, int epfd, int fd, int arm, int *armed_out,
			     uint32_t kernel_events, int peek)
{
	struct member *m = &e->m[fd];
	if (!m->used || m->disabled)
		return 0;
	if (m->nested) {
		/* An epoll set inside this one: readable when one of its members is. */
		if (!(m->app_events & EPOLLIN) || nested_ready(fd, arm) <= 0) {
			if (arm)
				*armed_out |= 1;
			if (!peek)
				m->last_sig = 0; /* EPOLLET: the next readiness is a new edge */
			return 0;
		}
		if (m->app_events & EPOLLET) {
			if (m->last_sig == 1)
				return 0;
			if (!peek)
				m->last_sig = 1;
		}
		if ((m->app_events & EPOLLONESHOT) && !peek)
			m->disabled = 1;
		return EPOLLIN;
	}
	struct nsk_sock *s = member_sock(e, fd);
	if (!s)
		return 0;
	uint32_t out = 0;
	nsk_sock_refresh(s);
	if (!nsk_sock_is_shm(s)) {
		if (m->converted)
			revert(epfd, fd, m); /* evacuated: the kernel decides again */
		return 0;
	}
	if (!m->converted) {
		uint32_t want = converted_events(m->app_events);
		struct epoll_event kev = {.events = want, .data.u64 = token(fd, m->gen)};
		if (!(m->app_events & EPOLLEXCLUSIVE)) {
			if (REAL(epoll_ctl)(epfd, EPOLL_CTL_MOD, fd, &kev) == 0)
				m->converted = 1;
		} else {
			/* exclusive wake-ups cannot be modified: register again */
			kev.events |= EPOLLEXCLUSIVE;
			if (REAL(epoll_ctl)(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 &&
			    REAL(epoll_ctl)(epfd, EPOLL_CTL_ADD, fd, &kev) == 0)
				m->converted = 1;
		}
	}
	if (!m->converted)
		return 0;
	int kev, kdec;
	int want = ep_to_poll(m->app_events);
	int ev = nsk_sock_ready(s, want, &kev, &kdec, arm);
	if ((kdec & POLLOUT) && !(ev & POLLOUT)) {
		/* Our sending direction is on TCP while the other still uses the ring (a switch
		 * in progress): the converted registration does not watch EPOLLOUT, so ask the
		 * kernel now and sleep bounded until the switch completes. */
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (REAL(poll)(&p, 1, 0) == 1 && (p.revents & POLLOUT))
			ev |= POLLOUT;
		if (arm)
			*armed_out |= 2;
	}
	if (arm) {
		*armed_out |= 1;
		if ((want & POLLOUT) && !nsk_sock_space_wake_reliable(s))
			*armed_out |= 2; /* sleep bounded: see nsk_sock_space_wake_reliable() */
	}
	/* What the kernel still decides: the TCP part of the stream before the peer's switch
	 * point, and errors. */
	uint32_t kdecides = poll_to_ep(kdec) | EPOLLERR | EPOLLHUP;
	out = (poll_to_ep(ev) | (kernel_events & kdecides)) & (m->app_events | EPOLLERR | EPOLLHUP);
	if (out && (m->app_events & EPOLLET) && nsk_load32(&s->conn->rx_crossed)) {
		uint64_t sig = ring_sig(s);
		if (sig == m->last_sig && arm && s->kind != NSK_CK_UDP) {
			/* Ready but already reported: the next change must wake the kernel wait,
			 * although the ring is not empty (nsk_sock_ready armed nothing). Re-check
			 * after arming (pairs with the peer's publish-then-take). */
			if (want & POLLIN)
				nsk_arm(&s->chan.rx.ctl->cons_armed, NSK_ARM_FD);
			if ((want & POLLOUT) && nsk_load32(&s->conn->tx_switched))
				nsk_arm(&s->chan.tx.ctl->prod_armed, NSK_ARM_FD);
			sig = ring_sig(s);
		}
		if (sig == m->last_sig)
			out = 0;
		else if (!peek)
			m->last_sig = sig;
	}
	if (out && (m->app_events & EPOLLONESHOT) && !peek)
		m->disabled = 1;
	return out;
}

static void disarm_all(struct ep *e)
{
	for (int i = 0; i < e->ncand; i++) {
		struct member *m = &e->m[e->cand[i]];
		if (m->nested)
			nested_disarm(e->cand[i]);
		else if (m->sock)
			nsk_sock_disarm(m->sock);
	}
}

/* Collect ring readiness of all candidates into @out (at most @max). */
static int scan(struct ep *e, int epfd, struct epoll_event *out, int max, int arm, int *armed)
{
	int n = 0;
	for (int i = 0; i < e->ncand && n < max; i++) {
		int fd = e->cand[i];
		uint32_t ev = member_ready(e, epfd, fd, arm, armed, 0, 0);
		if (ev) {
			out[n].events = ev;
			out[n].data = e->m[fd].app_data;
			n++;
		}
	}
	return n;
}

/* Whether socket member @fd, still registered pass-through, switched to the rings since the
 * last scan (while the caller slept in the kernel). Its kernel events then come from the
 * peer's switch marker or wake-ups and must go through member_ready() (which converts the
 * registration), not to the application: a raw EPOLLIN would be followed by a read that
 * finds the ring empty (EAGAIN). */
static int became_shm(struct ep *e, struct member *m, int fd)
{
	struct nsk_sock *s = m->sock ? member_sock(e, fd) : NULL;
	if (!s)
		return 0;
	nsk_sock_refresh(s);
	return nsk_sock_is_shm(s);
}

/* Translate kernel events in @k (n of them) into application events appended at @out. */
static int translate(struct ep *e, int epfd, struct epoll_event *k, int nk, struct epoll_event *out,
		     int have, int max)
{
	int n = have;
	for (int i = 0; i < nk; i++) {
		int fd = (int)(uint32_t)k[i].data.u64;
		uint32_t gen = (uint32_t)(k[i].data.u64 >> 32);
		if (fd < 0 || fd >= e->cap || !e->m[fd].used || e->m[fd].gen != gen)
			continue;
		struct member *m = &e->m[fd];
		if (m->converted || became_shm(e, m, fd)) {
			struct nsk_sock *s = member_sock(e, fd);
			if (s)
				nsk_sock_kernel_event(s, (int)k[i].events);
			/* skip if already reported by the ring scan */
			int dup = 0;
			for (int j = 0; j < n; j++)
				if (out[j].data.u64 == m->app_data.u64) {
					dup = 1;
					break;
				}
			if (dup || n >= max)
				continue;
			int unused;
			uint32_t ev = member_ready(e, epfd, fd, 0, &unused, k[i].events, 0);
			if (ev) {
				out[n].events = ev;
				out[n].data = m->app_data;
				n++;
			}
			continue;
		}
		if (n >= max)
			continue;
		out[n].events = k[i].events;
		out[n].data = m->app_data;
		n++;
	}
	return n;
}

static int wait_common(int epfd, struct epoll_event *out, int max, int timeout,
		       const sigset_t *mask, int pwait)
{
	struct ep *e = ep_get(epfd);
	if (!e || max <= 0) {
		if (pwait)
			return REAL(epoll_pwait)(epfd, out, max, timeout, mask);
		return REAL(epoll_wait)(epfd, out, max, timeout);
	}
	int saved = errno;
	struct epoll_event kbuf[256];
	int kmax = max < 256 ? max : 256;
	uint64_t deadline = timeout > 0 ? nsk_now_ns() + (uint64_t)timeout * 1000000ull : 0;
	int spun = 0;
	for (;;) {
		pthread_mutex_lock(&e->lock);
		int armed = 0;
		int n = scan(e, epfd, out, max, 0, &armed);
		int has_cand = e->ncand > 0;
		uint64_t spin = 0;
		if (!n && has_cand && !spun && timeout != 0) {
			for (int i = 0; i < e->ncand; i++) {
				struct nsk_sock *s = e->m[e->cand[i]].sock;
				if (s && nsk_sock_is_shm(s) &&
				    __atomic_load_n(&s->spin_ns, __ATOMIC_RELAXED) > spin)
					spin = __atomic_load_n(&s->spin_ns, __ATOMIC_RELAXED);
			}
		}
		uint64_t now = nsk_now_ns();
		if (n) {
			/* Merge kernel-side events, at most every 20 µs so that other fds are never
			 * starved while rings stay busy. */
			if (n < max && now - e->last_kernel_ns > 20000) {
				e->last_kernel_ns = now;
				int nk = REAL(epoll_wait)(epfd, kbuf, max - n < kmax ? max - n : kmax, 0);
				if (nk > 0)
					n = translate(e, epfd, kbuf, nk, out, n, max);
			}
			pthread_mutex_unlock(&e->lock);
			errno = saved;
			return n;
		}
		if (spin) {
			pthread_mutex_unlock(&e->lock);
			spun = 1;
			/* Spin on the rings without syscalls, then look again. */
			uint64_t t0 = nsk_now_ns();
			int hit = 0;
			while (!hit && nsk_now_ns() - t0 < spin) {
				pthread_mutex_lock(&e->lock);
				for (int i = 0; i < e->ncand && !hit; i++) {
					int fd = e->cand[i];
					struct member *m = &e->m[fd];
					if (!m->used || m->disabled || !m->converted)
						continue;
					struct nsk_sock *s = member_sock(e, fd);
					if (!s)
						continue;
					int kev, kdec;
					if (nsk_sock_is_shm(s) &&
					    nsk_sock_ready(s, ep_to_poll(m->app_events), &kev, &kdec, 0))
						hit = 1;
				}
				pthread_mutex_unlock(&e->lock);
				for (int i = 0; i < 32 && !hit; i++)
					nsk_cpu_relax();
			}
			/* also give the kernel side a chance before sleeping */
			pthread_mutex_lock(&e->lock);
			int nk = REAL(epoll_wait)(epfd, kbuf, kmax, 0);
			int n2 = nk > 0 ? translate(e, epfd, kbuf, nk, out, 0, max) : 0;
			pthread_mutex_unlock(&e->lock);
			if (n2) {
				errno = saved;
				return n2;
			}
			continue;
		}
		/* Arm every accelerated member, then sleep in the kernel. */
		n = has_cand ? scan(e, epfd, out, max, 1, &armed) : 0;
		if (n) {
			disarm_all(e);
			pthread_mutex_unlock(&e->lock);
			errno = saved;
			return n;
		}
		pthread_mutex_unlock(&e->lock);
		int tmo = timeout;
		if (timeout > 0) {
			uint64_t nw = nsk_now_ns();
			tmo = nw >= deadline ? 0 : (int)((deadline - nw + 999999) / 1000000);
		}
		if ((armed & 2) && (tmo < 0 || tmo > 1))
			tmo = 1;
		/* Dynamic ring sizing looks at idle rings during scans: wake once a second. */
		if (nsk_g.rsz.dynamic && armed && (tmo < 0 || tmo > 1000))
			tmo = 1000;
		int nk = pwait ? REAL(epoll_pwait)(epfd, kbuf, kmax, tmo, mask)
			       : REAL(epoll_wait)(epfd, kbuf, kmax, tmo);
		int err = errno;
		pthread_mutex_lock(&e->lock);
		if (armed)
			disarm_all(e);
		if (nk < 0) {
			pthread_mutex_unlock(&e->lock);
			errno = err;
			return -1;
		}
		e->last_kernel_ns = nsk_now_ns();
		n = translate(e, epfd, kbuf, nk, out, 0, max);
		pthread_mutex_unlock(&e->lock);
		if (n || timeout == 0 || (timeout > 0 && nsk_now_ns() >= deadline)) {
			errno = saved;
			return n;
		}
		spun = 1; /* a spurious wake-up (control byte only): sleep again */
	}
}

int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return wait_common(epfd, ev, max, timeout, NULL, 0);
}

int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
	return wait_common(epfd, ev, max, timeout, mask, 1);
}

/* ------------------------------------------------------------- nested sets --------- */
/* An epoll set inside another set or a poll()/select() set is readable when epoll_wait on it
 * would report something: for its accelerated members that is ring state, which the kernel
 * only learns of through a control byte, sent when the member is armed. */

static int nested_ready(int epfd, int arm)
{
	struct ep *e = ep_get(epfd);
	if (!e)
		return -1;
	pthread_mutex_lock(&e->lock);
	int ready = 0, armed = 0;
	for (int i = 0; i < e->ncand && !ready; i++)
		ready = member_ready(e, epfd, e->cand[i], 0, &armed, 0, 1) != 0;
	if (!ready && arm)
		for (int i = 0; i < e->ncand && !ready; i++)
			ready = member_ready(e, epfd, e->cand[i], 1, &armed, 0, 1) != 0;
	pthread_mutex_unlock(&e->lock);
	return ready;
}

static void nested_disarm(int epfd)
{
	struct ep *e = ep_get(epfd);
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	disarm_all(e);
	pthread_mutex_unlock(&e->lock);
}

int nsk_epoll_nested_ready(int epfd, int arm)
{
	return nested_ready(epfd, arm);
}

void nsk_epoll_nested_disarm(int epfd)
{
	nested_disarm(epfd);
}

int nsk_epoll_is_shadowed(int fd)
{
	struct ep *e = ep_get(fd);
	return e && __atomic_load_n(&e->ncand, __ATOMIC_RELAXED) > 0;
}
