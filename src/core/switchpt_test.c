/* SPDX-License-Identifier: MIT */
/* switchpt_test.c — unit tests of the control parser (switchpt.h): read limits and the
 * data/control split around the peer's switch point, crossing, the FIN word, and what a
 * hostile switch point (behind delivered bytes, huge, wrapped) is answered with. The fuzz
 * target fuzz/fuzz_ctl.c explores the same functions with generated inputs. */
#include "core/switchpt.h"
#include "core/test_util.h"

static void test_unknown(void)
{
	/* switch point not published: everything TCP brings is data, nothing is crossed */
	CHECK_EQ(nsk_sp_limit(100, 0, 0, 4096), 4096);
	CHECK_EQ(nsk_sp_data(100, 0, 0, 77), 77);
	CHECK_EQ(nsk_sp_crossed(100, 0, 0), 0);
}

static void test_known(void)
{
	CHECK_EQ(nsk_sp_limit(100, 1, 150, 4096), 50);
	CHECK_EQ(nsk_sp_limit(100, 1, 150, 10), 10);
	CHECK_EQ(nsk_sp_limit(150, 1, 150, 10), 0);
	/* published while the read was in flight: bytes past it are control bytes */
	CHECK_EQ(nsk_sp_data(100, 1, 150, 60), 50);
	CHECK_EQ(nsk_sp_data(100, 1, 150, 50), 50);
	CHECK_EQ(nsk_sp_data(100, 1, 150, 20), 20);
	CHECK_EQ(nsk_sp_data(150, 1, 150, 3), 0); /* markers and wake-ups only */
	CHECK_EQ(nsk_sp_crossed(149, 1, 150), 0);
	CHECK_EQ(nsk_sp_crossed(150, 1, 150), 1);
	CHECK_EQ(nsk_sp_crossed(0, 1, 0), 1); /* switched before sending anything on TCP */
}

static void test_hostile(void)
{
	/* a switch point behind what was delivered: a protocol violation, never a negative
	 * count (the receive path and FIONREAD used to compute at - rx_tcp unchecked) */
	CHECK_EQ(nsk_sp_data(100, 1, 99, 10), -EPROTO);
	CHECK_EQ(nsk_sp_data(100, 1, 0, 0), -EPROTO);
	CHECK_EQ(nsk_sp_crossed(100, 1, 99), -EPROTO);
	CHECK_EQ(nsk_sp_limit(100, 1, 99, 10), 0);
	/* huge values stay within the request */
	CHECK_EQ(nsk_sp_limit(0, 1, UINT64_MAX, 10), 10);
	CHECK_EQ(nsk_sp_data(0, 1, UINT64_MAX, 10), 10);
	CHECK_EQ(nsk_sp_data(UINT64_MAX - 1, 1, UINT64_MAX, 10), 1);
	CHECK_EQ(nsk_sp_limit(UINT64_MAX - 1, 1, UINT64_MAX, (size_t)-1), 1);
}

static void test_fin(void)
{
	CHECK_EQ(nsk_sp_fin(0), 0);
	CHECK_EQ(nsk_sp_fin(1), 1);
	CHECK_EQ(nsk_sp_fin(2), -EPROTO);
	CHECK_EQ(nsk_sp_fin(UINT32_MAX), -EPROTO);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(30);
	RUN(test_unknown);
	RUN(test_known);
	RUN(test_hostile);
	RUN(test_fin);
	return 0;
}
