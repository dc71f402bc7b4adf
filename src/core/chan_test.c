/* SPDX-License-Identifier: MIT */
/* chan_test.c — unit tests of channel segments and offers (chan.c): create → offer over a
 * rendezvous datagram socket → attach → claim in two processes with data both ways; offer
 * message validation (size, magic, version, family, descriptor count, no leaks); every
 * header field attach must reject; and the claim/withdraw race (exactly one side wins). */
#include "core/chan.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "core/atomics.h"
#include "core/test_util.h"
#include "platform/linux.h"

static uint64_t seed;
static char tmpdir[64];
static char rvpath[128];

/* ---------------------------------------------------------------- helpers ------------- */

static int rv_bind(const char *path)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	CHECK(strlen(path) < sizeof(sun.sun_path));
	strcpy(sun.sun_path, path);
	unlink(path);
	CHECK(bind(s, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	return s;
}

static int dgram(void)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	return s;
}

static void make_offer(struct nsk_offer *o, const struct nsk_chan *c)
{
	memset(o, 0, sizeof(*o));
	o->magic = NSK_OFFER_MAGIC;
	o->version = NSK_CHAN_VERSION;
	o->nonce = c->nonce;
	o->seg_size = c->size;
	o->family = AF_INET;
	o->cport = 40000;
	o->sport = 80;
	o->caddr[0] = 127, o->caddr[3] = 1;
	o->saddr[0] = 127, o->saddr[3] = 1;
	o->pid = (uint32_t)getpid();
}

/* Send @len bytes with @nfd descriptors to @path, as a hostile client could. */
static void send_raw(int sock, const char *path, const void *buf, size_t len, const int *fds,
                     int nfd)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	strcpy(sun.sun_path, path);
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = {
	    .msg_name = &sun, .msg_namelen = sizeof(sun), .msg_iov = &iov, .msg_iovlen = 1};
	CHECK(nfd <= 16);
	if (nfd > 0) {
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfd);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfd);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfd);
	}
	if (sendmsg(sock, &mh, MSG_DONTWAIT) != (ssize_t)len)
		FAILF("sendmsg: %s", strerror(errno));
}

/* Mappings of channel memfds in this process (for leak checks). */
static int chan_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	CHECK(f);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "memfd:nearsock-chan"))
			n++;
	fclose(f);
	return n;
}

