/* SPDX-License-Identifier: MIT */
/* nsk_badin — integration helper for bad input and errno discipline. Prints one line per
 * call: what was called and its outcome (return class and errno name), nothing that varies
 * between runs (no fd numbers, ports or pids), so that the output with the preload library
 * can be compared byte for byte with the output without it:
 *   refused   connect to a closed port (blocking, non-blocking + SO_ERROR, IPv4 and IPv6)
 *   badfd     every wrapped call on a descriptor that is not open
 *   notsock   socket calls on a pipe and a regular file (ENOTSOCK), I/O calls that work there
 *   state     calls in the wrong state: unconnected TCP, UDP, connected TCP (EISCONN, ...)
 *   errno     every wrapped call that succeeds leaves errno alone (set to 12345 before),
 *             on a connected loopback pair — under preload checked to be on shared memory
 *             (--expect-shm) — and on pipes, files, UDP and Unix sockets
 *   peerclose EOF, then EPIPE and SIGPIPE after the peer closed
 * Exit 0 if every errno check held (the comparison is the harness's job), 1 otherwise,
 * 3 if --expect-shm was given and the pair did not reach shared memory. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nearsock/nearsock.h"

static int (*stats_fn)(int, struct nearsock_conn_stats *);
static int clobbered;
static volatile sig_atomic_t sigpipes;

static const char *ename(int e)
{
	static char buf[32];
	static const struct {
		int e;
		const char *n;
	} t[] = {
	    {EBADF, "EBADF"},
	    {ENOTSOCK, "ENOTSOCK"},
	    {ECONNREFUSED, "ECONNREFUSED"},
	    {EINVAL, "EINVAL"},
	    {ENOTCONN, "ENOTCONN"},
	    {EPIPE, "EPIPE"},
	    {EAGAIN, "EAGAIN"},
	    {EISCONN, "EISCONN"},
	    {EOPNOTSUPP, "EOPNOTSUPP"},
	    {ENOPROTOOPT, "ENOPROTOOPT"},
	    {EFAULT, "EFAULT"},
	    {EINPROGRESS, "EINPROGRESS"},
	    {EALREADY, "EALREADY"},
	    {EAFNOSUPPORT, "EAFNOSUPPORT"},
	    {EADDRINUSE, "EADDRINUSE"},
	    {ESPIPE, "ESPIPE"},
	    {ECONNRESET, "ECONNRESET"},
	    {EDESTADDRREQ, "EDESTADDRREQ"},
	    {EMSGSIZE, "EMSGSIZE"},
	    {ENOTTY, "ENOTTY"},
	    {EADDRNOTAVAIL, "EADDRNOTAVAIL"},
	    {EPERM, "EPERM"},
	    {ENOENT, "ENOENT"},
	    {EEXIST, "EEXIST"},
	    {ENETUNREACH, "ENETUNREACH"},
	    {0, "0"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].e == e)
			return t[i].n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* SHOW(name, call): one outcome line. Non-negative results print as "ok" (their value is
 * not portable between runs), unless EXACT is used. */
#define SHOW(name, call)                                                                           \
	do {                                                                                       \
		errno = 0;                                                                         \
		long r_ = (long)(call);                                                            \
		int e_ = errno;                                                                    \
		if (r_ < 0)                                                                        \
			printf("%-44s -1 %s\n", name, ename(e_));                                  \
		else                                                                               \
			printf("%-44s ok\n", name);                                                \
	} while (0)
#define EXACT(name, call)                                                                          \
	do {                                                                                       \
		errno = 0;                                                                         \
		long r_ = (long)(call);                                                            \
		int e_ = errno;                                                                    \
		if (r_ < 0)                                                                        \
			printf("%-44s -1 %s\n", name, ename(e_));                                  \
		else                                                                               \
			printf("%-44s %ld\n", name, r_);                                           \
	} while (0)

