/* SPDX-License-Identifier: MIT */
/* domain_test.c — unit tests of the domain (domain.c): directory trust checks (mode, owner,
 * type, missing parent), NEARSOCK_DIR, the registry file (creation, concurrent creation,
 * wrong size or header → -EPROTO), rendezvous paths, and the per-process connection table
 * (alloc/free up to exhaustion, slot reuse, distinct slots across threads and a forked
 * child, read-only mapping). */
#include "core/domain.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "core/atomics.h"
#include "core/test_util.h"
#include "platform/linux.h"

static uint64_t seed;
static char base[128]; /* private scratch directory (mode 0700) */

/* ---------------------------------------------------------------- helpers ------------- */

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", base, name);
}

static void rm_rf(const char *p)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p);
	CHECK(system(cmd) == 0);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	if (len)
		CHECK(write(fd, buf, len) == (ssize_t)len);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	return st.st_size;
}

/* ---------------------------------------------------------------- directory ----------- */

static void test_default_dir(void)
{
	char buf[PATH_MAX], want[64];
	unsetenv("NEARSOCK_DIR");
	nsk_domain_default_dir(buf, sizeof(buf));
	snprintf(want, sizeof(want), "/dev/shm/nearsock-%u", (unsigned)getuid());
	CHECK(strcmp(buf, want) == 0);
	setenv("NEARSOCK_DIR", "", 1); /* empty: ignored */
	nsk_domain_default_dir(buf, sizeof(buf));
	CHECK(strcmp(buf, want) == 0);
	char env[256];
	path_of(env, sizeof(env), "envdir");
	setenv("NEARSOCK_DIR", env, 1);
	nsk_domain_default_dir(buf, sizeof(buf));
	CHECK(strcmp(buf, env) == 0);
	/* open(NULL) uses it, creating the directory */
	struct nsk_domain d;
	CHECK_EQ(nsk_domain_open(&d, NULL, 1), 0);
	CHECK(strcmp(d.dir, env) == 0);
	struct stat st;
	CHECK(stat(env, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	nsk_domain_close(&d);
	/* a NEARSOCK_DIR with group access is refused like any other directory */
	CHECK(chmod(env, 0750) == 0);
	CHECK_EQ(nsk_domain_open(&d, NULL, 1), -EACCES);
	unsetenv("NEARSOCK_DIR");
	rm_rf(env);
}

static void test_open_create(void)
{
	char dir[256], reg[300];
	path_of(dir, sizeof(dir), "d");
	snprintf(reg, sizeof(reg), "%s/registry", dir);
	struct nsk_domain d1, d2;
	CHECK_EQ(nsk_domain_open(&d1, dir, 0), -ENOENT); /* no create: nothing made */
	CHECK(access(dir, F_OK) < 0);
	CHECK_EQ(nsk_domain_open(&d1, dir, 1), 0);
	CHECK(d1.reg_base != NULL);
	struct stat st;
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(stat(reg, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600);
	CHECK_EQ(st.st_size, NSK_REG_FILE_SIZE);
	CHECK_EQ(d1.reg.nslots, NSK_REG_SLOTS);
	/* a second opener (no create) shares the same table */
	CHECK_EQ(nsk_domain_open(&d2, dir, 0), 0);
	struct nsk_reg_key k = {.family = AF_INET, .port = 7, .netns = 1};
	k.addr[0] = 127, k.addr[3] = 1;
	int s = nsk_registry_insert(&d1.reg, &k, getpid(), 1, "rv-x");
	CHECK(s >= 0);
	struct nsk_reg_entry e;
	CHECK_EQ(nsk_registry_lookup(&d2.reg, &k, 1, &e), s);
	CHECK(strcmp(e.rv, "rv-x") == 0);
	nsk_domain_close(&d2);
	CHECK(d2.reg_base == NULL);
	nsk_domain_close(&d2); /* twice: harmless */
	/* reopening with create does not reformat an existing registry */
	CHECK_EQ(nsk_domain_open(&d2, dir, 1), 0);
	CHECK_EQ(nsk_registry_lookup(&d2.reg, &k, 1, &e), s);
	nsk_domain_close(&d2);
	nsk_domain_close(&d1);
	/* the directory without its registry: create=0 does not make one */
	CHECK(unlink(reg) == 0);
	CHECK_EQ(nsk_domain_open(&d1, dir, 0), -ENOENT);
	CHECK(access(reg, F_OK) < 0);
	rm_rf(dir);
}

/* Several processes open (and create) one new domain at once: one registry, formatted once,
 * and every insert survives. */
static void test_concurrent_create(void)
{
	char dir[256];
	path_of(dir, sizeof(dir), "cc");
	enum { NP = 4 };
	int go[2];
	CHECK(pipe(go) == 0);
	pid_t pids[NP];
	fflush(NULL);
	for (int i = 0; i < NP; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0);
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			t_watchdog(20);
			close(go[1]);
			char c;
			CHECK(read(go[0], &c, 1) == 0); /* released when the parent closes it */
			struct nsk_domain d;
			CHECK_EQ(nsk_domain_open(&d, dir, 1), 0);
			struct nsk_reg_key k = {.family = AF_INET, .port = (uint16_t)(100 + i)};
			CHECK(nsk_registry_insert(&d.reg, &k, getpid(), 1, "c") >= 0);
			nsk_domain_close(&d);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < NP; i++)
		t_wait_child(pids[i], "concurrent opener");
	struct nsk_domain d;
	CHECK_EQ(nsk_domain_open(&d, dir, 0), 0);
	for (int i = 0; i < NP; i++) {
		struct nsk_reg_key k = {.family = AF_INET, .port = (uint16_t)(100 + i)};
		struct nsk_reg_entry e;
		if (nsk_registry_lookup(&d.reg, &k, 1, &e) < 0)
			FAILF("entry of opener %d lost (registry formatted twice?)", i);
		CHECK_EQ(e.pid, pids[i]);
	}
	nsk_domain_close(&d);
	rm_rf(dir);
}

static void test_dir_checks(void)
{
	char dir[256], reg[300];
	path_of(dir, sizeof(dir), "p");
	snprintf(reg, sizeof(reg), "%s/registry", dir);
	struct nsk_domain d;
	CHECK(mkdir(dir, 0700) == 0);
	static const mode_t bad[] = {0755, 0750, 0710, 0701, 0707, 0777, 0720, 01700 | 0002};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(chmod(dir, bad[i]) == 0);
		int r = nsk_domain_open(&d, dir, 1);
		if (r != -EACCES)
			FAILF("directory mode %04o: %d, expected -EACCES", (unsigned)bad[i], r);
		CHECK(d.reg_base == NULL);
		CHECK(access(reg, F_OK) < 0); /* nothing created in a refused directory */
	}
	CHECK(chmod(dir, 0700) == 0);
	CHECK_EQ(nsk_domain_open(&d, dir, 1), 0);
	nsk_domain_close(&d);

	/* owned by someone else */
	if (geteuid() == 0) {
		CHECK(chown(dir, 65534, 65534) == 0);
		CHECK_EQ(nsk_domain_open(&d, dir, 0), -EACCES);
		CHECK_EQ(nsk_domain_open(&d, dir, 1), -EACCES);
		CHECK(chown(dir, 0, 0) == 0);
		CHECK_EQ(nsk_domain_open(&d, dir, 0), 0);
		nsk_domain_close(&d);
		/* owned by us, group someone else: the mode is what matters */
		CHECK(chown(dir, 0, 65534) == 0);
		CHECK_EQ(nsk_domain_open(&d, dir, 0), 0);
		nsk_domain_close(&d);
	} else {
		printf("   (not root: the other-owner case needs chown; skipped)\n");
	}
	rm_rf(dir);

	/* not a directory, a symlink to a good directory, a missing parent */
	char file[256], link[256], good[256], deep[300];
	path_of(file, sizeof(file), "plainfile");
	write_file(file, "x", 1);
	CHECK_EQ(nsk_domain_open(&d, file, 1), -ENOTDIR);
	CHECK_EQ(nsk_domain_open(&d, file, 0), -ENOTDIR);
	unlink(file);
	path_of(good, sizeof(good), "good");
	path_of(link, sizeof(link), "link");
	CHECK(mkdir(good, 0700) == 0);
	CHECK(symlink(good, link) == 0);
	CHECK_EQ(nsk_domain_open(&d, link, 1), -ENOTDIR); /* a symlink is not trusted */
	unlink(link);
	rm_rf(good);
	path_of(deep, sizeof(deep), "no/such/parent");
	CHECK_EQ(nsk_domain_open(&d, deep, 1), -ENOENT);
	CHECK_EQ(nsk_domain_open(&d, deep, 0), -ENOENT);
	char np[256];
	path_of(np, sizeof(np), "no");
	CHECK(access(np, F_OK) < 0);
	/* a path too long for the registry name */
	char lng[PATH_MAX + 10];
	memset(lng, 'a', sizeof(lng) - 1);
	lng[0] = '/';
	lng[sizeof(lng) - 1] = 0;
	CHECK(nsk_domain_open(&d, lng, 1) < 0);
}

static void test_registry_file(void)
{
	char dir[256], reg[300];
	path_of(dir, sizeof(dir), "r");
	snprintf(reg, sizeof(reg), "%s/registry", dir);
	struct nsk_domain d;
	CHECK(mkdir(dir, 0700) == 0);
	static uint8_t junk[NSK_REG_FILE_SIZE + 4096];
	const size_t sizes[] = {1, 100, NSK_REG_FILE_SIZE - 1, NSK_REG_FILE_SIZE + 1,
	                        NSK_REG_FILE_SIZE + 4096};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		write_file(reg, junk, sizes[i]);
		for (int create = 0; create < 2; create++) {
			int r = nsk_domain_open(&d, dir, create);
			if (r != -EPROTO)
				FAILF("registry of %zu bytes (create %d): %d, expected -EPROTO",
				      sizes[i], create, r);
			CHECK(d.reg_base == NULL);
		}
		CHECK_EQ(file_size(reg), sizes[i]); /* left alone, not "repaired" */
	}
	/* the right size with a bad header */
	write_file(reg, junk, NSK_REG_FILE_SIZE);
	CHECK_EQ(nsk_domain_open(&d, dir, 1), -EPROTO);
	nsk_registry_format(junk);
	((struct nsk_reg_hdr *)junk)->version = NSK_REG_VERSION + 1;
	write_file(reg, junk, NSK_REG_FILE_SIZE);
	CHECK_EQ(nsk_domain_open(&d, dir, 1), -EPROTO);
	nsk_registry_format(junk);
	((struct nsk_reg_hdr *)junk)->nslots = NSK_REG_SLOTS + 1;
	write_file(reg, junk, NSK_REG_FILE_SIZE);
	CHECK_EQ(nsk_domain_open(&d, dir, 0), -EPROTO);
	nsk_registry_format(junk);
	write_file(reg, junk, NSK_REG_FILE_SIZE);
	CHECK_EQ(nsk_domain_open(&d, dir, 0), 0);
	nsk_domain_close(&d);
	/* empty file: -EPROTO without create, formatted with it */
	write_file(reg, junk, 0);
	CHECK_EQ(nsk_domain_open(&d, dir, 0), -EPROTO);
	CHECK_EQ(file_size(reg), 0);
	CHECK_EQ(nsk_domain_open(&d, dir, 1), 0);
	CHECK_EQ(file_size(reg), NSK_REG_FILE_SIZE);
	CHECK_EQ(d.reg.nslots, NSK_REG_SLOTS);
	nsk_domain_close(&d);
	/* a directory where the registry should be */
	unlink(reg);
	CHECK(mkdir(reg, 0700) == 0);
	CHECK(nsk_domain_open(&d, dir, 1) < 0);
	rm_rf(dir);
}

