/* SPDX-License-Identifier: MIT */
/* domain.c — domain directory, registry file and per-process connection tables. */
#include "core/domain.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/budget.h"
#include "platform/linux.h"

void nsk_domain_default_dir(char *buf, size_t len)
{
	const char *env = getenv("NEARSOCK_DIR");
	if (env && *env)
		snprintf(buf, len, "%s", env);
	else
		snprintf(buf, len, "/dev/shm/nearsock-%u", (unsigned)getuid());
}

int nsk_domain_check_shared(const char *dir, const struct stat *st)
{
	if (st->st_uid != 0 || (st->st_mode & 07777) != 03770)
		return -EACCES;
	char path[PATH_MAX];
	struct stat ms;
	if (snprintf(path, sizeof(path), "%s/%s", dir, NSK_SHARED_MARKER) >= (int)sizeof(path) ||
	    lstat(path, &ms) < 0 || !S_ISREG(ms.st_mode) || ms.st_uid != 0 || (ms.st_mode & 022))
		return -EACCES;
	return 0;
}

/* check_dir - 0 for our own private directory, 1 for an administrator's shared domain,
 * or -errno. */
static int check_dir(const char *dir, int create)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT || !create)
			return -errno;
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return -errno;
		if (lstat(dir, &st) < 0)
			return -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* A directory someone else controls could hand us forged registry entries; only an
	 * administrator's explicit shared domain is accepted instead. */
	int shared = 0;
	if (st.st_uid != getuid() || (st.st_mode & 077)) {
		if (nsk_domain_check_shared(dir, &st) < 0)
			return -EACCES;
		shared = 1;
	}
	if (access(dir, W_OK | X_OK) < 0)
		return -errno;
	return shared;
}

int nsk_domain_open(struct nsk_domain *d, const char *dir, int create)
{
	memset(d, 0, sizeof(*d));
	if (dir)
		snprintf(d->dir, sizeof(d->dir), "%s", dir);
	else
		nsk_domain_default_dir(d->dir, sizeof(d->dir));
	int r = check_dir(d->dir, create);
	if (r < 0)
		return r;
	d->shared = r;

	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/registry", d->dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
	if (fd < 0)
		return -errno;
	/* In a shared domain every member writes the registry (its group is the domain's). */
	if (d->shared && fchmod(fd, 0660) < 0 && errno != EPERM) {
		r = -errno;
		close(fd);
		return r;
	}
	if (flock(fd, LOCK_EX) < 0) {
		r = -errno;
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size == 0 && create) {
		/* Allocate the pages now: a full /dev/shm must fail here, not SIGBUS later. */
		r = nsk_fsize_ok(NSK_REG_FILE_SIZE);
		if (r < 0)
			goto out;
		r = posix_fallocate(fd, 0, NSK_REG_FILE_SIZE);
		if (r) {
			r = -r;
			(void)ftruncate(fd, 0);
			goto out;
		}
		st.st_size = NSK_REG_FILE_SIZE;
		void *base = mmap(NULL, NSK_REG_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED) {
			r = -errno;
			goto out;
		}
		nsk_registry_format(base);
		munmap(base, NSK_REG_FILE_SIZE);
	}
	if ((uint64_t)st.st_size != NSK_REG_FILE_SIZE) {
		r = -EPROTO;
		goto out;
	}
	d->reg_base = mmap(NULL, NSK_REG_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (d->reg_base == MAP_FAILED) {
		d->reg_base = NULL;
		r = -errno;
		goto out;
	}
	r = nsk_registry_attach(&d->reg, d->reg_base, NSK_REG_FILE_SIZE);
	if (r < 0) {
		munmap(d->reg_base, NSK_REG_FILE_SIZE);
		d->reg_base = NULL;
	}
out:
	/* Unlock explicitly: our mapping keeps the open file (and so an flock) alive. */
	flock(fd, LOCK_UN);
	close(fd);
	return r;
}

void nsk_domain_close(struct nsk_domain *d)
{
	if (d->reg_base)
		munmap(d->reg_base, NSK_REG_FILE_SIZE);
	d->reg_base = NULL;
}

int nsk_rv_path(const struct nsk_domain *d, const char *name, char *buf, size_t len)
{
	struct sockaddr_un sun;
	int n = snprintf(buf, len, "%s/%s", d->dir, name);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* ---------------------------------------------------------------- connection tables --- */


int nsk_proctab_create(struct nsk_proctab *t, const struct nsk_domain *d)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	if (snprintf(t->path, sizeof(t->path), "%s/proc-%d", d->dir, (int)getpid()) >=
	    (int)sizeof(t->path))
		return -ENAMETOOLONG;
	/* A previous process with our pid died without cleaning up: give its memory-budget share
	 * back before its table goes. */
	nsk_budget_reclaim_table(d, t->path);
	unlink(t->path);
	int r = nsk_fsize_ok(NSK_PROC_FILE_SIZE);
	if (r < 0)
		return r;
	int fd = open(t->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)NSK_PROC_FILE_SIZE) < 0 ||
	    (r = posix_fallocate(fd, 0, 4096)) != 0) {
		r = r ? -r : -errno;
		close(fd);
		unlink(t->path);
		return r;
	}
	void *base = mmap(NULL, NSK_PROC_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		close(fd);
		unlink(t->path);
		return r;
	}
	/* Kept: a process that drops privileges (nginx workers) can no longer open the file in
	 * the 0700 domain, yet must still back new slots. Out of the numbers apps expect. */
	t->fd = fcntl(fd, F_DUPFD_CLOEXEC, 64);
	close(fd);
	t->hdr = base;
	t->conns = (struct nsk_conn *)(t->hdr + 1);
	t->hdr->pid = (uint32_t)getpid();
	t->hdr->start_time = nsk_proc_start_time(getpid());
	t->hdr->nslots = NSK_PROC_SLOTS;
	t->hdr->backed = 4096;
	t->hdr->version = NSK_PROC_VERSION;
	nsk_store32_release(&t->hdr->magic, NSK_PROC_MAGIC);
	return 0;
}