/* KEEP(name, call): the call must succeed (>= 0) and leave errno at 12345. */
#define KEEP(name, call)                                                                           \
	do {                                                                                       \
		errno = 12345;                                                                     \
		long r_ = (long)(call);                                                            \
		int e_ = errno;                                                                    \
		if (r_ < 0) {                                                                      \
			printf("errno %-38s FAILED -1 %s\n", name, ename(e_));                     \
			clobbered++;                                                               \
		} else if (e_ != 12345) {                                                          \
			printf("errno %-38s CLOBBERED to %s\n", name, ename(e_));                  \
			clobbered++;                                                               \
		} else {                                                                           \
			printf("errno %-38s kept\n", name);                                        \
		}                                                                                  \
	} while (0)

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static struct sockaddr_in lo4(uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* A loopback listener on an ephemeral port; *@port set. */
static int listener(uint16_t *port)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = lo4(0);
	socklen_t al = sizeof(a);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0) {
		perror("nsk_badin: listener");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return l;
}

static int mode_of(int fd)
{
	struct nearsock_conn_stats st;
	if (!stats_fn || stats_fn(fd, &st) != 0)
		return -1;
	return (int)st.mode;
}

/* ---------------------------------------------------------------- refused ------------- */

static void test_refused(void)
{
	printf("== refused\n");
	/* A port nobody listens on: bound (so nobody else takes it) but not listening. */
	int hold = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = lo4(0);
	socklen_t al = sizeof(a);
	bind(hold, (struct sockaddr *)&a, sizeof(a));
	getsockname(hold, (struct sockaddr *)&a, &al);

	int s = socket(AF_INET, SOCK_STREAM, 0);
	SHOW("connect blocking", connect(s, (struct sockaddr *)&a, sizeof(a)));
	SHOW("connect again", connect(s, (struct sockaddr *)&a, sizeof(a)));
	int err = -1;
	socklen_t el = sizeof(err);
	SHOW("getsockopt SO_ERROR", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el));
	printf("%-44s %s\n", "  SO_ERROR value", ename(err));
	SHOW("send after refusal", send(s, "x", 1, MSG_NOSIGNAL));
	char c;
	SHOW("recv after refusal", recv(s, &c, 1, MSG_DONTWAIT));
	SHOW("close", close(s));

	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	SHOW("connect non-blocking", connect(s, (struct sockaddr *)&a, sizeof(a)));
	struct pollfd p = {.fd = s, .events = POLLOUT};
	int n = poll(&p, 1, 2000);
	printf("%-44s %d revents%s%s%s\n", "poll POLLOUT", n, p.revents & POLLOUT ? " OUT" : "",
	       p.revents & POLLERR ? " ERR" : "", p.revents & POLLHUP ? " HUP" : "");
	err = -1;
	el = sizeof(err);
	SHOW("getsockopt SO_ERROR", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el));
	printf("%-44s %s\n", "  SO_ERROR value", ename(err));
	err = -1;
	SHOW("getsockopt SO_ERROR again", getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el));
	printf("%-44s %s\n", "  SO_ERROR value", ename(err));
	close(s);

	int s6 = socket(AF_INET6, SOCK_STREAM, 0);
	int h6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t a6l = sizeof(a6);
	if (s6 >= 0 && h6 >= 0 && bind(h6, (struct sockaddr *)&a6, sizeof(a6)) == 0 &&
	    getsockname(h6, (struct sockaddr *)&a6, &a6l) == 0) {
		SHOW("connect [::1] blocking", connect(s6, (struct sockaddr *)&a6, sizeof(a6)));
	} else {
		printf("%-44s n/a\n", "connect [::1] blocking");
	}
	if (s6 >= 0)
		close(s6);
	if (h6 >= 0)
		close(h6);
	close(hold);
}

/* ---------------------------------------------------------------- bad fds ------------- */

