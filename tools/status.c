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
#include "core/registry.h"
#include "platform/linux.h"

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

/* Iterate the live connection tables of the domain. */
typedef void (*tab_fn)(struct nsk_proctab *t, void *arg);
static void each_table(const char *dir, tab_fn fn, void *arg, int gc)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return;
	struct dirent *de;
	while ((de = readdir(dp))) {
		if (strncmp(de->d_name, "proc-", 5) != 0)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct nsk_proctab t;
		if (nsk_proctab_map(&t, path) < 0) {
			/* A process killed while creating its table leaves it short or unformatted. */
			long pid = strtol(de->d_name + 5, NULL, 10);
			if (gc && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH &&
			    unlink(path) == 0)
				printf("removed unfinished table of dead process %ld\n", pid);
			continue;
		}
		int alive = nsk_proc_alive((pid_t)t.hdr->pid, t.hdr->start_time) ||
			    nsk_proctab_in_use(&t, 0) > 0;
		if (alive)
			fn(&t, arg);
		else if (gc && unlink(path) == 0)
			printf("removed table of dead process %u\n", t.hdr->pid);
		nsk_proctab_unmap(&t);
	}
	closedir(dp);
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
			       "\"wakeups_sent\": %llu, \"control_bytes_received\": %llu}",
			       o->first ? "" : ",", c.owner_pid, c.fd, kind_name(c.kind), la, ra,
			       mode_name(c.mode), (unsigned long long)c.tx_shm_bytes,
			       (unsigned long long)c.rx_shm_bytes, (unsigned long long)c.tx_shm_msgs,
			       (unsigned long long)c.rx_shm_msgs, (unsigned long long)c.tx_tcp,
			       (unsigned long long)c.rx_tcp, (unsigned long long)c.tx_tcp_msgs,
			       (unsigned long long)c.rx_tcp_msgs, (unsigned long long)c.wakes_sent,
			       (unsigned long long)c.ctl_bytes);
		} else {
			printf("%-7u %-4u %-6s %-22s %-22s %-7s %12llu %12llu %10llu %10llu %8llu\n",
			       c.owner_pid, c.fd, kind_name(c.kind), la, ra, mode_name(c.mode),
			       (unsigned long long)c.tx_shm_bytes, (unsigned long long)c.rx_shm_bytes,
			       (unsigned long long)c.tx_tcp, (unsigned long long)c.rx_tcp,
			       (unsigned long long)c.wakes_sent);
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
		       "\"fallback_registry\": %llu, \"mem_charged\": %llu}",
		       o->first ? "" : ",", t->hdr->pid, (unsigned long long)k[NSK_PC_OFFERS_SENT],
		       (unsigned long long)k[NSK_PC_OFFERS_FAILED], (unsigned long long)k[NSK_PC_CLAIMS],
		       (unsigned long long)k[NSK_PC_OFFERS_EXPIRED],
		       (unsigned long long)k[NSK_PC_FALLBACKS], (unsigned long long)k[NSK_PC_BROKEN],
		       stx, srx, ttx, trx, (unsigned long long)k[NSK_PC_UNPROVEN],
		       (unsigned long long)k[NSK_PC_FB_FD], (unsigned long long)k[NSK_PC_FB_MEM],
		       (unsigned long long)k[NSK_PC_FB_BUDGET], (unsigned long long)k[NSK_PC_FB_REGISTRY],
		       (unsigned long long)nsk_load64(&t->hdr->mem_charged));
	else
		printf("%-7u %8llu %8llu %8llu %8llu %9llu %8llu %14llu %14llu %12llu %12llu\n",
		       t->hdr->pid, (unsigned long long)k[NSK_PC_OFFERS_SENT],
		       (unsigned long long)k[NSK_PC_OFFERS_FAILED], (unsigned long long)k[NSK_PC_CLAIMS],
		       (unsigned long long)k[NSK_PC_OFFERS_EXPIRED],
		       (unsigned long long)k[NSK_PC_FALLBACKS], (unsigned long long)k[NSK_PC_BROKEN],
		       stx, srx, ttx, trx);
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
		       "  \"listeners\": [",
		       d.dir, d.shared, (unsigned long long)nsk_load64(&d.reg.hdr->mem_used));
	else
		printf("domain %s\n\nlisteners (tcp) and inboxes (udp)\n%-7s %-5s %-28s %10s %10s\n",
		       d.dir, "pid", "proto", "address", "accepted", "upgraded");
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
		printf("\nconnections\n%-7s %-4s %-6s %-22s %-22s %-7s %12s %12s %10s %10s %8s\n", "pid",
		       "fd", "role", "local", "remote", "mode", "shm-tx-B", "shm-rx-B", "tcp-tx-B",
		       "tcp-rx-B", "wakeups");
	each_table(d.dir, print_table, &o, 0);
	o.first = 1;
	if (json)
		printf("\n  ],\n  \"processes\": [");
	else
		printf("\nprocesses\n%-7s %8s %8s %8s %8s %9s %8s %14s %14s %12s %12s\n", "pid",
		       "offers", "failed", "claims", "expired", "fallback", "broken", "shm-tx-B",
		       "shm-rx-B", "tcp-tx-B", "tcp-rx-B");
	each_table(d.dir, print_counters, &o, 0);
	if (json)
		printf("\n  ]\n}\n");
	nsk_domain_close(&d);
	return 0;
}

static void ignore_table(struct nsk_proctab *t, void *arg)
{
	(void)t;
	(void)arg;
}

/* Rendezvous sockets are named rv-PID-RANDOM; a killed process leaves its own behind (the
 * registry entry that named it may already be gone). Remove those whose process no longer
 * exists (ESRCH; another user's live process answers EPERM and is left alone). */
static int gc_rendezvous(const char *dir)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		char *end;
		if (strncmp(de->d_name, "rv-", 3) != 0)
			continue;
		long pid = strtol(de->d_name + 3, &end, 10);
		if (pid <= 0 || *end != '-' || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path) &&
		    unlink(path) == 0)
			n++;
	}
	closedir(dp);
	return n;
}

int nsk_cli_gc(const char *dir)
{
	struct nsk_domain d;
	if (open_domain(&d, dir, "gc") < 0)
		return 1;
	int n = 0;
	for (uint32_t i = 0; i < d.reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (nsk_registry_read(&d.reg, (int)i, &e) &&
		    !nsk_proc_alive((pid_t)e.pid, e.start_time)) {
			nsk_registry_mark_dead(&d.reg, (int)i, e.state);
			char p[PATH_MAX];
			if (nsk_rv_path(&d, e.rv, p, sizeof(p)) == 0)
				unlink(p);
			n++;
		}
	}
	printf("retired %d stale registry entries\n", n);
	printf("returned %llu bytes of dead processes' memory-budget shares\n",
	       (unsigned long long)nsk_budget_reclaim(&d));
	struct out o = {0};
	each_table(d.dir, ignore_table, &o, 1);
	printf("removed %d rendezvous sockets of dead processes\n", gc_rendezvous(d.dir));
	nsk_domain_close(&d);
	return 0;
}
