/* SPDX-License-Identifier: MIT */
/* nsk_forge — integration helper for the shared-domain tests: an attacker who is a member of
 * a cross-user domain (may write its registry and send offers), and a slow client to attack.
 *
 *   nsk_forge entry DIR PORT SECS   rewrite the registry entry of the listener on PORT so that
 *                                   it names our own rendezvous socket and pid, then for SECS
 *                                   take every offer sent there and try to claim it (map the
 *                                   segment, CAS OFFERED -> CLAIMED) like a real thief would.
 *   nsk_forge offer DIR PORT SECS   find an established connection to 127.0.0.1:PORT in
 *                                   /proc/net/tcp, send the listener (from the registry) an
 *                                   offer of our own segment for that connection's 4-tuple,
 *                                   and report after SECS whether it was claimed.
 *   nsk_forge client PORT GOFILE    (preloaded) one echo round trip on TCP, wait until GOFILE
 *                                   exists, then 16 more rounds of 64 KiB; report the mode;
 *                                   with NSK_FORGE_HOLD=FILE stay connected until FILE exists.
 * Each prints one JSON line; the attacker modes exit 0 when the attack was carried out. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/atomics.h"
#include "core/chan.h"
#include "core/domain.h"
#include "nearsock/nearsock.h"
#include "platform/linux.h"

static int find_entry(struct nsk_domain *d, int port, struct nsk_reg_entry *out)
{
	for (uint32_t i = 0; i < d->reg.nslots; i++)
		if (nsk_registry_read(&d->reg, (int)i, out) && out->port == port)
			return (int)i;
	return -1;
}

static int open_domain(struct nsk_domain *d, const char *dir)
{
	int r = nsk_domain_open(d, dir, 0);
	if (r < 0)
		fprintf(stderr, "nsk_forge: domain %s: %s\n", dir, strerror(-r));
	return r;
}

static int forge_entry(const char *dir, int port, int secs)
{
	struct nsk_domain d;
	if (open_domain(&d, dir) < 0)
		return 2;
	struct nsk_reg_entry e;
	int slot = find_entry(&d, port, &e);
	if (slot < 0) {
		fprintf(stderr, "nsk_forge: no registry entry for port %d\n", port);
		return 2;
	}
	char name[40], path[PATH_MAX];
	snprintf(name, sizeof(name), "rv-%d-f0f0f0f0", (int)getpid());
	nsk_rv_path(&d, name, path, sizeof(path));
	int rv = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path))
		return 2;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (bind(rv, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0660) < 0) {
		perror("nsk_forge: bind");
		return 2;
	}
	/* The entry now names us (a member of the domain may write any entry). */
	struct nsk_reg_entry *w = &d.reg.e[slot];
	nsk_store32(&w->pid, (uint32_t)getpid());
	memset(w->rv, 0, sizeof(w->rv));
	memcpy(w->rv, name, strlen(name));
	printf("{\"forging\": %d}\n", slot);
	int offers = 0, claimed = 0;
	time_t end = time(NULL) + secs;
	while (time(NULL) < end) {
		struct nsk_offer o;
		int memfd;
		if (nsk_offer_recv(rv, &o, &memfd) < 0) {
			usleep(2000);
			continue;
		}
		offers++;
		struct nsk_chan c;
		if (nsk_chan_attach(&c, memfd, &o) == 0 && nsk_chan_claim(&c) == 0)
			claimed++; /* kept mapped: we would now read the client's bytes */
		close(memfd);
	}
	printf("{\"forged_entry\": %d, \"offers_received\": %d, \"claimed\": %d}\n", slot, offers,
	       claimed);
	unlink(path);
	return 0;
}