static void test_rv_path(void)
{
	struct nsk_domain d;
	memset(&d, 0, sizeof(d));
	strcpy(d.dir, "/dev/shm/nearsock-0");
	char buf[256];
	CHECK_EQ(nsk_rv_path(&d, "rv-1234", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "/dev/shm/nearsock-0/rv-1234") == 0);
	CHECK_EQ(nsk_rv_path(&d, "rv-1234", buf, 10), -ENAMETOOLONG);
	struct sockaddr_un sun;
	char name[sizeof(sun.sun_path)];
	size_t room = sizeof(sun.sun_path) - strlen(d.dir) - 2; /* '/' and NUL */
	memset(name, 'n', room);
	name[room] = 0;
	CHECK_EQ(nsk_rv_path(&d, name, buf, sizeof(buf)), 0); /* exactly fits sun_path */
	CHECK_EQ(strlen(buf), sizeof(sun.sun_path) - 1);
	name[room] = 'n';
	name[room + 1] = 0;
	CHECK_EQ(nsk_rv_path(&d, name, buf, sizeof(buf)), -ENAMETOOLONG);
}

/* ---------------------------------------------------------------- connection table ---- */

static uint32_t slot_of(const struct nsk_proctab *t, const struct nsk_conn *c)
{
	CHECK(c >= t->conns && c < t->conns + NSK_PROC_SLOTS);
	return (uint32_t)(c - t->conns);
}

