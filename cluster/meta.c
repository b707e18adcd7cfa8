/*
 * The cluster metadata state and its commands (see meta.h).
 */
#include "cluster/meta.h"

#include <raft.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/endian.h"
#include "common/hash.h"

/* The reference count lives next to the state, hidden from readers. */
struct meta_box {
	atomic_uint refs;
	drift_meta m;
};

#define BOX(m) ((struct meta_box *)((char *)(m)-offsetof(struct meta_box, m)))

/* A collection's shard placements are shared by every state that has not
 * changed them since (a clone takes a reference, a change copies first):
 * a command copies the collections' array but not every placement, so a
 * clone of a map of 10,000 collections is one allocation instead of
 * 10,001, and a reader comparing two states finds a collection unchanged
 * by its shard pointer (meta.h). */
struct shard_box {
	atomic_uint refs;
	drift_meta_shard s[];
};

#define SHARD_BOX(p)                                                           \
	((struct shard_box *)((char *)(p)-offsetof(struct shard_box, s)))

static drift_meta_shard *shards_new(uint32_t n)
{
	struct shard_box *b =
		drift_calloc(1, sizeof(*b) + (size_t)n * sizeof(b->s[0]));
	if (b == NULL)
		return NULL;
	atomic_init(&b->refs, 1);
	return b->s;
}

static void shards_unref(drift_meta_shard *s)
{
	if (s != NULL && atomic_fetch_sub(&SHARD_BOX(s)->refs, 1) == 1)
		drift_free(SHARD_BOX(s));
}

/* Makes c's placements its own before a change: DRIFT_ENOMEM or 0. */
static int shards_own(drift_meta_collection *c)
{
	if (atomic_load(&SHARD_BOX(c->shard)->refs) == 1)
		return 0;
	drift_meta_shard *s = shards_new(c->shards);
	if (s == NULL)
		return DRIFT_ENOMEM;
	memcpy(s, c->shard, c->shards * sizeof(*s));
	shards_unref(c->shard);
	c->shard = s;
	return 0;
}

/* ---- Helpers ---- */

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static bool str_fits(const char *s, size_t max)
{
	return s != NULL && strlen(s) <= max;
}

static void col_free(drift_meta_collection *c)
{
	shards_unref(c->shard);
	c->shard = NULL;
}

static void meta_clear(drift_meta *m)
{
	for (size_t i = 0; i < m->n_cols; i++)
		col_free(&m->cols[i]);
	drift_free(m->cols);
	drift_free(m->nodes);
	memset(m, 0, sizeof(*m));
}

static drift_meta_node *node_find(drift_meta *m, const char *id)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (strcmp(m->nodes[i].id, id) == 0)
			return &m->nodes[i];
	return NULL;
}

/* Index of the first collection whose name is >= name. */
static size_t col_lower(const drift_meta *m, const char *name)
{
	size_t lo = 0, hi = m->n_cols;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(m->cols[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static drift_meta_collection *col_find(drift_meta *m, const char *name)
{
	size_t i = col_lower(m, name);
	if (i < m->n_cols && strcmp(m->cols[i].name, name) == 0)
		return &m->cols[i];
	return NULL;
}

bool drift_meta_node_id_ok(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;
	if (n == 0 || n > DRIFT_NODE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = id[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
		      ch == '.'))
			return false;
	}
	return true;
}

uint64_t drift_meta_raft_id(const char *node_id)
{
	uint64_t h = drift_hash64_seeded(node_id, strlen(node_id),
					 0x64726966746e6f64ULL);
	return h != 0 ? h : 1;
}

/* ---- Life ---- */

int drift_meta_new(drift_meta **out)
{
	struct meta_box *b = drift_calloc(1, sizeof(*b));
	if (b == NULL)
		return DRIFT_ENOMEM;
	atomic_init(&b->refs, 1);
	b->m.max_voters = 3;
	*out = &b->m;
	return 0;
}

int drift_meta_clone(const drift_meta *src, drift_meta **out)
{
	drift_meta *m;
	if (drift_meta_new(&m) != 0)
		return DRIFT_ENOMEM;
	memcpy(m->cluster_id, src->cluster_id, sizeof(m->cluster_id));
	m->version = src->version;
	m->max_voters = src->max_voters;
	if (src->n_nodes > 0) {
		m->nodes = drift_mallocarray(src->n_nodes, sizeof(*m->nodes));
		if (m->nodes == NULL)
			goto fail;
		memcpy(m->nodes, src->nodes, src->n_nodes * sizeof(*m->nodes));
		m->n_nodes = src->n_nodes;
	}
	if (src->n_cols > 0) {
		m->cols = drift_mallocarray(src->n_cols, sizeof(*m->cols));
		if (m->cols == NULL)
			goto fail;
		memcpy(m->cols, src->cols, src->n_cols * sizeof(*m->cols));
		for (size_t i = 0; i < src->n_cols; i++)
			atomic_fetch_add(&SHARD_BOX(m->cols[i].shard)->refs, 1);
		m->n_cols = src->n_cols;
	}
	*out = m;
	return 0;
fail:
	drift_meta_unref(m);
	return DRIFT_ENOMEM;
}

drift_meta *drift_meta_ref(drift_meta *m)
{
	if (m != NULL)
		atomic_fetch_add(&BOX(m)->refs, 1);
	return m;
}

void drift_meta_unref(drift_meta *m)
{
	if (m == NULL)
		return;
	struct meta_box *b = BOX(m);
	if (atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	meta_clear(&b->m);
	drift_free(b);
}

/* ---- Lookups ---- */

const drift_meta_node *drift_meta_node_find(const drift_meta *m, const char *id)
{
	return node_find((drift_meta *)m, id);
}

const drift_meta_node *drift_meta_node_by_raft(const drift_meta *m,
					       uint64_t raft_id)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i].raft_id == raft_id)
			return &m->nodes[i];
	return NULL;
}

