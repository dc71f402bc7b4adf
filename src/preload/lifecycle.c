/* SPDX-License-Identifier: MIT */
/* lifecycle.c — socket life: socket, listen, connect, accept/accept4, close/close_range,
 * shutdown, dup/dup2/dup3, fcntl, ioctl, getsockopt/setsockopt, fork bookkeeping, and the
 * library's constructor/destructor. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <dlfcn.h>
#include <limits.h>
#include <linux/close_range.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/budget.h"
#include "platform/linux.h"
#include "preload/vmdom.h"
#include "preload/fdtab.h"
#include "preload/real.h"
#include "preload/sock.h"
#include "preload/udp.h"

/* Listening sockets of this process, withdrawn from the registry at exit. */
static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
#define MAX_LISTENERS 256
static struct nsk_sock *listeners[MAX_LISTENERS];

static void listeners_add(struct nsk_sock *s)
{
	pthread_mutex_lock(&listeners_lock);
	for (int i = 0; i < MAX_LISTENERS; i++)
		if (!listeners[i]) {
			listeners[i] = s;
			break;
		}
	pthread_mutex_unlock(&listeners_lock);
}

static void listeners_del(struct nsk_sock *s)
{
	pthread_mutex_lock(&listeners_lock);
	for (int i = 0; i < MAX_LISTENERS; i++)
		if (listeners[i] == s)
			listeners[i] = NULL;
	pthread_mutex_unlock(&listeners_lock);
}

/* Replace whatever @fd tracked with @s (NULL: untrack), dropping the old reference. */
static void track(int fd, struct nsk_sock *s)
{
	struct nsk_sock *old = nsk_fd_set(fd, s);
	if (old) {
		if (old->kind == NSK_CK_LISTENER && atomic_load(&old->refs) == 1)
			listeners_del(old);
		nsk_sock_put(old);
	}
}

int socket(int domain, int type, int protocol)
{
	int fd = REAL(socket)(domain, type, protocol);
	if (fd < 0 || nsk_g.disabled)
		return fd;
	if ((domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_STREAM &&
	    (protocol == 0 || protocol == IPPROTO_TCP)) {
		int saved = errno;
		struct nsk_sock *s = nsk_sock_new(fd, domain, NSK_CK_NONE);
		if (s)
			s->nonblock = !!(type & SOCK_NONBLOCK);
		track(fd, s);
		errno = saved;
	} else if (nsk_udp_wanted(domain, type, protocol)) {
		int saved = errno;
		track(fd, nsk_udp_new(fd, domain, type));
		errno = saved;
	} else {
		track(fd, NULL); /* a stale entry of an fd closed behind our back */
	}
	return fd;
}

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	int r = REAL(bind)(fd, sa, len);
	if (r == 0)
		nsk_udp_bound(fd); /* a UDP socket publishes its inbox */
	return r;
}

int listen(int fd, int backlog)
{
	int r = REAL(listen)(fd, backlog);
	if (r < 0)
		return r;
	int saved = errno;
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (s) {
		if (s->kind == NSK_CK_NONE) {
			s->kind = NSK_CK_LISTENER;
			s->conn->kind = NSK_CK_LISTENER;
			nsk_sock_listen(s);
			listeners_add(s);
		}
		nsk_sock_leave(s);
	}
	errno = saved;
	return r;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return REAL(connect)(fd, sa, len);
	if (s->kind == NSK_CK_UDP)
		return nsk_udp_connect(s, sa, len);
	/* Join an ivshmem region before the SYN leaves: the server member resolves our address
	 * to our membership when it accepts. */
	if (s->kind == NSK_CK_NONE && nsk_vm_configured())
		nsk_vm_ready();
	int r = REAL(connect)(fd, sa, len);
	int e = errno;
	if (s->kind == NSK_CK_NONE) {
		if (r == 0) {
			s->kind = NSK_CK_CLIENT;
			s->conn->kind = NSK_CK_CLIENT;
			nsk_sock_connected(s);
		} else if (e == EINPROGRESS || e == EINTR) {
			s->kind = NSK_CK_CLIENT;
			s->conn->kind = NSK_CK_CLIENT;
			s->connecting = 1;
		}
	}
	nsk_sock_leave(s);
	errno = e;
	return r;
}

