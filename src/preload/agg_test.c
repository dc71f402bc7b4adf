/* SPDX-License-Identifier: MIT */
/* agg_test.c — unit tests of packet aggregation (agg.c): a container closes at k messages;
 * a producer that goes quiet still has its container delivered by the flusher (the deadline
 * is honoured, checked with a generous bound); a thread that waits after every message is
 * never delayed; flush_all before a wait delivers everything owed; the adaptive policy keeps
 * k = 1 at low rates and batches at high rates; for a single writer (TCP) only the puts that
 * found the consumer asleep count. Each case runs in a child process because the
 * configuration is read from the environment once per process. */
#include <stdatomic.h>

#include "core/test_util.h"
#include "preload/agg.h"
#include "preload/sock.h"

struct nsk_global nsk_g; /* agg.c reads nsk_g.pid only */

static atomic_int woken;
static atomic_uint_fast64_t woken_at;

static void wake_fn(struct nsk_agg *a, uint32_t bits)
{
	(void)a;
	CHECK(bits == NSK_ARM_FUTEX);
	atomic_store(&woken_at, t_now_ns());
	atomic_fetch_add(&woken, 1);
}

/* Run @fn in a child with the given aggregation environment. */
static void in_child(void (*fn)(void), const char *k, const char *t, const char *target)
{
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		t_watchdog(30);
		if (k)
			setenv("NEARSOCK_BATCH_K", k, 1);
		if (t)
			setenv("NEARSOCK_BATCH_T_US", t, 1);
		if (target)
			setenv("NEARSOCK_DELAY_TARGET_US", target, 1);
		nsk_g.pid = getpid();
		fn();
		_exit(0);
	}
	t_wait_child(c, "case");
}

static void case_k(void)
{
	struct nsk_agg a;
	nsk_agg_init(&a, wake_fn, NULL, NULL);
	CHECK_EQ(a.k, 4);
	uint64_t now = t_now_ns();
	CHECK_EQ(nsk_agg_on_put(&a, now), 0);      /* nothing owed yet */
	CHECK_EQ(nsk_agg_defer(&a, now, NSK_ARM_FUTEX), 0); /* one put since the last wait */
	CHECK_EQ(nsk_agg_on_put(&a, now), 0);      /* a second put: a stream */
	CHECK_EQ(nsk_agg_defer(&a, now, NSK_ARM_FUTEX), 1);
	CHECK_EQ(atomic_load(&woken), 0);
	CHECK_EQ(nsk_agg_on_put(&a, now), 1);
	CHECK_EQ(nsk_agg_on_put(&a, now), 1);
	CHECK_EQ(atomic_load(&woken), 0);
	CHECK_EQ(nsk_agg_on_put(&a, now), 1);      /* the 4th message closes the container */
	CHECK_EQ(atomic_load(&woken), 1);
	CHECK_EQ(nsk_agg_on_put(&a, now), 0);      /* nothing owed any more */
	nsk_agg_fini(&a);
}

static void case_deadline(void)
{
	struct nsk_agg a;
	nsk_agg_init(&a, wake_fn, NULL, NULL);
	CHECK_EQ(a.k, 64);
	uint64_t t0 = t_now_ns();
	nsk_agg_on_put(&a, t0);
	nsk_agg_on_put(&a, t0);
	CHECK_EQ(nsk_agg_defer(&a, t0, NSK_ARM_FUTEX), 1);
	/* The producer goes quiet: the flusher delivers at the 2 ms deadline. */
	while (atomic_load(&woken) == 0 && t_now_ns() - t0 < 5000000000ull)
		usleep(100);
	CHECK_EQ(atomic_load(&woken), 1);
	uint64_t late = atomic_load(&woken_at) - t0;
	printf("   delivered %.3f ms after the container opened (timeout 2 ms)\n", (double)late / 1e6);
	CHECK(late >= 2000000);          /* not before the timeout (k was not reached) */
	CHECK(late < 1000000000ull);     /* a generous bound: no hang */
	nsk_agg_fini(&a);
}

