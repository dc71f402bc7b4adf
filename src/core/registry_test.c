/* SPDX-License-Identifier: MIT */
/* registry_test.c — unit tests of the listener registry (registry.c): header validation,
 * exact / wildcard / dual-stack matching, namespaces, removal and slot reuse, a full table,
 * reclaim of a dead predecessor's entries, and seqlock reads under concurrent writers in
 * several threads of two processes (every entry a lookup returns must be one that was
 * inserted, whole). */
#include "core/registry.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "core/atomics.h"
#include "core/test_util.h"

static uint64_t seed;

/* ---------------------------------------------------------------- helpers ------------- */

static void *reg_alloc(void)
{
	void *p = mmap(NULL, NSK_REG_FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	               -1, 0);
	CHECK(p != MAP_FAILED);
	return p;
}

static void reg_free(void *p)
{
	munmap(p, NSK_REG_FILE_SIZE);
}

/* A formatted registry of @nslots slots (fewer than NSK_REG_SLOTS: a small table). */
static void reg_new(struct nsk_registry *r, void *base, uint32_t nslots)
{
	nsk_registry_format(base);
	((struct nsk_reg_hdr *)base)->nslots = nslots;
	CHECK_EQ(nsk_registry_attach(r, base, NSK_REG_FILE_SIZE), 0);
	CHECK_EQ(r->nslots, nslots);
}

static struct nsk_reg_key key4(const char *a, uint16_t port, uint64_t netns)
{
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	k.port = port;
	k.netns = netns;
	CHECK(inet_pton(AF_INET, a, k.addr) == 1);
	return k;
}

static struct nsk_reg_key key6(const char *a, uint16_t port, uint64_t netns, uint32_t flags)
{
	struct nsk_reg_key k;
	memset(&k, 0, sizeof(k));
	k.family = AF_INET6;
	k.port = port;
	k.netns = netns;
	k.flags = flags;
	CHECK(inet_pton(AF_INET6, a, k.addr) == 1);
	return k;
}

/* lookup returning the slot; the copy's rv must be that of @slot's entry. */
static int lookup(struct nsk_registry *r, const struct nsk_reg_key *k, int dst_local,
                  struct nsk_reg_entry *out)
{
	struct nsk_reg_entry tmp;
	if (!out)
		out = &tmp;
	memset(out, 0xcc, sizeof(*out));
	int s = nsk_registry_lookup(r, k, dst_local, out);
	CHECK(s == -ENOENT || (s >= 0 && (uint32_t)s < r->nslots));
	if (s >= 0)
		CHECK_EQ(NSK_RE_KIND(out->state), NSK_RE_VALID);
	return s;
}

/* ---------------------------------------------------------------- format / attach ----- */

