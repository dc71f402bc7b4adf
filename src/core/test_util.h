/* SPDX-License-Identifier: MIT */
/* test_util.h — the few helpers the core unit tests share: CHECK macros that print the
 * failing expression and exit 1, a per-test runner with timing, a watchdog that turns a hang
 * into a failure, a small PRNG and child-process helpers. Test programs exit 0 (pass),
 * 1 (fail) or 77 (skip, reason printed). Header-only; nothing here is part of nsk_core. */
#ifndef NSK_TEST_UTIL_H
#define NSK_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NSK_T_SKIP 77

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
			fflush(stderr);                                                            \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

/* CHECK_EQ - compare two integer expressions, printing both values on failure. */
#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long va_ = (long long)(a), vb_ = (long long)(b);                              \
		if (va_ != vb_) {                                                                  \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n",       \
			        __FILE__, __LINE__, #a, #b, va_, vb_);                             \
			fflush(stderr);                                                            \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

/* FAILF - report a failure with a formatted message and exit 1. */
#define FAILF(...)                                                                                 \
	do {                                                                                       \
		fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                              \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		fflush(stderr);                                                                    \
		_exit(1);                                                                          \
	} while (0)

static inline uint64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* t_rng - xorshift64*: deterministic per seed, good enough for sizes and shuffles. */
static inline uint64_t t_rng(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* t_seed - the seed for this run: NSK_TEST_SEED if set, else time-based; always printed
 * so that a failure can be replayed. */
static inline uint64_t t_seed(void)
{
	const char *e = getenv("NSK_TEST_SEED");
	uint64_t s = e && *e ? strtoull(e, NULL, 0) : (t_now_ns() ^ ((uint64_t)getpid() << 32));
	if (s == 0)
		s = 1;
	printf("seed %" PRIu64 " (set NSK_TEST_SEED to replay)\n", s);
	return s;
}

/* t_sanitized - 1 when built with a sanitizer (tests may scale their volume down). */
static inline int t_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
	return 1;
#else
	return 0;
#endif
#else
	return 0;
#endif
}

/* t_tsan - 1 under ThreadSanitizer (about 20x slower on byte loops: volumes scale down). */
static inline int t_tsan(void)
{
#if defined(__SANITIZE_THREAD__)
	return 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
	return 1;
#else
	return 0;
#endif
#else
	return 0;
#endif
}

static void t_watchdog_fire(int sig)
{
	(void)sig;
	static const char msg[] = "FAIL: watchdog expired (test hung)\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/* t_watchdog - fail the process (exit 1) if it is still running after @sec seconds.
 * Forked children inherit no alarm: they call it themselves if they may block. */
static inline void t_watchdog(unsigned sec)
{
	signal(SIGALRM, t_watchdog_fire);
	alarm(sec);
}

/* RUN - run test function @fn, printing its name and duration. */
#define RUN(fn)                                                                                    \
	do {                                                                                       \
		uint64_t t0_ = t_now_ns();                                                         \
		printf("== %s\n", #fn);                                                            \
		fflush(stdout);                                                                    \
		fn();                                                                              \
		printf("   ok %s (%.3f s)\n", #fn, (double)(t_now_ns() - t0_) / 1e9);              \
		fflush(stdout);                                                                    \
	} while (0)

/* t_wait_child - reap @pid and fail unless it exited 0. */
static inline void t_wait_child(pid_t pid, const char *what)
{
	int st;
	pid_t r;
	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (r != pid)
		FAILF("waitpid(%s): %s", what, strerror(errno));
	if (WIFSIGNALED(st))
		FAILF("%s killed by signal %d", what, WTERMSIG(st));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAILF("%s exited with status %d", what, WEXITSTATUS(st));
}

/* t_count_fds - open descriptors of this process (for leak checks). */
static inline int t_count_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

#endif
