/* SPDX-License-Identifier: MIT */
/* ivshmem_probe — the VM harness's check of the plumbing an ivshmem domain backend uses: find
 * the ivshmem-plain PCI device (vendor 0x1af4, device 0x1110) under /sys/bus/pci/devices,
 * enable it, map BAR2 through its resource2 file — or, on the host, map the region's backing
 * file — and move a pattern, a counter and an acknowledgement between a writer VM, a reader
 * VM and the host. Prints one "key=value" line per command; exit 0 ok, 1 check failed,
 * 2 usage or system error.
 *
 *   ivshmem_probe find                      device path and BAR2 size (exit 1: no device)
 *   ivshmem_probe stamp --file F --key K    host, before boot: its own pattern at HOST_OFF
 *   ivshmem_probe write --key K             guest A: pattern, counter to ROUNDS, magic; then
 *                                           waits for the reader's ack
 *   ivshmem_probe read --key K              guest B: waits for magic + counter, checks the
 *                                           writer's and the host's patterns, acks
 *   ivshmem_probe hostcheck --key K         guest: only the host's pattern (any time)
 *   ivshmem_probe hold --key K --timeout S  guest: keep BAR2 mapped and read it every ms for S
 *                                           seconds (across a hot-unplug); reports a fault
 *                                           (SIGBUS/SIGSEGV) or what the reads returned
 *   ivshmem_probe check --file F --key K    host, after the guests: everything above is there
 * --path P maps P instead of the device's resource2 (e.g. resource2_wc); --timeout S (30). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The probe's layout in the region (other programs map it: explicit offsets). */
#define PROBE_MAGIC 0x45424f52504b534eull /* "NSKPROBE" little-endian */
#define OFF_MAGIC 0                       /* u64, stored last by the writer (release) */
#define OFF_COUNTER 8                     /* u64, 1..ROUNDS by the writer */
#define OFF_ACK 16                        /* u64, the counter the reader saw, stored last */
#define OFF_ACK_KEY 24                    /* u64, the key the reader saw */
#define GUEST_OFF 4096                    /* the writer's pattern */
#define HOST_OFF (2u << 20)               /* the host's pattern, written before boot */
#define PATTERN_LEN (1u << 20)
#define ROUNDS 1000u
#define MIN_SIZE (4u << 20)
#define PROBE_SIZE (16 << 20) /* the probe's device (scripts/vmtest.sh) */

static volatile sig_atomic_t hold_reads; /* reads done when a fault came */

static void on_fault(int sig)
{
	char msg[96];
	int n =
	    snprintf(msg, sizeof(msg), "hold: signal %d after %ld reads\n", sig, (long)hold_reads);
	if (write(1, msg, (size_t)n) < 0)
		_exit(4);
	_exit(3);
}

static uint8_t pattern_byte(uint64_t key, uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull ^ key;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x >> ((i & 7) * 8));
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t load_acquire(const uint8_t *base, size_t off)
{
	return __atomic_load_n((const uint64_t *)(const void *)(base + off), __ATOMIC_ACQUIRE);
}

static void store_release(uint8_t *base, size_t off, uint64_t v)
{
	__atomic_store_n((uint64_t *)(void *)(base + off), v, __ATOMIC_RELEASE);
}

/* read_hex - the number in sysfs file @dir/@name, or -1. */
static long read_hex(const char *dir, const char *name)
{
	char p[512], buf[32];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "r");
	if (!f)
		return -1;
	long v = fgets(buf, sizeof(buf), f) ? strtol(buf, NULL, 16) : -1;
	fclose(f);
	return v;
}

/* find_device - the sysfs directory of the first ivshmem device of the probe's size (16 MiB;
 * the guests also have a 32 MiB device holding the nearsock region, which the probe leaves
 * alone, except `scribble`: @region picks that one) into @out; 0 or -ENODEV. */
