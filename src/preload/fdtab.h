/* SPDX-License-Identifier: MIT */
/* fdtab.h — fd number → object maps for every fd of the process (socket objects, epoll
 * sets). Two-level arrays of atomic pointers: lookup is two loads and never takes a lock. */
#ifndef NSK_FDTAB_H
#define NSK_FDTAB_H

#include <stdatomic.h>

#define NSK_FDMAP_L2_BITS 10
#define NSK_FDMAP_L1 1024 /* fds up to 1M */

struct nsk_fdmap {
	_Atomic(_Atomic(void *) *) l1[NSK_FDMAP_L1];
};

void *nsk_fdmap_get(struct nsk_fdmap *m, int fd);
/* nsk_fdmap_set - map @fd to @p (NULL unmaps). Returns the previous value. */
void *nsk_fdmap_set(struct nsk_fdmap *m, int fd, void *p);

/* nsk_fdmap_foreach - call @fn for every mapped fd (no lock: entries may change meanwhile). */
void nsk_fdmap_foreach(struct nsk_fdmap *m, void (*fn)(int fd, void *obj, void *arg), void *arg);

struct nsk_sock;
extern struct nsk_fdmap nsk_socks, nsk_epolls;
/* channel memfds kept for exec (see sock.c) */
extern struct nsk_fdmap nsk_kept;

/* nsk_fd_get - the object tracking @fd, or NULL (not a tracked TCP socket). */
static inline struct nsk_sock *nsk_fd_get(int fd)
{
	return nsk_fdmap_get(&nsk_socks, fd);
}
/* nsk_fd_set - track @fd with @s (NULL untracks). Returns the previous object. */
static inline struct nsk_sock *nsk_fd_set(int fd, struct nsk_sock *s)
{
	return nsk_fdmap_set(&nsk_socks, fd, s);
}

#endif
