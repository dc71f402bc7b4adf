/* SPDX-License-Identifier: MIT */
/* layout.h — every shared-memory layout nearsock maps: the channel segment (two endpoints),
 * the domain registry (all processes of a domain) and the per-process connection table (the
 * process, its forked children and `nearsock status`). Other processes and other builds map
 * these, so fields have explicit widths, each layout has a magic and a version, and sizes and
 * offsets are pinned by _Static_assert. Nothing read from here is trusted without a bounds check. */
#ifndef NSK_LAYOUT_H
#define NSK_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define NSK_CACHELINE 64

/* ---------------------------------------------------------------- channel segment ---- */
#define NSK_CHAN_MAGIC 0x43534b4eu /* "NKSC" */
#define NSK_CHAN_VERSION 1u
#define NSK_CHAN_DATA_OFF 4096u /* rings start on their own page */
#define NSK_RING_MIN (4u << 10)
#define NSK_RING_MAX (64u << 20)

enum nsk_chan_state {
	NSK_CH_OFFERED = 1,   /* client posted the offer; nobody mapped it on the other side yet */
	NSK_CH_CLAIMED = 2,   /* server claimed it: both rings may be used after the switch points */
	NSK_CH_WITHDRAWN = 3, /* client gave up before a claim: the connection stays TCP */
};

/* Side 0 is the connecting (client) end, side 1 the accepting (server) end.
 * Ring 0 carries client→server bytes, ring 1 server→client. */
enum { NSK_SIDE_CLIENT = 0, NSK_SIDE_SERVER = 1 };

/* Wake-up request bits, set by a side that is about to sleep. */
#define NSK_ARM_FUTEX 1u /* a thread sleeps in futex_wait on the sequence word */
#define NSK_ARM_FD 2u    /* a thread sleeps in poll/select/epoll on the kernel fd */

/* One direction's control block: each line is written by one party only. */
struct nsk_ring_ctl {
	/* line 0 — producer */
	uint64_t tail; /* bytes ever produced (free-running) */
	uint32_t fin;  /* producer shut down writing after byte `tail` */
	uint32_t pad0a;
	/* bytes of the ring's data area in use (power of two, NSK_RING_MIN .. the area's size;
	 * 0: all of it). Changed by the producer only while the ring is empty, before the tail
	 * that follows (release): every byte past the tail the consumer sees is placed modulo
	 * the capacity it then reads (dynamic ring sizing, see ring.h). */
	uint64_t cap;
	uint32_t pad0[10];
	/* line 1 — consumer */
	uint64_t head; /* bytes ever consumed (free-running) */
	uint32_t pad1[14];
	/* line 2 — consumer's wake-up request (set by the consumer, taken by the producer) */
	uint32_t cons_armed;
	uint32_t data_seq; /* futex word the consumer sleeps on */
	uint32_t pad2[14];
	/* line 3 — producer's wake-up request for free space */
	uint32_t prod_armed;
	uint32_t space_seq; /* futex word the producer sleeps on */
	uint32_t pad3[14];
};
_Static_assert(sizeof(struct nsk_ring_ctl) == 4 * NSK_CACHELINE, "ring ctl is four lines");
_Static_assert(offsetof(struct nsk_ring_ctl, head) == NSK_CACHELINE, "head on its own line");
_Static_assert(offsetof(struct nsk_ring_ctl, cons_armed) == 2 * NSK_CACHELINE, "arm line");
_Static_assert(offsetof(struct nsk_ring_ctl, prod_armed) == 3 * NSK_CACHELINE, "arm line");

/* Control bytes on TCP past a switch point: NSK_CTL_WAKE (the switch marker, wake-ups and
 * probes: content never interpreted otherwise) and NSK_CTL_BACK, which ends a ring epoch. */
#define NSK_CTL_WAKE 'N'
#define NSK_CTL_BACK 'B'

