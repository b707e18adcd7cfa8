/*
 * tsan-shard: the whole shard engine (node/engine/shard.c: WAL, memtables,
 * rotation, flush into L1, L1 maintenance, the Janitor, epoch reclamation)
 * under ThreadSanitizer, as a plain executable. Built and run by
 * tests/tsan/run.sh.
 *
 * WRITERS threads each own the ids id % WRITERS == w. Each one upserts new
 * ids in batches, updates some of its earlier ids with a second vector,
 * deletes some for good, and now and then asks for a flush, while the
 * Janitor (a 2 ms period) rotates a small memtable, flushes it into L1
 * and splits, merges and re-centres small buckets. SEARCHERS threads
 * search, get and read the stats without pause. Every answer is checked as
 * it comes: hits sorted by distance, finite, no id twice, every id one
 * that was written, no id whose delete was acknowledged before the search
 * began (nor from get). At the end, after a close and a reopen, every id
 * is in the state its writer left. Exits 0 when all holds (and
 * ThreadSanitizer saw no race: it exits 66 otherwise).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/hit.h"
#include "common/rand.h"
#include "node/engine/shard.h"

#define DIM 32
#define WRITERS 2
#define SEARCHERS 2
#define PER_WRITER 4000
#define IDS (WRITERS * PER_WRITER)
#define BATCH 50
#define K 10
#define CLUSTERS 16

static drift_shard *shard;
static float vecs[2][IDS][DIM];	 /* two versions of each id's vector */
static _Atomic uint32_t written; /* ids below this may have been written */
static _Atomic int writing = WRITERS;
static _Atomic long failures, searches, gets;

/* Deletes: writer w stores del_at[id] = t for each id of a delete it had
 * acknowledged, then publishes clock[w] = t (release). A reader that
 * loaded clock[w] >= del_at[id] before it began knows the delete came
 * first. */
static _Atomic uint64_t del_at[IDS];
static _Atomic uint64_t clock_of[WRITERS];

/* What each id ends as: 0 never written, 1 version 0, 2 version 1, 3
 * deleted. Written by its owner only; read after the joins. */
static int final_state[IDS];

static void fail(const char *what, uint64_t id)
{
	if (atomic_fetch_add(&failures, 1) < 10)
		fprintf(stderr, "tsan-shard: %s (id %llu)\n", what,
			(unsigned long long)id);
}

static void make_data(void)
{
	drift_rand r;
	drift_rand_seed(&r, 7);
	float centre[CLUSTERS][DIM];
	for (int c = 0; c < CLUSTERS; c++)
		for (int j = 0; j < DIM; j++)
			centre[c][j] = (float)(drift_rand_unit(&r) * 10.0);
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < IDS; i++) {
			/* The stream drifts: later ids come from later
			 * clusters, so buckets split, merge and move. */
			int c = (int)((uint64_t)i * CLUSTERS / IDS +
				      drift_rand_below(&r, 3)) %
				CLUSTERS;
			for (int j = 0; j < DIM; j++)
				vecs[v][i][j] =
					centre[c][j] +
					(float)(drift_rand_unit(&r) - 0.5);
		}
}

static void *writer(void *arg)
{
	int w = (int)(intptr_t)arg;
	uint64_t ids[BATCH];
	static float buf[WRITERS][BATCH * DIM];
	float *b = buf[w];
	drift_rand r;
	drift_rand_seed(&r, 100 + (uint64_t)w);
	drift_err err;
	uint64_t t = 0;
	size_t done = 0; /* own ids written so far */
	while (done < PER_WRITER) {
		size_t n = 0;
		for (; n < BATCH && done < PER_WRITER; n++, done++) {
			uint64_t id = done * WRITERS + (uint64_t)w;
			ids[n] = id;
			memcpy(b + n * DIM, vecs[0][id], sizeof(vecs[0][id]));
		}
		uint32_t top = (uint32_t)(done * WRITERS);
		uint32_t cur = atomic_load(&written);
		while (cur < top &&
		       !atomic_compare_exchange_weak(&written, &cur, top))
			;
		if (drift_shard_upsert(shard, ids, b, n, &err) != 0) {
			fail(err.msg, ids[0]);
			break;
		}
		for (size_t i = 0; i < n; i++)
			final_state[ids[i]] = 1;
		/* Updates: a second vector for a few earlier live ids. */
		size_t nu = 0;
		for (int i = 0; i < 10 && done > BATCH; i++) {
			uint64_t id =
				drift_rand_below(&r, done - BATCH) * WRITERS +
				(uint64_t)w;
			if (final_state[id] != 1)
				continue;
			ids[nu] = id;
			memcpy(b + nu * DIM, vecs[1][id], sizeof(vecs[1][id]));
			nu++;
		}
		if (nu > 0 && drift_shard_upsert(shard, ids, b, nu, &err) != 0)
			fail(err.msg, ids[0]);
		for (size_t i = 0; i < nu; i++)
			final_state[ids[i]] = 2;
		/* Deletes, for good: ids are never written again. */
		size_t nd = 0;
		for (int i = 0; i < 15 && done > BATCH; i++) {
			uint64_t id = drift_rand_below(&r, done) * WRITERS +
				      (uint64_t)w;
			if (final_state[id] == 3)
				continue;
			bool dup = false;
			for (size_t j = 0; j < nd; j++)
				dup |= ids[j] == id;
			if (!dup)
				ids[nd++] = id;
		}
		if (nd > 0 &&
		    drift_shard_delete(shard, ids, nd, NULL, &err) != 0) {
			fail(err.msg, ids[0]);
		} else if (nd > 0) {
			t++;
			for (size_t i = 0; i < nd; i++) {
				final_state[ids[i]] = 3;
				atomic_store_explicit(&del_at[ids[i]], t,
						      memory_order_relaxed);
			}
			atomic_store_explicit(&clock_of[w], t,
					      memory_order_release);
		}
		if (done % (BATCH * 20) == 0 &&
		    drift_shard_flush(shard, &err) != 0)
			fail(err.msg, 0);
	}
	atomic_fetch_sub(&writing, 1);
	return NULL;
}

