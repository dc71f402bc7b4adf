/* SPDX-License-Identifier: MIT */
/* inherit.c — connections across exec. A socket without FD_CLOEXEC survives exec, but the
 * library's knowledge of it (its channel mapping, its slot in the connection table) does
 * not. Before the exec we settle every such connection (an upgrade in progress is withdrawn
 * or completed) and describe the ones that run through shared memory in NEARSOCK_INHERIT,
 * keeping their channel memfd and the connection table open across the exec; the new
 * image's constructor maps them again and carries on exactly where the old one stopped
 * (the byte counts, switch points and locks live in the shared table, not in the image).
 *
 * Wrapped: execve, execv, execvp, execvpe, execl, execlp, execle, fexecve, execveat,
 * posix_spawn, posix_spawnp. The work before the exec uses no malloc (it may run in a vfork
 * child, in the parent's memory). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"
#include "preload/fdtab.h"
#include "preload/real.h"
#include "preload/sock.h"
#include "preload/udp.h"

#define ENV_NAME "NEARSOCK_INHERIT"
#define ENV_PREFIX ENV_NAME "="
#define ENTRY_MAX 96 /* bytes per described connection, generous */

extern char **environ;

/* ------------------------------------------------------------- connection tables ------ */
/* Table 0 is this image's own; the others were inherited through an exec. */
#define TABLES_MAX 16
static struct nsk_proctab tables[TABLES_MAX];
static int ntables = 1;

static int tab_fd(int id)
{
	return id == 0 ? nsk_g.tab.fd : tables[id].fd;
}

static const struct nsk_proctab *tab(int id)
{
	return id == 0 ? &nsk_g.tab : &tables[id];
}

/* ------------------------------------------------------------- before the exec ------- */

struct exec_ctx {
	char *buf;       /* mmap'ed: the variable, then the new envp */
	size_t cap, len, total;
	int own_memory;  /* a real child of its own (fork): not a vfork child or a spawn */
	int need_rv;     /* a server candidate is passed: so is the rendezvous socket */
	uint64_t gen;
	/* rollback if the exec fails */
	int *cleared;    /* descriptors whose FD_CLOEXEC we cleared */
	int ncleared;
	struct nsk_conn **held; /* holders changed, and by how much */
	int *delta;
	int nheld;
	int nmax;
};

static void put(struct exec_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct exec_ctx *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(x->buf + x->len, x->cap - x->len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < x->cap - x->len)
		x->len += (size_t)n;
}

static void clear_cloexec(struct exec_ctx *x, int fd)
{
	int fl = REAL(fcntl)(fd, F_GETFD);
	if (fl < 0 || !(fl & FD_CLOEXEC) || x->ncleared >= x->nmax)
		return;
	if (REAL(fcntl)(fd, F_SETFD, fl & ~FD_CLOEXEC) == 0)
		x->cleared[x->ncleared++] = fd;
}

static void holders_add(struct exec_ctx *x, struct nsk_conn *c, int d)
{
	if (x->nheld >= x->nmax)
		return;
	atomic_fetch_add_explicit(NSK_A32(&c->holders), (uint32_t)d, memory_order_relaxed);
	x->held[x->nheld] = c;
	x->delta[x->nheld++] = d;
}

static int counted;  /* tracked fds, for sizing */

static void count_visit(int fd, void *obj, void *arg)
{
	(void)fd;
	(void)obj;
	(void)arg;
	counted++;
}

/* Pass 1: which objects keep at least one fd across the exec. */
static void keep_visit(int fd, void *obj, void *arg)
{
	struct exec_ctx *x = arg;
	struct nsk_sock *s = obj;
	int fl = REAL(fcntl)(fd, F_GETFD);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		s->exec_keep = x->gen;
}

