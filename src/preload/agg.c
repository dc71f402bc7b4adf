/* SPDX-License-Identifier: MIT */
/* agg.c — bounded-delay batching of wake-ups (see agg.h). */
#include "preload/agg.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapt.h"
#include "core/atomics.h"
#include "core/ring.h"
#include "platform/linux.h"
#include "preload/sock.h"

#define WINDOW_NS 1000000ull /* rate estimation window */
#define K_MAX 64             /* containers larger than this buy nothing measurable */
#define MAX_OWED 256

static pthread_once_t cfg_once = PTHREAD_ONCE_INIT;
static unsigned cfg_k;     /* 0: adaptive */
static uint64_t cfg_t_ns;
static uint64_t cfg_target_ns;

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t list_cond;
static struct nsk_agg *owed_list[MAX_OWED];
static int n_owed_list;
static atomic_int n_owed; /* aggregators with an owed wake-up (fast check) */
static int flusher_started;
static pid_t flusher_pid;
static uint64_t flusher_next = 0; /* when the flusher wakes next (UINT64_MAX: not before a signal) */

/* Messages this thread put since it last waited, and their running mean per wait (x16).
 * A thread that alternates one send and one wait (request/response) flushes every container
 * at its next wait anyway: delaying its wake-ups would buy nothing. */
static __thread unsigned tl_puts;
static __thread unsigned tl_burst16;

static uint64_t env_num(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	return *end ? def : x;
}

static void cfg_init(void)
{
	cfg_k = (unsigned)env_num("NEARSOCK_BATCH_K", 0);
	if (cfg_k > K_MAX)
		cfg_k = K_MAX;
	cfg_t_ns = env_num("NEARSOCK_BATCH_T_US", 50) * 1000;
	cfg_target_ns = env_num("NEARSOCK_DELAY_TARGET_US", 20) * 1000;
	if (cfg_target_ns == 0)
		cfg_target_ns = 1000;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&list_cond, &ca);
	pthread_condattr_destroy(&ca);
}

void nsk_agg_policy(unsigned *k_fixed, uint64_t *t_fixed_ns, uint64_t *target_ns)
{
	pthread_once(&cfg_once, cfg_init);
	*k_fixed = cfg_k;
	*t_fixed_ns = cfg_t_ns;
	*target_ns = cfg_target_ns;
}

int nsk_agg_tcp_enabled(void)
{
	pthread_once(&cfg_once, cfg_init);
	return cfg_k != 1;
}

void nsk_agg_init(struct nsk_agg *a, nsk_agg_wake_fn fn, void *ctx, const uint64_t *svc_ns)
{
	pthread_once(&cfg_once, cfg_init);
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	a->fn = fn;
	a->ctx = ctx;
	a->svc_ns = svc_ns;
	a->k = cfg_k ? cfg_k : 1;
	a->t_ns = cfg_k ? cfg_t_ns : 0;
	a->wake_cost_ns = 5000;
	a->asleep = 1.0;
}

/* ---------------------------------------------------------------- delivery ----------- */

void nsk_agg_wake(struct nsk_agg *a, uint32_t bits)
{
	uint64_t t0 = nsk_now_ns();
	a->fn(a, bits);
	uint64_t c = nsk_now_ns() - t0;
	/* Statistics and the model's input: relaxed atomics; a racy update between threads loses
	 * a sample, never tears one. */
	uint64_t w = __atomic_load_n(&a->wake_cost_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&a->wake_cost_ns, (w * 7 + c) / 8, __ATOMIC_RELAXED);
	__atomic_fetch_add(&a->containers, 1, __ATOMIC_RELAXED);
}

/* Deliver the owed wake-up (a->lock held). */
static void deliver_locked(struct nsk_agg *a)
{
	if (!atomic_load_explicit(&a->owed, memory_order_relaxed))
		return;
	atomic_store_explicit(&a->owed, 0, memory_order_relaxed);
	atomic_fetch_sub_explicit(&n_owed, 1, memory_order_relaxed);
	nsk_agg_wake(a, a->bits);
	a->pending = 0;
}

static void unlist(struct nsk_agg *a)
{
	pthread_mutex_lock(&list_lock);
	for (int i = 0; i < n_owed_list; i++)
		if (owed_list[i] == a) {
			owed_list[i] = owed_list[--n_owed_list];
			break;
		}
	a->listed = 0;
	pthread_mutex_unlock(&list_lock);
}

void nsk_agg_flush(struct nsk_agg *a)
{
	if (!atomic_load_explicit(&a->owed, memory_order_relaxed))
		return;
	pthread_mutex_lock(&a->lock);
	deliver_locked(a);
	pthread_mutex_unlock(&a->lock);
}

