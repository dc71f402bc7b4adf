/* SPDX-License-Identifier: MIT */
/* status.h — `nearsock status` and `nearsock gc`: read the domain's registry and the
 * per-process connection tables. */
#ifndef NSK_CLI_STATUS_H
#define NSK_CLI_STATUS_H

/* nsk_cli_status - print listeners and connections (@json: one JSON document). Exit code. */
int nsk_cli_status(const char *dir, int json);
/* nsk_cli_gc - retire registry entries, tables and rendezvous sockets of dead processes. */
int nsk_cli_gc(const char *dir);

#endif