/* Pass 2: settle each object once; close-on-exec-only objects lose a holder. */
static void settle_visit(int fd, void *obj, void *arg)
{
	struct exec_ctx *x = arg;
	struct nsk_sock *s = nsk_sock_enter(fd);
	if (s != obj) {
		if (s)
			nsk_sock_leave(s);
		return;
	}
	if (s->exec_seen != x->gen) {
		s->exec_seen = x->gen;
		if (s->exec_keep != x->gen) {
			/* Every fd of it closes at the exec: this process stops holding it. */
			if (x->own_memory && s->conn && nsk_load32(&s->conn->holders) > 1)
				holders_add(x, s->conn, -1);
		} else {
			int memfd = -1, side = -1;
			uint64_t nonce = 0;
			s->exec_pass = nsk_sock_exec_state(s, 0, &memfd, &side, &nonce);
			if (s->exec_pass == 2 && s->kind == NSK_CK_SERVER)
				x->need_rv = 1; /* its offer will come to the rendezvous socket */
			if (s->exec_pass == 1) {
				s->exec_memfd = memfd;
				s->exec_side = side;
				s->exec_nonce = nonce;
				if (memfd >= 0)
					clear_cloexec(x, memfd);
			}
			/* A spawned or vforked image holds it besides this process. */
			if (s->exec_pass && !x->own_memory)
				holders_add(x, s->conn, 1);
		}
	}
	nsk_sock_leave(s);
}

struct emit_arg {
	struct exec_ctx *x;
	int tab_id;
};

/* Pass 3: one entry per inherited fd of table @tab_id. */
static void emit_visit(int fd, void *obj, void *arg)
{
	struct emit_arg *e = arg;
	struct nsk_sock *s = obj;
	if (s->exec_keep != e->x->gen || !s->exec_pass || s->tab_id != e->tab_id || !s->conn)
		return;
	int fl = REAL(fcntl)(fd, F_GETFD);
	if (fl < 0 || (fl & FD_CLOEXEC))
		return;
	const struct nsk_proctab *t = tab(s->tab_id);
	long slot = s->conn - t->conns;
	if (s->exec_pass == 2)
		put(e->x, "C%d,%d,%d,%ld,%d;", fd, s->family, s->kind, slot, s->reg_slot);
	else
		put(e->x, "%d,%d,%d,%ld,%d,%d,%" PRIx64 ";", fd, s->family, s->kind, slot,
		    s->exec_memfd, s->exec_side, s->exec_nonce);
}

static void rollback(struct exec_ctx *x)
{
	for (int i = 0; i < x->ncleared; i++) {
		int fl = REAL(fcntl)(x->cleared[i], F_GETFD);
		if (fl >= 0)
			REAL(fcntl)(x->cleared[i], F_SETFD, fl | FD_CLOEXEC);
	}
	for (int i = 0; i < x->nheld; i++)
		atomic_fetch_sub_explicit(NSK_A32(&x->held[i]->holders), (uint32_t)x->delta[i],
					  memory_order_relaxed);
}

/* Prepare an exec with environment @envp (NULL: environ). Returns the envp to pass (ours or
 * @envp itself when there is nothing to inherit). */
