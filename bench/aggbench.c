// SPDX-License-Identifier: MIT
/*
 * aggbench.c — nearsock-aggbench: packet aggregation (issue 6) on one UDP channel, measured
 * against the E_k/M/1 model of tools/dimension/adapt.h. Run it under `nearsock run` (or with
 * NEARSOCK_DISABLE=1 for the kernel); the packet-aggregation settings come from the
 * environment (NEARSOCK_BATCH_K / NEARSOCK_BATCH_T_US fixed, else adaptive with
 * NEARSOCK_DELAY_TARGET_US), so one run is one setting.
 *
 * A sender (this process, CPU 1) sends --count datagrams of --size bytes as a Poisson stream at
 * --rate per second, each carrying its send time; a receiver (a forked child, CPU 0) blocks in
 * recvfrom and records every delay. One JSON line: achieved rate, delay mean/p50/p99/p99.9,
 * loss, and from the sender's nearsock statistics the container size k, timeout t, the
 * measured rate lambda and hand-over time 1/mu — and the model's mean delay for that (k,
 * lambda, mu), to compare with the measured mean.
 */

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapt.h"
#include "nearsock/nearsock.h"

#define END_MAGIC 0xfffffffau

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int receiver(int fd, int out, uint64_t count)
{
	uint64_t *d = calloc(count + 1, sizeof(*d));
	char buf[65536];
	uint64_t n = 0, t_first = 0, t_last = 0;
	if (!d)
		return 1;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("recv");
			return 1;
		}
		uint32_t m;
		memcpy(&m, buf, 4);
		if (r == 4 && m == END_MAGIC)
			break;
		uint64_t sent, now = now_ns();
		if (r < 12)
			continue;
		memcpy(&sent, buf + 4, 8);
		if (n <= count)
			d[n < count ? n : count] = now - sent;
		if (!n)
			t_first = now;
		t_last = now;
		n++;
	}
	uint64_t k = n < count ? n : count;
	qsort(d, k, sizeof(*d), cmp_u64);
	double sum = 0;
	for (uint64_t i = 0; i < k; i++)
		sum += (double)d[i];
	double res[6] = {(double)n, k ? sum / (double)k / 1e3 : 0, k ? (double)d[k / 2] / 1e3 : 0,
			 k ? (double)d[k * 99 / 100] / 1e3 : 0, k ? (double)d[k * 999 / 1000] / 1e3 : 0,
			 t_last > t_first ? (double)(n - 1) * 1e9 / (double)(t_last - t_first) : 0};
	if (write(out, res, sizeof(res)) != sizeof(res))
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	double rate = 200000;
	uint64_t count = 200000;
	size_t size = 64;
	int shared = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--rate"))
			rate = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--count"))
			count = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--size"))
			size = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--cpus"))
			shared = !strcmp(argv[i + 1], "shared");
		else {
			fprintf(stderr, "usage: nearsock-aggbench [--rate PPS] [--count N] [--size B] "
					"[--cpus separate|shared]\n");
			return 2;
		}
	}
	if (size < 12 || size > 65507 || rate <= 0) {
		fprintf(stderr, "nearsock-aggbench: --size must be 12..65507 and --rate positive\n");
		return 2;
	}
	int (*stats)(int, struct nearsock_udp_stats *);
	*(void **)&stats = dlsym(RTLD_DEFAULT, "nearsock_udp_stats");
	/* The receiver creates its socket itself: an inbox belongs to the process that bound it. */
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int p[2], q[2];
	if (pipe(p) < 0 || pipe(q) < 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		pin(0);
		close(p[0]);
		close(q[0]);
		int rfd = socket(AF_INET, SOCK_DGRAM, 0);
		int big = 4 << 20;
		setsockopt(rfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
		if (rfd < 0 || bind(rfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    getsockname(rfd, (struct sockaddr *)&a, &al) < 0) {
			perror("receiver socket");
			_exit(1);
		}
		if (write(q[1], &a, sizeof(a)) != sizeof(a))
			_exit(1);
		_exit(receiver(rfd, p[1], count));
	}
	close(p[1]);
	close(q[1]);
	if (read(q[0], &a, sizeof(a)) != sizeof(a)) {
		fprintf(stderr, "nearsock-aggbench: the receiver did not start\n");
		return 1;
	}
	pin(shared ? 0 : 1);
	int sfd = socket(AF_INET, SOCK_DGRAM, 0);
	char *buf = calloc(1, size);
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	usleep(100000); /* the receiver is asleep in recv by now */
	uint64_t t0 = now_ns(), next = t0;
	for (uint64_t i = 0; i < count; i++) {
		/* Poisson arrivals: exponential gaps, busy-waited (sleeping would add its own
		 * latency to the sender's timing; on a shared CPU we yield instead). */
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		double u = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
		next += (uint64_t)(-log(u) / rate * 1e9);
		while (now_ns() < next)
			if (shared)
				sched_yield();
		uint64_t t = now_ns();
		uint32_t m = (uint32_t)i;
		memcpy(buf, &m, 4);
		memcpy(buf + 4, &t, 8);
		if (sendto(sfd, buf, size, 0, (struct sockaddr *)&a, al) < 0 && errno != ENOBUFS) {
			perror("sendto");
			return 1;
		}
	}
	double secs = (double)(now_ns() - t0) * 1e-9;
	struct nearsock_udp_stats st;
	memset(&st, 0, sizeof(st));
	int have = stats && stats(sfd, &st) == 0;
	uint32_t end = END_MAGIC;
	double res[6] = {0};
	for (int i = 0; i < 200; i++) {
		sendto(sfd, &end, 4, 0, (struct sockaddr *)&a, al);
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
		if (waitpid(child, NULL, WNOHANG) == child)
			break;
	}
	if (read(p[0], res, sizeof(res)) != sizeof(res)) {
		fprintf(stderr, "nearsock-aggbench: the receiver did not report\n");
		return 1;
	}
	/* The model: one Poisson stream at the measured rate into containers of k, served at
	 * mu = 1 / (hand-over time). Its mean delay, for the k in use. */
	double lambda = have && st.agg_rate ? (double)st.agg_rate : rate;
	double mu = have && st.agg_svc_ns ? 1e9 / (double)st.agg_svc_ns : 0;
	struct nsk_adapt m;
	memset(&m, 0, sizeof(m));
	int merr = have && mu > 0 ? nsk_adapt_eval(lambda, st.agg_k ? st.agg_k : 1, mu, &m) : -1;
	char model[32];
	if (merr)
		snprintf(model, sizeof(model), "null");
	else
		snprintf(model, sizeof(model), "%.2f", m.delay_us);
	/* The spinning-consumer cycle model (adapt.h): the receiver spins NEARSOCK_SPIN_US
	 * (default 50) before it sleeps; a message taken while it spins costs about 1 us. */
	const char *sp = getenv("NEARSOCK_SPIN_US");
	double spin_us = sp && *sp ? atof(sp) : 50.0;
	struct nsk_adapt_spin ms;
	char mspin[32] = "null", mwakes[32] = "null";
	if (have && mu > 0 &&
	    nsk_adapt_eval_spin(lambda, st.agg_k ? st.agg_k : 1,
	                        st.agg_k > 1 ? (double)st.agg_t_ns / 1e3 : 0.0, 1e6 / mu, spin_us,
	                        1.0, &ms) == 0) {
		snprintf(mspin, sizeof(mspin), "%.2f", ms.delay_us);
		snprintf(mwakes, sizeof(mwakes), "%.0f", ms.wakes_per_msg * (double)count);
	}
	printf("{\"rate\": %.0f, \"sent_s\": %.0f, \"recv_s\": %.0f, \"loss_pct\": %.3f, "
	       "\"delay_mean_us\": %.2f, \"delay_p50_us\": %.2f, \"delay_p99_us\": %.2f, "
	       "\"delay_p999_us\": %.2f, \"preloaded\": %d, \"k\": %u, \"adaptive\": %u, "
	       "\"t_us\": %.1f, \"lambda\": %.0f, \"svc_us\": %.2f, \"wakeups\": %llu, "
	       "\"deferred\": %llu, \"model_delay_us\": %s, \"model_spin_us\": %s, "
	       "\"model_wakeups\": %s}\n",
	       rate, (double)count / secs, res[5], 100.0 * (1.0 - res[0] / (double)count), res[1],
	       res[2], res[3], res[4], have, st.agg_k, st.agg_adaptive, (double)st.agg_t_ns / 1e3,
	       lambda, have ? (double)st.agg_svc_ns / 1e3 : 0.0,
	       (unsigned long long)st.agg_containers, (unsigned long long)st.wakeups_deferred, model,
	       mspin, mwakes);
	return 0;
}
