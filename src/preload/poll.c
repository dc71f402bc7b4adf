/* SPDX-License-Identifier: MIT */
/* poll.c — poll, ppoll, select, pselect (and their _FORTIFY_SOURCE variants). Sets that
 * hold no accelerated socket go straight to the kernel. Otherwise readiness of accelerated
 * sockets is computed from their rings; when nothing is ready the sockets are armed and
 * the kernel waits on their fds for control bytes (wake-ups) together with everything else. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "platform/linux.h"
#include "preload/real.h"
#include "preload/sock.h"

extern void __chk_fail(void) __attribute__((noreturn));

#define STACK_FDS 64

/* Pinned accelerated socket for @fd, or NULL. */
static struct nsk_sock *shm_sock(int fd)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return NULL;
	if (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER || s->kind == NSK_CK_UDP) {
		nsk_sock_refresh(s);
		if (nsk_sock_is_shm(s))
			return s;
	}
	nsk_sock_leave(s);
	return NULL;
}

static int64_t ts_ns(const struct timespec *ts)
{
	return ts ? (int64_t)ts->tv_sec * 1000000000ll + ts->tv_nsec : -1;
}

/* The core: like ppoll with a relative timeout in ns (-1: forever). */
static int poll_common(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
{
	struct nsk_sock *stack_socks[STACK_FDS];
	struct pollfd stack_k[STACK_FDS];
	char stack_eps[STACK_FDS];
	struct nsk_sock **socks = stack_socks;
	struct pollfd *k = stack_k;
	char *eps = stack_eps; /* epoll sets with accelerated members (nested readiness) */
	int any = 0, nplain = 0;
	if (n > STACK_FDS) {
		socks = calloc(n, sizeof(*socks));
		k = calloc(n, sizeof(*k));
		eps = calloc(n, 1);
		if (!socks || !k || !eps) {
			free(socks);
			free(k);
			free(eps);
			errno = ENOMEM;
			return -1;
		}
	}
	for (nfds_t i = 0; i < n; i++) {
		socks[i] = fds[i].fd >= 0 ? shm_sock(fds[i].fd) : NULL;
		eps[i] = !socks[i] && fds[i].fd >= 0 && (fds[i].events & POLLIN) &&
			 nsk_epoll_is_shadowed(fds[i].fd);
		any |= socks[i] != NULL || eps[i];
		nplain += socks[i] == NULL;
	}
	struct timespec ts, *tsp = NULL;
	int r;
	if (!any) {
		if (timeout_ns >= 0) {
			ts.tv_sec = timeout_ns / 1000000000;
			ts.tv_nsec = timeout_ns % 1000000000;
			tsp = &ts;
		}
		r = REAL(ppoll)(fds, n, tsp, mask);
		goto out;
	}
	int saved = errno;
	uint64_t start = nsk_now_ns();
	uint64_t deadline = timeout_ns >= 0 ? start + (uint64_t)timeout_ns : 0;
	int spun = 0;
	for (;;) {
		int user = 0, nready = 0;
		/* 1. user-space readiness */
		for (nfds_t i = 0; i < n; i++) {
			k[i] = fds[i];
			k[i].revents = 0;
			if (eps[i] && nsk_epoll_nested_ready(fds[i].fd, 0) > 0) {
				user = 1;
				fds[i].revents = POLLIN;
			}
			if (!socks[i])
				continue;
			int kev, kdec;
			int ev = nsk_sock_ready(socks[i], fds[i].events, &kev, &kdec, 0);
			fds[i].revents = (short)ev;
			user |= ev != 0;
			k[i].events = (short)kev;
		}
		int64_t wait_ns;
		if (user) {
			wait_ns = 0;
		} else if (!spun && timeout_ns != 0) {
			/* 2. spin briefly on the rings before paying for a sleep */
			spun = 1;
			uint64_t budget = 0;
			for (nfds_t i = 0; i < n; i++)
				if (socks[i] && __atomic_load_n(&socks[i]->spin_ns, __ATOMIC_RELAXED) > budget)
					budget = __atomic_load_n(&socks[i]->spin_ns, __ATOMIC_RELAXED);
			uint64_t t0 = nsk_now_ns();
			int hit = 0;
			while (budget && !hit && nsk_now_ns() - t0 < budget) {
				for (nfds_t i = 0; i < n && !hit; i++) {
					int kev, kdec;
					if (socks[i] &&
					    nsk_sock_ready(socks[i], fds[i].events, &kev, &kdec, 0))
						hit = 1;
				}
			}
			if (hit)
				continue;
			/* a cheap look at the kernel side too, then arm and sleep */
			wait_ns = 0;
		} else {
			/* 3. arm and sleep in the kernel */
			int bounded = 0, user_socks = 0;
			for (nfds_t i = 0; i < n; i++) {
				if (eps[i] && nsk_epoll_nested_ready(fds[i].fd, 1) > 0) {
					user = 1;
					fds[i].revents = POLLIN;
				}
				if (!socks[i])
					continue;
				int kev, kdec;
				int ev = nsk_sock_ready(socks[i], fds[i].events, &kev, &kdec, 1);
				fds[i].revents = (short)ev;
				user |= ev != 0;
				user_socks = 1;
				k[i].events = (short)kev;
				if ((fds[i].events & POLLOUT) && !nsk_sock_space_wake_reliable(socks[i]))
					bounded = 1;
			}
			if (user)
				wait_ns = 0;
			else if (deadline) {
				uint64_t now = nsk_now_ns();
				wait_ns = now >= deadline ? 0 : (int64_t)(deadline - now);
			} else {
				wait_ns = -1;
			}
			if (bounded && (wait_ns < 0 || wait_ns > 1000000))
				wait_ns = 1000000; /* see nsk_sock_space_wake_reliable() */
			/* dynamic ring sizing looks at idle rings when we arm: once a second */
			if (nsk_g.rsz.dynamic && user_socks && (wait_ns < 0 || wait_ns > 1000000000))
				wait_ns = 1000000000;
		}
		if (wait_ns >= 0) {
			ts.tv_sec = wait_ns / 1000000000;
			ts.tv_nsec = wait_ns % 1000000000;
			tsp = &ts;
		} else {
			tsp = NULL;
		}
		if (user && !nplain) {
			/* Ready from the rings and nothing else polled: no syscall (errors and
			 * hang-ups of these sockets also reach the next call or the read). */
			for (nfds_t i = 0; i < n; i++)
				k[i].revents = 0;
			r = 0;
		} else {
			r = REAL(ppoll)(k, n, tsp, mask);
		}
		int e = errno;
		for (nfds_t i = 0; i < n; i++) {
			if (socks[i])
				nsk_sock_disarm(socks[i]);
			else if (eps[i])
				nsk_epoll_nested_disarm(fds[i].fd);
		}
		if (r < 0) {
			if (e == EINTR || !user) {
				errno = e;
				goto out;
			}
			r = 0;
		}
		/* 4. merge kernel and user events */
		for (nfds_t i = 0; i < n; i++) {
			if (eps[i]) {
				/* the rings may be ready without the kernel knowing (a control byte
				 * only wakes us); a kernel POLLIN may also be a plain member's */
				fds[i].revents = k[i].revents;
				if (nsk_epoll_nested_ready(fds[i].fd, 0) > 0)
					fds[i].revents |= POLLIN;
			} else if (!socks[i]) {
				fds[i].revents = k[i].revents;
			} else {
				short kr = k[i].revents;
				if (kr)
					nsk_sock_kernel_event(socks[i], kr);
				int kev, kdec;
				int ev = nsk_sock_ready(socks[i], fds[i].events, &kev, &kdec, 0);
				/* what the kernel still decides (TCP part of the stream, errors); a
				 * kernel POLLIN that was only a control byte is not readiness */
				ev |= kr & (kdec | POLLERR | POLLHUP | POLLNVAL);
				if (!(fds[i].events & POLLRDHUP))
					ev &= ~POLLRDHUP;
				fds[i].revents = (short)ev;
			}
			nready += fds[i].revents != 0;
		}
		if (nready || (deadline && nsk_now_ns() >= deadline) || timeout_ns == 0) {
			r = nready;
			errno = saved;
			goto out;
		}
	}
out:
	for (nfds_t i = 0; i < n; i++)
		if (socks[i])
			nsk_sock_leave(socks[i]);
	if (socks != stack_socks) {
		free(socks);
		free(k);
		free(eps);
	}
	return r;
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return poll_common(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return poll_common(fds, n, ts_ns(ts), mask);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, ts, mask);
}

/* select through poll_common when an accelerated socket is in one of the sets. */
static int select_common(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns,
			 const sigset_t *mask, int *handled)
{
	*handled = 0;
	if (nfds < 0 || nfds > FD_SETSIZE)
		return 0;
	int any = 0, cnt = 0;
	for (int fd = 0; fd < nfds; fd++) {
		int in = (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) || (ex && FD_ISSET(fd, ex));
		if (!in)
			continue;
		cnt++;
		if (!any) {
			struct nsk_sock *s = shm_sock(fd);
			if (s) {
				any = 1;
				nsk_sock_leave(s);
			}
		}
	}
	if (!any)
		return 0;
	*handled = 1;
	struct pollfd *p = calloc((size_t)cnt, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	int j = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = 0;
		if (rd && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev) {
			p[j].fd = fd;
			p[j].events = ev;
			j++;
		}
	}
	int r = poll_common(p, (nfds_t)cnt, timeout_ns, mask);
	if (r < 0) {
		free(p);
		return -1;
	}
	for (int i = 0; i < cnt; i++)
		if (p[i].revents & POLLNVAL) {
			free(p);
			errno = EBADF;
			return -1;
		}
	if (rd)
		FD_ZERO(rd);
	if (wr)
		FD_ZERO(wr);
	if (ex)
		FD_ZERO(ex);
	int total = 0;
	for (int i = 0; i < cnt; i++) {
		short re = p[i].revents;
		if (rd && (re & (POLLIN | POLLHUP | POLLERR)) && (p[i].events & POLLIN)) {
			FD_SET(p[i].fd, rd);
			total++;
		}
		if (wr && (re & (POLLOUT | POLLERR)) && (p[i].events & POLLOUT)) {
			FD_SET(p[i].fd, wr);
			total++;
		}
		if (ex && (re & POLLPRI) && (p[i].events & POLLPRI)) {
			FD_SET(p[i].fd, ex);
			total++;
		}
	}
	free(p);
	return total;
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	int handled;
	int64_t t = tv ? (int64_t)tv->tv_sec * 1000000000ll + (int64_t)tv->tv_usec * 1000 : -1;
	if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
		errno = EINVAL;
		return -1;
	}
	uint64_t start = nsk_now_ns();
	int r = select_common(nfds, rd, wr, ex, t, NULL, &handled);
	if (!handled)
		return REAL(select)(nfds, rd, wr, ex, tv);
	if (tv && r >= 0) { /* Linux reports the time not slept */
		int64_t left = t - (int64_t)(nsk_now_ns() - start);
		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000;
		tv->tv_usec = (left % 1000000000) / 1000;
	}
	return r;
}

int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
	    const sigset_t *mask)
{
	int handled;
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	int r = select_common(nfds, rd, wr, ex, ts_ns(ts), mask, &handled);
	if (!handled)
		return REAL(pselect)(nfds, rd, wr, ex, ts, mask);
	return r;
}
