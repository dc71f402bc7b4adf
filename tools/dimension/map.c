/* SPDX-License-Identifier: MIT */
/*
 * Superposition of PH renewal sources as one MAP. A lumped group's states are the count
 * vectors (c_1..c_p), sum c = n, listed in lexicographic order and found by binary search.
 */
#include "map.h"
#include "linalg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t nsk_map_group_size(size_t order, unsigned count, size_t limit)
{
	/* C(count + order - 1, count), computed as a running product of exact binomials. */
	size_t c = 1;

	for (size_t i = 1; i <= count; i++) {
		size_t num = order - 1 + i;

		if (c > (size_t)-1 / num)
			return 0;
		c = c * num / i;
		if (limit && c > limit)
			return 0;
	}
	return c;
}

struct lump {
	size_t p, n;      /* phases per source, states */
	unsigned *states; /* n x p count vectors */
	double *D0, *D1;  /* n x n */
};

static void enumerate(struct lump *L, unsigned *cur, size_t pos, unsigned left, size_t *idx)
{
	if (pos + 1 == L->p) {
		cur[pos] = left;
		memcpy(L->states + *idx * L->p, cur, L->p * sizeof(*cur));
		(*idx)++;
		return;
	}
	for (unsigned c = 0; c <= left; c++) {
		cur[pos] = c;
		enumerate(L, cur, pos + 1, left - c, idx);
	}
}

static size_t find(const struct lump *L, const unsigned *key)
{
	size_t lo = 0, hi = L->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = 0;

		for (size_t i = 0; i < L->p && c == 0; i++) {
			unsigned a = L->states[mid * L->p + i];

			c = a < key[i] ? -1 : a > key[i];
		}
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (size_t)-1; /* not reached: every move keeps the sum */
}

/* lump_build - the (D0, D1) of count identical sources of law ph. */
static int lump_build(struct lump *L, const struct nsk_ph *ph, unsigned count)
{
	size_t p = ph->n, idx = 0;
	unsigned *cur, *key;
	double *t;

	L->p = p;
	L->n = nsk_map_group_size(p, count, 0);
	if (!L->n)
		return -E2BIG;
	L->states = calloc(L->n * p, sizeof(*L->states));
	L->D0 = nsk_la_alloc(L->n, L->n);
	L->D1 = nsk_la_alloc(L->n, L->n);
	cur = calloc(2 * p, sizeof(*cur));
	t = calloc(p, sizeof(*t));
	if (!L->states || !L->D0 || !L->D1 || !cur || !t) {
		free(cur);
		free(t);
		return -ENOMEM;
	}
	key = cur + p;
	enumerate(L, cur, 0, count, &idx);
	nsk_ph_exit(ph, t);
	for (size_t s = 0; s < L->n; s++) {
		const unsigned *c = L->states + s * p;

		for (size_t a = 0; a < p; a++) {
			if (!c[a])
				continue;
			L->D0[s * L->n + s] += c[a] * ph->T[a * p + a];
			for (size_t b = 0; b < p; b++) {
				double up = b != a ? c[a] * ph->T[a * p + b] : 0.0;
				double arr = c[a] * t[a] * ph->alpha[b];

				if (up <= 0.0 && arr <= 0.0)
					continue;
				memcpy(key, c, p * sizeof(*key));
				key[a]--;
				key[b]++;
				size_t to = find(L, key);

				L->D0[s * L->n + to] += up;
				L->D1[s * L->n + to] += arr;
			}
		}
	}
	free(cur);
	free(t);
	return 0;
}

static void lump_fini(struct lump *L)
{
	free(L->states);
	free(L->D0);
	free(L->D1);
}

void nsk_map_fini(struct nsk_map *map)
{
	free(map->D0);
	free(map->D1);
	free(map->d1g);
	memset(map, 0, sizeof(*map));
}

int nsk_map_build(struct nsk_map *map, const struct nsk_map_group *g, size_t ngroups)
{
	struct lump *L;
	size_t m = 1, *digit = NULL, *stride = NULL;
	int err = 0;

	memset(map, 0, sizeof(*map));
	if (ngroups == 0)
		return -EINVAL;
	L = calloc(ngroups, sizeof(*L));
	digit = calloc(ngroups, sizeof(*digit));
	stride = calloc(ngroups, sizeof(*stride));
	if (!L || !digit || !stride) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ngroups; i++) {
		if (!g[i].ph || g[i].count == 0) {
			err = -EINVAL;
			goto out;
		}
		err = lump_build(&L[i], g[i].ph, g[i].count);
		if (err)
			goto out;
		if (m > (size_t)1 << 20 || L[i].n > (size_t)1 << 20) {
			err = -E2BIG;
			goto out;
		}
		m *= L[i].n;
	}
	/* Mixed-radix index: group 0 is the most significant digit. */
	for (size_t i = ngroups; i-- > 0;)
		stride[i] = (i + 1 == ngroups) ? 1 : stride[i + 1] * L[i + 1].n;
	map->m = m;
	map->ngroups = ngroups;
	map->D0 = nsk_la_alloc(m, m);
	map->D1 = nsk_la_alloc(m, m);
	map->d1g = nsk_la_alloc(ngroups, m);
	if (!map->D0 || !map->D1 || !map->d1g) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t s = 0; s < m; s++) {
		for (size_t i = 0; i < ngroups; i++)
			digit[i] = s / stride[i] % L[i].n;
		for (size_t i = 0; i < ngroups; i++) {
			size_t n = L[i].n, a = digit[i];
			double rate = 0.0;

			for (size_t b = 0; b < n; b++) {
				size_t to = s + (b - a) * stride[i]; /* wraps correctly in size_t */

				map->D0[s * m + to] += L[i].D0[a * n + b];
				map->D1[s * m + to] += L[i].D1[a * n + b];
				rate += L[i].D1[a * n + b];
			}
			map->d1g[i * m + s] = rate;
		}
	}
out:
	if (L)
		for (size_t i = 0; i < ngroups; i++)
			lump_fini(&L[i]);
	free(L);
	free(digit);
	free(stride);
	if (err)
		nsk_map_fini(map);
	return err;
}
