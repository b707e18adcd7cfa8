/*
 * placement-bench: shard -> nodes schemes side by side, in one run.
 *
 *   build/tests/bench/placement-bench [--quick]     (make bench-placement)
 *
 * For each cluster of 3..100 nodes, replication factor 1..5 and 64..4096
 * shards it places every shard with four schemes:
 *
 *   table   drift_placement_plan (cluster/placement.h): the leader's
 *           explicit placement table, rebalance on;
 *   ring    cluster/ring.h, 128 virtual nodes per node (Karger et al.,
 *           "Consistent hashing and random trees", STOC 1997): the first rf
 *           distinct nodes clockwise from the shard's key;
 *   hrw     rendezvous hashing (Thaler and Ravishankar, "Using name-based
 *           mappings to increase hit rates", IEEE/ACM ToN 1998): the rf
 *           nodes of highest hash(node, shard);
 *   hrw-cap rendezvous hashing with bounded loads (after Mirrokni, Thorup
 *           and Zadimoghaddam, "Consistent hashing with bounded loads",
 *           SODA 2018): shards in order take the highest-weight nodes that
 *           hold fewer than ceil(1.05 * mean) replicas;
 *
 * and prints, per scheme:
 *
 *   max/mean  replicas on the most loaded node over the mean (goal <= 1.05;
 *             `bound` is ceil(mean)/mean, the best any placement can do);
 *   prim      the same for primaries (the first replica of each shard);
 *   add       replicas copied when a node joins over its fair share,
 *             total/(nodes+1) (goal <= 1.1);
 *   remove    replicas copied when a node leaves (node nodes/2) over the
 *             replicas it held, which must all move (goal <= 1.1).
 *
 * A copied replica is one that a shard's new replica set has and its old one
 * had not; a primary change inside the same set copies nothing.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/placement.h"
#include "cluster/ring.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/hash.h"

enum { MAX_NODES = 101, MAX_SHARDS = 4096, RF_MAX = DRIFT_PLACEMENT_MAX_RF };
enum { TABLE, RING, HRW, HRW_CAP, SCHEMES };
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
static const char *scheme_name[SCHEMES] = {"table", "ring", "hrw", "hrw-cap"};

/* A placement: node numbers (0..) per shard, primary first. */
typedef struct layout {
	int rep[MAX_SHARDS][RF_MAX];
} layout;

typedef struct result {
	double max_mean, prim_max_mean, add, remove;
} result;

static char names[MAX_NODES][16];

static void die(const char *what, int rv)
{
	fprintf(stderr, "placement-bench: %s: %s\n", what, drift_strerror(rv));
	exit(1);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- The schemes ------------------------------------------------------ */

/* Nodes are numbered; `present` says which are members. */
typedef struct cluster {
	bool present[MAX_NODES];
	size_t n_nodes; /* numbers 0..n_nodes-1 are candidates */
	uint32_t rf;
	size_t shards;
} cluster;

static uint64_t node_key(int node)
{
	return (uint64_t)node + 1;
}

static void place_ring(const cluster *c, layout *out)
{
	drift_ring *r;
	int rv = drift_ring_new(DRIFT_RING_DEFAULT_VNODES, &r);
	if (rv != 0)
		die("ring", rv);
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->present[i] && (rv = drift_ring_add(r, node_key((int)i))))
			die("ring add", rv);
	for (size_t s = 0; s < c->shards; s++) {
		uint64_t got[RF_MAX];
		unsigned n = drift_ring_place(
			r, drift_shard_key("bench", (uint32_t)s), c->rf, got);
		if (n != c->rf)
			die("ring place", DRIFT_EINTERNAL);
		for (unsigned k = 0; k < n; k++)
			out->rep[s][k] = (int)(got[k] - 1);
	}
	drift_ring_free(r);
}

static uint64_t hrw_weight(int node, size_t shard)
{
	return drift_hash_u64(node_key(node),
			      drift_shard_key("bench", (uint32_t)shard));
}

/* cap 0: no cap. */
static void place_hrw(const cluster *c, long cap, layout *out)
{
	long load[MAX_NODES] = {0};
	for (size_t s = 0; s < c->shards; s++) {
		/* Highest weights first: rf is small, so pick rf times. */
		bool taken[MAX_NODES] = {false};
		for (uint32_t k = 0; k < c->rf; k++) {
			int best = -1;
			uint64_t bw = 0;
			for (size_t i = 0; i < c->n_nodes; i++) {
				if (!c->present[i] || taken[i] ||
				    (cap > 0 && load[i] >= cap))
					continue;
				uint64_t w = hrw_weight((int)i, s);
				if (best < 0 || w > bw) {
					best = (int)i;
					bw = w;
				}
			}
			if (best < 0)
				die("hrw: no node under the cap",
				    DRIFT_EINTERNAL);
			taken[best] = true;
			load[best]++;
			out->rep[s][k] = best;
		}
	}
}

