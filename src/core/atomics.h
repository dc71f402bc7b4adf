/* SPDX-License-Identifier: MIT */
/* atomics.h — the few C11 atomic helpers nearsock uses on shared memory.
 * Every non-relaxed use names its partner operation in a comment at the call site. */
#ifndef NSK_ATOMICS_H
#define NSK_ATOMICS_H

#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

/* Shared-memory words are plain fixed-width integers in the layout (other builds map them);
 * these helpers view them as atomics. */
#define NSK_A32(p) ((_Atomic uint32_t *)(p))
#define NSK_A64(p) ((_Atomic uint64_t *)(p))

static inline uint32_t nsk_load32_acquire(const uint32_t *p)
{
	return atomic_load_explicit(NSK_A32(p), memory_order_acquire);
}
static inline uint64_t nsk_load64_acquire(const uint64_t *p)
{
	return atomic_load_explicit(NSK_A64(p), memory_order_acquire);
}
static inline uint32_t nsk_load32(const uint32_t *p)
{
	return atomic_load_explicit(NSK_A32(p), memory_order_relaxed);
}
static inline uint64_t nsk_load64(const uint64_t *p)
{
	return atomic_load_explicit(NSK_A64(p), memory_order_relaxed);
}
static inline void nsk_store32_release(uint32_t *p, uint32_t v)
{
	atomic_store_explicit(NSK_A32(p), v, memory_order_release);
}
static inline void nsk_store64_release(uint64_t *p, uint64_t v)
{
	atomic_store_explicit(NSK_A64(p), v, memory_order_release);
}
static inline void nsk_store32(uint32_t *p, uint32_t v)
{
	atomic_store_explicit(NSK_A32(p), v, memory_order_relaxed);
}
static inline void nsk_store64(uint64_t *p, uint64_t v)
{
	atomic_store_explicit(NSK_A64(p), v, memory_order_relaxed);
}
/* Relaxed counter bump for statistics (readers tolerate tearing across fields). */
static inline void nsk_add64(uint64_t *p, uint64_t v)
{
	atomic_fetch_add_explicit(NSK_A64(p), v, memory_order_relaxed);
}
static inline void nsk_fence(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}
static inline void nsk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