static void test_format_attach(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	struct nsk_reg_hdr *h = base;
	memset(base, 0xab, NSK_REG_FILE_SIZE);
	nsk_registry_format(base);
	CHECK_EQ(h->magic, NSK_REG_MAGIC);
	CHECK_EQ(h->version, NSK_REG_VERSION);
	CHECK_EQ(h->nslots, NSK_REG_SLOTS);
	CHECK_EQ(h->entry_size, sizeof(struct nsk_reg_entry));
	const uint8_t *b = base;
	for (size_t i = sizeof(*h); i < NSK_REG_FILE_SIZE; i++)
		if (b[i])
			FAILF("byte %zu not cleared by format", i);
	CHECK_EQ(nsk_registry_attach(&r, base, NSK_REG_FILE_SIZE), 0);
	CHECK(r.hdr == base && r.e == (struct nsk_reg_entry *)(h + 1));
	CHECK_EQ(r.nslots, NSK_REG_SLOTS);

	/* Each field broken in turn. */
	struct {
		const char *what;
		size_t off;
		uint32_t val;
	} bad[] = {
	    {"magic", offsetof(struct nsk_reg_hdr, magic), NSK_REG_MAGIC ^ 1},
	    {"magic 0", offsetof(struct nsk_reg_hdr, magic), 0},
	    {"version", offsetof(struct nsk_reg_hdr, version), NSK_REG_VERSION + 1},
	    {"version 0", offsetof(struct nsk_reg_hdr, version), 0},
	    {"entry_size", offsetof(struct nsk_reg_hdr, entry_size), 64},
	    {"entry_size big", offsetof(struct nsk_reg_hdr, entry_size), 256},
	    {"nslots 0", offsetof(struct nsk_reg_hdr, nslots), 0},
	    {"nslots too many", offsetof(struct nsk_reg_hdr, nslots), NSK_REG_SLOTS + 1},
	    {"nslots huge", offsetof(struct nsk_reg_hdr, nslots), UINT32_MAX},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		nsk_registry_format(base);
		memcpy((char *)base + bad[i].off, &bad[i].val, 4);
		memset(&r, 0, sizeof(r));
		if (nsk_registry_attach(&r, base, NSK_REG_FILE_SIZE) != -EPROTO)
			FAILF("attach accepted a header with a bad %s", bad[i].what);
	}
	/* Mapped length too short for the header or for the slots it announces. */
	nsk_registry_format(base);
	CHECK_EQ(nsk_registry_attach(&r, base, 0), -EPROTO);
	CHECK_EQ(nsk_registry_attach(&r, base, sizeof(*h) - 1), -EPROTO);
	CHECK_EQ(nsk_registry_attach(&r, base, NSK_REG_FILE_SIZE - 1), -EPROTO);
	CHECK_EQ(nsk_registry_attach(&r, base, sizeof(*h)), -EPROTO);
	/* A smaller table fits a shorter mapping. */
	h->nslots = 8;
	CHECK_EQ(nsk_registry_attach(&r, base, sizeof(*h) + 8 * sizeof(struct nsk_reg_entry)), 0);
	CHECK_EQ(r.nslots, 8);
	/* Later header changes do not affect an attached table (private copy of nslots). */
	h->nslots = UINT32_MAX;
	CHECK_EQ(r.nslots, 8);
	struct nsk_reg_key k = key4("127.0.0.1", 80, 1);
	CHECK(nsk_registry_insert(&r, &k, 100, 1, "rv") >= 0);
	CHECK(lookup(&r, &k, 1, NULL) >= 0);
	/* Hash range */
	for (uint32_t n = 1; n < 50; n++)
		for (uint32_t p = 0; p < 2000; p += 7)
			CHECK(nsk_registry_hash((uint16_t)p, p * 31ull, n) < n);
	reg_free(base);
}

/* ---------------------------------------------------------------- matching ------------ */

static void test_exact(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key k = key4("127.0.0.1", 8080, 7);
	char rv[64];
	memset(rv, 'x', sizeof(rv));
	rv[sizeof(rv) - 1] = 0; /* longer than the field: truncated, NUL-terminated */
	int s = nsk_registry_insert(&r, &k, 1234, 99, rv);
	CHECK(s >= 0);
	CHECK_EQ(s, nsk_registry_hash(8080, 7, NSK_REG_SLOTS)); /* empty table: first probe */
	struct nsk_reg_entry e;
	for (int local = 0; local < 2; local++) {
		CHECK_EQ(lookup(&r, &k, local, &e), s);
		CHECK_EQ(e.family, AF_INET);
		CHECK_EQ(e.port, 8080);
		CHECK_EQ(e.netns, 7);
		CHECK_EQ(e.pid, 1234);
		CHECK_EQ(e.start_time, 99);
		CHECK(memcmp(e.addr, k.addr, 16) == 0);
		CHECK_EQ(strlen(e.rv), sizeof(e.rv) - 1);
		CHECK_EQ(e.offer_seq, 0);
	}
	CHECK_EQ(nsk_registry_read(&r, s, &e), 1);
	CHECK_EQ(e.pid, 1234);
	struct nsk_reg_key o = key4("127.0.0.2", 8080, 7);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	o = key4("127.0.0.1", 8081, 7);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	o = key6("::1", 8080, 7, 0);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	/* The same 4 bytes as the start of an IPv6 address are not the IPv4 listener. */
	o = key6("7f00:1::", 8080, 7, 0);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	/* IPv6 exact */
	struct nsk_reg_key k6 = key6("fd00::5", 8080, 7, 0);
	int s6 = nsk_registry_insert(&r, &k6, 1234, 99, "rv6");
	CHECK(s6 >= 0 && s6 != s);
	CHECK_EQ(lookup(&r, &k6, 0, &e), s6);
	CHECK(strcmp(e.rv, "rv6") == 0);
	o = key6("fd00::6", 8080, 7, 0);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	CHECK_EQ(lookup(&r, &k, 0, NULL), s);
	reg_free(base);
}

static void test_wildcard_v4(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key w = key4("0.0.0.0", 81, 1);
	int s = nsk_registry_insert(&r, &w, 10, 1, "w");
	CHECK(s >= 0);
	struct nsk_reg_key d = key4("10.1.2.3", 81, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s);
	CHECK_EQ(lookup(&r, &d, 0, NULL), -ENOENT); /* wildcard only for local destinations */
	d = key4("127.0.0.1", 81, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s);
	CHECK_EQ(lookup(&r, &d, 0, NULL), -ENOENT);
	d = key6("::1", 81, 1, 0); /* an IPv4 wildcard does not take IPv6 */
	CHECK_EQ(lookup(&r, &d, 1, NULL), -ENOENT);
	d = key4("10.1.2.3", 82, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), -ENOENT);
	reg_free(base);
}

