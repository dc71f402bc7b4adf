/* SPDX-License-Identifier: MIT */
/* vm.h — `nearsock vm init` (format an ivshmem region file before the VMs start) and
 * `nearsock vm status` (its members, chunk usage, offers and listeners, on the host or in a
 * guest). */
#ifndef NSK_CLI_VM_H
#define NSK_CLI_VM_H

/* nsk_cli_vm - run `nearsock vm SUBCOMMAND ARGS...` (@argv[0] is the subcommand). Exit code. */
int nsk_cli_vm(int argc, char **argv);

#endif
