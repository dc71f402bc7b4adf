/* SPDX-License-Identifier: MIT */
/* region.h — the ivshmem domain's shared region: one memory area that every member (a VM, or a
 * host process group) maps, holding a versioned header, a member table with heartbeats, the
 * domain registry, an offer mailbox and a chunk allocator for channel memory. Between VMs
 * there are no descriptors to pass, so this region is all the members share. Every value read
 * from it is untrusted: the header's geometry is validated once at attach and copied into the
 * handle, every index and offset read later is bounds-checked, and every loop is bounded.
 *
 * Ownership: each membership (slot, generation) has an owner tag (NSK_RGN_TAG). Chunks, offers
 * and registry entries carry the tag of their owner; when a member's heartbeat stands still
 * for the header's dead_ns, any member may reclaim everything carrying its tag. Liveness is
 * judged by observation (the beat counter changing, timed by the observer's own monotonic
 * clock), never by comparing clocks of different machines.
 *
 * Thread safety: a struct nsk_region is one member's view; its functions may be called from
 * several threads except attach/close/join/leave and the observers (reap, member_read, which
 * update the handle's private watch table), which the caller serialises (one reaper thread).
 * Different handles (processes, VMs) on the same region are safe against each other.
 * A region reformatted under a handle makes every call of that handle fail (-ESTALE/-ENOENT). */
#ifndef NSK_REGION_H
#define NSK_REGION_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/layout.h"
#include "core/registry.h"

/* nsk_region_params - what a format chooses (0 for any field: the default). */
struct nsk_region_params {
	uint32_t nmembers;  /* member slots (default 64, at most NSK_RGN_MEMBERS_MAX) */
	uint32_t noffers;   /* offer slots (default 256, at most NSK_RGN_OFFERS_MAX) */
	uint32_t reg_slots; /* registry entries (default size/4096 clamped to 64..4096) */
	uint64_t beat_ns;   /* heartbeat interval (default 250 ms) */
	uint64_t dead_ns;   /* dead after this long without a beat (default 5 s, >= 4 beats) */
};

/* Bounds a header must respect (checked at attach). */
#define NSK_RGN_BEAT_MIN_NS 1000000ull       /* 1 ms */
#define NSK_RGN_BEAT_MAX_NS 60000000000ull   /* 60 s */
#define NSK_RGN_DEAD_MAX_NS 3600000000000ull /* 1 h */

/* What this handle remembers of each member slot to judge its liveness. */
struct nsk_region_watch {
	uint64_t state; /* state word last seen */
	uint64_t beat;  /* beat counter last seen */
	uint64_t since; /* our CLOCK_MONOTONIC when we first saw this (state, beat) */
};

struct nsk_region {
	uint8_t *base; /* mapping (or caller's memory for nsk_region_attach) */
	uint64_t map_len;
	int mapped;          /* 1: we mmap()ed base and unmap it at close */
	char path[PATH_MAX]; /* what was opened (file, or the PCI device's resource2) */
	struct nsk_rgn_hdr *hdr;
	/* geometry: private copies of the validated header, never re-read from the region */
	uint64_t size, format_gen, beat_ns, dead_ns, data_off;
	uint32_t nmembers, noffers, nchunks;
	struct nsk_rgn_member *members;
	struct nsk_rgn_offer *offers;
	struct nsk_rgn_chunk *chunks;
	struct nsk_registry reg;
	/* our membership (self < 0: not joined) */
	int self;
	uint32_t self_gen;
	uint32_t self_tag;
	struct nsk_region_watch watch[NSK_RGN_MEMBERS_MAX];
};

/* ------------------------------------------------------------------ format and attach -- */

/* nsk_region_layout - compute the header @h (geometry only, no magic or sum) for a region of
 * @size bytes with @p (NULL: defaults). 0, or -EINVAL (size not a power of two in
 * [NSK_RGN_MIN_SIZE, NSK_RGN_MAX_SIZE], parameters out of range, or no room for one chunk). */
int nsk_region_layout(struct nsk_rgn_hdr *h, uint64_t size, const struct nsk_region_params *p);
/* nsk_region_format - write an empty region of @size bytes at @base (8-byte aligned): header,
 * free member slots, empty registry and mailbox, all chunks free. The magic is stored last
 * (store-release), so a concurrent attach sees either no region or a complete one.
 * 0 or -EINVAL. The caller makes sure no member is attached (see nsk_region_live_members). */
int nsk_region_format(void *base, uint64_t size, const struct nsk_region_params *p);
/* nsk_region_hdr_sum - the checksum a header's `sum` must hold. */
uint64_t nsk_region_hdr_sum(const struct nsk_rgn_hdr *h);
/* nsk_region_attach - validate the region at @base (@len bytes accessible) and fill @rg.
 * Returns 0, -EPROTO for a malformed or foreign header (magic, version, sum, geometry,
 * registry), -EINVAL for a misaligned @base. Does not join. */