static int same_file(int a, int b)
{
	struct stat sa, sb;
	CHECK(fstat(a, &sa) == 0 && fstat(b, &sb) == 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* ---------------------------------------------------------------- create -------------- */

static void test_create(void)
{
	int fds0 = t_count_fds();
	struct nsk_chan c;
	static const uint64_t bad[] = {
	    0,         1, NSK_RING_MIN - 1, NSK_RING_MIN + 1, 3 * 4096, (uint64_t)NSK_RING_MAX * 2,
	    UINT64_MAX};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ(nsk_chan_create(&c, bad[i]), -EINVAL);
	CHECK_EQ(t_count_fds(), fds0);

	int fd = nsk_chan_create(&c, 8192);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	int seals = fcntl(fd, F_GET_SEALS);
	CHECK(seals >= 0);
	CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
	      (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
	CHECK(ftruncate(fd, 0) < 0); /* really sealed */
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	CHECK_EQ(st.st_size, NSK_CHAN_DATA_OFF + 2 * 8192);
	CHECK_EQ(c.size, NSK_CHAN_DATA_OFF + 2 * 8192);
	CHECK(c.base && c.hdr == c.base);
	CHECK_EQ(c.side, NSK_SIDE_CLIENT);
	struct nsk_chan_hdr *h = c.hdr;
	CHECK_EQ(h->magic, NSK_CHAN_MAGIC);
	CHECK_EQ(h->version, NSK_CHAN_VERSION);
	CHECK_EQ(h->nonce, c.nonce);
	CHECK_EQ(h->seg_size, c.size);
	CHECK_EQ(h->hdr_size, sizeof(*h));
	CHECK_EQ(h->ring_off[0], NSK_CHAN_DATA_OFF);
	CHECK_EQ(h->ring_off[1], NSK_CHAN_DATA_OFF + 8192);
	CHECK_EQ(h->ring_size[0], 8192);
	CHECK_EQ(h->ring_size[1], 8192);
	CHECK_EQ(h->side[0].pid, getpid());
	CHECK_EQ(h->side[0].switched, 0);
	CHECK_EQ(h->side[1].pid, 0);
	CHECK_EQ(nsk_chan_state(&c), NSK_CH_OFFERED);
	/* client produces into ring 0 and consumes ring 1 */
	CHECK(c.tx.ctl == &h->ring[0] && c.tx.data == (uint8_t *)c.base + NSK_CHAN_DATA_OFF);
	CHECK(c.rx.ctl == &h->ring[1] && c.rx.data == (uint8_t *)c.base + NSK_CHAN_DATA_OFF + 8192);
	CHECK_EQ(c.tx.size, 8192);
	CHECK_EQ(nsk_ring_used(&c.tx), 0);
	CHECK_EQ(nsk_ring_free(&c.rx), 8192);
	/* two channels get different nonces */
	struct nsk_chan c2;
	int fd2 = nsk_chan_create(&c2, NSK_RING_MIN);
	CHECK(fd2 >= 0);
	CHECK(c2.nonce != c.nonce);
	CHECK_EQ(c2.size, NSK_CHAN_DATA_OFF + 2 * NSK_RING_MIN);
	nsk_chan_unmap(&c2);
	CHECK(c2.base == NULL);
	nsk_chan_unmap(&c2); /* twice: harmless */
	close(fd2);
	nsk_chan_unmap(&c);
	close(fd);
	CHECK_EQ(t_count_fds(), fds0);
	CHECK_EQ(chan_mappings(), 0);
}

/* ---------------------------------------------------------------- two processes ------- */

#define RT_BYTES (1u << 20)
#define RT_LIMIT_NS (20ull * 1000000000ull)

static uint8_t pat(uint64_t i, int dir)
{
	return (uint8_t)((i * 131u) ^ (i >> 9) ^ (uint64_t)(dir * 0x5a));
}

/* Move RT_BYTES through @tx and RT_BYTES back through @rx (polling, bounded in time). */
static void pump(struct nsk_chan *c, int dir_tx)
{
	static uint8_t buf[3000];
	uint64_t sent = 0, got = 0, t0 = t_now_ns();
	while (sent < RT_BYTES || got < RT_BYTES) {
		int progress = 0;
		if (sent < RT_BYTES) {
			size_t n = sizeof(buf) < RT_BYTES - sent ? sizeof(buf) : RT_BYTES - sent;
			n = 1 + (size_t)((sent * 7919) % n);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(sent + i, dir_tx);
			struct iovec iov = {buf, n};
			struct nsk_iovcur cur;
			nsk_iovcur_init(&cur, &iov, 1);
			ssize_t k = nsk_ring_write(&c->tx, &cur, n);
			CHECK(k >= 0);
			sent += (uint64_t)k;
			progress |= k > 0;
		}
		if (got < RT_BYTES) {
			struct iovec iov = {buf, sizeof(buf)};
			struct nsk_iovcur cur;
			nsk_iovcur_init(&cur, &iov, 1);
			ssize_t k = nsk_ring_read(&c->rx, &cur, sizeof(buf), 0);
			CHECK(k >= 0);
			for (ssize_t i = 0; i < k; i++)
				if (buf[i] != pat(got + (uint64_t)i, !dir_tx))
					FAILF("side %d: byte %" PRIu64 " wrong", c->side,
					      got + (uint64_t)i);
			got += (uint64_t)k;
			progress |= k > 0;
		}
		if (!progress)
			sched_yield();
		if (t_now_ns() - t0 > RT_LIMIT_NS)
			FAILF("side %d: stuck at sent %" PRIu64 " got %" PRIu64, c->side, sent,
			      got);
	}
}

static void server_child(int rv)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	t_watchdog(30);
	struct pollfd p = {.fd = rv, .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 10000), 1);
	struct nsk_offer o;
	int memfd = -1;
	CHECK_EQ(nsk_offer_recv(rv, &o, &memfd), 0);
	CHECK(memfd >= 0);
	CHECK(fcntl(memfd, F_GETFD) & FD_CLOEXEC);
	CHECK_EQ(o.pid, getppid());
	CHECK_EQ(o.family, AF_INET);
	CHECK_EQ(o.sport, 80);
	struct nsk_chan s;
	CHECK_EQ(nsk_chan_attach(&s, memfd, &o), 0);
	close(memfd); /* the mapping keeps the segment */
	CHECK_EQ(s.side, NSK_SIDE_SERVER);
	CHECK_EQ(s.nonce, o.nonce);
	CHECK(s.rx.ctl == &s.hdr->ring[0] && s.tx.ctl == &s.hdr->ring[1]);
	CHECK_EQ(s.hdr->side[NSK_SIDE_SERVER].pid, getpid());
	CHECK_EQ(s.hdr->side[NSK_SIDE_CLIENT].pid, getppid());
	CHECK_EQ(nsk_chan_claim(&s), 0);
	CHECK_EQ(nsk_chan_claim(&s), -EALREADY);
	CHECK_EQ(nsk_chan_state(&s), NSK_CH_CLAIMED);
	pump(&s, 1);
	nsk_chan_unmap(&s);
	_exit(0);
}

static void test_roundtrip_2proc(void)
{
	int rv = rv_bind(rvpath);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		server_child(rv);
	close(rv);
	struct nsk_chan c;
	int memfd = nsk_chan_create(&c, NSK_RING_MIN);
	CHECK(memfd >= 0);
	struct nsk_offer o;
	make_offer(&o, &c);
	int sock = dgram();
	CHECK_EQ(nsk_offer_send(sock, rvpath, &o, memfd), 0);
	close(memfd);
	close(sock);
	/* wait for the claim */
	uint64_t t0 = t_now_ns();
	while (nsk_chan_state(&c) == NSK_CH_OFFERED) {
		if (t_now_ns() - t0 > 10000000000ull)
			FAILF("server never claimed the channel");
		usleep(100);
	}
	CHECK_EQ(nsk_chan_state(&c), NSK_CH_CLAIMED);
	CHECK_EQ(nsk_chan_withdraw(&c), -EALREADY);
	CHECK_EQ(c.hdr->side[NSK_SIDE_SERVER].pid, pid);
	pump(&c, 0);
	t_wait_child(pid, "server");
	nsk_chan_unmap(&c);
	unlink(rvpath);
}

/* ---------------------------------------------------------------- offers -------------- */

static void test_offer_messages(void)
{
	int rv = rv_bind(rvpath);
	int sock = dgram();
	struct nsk_chan c;
	int memfd = nsk_chan_create(&c, NSK_RING_MIN);
	CHECK(memfd >= 0);
	struct nsk_offer good, o, got;
	make_offer(&good, &c);
	int fd = -1;
	int base = t_count_fds();

	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EAGAIN); /* nothing queued */

	/* a valid offer */
	CHECK_EQ(nsk_offer_send(sock, rvpath, &good, memfd), 0);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), 0);
	CHECK(memcmp(&got, &good, sizeof(got)) == 0);
	CHECK(fd >= 0 && fd != memfd && same_file(fd, memfd));
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	CHECK_EQ(t_count_fds(), base);

	/* malformed offers: -EPROTO, descriptor closed */
	struct {
		const char *what;
		void (*mut)(struct nsk_offer *);
	} muts[] = {
	    {"magic", NULL},  {"version", NULL},     {"version 0", NULL},
	    {"family", NULL}, {"family unix", NULL},
	};
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		o = good;
		switch (i) {
		case 0:
			o.magic ^= 0x100;
			break;
		case 1:
			o.version = NSK_CHAN_VERSION + 1;
			break;
		case 2:
			o.version = 0;
			break;
		case 3:
			o.family = 0;
			break;
		default:
			o.family = AF_UNIX;
			break;
		}
		CHECK_EQ(nsk_offer_send(sock, rvpath, &o, memfd), 0);
		fd = -1;
		if (nsk_offer_recv(rv, &got, &fd) != -EPROTO)
			FAILF("offer with a bad %s accepted", muts[i].what);
		CHECK_EQ(fd, -1);
		CHECK_EQ(t_count_fds(), base);
	}
	/* IPv6 is a valid family */
	o = good;
	o.family = AF_INET6;
	CHECK_EQ(nsk_offer_send(sock, rvpath, &o, memfd), 0);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), 0);
	close(fd);

	/* truncated, oversized and empty messages, with a descriptor */
	uint8_t big[sizeof(good) + 64];
	memset(big, 0, sizeof(big));
	memcpy(big, &good, sizeof(good));
	size_t lens[] = {sizeof(good) - 1, sizeof(good) / 2, 1, sizeof(good) + 1, sizeof(big)};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		send_raw(sock, rvpath, big, lens[i], &memfd, 1);
		fd = -1;
		if (nsk_offer_recv(rv, &got, &fd) != -EPROTO)
			FAILF("offer message of %zu bytes accepted", lens[i]);
		CHECK_EQ(t_count_fds(), base);
	}
	send_raw(sock, rvpath, big, 0, &memfd, 1); /* zero-length datagram */
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EPROTO);
	CHECK_EQ(t_count_fds(), base);

	/* a well-formed offer without a descriptor */
	send_raw(sock, rvpath, &good, sizeof(good), NULL, 0);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EPROTO);

	/* extra descriptors are closed, the first one is the memfd */
	int extra[4] = {memfd, sock, rv, memfd};
	send_raw(sock, rvpath, &good, sizeof(good), extra, 4);
	fd = -1;
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), 0);
	CHECK(same_file(fd, memfd));
	CHECK_EQ(t_count_fds(), base + 1);
	close(fd);
	/* more descriptors than the receive buffer takes: control data truncated → -EPROTO,
	 * and nothing leaks */
	int many[16];
	for (int i = 0; i < 16; i++)
		many[i] = memfd;
	send_raw(sock, rvpath, &good, sizeof(good), many, 16);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EPROTO);
	CHECK_EQ(t_count_fds(), base);
	/* a truncated message with many descriptors */
	send_raw(sock, rvpath, &good, 10, many, 3);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EPROTO);
	CHECK_EQ(t_count_fds(), base);
	/* a bad message does not eat the next one */
	send_raw(sock, rvpath, &good, 10, &memfd, 1);
	CHECK_EQ(nsk_offer_send(sock, rvpath, &good, memfd), 0);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EPROTO);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), 0);
	close(fd);
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EAGAIN);
	CHECK_EQ(t_count_fds(), base);

	/* send errors */
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(nsk_offer_send(sock, longp, &good, memfd), -ENAMETOOLONG);
	char nop[160];
	snprintf(nop, sizeof(nop), "%s/nobody", tmpdir);
	CHECK_EQ(nsk_offer_send(sock, nop, &good, memfd), -ENOENT);
	int gone = rv_bind(nop);
	close(gone); /* the socket file stays, nobody reads it */
	CHECK_EQ(nsk_offer_send(sock, nop, &good, memfd), -ECONNREFUSED);
	unlink(nop);
	/* a full queue says -EAGAIN instead of blocking */
	int sent = 0, r;
	while ((r = nsk_offer_send(sock, rvpath, &good, memfd)) == 0 && sent < 100000)
		sent++;
	CHECK_EQ(r, -EAGAIN);
	CHECK(sent > 0);
	for (int i = 0; i < sent; i++) {
		CHECK_EQ(nsk_offer_recv(rv, &got, &fd), 0);
		close(fd);
	}
	CHECK_EQ(nsk_offer_recv(rv, &got, &fd), -EAGAIN);
	CHECK_EQ(t_count_fds(), base);
	printf("   queue full after %d offers\n", sent);

	close(sock);
	close(rv);
	unlink(rvpath);
	nsk_chan_unmap(&c);
	close(memfd);
}

