/* Tests of cluster/fsm inside Raft: clusters of 3 and 5 members of the Raft
 * library's in-memory cluster (raft_fixture: fake disk and network, one
 * thread, simulated time), each member with its own drift_fsm, driven with
 * real metadata commands (Bootstrap, AddNode, CreateCollection with a
 * placement, DropCollection, SetNode) proposed with raft_apply.
 *
 * Every member's raft_fsm is a thin wrapper around its drift_fsm that
 * records, for each Raft index, the command applied there; the first member
 * to apply an index records its bytes and every later apply of that index
 * (by any member, in any incarnation) must be the same bytes. The reference
 * state is those commands applied once, in index order, to an empty state:
 * after every case, each member's state (its snapshot encoding, byte for
 * byte) must equal it. A hook checks after every step of the fixture that
 * no term ever has two leaders.
 *
 * The fixture's kill only pauses a member (its Raft instance and its state
 * machine stay in memory), so a restart is done here by closing the
 * member's Raft instance and starting a new one over the same in-memory
 * disk with a new, empty drift_fsm: the library then restores the
 * persisted snapshot and replays the log into it, as a real node does.
 *
 * Two limits of the fixture's in-memory disk (libraft 0.22.1 src/fixture.c)
 * shape the cases: after a snapshot of its own taken with trailing entries
 * it keeps every entry but loads them as if they started after the
 * snapshot, so a member that restarts must not have taken one (they keep
 * the default threshold); and after an installed snapshot its truncate
 * counts entries from index 1 (a heap overflow once a conflicting suffix
 * is cut), so the random schedule with snapshots keeps enough trailing
 * entries that nobody needs an install; installs are the snapshot case's. */
#include <raft.h>
#include <raft/fixture.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/fsm.h"
#include "cluster/meta.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

#define MAXN RAFT_FIXTURE_MAX_SERVERS

struct member {
	struct raft_fsm wrap; /* what Raft calls: records, then drift_fsm */
	drift_fsm *fsm;
	unsigned i;
	raft_index last; /* last index this drift_fsm applied */
	unsigned applies, snapshots, restores;
	unsigned threshold, trailing; /* 0: the library's defaults */
	bool removed;		      /* out of the configuration */
	char address[16];	      /* the fixture's io keeps a pointer */
};

/* The command committed at a Raft index (NULL: not a command). */
struct entry {
	uint8_t *bytes;
	size_t len;
	int rv; /* its code, in the reference (reference()) */
};

/* One proposal; the test owns it (a list freed at teardown). */
struct prop {
	struct raft_apply req;
	unsigned member;
	bool done;
	int status; /* the library's */
	int rv;	    /* the command's, when status is 0 */
	drift_err err;
	raft_index index; /* where raft_apply put it */
	uint8_t *bytes;	  /* the entry */
	size_t len;
	struct prop *next;
};

struct change {
	struct raft_change req;
	bool done;
	int status;
	struct change *next;
};

struct barrier {
	struct raft_barrier req;
	bool done;
	int status;
	struct barrier *next;
};

static struct raft_fixture fx;
static bool fx_up;
static struct member mem[MAXN];
static unsigned n_mem;
static struct entry *cmdlog;
static size_t cmdlog_cap;
static struct prop *props;
static struct change *changes;
static struct barrier *barriers;
static raft_id *term_leader; /* term -> the one leader it had */
static size_t term_cap;
static uint64_t seed_now; /* of the random schedule, for messages */

static void teardown(void)
{
	if (fx_up)
		raft_fixture_close(&fx); /* fires pending callbacks */
	fx_up = false;
	for (unsigned i = 0; i < n_mem; i++)
		drift_fsm_free(mem[i].fsm);
	memset(mem, 0, sizeof(mem));
	n_mem = 0;
	for (size_t i = 0; i < cmdlog_cap; i++)
		free(cmdlog[i].bytes);
	free(cmdlog);
	cmdlog = NULL;
	cmdlog_cap = 0;
	while (props != NULL) {
		struct prop *n = props->next;
		free(props->bytes);
		free(props);
		props = n;
	}
	while (changes != NULL) {
		struct change *n = changes->next;
		free(changes);
		changes = n;
	}
	while (barriers != NULL) {
		struct barrier *n = barriers->next;
		free(barriers);
		barriers = n;
	}
	free(term_leader);
	term_leader = NULL;
	term_cap = 0;
}

TestSuite(raft_fixture, .fini = teardown);

/* ---- Helpers: the recording state machine ----------------------------- */

static void record(raft_index idx, const struct raft_buffer *buf)
{
	if (idx >= cmdlog_cap) {
		size_t cap = cmdlog_cap ? cmdlog_cap : 64;
		while (cap <= idx)
			cap *= 2;
		cmdlog = realloc(cmdlog, cap * sizeof(*cmdlog));
		cr_assert_not_null(cmdlog);
		memset(cmdlog + cmdlog_cap, 0,
		       (cap - cmdlog_cap) * sizeof(*cmdlog));
		cmdlog_cap = cap;
	}
	struct entry *e = &cmdlog[idx];
	if (e->bytes == NULL) {
		e->bytes = malloc(buf->len ? buf->len : 1);
		cr_assert_not_null(e->bytes);
		memcpy(e->bytes, buf->base, buf->len);
		e->len = buf->len;
		return;
	}
	cr_assert(e->len == buf->len &&
			  memcmp(e->bytes, buf->base, e->len) == 0,
		  "two different commands applied at index %llu",
		  (unsigned long long)idx);
}

static int wrap_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
		      void **result)
{
	struct member *m = rf->data;
	/* The library applies entries in order and counts each as applied
	 * once apply returns, so this entry is the one after the last. */
	raft_index idx = raft_last_applied(raft_fixture_get(&fx, m->i)) + 1;
	cr_assert_gt(idx, m->last, "member %u applied index %llu after %llu",
		     m->i, (unsigned long long)idx,
		     (unsigned long long)m->last);
	cr_assert_eq(buf->len % 8, 0, "an entry not padded to 8 bytes");
	m->last = idx;
	m->applies++;
	record(idx, buf);
	struct raft_fsm *in = drift_fsm_raft(m->fsm);
	return in->apply(in, buf, result);
}

static int wrap_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
			 unsigned *n_bufs)
{
	struct member *m = rf->data;
	m->snapshots++;
	struct raft_fsm *in = drift_fsm_raft(m->fsm);
	return in->snapshot(in, bufs, n_bufs);
}