static long hrw_cap(const cluster *c)
{
	size_t members = 0;
	for (size_t i = 0; i < c->n_nodes; i++)
		members += c->present[i];
	double mean = (double)c->shards * c->rf / (double)members;
	return (long)ceil(1.05 * mean);
}

/* The table scheme keeps its own state across membership changes: plan
 * on the previous table, as the leader does. */
typedef struct table {
	struct drift_placement_node nodes[MAX_NODES];
	struct drift_placement_shard sh[MAX_SHARDS];
	double plan_ms;
} table;

static void table_plan(table *t, const cluster *c, layout *out)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		t->nodes[i] =
			(struct drift_placement_node){names[i], c->present[i]};
	struct drift_placement_move *mv;
	size_t n_mv;
	double t0 = now_ms();
	int rv = drift_placement_plan(t->nodes, c->n_nodes, t->sh, c->shards,
				      true, &mv, &n_mv);
	t->plan_ms = now_ms() - t0;
	if (rv != 0)
		die("plan", rv);
	drift_free(mv);
	for (size_t s = 0; s < c->shards; s++)
		for (uint32_t k = 0; k < c->rf; k++)
			out->rep[s][k] = atoi(t->sh[s].nodes[k] + 5);
}

static void place(int scheme, table *t, const cluster *c, layout *out)
{
	switch (scheme) {
	case TABLE:
		table_plan(t, c, out);
		break;
	case RING:
		place_ring(c, out);
		break;
	case HRW:
		place_hrw(c, 0, out);
		break;
	default:
		place_hrw(c, hrw_cap(c), out);
		break;
	}
}

/* ---- Measures --------------------------------------------------------- */

static void loads(const cluster *c, const layout *l, long *rep, long *prim)
{
	memset(rep, 0, MAX_NODES * sizeof(*rep));
	memset(prim, 0, MAX_NODES * sizeof(*prim));
	for (size_t s = 0; s < c->shards; s++) {
		prim[l->rep[s][0]]++;
		for (uint32_t k = 0; k < c->rf; k++)
			rep[l->rep[s][k]]++;
	}
}

static double max_over_mean(const cluster *c, const long *count, long total)
{
	long max = 0;
	size_t members = 0;
	for (size_t i = 0; i < c->n_nodes; i++) {
		if (!c->present[i])
			continue;
		members++;
		if (count[i] > max)
			max = count[i];
	}
	return (double)max / ((double)total / (double)members);
}

static long copied(const cluster *c, const layout *a, const layout *b)
{
	long n = 0;
	for (size_t s = 0; s < c->shards; s++)
		for (uint32_t k = 0; k < c->rf; k++) {
			bool had = false;
			for (uint32_t j = 0; j < c->rf; j++)
				had |= a->rep[s][j] == b->rep[s][k];
			n += !had;
		}
	return n;
}

static layout before_l, after_l;
static table tables;

static result measure(int scheme, size_t n_nodes, uint32_t rf, size_t shards,
		      double *plan_ms)
{
	result r;
	cluster c = {.n_nodes = n_nodes, .rf = rf, .shards = shards};
	for (size_t i = 0; i < n_nodes; i++)
		c.present[i] = true;
	for (size_t s = 0; s < shards; s++)
		tables.sh[s] = (struct drift_placement_shard){.rf = rf};
	place(scheme, &tables, &c, &before_l);
	long rep[MAX_NODES], prim[MAX_NODES];
	loads(&c, &before_l, rep, prim);
	long total = (long)shards * rf;
	r.max_mean = max_over_mean(&c, rep, total);
	r.prim_max_mean = max_over_mean(&c, prim, (long)shards);

	/* A node joins. */
	static struct drift_placement_shard saved[MAX_SHARDS];
	memcpy(saved, tables.sh, shards * sizeof(*saved));
	cluster grown = c;
	grown.n_nodes = n_nodes + 1;
	grown.present[n_nodes] = true;
	place(scheme, &tables, &grown, &after_l);
	r.add = (double)copied(&c, &before_l, &after_l) /
		((double)total / (double)(n_nodes + 1));
	if (scheme == TABLE)
		*plan_ms = tables.plan_ms;

	/* Node n/2 leaves (from the state before the join), unless the rest
	 * cannot hold rf replicas. */
	r.remove = NAN;
	if (rf >= n_nodes)
		return r;
	memcpy(tables.sh, saved, shards * sizeof(*saved));
	cluster shrunk = c;
	int gone = (int)(n_nodes / 2);
	shrunk.present[gone] = false;
	place(scheme, &tables, &shrunk, &after_l);
	r.remove = rep[gone] == 0 ? 1.0
				  : (double)copied(&c, &before_l, &after_l) /
					    (double)rep[gone];
	return r;
}

