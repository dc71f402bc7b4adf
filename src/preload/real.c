/* SPDX-License-Identifier: MIT */
/* real.c — resolve the next definitions of the wrapped libc functions, once. */
#include "preload/real.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct nsk_real nsk_real;

/* The real dlsym: we interpose dlsym itself (programs such as sockperf dlopen libc and
 * look the socket calls up there, which would bypass LD_PRELOAD). */
static void *(*real_dlsym)(void *, const char *);
static void *self_handle; /* this library, to look our own wrappers up */

static void resolve_dlsym(void)
{
	if (real_dlsym)
		return;
	*(void **)&real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (!real_dlsym)
		*(void **)&real_dlsym = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	Dl_info info;
	if (dladdr((void *)resolve_dlsym, &info) && info.dli_fname)
		self_handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
}

static void resolve(void)
{
	resolve_dlsym();
#define R(name) *(void **)(&nsk_real.name) = real_dlsym(RTLD_NEXT, #name)
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

static int first_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	*(ElfW(Addr) *)data = info->dlpi_addr;
	return 1; /* the main program comes first */
}

/* Is @addr inside the main program (not a shared library)? */
static int from_main_program(const void *addr)
{
	static ElfW(Addr) main_base = 1;
	if (main_base == 1)
		dl_iterate_phdr(first_object, &main_base);
	Dl_info info;
	if (!dladdr(addr, &info))
		return 0;
	if (main_base && (ElfW(Addr))info.dli_fbase == main_base)
		return 1; /* position-independent executable */
	/* non-PIE executables load at their link address: dladdr names them after argv[0] */
	return info.dli_fname && !strcmp(info.dli_fname, program_invocation_name);
}

/* Is @p one of this library's own (exported wrapper) functions? */
static int ours(void *p)
{
	Dl_info a, b;
	return p && dladdr(p, &a) && dladdr((void *)resolve_dlsym, &b) && a.dli_fbase == b.dli_fbase;
}

void *dlsym(void *handle, const char *name)
{
	resolve_dlsym();
	void *p = real_dlsym(handle, name);
	if (!p || !self_handle || handle == RTLD_DEFAULT)
		return p;
	if (handle == RTLD_NEXT && !from_main_program(__builtin_return_address(0)))
		return p; /* a library after us asks for the next definition: libc's */
	void *mine = real_dlsym(self_handle, name);
	return ours(mine) ? mine : p;
}
