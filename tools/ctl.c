/* SPDX-License-Identifier: MIT */
/* ctl.c — evacuate/attach requests and their progress (see ctl.h). */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"
#include "tables.h"

/* map_hdr - map the header of the table at @path read-write into *@h. 0 or -errno. */
static int map_hdr(const char *path, struct nsk_proc_hdr **h)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st; /* a table being created may have no size yet (SIGBUS past the end) */
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < sizeof(**h)) {
		close(fd);
		return -EPROTO;
	}
	void *p = mmap(NULL, sizeof(**h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int err = errno;
	close(fd);
	if (p == MAP_FAILED)
		return -err;
	*h = p;
	if (nsk_load32_acquire(&(*h)->magic) != NSK_PROC_MAGIC ||
	    (*h)->version != NSK_PROC_VERSION) {
		munmap(p, sizeof(**h));
		return -EPROTO;
	}
	return 0;
}

/* set_want - the request protocol: the wish, then a new generation. */
static void set_want(uint32_t *want, uint32_t *gen, uint32_t want_tcp)
{
	nsk_store32(want, want_tcp);
	/* Release pairs with the library's acquire load of ctl_gen: a process that sees the
	 * new generation sees the wish stored before it. */
	atomic_fetch_add_explicit(NSK_A32(gen), 1, memory_order_release);
}

struct finder {
	pid_t pid;
	char *path;
	size_t len;
	int found;
};

static void find_owner(struct nsk_proctab *t, void *arg)
{
	struct finder *f = arg;
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high && !f->found; i++) {
		if (nsk_load32(&t->conns[i].owner_pid) == (uint32_t)f->pid) {
			snprintf(f->path, f->len, "%s", t->path);
			f->found = 1;
		}
	}
}

int nsk_ctl_find(const struct nsk_domain *d, pid_t pid, char *path, size_t len)
{
	if (pid <= 0)
		return -ESRCH;
	if (snprintf(path, len, "%s/proc-%d", d->dir, (int)pid) >= (int)len)
		return -ENAMETOOLONG;
	struct nsk_proctab t;
	if (nsk_proctab_map(&t, path) == 0) {
		int mine = t.hdr->pid == (uint32_t)pid &&
			   nsk_proc_alive(pid, t.hdr->start_time);
		nsk_proctab_unmap(&t);
		if (mine)
			return 0;
	}
	/* A forked child records its connections in its parent's table. */
	struct finder f = {.pid = pid, .path = path, .len = len};
	if (kill(pid, 0) == 0 || errno == EPERM)
		nsk_tables_each(d->dir, find_owner, &f, 0);
	return f.found ? 0 : -ESRCH;
}

static void lift_one(struct nsk_proctab *t, void *arg)
{
	int *err = arg;
	if (!nsk_load32(&t->hdr->want_tcp))
		return;
	struct nsk_proc_hdr *h;
	int r = map_hdr(t->path, &h);
	if (r < 0) {
		*err = r;
		return;
	}
	set_want(&h->want_tcp, &h->ctl_gen, 0);
	munmap(h, sizeof(*h));
}

int nsk_ctl_request(struct nsk_domain *d, const char *path, uint32_t want_tcp)
{
	if (!path) {
		set_want(&d->reg.hdr->want_tcp, &d->reg.hdr->ctl_gen, want_tcp);
		int err = 0;
		if (!want_tcp)
			nsk_tables_each(d->dir, lift_one, &err, 0);
		return err;
	}
	struct nsk_proc_hdr *h;
	int r = map_hdr(path, &h);
	if (r < 0)
		return r;
	set_want(&h->want_tcp, &h->ctl_gen, want_tcp);
	munmap(h, sizeof(*h));
	return 0;
}

static void count_table(struct nsk_proctab *t, void *arg)
{
	struct nsk_ctl_count *n = arg;
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high; i++) {
		struct nsk_conn c = t->conns[i];
		if (!nsk_table_conn_live(&c))
			continue;
		n->conns++;
		if (c.mode == NSK_MODE_SHM && c.tx_switched)
			n->on_ring++;
		else if (c.mode == NSK_MODE_SHM ||
			 (c.switches && (c.mode == NSK_MODE_TCP || c.mode == NSK_MODE_OFFERED)))
			n->off_ring++;
	}
}

