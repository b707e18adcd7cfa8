#include "cluster/placement.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/hash.h"

/* The seed node/engine/collection.c has hashed ids with since the first data
 * directory was written. Part of the on-disk layout: changing it sends ids
 * to shards that do not hold them. */
#define SHARD_OF_ID_SEED UINT64_C(0x5eedc011ec7105)

bool drift_placement_reads_spread(uint32_t replicas, uint32_t rf)
{
	return replicas >= 2 && replicas <= rf / 2 + 2;
}

uint32_t drift_shard_of_id(uint64_t id, uint32_t shards)
{
	return (uint32_t)(drift_hash_u64(id, SHARD_OF_ID_SEED) % shards);
}

/* ---- The working state ----------------------------------------------- */

/*
 * The plan works on a private copy: nodes by rank (their position in id
 * order, so "lowest rank" is "first by id" in every tie), replicas as ranks.
 * shards[] is written back only once everything has succeeded, so an
 * allocation failure leaves the caller's table as it was.
 */

#define NONE (-1)

typedef struct move {
	uint32_t shard;
	int from, to; /* ranks or NONE */
	bool dead;    /* cancelled by a later move of the same replica */
} move;

typedef struct plan {
	size_t nn;   /* nodes */
	size_t *ids; /* rank -> index into the caller's nodes[] */
	const struct drift_placement_node *nodes;
	bool *acc;
	uint64_t *id_hash; /* XXH64 of each id, for tie_key */
	size_t n_acc;
	long *load;	  /* replicas per rank */
	long *prim;	  /* primaries per rank */
	long *placed_cnt; /* replicas per rank placed by this plan */
	size_t *cursor;	  /* per rank: where movable() looks next */

	size_t ns;
	uint32_t *rf, *cnt;
	int *rep;	 /* ns * MAX_RF ranks, primary first */
	long *placed_by; /* ns * MAX_RF: the move that put this replica in
			    its slot during this plan, or NONE */

	move *mv;
	size_t n_mv, cap_mv;

	/* Scratch for the primary chains (shift_primary). */
	int *bfs_prev_node;
	long *bfs_prev_shard;
	int *queue;
	long *by_prim_start, *by_prim;
} plan;

#define MAX_RF DRIFT_PLACEMENT_MAX_RF

static int *slot(plan *p, size_t s, uint32_t i)
{
	return &p->rep[s * MAX_RF + i];
}

static const char *node_id(const plan *p, int rank)
{
	return rank == NONE ? NULL : p->nodes[p->ids[rank]].id;
}

static int rank_cmp(const void *a, const void *b, void *arg)
{
	const struct drift_placement_node *nodes = arg;
	const size_t *x = a, *y = b;
	return strcmp(nodes[*x].id, nodes[*y].id);
}

static int find_rank(const plan *p, const char *id)
{
	size_t lo = 0, hi = p->nn;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->nodes[p->ids[mid]].id, id);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NONE;
}

static bool holds(plan *p, size_t s, int rank)
{
	for (uint32_t i = 0; i < p->cnt[s]; i++)
		if (*slot(p, s, i) == rank)
			return true;
	return false;
}

static int add_move(plan *p, uint32_t s, int from, int to)
{
	if (p->n_mv == p->cap_mv) {
		size_t cap = p->cap_mv ? 2 * p->cap_mv : 64;
		move *m = drift_realloc(p->mv, cap * sizeof(*m));
		if (m == NULL)
			return DRIFT_ENOMEM;
		p->mv = m;
		p->cap_mv = cap;
	}
	p->mv[p->n_mv++] = (move){s, from, to, false};
	return 0;
}

/* Puts `to` in slot i of shard s in place of its occupant, recording the
 * move. A replica this plan already placed is re-aimed rather than moved
 * twice: (from -> x) then (x -> to) is one move (from -> to). */
