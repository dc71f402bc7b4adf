/* SPDX-License-Identifier: MIT */
/* verify.h — proof of a peer's identity before a channel is shared, in a domain shared by
 * several users (nsk_domain.shared). There any member can write the registry and send offers,
 * so the client proves that the process it offers its segment to owns the server end of its
 * TCP connection, and the server proves that the process that sent an offer owns the client
 * end — from the kernel's own records (sock_diag socket owners, SCM_CREDENTIALS, /proc). A
 * failed proof leaves the connection on TCP. In a private per-user domain every member is the
 * same user and these checks are skipped. */
#ifndef NSK_VERIFY_H
#define NSK_VERIFY_H

#include <sys/socket.h>

#include "core/layout.h"

/* nsk_verify_listener - client side: may the offer for connection @c go to the rendezvous
 * socket @rv_path named by registry entry @e? Requires: @rv_path is a socket owned by the uid
 * owning the listening socket @c connected to (and the server end of @c), its name carries
 * @e's pid, and — when this process may read /proc/PID/fd — that pid holds the listening
 * socket. 0, or -EACCES with the reason in @why. */
int nsk_verify_listener(const struct nsk_conn *c, const struct nsk_reg_entry *e,
                        const char *rv_path, const char **why);
/* nsk_verify_offerer - server side: may we claim offer @o for connection @c, received with
 * the sender's credentials @cr? Requires: credentials present, their pid the offer's, their uid
 * the owner of the client end of @c, and — when /proc/PID/fd is readable — that pid holding
 * it. 0, or -EACCES with the reason in @why. */
int nsk_verify_offerer(const struct nsk_conn *c, const struct nsk_offer *o, const struct ucred *cr,
                       const char **why);

#endif