static char *const *prepare(struct exec_ctx *x, char *const *envp, int own_memory)
{
	memset(x, 0, sizeof(*x));
	if (!envp)
		envp = environ;
	if (nsk_g.disabled || __atomic_load_n(&nsk_g.domain_state, __ATOMIC_ACQUIRE) <= 0)
		return envp;
	/* This image's UDP inboxes go away with it: withdraw them, so that senders use the
	 * kernel (which the new image reads) instead of filling an inbox nobody reads. Not from
	 * a vfork child or a spawn: the parent keeps reading them. */
	if (own_memory)
		nsk_udp_before_exec();
	counted = 0;
	nsk_fdmap_foreach(&nsk_socks, count_visit, NULL);
	if (!counted)
		return envp;
	size_t nenv = 0;
	while (envp[nenv])
		nenv++;
	int nmax = counted + TABLES_MAX;
	x->cap = sizeof(ENV_PREFIX) + 32 + (size_t)counted * ENTRY_MAX + TABLES_MAX * 16;
	size_t arrays = (size_t)nmax * (sizeof(int) * 2 + sizeof(void *)) + 16 +
			(nenv + 2) * sizeof(char *);
	size_t total = (x->cap + arrays + 4095) & ~(size_t)4095;
	void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return envp;
	x->buf = m;
	x->total = total;
	x->nmax = nmax;
	x->held = (struct nsk_conn **)((char *)m + x->cap + (8 - x->cap % 8) % 8);
	x->delta = (int *)(x->held + nmax);
	x->cleared = x->delta + nmax;
	uintptr_t envp_at = ((uintptr_t)(x->cleared + nmax) + 7) & ~(uintptr_t)7;
	char **newenv = (char **)envp_at;
	x->own_memory = own_memory;
	static uint64_t gens;
	x->gen = __atomic_add_fetch(&gens, 1, __ATOMIC_RELAXED);

	nsk_fdmap_foreach(&nsk_socks, keep_visit, x);
	nsk_fdmap_foreach(&nsk_socks, settle_visit, x);
	put(x, "%s1;", ENV_PREFIX);
	size_t header = x->len;
	for (int id = 0; id < ntables; id++) {
		int tfd = tab_fd(id);
		if (!tab(id)->hdr)
			continue;
		if (tfd >= 0 && REAL(fcntl)(tfd, F_GETFD) < 0)
			tfd = -1; /* closed by the application: the new image resets these */
		size_t before = x->len;
		put(x, "T%d;", tfd);
		size_t after_t = x->len;
		struct emit_arg e = {.x = x, .tab_id = id};
		nsk_fdmap_foreach(&nsk_socks, emit_visit, &e);
		if (x->len == after_t)
			x->len = before; /* nothing from this table */
		else if (tfd >= 0)
			clear_cloexec(x, tfd);
	}
	if (x->need_rv && x->len > header && nsk_g.rv_fd >= 0) {
		clear_cloexec(x, nsk_g.rv_fd);
		put(x, "R%d,%s;", nsk_g.rv_fd, nsk_g.rv_name);
		nsk_sock_exec_requeue(); /* offers drained here go back for the new image */
	}
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++)
		if (strncmp(envp[i], ENV_PREFIX, sizeof(ENV_PREFIX) - 1))
			newenv[k++] = envp[i];
	if (x->len > header)
		newenv[k++] = x->buf;
	newenv[k] = NULL;
	return newenv;
}

static void finish(struct exec_ctx *x)
{
	int saved = errno;
	rollback(x);
	if (x->buf)
		munmap(x->buf, x->total);
	x->buf = NULL;
	errno = saved;
}

/* Inside a vfork child (or a clone sharing our memory) the pid differs from ours. */
static int own_memory(void)
{
	return getpid() == nsk_g.pid;
}

#define RESOLVE(var, name)                                                                 \
	do {                                                                               \
		if (!var)                                                                  \
			*(void **)&var = dlsym(RTLD_NEXT, name);                           \
		if (!var) {                                                                \
			errno = ENOSYS;                                                    \
			return -1;                                                         \
		}                                                                          \
	} while (0)

int execve(const char *path, char *const argv[], char *const envp[])
{
	static int (*real)(const char *, char *const[], char *const[]);
	RESOLVE(real, "execve");
	struct exec_ctx x;
	char *const *env = prepare(&x, envp, own_memory());
	int r = real(path, argv, env);
	finish(&x);
	return r;
}

int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

int execvpe(const char *file, char *const argv[], char *const envp[])
{
	static int (*real)(const char *, char *const[], char *const[]);
	RESOLVE(real, "execvpe");
	struct exec_ctx x;
	char *const *env = prepare(&x, envp, own_memory());
	int r = real(file, argv, env);
	finish(&x);
	return r;
}

int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
	static int (*real)(int, char *const[], char *const[]);
	RESOLVE(real, "fexecve");
	struct exec_ctx x;
	char *const *env = prepare(&x, envp, own_memory());
	int r = real(fd, argv, env);
	finish(&x);
	return r;
}

int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	static int (*real)(int, const char *, char *const[], char *const[], int);
	RESOLVE(real, "execveat");
	struct exec_ctx x;
	char *const *env = prepare(&x, envp, own_memory());
	int r = real(dirfd, path, argv, env, flags);
	finish(&x);
	return r;
}

/* execl, execlp, execle: the argument list onto the stack (no malloc: vfork children). */
#define ARGS_MAX 4096
enum { L_PATH, L_SEARCH, L_ENV };

static int execl_common(int how, const char *path, const char *arg, va_list ap)
{
	char *argv[ARGS_MAX + 1];
	int n = 1;
	argv[0] = (char *)arg;
	while (argv[n - 1] && n < ARGS_MAX)
		argv[n++] = va_arg(ap, char *);
	if (argv[n - 1]) {
		errno = E2BIG;
		return -1;
	}
	if (how == L_SEARCH)
		return execvpe(path, argv, environ);
	return execve(path, argv, how == L_ENV ? va_arg(ap, char *const *) : environ);
}