static void open_dom(struct nsk_domain *d, const char *name)
{
	char dir[256];
	path_of(dir, sizeof(dir), name);
	CHECK_EQ(nsk_domain_open(d, dir, 1), 0);
}

static void test_proctab_basic(void)
{
	struct nsk_domain d;
	open_dom(&d, "pt");
	struct nsk_proctab t, ro;
	CHECK(nsk_proctab_alloc(&(struct nsk_proctab){0}, getpid()) == NULL); /* not created */
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	char want[PATH_MAX + 32];
	snprintf(want, sizeof(want), "%s/proc-%d", d.dir, (int)getpid());
	CHECK(strcmp(t.path, want) == 0);
	CHECK_EQ(file_size(t.path), NSK_PROC_FILE_SIZE);
	CHECK_EQ(t.hdr->magic, NSK_PROC_MAGIC);
	CHECK_EQ(t.hdr->version, NSK_PROC_VERSION);
	CHECK_EQ(t.hdr->pid, getpid());
	CHECK_EQ(t.hdr->nslots, NSK_PROC_SLOTS);
	CHECK_EQ(t.hdr->start_time, nsk_proc_start_time(getpid()));
	CHECK(t.hdr->start_time != 0);
	CHECK(t.conns == (struct nsk_conn *)(t.hdr + 1));

	struct nsk_conn *c = nsk_proctab_alloc(&t, getpid());
	CHECK(c);
	CHECK_EQ(c->owner_pid, getpid());
	CHECK_EQ(c->kind, NSK_CK_NONE);
	CHECK(c->created_ns != 0);
	/* dirty it, free it, get it back clean */
	uint32_t i0 = slot_of(&t, c);
	c->kind = NSK_CK_CLIENT;
	c->mode = NSK_MODE_SHM;
	c->tx_tcp = 123;
	c->nonce = 77;
	memset(c->pad2, 0xff, sizeof(c->pad2));
	nsk_proctab_free(&t, c);
	CHECK_EQ(c->owner_pid, 0);
	struct nsk_conn *c2 = nsk_proctab_alloc(&t, getpid());
	CHECK(c2 == c); /* the only slot ever used is reused */
	CHECK_EQ(slot_of(&t, c2), i0);
	CHECK(c2->kind == 0 && c2->mode == 0 && c2->tx_tcp == 0 && c2->nonce == 0 &&
	      c2->pad2[0] == 0 && c2->pad2[sizeof(c2->pad2) - 1] == 0);

	/* read-only view (status tool) */
	CHECK_EQ(nsk_proctab_map(&ro, t.path), 0);
	CHECK_EQ(ro.hdr->pid, getpid());
	CHECK_EQ(ro.conns[i0].owner_pid, getpid());
	CHECK_EQ(nsk_proctab_in_use(&ro, getpid()), 0); /* our own slots do not count */
	CHECK_EQ(nsk_proctab_in_use(&ro, getpid() + 1), 1);
	nsk_proctab_unmap(&ro);
	CHECK(ro.hdr == NULL);
	nsk_proctab_unmap(&ro);
	nsk_proctab_free(&t, c2);

	/* map rejects: missing, wrong size, bad header */
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/proc-none", d.dir);
	CHECK_EQ(nsk_proctab_map(&ro, p), -ENOENT);
	write_file(p, "abc", 3);
	CHECK_EQ(nsk_proctab_map(&ro, p), -EPROTO);
	CHECK(truncate(p, (off_t)NSK_PROC_FILE_SIZE) == 0);
	CHECK_EQ(nsk_proctab_map(&ro, p), -EPROTO); /* zero header */
	CHECK(ro.hdr == NULL);
	CHECK(truncate(p, (off_t)NSK_PROC_FILE_SIZE + 1) == 0);
	CHECK_EQ(nsk_proctab_map(&ro, p), -EPROTO);
	unlink(p);

	/* a stale table with our pid is replaced */
	nsk_proctab_unmap(&t);
	struct nsk_proctab t2;
	CHECK_EQ(nsk_proctab_create(&t2, &d), 0);
	CHECK_EQ(t2.hdr->high, 0);
	nsk_proctab_unmap(&t2);
	unlink(t2.path);
	nsk_domain_close(&d);
	rm_rf(d.dir);
}