/* The client end (local address, port) of an established connection to 127.0.0.1:@port. */
static int find_client(int port, uint8_t addr[16], uint16_t *cport)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	int found = 0;
	while (f && !found && fgets(line, sizeof(line), f)) {
		unsigned la, lp, ra, rp, st;
		if (sscanf(line, " %*d: %8X:%4X %8X:%4X %2X", &la, &lp, &ra, &rp, &st) == 5 &&
		    (int)rp == port && st == 1 /* ESTABLISHED */) {
			memset(addr, 0, 16);
			memcpy(addr, &la,
			       4); /* /proc shows the address in network order as a word */
			*cport = (uint16_t)lp;
			found = 1;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static int forge_offer(const char *dir, int port, int secs)
{
	struct nsk_domain d;
	if (open_domain(&d, dir) < 0)
		return 2;
	struct nsk_reg_entry e;
	if (find_entry(&d, port, &e) < 0) {
		fprintf(stderr, "nsk_forge: no registry entry for port %d\n", port);
		return 2;
	}
	struct nsk_offer o;
	memset(&o, 0, sizeof(o));
	if (!find_client(port, o.caddr, &o.cport)) {
		fprintf(stderr, "nsk_forge: no connection to port %d\n", port);
		return 2;
	}
	struct nsk_chan c;
	int memfd = nsk_chan_create(&c, NSK_RING_MIN);
	if (memfd < 0)
		return 2;
	o.magic = NSK_OFFER_MAGIC;
	o.version = NSK_CHAN_VERSION;
	o.nonce = c.nonce;
	o.seg_size = c.size;
	o.family = AF_INET;
	o.sport = (uint16_t)port;
	o.saddr[0] = 127;
	o.saddr[3] = 1;
	o.pid = (uint32_t)getpid();
	char path[PATH_MAX];
	nsk_rv_path(&d, e.rv, path, sizeof(path));
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = nsk_offer_send(s, path, &o, memfd);
	if (r < 0) {
		fprintf(stderr, "nsk_forge: offer to %s: %s\n", path, strerror(-r));
		return 2;
	}
	nsk_add64(&d.reg.e[find_entry(&d, port, &e)].offer_seq, 1);
	sleep((unsigned)secs);
	printf("{\"forged_offer_port\": %u, \"claimed\": %d}\n", o.cport,
	       nsk_chan_state(&c) == NSK_CH_CLAIMED);
	return 0;
}

static int echo_round(int fd, size_t len, unsigned seed)
{
	static unsigned char out[65536], in[65536];
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)(seed * 31 + i * 7);
	if (send(fd, out, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -1;
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, in + got, len - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return memcmp(in, out, len) ? -1 : 0;
}

static int slow_client(int port, const char *go)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || echo_round(fd, 100, 1) < 0) {
		printf("{\"ok\": 0, \"error\": \"first round\"}\n");
		return 1;
	}
	printf("{\"connected\": 1}\n");
	fflush(stdout);
	struct stat st;
	for (int i = 0; i < 3000 && stat(go, &st) < 0; i++)
		usleep(10000);
	int ok = 1;
	for (unsigned i = 0; i < 16 && ok; i++)
		ok = echo_round(fd, 65536, i + 2) == 0;
	int (*fs)(int, struct nearsock_conn_stats *) =
	    (int (*)(int, struct nearsock_conn_stats *))dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	struct nearsock_conn_stats cs = {0};
	if (fs)
		fs(fd, &cs);
	printf("{\"ok\": %d, \"mode\": %u, \"tx_shm\": %llu, \"rx_shm\": %llu}\n", ok, cs.mode,
	       (unsigned long long)cs.tx_shm_bytes, (unsigned long long)cs.rx_shm_bytes);
	/* NSK_FORGE_HOLD=FILE: keep the connection open until FILE exists (isolation probes) */
	const char *hold = getenv("NSK_FORGE_HOLD");
	for (int i = 0; hold && i < 3000 && stat(hold, &st) < 0; i++)
		usleep(10000);
	close(fd);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "entry"))
		return forge_entry(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "offer"))
		return forge_offer(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "client"))
		return slow_client(atoi(argv[2]), argv[3]);
	fprintf(stderr, "usage: nsk_forge entry|offer DIR PORT SECS | client PORT GOFILE\n");
	return 2;
}
