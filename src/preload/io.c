/* SPDX-License-Identifier: MIT */
/* io.c — the send/receive family: send, recv, sendto, recvfrom, sendmsg, recvmsg,
 * sendmmsg, recvmmsg, read, write, readv, writev, sendfile and the _FORTIFY_SOURCE
 * variants. Untracked fds and plain-TCP sockets go straight to libc. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/atomics.h"
#include "preload/real.h"
#include "preload/sock.h"
#include "preload/udp.h"

extern void __chk_fail(void) __attribute__((noreturn));

/* Socket whose data path we handle, pinned; NULL: call libc. Plain-TCP sockets are
 * returned in *@plain (pinned) so that the wrapper can count their bytes. */
static struct nsk_sock *data_sock_p(int fd, struct nsk_sock **plain)
{
	struct nsk_sock *s = nsk_sock_enter(fd);
	*plain = NULL;
	if (!s)
		return NULL;
	uint32_t mode = nsk_load32(&s->conn->mode);
	if (s->kind == NSK_CK_NONE || s->kind == NSK_CK_LISTENER) {
		nsk_sock_leave(s);
		return NULL;
	}
	if (mode == NSK_MODE_PLAIN) {
		*plain = s;
		return NULL;
	}
	nsk_sock_refresh(s);
	return s;
}

static struct nsk_sock *data_sock(int fd)
{
	struct nsk_sock *p, *s = data_sock_p(fd, &p);
	if (p)
		nsk_sock_leave(p);
	return s;
}

/* Count a plain-TCP call's bytes (statistics only: a racy add between threads may lose an
 * update, never corrupts anything) and unpin. */
static ssize_t plain_done(struct nsk_sock *p, ssize_t r, int tx)
{
	if (r > 0) {
		int saved = errno;
		struct nsk_conn *c = p->conn;
		if (tx) {
			nsk_store64(&c->tx_tcp, nsk_load64(&c->tx_tcp) + (uint64_t)r);
			nsk_store64(&c->tx_tcp_msgs, nsk_load64(&c->tx_tcp_msgs) + 1);
		} else {
			nsk_store64(&c->rx_tcp, nsk_load64(&c->rx_tcp) + (uint64_t)r);
			nsk_store64(&c->rx_tcp_msgs, nsk_load64(&c->rx_tcp_msgs) + 1);
		}
		errno = saved;
	}
	nsk_sock_leave(p);
	return r;
}

/* Run the accelerated path @tx (send or receive) on pinned @s, unpin, and speak POSIX:
 * -1 with errno on failure, errno untouched on success. */
static ssize_t do_io(struct nsk_sock *s, const struct iovec *iov, int cnt, int flags, int tx)
{
	int saved = errno;
	ssize_t r = tx ? nsk_sock_send(s, iov, cnt, flags) : nsk_sock_recv(s, iov, cnt, flags);
	nsk_sock_leave(s);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	errno = saved;
	return r;
}
#define do_recv(s, iov, cnt, flags) do_io(s, iov, cnt, flags, 0)
#define do_send(s, iov, cnt, flags) do_io(s, iov, cnt, flags, 1)

/* UDP sockets with addresses: udp.c (send/recv/read/write reach it through sock.c). */
#define UDP_HOOK(call)                                                                       \
	do {                                                                                 \
		struct nsk_sock *u_ = nsk_udp_enter(fd);                                     \
		if (u_)                                                                      \
			return call;                                                         \
	} while (0)

/* The head of every data wrapper: untracked fds go to libc, plain-TCP sockets too (with their
 * bytes counted); otherwise `s` is the pinned accelerated socket. @tx: the call sends. */