static int replace(plan *p, size_t s, uint32_t i, int to)
{
	int from = *slot(p, s, i);
	long *by = &p->placed_by[s * MAX_RF + i];
	if (*by != NONE) {
		move *m = &p->mv[*by];
		m->to = to;
		m->dead = m->from == to;
		p->placed_cnt[from]--;
	} else {
		int rv = add_move(p, (uint32_t)s, from, to);
		if (rv != 0)
			return rv;
		*by = (long)p->n_mv - 1;
	}
	p->placed_cnt[to]++;
	p->load[from]--;
	p->load[to]++;
	if (i == 0) {
		p->prim[from]--;
		p->prim[to]++;
	}
	*slot(p, s, i) = to;
	return 0;
}

/* Breaks ties of load between nodes for shard s: a hash of the node's id
 * and the shard's index. Ties in id order would give every shard the same
 * partners (rf = 5 over 10 nodes: shards alternate between nodes 0-4 and
 * 5-9), and then a leaving node's replicas could only go to half of the
 * cluster, which a balanced result has to undo with more moves. */
static uint64_t tie_key(const plan *p, size_t s, int rank)
{
	return drift_hash_u64(p->id_hash[rank], (uint64_t)s);
}

/* The least-loaded accepting node that does not hold shard s; for a primary
 * slot, fewest primaries breaks a tie of load, then tie_key. NONE when
 * there is none. */
static int least_loaded(plan *p, size_t s, bool primary)
{
	int best = NONE;
	uint64_t best_key = 0;
	for (size_t r = 0; r < p->nn; r++) {
		int rank = (int)r;
		if (!p->acc[r] || holds(p, s, rank))
			continue;
		uint64_t key = tie_key(p, s, rank);
		if (best != NONE) {
			if (p->load[r] != p->load[best]) {
				if (p->load[r] > p->load[best])
					continue;
			} else if (primary && p->prim[r] != p->prim[best]) {
				if (p->prim[r] > p->prim[best])
					continue;
			} else if (key >= best_key) {
				continue; /* equal keys: the lower rank stays */
			}
		}
		best = rank;
		best_key = key;
	}
	return best;
}

/* ---- Steps 1-3: repairs ---------------------------------------------- */

/* Whether the replica in slot i of s is a better one to drop than slot j. */
static bool drop_before(plan *p, size_t s, uint32_t i, uint32_t j)
{
	int a = *slot(p, s, i), b = *slot(p, s, j);
	if (p->acc[a] != p->acc[b])
		return !p->acc[a];
	if ((i == 0) != (j == 0))
		return j == 0; /* keep an accepting primary */
	if (p->load[a] != p->load[b])
		return p->load[a] > p->load[b];
	return a < b;
}

static int drop_surplus(plan *p)
{
	for (size_t s = 0; s < p->ns; s++) {
		while (p->cnt[s] > p->rf[s]) {
			uint32_t d = 0;
			for (uint32_t i = 1; i < p->cnt[s]; i++)
				if (drop_before(p, s, i, d))
					d = i;
			int rank = *slot(p, s, d);
			int rv = add_move(p, (uint32_t)s, rank, NONE);
			if (rv != 0)
				return rv;
			p->load[rank]--;
			if (d == 0) {
				p->prim[rank]--;
				p->prim[*slot(p, s, 1)]++;
			}
			/* Shift down so the order (primary first) stays. */
			for (uint32_t i = d; i + 1 < p->cnt[s]; i++)
				*slot(p, s, i) = *slot(p, s, i + 1);
			p->cnt[s]--;
		}
	}
	return 0;
}

/* A leaving primary hands its role to the shard's accepting replica with
 * fewest primaries (it has the data already; a newcomer would serve
 * nothing until its copy is done), and then leaves as a secondary. */
static void hand_over_primary(plan *p, size_t s)
{
	uint32_t best = 0;
	for (uint32_t i = 1; i < p->cnt[s]; i++) {
		int r = *slot(p, s, i);
		if (!p->acc[r])
			continue;
		if (best == 0 || p->prim[r] < p->prim[*slot(p, s, best)] ||
		    (p->prim[r] == p->prim[*slot(p, s, best)] &&
		     r < *slot(p, s, best)))
			best = i;
	}
	if (best == 0)
		return; /* no replica to take over: the newcomer will */
	int old = *slot(p, s, 0), heir = *slot(p, s, best);
	*slot(p, s, 0) = heir;
	*slot(p, s, best) = old;
	long *by = &p->placed_by[s * MAX_RF];
	long t = by[0];
	by[0] = by[best];
	by[best] = t;
	p->prim[old]--;
	p->prim[heir]++;
}