const drift_meta_collection *drift_meta_col_find(const drift_meta *m,
						 const char *name)
{
	return col_find((drift_meta *)m, name);
}

uint32_t drift_meta_node_load(const drift_meta *m, const char *id,
			      uint32_t *primaries)
{
	uint32_t n = 0, p = 0;
	for (size_t i = 0; i < m->n_cols; i++) {
		const drift_meta_collection *c = &m->cols[i];
		for (uint32_t s = 0; s < c->shards; s++)
			for (uint32_t r = 0; r < c->shard[s].n; r++)
				if (strcmp(c->shard[s].nodes[r], id) == 0) {
					n++;
					p += r == 0;
				}
	}
	if (primaries != NULL)
		*primaries = p;
	return n;
}

/* Whether node i is a better place than node j for a replica: fewer
 * replicas, then (for a primary) fewer primaries, then the smaller id. */
/* The index of node id in m->nodes, or m->n_nodes. */
static size_t node_index(const drift_meta *m, const char *id)
{
	size_t i = 0;
	while (i < m->n_nodes && strcmp(m->nodes[i].id, id) != 0)
		i++;
	return i;
}

int drift_meta_place(const drift_meta *m, const bool *skip, uint32_t shards,
		     uint32_t rf, uint32_t **idx)
{
	if (shards == 0 || m->n_nodes == 0)
		return DRIFT_EINVAL;
	/* Every shard of the cluster, so that the plan counts the load,
	 * then the new ones (n = 0). */
	size_t n_old = 0;
	for (size_t c = 0; c < m->n_cols; c++)
		n_old += m->cols[c].shards;
	struct drift_placement_node *nodes =
		drift_calloc(m->n_nodes, sizeof(*nodes));
	struct drift_placement_shard *sh =
		drift_calloc(n_old + shards, sizeof(*sh));
	uint32_t *out = drift_mallocarray((size_t)shards * rf, sizeof(*out));
	struct drift_placement_move *moves = NULL;
	size_t n_moves = 0;
	int rv = DRIFT_ENOMEM;
	if (nodes == NULL || sh == NULL || out == NULL)
		goto out;
	for (size_t i = 0; i < m->n_nodes; i++) {
		nodes[i].id = m->nodes[i].id;
		nodes[i].accepts = m->nodes[i].state == DRIFT_NODE_UP &&
				   (skip == NULL || !skip[i]);
	}
	size_t k = 0;
	for (size_t c = 0; c < m->n_cols; c++)
		for (uint32_t s = 0; s < m->cols[c].shards; s++, k++) {
			const drift_meta_shard *ms = &m->cols[c].shard[s];
			sh[k].rf = m->cols[c].replication_factor;
			/* Not a move's extra target (the last added). */
			for (uint32_t r = 0;
			     r < ms->n && sh[k].n < DRIFT_PLACEMENT_MAX_RF;
			     r++) {
				size_t i = node_index(m, ms->nodes[r]);
				if (i < m->n_nodes)
					sh[k].nodes[sh[k].n++] = nodes[i].id;
			}
		}
	for (uint32_t s = 0; s < shards; s++)
		sh[n_old + s].rf = rf;
	if ((rv = drift_placement_plan(nodes, m->n_nodes, sh, n_old + shards,
				       false, &moves, &n_moves)) != 0)
		goto out;
	for (uint32_t s = 0; s < shards; s++)
		for (uint32_t r = 0; r < rf; r++)
			out[(size_t)s * rf + r] =
				(uint32_t)node_index(m, sh[n_old + s].nodes[r]);
	*idx = out;
	out = NULL;
out:
	drift_free(moves);
	drift_free(out);
	drift_free(sh);
	drift_free(nodes);
	return rv;
}

uint32_t drift_meta_voters(const drift_meta *m)
{
	uint32_t v = 0;
	for (size_t i = 0; i < m->n_nodes; i++)
		v += m->nodes[i].role == DRIFT_ROLE_VOTER;
	return v;
}

/* ---- Commands ---- */