int nsk_proctab_map(struct nsk_proctab *t, const char *path)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	snprintf(t->path, sizeof(t->path), "%s", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != NSK_PROC_FILE_SIZE) {
		close(fd);
		return -EPROTO;
	}
	void *base = mmap(NULL, NSK_PROC_FILE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -errno;
	t->hdr = base;
	t->conns = (struct nsk_conn *)(t->hdr + 1);
	if (t->hdr->magic != NSK_PROC_MAGIC || t->hdr->version != NSK_PROC_VERSION ||
	    t->hdr->nslots != NSK_PROC_SLOTS) {
		nsk_proctab_unmap(t);
		return -EPROTO;
	}
	return 0;
}

int nsk_proctab_map_fd(struct nsk_proctab *t, int fd)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1; /* the caller keeps @fd and may set it here */
	snprintf(t->path, sizeof(t->path), "(inherited fd %d)", fd);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != NSK_PROC_FILE_SIZE ||
	    st.st_uid != getuid())
		return -EPROTO;
	void *base = mmap(NULL, NSK_PROC_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	t->hdr = base;
	t->conns = (struct nsk_conn *)(t->hdr + 1);
	if (nsk_load32_acquire(&t->hdr->magic) != NSK_PROC_MAGIC ||
	    t->hdr->version != NSK_PROC_VERSION || t->hdr->nslots != NSK_PROC_SLOTS) {
		nsk_proctab_unmap(t);
		return -EPROTO;
	}
	return 0;
}

void nsk_proctab_unmap(struct nsk_proctab *t)
{
	if (t->hdr)
		munmap(t->hdr, NSK_PROC_FILE_SIZE);
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->hdr = NULL;
	t->conns = NULL;
}