static void test_proctab_many(void)
{
	struct nsk_domain d;
	open_dom(&d, "pm");
	struct nsk_proctab t;
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	pid_t me = getpid();
	/* Grow through the first MANY slots for real (backing pages allocated on the way). */
	enum { MANY = 6000 };
	static struct nsk_conn *got[NSK_PROC_SLOTS];
	static uint8_t seen[NSK_PROC_SLOTS];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < MANY; i++) {
		got[i] = nsk_proctab_alloc(&t, me);
		CHECK(got[i]);
		uint32_t s = slot_of(&t, got[i]);
		if (seen[s])
			FAILF("slot %u handed out twice", s);
		seen[s] = 1;
		got[i]->fd = (uint32_t)i;
	}
	CHECK_EQ(t.hdr->high, MANY);
	for (int i = 0; i < MANY; i++)
		CHECK_EQ(got[i]->fd, i);
	/* free every third, get exactly those back, without growing */
	int freed = 0;
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < MANY; i += 3, freed++) {
		seen[slot_of(&t, got[i])] = 1;
		nsk_proctab_free(&t, got[i]);
	}
	for (int i = 0; i < freed; i++) {
		struct nsk_conn *c = nsk_proctab_alloc(&t, me);
		CHECK(c);
		uint32_t s = slot_of(&t, c);
		if (!seen[s])
			FAILF("reuse took slot %u, which was not free", s);
		seen[s] = 0;
	}
	CHECK_EQ(t.hdr->high, MANY);
	/* Exhaustion: mark the slots up to the last 16 as taken (what alloc would have done,
	 * without its per-slot cost), then the last ones come from alloc and then NULL. */
	for (uint32_t s = MANY; s < NSK_PROC_SLOTS - 16; s++)
		t.conns[s].owner_pid = (uint32_t)me;
	nsk_store64(&t.hdr->high, NSK_PROC_SLOTS - 16);
	for (int i = 0; i < 16; i++) {
		struct nsk_conn *c = nsk_proctab_alloc(&t, me);
		CHECK(c);
		CHECK(slot_of(&t, c) >= NSK_PROC_SLOTS - 16);
		got[i] = c;
	}
	CHECK(nsk_proctab_alloc(&t, me) == NULL);
	CHECK(nsk_proctab_alloc(&t, me) == NULL);
	CHECK_EQ(nsk_proctab_in_use(&t, me), 0);
	/* one freed slot anywhere is found again */
	struct nsk_conn *mid = &t.conns[NSK_PROC_SLOTS / 2];
	nsk_proctab_free(&t, mid);
	CHECK(nsk_proctab_alloc(&t, me) == mid);
	CHECK(nsk_proctab_alloc(&t, me) == NULL);
	nsk_proctab_free(&t, got[15]);
	CHECK(nsk_proctab_alloc(&t, me) == got[15]);
	printf("   %d grown, %d reused, exhaustion at %u slots\n", MANY, freed, NSK_PROC_SLOTS);
	unlink(t.path);
	nsk_proctab_unmap(&t);
	nsk_domain_close(&d);
	rm_rf(d.dir);
}

