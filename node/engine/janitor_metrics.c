#include "node/engine/janitor_metrics.h"

#include <pthread.h>

#include "common/metrics.h"

static const char *const names[DRIFT_JANITOR_ACT_COUNT] = {
	"flush", "split", "merge", "recenter", "compaction"};

static drift_series *series[DRIFT_JANITOR_ACT_COUNT];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void register_series(void)
{
	drift_metric_family *f;
	const char *labels[] = {"action"};
	if (drift_metrics_family(
		    drift_metrics_default(), DRIFT_METRIC_HISTOGRAM,
		    "drift_janitor_action_seconds",
		    "Duration of the Janitor's actions, by kind (every shard "
		    "of the node).",
		    labels, 1, drift_metrics_latency_bounds,
		    drift_metrics_latency_nbounds, &f) != 0)
		return;
	for (int a = 0; a < DRIFT_JANITOR_ACT_COUNT; a++) {
		const char *v[] = {names[a]};
		if (drift_metrics_series(f, v, &series[a]) != 0)
			series[a] = NULL;
	}
}

const char *drift_janitor_action_name(enum drift_janitor_action a)
{
	return a < DRIFT_JANITOR_ACT_COUNT ? names[a] : "unknown";
}

void drift_janitor_metrics_init(void)
{
	pthread_once(&once, register_series);
}

void drift_janitor_metrics_observe(enum drift_janitor_action a, uint64_t ns)
{
	if (a >= DRIFT_JANITOR_ACT_COUNT)
		return;
	pthread_once(&once, register_series);
	drift_metrics_observe(series[a], (double)ns / 1e9);
}