int nsk_region_attach(struct nsk_region *rg, void *base, uint64_t len);
/* nsk_region_close - leave nothing behind in this process: unmap if we mapped. Does not leave
 * the member table (a process that exits without leaving is reclaimed after dead_ns). */
void nsk_region_close(struct nsk_region *rg);
/* nsk_region_ptr - pointer to [@off, @off + @len) of the data area, or NULL if the range is
 * not inside it. The one way to turn an offset read from the region into a pointer. */
void *nsk_region_ptr(const struct nsk_region *rg, uint64_t off, uint64_t len);

/* ------------------------------------------------------------------ members ----------- */

/* nsk_region_join - take a free member slot (CAS FREE(g) → LIVE(g+1)), reclaiming slots of
 * dead members on the way, and record @name and @pid. Returns the slot, -EALREADY if this
 * handle already joined, -ENOSPC if every slot is live. */
int nsk_region_join(struct nsk_region *rg, const char *name, pid_t pid);
/* nsk_region_beat - one heartbeat: bump our beat counter. Returns 0, or -ESTALE when we are
 * no longer a member (our slot was reclaimed while we stalled, or the region was reformatted):
 * the caller must stop using every resource it got from the region. */
int nsk_region_beat(struct nsk_region *rg);
/* nsk_region_leave - give back everything our membership owns (chunks, offers, registry
 * entries) and free the slot. 0, or -ESTALE if we were no longer a member. */
int nsk_region_leave(struct nsk_region *rg);
/* nsk_region_set_addrs - publish up to 4 of our IP addresses (@family[i], @addr[i] 16 bytes,
 * IPv4 in the first 4) so that others resolve destination addresses to us. 0 or -EINVAL. */
int nsk_region_set_addrs(struct nsk_region *rg, const uint16_t *family, const uint8_t (*addr)[16],
                         unsigned n);
/* nsk_region_find_addr - the live member slot that published (@family, @addr), or -ENOENT. */
int nsk_region_find_addr(struct nsk_region *rg, uint16_t family, const uint8_t addr[16]);
/* nsk_region_netns - the registry namespace of member slot @slot: listeners of a member are
 * registered with key.netns = nsk_region_netns(its slot), and the entry's pid/start_time are
 * slot + 1 / generation (see nsk_region_reg_owner). */
uint64_t nsk_region_netns(int slot);
/* nsk_region_tag_live - 1 if owner tag @tag names a membership that is LIVE now, else 0. */
int nsk_region_tag_live(const struct nsk_region *rg, uint32_t tag);

/* A copy of one member slot as the status tool shows it. */
struct nsk_region_member_info {
	uint64_t state;
	uint64_t beat;
	uint64_t beat_wall_ns;
	uint64_t join_wall_ns;
	uint64_t since_ns; /* how long (our clock) the beat counter has stood still; 0 if never
	                    * observed twice */
	uint32_t pid;
	uint32_t tag; /* owner tag of the membership (0 if FREE) */
	uint32_t naddr;
	uint16_t family[4];
	uint8_t addr[4][16];
	char name[33];
	uint64_t chunks; /* chunks the membership holds now */
	int dead;        /* 1 if it would be reclaimed now */
};
/* nsk_region_member_read - copy slot @slot into @out (observing its beat as reap does).
 * 1 if the slot is not FREE, 0 if FREE, -EINVAL for a bad slot number. */
int nsk_region_member_read(struct nsk_region *rg, int slot, struct nsk_region_member_info *out);
/* nsk_region_reap - observe every member; reclaim the resources of members whose beat stood
 * still for dead_ns (by our clock, since we first saw that beat value) and of slots left in
 * RECLAIM by a reclaimer that died, then free their slots. Returns the number of memberships
 * reclaimed. Any member may call it; concurrent reapers are safe (every step is a CAS on a
 * word carrying the dead membership's tag). */
int nsk_region_reap(struct nsk_region *rg);
/* nsk_region_reap_at - nsk_region_reap with @now_ns as the current monotonic time (tests). */
int nsk_region_reap_at(struct nsk_region *rg, uint64_t now_ns);
/* nsk_region_reclaim_tag - give back everything owner tag @tag holds: chunks, offers, registry
 * entries. Idempotent. Returns the number of chunks freed. */
uint32_t nsk_region_reclaim_tag(struct nsk_region *rg, uint32_t tag);
/* nsk_region_live_members - members whose beat counter changes within @wait_ns (we sample
 * twice); slots LIVE but standing still count as stale, not live. Used before a reformat. */