static uint64_t slot_end(uint64_t i)
{
	return sizeof(struct nsk_proc_hdr) + (i + 1) * sizeof(struct nsk_conn);
}

/* Make sure every page up to the one holding slot @i has backing store (tmpfs may be full:
 * touching a page without it would SIGBUS). Pages are backed in order, so slots below
 * hdr->backed can always be read. */
static int back_slot(struct nsk_proctab *t, uint32_t i)
{
	uint64_t end = (slot_end(i) + 4095) & ~4095ull;
	if (end > NSK_PROC_FILE_SIZE)
		end = NSK_PROC_FILE_SIZE; /* never grow the file */
	uint64_t have = nsk_load64_acquire(&t->hdr->backed);
	if (have >= end)
		return 0;
	int fd = t->fd >= 0 ? t->fd : open(t->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = posix_fallocate(fd, (off_t)have, (off_t)(end - have));
	if (fd != t->fd)
		close(fd);
	if (r)
		return -r;
	/* Release pairs with the acquire above and in the reuse scan. */
	while (have < end &&
	       !atomic_compare_exchange_weak_explicit(NSK_A64(&t->hdr->backed), &have, end,
						      memory_order_release, memory_order_relaxed))
		;
	return 0;
}

static struct nsk_conn *take(struct nsk_proctab *t, uint32_t i, pid_t pid)
{
	struct nsk_conn *c = &t->conns[i];
	uint32_t zero = 0;
	if (nsk_load32(&c->owner_pid) != 0 ||
	    !atomic_compare_exchange_strong(NSK_A32(&c->owner_pid), &zero, (uint32_t)pid))
		return NULL;
	nsk_store64(&t->hdr->hint, i + 1);
	memset((char *)c + sizeof(uint32_t), 0, sizeof(*c) - sizeof(uint32_t));
	c->created_ns = nsk_now_ns();
	return c;
}

uint32_t nsk_proctab_readable(const struct nsk_proctab *t)
{
	uint64_t high = nsk_load64_acquire(&t->hdr->high);
	uint64_t backed = nsk_load64_acquire(&t->hdr->backed);
	if (high > NSK_PROC_SLOTS)
		high = NSK_PROC_SLOTS;
	while (high && slot_end(high - 1) > backed)
		high--;
	return (uint32_t)high;
}

struct nsk_conn *nsk_proctab_alloc(struct nsk_proctab *t, pid_t pid)
{
	if (!t->hdr)
		return NULL;
	/* First reuse a freed slot below the high-water mark whose page is backed. */
	uint64_t high = nsk_proctab_readable(t);
	uint64_t start = high ? nsk_load64(&t->hdr->hint) % high : 0;
	for (uint64_t k = 0; k < high; k++) {
		struct nsk_conn *c = take(t, (uint32_t)((start + k) % high), pid);
		if (c)
			return c;
	}
	/* Then grow. */
	for (;;) {
		uint64_t i = atomic_fetch_add(NSK_A64(&t->hdr->high), 1);
		if (i >= NSK_PROC_SLOTS)
			return NULL;
		if (back_slot(t, (uint32_t)i) < 0)
			return NULL;
		struct nsk_conn *c = take(t, (uint32_t)i, pid);
		if (c)
			return c;
	}
}

void nsk_proctab_free(struct nsk_proctab *t, struct nsk_conn *c)
{
	(void)t;
	c->kind = NSK_CK_NONE;
	/* Release pairs with the CAS in nsk_proctab_alloc: our last writes to the slot happen
	 * before anyone reuses it. */
	nsk_store32_release(&c->owner_pid, 0);
}

int nsk_proctab_in_use(struct nsk_proctab *t, pid_t self)
{
	int n = 0;
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high; i++) {
		uint32_t p = nsk_load32(&t->conns[i].owner_pid);
		if (p && p != (uint32_t)self && kill((pid_t)p, 0) == 0)
			n++;
	}
	return n;
}