static int node_from_pb(const Drift__Cluster__V1__Node *p, drift_meta_node *n,
			drift_err *err)
{
	if (p == NULL || !drift_meta_node_id_ok(p->id))
		return drift_err_set(err, DRIFT_EINVAL,
				     "node id %s%s%s is not [A-Za-z0-9_.-]"
				     "{1,64}",
				     p && p->id ? "\"" : "",
				     p && p->id ? p->id : "(none)",
				     p && p->id ? "\"" : "");
	if (!str_fits(p->address, DRIFT_ADDR_MAX) || p->address[0] == '\0' ||
	    !str_fits(p->raft_address, DRIFT_ADDR_MAX) ||
	    p->raft_address[0] == '\0')
		return drift_err_set(err, DRIFT_EINVAL,
				     "node %s: gRPC and Raft addresses must "
				     "be 1..%d characters",
				     p->id, DRIFT_ADDR_MAX);
	memset(n, 0, sizeof(*n));
	copy_str(n->id, sizeof(n->id), p->id);
	n->raft_id = p->raft_id;
	copy_str(n->address, sizeof(n->address), p->address);
	copy_str(n->raft_address, sizeof(n->raft_address), p->raft_address);
	n->state = p->state;
	n->role = p->role == DRIFT_ROLE_STANDBY ? DRIFT_ROLE_STANDBY
						: DRIFT_ROLE_VOTER;
	n->added_version = p->added_version;
	return 0;
}

static int add_node(drift_meta *m, const drift_meta_node *n, drift_err *err)
{
	for (size_t i = 0; i < m->n_nodes; i++) {
		const drift_meta_node *o = &m->nodes[i];
		if (strcmp(o->id, n->id) == 0)
			return drift_err_set(err, DRIFT_EEXIST,
					     "node %s is already a member",
					     n->id);
		if (o->raft_id == n->raft_id)
			return drift_err_set(err, DRIFT_EEXIST,
					     "node %s: its Raft id is node "
					     "%s's (choose another id)",
					     n->id, o->id);
		if (strcmp(o->address, n->address) == 0 ||
		    strcmp(o->raft_address, n->raft_address) == 0)
			return drift_err_set(err, DRIFT_EEXIST,
					     "node %s: address %s / %s is "
					     "already node %s's",
					     n->id, n->address, n->raft_address,
					     o->id);
	}
	drift_meta_node *nn =
		drift_realloc(m->nodes, (m->n_nodes + 1) * sizeof(*nn));
	if (nn == NULL)
		return DRIFT_ENOMEM;
	m->nodes = nn;
	m->nodes[m->n_nodes] = *n;
	m->nodes[m->n_nodes].added_version = m->version + 1;
	m->n_nodes++;
	return 0;
}

static int apply_bootstrap(drift_meta *m,
			   const Drift__Cluster__V1__Bootstrap *b,
			   drift_err *err)
{
	if (m->cluster_id[0] != '\0')
		return drift_err_set(err, DRIFT_EEXIST,
				     "the cluster is already bootstrapped "
				     "(id %s)",
				     m->cluster_id);
	if (!drift_meta_node_id_ok(b->cluster_id))
		return drift_err_set(err, DRIFT_EINVAL, "bad cluster id");
	drift_meta_node n;
	int rv = node_from_pb(b->node, &n, err);
	if (rv != 0)
		return rv;
	n.role = DRIFT_ROLE_VOTER;
	n.state = DRIFT_NODE_UP;
	if ((rv = add_node(m, &n, err)) != 0)
		return rv;
	copy_str(m->cluster_id, sizeof(m->cluster_id), b->cluster_id);
	m->max_voters = b->max_voters == 5 ? 5 : 3;
	return 0;
}

static bool node_holds_shards(const drift_meta *m, const char *id, char *what,
			      size_t cap)
{
	size_t used = 0;
	bool any = false;
	what[0] = '\0';
	for (size_t i = 0; i < m->n_cols; i++) {
		const drift_meta_collection *c = &m->cols[i];
		for (uint32_t s = 0; s < c->shards; s++)
			for (uint32_t r = 0; r < c->shard[s].n; r++) {
				if (strcmp(c->shard[s].nodes[r], id) != 0)
					continue;
				if (used + 1 < cap) {
					int w = snprintf(what + used,
							 cap - used, "%s%s/%u",
							 any ? ", " : "",
							 c->name, s);
					if (w > 0)
						used += (size_t)w < cap - used
								? (size_t)w
								: cap - used -
									  1;
				}
				any = true;
			}
	}
	return any;
}

static int apply_remove(drift_meta *m, const char *id, drift_err *err)
{
	drift_meta_node *n = node_find(m, id != NULL ? id : "");
	if (n == NULL)
		return drift_err_set(err, DRIFT_ENOENT, "no node %s",
				     id != NULL ? id : "");
	char what[200];
	if (node_holds_shards(m, id, what, sizeof(what)))
		return drift_err_set(err, DRIFT_EBUSY,
				     "node %s still holds shards (%s): they "
				     "must move first",
				     id, what);
	size_t i = (size_t)(n - m->nodes);
	memmove(&m->nodes[i], &m->nodes[i + 1],
		(m->n_nodes - i - 1) * sizeof(*m->nodes));
	m->n_nodes--;
	return 0;
}