#define DATA_SOCK(tx, call)                                                                  \
	struct nsk_sock *p, *s = data_sock_p(fd, &p);                                       \
	if (p)                                                                               \
		return plain_done(p, REAL call, tx);                                         \
	if (!s)                                                                              \
		return REAL call

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	DATA_SOCK(0, (recv)(fd, buf, len, flags));
	struct iovec iov = {buf, len};
	return do_recv(s, &iov, 1, flags);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	DATA_SOCK(1, (send)(fd, buf, len, flags));
	struct iovec iov = {(void *)buf, len};
	return do_send(s, &iov, 1, flags);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *alen)
{
	UDP_HOOK(nsk_udp_recvfrom(u_, buf, len, flags, src, alen));
	DATA_SOCK(0, (recvfrom)(fd, buf, len, flags, src, alen));
	struct iovec iov = {buf, len};
	ssize_t r = do_recv(s, &iov, 1, flags);
	if (r >= 0 && src && alen)
		*alen = 0; /* TCP reports no source address, as the kernel does */
	return r;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst,
	       socklen_t dlen)
{
	UDP_HOOK(nsk_udp_sendto(u_, buf, len, flags, dst, dlen));
	DATA_SOCK(1, (sendto)(fd, buf, len, flags, dst, dlen));
	struct iovec iov = {(void *)buf, len};
	return do_send(s, &iov, 1, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	UDP_HOOK(nsk_udp_recvmsg(u_, msg, flags));
	DATA_SOCK(0, (recvmsg)(fd, msg, flags));
	if (msg->msg_iovlen > IOV_MAX) {
		nsk_sock_leave(s);
		errno = EMSGSIZE;
		return -1;
	}
	ssize_t r = do_recv(s, msg->msg_iov, (int)msg->msg_iovlen, flags);
	if (r >= 0) {
		msg->msg_namelen = 0;
		msg->msg_controllen = 0;
		msg->msg_flags = 0;
	}
	return r;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	UDP_HOOK(nsk_udp_sendmsg(u_, msg, flags));
	DATA_SOCK(1, (sendmsg)(fd, msg, flags));
	if (msg->msg_iovlen > IOV_MAX) {
		nsk_sock_leave(s);
		errno = EMSGSIZE;
		return -1;
	}
	return do_send(s, msg->msg_iov, (int)msg->msg_iovlen, flags);
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags, struct timespec *tmo)
{
	UDP_HOOK(nsk_udp_recvmmsg(u_, vec, n, flags, tmo));
	struct nsk_sock *s = data_sock(fd);
	if (!s)
		return REAL(recvmmsg)(fd, vec, n, flags, tmo);
	nsk_sock_leave(s);
	/* A stream socket: each message is one recvmsg; after the first, never block. */
	unsigned int i;
	for (i = 0; i < n; i++) {
		ssize_t r = recvmsg(fd, &vec[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags);
		if (r < 0) {
			if (i)
				break;
			return -1;
		}
		vec[i].msg_len = (unsigned int)r;
		if (r == 0)
			{ i++; break; }
		if (flags & MSG_WAITFORONE)
			flags |= MSG_DONTWAIT;
	}
	return (int)i;
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags)
{
	UDP_HOOK(nsk_udp_sendmmsg(u_, vec, n, flags));
	struct nsk_sock *s = data_sock(fd);
	if (!s)
		return REAL(sendmmsg)(fd, vec, n, flags);
	nsk_sock_leave(s);
	unsigned int i;
	for (i = 0; i < n; i++) {
		ssize_t r = sendmsg(fd, &vec[i].msg_hdr, flags);
		if (r < 0) {
			if (i)
				break;
			return -1;
		}
		vec[i].msg_len = (unsigned int)r;
	}
	return (int)i;
}

ssize_t read(int fd, void *buf, size_t len)
{
	DATA_SOCK(0, (read)(fd, buf, len));
	struct iovec iov = {buf, len};
	return do_recv(s, &iov, 1, 0);
}

ssize_t write(int fd, const void *buf, size_t len)
{
	DATA_SOCK(1, (write)(fd, buf, len));
	struct iovec iov = {(void *)buf, len};
	return do_send(s, &iov, 1, 0);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	DATA_SOCK(0, (readv)(fd, iov, cnt));
	if (cnt < 0 || cnt > IOV_MAX) {
		nsk_sock_leave(s);
		errno = EINVAL;
		return -1;
	}
	return do_recv(s, iov, cnt, 0);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	DATA_SOCK(1, (writev)(fd, iov, cnt));
	if (cnt < 0 || cnt > IOV_MAX) {
		nsk_sock_leave(s);
		errno = EINVAL;
		return -1;
	}
	return do_send(s, iov, cnt, 0);
}

ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return read(fd, buf, len);
}

ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__chk_fail();
	return recv(fd, buf, len, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *src, socklen_t *alen)
{
	if (len > buflen)
		__chk_fail();
	return recvfrom(fd, buf, len, flags, src, alen);
}

/* sendfile to an accelerated socket: read the file and send through the socket's path,
 * with sendfile's offset semantics (explicit offset: file position untouched). */
static ssize_t sendfile_emul(struct nsk_sock *s, int in_fd, off_t *off, size_t count)
{
	char buf[64 * 1024];
	size_t done = 0;
	int saved = errno;
	ssize_t err = 0;
	while (done < count) {
		size_t want = count - done < sizeof(buf) ? count - done : sizeof(buf);
		ssize_t n = off ? pread(in_fd, buf, want, *off) : REAL(read)(in_fd, buf, want);
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		struct iovec iov = {buf, (size_t)n};
		ssize_t w = nsk_sock_send(s, &iov, 1, done ? MSG_DONTWAIT : 0);
		if (w < 0) {
			if (!off)
				lseek(in_fd, -n, SEEK_CUR); /* give back what was not sent */
			err = w;
			break;
		}
		if (off)
			*off += w;
		else if (w < n)
			lseek(in_fd, w - n, SEEK_CUR);
		done += (size_t)w;
		if (w < n)
			break;
	}
	nsk_sock_leave(s);
	if (done == 0 && err < 0) {
		errno = (int)-err;
		return -1;
	}
	errno = saved;
	return (ssize_t)done;
}

ssize_t sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
	struct nsk_sock *s = data_sock(out_fd);
	if (!s)
		return REAL(sendfile)(out_fd, in_fd, off, count);
	return sendfile_emul(s, in_fd, off, count);
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *off, size_t count)
{
	struct nsk_sock *s = data_sock(out_fd);
	if (!s)
		return REAL(sendfile64)(out_fd, in_fd, off, count);
	return sendfile_emul(s, in_fd, off, count);
}

