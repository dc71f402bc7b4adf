/* SPDX-License-Identifier: MIT */
/* domain.h — what co-resident endpoints share on one host: a directory (default
 * /dev/shm/nearsock-UID, mode 0700; NEARSOCK_DIR overrides) holding the registry file, one
 * connection-table file per process, and the processes' rendezvous sockets. The directory's
 * permissions decide who may take part: by default only its owner (a private 0700 directory
 * of ours). A domain shared by several users exists only where an administrator made one: a
 * directory owned by root, group-accessible, setgid and sticky (mode 3770), holding a root-owned
 * marker file NSK_SHARED_MARKER; its members must prove peer identities (see verify.c). */
#ifndef NSK_DOMAIN_H
#define NSK_DOMAIN_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/layout.h"
#include "core/registry.h"

#define NSK_SHARED_MARKER "nearsock-shared"

struct nsk_domain {
	char dir[PATH_MAX];
	int shared; /* an administrator's cross-user domain (files group-accessible, peers verified) */
	struct nsk_registry reg;
	void *reg_base;
};

/* nsk_domain_default_dir - NEARSOCK_DIR or /dev/shm/nearsock-UID into @buf. */
void nsk_domain_default_dir(char *buf, size_t len);
/* nsk_domain_open - create (if needed) and check the directory, then map its registry
 * (creating and formatting it under an flock if new). @dir NULL means the default.
 * Returns 0 or -errno: -EACCES/-EPERM for a directory we must not trust (wrong owner,
 * group/world access without a valid shared-domain set-up), -EPROTO for a malformed registry,
 * -ENOSPC when /dev/shm is full. */
int nsk_domain_open(struct nsk_domain *d, const char *dir, int create);
void nsk_domain_close(struct nsk_domain *d);

/* Per-process connection table (struct nsk_proc_hdr + slots). */
struct nsk_proctab {
	struct nsk_proc_hdr *hdr;
	struct nsk_conn *conns;
	char path[PATH_MAX];
	int fd; /* kept open (close-on-exec, >= 64): backing after a setuid, exec hand-over; or -1 */
};
/* nsk_proctab_create - create and map DIR/proc-PID for this process. 0 or -errno. */
int nsk_proctab_create(struct nsk_proctab *t, const struct nsk_domain *d);
/* nsk_proctab_map - map an existing table read-only (status tool). 0 or -errno. */
int nsk_proctab_map(struct nsk_proctab *t, const char *path);
/* nsk_proctab_map_fd - map a table read-write from an inherited descriptor (exec). */
int nsk_proctab_map_fd(struct nsk_proctab *t, int fd);
void nsk_proctab_unmap(struct nsk_proctab *t);
/* nsk_proctab_alloc - take a free slot (thread- and fork-safe) for @pid; backing memory is
 * allocated first so that a full /dev/shm yields NULL, never SIGBUS. */
struct nsk_conn *nsk_proctab_alloc(struct nsk_proctab *t, pid_t pid);
void nsk_proctab_free(struct nsk_proctab *t, struct nsk_conn *c);
/* nsk_proctab_readable - number of leading slots that may be read (handed out and backed). */
uint32_t nsk_proctab_readable(const struct nsk_proctab *t);
/* nsk_proctab_in_use - slots owned by live processes other than @self. */
int nsk_proctab_in_use(struct nsk_proctab *t, pid_t self);

/* nsk_domain_check_shared - whether @dir (already lstat()ed as @st) is a valid shared domain:
 * owned by root, mode 3770 exactly (setgid: files get the domain's group; sticky: members
 * cannot remove or replace each other's files; nothing for others), and a marker file
 * NSK_SHARED_MARKER owned by root and writable by nobody else. 0 or -EACCES. */
struct stat;
int nsk_domain_check_shared(const char *dir, const struct stat *st);

/* nsk_rv_path - full path of rendezvous socket @name into @buf; -ENAMETOOLONG if it does not
 * fit a sockaddr_un. */
int nsk_rv_path(const struct nsk_domain *d, const char *name, char *buf, size_t len);

#endif