static void calls_on(const char *what, int fd, int wfd, int sockcalls, int iocalls)
{
	char buf[16] = "abcdefgh";
	char name[64];
	struct sockaddr_in a = lo4(9);
	socklen_t al = sizeof(a);
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int v = 0;
	socklen_t vl = sizeof(v);
#define N(x) (snprintf(name, sizeof(name), "%s %s", x, what), name)
	if (sockcalls) {
		SHOW(N("send"), send(wfd, buf, 4, MSG_NOSIGNAL));
		SHOW(N("recv"), recv(fd, buf, 4, MSG_DONTWAIT));
		SHOW(N("sendto"), sendto(wfd, buf, 4, MSG_NOSIGNAL, NULL, 0));
		SHOW(N("recvfrom"), recvfrom(fd, buf, 4, MSG_DONTWAIT, NULL, NULL));
		SHOW(N("sendmsg"), sendmsg(wfd, &mh, MSG_NOSIGNAL));
		SHOW(N("recvmsg"), recvmsg(fd, &mh, MSG_DONTWAIT));
		SHOW(N("shutdown"), shutdown(fd, SHUT_RDWR));
		SHOW(N("getsockopt SO_ERROR"), getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &vl));
		SHOW(N("setsockopt TCP_NODELAY"), setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, vl));
		SHOW(N("getsockname"), getsockname(fd, (struct sockaddr *)&a, &al));
		SHOW(N("getpeername"), getpeername(fd, (struct sockaddr *)&a, &al));
		SHOW(N("bind"), bind(fd, (struct sockaddr *)&a, sizeof(a)));
		SHOW(N("listen"), listen(fd, 1));
		SHOW(N("accept"), accept(fd, NULL, NULL));
		SHOW(N("accept4"), accept4(fd, NULL, NULL, SOCK_NONBLOCK));
		SHOW(N("connect"), connect(fd, (struct sockaddr *)&a, sizeof(a)));
	}
	if (iocalls) {
		SHOW(N("write"), write(wfd, buf, 4));
		SHOW(N("read"), read(fd, buf, 4));
		SHOW(N("writev"), writev(wfd, &iov, 1));
		SHOW(N("readv"), readv(fd, &iov, 1));
		SHOW(N("fcntl F_GETFL"), fcntl(fd, F_GETFL));
		SHOW(N("fcntl F_SETFL"), fcntl(fd, F_SETFL, O_NONBLOCK));
		SHOW(N("ioctl FIONREAD"), ioctl(fd, FIONREAD, &v));
		SHOW(N("dup"), dup(fd));
		SHOW(N("dup2"), dup2(fd, 900));
		SHOW(N("dup3"), dup3(fd, 901, O_CLOEXEC));
		close(900);
		close(901);
		int ep = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN};
		SHOW(N("epoll_ctl ADD"), epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
		SHOW(N("epoll_ctl DEL"), epoll_ctl(ep, EPOLL_CTL_DEL, fd, &ev));
		close(ep);
		int file = open("/proc/self/exe", O_RDONLY);
		SHOW(N("sendfile to"), sendfile(wfd, file, NULL, 4));
		close(file);
	}
#undef N
}

static void test_badfd(void)
{
	printf("== badfd\n");
	int bad = 777;
	close(bad);
	calls_on("closed-fd", bad, bad, 1, 1);
	calls_on("fd -1", -1, -1, 1, 0);
	SHOW("close closed-fd", close(bad));
	SHOW("close -1", close(-1));
	struct pollfd p = {.fd = bad, .events = POLLIN};
	int n = poll(&p, 1, 0);
	printf("%-44s %d revents%s\n", "poll closed-fd", n, p.revents & POLLNVAL ? " NVAL" : "");
	fd_set r;
	FD_ZERO(&r);
	FD_SET(bad, &r);
	struct timeval tv = {0, 0};
	SHOW("select closed-fd", select(bad + 1, &r, NULL, NULL, &tv));
	struct epoll_event ev;
	SHOW("epoll_wait closed-fd", epoll_wait(bad, &ev, 1, 0));
	SHOW("epoll_ctl on closed epfd", epoll_ctl(bad, EPOLL_CTL_ADD, 0, &ev));
	SHOW("epoll_wait maxevents 0", epoll_wait(0, &ev, 0, 0));
}