int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = execl_common(L_PATH, path, arg, ap);
	va_end(ap);
	return r;
}

int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = execl_common(L_SEARCH, file, arg, ap);
	va_end(ap);
	return r;
}

int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	int r = execl_common(L_ENV, path, arg, ap);
	va_end(ap);
	return r;
}

static int spawn(int (*real)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			     const posix_spawnattr_t *, char *const[], char *const[]),
		 pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct exec_ctx x;
	/* The child is a new holder; this process keeps its own copies. */
	char *const *env = prepare(&x, envp, 0);
	int r = real(pid, path, fa, attr, argv, env);
	/* Our descriptors go back to close-on-exec either way; the holder counts stay only if
	 * the child exists. */
	for (int i = 0; i < x.ncleared; i++) {
		int fl = REAL(fcntl)(x.cleared[i], F_GETFD);
		if (fl >= 0)
			REAL(fcntl)(x.cleared[i], F_SETFD, fl | FD_CLOEXEC);
	}
	x.ncleared = 0;
	if (r == 0)
		x.nheld = 0;
	finish(&x);
	return r;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	static int (*real)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "posix_spawn");
	if (!real)
		return ENOSYS;
	return spawn(real, pid, path, fa, attr, argv, envp);
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	static int (*real)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "posix_spawnp");
	if (!real)
		return ENOSYS;
	return spawn(real, pid, file, fa, attr, argv, envp);
}

/* ------------------------------------------------------------- in the new image ----- */

static int parse_long(const char **p, long *out, int base)
{
	char *end;
	errno = 0;
	long v = strtol(*p, &end, base);
	if (end == *p || errno)
		return -1;
	*out = v;
	*p = end;
	return 0;
}

/* Map inherited table @fd (read-write) as table id; -1 on failure. */
static int map_table(int fd)
{
	if (ntables >= TABLES_MAX)
		return -1;
	int id = ntables;
	if (nsk_proctab_map_fd(&tables[id], fd) < 0)
		return -1;
	/* A plain exec: the table is this process's own (same pid, same start time); it stays
	 * ours, visible to `nearsock status`, instead of being replaced. */
	if (!nsk_g.tab.hdr && tables[id].hdr->pid == (uint32_t)getpid() &&
	    tables[id].hdr->start_time == nsk_proc_start_time(getpid())) {
		nsk_g.tab = tables[id];
		char dir[PATH_MAX - 32];
		nsk_domain_default_dir(dir, sizeof(dir));
		snprintf(nsk_g.tab.path, sizeof(nsk_g.tab.path), "%s/proc-%d", dir, (int)getpid());
		nsk_g.tab.fd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 64);
		REAL(close)(fd);
		memset(&tables[id], 0, sizeof(tables[id]));
		return 0;
	}
	/* Keep it (close-on-exec, out of the application's way) for the next exec. */
	tables[id].fd = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 64);
	REAL(close)(fd);
	ntables++;
	return id;
}

struct adopted {
	struct nsk_conn *c;
	int fd;
};

