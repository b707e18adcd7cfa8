/* Tests of cluster/meta: the metadata state machine's commands (every
 * rule, and that a refused command changes nothing), the padded entry
 * encoding, and snapshots that round-trip exactly. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cluster/meta.h"
#include "common/alloc.h"
#include "common/err.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static drift_meta *st;

static void setup(void)
{
	cr_assert_eq(drift_meta_new(&st), 0);
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_meta_unref(st);
}

TestSuite(meta, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static Drift__Cluster__V1__Node pbnode(const char *id, int port)
{
	static char addr[8][64], raddr[8][64];
	static int slot;
	slot = (slot + 1) % 8;
	snprintf(addr[slot], sizeof(addr[slot]), "127.0.0.1:%d", port);
	snprintf(raddr[slot], sizeof(raddr[slot]), "127.0.0.1:%d", port + 10);
	Drift__Cluster__V1__Node n = DRIFT__CLUSTER__V1__NODE__INIT;
	n.id = (char *)id;
	n.raft_id = drift_meta_raft_id(id);
	n.address = addr[slot];
	n.raft_address = raddr[slot];
	return n;
}

/* Applies to a clone and keeps it only on success, as cluster/fsm.c does. */
static int apply(const Drift__Cluster__V1__Command *cmd, drift_err *err)
{
	drift_meta *next;
	int rv = drift_meta_clone(st, &next);
	if (rv != 0)
		return rv;
	rv = drift_meta_apply(next, cmd, err);
	if (rv == 0) {
		drift_meta_unref(st);
		st = next;
	} else {
		drift_meta_unref(next);
	}
	return rv;
}

static int bootstrap(const char *id)
{
	Drift__Cluster__V1__Node n = pbnode(id, 7401);
	Drift__Cluster__V1__Bootstrap b = DRIFT__CLUSTER__V1__BOOTSTRAP__INIT;
	b.cluster_id = "c1";
	b.node = &n;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_BOOTSTRAP;
	c.bootstrap = &b;
	return apply(&c, NULL);
}

static int add_node(const char *id, int port, drift_err *err)
{
	Drift__Cluster__V1__Node n = pbnode(id, port);
	Drift__Cluster__V1__AddNode a = DRIFT__CLUSTER__V1__ADD_NODE__INIT;
	a.node = &n;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_ADD_NODE;
	c.add_node = &a;
	return apply(&c, err);
}

/* A collection of `shards` shards, shard i on nodes[i % n_nodes]. */
static int create(const char *name, uint32_t shards, const char **nodes,
		  size_t n_nodes, drift_err *err)
{
	Drift__Cluster__V1__Collection col =
		DRIFT__CLUSTER__V1__COLLECTION__INIT;
	col.name = (char *)name;
	col.dimension = 8;
	col.shards = shards;
	col.replication_factor = 1;
	Drift__Cluster__V1__Shard sh[16], *ps[16];
	char *ids[16];
	for (uint32_t i = 0; i < shards; i++) {
		drift__cluster__v1__shard__init(&sh[i]);
		sh[i].collection = (char *)name;
		sh[i].shard = i;
		ids[i] = (char *)nodes[i % n_nodes];
		sh[i].nodes = &ids[i];
		sh[i].n_nodes = 1;
		ps[i] = &sh[i];
	}
	Drift__Cluster__V1__CreateCollection cc =
		DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
	cc.collection = &col;
	cc.shards = ps;
	cc.n_shards = shards;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION;
	c.create_collection = &cc;
	return apply(&c, err);
}

static int remove_node(const char *id, drift_err *err)
{
	Drift__Cluster__V1__RemoveNode r =
		DRIFT__CLUSTER__V1__REMOVE_NODE__INIT;
	r.id = (char *)id;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_REMOVE_NODE;
	c.remove_node = &r;
	return apply(&c, err);
}

static int drop(const char *name)
{
	Drift__Cluster__V1__DropCollection d =
		DRIFT__CLUSTER__V1__DROP_COLLECTION__INIT;
	d.name = (char *)name;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_DROP_COLLECTION;
	c.drop_collection = &d;
	return apply(&c, NULL);
}