/* What one side publishes about its sending direction, and about its receiving progress.
 *
 * A direction's stream is a sequence of epochs, counted by `epoch` (written by the sender
 * with store-release, after the field it validates): even epochs travel over TCP, odd ones
 * through the ring. Epoch 2k+1 starts when the sender has sent `switch_at` application bytes
 * over TCP in all (a switch to the ring, marked by a control byte after the data); epoch
 * 2k+2 starts when the ring has carried `ring_stop` bytes in all (an evacuation: on TCP,
 * every byte after the switch point up to the switch-back marker is a control byte, the
 * marker itself is NSK_CTL_BACK, and raw application data follows it). The receiver
 * publishes in `rx_epoch` the epoch of the peer's direction it has reached; a sender starts
 * epoch e+1 only when the receiver has reached e-1, so the one field of each kind that the
 * receiver may still need is never overwritten. */
struct nsk_chan_side {
	uint32_t switched;  /* 1 once switch_at was ever valid (store-release) */
	uint32_t pid;       /* informational */
	uint64_t switch_at; /* bytes this side sent over TCP before its latest switch to the ring */
	uint64_t cpumask;   /* CPUs 0..63 this side may run on (0: unknown), for the spin policy */
	uint64_t ring_stop; /* ring bytes this side sent before its latest switch back to TCP */
	uint32_t epoch;     /* of our sending direction (see above) */
	uint32_t rx_epoch;  /* epoch of the peer's direction our receiver has reached */
	uint32_t evac;      /* 1: this side wants the connection on TCP (evacuation) */
	uint32_t retired;   /* ivshmem region channels: 1 once this side's sending direction is
			     * on TCP for good in this channel (store-release); dropped once both
			     * are and every byte was read (see sock.c, nsk_sock_vm_drop) */
	uint64_t ctl_sent;  /* control bytes (NSK_CTL_WAKE) this side ever sent on TCP, counted
			     * after each is sent: a receiver that consumed fewer may read the
			     * difference without looking, and never reads a marker by mistake */
	uint32_t pad[2];
};
_Static_assert(sizeof(struct nsk_chan_side) == NSK_CACHELINE, "side is one line");

struct nsk_chan_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t nonce;    /* matches the offer message */
	uint64_t seg_size; /* bytes of the whole segment */
	uint32_t state;    /* enum nsk_chan_state, changed by CAS only */
	uint32_t hdr_size;
	uint64_t ring_off[2];
	uint64_t ring_size[2];
	uint32_t users; /* channels in an ivshmem region only (chan_mem.h): NSK_CHAN_USER_* bits
			 * of the endpoints still using the memory; the last frees it */
	uint32_t pad0;
	uint8_t pad[56];
	struct nsk_chan_side side[2];
	struct nsk_ring_ctl ring[2];
};
_Static_assert(offsetof(struct nsk_chan_hdr, side) == 2 * NSK_CACHELINE, "sides at line 2");
_Static_assert(offsetof(struct nsk_chan_hdr, users) == 64, "users word");
_Static_assert(offsetof(struct nsk_chan_hdr, ring) == 4 * NSK_CACHELINE, "rings at line 4");
_Static_assert(sizeof(struct nsk_chan_hdr) <= NSK_CHAN_DATA_OFF, "header fits its page");

/* The offer datagram sent to a listener's rendezvous socket, with the segment's memfd. */
#define NSK_OFFER_MAGIC 0x4f534b4eu /* "NKSO" */
struct nsk_offer {
	uint32_t magic;
	uint32_t version;
	uint64_t nonce;
	uint64_t seg_size;
	uint16_t family;   /* AF_INET or AF_INET6 (v4-mapped addresses are sent as AF_INET) */
	uint16_t cport;    /* client's local port (host order) */
	uint16_t sport;    /* server's port as the client connected to it */
	uint16_t pad;
	uint8_t caddr[16]; /* client's local address */
	uint8_t saddr[16]; /* address the client connected to */
	uint32_t pid;
	uint32_t hops;  /* times re-queued between processes sharing one rendezvous socket (fork) */
};
_Static_assert(sizeof(struct nsk_offer) == 72, "offer wire size");

/* ---------------------------------------------------------------- UDP inbox ----------- */
/* One per bound UDP socket: a multi-producer/single-consumer queue of whole datagrams in a
 * sealed memfd. Producers (local senders, any process of the domain) serialise on a lock word
 * held only while one record is copied in; the owner is the only consumer. */