/* splice with an accelerated socket at one end: the bytes go through the socket's own path
 * (a kernel splice would move raw control bytes). The other end is a pipe or a file; at
 * most 64 KiB per call, never more than the other end can take, so nothing read is lost. */
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);

static ssize_t splice_out(struct nsk_sock *s, int fd_in, loff_t *off_in, size_t len)
{
	char buf[64 * 1024];
	size_t want = len < sizeof(buf) ? len : sizeof(buf);
	ssize_t n = off_in ? pread(fd_in, buf, want, *off_in) : REAL(read)(fd_in, buf, want);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	size_t done = 0;
	while (done < (size_t)n) {
		struct iovec iov = {buf + done, (size_t)n - done};
		ssize_t w = nsk_sock_send(s, &iov, 1, MSG_NOSIGNAL);
		if (w == -EINTR)
			continue; /* bytes already taken from the pipe must reach the socket */
		if (w < 0)
			return done ? (ssize_t)done : w;
		done += (size_t)w;
	}
	if (off_in)
		*off_in += n;
	return n;
}

static ssize_t splice_in(struct nsk_sock *s, int fd_out, loff_t *off_out, size_t len,
			 unsigned int flags)
{
	char buf[64 * 1024];
	size_t want = len < sizeof(buf) ? len : sizeof(buf);
	if (!off_out) {
		/* a pipe: no more than it can hold now */
		int cap = REAL(fcntl)(fd_out, F_GETPIPE_SZ), used = 0;
		if (cap > 0 && REAL(ioctl)(fd_out, FIONREAD, &used) == 0) {
			size_t room = cap > used ? (size_t)(cap - used) : 0;
			if (room == 0) {
				int fl = REAL(fcntl)(fd_out, F_GETFL);
				if ((flags & SPLICE_F_NONBLOCK) || (fl >= 0 && (fl & O_NONBLOCK)))
					return -EAGAIN;
				room = 1; /* the write below waits for space */
			}
			if (want > room)
				want = room;
		}
	}
	struct iovec iov = {buf, want};
	ssize_t n = nsk_sock_recv(s, &iov, 1, (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0);
	if (n <= 0)
		return n;
	size_t done = 0;
	while (done < (size_t)n) {
		ssize_t w = off_out ? pwrite(fd_out, buf + done, (size_t)n - done, *off_out + (off_t)done)
				    : REAL(write)(fd_out, buf + done, (size_t)n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return done ? (ssize_t)done : -errno;
		done += (size_t)w;
	}
	if (off_out)
		*off_out += n;
	return n;
}

ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
	       unsigned int flags)
{
	if (!real_splice)
		*(void **)&real_splice = dlsym(RTLD_NEXT, "splice");
	struct nsk_sock *out = data_sock(fd_out), *in = out ? NULL : data_sock(fd_in);
	if (!in && !out) {
		if (!real_splice) {
			errno = ENOSYS;
			return -1;
		}
		return real_splice(fd_in, off_in, fd_out, off_out, len, flags);
	}
	int saved = errno;
	ssize_t r = out ? splice_out(out, fd_in, off_in, len) : splice_in(in, fd_out, off_out, len, flags);
	nsk_sock_leave(out ? out : in);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	errno = saved;
	return r;
}
