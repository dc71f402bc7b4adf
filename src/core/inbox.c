/* SPDX-License-Identifier: MIT */
/* inbox.c — MPSC datagram queue of a bound UDP socket (see inbox.h). */
#include "core/inbox.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/atomics.h"
#include "platform/linux.h"

uint64_t nsk_inbox_seg_size(uint64_t data_size)
{
	return NSK_INBOX_DATA_OFF + data_size;
}

static void hdr_init(struct nsk_inbox_hdr *h, uint64_t data_size, pid_t pid, uint64_t start,
		     uint64_t nonce)
{
	memset(h, 0, sizeof(*h));
	h->version = NSK_INBOX_VERSION;
	h->nonce = nonce;
	h->seg_size = nsk_inbox_seg_size(data_size);
	h->data_off = NSK_INBOX_DATA_OFF;
	h->data_size = data_size;
	h->owner_pid = (uint32_t)pid;
	h->owner_start = start;
	h->limit = data_size;
	h->magic = NSK_INBOX_MAGIC;
}

static int map_fd(struct nsk_inbox *ib, int fd, uint64_t seg)
{
	void *p = mmap(NULL, seg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	memset(ib, 0, sizeof(*ib));
	ib->h = p;
	ib->seg_size = seg;
	return 0;
}

int nsk_inbox_create(struct nsk_inbox *ib, uint64_t data_size, pid_t pid, uint64_t start)
{
	if (data_size < NSK_INBOX_MIN || data_size > NSK_INBOX_MAX || (data_size & (data_size - 1)))
		return -EINVAL;
	uint64_t seg = nsk_inbox_seg_size(data_size);
	int fd = nsk_memfd_create("nearsock-inbox", seg);
	if (fd < 0)
		return fd;
	int r = nsk_memfd_seal(fd);
	if (r == 0)
		r = map_fd(ib, fd, seg);
	if (r < 0) {
		close(fd);
		return r;
	}
	uint64_t nonce = nsk_random64() | 1;
	hdr_init(ib->h, data_size, pid, start, nonce);
	ib->h->wake_key = nsk_random64();
	ib->data = (uint8_t *)ib->h + NSK_INBOX_DATA_OFF;
	ib->size = data_size;
	ib->nonce = nonce;
	return fd;
}

int nsk_inbox_attach(struct nsk_inbox *ib, int fd, uint64_t nonce)
{
	/* The size must be known before mapping: read it from a sealed file (it cannot shrink
	 * under us afterwards, so no SIGBUS), then validate our private copies of the header. */
	int r = nsk_memfd_check_sealed(fd, NSK_INBOX_DATA_OFF + NSK_INBOX_MIN);
	if (r < 0)
		return r;
	struct nsk_inbox_hdr copy;
	if (pread(fd, &copy, sizeof(copy), 0) != (ssize_t)sizeof(copy))
		return -EPROTO;
	uint64_t ds = copy.data_size;
	if (copy.magic != NSK_INBOX_MAGIC || copy.version != NSK_INBOX_VERSION ||
	    copy.nonce != nonce || ds < NSK_INBOX_MIN || ds > NSK_INBOX_MAX || (ds & (ds - 1)) ||
	    copy.data_off != NSK_INBOX_DATA_OFF || copy.seg_size != nsk_inbox_seg_size(ds))
		return -EPROTO;
	r = nsk_memfd_check_sealed(fd, copy.seg_size);
	if (r < 0)
		return r;
	r = map_fd(ib, fd, copy.seg_size);
	if (r < 0)
		return r;
	ib->data = (uint8_t *)ib->h + NSK_INBOX_DATA_OFF;
	ib->size = ds;
	ib->nonce = nonce;
	return 0;
}

void nsk_inbox_unmap(struct nsk_inbox *ib)
{
	if (ib->h)
		munmap(ib->h, ib->seg_size);
	memset(ib, 0, sizeof(*ib));
}

/* ---------------------------------------------------------------- copies ------------- */

/* Copy @n bytes between position @pos of the (wrapping) data area and @buf. */
static void area_in(struct nsk_inbox *ib, uint64_t pos, const void *buf, size_t n)
{
	uint64_t off = pos & (ib->size - 1);
	size_t first = ib->size - off < n ? (size_t)(ib->size - off) : n;
	memcpy(ib->data + off, buf, first);
	if (n > first)
		memcpy(ib->data, (const uint8_t *)buf + first, n - first);
}

static void area_out(struct nsk_inbox *ib, uint64_t pos, void *buf, size_t n)
{
	uint64_t off = pos & (ib->size - 1);
	size_t first = ib->size - off < n ? (size_t)(ib->size - off) : n;
	memcpy(buf, ib->data + off, first);
	if (n > first)
		memcpy((uint8_t *)buf + first, ib->data, n - first);
}

/* ---------------------------------------------------------------- producers ---------- */

int nsk_inbox_lock(struct nsk_inbox *ib, uint32_t pid, uint64_t spin_ns)
{
	uint32_t *l = &ib->h->plock;
	uint64_t t0 = 0;
	for (unsigned i = 0;; i++) {
		uint32_t cur = 0;
		/* Acquire pairs with the release in nsk_inbox_unlock: the previous producer's
		 * tail store is visible before we read the tail. */
		if (nsk_load32(l) == 0 &&
		    atomic_compare_exchange_weak_explicit(NSK_A32(l), &cur, pid,
							  memory_order_acquire, memory_order_relaxed))
			return 0;
		if (i < 64) {
			nsk_cpu_relax();
			continue;
		}
		uint64_t now = nsk_now_ns();
		if (!t0)
			t0 = now;
		cur = nsk_load32(l);
		if (cur && cur != pid && kill((pid_t)cur, 0) < 0 && errno == ESRCH) {
			/* The holder died while copying: it never published its record (the tail
			 * moves only with the lock held, in one store), so there is nothing to undo. */
			if (atomic_compare_exchange_strong_explicit(NSK_A32(l), &cur, pid,
								    memory_order_acquire,
								    memory_order_relaxed)) {
				nsk_add64(&ib->h->steals, 1);
				return 0;
			}
			continue;
		}
		if (now - t0 >= spin_ns)
			return -EBUSY;
		sched_yield(); /* the holder may be preempted on our CPU */
	}
}

void nsk_inbox_unlock(struct nsk_inbox *ib)
{
	/* Release pairs with the acquire CAS of the next producer in nsk_inbox_lock. */
	nsk_store32_release(&ib->h->plock, 0);
}

/* Bytes in use from the producer's view, or -EPROTO. Refreshes the head cache only when the
 * cached head does not show enough room for @need bytes. */
static int64_t prod_used(struct nsk_inbox *ib, uint64_t tail, uint64_t need, uint64_t limit)
{
	uint64_t used = tail - ib->head_cache;
	if (used > ib->size || used > limit || ib->size - used < need) {
		/* Acquire pairs with the consumer's seq_cst store of head in nsk_inbox_pop: it
		 * finished copying those bytes out before we overwrite them. */
		uint64_t head = nsk_load64_acquire(&ib->h->head);
		used = tail - head;
		if (used > ib->size)
			return -EPROTO;
		ib->head_cache = head;
	}
	return (int64_t)used;
}

static uint64_t cur_limit(struct nsk_inbox *ib)
{
	uint64_t limit = nsk_load64(&ib->h->limit);
	return limit > ib->size ? ib->size : limit;
}

int nsk_inbox_fits(struct nsk_inbox *ib, size_t len)
{
	uint64_t need = nsk_inbox_rec_size(len);
	uint64_t tail = nsk_load64(&ib->h->tail);
	uint64_t limit = cur_limit(ib);
	int64_t used = prod_used(ib, tail, need, limit);
	/* As the kernel: refuse only when the queue already holds more than its limit, so
	 * that one datagram larger than a small SO_RCVBUF still gets through an empty queue. */
	return used >= 0 && (uint64_t)used <= limit && ib->size - (uint64_t)used >= need;
}

int nsk_inbox_put(struct nsk_inbox *ib, const struct nsk_src *src, const struct iovec *iov,
		  int cnt, size_t len)
{
	if (len > NSK_DGRAM_MAX)
		return -EMSGSIZE;
	uint64_t need = nsk_inbox_rec_size(len);
	uint64_t tail = nsk_load64(&ib->h->tail);
	uint64_t limit = cur_limit(ib);
	int64_t used = prod_used(ib, tail, need, limit);
	if (used < 0)
		return -EPROTO;
	if ((uint64_t)used > limit || ib->size - (uint64_t)used < need)
		return -ENOBUFS;
	struct nsk_dgram_rec rec;
	memset(&rec, 0, sizeof(rec));
	rec.len = (uint32_t)len;
	rec.family = src->family;
	rec.port = src->port;
	memcpy(rec.addr, src->addr, 16);
	rec.check = NSK_DGRAM_CHECK;
	rec.sum = rec.len ^ rec.family ^ ((uint32_t)rec.port << 16) ^ rec.check;
	area_in(ib, tail, &rec, sizeof(rec));
	uint64_t pos = tail + sizeof(rec);
	size_t left = len;
	for (int i = 0; i < cnt && left; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
		if (!n)
			continue;
		area_in(ib, pos, iov[i].iov_base, n);
		pos += n;
		left -= n;
	}
	/* Sequentially consistent: pairs with the consumer's acquire of tail (the record above is
	 * visible first) and orders this store before the load in nsk_take() (Dekker handshake
	 * with nsk_arm's fence on the consumer side). */
	atomic_store_explicit(NSK_A64(&ib->h->tail), tail + need, memory_order_seq_cst);
	nsk_store64(&ib->h->enq, nsk_load64(&ib->h->enq) + 1); /* under the lock: one writer */
	return 0;
}

void nsk_inbox_drop(struct nsk_inbox *ib)
{
	nsk_add64(&ib->h->drops, 1);
}

/* ---------------------------------------------------------------- consumer ----------- */

/* The consumer's view of the tail: the cached one while records remain below it (reading
 * the producers' line for every record would move it between caches each time). */
static uint64_t cons_tail(struct nsk_inbox *ib, uint64_t head)
{
	if (ib->tail_cache - head - 1 < ib->size) /* head < tail_cache, within one queue */
		return ib->tail_cache;
	/* Acquire pairs with the producer's seq_cst store of tail in nsk_inbox_put: the record
	 * bytes are visible once we see the tail that covers them. */
	ib->tail_cache = nsk_load64_acquire(&ib->h->tail);
	return ib->tail_cache;
}

int nsk_inbox_empty(struct nsk_inbox *ib)
{
	uint64_t head = nsk_load64(&ib->h->head);
	return cons_tail(ib, head) == head;
}

/* The queue is malformed (a buggy or hostile producer): drop everything published so far. */
static void reset(struct nsk_inbox *ib, uint64_t tail)
{
	nsk_add64(&ib->h->corrupt, 1);
	atomic_store_explicit(NSK_A64(&ib->h->head), tail, memory_order_seq_cst);
}

int nsk_inbox_peek(struct nsk_inbox *ib, struct nsk_dgram_rec *rec)
{
	uint64_t head = nsk_load64(&ib->h->head);
	uint64_t tail = cons_tail(ib, head);
	uint64_t used = tail - head;
	if (used == 0)
		return 0;
	if (used > ib->size || (used & 7) || used < sizeof(*rec)) {
		reset(ib, tail);
		return 0;
	}
	area_out(ib, head, rec, sizeof(*rec)); /* a private copy: validated once, used after */
	uint32_t sum = rec->len ^ rec->family ^ ((uint32_t)rec->port << 16) ^ rec->check;
	if (rec->check != NSK_DGRAM_CHECK || sum != rec->sum || rec->len > NSK_DGRAM_MAX ||
	    (rec->family != 2 /* AF_INET */ && rec->family != 10 /* AF_INET6 */) ||
	    nsk_inbox_rec_size(rec->len) > used) {
		reset(ib, tail);
		return 0;
	}
	return 1;
}

size_t nsk_inbox_copy(struct nsk_inbox *ib, const struct nsk_dgram_rec *rec,
		      struct nsk_iovcur *cur, size_t max)
{
	uint64_t pos = nsk_load64(&ib->h->head) + sizeof(*rec);
	size_t n = rec->len < max ? rec->len : max;
	size_t done = 0;
	while (done < n && cur->cnt > 0) {
		size_t chunk = cur->iov->iov_len - cur->off;
		if (chunk > n - done)
			chunk = n - done;
		area_out(ib, pos + done, (uint8_t *)cur->iov->iov_base + cur->off, chunk);
		done += chunk;
		cur->off += chunk;
		if (cur->off == cur->iov->iov_len) {
			cur->iov++;
			cur->cnt--;
			cur->off = 0;
		}
	}
	return done;
}

void nsk_inbox_pop(struct nsk_inbox *ib, const struct nsk_dgram_rec *rec)
{
	uint64_t head = nsk_load64(&ib->h->head);
	/* Sequentially consistent: pairs with the producer's acquire of head (we are done
	 * reading the record before its space is reused) and orders this store before the load
	 * in nsk_take() of the producer-space request, if any. */
	atomic_store_explicit(NSK_A64(&ib->h->head), head + nsk_inbox_rec_size(rec->len),
			      memory_order_seq_cst);
}

/* ---------------------------------------------------------------- wakers ------------- */

int nsk_inbox_waker_add(struct nsk_inbox *ib, uint32_t pid, uint64_t start, uint16_t family,
			uint16_t port)
{
	struct nsk_inbox_waker *w = ib->h->wakers;
	for (int i = 0; i < NSK_INBOX_WAKERS; i++)
		if (nsk_load32(&w[i].pid) == pid && nsk_load64(&w[i].start_time) == start &&
		    nsk_load32((uint32_t *)&w[i].family) == ((uint32_t)port << 16 | family))
			return i;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < NSK_INBOX_WAKERS; i++) {
			uint32_t cur = nsk_load32(&w[i].pid);
			if (cur && (pass == 0 || (kill((pid_t)cur, 0) == 0 || errno != ESRCH)))
				continue;
			/* Claim the slot; family and port are one 32-bit word, published with a
			 * release store after the start time (pairs with waker_find's acquire). */
			if (!atomic_compare_exchange_strong_explicit(NSK_A32(&w[i].pid), &cur, pid,
								     memory_order_acq_rel,
								     memory_order_relaxed))
				continue;
			nsk_store32((uint32_t *)&w[i].family, 0); /* a dead owner's port is void */
			nsk_store64(&w[i].start_time, start);
			nsk_store32_release((uint32_t *)&w[i].family, (uint32_t)port << 16 | family);
			return i;
		}
	}
	return -ENOSPC;
}

int nsk_inbox_waker_find(struct nsk_inbox *ib, uint16_t family, uint16_t port, uint32_t *pid)
{
	struct nsk_inbox_waker *w = ib->h->wakers;
	uint32_t want = (uint32_t)port << 16 | family;
	for (int i = 0; i < NSK_INBOX_WAKERS; i++) {
		/* Acquire pairs with the release store in nsk_inbox_waker_add. */
		if (nsk_load32_acquire((uint32_t *)&w[i].family) == want) {
			uint32_t p = nsk_load32(&w[i].pid);
			if (p) {
				*pid = p;
				return i;
			}
		}
	}
	return -1;
}

void nsk_inbox_waker_del(struct nsk_inbox *ib, int i, uint32_t pid)
{
	if (i < 0 || i >= NSK_INBOX_WAKERS)
		return;
	struct nsk_inbox_waker *w = &ib->h->wakers[i];
	if (nsk_load32(&w->pid) != pid)
		return;
	nsk_store32((uint32_t *)&w->family, 0);
	nsk_store32_release(&w->pid, 0);
}
