/* SPDX-License-Identifier: MIT */
/* status.c — `nearsock status [--json]` and `nearsock gc` (see status.h). */
#include "status.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/budget.h"
#include "core/domain.h"
#include "core/region.h"
#include "core/registry.h"
#include "gc.h"
#include "platform/linux.h"
#include "tables.h"
#include "vm.h"

static const char *mode_name(uint32_t m)
{
	switch (m) {
	case NSK_MODE_TCP:
		return "tcp";
	case NSK_MODE_OFFERED:
		return "offered";
	case NSK_MODE_SHM:
		return "shm";
	case NSK_MODE_PLAIN:
		return "tcp";
	case NSK_MODE_BROKEN:
		return "broken";
	}
	return "?";
}

static const char *kind_name(uint32_t k)
{
	switch (k) {
	case NSK_CK_LISTENER:
		return "listener";
	case NSK_CK_CLIENT:
		return "client";
	case NSK_CK_SERVER:
		return "server";
	case NSK_CK_UDP:
		return "udp";
	}
	return "socket";
}

static void fmt_addr(char *buf, size_t len, uint16_t family, const uint8_t *addr, uint16_t port)
{
	char a[INET6_ADDRSTRLEN] = "?";
	inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr, a, sizeof(a));
	if (family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, port);
	else
		snprintf(buf, len, "%s:%u", a, port);
}

static int open_domain(struct nsk_domain *d, const char *dir, const char *cmd)
{
	int r = nsk_domain_open(d, dir, 0);
	if (r < 0) {
		char def[PATH_MAX];
		nsk_domain_default_dir(def, sizeof(def));
		fprintf(stderr, "nearsock %s: cannot open domain %s: %s\n", cmd, dir ? dir : def,
			strerror(-r));
		return -1;
	}
	return 0;
}

struct out {
	int json;
	int first;
};

static void print_table(struct nsk_proctab *t, void *arg)
{
	struct out *o = arg;
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high; i++) {
		struct nsk_conn c = t->conns[i];
		if (!c.owner_pid || c.kind == NSK_CK_NONE || c.kind == NSK_CK_LISTENER ||
		    kill((pid_t)c.owner_pid, 0) < 0)
			continue;
		/* the sending direction: through the ring once our switch point is published */
		const char *txp = c.mode == NSK_MODE_SHM && c.tx_switched ? "ring" : "tcp";
		char la[80], ra[80];
		fmt_addr(la, sizeof(la), c.family, c.laddr, c.lport);
		fmt_addr(ra, sizeof(ra), c.family, c.raddr, c.rport);
		if (o->json) {
			printf("%s\n    {\"pid\": %u, \"fd\": %u, \"role\": \"%s\", \"local\": \"%s\", "
			       "\"remote\": \"%s\", \"mode\": \"%s\", "
			       "\"tx_shm_bytes\": %llu, \"rx_shm_bytes\": %llu, "
			       "\"tx_shm_msgs\": %llu, \"rx_shm_msgs\": %llu, "
			       "\"tx_tcp_bytes\": %llu, \"rx_tcp_bytes\": %llu, "
			       "\"tx_tcp_msgs\": %llu, \"rx_tcp_msgs\": %llu, "
			       "\"wakeups_sent\": %llu, \"control_bytes_received\": %llu, "
			       "\"tx_path\": \"%s\", \"switches\": %llu, \"tx_ring_kb\": %u, "
			       "\"ring_changes\": %u, \"mem_charged\": %llu}",
			       o->first ? "" : ",", c.owner_pid, c.fd, kind_name(c.kind), la, ra,
			       mode_name(c.mode), (unsigned long long)c.tx_shm_bytes,
			       (unsigned long long)c.rx_shm_bytes, (unsigned long long)c.tx_shm_msgs,
			       (unsigned long long)c.rx_shm_msgs, (unsigned long long)c.tx_tcp,
			       (unsigned long long)c.rx_tcp, (unsigned long long)c.tx_tcp_msgs,
			       (unsigned long long)c.rx_tcp_msgs, (unsigned long long)c.wakes_sent,
			       (unsigned long long)c.ctl_bytes, txp, (unsigned long long)c.switches,
			       c.tx_ring_kb, c.ring_changes, (unsigned long long)c.charged);
		} else {
			printf("%-7u %-4u %-6s %-22s %-22s %-7s %-4s %12llu %12llu %10llu %10llu %8llu "
			       "%5llu\n",
			       c.owner_pid, c.fd, kind_name(c.kind), la, ra, mode_name(c.mode), txp,
			       (unsigned long long)c.tx_shm_bytes, (unsigned long long)c.rx_shm_bytes,
			       (unsigned long long)c.tx_tcp, (unsigned long long)c.rx_tcp,
			       (unsigned long long)c.wakes_sent, (unsigned long long)c.switches);
		}
		o->first = 0;
	}
}

