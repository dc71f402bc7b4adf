/* SPDX-License-Identifier: MIT */
/* real.c — resolve the next definitions of the wrapped libc functions, once. */
#include "preload/real.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct nsk_real nsk_real;

static void resolve(void)
{
#define R(name) *(void **)(&nsk_real.name) = dlsym(RTLD_NEXT, #name)
	R(socket);
	R(bind);
	R(listen);
	R(connect);
	R(accept);
	R(accept4);
	R(send);
	R(recv);
	R(sendto);
	R(recvfrom);
	R(sendmsg);
	R(recvmsg);
	R(sendmmsg);
	R(recvmmsg);
	R(read);
	R(write);
	R(readv);
	R(writev);
	R(sendfile);
	R(sendfile64);
	R(close);
	R(shutdown);
	R(poll);
	R(ppoll);
	R(select);
	R(pselect);
	R(epoll_create);
	R(epoll_create1);
	R(epoll_ctl);
	R(epoll_wait);
	R(epoll_pwait);
	R(fcntl);
	R(ioctl);
	R(getsockopt);
	R(setsockopt);
	R(dup);
	R(dup2);
	R(dup3);
	R(fork);
#undef R
	if (!nsk_real.read || !nsk_real.write || !nsk_real.close) {
		static const char msg[] = "nearsock: cannot resolve libc functions\n";
		(void)!syscall(SYS_write, 2, msg, sizeof(msg) - 1);
		abort();
	}
}

void nsk_real_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, resolve);
}
