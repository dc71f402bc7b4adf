/* SPDX-License-Identifier: MIT */
/* sock.h — what the preload library knows about one TCP socket, and the operations the
 * wrappers build on: the upgrade state machine (offer, claim, switch points), the exact
 * TCP/ring receive and send paths, readiness for poll/select/epoll, and waiting.
 * A socket object is shared by every fd (dup) of one open file in this process; its
 * cross-fork state (locks, byte counts, mode) lives in the process's connection table. */
#ifndef NSK_SOCK_H
#define NSK_SOCK_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/chan.h"
#include "core/domain.h"
#include "core/layout.h"
#include "preload/ringsize.h"

enum nsk_log_level { NSK_LOG_DEBUG = 0, NSK_LOG_INFO, NSK_LOG_WARN, NSK_LOG_OFF };

/* Process-wide configuration and state. */
struct nsk_global {
	int disabled;   /* NEARSOCK_DISABLE=1 or the domain could not be used */
	int log_level;
	uint64_t ring_size; /* data area of each ring: the most it may grow to */
	struct nsk_rsz_conf rsz; /* dynamic ring sizing (ringsize.h) */
	uint64_t spin_ns;
	uint64_t offer_timeout_ns;
	uint64_t mem_budget; /* NEARSOCK_MEM_BUDGET: channel bytes the domain may hold (0: none) */
	pthread_mutex_t lock; /* domain set-up, rendezvous and pending offers */
	int domain_state;     /* 0 untried, 1 ready, -1 failed */
	struct nsk_domain dom;
	struct nsk_proctab tab;
	uint64_t netns;
	uint64_t start_time;
	pid_t pid;
	int eager;         /* NEARSOCK_UPGRADE=eager: offer at connect, not lazily */
	int rv_fd;         /* our rendezvous socket (listeners) or -1 */
	char rv_name[40];
	int offer_fd;      /* unbound datagram socket offers are sent from, or -1 */
	int rv_shared;     /* the rendezvous socket is shared with forked processes */
	int rq_fd;         /* connected to rv_fd: offers passed on between forked processes */
	int rv_owned;      /* rv_fd was created by this process (it removes the file at exit) */
	uint64_t fork_gen; /* forks seen (holders accounting) */
};
extern struct nsk_global nsk_g;

struct nsk_vmconn;

struct nsk_sock {
	atomic_int refs;  /* fds of this process referring to the socket */
	atomic_int busy;  /* calls in progress that may touch the channel mapping */
	int fd;           /* first fd (for logs and control bytes: any dup works) */
	int family;
	atomic_int kind;  /* enum nsk_conn_kind (atomic: set by connect/listen while other
			   * threads may look: offers, nearsock_evacuate) */
	int nonblock;     /* O_NONBLOCK as last set through our wrappers */
	int app_nodelay;  /* TCP_NODELAY as the application last set it */
	int app_cork;     /* TCP_CORK as the application last set it (a batching hint) */
	int rcvlowat;     /* SO_RCVLOWAT */
	struct nsk_conn *conn; /* slot in the connection table (never NULL for tracked sockets) */
	struct nsk_chan chan;  /* mapped from the offer (client) or attach (server) until the end */
	atomic_int chan_ready; /* chan is complete and in use (see chan_ok() in sock.c) */
	pthread_mutex_t lock;  /* upgrade transitions of this object */
	uint64_t deadline_ns;  /* client: when an unclaimed offer is withdrawn */
	int offer_pending;     /* client: offer built but not yet delivered (queue full) */
	int offer_memfd;       /* client: memfd kept until the offer is delivered */
	char offer_path[108];
	struct nsk_offer offer;
	int reg_slot;          /* listener: our registry slot; accepted: the listener's */
	uint64_t seen_seq;     /* listener/accepted: last offer_seq drained */
	uint64_t rcvtimeo_ns, sndtimeo_ns; /* SO_RCVTIMEO / SO_SNDTIMEO (0: none) */
	uint64_t spin_ns;      /* spin budget before sleeping (0 on a single allowed CPU) */
	uint64_t last_drain_ns; /* non-blocking readers: last look at the kernel socket */
	uint64_t last_diag_ns;  /* last sock_diag look at the peer's socket (peer_gone) */
	int connecting;        /* client: non-blocking connect in progress */
	atomic_int candidate;  /* client: a local listener exists; offer when worth it */
	int tuple_ok;          /* conn->laddr/raddr are filled in */
	atomic_int keep_memfd; /* the channel's memfd, kept (close-on-exec, high number) so that
				* an exec can hand the connection to the new image; -1 if none */
	uint32_t reg_pid;      /* listener: the pid its registry entry was made with */
	uint64_t fork_mark;    /* last fork this object was counted for (holders) */
	int tab_id;            /* connection table of conn: 0 ours, else inherited (inherit.c) */
	/* exec bookkeeping (inherit.c) */
	uint64_t exec_keep, exec_seen;
	int exec_pass, exec_memfd, exec_side;
	uint64_t exec_nonce;
	uint64_t id;           /* unique per socket object incarnation */
	struct nsk_udp *udp;   /* UDP sockets (kind NSK_CK_UDP): see udp.c */
	struct nsk_agg *agg;   /* packet aggregation of wake-ups for small writes (agg.c) */
	int pin_tcp;           /* nearsock_evacuate(fd): this socket wants TCP (live switching) */
	atomic_int closing;    /* the last fd is being closed: its number may be reused at once,
				* so no byte is sent or read on s->fd any more (set under ctllock) */
	struct nsk_rsz_state rsz; /* our sending ring's sizing state (under txlock) */
	uint64_t rsz_next_ns;     /* coarse clock: next sizing look (relaxed atomic) */
	struct nsk_vmconn *vm;  /* connection through the ivshmem region (vmdom.c), or NULL */
	int vm_reg;            /* listener: known to vmdom.c (registered in the region while a member) */
	struct nsk_sock *next_free;
};

