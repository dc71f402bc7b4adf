/* SPDX-License-Identifier: MIT */
/* linux.c — memfd, futex, /proc and namespace helpers (see linux.h). */
#include "platform/linux.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <linux/futex.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int nsk_fsize_ok(uint64_t size)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && size > rl.rlim_cur)
		return -EFBIG;
	return 0;
}

int nsk_memfd_create(const char *name, uint64_t size)
{
	int r = nsk_fsize_ok(size);
	if (r < 0)
		return r;
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int nsk_memfd_seal(int fd)
{
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -errno;
	return 0;
}

int nsk_memfd_check_sealed(int fd, uint64_t size)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return -EPERM;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < size)
		return -EINVAL;
	return 0;
}

int nsk_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	long r = syscall(SYS_futex, addr, FUTEX_WAIT, val, tsp, NULL, 0);
	if (r == 0)
		return 0;
	if (errno == EAGAIN)
		return 0;
	return -errno;
}

void nsk_futex_wake(uint32_t *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

uint64_t nsk_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* comm may contain spaces and parentheses: fields restart after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	/* fields are single-space separated after comm: walk to field 22 (no strtok: we run
	 * inside other programs, whose strtok state we must not disturb) */
	unsigned long long start = 0;
	int field = 2;
	while (*p && field < 22) {
		while (*p == ' ')
			p++;
		field++;
		if (field == 22) {
			start = strtoull(p, NULL, 10);
			break;
		}
		while (*p && *p != ' ')
			p++;
	}
	return start;
}

int nsk_proc_alive(pid_t pid, uint64_t start)
{
	if (pid <= 0)
		return 0;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return 0;
	uint64_t s = nsk_proc_start_time(pid);
	return s != 0 && s == start;
}

uint64_t nsk_netns_id(void)
{
	struct stat st;
	if (stat("/proc/self/ns/net", &st) < 0)
		return 0;
	return (uint64_t)st.st_ino;
}

uint64_t nsk_cpu_mask(void)
{
	cpu_set_t set;
	uint64_t m = 0;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 0;
	for (int i = 0; i < 64; i++)
		if (CPU_ISSET(i, &set))
			m |= 1ull << i;
	return m;
}

int nsk_cpus_online(void)
{
	static int cached;
	if (!cached) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cached = n > 0 ? (int)n : 1;
	}
	return cached;
}

uint64_t nsk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t nsk_random64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	v = nsk_now_ns() ^ ((uint64_t)getpid() << 32);
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return v;
}

/* The preload library interposes socket calls: raw system calls keep this helper out of its
 * own wrappers. */
/* diag_lookup - the kernel's record of the TCP socket whose own end is @raddr:@rport and whose
 * remote end is @laddr:@lport: 1 with *@uid, *@inode set (inode 0: orphan), 0 if none exists,
 * -errno if the kernel cannot tell. */
static int diag_lookup(int family, const uint8_t laddr[16], uint16_t lport,
		       const uint8_t raddr[16], uint16_t rport, uint32_t *uid, uint64_t *inode)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nh.nlmsg_flags = NLM_F_REQUEST; /* exact lookup of one socket, not a dump */
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	/* the peer's socket: its source is our destination */
	req.r.id.idiag_sport = htons(rport);
	req.r.id.idiag_dport = htons(lport);
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (family == AF_INET) {
		req.r.sdiag_family = AF_INET;
		memcpy(req.r.id.idiag_src, raddr, 4);
		memcpy(req.r.id.idiag_dst, laddr, 4);
	} else {
		req.r.sdiag_family = AF_INET6;
		memcpy(req.r.id.idiag_src, raddr, 16);
		memcpy(req.r.id.idiag_dst, laddr, 16);
	}
	int fd = (int)syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	long r = syscall(SYS_sendto, fd, &req, sizeof(req), 0, &nl, sizeof(nl));
	union {
		struct nlmsghdr nh;
		char buf[1024];
	} u;
	if (r >= 0)
		r = syscall(SYS_recvfrom, fd, u.buf, sizeof(u.buf), 0, NULL, NULL);
	int e = errno;
	syscall(SYS_close, fd);
	if (r < 0)
		return -e;
	if (r < (long)sizeof(struct nlmsghdr) || !NLMSG_OK(&u.nh, (unsigned)r))
		return -EPROTO;
	if (u.nh.nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *err = NLMSG_DATA(&u.nh);
		if (u.nh.nlmsg_len < NLMSG_LENGTH(sizeof(*err)))
			return -EPROTO;
		return err->error == -ENOENT ? 0 : (err->error ? err->error : -EPROTO);
	}
	if (u.nh.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    u.nh.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
		return -EPROTO;
	const struct inet_diag_msg *m = NLMSG_DATA(&u.nh);
	*uid = m->idiag_uid;
	*inode = m->idiag_inode;
	return 1;
}

/* Exact lookup, trying the v4-mapped form of an IPv4 pair as well (dual-stack sockets). */
static int diag_lookup_any(int family, const uint8_t laddr[16], uint16_t lport,
			   const uint8_t raddr[16], uint16_t rport, uint32_t *uid, uint64_t *inode)
{
	int r = diag_lookup(family, laddr, lport, raddr, rport, uid, inode);
	if (r != 0 || family != AF_INET)
		return r;
	uint8_t l6[16] = {[10] = 0xff, [11] = 0xff}, r6[16] = {[10] = 0xff, [11] = 0xff};
	memcpy(l6 + 12, laddr, 4);
	memcpy(r6 + 12, raddr, 4);
	return diag_lookup(AF_INET6, l6, lport, r6, rport, uid, inode);
}

int nsk_tcp_sock_owner(int family, const uint8_t laddr[16], uint16_t lport,
		       const uint8_t raddr[16], uint16_t rport, uint32_t *uid, uint64_t *inode)
{
	int r = diag_lookup_any(family, laddr, lport, raddr, rport, uid, inode);
	return r == 0 ? -ENOENT : r < 0 ? r : 0;
}

int nsk_proc_has_socket(pid_t pid, uint64_t inode)
{
	char dir[64], path[384], want[64], link[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)inode);
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			found = strcmp(link, want) == 0;
		}
	}
	closedir(d);
	return found;
}

int nsk_tcp_peer_closed(int family, const uint8_t laddr[16], uint16_t lport,
			const uint8_t raddr[16], uint16_t rport)
{
	uint32_t uid;
	uint64_t inode;
	int r = diag_lookup_any(family, laddr, lport, raddr, rport, &uid, &inode);
	if (r < 0)
		return r;
	if (r == 0) {
		/* Not found: gone, or sock_diag cannot see TCP sockets at all (a kernel without
		 * inet_diag/tcp_diag answers ENOENT to everything; found in a VM guest). Our own
		 * socket must be visible for "gone" to mean anything. */
		r = diag_lookup_any(family, raddr, rport, laddr, lport, &uid, &inode);
		return r == 1 ? 1 : r < 0 ? r : -ENOENT;
	}
	/* An orphan (closed by its last holder, or its process killed): no inode. */
	return inode == 0;
}