/* ---------------------------------------------------------------- attach -------------- */

/* attach must fail with @want and leave nothing mapped. */
static void attach_fails(int memfd, const struct nsk_offer *o, int want, const char *what)
{
	struct nsk_chan s;
	memset(&s, 0x5a, sizeof(s));
	int before = chan_mappings();
	int r = nsk_chan_attach(&s, memfd, o);
	if (r != want)
		FAILF("attach with %s: %d, expected %d", what, r, want);
	CHECK(s.base == NULL);
	CHECK_EQ(chan_mappings(), before);
}

static void test_attach_rejects(void)
{
	struct nsk_chan c, s;
	const uint64_t rs = 8192;
	int memfd = nsk_chan_create(&c, rs);
	CHECK(memfd >= 0);
	struct nsk_offer o, good;
	make_offer(&good, &c);
	struct nsk_chan_hdr *h = c.hdr, saved = *c.hdr;

	CHECK_EQ(nsk_chan_attach(&s, memfd, &good), 0); /* positive control */
	CHECK_EQ(s.side, NSK_SIDE_SERVER);
	CHECK(s.rx.data == (uint8_t *)s.base + NSK_CHAN_DATA_OFF);
	nsk_chan_unmap(&s);

	/* the offer's own numbers */
	o = good;
	o.seg_size = NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MIN - 1;
	attach_fails(memfd, &o, -EPROTO, "segment below the minimum");
	o.seg_size = 0;
	attach_fails(memfd, &o, -EPROTO, "segment size 0");
	o.seg_size = NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MAX + 1;
	attach_fails(memfd, &o, -EPROTO, "segment above the maximum");
	o.seg_size = UINT64_MAX;
	attach_fails(memfd, &o, -EPROTO, "segment size 2^64-1");
	o = good;
	o.seg_size = c.size + 4096;
	attach_fails(memfd, &o, -EINVAL, "a memfd smaller than the offered size");
	o.seg_size = c.size - 4096;
	attach_fails(memfd, &o, -EPROTO, "an offered size below the header's");
	o = good;
	o.nonce ^= 1;
	attach_fails(memfd, &o, -EPROTO, "nonce mismatch");

	/* descriptors that are not a sealed memfd */
	int fd = memfd_create("nearsock-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)c.size) == 0);
	CHECK(pwrite(fd, h, sizeof(*h), 0) == (ssize_t)sizeof(*h));
	attach_fails(fd, &good, -EPERM, "an unsealed memfd");
	CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW) == 0);
	attach_fails(fd, &good, -EPERM, "a memfd sealed against growing only");
	CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
	CHECK_EQ(nsk_chan_attach(&s, fd, &good), 0); /* a copy of the header, now sealed */
	nsk_chan_unmap(&s);
	close(fd);
	fd = memfd_create("nearsock-chan", MFD_CLOEXEC); /* sealing not allowed at all */
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)c.size) == 0);
	attach_fails(fd, &good, -EPERM, "a memfd without sealing");
	close(fd);
	int pfd[2];
	CHECK(pipe(pfd) == 0);
	attach_fails(pfd[0], &good, -EPERM, "a pipe");
	close(pfd[0]);
	close(pfd[1]);
	attach_fails(-1, &good, -EPERM, "fd -1");
	/* sealed but shorter than offered */
	fd = memfd_create("nearsock-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)c.size - 1) == 0);
	CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
	attach_fails(fd, &good, -EINVAL, "a sealed memfd one byte short");
	close(fd);

	/* header fields, one at a time (the client's mapping writes the shared header) */
	const uint64_t D = NSK_CHAN_DATA_OFF, S = c.size;
	struct {
		const char *what;
		int field; /* 0 magic, 1 version, 2 seg_size, 3 off0, 4 off1, 5 sz0, 6 sz1 */
		uint64_t val;
		int ok;
	} cases[] = {
	    {"bad magic", 0, NSK_CHAN_MAGIC + 1, 0},
	    {"magic 0", 0, 0, 0},
	    {"bad version", 1, NSK_CHAN_VERSION + 1, 0},
	    {"header seg_size mismatch", 2, S - 4096, 0},
	    {"header seg_size larger", 2, S + 4096, 0},
	    {"ring 0 in the header page", 3, 0, 0},
	    {"ring 0 just before the data page", 3, D - 64, 0},
	    {"ring 1 overlapping ring 0", 4, D + rs / 2, 0},
	    {"ring 1 at ring 0", 4, D, 0},
	    {"ring 0 overlapping ring 1", 3, D + rs / 2, 0},
	    {"ring 1 running past the end", 4, S - rs + 1, 0},
	    {"ring 1 at the end", 4, S, 0},
	    {"ring 1 beyond the end", 4, S + 4096, 0},
	    {"ring 1 offset near 2^64", 4, UINT64_MAX - 100, 0},
	    {"ring 0 offset near 2^64", 3, UINT64_MAX - rs + 1, 0},
	    {"ring 0 size not a power of two", 5, 3 * 4096, 0},
	    {"ring 1 size not a power of two", 6, rs - 1, 0},
	    {"ring 1 size below the minimum", 6, NSK_RING_MIN / 2, 0},
	    {"ring 0 size 0", 5, 0, 0},
	    {"ring 0 size above the maximum", 5, (uint64_t)NSK_RING_MAX * 2, 0},
	    {"ring 0 size 2^63", 5, 1ull << 63, 0},
	    {"ring 0 larger (overlaps ring 1)", 5, 2 * rs, 0},
	    {"ring 1 larger (past the end)", 6, 2 * rs, 0},
	    /* legal layouts: smaller rings, gaps */
	    {"ring 0 smaller", 5, rs / 2, 1},
	    {"ring 1 smaller", 6, rs / 2, 1},
	    {"ring 1 at the end, smaller", -1, 0, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		*h = saved;
		uint64_t v = cases[i].val;
		switch (cases[i].field) {
		case 0:
			h->magic = (uint32_t)v;
			break;
		case 1:
			h->version = (uint32_t)v;
			break;
		case 2:
			h->seg_size = v;
			break;
		case 3:
			h->ring_off[0] = v;
			break;
		case 4:
			h->ring_off[1] = v;
			break;
		case 5:
			h->ring_size[0] = v;
			break;
		case 6:
			h->ring_size[1] = v;
			break;
		default:
			h->ring_size[1] = rs / 2;
			h->ring_off[1] = S - rs / 2;
			break;
		}
		if (cases[i].ok) {
			int r = nsk_chan_attach(&s, memfd, &good);
			if (r != 0)
				FAILF("attach rejected a legal layout (%s): %d", cases[i].what, r);
			CHECK_EQ(s.rx.size, h->ring_size[0]);
			CHECK_EQ(s.tx.size, h->ring_size[1]);
			CHECK(s.tx.data == (uint8_t *)s.base + h->ring_off[1]);
			nsk_chan_unmap(&s);
		} else {
			attach_fails(memfd, &good, -EPROTO, cases[i].what);
		}
	}
	/* rings in the other order */
	*h = saved;
	h->ring_off[0] = D + rs;
	h->ring_off[1] = D;
	CHECK_EQ(nsk_chan_attach(&s, memfd, &good), 0);
	CHECK(s.rx.data == (uint8_t *)s.base + D + rs && s.tx.data == (uint8_t *)s.base + D);
	nsk_chan_unmap(&s);
	h->ring_size[0] = 2 * rs; /* now ring 0 runs past the end */
	attach_fails(memfd, &good, -EPROTO, "swapped rings, ring 0 past the end");
	h->ring_size[0] = rs;
	h->ring_size[1] = 2 * rs; /* ring 1 overlaps ring 0 */
	attach_fails(memfd, &good, -EPROTO, "swapped rings overlapping");

	*h = saved;
	CHECK_EQ(nsk_chan_attach(&s, memfd, &good), 0);
	nsk_chan_unmap(&s);
	nsk_chan_unmap(&c);
	close(memfd);
	CHECK_EQ(chan_mappings(), 0);
}

/* ---------------------------------------------------------------- claim / withdraw ---- */

struct race {
	struct nsk_chan *s;
	pthread_barrier_t start, done;
	int iters;
	int *claim_res;
};

static void *claimer(void *p)
{
	struct race *rc = p;
	for (int i = 0; i < rc->iters; i++) {
		pthread_barrier_wait(&rc->start);
		rc->claim_res[i] = nsk_chan_claim(rc->s);
		pthread_barrier_wait(&rc->done);
	}
	return NULL;
}

static void test_claim_withdraw(void)
{
	struct nsk_chan c, s;
	int memfd = nsk_chan_create(&c, NSK_RING_MIN);
	CHECK(memfd >= 0);
	struct nsk_offer o;
	make_offer(&o, &c);
	CHECK_EQ(nsk_chan_attach(&s, memfd, &o), 0);
	close(memfd);

	/* sequential rules */
	CHECK_EQ(nsk_chan_withdraw(&c), 0);
	CHECK_EQ(nsk_chan_state(&s), NSK_CH_WITHDRAWN);
	CHECK_EQ(nsk_chan_claim(&s), -EALREADY);
	CHECK_EQ(nsk_chan_withdraw(&c), -EALREADY);
	CHECK_EQ(nsk_chan_state(&c), NSK_CH_WITHDRAWN);
	nsk_store32_release(&c.hdr->state, NSK_CH_OFFERED);
	CHECK_EQ(nsk_chan_claim(&s), 0);
	CHECK_EQ(nsk_chan_withdraw(&c), -EALREADY);
	CHECK_EQ(nsk_chan_claim(&s), -EALREADY);
	CHECK_EQ(nsk_chan_state(&c), NSK_CH_CLAIMED);
	/* a state the peer scribbled: neither transition applies */
	nsk_store32_release(&c.hdr->state, 77);
	CHECK_EQ(nsk_chan_claim(&s), -EALREADY);
	CHECK_EQ(nsk_chan_withdraw(&c), -EALREADY);

	/* the race, each side through its own mapping */
	int iters = t_sanitized() ? 3000 : 20000;
	struct race rc = {.s = &s, .iters = iters};
	rc.claim_res = calloc((size_t)iters, sizeof(int));
	CHECK(rc.claim_res);
	CHECK_EQ(pthread_barrier_init(&rc.start, NULL, 2), 0);
	CHECK_EQ(pthread_barrier_init(&rc.done, NULL, 2), 0);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, claimer, &rc), 0);
	int claims = 0, withdraws = 0;
	for (int i = 0; i < iters; i++) {
		nsk_store32_release(&c.hdr->state, NSK_CH_OFFERED);
		pthread_barrier_wait(&rc.start);
		int w = nsk_chan_withdraw(&c);
		pthread_barrier_wait(&rc.done);
		int cl = rc.claim_res[i];
		CHECK((w == 0) != (cl == 0)); /* exactly one wins */
		CHECK(w == 0 || w == -EALREADY);
		CHECK(cl == 0 || cl == -EALREADY);
		uint32_t st = nsk_chan_state(&c);
		CHECK_EQ(st, w == 0 ? NSK_CH_WITHDRAWN : NSK_CH_CLAIMED);
		claims += cl == 0;
		withdraws += w == 0;
	}
	pthread_join(th, NULL);
	pthread_barrier_destroy(&rc.start);
	pthread_barrier_destroy(&rc.done);
	free(rc.claim_res);
	printf("   %d races: claim won %d, withdraw won %d\n", iters, claims, withdraws);
	nsk_chan_unmap(&s);
	nsk_chan_unmap(&c);
}