void nsk_ctl_count(const struct nsk_domain *d, const char *path, struct nsk_ctl_count *n)
{
	memset(n, 0, sizeof(*n));
	if (!path) {
		nsk_tables_each(d->dir, count_table, n, 0);
		return;
	}
	struct nsk_proctab t;
	if (nsk_proctab_map(&t, path) == 0) {
		count_table(&t, n);
		nsk_proctab_unmap(&t);
	}
}

static double now_s(void)
{
	return (double)nsk_now_ns() / 1e9;
}

int nsk_cli_ctl(const char *cmd, int argc, char **argv)
{
	const char *dir = NULL, *target = NULL;
	double wait = -1;
	for (int i = 0; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--wait") && i + 1 < argc) {
			wait = strtod(argv[++i], &end);
			if (*end || end == argv[i] || wait < 0) {
				fprintf(stderr, "nearsock %s: bad --wait %s (seconds)\n", cmd, argv[i]);
				return 2;
			}
		} else if (!target && (!strcmp(argv[i], "--all") || argv[i][0] != '-')) {
			target = argv[i];
		} else {
			fprintf(stderr, "nearsock %s: unknown argument %s\n", cmd, argv[i]);
			return 2;
		}
	}
	if (!target) {
		fprintf(stderr, "usage: nearsock %s PID|--all [--dir DIR] [--wait SECONDS]\n", cmd);
		return 2;
	}
	pid_t pid = 0;
	if (strcmp(target, "--all") != 0) {
		char *end;
		long v = strtol(target, &end, 10);
		if (*end || v <= 0 || v > INT32_MAX) {
			fprintf(stderr, "nearsock %s: %s is not a pid\n", cmd, target);
			return 2;
		}
		pid = (pid_t)v;
	}
	uint32_t want = !strcmp(cmd, "evacuate");

	struct nsk_domain d;
	int r = nsk_domain_open(&d, dir, 0);
	if (r < 0) {
		char def[PATH_MAX];
		nsk_domain_default_dir(def, sizeof(def));
		fprintf(stderr, "nearsock %s: cannot open domain %s: %s\n", cmd, dir ? dir : def,
			strerror(-r));
		return 1;
	}
	char path[PATH_MAX], what[64];
	const char *tab = NULL;
	if (pid) {
		r = nsk_ctl_find(&d, pid, path, sizeof(path));
		if (r < 0) {
			fprintf(stderr, "nearsock %s: no live process %d in domain %s (not running "
					"under nearsock, or already gone)\n", cmd, (int)pid, d.dir);
			nsk_domain_close(&d);
			return 1;
		}
		tab = path;
		snprintf(what, sizeof(what), "pid %d", (int)pid);
	} else {
		snprintf(what, sizeof(what), "the domain");
	}
	r = nsk_ctl_request(&d, tab, want);
	if (r < 0) {
		fprintf(stderr, "nearsock %s: cannot write the request for %s into %s: %s\n", cmd,
			what, tab ? tab : d.dir, strerror(-r));
		nsk_domain_close(&d);
		return 1;
	}
	if (pid && !want && nsk_load32(&d.reg.hdr->want_tcp))
		fprintf(stderr, "nearsock attach: note: the whole domain is evacuated; its "
				"connections stay on TCP until `nearsock attach --all`\n");

	struct nsk_ctl_count n;
	double t0 = now_s();
	nsk_ctl_count(&d, tab, &n);
	while (wait >= 0 && (want ? n.on_ring : n.off_ring) && now_s() - t0 < wait) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
		nsk_ctl_count(&d, tab, &n);
	}
	int done = !(want ? n.on_ring : n.off_ring);
	int rc = 0;
	if (wait < 0)
		printf("%s requested for %s: %u connection ends, %u on shared memory, %u on TCP "
		       "after a switch\n", cmd, what, n.conns, n.on_ring, n.off_ring);
	else if (done)
		printf("%s %s: done in %.0f ms: %u connection ends, %u on shared memory, %u on "
		       "TCP after a switch\n", cmd, what, (now_s() - t0) * 1e3, n.conns, n.on_ring,
		       n.off_ring);
	else {
		printf("%s %s: NOT complete after %.1f s: %u of %u connection ends still %s\n",
		       cmd, what, wait, want ? n.on_ring : n.off_ring, n.conns,
		       want ? "on shared memory" : "on TCP");
		rc = 1;
	}
	nsk_domain_close(&d);
	return rc;
}