static void test_dual_stack(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key any = key6("::", 82, 1, 0);
	int s = nsk_registry_insert(&r, &any, 10, 1, "dual");
	CHECK(s >= 0);
	struct nsk_reg_key d = key4("127.0.0.1", 82, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s); /* [::] without V6ONLY takes IPv4 */
	CHECK_EQ(lookup(&r, &d, 0, NULL), -ENOENT);
	d = key6("::1", 82, 1, 0);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s);
	d = key6("fd00::1", 82, 1, 0);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s);
	CHECK_EQ(lookup(&r, &d, 0, NULL), -ENOENT);

	struct nsk_reg_key only = key6("::", 83, 1, NSK_RE_V6ONLY);
	int s2 = nsk_registry_insert(&r, &only, 10, 1, "v6only");
	CHECK(s2 >= 0);
	d = key4("127.0.0.1", 83, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), -ENOENT); /* V6ONLY: no IPv4 */
	d = key6("::1", 83, 1, 0);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s2);
	struct nsk_reg_entry e;
	CHECK_EQ(nsk_registry_read(&r, s2, &e), 1);
	CHECK_EQ(e.flags, NSK_RE_V6ONLY);
	/* A V6ONLY [::] and an IPv4 0.0.0.0 on the same port: each takes its family. */
	struct nsk_reg_key w4 = key4("0.0.0.0", 83, 1);
	int s3 = nsk_registry_insert(&r, &w4, 11, 1, "v4");
	CHECK(s3 >= 0);
	d = key4("127.0.0.1", 83, 1);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s3);
	d = key6("::1", 83, 1, 0);
	CHECK_EQ(lookup(&r, &d, 1, NULL), s2);
	reg_free(base);
}

static void test_exact_preferred(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	/* wildcard first (earlier in the probe sequence), then the exact bind */
	struct nsk_reg_key w = key4("0.0.0.0", 84, 1), x = key4("127.0.0.1", 84, 1);
	int sw = nsk_registry_insert(&r, &w, 10, 1, "w");
	int sx = nsk_registry_insert(&r, &x, 11, 1, "x");
	CHECK(sw >= 0 && sx >= 0 && sw != sx);
	CHECK_EQ(lookup(&r, &x, 1, NULL), sx);
	CHECK_EQ(lookup(&r, &x, 0, NULL), sx);
	struct nsk_reg_key o = key4("127.0.0.2", 84, 1);
	CHECK_EQ(lookup(&r, &o, 1, NULL), sw);
	/* exact first, then a dual-stack wildcard */
	struct nsk_reg_key x2 = key4("127.0.0.1", 85, 1), w2 = key6("::", 85, 1, 0);
	int sx2 = nsk_registry_insert(&r, &x2, 12, 1, "x2");
	int sw2 = nsk_registry_insert(&r, &w2, 13, 1, "w2");
	CHECK(sx2 >= 0 && sw2 >= 0);
	CHECK_EQ(lookup(&r, &x2, 1, NULL), sx2);
	o = key4("127.0.0.9", 85, 1);
	CHECK_EQ(lookup(&r, &o, 1, NULL), sw2);
	/* removing the exact bind falls back to the wildcard */
	nsk_registry_remove(&r, sx, 11);
	CHECK_EQ(lookup(&r, &x, 1, NULL), sw);
	CHECK_EQ(lookup(&r, &x, 0, NULL), -ENOENT);
	reg_free(base);
}

static void test_netns(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key k = key4("127.0.0.1", 86, 1000), w = key6("::", 87, 1000, 0);
	CHECK(nsk_registry_insert(&r, &k, 10, 1, "a") >= 0);
	CHECK(nsk_registry_insert(&r, &w, 10, 1, "b") >= 0);
	struct nsk_reg_key o = k;
	o.netns = 1001;
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	o.netns = 0;
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	o = key4("127.0.0.1", 87, 999);
	CHECK_EQ(lookup(&r, &o, 1, NULL), -ENOENT);
	o.netns = 1000;
	CHECK(lookup(&r, &o, 1, NULL) >= 0);
	/* the same port in two namespaces: each finds its own */
	struct nsk_reg_key k2 = key4("127.0.0.1", 86, 2000);
	int s2 = nsk_registry_insert(&r, &k2, 20, 1, "c");
	struct nsk_reg_entry e;
	CHECK_EQ(lookup(&r, &k2, 1, &e), s2);
	CHECK_EQ(e.pid, 20);
	CHECK(lookup(&r, &k, 1, &e) >= 0);
	CHECK_EQ(e.pid, 10);
	reg_free(base);
}

