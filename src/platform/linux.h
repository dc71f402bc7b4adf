/* SPDX-License-Identifier: MIT */
/* linux.h — the Linux-only services nearsock needs: memfd, futex, process identity,
 * network-namespace identity, clocks. The one place for Linux specifics. */
#ifndef NSK_PLATFORM_LINUX_H
#define NSK_PLATFORM_LINUX_H

#include <stdint.h>
#include <sys/types.h>

/* nsk_memfd_sealed - a sealable anonymous file of @size bytes. Returns fd or -errno. */
int nsk_memfd_create(const char *name, uint64_t size);
/* nsk_fsize_ok - 0 if a file may be made @size bytes long under RLIMIT_FSIZE, else -EFBIG.
 * The kernel applies that limit to memfds and tmpfs files too, with SIGXFSZ (which kills a
 * program that does not expect it): check before sizing any file. */
int nsk_fsize_ok(uint64_t size);
/* nsk_memfd_seal - forbid shrinking/growing @fd (the peer must not SIGBUS us). 0 or -errno. */
int nsk_memfd_seal(int fd);
/* nsk_memfd_check_sealed - 0 if @fd cannot shrink and is at least @size bytes, else -EPERM/-EINVAL. */
int nsk_memfd_check_sealed(int fd, uint64_t size);

/* Futex on a 32-bit word in MAP_SHARED memory (never FUTEX_PRIVATE). */
/* nsk_futex_wait - sleep while *@addr == @val for at most @timeout_ns (<0: forever).
 * Returns 0 (woken or value changed), -ETIMEDOUT or -EINTR (a signal whose handler did not ask
 * for SA_RESTART). */
int nsk_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns);
void nsk_futex_wake(uint32_t *addr, int n);

/* nsk_proc_start_time - start time of @pid in clock ticks since boot (field 22 of
 * /proc/PID/stat), or 0 if the process does not exist. */
uint64_t nsk_proc_start_time(pid_t pid);
/* nsk_proc_alive - whether (@pid, @start) names a live process. */
int nsk_proc_alive(pid_t pid, uint64_t start);
/* nsk_tcp_peer_closed - whether the local socket at the other end of our TCP connection
 * (@family AF_INET/AF_INET6; our end @laddr:@lport, its end @raddr:@rport, host order) has
 * been closed by every process that held it: 1 if the kernel still has it only as an orphan
 * (no owning file: killed or closed, its FIN possibly stuck behind data our full receive
 * window does not take) or no longer has it, 0 if a process still holds it, -errno if the
 * kernel cannot tell (no sock_diag). One netlink round trip (inet_diag exact lookup); only
 * meaningful for a peer in our own network namespace. */
int nsk_tcp_peer_closed(int family, const uint8_t laddr[16], uint16_t lport,
			const uint8_t raddr[16], uint16_t rport);
/* nsk_tcp_sock_owner - owner uid and socket inode of the TCP socket whose own end is
 * @raddr:@rport and whose remote end is @laddr:@lport (e.g. the peer's end of our connection),
 * from the kernel (sock_diag; works for other users' sockets, unprivileged). 0, -ENOENT if
 * no such socket exists, or -errno. The inode is 0 for a socket no process holds (orphan,
 * or not yet accepted). */
int nsk_tcp_sock_owner(int family, const uint8_t laddr[16], uint16_t lport,
		       const uint8_t raddr[16], uint16_t rport, uint32_t *uid, uint64_t *inode);
/* nsk_proc_has_socket - whether process @pid holds socket inode @inode (/proc/PID/fd):
 * 1 yes, 0 no (or no such process), -EACCES when we may not look (another user's process). */
int nsk_proc_has_socket(pid_t pid, uint64_t inode);
/* nsk_netns_id - inode of this process's network namespace (0 if unknown). */
uint64_t nsk_netns_id(void);
/* nsk_cpu_mask - CPUs 0..63 this thread may run on, as a bit mask (0 if unknown). */
uint64_t nsk_cpu_mask(void);
/* nsk_cpus_online - CPUs online in the system. */
int nsk_cpus_online(void);
/* nsk_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t nsk_now_ns(void);
/* nsk_random64 - a random 64-bit value (getrandom, falling back to clock mixing). */
uint64_t nsk_random64(void);

#endif
