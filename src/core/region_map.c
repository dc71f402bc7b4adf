/* SPDX-License-Identifier: MIT */
/* region_map.c — finding and mapping an ivshmem region (see region.h): the host's backing
 * file, or in a guest the ivshmem PCI device's BAR2 through sysfs (resource2); parsing
 * NEARSOCK_DOMAIN; creating and formatting a region file. */
#include "core/region.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/linux.h"

#define IVSHMEM_VENDOR 0x1af4u
#define IVSHMEM_DEVICE 0x1110u
#define MAX_PCI_DEVICES 256

int nsk_region_parse_domain(const char *s, struct nsk_region_spec *out)
{
	static const char pre[] = "ivshmem:";
	if (!s || !*s || strncmp(s, pre, sizeof(pre) - 1) != 0)
		return 0;
	memset(out, 0, sizeof(*out));
	const char *a = s + sizeof(pre) - 1;
	if (!strcmp(a, "auto")) {
		out->where = NSK_RGN_PCI_AUTO;
		return 1;
	}
	if (!strncmp(a, "pci:", 4)) {
		/* DDDD:BB:DD.F, hex digits */
		const char *b = a + 4;
		unsigned dom, bus, dev, fn;
		char tail;
		if (strlen(b) != 12 ||
		    sscanf(b, "%4x:%2x:%2x.%1x%c", &dom, &bus, &dev, &fn, &tail) != 4)
			return -EINVAL;
		out->where = NSK_RGN_PCI_DEV;
		snprintf(out->arg, sizeof(out->arg), "%s", b);
		return 1;
	}
	if (a[0] != '/' || strlen(a) >= sizeof(out->arg))
		return -EINVAL;
	out->where = NSK_RGN_FILE;
	snprintf(out->arg, sizeof(out->arg), "%s", a);
	return 1;
}

const char *nsk_region_sysfs_root(void)
{
	const char *e = getenv("NEARSOCK_SYSFS");
	return e && *e ? e : "/sys";
}

void nsk_region_close(struct nsk_region *rg)
{
	if (rg->mapped && rg->base)
		munmap(rg->base, rg->map_len);
	memset(rg, 0, sizeof(*rg));
	rg->self = -1;
}

/* map_fd - map @len bytes of @fd shared and attach; on failure nothing stays mapped. */
static int map_fd(struct nsk_region *rg, int fd, uint64_t len, const char *path)
{
	if (len < NSK_RGN_HDR_SIZE)
		return -EPROTO;
	void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	int r = nsk_region_attach(rg, base, len);
	if (r < 0) {
		munmap(base, len);
		return r;
	}
	rg->mapped = 1;
	snprintf(rg->path, sizeof(rg->path), "%s", path);
	return 0;
}

int nsk_region_open_path(struct nsk_region *rg, const char *path)
{
	memset(rg, 0, sizeof(*rg));
	rg->self = -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (!S_ISREG(st.st_mode))
		r = -EINVAL;
	else
		r = map_fd(rg, fd, (uint64_t)st.st_size, path);
	close(fd);
	/* A file larger or smaller than its header says is not the region QEMU shares. */
	if (r == 0 && rg->size != (uint64_t)st.st_size) {
		nsk_region_close(rg);
		r = -EPROTO;
	}
	return r;
}

/* read_hex - the number in the small sysfs file DIR/NAME ("0x1af4\n"), or -1. */
static long read_hex(const char *dir, const char *name)
{
	char p[PATH_MAX], buf[32];
	if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
		return -1;
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *end;
	long v = strtol(buf, &end, 16);
	return end == buf ? -1 : v;
}

/* bar2_size - size of BAR2 from DIR/resource (line 3: "start end flags"), or 0. */
static uint64_t bar2_size(const char *dir)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/resource", dir) >= (int)sizeof(p))
		return 0;
	FILE *f = fopen(p, "re");
	if (!f)
		return 0;
	char line[128];
	uint64_t size = 0;
	for (int i = 0; i < 3 && fgets(line, sizeof(line), f); i++) {
		unsigned long long start, end;
		if (i == 2 && sscanf(line, "%llx %llx", &start, &end) == 2 && end > start)
			size = end - start + 1;
	}
	fclose(f);
	return size;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* try_device - enable and map the ivshmem device at @dir. 0 or -errno. */