/* Across namespaces only a listener bound to exactly the destination matches (a "VM" in its
 * own namespace reached over a veth); wildcard binds, UDP inboxes and other ports never. */
static void test_foreign(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key wild = key4("0.0.0.0", 90, 2000), exact = key4("10.1.2.2", 91, 2000);
	struct nsk_reg_key udp = key4("10.1.2.2", 92, 2000);
	CHECK(nsk_registry_insert(&r, &wild, 20, 1, "w") >= 0);
	int se = nsk_registry_insert(&r, &exact, 21, 1, "e");
	CHECK(se >= 0);
	CHECK(nsk_registry_insert_inbox(&r, &udp, 22, 1, 5, 7) >= 0);
	struct nsk_reg_entry e;
	struct nsk_reg_key d = key4("10.1.2.2", 91, 1000); /* from namespace 1000 */
	CHECK_EQ(lookup(&r, &d, 0, NULL), -ENOENT);        /* not in our namespace */
	CHECK_EQ(nsk_registry_lookup_foreign(&r, &d, &e), se);
	CHECK_EQ(e.pid, 21);
	d = key4("10.1.2.2", 90, 1000); /* the wildcard listener's port */
	CHECK_EQ(nsk_registry_lookup_foreign(&r, &d, &e), -1);
	d = key4("10.1.2.2", 92, 1000); /* a UDP inbox */
	CHECK_EQ(nsk_registry_lookup_foreign(&r, &d, &e), -1);
	d = key4("10.1.2.3", 91, 1000); /* another address */
	CHECK_EQ(nsk_registry_lookup_foreign(&r, &d, &e), -1);
	d = key4("10.1.2.2", 91, 2000); /* the listener's own namespace: the normal lookup */
	CHECK_EQ(nsk_registry_lookup_foreign(&r, &d, &e), -1);
	reg_free(base);
}

/* ---------------------------------------------------------------- remove / reuse ------ */

static void test_remove_reinsert(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, 16);
	struct nsk_reg_key k = key4("127.0.0.1", 90, 1);
	int s = nsk_registry_insert(&r, &k, 10, 5, "a");
	CHECK(s >= 0);
	uint32_t st0 = r.e[s].state;
	CHECK_EQ(NSK_RE_KIND(st0), NSK_RE_VALID);
	/* wrong owner, out-of-range slots: no effect, no crash */
	nsk_registry_remove(&r, s, 11);
	nsk_registry_remove(&r, -1, 10);
	nsk_registry_remove(&r, 16, 10);
	nsk_registry_remove(&r, INT32_MAX, 10);
	CHECK_EQ(lookup(&r, &k, 1, NULL), s);
	struct nsk_reg_entry e;
	CHECK_EQ(nsk_registry_read(&r, -1, &e), 0);
	CHECK_EQ(nsk_registry_read(&r, 16, &e), 0);
	/* mark_dead with a stale state word or a non-VALID kind does nothing */
	nsk_registry_mark_dead(&r, s, st0 + 4);
	nsk_registry_mark_dead(&r, s, (st0 & ~3u) | NSK_RE_BUSY);
	nsk_registry_mark_dead(&r, 99, st0);
	CHECK_EQ(r.e[s].state, st0);

	nsk_registry_remove(&r, s, 10);
	CHECK_EQ(NSK_RE_KIND(r.e[s].state), NSK_RE_DEAD);
	CHECK_EQ(NSK_RE_GEN(r.e[s].state), NSK_RE_GEN(st0));
	CHECK_EQ(lookup(&r, &k, 1, NULL), -ENOENT);
	CHECK_EQ(nsk_registry_read(&r, s, &e), 0);
	nsk_registry_remove(&r, s, 10); /* twice: harmless */

	/* Reinsert: the DEAD slot is the first free one on the probe path, so it is reused
	 * with a new generation. */
	int s2 = nsk_registry_insert(&r, &k, 12, 6, "b");
	CHECK_EQ(s2, s);
	CHECK_EQ(NSK_RE_KIND(r.e[s].state), NSK_RE_VALID);
	CHECK_EQ(NSK_RE_GEN(r.e[s].state), NSK_RE_GEN(st0) + 1);
	CHECK_EQ(lookup(&r, &k, 1, &e), s);
	CHECK_EQ(e.pid, 12);
	CHECK(strcmp(e.rv, "b") == 0);
	/* the old owner's remove of the reused slot must not remove the new entry */
	nsk_registry_remove(&r, s, 10);
	CHECK_EQ(lookup(&r, &k, 1, NULL), s);
	/* marking dead with the previous generation's state does nothing either */
	nsk_registry_mark_dead(&r, s, st0);
	CHECK_EQ(lookup(&r, &k, 1, NULL), s);

	/* A DEAD entry inside a probe chain does not end the chain. */
	struct nsk_reg_key a = key4("10.0.0.1", 91, 1), b = key4("10.0.0.2", 91, 1),
	                   c = key4("10.0.0.3", 91, 1);
	int sa = nsk_registry_insert(&r, &a, 1, 1, "a");
	int sb = nsk_registry_insert(&r, &b, 1, 1, "b");
	int sc = nsk_registry_insert(&r, &c, 1, 1, "c");
	CHECK(sa >= 0 && sb >= 0 && sc >= 0);
	nsk_registry_remove(&r, sa, 1);
	nsk_registry_remove(&r, sb, 1);
	CHECK_EQ(lookup(&r, &c, 1, NULL), sc);
	CHECK_EQ(lookup(&r, &a, 1, NULL), -ENOENT);
	CHECK_EQ(lookup(&r, &b, 1, NULL), -ENOENT);
	reg_free(base);
}

