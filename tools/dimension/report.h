/* SPDX-License-Identifier: MIT */
/*
 * Output of nearsock-dimension: the human table, the JSON document and the gnuplot plot of
 * delay against container size. Shared by main.c only.
 */
#ifndef NSK_DIMENSION_REPORT_H
#define NSK_DIMENSION_REPORT_H

#include <stdio.h>

#include "model.h"
#include "sim.h"

struct nsk_run {
	unsigned nsrc;
	double rate[NSK_MODEL_MAX_SOURCES];
	struct nsk_model_service svc;
	double timeout;               /* s, 0: none */
	struct nsk_model_sweep sweep; /* target 0: no target */
	size_t max_phases;
	int no_extrapolate;
	int simulate;
	unsigned long sim_packets;
	unsigned long long seed;
	size_t nrows;
	struct nsk_model_row *rows;
	struct nsk_sim_result *sim; /* nrows entries when simulate */
	int *sim_status;
	int chosen;               /* row index, or -errno */
	double suggested_timeout; /* s, for the chosen row */
};

/* nsk_report_table - human-readable table and verdict. */
void nsk_report_table(FILE *f, const struct nsk_run *run);

/* nsk_report_json - one JSON document. */
void nsk_report_json(FILE *f, const struct nsk_run *run);

/*
 * nsk_report_plot - write a PNG of mean delay (and its parts) against k with gnuplot.
 * Returns 0, -ENOENT when gnuplot is not in PATH, or -EIO when gnuplot failed.
 */
int nsk_report_plot(const char *png, const struct nsk_run *run);

#endif