/* nsk_norm_addr - @sa as (family, 16-byte address, host-order port); v4-mapped → AF_INET.
 * 0 or -EAFNOSUPPORT. */
int nsk_norm_addr(const struct sockaddr *sa, uint16_t *family, uint8_t addr[16], uint16_t *port);
/* nsk_listen_key - the registry key of listening socket @s (bound address and port, the
 * IPV6_V6ONLY flag; netns left 0). 0 or -errno. */
struct nsk_reg_key;
int nsk_listen_key(struct nsk_sock *s, struct nsk_reg_key *k);
/* nsk_is_loopback - 127.0.0.0/8 or ::1 (@addr as nsk_norm_addr gives it). */
int nsk_is_loopback(uint16_t family, const uint8_t addr[16]);

/* nsk_sock_closing - @fd, one of @s's descriptors, is about to be closed: if it is the
 * last one, the library stops using the number (it may be reused by the next socket at
 * once); otherwise control bytes go through another of its descriptors from now on. */
void nsk_sock_closing(struct nsk_sock *s, int fd);

/* nsk_sock_pin_tcp - nearsock_evacuate (@tcp 1) / nearsock_attach (0) for socket @s: its
 * connection's wish, followed at once where possible. 0 or -EOPNOTSUPP (not a connection). */
int nsk_sock_pin_tcp(struct nsk_sock *s, int tcp);
/* nsk_sock_vm_drop - a connection of the ivshmem region that both sides evacuated (each side
 * retired its sending direction, every byte of the channel read): stop using the channel
 * (nsk_vm_detach) and become a TCP candidate of the region again, so that an unplugged
 * region costs it nothing and an attach gives it a fresh channel. Skipped (0) if another
 * thread is sending or receiving on it. 1 if dropped. @vm_locked: the caller holds vmdom's
 * lock. */
int nsk_sock_vm_drop(struct nsk_sock *s, int vm_locked);
/* nsk_sock_vm_follow - the heartbeat thread's turn at follow_wish() for a region connection
 * whose process may sit outside socket calls (a server blocked in epoll_wait or recv): its
 * sending direction evacuates and retires when asked, so that an evacuation completes and
 * the channel can be dropped before the region goes. Skipped while a sender holds the
 * connection or the kernel socket cannot take the marker at once. */
void nsk_sock_vm_follow(struct nsk_sock *s);
/* nsk_sock_vm_forget - the region went away after @s's channel was found done (dropped in
 * all but name): forget the channel without touching its memory; 1 if @s is on TCP now. */
int nsk_sock_vm_forget(struct nsk_sock *s);
/* nsk_sock_vm_unoffer - client @s's region offer is still unclaimed and its listener's
 * member is gone: withdraw it, free its chunks (nsk_vm_detach) and make @s a TCP candidate
 * again. 1 if done; 0 if claimed meanwhile or @s is busy. @vm_locked as nsk_sock_vm_drop. */