/* ---- A table with a history ------------------------------------------- */

static long copies_of(const struct drift_placement_move *mv, size_t n)
{
	long c = 0;
	for (size_t i = 0; i < n; i++)
		c += mv[i].to != NULL;
	return c;
}

static long held_by(const table *t, size_t shards, const char *id)
{
	long n = 0;
	for (size_t s = 0; s < shards; s++)
		for (uint32_t k = 0; k < t->sh[s].n; k++)
			n += strcmp(t->sh[s].nodes[k], id) == 0;
	return n;
}

static double table_max_mean(const table *t, size_t n_nodes, size_t shards)
{
	long count[MAX_NODES] = {0}, total = 0, max = 0;
	size_t members = 0;
	for (size_t s = 0; s < shards; s++)
		for (uint32_t k = 0; k < t->sh[s].n; k++, total++)
			count[atoi(t->sh[s].nodes[k] + 5)]++;
	for (size_t i = 0; i < n_nodes; i++) {
		members += t->nodes[i].accepts;
		if (t->nodes[i].accepts && count[i] > max)
			max = count[i];
	}
	return (double)max / ((double)total / (double)members);
}

static long plan_copies(table *t, size_t n_nodes, size_t shards)
{
	struct drift_placement_move *mv;
	size_t n;
	int rv = drift_placement_plan(t->nodes, n_nodes, t->sh, shards, true,
				      &mv, &n);
	if (rv != 0)
		die("plan", rv);
	long c = copies_of(mv, n);
	drift_free(mv);
	return c;
}

/*
 * The stateless schemes place the same whatever the history; the table
 * does not. Here a cluster grows from half its size one node at a time
 * (rebalance after each join), then an original node and the last to join
 * leave in turn: moved / minimal as above, worst over the joins.
 */
static void growth(bool quick)
{
	static const size_t sizes[] = {10, 20, 50, 100};
	static const uint32_t grf[] = {3, 5};
	static const size_t gshards[] = {256, 4096};
	printf("\nThe table after growth from nodes/2, one join at a time:\n\n"
	       "| nodes | rf | shards | worst join | leave of an original | "
	       "then leave of the last joined | max/mean at the end |\n"
	       "|---|---|---|---|---|---|---|\n");
	for (size_t a = 0; a < COUNT(sizes); a++)
		for (size_t b = 0; b < COUNT(grf); b++)
			for (size_t d = 0; d < COUNT(gshards); d++) {
				if (quick && (a % 2 || d % 2))
					continue;
				size_t nn = sizes[a], ns = gshards[d];
				uint32_t rf = grf[b];
				table *t = &tables;
				for (size_t i = 0; i < nn; i++)
					t->nodes[i] =
						(struct drift_placement_node){
							names[i], true};
				for (size_t s = 0; s < ns; s++)
					t->sh[s] =
						(struct drift_placement_shard){
							.rf = rf};
				plan_copies(t, nn / 2, ns);
				double worst_join = 0;
				for (size_t k = nn / 2 + 1; k <= nn; k++) {
					double share =
						(double)ns * rf / (double)k;
					double r =
						(double)plan_copies(t, k, ns) /
						share;
					worst_join = fmax(worst_join, r);
				}
				double leave[2];
				size_t gone[2] = {0, nn - 1};
				for (int g = 0; g < 2; g++) {
					long must =
						held_by(t, ns, names[gone[g]]);
					t->nodes[gone[g]].accepts = false;
					leave[g] =
						(double)plan_copies(t, nn, ns) /
						(double)must;
				}
				printf("| %zu | %u | %zu | %.3f | %.3f | %.3f "
				       "| "
				       "%.3f |\n",
				       nn, rf, ns, worst_join, leave[0],
				       leave[1], table_max_mean(t, nn, ns));
				fflush(stdout);
			}
}

/* ---- Main ------------------------------------------------------------- */

static const size_t node_counts[] = {3, 5, 10, 20, 50, 100};
static const uint32_t rfs[] = {1, 2, 3, 5};
static const size_t shard_counts[] = {64, 256, 1024, 4096};

typedef struct summary {
	double worst_max, worst_prim, worst_add, worst_remove;
	int rows, met, prim_rows, prim_met;
} summary;