static int apply_set_node(drift_meta *m, const Drift__Cluster__V1__SetNode *s,
			  drift_err *err)
{
	drift_meta_node *n = node_find(m, s->id != NULL ? s->id : "");
	if (n == NULL)
		return drift_err_set(err, DRIFT_ENOENT, "no node %s",
				     s->id != NULL ? s->id : "");
	if (s->state < DRIFT_NODE_UP || s->state > DRIFT_NODE_LEAVING ||
	    (s->role != DRIFT_ROLE_VOTER && s->role != DRIFT_ROLE_STANDBY))
		return drift_err_set(err, DRIFT_EINVAL,
				     "node %s: bad state %d or role %d", s->id,
				     s->state, s->role);
	n->state = s->state;
	n->role = s->role;
	return 0;
}

/* Checks and converts a shard placement of collection c. */
static int shard_from_pb(const drift_meta *m, const drift_meta_collection *c,
			 const Drift__Cluster__V1__Shard *p,
			 drift_meta_shard *out, drift_err *err)
{
	if (p->n_nodes == 0 || p->n_nodes > DRIFT_META_MAX_RF)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s/%u: 1..%d replicas, not %zu", c->name,
				     p->shard, DRIFT_META_MAX_RF, p->n_nodes);
	memset(out, 0, sizeof(*out));
	for (size_t r = 0; r < p->n_nodes; r++) {
		if (drift_meta_node_find(m, p->nodes[r]) == NULL)
			return drift_err_set(err, DRIFT_ENOENT,
					     "%s/%u: no node %s", c->name,
					     p->shard, p->nodes[r]);
		for (size_t q = 0; q < r; q++)
			if (strcmp(p->nodes[q], p->nodes[r]) == 0)
				return drift_err_set(err, DRIFT_EINVAL,
						     "%s/%u: node %s twice",
						     c->name, p->shard,
						     p->nodes[r]);
		copy_str(out->nodes[r], sizeof(out->nodes[r]), p->nodes[r]);
	}
	out->n = (uint32_t)p->n_nodes;
	out->epoch = p->epoch;
	if (!str_fits(p->move_from, DRIFT_NODE_ID_MAX) ||
	    !str_fits(p->move_to, DRIFT_NODE_ID_MAX))
		return drift_err_set(err, DRIFT_EINVAL, "%s/%u: bad move",
				     c->name, p->shard);
	copy_str(out->move_from, sizeof(out->move_from), p->move_from);
	copy_str(out->move_to, sizeof(out->move_to), p->move_to);
	for (size_t i = 0; i < p->n_in_sync; i++)
		for (uint32_t r = 0; r < out->n; r++)
			if (strcmp(p->in_sync[i], out->nodes[r]) == 0)
				out->in_sync |= 1u << r;
	return 0;
}

static int apply_create(drift_meta *m,
			const Drift__Cluster__V1__CreateCollection *cc,
			drift_err *err)
{
	const Drift__Cluster__V1__Collection *p = cc->collection;
	if (p == NULL || !str_fits(p->name, DRIFT_META_NAME_MAX) ||
	    p->name[0] == '\0')
		return drift_err_set(err, DRIFT_EINVAL, "bad collection name");
	if (col_find(m, p->name) != NULL)
		return drift_err_set(err, DRIFT_EEXIST,
				     "collection %s already exists", p->name);
	if (p->shards == 0 || p->dimension == 0 || p->replication_factor == 0 ||
	    cc->n_shards != p->shards)
		return drift_err_set(err, DRIFT_EINVAL,
				     "collection %s: %u shards, %zu placed, "
				     "dimension %u, replication %u",
				     p->name, p->shards, cc->n_shards,
				     p->dimension, p->replication_factor);
	drift_meta_collection c;
	memset(&c, 0, sizeof(c));
	copy_str(c.name, sizeof(c.name), p->name);
	c.dimension = p->dimension;
	c.metric = p->metric;
	c.wal_sync = p->wal_sync;
	c.shards = p->shards;
	c.replication_factor = p->replication_factor;
	c.memtable_rows = p->memtable_rows;
	c.default_recall = p->default_recall;
	c.memory_limit = p->memory_limit;
	c.created_version = m->version + 1;
	c.shard = shards_new(c.shards);
	if (c.shard == NULL)
		return DRIFT_ENOMEM;
	for (size_t i = 0; i < cc->n_shards; i++) {
		const Drift__Cluster__V1__Shard *s = cc->shards[i];
		int rv;
		if (s->shard >= c.shards || c.shard[s->shard].n != 0)
			rv = drift_err_set(err, DRIFT_EINVAL,
					   "collection %s: shard %u placed "
					   "twice or out of range",
					   c.name, s->shard);
		else
			rv = shard_from_pb(m, &c, s, &c.shard[s->shard], err);
		if (rv != 0) {
			col_free(&c);
			return rv;
		}
		if (c.shard[s->shard].epoch == 0)
			c.shard[s->shard].epoch = c.created_version;
	}
	drift_meta_collection *nc =
		drift_realloc(m->cols, (m->n_cols + 1) * sizeof(*nc));
	if (nc == NULL) {
		col_free(&c);
		return DRIFT_ENOMEM;
	}
	m->cols = nc;
	size_t at = col_lower(m, c.name);
	memmove(&m->cols[at + 1], &m->cols[at],
		(m->n_cols - at) * sizeof(*m->cols));
	m->cols[at] = c;
	m->n_cols++;
	return 0;
}