int nsk_sock_vm_unoffer(struct nsk_sock *s, int vm_locked);
/* nsk_sock_proc_want_tcp - this process (or its whole domain) is asked to use TCP
 * (nearsock evacuate PID|--all). */
int nsk_sock_proc_want_tcp(void);

/* nsk_sock_expire_offers - drop pending offers nobody will claim (withdrawn, or too old):
 * called at every accept on a registered listener, so their segments are not kept. */
void nsk_sock_expire_offers(void);

/* Logging to stderr, rate-limited by level. */
void nsk_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* nsk_global_init - read the environment (constructor; idempotent). */
void nsk_global_init(void);
/* nsk_domain_ready - open the domain and connection table on first use. 1 if usable. */
int nsk_domain_ready(void);

/* Socket objects. */
struct nsk_sock *nsk_sock_new(int fd, int family, int kind);
/* nsk_sock_put - drop one fd reference; the last one releases the channel and slot once
 * no call is using it any more. */
void nsk_sock_put(struct nsk_sock *s);
/* nsk_sock_before_close - the application closes @s's fd: prepare the kernel socket so
 * that its close reads as the peer expects (FIN, not a reset caused by control bytes). */
void nsk_sock_before_close(struct nsk_sock *s);
/* nsk_sock_enter - the object tracking @fd, pinned for the duration of one call, or NULL
 * (untracked fd: the wrapper calls libc). Pair with nsk_sock_leave. */
struct nsk_sock *nsk_sock_enter(int fd);
void nsk_sock_leave(struct nsk_sock *s);
/* nsk_sock_internal_fd_check - @fd is being closed or replaced by the application: if it is
 * one of ours (rendezvous socket, pending memfd), forget it. Cheap when it is not. */
void nsk_sock_internal_fd_check(int fd);

/* Upgrade state machine. */
/* nsk_sock_connected - a client socket finished connecting: look the destination up; if a
 * local nearsock listener owns it the connection becomes a candidate, offered a channel
 * once it has shown it is more than one request (or at once with NEARSOCK_UPGRADE=eager). */
void nsk_sock_connected(struct nsk_sock *s);
/* nsk_sock_accepted - a server socket came out of accept() on listener slot @reg_slot,
 * from @peer. */
void nsk_sock_accepted(struct nsk_sock *s, int reg_slot, const struct sockaddr *peer);
/* nsk_sock_refresh - advance the state machine without blocking (claim, observe a claim,
 * retry an offer, expire). Called at the top of every wrapped call. */
void nsk_sock_refresh(struct nsk_sock *s);
/* nsk_sock_listen - register a listening socket in the domain. */
void nsk_sock_listen(struct nsk_sock *s);
void nsk_sock_unlisten(struct nsk_sock *s);
/* nsk_sock_unlisten_closed - the listener was closed: its entry keeps matching a moment
 * (connections accepted just before, inetd style), and is removed at exit. */
void nsk_sock_unlisten_closed(struct nsk_sock *s);
void nsk_sock_unlisten_all_closed(void);

/* Data path. Both return bytes or -errno and follow recv/send semantics exactly. */
ssize_t nsk_sock_recv(struct nsk_sock *s, const struct iovec *iov, int iovcnt, int flags);
ssize_t nsk_sock_send(struct nsk_sock *s, const struct iovec *iov, int iovcnt, int flags);
/* nsk_sock_shutdown - shutdown(2) with ring semantics. 0 or -errno. */
int nsk_sock_shutdown(struct nsk_sock *s, int how);
/* nsk_sock_outq - bytes sent through the ring and not yet taken by the peer (SIOCOUTQ);
 * -ENOTSUP before the switch (the kernel answers). */
int nsk_sock_outq(struct nsk_sock *s);
/* nsk_sock_uncork - TCP_CORK cleared: wake the peer for what was held back. */
void nsk_sock_uncork(struct nsk_sock *s);
/* nsk_sock_fionread - bytes readable now (FIONREAD), or -errno. */
int nsk_sock_fionread(struct nsk_sock *s);