#define NSK_INBOX_MAGIC 0x49534b4eu /* "NKSI" */
#define NSK_INBOX_VERSION 1u
#define NSK_INBOX_DATA_OFF 4096u
#define NSK_INBOX_MIN (128u << 10) /* a 64 KiB datagram always fits */
#define NSK_INBOX_MAX (64u << 20)
#define NSK_INBOX_WAKERS 48
#define NSK_DGRAM_MAX 65535u       /* largest payload a record may claim */

/* A process that may send wake-up datagrams to the owner's kernel socket, from a loopback
 * socket it owns: datagrams from (family, loopback, port) are wake-ups, never data. */
struct nsk_inbox_waker {
	uint32_t pid;    /* 0: free slot (claimed by CAS) */
	uint16_t family; /* AF_INET: 127.0.0.1, AF_INET6: ::1 */
	uint16_t port;   /* host order; 0 while being filled in */
	uint64_t start_time;
};
_Static_assert(sizeof(struct nsk_inbox_waker) == 16, "waker size");

struct nsk_inbox_hdr {
	/* line 0 — written once by the owner before the segment is published */
	uint32_t magic;
	uint32_t version;
	uint64_t nonce;
	uint64_t seg_size;
	uint64_t data_off;
	uint64_t data_size; /* power of two */
	uint32_t owner_pid;
	uint32_t pad0;
	uint64_t owner_start;
	uint64_t wake_key; /* secret of this inbox carried by every wake-up datagram */
	/* line 1 — producers' tail (the consumer reads it) */
	uint64_t tail;    /* bytes ever published (free-running, 8-byte records) */
	uint64_t pad1;
	uint64_t drops;   /* datagrams dropped because the inbox was full */
	uint64_t enq;     /* datagrams enqueued */
	uint64_t steals;  /* locks taken over from dead producers */
	uint64_t pad1b[3];
	/* line 2 — consumer */
	uint64_t head;    /* bytes ever consumed */
	uint64_t owner_cpus; /* CPUs 0..63 the owner may run on (0: unknown), set at creation */
	uint64_t pad2;
	uint64_t svc_ns;  /* consumer: mean time to drain after a wake-up (aggregation model) */
	uint64_t corrupt; /* malformed records or indices seen by the consumer (queue reset) */
	uint64_t pad2b[3];
	/* line 3 — consumer's wake-up request (as struct nsk_ring_ctl's cons_armed/data_seq) */
	uint32_t armed;
	uint32_t seq;
	uint64_t sender_cpus; /* union of the CPU masks (0..63) of senders that attached */
	/* read by producers at every datagram, written by the owner rarely: on this line,
	 * which producers read anyway (armed), not on the consumer's (head) */
	uint64_t limit;   /* bytes the queue may hold (from SO_RCVBUF); <= data_size */
	uint32_t closed;  /* the owner withdrew the inbox: send through the kernel */
	/* the producers' lock: here, not next to the tail, so that taking it does not steal the
	 * line the consumer keeps reading */
	uint32_t plock;   /* pid of the producer copying a record in; 0: free */
	/* The owner's connect(): its kernel socket then takes datagrams from that peer only, so
	 * wake-ups must come from the peer's own socket, and other senders' datagrams are dropped
	 * (set under conn_seq, a seqlock; on this line, which producers read at every datagram) */
	uint32_t conn_seq;  /* odd while being written */
	uint16_t conn_family; /* 0: not connected */
	uint16_t conn_port;
	uint8_t conn_addr[16];
	uint32_t pad3[2];
	/* lines 4.. — processes that send wake-up datagrams */
	struct nsk_inbox_waker wakers[NSK_INBOX_WAKERS];
};
_Static_assert(offsetof(struct nsk_inbox_hdr, tail) == NSK_CACHELINE, "producer line");
_Static_assert(offsetof(struct nsk_inbox_hdr, head) == 2 * NSK_CACHELINE, "consumer line");
_Static_assert(offsetof(struct nsk_inbox_hdr, armed) == 3 * NSK_CACHELINE, "arm line");
_Static_assert(offsetof(struct nsk_inbox_hdr, wakers) == 4 * NSK_CACHELINE, "wakers");
_Static_assert(sizeof(struct nsk_inbox_hdr) <= NSK_INBOX_DATA_OFF, "header fits its page");

