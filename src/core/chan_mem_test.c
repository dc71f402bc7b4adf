/* SPDX-License-Identifier: MIT */
/* chan_mem_test.c — channels in shared memory (chan_mem.c) and the region calls the ivshmem
 * backend adds (chunk hand-over, chunk owner): ring sizing, format then attach as the other
 * side with bytes through both rings, every malformed header field refused, the users bits,
 * and chunks handed to another member and freed by it. */
#include "core/chan_mem.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "core/region.h"
#include "core/ring.h"
#include "core/test_util.h"

static void test_ring_size(void)
{
	CHECK_EQ(nsk_chan_mem_ring_size(4096, 1 << 20), 0);
	CHECK_EQ(nsk_chan_mem_ring_size(NSK_CHAN_DATA_OFF + 2 * 4096, 1 << 20), 4096);
	CHECK_EQ(nsk_chan_mem_ring_size(17 * 65536, 512 << 10), 512 << 10);
	CHECK_EQ(nsk_chan_mem_ring_size(16 * 65536, 512 << 10), 256 << 10); /* 4 KiB header */
	CHECK_EQ(nsk_chan_mem_ring_size(64u << 20, 1 << 20), 1 << 20);      /* capped by max */
}

static void test_format_attach(void)
{
	uint64_t size = 3 * 65536;
	void *m = aligned_alloc(4096, size);
	CHECK(m);
	memset(m, 0xa5, size); /* the memory held another channel before */
	struct nsk_chan c, s;
	CHECK_EQ(nsk_chan_format_mem(&c, m, size, 65536), 0);
	CHECK_EQ(c.hdr->users, NSK_CHAN_USER_CLIENT | NSK_CHAN_USER_SERVER);
	CHECK_EQ(nsk_chan_state(&c), NSK_CH_OFFERED);
	CHECK_EQ(nsk_chan_attach_mem(&s, m, size, c.nonce, NSK_SIDE_SERVER), 0);
	CHECK_EQ(nsk_chan_claim(&s), 0);
	/* bytes client -> server and back through the two rings */
	char out[100] = "hello through region memory", in[100] = {0};
	struct iovec iv = {.iov_base = out, .iov_len = sizeof(out)};
	struct nsk_iovcur cur;
	nsk_iovcur_init(&cur, &iv, 1);
	CHECK_EQ(nsk_ring_write(&c.tx, &cur, sizeof(out)), sizeof(out));
	struct iovec ov = {.iov_base = in, .iov_len = sizeof(in)};
	nsk_iovcur_init(&cur, &ov, 1);
	CHECK_EQ(nsk_ring_read(&s.rx, &cur, sizeof(in), 0), sizeof(in));
	CHECK(!memcmp(in, out, sizeof(out)));
	nsk_iovcur_init(&cur, &iv, 1);
	CHECK_EQ(nsk_ring_write(&s.tx, &cur, sizeof(out)), sizeof(out));
	nsk_iovcur_init(&cur, &ov, 1);
	CHECK_EQ(nsk_ring_read(&c.rx, &cur, sizeof(in), 0), sizeof(in));
	/* users: the last one to detach sees 0 */
	CHECK_EQ(nsk_chan_mem_detach(&c, NSK_SIDE_CLIENT), NSK_CHAN_USER_SERVER);
	CHECK_EQ(nsk_chan_mem_detach(&s, NSK_SIDE_SERVER), 0);
	free(m);
}