static int wrap_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
	struct member *m = rf->data;
	m->restores++;
	m->last = 0; /* the state jumps to the snapshot's index */
	struct raft_fsm *in = drift_fsm_raft(m->fsm);
	return in->restore(in, buf);
}

static void member_init(unsigned i, unsigned threshold, unsigned trailing)
{
	struct member *m = &mem[i];
	memset(m, 0, sizeof(*m));
	m->i = i;
	cr_assert_eq(drift_fsm_new(NULL, NULL, &m->fsm), 0);
	m->wrap.version = 1;
	m->wrap.data = m;
	m->wrap.apply = wrap_apply;
	m->wrap.snapshot = wrap_snapshot;
	m->wrap.restore = wrap_restore;
	m->threshold = threshold;
	m->trailing = trailing;
	/* The fixture names server i "i+1" and gives it Raft id i+1. */
	snprintf(m->address, sizeof(m->address), "%u", i + 1);
}

static void member_tune(unsigned i)
{
	struct raft *r = raft_fixture_get(&fx, i);
	/* The library's trace of every step, only when asked for. */
	if (getenv("DRIFT_TEST_RAFT_TRACE") == NULL)
		r->tracer = NULL;
	if (mem[i].threshold != 0)
		raft_set_snapshot_threshold(r, mem[i].threshold);
	if (mem[i].trailing != 0)
		raft_set_snapshot_trailing(r, mem[i].trailing);
}

/* After every step: no term has two leaders (Election Safety). */
static void hook(struct raft_fixture *f, struct raft_fixture_event *ev)
{
	(void)ev;
	for (unsigned i = 0; i < f->n; i++) {
		struct raft *r = raft_fixture_get(f, i);
		if (raft_state(r) != RAFT_LEADER)
			continue;
		raft_term t = raft_current_term(r);
		if (t >= term_cap) {
			size_t cap = term_cap ? term_cap : 64;
			while (cap <= t)
				cap *= 2;
			term_leader = realloc(term_leader,
					      cap * sizeof(*term_leader));
			cr_assert_not_null(term_leader);
			memset(term_leader + term_cap, 0,
			       (cap - term_cap) * sizeof(*term_leader));
			term_cap = cap;
		}
		if (term_leader[t] == 0)
			term_leader[t] = r->id;
		cr_assert_eq(term_leader[t], r->id,
			     "term %llu has two leaders: %llu and %llu",
			     (unsigned long long)t,
			     (unsigned long long)term_leader[t],
			     (unsigned long long)r->id);
	}
}

/* n members, the first `voters` of them voters, the others standbys. */
static void cluster_start(unsigned n, unsigned voters, unsigned threshold,
			  unsigned trailing)
{
	cr_assert_eq(raft_fixture_init(&fx), 0);
	fx_up = true;
	for (unsigned i = 0; i < n; i++) {
		member_init(i, threshold, trailing);
		cr_assert_eq(raft_fixture_grow(&fx, &mem[i].wrap), 0);
		n_mem++;
		member_tune(i);
	}
	struct raft_configuration conf;
	cr_assert_eq(raft_fixture_configuration(&fx, voters, &conf), 0);
	cr_assert_eq(raft_fixture_bootstrap(&fx, &conf), 0);
	raft_configuration_close(&conf);
	cr_assert_eq(raft_fixture_start(&fx), 0);
	raft_fixture_hook(&fx, hook);
}

/* Stops member i (kill -9) and starts it again: a new Raft instance over
 * the same disk, with a new empty state machine. */
static void restart(unsigned i)
{
	struct member *m = &mem[i];
	struct raft *r = raft_fixture_get(&fx, i);
	struct raft_io *io = r->io;
	bool alive = raft_fixture_alive(&fx, i);
	if (alive)
		raft_fixture_kill(&fx, i);
	/* Let its disk writes and sends in flight complete: a dead member
	 * receives nothing and does not tick, so it makes no new ones. */
	raft_fixture_step_until_elapsed(&fx, 200);
	raft_close(r, NULL); /* the fixture's io closes at once */
	drift_fsm_free(m->fsm);
	cr_assert_eq(drift_fsm_new(NULL, NULL, &m->fsm), 0);
	m->last = 0;
	cr_assert_eq(raft_init(r, io, &m->wrap, i + 1, m->address), 0);
	member_tune(i);
	cr_assert_eq(raft_start(r), 0);
	if (alive)
		raft_fixture_revive(&fx, i);
}

/* ---- Helpers: commands ------------------------------------------------ */

static const char *node_id(unsigned i)
{
	static const char *ids[MAXN] = {"n1", "n2", "n3", "n4",
					"n5", "n6", "n7", "n8"};
	return ids[i];
}

static Drift__Cluster__V1__Node pbnode(unsigned i, char *addr, char *raddr)
{
	sprintf(addr, "127.0.0.1:%u", 7401 + i);
	sprintf(raddr, "127.0.0.1:%u", 7411 + i);
	Drift__Cluster__V1__Node n = DRIFT__CLUSTER__V1__NODE__INIT;
	n.id = (char *)node_id(i);
	n.raft_id = drift_meta_raft_id(n.id);
	n.address = addr;
	n.raft_address = raddr;
	return n;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct prop *p = req->data;
	p->done = true;
	p->status = status;
	drift_err_clear(&p->err);
	if (status == 0)
		p->rv = drift_fsm_result(mem[p->member].fsm, result, &p->err);
}

/* Proposes cmd on member i: the proposal (done at once, with the library's
 * error in status, when raft_apply refuses it). */
static struct prop *propose(unsigned i, const Drift__Cluster__V1__Command *c)
{
	struct prop *p = calloc(1, sizeof(*p));
	cr_assert_not_null(p);
	p->next = props;
	props = p;
	p->member = i;
	p->req.data = p;
	struct raft_buffer buf;
	cr_assert_eq(drift_meta_cmd_encode(c, true, &buf.base, &buf.len), 0);
	p->bytes = malloc(buf.len);
	cr_assert_not_null(p->bytes);
	memcpy(p->bytes, buf.base, buf.len);
	p->len = buf.len;
	int rv = raft_apply(raft_fixture_get(&fx, i), &p->req, &buf, 1,
			    apply_cb);
	if (rv != 0) {
		raft_free(buf.base); /* not taken on failure */
		p->done = true;
		p->status = rv;
	}
	p->index = p->req.index;
	return p;
}