static int try_device(struct nsk_region *rg, const char *dir)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/enable", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		/* Already enabled devices accept it too; a failure shows at mmap. */
		(void)!write(fd, "1", 1);
		close(fd);
	}
	if (snprintf(p, sizeof(p), "%s/resource2", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int r = 0;
	if (fstat(fd, &st) < 0)
		r = -errno;
	uint64_t len = r == 0 ? (uint64_t)st.st_size : 0;
	if (r == 0 && len == 0)
		len = bar2_size(dir);
	if (r == 0)
		r = map_fd(rg, fd, len, p);
	close(fd);
	return r;
}

int nsk_region_open_pci(struct nsk_region *rg, const char *sysfs_root, const char *bdf)
{
	memset(rg, 0, sizeof(*rg));
	rg->self = -1;
	char devs[PATH_MAX];
	if (!sysfs_root)
		sysfs_root = nsk_region_sysfs_root();
	if (snprintf(devs, sizeof(devs), "%s/bus/pci/devices", sysfs_root) >= (int)sizeof(devs))
		return -ENAMETOOLONG;
	DIR *d = opendir(devs);
	if (!d)
		return -ENODEV;
	char *names[MAX_PCI_DEVICES] = {0};
	int n = 0;
	struct dirent *de;
	while (n < MAX_PCI_DEVICES && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (bdf && strcmp(de->d_name, bdf) != 0)
			continue;
		names[n] = strdup(de->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
	int r = -ENODEV;
	for (int i = 0; i < n; i++) {
		char dir[PATH_MAX];
		if (r == 0 ||
		    snprintf(dir, sizeof(dir), "%s/%s", devs, names[i]) >= (int)sizeof(dir))
			continue;
		if (read_hex(dir, "vendor") != IVSHMEM_VENDOR ||
		    read_hex(dir, "device") != IVSHMEM_DEVICE)
			continue;
		r = try_device(rg, dir);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	return r;
}

int nsk_region_open_spec(struct nsk_region *rg, const struct nsk_region_spec *spec)
{
	switch (spec->where) {
	case NSK_RGN_FILE:
		return nsk_region_open_path(rg, spec->arg);
	case NSK_RGN_PCI_AUTO:
		return nsk_region_open_pci(rg, nsk_region_sysfs_root(), NULL);
	case NSK_RGN_PCI_DEV:
		return nsk_region_open_pci(rg, nsk_region_sysfs_root(), spec->arg);
	}
	return -EINVAL;
}

int nsk_region_create_file(const char *path, uint64_t size, const struct nsk_region_params *p,
                           int force, uint64_t wait_ns)
{
	struct nsk_rgn_hdr h;
	int r = nsk_region_layout(&h, size, p);
	if (r < 0)
		return r;
	if ((r = nsk_fsize_ok(size)) < 0)
		return r;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	struct stat st;
	/* Two formatters at once would interleave: the second waits for the first. */
	if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if (st.st_size >= NSK_RGN_HDR_SIZE && !force) {
		struct nsk_region old;
		if (map_fd(&old, fd, (uint64_t)st.st_size, path) == 0) {
			int live = nsk_region_live_members(&old, wait_ns);
			nsk_region_close(&old);
			if (live > 0) {
				r = -EBUSY;
				goto out;
			}
		}
	}
	if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) < 0) {
		r = -errno;
		goto out;
	}
	/* Back every page now: a full /dev/shm must fail here, not with SIGBUS in a member. */
	r = posix_fallocate(fd, 0, (off_t)size);
	if (r) {
		r = -r;
		goto out;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		goto out;
	}
	r = nsk_region_format(base, size, p);
	munmap(base, size);
out:
	flock(fd, LOCK_UN);
	close(fd);
	return r;
}
