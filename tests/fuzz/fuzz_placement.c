/* Fuzz target: arbitrary bytes as a cluster and its placement table for
 * drift_placement_plan. A plan either fails with nothing changed, or gives
 * a valid table (rf distinct replicas per shard, all on accepting nodes)
 * explained by its moves, that a second plan leaves as it is.
 *
 * Input: byte 0 the node count (1..12), bytes 1-2 which nodes accept,
 * byte 3 flags (bit 0 rebalance, bit 1 a repeated node id), then 7 bytes
 * per shard (up to 64): rf, n, and five replicas, each a node index, an
 * unknown name or NULL. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_NODES = 12, MAX_SHARDS = 64, RF = DRIFT_PLACEMENT_MAX_RF };

static const char *const names[MAX_NODES] = {"a", "b", "c", "d", "e", "f",
					     "g", "h", "i", "j", "k", "l"};

static bool accepting(const struct drift_placement_node *nodes, size_t nn,
		      const char *id)
{
	for (size_t i = 0; i < nn; i++)
		if (nodes[i].id == id)
			return nodes[i].accepts;
	return false; /* not one of our strings */
}

static void check_valid(const struct drift_placement_node *nodes, size_t nn,
			const struct drift_placement_shard *sh, size_t ns)
{
	for (size_t s = 0; s < ns; s++) {
		if (sh[s].n != sh[s].rf)
			abort();
		for (uint32_t i = 0; i < sh[s].n; i++) {
			if (!accepting(nodes, nn, sh[s].nodes[i]))
				abort();
			for (uint32_t j = 0; j < i; j++)
				if (sh[s].nodes[i] == sh[s].nodes[j])
					abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct drift_placement_node nodes[MAX_NODES];
	size_t nn = 1 + data[0] % MAX_NODES;
	unsigned acc = data[1] | (unsigned)data[2] << 8;
	bool rebalance = data[3] & 1;
	for (size_t i = 0; i < nn; i++)
		nodes[i] =
			(struct drift_placement_node){names[i], (acc >> i) & 1};
	if ((data[3] & 2) && nn > 1)
		nodes[1].id = "a";
	data += 4;
	size -= 4;

	static struct drift_placement_shard sh[MAX_SHARDS], keep[MAX_SHARDS];
	size_t ns = 0;
	for (; ns < MAX_SHARDS && size >= 7; ns++, data += 7, size -= 7) {
		sh[ns] = (struct drift_placement_shard){.rf = data[0] % 7u,
							.n = data[1] % 7u};
		for (uint32_t i = 0; i < RF; i++) {
			unsigned k = data[2 + i] % (nn + 2);
			sh[ns].nodes[i] = k < nn    ? nodes[k].id
					  : k == nn ? "unknown"
						    : NULL;
		}
	}
	memcpy(keep, sh, ns * sizeof(*sh));

	struct drift_placement_move *mv = NULL;
	size_t n_mv = 0;
	int rv = drift_placement_plan(nodes, nn, sh, ns, rebalance, &mv, &n_mv);
	if (rv != 0) {
		if (rv != DRIFT_EINVAL || mv != NULL || n_mv != 0 ||
		    memcmp(keep, sh, ns * sizeof(*sh)) != 0)
			abort();
		return 0;
	}
	check_valid(nodes, nn, sh, ns);
	for (size_t m = 0; m < n_mv; m++)
		if (mv[m].shard >= ns ||
		    (mv[m].from == NULL && mv[m].to == NULL))
			abort();
	drift_free(mv);

	/* A second plan with the same flag changes nothing. */
	memcpy(keep, sh, ns * sizeof(*sh));
	if (drift_placement_plan(nodes, nn, sh, ns, rebalance, &mv, &n_mv) !=
		    0 ||
	    n_mv != 0 || memcmp(keep, sh, ns * sizeof(*sh)) != 0)
		abort();
	return 0;
}
