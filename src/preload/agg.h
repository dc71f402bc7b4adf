/* SPDX-License-Identifier: MIT */
/* agg.h — packet aggregation (paper 002) on the wake-up path: when the consumer sleeps, a
 * producer may put up to k messages, or wait at most t, before it wakes it, so one wake-up
 * (a syscall on both sides) carries a container of k messages. The delay is bounded: the
 * producer's next call flushes a container that is due, its own sleeps flush everything it
 * owes first, and a per-process flusher thread honours the deadline when the producer goes
 * quiet. (k, t) are fixed (NEARSOCK_BATCH_K, NEARSOCK_BATCH_T_US) or — the default — chosen
 * per channel by the E_k/M/1 model of tools/dimension/adapt.h from the measured arrival rate
 * and hand-over (service) rate, to meet NEARSOCK_DELAY_TARGET_US. At low rates the model
 * gives k = 1: no delay at all. */
#ifndef NSK_AGG_H
#define NSK_AGG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/inbox.h"

struct nsk_agg;
/* Performs a wake-up the consumer asked for with request bits @bits. */
typedef void (*nsk_agg_wake_fn)(struct nsk_agg *a, uint32_t bits);

struct nsk_agg {
	pthread_mutex_t lock;
	atomic_int owed;       /* a wake-up was taken from the consumer and not yet delivered */
	uint32_t bits;
	unsigned pending;      /* messages put since the wake-up became owed */
	uint64_t first_ns, deadline_ns;
	int listed;            /* on the flusher's list */
	nsk_agg_wake_fn fn;
	void *ctx;
	struct nsk_src dst;    /* UDP: where a wake-up datagram goes */
	const uint64_t *svc_ns; /* consumer-measured hand-over latency (shared memory) */
	/* rate estimation and the current policy */
	atomic_uint_fast64_t puts;
	uint64_t win_ns, win_puts;
	double lambda;         /* messages/s (EWMA over 1 ms windows) */
	uint64_t wake_cost_ns; /* what one wake-up costs the producer (EWMA) */
	unsigned k;
	uint64_t t_ns;
	double eval_lambda;    /* inputs of the last model evaluation */
	uint64_t eval_svc;
	uint64_t containers, deferred; /* wake-ups delivered / wake-ups delayed */
	/* A single writer (a TCP ring, under its txlock) also counts the wake-up requests it
	 * took: the policy's arrival rate is then that of messages finding the consumer asleep
	 * (a consumer spinning through a burst needs no wake-up that could be aggregated). */
	int serial;
	uint64_t takes, win_takes;
	double asleep;         /* fraction of puts that took a request (EWMA over windows) */
};

/* nsk_agg_init - a channel's aggregation state; @fn delivers a wake-up; @svc_ns (may be
 * NULL) is the consumer's published hand-over latency. */
void nsk_agg_init(struct nsk_agg *a, nsk_agg_wake_fn fn, void *ctx, const uint64_t *svc_ns);
/* nsk_agg_fini - deliver what is owed and leave the flusher's list. */
void nsk_agg_fini(struct nsk_agg *a);
/* nsk_agg_on_put - a message was published at @now. Returns 1 if a wake-up is already owed
 * (this message joins the container; the wake-up is delivered now if the container is full
 * or due), 0 otherwise: the caller then takes the consumer's request as usual. */
int nsk_agg_on_put(struct nsk_agg *a, uint64_t now);
/* nsk_agg_on_put_serial - nsk_agg_on_put for a single writer (@a->serial): no atomic
 * read-modify-write, and the clock is read only when a wake-up is owed or every 32 puts
 * (for the rate window). */
int nsk_agg_on_put_serial(struct nsk_agg *a);
/* nsk_agg_took - a single writer took a sleeping consumer's wake-up request. */
void nsk_agg_took(struct nsk_agg *a);
/* nsk_agg_defer - the producer just took request @bits from a sleeping consumer: returns 1
 * if the wake-up is delayed (now owed, with deadline now + t), 0 to wake at once. */
int nsk_agg_defer(struct nsk_agg *a, uint64_t now, uint32_t bits);
/* nsk_agg_wake - deliver a wake-up now (measures its cost). */
void nsk_agg_wake(struct nsk_agg *a, uint32_t bits);
/* nsk_agg_flush - deliver an owed wake-up now. */
void nsk_agg_flush(struct nsk_agg *a);
/* nsk_agg_flush_all - deliver every wake-up this process owes: the calling thread is about
 * to wait (also noted: a thread that waits after every message is never delayed). One
 * relaxed load when nothing is owed. */
void nsk_agg_flush_all(void);
/* nsk_agg_service - consumer side: fold one measured hand-over latency into *@svc_ns. */
void nsk_agg_service(uint64_t *svc_ns, uint64_t ns);
/* nsk_agg_child_reset - child after fork: @a's lock fresh (its holder may be a thread that
 * does not exist here), nothing owed (the parent delivers what it owed). */
void nsk_agg_child_reset(struct nsk_agg *a);
/* nsk_agg_after_fork - child: no flusher thread, nothing owed by us. */
void nsk_agg_after_fork(void);
/* nsk_agg_tcp_enabled - whether small TCP writes may be aggregated: adaptive (the default) or
 * a fixed NEARSOCK_BATCH_K > 1; not with NEARSOCK_BATCH_K=1. */
int nsk_agg_tcp_enabled(void);
/* nsk_agg_policy - the configured policy: *@k_fixed (0: adaptive), *@t_fixed_ns,
 * *@target_ns. */
void nsk_agg_policy(unsigned *k_fixed, uint64_t *t_fixed_ns, uint64_t *target_ns);

#endif
