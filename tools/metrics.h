/* SPDX-License-Identifier: MIT */
/* metrics.h — the domain's state in the Prometheus text exposition format (version 0.0.4),
 * metric names prefixed nearsock_: `nearsock metrics` prints it once, the agent rewrites its
 * --metrics-file with it every interval (adding its own nearsock_agent_* counters). Byte and
 * event counters are sums over the processes alive now: a process that leaves takes its
 * share with it, which Prometheus's rate() sees as a counter reset. */
#ifndef NSK_CLI_METRICS_H
#define NSK_CLI_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "core/domain.h"
#include "gc.h"

/* The agent's own counters since it started. */
struct nsk_agent_stats {
	uint64_t passes;
	uint64_t joins, leaves;
	struct nsk_gc_result gc;
};

/* nsk_metrics_write - write the metrics of @d (and @agent's, unless NULL) to @f.
 * 0 or -EIO when writing failed. */
int nsk_metrics_write(FILE *f, struct nsk_domain *d, const struct nsk_agent_stats *agent);
/* nsk_metrics_write_file - replace @path atomically (a temporary file in the same
 * directory, then rename): readers see the old or the new text, never a part. 0 or -errno. */
int nsk_metrics_write_file(const char *path, struct nsk_domain *d,
			   const struct nsk_agent_stats *agent);
/* nsk_cli_metrics - `nearsock metrics [--dir DIR]`: print once. Exit code. */
int nsk_cli_metrics(const char *dir);

#endif