/* Threads allocate at once: distinct slots; then alloc/free churn with signatures that a
 * double allocation would overwrite. */
struct pt_arg {
	struct nsk_proctab *t;
	int id, n;
	struct nsk_conn **out;
	uint64_t until_ns, seed, churn;
	pthread_barrier_t *bar;
};

static void *pt_alloc_thread(void *p)
{
	struct pt_arg *a = p;
	pthread_barrier_wait(a->bar);
	for (int i = 0; i < a->n; i++) {
		struct nsk_conn *c = nsk_proctab_alloc(a->t, getpid());
		CHECK(c);
		c->fd = ((uint32_t)a->id << 20) | (uint32_t)i;
		a->out[i] = c;
	}
	return NULL;
}

static void *pt_churn_thread(void *p)
{
	struct pt_arg *a = p;
	struct nsk_conn *live[32] = {0};
	uint64_t s = a->seed;
	uint32_t tag = (uint32_t)a->id * 977u;
	pthread_barrier_wait(a->bar);
	while (t_now_ns() < a->until_ns) {
		for (int k = 0; k < 64; k++) {
			int i = (int)(t_rng(&s) % 32);
			if (live[i]) {
				uint32_t want = ((uint32_t)a->id << 20) | (uint32_t)i;
				if (live[i]->fd != want ||
				    live[i]->lport != (uint16_t)(tag ^ (uint32_t)i))
					FAILF("thread %d: slot %u overwritten (double allocation)",
					      a->id, slot_of(a->t, live[i]));
				nsk_proctab_free(a->t, live[i]);
				live[i] = NULL;
			} else {
				live[i] = nsk_proctab_alloc(a->t, getpid());
				CHECK(live[i]);
				live[i]->fd = ((uint32_t)a->id << 20) | (uint32_t)i;
				live[i]->lport = (uint16_t)(tag ^ (uint32_t)i);
				a->churn++;
			}
		}
	}
	for (int i = 0; i < 32; i++)
		if (live[i])
			nsk_proctab_free(a->t, live[i]);
	return NULL;
}