static struct prop *propose_bootstrap(unsigned i)
{
	char a[32], ra[32];
	Drift__Cluster__V1__Node n = pbnode(i, a, ra);
	Drift__Cluster__V1__Bootstrap b = DRIFT__CLUSTER__V1__BOOTSTRAP__INIT;
	b.cluster_id = "c1";
	b.node = &n;
	b.max_voters = 3;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_BOOTSTRAP;
	c.bootstrap = &b;
	return propose(i, &c);
}

static struct prop *propose_add_node(unsigned i, unsigned node, int role)
{
	char a[32], ra[32];
	Drift__Cluster__V1__Node n = pbnode(node, a, ra);
	n.role = role;
	Drift__Cluster__V1__AddNode an = DRIFT__CLUSTER__V1__ADD_NODE__INIT;
	an.node = &n;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_ADD_NODE;
	c.add_node = &an;
	return propose(i, &c);
}

static struct prop *propose_set_node(unsigned i, unsigned node, int state,
				     int role)
{
	Drift__Cluster__V1__SetNode s = DRIFT__CLUSTER__V1__SET_NODE__INIT;
	s.id = (char *)node_id(node);
	s.state = state;
	s.role = role;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_NODE;
	c.set_node = &s;
	return propose(i, &c);
}

static struct prop *propose_drop(unsigned i, const char *name)
{
	Drift__Cluster__V1__DropCollection d =
		DRIFT__CLUSTER__V1__DROP_COLLECTION__INIT;
	d.name = (char *)name;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_DROP_COLLECTION;
	c.drop_collection = &d;
	return propose(i, &c);
}

/* A CreateCollection placed, as the leader does, on member i's current
 * state (drift_meta_place); NULL when that state cannot place it. */
static struct prop *propose_create(unsigned i, const char *name,
				   uint32_t shards, uint32_t rf)
{
	drift_meta *st = drift_fsm_state(mem[i].fsm);
	uint32_t *idx = NULL;
	int prv = drift_meta_place(st, NULL, shards, rf, &idx);
	if (prv != 0) {
		drift_meta_unref(st);
		return NULL;
	}
	Drift__Cluster__V1__Collection col =
		DRIFT__CLUSTER__V1__COLLECTION__INIT;
	col.name = (char *)name;
	col.dimension = 16;
	col.metric = 1;
	col.shards = shards;
	col.replication_factor = rf;
	col.memtable_rows = 1000;
	col.default_recall = 0.95f;
	Drift__Cluster__V1__Shard sh[16], *ps[16];
	char *ids[16][DRIFT_META_MAX_RF];
	cr_assert_leq(shards, 16);
	for (uint32_t s = 0; s < shards; s++) {
		drift__cluster__v1__shard__init(&sh[s]);
		sh[s].collection = (char *)name;
		sh[s].shard = s;
		for (uint32_t r = 0; r < rf; r++)
			ids[s][r] = st->nodes[idx[s * rf + r]].id;
		sh[s].nodes = ids[s];
		sh[s].n_nodes = rf;
		sh[s].in_sync = ids[s];
		sh[s].n_in_sync = rf;
		ps[s] = &sh[s];
	}
	Drift__Cluster__V1__CreateCollection cc =
		DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
	cc.collection = &col;
	cc.shards = ps;
	cc.n_shards = shards;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION;
	c.create_collection = &cc;
	struct prop *p = propose(i, &c);
	drift_free(idx);
	drift_meta_unref(st);
	return p;
}

static void change_cb(struct raft_change *req, int status)
{
	struct change *c = req->data;
	c->done = true;
	c->status = status;
}

static struct change *change_new(void)
{
	struct change *c = calloc(1, sizeof(*c));
	cr_assert_not_null(c);
	c->next = changes;
	changes = c;
	c->req.data = c;
	return c;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	struct barrier *b = req->data;
	b->done = true;
	b->status = status;
}

/* ---- Helpers: driving and checking ------------------------------------ */

static bool prop_done(struct raft_fixture *f, void *arg)
{
	(void)f;
	return ((struct prop *)arg)->done;
}

static bool change_done(struct raft_fixture *f, void *arg)
{
	(void)f;
	return ((struct change *)arg)->done;
}

static bool barrier_done(struct raft_fixture *f, void *arg)
{
	(void)f;
	return ((struct barrier *)arg)->done;
}

/* Waits for p and asserts it committed; returns the command's code. */
static int wait_prop(struct prop *p)
{
	cr_assert_not_null(p);
	cr_assert(raft_fixture_step_until(&fx, prop_done, p, 10000),
		  "a proposal never completed");
	cr_assert_eq(p->status, 0, "proposal failed: %s",
		     raft_strerror(p->status));
	return p->rv;
}

static void wait_change(struct change *c)
{
	cr_assert(raft_fixture_step_until(&fx, change_done, c, 30000),
		  "a configuration change never completed");
	cr_assert_eq(c->status, 0, "configuration change failed: %s",
		     raft_strerror(c->status));
}

/* The fixture's stable leader, alive (it notices a kill at its next
 * step only). */
static bool has_leader(struct raft_fixture *f, void *arg)
{
	(void)arg;
	unsigned l = raft_fixture_leader_index(f);
	return l < f->n && raft_fixture_alive(f, l) &&
	       raft_state(raft_fixture_get(f, l)) == RAFT_LEADER;
}

static unsigned leader(void)
{
	cr_assert(raft_fixture_step_until(&fx, has_leader, NULL, 20000),
		  "no leader");
	return raft_fixture_leader_index(&fx);
}

static bool member_in(unsigned i)
{
	return raft_fixture_alive(&fx, i) && !mem[i].removed;
}

/* Every live member has applied the leader's whole log. */
static bool converged(struct raft_fixture *f, void *arg)
{
	(void)arg;
	unsigned l = raft_fixture_leader_index(f);
	if (l >= f->n)
		return false;
	raft_index last = raft_last_index(raft_fixture_get(f, l));
	if (raft_commit_index(raft_fixture_get(f, l)) != last)
		return false;
	for (unsigned i = 0; i < f->n; i++)
		if (member_in(i) &&
		    raft_last_applied(raft_fixture_get(f, i)) != last)
			return false;
	return true;
}

/* Commits a barrier on the leader (so that entries of earlier terms
 * commit too) and waits until every live member has applied everything. */
static void settle(void)
{
	for (int tries = 0; tries < 10; tries++) {
		unsigned l = leader();
		struct barrier *b = calloc(1, sizeof(*b));
		cr_assert_not_null(b);
		b->next = barriers;
		barriers = b;
		b->req.data = b;
		if (raft_barrier(raft_fixture_get(&fx, l), &b->req,
				 barrier_cb) != 0)
			continue;
		if (!raft_fixture_step_until(&fx, barrier_done, b, 20000) ||
		    b->status != 0)
			continue;
		if (raft_fixture_step_until(&fx, converged, NULL, 20000))
			return;
	}
	cr_assert_fail("the cluster did not settle (seed %llu)",
		       (unsigned long long)seed_now);
}

