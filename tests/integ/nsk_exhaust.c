/* SPDX-License-Identifier: MIT */
/* nsk_exhaust — integration helper for resource exhaustion (tests/integ/exhaust.sh).
 *
 *   nsk_exhaust client PORT fd|fsize|mem|plain|hold [HOLDFILE]   (preloaded, NEARSOCK_DIR set)
 *       connect to 127.0.0.1:PORT and do one 64 KiB echo round on TCP; then
 *         fd     use up every descriptor (RLIMIT_NOFILE lowered to just above what is open,
 *                the rest filled with dups): the channel cannot be created (EMFILE);
 *         fsize  lower RLIMIT_FSIZE to 64 KiB: sizing the segment's memfd would raise SIGXFSZ;
 *         mem    lower RLIMIT_AS to 4 MiB above the current address-space size: the segment
 *                (NEARSOCK_RING_SIZE large) cannot be mapped (ENOMEM);
 *         plain  nothing;
 *         hold   like plain, then keep the connection open until HOLDFILE exists;
 *       then 8 more rounds, byte-exact, and report: the connection's mode, this process's
 *       fallback counters (read from its own connection table), descriptors and channel
 *       mappings before and after the rounds (a fallback must leave nothing behind).
 *   nsk_exhaust fill DIR SECS   (not preloaded) insert registry entries (own pid, ports from
 *                               60000 down, never listened on) until the registry is full,
 *                               report how many, stay alive SECS seconds, exit.
 * One JSON line each; exit 0 when the echo was exact (client) or the registry filled (fill). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/domain.h"
#include "nearsock/nearsock.h"
#include "platform/linux.h"

static unsigned char out[65536], in[65536];

static int round_trip(int fd, unsigned seed)
{
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(seed * 13 + i * 5 + (i >> 8));
	size_t off = 0;
	while (off < sizeof(out)) {
		ssize_t n = send(fd, out + off, sizeof(out) - off, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	size_t got = 0;
	while (got < sizeof(in)) {
		ssize_t n = recv(fd, in + got, sizeof(in) - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return memcmp(in, out, sizeof(in)) ? -1 : 0;
}

/* Open descriptors, counted without opening one (there may be none left). */
static int count_fds(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	int n = 0;
	for (int i = 0; i < (int)rl.rlim_cur && i < 65536; i++)
		n += fcntl(i, F_GETFD) >= 0;
	return n;
}

static int chan_maps(void)
{
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, "nearsock-chan") != NULL;
	if (f)
		fclose(f);
	return n;
}

static void vm_size_kb(long *kb)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld kB", kb) == 1)
			break;
	if (f)
		fclose(f);
}

static int client(int port, const char *what, const char *hold)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || round_trip(fd, 1) < 0) {
		printf("{\"ok\": 0, \"error\": \"first round: %s\"}\n", strerror(errno));
		return 1;
	}
	int spare[4096], nspare = 0;
	if (!strcmp(what, "fd")) {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = (rlim_t)(fd + 16);
		setrlimit(RLIMIT_NOFILE, &rl);
		int d;
		while (nspare < 4096 && (d = dup(0)) >= 0)
			spare[nspare++] = d;
	} else if (!strcmp(what, "fsize")) {
		/* like `ulimit -f 64`: sizing the 1 MiB memfd would raise SIGXFSZ */
		struct rlimit rl = {64 * 1024, RLIM_INFINITY};
		setrlimit(RLIMIT_FSIZE, &rl);
	} else if (!strcmp(what, "mem")) {
		long kb = 0;
		vm_size_kb(&kb);
		struct rlimit rl = {(rlim_t)(kb + 4096) * 1024, RLIM_INFINITY};
		if (setrlimit(RLIMIT_AS, &rl) < 0) {
			printf("{\"ok\": 0, \"error\": \"setrlimit: %s\"}\n", strerror(errno));
			return 1;
		}
	}
	int fds_before = count_fds(), maps_before = chan_maps();
	int ok = 1;
	for (unsigned i = 0; i < 8 && ok; i++)
		ok = round_trip(fd, i + 2) == 0;
	int fds_after = count_fds(), maps_after = chan_maps();
	if (!strcmp(what, "mem")) {
		struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
		setrlimit(RLIMIT_AS, &rl);
	}
	for (int i = 0; i < nspare; i++)
		close(spare[i]);
	struct nearsock_conn_stats cs = {0};
	int (*fs)(int, struct nearsock_conn_stats *) =
	    (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	if (fs)
		fs(fd, &cs);
	/* this process's counters, from its own connection table */
	uint64_t k[NSK_PC_NR] = {0};
	char path[PATH_MAX];
	const char *dir = getenv("NEARSOCK_DIR");
	struct nsk_proctab t;
	if (dir &&
	    snprintf(path, sizeof(path), "%s/proc-%d", dir, (int)getpid()) < (int)sizeof(path) &&
	    nsk_proctab_map(&t, path) == 0) {
		for (int i = 0; i < NSK_PC_NR; i++)
			k[i] = nsk_load64(&t.hdr->counters[i]);
		nsk_proctab_unmap(&t);
	}
	printf("{\"ok\": %d, \"mode\": %u, \"tx_shm\": %llu, \"fallbacks\": %llu, \"fb_fd\": %llu, "
	       "\"fb_mem\": %llu, \"fb_budget\": %llu, \"spare_fds\": %d, \"fds_before\": %d, "
	       "\"fds_after\": %d, \"maps_before\": %d, \"maps_after\": %d}\n",
	       ok, cs.mode, (unsigned long long)cs.tx_shm_bytes,
	       (unsigned long long)k[NSK_PC_FALLBACKS], (unsigned long long)k[NSK_PC_FB_FD],
	       (unsigned long long)k[NSK_PC_FB_MEM], (unsigned long long)k[NSK_PC_FB_BUDGET],
	       nspare, fds_before, fds_after, maps_before, maps_after);
	struct stat st;
	for (int i = 0; hold && i < 6000 && stat(hold, &st) < 0; i++)
		usleep(10000);
	close(fd);
	return ok ? 0 : 1;
}

static int fill(const char *dir, int secs)
{
	struct nsk_domain d;
	int r = nsk_domain_open(&d, dir, 1);
	if (r < 0) {
		fprintf(stderr, "nsk_exhaust: domain %s: %s\n", dir, strerror(-r));
		return 2;
	}
	uint64_t st = nsk_proc_start_time(getpid());
	int n = 0;
	for (int port = 60000; port > 0; port--) {
		struct nsk_reg_key k = {
		    .family = AF_INET, .port = (uint16_t)port, .netns = nsk_netns_id()};
		k.addr[0] = 127;
		k.addr[3] = 1;
		if (nsk_registry_insert(&d.reg, &k, getpid(), st, "rv-0-none") < 0)
			break;
		n++;
	}
	printf("{\"filled\": %d}\n", n);
	fflush(stdout);
	sleep((unsigned)secs);
	return n > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "client"))
		return client(atoi(argv[2]), argv[3], argc >= 5 ? argv[4] : NULL);
	if (argc == 4 && !strcmp(argv[1], "fill"))
		return fill(argv[2], atoi(argv[3]));
	fprintf(
	    stderr,
	    "usage: nsk_exhaust client PORT fd|fsize|mem|plain|hold [HOLDFILE] | fill DIR SECS\n");
	return 2;
}