/* The same race between two processes: the parent withdraws and a child claims each of N
 * channels (through the child's own mapping), in opposite orders so that they collide
 * somewhere in the middle; R rounds. */
#define RACE_N 64

struct race_sh {
	uint32_t round, child_done;
	int32_t claim[RACE_N];
};

static void spin_until(uint32_t *w, uint32_t v, const char *who)
{
	uint64_t t0 = t_now_ns();
	/* Acquire pairs with the other process's store-release of the round word. */
	for (unsigned n = 0; nsk_load32_acquire(w) != v; n++) {
		if (n < 20000) {
			nsk_cpu_relax();
			continue;
		}
		sched_yield();
		if (t_now_ns() - t0 > 10000000000ull)
			FAILF("%s: waited 10 s for round %u", who, v);
	}
}

static void test_claim_withdraw_2proc(void)
{
	struct nsk_chan c[RACE_N], s[RACE_N];
	struct nsk_offer o[RACE_N];
	int fd[RACE_N];
	for (int i = 0; i < RACE_N; i++) {
		fd[i] = nsk_chan_create(&c[i], NSK_RING_MIN);
		CHECK(fd[i] >= 0);
		make_offer(&o[i], &c[i]);
	}
	struct race_sh *sh =
	    mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED);
	const uint32_t rounds = t_sanitized() ? 100 : 300;
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		t_watchdog(30);
		for (int i = 0; i < RACE_N; i++) {
			nsk_chan_unmap(&c[i]); /* the parent's mappings: not ours to use */
			CHECK_EQ(nsk_chan_attach(&s[i], fd[i], &o[i]), 0);
		}
		for (uint32_t r = 1; r <= rounds; r++) {
			spin_until(&sh->round, r, "claimer");
			for (int i = 0; i < RACE_N; i++)
				nsk_store32((uint32_t *)&sh->claim[i],
				            (uint32_t)nsk_chan_claim(&s[i]));
			/* Release pairs with the parent's acquire in spin_until. */
			nsk_store32_release(&sh->child_done, r);
		}
		_exit(0);
	}
	uint64_t claims = 0, withdraws = 0;
	for (uint32_t r = 1; r <= rounds; r++) {
		for (int i = 0; i < RACE_N; i++)
			nsk_store32(&c[i].hdr->state, NSK_CH_OFFERED);
		/* Release pairs with the child's acquire in spin_until: states reset first. */
		nsk_store32_release(&sh->round, r);
		int w[RACE_N];
		for (int i = RACE_N - 1; i >= 0; i--) /* the child goes upwards: they meet */
			w[i] = nsk_chan_withdraw(&c[i]);
		spin_until(&sh->child_done, r, "withdrawer");
		for (int i = 0; i < RACE_N; i++) {
			int cl = (int)nsk_load32((uint32_t *)&sh->claim[i]);
			if ((w[i] == 0) == (cl == 0))
				FAILF("round %u channel %d: withdraw %d, claim %d", r, i, w[i], cl);
			CHECK_EQ(nsk_chan_state(&c[i]),
			         w[i] == 0 ? NSK_CH_WITHDRAWN : NSK_CH_CLAIMED);
			claims += cl == 0;
			withdraws += w[i] == 0;
		}
	}
	t_wait_child(pid, "claimer");
	printf("   %u x %d races across processes: claim won %" PRIu64 ", withdraw won %" PRIu64
	       "\n",
	       rounds, RACE_N, claims, withdraws);
	munmap(sh, sizeof(*sh));
	for (int i = 0; i < RACE_N; i++) {
		nsk_chan_unmap(&c[i]);
		close(fd[i]);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(55);
	seed = t_seed();
	const char *base = getenv("TMPDIR");
	snprintf(tmpdir, sizeof(tmpdir), "%s/nsk-chan-XXXXXX", base && *base ? base : "/tmp");
	CHECK(mkdtemp(tmpdir));
	snprintf(rvpath, sizeof(rvpath), "%s/rv", tmpdir);
	int fds0 = t_count_fds();
	RUN(test_create);
	RUN(test_roundtrip_2proc);
	RUN(test_offer_messages);
	RUN(test_attach_rejects);
	RUN(test_claim_withdraw);
	RUN(test_claim_withdraw_2proc);
	CHECK_EQ(t_count_fds(), fds0);
	rmdir(tmpdir);
	return 0;
}
