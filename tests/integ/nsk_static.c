/* SPDX-License-Identifier: MIT */
/* nsk_static — a statically linked TCP client (it cannot be preloaded): sends BYTES of a
 * pattern to an echo server at ADDR PORT and checks the echo byte for byte.
 * Usage: nsk_static ADDR PORT BYTES. Prints one JSON line; exit 0 when exact. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint8_t pat(uint64_t i)
{
	return (uint8_t)((i * 0x9e3779b97f4a7c15ull) >> 56);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: nsk_static ADDR PORT BYTES\n");
		return 2;
	}
	uint64_t total = strtoull(argv[3], NULL, 0);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("nsk_static: connect");
		return 1;
	}
	static uint8_t out[65536], in[65536];
	uint64_t sent = 0, got = 0;
	while (got < total) {
		if (sent < total && sent - got < (1u << 20)) {
			size_t n = total - sent < sizeof(out) ? (size_t)(total - sent) : sizeof(out);
			for (size_t i = 0; i < n; i++)
				out[i] = pat(sent + i);
			ssize_t w = write(c, out, n);
			if (w <= 0) {
				perror("nsk_static: write");
				return 1;
			}
			sent += (uint64_t)w;
		}
		ssize_t r = read(c, in, sizeof(in));
		if (r <= 0) {
			fprintf(stderr, "nsk_static: read: %s\n", r ? strerror(errno) : "EOF");
			return 1;
		}
		for (ssize_t i = 0; i < r; i++)
			if (in[i] != pat(got + (uint64_t)i)) {
				fprintf(stderr, "nsk_static: byte %llu differs\n",
					(unsigned long long)(got + (uint64_t)i));
				return 1;
			}
		got += (uint64_t)r;
	}
	shutdown(c, SHUT_WR);
	printf("{\"static_client\": 1, \"bytes\": %llu}\n", (unsigned long long)got);
	return 0;
}
