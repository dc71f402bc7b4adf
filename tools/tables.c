/* SPDX-License-Identifier: MIT */
/* tables.c — walking the domain's connection tables (see tables.h). */
#include "tables.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"

unsigned nsk_tables_each(const char *dir, nsk_table_fn fn, void *arg, int gc)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return 0;
	unsigned removed = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		if (strncmp(de->d_name, "proc-", 5) != 0)
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		struct nsk_proctab t;
		if (nsk_proctab_map(&t, path) < 0) {
			/* A process killed while creating its table leaves it short or unformatted. */
			long pid = strtol(de->d_name + 5, NULL, 10);
			if (gc && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH &&
			    unlink(path) == 0)
				removed++;
			continue;
		}
		int alive = nsk_proc_alive((pid_t)t.hdr->pid, t.hdr->start_time) ||
			    nsk_proctab_in_use(&t, 0) > 0;
		if (alive && fn)
			fn(&t, arg);
		else if (!alive && gc && unlink(path) == 0)
			removed++;
		nsk_proctab_unmap(&t);
	}
	closedir(dp);
	return removed;
}

int nsk_table_conn_live(const struct nsk_conn *c)
{
	return c->owner_pid && (c->kind == NSK_CK_CLIENT || c->kind == NSK_CK_SERVER) &&
	       kill((pid_t)c->owner_pid, 0) == 0;
}

void nsk_proc_comm(uint32_t pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/comm", pid);
	snprintf(buf, len, "?");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0) {
		snprintf(buf, len, "?");
		return;
	}
	buf[n] = 0;
	/* one line; keep it safe to print inside quotes and labels */
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			buf[i] = 0;
			break;
		}
		if (buf[i] == '"' || buf[i] == '\\' || (unsigned char)buf[i] < 0x20)
			buf[i] = '_';
	}
}
