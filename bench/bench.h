/* SPDX-License-Identifier: MIT */
/*
 * bench.h — internal interface of nearsock-bench, the benchmark harness.
 * The parent (main.c) forks and execs one server and one client process per flow; each child runs
 * one mode (one file per mode) over one transport and reports one result line on a control pipe.
 */
#ifndef NSK_BENCH_H
#define NSK_BENCH_H

#include <stddef.h>
#include <stdint.h>

enum nsk_bench_mode {
	NSK_MODE_TCP_STREAM,
	NSK_MODE_TCP_RR,
	NSK_MODE_TCP_CRR,
	NSK_MODE_UDP_STREAM,
	NSK_MODE_UDP_RR,
	NSK_MODE_COUNT
};

/* Transport as the children see it: "nearsock" is NSK_TR_TCP run under LD_PRELOAD. */
enum nsk_bench_transport { NSK_TR_TCP, NSK_TR_UNIX, NSK_TR_RING, NSK_TR_NEARSOCK, NSK_TR_COUNT };

enum nsk_bench_kind { NSK_KIND_STREAM, NSK_KIND_RR, NSK_KIND_CRR };

/* Per-process context of a child (server or client role), filled from the hidden command line. */
struct nsk_bench_ctx {
	int server; /* 1 = server role, 0 = client role */
	enum nsk_bench_mode mode;
	enum nsk_bench_transport transport; /* NSK_TR_TCP, _UNIX or _RING in a child */
	size_t size;                        /* message size in bytes */
	double duration;                    /* seconds of measured traffic (client side) */
	char addr[64];                      /* IPv4 address of the server (tcp) */
	int port;                           /* server port; 0 in the server = pick one */
	char path[96];                      /* abstract AF_UNIX name (without the leading NUL) */
	int ctl_fd;                         /* write end of the control pipe to the parent */
	int shm_fd;                         /* ring segment (memfd), ring transport only */
	size_t ring_size;                   /* data bytes per ring direction */
	long spin_ns;  /* ring: busy-wait budget before sleeping on the futex */
	int ring_lazy; /* ring: batch wake-ups (shared core) */
};

/* What a child measured; sent to the parent as one "result k=v ..." line. */
struct nsk_bench_report {
	uint64_t bytes; /* payload bytes moved (client: sent; server: received) */
	uint64_t msgs;  /* messages (stream) or transactions (rr/crr) */
	double elapsed; /* seconds of the measured window */
	double lat_mean, lat_p50, lat_p99, lat_p999; /* microseconds, rr/crr client only */
	double cpu;         /* (user+sys) / elapsed, in percent of one CPU */
	double vcsw, ivcsw; /* voluntary / involuntary context switches per second */
};

/* Resource usage snapshot for the measured window. */
struct nsk_bench_usage {
	uint64_t t_ns;
	uint64_t cpu_ns;
	long nvcsw, nivcsw;
};

/* Latency samples in nanoseconds, grown on demand. */
struct nsk_bench_lat {
	uint64_t *v;
	size_t n, cap;
};

#define NSK_BENCH_END_MAGIC 0xfffffffau /* first 4 bytes of an end-of-test datagram */

/* common.c */
uint64_t nsk_bench_now_ns(void);
void nsk_bench_usage_begin(struct nsk_bench_usage *u);
void nsk_bench_usage_end(const struct nsk_bench_usage *u, struct nsk_bench_report *rep);
int nsk_bench_lat_push(struct nsk_bench_lat *l, uint64_t ns);
void nsk_bench_lat_finish(struct nsk_bench_lat *l, struct nsk_bench_report *rep);
int nsk_bench_write_all(int fd, const void *buf, size_t len);
int nsk_bench_read_exact(int fd, void *buf, size_t len);
int nsk_bench_listen(struct nsk_bench_ctx *c, int type, int *fd_out);
int nsk_bench_connect(const struct nsk_bench_ctx *c, int type, int *fd_out);
int nsk_bench_dgram_client(const struct nsk_bench_ctx *c, int *fd_out);
int nsk_bench_ready(const struct nsk_bench_ctx *c);
int nsk_bench_report(const struct nsk_bench_ctx *c, const struct nsk_bench_report *rep);
void *nsk_bench_buf(size_t size);
int nsk_bench_check_every(size_t size);
int nsk_bench_fail(const struct nsk_bench_ctx *c, const char *what, int err);

/* One file per mode: each returns 0 or -errno, and reports on ctl_fd before returning 0. */
int nsk_bench_tcp_stream(struct nsk_bench_ctx *c);
int nsk_bench_tcp_rr(struct nsk_bench_ctx *c);
int nsk_bench_tcp_crr(struct nsk_bench_ctx *c);
int nsk_bench_udp_stream(struct nsk_bench_ctx *c);
int nsk_bench_udp_rr(struct nsk_bench_ctx *c);
/* ring.c: the raw shared-memory limit, no socket API. dgram = record framing (udp modes). */
int nsk_bench_ring_stream(struct nsk_bench_ctx *c, int dgram);
int nsk_bench_ring_rr(struct nsk_bench_ctx *c, int dgram);
size_t nsk_bench_ring_segment_size(size_t ring_size);

#endif /* NSK_BENCH_H */