static void encode(drift_meta *m, void **buf, size_t *len)
{
	cr_assert_eq(drift_meta_encode(m, buf, len), 0);
}

static bool same_state(unsigned i, const void *buf, size_t len)
{
	drift_meta *m = drift_fsm_state(mem[i].fsm);
	void *e;
	size_t n;
	encode(m, &e, &n);
	drift_meta_unref(m);
	bool same = n == len && memcmp(e, buf, len) == 0;
	drift_free(e);
	return same;
}

/* The committed commands applied once, in index order, to an empty
 * state, as cluster/fsm.c does (a refused command changes nothing); each
 * command's code in cmdlog. */
static drift_meta *reference(void)
{
	drift_meta *st;
	cr_assert_eq(drift_meta_new(&st), 0);
	for (size_t i = 0; i < cmdlog_cap; i++) {
		if (cmdlog[i].bytes == NULL)
			continue;
		Drift__Cluster__V1__Command *c;
		cr_assert_eq(drift_meta_cmd_decode(cmdlog[i].bytes,
						   cmdlog[i].len, &c),
			     0);
		drift_meta *next;
		cr_assert_eq(drift_meta_clone(st, &next), 0);
		cmdlog[i].rv = drift_meta_apply(next, c, NULL);
		if (cmdlog[i].rv == 0) {
			drift_meta_unref(st);
			st = next;
		} else {
			drift_meta_unref(next);
		}
		drift__cluster__v1__command__free_unpacked(c, NULL);
	}
	return st;
}

/* Every live member's state is the reference state, byte for byte (the
 * reference state's encoding in *buf when buf is not NULL), and every
 * proposal acknowledged as committed is in the log where raft_apply put
 * it, with the result its callback reported. */
static void assert_all_same(void **buf, size_t *len)
{
	drift_meta *ref = reference();
	for (struct prop *p = props; p != NULL; p = p->next) {
		if (!p->done || p->status != 0)
			continue;
		cr_assert_lt(p->index, cmdlog_cap);
		const struct entry *e = &cmdlog[p->index];
		cr_assert(e->bytes != NULL && e->len == p->len &&
				  memcmp(e->bytes, p->bytes, p->len) == 0,
			  "an acknowledged command is not in the log at "
			  "index %llu",
			  (unsigned long long)p->index);
		cr_assert_eq(p->rv, e->rv,
			     "index %llu: the proposer was told %d, the "
			     "command gives %d",
			     (unsigned long long)p->index, p->rv, e->rv);
	}
	void *e;
	size_t n;
	encode(ref, &e, &n);
	for (unsigned i = 0; i < n_mem; i++)
		if (member_in(i))
			cr_assert(same_state(i, e, n),
				  "member %u differs from the committed "
				  "commands applied once (seed %llu)",
				  i, (unsigned long long)seed_now);
	drift_meta_unref(ref);
	if (buf != NULL) {
		*buf = e;
		*len = n;
	} else {
		drift_free(e);
	}
}

static drift_meta *state_of(unsigned i)
{
	return drift_fsm_state(mem[i].fsm);
}

static bool has_col(unsigned i, const char *name)
{
	drift_meta *m = state_of(i);
	bool has = drift_meta_col_find(m, name) != NULL;
	drift_meta_unref(m);
	return has;
}

/* Bootstraps the metadata: member l proposes Bootstrap for its node and
 * AddNode for the n - 1 others, and they commit. */
static void bootstrap_meta(unsigned l, unsigned n)
{
	cr_assert_eq(wait_prop(propose_bootstrap(l)), 0);
	for (unsigned i = 0; i < n; i++)
		if (i != l)
			cr_assert_eq(wait_prop(propose_add_node(
					     l, i, DRIFT_ROLE_VOTER)),
				     0);
}

static void partition(const unsigned *side, unsigned n_side)
{
	for (unsigned i = 0; i < n_mem; i++) {
		bool in = false;
		for (unsigned k = 0; k < n_side; k++)
			in |= side[k] == i;
		if (!in)
			continue;
		for (unsigned j = 0; j < n_mem; j++) {
			bool jin = false;
			for (unsigned k = 0; k < n_side; k++)
				jin |= side[k] == j;
			if (jin)
				continue;
			raft_fixture_disconnect(&fx, i, j);
			raft_fixture_disconnect(&fx, j, i);
		}
	}
}

static void heal(void)
{
	for (unsigned i = 0; i < n_mem; i++)
		for (unsigned j = 0; j < n_mem; j++)
			if (i != j && raft_fixture_alive(&fx, i) &&
			    raft_fixture_alive(&fx, j))
				raft_fixture_reconnect(&fx, i, j);
}

/* ---- Cases ------------------------------------------------------------ */

static void election(unsigned n)
{
	cluster_start(n, n, 0, 0);
	unsigned l = leader();
	unsigned leaders = 0;
	for (unsigned i = 0; i < n; i++)
		leaders += raft_state(raft_fixture_get(&fx, i)) == RAFT_LEADER;
	cr_assert_eq(leaders, 1, "%u leaders", leaders);
	bootstrap_meta(l, n);
	cr_assert_eq(wait_prop(propose_create(l, "a", 4, 2)), 0);
	settle();
	drift_meta *st = state_of(l);
	cr_assert_eq(st->n_nodes, n);
	cr_assert_eq(st->n_cols, 1);
	cr_assert_eq(st->version, n + 1);
	drift_meta_unref(st);
	assert_all_same(NULL, NULL);
}

DRIFT_TEST(raft_fixture, election_3)
{
	election(3);
}

DRIFT_TEST(raft_fixture, election_5)
{
	election(5);
}

