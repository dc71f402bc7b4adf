/* SPDX-License-Identifier: MIT */
/* budget_test.c — unit tests of the domain memory budget (budget.c): charges within and past
 * the budget, give-back, and reclaiming the share of a process killed while holding it
 * (reclaimed once, however many reclaim), also when its pid's table is recreated. */
#include "core/budget.h"

#include <sys/stat.h>

#include "core/atomics.h"
#include "core/test_util.h"
#include "platform/linux.h"

static char base[128];

static void make_domain(struct nsk_domain *d, const char *name)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/%s", base, name);
	CHECK_EQ(nsk_domain_open(d, dir, 1), 0);
}

static void test_charge(void)
{
	struct nsk_domain d;
	struct nsk_proctab t;
	make_domain(&d, "charge");
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	CHECK_EQ(nsk_budget_charge(&d, &t, 600, 1000), 0);
	CHECK_EQ(nsk_budget_charge(&d, &t, 400, 1000), 0); /* exactly full */
	CHECK_EQ(nsk_budget_charge(&d, &t, 1, 1000), -EDQUOT);
	CHECK_EQ(nsk_load64(&d.reg.hdr->mem_used), 1000);
	CHECK_EQ(nsk_load64(&t.hdr->mem_charged), 1000);
	nsk_budget_uncharge(&d, &t, 600);
	CHECK_EQ(nsk_budget_charge(&d, &t, 500, 1000), 0);
	CHECK_EQ(nsk_budget_charge(&d, &t, 2000, 1000), -EDQUOT); /* larger than the budget */
	nsk_budget_uncharge(&d, &t, 900);
	CHECK_EQ(nsk_load64(&d.reg.hdr->mem_used), 0);
	CHECK_EQ(nsk_budget_reclaim(&d), 0); /* we are alive: nothing to reclaim */
	unlink(t.path);
	nsk_proctab_unmap(&t);
	nsk_domain_close(&d);
}

static void test_reclaim_dead(void)
{
	struct nsk_domain d;
	make_domain(&d, "dead");
	int p[2];
	CHECK(pipe(p) == 0);
	pid_t child = fork();
	if (child == 0) {
		struct nsk_domain cd;
		struct nsk_proctab ct;
		if (nsk_domain_open(&cd, d.dir, 0) < 0 || nsk_proctab_create(&ct, &cd) < 0 ||
		    nsk_budget_charge(&cd, &ct, 700, 1000) < 0)
			_exit(1);
		(void)!write(p[1], "x", 1);
		pause(); /* killed holding its share */
		_exit(0);
	}
	char c;
	CHECK_EQ(read(p[0], &c, 1), 1);
	CHECK_EQ(nsk_load64(&d.reg.hdr->mem_used), 700);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	struct nsk_proctab t;
	CHECK_EQ(nsk_proctab_create(&t, &d), 0);
	/* 700 (dead) + 400 > 1000: the charge reclaims the dead share first */
	CHECK_EQ(nsk_budget_charge(&d, &t, 400, 1000), 0);
	CHECK_EQ(nsk_load64(&d.reg.hdr->mem_used), 400);
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/proc-%d", d.dir, (int)child);
	CHECK_EQ(nsk_budget_reclaim_table(&d, path), 0); /* only once */
	CHECK_EQ(nsk_budget_reclaim(&d), 0);
	nsk_budget_uncharge(&d, &t, 400);
	unlink(path);
	unlink(t.path);
	nsk_proctab_unmap(&t);
	close(p[0]);
	close(p[1]);
	nsk_domain_close(&d);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(60);
	snprintf(base, sizeof(base), "/tmp/nsk-budget-test.%d", (int)getpid());
	CHECK(mkdir(base, 0700) == 0);
	RUN(test_charge);
	RUN(test_reclaim_dead);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	(void)!system(cmd);
	return 0;
}