static int apply_drop(drift_meta *m, const char *name, drift_err *err)
{
	drift_meta_collection *c = col_find(m, name != NULL ? name : "");
	if (c == NULL)
		return drift_err_set(err, DRIFT_ENOENT, "no collection %s",
				     name != NULL ? name : "");
	size_t i = (size_t)(c - m->cols);
	col_free(c);
	memmove(&m->cols[i], &m->cols[i + 1],
		(m->n_cols - i - 1) * sizeof(*m->cols));
	m->n_cols--;
	return 0;
}

static int apply_set_shards(drift_meta *m,
			    const Drift__Cluster__V1__SetShards *ss,
			    drift_err *err)
{
	/* Check everything first: a command applies whole or not at all. */
	drift_meta_shard *tmp =
		drift_calloc(ss->n_shards ? ss->n_shards : 1, sizeof(*tmp));
	if (tmp == NULL)
		return DRIFT_ENOMEM;
	int rv = 0;
	for (size_t i = 0; rv == 0 && i < ss->n_shards; i++) {
		const Drift__Cluster__V1__Shard *s = ss->shards[i];
		drift_meta_collection *c =
			col_find(m, s->collection ? s->collection : "");
		if (c == NULL)
			rv = drift_err_set(err, DRIFT_ENOENT,
					   "no collection %s", s->collection);
		else if (s->shard >= c->shards)
			rv = drift_err_set(err, DRIFT_EINVAL,
					   "collection %s has no shard %u",
					   c->name, s->shard);
		else
			rv = shard_from_pb(m, c, s, &tmp[i], err);
	}
	for (size_t i = 0; rv == 0 && i < ss->n_shards; i++) {
		drift_meta_collection *c =
			col_find(m, ss->shards[i]->collection);
		if (c == NULL)
			continue;
		if ((rv = shards_own(c)) != 0)
			break; /* the fsm drops the half-changed clone */
		drift_meta_shard *old = &c->shard[ss->shards[i]->shard];
		/* A new primary starts a new epoch. */
		if (strcmp(old->nodes[0], tmp[i].nodes[0]) != 0 ||
		    tmp[i].epoch <= old->epoch)
			tmp[i].epoch =
				strcmp(old->nodes[0], tmp[i].nodes[0]) != 0
					? m->version + 1
					: old->epoch;
		*old = tmp[i];
	}
	drift_free(tmp);
	return rv;
}

/* Index of node id among sh's replicas, or -1. */
static int replica_index(const drift_meta_shard *sh, const char *id)
{
	for (uint32_t r = 0; r < sh->n; r++)
		if (strcmp(sh->nodes[r], id) == 0)
			return (int)r;
	return -1;
}

/* The in-sync bits of the named replicas of sh (err: one that is not). */
static int in_sync_bits(const drift_meta_collection *c, uint32_t shard,
			const drift_meta_shard *sh, char **ids, size_t n,
			uint32_t *bits, drift_err *err)
{
	*bits = 0;
	for (size_t i = 0; i < n; i++) {
		int at = replica_index(sh, ids[i]);
		if (at < 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "%s/%u: %s is not a replica",
					     c->name, shard, ids[i]);
		*bits |= 1u << at;
	}
	return 0;
}

/* Marks the move sr names (if any) in sh, after its replicas changed. */
static int mark_move(const drift_meta_collection *c,
		     const Drift__Cluster__V1__SetReplicas *sr,
		     drift_meta_shard *sh, drift_err *err)
{
	const char *from = sr->move_from != NULL ? sr->move_from : "";
	const char *to = sr->move_to != NULL ? sr->move_to : "";
	if (to[0] == '\0')
		return from[0] == '\0'
			       ? 0
			       : drift_err_set(err, DRIFT_EINVAL,
					       "%s/%u: a move from %s needs a "
					       "target",
					       c->name, sr->shard, from);
	if (replica_index(sh, to) <= 0 ||
	    (from[0] != '\0' && replica_index(sh, from) < 0) ||
	    strcmp(from, to) == 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s/%u: a move to %s needs it added as a "
				     "replica, and %s to hold one",
				     c->name, sr->shard, to,
				     from[0] ? from : "no node");
	if (sh->move_to[0] != '\0' &&
	    (strcmp(sh->move_to, to) != 0 || strcmp(sh->move_from, from) != 0))
		return drift_err_set(err, DRIFT_ECONFLICT,
				     "%s/%u is moving from %s to %s already",
				     c->name, sr->shard,
				     sh->move_from[0] ? sh->move_from : "-",
				     sh->move_to);
	copy_str(sh->move_from, sizeof(sh->move_from), from);
	copy_str(sh->move_to, sizeof(sh->move_to), to);
	return 0;
}

/* Clears sh's move mark once the move is done or undone: its target left
 * the replicas, its source left them, or (no source) the target is in
 * sync. */
static void unmark_move(drift_meta_shard *sh)
{
	if (sh->move_to[0] == '\0')
		return;
	int to = replica_index(sh, sh->move_to);
	int from = sh->move_from[0] ? replica_index(sh, sh->move_from) : -1;
	if (to < 0 || (sh->move_from[0] != '\0' && from < 0) ||
	    (sh->move_from[0] == '\0' && (sh->in_sync & (1u << to))))
		sh->move_from[0] = sh->move_to[0] = '\0';
}