static void test_notsock(void)
{
	printf("== notsock\n");
	int p[2];
	if (pipe(p) < 0)
		exit(2);
	calls_on("pipe", p[0], p[1], 1, 0);
	EXACT("write pipe", write(p[1], "hello", 5));
	int v = -1;
	SHOW("ioctl FIONREAD pipe", ioctl(p[0], FIONREAD, &v));
	printf("%-44s %d\n", "  FIONREAD value", v);
	char buf[8];
	EXACT("read pipe", read(p[0], buf, sizeof(buf)));
	struct pollfd pf = {.fd = p[0], .events = POLLIN};
	EXACT("poll empty pipe", poll(&pf, 1, 0));
	close(p[0]);
	close(p[1]);
	char path[] = "/tmp/nsk_badin.XXXXXX";
	int f = mkstemp(path);
	unlink(path);
	calls_on("file", f, f, 1, 0);
	EXACT("write file", write(f, "0123456789", 10));
	EXACT("lseek file", lseek(f, 0, SEEK_SET));
	EXACT("read file", read(f, buf, 4));
	close(f);
}

/* ---------------------------------------------------------------- wrong state --------- */

static void test_state(void)
{
	printf("== state\n");
	char c = 'x';
	int s = socket(AF_INET, SOCK_STREAM, 0);
	SHOW("send unconnected tcp", send(s, &c, 1, MSG_NOSIGNAL));
	SHOW("recv unconnected tcp", recv(s, &c, 1, MSG_DONTWAIT));
	SHOW("read unconnected tcp", read(s, &c, 1));
	SHOW("shutdown unconnected tcp", shutdown(s, SHUT_WR));
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	SHOW("getpeername unconnected tcp", getpeername(s, (struct sockaddr *)&a, &al));
	SHOW("accept not listening", accept(s, NULL, NULL));
	int v = -1;
	SHOW("ioctl FIONREAD unconnected tcp", ioctl(s, FIONREAD, &v));
	close(s);

	uint16_t port;
	int l = listener(&port);
	SHOW("recv on listener", recv(l, &c, 1, MSG_DONTWAIT));
	SHOW("send on listener", send(l, &c, 1, MSG_NOSIGNAL));
	SHOW("accept4 bad flags", accept4(l, NULL, NULL, 0x7fff0000));
	int fl = fcntl(l, F_GETFL);
	fcntl(l, F_SETFL, fl | O_NONBLOCK);
	SHOW("accept non-blocking, none pending", accept(l, NULL, NULL));
	fcntl(l, F_SETFL, fl);
	int c1 = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = lo4(port);
	SHOW("connect to listener", connect(c1, (struct sockaddr *)&la, sizeof(la)));
	int s1 = accept(l, NULL, NULL);
	SHOW("connect again (EISCONN)", connect(c1, (struct sockaddr *)&la, sizeof(la)));
	SHOW("listen on connected", listen(c1, 1));
	SHOW("bind connected", bind(c1, (struct sockaddr *)&la, sizeof(la)));
	SHOW("recv DONTWAIT nothing there", recv(c1, &c, 1, MSG_DONTWAIT));
	SHOW("shutdown bad how", shutdown(c1, 99));
	v = 0;
	socklen_t vl = sizeof(v);
	SHOW("getsockopt bad optname", getsockopt(c1, SOL_SOCKET, 12345, &v, &vl));
	SHOW("getsockopt bad level", getsockopt(c1, 12345, 1, &v, &vl));
	SHOW("setsockopt bad optname", setsockopt(c1, SOL_SOCKET, 12345, &v, vl));
	SHOW("send MSG_OOB", send(c1, &c, 1, MSG_OOB | MSG_NOSIGNAL));
	SHOW("recv MSG_OOB", recv(s1, &c, 1, MSG_OOB | MSG_DONTWAIT));
	SHOW("recv NULL buffer", recv(s1, NULL, 1, MSG_DONTWAIT));
	SHOW("send 0 bytes", send(c1, &c, 0, MSG_NOSIGNAL));
	SHOW("recv 0 bytes", recv(s1, &c, 0, MSG_DONTWAIT));
	close(c1);
	close(s1);
	close(l);

	int u = socket(AF_INET, SOCK_DGRAM, 0);
	SHOW("send unconnected udp", send(u, &c, 1, 0));
	SHOW("recv udp DONTWAIT", recv(u, &c, 1, MSG_DONTWAIT));
	SHOW("shutdown unconnected udp", shutdown(u, SHUT_RDWR));
	SHOW("listen udp", listen(u, 1));
	SHOW("accept udp", accept(u, NULL, NULL));
	close(u);
}