int main(int argc, char **argv)
{
	bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	if (argc > 1 && !quick) {
		fprintf(stderr, "usage: placement-bench [--quick]\n");
		return 2;
	}
	for (int i = 0; i < MAX_NODES; i++)
		snprintf(names[i], sizeof(names[i]), "node-%03d", i);

	printf("| nodes | rf | shards | mean | bound | prim bound |");
	for (int m = 0; m < 4; m++)
		for (int s = 0; s < SCHEMES; s++)
			printf(" %s %s |",
			       (const char *[]){"max/mean", "prim", "add",
						"remove"}[m],
			       scheme_name[s]);
	printf("\n|---|---|---|---|---|---|");
	for (int i = 0; i < 4 * SCHEMES; i++)
		printf("---|");
	printf("\n");

	summary sum[SCHEMES] = {0};
	double worst_plan_ms = 0;
	size_t worst_at[3] = {0, 0, 0};
	for (size_t a = 0; a < COUNT(node_counts); a++) {
		for (size_t b = 0; b < COUNT(rfs); b++) {
			for (size_t d = 0; d < COUNT(shard_counts); d++) {
				size_t nn = node_counts[a],
				       ns = shard_counts[d];
				uint32_t rf = rfs[b];
				if (rf > nn || (quick && (d % 2 || a % 2)))
					continue;
				double mean = (double)ns * rf / (double)nn;
				double bound = ceil(mean) / mean;
				double pmean = (double)ns / (double)nn;
				double pbound = ceil(pmean) / pmean;
				result r[SCHEMES];
				for (int s = 0; s < SCHEMES; s++) {
					double ms = 0;
					r[s] = measure(s, nn, rf, ns, &ms);
					if (ms > worst_plan_ms) {
						worst_plan_ms = ms;
						worst_at[0] = nn;
						worst_at[1] = rf;
						worst_at[2] = ns;
					}
				}
				printf("| %zu | %u | %zu | %.1f | %.3f | %.3f "
				       "|",
				       nn, rf, ns, mean, bound, pbound);
				for (int s = 0; s < SCHEMES; s++)
					printf(" %.3f |", r[s].max_mean);
				for (int s = 0; s < SCHEMES; s++)
					printf(" %.3f |", r[s].prim_max_mean);
				for (int s = 0; s < SCHEMES; s++)
					printf(" %.3f |", r[s].add);
				for (int s = 0; s < SCHEMES; s++)
					if (isnan(r[s].remove))
						printf(" - |");
					else
						printf(" %.3f |", r[s].remove);
				printf("\n");
				fflush(stdout);
				/* The summary counts the rows where the goal
				 * can be met at all: ceil(mean) within 1.05x
				 * of the mean (of primaries, for prim). */
				for (int s = 0; s < SCHEMES; s++) {
					summary *u = &sum[s];
					if (pbound <= 1.05) {
						u->prim_rows++;
						u->prim_met +=
							r[s].prim_max_mean <=
							1.05;
						u->worst_prim = fmax(
							u->worst_prim,
							r[s].prim_max_mean);
					}
					if (bound > 1.05)
						continue;
					u->rows++;
					u->met += r[s].max_mean <= 1.05 &&
						  r[s].add <= 1.1 &&
						  !(r[s].remove > 1.1);
					u->worst_max = fmax(u->worst_max,
							    r[s].max_mean);
					u->worst_add =
						fmax(u->worst_add, r[s].add);
					if (!isnan(r[s].remove))
						u->worst_remove =
							fmax(u->worst_remove,
							     r[s].remove);
				}
			}
		}
	}

	printf("\nRows where ceil(mean) <= 1.05 x mean (the goal is reachable):"
	       "\n\n| scheme | rows meeting max/mean, add and remove goals "
	       "| worst max/mean | worst add | worst remove "
	       "| rows with prim <= 1.05 | worst prim |\n"
	       "|---|---|---|---|---|---|---|\n");
	for (int s = 0; s < SCHEMES; s++)
		printf("| %s | %d of %d | %.3f | %.3f | %.3f | %d of %d | %.3f "
		       "|\n",
		       scheme_name[s], sum[s].met, sum[s].rows,
		       sum[s].worst_max, sum[s].worst_add, sum[s].worst_remove,
		       sum[s].prim_met, sum[s].prim_rows, sum[s].worst_prim);
	printf("\nSlowest table plan (a join, rebalance on): %.1f ms, at %zu "
	       "nodes, rf %zu, %zu shards\n",
	       worst_plan_ms, worst_at[0], worst_at[1], worst_at[2]);
	growth(quick);
	return 0;
}