/* Fill a table of @n slots; the next insert fails with -ENOSPC. */
static void fill_table(uint32_t n)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, n);
	int *slots = calloc(n, sizeof(int));
	char *used = calloc(n, 1);
	CHECK(slots && used);
	struct nsk_reg_key k = key4("10.0.0.0", 100, 1);
	for (uint32_t i = 0; i < n; i++) {
		k.addr[2] = (uint8_t)(i >> 8);
		k.addr[3] = (uint8_t)i;
		k.port = (uint16_t)(100 + i % 5); /* several probe chains, overlapping */
		slots[i] = nsk_registry_insert(&r, &k, 10, 1, "f");
		if (slots[i] < 0 || used[slots[i]])
			FAILF("insert %u of %u: %d", i, n, slots[i]);
		used[slots[i]] = 1;
	}
	struct nsk_reg_key extra = key4("10.255.0.1", 200, 1);
	CHECK_EQ(nsk_registry_insert(&r, &extra, 10, 1, "x"), -ENOSPC);
	/* lookups still terminate, and find every entry */
	CHECK_EQ(lookup(&r, &extra, 1, NULL), -ENOENT);
	for (uint32_t i = 0; i < n; i += (n > 64 ? 61 : 1)) {
		k.addr[2] = (uint8_t)(i >> 8);
		k.addr[3] = (uint8_t)i;
		k.port = (uint16_t)(100 + i % 5);
		CHECK_EQ(lookup(&r, &k, 0, NULL), slots[i]);
	}
	/* freeing one slot makes room for exactly one more */
	nsk_registry_remove(&r, slots[n / 2], 10);
	CHECK_EQ(nsk_registry_insert(&r, &extra, 10, 1, "x"), slots[n / 2]);
	CHECK_EQ(lookup(&r, &extra, 1, NULL), slots[n / 2]);
	CHECK_EQ(nsk_registry_insert(&r, &extra, 10, 1, "y"), -ENOSPC);
	free(slots);
	free(used);
	reg_free(base);
}

static void test_full(void)
{
	fill_table(1);
	fill_table(16);
	fill_table(NSK_REG_SLOTS);
}

/* A listener entry left by a dead process whose pid we now have: the insert of the same key
 * with our (same pid, different start time) identity retires it. */