/* ---------------------------------------------------------------- errno --------------- */

/* A connected loopback pair (client @c, accepted @s), with data moved both ways twice so a
 * preloaded pair has switched to shared memory. Returns the modes seen. */
static void pair(int l, uint16_t port, int *c, int *s, int use_accept4)
{
	struct sockaddr_in a = lo4(port);
	KEEP("socket", *c = socket(AF_INET, SOCK_STREAM, 0));
	KEEP("connect", connect(*c, (struct sockaddr *)&a, sizeof(a)));
	if (use_accept4)
		KEEP("accept4", *s = accept4(l, NULL, NULL, SOCK_CLOEXEC));
	else
		KEEP("accept", *s = accept(l, NULL, NULL));
	char buf[64];
	for (int i = 0; i < 3; i++) {
		if (send(*c, "ping", 4, 0) != 4 || recv(*s, buf, 4, MSG_WAITALL) != 4 ||
		    send(*s, "pong", 4, 0) != 4 || recv(*c, buf, 4, MSG_WAITALL) != 4) {
			perror("nsk_badin: pair exchange");
			exit(2);
		}
	}
}

static int test_errno(int expect_shm)
{
	printf("== errno\n");
	uint16_t port;
	int l;
	struct sockaddr_in a = lo4(0);
	socklen_t al = sizeof(a);
	KEEP("socket listener", l = socket(AF_INET, SOCK_STREAM, 0));
	int one = 1;
	KEEP("setsockopt SO_REUSEADDR", setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
	KEEP("bind", bind(l, (struct sockaddr *)&a, sizeof(a)));
	KEEP("listen", listen(l, 16));
	KEEP("getsockname", getsockname(l, (struct sockaddr *)&a, &al));
	port = ntohs(a.sin_port);
	int c, s;
	pair(l, port, &c, &s, 0);
	int mc = mode_of(c), ms = mode_of(s);
	fprintf(stderr, "nsk_badin: pair modes client %d server %d\n", mc, ms);
	if (expect_shm && (mc != NEARSOCK_MODE_SHM || ms != NEARSOCK_MODE_SHM)) {
		printf("pair not on shared memory: client mode %d, server mode %d\n", mc, ms);
		return 3;
	}
	char buf[256];
	struct iovec iov[2] = {{buf, 3}, {buf + 3, 5}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
	KEEP("send", send(c, "12345678", 8, 0));
	KEEP("recv", recv(s, buf, 8, MSG_WAITALL));
	KEEP("sendto", sendto(s, "12345678", 8, 0, NULL, 0));
	KEEP("recvfrom", recvfrom(c, buf, 8, MSG_WAITALL, NULL, NULL));
	KEEP("sendmsg", sendmsg(c, &mh, 0));
	KEEP("recvmsg", recvmsg(s, &mh, MSG_WAITALL));
	KEEP("write", write(s, "abcdefgh", 8));
	KEEP("poll POLLIN ready", poll(&(struct pollfd){.fd = c, .events = POLLIN}, 1, 1000));
	KEEP("ioctl FIONREAD", ioctl(c, FIONREAD, &one));
	KEEP("read", read(c, buf, 8));
	KEEP("poll nothing ready, timeout 0",
	     poll(&(struct pollfd){.fd = c, .events = POLLIN}, 1, 0));
	KEEP("poll nothing ready, timeout 20",
	     poll(&(struct pollfd){.fd = c, .events = POLLIN}, 1, 20));
	KEEP("writev", writev(c, iov, 2));
	KEEP("readv", readv(s, iov, 2));
	struct timespec ts = {0, 20000000};
	KEEP("ppoll POLLOUT", ppoll(&(struct pollfd){.fd = c, .events = POLLOUT}, 1, &ts, NULL));
	KEEP("ppoll nothing ready",
	     ppoll(&(struct pollfd){.fd = s, .events = POLLIN}, 1, &ts, NULL));
	fd_set r, w;
	struct timeval tv = {0, 20000};
	FD_ZERO(&r);
	FD_SET(s, &r);
	KEEP("select nothing ready", select(s + 1, &r, NULL, NULL, &tv));
	send(c, "x", 1, 0);
	FD_ZERO(&r);
	FD_SET(s, &r);
	tv.tv_usec = 500000;
	KEEP("select readable", select(s + 1, &r, NULL, NULL, &tv));
	FD_ZERO(&w);
	FD_SET(s, &w);
	KEEP("pselect writable", pselect(s + 1, NULL, &w, NULL, &ts, NULL));
	recv(s, buf, 1, 0);
	int ep;
	KEEP("epoll_create", ep = epoll_create(4));
	close(ep);
	KEEP("epoll_create1", ep = epoll_create1(EPOLL_CLOEXEC));
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = s}, out[4];
	KEEP("epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
	KEEP("epoll_wait nothing ready", epoll_wait(ep, out, 4, 0));
	KEEP("epoll_wait nothing ready, timeout 20", epoll_wait(ep, out, 4, 20));
	send(c, "y", 1, 0);
	KEEP("epoll_wait readable", epoll_wait(ep, out, 4, 1000));
	KEEP("epoll_pwait readable", epoll_pwait(ep, out, 4, 1000, NULL));
	ev.events = EPOLLIN | EPOLLOUT;
	KEEP("epoll_ctl MOD", epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev));
	KEEP("epoll_ctl DEL", epoll_ctl(ep, EPOLL_CTL_DEL, s, &ev));
	KEEP("close epoll", close(ep));
	recv(s, buf, 1, 0);
	int fl;
	KEEP("fcntl F_GETFL", fl = fcntl(s, F_GETFL));
	KEEP("fcntl F_SETFL O_NONBLOCK", fcntl(s, F_SETFL, fl | O_NONBLOCK));
	errno = 12345;
	ssize_t n = recv(s, buf, 8, 0);
	printf("%-44s %s\n", "recv non-blocking, empty", n < 0 ? ename(errno) : "data?");
	send(c, "z", 1, 0);
	usleep(20000);
	KEEP("recv non-blocking with data", recv(s, buf, 8, 0));
	KEEP("fcntl F_SETFL back", fcntl(s, F_SETFL, fl));
	KEEP("fcntl F_GETFD", fcntl(s, F_GETFD));
	int v;
	socklen_t vl = sizeof(v);
	KEEP("getsockopt SO_ERROR", getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &vl));
	KEEP("getsockopt TCP_NODELAY", getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
	KEEP("setsockopt TCP_NODELAY", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	KEEP("getsockopt SO_RCVBUF", getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &vl));
	KEEP("getpeername", getpeername(s, (struct sockaddr *)&a, &al));
	int d;
	KEEP("dup", d = dup(s));
	KEEP("send on dup", send(d, "d", 1, 0));
	KEEP("recv from dup'ed peer", recv(c, buf, 1, 0));
	KEEP("close dup", close(d));
	KEEP("dup2", dup2(s, 900));
	KEEP("close dup2", close(900));
	KEEP("dup3", dup3(s, 901, O_CLOEXEC));
	KEEP("close dup3", close(901));
	int file = open("/proc/self/exe", O_RDONLY);
	KEEP("sendfile", sendfile(c, file, NULL, 100));
	KEEP("recv sendfile data", recv(s, buf, 100, MSG_WAITALL));
	close(file);
	KEEP("shutdown SHUT_WR", shutdown(c, SHUT_WR));
	KEEP("recv EOF", recv(s, buf, 8, 0));
	KEEP("close server side", close(s));
	KEEP("close client side", close(c));

	/* A second pair through accept4, closed the other way round with data in flight. */
	pair(l, port, &c, &s, 1);
	KEEP("send before close", send(s, "bye", 3, 0));
	KEEP("close with unread data (client)", close(c));
	KEEP("close server side 2", close(s));
	KEEP("close listener", close(l));

	/* Descriptors the library passes through. */
	int p[2];
	KEEP("pipe", pipe(p));
	KEEP("write pipe", write(p[1], "abc", 3));
	KEEP("poll pipe", poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, 100));
	KEEP("read pipe", read(p[0], buf, 3));
	KEEP("close pipe r", close(p[0]));
	KEEP("close pipe w", close(p[1]));
	int u;
	KEEP("socket udp", u = socket(AF_INET, SOCK_DGRAM, 0));
	struct sockaddr_in ua = lo4(0);
	socklen_t ul = sizeof(ua);
	KEEP("bind udp", bind(u, (struct sockaddr *)&ua, sizeof(ua)));
	getsockname(u, (struct sockaddr *)&ua, &ul);
	KEEP("sendto udp", sendto(u, "u", 1, 0, (struct sockaddr *)&ua, ul));
	KEEP("recvfrom udp", recvfrom(u, buf, 8, 0, NULL, NULL));
	KEEP("close udp", close(u));
	int sp[2];
	KEEP("socketpair unix", socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
	KEEP("send unix", send(sp[0], "u", 1, 0));
	KEEP("recv unix", recv(sp[1], buf, 1, 0));
	KEEP("shutdown unix", shutdown(sp[0], SHUT_RDWR));
	KEEP("close unix 0", close(sp[0]));
	KEEP("close unix 1", close(sp[1]));
	return 0;
}

/* ---------------------------------------------------------------- peer close ---------- */

static void test_peerclose(void)
{
	printf("== peerclose\n");
	uint16_t port;
	int l = listener(&port);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = lo4(port);
	connect(c, (struct sockaddr *)&a, sizeof(a));
	int s = accept(l, NULL, NULL);
	char buf[64];
	for (int i = 0; i < 3; i++) {
		send(c, "ping", 4, 0);
		recv(s, buf, 4, MSG_WAITALL);
		send(s, "pong", 4, 0);
		recv(c, buf, 4, MSG_WAITALL);
	}
	EXACT("send last words", send(s, "last", 4, 0));
	EXACT("close server side", close(s));
	usleep(50000);
	EXACT("recv last words", recv(c, buf, sizeof(buf), 0));
	EXACT("recv EOF", recv(c, buf, sizeof(buf), 0));
	EXACT("recv EOF again", recv(c, buf, sizeof(buf), 0));
	struct pollfd p = {.fd = c, .events = POLLIN | POLLOUT | POLLRDHUP};
	EXACT("poll after EOF", poll(&p, 1, 0));
	printf("%-44s%s%s%s%s%s\n", "  revents", p.revents & POLLIN ? " IN" : "",
	       p.revents & POLLOUT ? " OUT" : "", p.revents & POLLRDHUP ? " RDHUP" : "",
	       p.revents & POLLHUP ? " HUP" : "", p.revents & POLLERR ? " ERR" : "");
	/* The kernel accepts the first send after the peer closed (the peer answers RST), and
	 * fails the next one with EPIPE. */
	EXACT("send after peer close", send(c, "a", 1, MSG_NOSIGNAL));
	usleep(50000);
	EXACT("send after reset", send(c, "b", 1, MSG_NOSIGNAL));
	sigpipes = 0;
	EXACT("send without MSG_NOSIGNAL", send(c, "c", 1, 0));
	printf("%-44s %d\n", "  SIGPIPE delivered", (int)sigpipes);
	EXACT("recv after reset", recv(c, buf, sizeof(buf), 0));
	int v = -1;
	socklen_t vl = sizeof(v);
	SHOW("getsockopt SO_ERROR", getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &vl));
	printf("%-44s %s\n", "  SO_ERROR value", ename(v));
	close(c);
	close(l);
}

int main(int argc, char **argv)
{
	int expect_shm = argc > 1 && !strcmp(argv[1], "--expect-shm");
	*(void **)&stats_fn = dlsym(RTLD_DEFAULT, "nearsock_fd_stats");
	signal(SIGPIPE, on_sigpipe);
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_refused();
	test_badfd();
	test_notsock();
	test_state();
	int r = test_errno(expect_shm);
	if (r)
		return r;
	test_peerclose();
	printf("errno checks failed: %d\n", clobbered);
	return clobbered ? 1 : 0;
}