static int do_accept(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	struct nsk_sock *ls = nsk_sock_enter(fd);
	if (!ls || ls->kind != NSK_CK_LISTENER) {
		if (ls)
			nsk_sock_leave(ls);
		return REAL(accept4)(fd, sa, len, flags);
	}
	/* We need the peer's address even when the application does not ask for it. */
	struct sockaddr_storage peer = {0}; /* initialised: cppcheck does not see accept4 fill it */
	socklen_t plen = sizeof(peer);
	int nfd = REAL(accept4)(fd, (struct sockaddr *)&peer, &plen, flags);
	int e = errno;
	if (ls->reg_slot >= 0)
		nsk_sock_expire_offers(); /* offers of connections gone before their claim */
	if (nfd >= 0) {
		if (sa && len) {
			memcpy(sa, &peer, plen < *len ? plen : *len);
			*len = plen;
		}
		struct nsk_sock *s = nsk_sock_new(nfd, ls->family, NSK_CK_SERVER);
		if (s) {
			s->nonblock = !!(flags & SOCK_NONBLOCK);
			memcpy(s->conn->laddr, ls->conn->laddr, 16); /* refined if an offer comes */
			s->conn->lport = ls->conn->lport;
			track(nfd, s);
			nsk_sock_accepted(s, ls->reg_slot, (struct sockaddr *)&peer);
			nsk_vm_accepted(s, ls, (struct sockaddr *)&peer);
		} else {
			track(nfd, NULL);
		}
	}
	nsk_sock_leave(ls);
	errno = e;
	return nfd;
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	return do_accept(fd, sa, len, 0);
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return do_accept(fd, sa, len, flags);
}

int close(int fd)
{
	nsk_epoll_forget(fd);
	nsk_sock_internal_fd_check(fd);
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return REAL(close)(fd);
	int saved = errno;
	nsk_sock_before_close(s);
	if (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER)
		nsk_sock_closing(s, fd);
	nsk_fd_set(fd, NULL);
	errno = saved;
	/* The kernel close first: when we then wake the peer, our FIN is already there. */
	int r = REAL(close)(fd);
	saved = errno;
	if (s->kind == NSK_CK_LISTENER && atomic_load(&s->refs) == 1)
		listeners_del(s);
	nsk_sock_put(s);
	nsk_sock_leave(s);
	errno = saved;
	return r;
}

int close_range(unsigned int first, unsigned int last, int flags);
int close_range(unsigned int first, unsigned int last, int flags)
{
	static int (*real_close_range)(unsigned int, unsigned int, int);
	if (!real_close_range)
		*(void **)&real_close_range = dlsym(RTLD_NEXT, "close_range");
	int r = real_close_range ? real_close_range(first, last, flags) : (errno = ENOSYS, -1);
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) {
		int saved = errno;
		for (unsigned int fd = first; fd <= last && fd < (1u << 20); fd++) {
			nsk_sock_internal_fd_check((int)fd);
			if (nsk_fd_get((int)fd))
				track((int)fd, NULL);
			if (fd == last)
				break;
		}
		errno = saved;
	}
	return r;
}

int shutdown(int fd, int how)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return REAL(shutdown)(fd, how);
	if (s->kind != NSK_CK_CLIENT && s->kind != NSK_CK_SERVER) {
		nsk_sock_leave(s);
		return REAL(shutdown)(fd, how);
	}
	nsk_sock_refresh(s);
	int saved = errno;
	int r = nsk_sock_shutdown(s, how);
	nsk_sock_leave(s);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	errno = saved;
	return 0;
}

/* After a successful dup of @oldfd onto @newfd: the copy shares the socket object. */
static void dup_track(int oldfd, int newfd)
{
	int saved = errno;
	struct nsk_sock *s = nsk_sock_enter(oldfd);
	if (s)
		atomic_fetch_add(&s->refs, 1);
	nsk_sock_internal_fd_check(newfd);
	if (newfd != oldfd)
		nsk_epoll_forget(newfd);
	track(newfd, s);
	if (s)
		nsk_sock_leave(s);
	errno = saved;
}