static void print_counters(struct nsk_proctab *t, void *arg)
{
	struct out *o = arg;
	const uint64_t *k = t->hdr->counters;
	/* bytes of closed connections plus those of live ones */
	unsigned long long stx = k[NSK_PC_CLOSED_SHM_TX], srx = k[NSK_PC_CLOSED_SHM_RX];
	unsigned long long ttx = k[NSK_PC_CLOSED_TCP_TX], trx = k[NSK_PC_CLOSED_TCP_RX];
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high; i++) {
		const struct nsk_conn *c = &t->conns[i];
		if (!nsk_load32(&c->owner_pid))
			continue;
		stx += c->tx_shm_bytes;
		srx += c->rx_shm_bytes;
		ttx += c->tx_tcp;
		trx += c->rx_tcp;
	}
	if (o->json)
		printf("%s\n    {\"pid\": %u, \"offers_sent\": %llu, \"offers_failed\": %llu, "
		       "\"claims\": %llu, \"offers_expired\": %llu, \"fallbacks\": %llu, "
		       "\"broken\": %llu, \"shm_tx_bytes\": %llu, \"shm_rx_bytes\": %llu, "
		       "\"tcp_tx_bytes\": %llu, \"tcp_rx_bytes\": %llu, \"unproven\": %llu, "
		       "\"fallback_fd\": %llu, \"fallback_mem\": %llu, \"fallback_budget\": %llu, "
		       "\"fallback_registry\": %llu, \"mem_charged\": %llu, \"want_tcp\": %u, "
		       "\"ctl_gen\": %u}",
		       o->first ? "" : ",", t->hdr->pid, (unsigned long long)k[NSK_PC_OFFERS_SENT],
		       (unsigned long long)k[NSK_PC_OFFERS_FAILED], (unsigned long long)k[NSK_PC_CLAIMS],
		       (unsigned long long)k[NSK_PC_OFFERS_EXPIRED],
		       (unsigned long long)k[NSK_PC_FALLBACKS], (unsigned long long)k[NSK_PC_BROKEN],
		       stx, srx, ttx, trx, (unsigned long long)k[NSK_PC_UNPROVEN],
		       (unsigned long long)k[NSK_PC_FB_FD], (unsigned long long)k[NSK_PC_FB_MEM],
		       (unsigned long long)k[NSK_PC_FB_BUDGET], (unsigned long long)k[NSK_PC_FB_REGISTRY],
		       (unsigned long long)nsk_load64(&t->hdr->mem_charged),
		       nsk_load32(&t->hdr->want_tcp), nsk_load32(&t->hdr->ctl_gen));
	else
		printf("%-7u %8llu %8llu %8llu %8llu %9llu %8llu %14llu %14llu %12llu %12llu %4s\n",
		       t->hdr->pid, (unsigned long long)k[NSK_PC_OFFERS_SENT],
		       (unsigned long long)k[NSK_PC_OFFERS_FAILED], (unsigned long long)k[NSK_PC_CLAIMS],
		       (unsigned long long)k[NSK_PC_OFFERS_EXPIRED],
		       (unsigned long long)k[NSK_PC_FALLBACKS], (unsigned long long)k[NSK_PC_BROKEN],
		       stx, srx, ttx, trx, nsk_load32(&t->hdr->want_tcp) ? "tcp" : "-");
	o->first = 0;
}