static int evacuate(plan *p)
{
	for (size_t s = 0; s < p->ns; s++) {
		if (p->cnt[s] > 0 && !p->acc[*slot(p, s, 0)])
			hand_over_primary(p, s);
		for (uint32_t i = 0; i < p->cnt[s]; i++) {
			if (p->acc[*slot(p, s, i)])
				continue;
			/* rf <= accepting nodes (checked) and the shard holds
			 * at most rf replicas now, one of them here: a node is
			 * free. */
			int to = least_loaded(p, s, i == 0);
			int rv = replace(p, s, i, to);
			if (rv != 0)
				return rv;
		}
	}
	return 0;
}

static int fill(plan *p)
{
	for (size_t s = 0; s < p->ns; s++) {
		while (p->cnt[s] < p->rf[s]) {
			uint32_t i = p->cnt[s];
			int to = least_loaded(p, s, i == 0);
			int rv = add_move(p, (uint32_t)s, NONE, to);
			if (rv != 0)
				return rv;
			p->placed_by[s * MAX_RF + i] = (long)p->n_mv - 1;
			p->placed_cnt[to]++;
			*slot(p, s, i) = to;
			p->cnt[s]++;
			p->load[to]++;
			if (i == 0)
				p->prim[to]++;
		}
	}
	return 0;
}

/* ---- Step 4: replica balance ------------------------------------------ */

/* Rank order by a count: descending or ascending, ties by rank. */
typedef struct order {
	const long *count;
	bool desc;
} order;

static int count_cmp(const void *a, const void *b, void *arg)
{
	const order *o = arg;
	int x = *(const int *)a, y = *(const int *)b;
	if (o->count[x] != o->count[y])
		return (o->count[x] > o->count[y]) == o->desc ? -1 : 1;
	return x < y ? -1 : 1;
}

/* The accepting ranks in out[], ordered by count. */
static size_t ordered(plan *p, const long *count, bool desc, int *out)
{
	size_t n = 0;
	for (size_t r = 0; r < p->nn; r++)
		if (p->acc[r])
			out[n++] = (int)r;
	order o = {count, desc};
	qsort_r(out, n, sizeof(*out), count_cmp, &o);
	return n;
}

/* A slot held by x in a shard y does not hold: first one whose replica
 * this plan placed (re-aiming it costs no copy), then one that is not
 * primary, then a primary. Each search goes round the shards from where
 * the last one for x stopped, so that a long rebalance costs about one
 * look per move rather than a scan of every shard. Returns whether one was
 * found. */
static bool movable(plan *p, int x, int y, size_t *s_out, uint32_t *i_out)
{
	for (int pass = 0; pass < 3; pass++) {
		if (pass == 0 && p->placed_cnt[x] == 0)
			continue;
		size_t s = p->cursor[x];
		for (size_t k = 0; k < p->ns;
		     k++, s = s + 1 == p->ns ? 0 : s + 1) {
			for (uint32_t i = pass == 1; i < p->cnt[s]; i++) {
				if (*slot(p, s, i) != x)
					continue;
				if ((pass == 0 &&
				     p->placed_by[s * MAX_RF + i] == NONE) ||
				    (pass == 2 && i != 0))
					break;
				if (holds(p, s, y))
					break;
				*s_out = s;
				*i_out = i;
				p->cursor[x] = s + 1 == p->ns ? 0 : s + 1;
				return true;
			}
		}
	}
	return false;
}

/*
 * Every accepting node ends with floor(mean) or ceil(mean) replicas, where
 * the shards' replica sets allow. A move goes from a node that can give
 * (above floor) to one that can take (below ceil) and is only made when it
 * removes a replica above ceil or fills one below floor, so it never
 * creates either: the count of moves is max(excess, deficit), the least
 * any plan reaching the bound could make from this state.
 */