static void leader_loss(unsigned n)
{
	cluster_start(n, n, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, n);
	cr_assert_eq(wait_prop(propose_create(l, "before", 2, 2)), 0);
	raft_term t = raft_current_term(raft_fixture_get(&fx, l));
	raft_fixture_kill(&fx, l);
	unsigned l2 = leader();
	cr_assert_neq(l2, l);
	cr_assert_gt(raft_current_term(raft_fixture_get(&fx, l2)), t);
	/* The node is down: the new leader records it and goes on. */
	cr_assert_eq(wait_prop(propose_set_node(l2, l, DRIFT_NODE_DOWN,
						DRIFT_ROLE_VOTER)),
		     0);
	cr_assert_eq(wait_prop(propose_create(l2, "after", 3, 2)), 0);
	drift_meta *st = state_of(l2);
	const drift_meta_collection *c = drift_meta_col_find(st, "after");
	cr_assert_not_null(c);
	for (uint32_t s = 0; s < c->shards; s++)
		for (uint32_t r = 0; r < c->shard[s].n; r++)
			cr_assert_str_neq(c->shard[s].nodes[r], node_id(l),
					  "placed on the node that is DOWN");
	drift_meta_unref(st);
	settle();
	cr_assert(!has_col(l, "after"), "the dead member applied");
	/* Back: it follows the new leader and catches up. */
	raft_fixture_revive(&fx, l);
	cr_assert_eq(wait_prop(propose_set_node(l2, l, DRIFT_NODE_UP,
						DRIFT_ROLE_VOTER)),
		     0);
	settle();
	cr_assert(has_col(l, "after"));
	cr_assert_neq(raft_state(raft_fixture_get(&fx, l)), RAFT_LEADER);
	assert_all_same(NULL, NULL);
}

DRIFT_TEST(raft_fixture, leader_loss_3)
{
	leader_loss(3);
}

DRIFT_TEST(raft_fixture, leader_loss_5)
{
	leader_loss(5);
}

/* The leader and one follower on one side, the other three on the other:
 * the minority leader's entries commit nowhere, the majority elects a
 * leader and commits; healed, the minority's entries are gone. */
DRIFT_TEST(raft_fixture, partition_leader_in_minority)
{
	cluster_start(5, 5, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, 5);
	settle();
	unsigned f = (l + 1) % 5;
	unsigned minority[2] = {l, f}, majority[3];
	for (unsigned i = 0, k = 0; i < 5; i++)
		if (i != l && i != f)
			majority[k++] = i;
	partition(minority, 2);
	struct prop *lost = propose_create(l, "minority", 2, 2);
	cr_assert_not_null(lost);
	cr_assert_eq(lost->status, 0, "the old leader takes it");
	/* The majority elects its own leader ... */
	raft_fixture_step_until_elapsed(&fx, 3000);
	unsigned l2 = 5;
	for (unsigned k = 0; k < 3; k++)
		if (raft_state(raft_fixture_get(&fx, majority[k])) ==
		    RAFT_LEADER)
			l2 = majority[k];
	cr_assert_lt(l2, 5, "the majority has no leader");
	cr_assert_neq(raft_state(raft_fixture_get(&fx, l)), RAFT_LEADER,
		      "a leader without a majority steps down");
	/* ... and commits. */
	struct prop *won = propose_create(l2, "majority", 2, 2);
	cr_assert(raft_fixture_step_until(&fx, prop_done, won, 10000));
	cr_assert_eq(won->status, 0);
	cr_assert_eq(won->rv, 0);
	cr_assert(lost->done, "the old leader's proposal is failed when "
			      "it steps down");
	cr_assert_neq(lost->status, 0);
	raft_fixture_step_until_elapsed(&fx, 1000);
	for (unsigned i = 0; i < 5; i++) {
		cr_assert(!has_col(i, "minority"),
			  "member %u applied an "
			  "uncommitted entry",
			  i);
		bool maj = i != l && i != f;
		cr_assert_eq(has_col(i, "majority"), maj, "member %u", i);
	}
	heal();
	settle();
	for (unsigned i = 0; i < 5; i++) {
		cr_assert(!has_col(i, "minority"));
		cr_assert(has_col(i, "majority"));
	}
	assert_all_same(NULL, NULL);
}

/* The other way: two followers cut off. The leader keeps its majority
 * and commits; the two apply nothing until they are back. */
DRIFT_TEST(raft_fixture, partition_leader_in_majority)
{
	cluster_start(5, 5, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, 5);
	settle();
	raft_term t = raft_current_term(raft_fixture_get(&fx, l));
	unsigned cut[2] = {(l + 1) % 5, (l + 2) % 5};
	partition(cut, 2);
	for (int k = 0; k < 4; k++) {
		char name[16];
		snprintf(name, sizeof(name), "m%d", k);
		cr_assert_eq(wait_prop(propose_create(l, name, 2, 3)), 0);
	}
	cr_assert_eq(wait_prop(propose_drop(l, "m0")), 0);
	raft_fixture_step_until_elapsed(&fx, 3000);
	cr_assert_eq(raft_state(raft_fixture_get(&fx, l)), RAFT_LEADER);
	cr_assert_eq(raft_current_term(raft_fixture_get(&fx, l)), t,
		     "the cut-off followers did not disturb the leader");
	for (unsigned k = 0; k < 2; k++) {
		cr_assert(!has_col(cut[k], "m1"));
		cr_assert_neq(raft_state(raft_fixture_get(&fx, cut[k])),
			      RAFT_LEADER, "a minority elects nobody");
	}
	heal();
	settle();
	for (unsigned i = 0; i < 5; i++) {
		cr_assert(!has_col(i, "m0"));
		cr_assert(has_col(i, "m3"));
	}
	assert_all_same(NULL, NULL);
}

/* A member stopped and started again replays the whole log into a new,
 * empty state machine: the same state, no collection twice (the log has
 * a create, a drop and a create again of one name). Then every member at
 * once, as after a stop of the whole cluster. */
static void replay(unsigned n)
{
	cluster_start(n, n, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, n);
	cr_assert_eq(wait_prop(propose_create(l, "x", 2, 2)), 0);
	cr_assert_eq(wait_prop(propose_create(l, "y", 1, 1)), 0);
	cr_assert_eq(wait_prop(propose_drop(l, "x")), 0);
	cr_assert_eq(wait_prop(propose_create(l, "x", 3, 2)), 0);
	cr_assert_eq(wait_prop(propose_create(l, "y", 1, 1)), DRIFT_EEXIST);
	settle();
	void *before;
	size_t len;
	assert_all_same(&before, &len);
	unsigned f = (l + 1) % n;
	unsigned applied = mem[f].applies;
	restart(f);
	settle();
	cr_assert_gt(mem[f].applies, applied, "the log was replayed");
	cr_assert_eq(mem[f].restores, 0);
	cr_assert(same_state(f, before, len), "replayed state differs");
	drift_meta *st = state_of(f);
	cr_assert_eq(st->n_cols, 2, "collections twice?");
	drift_meta_unref(st);
	/* The leader itself, then all of them. */
	restart(l);
	settle();
	cr_assert(same_state(l, before, len));
	for (unsigned i = 0; i < n; i++)
		raft_fixture_kill(&fx, i);
	for (unsigned i = 0; i < n; i++)
		restart(i);
	for (unsigned i = 0; i < n; i++)
		raft_fixture_revive(&fx, i);
	settle();
	for (unsigned i = 0; i < n; i++)
		cr_assert(same_state(i, before, len), "member %u", i);
	/* And it goes on. */
	l = leader();
	cr_assert_eq(wait_prop(propose_drop(l, "y")), 0);
	settle();
	assert_all_same(NULL, NULL);
	drift_free(before);
}

