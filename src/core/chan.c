/* SPDX-License-Identifier: MIT */
/* chan.c — channel segments and offers (see chan.h). */
#include "core/chan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"

static void bind_rings(struct nsk_chan *c, uint64_t off0, uint64_t sz0, uint64_t off1, uint64_t sz1)
{
	struct nsk_ring r0, r1;
	nsk_ring_init(&r0, &c->hdr->ring[0], (uint8_t *)c->base + off0, sz0);
	nsk_ring_init(&r1, &c->hdr->ring[1], (uint8_t *)c->base + off1, sz1);
	c->tx = c->side == NSK_SIDE_CLIENT ? r0 : r1;
	c->rx = c->side == NSK_SIDE_CLIENT ? r1 : r0;
}

int nsk_chan_create(struct nsk_chan *c, uint64_t ring_size)
{
	return nsk_chan_create_sized(c, ring_size, 0);
}

int nsk_chan_create_sized(struct nsk_chan *c, uint64_t ring_size, uint64_t cap)
{
	memset(c, 0, sizeof(*c));
	if (ring_size < NSK_RING_MIN || ring_size > NSK_RING_MAX || (ring_size & (ring_size - 1)))
		return -EINVAL;
	if (cap == 0 || cap == ring_size)
		cap = 0;
	else if (cap < NSK_RING_MIN || cap > ring_size || (cap & (cap - 1)))
		return -EINVAL;
	uint64_t size = NSK_CHAN_DATA_OFF + 2 * ring_size;
	uint64_t used = cap ? cap : ring_size;
	int fd = nsk_memfd_create("nearsock-chan", size);
	if (fd < 0)
		return fd;
	/* Back every page in use now: running out of memory must fail here, not SIGBUS
	 * mid-transfer (a ring that grows populates its new pages first, see ring.h). */
	int r = posix_fallocate(fd, 0, (off_t)NSK_CHAN_DATA_OFF);
	if (!r)
		r = posix_fallocate(fd, NSK_CHAN_DATA_OFF, (off_t)used);
	if (!r)
		r = posix_fallocate(fd, (off_t)(NSK_CHAN_DATA_OFF + ring_size), (off_t)used);
	if (r) {
		close(fd);
		return -r;
	}
	r = nsk_memfd_seal(fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	c->base = base;
	c->size = size;
	c->hdr = base;
	c->side = NSK_SIDE_CLIENT;
	c->nonce = nsk_random64();
	struct nsk_chan_hdr *h = c->hdr;
	h->version = NSK_CHAN_VERSION;
	h->nonce = c->nonce;
	h->seg_size = size;
	h->hdr_size = sizeof(*h);
	h->ring_off[0] = NSK_CHAN_DATA_OFF;
	h->ring_size[0] = ring_size;
	h->ring_off[1] = NSK_CHAN_DATA_OFF + ring_size;
	h->ring_size[1] = ring_size;
	h->side[NSK_SIDE_CLIENT].pid = (uint32_t)getpid();
	h->side[NSK_SIDE_CLIENT].cpumask = nsk_cpu_mask();
	nsk_ring_format(&h->ring[0], cap);
	nsk_ring_format(&h->ring[1], cap);
	h->state = NSK_CH_OFFERED;
	/* Release pairs with nothing in-process: the peer maps the segment only after receiving
	 * the memfd over a socket (a full barrier); the magic goes last for readability. */
	nsk_store32_release(&h->magic, NSK_CHAN_MAGIC);
	bind_rings(c, h->ring_off[0], ring_size, h->ring_off[1], ring_size);
	return fd;
}

/* Map @memfd (sealed, @size bytes) as @side and validate every header field once copied. */
static int map_checked(struct nsk_chan *c, int memfd, uint64_t size, uint64_t want_nonce, int side)
{
	memset(c, 0, sizeof(*c));
	if (size < NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MIN ||
	    size > NSK_CHAN_DATA_OFF + 2 * (uint64_t)NSK_RING_MAX)
		return -EPROTO;
	int r = nsk_memfd_check_sealed(memfd, size);
	if (r < 0)
		return r;
	void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (base == MAP_FAILED)
		return -errno;
	c->base = base;
	c->size = size;
	c->hdr = base;
	c->side = side;
	c->nonce = want_nonce;
	/* Copy every field we rely on once, then validate the copies: the peer can change the
	 * shared header at any time. */
	struct nsk_chan_hdr *h = c->hdr;
	uint32_t magic = nsk_load32_acquire(&h->magic);
	uint32_t version = h->version;
	uint64_t nonce = h->nonce, seg = h->seg_size;
	uint64_t off0 = h->ring_off[0], sz0 = h->ring_size[0];
	uint64_t off1 = h->ring_off[1], sz1 = h->ring_size[1];
	struct nsk_ring tmp;
	if (magic != NSK_CHAN_MAGIC || version != NSK_CHAN_VERSION || nonce != want_nonce ||
	    seg != size || nsk_ring_init(&tmp, &h->ring[0], NULL, sz0) < 0 ||
	    nsk_ring_init(&tmp, &h->ring[1], NULL, sz1) < 0 || off0 < NSK_CHAN_DATA_OFF ||
	    off1 < NSK_CHAN_DATA_OFF || off0 > size || off1 > size || sz0 > size - off0 ||
	    sz1 > size - off1 || (off0 < off1 ? off0 + sz0 > off1 : off1 + sz1 > off0)) {
		nsk_chan_unmap(c);
		return -EPROTO;
	}
	bind_rings(c, off0, sz0, off1, sz1);
	return 0;
}

int nsk_chan_attach(struct nsk_chan *c, int memfd, const struct nsk_offer *o)
{
	int r = map_checked(c, memfd, o->seg_size, o->nonce, NSK_SIDE_SERVER);
	if (r < 0)
		return r;
	c->hdr->side[NSK_SIDE_SERVER].pid = (uint32_t)getpid();
	c->hdr->side[NSK_SIDE_SERVER].cpumask = nsk_cpu_mask();
	return 0;
}

int nsk_chan_adopt(struct nsk_chan *c, int memfd, int side, uint64_t nonce)
{
	if (side != NSK_SIDE_CLIENT && side != NSK_SIDE_SERVER)
		return -EINVAL;
	struct stat st;
	if (fstat(memfd, &st) < 0)
		return -errno;
	int r = map_checked(c, memfd, (uint64_t)st.st_size, nonce, side);
	if (r < 0)
		return r;
	c->hdr->side[side].pid = (uint32_t)getpid();
	return 0;
}

void nsk_chan_unmap(struct nsk_chan *c)
{
	if (c->base)
		munmap(c->base, c->size);
	c->base = NULL;
	c->hdr = NULL;
}

uint32_t nsk_chan_state(const struct nsk_chan *c)
{
	/* Acquire pairs with the release CAS in claim/withdraw: a CLAIMED state makes the
	 * server's published switch point visible. */
	return nsk_load32_acquire(&c->hdr->state);
}

static int cas_state(struct nsk_chan *c, uint32_t from, uint32_t to)
{
	uint32_t expect = from;
	if (atomic_compare_exchange_strong_explicit(NSK_A32(&c->hdr->state), &expect, to,
						    memory_order_acq_rel, memory_order_acquire))
		return 0;
	return -EALREADY;
}

int nsk_chan_claim(struct nsk_chan *c)
{
	return cas_state(c, NSK_CH_OFFERED, NSK_CH_CLAIMED);
}

int nsk_chan_withdraw(struct nsk_chan *c)
{
	return cas_state(c, NSK_CH_OFFERED, NSK_CH_WITHDRAWN);
}

int nsk_offer_send(int sock, const char *path, const struct nsk_offer *o, int memfd)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path && strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	if (path)
		strcpy(sun.sun_path, path);
	struct iovec iov = {.iov_base = (void *)o, .iov_len = sizeof(*o)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = {
		.msg_name = path ? &sun : NULL,
		.msg_namelen = path ? sizeof(sun) : 0,
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &memfd, sizeof(int));
	if (sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return -errno;
	return 0;
}

int nsk_offer_recv(int sock, struct nsk_offer *o, int *memfd)
{
	return nsk_offer_recv_cred(sock, o, memfd, NULL);
}

int nsk_offer_recv_cred(int sock, struct nsk_offer *o, int *memfd, struct ucred *cred)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct ucred who = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
	struct iovec iov = {.iov_base = o, .iov_len = sizeof(*o)};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	int fd = -1, bad = (size_t)n != sizeof(*o) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS &&
		    cm->cmsg_len >= CMSG_LEN(sizeof(who))) {
			memcpy(&who, CMSG_DATA(cm), sizeof(who));
			continue;
		}
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int f;
			memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fd < 0 && !bad)
				fd = f;
			else
				close(f);
		}
	}
	if (bad || fd < 0 || o->magic != NSK_OFFER_MAGIC || o->version != NSK_CHAN_VERSION ||
	    (o->family != AF_INET && o->family != AF_INET6)) {
		if (fd >= 0)
			close(fd);
		return -EPROTO;
	}
	*memfd = fd;
	if (cred)
		*cred = who;
	return 0;
}