int dup(int fd)
{
	int r = REAL(dup)(fd);
	if (r >= 0)
		dup_track(fd, r);
	return r;
}

/* @newfd is about to be replaced by a dup: if it is the last fd of an accelerated socket,
 * prepare its close as close() would (the kernel closes it inside dup2/dup3). */
static void before_replace(int oldfd, int newfd)
{
	if (oldfd == newfd)
		return;
	struct nsk_sock *s = nsk_sock_enter(newfd);
	if (s) {
		int saved = errno;
		nsk_sock_before_close(s);
		if (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER)
			nsk_sock_closing(s, newfd);
		errno = saved;
		nsk_sock_leave(s);
	}
}

int dup2(int oldfd, int newfd)
{
	if (REAL(fcntl)(oldfd, F_GETFD) >= 0) /* dup2 fails (EBADF) without touching newfd */
		before_replace(oldfd, newfd);
	int r = REAL(dup2)(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		dup_track(oldfd, r);
	return r;
}

int dup3(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd && REAL(fcntl)(oldfd, F_GETFD) >= 0)
		before_replace(oldfd, newfd);
	int r = REAL(dup3)(oldfd, newfd, flags);
	if (r >= 0)
		dup_track(oldfd, r);
	return r;
}

static int do_fcntl(int (*fn)(int, int, ...), int fd, int cmd, va_list ap)
{
	void *arg = va_arg(ap, void *);
	int r = fn(fd, cmd, arg);
	if (r < 0)
		return r;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		dup_track(fd, r);
		break;
	case F_SETFL: {
		struct nsk_sock *s = nsk_sock_enter(fd);
		if (s) {
			s->nonblock = !!((long)arg & O_NONBLOCK);
			nsk_sock_leave(s);
		}
		break;
	}
	default:
		break;
	}
	return r;
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(REAL(fcntl), fd, cmd, ap);
	va_end(ap);
	return r;
}

int fcntl64(int fd, int cmd, ...)
{
	static int (*real_fcntl64)(int, int, ...);
	if (!real_fcntl64)
		*(void **)&real_fcntl64 = dlsym(RTLD_NEXT, "fcntl64");
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(real_fcntl64 ? real_fcntl64 : REAL(fcntl), fd, cmd, ap);
	va_end(ap);
	return r;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return REAL(ioctl)(fd, req, arg);
	int r;
	if (req == FIONREAD && (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER ||
				s->kind == NSK_CK_UDP) &&
	    nsk_load32(&s->conn->mode) != NSK_MODE_PLAIN) {
		nsk_sock_refresh(s);
		int saved = errno;
		int n = nsk_sock_fionread(s);
		if (n < 0) {
			errno = -n;
			r = -1;
		} else {
			*(int *)arg = n;
			errno = saved;
			r = 0;
		}
	} else if (req == SIOCOUTQ && (s->kind == NSK_CK_CLIENT || s->kind == NSK_CK_SERVER) &&
		   nsk_sock_outq(s) >= 0) {
		/* bytes the peer has not taken yet, as the kernel counts unacknowledged ones (a
		 * loopback peer acknowledges when it reads); control bytes are not the app's */
		*(int *)arg = nsk_sock_outq(s);
		r = 0;
	} else {
		r = REAL(ioctl)(fd, req, arg);
		if (r == 0 && req == FIONBIO)
			s->nonblock = !!*(int *)arg;
	}
	nsk_sock_leave(s);
	return r;
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s)
		return REAL(getsockopt)(fd, level, name, val, len);
	int r = REAL(getsockopt)(fd, level, name, val, len);
	if (r == 0 && level == IPPROTO_TCP && name == TCP_NODELAY && *len >= sizeof(int) &&
	    nsk_load32(&s->conn->tx_switched))
		*(int *)val = s->app_nodelay; /* we force it on for control bytes */
	if (r == 0 && level == IPPROTO_TCP && name == TCP_CORK && *len >= sizeof(int) &&
	    nsk_load32(&s->conn->tx_switched))
		*(int *)val = s->app_cork;
	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR && *(int *)val == 0 &&
	    nsk_load32(&s->conn->mode) == NSK_MODE_BROKEN)
		*(int *)val = ECONNRESET;
	if (r == 0 && level == SOL_SOCKET && name == SO_ERROR && s->connecting)
		nsk_sock_refresh(s); /* a non-blocking connect is being checked: offer now */
	nsk_sock_leave(s);
	return r;
}

