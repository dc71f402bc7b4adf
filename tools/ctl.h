/* SPDX-License-Identifier: MIT */
/* ctl.h — switching requests: `nearsock evacuate PID|--all` (put connections on TCP) and
 * `nearsock attach PID|--all` (let them use shared memory again). A request is two words in
 * shared memory that the library checks at every socket operation: want_tcp, then ctl_gen
 * bumped with release order, in the target process's connection-table header (one process
 * and the children sharing its table) or in the registry header (the whole domain). The
 * library keeps a connection on TCP while either word asks for it. */
#ifndef NSK_CLI_CTL_H
#define NSK_CLI_CTL_H

#include <stdint.h>
#include <sys/types.h>

#include "core/domain.h"

/* How far a request took effect, over the live TCP connection ends (client and server ends;
 * listeners and UDP sockets are not counted) of the target. */
struct nsk_ctl_count {
	unsigned conns;    /* live connection ends */
	unsigned on_ring;  /* mode shm and the sending direction on the ring (switch point
			    * published: nsk_conn.tx_switched) */
	unsigned off_ring; /* had a channel (mode shm, or switches > 0) and not closed for good
			    * (plain/broken), yet sending over TCP: evacuated, or still switching */
};

/* nsk_ctl_find - the connection table of live process @pid into @path: its own table, or,
 * for a forked child without one, the table holding its connections (shared with its
 * parent). 0, or -ESRCH when no live process of the domain has that pid. */
int nsk_ctl_find(const struct nsk_domain *d, pid_t pid, char *path, size_t len);

/* nsk_ctl_request - store @want_tcp (1 evacuate, 0 attach) in the table at @path (NULL: the
 * registry header, the whole domain) and bump its ctl_gen. Attaching the whole domain also
 * lifts every per-process evacuation. 0 or -errno (another user's table: -EACCES). */
int nsk_ctl_request(struct nsk_domain *d, const char *path, uint32_t want_tcp);

/* nsk_ctl_count - count the connection ends of the table at @path (NULL: every table). */
void nsk_ctl_count(const struct nsk_domain *d, const char *path, struct nsk_ctl_count *n);

/* nsk_cli_ctl - `nearsock evacuate|attach PID|--all [--dir DIR] [--wait SECONDS]`, @argv
 * after the command name. Exit code: 0 done (or requested, without --wait), 1 failed or not
 * complete in time, 2 usage. */
int nsk_cli_ctl(const char *cmd, int argc, char **argv);

#endif
