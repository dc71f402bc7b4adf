/* SPDX-License-Identifier: MIT */
/* nsk_crash — randomized crash-safety driver: a preloaded echo server and a preloaded client
 * (fresh processes each round, one connection) are run again and again, and in each round one
 * of them — chosen at random — is SIGKILLed at a random moment: either after a random delay
 * over the pair's whole life, or as soon as the victim reports a chosen phase (connecting,
 * accepting, TCP before the upgrade, offered/claimed, shared memory, closing) plus a random few
 * hundred microseconds. The survivor must get EOF or an error within --limit-ms of the kill
 * (a server still waiting in accept() had no connection: nothing to notice), close its socket
 * and be left with no channel mapping, no channel memfd and no more descriptors than before
 * the connection. The children report through a small shared file (phase, connection mode,
 * time of the EOF/error, leak counts); the driver itself is not preloaded.
 *
 *   nsk_crash run --lib LIBNEARSOCK --state FILE --kills N [--seed S] [--limit-ms L]
 *   (children: nsk_crash server FILE SEED | nsk_crash client FILE PORT SEED)
 *
 * Output: one JSON line per kill and a summary line {"kills": ..., "by_phase": ...};
 * exit 0 when every kill passed, 1 otherwise. */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

enum phase {
	PH_START = 0, /* process started, no socket yet */
	PH_ACCEPT,    /* server: listening, waiting in accept() */
	PH_CONNECT,   /* client: in connect() */
	PH_TCP,       /* connection up, still on TCP */
	PH_OFFERED,   /* shared memory offered, not yet claimed */
	PH_SHM,       /* on the rings */
	PH_CLOSE,     /* shutting down / closing */
	PH_DONE,      /* finished, about to exit */
	PH_NR
};
static const char *phase_name[PH_NR] = {"start",   "accept", "connect", "tcp",
                                        "offered", "shm",    "close",   "done"};

struct side {
	_Atomic uint32_t phase;
	_Atomic uint32_t port;      /* server: listening port */
	_Atomic uint64_t detect_ns; /* CLOCK_MONOTONIC when EOF or an error was seen (0: not) */
	_Atomic int32_t detect_err; /* 0: EOF; else errno */
	_Atomic uint32_t reported;  /* leak counts below are valid */
	_Atomic uint32_t maps, memfds;
	_Atomic int32_t fd_delta; /* descriptors after closing minus before connecting */
	uint32_t pad[8];
};
struct shared {
	struct side s[2]; /* 0: server, 1: client */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static struct shared *map_state(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, sizeof(struct shared)) < 0) {
		perror(path);
		exit(2);
	}
	void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

/* ------------------------------------------------------------------ children ---------- */

static int (*fd_stats)(int, struct nearsock_conn_stats *);
static struct side *me;

static void set_phase(uint32_t p)
{
	atomic_store(&me->phase, p);
}

/* Phase from the connection's nearsock mode (TCP / offered / shm). */
static void phase_from_mode(int fd)
{
	struct nearsock_conn_stats st;
	if (!fd_stats || fd_stats(fd, &st) < 0)
		return;
	uint32_t p = st.mode == NEARSOCK_MODE_OFFERED ? PH_OFFERED
	             : st.mode == NEARSOCK_MODE_SHM   ? PH_SHM
	                                              : PH_TCP;
	if (atomic_load(&me->phase) < PH_CLOSE)
		set_phase(p);
}

static void detect(int err)
{
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&me->detect_ns, &zero, now_ns());
	if (err)
		atomic_store(&me->detect_err, err);
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* After the connection is closed: what is left of channels in this process. */
static void report_leaks(int fd_base)
{
	char buf[4096];
	uint32_t maps = 0, memfds = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	while (f && fgets(buf, sizeof(buf), f))
		if (strstr(buf, "nearsock-chan"))
			maps++;
	if (f)
		fclose(f);
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char p[300], t[256];
		snprintf(p, sizeof(p), "/proc/self/fd/%s", de->d_name);
		ssize_t n = readlink(p, t, sizeof(t) - 1);
		if (n > 0) {
			t[n] = 0;
			if (strstr(t, "nearsock-chan"))
				memfds++;
		}
	}
	if (d)
		closedir(d);
	atomic_store(&me->maps, maps);
	atomic_store(&me->memfds, memfds);
	atomic_store(&me->fd_delta, count_fds() - fd_base);
	atomic_store(&me->reported, 1);
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 9));
}