static void case_waiter(void)
{
	struct nsk_agg a;
	nsk_agg_init(&a, wake_fn, NULL, NULL);
	/* Request/response: one put, then a wait, over and over: never delayed. */
	for (int i = 0; i < 100; i++) {
		uint64_t now = t_now_ns();
		CHECK_EQ(nsk_agg_on_put(&a, now), 0);
		CHECK_EQ(nsk_agg_defer(&a, now, NSK_ARM_FUTEX), 0);
		nsk_agg_flush_all();
	}
	/* A burst, then the producer waits: flush_all delivers at once. */
	uint64_t now = t_now_ns();
	for (int i = 0; i < 5; i++)
		nsk_agg_on_put(&a, now);
	CHECK_EQ(nsk_agg_defer(&a, now, NSK_ARM_FUTEX), 1);
	CHECK_EQ(atomic_load(&woken), 0);
	nsk_agg_flush_all();
	CHECK_EQ(atomic_load(&woken), 1);
	nsk_agg_fini(&a);
}

static uint64_t svc_word;

static void case_adaptive(void)
{
	struct nsk_agg a;
	unsigned kf;
	uint64_t tf, target;
	nsk_agg_policy(&kf, &tf, &target);
	CHECK_EQ(kf, 0);
	CHECK_EQ(target, 50000);
	svc_word = 1000; /* 1 us hand-over latency measured by the consumer */
	nsk_agg_init(&a, wake_fn, NULL, &svc_word);
	a.wake_cost_ns = 1000;
	/* 10 k messages/s: the model keeps k = 1. */
	uint64_t now = t_now_ns();
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < 10; i++)
			nsk_agg_on_put(&a, now);
		now += 1000000;
	}
	nsk_agg_on_put(&a, now);
	CHECK(a.lambda > 5e3 && a.lambda < 2e4);
	CHECK_EQ(a.k, 1);
	/* 2 M messages/s: containers (k > 1) with a timeout within the target. */
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < 2000; i++)
			nsk_agg_on_put(&a, now);
		now += 1000000;
	}
	nsk_agg_on_put(&a, now);
	printf("   2 M/s: k = %u, t = %.1f us\n", a.k, (double)a.t_ns / 1e3);
	CHECK(a.lambda > 1e6);
	CHECK(a.k > 1);
	CHECK(a.t_ns > 0 && a.t_ns <= target);
	nsk_agg_fini(&a);
}

/* A single writer (TCP): the rate the policy uses is that of puts that found the consumer
 * asleep. 2 M puts/s with every put taking a request batches; the same rate with one take
 * in 1000 (a consumer spinning through the stream) keeps k = 1. */
static void case_serial(void)
{
	struct nsk_agg a;
	nsk_agg_init(&a, wake_fn, NULL, NULL);
	a.serial = 1;
	a.wake_cost_ns = 1000;
	uint64_t now = t_now_ns();
	for (int w = 0; w < 5; w++) {
		for (int i = 0; i < 2000; i++) {
			nsk_agg_on_put(&a, now);
			if (i % 1000 == 0)
				nsk_agg_took(&a);
		}
		now += 1000000;
	}
	nsk_agg_on_put(&a, now);
	printf("   2 M/s, asleep %.4f: k = %u\n", a.asleep, a.k);
	CHECK(a.lambda > 1e6);
	CHECK(a.asleep < 0.01);
	CHECK_EQ(a.k, 1);
	for (int w = 0; w < 8; w++) {
		for (int i = 0; i < 2000; i++) {
			nsk_agg_on_put(&a, now);
			nsk_agg_took(&a);
		}
		now += 1000000;
	}
	nsk_agg_on_put(&a, now);
	printf("   2 M/s, asleep %.4f: k = %u, t = %.1f us\n", a.asleep, a.k, (double)a.t_ns / 1e3);
	CHECK(a.asleep > 0.8);
	CHECK(a.k > 1);
	/* The serial put counts and reads the clock lazily: 64 puts, no wake-up owed. */
	uint64_t p0 = atomic_load(&a.puts);
	for (int i = 0; i < 64; i++)
		CHECK_EQ(nsk_agg_on_put_serial(&a), 0);
	CHECK_EQ(atomic_load(&a.puts), p0 + 64);
	nsk_agg_fini(&a);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(60);
	printf("== case_k\n");
	in_child(case_k, "4", "1000000", NULL);
	printf("== case_deadline\n");
	in_child(case_deadline, "64", "2000", NULL);
	printf("== case_waiter\n");
	in_child(case_waiter, "8", "1000000", NULL);
	printf("== case_adaptive\n");
	in_child(case_adaptive, NULL, NULL, "50");
	printf("== case_serial\n");
	in_child(case_serial, NULL, NULL, "50");
	printf("ok\n");
	return 0;
}