static int apply_set_replicas(drift_meta *m,
			      const Drift__Cluster__V1__SetReplicas *sr,
			      drift_err *err)
{
	const char *name = sr->collection != NULL ? sr->collection : "";
	drift_meta_collection *c = col_find(m, name);
	if (c == NULL || c->created_version != sr->created_version)
		return drift_err_set(err, DRIFT_ENOENT,
				     "no collection %s of map version %llu",
				     name,
				     (unsigned long long)sr->created_version);
	if (sr->shard >= c->shards)
		return drift_err_set(err, DRIFT_EINVAL,
				     "collection %s has no shard %u", name,
				     sr->shard);
	drift_meta_shard *old = &c->shard[sr->shard];
	if (old->epoch != sr->epoch)
		return drift_err_set(err, DRIFT_ECONFLICT,
				     "%s/%u is at epoch %llu, not %llu", name,
				     sr->shard, (unsigned long long)old->epoch,
				     (unsigned long long)sr->epoch);
	drift_meta_shard sh = *old;
	uint32_t bits;
	int rv;
	if (sr->new_epoch) {
		if (sr->n_nodes == 0 || sr->n_nodes > old->n ||
		    sr->n_add_nodes > 0 ||
		    (sr->move_to != NULL && sr->move_to[0] != '\0'))
			return drift_err_set(err, DRIFT_EINVAL,
					     "%s/%u: %zu replicas named, it "
					     "has %u",
					     name, sr->shard, sr->n_nodes,
					     old->n);
		memset(sh.nodes, 0, sizeof(sh.nodes));
		sh.n = (uint32_t)sr->n_nodes;
		for (size_t r = 0; r < sr->n_nodes; r++) {
			bool twice = false;
			for (size_t q = 0; q < r; q++)
				twice |=
					strcmp(sr->nodes[q], sr->nodes[r]) == 0;
			if (replica_index(old, sr->nodes[r]) < 0 || twice)
				return drift_err_set(
					err, DRIFT_EINVAL,
					"%s/%u: %s is not a replica, or "
					"named twice",
					name, sr->shard, sr->nodes[r]);
			copy_str(sh.nodes[r], sizeof(sh.nodes[r]),
				 sr->nodes[r]);
		}
		if ((rv = in_sync_bits(c, sr->shard, &sh, sr->in_sync,
				       sr->n_in_sync, &bits, err)) != 0)
			return rv;
		sh.in_sync = bits;
		sh.epoch = m->version + 1;
	} else {
		if (sr->n_nodes > 0 || sr->n_in_sync > 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "%s/%u: a new placement needs a "
					     "new epoch",
					     name, sr->shard);
		for (size_t i = 0; i < sr->n_add_nodes; i++) {
			const char *id = sr->add_nodes[i];
			if (drift_meta_node_find(m, id) == NULL ||
			    replica_index(&sh, id) >= 0)
				return drift_err_set(
					err, DRIFT_EINVAL,
					"%s/%u: node %s is unknown "
					"or holds it already",
					name, sr->shard, id);
			if (sh.n == DRIFT_META_MAX_RF)
				return drift_err_set(err, DRIFT_ELIMIT,
						     "%s/%u: %d replicas at "
						     "most",
						     name, sr->shard,
						     DRIFT_META_MAX_RF);
			copy_str(sh.nodes[sh.n], sizeof(sh.nodes[sh.n]), id);
			sh.n++;
		}
		for (size_t i = 0; i < sr->n_drop_nodes; i++) {
			int at = replica_index(&sh, sr->drop_nodes[i]);
			if (at == 0 || sh.n == 1)
				return drift_err_set(err, DRIFT_EINVAL,
						     "%s/%u: the primary %s "
						     "leaves only in a new "
						     "epoch",
						     name, sr->shard,
						     sh.nodes[0]);
			if (at < 0)
				continue; /* gone already */
			uint32_t low = sh.in_sync & ((1u << at) - 1),
				 high = (sh.in_sync >> (at + 1)) << at;
			sh.in_sync = low | high;
			memmove(sh.nodes[at], sh.nodes[at + 1],
				(sh.n - (uint32_t)at - 1) *
					sizeof(sh.nodes[0]));
			sh.n--;
			memset(sh.nodes[sh.n], 0, sizeof(sh.nodes[0]));
		}
		/* A replica dropped from the in-sync set that has left the
		 * shard meanwhile (a move) is not an error. */
		bits = 0;
		for (size_t i = 0; i < sr->n_drop_in_sync; i++) {
			int at = replica_index(&sh, sr->drop_in_sync[i]);
			if (at >= 0)
				bits |= 1u << at;
		}
		sh.in_sync &= ~bits;
		if ((rv = in_sync_bits(c, sr->shard, &sh, sr->add_in_sync,
				       sr->n_add_in_sync, &bits, err)) != 0)
			return rv;
		sh.in_sync |= bits;
		if ((rv = mark_move(c, sr, &sh, err)) != 0)
			return rv;
	}
	unmark_move(&sh);
	if ((sh.in_sync & 1u) == 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s/%u: the primary %s must be in sync",
				     name, sr->shard, sh.nodes[0]);
	if ((rv = shards_own(c)) != 0)
		return rv;
	c->shard[sr->shard] = sh;
	return 0;
}

