/* SPDX-License-Identifier: MIT */
/* fuzz_attach.c — libFuzzer target for what a server does with an offer from a possibly
 * hostile client (src/core/chan.c): parse the offer datagram with whatever descriptors it
 * carries (nsk_offer_recv), then check, map and validate the channel segment
 * (nsk_chan_attach) whose header, size and seals come from the input. An accepted segment's
 * rings must lie inside it and not overlap; both rings are then used (read, write, FIN) while
 * the input keeps rewriting the shared header, as a hostile client can. No descriptor may
 * leak, whatever the outcome. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/switchpt.h"
#include "fuzz_input.h"

/* Send @len bytes of @msg with @nfds copies of @fd over a fresh datagram pair and receive it
 * with nsk_offer_recv. Returns its result; *@memfd is set on success. */
static int offer_roundtrip(const void *msg, size_t len, int fd, int nfds, struct nsk_offer *o,
                           int *memfd)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > 0) {
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		for (int i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof(int));
	}
	if (sendmsg(sv[0], &mh, 0) < 0)
		abort();
	struct ucred cred;
	int r = nsk_offer_recv_cred(sv[1], o, memfd, &cred);
	/* no SO_PASSCRED here: the sender's credentials must read as absent */
	FUZZ_ASSERT(r != 0 || (cred.pid == 0 && cred.uid == (uid_t)-1));
	close(sv[0]);
	close(sv[1]);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fin f = {data, size};
	int probe = dup(0); /* the lowest free descriptor: must be the same at the end */
	close(probe);

	uint8_t flags = fin_u8(&f);
	/* the segment: a memfd of a size near the valid ones, sealed or not */
	static const uint64_t sizes[] = {NSK_CHAN_DATA_OFF + 2 * NSK_RING_MIN,
	                                 NSK_CHAN_DATA_OFF + 4 * NSK_RING_MIN,
	                                 NSK_CHAN_DATA_OFF + 3 * NSK_RING_MIN,
	                                 NSK_CHAN_DATA_OFF,
	                                 2 * NSK_RING_MIN,
	                                 NSK_CHAN_DATA_OFF + 2 * NSK_RING_MIN + 4096,
	                                 64,
	                                 0};
	uint64_t seg = sizes[(flags >> 1) & 7];
	int fd = memfd_create("fuzz-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)seg) < 0)
		abort();
	struct nsk_chan_hdr h;
	fin_bytes(&f, &h, sizeof(h));
	if (flags & 0x10) {
		/* a well-formed header with input-chosen ring geometry, to get past the magic */
		h.magic = NSK_CHAN_MAGIC;
		h.version = NSK_CHAN_VERSION;
		h.seg_size = seg;
		h.ring_off[0] = NSK_CHAN_DATA_OFF + (h.ring_off[0] & 1) * NSK_RING_MIN;
		h.ring_off[1] = NSK_CHAN_DATA_OFF + (h.ring_off[1] & 3) * NSK_RING_MIN;
		h.ring_size[0] = (uint64_t)NSK_RING_MIN << (h.ring_size[0] & 1);
		h.ring_size[1] = (uint64_t)NSK_RING_MIN << (h.ring_size[1] & 1);
	}
	if (seg)
		(void)!pwrite(fd, &h, seg < sizeof(h) ? seg : sizeof(h), 0);
	if (flags & 0x20)
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);

	/* the offer datagram: its length and descriptor count from the input */
	struct nsk_offer msg;
	fin_bytes(&f, &msg, sizeof(msg));
	size_t mlen = sizeof(msg);
	if (flags & 0x40) { /* well-formed fields */
		msg.magic = NSK_OFFER_MAGIC;
		msg.version = NSK_CHAN_VERSION;
		msg.family = (msg.family & 1) ? AF_INET6 : AF_INET;
		msg.nonce = h.nonce;
		msg.seg_size = (msg.seg_size & 1) ? msg.seg_size : seg;
	} else {
		mlen = fin_u8(&f) % (sizeof(msg) + 1);
	}
	int nfds = flags & 0x80 ? fin_u8(&f) % 5 : 1;
	struct nsk_offer o;
	int memfd = -1;
	int r = offer_roundtrip(&msg, mlen, fd, nfds, &o, &memfd);
	FUZZ_ASSERT(r == 0 || r == -EPROTO);
	if (r == 0) {
		FUZZ_ASSERT(memfd >= 0 && mlen == sizeof(msg) && nfds >= 1);
		FUZZ_ASSERT(o.magic == NSK_OFFER_MAGIC && o.version == NSK_CHAN_VERSION);
		struct nsk_chan c;
		int a = nsk_chan_attach(&c, memfd, &o);
		close(memfd);
		if (a == 0) {
			uint8_t *lo = (uint8_t *)c.base + NSK_CHAN_DATA_OFF,
			        *hi = (uint8_t *)c.base + c.size;
			FUZZ_ASSERT(c.size == o.seg_size && c.size <= seg);
			FUZZ_ASSERT(c.tx.data >= lo && c.tx.data + c.tx.size <= hi);
			FUZZ_ASSERT(c.rx.data >= lo && c.rx.data + c.rx.size <= hi);
			FUZZ_ASSERT(c.tx.data + c.tx.size <= c.rx.data ||
			            c.rx.data + c.rx.size <= c.tx.data);
			/* use both rings while the hostile client rewrites the header */
			uint8_t buf[2 * NSK_RING_MIN];
			memset(buf, 0x5a, sizeof(buf));
			for (int i = 0; i < 16 && fin_left(&f); i++) {
				uint8_t op = fin_u8(&f);
				uint16_t n = fin_u16(&f) % sizeof(buf);
				struct iovec iov = {buf, n};
				struct nsk_iovcur cur;
				nsk_iovcur_init(&cur, &iov, 1);
				ssize_t k;
				switch (op % 4) {
				case 0:
					k = nsk_ring_read(&c.rx, &cur, n, op & 4);
					FUZZ_ASSERT(k == -EPROTO || (k >= 0 && k <= n));
					break;
				case 1:
					k = nsk_ring_write(&c.tx, &cur, n);
					FUZZ_ASSERT(k == -EPROTO || (k >= 0 && k <= n));
					break;
				case 2: { /* the client scribbles over the header page */
					size_t at = fin_u16(&f) % (NSK_CHAN_DATA_OFF - 8);
					uint64_t v = fin_u64(&f);
					memcpy((uint8_t *)c.base + at, &v, 8);
					break;
				}
				case 3:
					(void)nsk_sp_fin(c.rx.ctl->fin);
					(void)nsk_chan_state(&c);
					(void)nsk_chan_claim(&c);
					break;
				}
			}
			nsk_chan_unmap(&c);
		} else {
			FUZZ_ASSERT(a == -EPROTO || a == -EPERM || a == -EINVAL);
		}
	} else {
		FUZZ_ASSERT(memfd == -1);
	}
	close(fd);
	int after = dup(0);
	close(after);
	FUZZ_ASSERT(after == probe); /* no descriptor leaked */
	return 0;
}