/* Readiness for poll/select/epoll. */
/* nsk_sock_ready - events of @want (POLL* bits) ready in user space right now.
 * *@kernel_ev receives what the kernel fd must be waited on for (control bytes, and the
 * events only the kernel can tell); *@kernel_decides the subset whose readiness is the
 * kernel's own answer (the TCP part of the stream before the switch points). Arms the
 * wake-ups when @arm. */
int nsk_sock_ready(struct nsk_sock *s, int want, int *kernel_ev, int *kernel_decides, int arm);
/* nsk_sock_space_wake_reliable - whether a sleeper waiting for send space on @s can count on
 * the peer's wake-up reaching the kernel fd (not while unread pre-switch TCP data is ahead of
 * it); if not, the sleep must be bounded. */
int nsk_sock_space_wake_reliable(struct nsk_sock *s);
/* nsk_sock_disarm - undo the arming done by nsk_sock_ready(…, arm=1). */
void nsk_sock_disarm(struct nsk_sock *s);
/* nsk_sock_kernel_event - the kernel fd reported @revents: consume control bytes. */
void nsk_sock_kernel_event(struct nsk_sock *s, int revents);
/* nsk_sock_is_shm - whether readiness must be computed in user space (not pass-through). */
int nsk_sock_is_shm(struct nsk_sock *s);

/* Processes sharing sockets (fork, exec). */
/* nsk_sock_last_holder - no other process holds @s (see holders in layout.h). */
int nsk_sock_last_holder(struct nsk_sock *s);
/* nsk_sock_fork_prepare - a fork is about to happen: count the child as a holder of every
 * tracked socket; nsk_sock_fork_child/parent after it. */
void nsk_sock_fork_prepare(void);
void nsk_sock_fork_parent(void);
void nsk_sock_fork_child(void);
/* nsk_sock_exec_state - settle @s before an exec that keeps @s's fd open (cloexec == 0) or
 * closes it (cloexec == 1): an unclaimed upgrade is withdrawn or completed so the new image
 * sees plain TCP, a switched connection or a candidate still waiting for its upgrade. Returns
 * 1 if the new image must adopt the connection (then *@memfd, *@side and *@nonce describe it;
 * *@memfd may be -1 when no descriptor was kept: the new image then fails the connection),
 * 2 if it stays a candidate through listener slot s->reg_slot, 0 if it is plain TCP. */
int nsk_sock_exec_state(struct nsk_sock *s, int cloexec, int *memfd, int *side, uint64_t *nonce);
/* nsk_sock_exec_requeue - before an exec that passes the rendezvous socket on: offers this
 * image drained but did not claim go back to the socket for the new image. */
void nsk_sock_exec_requeue(void);
/* nsk_sock_adopt_candidate - in a new image: track @fd, still on TCP and waiting for an upgrade
 * through listener registry slot @reg_slot, as the old image did. 0 or -errno. */
int nsk_sock_adopt_candidate(int fd, int family, int kind, struct nsk_conn *c, int reg_slot);
/* nsk_sock_adopt_rv - in a new image: the rendezvous socket @fd named @name was passed on. */
void nsk_sock_adopt_rv(int fd, const char *name);
/* nsk_sock_adopt - in a new image: track @fd as the connection described (slot @c in an
 * inherited connection table). 0 or -errno. */
int nsk_sock_adopt(int fd, int family, int kind, struct nsk_conn *c, int memfd, int side,
		   uint64_t nonce);

/* nsk_inherit_adopt - constructor: take over the connections an exec handed to this image
 * (NEARSOCK_INHERIT, see inherit.c). */
void nsk_inherit_adopt(void);

/* Epoll sets as members of poll/select sets (epoll.c). */
/* nsk_epoll_is_shadowed - @fd is an epoll set with accelerated (or nested) members. */
int nsk_epoll_is_shadowed(int fd);
/* nsk_epoll_nested_ready - 1 if epoll_wait on @epfd would report an accelerated member now
 * (nothing consumed); with @arm the members are armed for a wake-up; -1 if not shadowed. */
int nsk_epoll_nested_ready(int epfd, int arm);
void nsk_epoll_nested_disarm(int epfd);
/* nsk_shared_lock - futex mutex on a word in the connection table (shared with forked
 * children): the txlock/rxlock of a socket. */
void nsk_shared_lock(uint32_t *l);
void nsk_shared_unlock(uint32_t *l);

/* nsk_epoll_forget - @fd (an epoll set) is being closed. */
void nsk_epoll_forget(int fd);


#endif