/* A wake-up datagram (to the owner's kernel socket): magic, the inbox's wake_key, the
 * sender's CLOCK_MONOTONIC time (hand-over latency for the aggregation model). */
#define NSK_WAKE_MAGIC 0x454b41574b534e4eull /* "NNSKWAKE" */
struct nsk_wake_dgram {
	uint64_t magic;
	uint64_t key;
	uint64_t sent_ns;
};
_Static_assert(sizeof(struct nsk_wake_dgram) == 24, "wake-up datagram size");

/* Each datagram is one record: this header, then the payload, padded to 8 bytes. Records
 * may wrap around the end of the data area. */
#define NSK_DGRAM_CHECK 0x5244u
struct nsk_dgram_rec {
	uint32_t len;    /* payload bytes (<= NSK_DGRAM_MAX) */
	uint16_t family; /* source address family: AF_INET or AF_INET6 */
	uint16_t port;   /* source port, host order */
	uint8_t addr[16]; /* source address (AF_INET: first 4 bytes) */
	uint16_t check;  /* NSK_DGRAM_CHECK */
	uint16_t pad;
	uint32_t sum;    /* len ^ family ^ port ^ check: catches torn or garbage headers */
};
_Static_assert(sizeof(struct nsk_dgram_rec) == 32, "record header size");

/* ---------------------------------------------------------------- registry ------------ */
#define NSK_REG_MAGIC 0x47534b4eu /* "NKSG" */
#define NSK_REG_VERSION 1u
#define NSK_REG_SLOTS 4096u

enum nsk_reg_kind { NSK_RE_EMPTY = 0, NSK_RE_BUSY = 1, NSK_RE_VALID = 2, NSK_RE_DEAD = 3 };
#define NSK_RE_KIND(s) ((s)&3u)
#define NSK_RE_GEN(s) ((s) >> 2)

#define NSK_RE_V6ONLY 1u
#define NSK_RE_UDP 2u /* a bound UDP socket's inbox (else a TCP listener) */

struct nsk_reg_entry {
	uint32_t state; /* generation << 2 | kind; readers re-check it after copying the entry */
	uint32_t pad0;  /* keeps the state word alone in the first 8 bytes */
	uint16_t family;
	uint16_t port; /* host order */
	uint32_t flags; /* NSK_RE_* */
	uint8_t addr[16]; /* all zero: wildcard */
	uint64_t netns;
	uint32_t pid;
	uint32_t inbox_fd; /* UDP: the owner's descriptor of the inbox memfd (/proc/PID/fd/N) */
	uint64_t start_time;
	uint64_t offer_seq; /* bumped by clients after posting an offer (the owner polls it) */
	uint64_t accepted;  /* statistics, written by the owner */
	uint64_t upgraded;
	char rv[32]; /* rendezvous socket file name inside the domain directory */
	/* the listening socket was closed at this CLOCK_MONOTONIC time (0: open). The entry keeps
	 * matching for NSK_REG_CLOSE_GRACE_NS: a client that connected just before the close
	 * (inetd style: accept, close the listener, exec) still finds its server. */
	uint64_t closed_ns;
	uint64_t inbox_nonce; /* UDP: must equal the inbox header's nonce */
};
#define NSK_REG_CLOSE_GRACE_NS 1000000000ull
_Static_assert(sizeof(struct nsk_reg_entry) == 128, "registry entry size");

