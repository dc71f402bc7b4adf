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

/* The real dlsym. We interpose dlsym itself: programs such as sockperf dlopen libc and look
 * the socket calls up in that handle, which would bypass LD_PRELOAD. */
__attribute__((visibility("hidden"))) void *(*nsk_real_dlsym)(void *, const char *);
static void *self_handle; /* this library, to look our own wrappers up */

/* Resolve without going through any dlsym: dlvsym on libc's own handle. Runs before a
 * sanitizer runtime has initialised (it calls dlsym from its own constructor): no
 * instrumentation here. */
#define NSK_NO_SANITIZE __attribute__((no_sanitize("address", "undefined", "thread")))
__attribute__((visibility("hidden"))) NSK_NO_SANITIZE void nsk_resolve_dlsym(void)
{
	if (nsk_real_dlsym)
		return;
	/* dlvsym, not dlopen: a sanitizer runtime intercepts dlopen and is not ready yet. */
	void *p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (!p)
		p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	__atomic_store_n((void **)&nsk_real_dlsym, p, __ATOMIC_RELEASE);
}

static void resolve(void)
{
	nsk_resolve_dlsym();
#define R(name) *(void **)(&nsk_real.name) = nsk_real_dlsym(RTLD_NEXT, #name)
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

/* Is @p one of this library's own (exported wrapper) functions? */
NSK_NO_SANITIZE static int ours(void *p)
{
	Dl_info a, b;
	return p && dladdr(p, &a) && dladdr((void *)nsk_resolve_dlsym, &b) &&
	       a.dli_fbase == b.dli_fbase;
}

/* dlsym on an explicit library handle: our wrapper if we interpose that name. */
__attribute__((visibility("hidden"))) NSK_NO_SANITIZE void *nsk_dlsym_handle(void *handle,
									       const char *name)
{
	nsk_resolve_dlsym();
	void *p = nsk_real_dlsym(handle, name);
	if (!self_handle) {
		Dl_info info;
		if (dladdr((void *)nsk_resolve_dlsym, &info) && info.dli_fname)
			self_handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
	}
	if (!p || !self_handle)
		return p;
	void *mine = nsk_real_dlsym(self_handle, name);
	return ours(mine) ? mine : p;
}

#if defined(__x86_64__)
/* dlsym(RTLD_NEXT / RTLD_DEFAULT, ...) must behave exactly as if we were not there: the real
 * dlsym finds "the next object" from its caller's return address, so those calls tail-jump
 * to it with the caller's frame untouched (sanitizer runtimes and other interposers rely on
 * this). Only explicit handles reach nsk_dlsym_handle. */
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym, @function\n"
	"dlsym:\n"
	"	cmpq $-1, %rdi\n"          /* RTLD_NEXT */
	"	je 1f\n"
	"	testq %rdi, %rdi\n"         /* RTLD_DEFAULT */
	"	jne nsk_dlsym_handle\n"
	"1:	movq nsk_real_dlsym(%rip), %rax\n"
	"	testq %rax, %rax\n"
	"	jne 2f\n"
	"	pushq %rdi\n"
	"	pushq %rsi\n"
	"	subq $8, %rsp\n"
	"	call nsk_resolve_dlsym\n"
	"	addq $8, %rsp\n"
	"	popq %rsi\n"
	"	popq %rdi\n"
	"	movq nsk_real_dlsym(%rip), %rax\n"
	"2:	jmp *%rax\n"
	".size dlsym, .-dlsym\n");
#endif
