/* SPDX-License-Identifier: MIT */
/* metrics.c — Prometheus text exposition of a domain (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/registry.h"
#include "platform/linux.h"
#include "tables.h"

#define NMODES 5 /* enum nsk_conn_mode */
static const char *const mode_label[NMODES] = {"tcp", "offered", "shm", "plain", "broken"};

struct proc_row {
	uint32_t pid;
	uint32_t want_tcp;
	unsigned conns;
	char comm[32];
};

struct snap {
	unsigned conns[NMODES];
	unsigned tx_ring; /* connection ends whose sending direction is on the ring */
	unsigned udp;
	uint64_t shm_tx, shm_rx, tcp_tx, tcp_rx;
	uint64_t pc[NSK_PC_NR];
	uint64_t switches;
	struct proc_row *procs;
	size_t nprocs, cap;
	int nomem;
};

static void take_table(struct nsk_proctab *t, void *arg)
{
	struct snap *s = arg;
	if (s->nprocs == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		struct proc_row *p = realloc(s->procs, cap * sizeof(*p));
		if (!p) {
			s->nomem = 1;
			return;
		}
		s->procs = p;
		s->cap = cap;
	}
	struct proc_row *row = &s->procs[s->nprocs++];
	memset(row, 0, sizeof(*row));
	row->pid = t->hdr->pid;
	row->want_tcp = nsk_load32(&t->hdr->want_tcp);
	nsk_proc_comm(row->pid, row->comm, sizeof(row->comm));

	const uint64_t *k = t->hdr->counters;
	for (int i = 0; i < NSK_PC_NR; i++)
		s->pc[i] += nsk_load64(&k[i]);
	/* bytes of closed connections (already in the counters) plus those of live ones */
	uint32_t high = nsk_proctab_readable(t);
	for (uint32_t i = 0; i < high; i++) {
		struct nsk_conn c = t->conns[i];
		if (!c.owner_pid)
			continue;
		s->shm_tx += c.tx_shm_bytes;
		s->shm_rx += c.rx_shm_bytes;
		s->tcp_tx += c.tx_tcp;
		s->tcp_rx += c.rx_tcp;
		if (c.kind == NSK_CK_UDP && kill((pid_t)c.owner_pid, 0) == 0)
			s->udp++;
		if (!nsk_table_conn_live(&c))
			continue;
		row->conns++;
		s->switches += c.switches;
		if (c.mode < NMODES)
			s->conns[c.mode]++;
		if (c.mode == NSK_MODE_SHM && c.tx_switched)
			s->tx_ring++;
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP nearsock_%s %s\n# TYPE nearsock_%s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	head(f, name, type, help);
	fprintf(f, "nearsock_%s %llu\n", name, (unsigned long long)v);
}

int nsk_metrics_write(FILE *f, struct nsk_domain *d, const struct nsk_agent_stats *agent)
{
	struct snap s;
	memset(&s, 0, sizeof(s));
	nsk_tables_each(d->dir, take_table, &s, 0);

	unsigned lis_tcp = 0, lis_udp = 0;
	for (uint32_t i = 0; i < d->reg.nslots; i++) {
		struct nsk_reg_entry e;
		if (!nsk_registry_read(&d->reg, (int)i, &e) ||
		    !nsk_proc_alive((pid_t)e.pid, e.start_time))
			continue;
		if (e.flags & NSK_RE_UDP)
			lis_udp++;
		else
			lis_tcp++;
	}

	one(f, "processes", "gauge", "Processes with a live connection table in the domain.",
	    s.nprocs);
	head(f, "process_connections", "gauge", "Live TCP connection ends of each process.");
	for (size_t i = 0; i < s.nprocs; i++)
		fprintf(f, "nearsock_process_connections{pid=\"%u\",comm=\"%s\"} %u\n",
			s.procs[i].pid, s.procs[i].comm, s.procs[i].conns);
	head(f, "process_want_tcp", "gauge",
	     "1 while the process is evacuated (nearsock evacuate PID), else 0.");
	for (size_t i = 0; i < s.nprocs; i++)
		fprintf(f, "nearsock_process_want_tcp{pid=\"%u\"} %u\n", s.procs[i].pid,
			s.procs[i].want_tcp);
	one(f, "domain_want_tcp", "gauge",
	    "1 while the whole domain is evacuated (nearsock evacuate --all), else 0.",
	    nsk_load32(&d->reg.hdr->want_tcp));
	head(f, "listeners", "gauge", "Live registry entries: TCP listeners and UDP inboxes.");
	fprintf(f, "nearsock_listeners{proto=\"tcp\"} %u\nnearsock_listeners{proto=\"udp\"} %u\n",
		lis_tcp, lis_udp);
	head(f, "connections", "gauge", "Live TCP connection ends by mode.");
	for (int m = 0; m < NMODES; m++)
		fprintf(f, "nearsock_connections{mode=\"%s\"} %u\n", mode_label[m], s.conns[m]);
	one(f, "connections_tx_ring", "gauge",
	    "Live TCP connection ends whose sending direction is on the shared-memory ring.",
	    s.tx_ring);
	one(f, "udp_sockets", "gauge", "Live UDP sockets tracked by nearsock.", s.udp);
	head(f, "bytes_total", "counter",
	     "Application bytes by path (shm: rings and inboxes, tcp: the kernel) and direction.");
	fprintf(f,
		"nearsock_bytes_total{path=\"shm\",dir=\"tx\"} %llu\n"
		"nearsock_bytes_total{path=\"shm\",dir=\"rx\"} %llu\n"
		"nearsock_bytes_total{path=\"tcp\",dir=\"tx\"} %llu\n"
		"nearsock_bytes_total{path=\"tcp\",dir=\"rx\"} %llu\n",
		(unsigned long long)(s.shm_tx + s.pc[NSK_PC_CLOSED_SHM_TX]),
		(unsigned long long)(s.shm_rx + s.pc[NSK_PC_CLOSED_SHM_RX]),
		(unsigned long long)(s.tcp_tx + s.pc[NSK_PC_CLOSED_TCP_TX]),
		(unsigned long long)(s.tcp_rx + s.pc[NSK_PC_CLOSED_TCP_RX]));
	one(f, "offers_sent_total", "counter", "Shared-memory offers sent by clients.",
	    s.pc[NSK_PC_OFFERS_SENT]);
	one(f, "offers_failed_total", "counter", "Offers that could not be sent.",
	    s.pc[NSK_PC_OFFERS_FAILED]);
	one(f, "offers_expired_total", "counter", "Offers never claimed in time.",
	    s.pc[NSK_PC_OFFERS_EXPIRED]);
	one(f, "claims_total", "counter", "Offers claimed by servers (connections upgraded).",
	    s.pc[NSK_PC_CLAIMS]);
	one(f, "fallbacks_total", "counter",
	    "Connections that stayed on TCP because a resource was exhausted.",
	    s.pc[NSK_PC_FALLBACKS]);
	head(f, "fallbacks_by_cause_total", "counter", "Fallbacks to TCP by cause.");
	fprintf(f,
		"nearsock_fallbacks_by_cause_total{cause=\"fd\"} %llu\n"
		"nearsock_fallbacks_by_cause_total{cause=\"mem\"} %llu\n"
		"nearsock_fallbacks_by_cause_total{cause=\"budget\"} %llu\n"
		"nearsock_fallbacks_by_cause_total{cause=\"registry\"} %llu\n",
		(unsigned long long)s.pc[NSK_PC_FB_FD], (unsigned long long)s.pc[NSK_PC_FB_MEM],
		(unsigned long long)s.pc[NSK_PC_FB_BUDGET],
		(unsigned long long)s.pc[NSK_PC_FB_REGISTRY]);
	one(f, "broken_total", "counter", "Protocol violations by peers (connections reset).",
	    s.pc[NSK_PC_BROKEN]);
	one(f, "unproven_total", "counter",
	    "Shared domain: peers whose identity could not be proven (stayed on TCP).",
	    s.pc[NSK_PC_UNPROVEN]);
	one(f, "switches_total", "counter",
	    "Switches between shared memory and TCP (epochs started) of live connection ends.",
	    s.switches);
	one(f, "mem_used_bytes", "gauge", "Channel memory charged against the domain budget.",
	    nsk_load64(&d->reg.hdr->mem_used));
	one(f, "mem_budget_bytes", "gauge", "The domain's memory budget (0: none).",
	    nsk_load64(&d->reg.hdr->mem_budget));
	if (agent) {
		one(f, "agent_passes_total", "counter", "Passes of the agent.", agent->passes);
		one(f, "agent_joins_total", "counter", "Processes seen joining the domain.",
		    agent->joins);
		one(f, "agent_leaves_total", "counter", "Processes seen leaving the domain.",
		    agent->leaves);
		head(f, "agent_gc_total", "counter", "Objects of dead processes collected.");
		fprintf(f,
			"nearsock_agent_gc_total{object=\"registry_entry\"} %u\n"
			"nearsock_agent_gc_total{object=\"table\"} %u\n"
			"nearsock_agent_gc_total{object=\"rendezvous\"} %u\n",
			agent->gc.entries, agent->gc.tables, agent->gc.rendezvous);
		one(f, "agent_gc_budget_bytes_total", "counter",
		    "Memory-budget bytes of dead processes given back.", agent->gc.budget_bytes);
	}
	free(s.procs);
	if (fflush(f) != 0 || ferror(f) || s.nomem)
		return -EIO;
	return 0;
}

int nsk_metrics_write_file(const char *path, struct nsk_domain *d,
			   const struct nsk_agent_stats *agent)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int r = -errno;
		close(fd);
		unlink(tmp);
		return r;
	}
	int r = nsk_metrics_write(f, d, agent);
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

int nsk_cli_metrics(const char *dir)
{
	struct nsk_domain d;
	int r = nsk_domain_open(&d, dir, 0);
	if (r < 0) {
		char def[PATH_MAX];
		nsk_domain_default_dir(def, sizeof(def));
		fprintf(stderr, "nearsock metrics: cannot open domain %s: %s\n", dir ? dir : def,
			strerror(-r));
		return 1;
	}
	r = nsk_metrics_write(stdout, &d, NULL);
	nsk_domain_close(&d);
	if (r < 0) {
		fprintf(stderr, "nearsock metrics: cannot write to stdout: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