static void test_attach_rejects(void)
{
	uint64_t size = 3 * 65536;
	void *m = aligned_alloc(4096, size);
	CHECK(m);
	struct nsk_chan c, s;
	CHECK_EQ(nsk_chan_format_mem(&c, m, size, 65536), 0);
	struct nsk_chan_hdr saved = *c.hdr;
	CHECK_EQ(nsk_chan_attach_mem(&s, m, size, c.nonce + 1, NSK_SIDE_SERVER), -EPROTO);
	CHECK_EQ(nsk_chan_attach_mem(&s, m, size - 65536, c.nonce, NSK_SIDE_SERVER), -EPROTO);
	CHECK_EQ(nsk_chan_attach_mem(&s, (char *)m + 8, size, c.nonce, NSK_SIDE_SERVER), -EPROTO);
	CHECK_EQ(nsk_chan_attach_mem(&s, m, size, c.nonce, 7), -EPROTO);
	struct {
		size_t off;
		uint64_t val;
		int width;
	} bad[] = {
	    {offsetof(struct nsk_chan_hdr, magic), 0, 4},
	    {offsetof(struct nsk_chan_hdr, version), 99, 4},
	    {offsetof(struct nsk_chan_hdr, seg_size), 1 << 30, 8},
	    {offsetof(struct nsk_chan_hdr, ring_size[0]), 65535, 8},
	    {offsetof(struct nsk_chan_hdr, ring_size[1]), 1 << 20, 8},
	    {offsetof(struct nsk_chan_hdr, ring_off[0]), 100, 8},
	    {offsetof(struct nsk_chan_hdr, ring_off[1]), NSK_CHAN_DATA_OFF, 8}, /* overlap */
	    {offsetof(struct nsk_chan_hdr, ring_off[1]), 3 * 65536 - 4096, 8},  /* past the end */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		*c.hdr = saved;
		if (bad[i].width == 4) {
			uint32_t v = (uint32_t)bad[i].val;
			memcpy((char *)m + bad[i].off, &v, 4);
		} else {
			memcpy((char *)m + bad[i].off, &bad[i].val, 8);
		}
		if (nsk_chan_attach_mem(&s, m, size, c.nonce, NSK_SIDE_SERVER) != -EPROTO)
			FAILF("malformed field %zu accepted", i);
	}
	*c.hdr = saved;
	CHECK_EQ(nsk_chan_attach_mem(&s, m, size, c.nonce, NSK_SIDE_SERVER), 0);
	CHECK_EQ(nsk_chan_format_mem(&c, m, size, 3 * 65536), -EINVAL); /* rings do not fit */
	free(m);
}

static void test_give(void)
{
	uint64_t size = 1 << 20;
	void *m = aligned_alloc(4096, size);
	CHECK(m);
	CHECK_EQ(nsk_region_format(m, size, NULL), 0);
	struct nsk_region a, b;
	CHECK_EQ(nsk_region_attach(&a, m, size), 0);
	CHECK_EQ(nsk_region_attach(&b, m, size), 0);
	CHECK(nsk_region_join(&a, "a", 1) >= 0);
	CHECK(nsk_region_join(&b, "b", 2) >= 0);
	int64_t off = nsk_region_chunk_alloc(&a, 3);
	CHECK(off > 0);
	CHECK_EQ(nsk_region_chunk_owner(&a, (uint64_t)off), a.self_tag);
	CHECK_EQ(nsk_region_chunk_owner(&a, 12345), 0);
	CHECK_EQ(nsk_region_chunk_give(&a, (uint64_t)off, 3, 0xdead0099u), -EINVAL); /* not live */
	CHECK_EQ(nsk_region_chunk_give(&b, (uint64_t)off, 3, a.self_tag), -EPERM);   /* not b's */
	CHECK_EQ(nsk_region_chunk_give(&a, (uint64_t)off, 3, b.self_tag), 0);
	CHECK_EQ(nsk_region_chunk_owner(&a, (uint64_t)off + 2 * NSK_RGN_CHUNK), b.self_tag);
	CHECK_EQ(nsk_region_chunk_free(&a, (uint64_t)off, 3), -EPERM); /* no longer a's */
	CHECK_EQ(nsk_region_chunk_free(&b, (uint64_t)off, 3), 0);
	CHECK_EQ(nsk_region_chunk_owner(&a, (uint64_t)off), 0);
	/* free_as: the last user frees another member's chunks */
	off = nsk_region_chunk_alloc(&a, 2);
	CHECK(off > 0);
	CHECK_EQ(nsk_region_chunk_free_as(&b, (uint64_t)off, 2, b.self_tag), -EPERM);
	CHECK_EQ(nsk_region_chunk_free_as(&b, (uint64_t)off, 2, a.self_tag), 0);
	CHECK_EQ(nsk_region_chunk_owner(&b, (uint64_t)off), 0);
	CHECK_EQ(nsk_region_leave(&a), 0);
	CHECK_EQ(nsk_region_leave(&b), 0);
	free(m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_watchdog(30);
	RUN(test_ring_size);
	RUN(test_format_attach);
	RUN(test_attach_rejects);
	RUN(test_give);
	return 0;
}
