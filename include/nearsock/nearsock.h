/* SPDX-License-Identifier: MIT */
/* nearsock.h — the public interface of libnearsock.so beyond the socket API it interposes:
 * per-connection statistics, so that a program (or a test) can tell which path its bytes
 * took. Programs should look the symbol up with dlsym(RTLD_DEFAULT, "nearsock_fd_stats"):
 * it exists only when the library is preloaded. */
#ifndef NEARSOCK_H
#define NEARSOCK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nearsock_mode {
	NEARSOCK_MODE_TCP = 0,     /* plain TCP so far; may still move to shared memory */
	NEARSOCK_MODE_OFFERED = 1, /* shared memory offered, not yet claimed */
	NEARSOCK_MODE_SHM = 2,     /* the connection moved to shared-memory rings */
	NEARSOCK_MODE_PLAIN = 3,   /* TCP for good (no co-resident nearsock peer) */
	NEARSOCK_MODE_BROKEN = 4,  /* the peer broke the protocol; the connection was reset */
};

struct nearsock_conn_stats {
	uint32_t mode;     /* enum nearsock_mode */
	uint32_t switches; /* live switches (ring <-> TCP) made by our sending direction */
	uint64_t tx_shm_bytes, rx_shm_bytes; /* application bytes through the rings */
	uint64_t tx_tcp_bytes, rx_tcp_bytes; /* application bytes through TCP before the switch */
	uint64_t tx_shm_msgs, rx_shm_msgs;   /* calls that moved ring bytes */
	uint64_t wakeups_sent;               /* control bytes sent to wake the peer */
};
/* (The layout is fixed: programs built against an older header keep working.) */

/* nearsock_fd_path - where the two directions of TCP socket @fd travel now: a mask of
 * NEARSOCK_TX_RING and NEARSOCK_RX_RING (0: both on TCP), or -1 with errno ENOTSOCK. */
#define NEARSOCK_TX_RING 1
#define NEARSOCK_RX_RING 2
int nearsock_fd_path(int fd);

/* nearsock_fd_stats - statistics of TCP socket @fd. Returns 0, or -1 with errno ENOTSOCK
 * when @fd is not a socket nearsock tracks. */
int nearsock_fd_stats(int fd, struct nearsock_conn_stats *st);

/* nearsock_evacuate - put the connection of TCP socket @fd on TCP (live switch: pending
 * ring data is delivered first, nothing is lost or reordered) and keep it there;
 * nearsock_attach - let it use shared memory again. Both return 0 once asked: our sending
 * direction switches at once if no other thread is sending (else at its next call), the
 * peer's at its next socket call. -1 with errno ENOTSOCK for an fd nearsock does not track,
 * EOPNOTSUPP for a listening or UDP socket. */
int nearsock_evacuate(int fd);
int nearsock_attach(int fd);

/* Statistics of a UDP socket (datagram counts). */
struct nearsock_udp_stats {
	uint32_t inbox;              /* 1 if the socket has a registered shared-memory inbox */
	uint32_t reserved;
	uint64_t tx_shm, rx_shm;     /* datagrams through shared-memory inboxes */
	uint64_t tx_shm_bytes, rx_shm_bytes;
	uint64_t tx_kernel, rx_kernel; /* datagrams through the kernel (remote, fallback) */
	uint64_t tx_drops;           /* datagrams this socket sent that a full inbox dropped */
	uint64_t inbox_drops;        /* datagrams other senders could not queue in our full inbox */
	uint64_t inbox_enqueued;     /* datagrams queued in our inbox (all senders) */
	uint64_t wakeups_sent;       /* wake-up datagrams this socket's sends caused */
	uint64_t wakeups_filtered;   /* wake-up datagrams received and kept from the application */
	uint64_t wakeups_deferred;   /* wake-ups delayed by packet aggregation */
	uint64_t inbox_corrupt;      /* malformed inbox contents discarded */
	/* Packet aggregation towards the last destination with an inbox (0 if none). */
	uint32_t agg_k;              /* container size in use */
	uint32_t agg_adaptive;       /* 1: chosen by the model, 0: NEARSOCK_BATCH_K */
	uint64_t agg_t_ns;           /* container timeout in use */
	uint64_t agg_rate;           /* measured datagrams/s */
	uint64_t agg_svc_ns;         /* hand-over time: receiver-measured wake latency + wake cost */
	uint64_t agg_containers;     /* wake-ups delivered (each closes a container) */
};

/* nearsock_udp_stats - statistics of UDP socket @fd. Returns 0, or -1 with errno ENOTSOCK
 * when @fd is not a UDP socket nearsock tracks. */
int nearsock_udp_stats(int fd, struct nearsock_udp_stats *st);

#ifdef __cplusplus
}
#endif

#endif