static void assert_same(const drift_meta *a, const drift_meta *b)
{
	void *ea, *eb;
	size_t la, lb;
	cr_assert_eq(drift_meta_encode(a, &ea, &la), 0);
	cr_assert_eq(drift_meta_encode(b, &eb, &lb), 0);
	cr_assert_eq(la, lb);
	cr_assert(memcmp(ea, eb, la) == 0);
	drift_free(ea);
	drift_free(eb);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(meta, bootstrap_once)
{
	cr_assert_eq(bootstrap("n1"), 0);
	cr_assert_str_eq(st->cluster_id, "c1");
	cr_assert_eq(st->version, 1);
	cr_assert_eq(st->n_nodes, 1);
	cr_assert_eq(st->nodes[0].role, DRIFT_ROLE_VOTER);
	cr_assert_eq(bootstrap("n2"), DRIFT_EEXIST);
	cr_assert_eq(st->version, 1);
}

DRIFT_TEST(meta, nodes_are_unique)
{
	drift_err err;
	cr_assert_eq(bootstrap("n1"), 0);
	cr_assert_eq(add_node("n2", 7402, &err), 0);
	cr_assert_eq(add_node("n2", 7403, &err), DRIFT_EEXIST);
	cr_assert(strstr(err.msg, "already a member") != NULL);
	cr_assert_eq(add_node("n3", 7402, &err), DRIFT_EEXIST, "same address");
	cr_assert(strstr(err.msg, "n2") != NULL);
	cr_assert_eq(add_node("bad id!", 7409, &err), DRIFT_EINVAL);
	cr_assert_eq(st->n_nodes, 2);
	cr_assert_eq(st->version, 2);
}

DRIFT_TEST(meta, collections_and_placement)
{
	drift_err err;
	const char *two[] = {"n1", "n2"};
	cr_assert_eq(bootstrap("n1"), 0);
	cr_assert_eq(add_node("n2", 7402, NULL), 0);
	cr_assert_eq(create("b", 4, two, 2, &err), 0);
	cr_assert_eq(create("a", 1, two, 1, &err), 0);
	cr_assert_eq(create("a", 1, two, 1, &err), DRIFT_EEXIST);
	const char *ghost[] = {"n9"};
	cr_assert_eq(create("c", 1, ghost, 1, &err), DRIFT_ENOENT);
	cr_assert(strstr(err.msg, "n9") != NULL);
	cr_assert_eq(st->n_cols, 2);
	cr_assert_str_eq(st->cols[0].name, "a", "sorted by name");
	const drift_meta_collection *b = drift_meta_col_find(st, "b");
	cr_assert_not_null(b);
	cr_assert_eq(b->created_version, 3);
	cr_assert_str_eq(b->shard[3].nodes[0], "n2");
	uint32_t prim;
	cr_assert_eq(drift_meta_node_load(st, "n1", &prim), 3);
	cr_assert_eq(prim, 3);
	uint64_t v = st->version;
	cr_assert_eq(remove_node("n2", &err), DRIFT_EBUSY);
	cr_assert(strstr(err.msg, "b/1") != NULL, "names the shards: %s",
		  err.msg);
	cr_assert_eq(st->version, v, "a refused command changes nothing");
	cr_assert_eq(drop("b"), 0);
	cr_assert_eq(drop("b"), DRIFT_ENOENT);
	cr_assert_eq(remove_node("n2", &err), 0);
	cr_assert_eq(st->n_nodes, 1);
}

/* A collection "r" of one shard on n1..n<rf> (all in sync). */
static void create_rf(uint32_t rf)
{
	char *ids[] = {"n1", "n2", "n3", "n4", "n5"};
	cr_assert_eq(bootstrap("n1"), 0);
	for (uint32_t i = 1; i < rf; i++)
		cr_assert_eq(add_node(ids[i], 7401 + (int)i, NULL), 0);
	Drift__Cluster__V1__Collection col =
		DRIFT__CLUSTER__V1__COLLECTION__INIT;
	col.name = "r";
	col.dimension = 8;
	col.shards = 1;
	col.replication_factor = rf;
	Drift__Cluster__V1__Shard sh = DRIFT__CLUSTER__V1__SHARD__INIT;
	sh.collection = "r";
	sh.nodes = ids;
	sh.n_nodes = rf;
	sh.in_sync = ids;
	sh.n_in_sync = rf;
	Drift__Cluster__V1__Shard *ps[] = {&sh};
	Drift__Cluster__V1__CreateCollection cc =
		DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
	cc.collection = &col;
	cc.shards = ps;
	cc.n_shards = 1;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION;
	c.create_collection = &cc;
	cr_assert_eq(apply(&c, NULL), 0);
}

/* A collection "r" of one shard on n1, n2, n3 (all in sync). */
static void create_rf3(void)
{
	create_rf(3);
}

static int set_replicas(uint64_t epoch, bool new_epoch, char **nodes,
			size_t n_nodes, char **in_sync, size_t n_in_sync,
			char **drop, size_t n_drop, char **add, size_t n_add,
			drift_err *err)
{
	Drift__Cluster__V1__SetReplicas sr =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	sr.collection = "r";
	sr.created_version = drift_meta_col_find(st, "r")->created_version;
	sr.epoch = epoch;
	sr.new_epoch = new_epoch;
	sr.nodes = nodes;
	sr.n_nodes = n_nodes;
	sr.in_sync = in_sync;
	sr.n_in_sync = n_in_sync;
	sr.drop_in_sync = drop;
	sr.n_drop_in_sync = n_drop;
	sr.add_in_sync = add;
	sr.n_add_in_sync = n_add;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS;
	c.set_replicas = &sr;
	return apply(&c, err);
}

/* Adds node as a replica, out of sync; with from, marked as the move of
 * from's replica to it ("" from: of a missing one). */
static int set_replicas_move(uint64_t epoch, const char *node, const char *from,
			     drift_err *err)
{
	char *add[] = {(char *)node};
	Drift__Cluster__V1__SetReplicas sr =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	sr.collection = "r";
	sr.created_version = drift_meta_col_find(st, "r")->created_version;
	sr.epoch = epoch;
	sr.add_nodes = add;
	sr.n_add_nodes = node[0] != '\0';
	if (from != NULL) {
		sr.move_from = (char *)from;
		sr.move_to = (char *)node;
	}
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS;
	c.set_replicas = &sr;
	return apply(&c, err);
}

static int set_replicas_add(uint64_t epoch, const char *node, drift_err *err)
{
	return set_replicas_move(epoch, node, NULL, err);
}

static const drift_meta_shard *shard_r(void)
{
	return &drift_meta_col_find(st, "r")->shard[0];
}

DRIFT_TEST(meta, replicas_in_sync_and_promotion)
{
	drift_err err;
	create_rf3();
	uint64_t e0 = shard_r()->epoch;
	cr_assert_eq(e0, drift_meta_col_find(st, "r")->created_version,
		     "a create starts the first epoch");
	cr_assert_eq(shard_r()->in_sync, 7u);
	/* Two writes each drop the replica that failed them: the drops
	 * commute. */
	char *n2[] = {"n2"}, *n3[] = {"n3"}, *n1[] = {"n1"};
	cr_assert_eq(
		set_replicas(e0, false, NULL, 0, NULL, 0, n3, 1, NULL, 0, &err),
		0, "%s", err.msg);
	cr_assert_eq(
		set_replicas(e0, false, NULL, 0, NULL, 0, n2, 1, NULL, 0, &err),
		0, "%s", err.msg);
	cr_assert_eq(shard_r()->in_sync, 1u);
	cr_assert_eq(shard_r()->epoch, e0, "same primary, same epoch");
	cr_assert_eq(
		set_replicas(e0, false, NULL, 0, NULL, 0, NULL, 0, n3, 1, &err),
		0, "caught up");
	cr_assert_eq(shard_r()->in_sync, 5u);
	cr_assert_eq(
		set_replicas(e0, false, NULL, 0, NULL, 0, n1, 1, NULL, 0, &err),
		DRIFT_EINVAL, "the primary stays in sync");
	/* The leader promotes n3: a new epoch; the old one is refused. */
	char *order[] = {"n3", "n1", "n2"};
	cr_assert_eq(set_replicas(e0, false, order, 3, n3, 1, NULL, 0, NULL, 0,
				  &err),
		     DRIFT_EINVAL, "a new placement needs a new epoch");
	cr_assert_eq(
		set_replicas(e0, true, order, 3, n3, 1, NULL, 0, NULL, 0, &err),
		0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->nodes[0], "n3");
	cr_assert_eq(shard_r()->in_sync, 1u);
	cr_assert_eq(shard_r()->epoch, st->version);
	uint64_t v = st->version, e1 = shard_r()->epoch;
	cr_assert_eq(
		set_replicas(e0, false, NULL, 0, NULL, 0, NULL, 0, n2, 1, &err),
		DRIFT_ECONFLICT, "a deposed primary changes nothing");
	cr_assert(strstr(err.msg, "epoch") != NULL, "%s", err.msg);
	cr_assert_eq(
		set_replicas(e1, true, order, 3, n1, 1, NULL, 0, NULL, 0, &err),
		DRIFT_EINVAL, "the primary must be in sync");
	char *ghost[] = {"n3", "n9", "n1"}, *twice[] = {"n3", "n3", "n1"};
	cr_assert_eq(
		set_replicas(e1, true, ghost, 3, n3, 1, NULL, 0, NULL, 0, &err),
		DRIFT_EINVAL);
	cr_assert_eq(
		set_replicas(e1, true, twice, 3, n3, 1, NULL, 0, NULL, 0, &err),
		DRIFT_EINVAL);
	cr_assert_eq(
		set_replicas(e1, true, order, 0, n3, 1, NULL, 0, NULL, 0, &err),
		DRIFT_EINVAL, "no replica left");
	cr_assert_eq(st->version, v, "refused commands change nothing");
	/* A move: a fourth node added out of sync, then the source left out
	 * in a new epoch. */
	cr_assert_eq(add_node("n4", 7404, NULL), 0);
	uint64_t e2 = shard_r()->epoch;
	cr_assert_eq(set_replicas_add(e2, "n4", &err), 0, "%s", err.msg);
	cr_assert_eq(shard_r()->n, 4);
	cr_assert_str_eq(shard_r()->nodes[3], "n4");
	cr_assert_eq(shard_r()->in_sync, 1u, "a new replica is out of sync");
	cr_assert_eq(shard_r()->epoch, e2);
	cr_assert_eq(set_replicas_add(e2, "n4", &err), DRIFT_EINVAL,
		     "holds it already");
	cr_assert_eq(set_replicas_add(e2, "n9", &err), DRIFT_EINVAL);
	char *n34[] = {"n3", "n4"}, *left[] = {"n4", "n3", "n2"};
	cr_assert_eq(set_replicas(e2, false, NULL, 0, NULL, 0, NULL, 0, n34 + 1,
				  1, &err),
		     0);
	cr_assert_eq(
		set_replicas(e2, true, left, 3, n34, 2, NULL, 0, NULL, 0, &err),
		0, "%s", err.msg);
	cr_assert_eq(shard_r()->n, 3);
	cr_assert_str_eq(shard_r()->nodes[0], "n4");
	cr_assert_eq(shard_r()->in_sync, 3u, "n4 and n3: bits 0 and 1");
	cr_assert(shard_r()->epoch > e2);
	/* Epoch and in-sync set survive a snapshot. */
	void *buf;
	size_t len;
	cr_assert_eq(drift_meta_encode(st, &buf, &len), 0);
	drift_meta *back;
	cr_assert_eq(drift_meta_decode(buf, len, &back, NULL), 0);
	assert_same(st, back);
	cr_assert_eq(drift_meta_col_find(back, "r")->shard[0].epoch,
		     shard_r()->epoch);
	drift_meta_unref(back);
	drift_free(buf);
}

DRIFT_TEST(meta, entries_are_padded)
{
	Drift__Cluster__V1__RemoveNode r =
		DRIFT__CLUSTER__V1__REMOVE_NODE__INIT;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_REMOVE_NODE;
	c.remove_node = &r;
	const char *ids[] = {"a", "ab", "abc", "abcdefg", "abcdefgh"};
	for (size_t i = 0; i < 5; i++) {
		r.id = (char *)ids[i];
		void *buf;
		size_t len;
		cr_assert_eq(drift_meta_cmd_encode(&c, false, &buf, &len), 0);
		cr_assert_eq(len % 8, 0);
		Drift__Cluster__V1__Command *back;
		cr_assert_eq(drift_meta_cmd_decode(buf, len, &back), 0);
		cr_assert_str_eq(back->remove_node->id, ids[i]);
		drift__cluster__v1__command__free_unpacked(back, NULL);
		cr_assert_eq(drift_meta_cmd_decode(buf, 4, &back),
			     DRIFT_ECORRUPT);
		((unsigned char *)buf)[0] = 0xff; /* length past the end */
		cr_assert_eq(drift_meta_cmd_decode(buf, len, &back),
			     DRIFT_ECORRUPT);
		drift_free(buf);
	}
}

DRIFT_TEST(meta, snapshot_round_trip)
{
	const char *two[] = {"n1", "n2"};
	cr_assert_eq(bootstrap("n1"), 0);
	cr_assert_eq(add_node("n2", 7402, NULL), 0);
	cr_assert_eq(create("b", 5, two, 2, NULL), 0);
	cr_assert_eq(create("a", 2, two, 2, NULL), 0);
	void *buf;
	size_t len;
	cr_assert_eq(drift_meta_encode(st, &buf, &len), 0);
	drift_meta *back;
	cr_assert_eq(drift_meta_decode(buf, len, &back, NULL), 0);
	assert_same(st, back);
	cr_assert_eq(back->version, st->version);
	cr_assert_eq(drift_meta_col_find(back, "b")->created_version, 3);
	drift_meta_unref(back);
	drift_err err;
	cr_assert_eq(drift_meta_decode("\x08\x09garbage", 9, &back, &err),
		     DRIFT_ECORRUPT);
	cr_assert(strstr(err.msg, "snapshot") != NULL);
	drift_free(buf);
}

DRIFT_TEST(meta, allocation_failures_change_nothing)
{
	const char *one[] = {"n1"};
	cr_assert_eq(bootstrap("n1"), 0);
	for (long nth = 1; nth < 20; nth++) {
		uint64_t v = st->version;
		size_t n = st->n_cols;
		drift_failalloc_arm(nth, 0);
		char name[16];
		snprintf(name, sizeof(name), "c%ld", nth);
		int rv = create(name, 3, one, 1, NULL);
		drift_failalloc_arm(0, 0);
		if (rv == 0) {
			cr_assert_eq(st->version, v + 1);
			cr_assert_eq(st->n_cols, n + 1);
		} else {
			cr_assert_eq(st->version, v);
			cr_assert_eq(st->n_cols, n);
		}
	}
}

DRIFT_TEST(meta, a_move_is_marked_until_done_or_undone)
{
	drift_err err;
	create_rf3();
	cr_assert_eq(add_node("n4", 7404, NULL), 0);
	cr_assert_eq(add_node("n5", 7405, NULL), 0);
	uint64_t e = shard_r()->epoch;
	cr_assert_eq(set_replicas_move(e, "n4", "n9", &err), DRIFT_EINVAL,
		     "the source must hold a replica");
	cr_assert_eq(shard_r()->n, 3, "refused: nothing added");
	cr_assert_eq(set_replicas_move(e, "n4", "n2", &err), 0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_from, "n2");
	cr_assert_str_eq(shard_r()->move_to, "n4");
	cr_assert_eq(set_replicas_move(e, "n5", "n3", &err), DRIFT_ECONFLICT,
		     "one move of a shard at a time");
	cr_assert(strstr(err.msg, "moving from n2 to n4") != NULL, "%s",
		  err.msg);
	/* The mark survives a snapshot (a new leader finishes the move). */
	void *buf;
	size_t len;
	cr_assert_eq(drift_meta_encode(st, &buf, &len), 0);
	drift_meta *back;
	cr_assert_eq(drift_meta_decode(buf, len, &back, NULL), 0);
	cr_assert_str_eq(drift_meta_col_find(back, "r")->shard[0].move_from,
			 "n2");
	cr_assert_str_eq(drift_meta_col_find(back, "r")->shard[0].move_to,
			 "n4");
	drift_meta_unref(back);
	drift_free(buf);
	/* The target in sync: still moving; the source leaves: done. */
	char *n4[] = {"n4"}, *n2[] = {"n2"};
	cr_assert_eq(
		set_replicas(e, false, NULL, 0, NULL, 0, NULL, 0, n4, 1, &err),
		0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_to, "n4");
	Drift__Cluster__V1__SetReplicas sr =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	sr.collection = "r";
	sr.created_version = drift_meta_col_find(st, "r")->created_version;
	sr.epoch = e;
	sr.drop_nodes = n2;
	sr.n_drop_nodes = 1;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS;
	c.set_replicas = &sr;
	cr_assert_eq(apply(&c, &err), 0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_to, "", "done: the source left");
	/* Undone: the target leaves before it is in sync. */
	cr_assert_eq(set_replicas_move(e, "n5", "n3", &err), 0, "%s", err.msg);
	char *n5[] = {"n5"};
	sr.drop_nodes = n5;
	cr_assert_eq(apply(&c, &err), 0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_to, "", "undone: the target left");
	cr_assert_eq(shard_r()->n, 3);
	/* A missing replica added: done once it is in sync. */
	sr.drop_nodes = n4;
	cr_assert_eq(apply(&c, &err), 0, "%s", err.msg);
	cr_assert_eq(set_replicas_move(e, "n5", "", &err), 0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_to, "n5");
	cr_assert_str_eq(shard_r()->move_from, "");
	char *add5[] = {"n5"};
	cr_assert_eq(set_replicas(e, false, NULL, 0, NULL, 0, NULL, 0, add5, 1,
				  &err),
		     0, "%s", err.msg);
	cr_assert_str_eq(shard_r()->move_to, "", "done: in sync");
}

DRIFT_TEST(meta, a_shard_of_rf_5_moves_with_a_sixth_replica)
{
	drift_err err;
	create_rf(5);
	cr_assert_eq(add_node("n6", 7406, NULL), 0);
	cr_assert_eq(add_node("n7", 7407, NULL), 0);
	uint64_t e = shard_r()->epoch;
	cr_assert_eq(set_replicas_move(e, "n6", "n2", &err), 0, "%s", err.msg);
	cr_assert_eq(shard_r()->n, 6, "the target is a sixth replica");
	cr_assert_str_eq(shard_r()->move_to, "n6");
	cr_assert_eq(set_replicas_add(e, "n7", &err), DRIFT_ELIMIT,
		     "not a seventh");
	/* Done: the source leaves, five again. */
	char *n2[] = {"n2"};
	Drift__Cluster__V1__SetReplicas sr =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	sr.collection = "r";
	sr.created_version = drift_meta_col_find(st, "r")->created_version;
	sr.epoch = e;
	sr.drop_nodes = n2;
	sr.n_drop_nodes = 1;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS;
	c.set_replicas = &sr;
	cr_assert_eq(apply(&c, &err), 0, "%s", err.msg);
	cr_assert_eq(shard_r()->n, 5);
	cr_assert_str_eq(shard_r()->move_to, "");
}

DRIFT_TEST(meta, placements_shared_by_states_until_changed)
{
	drift_err err;
	create_rf3();
	const char *one[] = {"n1"};
	cr_assert_eq(create("o", 2, one, 1, NULL), 0);
	drift_meta *old = drift_meta_ref(st);
	const drift_meta_shard *r0 = drift_meta_col_find(old, "r")->shard;
	const drift_meta_shard *o0 = drift_meta_col_find(old, "o")->shard;
	drift_meta_shard before = r0[0];
	uint64_t e0 = shard_r()->epoch;
	char *n3[] = {"n3"};
	/* The copy of r's placements fails: nothing changes. */
	for (long nth = 1; nth < 6; nth++) {
		drift_failalloc_arm(nth, 0);
		int rv = set_replicas(e0, false, NULL, 0, NULL, 0, n3, 1, NULL,
				      0, &err);
		drift_failalloc_arm(0, 0);
		if (rv == 0)
			break;
		cr_assert_eq(rv, DRIFT_ENOMEM);
		cr_assert_eq(st, old, "a failed command keeps the state");
	}
	cr_assert_neq(st, old);
	cr_assert_eq(shard_r()->in_sync, 3u, "n3 left the in-sync set");
	cr_assert_eq(drift_meta_col_find(st, "o")->shard, o0,
		     "an unchanged collection shares its placements");
	cr_assert_neq(drift_meta_col_find(st, "r")->shard, r0,
		      "a changed one has its own copy");
	cr_assert_eq(memcmp(&r0[0], &before, sizeof(before)), 0,
		     "the older state is unchanged");
	cr_assert_eq(drop("o"), 0);
	cr_assert_eq(drift_meta_col_find(old, "o")->shard, o0);
	cr_assert_eq(o0[1].n, 1u,
		     "a dropped collection's placements live "
		     "as long as a state that has it");
	drift_meta_unref(old);
}