struct nsk_reg_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t nslots;
	uint32_t entry_size;
	uint64_t mem_used; /* channel bytes charged against the domain's memory budget (budget.c) */
	/* domain-wide switching request (nearsock evacuate/attach --all, or the agent):
	 * want_tcp 1 puts every connection of the domain on TCP, 0 lets them use shared memory;
	 * ctl_gen is bumped after every change so that processes notice it with one load */
	uint32_t want_tcp;
	uint32_t ctl_gen;
	/* listeners bound to one address ever registered (a non-local destination is looked up
	 * across network namespaces only when there are some) */
	uint32_t exact_binds;
	/* 1 while the domain is short of memory (a charge was refused, or the agent saw usage
	 * near the budget): rings stop growing and idle ones shrink first (preload/ringsize.h) */
	uint32_t mem_pressure;
	/* the domain's memory budget in bytes, set by the agent (0: none; a process's own
	 * NEARSOCK_MEM_BUDGET takes precedence) */
	uint64_t mem_budget;
	uint8_t pad[16];
};
_Static_assert(sizeof(struct nsk_reg_hdr) == NSK_CACHELINE, "registry header size");
#define NSK_REG_FILE_SIZE (sizeof(struct nsk_reg_hdr) + NSK_REG_SLOTS * sizeof(struct nsk_reg_entry))

/* ---------------------------------------------------------------- connection table ---- */
/* One file per process (shared with its forked children): the local state of every tracked
 * socket (locks and byte counts that must stay consistent across fork) and its statistics. */
#define NSK_PROC_MAGIC 0x50534b4eu /* "NKSP" */
#define NSK_PROC_VERSION 1u
#define NSK_PROC_SLOTS 65536u

enum nsk_conn_kind { NSK_CK_NONE = 0, NSK_CK_LISTENER, NSK_CK_CLIENT, NSK_CK_SERVER, NSK_CK_UDP };
enum nsk_conn_mode {
	NSK_MODE_TCP = 0,   /* plain TCP, may still upgrade */
	NSK_MODE_OFFERED,   /* client posted an offer / server waits for one */
	NSK_MODE_SHM,       /* claimed: switching or switched to the rings */
	NSK_MODE_PLAIN,     /* TCP for good (no local peer, refused, expired) */
	NSK_MODE_BROKEN,    /* the peer broke the protocol: ECONNRESET */
};

struct nsk_conn {
	uint32_t owner_pid; /* 0: free slot */
	uint32_t kind;      /* enum nsk_conn_kind */
	uint32_t mode;      /* enum nsk_conn_mode */
	uint32_t fd;        /* the fd at creation (informational) */
	uint32_t txlock;    /* futex mutexes serialising senders / receivers */
	uint32_t rxlock;
	uint16_t family;
	uint16_t lport, rport;
	uint16_t pad0;
	uint8_t laddr[16], raddr[16];
	/* application bytes carried by TCP before the switch points */
	uint64_t tx_tcp, rx_tcp;
	/* receive-side state */
	uint32_t rx_crossed; /* all TCP data before the peer's switch point was delivered */
	uint32_t tcp_eof;    /* the kernel socket reported EOF / reset */
	uint32_t rx_shut;    /* SHUT_RD */
	uint32_t tx_shut;    /* SHUT_WR */
	/* statistics */
	uint64_t tx_shm_bytes, rx_shm_bytes, tx_shm_msgs, rx_shm_msgs;
	uint64_t tx_tcp_msgs, rx_tcp_msgs;
	uint64_t wakes_sent, ctl_bytes;
	uint64_t nonce;
	uint64_t created_ns;
	uint32_t tx_switched; /* our switch point is published: we send through the ring */
	uint32_t peer_gone;   /* the peer's socket is closed for good: sends fail with EPIPE */
	/* processes holding the socket (fork adds, a process's last close or exec of a
	 * close-on-exec copy removes); the slot is freed at zero, and a connection shared by
	 * several processes is never upgraded (their mappings could not agree) */
	uint32_t holders;
	uint32_t pad1b;
	uint64_t charged;     /* client: segment bytes charged to the domain budget (budget.c);
			       * here, not per process, so that forked copies give it back once */
	/* UDP sockets use the fields above as: tx/rx_shm_* = datagrams through inboxes,
	 * tx/rx_tcp(_msgs) = datagrams through the kernel, wakes_sent = wake-up datagrams sent,
	 * ctl_bytes = wake-up datagrams received and filtered out; and these: */
	uint64_t udp_tx_drops; /* datagrams dropped because the receiver's inbox was full */
	uint64_t udp_deferred; /* wake-ups delayed by packet aggregation */
	uint32_t ctllock;      /* serialises control bytes with switches of the sending direction */
	/* ctl_bytes above (control bytes consumed from the peer's TCP stream) is protocol state
	 * too: compared with the peer's ctl_sent, under rxlock */
	uint32_t pad2a;
	uint64_t switches;     /* epochs this side started (both ways) */
	uint32_t tx_ring_kb;   /* capacity of our sending ring now (KiB; dynamic sizing) */
	uint32_t ring_changes; /* capacity changes of our sending ring */
	uint8_t pad2[16];
};
_Static_assert(sizeof(struct nsk_conn) == 256, "connection slot size");