void nsk_inherit_adopt(void)
{
	const char *v = getenv(ENV_NAME);
	if (!v)
		return;
	char *copy = strdup(v);
	unsetenv(ENV_NAME); /* ours alone: a later exec describes its own state */
	if (!copy)
		return;
	const char *p = copy;
	if (strncmp(p, "1;", 2)) {
		nsk_log(NSK_LOG_WARN, "malformed %s ignored", ENV_NAME);
		free(copy);
		return;
	}
	p += 2;
	int cur = -1;
	struct adopted seen[256];
	int nseen = 0;
	while (*p) {
		long a[6];
		if (*p == 'T') {
			p++;
			long tfd;
			if (parse_long(&p, &tfd, 10) < 0 || *p != ';')
				break;
			p++;
			cur = tfd >= 0 ? map_table((int)tfd) : -1;
			if (nsk_g.disabled || !nsk_domain_ready()) {
				nsk_log(NSK_LOG_WARN, "connections inherited across exec cannot be "
						      "adopted (domain unusable): they are reset");
				cur = -1;
			}
			continue;
		}
		if (*p == 'R') {
			/* R<fd>,<name>; the rendezvous socket */
			p++;
			long rfd;
			const char *semi;
			if (parse_long(&p, &rfd, 10) < 0 || *p != ',' || !(semi = strchr(p, ';')))
				break;
			char name[64];
			size_t nl = (size_t)(semi - p - 1);
			if (nl < sizeof(name)) {
				memcpy(name, p + 1, nl);
				name[nl] = 0;
				nsk_sock_adopt_rv((int)rfd, name);
			}
			p = semi + 1;
			continue;
		}
		if (*p == 'C') {
			/* C<fd>,<family>,<kind>,<slot>,<listener slot>; a candidate on TCP */
			p++;
			int okc = 1;
			for (int i = 0; i < 5 && okc; i++)
				okc = parse_long(&p, &a[i], 10) == 0 && *p++ == (i < 4 ? ',' : ';');
			if (!okc)
				break;
			struct stat cst;
			if (cur >= 0 && a[3] >= 0 && (uint64_t)a[3] < nsk_proctab_readable(tab(cur)) &&
			    fstat((int)a[0], &cst) == 0 && S_ISSOCK(cst.st_mode)) {
				struct nsk_conn *c = &tab(cur)->conns[a[3]];
				struct nsk_sock *d = NULL;
				for (int i = 0; i < nseen && !d; i++)
					if (seen[i].c == c)
						d = nsk_fd_get(seen[i].fd);
				if (d) { /* another fd of the same socket (dup) */
					atomic_fetch_add(&d->refs, 1);
					nsk_fd_set((int)a[0], d);
				} else if (nsk_sock_adopt_candidate((int)a[0], (int)a[1], (int)a[2], c,
								    (int)a[4]) == 0) {
					struct nsk_sock *s = nsk_fd_get((int)a[0]);
					if (s)
						s->tab_id = cur;
					if (nseen < 256)
						seen[nseen++] = (struct adopted){c, (int)a[0]};
				}
			}
			continue;
		}
		int ok = 1;
		for (int i = 0; i < 6 && ok; i++)
			ok = parse_long(&p, &a[i], 10) == 0 && *p++ == ',';
		unsigned long long nonce = 0;
		char *end;
		if (ok) {
			nonce = strtoull(p, &end, 16);
			ok = end != p && *end == ';';
			p = ok ? end + 1 : p;
		}
		if (!ok) {
			nsk_log(NSK_LOG_WARN, "malformed %s entry ignored", ENV_NAME);
			break;
		}
		int fd = (int)a[0], memfd = (int)a[4];
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
			if (memfd >= 0)
				REAL(close)(memfd);
			continue;
		}
		if (cur < 0 || a[3] < 0 || (uint64_t)a[3] >= nsk_proctab_readable(tab(cur))) {
			/* Its state is lost: fail it rather than show control bytes as data. */
			if (memfd >= 0)
				REAL(close)(memfd);
			nsk_log(NSK_LOG_WARN, "fd %d: connection inherited across exec without its "
					      "state: reset", fd);
			struct nsk_sock *s = nsk_sock_new(fd, (int)a[1], (int)a[2]);
			if (s) {
				nsk_store32(&s->conn->mode, NSK_MODE_BROKEN);
				nsk_fd_set(fd, s);
			}
			continue;
		}
		struct nsk_conn *c = &tab(cur)->conns[a[3]];
		/* A connection at several fds (dup) is one object. */
		int dup_of = -1;
		for (int i = 0; i < nseen; i++)
			if (seen[i].c == c)
				dup_of = seen[i].fd;
		if (dup_of >= 0) {
			struct nsk_sock *s = nsk_fd_get(dup_of);
			if (s) {
				atomic_fetch_add(&s->refs, 1);
				nsk_fd_set(fd, s);
			}
		} else {
			nsk_sock_adopt(fd, (int)a[1], (int)a[2], c, memfd, (int)a[5], nonce);
			struct nsk_sock *s = nsk_fd_get(fd);
			if (s)
				s->tab_id = cur;
			if (nseen < 256)
				seen[nseen++] = (struct adopted){c, fd};
		}
		if (memfd >= 0)
			REAL(close)(memfd);
	}
	free(copy);
}