static uint64_t tv_ns(const void *val, socklen_t len)
{
	if (len < sizeof(struct timeval))
		return 0;
	const struct timeval *tv = val;
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	if (level == IPPROTO_TCP && name == TCP_CORK && len >= sizeof(int)) {
		struct nsk_sock *s = nsk_sock_enter(fd);
		if (s) {
			int r = 0, was = s->app_cork;
			s->app_cork = !!*(const int *)val;
			if (!nsk_load32(&s->conn->tx_switched))
				r = REAL(setsockopt)(fd, level, name, val, len);
			else if (was && !s->app_cork)
				nsk_sock_uncork(s); /* what was held back goes now */
			nsk_sock_leave(s);
			return r;
		}
	}
	if (level == IPPROTO_TCP && name == TCP_NODELAY && len >= sizeof(int)) {
		struct nsk_sock *s = nsk_sock_enter(fd);
		if (s) {
			int r = 0;
			s->app_nodelay = !!*(const int *)val;
			if (!nsk_load32(&s->conn->tx_switched))
				r = REAL(setsockopt)(fd, level, name, val, len);
			nsk_sock_leave(s);
			return r;
		}
	}
	int r = REAL(setsockopt)(fd, level, name, val, len);
	if (r == 0)
		nsk_udp_setsockopt(fd, level, name, val, len);
	if (r < 0 || level != SOL_SOCKET ||
	    (name != SO_RCVTIMEO && name != SO_SNDTIMEO && name != SO_RCVLOWAT))
		return r;
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (s) {
		if (name == SO_RCVTIMEO)
			s->rcvtimeo_ns = tv_ns(val, len);
		else if (name == SO_SNDTIMEO)
			s->sndtimeo_ns = tv_ns(val, len);
		else if (len >= sizeof(int))
			s->rcvlowat = *(const int *)val > 0 ? *(const int *)val : 1;
		nsk_sock_leave(s);
	}
	return r;
}

/* ---------------------------------------------------------------- process life -------- */

__attribute__((constructor)) static void nsk_ctor(void)
{
	nsk_global_init();
	pthread_atfork(nsk_sock_fork_prepare, nsk_sock_fork_parent, nsk_sock_fork_child);
	nsk_inherit_adopt();
}

/* NEARSOCK_STATS_FILE: at exit, append this process's counters as one JSON line (as
 * `nearsock status --json` shows them while it runs): proof of the path taken by programs too
 * short-lived to be sampled. Open connections are counted as they are. */