struct nsk_proc_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t pid;
	uint32_t nslots;
	uint64_t start_time;
	uint64_t hint;   /* next slot to try */
	uint64_t high;   /* slots [0, high) have been handed out at least once */
	uint64_t backed; /* bytes [0, backed) of the file have backing store (page multiple) */
	uint64_t counters[16]; /* enum nsk_pcounter */
	uint64_t mem_charged; /* this process's share of the registry's mem_used (budget.c) */
	/* switching request for this process's connections (nearsock evacuate/attach PID):
	 * as want_tcp / ctl_gen in the registry header */
	uint32_t want_tcp;
	uint32_t ctl_gen;
	uint8_t pad[64];
};
_Static_assert(sizeof(struct nsk_proc_hdr) == 256, "proc header size");

enum nsk_pcounter {
	NSK_PC_OFFERS_SENT,
	NSK_PC_OFFERS_FAILED,
	NSK_PC_CLAIMS,
	NSK_PC_OFFERS_EXPIRED,
	NSK_PC_FALLBACKS, /* resources exhausted: stayed TCP */
	NSK_PC_BROKEN,    /* protocol violations by a peer */
	/* byte totals of connections already closed (live ones are in their slots) */
	NSK_PC_CLOSED_SHM_TX,
	NSK_PC_CLOSED_SHM_RX,
	NSK_PC_CLOSED_TCP_TX,
	NSK_PC_CLOSED_TCP_RX,
	NSK_PC_UNPROVEN,    /* shared domain: the peer's identity could not be proven: stayed TCP */
	/* fallbacks by cause (each also counted in NSK_PC_FALLBACKS) */
	NSK_PC_FB_FD,       /* EMFILE / ENFILE creating a channel or rendezvous socket */
	NSK_PC_FB_MEM,      /* ENOMEM / ENOSPC / EFBIG: memfd, its backing store, or mmap */
	NSK_PC_FB_BUDGET,   /* the domain's memory budget (NEARSOCK_MEM_BUDGET) was reached */
	NSK_PC_FB_REGISTRY, /* the registry was full: a listener was not registered */
	NSK_PC_NR
};
_Static_assert(NSK_PC_NR <= 16, "process counters");

#define NSK_PROC_FILE_SIZE (sizeof(struct nsk_proc_hdr) + (uint64_t)NSK_PROC_SLOTS * sizeof(struct nsk_conn))

/* ---------------------------------------------------------------- ivshmem region ------ */
/* One memory region shared by every member of a VM domain (the ivshmem BAR2 in a guest, its
 * backing file on the host): no descriptors, no unix sockets, so everything the members share
 * lives here at fixed offsets from the region's start. Areas, in this order, each start on a
 * page (the data area on a chunk): header | member table | registry (struct nsk_reg_hdr +
 * entries, as in the registry file) | offer mailbox | chunk map | data (chunks). The header's
 * geometry fields are written once at format time and covered by `sum`; region.c validates
 * them all before use and keeps private copies (see region.h). */
#define NSK_RGN_MAGIC 0x52534b4eu /* "NKSR" */
#define NSK_RGN_VERSION 1u
#define NSK_RGN_HDR_SIZE 4096u
#define NSK_RGN_CHUNK_SHIFT 16u /* 64 KiB chunks */
#define NSK_RGN_CHUNK (1u << NSK_RGN_CHUNK_SHIFT)
#define NSK_RGN_MIN_SIZE (256u << 10)
#define NSK_RGN_MAX_SIZE (1ull << 36)
#define NSK_RGN_MEMBERS_MAX 64u
#define NSK_RGN_OFFERS_MAX 4096u

