/* SPDX-License-Identifier: MIT */
/* budget.c — domain memory budget (see budget.h). */
#include "core/budget.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"

static uint64_t *domain_used(const struct nsk_domain *d)
{
	return &d->reg.hdr->mem_used;
}

static int try_charge(struct nsk_domain *d, uint64_t bytes, uint64_t budget)
{
	uint64_t *used = domain_used(d);
	uint64_t cur = nsk_load64(used);
	do {
		if (cur > budget || bytes > budget - cur)
			return -EDQUOT;
	} while (!atomic_compare_exchange_weak_explicit(
	    NSK_A64(used), &cur, cur + bytes, memory_order_relaxed, memory_order_relaxed));
	return 0;
}

int nsk_budget_charge(struct nsk_domain *d, struct nsk_proctab *t, uint64_t bytes, uint64_t budget)
{
	int r = try_charge(d, bytes, budget);
	if (r < 0 && nsk_budget_reclaim(d) > 0)
		r = try_charge(d, bytes, budget);
	if (r == 0)
		nsk_add64(&t->hdr->mem_charged, bytes);
	return r;
}

/* Subtract @bytes from *@p, never below zero (a share reclaimed from a process thought dead
 * while a forked child still used its table must not wrap the sum around). */
static void sub_clamped(uint64_t *p, uint64_t bytes)
{
	uint64_t cur = nsk_load64(p);
	while (!atomic_compare_exchange_weak_explicit(NSK_A64(p), &cur,
	                                              cur > bytes ? cur - bytes : 0,
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

void nsk_budget_uncharge(struct nsk_domain *d, struct nsk_proctab *t, uint64_t bytes)
{
	sub_clamped(&t->hdr->mem_charged, bytes);
	sub_clamped(domain_used(d), bytes);
}

uint64_t nsk_budget_reclaim_table(const struct nsk_domain *d, const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	/* A table being created may not have its size yet: touching a page past the end of
	 * the file would be SIGBUS (seen once: the agent killed by it during races.sh). */
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < sizeof(struct nsk_proc_hdr)) {
		close(fd);
		return 0;
	}
	void *p =
	    mmap(NULL, sizeof(struct nsk_proc_hdr), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return 0;
	struct nsk_proc_hdr *h = p;
	uint64_t got = 0;
	/* A table being created has no magic yet: nothing charged. A live owner keeps its share. */
	if (nsk_load32_acquire(&h->magic) == NSK_PROC_MAGIC &&
	    !nsk_proc_alive((pid_t)h->pid, h->start_time)) {
		/* The exchange makes each share reclaimed once, however many reclaim at once. */
		got = atomic_exchange_explicit(NSK_A64(&h->mem_charged), 0, memory_order_relaxed);
		if (got)
			sub_clamped(domain_used(d), got);
	}
	munmap(p, sizeof(struct nsk_proc_hdr));
	return got;
}

uint64_t nsk_budget_reclaim(struct nsk_domain *d)
{
	DIR *dp = opendir(d->dir);
	if (!dp)
		return 0;
	uint64_t got = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		char path[PATH_MAX];
		if (strncmp(de->d_name, "proc-", 5) != 0 ||
		    snprintf(path, sizeof(path), "%s/%s", d->dir, de->d_name) >= (int)sizeof(path))
			continue;
		got += nsk_budget_reclaim_table(d, path);
	}
	closedir(dp);
	return got;
}