int nsk_cli_status(const char *dir, int json)
{
	struct nsk_domain d;
	if (open_domain(&d, dir, "status") < 0)
		return 1;
	struct out o = {.json = json, .first = 1};
	if (json)
		printf("{\n  \"domain\": \"%s\",\n  \"shared\": %d,\n  \"mem_used\": %llu,\n"
		       "  \"mem_budget\": %llu,\n  \"mem_pressure\": %u,\n  \"want_tcp\": %u,\n"
		       "  \"ctl_gen\": %u,\n  \"listeners\": [",
		       d.dir, d.shared, (unsigned long long)nsk_load64(&d.reg.hdr->mem_used),
		       (unsigned long long)nsk_load64(&d.reg.hdr->mem_budget),
		       nsk_load32(&d.reg.hdr->mem_pressure),
		       nsk_load32(&d.reg.hdr->want_tcp), nsk_load32(&d.reg.hdr->ctl_gen));
	else
		printf("domain %s%s\n\nlisteners (tcp) and inboxes (udp)\n%-7s %-5s %-28s %10s %10s\n",
		       d.dir, nsk_load32(&d.reg.hdr->want_tcp) ? " (evacuated: all on tcp)" : "",
		       "pid", "proto", "address", "accepted", "upgraded");
	for (uint32_t i = 0; i < d.reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (!nsk_registry_read(&d.reg, (int)i, &e) ||
		    !nsk_proc_alive((pid_t)e.pid, e.start_time))
			continue;
		char a[80];
		fmt_addr(a, sizeof(a), e.family, e.addr, e.port);
		if (json)
			printf("%s\n    {\"pid\": %u, \"address\": \"%s\", \"proto\": \"%s\", "
			       "\"netns\": %llu, \"accepted\": %llu, \"upgraded\": %llu}",
			       o.first ? "" : ",", e.pid, a, (e.flags & NSK_RE_UDP) ? "udp" : "tcp",
			       (unsigned long long)e.netns,
			       (unsigned long long)e.accepted, (unsigned long long)e.upgraded);
		else
			printf("%-7u %-5s %-28s %10llu %10llu\n", e.pid,
			       (e.flags & NSK_RE_UDP) ? "udp" : "tcp", a, (unsigned long long)e.accepted,
			       (unsigned long long)e.upgraded);
		o.first = 0;
	}
	o.first = 1;
	if (json)
		printf("\n  ],\n  \"connections\": [");
	else
		printf("\nconnections\n%-7s %-4s %-6s %-22s %-22s %-7s %-4s %12s %12s %10s %10s %8s "
		       "%5s\n",
		       "pid", "fd", "role", "local", "remote", "mode", "tx", "shm-tx-B", "shm-rx-B",
		       "tcp-tx-B", "tcp-rx-B", "wakeups", "swtch");
	nsk_tables_each(d.dir, print_table, &o, 0);
	o.first = 1;
	if (json)
		printf("\n  ],\n  \"processes\": [");
	else
		printf("\nprocesses\n%-7s %8s %8s %8s %8s %9s %8s %14s %14s %12s %12s %4s\n", "pid",
		       "offers", "failed", "claims", "expired", "fallback", "broken", "shm-tx-B",
		       "shm-rx-B", "tcp-tx-B", "tcp-rx-B", "want");
	nsk_tables_each(d.dir, print_counters, &o, 0);
	if (json)
		printf("\n  ]");
	/* With NEARSOCK_DOMAIN=ivshmem:..., the region's members, chunks, offers and listeners too
	 * (what `nearsock vm status` shows). */
	const char *dom = getenv("NEARSOCK_DOMAIN");
	struct nsk_region_spec sp;
	if (nsk_region_parse_domain(dom, &sp) == 1) {
		if (json)
			printf(",\n  \"region\": ");
		else
			printf("\nivshmem region (NEARSOCK_DOMAIN=%s)\n", dom);
		fflush(stdout);
		char *av[] = {"status", (char *)dom, json ? "--json" : NULL, NULL};
		if (nsk_cli_vm(json ? 3 : 2, av) != 0 && json)
			printf("null");
	}
	if (json)
		printf("\n}\n");
	nsk_domain_close(&d);
	return 0;
}

int nsk_cli_gc(const char *dir)
{
	struct nsk_domain d;
	if (open_domain(&d, dir, "gc") < 0)
		return 1;
	struct nsk_gc_result r = {0};
	nsk_gc_run(&d, &r);
	printf("retired %u stale registry entries\n", r.entries);
	printf("returned %llu bytes of dead processes' memory-budget shares\n",
	       (unsigned long long)r.budget_bytes);
	printf("removed %u connection tables of dead processes\n", r.tables);
	printf("removed %u rendezvous sockets of dead processes\n", r.rendezvous);
	nsk_domain_close(&d);
	return 0;
}