/* Member slot state word: generation << 32 | kind. The generation is bumped by every join. */
enum nsk_rgn_mkind { NSK_RM_FREE = 0, NSK_RM_LIVE = 1, NSK_RM_RECLAIM = 2 };
/* struct nsk_rgn_member.flags: NSK_RM_F_EVAC — the member's process is evacuated (nearsock
 * evacuate): clients do not offer it channels until the flag is gone. */
#define NSK_RM_F_EVAC 1u
#define NSK_RM_KIND(s) ((uint32_t)((s)&0xffffffffu))
#define NSK_RM_GEN(s) ((uint32_t)((s) >> 32))
/* An owner tag names one membership (slot, generation): (gen mod 2^24) << 8 | (slot + 1).
 * Never 0. Chunks, offers and registry entries carry the tag of the membership that owns
 * them, so a reclaim of membership (i, g) never touches what (i, g+1) owns. */
#define NSK_RGN_TAG(slot, gen) ((((uint32_t)(gen)&0xffffffu) << 8) | ((uint32_t)(slot) + 1u))
#define NSK_RGN_TAG_SLOT(t) ((int)((t)&0xffu) - 1)

/* Offer slot state word: owner tag << 32 | generation << 3 | kind. */
enum nsk_rgn_okind {
	NSK_RO_EMPTY = 0,
	NSK_RO_WRITING = 1,   /* the poster fills the slot in */
	NSK_RO_POSTED = 2,    /* visible to its addressee */
	NSK_RO_CLAIMED = 3,   /* the addressee took it */
	NSK_RO_WITHDRAWN = 4, /* the poster gave up before a claim */
};
#define NSK_RO_KIND(s) ((uint32_t)((s)&7u))
#define NSK_RO_GEN(s) ((uint32_t)(((s) >> 3) & 0x1fffffffu))
#define NSK_RO_OWNER(s) ((uint32_t)((s) >> 32))
#define NSK_RO_MAKE(owner, gen, kind)                                                              \
	(((uint64_t)(owner) << 32) | ((uint64_t)((gen)&0x1fffffffu) << 3) | (uint64_t)(kind))

struct nsk_rgn_hdr {
	/* line 0-1: geometry, written once by the formatter (magic last, store-release) */
	uint32_t magic;
	uint32_t version;
	uint64_t size;       /* bytes of the region (power of two) */
	uint64_t format_gen; /* random, new at every format: a member of an older format is stale */
	uint32_t hdr_size;   /* NSK_RGN_HDR_SIZE */
	uint32_t flags;      /* none defined: must be 0 */
	uint64_t member_off;
	uint32_t nmembers;
	uint32_t member_size; /* sizeof(struct nsk_rgn_member) */
	uint64_t reg_off;     /* registry: struct nsk_reg_hdr + nslots entries */
	uint64_t reg_size;
	uint64_t mbox_off;
	uint32_t noffers;
	uint32_t offer_size; /* sizeof(struct nsk_rgn_offer) */
	uint64_t cmap_off;   /* one struct nsk_rgn_chunk per chunk */
	uint32_t nchunks;
	uint32_t chunk_shift; /* NSK_RGN_CHUNK_SHIFT */
	uint64_t data_off;    /* chunk i is at data_off + (i << chunk_shift) */
	uint64_t beat_ns;     /* members beat at least this often */
	uint64_t dead_ns;     /* a member whose beat counter stands still this long is dead */
	uint64_t format_wall_ns; /* CLOCK_REALTIME of the format (informational) */
	uint64_t sum;            /* FNV-1a 64 of the bytes before this field */
	uint8_t pad0[56];
	/* line 3: statistics and hints, written by any member (never trusted as an index) */
	uint64_t alloc_hint; /* next chunk to try (taken modulo nchunks) */
	uint64_t allocs;
	uint64_t frees;
	uint64_t alloc_fails;
	uint64_t reclaims; /* memberships reclaimed after death */
	uint64_t offers_posted;
	uint64_t pad1[2];
};
_Static_assert(offsetof(struct nsk_rgn_hdr, size) == 8, "region size field");
_Static_assert(offsetof(struct nsk_rgn_hdr, member_off) == 32, "member_off");
_Static_assert(offsetof(struct nsk_rgn_hdr, reg_off) == 48, "reg_off");
_Static_assert(offsetof(struct nsk_rgn_hdr, mbox_off) == 64, "mbox_off");
_Static_assert(offsetof(struct nsk_rgn_hdr, cmap_off) == 80, "cmap_off");
_Static_assert(offsetof(struct nsk_rgn_hdr, data_off) == 96, "data_off");
_Static_assert(offsetof(struct nsk_rgn_hdr, sum) == 128, "header sum");
_Static_assert(offsetof(struct nsk_rgn_hdr, alloc_hint) == 3 * NSK_CACHELINE, "stats line");
_Static_assert(sizeof(struct nsk_rgn_hdr) == 4 * NSK_CACHELINE, "region header size");