static void test_stale_reclaim(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, 32);
	struct nsk_reg_key k = key4("127.0.0.1", 95, 1);
	int old = nsk_registry_insert(&r, &k, 500, 1111, "old");
	CHECK(old >= 0);
	int nw = nsk_registry_insert(&r, &k, 500, 2222, "new");
	CHECK(nw >= 0 && nw != old);
	CHECK_EQ(NSK_RE_KIND(r.e[old].state), NSK_RE_DEAD);
	struct nsk_reg_entry e;
	CHECK_EQ(lookup(&r, &k, 1, &e), nw);
	CHECK_EQ(e.start_time, 2222);
	CHECK(strcmp(e.rv, "new") == 0);
	/* next time, the dead slot is reused */
	nsk_registry_remove(&r, nw, 500);
	int again = nsk_registry_insert(&r, &k, 500, 3333, "again");
	CHECK_EQ(again, old);

	/* Not reclaimed: same pid and start time (a second listener of ours, SO_REUSEPORT),
	 * another pid, or another key of the same pid. */
	struct nsk_reg_key k2 = key4("127.0.0.1", 96, 1);
	int a = nsk_registry_insert(&r, &k2, 600, 1, "a");
	int b = nsk_registry_insert(&r, &k2, 600, 1, "b");
	int c = nsk_registry_insert(&r, &k2, 601, 9, "c");
	struct nsk_reg_key k3 = key4("127.0.0.2", 96, 1);
	int d = nsk_registry_insert(&r, &k3, 600, 7, "d");
	CHECK(a >= 0 && b >= 0 && c >= 0 && d >= 0);
	CHECK_EQ(nsk_registry_read(&r, a, &e), 1);
	CHECK_EQ(nsk_registry_read(&r, b, &e), 1);
	CHECK_EQ(nsk_registry_read(&r, c, &e), 1);
	CHECK_EQ(nsk_registry_read(&r, d, &e), 1);
	/* same key in another namespace is another key */
	struct nsk_reg_key k4 = k2;
	k4.netns = 2;
	CHECK(nsk_registry_insert(&r, &k4, 600, 8, "e") >= 0);
	CHECK_EQ(nsk_registry_read(&r, a, &e), 1);
	/* a restart of pid 600 reclaims both of its dead listeners on k2, not pid 601's */
	int n = nsk_registry_insert(&r, &k2, 600, 2, "n");
	CHECK(n >= 0);
	CHECK_EQ(nsk_registry_read(&r, a, &e), 0);
	CHECK_EQ(nsk_registry_read(&r, b, &e), 0);
	CHECK_EQ(nsk_registry_read(&r, c, &e), 1);
	CHECK_EQ(nsk_registry_read(&r, d, &e), 1);
	reg_free(base);
}

/* ---------------------------------------------------------------- concurrency --------- */

/* Entries written by the concurrent tests encode everything in start_time:
 * owner id (16 bits) | per-owner counter. Every other field follows from it, so a torn or
 * half-written entry fails entry_check. */
#define C_PORTS 3
#define C_NETNS 42

static void c_key(struct nsk_reg_key *k, uint32_t owner)
{
	memset(k, 0, sizeof(*k));
	k->family = (owner & 1) ? AF_INET6 : AF_INET;
	k->port = (uint16_t)(2000 + owner % C_PORTS);
	k->netns = C_NETNS;
	k->addr[0] = 10;
	k->addr[1] = (uint8_t)(owner >> 8);
	k->addr[2] = (uint8_t)owner;
	k->addr[3] = 1;
	if (k->family == AF_INET6)
		k->addr[15] = 6;
}

static void c_rv(char *rv, size_t len, uint64_t st)
{
	snprintf(rv, len, "rv-%016" PRIx64 "-%08x", st, (unsigned)(st * 2654435761u));
}

/* entry_check - @e must be a whole entry as c_insert writes it. */
static void entry_check(const struct nsk_reg_entry *e, const char *where)
{
	uint64_t st = e->start_time;
	uint32_t owner = (uint32_t)(st >> 48);
	struct nsk_reg_key k;
	c_key(&k, owner);
	char rv[40];
	c_rv(rv, sizeof(rv), st);
	if (NSK_RE_KIND(e->state) != NSK_RE_VALID || e->family != k.family || e->port != k.port ||
	    e->netns != k.netns || memcmp(e->addr, k.addr, 16) || e->pid != 1000 + owner ||
	    e->flags != 0 || strcmp(e->rv, rv) || e->offer_seq || e->accepted || e->upgraded)
		FAILF("%s: torn or foreign entry: state %#x fam %u port %u pid %u st %#" PRIx64
		      " rv '%.40s'",
		      where, e->state, e->family, e->port, e->pid, st, e->rv);
}

static int c_insert(struct nsk_registry *r, uint32_t owner, uint64_t counter)
{
	struct nsk_reg_key k;
	c_key(&k, owner);
	uint64_t st = ((uint64_t)owner << 48) | counter;
	char rv[40];
	c_rv(rv, sizeof(rv), st);
	return nsk_registry_insert(r, &k, (pid_t)(1000 + owner), st, rv);
}

struct c_arg {
	struct nsk_registry *r;
	uint32_t owner;   /* unique across threads and processes */
	uint32_t nowners; /* owners in [0, nowners) exist */
	uint64_t until_ns;
	uint64_t seed;
	uint64_t ops, found_other, reclaims, shadowed;
};

