/* SPDX-License-Identifier: MIT */
/* nearsock — the command line: run a program with the preload library, show the domain's
 * status and metrics, clean up after dead processes, move connections between shared memory
 * and TCP (evacuate/attach), format and inspect ivshmem regions for VMs (vm), and reach the
 * benchmark and dimensioning tools. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "metrics.h"
#include "status.h"
#include "vm.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nearsock run [--dir DIR] [--disable] -- PROGRAM [ARGS...]\n"
		"       nearsock status [--dir DIR] [--json]\n"
		"       nearsock gc [--dir DIR]\n"
		"       nearsock metrics [--dir DIR]      (Prometheus text format)\n"
		"       nearsock evacuate PID|--all [--dir DIR] [--wait SECONDS]   (to TCP)\n"
		"       nearsock attach PID|--all [--dir DIR] [--wait SECONDS]     (to shared memory)\n"
		"       nearsock bench [ARGS...]       (see nearsock bench --help)\n"
		"       nearsock dimension [ARGS...]   (see nearsock dimension --help)\n"
		"       nearsock vm init FILE --size N [--force]   (format an ivshmem region)\n"
		"       nearsock vm status FILE|auto [--json]      (its members, chunks, offers)\n"
		"environment: NEARSOCK_DIR, NEARSOCK_DISABLE=1, NEARSOCK_LOG=debug|info|warn,\n"
		"             NEARSOCK_RING_SIZE, NEARSOCK_SPIN_US, NEARSOCK_OFFER_TIMEOUT_MS\n");
}

/* Directory of this executable. */
static int self_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *slash = strrchr(buf, '/');
	if (!slash)
		return -1;
	*slash = 0;
	return 0;
}

/* The preload library: next to the binary (build tree) or in PREFIX/lib/nearsock. */
static int find_library(char *out, size_t len)
{
	char dir[PATH_MAX];
	if (self_dir(dir, sizeof(dir)) < 0)
		return -1;
	const char *cands[] = {"%s/libnearsock.so", "%s/../lib/nearsock/libnearsock.so"};
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		char p[PATH_MAX];
		if (snprintf(p, sizeof(p), cands[i], dir) >= (int)sizeof(p))
			continue;
		if (access(p, R_OK) == 0 && realpath(p, out)) {
			(void)len;
			return 0;
		}
	}
	return -1;
}

/* Resolve @prog like execvp would (a name without '/' is searched in PATH). */
static int which(const char *prog, char *out, size_t len)
{
	if (strchr(prog, '/'))
		return snprintf(out, len, "%s", prog) < (int)len ? 0 : -1;
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		if (snprintf(out, len, "%.*s/%s", (int)n, n ? path : ".", prog) < (int)len &&
		    access(out, X_OK) == 0)
			return 0;
		path += n + (end ? 1 : 0);
	}
	return -1;
}

/* A statically linked program cannot be preloaded: it runs, on plain TCP, and its peers
 * simply see a TCP peer. Say so instead of letting the user wonder why nothing changed. */
static void warn_if_static(const char *prog)
{
	char path[PATH_MAX];
	if (which(prog, path, sizeof(path)) < 0)
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	Elf64_Ehdr eh;
	int dynamic = 1, elf = 0;
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
	    !memcmp(eh.e_ident, ELFMAG, SELFMAG) && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
	    eh.e_phentsize == sizeof(Elf64_Phdr)) {
		elf = 1;
		dynamic = 0;
		for (int k = 0; k < eh.e_phnum; k++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)k * sizeof(ph))) !=
			    (ssize_t)sizeof(ph))
				break;
			if (ph.p_type == PT_INTERP)
				dynamic = 1;
		}
	}
	close(fd);
	if (elf && !dynamic)
		fprintf(stderr, "nearsock run: %s is statically linked: it cannot be accelerated and "
				"will use plain TCP (its peers still work)\n", path);
}

static int cmd_run(int argc, char **argv)
{
	int i = 0;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			setenv("NEARSOCK_DIR", argv[++i], 1);
		} else if (!strcmp(argv[i], "--disable")) {
			setenv("NEARSOCK_DISABLE", "1", 1);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "nearsock run: unknown option %s\n", argv[i]);
			return 2;
		} else {
			break;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "nearsock run: no program given\n");
		usage(stderr);
		return 2;
	}
	char lib[PATH_MAX];
	if (find_library(lib, sizeof(lib)) < 0) {
		fprintf(stderr, "nearsock run: libnearsock.so not found next to this binary or in "
				"../lib/nearsock\n");
		return 1;
	}
	const char *old = getenv("LD_PRELOAD");
	if (old && *old) {
		char *v;
		if (asprintf(&v, "%s:%s", lib, old) < 0)
			return 1;
		setenv("LD_PRELOAD", v, 1);
	} else {
		setenv("LD_PRELOAD", lib, 1);
	}
	warn_if_static(argv[i]);
	execvp(argv[i], argv + i);
	fprintf(stderr, "nearsock run: cannot execute %s: %s\n", argv[i], strerror(errno));
	return 127;
}

static int exec_sibling(const char *name, int argc, char **argv)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (self_dir(dir, sizeof(dir)) < 0)
		return 1;
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return 1;
	char **args = calloc((size_t)argc + 2, sizeof(char *));
	if (!args)
		return 1;
	args[0] = path;
	for (int i = 0; i < argc; i++)
		args[i + 1] = argv[i];
	execv(path, args);
	fprintf(stderr, "nearsock: cannot execute %s: %s\n", path, strerror(errno));
	return 127;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 2, argv + 2);
	if (!strcmp(cmd, "evacuate") || !strcmp(cmd, "attach"))
		return nsk_cli_ctl(cmd, argc - 2, argv + 2);
	if (!strcmp(cmd, "status") || !strcmp(cmd, "gc") || !strcmp(cmd, "metrics")) {
		const char *dir = NULL;
		int json = 0;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--json") && !strcmp(cmd, "status"))
				json = 1;
			else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
				dir = argv[++i];
			else {
				fprintf(stderr, "nearsock %s: unknown argument %s\n", cmd, argv[i]);
				return 2;
			}
		}
		if (!strcmp(cmd, "metrics"))
			return nsk_cli_metrics(dir);
		return !strcmp(cmd, "gc") ? nsk_cli_gc(dir) : nsk_cli_status(dir, json);
	}
	if (!strcmp(cmd, "vm"))
		return nsk_cli_vm(argc - 2, argv + 2);
	if (!strcmp(cmd, "bench"))
		return exec_sibling("nearsock-bench", argc - 2, argv + 2);
	if (!strcmp(cmd, "dimension"))
		return exec_sibling("nearsock-dimension", argc - 2, argv + 2);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "nearsock: unknown command %s\n", cmd);
	usage(stderr);
	return 2;
}