DRIFT_TEST(raft_fixture, replay_3)
{
	replay(3);
}

DRIFT_TEST(raft_fixture, replay_5)
{
	replay(5);
}

/* Small snapshot threshold: snapshots are taken and the log compacted, so
 * a member that was away gets the snapshot (install, restore) and ends
 * identical; restarted, it restores its snapshot and replays the tail. */
DRIFT_TEST(raft_fixture, snapshot_install_and_restart)
{
	cluster_start(3, 3, 8, 2);
	unsigned l = leader();
	unsigned lag = (l + 1) % 3;
	/* The lagging member keeps the default threshold (see the top). */
	mem[lag].threshold = 0;
	mem[lag].trailing = 0;
	raft_set_snapshot_threshold(raft_fixture_get(&fx, lag), 1024);
	raft_set_snapshot_trailing(raft_fixture_get(&fx, lag), 2048);
	bootstrap_meta(l, 3);
	settle();
	raft_fixture_kill(&fx, lag);
	for (int k = 0; k < 30; k++) {
		char name[16];
		snprintf(name, sizeof(name), "s%02d", k);
		cr_assert_eq(wait_prop(propose_create(l, name, 2, 2)), 0);
		if (k % 3 == 2) {
			snprintf(name, sizeof(name), "s%02d", k - 1);
			cr_assert_eq(wait_prop(propose_drop(l, name)), 0);
		}
	}
	settle();
	cr_assert_gt(mem[l].snapshots, 0, "the leader took no snapshot");
	cr_assert_eq(mem[lag].restores, 0);
	raft_fixture_revive(&fx, lag);
	settle();
	cr_assert_gt(raft_fixture_n_recv(&fx, lag, RAFT_INSTALL_SNAPSHOT), 0);
	cr_assert_gt(mem[lag].restores, 0, "no restore");
	void *before;
	size_t len;
	assert_all_same(&before, &len);
	drift_meta *st = state_of(lag);
	cr_assert_eq(st->n_cols, 20);
	drift_meta_unref(st);
	/* Restart: snapshot + tail into an empty state machine. */
	cr_assert_eq(wait_prop(propose_create(l, "tail", 1, 1)), 0);
	settle();
	drift_free(before);
	assert_all_same(&before, &len);
	restart(lag);
	cr_assert_eq(mem[lag].restores, 2, "the snapshot restored at start");
	settle();
	cr_assert(same_state(lag, before, len));
	assert_all_same(NULL, NULL);
	drift_free(before);
}

/* 3 voters grow to 5 (raft_add as a spare, raft_assign to voter: catch-up
 * then promotion) and a sixth as a standby; the new members get the whole
 * state; a voter removed (raft_remove) and stopped; leadership handed
 * over (raft_transfer); the rest goes on, identical. */
static void transfer_cb(struct raft_transfer *req)
{
	*(bool *)req->data = true;
}

static bool flag_set(struct raft_fixture *f, void *arg)
{
	(void)f;
	return *(bool *)arg;
}

static void grow(unsigned l, int role)
{
	unsigned i = n_mem;
	member_init(i, 0, 0);
	cr_assert_eq(raft_fixture_grow(&fx, &mem[i].wrap), 0);
	n_mem++;
	member_tune(i);
	struct raft *r = raft_fixture_get(&fx, i);
	cr_assert_eq(raft_start(r), 0);
	struct raft *lr = raft_fixture_get(&fx, l);
	struct change *c = change_new();
	cr_assert_eq(raft_add(lr, &c->req, i + 1, mem[i].address, change_cb),
		     0);
	wait_change(c);
	c = change_new();
	cr_assert_eq(raft_assign(lr, &c->req, i + 1, role, change_cb), 0);
	wait_change(c);
	cr_assert_eq(wait_prop(propose_add_node(l, i,
						role == RAFT_VOTER
							? DRIFT_ROLE_VOTER
							: DRIFT_ROLE_STANDBY)),
		     0);
}

static unsigned voters_of(unsigned i)
{
	struct raft *r = raft_fixture_get(&fx, i);
	unsigned v = 0;
	for (unsigned k = 0; k < r->configuration.n; k++)
		v += r->configuration.servers[k].role == RAFT_VOTER;
	return v;
}

DRIFT_TEST(raft_fixture, membership)
{
	cluster_start(3, 3, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, 3);
	cr_assert_eq(wait_prop(propose_create(l, "a", 3, 3)), 0);
	grow(l, RAFT_VOTER);
	grow(l, RAFT_VOTER);
	grow(l, RAFT_STANDBY);
	settle();
	cr_assert_eq(n_mem, 6);
	for (unsigned i = 0; i < 6; i++) {
		cr_assert_eq(voters_of(i), 5, "member %u", i);
		cr_assert_eq(raft_fixture_get(&fx, i)->configuration.n, 6);
	}
	cr_assert(has_col(5, "a"), "the standby has the state");
	assert_all_same(NULL, NULL);
	/* Two voters down of five: the other three still commit. */
	unsigned d1 = (l + 1) % 5, d2 = (l + 2) % 5;
	raft_fixture_kill(&fx, d1);
	raft_fixture_kill(&fx, d2);
	cr_assert_eq(wait_prop(propose_create(l, "b", 2, 2)), 0);
	raft_fixture_revive(&fx, d1);
	raft_fixture_revive(&fx, d2);
	settle();
	/* A voter out of Raft's configuration (its node stays in the
	 * state, marked LEAVING: RemoveNode waits for its shards to move). */
	unsigned gone = (l + 3) % 5;
	struct change *c = change_new();
	cr_assert_eq(raft_remove(raft_fixture_get(&fx, l), &c->req, gone + 1,
				 change_cb),
		     0);
	wait_change(c);
	raft_fixture_kill(&fx, gone);
	mem[gone].removed = true;
	cr_assert_eq(wait_prop(propose_set_node(l, gone, DRIFT_NODE_LEAVING,
						DRIFT_ROLE_STANDBY)),
		     0);
	settle();
	for (unsigned i = 0; i < 6; i++)
		if (member_in(i))
			cr_assert_eq(voters_of(i), 4, "member %u", i);
	/* Hand leadership over, as a leader stopped with SIGTERM does. */
	bool moved = false;
	struct raft_transfer tr;
	tr.data = &moved;
	raft_time t0 = raft_fixture_time(&fx);
	cr_assert_eq(
		raft_transfer(raft_fixture_get(&fx, l), &tr, 0, transfer_cb),
		0);
	cr_assert(raft_fixture_step_until(&fx, flag_set, &moved, 5000));
	unsigned l2 = leader();
	cr_assert_neq(l2, l);
	cr_assert_lt(raft_fixture_time(&fx) - t0, 1000,
		     "a hand-over takes no election timeout");
	cr_assert_eq(wait_prop(propose_drop(l2, "a")), 0);
	settle();
	cr_assert(!has_col(l, "a"));
	assert_all_same(NULL, NULL);
}