static int balance_replicas(plan *p, int *by_desc, int *by_asc)
{
	long total = 0;
	for (size_t r = 0; r < p->nn; r++)
		total += p->load[r];
	long lo = total / (long)p->n_acc;
	long hi = lo + (total % (long)p->n_acc != 0);
	for (;;) {
		size_t n = ordered(p, p->load, true, by_desc);
		ordered(p, p->load, false, by_asc);
		bool done = false;
		for (size_t a = 0; a < n && !done; a++) {
			int x = by_desc[a];
			if (p->load[x] <= lo)
				break;
			for (size_t b = 0; b < n && !done; b++) {
				int y = by_asc[b];
				if (p->load[y] >= hi)
					break;
				if (p->load[x] <= hi && p->load[y] >= lo)
					continue;
				size_t s;
				uint32_t i;
				if (!movable(p, x, y, &s, &i))
					continue;
				int rv = replace(p, s, i, y);
				if (rv != 0)
					return rv;
				done = true;
			}
		}
		if (!done)
			return 0; /* balanced, or no allowed move is left */
	}
}

/* ---- Step 5: primary balance ----------------------------------------- */

/* Shards grouped by primary: by_prim[by_prim_start[r] .. [r + 1]). */
static void index_primaries(plan *p)
{
	long *start = p->by_prim_start;
	memset(start, 0, (p->nn + 1) * sizeof(*start));
	for (size_t s = 0; s < p->ns; s++)
		start[*slot(p, s, 0) + 1]++;
	for (size_t r = 0; r < p->nn; r++)
		start[r + 1] += start[r];
	long *fillp = p->bfs_prev_shard; /* free until the search */
	for (size_t r = 0; r < p->nn; r++)
		fillp[r] = start[r];
	for (size_t s = 0; s < p->ns; s++)
		p->by_prim[fillp[*slot(p, s, 0)]++] = (long)s;
}

/* Makes `to`, a replica of s, its primary; the old primary takes to's
 * slot. No data moves. */
static void promote(plan *p, size_t s, int to)
{
	uint32_t i = 1;
	while (*slot(p, s, i) != to)
		i++;
	int old = *slot(p, s, 0);
	*slot(p, s, i) = old;
	*slot(p, s, 0) = to;
	p->prim[old]--;
	p->prim[to]++;
}

/*
 * A shortest chain from x to a node that can take a primary: x is primary
 * of s1, whose replica a1 is primary of s2, ..., whose replica z can take.
 * Promoting a1 in s1, a2 in s2, ..., z in sk moves one primary from x to z
 * and leaves the nodes between as they were (breadth-first search over
 * "is primary of a shard that has a replica on"). Returns whether it did.
 */
static bool shift_primary(plan *p, int x, long lo, long hi)
{
	int *prev = p->bfs_prev_node;
	long *via = p->bfs_prev_shard;
	for (size_t r = 0; r < p->nn; r++)
		prev[r] = NONE - 1; /* unvisited */
	index_primaries(p);
	size_t head = 0, tail = 0;
	p->queue[tail++] = x;
	prev[x] = NONE;
	while (head < tail) {
		int a = p->queue[head++];
		for (long k = p->by_prim_start[a]; k < p->by_prim_start[a + 1];
		     k++) {
			size_t s = (size_t)p->by_prim[k];
			for (uint32_t i = 1; i < p->cnt[s]; i++) {
				int z = *slot(p, s, i);
				if (prev[z] != NONE - 1)
					continue;
				prev[z] = a;
				via[z] = (long)s;
				bool takes =
					p->prim[z] < hi &&
					(p->prim[x] > hi || p->prim[z] < lo);
				if (!takes) {
					p->queue[tail++] = z;
					continue;
				}
				/* Promote along the chain, from z back to x. */
				for (int b = z; b != x; b = prev[b])
					promote(p, (size_t)via[b], b);
				return true;
			}
		}
	}
	return false;
}