static int run_server(struct shared *sh, uint64_t seed)
{
	me = &sh->s[0];
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
		perror("server: listen");
		return 2;
	}
	int fd_base = count_fds();
	atomic_store(&me->port, ntohs(a.sin_port));
	set_phase(PH_ACCEPT);
	int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		detect(errno);
		return 0;
	}
	close(ls); /* one connection per process: the listener leaves the registry now */
	set_phase(PH_TCP);
	static uint8_t buf[65536];
	for (;;) {
		ssize_t n = recv(c, buf, 1 + rng(&seed) % sizeof(buf), 0);
		if (n <= 0) {
			detect(n < 0 ? errno : 0);
			break;
		}
		phase_from_mode(c);
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = send(c, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w < 0) {
				detect(errno);
				break;
			}
			off += w;
		}
		if (off < n)
			break;
		phase_from_mode(c);
	}
	set_phase(PH_CLOSE);
	close(c);
	report_leaks(fd_base - 1); /* the listener is closed too */
	set_phase(PH_DONE);
	return 0;
}

struct writer {
	int fd;
	uint64_t total;
	uint64_t seed;
};

static void *client_writer(void *arg)
{
	struct writer *w = arg;
	static uint8_t buf[65536];
	uint64_t off = 0;
	while (off < w->total) {
		size_t n = 1 + rng(&w->seed) % sizeof(buf);
		if (n > w->total - off)
			n = (size_t)(w->total - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i);
		ssize_t k = send(w->fd, buf, n, MSG_NOSIGNAL);
		if (k < 0)
			return NULL; /* the reader reports; a dead server shows there */
		off += (uint64_t)k;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

static int run_client(struct shared *sh, int port, uint64_t seed)
{
	me = &sh->s[1];
	int fd_base = count_fds();
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	set_phase(PH_CONNECT);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		detect(errno);
		set_phase(PH_CLOSE);
		if (c >= 0)
			close(c);
		report_leaks(fd_base);
		set_phase(PH_DONE);
		return 0;
	}
	set_phase(PH_TCP);
	/* 1 to 40 messages' worth, up to ~2.5 MiB: short lives and transfers through the switch */
	struct writer w = {c, 1 + rng(&seed) % (40u * 65536u), seed ^ 0x9e3779b97f4a7c15ull};
	pthread_t th;
	pthread_create(&th, NULL, client_writer, &w);
	static uint8_t buf[65536];
	uint64_t got = 0;
	int bad = 0;
	for (;;) {
		ssize_t n = recv(c, buf, sizeof(buf), 0);
		if (n < 0) {
			detect(errno);
			break;
		}
		if (n == 0) {
			if (got < w.total)
				detect(0); /* early EOF: the server died */
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			bad |= buf[i] != pattern(got + (uint64_t)i);
		got += (uint64_t)n;
		phase_from_mode(c);
		if (got == w.total)
			set_phase(PH_CLOSE);
	}
	set_phase(PH_CLOSE);
	/* A dead server may leave the writer blocked only until its send fails. */
	pthread_join(th, NULL);
	close(c);
	report_leaks(fd_base);
	set_phase(PH_DONE);
	if (bad) {
		fprintf(stderr, "client: echoed bytes differ from what was sent\n");
		return 3;
	}
	return 0;
}

/* ------------------------------------------------------------------ driver ------------ */

static pid_t spawn(char *const argv[], const char *lib, int eager)
{
	pid_t p = fork();
	if (p == 0) {
		setenv("LD_PRELOAD", lib, 1);
		setenv("NEARSOCK_RING_SIZE", "16K", 1); /* full rings: senders block and wake */
		setenv("NEARSOCK_OFFER_TIMEOUT_MS", "500", 1);
		if (eager)
			setenv("NEARSOCK_UPGRADE", "eager", 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	return p;
}

/* Exit status of @p, waiting at most @ms; -1 (still running) after killing it. */
static int reap(pid_t p, int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000ull;
	int st;
	for (;;) {
		pid_t r = waitpid(p, &st, WNOHANG);
		if (r == p)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (now_ns() > end) {
			kill(p, SIGKILL);
			waitpid(p, &st, 0);
			return -1;
		}
		usleep(1000);
	}
}

static void pause_us(long us)
{
	struct timespec ts = {0, us * 1000};
	nanosleep(&ts, NULL);
}

/* Has @p exited (without reaping it)? */
static int exited_nowait(pid_t p)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)p, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == p;
}

/* Where the threads of a hung process are (for the report). */
static void show_stuck(pid_t p)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)p);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char f[400];
		snprintf(f, sizeof(f), "%s/%s/syscall", path, de->d_name);
		FILE *fp = fopen(f, "r");
		if (fp && fgets(buf, sizeof(buf), fp))
			fprintf(stderr, "hung survivor %d thread %s: syscall %s", (int)p,
			        de->d_name, buf);
		if (fp)
			fclose(fp);
	}
	if (d)
		closedir(d);
	if (getenv("NSK_CRASH_GDB")) { /* debugging aid: the hung process's stacks */
		char cmd[128];
		snprintf(cmd, sizeof(cmd),
		         "gdb -p %d -batch -ex 'thread apply all bt' >&2 2>/dev/null", (int)p);
		(void)!system(cmd);
		snprintf(cmd, sizeof(cmd), "ss -tanpio | grep -A1 'pid=%d,' >&2", (int)p);
		(void)!system(cmd);
	}
}