/* Valid and invalid commands that commit in one batch (proposed while
 * the followers were briefly out of reach, so one AppendEntries carries
 * them all): the library applies the whole batch before it fires their
 * callbacks, and each proposer must still see its own command's result. */
DRIFT_TEST(raft_fixture, results_of_one_batch)
{
	cluster_start(3, 3, 0, 0);
	unsigned l = leader();
	bootstrap_meta(l, 3);
	settle();
	for (unsigned i = 0; i < 3; i++)
		if (i != l)
			raft_fixture_disconnect(&fx, l, i);
	struct prop *ok = propose_create(l, "z", 1, 1);
	struct prop *dup = propose_create(l, "z", 1, 1);
	struct prop *ok2 = propose_drop(l, "z");
	raft_fixture_step_until_elapsed(&fx, 300);
	cr_assert(!ok->done);
	heal();
	cr_assert_eq(wait_prop(ok), 0, "%s", ok->err.msg);
	cr_assert_eq(wait_prop(dup), DRIFT_EEXIST);
	cr_assert(strstr(dup->err.msg, "already exists") != NULL, "%s",
		  dup->err.msg);
	cr_assert_eq(wait_prop(ok2), 0, "%s", ok2->err.msg);
	/* Many more, alternately valid and not. */
	for (unsigned i = 0; i < 3; i++)
		if (i != l)
			raft_fixture_disconnect(&fx, l, i);
	struct prop *many[2 * DRIFT_FSM_RESULTS];
	for (unsigned k = 0; k < 2 * DRIFT_FSM_RESULTS; k++) {
		char name[16];
		snprintf(name, sizeof(name), "b%u", k / 2);
		many[k] = propose_create(l, name, 1, 1);
	}
	raft_fixture_step_until_elapsed(&fx, 300);
	heal();
	for (unsigned k = 0; k < 2 * DRIFT_FSM_RESULTS; k++) {
		int rv = wait_prop(many[k]);
		cr_assert_eq(rv, k % 2 ? DRIFT_EEXIST : 0, "proposal %u", k);
		if (rv != 0)
			cr_assert(strstr(many[k]->err.msg, "already exists"),
				  "%s", many[k]->err.msg);
	}
	settle();
	assert_all_same(NULL, NULL);
}

/* More commands applied before their callbacks run than the state machine
 * keeps messages of (driven without Raft): the codes stay exact, the
 * oldest messages become generic ones. */
DRIFT_TEST(raft_fixture, results_past_the_ring)
{
	drift_fsm *f;
	cr_assert_eq(drift_fsm_new(NULL, NULL, &f), 0);
	struct raft_fsm *rf = drift_fsm_raft(f);
	enum { N = DRIFT_FSM_RESULTS + 8 };
	void *res[N];
	for (unsigned k = 0; k < N; k++) {
		/* A drop of a collection that does not exist, or a bootstrap
		 * (the first one succeeds, the others are refused). */
		Drift__Cluster__V1__DropCollection d =
			DRIFT__CLUSTER__V1__DROP_COLLECTION__INIT;
		d.name = "nothing";
		char a[32], ra[32];
		Drift__Cluster__V1__Node n = pbnode(0, a, ra);
		Drift__Cluster__V1__Bootstrap b =
			DRIFT__CLUSTER__V1__BOOTSTRAP__INIT;
		b.cluster_id = "c1";
		b.node = &n;
		Drift__Cluster__V1__Command c =
			DRIFT__CLUSTER__V1__COMMAND__INIT;
		if (k % 2) {
			c.cmd_case =
				DRIFT__CLUSTER__V1__COMMAND__CMD_DROP_COLLECTION;
			c.drop_collection = &d;
		} else {
			c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_BOOTSTRAP;
			c.bootstrap = &b;
		}
		struct raft_buffer buf;
		cr_assert_eq(
			drift_meta_cmd_encode(&c, false, &buf.base, &buf.len),
			0);
		cr_assert_eq(rf->apply(rf, &buf, &res[k]), 0);
		drift_free(buf.base);
	}
	for (unsigned k = 0; k < N; k++) {
		drift_err err;
		int want = k == 0 ? 0 : k % 2 ? DRIFT_ENOENT : DRIFT_EEXIST;
		cr_assert_eq(drift_fsm_result(f, res[k], &err), want, "%u", k);
		cr_assert_eq(err.code, want);
		const char *own = k % 2 ? "no collection nothing"
					: "already bootstrapped";
		if (k == 0)
			cr_assert_str_empty(err.msg);
		else if (k >= N - DRIFT_FSM_RESULTS)
			cr_assert(strstr(err.msg, own) != NULL, "%u: %s", k,
				  err.msg);
		else
			cr_assert(strstr(err.msg, own) == NULL &&
					  strstr(err.msg, drift_strerror(want)),
				  "%u: %s", k, err.msg);
	}
	drift_meta *st = drift_fsm_state(f);
	cr_assert_eq(st->version, 1);
	drift_meta_unref(st);
	drift_fsm_free(f);
}

/* ---- Cases: a seeded random schedule of faults ------------------------ */

static const char *col_names[] = {"c0", "c1", "c2", "c3", "c4", "c5"};

static struct prop *propose_remove_node(unsigned i, unsigned node)
{
	Drift__Cluster__V1__RemoveNode r =
		DRIFT__CLUSTER__V1__REMOVE_NODE__INIT;
	r.id = (char *)node_id(node);
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_REMOVE_NODE;
	c.remove_node = &r;
	return propose(i, &c);
}

