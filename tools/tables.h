/* SPDX-License-Identifier: MIT */
/* tables.h — walking the per-process connection tables of a domain (DIR/proc-PID), the one
 * place that decides whether a table still belongs to a live process. Used by status, gc,
 * the evacuate/attach commands, the metrics and the agent. */
#ifndef NSK_CLI_TABLES_H
#define NSK_CLI_TABLES_H

#include <stdint.h>

#include "core/domain.h"

/* nsk_table_fn - called with each live table, mapped read-only for the call only. */
typedef void (*nsk_table_fn)(struct nsk_proctab *t, void *arg);

/* nsk_tables_each - call @fn for every table in @dir whose process (pid + start time) is alive
 * or whose slots are still held by live processes (forked children). With @gc, remove the
 * tables of dead processes (and unfinished ones a process killed while creating them left)
 * and return how many were removed; else return 0. Not thread-safe (readdir). */
unsigned nsk_tables_each(const char *dir, nsk_table_fn fn, void *arg, int gc);

/* nsk_table_conn_live - whether slot @c (a copy) is a TCP connection (client or server end)
 * held by a live process. */
int nsk_table_conn_live(const struct nsk_conn *c);

/* nsk_proc_comm - the command name of @pid (/proc/PID/comm) into @buf, "?" if unknown. */
void nsk_proc_comm(uint32_t pid, char *buf, size_t len);

#endif
