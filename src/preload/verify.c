/* SPDX-License-Identifier: MIT */
/* verify.c — peer identity proofs for shared domains (see verify.h). */
#include "preload/verify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "platform/linux.h"

/* The pid a rendezvous socket name carries (rv-PID-RANDOM), or 0. */
static uint32_t rv_pid(const char *path)
{
	const char *name = strrchr(path, '/');
	name = name ? name + 1 : path;
	if (strncmp(name, "rv-", 3) != 0)
		return 0;
	char *end;
	unsigned long pid = strtoul(name + 3, &end, 10);
	return *end == '-' && pid > 0 && pid < UINT32_MAX ? (uint32_t)pid : 0;
}

int nsk_verify_listener(const struct nsk_conn *c, const struct nsk_reg_entry *e,
                        const char *rv_path, const char **why)
{
	static const uint8_t any[16];
	uint32_t luid, suid;
	uint64_t lino, sino;
	/* The listening socket for the address we connected to (lookup with no remote end). */
	if (nsk_tcp_sock_owner(c->family, any, 0, c->raddr, c->rport, &luid, &lino) < 0) {
		*why = "listening socket not found";
		return -EACCES;
	}
	/* The server end of our own connection: the same user must own it. */
	if (nsk_tcp_sock_owner(c->family, c->laddr, c->lport, c->raddr, c->rport, &suid, &sino) <
	        0 ||
	    suid != luid) {
		*why = "server end of the connection not owned by the listener's user";
		return -EACCES;
	}
	struct stat st;
	if (lstat(rv_path, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_uid != luid) {
		*why = "rendezvous socket not owned by the listener's user";
		return -EACCES;
	}
	if (rv_pid(rv_path) != e->pid) {
		*why = "rendezvous socket name and registry pid differ";
		return -EACCES;
	}
	/* Pid-level proof where we may look (same user, or root); the uid proof above is what
	 * holds across users. */
	int h = nsk_proc_has_socket((pid_t)e->pid, lino);
	if (h == 0) {
		*why = "registry pid does not hold the listening socket";
		return -EACCES;
	}
	return 0;
}

int nsk_verify_offerer(const struct nsk_conn *c, const struct nsk_offer *o, const struct ucred *cr,
                       const char **why)
{
	if (cr->pid <= 0 || cr->uid == (uid_t)-1) {
		*why = "offer without credentials";
		return -EACCES;
	}
	if ((uint32_t)cr->pid != o->pid) {
		*why = "offer pid differs from its sender's";
		return -EACCES;
	}
	uint32_t cuid;
	uint64_t cino;
	/* The client end of our connection (its own end is our remote address). */
	if (nsk_tcp_sock_owner(c->family, c->laddr, c->lport, c->raddr, c->rport, &cuid, &cino) <
	    0) {
		*why = "client end of the connection not found";
		return -EACCES;
	}
	if (cuid != cr->uid) {
		*why = "offer sent by another user than the client end's owner";
		return -EACCES;
	}
	if (cino && nsk_proc_has_socket(cr->pid, cino) == 0) {
		*why = "offer sender does not hold the client end";
		return -EACCES;
	}
	return 0;
}