static void *c_thread(void *p)
{
	struct c_arg *a = p;
	struct nsk_registry *r = a->r;
	struct nsk_reg_key mine;
	c_key(&mine, a->owner);
	uint64_t s = a->seed, counter = 1;
	struct nsk_reg_entry e;
	while (t_now_ns() < a->until_ns) {
		for (int it = 0; it < 32; it++, a->ops++) {
			uint64_t st = ((uint64_t)a->owner << 48) | counter;
			int slot = c_insert(r, a->owner, counter++), stale = -1;
			CHECK(slot >= 0);
			if ((t_rng(&s) & 7) == 0) {
				/* A restart under the same pid: the insert retires the previous
				 * entry if it passes it; it may instead stop earlier on the probe
				 * path (a slot freed meanwhile), and then the new entry shadows
				 * the old one for every lookup. */
				int prev = slot;
				st = ((uint64_t)a->owner << 48) | counter;
				slot = c_insert(r, a->owner, counter++);
				CHECK(slot >= 0 && slot != prev);
				if (nsk_registry_read(r, prev, &e) && e.start_time == st - 1) {
					uint32_t n = r->nslots;
					uint32_t h = nsk_registry_hash(mine.port, mine.netns, n);
					if (((uint32_t)slot + n - h) % n >
					    ((uint32_t)prev + n - h) % n)
						FAILF("owner %u: dead predecessor in slot %d not "
						      "reclaimed by the insert into slot %d",
						      a->owner, prev, slot);
					stale = prev;
					a->shadowed++;
				} else {
					a->reclaims++;
				}
			}
			/* our own key: found, and it is exactly what we inserted */
			int l = nsk_registry_lookup(r, &mine, (int)(t_rng(&s) & 1), &e);
			if (l != slot)
				FAILF("owner %u: lookup of own key gave %d, inserted in %d",
				      a->owner, l, slot);
			entry_check(&e, "own lookup");
			CHECK_EQ(e.start_time, st);
			/* someone else's key: absent, or a whole entry of that key */
			uint32_t other = (uint32_t)(t_rng(&s) % a->nowners);
			struct nsk_reg_key ok;
			c_key(&ok, other);
			l = nsk_registry_lookup(r, &ok, 1, &e);
			if (l >= 0) {
				entry_check(&e, "other lookup");
				CHECK_EQ(e.start_time >> 48, other);
				a->found_other++;
			} else {
				CHECK_EQ(l, -ENOENT);
			}
			/* a random slot near the busy chains */
			uint32_t h = nsk_registry_hash((uint16_t)(2000 + t_rng(&s) % C_PORTS),
			                               C_NETNS, r->nslots);
			int rs = (int)((h + t_rng(&s) % 64) % r->nslots);
			if (nsk_registry_read(r, rs, &e))
				entry_check(&e, "read");
			nsk_registry_remove(r, slot, (pid_t)(1000 + a->owner));
			if (stale >= 0)
				nsk_registry_remove(r, stale, (pid_t)(1000 + a->owner));
			l = nsk_registry_lookup(r, &mine, 0, &e);
			if (l != -ENOENT)
				FAILF("owner %u: own key still found in slot %d after remove",
				      a->owner, l);
		}
	}
	return NULL;
}

/* Run @nthreads owners starting at @first in this process until @until_ns. */
static void c_run(struct nsk_registry *r, uint32_t first, int nthreads, uint32_t nowners,
                  uint64_t until_ns, uint64_t s, const char *who)
{
	pthread_t th[8];
	struct c_arg a[8];
	CHECK(nthreads <= 8);
	for (int i = 0; i < nthreads; i++) {
		a[i] = (struct c_arg){.r = r,
		                      .owner = first + (uint32_t)i,
		                      .nowners = nowners,
		                      .until_ns = until_ns,
		                      .seed = t_rng(&s)};
		CHECK_EQ(pthread_create(&th[i], NULL, c_thread, &a[i]), 0);
	}
	uint64_t ops = 0, other = 0, recl = 0, shad = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		ops += a[i].ops;
		other += a[i].found_other;
		recl += a[i].reclaims;
		shad += a[i].shadowed;
	}
	printf("   %s: %d threads, %" PRIu64 " insert/lookup/remove rounds, %" PRIu64
	       " reclaims (%" PRIu64 " shadowed instead), %" PRIu64 " foreign entries seen whole\n",
	       who, nthreads, ops, recl, shad, other);
	CHECK(ops > 0);
}