int nsk_region_live_members(struct nsk_region *rg, uint64_t wait_ns);

/* ------------------------------------------------------------------ chunk allocator --- */

/* nsk_region_chunk_alloc - take @n contiguous free chunks for our membership. Lock-free: each
 * chunk is taken by CAS of its owner word 0 → our tag; when a run meets a taken chunk, the
 * chunks taken so far are given back and the search goes on past it. Returns the region
 * offset of the first chunk, -ENOSPC if no run of @n free chunks was found, -EINVAL for @n 0
 * or larger than the region, -ESTALE if we are not a member. */
int64_t nsk_region_chunk_alloc(struct nsk_region *rg, uint32_t n);
/* nsk_region_chunk_alloc_prop - dynamic proportional allocation (MemPipe): a channel gets at
 * most a quarter of the free chunks, at least @min_n and at most @want; halved down to @min_n
 * while no contiguous run fits. Returns the offset and sets *@got, or -ENOSPC / -EINVAL. */
int64_t nsk_region_chunk_alloc_prop(struct nsk_region *rg, uint32_t want, uint32_t min_n,
                                    uint32_t *got);
/* nsk_region_chunk_free - give back @n chunks at region offset @off that our membership holds.
 * Returns 0, -EINVAL for a range outside the data area or misaligned, -EPERM if some chunk was
 * not ours (those are left alone; ours in the range are freed). */
int nsk_region_chunk_free(struct nsk_region *rg, uint64_t off, uint32_t n);

/* nsk_region_chunk_free_as - give back @n chunks at @off held by owner tag @tag (another
 * member's: the last user of a channel frees its memory for the member that allocated it).
 * Each chunk by CAS @tag → 0, so chunks meanwhile reclaimed or reused are left alone. Same
 * returns as nsk_region_chunk_free (we must be a member). */
int nsk_region_chunk_free_as(struct nsk_region *rg, uint64_t off, uint32_t n, uint32_t tag);

/* nsk_region_chunk_give - hand @n chunks at @off that our membership holds to the live
 * membership @to_tag (the last user of a channel owns its memory: a client that closes while
 * the server still reads hands the channel over). Each chunk by CAS our tag → @to_tag.
 * 0, -EPERM if some chunk was not ours, -EINVAL (bad range, @to_tag not live), -ESTALE. */
int nsk_region_chunk_give(struct nsk_region *rg, uint64_t off, uint32_t n, uint32_t to_tag);
/* nsk_region_chunk_owner - the owner tag of the chunk at @off (0: free or a bad offset). */
uint32_t nsk_region_chunk_owner(const struct nsk_region *rg, uint64_t off);

struct nsk_region_chunk_stats {
	uint32_t total, free, used, largest_free; /* chunks */
	uint32_t by_slot[NSK_RGN_MEMBERS_MAX];    /* chunks held per member slot */
	uint32_t orphan; /* held by tags whose membership is not LIVE (reclaim pending) */
};
void nsk_region_chunk_stats(const struct nsk_region *rg, struct nsk_region_chunk_stats *st);

/* ------------------------------------------------------------------ offer mailbox ----- */

struct nsk_region_offer_info {
	uint32_t to_tag; /* addressee (from its registry entry: NSK_RGN_TAG(pid - 1, start_time)) */
	uint32_t from_tag; /* filled in by post / claim */
	uint64_t nonce;
	uint64_t chan_off, chan_size;
	uint16_t family, cport, sport;
	uint8_t caddr[16], saddr[16];
	uint32_t from_pid;
};
/* A posted offer as its poster tracks it. */
struct nsk_region_offer_handle {
	int slot;
	uint32_t gen;
	uint32_t owner;
};
/* nsk_region_offer_post - post @o (its channel must lie in the data area, chunk aligned) to
 * the live member @o->to_tag: take an EMPTY slot (→ WRITING, our tag, new generation), fill it in,
 * publish it (→ POSTED) and bump the addressee's mail_seq. 0 with @h set, -ENOSPC (mailbox
 * full), -EINVAL (bad channel range, or the addressee is not a live membership), -ESTALE (not
 * a member). */
int nsk_region_offer_post(struct nsk_region *rg, const struct nsk_region_offer_info *o,
                          struct nsk_region_offer_handle *h);
/* nsk_region_offer_claim - addressee: find a POSTED offer to us whose connection matches
 * (@family, client @caddr:@cport, server @saddr:@sport; addresses 16 bytes, IPv4 in the first
 * 4) and CAS it POSTED → CLAIMED. @caddr NULL matches any offer to us; @saddr NULL any
 * server address. 0 with @out (validated:
 * channel range inside the data area) and @h set, or -ENOENT. Offers with a malformed channel
 * range are skipped. */