static int find_device(char *out, size_t len, int region)
{
	const char *root = "/sys/bus/pci/devices";
	DIR *d = opendir(root);
	if (!d)
		return -ENODEV;
	struct dirent *e;
	int rc = -ENODEV;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(out, len, "%s/%s", root, e->d_name);
		char r2[600];
		struct stat st;
		snprintf(r2, sizeof(r2), "%s/resource2", out);
		if (read_hex(out, "vendor") == 0x1af4 && read_hex(out, "device") == 0x1110 &&
		    stat(r2, &st) == 0 && (st.st_size == PROBE_SIZE) != region) {
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}

/* map_region - map @path (a resource2 file or the host's backing file) read-write; sets @size.
 * In a guest, @dev (when set) is enabled first: BAR access needs the memory decode bit. */
static uint8_t *map_region(const char *dev, const char *path, size_t *size)
{
	if (dev) {
		char p[512];
		snprintf(p, sizeof(p), "%s/enable", dev);
		int ef = open(p, O_WRONLY);
		if (ef < 0 || write(ef, "1", 1) != 1) {
			fprintf(stderr, "ivshmem_probe: enable %s: %s\n", p, strerror(errno));
			return NULL;
		}
		close(ef);
	}
	int fd = open(path, O_RDWR | O_SYNC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "ivshmem_probe: open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	*size = (size_t)st.st_size;
	if (*size < MIN_SIZE) {
		fprintf(stderr, "ivshmem_probe: %s: %zu bytes, need %u\n", path, *size, MIN_SIZE);
		return NULL;
	}
	void *m = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		fprintf(stderr, "ivshmem_probe: mmap %s: %s\n", path, strerror(errno));
		return NULL;
	}
	return m;
}

static void fill(uint8_t *b, uint64_t key)
{
	for (uint64_t i = 0; i < PATTERN_LEN; i++)
		b[i] = pattern_byte(key, i);
}

/* verify - offset of the first wrong byte of pattern @key at @b, or -1. */
static long verify(const uint8_t *b, uint64_t key)
{
	for (uint64_t i = 0; i < PATTERN_LEN; i++)
		if (b[i] != pattern_byte(key, i))
			return (long)i;
	return -1;
}

/* wait_u64 - until the u64 at @off is >= @want (or == when @exact); 0, or -1 on timeout. */
static int wait_u64(const uint8_t *m, size_t off, uint64_t want, int exact, double timeout)
{
	double end = now_s() + timeout;
	for (;;) {
		uint64_t v = load_acquire(m, off);
		if (exact ? v == want : v >= want)
			return 0;
		if (now_s() > end)
			return -1;
		usleep(1000);
	}
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "", *file = NULL, *path = NULL;
	uint64_t key = 0;
	double timeout = 30;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--file"))
			file = argv[i + 1];
		else if (!strcmp(argv[i], "--path"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--key"))
			key = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--timeout"))
			timeout = atof(argv[i + 1]);
		else
			cmd = "";
	}
	int host = !strcmp(cmd, "stamp") || !strcmp(cmd, "check");
	int guest = !strcmp(cmd, "find") || !strcmp(cmd, "write") || !strcmp(cmd, "read") ||
	            !strcmp(cmd, "hostcheck") || !strcmp(cmd, "hold") || !strcmp(cmd, "scribble");
	if ((!host && !guest) || (host && !file) || (strcmp(cmd, "find") && !key)) {
		fprintf(stderr,
		        "usage: ivshmem_probe find | write|read|hostcheck|hold|scribble --key K "
		        "[--path P] [--timeout S] | stamp|check --file F --key K\n");
		return 2;
	}

	char dev[300] = "", res[400];
	if (guest) {
		if (find_device(dev, sizeof(dev), !strcmp(cmd, "scribble")) < 0) {
			printf("device=none\n");
			return 1;
		}
		snprintf(res, sizeof(res), "%s/resource2", dev);
		if (!path)
			path = res;
	} else {
		path = file;
	}
	size_t size = 0;
	uint8_t *m = map_region(guest ? dev : NULL, path, &size);
	if (!m)
		return 2;
	if (!strcmp(cmd, "scribble")) {
		/* A hostile VM: random 64-byte stores over the nearsock region's channels and rings
		 * for --timeout seconds (past its first 64 KiB: header, members, registry), then
		 * over the header itself. Seeded from the key: the run can be repeated. */
		uint64_t x = key | 1, n = 0;
		double end = now_s() + timeout;
		while (now_s() < end) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t o = (size_t)(65536 + x % (size - 65536 - 64)) & ~(size_t)7;
			for (int i = 0; i < 64; i += 8) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				memcpy(m + o + i, &x, 8);
			}
			n++;
			struct timespec ts = {0, 500000};
			nanosleep(&ts, NULL);
		}
		for (size_t i = 0; i < 512; i += 8) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(m + i, &x, 8);
		}
		printf("scribbled %llu times 64 bytes over %s, then its first 512 bytes\n",
		       (unsigned long long)n, path);
		return 0;
	}
	if (!strcmp(cmd, "find")) {
		/* resource2_wc exists for a prefetchable BAR: a write-combining mapping */
		char wc[420];
		snprintf(wc, sizeof(wc), "%s/resource2_wc", dev);
		printf("device=%s path=%s size=%zu resource2_wc=%s\n", dev, path, size,
		       access(wc, F_OK) == 0 ? "yes" : "no");
		return 0;
	}

	if (!strcmp(cmd, "stamp")) {
		memset(m, 0, GUEST_OFF + PATTERN_LEN);
		fill(m + HOST_OFF, key ^ 0x4854); /* the host's pattern has its own key */
		printf("stamped=%s size=%zu\n", file, size);
		return 0;
	}

	if (!strcmp(cmd, "hostcheck")) {
		long hbad = verify(m + HOST_OFF, key ^ 0x4854);
		printf("device=%s host_pattern=%s\n", dev, hbad < 0 ? "ok" : "bad");
		return hbad < 0 ? 0 : 1;
	}

	if (!strcmp(cmd, "hold")) {
		/* What a mapping sees when its device is unplugged: the first word of the host's
		 * pattern, read every millisecond; count the reads that differ from the start. */
		signal(SIGBUS, on_fault);
		signal(SIGSEGV, on_fault);
		const volatile uint64_t *w = (const volatile uint64_t *)(void *)(m + HOST_OFF);
		uint64_t first = *w, last = first;
		long changed = 0;
		double end = now_s() + timeout, t_change = 0;
		while (now_s() < end) {
			last = *w;
			if (last != first && !changed++)
				t_change = timeout - (end - now_s());
			hold_reads = hold_reads + 1;
			usleep(1000);
		}
		printf("hold: %ld reads over %.0f s, no fault; %ld differed from the first "
		       "(from %.1f s on), first %016llx last %016llx\n",
		       (long)hold_reads, timeout, changed, t_change, (unsigned long long)first,
		       (unsigned long long)last);
		return 0;
	}

	if (!strcmp(cmd, "write")) {
		double t0 = now_s();
		fill(m + GUEST_OFF, key);
		double t1 = now_s();
		for (uint64_t c = 1; c <= ROUNDS; c++)
			store_release(m, OFF_COUNTER, c); /* pairs with the reader's wait_u64 */
		store_release(m, OFF_MAGIC,
		              PROBE_MAGIC); /* pairs with the reader's wait for magic */
		int ok = wait_u64(m, OFF_ACK, ROUNDS, 1, timeout) == 0 &&
		         load_acquire(m, OFF_ACK_KEY) == key;
		printf("role=writer device=%s size=%zu fill_MBps=%.1f ack=%s ack_ms=%.0f\n", dev,
		       size, PATTERN_LEN / 1e6 / (t1 - t0), ok ? "yes" : "no",
		       (now_s() - t1) * 1000);
		return ok ? 0 : 1;
	}

	if (!strcmp(cmd, "read")) {
		double t0 = now_s();
		if (wait_u64(m, OFF_MAGIC, PROBE_MAGIC, 1, timeout) < 0 ||
		    wait_u64(m, OFF_COUNTER, ROUNDS, 1, 1) < 0) {
			printf("role=reader device=%s magic=missing counter=%llu\n", dev,
			       (unsigned long long)load_acquire(m, OFF_COUNTER));
			return 1;
		}
		double t1 = now_s();
		long bad = verify(m + GUEST_OFF, key), hbad = verify(m + HOST_OFF, key ^ 0x4854);
		double t2 = now_s();
		if (bad < 0 && hbad < 0) {
			store_release(m, OFF_ACK_KEY, key);
			store_release(m, OFF_ACK, ROUNDS); /* pairs with the writer's wait */
		}
		printf("role=reader device=%s size=%zu waited_ms=%.0f guest_pattern=%s "
		       "host_pattern=%s "
		       "read_MBps=%.1f\n",
		       dev, size, (t1 - t0) * 1000, bad < 0 ? "ok" : "bad", hbad < 0 ? "ok" : "bad",
		       2 * PATTERN_LEN / 1e6 / (t2 - t1));
		return bad < 0 && hbad < 0 ? 0 : 1;
	}

	/* check */
	long bad = verify(m + GUEST_OFF, key), hbad = verify(m + HOST_OFF, key ^ 0x4854);
	int ok = load_acquire(m, OFF_MAGIC) == PROBE_MAGIC &&
	         load_acquire(m, OFF_COUNTER) == ROUNDS && load_acquire(m, OFF_ACK) == ROUNDS &&
	         load_acquire(m, OFF_ACK_KEY) == key && bad < 0 && hbad < 0;
	printf("host file=%s magic=%s counter=%llu ack=%llu guest_pattern=%s host_pattern=%s\n",
	       file, load_acquire(m, OFF_MAGIC) == PROBE_MAGIC ? "ok" : "missing",
	       (unsigned long long)load_acquire(m, OFF_COUNTER),
	       (unsigned long long)load_acquire(m, OFF_ACK), bad < 0 ? "ok" : "bad",
	       hbad < 0 ? "ok" : "bad");
	return ok ? 0 : 1;
}
