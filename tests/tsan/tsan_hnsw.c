/*
 * tsan-hnsw: the HNSW memtable (node/l0/hnsw.c) under ThreadSanitizer, as a
 * plain executable (Criterion's worker processes and uninstrumented
 * runner would only add noise). Built and run by tests/tsan/run.sh.
 *
 * WRITERS threads insert, update (a second vector for the id) and delete
 * the ids they own, drawing seqnos from one shared counter, while READERS
 * threads search, look up, iterate and read the counters without pause.
 * Every answer is checked as it comes: hits sorted, no id twice, each id
 * one that exists, each distance exactly that of one of the id's two
 * vectors; a lookup or an iterated entry is a valid state of its id. At
 * the end every id's state must be the one its writer left. Exits 0 when
 * all holds (and ThreadSanitizer saw no race: it exits 66 otherwise).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rand.h"
#include "common/vec.h"
#include "node/l0/hnsw.h"

#define DIM 24
#define IDS 3000
#define WRITERS 3
#define READERS 2
#define K 10

static drift_hnsw *h;
static float vecs[2][IDS][DIM]; /* two versions of each id's vector */
static _Atomic uint64_t seqno_next = 1;
static _Atomic int writing = WRITERS;
static _Atomic long failures, searches;

/* What each id ends as: 0 absent, 1 version 0, 2 version 1, 3 deleted. */
static int final_state[IDS];

static void fail(const char *what, uint64_t id)
{
	if (atomic_fetch_add(&failures, 1) < 10)
		fprintf(stderr, "tsan-hnsw: %s (id %llu)\n", what,
			(unsigned long long)id);
}

static void *writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	for (uint64_t id = (uint64_t)w; id < IDS; id += WRITERS) {
		uint64_t s = atomic_fetch_add(&seqno_next, 1);
		if (drift_hnsw_insert(h, id, vecs[0][id], s, NULL) != 0)
			fail("insert", id);
		final_state[id] = 1;
	}
	for (uint64_t id = (uint64_t)w; id < IDS; id += WRITERS) {
		uint64_t s = atomic_fetch_add(&seqno_next, 1);
		if (id % 5 == 0) {
			if (drift_hnsw_insert(h, id, vecs[1][id], s, NULL) != 0)
				fail("update", id);
			final_state[id] = 2;
		} else if (id % 7 == 0) {
			if (drift_hnsw_delete(h, id, s) != 0)
				fail("delete", id);
			final_state[id] = 3;
		}
		if (id % 35 == 0) { /* deleted after its update */
			s = atomic_fetch_add(&seqno_next, 1);
			if (drift_hnsw_delete(h, id, s) != 0)
				fail("delete after update", id);
			final_state[id] = 3;
		}
	}
	atomic_fetch_sub(&writing, 1);
	return NULL;
}

static void check_hits(const float *q, const drift_hit *hit, size_t n)
{
	const drift_vec_kernels *k = drift_vec();
	if (n > K)
		fail("more than k hits", 0);
	for (size_t i = 0; i < n && i < K; i++) {
		uint64_t id = hit[i].id;
		if (id >= IDS) {
			fail("an id never written", id);
			continue;
		}
		float d0 = k->l2sq(q, vecs[0][id], DIM);
		float d1 = k->l2sq(q, vecs[1][id], DIM);
		if (hit[i].distance != d0 && hit[i].distance != d1)
			fail("a distance that is not exact", id);
		if (i > 0 && !drift_hit_less(hit[i - 1], hit[i]))
			fail("out of order", id);
		for (size_t j = 0; j < i; j++)
			if (hit[j].id == id)
				fail("an id twice", id);
	}
}

static void check_entry(const drift_hnsw_entry *e)
{
	if (e->id >= IDS) {
		fail("entry of an unknown id", e->id);
		return;
	}
	if (e->kind == DRIFT_HNSW_LIVE) {
		if (e->vec == NULL ||
		    (memcmp(e->vec, vecs[0][e->id], sizeof(vecs[0][0])) != 0 &&
		     memcmp(e->vec, vecs[1][e->id], sizeof(vecs[0][0])) != 0))
			fail("live entry with a wrong vector", e->id);
	} else if (e->kind != DRIFT_HNSW_TOMBSTONE || e->vec != NULL) {
		fail("bad entry", e->id);
	}
	if (e->seqno == 0 || e->seqno >= atomic_load(&seqno_next))
		fail("entry with a seqno never given", e->id);
}

static void *reader(void *arg)
{
	drift_rand r;
	drift_rand_seed(&r, (uint64_t)(intptr_t)arg);
	drift_hit hit[K];
	float q[DIM];
	long round = 0;
	while (atomic_load(&writing) > 0) {
		for (int j = 0; j < DIM; j++)
			q[j] = (float)drift_rand_normal(&r) * 3;
		size_t n;
		if (drift_hnsw_search(h, q, K, 30, hit, &n) != 0)
			fail("search", 0);
		else
			check_hits(q, hit, n);
		drift_hnsw_entry e;
		uint64_t id = drift_rand_below(&r, IDS);
		if (drift_hnsw_lookup(h, id, &e) == 0) {
			if (e.id != id)
				fail("lookup of another id", id);
			check_entry(&e);
		}
		if (++round % 64 == 0) {
			drift_hnsw_iter it;
			drift_hnsw_iter_init(&it, h);
			while (drift_hnsw_iter_next(&it, &e))
				check_entry(&e);
			drift_hnsw_stats st;
			drift_hnsw_stats_get(h, &st);
			if (st.rows > st.capacity || st.ids > IDS)
				fail("counters", 0);
		}
		atomic_fetch_add(&searches, 1);
	}
	return NULL;
}

int main(void)
{
	drift_rand r;
	drift_rand_seed(&r, 99);
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < IDS; i++)
			for (int j = 0; j < DIM; j++)
				vecs[v][i][j] = (float)drift_rand_normal(&r);
	drift_hnsw_opts o = {.dim = DIM,
			     .metric = DRIFT_METRIC_L2,
			     .capacity = 2 * IDS,
			     .ef_construction = 40,
			     .seed = 5};
	drift_err err;
	if (drift_hnsw_new(&o, &h, &err) != 0) {
		fprintf(stderr, "tsan-hnsw: %s\n", err.msg);
		return 1;
	}
	pthread_t w[WRITERS], rd[READERS];
	for (intptr_t i = 0; i < READERS; i++)
		pthread_create(&rd[i], NULL, reader, (void *)(i + 1));
	for (intptr_t i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);

	for (uint64_t id = 0; id < IDS; id++) {
		drift_hnsw_entry e;
		if (drift_hnsw_lookup(h, id, &e) != 0) {
			fail("id lost", id);
			continue;
		}
		int want = final_state[id];
		if ((want == 3) != (e.kind == DRIFT_HNSW_TOMBSTONE) ||
		    (want < 3 && memcmp(e.vec, vecs[want - 1][id],
					sizeof(vecs[0][0])) != 0))
			fail("final state", id);
	}
	drift_hnsw_free(h);
	long f = atomic_load(&failures), s = atomic_load(&searches);
	printf("tsan-hnsw: %d writers, %d readers, %ld searches, %ld "
	       "failures\n",
	       WRITERS, READERS, s, f);
	return f == 0 && s > 0 ? 0 : 1;
}