int nsk_region_offer_claim(struct nsk_region *rg, uint16_t family, const uint8_t *caddr,
                           uint16_t cport, const uint8_t *saddr, uint16_t sport,
                           struct nsk_region_offer_info *out, struct nsk_region_offer_handle *h);
/* nsk_region_offer_withdraw - poster: POSTED → WITHDRAWN. 0, -EALREADY if it was claimed
 * first, -ESTALE if the slot no longer holds our offer (reclaimed). */
int nsk_region_offer_withdraw(struct nsk_region *rg, const struct nsk_region_offer_handle *h);
/* nsk_region_offer_state - the kind (enum nsk_rgn_okind) of our offer @h, or -ESTALE. */
int nsk_region_offer_state(const struct nsk_region *rg, const struct nsk_region_offer_handle *h);
/* nsk_region_offer_release - poster: a CLAIMED or WITHDRAWN offer's slot back to EMPTY.
 * 0, -EBUSY if still POSTED (withdraw first), -ESTALE if no longer ours. */
int nsk_region_offer_release(struct nsk_region *rg, const struct nsk_region_offer_handle *h);
/* nsk_region_offer_read - a copy of offer slot @slot (status; untrusted: check chan_off with
 * nsk_region_ptr before use). Its kind, or -EINVAL for a bad slot number. */
int nsk_region_offer_read(const struct nsk_region *rg, int slot, struct nsk_rgn_offer *out);
/* nsk_region_offer_count - slots per kind into @count[5] (status). */
void nsk_region_offer_count(const struct nsk_region *rg, uint32_t count[5]);

/* ------------------------------------------------------------------ registry ---------- */

/* nsk_region_reg_owner - the owner tag of a registry entry of the region (pid = slot + 1,
 * start_time = generation), or 0 if the fields do not name a member slot. */
uint32_t nsk_region_reg_owner(const struct nsk_region *rg, const struct nsk_reg_entry *e);

/* ------------------------------------------------------------------ mapping ----------- */
/* (region_map.c) */

enum nsk_region_where { NSK_RGN_FILE = 1, NSK_RGN_PCI_AUTO = 2, NSK_RGN_PCI_DEV = 3 };
struct nsk_region_spec {
	int where;          /* enum nsk_region_where */
	char arg[PATH_MAX]; /* file path, or PCI address (DDDD:BB:DD.F) for NSK_RGN_PCI_DEV */
};
/* nsk_region_parse_domain - parse a NEARSOCK_DOMAIN value: "ivshmem:/path/FILE" (the host
 * backing file), "ivshmem:auto" (guest: the first ivshmem PCI device holding a valid region),
 * "ivshmem:pci:DDDD:BB:DD.F" (that device). Returns 1 for an ivshmem spec (@out filled), 0 if
 * @s is NULL, empty or another kind of domain, -EINVAL for a malformed ivshmem spec. */
int nsk_region_parse_domain(const char *s, struct nsk_region_spec *out);
/* nsk_region_sysfs_root - NEARSOCK_SYSFS, or "/sys". */
const char *nsk_region_sysfs_root(void);
/* nsk_region_open_path - map the backing file @path (MAP_SHARED, its whole size) and attach.
 * 0, -errno from open/mmap, -EPROTO for a malformed region (also for a file whose size is not
 * the header's). */
int nsk_region_open_path(struct nsk_region *rg, const char *path);
/* nsk_region_open_pci - guest: scan @sysfs_root/bus/pci/devices/ (sorted) for vendor 0x1af4
 * device 0x1110 (@bdf non-NULL: only that device), write "1" to its enable file, map its
 * resource2 (size from the file, else from the `resource` file) and attach. 0, -ENODEV (no
 * such device), or the last error of a device that did not attach (-EPROTO, -EACCES, ...). */
int nsk_region_open_pci(struct nsk_region *rg, const char *sysfs_root, const char *bdf);
/* nsk_region_open_spec - open what @spec names (PCI under nsk_region_sysfs_root()). */
int nsk_region_open_spec(struct nsk_region *rg, const struct nsk_region_spec *spec);
/* nsk_region_create_file - make @path a region file of @size bytes (created 0600 if missing,
 * sized with posix_fallocate so that a full /dev/shm fails here, not with SIGBUS later) and
 * format it with @p. Refuses (-EBUSY) when it holds a valid region with live members (sampled
 * for up to @wait_ns) unless @force. 0 or -errno. */
int nsk_region_create_file(const char *path, uint64_t size, const struct nsk_region_params *p,
                           int force, uint64_t wait_ns);

#endif