void nsk_agg_flush_all(void)
{
	if (tl_puts) {
		tl_burst16 = (tl_burst16 * 3 + (tl_puts > 1000 ? 1000 : tl_puts) * 16) / 4;
		tl_puts = 0;
	}
	if (atomic_load_explicit(&n_owed, memory_order_relaxed) == 0)
		return;
	/* Under the list lock (an aggregator leaves the list, in nsk_agg_fini, only under it,
	 * so none is freed under us); trylock because producers take a->lock before the list
	 * lock. One we cannot take now is delivered by its holder or by the flusher. */
	pthread_mutex_lock(&list_lock);
	for (int i = 0; i < n_owed_list; i++) {
		struct nsk_agg *a = owed_list[i];
		if (atomic_load_explicit(&a->owed, memory_order_relaxed) &&
		    pthread_mutex_trylock(&a->lock) == 0) {
			deliver_locked(a);
			pthread_mutex_unlock(&a->lock);
		}
	}
	pthread_mutex_unlock(&list_lock);
}

void nsk_agg_fini(struct nsk_agg *a)
{
	nsk_agg_flush(a);
	unlist(a); /* under the list lock: `listed` is the flusher's to change too */
	pthread_mutex_destroy(&a->lock);
}

/* ---------------------------------------------------------------- flusher ------------ */

/* The deadline keeper: sleeps until the earliest owed deadline and delivers what is due.
 * Runs with every signal blocked, so it never takes the application's signals. */
static void *flusher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&list_lock);
	for (;;) {
		uint64_t now = nsk_now_ns(), next = UINT64_MAX;
		struct nsk_agg *due[MAX_OWED];
		int nd = 0;
		for (int i = 0; i < n_owed_list; i++) {
			struct nsk_agg *a = owed_list[i];
			if (!atomic_load_explicit(&a->owed, memory_order_relaxed)) {
				a->listed = 0;
				owed_list[i--] = owed_list[--n_owed_list];
				continue;
			}
			/* written under a->lock by a deferring sender: read atomically */
			uint64_t dl = __atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED);
			if (dl <= now)
				due[nd++] = a; /* delivered below, list lock held: none is freed */
			else if (dl < next)
				next = dl;
		}
		for (int i = 0; i < nd; i++) {
			/* trylock: producers take a->lock before the list lock. */
			if (pthread_mutex_trylock(&due[i]->lock) == 0) {
				deliver_locked(due[i]);
				pthread_mutex_unlock(&due[i]->lock);
			} else if (now + 20000 < next) {
				next = now + 20000; /* busy: look again very soon */
			}
		}
		flusher_next = next;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&list_cond, &list_lock);
		} else {
			struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
			pthread_cond_timedwait(&list_cond, &list_lock, &ts);
		}
	}
	return NULL;
}

/* Put @a on the list (a->lock held); start the flusher on first use. */
static int list_add(struct nsk_agg *a)
{
	pthread_mutex_lock(&list_lock);
	if (!flusher_started || flusher_pid != nsk_g.pid) {
		pthread_t t;
		pthread_attr_t at;
		sigset_t all, old;
		sigfillset(&all);
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 64 * 1024);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int r = pthread_create(&t, &at, flusher, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&at);
		if (r != 0) {
			pthread_mutex_unlock(&list_lock);
			return -r; /* no deadline keeper: do not defer */
		}
		flusher_started = 1;
		flusher_pid = nsk_g.pid;
		flusher_next = UINT64_MAX;
	}
	if (!a->listed) {
		if (n_owed_list == MAX_OWED) {
			pthread_mutex_unlock(&list_lock);
			return -ENOSPC;
		}
		owed_list[n_owed_list++] = a;
		a->listed = 1;
	}
	/* Wake the flusher only if it would otherwise sleep past this deadline. */
	if (__atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED) < flusher_next) {
		flusher_next = __atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED);
		pthread_cond_signal(&list_cond);
	}
	pthread_mutex_unlock(&list_lock);
	return 0;
}

void nsk_agg_child_reset(struct nsk_agg *a)
{
	pthread_mutex_init(&a->lock, NULL);
	atomic_store_explicit(&a->owed, 0, memory_order_relaxed);
	a->pending = 0; /* (`listed` stays: the flusher drops entries that owe nothing) */
}

void nsk_agg_after_fork(void)
{
	pthread_mutex_init(&list_lock, NULL);
	pthread_once(&cfg_once, cfg_init);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&list_cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Owed wake-ups belong to the parent's flusher; the child starts its own on demand. */
	flusher_started = 0;
	flusher_next = UINT64_MAX;
}

/* ---------------------------------------------------------------- policy ------------- */