static void test_proctab_threads(void)
{
	struct nsk_domain d;
	open_dom(&d, "pth");
	struct nsk_proctab t;
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	enum { NT = 4, PER = 1500 };
	pthread_t th[NT];
	struct pt_arg a[NT];
	pthread_barrier_t bar;
	static struct nsk_conn *out[NT][PER];
	CHECK_EQ(pthread_barrier_init(&bar, NULL, NT), 0);
	for (int i = 0; i < NT; i++) {
		a[i] = (struct pt_arg){.t = &t, .id = i, .n = PER, .out = out[i], .bar = &bar};
		CHECK_EQ(pthread_create(&th[i], NULL, pt_alloc_thread, &a[i]), 0);
	}
	for (int i = 0; i < NT; i++)
		pthread_join(th[i], NULL);
	static uint8_t seen[NSK_PROC_SLOTS];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < NT; i++)
		for (int k = 0; k < PER; k++) {
			uint32_t s = slot_of(&t, out[i][k]);
			if (seen[s])
				FAILF("slot %u given to two threads", s);
			seen[s] = 1;
			CHECK_EQ(out[i][k]->fd, ((uint32_t)i << 20) | (uint32_t)k);
		}
	for (int i = 0; i < NT; i++)
		for (int k = 0; k < PER; k++)
			nsk_proctab_free(&t, out[i][k]);

	uint64_t s = seed, churn = 0;
	uint64_t until = t_now_ns() + 300000000ull;
	for (int i = 0; i < NT; i++) {
		a[i] = (struct pt_arg){
		    .t = &t, .id = i, .until_ns = until, .seed = t_rng(&s), .bar = &bar};
		CHECK_EQ(pthread_create(&th[i], NULL, pt_churn_thread, &a[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		churn += a[i].churn;
	}
	pthread_barrier_destroy(&bar);
	printf("   %d x %d concurrent allocations distinct; %" PRIu64 " churn allocations\n", NT,
	       PER, churn);
	uint64_t high = t.hdr->high;
	for (uint64_t i = 0; i < high && i < NSK_PROC_SLOTS; i++)
		CHECK_EQ(t.conns[i].owner_pid, 0);
	unlink(t.path);
	nsk_proctab_unmap(&t);
	nsk_domain_close(&d);
	rm_rf(d.dir);
}

/* A forked child shares the table: both allocate at once, slots stay distinct, and the
 * child's slots count as in use while it lives. */
static void test_proctab_fork(void)
{
	struct nsk_domain d;
	open_dom(&d, "pf");
	struct nsk_proctab t;
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	enum { PER = 2000 };
	int go[2], hold[2], ready[2];
	CHECK(pipe(go) == 0 && pipe(hold) == 0 && pipe(ready) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(20);
		close(go[1]);
		close(hold[1]);
		close(ready[0]);
		char ch;
		CHECK(read(go[0], &ch, 1) == 0);
		for (int i = 0; i < PER; i++) {
			struct nsk_conn *c = nsk_proctab_alloc(&t, getpid());
			CHECK(c);
			c->fd = 0x80000000u | (uint32_t)i;
		}
		CHECK(write(ready[1], "r", 1) == 1);
		CHECK(read(hold[0], &ch, 1) == 0); /* live until the parent lets go */
		_exit(0);
	}
	close(go[0]);
	close(hold[0]);
	close(ready[1]);
	close(go[1]); /* start */
	static struct nsk_conn *mine[PER];
	for (int i = 0; i < PER; i++) {
		mine[i] = nsk_proctab_alloc(&t, getpid());
		CHECK(mine[i]);
		mine[i]->fd = (uint32_t)i;
	}
	char ch;
	CHECK(read(ready[0], &ch, 1) == 1);
	int child_slots = 0;
	for (uint32_t i = 0; i < t.hdr->high && i < NSK_PROC_SLOTS; i++) {
		struct nsk_conn *c = &t.conns[i];
		if (c->owner_pid == (uint32_t)pid) {
			CHECK(c->fd & 0x80000000u);
			child_slots++;
		} else if (c->owner_pid == (uint32_t)getpid()) {
			CHECK(!(c->fd & 0x80000000u));
			CHECK(mine[c->fd] == c);
		}
	}
	CHECK_EQ(child_slots, PER);
	CHECK_EQ(nsk_proctab_in_use(&t, getpid()), PER);
	close(hold[1]);
	close(ready[0]);
	t_wait_child(pid, "proctab child");
	CHECK_EQ(nsk_proctab_in_use(&t, getpid()), 0); /* dead owners do not count */
	for (int i = 0; i < PER; i++)
		CHECK_EQ(mine[i]->fd, i);
	unlink(t.path);
	nsk_proctab_unmap(&t);
	nsk_domain_close(&d);
	rm_rf(d.dir);
}

/* ---------------------------------------------------------------- full tmpfs --------- */

/* Run @fn in a child inside a private mount namespace with a tmpfs of @size at @mnt.
 * Returns the child's wait status, or -1 if namespaces or mounts are not permitted. */
static int in_small_tmpfs(const char *mnt, const char *size, void (*fn)(const char *))
{
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(20);
		char opts[64];
		snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(mnt, 0700) < 0 ||
		    mount("tmpfs", mnt, "tmpfs", 0, opts) < 0)
			_exit(77);
		fn(mnt);
		_exit(0);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		return -1;
	return st;
}

static void small_registry(const char *mnt)
{
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/dom", mnt);
	struct nsk_domain d;
	CHECK_EQ(nsk_domain_open(&d, dir, 1), -ENOSPC); /* the registry does not fit */
	char reg[320];
	snprintf(reg, sizeof(reg), "%s/registry", dir);
	CHECK_EQ(file_size(reg), 0); /* left empty: the next opener tries again */
	CHECK_EQ(nsk_domain_open(&d, dir, 0), -EPROTO);
}

static struct nsk_proctab small_t;

static void small_proctab(const char *mnt)
{
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/dom", mnt);
	struct nsk_domain d;
	CHECK_EQ(nsk_domain_open(&d, dir, 1), 0);
	CHECK_EQ(nsk_proctab_create(&small_t, &d), 0);
	int n = 0;
	while (nsk_proctab_alloc(&small_t, getpid()))
		CHECK(++n < (int)NSK_PROC_SLOTS);
	printf("   tmpfs full after %d slots: alloc returned NULL\n", n);
	CHECK(n > 16);
}

static void test_full_tmpfs(void)
{
	char mnt[256];
	path_of(mnt, sizeof(mnt), "mnt-reg");
	int st = in_small_tmpfs(mnt, "256k", small_registry);
	if (st == -1) {
		printf("   (no mount namespace / tmpfs mount permitted: skipped)\n");
		return;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		FAILF("small registry child: status %#x", st);
	path_of(mnt, sizeof(mnt), "mnt-pt");
	st = in_small_tmpfs(mnt, "1m", small_proctab);
	if (WIFSIGNALED(st))
		FAILF("proctab on a full tmpfs: killed by signal %d", WTERMSIG(st));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		FAILF("proctab child: status %#x", st);
}

/* ---------------------------------------------------------------- known core bugs ----- */
/* Each of these fails until the bug it names is fixed in the core (see the comment); they
 * are registered as separate CTest tests named core_BUG_*. */

/* KNOWN BUG (domain.c, back_slot): the last slot (65535) starts at byte 16777216 of a file
 * of NSK_PROC_FILE_SIZE = 16777472 bytes; back_slot rounds that offset down to its page and
 * calls posix_fallocate(fd, 16777216, 4096), which (without FALLOC_FL_KEEP_SIZE) extends the
 * file to 16781312 bytes. nsk_proctab_map requires the exact size, so from then on
 * `nearsock status` rejects the process's table with -EPROTO. */
static void bug_proctab_last_slot(void)
{
	struct nsk_domain d;
	open_dom(&d, "bug-last");
	struct nsk_proctab t, ro;
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	/* slots 0..65534 taken (as alloc would leave them), then alloc hands out 65535 */
	for (uint32_t i = 0; i < NSK_PROC_SLOTS - 1; i++)
		t.conns[i].owner_pid = (uint32_t)getpid();
	nsk_store64(&t.hdr->high, NSK_PROC_SLOTS - 1);
	struct nsk_conn *c = nsk_proctab_alloc(&t, getpid());
	CHECK(c == &t.conns[NSK_PROC_SLOTS - 1]);
	off_t sz = file_size(t.path);
	int r = nsk_proctab_map(&ro, t.path);
	if (r == 0)
		nsk_proctab_unmap(&ro);
	unlink(t.path);
	nsk_proctab_unmap(&t);
	nsk_domain_close(&d);
	rm_rf(base);
	if (sz != (off_t)NSK_PROC_FILE_SIZE || r != 0)
		FAILF("CORE BUG: allocating slot %u grew the table file to %lld bytes (expected "
		      "%llu); nsk_proctab_map now returns %d",
		      NSK_PROC_SLOTS - 1, (long long)sz, (unsigned long long)NSK_PROC_FILE_SIZE, r);
}

/* KNOWN BUG (domain.c, nsk_proctab_alloc + back_slot): when back_slot fails (tmpfs full),
 * `high` has already been advanced past the slot whose page could not be allocated; the next
 * nsk_proctab_alloc scans [0, high) and reads that slot's owner_pid: a read fault on a tmpfs
 * hole with no space left is SIGBUS, although the API promises "a full /dev/shm yields NULL,
 * never SIGBUS" (nsk_proctab_in_use, i.e. `nearsock status`, touches the same page). */
static void sigbus_after_enospc(const char *mnt)
{
	small_proctab(mnt);
	CHECK(nsk_proctab_alloc(&small_t, getpid()) == NULL); /* the next call after ENOSPC */
}

static void bug_proctab_sigbus(void)
{
	char mnt[256];
	path_of(mnt, sizeof(mnt), "mnt-bus");
	int st = in_small_tmpfs(mnt, "1m", sigbus_after_enospc);
	if (st == -1) {
		printf("SKIP: no mount namespace / tmpfs mount permitted\n");
		rm_rf(base);
		exit(NSK_T_SKIP);
	}
	rm_rf(base);
	if (WIFSIGNALED(st))
		FAILF("CORE BUG: nsk_proctab_alloc after a failed allocation on a full tmpfs: "
		      "killed by signal %d (%s)",
		      WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		FAILF(
		    "CORE BUG: the child running nsk_proctab_alloc after a failed allocation on a "
		    "full tmpfs exited with status %d (under a sanitizer the SIGBUS is reported "
		    "above as BUS)",
		    WEXITSTATUS(st));
}

/* KNOWN BUG (platform/linux.c, nsk_proc_start_time): it tokenises /proc/PID/stat with
 * strtok(), whose state is one static pointer shared by the whole process. (a) It clobbers
 * the caller's own strtok() loop — inside an LD_PRELOAD library that is the application's
 * loop — leaving that pointer in nsk_proc_start_time's dead stack buffer; (b) two threads
 * calling it at once (nsk_proc_alive from concurrent connects) parse each other's buffers
 * and get wrong start times. strtok_r (or a plain scan) fixes both. */
struct st_arg {
	uint64_t want;
	uint64_t until;
	uint64_t calls, wrong;
};

static void *start_time_thread(void *p)
{
	struct st_arg *a = p;
	while (t_now_ns() < a->until) {
		a->calls++;
		if (nsk_proc_start_time(getpid()) != a->want)
			a->wrong++;
	}
	return NULL;
}

static void bug_start_time_strtok(void)
{
	rm_rf(base); /* not needed here; TSan's halt_on_error would otherwise leave it behind */
	uint64_t want = nsk_proc_start_time(getpid());
	CHECK(want != 0);
	char text[] = "alpha beta gamma";
	char *tok = strtok(text, " ");
	CHECK(tok && strcmp(tok, "alpha") == 0);
	CHECK_EQ(nsk_proc_start_time(getpid()), want);
	tok = strtok(NULL, " ");
	int clobbered = !tok || strcmp(tok, "beta") != 0;
	if (clobbered)
		printf("   the caller's strtok() continued with '%.20s' instead of 'beta'\n",
		       tok ? tok : "(null)");

	struct st_arg a[2];
	pthread_t th[2];
	uint64_t until = t_now_ns() + 300000000ull;
	for (int i = 0; i < 2; i++) {
		a[i] = (struct st_arg){.want = want, .until = until};
		CHECK_EQ(pthread_create(&th[i], NULL, start_time_thread, &a[i]), 0);
	}
	uint64_t calls = 0, wrong = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		calls += a[i].calls;
		wrong += a[i].wrong;
	}
	printf("   %" PRIu64 " concurrent calls, %" PRIu64 " wrong start times\n", calls, wrong);
	if (clobbered || wrong) {
		rm_rf(base);
		FAILF("CORE BUG: nsk_proc_start_time uses strtok(): caller's tokeniser %s, %" PRIu64
		      " wrong results from concurrent calls",
		      clobbered ? "clobbered" : "intact", wrong);
	}
}

static const struct {
	const char *name;
	void (*fn)(void);
} known_bugs[] = {
    {"bug_proctab_last_slot", bug_proctab_last_slot},
    {"bug_proctab_sigbus", bug_proctab_sigbus},
    {"bug_start_time_strtok", bug_start_time_strtok},
};

/* domain_test [NAME]: the regular tests, or one known-bug reproduction by name. */
int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(55);
	seed = t_seed();
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(base, sizeof(base), "%s/nsk-dom-XXXXXX", tmp);
	CHECK(mkdtemp(base));
	if (argc > 1) {
		for (size_t i = 0; i < sizeof(known_bugs) / sizeof(known_bugs[0]); i++)
			if (strcmp(argv[1], known_bugs[i].name) == 0) {
				printf("== %s (known core bug reproduction)\n", known_bugs[i].name);
				known_bugs[i].fn();
				rm_rf(base); /* bug tests clean up before failing too */
				printf("   ok: fixed\n");
				return 0;
			}
		fprintf(stderr, "unknown test %s\n", argv[1]);
		rm_rf(base);
		return 1;
	}
	RUN(test_default_dir);
	RUN(test_open_create);
	RUN(test_concurrent_create);
	RUN(test_dir_checks);
	RUN(test_registry_file);
	RUN(test_rv_path);
	RUN(test_proctab_basic);
	RUN(test_proctab_many);
	RUN(test_proctab_threads);
	RUN(test_proctab_fork);
	RUN(test_full_tmpfs);
	rm_rf(base);
	return 0;
}