static void write_stats_file(void)
{
	const char *path = getenv("NEARSOCK_STATS_FILE");
	if (!path || !*path || !nsk_g.tab.hdr)
		return;
	const uint64_t *k = nsk_g.tab.hdr->counters;
	uint64_t b[4] = {nsk_load64(&k[NSK_PC_CLOSED_SHM_TX]), nsk_load64(&k[NSK_PC_CLOSED_SHM_RX]),
			 nsk_load64(&k[NSK_PC_CLOSED_TCP_TX]), nsk_load64(&k[NSK_PC_CLOSED_TCP_RX])};
	uint32_t high = nsk_proctab_readable(&nsk_g.tab);
	for (uint32_t i = 0; i < high; i++) {
		const struct nsk_conn *c = &nsk_g.tab.conns[i];
		if (nsk_load32(&c->owner_pid) != (uint32_t)getpid())
			continue;
		b[0] += nsk_load64(&c->tx_shm_bytes);
		b[1] += nsk_load64(&c->rx_shm_bytes);
		b[2] += nsk_load64(&c->tx_tcp);
		b[3] += nsk_load64(&c->rx_tcp);
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	dprintf(fd,
		"{\"pid\": %d, \"offers_sent\": %llu, \"claims\": %llu, \"fallbacks\": %llu, "
		"\"broken\": %llu, \"shm_tx_bytes\": %llu, \"shm_rx_bytes\": %llu, "
		"\"tcp_tx_bytes\": %llu, \"tcp_rx_bytes\": %llu}\n",
		(int)getpid(), (unsigned long long)nsk_load64(&k[NSK_PC_OFFERS_SENT]),
		(unsigned long long)nsk_load64(&k[NSK_PC_CLAIMS]),
		(unsigned long long)nsk_load64(&k[NSK_PC_FALLBACKS]),
		(unsigned long long)nsk_load64(&k[NSK_PC_BROKEN]), (unsigned long long)b[0],
		(unsigned long long)b[1], (unsigned long long)b[2], (unsigned long long)b[3]);
	close(fd);
}

__attribute__((destructor)) static void nsk_dtor(void)
{
	nsk_vm_exit();
	if (nsk_g.domain_state <= 0)
		return;
	write_stats_file();
	/* Listeners this process is the last to hold (also a forked child's, whose entry was
	 * made by its parent). */
	pthread_mutex_lock(&listeners_lock);
	for (int i = 0; i < MAX_LISTENERS; i++)
		if (listeners[i] && nsk_sock_last_holder(listeners[i]))
			nsk_sock_unlisten(listeners[i]);
	pthread_mutex_unlock(&listeners_lock);
	nsk_sock_unlisten_all_closed();
	if (getpid() != (pid_t)nsk_g.tab.hdr->pid)
		return;
	if (nsk_g.rv_fd >= 0 && nsk_g.rv_owned) {
		char path[PATH_MAX];
		if (nsk_rv_path(&nsk_g.dom, nsk_g.rv_name, path, sizeof(path)) == 0)
			unlink(path);
	}
	if (nsk_proctab_in_use(&nsk_g.tab, getpid()) == 0) {
		/* Connections still open at exit: their memory charges go with the table (nobody
		 * could give them back after it is gone). */
		nsk_budget_uncharge(&nsk_g.dom, &nsk_g.tab, nsk_load64(&nsk_g.tab.hdr->mem_charged));
		unlink(nsk_g.tab.path);
	}
}

/* ---------------------------------------------------------------- public API ---------- */

#include "nearsock/nearsock.h"

int nearsock_fd_stats(int fd, struct nearsock_conn_stats *st)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s) {
		errno = ENOTSOCK;
		return -1;
	}
	struct nsk_conn *c = s->conn;
	memset(st, 0, sizeof(*st));
	st->mode = nsk_load32(&c->mode);
	st->tx_shm_bytes = nsk_load64(&c->tx_shm_bytes);
	st->rx_shm_bytes = nsk_load64(&c->rx_shm_bytes);
	st->tx_tcp_bytes = nsk_load64(&c->tx_tcp);
	st->rx_tcp_bytes = nsk_load64(&c->rx_tcp);
	st->tx_shm_msgs = nsk_load64(&c->tx_shm_msgs);
	st->rx_shm_msgs = nsk_load64(&c->rx_shm_msgs);
	st->wakeups_sent = nsk_load64(&c->wakes_sent);
	st->switches = (uint32_t)nsk_load64(&c->switches);
	nsk_sock_leave(s);
	return 0;
}

int nearsock_fd_path(int fd)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s) {
		errno = ENOTSOCK;
		return -1;
	}
	int r = (nsk_load32(&s->conn->tx_switched) ? NEARSOCK_TX_RING : 0) |
		(nsk_load32(&s->conn->rx_crossed) ? NEARSOCK_RX_RING : 0);
	nsk_sock_leave(s);
	return r;
}

static int pin(int fd, int tcp)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (!s) {
		errno = ENOTSOCK;
		return -1;
	}
	int r = nsk_sock_pin_tcp(s, tcp);
	nsk_sock_leave(s);
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

int nearsock_evacuate(int fd)
{
	return pin(fd, 1);
}

int nearsock_attach(int fd)
{
	return pin(fd, 0);
}