/* New rate window: re-estimate lambda and, if adaptive, choose (k, t). a->lock held. */
static void reevaluate(struct nsk_agg *a, uint64_t now)
{
	uint64_t puts = atomic_load_explicit(&a->puts, memory_order_relaxed);
	double dt = (double)(now - a->win_ns) * 1e-9;
	double rate = (double)(puts - a->win_puts) / dt;
	/* A long gap resets the estimate: a burst after idling starts with k = 1. */
	a->lambda = dt > 0.1 ? rate : (a->lambda * 3 + rate) / 4;
	if (a->serial) {
		double f = puts > a->win_puts ? (double)(a->takes - a->win_takes) /
						    (double)(puts - a->win_puts)
					      : 0.0;
		if (f > 1.0)
			f = 1.0;
		a->asleep = dt > 0.1 ? f : (a->asleep * 3 + f) / 4;
		a->win_takes = a->takes;
	}
	a->win_ns = now;
	a->win_puts = puts;
	if (cfg_k)
		return;
	/* The messages a container could gather are those that find the consumer asleep: the
	 * others are taken by a consumer that is running or spinning anyway. */
	double lambda = a->lambda * a->asleep;
	uint64_t svc = (a->svc_ns ? nsk_load64(a->svc_ns) : 0) +
		       __atomic_load_n(&a->wake_cost_ns, __ATOMIC_RELAXED);
	if (svc < 1000)
		svc = 1000;
	/* The choice costs a few microseconds (a bisection per k tried): only when the inputs
	 * moved by more than 20 %. */
	if (lambda < a->eval_lambda * 1.2 && lambda > a->eval_lambda * 0.8 &&
	    (double)svc < (double)a->eval_svc * 1.2 && (double)svc > (double)a->eval_svc * 0.8)
		return;
	a->eval_lambda = lambda;
	a->eval_svc = svc;
	struct nsk_adapt ad;
	int r = lambda > 0.0 ? nsk_adapt_choose(lambda, 1e9 / (double)svc,
						(double)cfg_target_ns / 1000.0, K_MAX, &ad)
			     : -EINVAL;
	if (r == -ENOENT && lambda * (double)svc < 1e9) {
		/* No k meets the target, and the consumer keeps up without containers: delaying
		 * wake-ups would only add to the delay. */
		a->k = 1;
		a->t_ns = 0;
	} else if (r == 0 || r == -ENOENT) {
		a->k = ad.k ? ad.k : 1;
		double t = ad.t_us * 1000.0;
		if (t > (double)cfg_target_ns)
			t = (double)cfg_target_ns;
		a->t_ns = a->k > 1 ? (uint64_t)t : 0;
	} else {
		a->k = 1;
		a->t_ns = 0;
	}
}

/* A put at @now, counted: a new rate window if due; the owed container closes if full or
 * due. 1 if a wake-up is owed (the put joined its container). */
static int put_counted(struct nsk_agg *a, uint64_t now)
{
	if (now - a->win_ns >= WINDOW_NS) {
		pthread_mutex_lock(&a->lock);
		if (now - a->win_ns >= WINDOW_NS)
			reevaluate(a, now);
		pthread_mutex_unlock(&a->lock);
	}
	if (!atomic_load_explicit(&a->owed, memory_order_relaxed))
		return 0;
	pthread_mutex_lock(&a->lock);
	int owed = atomic_load_explicit(&a->owed, memory_order_relaxed);
	if (owed && (++a->pending >= a->k || now >= __atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED)))
		deliver_locked(a);
	pthread_mutex_unlock(&a->lock);
	return owed;
}

int nsk_agg_on_put(struct nsk_agg *a, uint64_t now)
{
	tl_puts++;
	atomic_fetch_add_explicit(&a->puts, 1, memory_order_relaxed);
	return put_counted(a, now);
}

int nsk_agg_on_put_serial(struct nsk_agg *a)
{
	tl_puts++;
	uint64_t p = atomic_load_explicit(&a->puts, memory_order_relaxed) + 1;
	atomic_store_explicit(&a->puts, p, memory_order_relaxed);
	if (!atomic_load_explicit(&a->owed, memory_order_relaxed) && (p & 31))
		return 0;
	return put_counted(a, nsk_now_ns());
}

void nsk_agg_took(struct nsk_agg *a)
{
	a->takes++;
}

int nsk_agg_defer(struct nsk_agg *a, uint64_t now, uint32_t bits)
{
	if (a->k <= 1 || a->t_ns == 0 || (tl_puts < 2 && tl_burst16 < 2 * 16))
		return 0;
	pthread_mutex_lock(&a->lock);
	if (atomic_load_explicit(&a->owed, memory_order_relaxed)) {
		a->bits |= bits; /* another thread owes it already: deliver together */
		pthread_mutex_unlock(&a->lock);
		return 1;
	}
	a->bits = bits;
	a->pending = 1;
	a->first_ns = now;
	__atomic_store_n(&a->deadline_ns, now + a->t_ns, __ATOMIC_RELAXED);
	atomic_store_explicit(&a->owed, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&n_owed, 1, memory_order_relaxed);
	if (list_add(a) < 0) {
		deliver_locked(a); /* no deadline keeper: wake now */
		pthread_mutex_unlock(&a->lock);
		return 1;
	}
	a->deferred++;
	pthread_mutex_unlock(&a->lock);
	return 1;
}

void nsk_agg_service(uint64_t *svc_ns, uint64_t ns)
{
	uint64_t old = nsk_load64(svc_ns);
	nsk_store64(svc_ns, old ? (old * 7 + ns) / 8 : ns);
}