static void test_concurrent(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	const int nthreads = 3;
	uint64_t dur = 600000000ull; /* 0.6 s */
	uint64_t until = t_now_ns() + dur;
	uint64_t s = seed ^ 0xabcdef;
	uint64_t s1 = t_rng(&s), s2 = t_rng(&s);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(30);
		struct nsk_registry r2; /* its own attach, as another process would */
		CHECK_EQ(nsk_registry_attach(&r2, base, NSK_REG_FILE_SIZE), 0);
		c_run(&r2, (uint32_t)nthreads, nthreads, 2 * (uint32_t)nthreads, until, s2,
		      "child");
		_exit(0);
	}
	c_run(&r, 0, nthreads, 2 * (uint32_t)nthreads, until, s1, "parent");
	t_wait_child(pid, "registry child");
	/* everything removed: no valid entry remains */
	struct nsk_reg_entry e;
	uint32_t valid = 0, dead = 0;
	for (uint32_t i = 0; i < r.nslots; i++) {
		valid += (uint32_t)nsk_registry_read(&r, (int)i, &e);
		dead += NSK_RE_KIND(r.e[i].state) == NSK_RE_DEAD;
	}
	CHECK_EQ(valid, 0);
	printf("   %u slots used at the peak (now DEAD)\n", dead);
	reg_free(base);
}

/* One writer keeps replacing the entry of one slot (remove + insert reuse the same slot);
 * readers must get either nothing or a whole entry, never a mix of two generations. */
struct torn_arg {
	struct nsk_registry *r;
	_Atomic int stop;
	uint64_t reads_ok, reads_none;
	int slot;
};

static void *torn_writer(void *p)
{
	struct torn_arg *a = p;
	uint64_t counter = 1;
	while (!atomic_load_explicit(&a->stop, memory_order_relaxed)) {
		int s = c_insert(a->r, 7, counter++);
		CHECK_EQ(s, a->slot);
		nsk_registry_remove(a->r, s, 1007);
	}
	return NULL;
}

static void *torn_reader(void *p)
{
	struct torn_arg *a = p;
	struct nsk_reg_entry e;
	struct nsk_reg_key k;
	c_key(&k, 7);
	/* bounded by iterations and time (sanitizer builds are much slower) */
	uint64_t until = t_now_ns() + 300000000ull;
	for (unsigned i = 0; (i & 1023) || t_now_ns() < until; i++) {
		if (nsk_registry_read(a->r, a->slot, &e)) {
			entry_check(&e, "torn read");
			a->reads_ok++;
		} else {
			a->reads_none++;
		}
		if (nsk_registry_lookup(a->r, &k, 1, &e) >= 0)
			entry_check(&e, "torn lookup");
	}
	return NULL;
}

static void test_torn_read(void)
{
	void *base = reg_alloc();
	struct nsk_registry r;
	reg_new(&r, base, NSK_REG_SLOTS);
	struct nsk_reg_key k;
	c_key(&k, 7);
	/* Deterministic part: a slot whose state word changes between the two loads of
	 * nsk_registry_read is detected. Simulate the peer by a state that is not VALID. */
	int slot = c_insert(&r, 7, 1);
	CHECK(slot >= 0);
	struct nsk_reg_entry e;
	uint32_t st = r.e[slot].state;
	r.e[slot].state = (st & ~3u) | NSK_RE_BUSY; /* a writer is in the middle */
	CHECK_EQ(nsk_registry_read(&r, slot, &e), 0);
	CHECK_EQ(lookup(&r, &k, 1, NULL), -ENOENT);
	r.e[slot].state = st;
	CHECK_EQ(nsk_registry_read(&r, slot, &e), 1);
	entry_check(&e, "restored");
	nsk_registry_remove(&r, slot, 1007);

	struct torn_arg a = {.r = &r, .slot = slot};
	pthread_t w, rd;
	CHECK_EQ(pthread_create(&w, NULL, torn_writer, &a), 0);
	CHECK_EQ(pthread_create(&rd, NULL, torn_reader, &a), 0);
	uint64_t t0 = t_now_ns();
	pthread_join(rd, NULL);
	atomic_store(&a.stop, 1);
	pthread_join(w, NULL);
	printf("   %" PRIu64 " whole reads, %" PRIu64 " empty/changing in %.2f s\n", a.reads_ok,
	       a.reads_none, (double)(t_now_ns() - t0) / 1e9);
	reg_free(base);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(55);
	seed = t_seed();
	RUN(test_format_attach);
	RUN(test_exact);
	RUN(test_wildcard_v4);
	RUN(test_dual_stack);
	RUN(test_exact_preferred);
	RUN(test_netns);
	RUN(test_foreign);
	RUN(test_remove_reinsert);
	RUN(test_full);
	RUN(test_stale_reclaim);
	RUN(test_torn_read);
	RUN(test_concurrent);
	return 0;
}