static void balance_primaries(plan *p, int *by_desc)
{
	if (p->ns == 0)
		return;
	long lo = (long)(p->ns / p->n_acc);
	long hi = lo + (p->ns % p->n_acc != 0);
	/* Each shift lowers (primaries above hi) + (primaries missing below
	 * lo) by one, so this ends within ns rounds. */
	for (;;) {
		size_t n = ordered(p, p->prim, true, by_desc);
		bool done = false;
		for (size_t a = 0; a < n && !done; a++) {
			int x = by_desc[a];
			if (p->prim[x] <= lo)
				break;
			done = shift_primary(p, x, lo, hi);
		}
		if (!done)
			return;
	}
}

/* ---- The plan ---------------------------------------------------------- */

static int check(const struct drift_placement_node *nodes, size_t n_nodes,
		 const struct drift_placement_shard *shards, size_t n_shards)
{
	size_t n_acc = 0;
	for (size_t i = 0; i < n_nodes; i++) {
		if (nodes[i].id == NULL)
			return DRIFT_EINVAL;
		n_acc += nodes[i].accepts;
	}
	if (n_shards > UINT32_MAX || n_nodes > INT32_MAX)
		return DRIFT_EINVAL;
	for (size_t s = 0; s < n_shards; s++) {
		const struct drift_placement_shard *sh = &shards[s];
		if (sh->rf == 0 || sh->rf > MAX_RF || sh->rf > n_acc ||
		    sh->n > MAX_RF)
			return DRIFT_EINVAL;
		for (uint32_t i = 0; i < sh->n; i++)
			if (sh->nodes[i] == NULL)
				return DRIFT_EINVAL;
	}
	return 0;
}

static void plan_free(plan *p)
{
	drift_free(p->ids);
	drift_free(p->acc);
	drift_free(p->id_hash);
	drift_free(p->load);
	drift_free(p->prim);
	drift_free(p->placed_cnt);
	drift_free(p->cursor);
	drift_free(p->rf);
	drift_free(p->cnt);
	drift_free(p->rep);
	drift_free(p->placed_by);
	drift_free(p->mv);
	drift_free(p->bfs_prev_node);
	drift_free(p->bfs_prev_shard);
	drift_free(p->queue);
	drift_free(p->by_prim_start);
	drift_free(p->by_prim);
}

static int plan_init(plan *p, const struct drift_placement_node *nodes,
		     size_t nn, const struct drift_placement_shard *shards,
		     size_t ns)
{
	p->nodes = nodes;
	p->nn = nn;
	p->ns = ns;
	size_t scratch = nn + ns + 1;
	p->ids = drift_mallocarray(nn + 1, sizeof(*p->ids));
	p->acc = drift_calloc(nn + 1, sizeof(*p->acc));
	p->id_hash = drift_mallocarray(nn + 1, sizeof(*p->id_hash));
	p->load = drift_calloc(nn + 1, sizeof(*p->load));
	p->prim = drift_calloc(nn + 1, sizeof(*p->prim));
	p->placed_cnt = drift_calloc(nn + 1, sizeof(*p->placed_cnt));
	p->cursor = drift_calloc(nn + 1, sizeof(*p->cursor));
	p->rf = drift_mallocarray(ns + 1, sizeof(*p->rf));
	p->cnt = drift_mallocarray(ns + 1, sizeof(*p->cnt));
	p->rep = drift_mallocarray(ns * MAX_RF + 1, sizeof(*p->rep));
	p->placed_by = drift_mallocarray(ns * MAX_RF + 1, sizeof(long));
	p->bfs_prev_node = drift_mallocarray(scratch, sizeof(int));
	p->bfs_prev_shard = drift_mallocarray(scratch, sizeof(long));
	p->queue = drift_mallocarray(scratch, sizeof(int));
	p->by_prim_start = drift_mallocarray(nn + 2, sizeof(long));
	p->by_prim = drift_mallocarray(ns + 1, sizeof(long));
	if (!p->ids || !p->acc || !p->id_hash || !p->load || !p->prim ||
	    !p->placed_cnt || !p->cursor || !p->rf || !p->cnt || !p->rep ||
	    !p->placed_by || !p->bfs_prev_node || !p->bfs_prev_shard ||
	    !p->queue || !p->by_prim_start || !p->by_prim)
		return DRIFT_ENOMEM;

	for (size_t i = 0; i < nn; i++)
		p->ids[i] = i;
	qsort_r(p->ids, nn, sizeof(*p->ids), rank_cmp, (void *)nodes);
	for (size_t r = 0; r < nn; r++) {
		if (r > 0 &&
		    strcmp(nodes[p->ids[r - 1]].id, nodes[p->ids[r]].id) == 0)
			return DRIFT_EINVAL; /* a repeated id */
		const char *id = nodes[p->ids[r]].id;
		p->id_hash[r] = drift_hash64_seeded(id, strlen(id), 0);
		p->acc[r] = nodes[p->ids[r]].accepts;
		p->n_acc += p->acc[r];
	}

	for (size_t s = 0; s < ns; s++) {
		p->rf[s] = shards[s].rf;
		p->cnt[s] = 0;
		for (uint32_t i = 0; i < MAX_RF; i++)
			p->placed_by[s * MAX_RF + i] = NONE;
		for (uint32_t i = 0; i < shards[s].n; i++) {
			int rank = find_rank(p, shards[s].nodes[i]);
			if (rank == NONE || holds(p, s, rank))
				return DRIFT_EINVAL; /* unknown or twice */
			*slot(p, s, i) = rank;
			p->cnt[s]++;
			p->load[rank]++;
			if (i == 0)
				p->prim[rank]++;
		}
	}
	return 0;
}