/* A move of one shard of one of member i's collections to rf random
 * distinct nodes (the first of them in sync), as a failover would. */
static void propose_random_move(drift_rand *rng, unsigned i, unsigned n)
{
	drift_meta *st = state_of(i);
	if (st->n_cols == 0) {
		drift_meta_unref(st);
		return;
	}
	const drift_meta_collection *col =
		&st->cols[drift_rand_below(rng, st->n_cols)];
	uint32_t rf = col->replication_factor;
	unsigned pick[MAXN];
	for (unsigned k = 0; k < n; k++)
		pick[k] = k;
	for (unsigned k = 0; k + 1 < n; k++) {
		unsigned o = k + (unsigned)drift_rand_below(rng, n - k);
		unsigned t = pick[k];
		pick[k] = pick[o];
		pick[o] = t;
	}
	char *ids[DRIFT_META_MAX_RF];
	for (uint32_t r = 0; r < rf && r < n; r++)
		ids[r] = (char *)node_id(pick[r]);
	Drift__Cluster__V1__Shard sh = DRIFT__CLUSTER__V1__SHARD__INIT;
	Drift__Cluster__V1__Shard *ps = &sh;
	sh.collection = (char *)col->name;
	sh.shard = (uint32_t)drift_rand_below(rng, col->shards);
	sh.nodes = ids;
	sh.n_nodes = rf < n ? rf : n;
	sh.in_sync = ids;
	sh.n_in_sync = 1;
	Drift__Cluster__V1__SetShards ss = DRIFT__CLUSTER__V1__SET_SHARDS__INIT;
	ss.shards = &ps;
	ss.n_shards = 1;
	Drift__Cluster__V1__Command c = DRIFT__CLUSTER__V1__COMMAND__INIT;
	c.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_SHARDS;
	c.set_shards = &ss;
	(void)propose(i, &c);
	drift_meta_unref(st);
}

static void random_command(drift_rand *rng, unsigned l, unsigned n)
{
	unsigned what = (unsigned)drift_rand_below(rng, 13);
	const char *name = col_names[drift_rand_below(rng, 6)];
	if (what < 4) {
		uint32_t rf = 1 + (uint32_t)drift_rand_below(rng, 3);
		(void)propose_create(
			l, name, 1 + (uint32_t)drift_rand_below(rng, 4), rf);
	} else if (what < 6) {
		(void)propose_drop(l, name);
	} else if (what < 8) {
		unsigned node = (unsigned)drift_rand_below(rng, n);
		(void)propose_set_node(l, node,
				       drift_rand_below(rng, 2)
					       ? DRIFT_NODE_UP
					       : DRIFT_NODE_DOWN,
				       DRIFT_ROLE_VOTER);
	} else if (what < 9) {
		/* Often already a member: refused alike everywhere. */
		(void)propose_add_node(l, (unsigned)drift_rand_below(rng, n),
				       DRIFT_ROLE_VOTER);
	} else if (what < 11) {
		propose_random_move(rng, l, n);
	} else {
		/* Refused while the node holds shards. */
		(void)propose_remove_node(l,
					  (unsigned)drift_rand_below(rng, n));
	}
}

/* steps of: a command on whoever thinks it leads, time passing, a member
 * killed (at most a minority at once) or revived, restarted (when the
 * seed takes no snapshots), a one-way link cut or mended. Then healed and
 * settled: every member identical, and equal to the committed commands
 * applied once. */
static void schedule(uint64_t seed, unsigned n, unsigned steps, bool snaps)
{
	drift_rand rng;
	drift_rand_seed(&rng, seed);
	seed_now = seed;
	cluster_start(n, n, snaps ? 6 : 0, snaps ? 1024 : 0);
	unsigned l = leader();
	bootstrap_meta(l, n);
	unsigned dead = 0;
	for (unsigned s = 0; s < steps; s++) {
		unsigned op = (unsigned)drift_rand_below(&rng, 100);
		unsigned i = (unsigned)drift_rand_below(&rng, n);
		unsigned j = (unsigned)drift_rand_below(&rng, n);
		if (op < 40) {
			/* 1..3 commands on the first member that thinks it
			 * leads (a deposed one's never commit). */
			unsigned burst =
				1 + (unsigned)drift_rand_below(&rng, 3);
			for (unsigned k = 0; k < n; k++)
				if (raft_fixture_alive(&fx, k) &&
				    raft_state(raft_fixture_get(&fx, k)) ==
					    RAFT_LEADER) {
					for (unsigned b = 0; b < burst; b++)
						random_command(&rng, k, n);
					break;
				}
		} else if (op < 65) {
			raft_fixture_step_until_elapsed(
				&fx,
				10 + (unsigned)drift_rand_below(&rng, 300));
		} else if (op < 73) {
			if (raft_fixture_alive(&fx, i) && dead < (n - 1) / 2) {
				raft_fixture_kill(&fx, i);
				dead++;
			}
		} else if (op < 81) {
			if (!raft_fixture_alive(&fx, i)) {
				raft_fixture_revive(&fx, i);
				dead--;
			}
		} else if (op < 85) {
			if (!snaps)
				restart(i);
		} else if (op < 91) {
			if (i != j)
				raft_fixture_disconnect(&fx, i, j);
		} else if (op < 97) {
			if (i != j && raft_fixture_alive(&fx, i) &&
			    raft_fixture_alive(&fx, j))
				raft_fixture_reconnect(&fx, i, j);
		} else {
			heal();
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (!raft_fixture_alive(&fx, i))
			raft_fixture_revive(&fx, i);
	heal();
	settle();
	assert_all_same(NULL, NULL);
	/* Each member applied every committed command at most once per
	 * incarnation (checked on every apply); the state is not empty. */
	drift_meta *st = state_of(0);
	cr_assert_str_eq(st->cluster_id, "c1");
	cr_assert_gt(st->version, n);
	drift_meta_unref(st);
}

#define SEEDS 20
#define STEPS 400

DRIFT_TEST(raft_fixture, random_schedule_3)
{
	for (uint64_t seed = 1; seed <= SEEDS; seed++) {
		schedule(seed, 3, STEPS, seed % 2 == 0);
		teardown();
	}
}

DRIFT_TEST(raft_fixture, random_schedule_5)
{
	for (uint64_t seed = 101; seed <= 100 + SEEDS; seed++) {
		schedule(seed, 5, STEPS, seed % 2 == 0);
		teardown();
	}
}