/* True when id's delete was acknowledged before the reader loaded c. */
static bool deleted_before(uint64_t id, const uint64_t *c)
{
	uint64_t d = atomic_load_explicit(&del_at[id], memory_order_relaxed);
	return d != 0 && d <= c[id % WRITERS];
}

static void *searcher(void *arg)
{
	drift_rand r;
	drift_rand_seed(&r, 200 + (uint64_t)(intptr_t)arg);
	float out[DIM];
	while (atomic_load(&writing) > 0) {
		uint64_t c[WRITERS];
		for (int w = 0; w < WRITERS; w++)
			c[w] = atomic_load_explicit(&clock_of[w],
						    memory_order_acquire);
		uint64_t qid = drift_rand_below(&r, IDS);
		drift_shard_search_opts so = {
			.k = K,
			.nprobe = 1 + (uint32_t)drift_rand_below(&r, 6)};
		drift_hit h[K];
		size_t nh = 0;
		if (drift_shard_search(shard, vecs[0][qid], &so, h, &nh) != 0) {
			fail("search failed", qid);
			continue;
		}
		/* After the search: an id it found had its write begun. */
		uint32_t top = atomic_load(&written);
		for (size_t i = 0; i < nh; i++) {
			if (i > 0 && drift_hit_less(h[i], h[i - 1]))
				fail("hits out of order", h[i].id);
			if (!(h[i].distance >= 0))
				fail("bad distance", h[i].id);
			if (h[i].id >= top || h[i].id >= IDS)
				fail("an id never written", h[i].id);
			else if (deleted_before(h[i].id, c))
				fail("a deleted id found", h[i].id);
			for (size_t j = 0; j < i; j++)
				if (h[j].id == h[i].id)
					fail("an id twice", h[i].id);
		}
		atomic_fetch_add(&searches, 1);
		uint64_t gid = drift_rand_below(&r, top ? top : 1);
		int rv = drift_shard_get(shard, gid, out);
		if (rv == 0 && deleted_before(gid, c))
			fail("get found a deleted id", gid);
		if (rv == 0 && memcmp(out, vecs[0][gid], sizeof(out)) != 0 &&
		    memcmp(out, vecs[1][gid], sizeof(out)) != 0)
			fail("get: a vector never written", gid);
		atomic_fetch_add(&gets, 1);
		drift_shard_stats st;
		drift_shard_stats_get(shard, &st);
	}
	return NULL;
}

static int open_shard(const char *dir)
{
	drift_shard_opts o = {.dir = dir,
			      .dim = DIM,
			      .metric = DRIFT_METRIC_L2,
			      .sync = DRIFT_WAL_NONE,
			      .memtable_rows = 600,
			      .bucket_target = 40,
			      .janitor = true,
			      .janitor_period_ns = 2000000,
			      .seed = 3};
	drift_err err;
	if (drift_shard_open(&o, &shard, &err) != 0) {
		fprintf(stderr, "tsan-shard: open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void check_final(void)
{
	float out[DIM];
	for (uint64_t id = 0; id < IDS; id++) {
		int rv = drift_shard_get(shard, id, out);
		int st = final_state[id];
		bool ok = st == 0 || st == 3
				  ? rv != 0
				  : rv == 0 && memcmp(out, vecs[st - 1][id],
						      sizeof(out)) == 0;
		if (!ok)
			fail("final state differs", id);
	}
}

int main(void)
{
	char dir[] = "/tmp/drift-tsan-shard-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("tsan-shard: mkdtemp");
		return 1;
	}
	make_data();
	if (open_shard(dir) != 0)
		return 1;
	pthread_t w[WRITERS], s[SEARCHERS];
	for (int i = 0; i < SEARCHERS; i++)
		pthread_create(&s[i], NULL, searcher, (void *)(intptr_t)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < SEARCHERS; i++)
		pthread_join(s[i], NULL);
	drift_shard_stats st;
	drift_shard_stats_get(shard, &st);
	check_final();
	drift_shard_close(shard);
	if (open_shard(dir) != 0)
		return 1;
	check_final();
	drift_shard_close(shard);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "tsan-shard: could not remove %s\n", dir);
	printf("tsan-shard: %ld searches, %ld gets, %llu flushes, %llu "
	       "splits, %llu merges, %llu recenters, %ld failures\n",
	       atomic_load(&searches), atomic_load(&gets),
	       (unsigned long long)st.flushes, (unsigned long long)st.splits,
	       (unsigned long long)st.merges, (unsigned long long)st.recenters,
	       atomic_load(&failures));
	if (st.flushes < 3 || st.splits + st.merges == 0) {
		fprintf(stderr, "tsan-shard: too little happened under the "
				"readers (flushes, splits, merges)\n");
		return 1;
	}
	return atomic_load(&failures) == 0 && atomic_load(&searches) > 0 ? 0
									 : 1;
}
