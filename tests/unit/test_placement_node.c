/* cluster/placement against the node: a collection written through
 * node/engine/collection.h keeps each id in the shard drift_shard_of_id names,
 * so router, tools and the node agree on every data directory, old ones
 * included (the node's own hash must never drift from the cluster's). */
#include <stdio.h>
#include <string.h>

#include "cluster/placement.h"
#include "node/engine/collection.h"
#include "node/engine/shard.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static char dir[256];

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	drift_test_rmtree(dir);
}

TestSuite(placement_node, .init = setup, .fini = teardown);

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(placement_node, ids_live_in_the_shard_placement_names)
{
	enum { SHARDS = 8, DIM = 4, IDS = 400 };
	drift_cm *cm;
	drift_err err = {0};
	drift_cm_opts opts = {.memtable_rows = 1024};
	cr_assert_eq(drift_cm_open(dir, &opts, &cm, &err), 0, "%s", err.msg);
	drift_collection_config cfg = {.name = "c",
				       .dim = DIM,
				       .shards = SHARDS,
				       .sync = DRIFT_WAL_NONE};
	cr_assert_eq(drift_cm_create(cm, &cfg, &err), 0, "%s", err.msg);
	drift_collection *c;
	cr_assert_eq(drift_cm_acquire(cm, "c", &c, &err), 0, "%s", err.msg);
	static uint64_t ids[IDS];
	static float vecs[IDS * DIM];
	for (size_t i = 0; i < IDS; i++) {
		/* Small ids and large ones, as clients use both. */
		ids[i] = i % 2 ? i : UINT64_C(0x9e3779b97f4a7c15) * (i + 1);
		for (size_t k = 0; k < DIM; k++)
			vecs[i * DIM + k] = (float)(i + k + 1);
	}
	cr_assert_eq(drift_collection_upsert(c, ids, vecs, IDS, &err), 0, "%s",
		     err.msg);
	drift_cm_release(cm, c);
	drift_cm_close(cm);

	/* Each shard directory on its own: an id is in exactly the shard
	 * drift_shard_of_id gives. */
	long found = 0;
	for (uint32_t s = 0; s < SHARDS; s++) {
		char sd[512];
		snprintf(sd, sizeof(sd), "%s/collections/c/shard-%u", dir, s);
		drift_shard_opts so = {.dir = sd, .dim = DIM};
		drift_shard *sh;
		cr_assert_eq(drift_shard_open(&so, &sh, &err), 0, "%s: %s", sd,
			     err.msg);
		for (size_t i = 0; i < IDS; i++) {
			float out[DIM];
			int rv = drift_shard_get(sh, ids[i], out);
			bool here = drift_shard_of_id(ids[i], SHARDS) == s;
			cr_assert_eq(rv, here ? 0 : DRIFT_ENOENT,
				     "id %llu in shard %u: %d",
				     (unsigned long long)ids[i], s, rv);
			found += rv == 0;
		}
		drift_shard_close(sh);
	}
	cr_assert_eq(found, IDS);
}
