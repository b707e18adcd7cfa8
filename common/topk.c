#include "common/topk.h"

static void sift_up(drift_hit *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!drift_hit_less(h[p], h[i]))
			return;
		drift_hit t = h[p];
		h[p] = h[i];
		h[i] = t;
		i = p;
	}
}

static void sift_down(drift_hit *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && drift_hit_less(h[m], h[l]))
			m = l;
		if (r < n && drift_hit_less(h[m], h[r]))
			m = r;
		if (m == i)
			return;
		drift_hit t = h[m];
		h[m] = h[i];
		h[i] = t;
		i = m;
	}
}

/* The heap work behind drift_topk_push (it checks again: a direct call is
 * safe). */
void drift_topk_insert(drift_topk *t, drift_hit hit)
{
	if (t->n < t->k) {
		t->h[t->n] = hit;
		sift_up(t->h, t->n++);
	} else if (t->k > 0 && drift_hit_less(hit, t->h[0])) {
		t->h[0] = hit;
		sift_down(t->h, t->n, 0);
	}
}

size_t drift_topk_sort(drift_topk *t)
{
	size_t n = t->n;
	/* Heap sort: repeatedly move the worst to the end. */
	for (size_t end = n; end > 1; end--) {
		drift_hit w = t->h[0];
		t->h[0] = t->h[end - 1];
		t->h[end - 1] = w;
		sift_down(t->h, end - 1, 0);
	}
	return n;
}
