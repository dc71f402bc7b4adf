/* SPDX-License-Identifier: MIT */
/* vm.c — `nearsock vm init FILE --size N` and `nearsock vm status FILE|auto [--json]`
 * (see vm.h). Everything shown comes from the shared region, which any member may have
 * scribbled on: names are escaped, counts are taken from the validated geometry. */
#include "vm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/region.h"
#include "platform/linux.h"

#define MS 1000000ull

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: nearsock vm init FILE --size N[K|M|G] [--force] [--members N] [--offers N]\n"
	    "                        [--registry N] [--beat-ms N] [--dead-ms N]\n"
	    "       nearsock vm status FILE|auto|ivshmem:SPEC [--json]\n"
	    "  FILE is the host's backing file (e.g. /dev/shm/FILE, QEMU's mem-path); auto finds\n"
	    "  the ivshmem PCI device in a guest (sysfs root: NEARSOCK_SYSFS, default /sys).\n");
}

/* parse_size - "16M" → bytes; 0 on error. */
static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		return 0;
	int shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)v << shift;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	const char *file = NULL;
	uint64_t size = 0;
	int force = 0;
	struct nsk_region_params p = {0};
	for (int i = 0; i < argc; i++) {
		uint32_t v = 0;
		int has = i + 1 < argc;
		if (!strcmp(argv[i], "--size") && has) {
			size = parse_size(argv[++i]);
			if (!size) {
				fprintf(stderr, "nearsock vm init: bad size %s\n", argv[i]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--force")) {
			force = 1;
		} else if ((!strcmp(argv[i], "--members") || !strcmp(argv[i], "--offers") ||
		            !strcmp(argv[i], "--registry") || !strcmp(argv[i], "--beat-ms") ||
		            !strcmp(argv[i], "--dead-ms")) &&
		           has) {
			const char *opt = argv[i++];
			if (parse_u32(argv[i], &v) < 0) {
				fprintf(stderr, "nearsock vm init: bad value %s for %s\n", argv[i],
				        opt);
				return 2;
			}
			if (!strcmp(opt, "--members"))
				p.nmembers = v;
			else if (!strcmp(opt, "--offers"))
				p.noffers = v;
			else if (!strcmp(opt, "--registry"))
				p.reg_slots = v;
			else if (!strcmp(opt, "--beat-ms"))
				p.beat_ns = (uint64_t)v * MS;
			else
				p.dead_ns = (uint64_t)v * MS;
		} else if (argv[i][0] != '-' && !file) {
			file = argv[i];
		} else {
			fprintf(stderr, "nearsock vm init: unknown argument %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!file || !size) {
		usage(stderr);
		return 2;
	}
	struct nsk_rgn_hdr h;
	if (nsk_region_layout(&h, size, &p) < 0) {
		fprintf(stderr,
		        "nearsock vm init: %s: size %llu must be a power of two from %u KiB to "
		        "%llu GiB "
		        "leaving room for one 64 KiB chunk; members <= %u, offers <= %u, registry "
		        "<= %u, "
		        "beat 1 ms..60 s, dead >= 4 beats and <= 1 h\n",
		        file, (unsigned long long)size, NSK_RGN_MIN_SIZE >> 10,
		        (unsigned long long)(NSK_RGN_MAX_SIZE >> 30), NSK_RGN_MEMBERS_MAX,
		        NSK_RGN_OFFERS_MAX, NSK_REG_SLOTS);
		return 2;
	}
	/* Wait long enough to see a beat of every live member of an existing region. */
	uint64_t wait = 2 * (p.beat_ns ? p.beat_ns : 250 * MS) + 100 * MS;
	int r = nsk_region_create_file(file, size, &p, force, wait);
	if (r == -EBUSY) {
		fprintf(stderr,
		        "nearsock vm init: %s holds a region with live members (their "
		        "heartbeats move); not reformatting it (--force to do it anyway)\n",
		        file);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "nearsock vm init: cannot format %s: %s\n", file, strerror(-r));
		return 1;
	}
	printf("formatted %s: %llu bytes, %u member slots, %u offer slots, %llu registry entries, "
	       "%u chunks of 64 KiB at offset %llu, beat %llu ms, dead after %llu ms\n",
	       file, (unsigned long long)size, h.nmembers, h.noffers,
	       (unsigned long long)((h.reg_size - sizeof(struct nsk_reg_hdr)) /
	                            sizeof(struct nsk_reg_entry)),
	       h.nchunks, (unsigned long long)h.data_off, (unsigned long long)(h.beat_ns / MS),
	       (unsigned long long)(h.dead_ns / MS));
	return 0;
}

/* ---------------------------------------------------------------- status -------------- */

/* clean - a printable, JSON-safe copy of untrusted text. */
static void clean(char *dst, size_t len, const char *src)
{
	size_t k = 0;
	for (size_t i = 0; src[i] && k + 1 < len; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[k++] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
	}
	dst[k] = 0;
}

static void fmt_ip(char *buf, size_t len, uint16_t family, const uint8_t *addr)
{
	if (!inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

static const char *mkind_name(uint64_t s)
{
	switch (NSK_RM_KIND(s)) {
	case NSK_RM_FREE:
		return "free";
	case NSK_RM_LIVE:
		return "live";
	case NSK_RM_RECLAIM:
		return "reclaiming";
	}
	return "corrupt";
}

static uint64_t wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_target(struct nsk_region *rg, const char *what)
{
	struct nsk_region_spec sp;
	int r;
	if (!strcmp(what, "auto"))
		r = nsk_region_open_pci(rg, nsk_region_sysfs_root(), NULL);
	else if ((r = nsk_region_parse_domain(what, &sp)) == 1)
		r = nsk_region_open_spec(rg, &sp);
	else if (r == 0)
		r = nsk_region_open_path(rg, what);
	if (r < 0) {
		if (!strcmp(what, "auto") && r == -ENODEV)
			fprintf(stderr,
			        "nearsock vm status: no ivshmem device (1af4:1110) under "
			        "%s/bus/pci/devices\n",
			        nsk_region_sysfs_root());
		else
			fprintf(stderr, "nearsock vm status: cannot open region %s: %s\n", what,
			        r == -EPROTO
			            ? "not a nearsock region (malformed or unformatted header)"
			            : strerror(-r));
		return -1;
	}
	return 0;
}

struct mview {
	struct nsk_region_member_info mi;
	int used;
	uint64_t beat0;
	int beating;
};

static void print_members(struct nsk_region *rg, struct mview *mv, int json, uint64_t observed)
{
	uint64_t wnow = wall_now();
	int first = 1;
	if (!json)
		printf("members (observed for %llu ms)\n%-4s %-20s %-8s %-10s %-10s %10s %-24s %6s "
		       " %s\n",
		       (unsigned long long)(observed / MS), "slot", "name", "pid", "state", "tag",
		       "beats", "heartbeat", "chunks", "addresses");
	for (uint32_t i = 0; i < rg->nmembers; i++) {
		struct nsk_region_member_info *mi = &mv[i].mi;
		if (!mv[i].used)
			continue;
		char name[40], addrs[4 * 48] = "", hb[64];
		clean(name, sizeof(name), mi->name);
		for (uint32_t k = 0; k < mi->naddr; k++) {
			char a[INET6_ADDRSTRLEN];
			fmt_ip(a, sizeof(a), mi->family[k], mi->addr[k]);
			size_t l = strlen(addrs);
			snprintf(addrs + l, sizeof(addrs) - l, json ? "%s\"%s\"" : "%s%s",
			         k ? (json ? ", " : " ") : "", a);
		}
		long long wall_age = mi->beat_wall_ns && wnow >= mi->beat_wall_ns
		                         ? (long long)((wnow - mi->beat_wall_ns) / MS)
		                         : -1;
		if (mv[i].beating)
			snprintf(hb, sizeof(hb), "beating");
		else if (mi->dead)
			snprintf(hb, sizeof(hb), "DEAD (still %llu ms)",
			         (unsigned long long)(mi->since_ns / MS));
		else
			snprintf(hb, sizeof(hb), "still %llu ms",
			         (unsigned long long)(mi->since_ns / MS));
		if (json) {
			printf("%s\n    {\"slot\": %u, \"name\": \"%s\", \"pid\": %u, \"state\": "
			       "\"%s\", "
			       "\"generation\": %u, \"tag\": %u, \"beats\": %llu, \"beating\": %s, "
			       "\"still_ms\": %llu, \"wall_age_ms\": %lld, \"dead\": %s, "
			       "\"chunks\": %llu, "
			       "\"addresses\": [%s]}",
			       first ? "" : ",", i, name, mi->pid, mkind_name(mi->state),
			       NSK_RM_GEN(mi->state), mi->tag, (unsigned long long)mi->beat,
			       mv[i].beating ? "true" : "false",
			       (unsigned long long)(mi->since_ns / MS), wall_age,
			       mi->dead ? "true" : "false", (unsigned long long)mi->chunks, addrs);
		} else {
			char wa[32] = "";
			if (wall_age >= 0)
				snprintf(wa, sizeof(wa), ", wall %lld ms ago", wall_age);
			char hbw[80];
			snprintf(hbw, sizeof(hbw), "%s%s", hb, wa);
			printf("%-4u %-20s %-8u %-10s 0x%08x %10llu %-24s %6llu  %s\n", i, name,
			       mi->pid, mkind_name(mi->state), mi->tag,
			       (unsigned long long)mi->beat, hbw, (unsigned long long)mi->chunks,
			       addrs);
		}
		first = 0;
	}
}

static void print_offers(struct nsk_region *rg, int json)
{
	uint32_t cnt[5];
	nsk_region_offer_count(rg, cnt);
	if (json)
		printf("\n  ],\n  \"offers\": {\"slots\": %u, \"empty\": %u, \"writing\": %u, "
		       "\"posted\": %u, \"claimed\": %u, \"withdrawn\": %u, \"list\": [",
		       rg->noffers, cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
	else
		printf("\noffers: %u slots, %u empty, %u being written, %u posted, %u claimed, "
		       "%u withdrawn\n",
		       rg->noffers, cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);
	static const char *kinds[] = {"empty", "writing", "posted", "claimed", "withdrawn"};
	int first = 1;
	for (uint32_t i = 0; i < rg->noffers; i++) {
		struct nsk_rgn_offer o;
		int k = nsk_region_offer_read(rg, (int)i, &o);
		if (k <= NSK_RO_EMPTY || k > NSK_RO_WITHDRAWN)
			continue;
		char ca[INET6_ADDRSTRLEN], sa[INET6_ADDRSTRLEN];
		fmt_ip(ca, sizeof(ca), o.family, o.caddr);
		fmt_ip(sa, sizeof(sa), o.family, o.saddr);
		int ok = nsk_region_ptr(rg, o.chan_off, o.chan_size) != NULL;
		if (json)
			printf("%s\n    {\"slot\": %u, \"state\": \"%s\", \"from_slot\": %d, "
			       "\"to_slot\": %d, \"client\": \"%s:%u\", \"server\": \"%s:%u\", "
			       "\"chan_off\": %llu, \"chan_size\": %llu, \"valid\": %s}",
			       first ? "" : ",", i, kinds[k],
			       NSK_RGN_TAG_SLOT(NSK_RO_OWNER(o.state)), NSK_RGN_TAG_SLOT(o.to_tag),
			       ca, o.cport, sa, o.sport, (unsigned long long)o.chan_off,
			       (unsigned long long)o.chan_size, ok ? "true" : "false");
		else
			printf("  slot %-4u %-9s member %d -> %d  %s:%u -> %s:%u  channel @%llu "
			       "+%llu%s\n",
			       i, kinds[k], NSK_RGN_TAG_SLOT(NSK_RO_OWNER(o.state)),
			       NSK_RGN_TAG_SLOT(o.to_tag), ca, o.cport, sa, o.sport,
			       (unsigned long long)o.chan_off, (unsigned long long)o.chan_size,
			       ok ? "" : "  (malformed)");
		first = 0;
	}
	if (json)
		printf("\n  ]},\n  \"listeners\": [");
}

static void print_listeners(struct nsk_region *rg, int json)
{
	if (!json)
		printf("\nlisteners\n%-6s %-5s %-40s %s\n", "member", "proto", "address", "owner");
	int first = 1;
	for (uint32_t i = 0; i < rg->reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (!nsk_registry_read(&rg->reg, (int)i, &e))
			continue;
		uint32_t tag = nsk_region_reg_owner(rg, &e);
		char a[INET6_ADDRSTRLEN];
		fmt_ip(a, sizeof(a), e.family, e.addr);
		const char *own = !tag                           ? "foreign"
		                  : nsk_region_tag_live(rg, tag) ? "live"
		                                                 : "stale";
		if (json)
			printf("%s\n    {\"member\": %d, \"proto\": \"%s\", \"address\": \"%s\", "
			       "\"port\": %u, \"owner\": \"%s\"}",
			       first ? "" : ",", tag ? NSK_RGN_TAG_SLOT(tag) : -1,
			       (e.flags & NSK_RE_UDP) ? "udp" : "tcp", a, e.port, own);
		else
			printf("%-6d %-5s %s:%-*u %s\n", tag ? NSK_RGN_TAG_SLOT(tag) : -1,
			       (e.flags & NSK_RE_UDP) ? "udp" : "tcp", a, (int)(39 - strlen(a)),
			       e.port, own);
		first = 0;
	}
}

static int cmd_status(int argc, char **argv)
{
	const char *what = NULL;
	int json = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] != '-' && !what)
			what = argv[i];
		else {
			fprintf(stderr, "nearsock vm status: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!what) {
		usage(stderr);
		return 2;
	}
	struct nsk_region rg;
	if (open_target(&rg, what) < 0)
		return 1;
	/* Liveness is a moving beat counter: watch every member for up to two beat intervals
	 * (at most 2 s), until each live one has beaten once. */
	static struct mview mv[NSK_RGN_MEMBERS_MAX];
	for (uint32_t i = 0; i < rg.nmembers; i++) {
		mv[i].used = nsk_region_member_read(&rg, (int)i, &mv[i].mi) == 1;
		mv[i].beat0 = mv[i].mi.beat;
	}
	uint64_t wait = 2 * rg.beat_ns + 50 * MS, t0 = nsk_now_ns();
	if (wait > 2000 * MS)
		wait = 2000 * MS;
	for (;;) {
		int pending = 0;
		for (uint32_t i = 0; i < rg.nmembers; i++) {
			mv[i].used = nsk_region_member_read(&rg, (int)i, &mv[i].mi) == 1;
			mv[i].beating = mv[i].used && NSK_RM_KIND(mv[i].mi.state) == NSK_RM_LIVE &&
			                mv[i].mi.beat != mv[i].beat0;
			pending += mv[i].used && NSK_RM_KIND(mv[i].mi.state) == NSK_RM_LIVE &&
			           !mv[i].beating;
		}
		if (!pending || nsk_now_ns() - t0 >= wait)
			break;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	uint64_t observed = nsk_now_ns() - t0;
	struct nsk_region_chunk_stats st;
	nsk_region_chunk_stats(&rg, &st);
	time_t ft = (time_t)(nsk_load64(&rg.hdr->format_wall_ns) / 1000000000ull);
	char when[64] = "?";
	struct tm tm;
	if (gmtime_r(&ft, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	if (json) {
		printf(
		    "{\n  \"region\": \"%s\",\n  \"size\": %llu,\n  \"format_gen\": \"%016llx\",\n"
		    "  \"formatted\": \"%s\",\n  \"beat_ns\": %llu,\n  \"dead_ns\": %llu,\n"
		    "  \"observed_ms\": %llu,\n  \"reclaims\": %llu,\n"
		    "  \"chunks\": {\"total\": %u, \"used\": %u, \"free\": %u, \"largest_free\": "
		    "%u, "
		    "\"awaiting_reclaim\": %u, \"allocs\": %llu, \"alloc_fails\": %llu},\n"
		    "  \"members\": [",
		    rg.path, (unsigned long long)rg.size, (unsigned long long)rg.format_gen, when,
		    (unsigned long long)rg.beat_ns, (unsigned long long)rg.dead_ns,
		    (unsigned long long)(observed / MS),
		    (unsigned long long)nsk_load64(&rg.hdr->reclaims), st.total, st.used, st.free,
		    st.largest_free, st.orphan, (unsigned long long)nsk_load64(&rg.hdr->allocs),
		    (unsigned long long)nsk_load64(&rg.hdr->alloc_fails));
	} else {
		printf(
		    "region %s: %llu MiB, format %016llx of %s, beat %llu ms, dead after %llu ms\n"
		    "chunks: %u x 64 KiB, %u used, %u free (largest free run %u), %u awaiting "
		    "reclaim; %llu allocations, %llu failed; %llu members reclaimed\n\n",
		    rg.path, (unsigned long long)(rg.size >> 20), (unsigned long long)rg.format_gen,
		    when, (unsigned long long)(rg.beat_ns / MS),
		    (unsigned long long)(rg.dead_ns / MS), st.total, st.used, st.free,
		    st.largest_free, st.orphan, (unsigned long long)nsk_load64(&rg.hdr->allocs),
		    (unsigned long long)nsk_load64(&rg.hdr->alloc_fails),
		    (unsigned long long)nsk_load64(&rg.hdr->reclaims));
	}
	print_members(&rg, mv, json, observed);
	print_offers(&rg, json);
	print_listeners(&rg, json);
	if (json)
		printf("\n  ]\n}\n");
	nsk_region_close(&rg);
	return 0;
}

int nsk_cli_vm(int argc, char **argv)
{
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[0], "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "nearsock vm: unknown subcommand %s\n", argv[0]);
	usage(stderr);
	return 2;
}
