/* SPDX-License-Identifier: MIT */
/* udp.h — UDP over shared memory: what the wrappers call for UDP sockets.
 *
 * A bound UDP socket registers an inbox (src/core/inbox.h) in the domain registry; a sender
 * whose destination has a live inbox copies the whole datagram into it, every other datagram
 * (remote, multicast, broadcast, no nearsock receiver) goes through the kernel, and the
 * receiver merges both. A receiver asleep in a blocking call or in poll/select/epoll is woken
 * by a one-byte datagram to its kernel socket from the sender's per-process wake socket
 * (127.0.0.1 or ::1, a port nearsock holds); the receiver knows those ports from its inbox
 * and never hands such a datagram to the application.
 *
 * UDP sockets are ordinary nsk_sock objects of kind NSK_CK_UDP (pinning, dup, close as TCP);
 * their UDP state hangs off s->udp. Functions taking a pinned socket and returning ssize_t
 * follow the POSIX convention (-1 and errno) and unpin it; the nsk_sock_* hooks in sock.c
 * return -errno. */
#ifndef NSK_UDP_H
#define NSK_UDP_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

struct nsk_sock;

/* nsk_udp_wanted - whether socket(@domain, @type, @protocol) is a UDP socket we track. */
int nsk_udp_wanted(int domain, int type, int protocol);
/* nsk_udp_new - object for new UDP socket @fd (NULL: untracked, plain kernel). */
struct nsk_sock *nsk_udp_new(int fd, int domain, int type);
/* nsk_udp_enter - @fd pinned if it is a tracked UDP socket, else NULL (two loads). */
struct nsk_sock *nsk_udp_enter(int fd);

/* Life. */
void nsk_udp_bound(int fd);                   /* after a successful bind() */
int nsk_udp_connect(struct nsk_sock *s, const struct sockaddr *sa, socklen_t len); /* unpins */
void nsk_udp_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
void nsk_udp_release(struct nsk_sock *s);     /* last fd closed: withdraw the inbox */
void nsk_udp_free(struct nsk_sock *s);        /* last user gone: unmap, free */
/* nsk_udp_internal_fd_check - @fd is closed or replaced by the application. */
void nsk_udp_internal_fd_check(int fd);
/* nsk_udp_before_exec - withdraw every inbox of this process (the new image will not read
 * them); for the exec wrapper. */
void nsk_udp_before_exec(void);

/* Data path with addresses (POSIX return; unpin @s). */
ssize_t nsk_udp_sendmsg(struct nsk_sock *s, const struct msghdr *msg, int flags);
ssize_t nsk_udp_recvmsg(struct nsk_sock *s, struct msghdr *msg, int flags);
ssize_t nsk_udp_sendto(struct nsk_sock *s, const void *buf, size_t len, int flags,
		       const struct sockaddr *dst, socklen_t dlen);
ssize_t nsk_udp_recvfrom(struct nsk_sock *s, void *buf, size_t len, int flags,
			 struct sockaddr *src, socklen_t *alen);
int nsk_udp_sendmmsg(struct nsk_sock *s, struct mmsghdr *vec, unsigned int n, int flags);
int nsk_udp_recvmmsg(struct nsk_sock *s, struct mmsghdr *vec, unsigned int n, int flags,
		     struct timespec *tmo);

/* Hooks for sock.c's generic entry points (return -errno; do not unpin). */
ssize_t nsk_udp_sendv(struct nsk_sock *s, const struct iovec *iov, int cnt, int flags);
ssize_t nsk_udp_recvv(struct nsk_sock *s, const struct iovec *iov, int cnt, int flags);
int nsk_udp_is_shm(struct nsk_sock *s);
int nsk_udp_ready(struct nsk_sock *s, int want, int *kernel_ev, int *kernel_decides, int arm);
void nsk_udp_disarm(struct nsk_sock *s);
void nsk_udp_kernel_event(struct nsk_sock *s, int revents);
int nsk_udp_fionread(struct nsk_sock *s);
/* nsk_udp_sig - changes whenever new input may have appeared (EPOLLET). */
uint64_t nsk_udp_sig(struct nsk_sock *s);

#endif