/* One attached VM or host process group. Everything but `state` is written by the member
 * itself (relaxed stores; readers treat it as informational). */
struct nsk_rgn_member {
	uint64_t state;         /* gen << 32 | enum nsk_rgn_mkind; changed by CAS only */
	uint64_t beat;          /* heartbeat counter: +1 per beat (store-release) */
	uint64_t beat_wall_ns;  /* member's CLOCK_REALTIME at its last beat (display only: the
				 * clocks of different VMs are not comparable) */
	uint64_t join_wall_ns;  /* member's CLOCK_REALTIME at join */
	uint64_t mail_seq;      /* bumped by posters after an offer to this member */
	uint32_t pid;           /* of the process that beats (in its own VM) */
	uint32_t flags;
	char name[32];          /* host name or label, NUL-padded */
	uint32_t naddr;         /* addresses in use in addr[] (<= 4) */
	uint16_t family[4];     /* AF_INET / AF_INET6 */
	uint32_t pad0;
	uint8_t addr[4][16];    /* the member's IP addresses (wildcard listeners resolve here) */
	uint64_t chunks_allocd; /* statistics of the member */
	uint64_t chunks_freed;
	uint8_t pad1[80];
};
_Static_assert(offsetof(struct nsk_rgn_member, name) == 48, "member name");
_Static_assert(offsetof(struct nsk_rgn_member, addr) == 96, "member addresses");
_Static_assert(sizeof(struct nsk_rgn_member) == 256, "member slot size");

/* "Here is a channel for your connection": posted by the connecting side for the member that
 * owns the listener; the channel (struct nsk_chan_hdr + rings) lies at chan_off. */
struct nsk_rgn_offer {
	uint64_t state;  /* NSK_RO_MAKE(owner tag, gen, kind); changed by CAS (seqlock for readers) */
	uint32_t to_tag; /* addressee's owner tag */
	uint32_t flags;
	uint64_t nonce;  /* must equal the channel header's */
	uint64_t chan_off;  /* region offset of the channel (chunk aligned, inside the data area) */
	uint64_t chan_size; /* bytes (whole chunks) */
	uint16_t family;    /* AF_INET or AF_INET6 */
	uint16_t cport;     /* client's local port (host order) */
	uint16_t sport;     /* server's port as the client connected to it */
	uint16_t pad0;
	uint8_t caddr[16];  /* client's local address */
	uint8_t saddr[16];  /* address the client connected to */
	uint32_t from_pid;  /* informational */
	uint32_t pad1;
	uint64_t posted_wall_ns; /* informational */
	uint8_t pad2[32];
};
_Static_assert(offsetof(struct nsk_rgn_offer, caddr) == 48, "offer addresses");
_Static_assert(sizeof(struct nsk_rgn_offer) == 2 * NSK_CACHELINE, "offer slot size");

/* Chunk map entry: owner tag of the membership holding the chunk (0: free), changed by CAS. */
struct nsk_rgn_chunk {
	uint32_t owner;
	uint32_t run; /* first chunk of an allocation: its length in chunks; else 0 (informational) */
};
_Static_assert(sizeof(struct nsk_rgn_chunk) == 8, "chunk map entry size");

#endif