int drift_placement_plan(const struct drift_placement_node *nodes,
			 size_t n_nodes, struct drift_placement_shard *shards,
			 size_t n_shards, bool rebalance,
			 struct drift_placement_move **moves, size_t *n_moves)
{
	int rv = check(nodes, n_nodes, shards, n_shards);
	if (rv != 0)
		return rv;
	plan p = {0};
	struct drift_placement_move *out = NULL;
	int *by_desc = NULL, *by_asc = NULL;
	rv = plan_init(&p, nodes, n_nodes, shards, n_shards);
	if (rv != 0)
		goto cleanup;
	rv = DRIFT_ENOMEM;
	by_desc = drift_mallocarray(n_nodes + 1, sizeof(int));
	by_asc = drift_mallocarray(n_nodes + 1, sizeof(int));
	if (by_desc == NULL || by_asc == NULL)
		goto cleanup;

	if ((rv = drop_surplus(&p)) != 0 || (rv = evacuate(&p)) != 0 ||
	    (rv = fill(&p)) != 0)
		goto cleanup;
	if (rebalance && n_shards > 0) {
		if ((rv = balance_replicas(&p, by_desc, by_asc)) != 0)
			goto cleanup;
		balance_primaries(&p, by_desc);
	}

	size_t live = 0;
	for (size_t m = 0; m < p.n_mv; m++)
		live += !p.mv[m].dead;
	if (live > 0) {
		out = drift_mallocarray(live, sizeof(*out));
		if (out == NULL) {
			rv = DRIFT_ENOMEM;
			goto cleanup;
		}
	}
	/* Nothing fails from here on: write the results back. */
	size_t k = 0;
	for (size_t m = 0; m < p.n_mv; m++)
		if (!p.mv[m].dead)
			out[k++] = (struct drift_placement_move){
				p.mv[m].shard, node_id(&p, p.mv[m].from),
				node_id(&p, p.mv[m].to)};
	for (size_t s = 0; s < n_shards; s++) {
		shards[s].n = p.cnt[s];
		for (uint32_t i = 0; i < p.cnt[s]; i++)
			shards[s].nodes[i] = node_id(&p, *slot(&p, s, i));
		for (uint32_t i = p.cnt[s]; i < MAX_RF; i++)
			shards[s].nodes[i] = NULL;
	}
	*moves = out;
	*n_moves = live;
	out = NULL;
	rv = 0;
cleanup:
	drift_free(out);
	drift_free(by_asc);
	drift_free(by_desc);
	plan_free(&p);
	return rv;
}
