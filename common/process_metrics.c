#include "common/process_metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/metrics.h"

static void gauge(drift_metrics_out *o, const char *name, const char *help,
		  double v)
{
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, name, help, NULL, NULL, 0, v);
}

/* Boot time (btime of /proc/stat), for the start time: /proc/self/stat
 * gives it in clock ticks since boot. -1 when unknown. */
static double boot_time(void)
{
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	char line[256];
	double bt = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long v;
		if (sscanf(line, "btime %llu", &v) == 1) {
			bt = (double)v;
			break;
		}
	}
	fclose(f);
	return bt;
}

static void collect_stat(drift_metrics_out *o)
{
	FILE *f = fopen("/proc/self/stat", "r");
	if (f == NULL)
		return;
	char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Field 2 (comm) is in parentheses and may hold spaces: the fields
	 * that follow start after the last ')'. */
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return;
	unsigned long long utime, stime, start, vsize;
	long threads, rss;
	/* Fields 3..24 (proc(5)): state, ppid ... utime(14) stime(15) ...
	 * num_threads(20) itrealvalue starttime(22) vsize(23) rss(24). */
	if (sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
		   "%*d %*d %*d %*d %ld %*d %llu %llu %ld",
		   &utime, &stime, &threads, &start, &vsize, &rss) != 6)
		return;
	double tick = (double)sysconf(_SC_CLK_TCK);
	double page = (double)sysconf(_SC_PAGESIZE);
	drift_metrics_emit(o, DRIFT_METRIC_COUNTER,
			   "drift_process_cpu_seconds_total",
			   "User and system CPU time of the process.", NULL,
			   NULL, 0, (double)(utime + stime) / tick);
	gauge(o, "drift_process_threads", "Threads of the process.",
	      (double)threads);
	gauge(o, "drift_process_virtual_memory_bytes",
	      "Virtual memory size of the process.", (double)vsize);
	gauge(o, "drift_process_resident_memory_bytes",
	      "Resident memory of the process.", (double)rss * page);
	double bt = boot_time();
	if (bt >= 0)
		gauge(o, "drift_process_start_time_seconds",
		      "Start of the process, seconds since the Unix epoch.",
		      bt + (double)start / tick);
}

static void collect_fds(drift_metrics_out *o)
{
	DIR *d = opendir("/proc/self/fd");
	if (d != NULL) {
		long n = 0;
		while (readdir(d) != NULL)
			n++;
		closedir(d);
		/* ".", ".." and the directory's own descriptor. */
		gauge(o, "drift_process_open_fds",
		      "Open file descriptors of the process.",
		      (double)(n > 3 ? n - 3 : 0));
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		gauge(o, "drift_process_max_fds",
		      "The limit on open file descriptors (soft).",
		      (double)rl.rlim_cur);
}

static void collect(drift_metrics_out *o, void *ctx)
{
	(void)ctx;
	collect_stat(o);
	collect_fds(o);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int start_rv;

static void start_once(void)
{
	drift_metrics *r = drift_metrics_default();
	start_rv = r == NULL ? DRIFT_ENOMEM
			     : drift_metrics_add_collector(r, collect, NULL);
}

int drift_process_metrics_start(void)
{
	pthread_once(&once, start_once);
	return start_rv;
}