int drift_meta_apply(drift_meta *m, const Drift__Cluster__V1__Command *cmd,
		     drift_err *err)
{
	int rv;
	switch (cmd->cmd_case) {
	case DRIFT__CLUSTER__V1__COMMAND__CMD_BOOTSTRAP:
		rv = apply_bootstrap(m, cmd->bootstrap, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_ADD_NODE: {
		drift_meta_node n;
		rv = node_from_pb(cmd->add_node->node, &n, err);
		if (rv == 0)
			rv = add_node(m, &n, err);
		break;
	}
	case DRIFT__CLUSTER__V1__COMMAND__CMD_REMOVE_NODE:
		rv = apply_remove(m, cmd->remove_node->id, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_SET_NODE:
		rv = apply_set_node(m, cmd->set_node, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION:
		rv = apply_create(m, cmd->create_collection, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_DROP_COLLECTION:
		rv = apply_drop(m, cmd->drop_collection->name, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_SET_SHARDS:
		rv = apply_set_shards(m, cmd->set_shards, err);
		break;
	case DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS:
		rv = apply_set_replicas(m, cmd->set_replicas, err);
		break;
	default:
		rv = drift_err_set(err, DRIFT_EINVAL, "unknown command %d",
				   (int)cmd->cmd_case);
	}
	if (rv == 0)
		m->version++;
	return rv;
}

/* ---- Encoding ---- */

int drift_meta_cmd_encode(const Drift__Cluster__V1__Command *cmd,
			  bool raft_alloc, void **buf, size_t *len)
{
	size_t body = drift__cluster__v1__command__get_packed_size(cmd);
	size_t total = (8 + body + 7) & ~(size_t)7;
	uint8_t *b = raft_alloc ? raft_malloc(total) : drift_malloc(total);
	if (b == NULL)
		return DRIFT_ENOMEM;
	memset(b, 0, total);
	drift_store_le64(b, body);
	drift__cluster__v1__command__pack(cmd, b + 8);
	*buf = b;
	*len = total;
	return 0;
}

int drift_meta_cmd_decode(const void *buf, size_t len,
			  Drift__Cluster__V1__Command **cmd)
{
	if (len < 8)
		return DRIFT_ECORRUPT;
	uint64_t body = drift_load_le64(buf);
	if (body > len - 8)
		return DRIFT_ECORRUPT;
	Drift__Cluster__V1__Command *c = drift__cluster__v1__command__unpack(
		NULL, (size_t)body, (const uint8_t *)buf + 8);
	if (c == NULL)
		return DRIFT_ECORRUPT;
	*cmd = c;
	return 0;
}

int drift_meta_encode(const drift_meta *m, void **buf, size_t *len)
{
	int rv = DRIFT_ENOMEM;
	size_t n_shards = 0;
	for (size_t i = 0; i < m->n_cols; i++)
		n_shards += m->cols[i].shards;
	Drift__Cluster__V1__Node *nodes =
		drift_calloc(m->n_nodes + 1, sizeof(*nodes));
	Drift__Cluster__V1__Node **pn =
		drift_calloc(m->n_nodes + 1, sizeof(*pn));
	Drift__Cluster__V1__Collection *cols =
		drift_calloc(m->n_cols + 1, sizeof(*cols));
	Drift__Cluster__V1__Collection **pc =
		drift_calloc(m->n_cols + 1, sizeof(*pc));
	Drift__Cluster__V1__Shard *shards =
		drift_calloc(n_shards + 1, sizeof(*shards));
	Drift__Cluster__V1__Shard **ps =
		drift_calloc(n_shards + 1, sizeof(*ps));
	/* Node id pointers of every shard's replicas and in-sync set. */
	char **ids = drift_calloc(2 * n_shards * DRIFT_META_MAX_RF + 1,
				  sizeof(*ids));
	uint8_t *out = NULL;
	if (!nodes || !pn || !cols || !pc || !shards || !ps || !ids)
		goto done;
	Drift__Cluster__V1__State st = DRIFT__CLUSTER__V1__STATE__INIT;
	st.format = 1;
	st.cluster_id = (char *)m->cluster_id;
	st.version = m->version;
	st.max_voters = m->max_voters;
	for (size_t i = 0; i < m->n_nodes; i++) {
		const drift_meta_node *n = &m->nodes[i];
		drift__cluster__v1__node__init(&nodes[i]);
		nodes[i].id = (char *)n->id;
		nodes[i].raft_id = n->raft_id;
		nodes[i].address = (char *)n->address;
		nodes[i].raft_address = (char *)n->raft_address;
		nodes[i].state = n->state;
		nodes[i].role = n->role;
		nodes[i].added_version = n->added_version;
		pn[i] = &nodes[i];
	}
	st.n_nodes = m->n_nodes;
	st.nodes = pn;
	size_t k = 0, idn = 0;
	for (size_t i = 0; i < m->n_cols; i++) {
		const drift_meta_collection *c = &m->cols[i];
		drift__cluster__v1__collection__init(&cols[i]);
		cols[i].name = (char *)c->name;
		cols[i].dimension = c->dimension;
		cols[i].metric = c->metric;
		cols[i].shards = c->shards;
		cols[i].replication_factor = c->replication_factor;
		cols[i].wal_sync = c->wal_sync;
		cols[i].memtable_rows = c->memtable_rows;
		cols[i].default_recall = c->default_recall;
		cols[i].memory_limit = c->memory_limit;
		cols[i].created_version = c->created_version;
		pc[i] = &cols[i];
		for (uint32_t s = 0; s < c->shards; s++, k++) {
			const drift_meta_shard *sh = &c->shard[s];
			drift__cluster__v1__shard__init(&shards[k]);
			shards[k].collection = (char *)c->name;
			shards[k].shard = s;
			shards[k].nodes = &ids[idn];
			for (uint32_t r = 0; r < sh->n; r++)
				ids[idn++] = (char *)sh->nodes[r];
			shards[k].n_nodes = sh->n;
			shards[k].epoch = sh->epoch;
			shards[k].move_from = (char *)sh->move_from;
			shards[k].move_to = (char *)sh->move_to;
			shards[k].in_sync = &ids[idn];
			for (uint32_t r = 0; r < sh->n; r++)
				if (sh->in_sync & (1u << r)) {
					ids[idn++] = (char *)sh->nodes[r];
					shards[k].n_in_sync++;
				}
			ps[k] = &shards[k];
		}
	}
	st.n_collections = m->n_cols;
	st.collections = pc;
	st.n_shards = n_shards;
	st.shards = ps;
	size_t sz = drift__cluster__v1__state__get_packed_size(&st);
	out = drift_malloc(sz ? sz : 1);
	if (out == NULL)
		goto done;
	drift__cluster__v1__state__pack(&st, out);
	*buf = out;
	*len = sz;
	rv = 0;
done:
	drift_free(nodes);
	drift_free(pn);
	drift_free(cols);
	drift_free(pc);
	drift_free(shards);
	drift_free(ps);
	drift_free(ids);
	return rv;
}

int drift_meta_decode(const void *buf, size_t len, drift_meta **out,
		      drift_err *err)
{
	Drift__Cluster__V1__State *st =
		drift__cluster__v1__state__unpack(NULL, len, buf);
	if (st == NULL)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "metadata snapshot: not a State message");
	drift_meta *m = NULL;
	int rv = drift_meta_new(&m);
	if (rv != 0)
		goto done;
	if (st->format != 1 || !str_fits(st->cluster_id, DRIFT_NODE_ID_MAX)) {
		rv = drift_err_set(err, DRIFT_ECORRUPT,
				   "metadata snapshot: format %u", st->format);
		goto done;
	}
	copy_str(m->cluster_id, sizeof(m->cluster_id), st->cluster_id);
	m->max_voters = st->max_voters;
	for (size_t i = 0; i < st->n_nodes; i++) {
		drift_meta_node n;
		if ((rv = node_from_pb(st->nodes[i], &n, err)) != 0 ||
		    (rv = add_node(m, &n, err)) != 0)
			goto corrupt;
		m->nodes[m->n_nodes - 1].added_version =
			st->nodes[i]->added_version;
	}
	size_t next = 0; /* where the previous collection's shards ended */
	for (size_t i = 0; i < st->n_collections; i++) {
		Drift__Cluster__V1__Collection *p = st->collections[i];
		/* The collection's shards, in order, follow in st->shards:
		 * after the previous collection's (as drift_meta_encode writes
		 * them), else looked for from the start (a snapshot of 10,000
		 * collections took 50M name comparisons with only the
		 * latter). */
		Drift__Cluster__V1__CreateCollection cc =
			DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
		cc.collection = p;
		size_t first = next;
		if (first >= st->n_shards ||
		    st->shards[first]->collection == NULL ||
		    strcmp(st->shards[first]->collection, p->name) != 0)
			first = 0;
		while (first < st->n_shards &&
		       strcmp(st->shards[first]->collection, p->name) != 0)
			first++;
		size_t n = 0;
		while (first + n < st->n_shards &&
		       strcmp(st->shards[first + n]->collection, p->name) == 0)
			n++;
		cc.n_shards = n;
		cc.shards = st->shards + first;
		next = first + n;
		if ((rv = apply_create(m, &cc, err)) != 0)
			goto corrupt;
		drift_meta_collection *made = col_find(m, p->name);
		if (made != NULL)
			made->created_version = p->created_version;
	}
	m->version = st->version;
	*out = m;
	m = NULL;
	rv = 0;
	goto done;
corrupt:
	if (err != NULL) {
		char why[DRIFT_ERR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", err->msg);
		rv = drift_err_set(err, DRIFT_ECORRUPT, "metadata snapshot: %s",
				   why);
	} else {
		rv = DRIFT_ECORRUPT;
	}
done:
	drift_meta_unref(m);
	drift__cluster__v1__state__free_unpacked(st, NULL);
	return rv;
}