static int driver(int argc, char **argv)
{
	const char *lib = NULL, *state = NULL;
	int kills = 200, limit_ms = 1000;
	uint64_t seed = 0;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--lib"))
			lib = argv[i + 1];
		else if (!strcmp(argv[i], "--state"))
			state = argv[i + 1];
		else if (!strcmp(argv[i], "--kills"))
			kills = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--limit-ms"))
			limit_ms = atoi(argv[i + 1]);
	}
	if (!lib || !state) {
		fprintf(stderr,
		        "usage: nsk_crash run --lib LIB --state FILE [--kills N] [--seed S]\n");
		return 2;
	}
	if (!seed)
		seed = now_ns() | 1;
	printf("{\"seed\": %llu}\n", (unsigned long long)seed);
	struct shared *sh = map_state(state);
	int by_phase[2][PH_NR] = {{0}};
	int done = 0, rounds = 0, failures = 0, no_conn = 0, late = 0;
	uint64_t worst_ns = 0, life_ns = 20000000; /* running estimate of a round's length */
	while (done < kills && rounds < kills * 4) {
		rounds++;
		memset(sh, 0, sizeof(*sh));
		char seedbuf[32], portbuf[16];
		snprintf(seedbuf, sizeof(seedbuf), "%llu", (unsigned long long)rng(&seed));
		int eager = rng(&seed) % 3 == 0;
		char *sargv[] = {argv[0], "server", (char *)state, seedbuf, NULL};
		uint64_t t0 = now_ns();
		pid_t srv = spawn(sargv, lib, eager);
		while (!atomic_load(&sh->s[0].port) && now_ns() - t0 < 5000000000ull)
			usleep(200);
		if (!atomic_load(&sh->s[0].port)) {
			printf("{\"round\": %d, \"error\": \"server did not listen\"}\n", rounds);
			failures++;
			reap(srv, 0);
			continue;
		}
		snprintf(portbuf, sizeof(portbuf), "%u", atomic_load(&sh->s[0].port));
		char *cargv[] = {argv[0], "client", (char *)state, portbuf, seedbuf, NULL};
		uint64_t tc = now_ns();
		pid_t cli = spawn(cargv, lib, eager);
		/* choose the victim and the moment */
		int victim = (int)(rng(&seed) & 1); /* 0 server, 1 client */
		pid_t vp = victim ? cli : srv, sp = victim ? srv : cli;
		struct side *vs = &sh->s[victim], *ss = &sh->s[!victim];
		uint64_t deadline;
		if (rng(&seed) & 1) {
			/* a random moment over the round's expected life, from the client's
			 * connect() on (its start-up under the preload is not of interest) */
			while (now_ns() - tc < 2000000000ull &&
			       atomic_load(&sh->s[1].phase) < PH_CONNECT && !exited_nowait(cli))
				pause_us(20);
			deadline = now_ns() + rng(&seed) % (life_ns + life_ns / 4);
			while (now_ns() < deadline && atomic_load(&vs->phase) < PH_DONE)
				pause_us(20);
		} else {
			/* as soon as the victim reaches a chosen phase, plus up to 300 us */
			static const uint32_t targets[] = {PH_CONNECT, PH_TCP, PH_OFFERED, PH_SHM,
			                                   PH_CLOSE};
			uint32_t want = targets[rng(&seed) % 5];
			if (victim == 0 && want == PH_CONNECT)
				want = PH_ACCEPT;
			/* generous: a slow (sanitized) start must not turn into a kill at start-up;
			 * a phase the victim skips (offered is short) ends the wait at the next one
			 */
			deadline = tc + 3000000000ull;
			while (now_ns() < deadline && atomic_load(&vs->phase) < want &&
			       !exited_nowait(vp))
				pause_us(20);
			uint64_t extra = now_ns() + rng(&seed) % 300000;
			while (now_ns() < extra)
				pause_us(20);
		}
		uint32_t vphase = atomic_load(&vs->phase);
		int vst;
		int exited = waitpid(vp, &vst, WNOHANG) == vp;
		int alive = !exited && vphase < PH_DONE;
		uint64_t tk = now_ns();
		if (!exited) {
			kill(vp, SIGKILL);
			reap(vp, 2000);
		}
		if (!alive) {
			/* the victim had already finished: a normal round, not a kill */
			int src = reap(sp, 3000);
			life_ns = (life_ns * 7 + (now_ns() - tc)) / 8;
			if (src != 0) {
				printf("{\"round\": %d, \"error\": \"unkilled round: %s exited "
				       "%d\"}\n",
				       rounds, victim ? "server" : "client", src);
				failures++;
			}
			continue;
		}
		/* the survivor must notice within the limit, then close cleanly */
		uint64_t lim = (uint64_t)limit_ms * 1000000ull;
		while (!atomic_load(&ss->detect_ns) && atomic_load(&ss->phase) < PH_DONE &&
		       now_ns() - tk < lim + 2000000000ull) {
			if (victim == 1 && atomic_load(&ss->phase) == PH_ACCEPT &&
			    now_ns() - tk > 300000000ull)
				break; /* no connection ever reached the server */
			usleep(200);
		}
		uint64_t det = atomic_load(&ss->detect_ns);
		uint32_t sphase = atomic_load(&ss->phase);
		const char *verdict = "ok";
		if (victim == 1 && sphase == PH_ACCEPT && !det) {
			verdict = "no-connection";
			no_conn++;
			kill(sp, SIGKILL);
		} else if (!det && sphase < PH_CLOSE) {
			verdict = "survivor-hung";
			show_stuck(sp);
		} else if (det > tk && det - tk > lim) {
			verdict = "late";
			late++;
		}
		int src = reap(sp, 3000);
		uint64_t dt = det > tk ? det - tk : 0;
		if (strcmp(verdict, "no-connection") && dt > worst_ns)
			worst_ns = dt;
		if (!strcmp(verdict, "ok")) {
			if (src != 0)
				verdict = "survivor-exit";
			else if (!atomic_load(&ss->reported))
				verdict = "no-report";
			/* A client keeps two descriptors for good: the library's datagram
			 * socket offers are sent from, and its connection table (kept open so
			 * that it can back new slots after dropping privileges, and for exec);
			 * both appear after the client's fd count was taken. */
			else if (atomic_load(&ss->maps) || atomic_load(&ss->memfds) ||
			         atomic_load(&ss->fd_delta) > (victim == 0 ? 2 : 0))
				verdict = "leak";
		}
		int okk = !strcmp(verdict, "ok") || !strcmp(verdict, "no-connection");
		failures += !okk;
		by_phase[victim][vphase]++;
		done++;
		printf("{\"kill\": %d, \"round\": %d, \"victim\": \"%s\", \"phase\": \"%s\", "
		       "\"eager\": %d, \"survivor_phase\": \"%s\", \"noticed_us\": %llu, "
		       "\"survivor_err\": %d, \"survivor_exit\": %d, \"maps\": %u, \"memfds\": %u, "
		       "\"fd_delta\": %d, \"verdict\": \"%s\"}\n",
		       done, rounds, victim ? "client" : "server", phase_name[vphase], eager,
		       phase_name[sphase], (unsigned long long)(dt / 1000),
		       atomic_load(&ss->detect_err), src, atomic_load(&ss->maps),
		       atomic_load(&ss->memfds), atomic_load(&ss->fd_delta), verdict);
		fflush(stdout);
	}
	printf("{\"kills\": %d, \"rounds\": %d, \"failures\": %d, \"late\": %d, \"no_connection\": "
	       "%d, "
	       "\"worst_noticed_ms\": %.1f, \"by_phase\": {",
	       done, rounds, failures, late, no_conn, (double)worst_ns / 1e6);
	int first = 1;
	for (int v = 0; v < 2; v++)
		for (int p = 0; p < PH_NR; p++)
			if (by_phase[v][p]) {
				printf("%s\"%s-%s\": %d", first ? "" : ", ",
				       v ? "client" : "server", phase_name[p], by_phase[v][p]);
				first = 0;
			}
	printf("}}\n");
	return failures || done < kills ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return driver(argc, argv);
	if (argc >= 4 && !strcmp(argv[1], "server")) {
		fd_stats = (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT,
		                                                             "nearsock_fd_stats");
		return run_server(map_state(argv[2]), strtoull(argv[3], NULL, 0) | 1);
	}
	if (argc >= 5 && !strcmp(argv[1], "client")) {
		fd_stats = (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT,
		                                                             "nearsock_fd_stats");
		return run_client(map_state(argv[2]), atoi(argv[3]),
		                  strtoull(argv[4], NULL, 0) | 1);
	}
	fprintf(stderr, "usage: nsk_crash run --lib LIB --state FILE [--kills N] [--seed S]\n");
	return 2;
}
