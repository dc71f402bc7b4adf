/* SPDX-License-Identifier: MIT */
/* gc.c — collecting what dead processes left in a domain (see gc.h). */
#include "gc.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/budget.h"
#include "core/registry.h"
#include "platform/linux.h"
#include "tables.h"

/* Registry entries whose owner (pid + start time) is dead, with the rendezvous socket each
 * named. */
static unsigned gc_registry(struct nsk_domain *d)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < d->reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (!nsk_registry_read(&d->reg, (int)i, &e) ||
		    nsk_proc_alive((pid_t)e.pid, e.start_time))
			continue;
		nsk_registry_mark_dead(&d->reg, (int)i, e.state);
		char p[PATH_MAX];
		if (nsk_rv_path(d, e.rv, p, sizeof(p)) == 0)
			unlink(p);
		n++;
	}
	return n;
}

/* Rendezvous sockets are named rv-PID-RANDOM; a killed process leaves its own behind (the
 * registry entry that named it may already be gone). Remove those whose process no longer
 * exists (ESRCH; another user's live process answers EPERM and is left alone). */
static unsigned gc_rendezvous(const char *dir)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return 0;
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		char *end;
		if (strncmp(de->d_name, "rv-", 3) != 0)
			continue;
		long pid = strtol(de->d_name + 3, &end, 10);
		if (pid <= 0 || *end != '-' || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path) &&
		    unlink(path) == 0)
			n++;
	}
	closedir(dp);
	return n;
}

void nsk_gc_run(struct nsk_domain *d, struct nsk_gc_result *r)
{
	r->entries += gc_registry(d);
	/* Budget shares first: they are read from the tables removed next. */
	r->budget_bytes += nsk_budget_reclaim(d);
	r->tables += nsk_tables_each(d->dir, NULL, NULL, 1);
	r->rendezvous += gc_rendezvous(d->dir);
}
