/* Tests of node/shard: writes through memtable rotations and flushes into
 * L1 stay readable (get, search) with their newest value; deletes stay
 * deleted; reopening gives identical answers; a child process killed with
 * SIGKILL in the middle of acknowledged writes loses none of them; bad
 * input changes nothing; searches running during writes, flushes and
 * maintenance always get well-formed answers without deleted ids. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/rand.h"
#include "node/codec/bloom.h"
#include "node/storage/segment.h"
#include "node/engine/shard.h"
#include "drift_test.h"

/* ---- Fixture ---- */

#define DIM DRIFT_TEST_FMNIST_DIM
#define N 4000

static float *data;

static void setup(void)
{
	size_t n;
	data = drift_test_fmnist("train", N + 200, &n);
	cr_assert_eq(n, N + 200);
}

static void teardown(void)
{
	free(data);
}

TestSuite(shard, .init = setup, .fini = teardown);

/* ---- Helpers ---- */

static drift_shard *open_shard(const char *dir, bool janitor,
			       enum drift_wal_sync sync)
{
	drift_shard_opts o = {.dir = dir,
			      .dim = DIM,
			      .metric = DRIFT_METRIC_L2,
			      .sync = sync,
			      .memtable_rows = 700,
			      .bucket_target = 100,
			      .janitor = janitor,
			      .janitor_period_ns = 5000000,
			      .seed = 1};
	drift_shard *s;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_shard_open(&o, &s, &err);
	cr_assert_eq(rv, 0, "open: %s", err.msg);
	return s;
}

static const float *row(size_t i)
{
	return data + (i % (N + 200)) * DIM;
}

static float l2(const float *a, const float *b)
{
	double d = 0;
	for (int j = 0; j < DIM; j++)
		d += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
	return (float)d;
}

/* Upserts ids [lo, hi) with rows (id + shift). */
static void upsert_range(drift_shard *s, size_t lo, size_t hi, size_t shift)
{
	enum { B = 250 };
	uint64_t ids[B];
	static float vecs[B * DIM];
	for (size_t i = lo; i < hi;) {
		size_t n = 0;
		for (; n < B && i < hi; n++, i++) {
			ids[n] = i;
			memcpy(vecs + n * DIM, row(i + shift),
			       DIM * sizeof(float));
		}
		drift_err err;
		cr_assert_eq(drift_shard_upsert(s, ids, vecs, n, &err), 0, "%s",
			     err.msg);
	}
}

/* The state the tests expect: per id, deleted or which row it holds. */
struct model {
	int8_t deleted[N];
	size_t shift[N];
};

static void check_model(drift_shard *s, const struct model *m, size_t n)
{
	static float v[DIM];
	for (size_t i = 0; i < n; i++) {
		int rv = drift_shard_get(s, i, v);
		if (m->deleted[i]) {
			cr_assert_eq(rv, DRIFT_ENOENT, "id %zu is deleted", i);
		} else {
			cr_assert_eq(rv, 0, "id %zu", i);
			cr_assert_eq(memcmp(v, row(i + m->shift[i]), sizeof(v)),
				     0, "id %zu has its newest vector", i);
		}
	}
	/* Exact searches agree with a brute force over the model. */
	drift_shard_search_opts so = {.k = 10, .recall_target = 1.0f};
	for (int q = 0; q < 10; q++) {
		const float *qv = data + (size_t)(N + 100 + q) * DIM;
		drift_hit h[10];
		size_t nh;
		cr_assert_eq(drift_shard_search(s, qv, &so, h, &nh), 0);
		float best[10];
		size_t nb = 0;
		for (size_t i = 0; i < n; i++) {
			if (m->deleted[i])
				continue;
			float d = l2(qv, row(i + m->shift[i]));
			size_t p = nb < 10 ? nb++ : 10;
			while (p > 0 && best[p - 1] > d) {
				if (p < 10)
					best[p] = best[p - 1];
				p--;
			}
			if (p < 10)
				best[p] = d;
		}
		cr_assert_eq(nh, nb);
		for (size_t i = 0; i < nh; i++) {
			cr_assert(!m->deleted[h[i].id], "deleted id returned");
			float want = best[i];
			cr_assert(fabsf(h[i].distance - want) <=
					  1e-3f * (want + 1),
				  "query %d rank %zu: %g vs %g", q, i,
				  (double)h[i].distance, (double)want);
		}
	}
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	size_t live = 0;
	for (size_t i = 0; i < n; i++)
		live += !m->deleted[i];
	cr_assert_eq(st.live, live, "live count %llu vs %zu",
		     (unsigned long long)st.live, live);
}

/* Every segment carries a bloom filter of its ids: each live id is
 * "maybe" in some segment, and ids never written are rarely "maybe". */
static void check_blooms(const char *dir, const struct model *m, size_t n)
{
	char segdir[300];
	snprintf(segdir, sizeof(segdir), "%s/seg", dir);
	DIR *d = opendir(segdir);
	cr_assert_not_null(d);
	static drift_bloom blooms[64];
	static drift_segment_reader *readers[64];
	int nb = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && nb < 64) {
		if (strstr(de->d_name, ".drift") == NULL)
			continue;
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", segdir, de->d_name);
		drift_err err;
		cr_assert_eq(drift_segr_open(drift_fs_posix(), path,
					     &readers[nb], &err),
			     0, "%s", err.msg);
		const void *sec;
		size_t len;
		cr_assert_eq(drift_segr_section(readers[nb], 1, &sec, &len), 0,
			     "%s has a bloom filter section", de->d_name);
		cr_assert_eq(drift_bloom_view(&blooms[nb], sec, len), 0);
		nb++;
	}
	closedir(d);
	cr_assert_gt(nb, 0);
	for (size_t i = 0; i < n; i++) {
		if (m->deleted[i])
			continue;
		bool any = false;
		for (int b = 0; b < nb && !any; b++)
			any = drift_bloom_maybe(&blooms[b], i);
		cr_assert(any, "live id %zu is in no segment's bloom filter",
			  i);
	}
	int fp = 0;
	for (uint64_t i = 0; i < 10000; i++)
		fp += drift_bloom_maybe(&blooms[0], 1000000007ull + i);
	cr_assert_lt(fp, 300, "false positives %d in 10000", fp);
	for (int b = 0; b < nb; b++)
		drift_segr_close(readers[b]);
}

/* ---- Cases ---- */

DRIFT_TEST(shard, writes_flushes_and_reopen)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	static struct model m;
	memset(&m, 0, sizeof(m));
	drift_shard *s = open_shard(dir, false, DRIFT_WAL_NONE);
	/* 3,000 ids through several rotations (700 rows each). */
	upsert_range(s, 0, 3000, 0);
	/* Updates of 500 of them, deletes of 300 others. */
	upsert_range(s, 1000, 1500, 7);
	for (size_t i = 1000; i < 1500; i++)
		m.shift[i] = 7;
	uint64_t del[300];
	for (size_t i = 0; i < 300; i++) {
		del[i] = 2000 + 3 * i;
		m.deleted[del[i]] = 1;
	}
	size_t deleted;
	drift_err err;
	cr_assert_eq(drift_shard_delete(s, del, 300, &deleted, &err), 0);
	cr_assert_eq(deleted, 300);
	/* Unknown ids are not an error and do not count. */
	uint64_t unknown[2] = {999999, 2000};
	cr_assert_eq(drift_shard_delete(s, unknown, 2, &deleted, &err), 0);
	cr_assert_eq(deleted, 0);
	check_model(s, &m, 3000);
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	cr_assert_gt(st.flushes, 2, "rotations flushed into L1");
	cr_assert_gt(st.l1_vectors, 1000);
	/* The memtables' memory is their rows' (a full vector and lists
	 * each), not their capacity's. */
	cr_assert(st.l0_bytes >= (uint64_t)st.l0_rows * DIM * 4 &&
			  st.l0_bytes < ((uint64_t)st.l0_rows + 64) *
						(DIM * 4 + 1024),
		  "%u rows in L0 hold %llu bytes", st.l0_rows,
		  (unsigned long long)st.l0_bytes);

	/* Close with data still in L0 (only in the WAL): reopen replays. */
	drift_shard_close(s);
	s = open_shard(dir, false, DRIFT_WAL_NONE);
	check_model(s, &m, 3000);
	/* Flush everything, reopen: all from L1 now, WAL retired. */
	cr_assert_eq(drift_shard_flush(s, &err), 0, "%s", err.msg);
	drift_shard_stats_get(s, &st);
	cr_assert_eq(st.l0_rows, 0);
	cr_assert_lt(st.l0_bytes, 64 * (DIM * 4 + 1024),
		     "an empty memtable: %llu bytes",
		     (unsigned long long)st.l0_bytes);
	cr_assert_eq(st.flushed_seq, st.wal_seq);
	drift_shard_close(s);
	s = open_shard(dir, false, DRIFT_WAL_NONE);
	check_model(s, &m, 3000);
	drift_shard_close(s);
	check_blooms(dir, &m, 3000);
	drift_test_rmtree(dir);
}

DRIFT_TEST(shard, bad_input_changes_nothing)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	drift_shard *s = open_shard(dir, false, DRIFT_WAL_ALWAYS);
	upsert_range(s, 0, 100, 0);
	static float v[2 * DIM];
	memcpy(v, row(5), DIM * sizeof(float));
	memcpy(v + DIM, row(6), DIM * sizeof(float));
	v[DIM + 17] = NAN;
	uint64_t ids[2] = {5000, 5001};
	drift_err err;
	cr_assert_eq(drift_shard_upsert(s, ids, v, 2, &err), DRIFT_EINVAL);
	cr_assert(strstr(err.msg, "vector 1") != NULL, "%s", err.msg);
	v[DIM + 17] = INFINITY;
	cr_assert_eq(drift_shard_upsert(s, ids, v, 2, &err), DRIFT_EINVAL);
	float tmp[DIM];
	cr_assert_eq(drift_shard_get(s, 5000, tmp), DRIFT_ENOENT,
		     "all or nothing");
	float *big = drift_calloc((size_t)701 * DIM, sizeof(float));
	uint64_t *bids = drift_calloc(701, 8);
	cr_assert_eq(drift_shard_upsert(s, bids, big, 701, &err), DRIFT_ELIMIT);
	drift_free(big);
	drift_free(bids);
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	cr_assert_eq(st.live, 100);
	drift_shard_close(s);
	/* Another dimension: refused, naming what the shard holds. */
	drift_shard_opts o = {.dir = dir, .dim = 8};
	cr_assert_eq(drift_shard_open(&o, &s, &err), DRIFT_EINVAL);
	cr_assert(strstr(err.msg, "dim=784") != NULL, "%s", err.msg);
	/* A damaged manifest is reported with its path. */
	s = open_shard(dir, false, DRIFT_WAL_ALWAYS);
	cr_assert_eq(drift_shard_flush(s, &err), 0);
	drift_shard_close(s);
	char path[300];
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	FILE *f = fopen(path, "r+b");
	fseek(f, 40, SEEK_SET);
	fputc(0x42, f);
	fclose(f);
	drift_shard_opts o2 = {
		.dir = dir, .dim = DIM, .memtable_rows = 700, .seed = 1};
	cr_assert_eq(drift_shard_open(&o2, &s, &err), DRIFT_ECORRUPT);
	cr_assert(strstr(err.msg, "MANIFEST") != NULL, "%s", err.msg);
	drift_test_rmtree(dir);
}

/* A shard laid out by drift_shard_prepare opens empty with what it was
 * prepared for, and a second prepare there is refused. */
DRIFT_TEST(shard, prepared_then_opened)
{
	char dir[256], sd[300];
	drift_test_tmpdir(dir, sizeof(dir));
	snprintf(sd, sizeof(sd), "%s/shard-0", dir);
	drift_shard_opts p = {.dir = sd, .dim = DIM, .metric = DRIFT_METRIC_L2};
	drift_err err;
	cr_assert_eq(drift_shard_prepare(&p, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_shard_prepare(&p, &err), DRIFT_EEXIST);
	drift_shard_opts o8 = {.dir = sd, .dim = 8};
	drift_shard *s;
	cr_assert_eq(drift_shard_open(&o8, &s, &err), DRIFT_EINVAL);
	cr_assert(strstr(err.msg, "dim=784") != NULL, "%s", err.msg);
	s = open_shard(sd, false, DRIFT_WAL_ALWAYS);
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	cr_assert_eq(st.live, 0);
	upsert_range(s, 0, 50, 0);
	drift_shard_close(s);
	s = open_shard(sd, false, DRIFT_WAL_ALWAYS);
	drift_shard_stats_get(s, &st);
	cr_assert_eq(st.live, 50);
	drift_shard_close(s);
	drift_test_rmtree(dir);
}

struct pending {
	bool del;
	size_t n;
	uint64_t ids[50];
	uint64_t shift;
};

static void apply_pending(struct model *m, int8_t *known,
			  const struct pending *p)
{
	for (size_t i = 0; i < p->n; i++) {
		m->deleted[p->ids[i]] = p->del;
		m->shift[p->ids[i]] = p->shift;
		known[p->ids[i]] = 1;
	}
}

/* Whether id is in the given state in s. */
static bool holds(drift_shard *s, uint64_t id, bool deleted, size_t shift)
{
	static float v[DIM];
	int rv = drift_shard_get(s, id, v);
	if (deleted)
		return rv == DRIFT_ENOENT;
	return rv == 0 && memcmp(v, row(id + shift), sizeof(v)) == 0;
}

/* A child writes with the ALWAYS policy and reports each acknowledged
 * batch on a pipe; it is killed at a random moment (flushes happen every
 * few batches); after each kill every acknowledged write is there with its
 * newest value and every acknowledged delete stays deleted. */
DRIFT_TEST(shard, kill9_loses_no_acknowledged_write)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	static struct model m;
	memset(&m, 0, sizeof(m));
	static int8_t known[N];
	memset(known, 0, sizeof(known));
	static struct pending pend;
	pend.n = 0;
	drift_rand r;
	drift_rand_seed(&r, 77);
	for (int round = 0; round < 20; round++) {
		int fds[2];
		cr_assert_eq(pipe(fds), 0);
		uint64_t seed = drift_rand_next(&r);
		pid_t pid = fork();
		if (pid == 0) {
			close(fds[0]);
			drift_shard *s =
				open_shard(dir, true, DRIFT_WAL_ALWAYS);
			drift_rand cr;
			drift_rand_seed(&cr, seed);
			for (;;) {
				/* One op: 50 upserts or 20 deletes. */
				uint64_t ids[50];
				static float v[50 * DIM];
				uint8_t msg[1 + 50 * 8 + 50 * 8];
				bool del = drift_rand_below(&cr, 4) == 0;
				size_t n = del ? 20 : 50;
				size_t shift = drift_rand_below(&cr, 100);
				for (size_t i = 0; i < n; i++) {
					ids[i] = drift_rand_below(&cr, N);
					memcpy(v + i * DIM, row(ids[i] + shift),
					       DIM * sizeof(float));
				}
				/* The intent first, then "done" once the
				 * write is acknowledged: the parent knows
				 * which batch may be in flight at the kill. */
				msg[0] = del;
				memcpy(msg + 1, ids, n * 8);
				uint64_t sh = shift;
				memcpy(msg + 1 + n * 8, &sh, 8);
				if (write(fds[1], msg, 1 + n * 8 + 8) < 0)
					_exit(4);
				int rv = del ? drift_shard_delete(s, ids, n,
								  NULL, NULL)
					     : drift_shard_upsert(s, ids, v, n,
								  NULL);
				if (rv != 0)
					_exit(3);
				uint8_t done = 'D';
				if (write(fds[1], &done, 1) < 0)
					_exit(4);
			}
		}
		close(fds[1]);
		/* Let it run 50..400 ms, reading what it acknowledges. */
		uint64_t until = drift_now_ns() +
				 (50 + drift_rand_below(&r, 350)) * 1000000ull;
		static uint8_t buf[1 << 16];
		size_t have = 0;
		bool killed = false;
		for (;;) {
			if (!killed && drift_now_ns() >= until) {
				kill(pid, SIGKILL);
				killed = true;
			}
			ssize_t got =
				read(fds[0], buf + have, sizeof(buf) - have);
			if (got <= 0)
				break;
			have += (size_t)got;
			/* Intents become the model once done. */
			size_t off = 0;
			while (off < have) {
				if (buf[off] == 'D') {
					cr_assert(pend.n > 0);
					apply_pending(&m, known, &pend);
					off++;
					continue;
				}
				bool del = buf[off];
				size_t n = del ? 20 : 50;
				size_t len = 1 + n * 8 + 8;
				if (have - off < len)
					break;
				pend.del = del;
				pend.n = n;
				memcpy(pend.ids, buf + off + 1, n * 8);
				memcpy(&pend.shift, buf + off + 1 + n * 8, 8);
				off += len;
			}
			memmove(buf, buf + off, have - off);
			have -= off;
		}
		close(fds[0]);
		int status;
		waitpid(pid, &status, 0);
		cr_assert(WIFSIGNALED(status), "round %d: child exited %d",
			  round, WEXITSTATUS(status));
		/* Ids never written count as deleted in the model. */
		for (size_t i = 0; i < N; i++)
			if (!known[i])
				m.deleted[i] = 1;
		drift_shard *s = open_shard(dir, false, DRIFT_WAL_ALWAYS);
		/* The batch in flight at the kill is all there or not at all
		 * (one WAL record). */
		if (pend.n > 0) {
			bool all_new = true, all_old = true;
			int odd = -1; /* an id in neither state */
			for (size_t i = 0; i < pend.n; i++) {
				uint64_t id = pend.ids[i];
				bool nw = holds(s, id, pend.del, pend.shift);
				bool ol = holds(s, id, m.deleted[id],
						m.shift[id]);
				all_new &= nw;
				all_old &= ol;
				if (!nw && !ol)
					odd = (int)id;
			}
			cr_assert(all_new || all_old,
				  "round %d: the batch in flight (%s of %zu, "
				  "shift %llu) is partly there; id %d is in "
				  "neither state (model: deleted %d shift "
				  "%zu)",
				  round, pend.del ? "delete" : "upsert", pend.n,
				  (unsigned long long)pend.shift, odd,
				  odd >= 0 ? m.deleted[odd] : -1,
				  odd >= 0 ? m.shift[odd] : 0);
			if (all_new && !all_old)
				apply_pending(&m, known, &pend);
			pend.n = 0;
		}
		check_model(s, &m, N);
		drift_shard_close(s);
	}
	drift_test_rmtree(dir);
}

/* Bytes of the segment files in dir/seg. */
static uint64_t segment_bytes(const char *dir)
{
	char segdir[300];
	snprintf(segdir, sizeof(segdir), "%s/seg", dir);
	DIR *d = opendir(segdir);
	cr_assert_not_null(d);
	uint64_t total = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		if (nl < 6 || strcmp(de->d_name + nl - 6, ".drift") != 0)
			continue;
		char path[600];
		snprintf(path, sizeof(path), "%s/%s", segdir, de->d_name);
		struct stat st;
		if (stat(path, &st) == 0)
			total += (uint64_t)st.st_size;
	}
	closedir(d);
	return total;
}

/* The segment bytes once the Janitor has left them alone for a second
 * (at most 15 s). */
static uint64_t settled_bytes(const char *dir)
{
	uint64_t last = segment_bytes(dir),
		 until = drift_now_ns() + 15000000000ull;
	int same = 0;
	while (same < 10 && drift_now_ns() < until) {
		usleep(100000);
		uint64_t now = segment_bytes(dir);
		same = now == last ? same + 1 : 0;
		last = now;
	}
	return last;
}

/* Deleted data gives its disk space back: segments whose blocks are mostly
 * dead have their live buckets moved into a new segment and are deleted,
 * once the Janitor has run; and the shard reopens with every survivor. */
DRIFT_TEST(shard, space_of_deleted_data_comes_back)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	drift_shard *s = open_shard(dir, true, DRIFT_WAL_NONE);
	/* Several flushes: several segments, buckets spread over them. */
	for (size_t lo = 0; lo < N; lo += 700) {
		upsert_range(s, lo, lo + 700 < N ? lo + 700 : N, 0);
		cr_assert_eq(drift_shard_flush(s, NULL), 0);
	}
	uint64_t before = settled_bytes(dir);
	/* Delete three quarters of the ids. */
	enum { B = 200 };
	uint64_t ids[B];
	size_t nb = 0, kept = 0;
	for (uint64_t i = 0; i < N; i++) {
		if (i % 4 == 0) {
			kept++;
			continue;
		}
		ids[nb++] = i;
		if (nb == B) {
			cr_assert_eq(drift_shard_delete(s, ids, nb, NULL, NULL),
				     0);
			nb = 0;
		}
	}
	if (nb > 0)
		cr_assert_eq(drift_shard_delete(s, ids, nb, NULL, NULL), 0);
	cr_assert_eq(drift_shard_flush(s, NULL), 0);
	/* What the survivors take in a shard that never held the others. */
	char ref[256];
	drift_test_tmpdir(ref, sizeof(ref));
	drift_shard *r = open_shard(ref, true, DRIFT_WAL_NONE);
	for (uint64_t i = 0; i < N; i += 4) {
		uint64_t id = i;
		cr_assert_eq(drift_shard_upsert(r, &id, row(i), 1, NULL), 0);
	}
	cr_assert_eq(drift_shard_flush(r, NULL), 0);
	uint64_t fresh = settled_bytes(ref);
	drift_shard_close(r);
	drift_test_rmtree(ref);
	/* Meanwhile the Janitor merges the shrunk buckets and compacts: wait
	 * for the space to come back (a pause of a second beside other work
	 * on two cores is not the end of it), at most 20 s. */
	uint64_t after = segment_bytes(dir),
		 until = drift_now_ns() + 20000000000ull;
	while ((double)after > 1.3 * (double)fresh && drift_now_ns() < until) {
		usleep(100000);
		after = segment_bytes(dir);
	}
	after = (double)after > 1.3 * (double)fresh ? after
						    : settled_bytes(dir);
	cr_log_info("segments: %llu bytes for %d rows, %llu for the %zu "
		    "left; %llu in a shard of those alone",
		    (unsigned long long)before, N, (unsigned long long)after,
		    kept, (unsigned long long)fresh);
	cr_assert_leq((double)after, 1.3 * (double)fresh,
		      "%llu bytes of segments for the %zu rows left, %llu for "
		      "them alone",
		      (unsigned long long)after, kept,
		      (unsigned long long)fresh);
	drift_shard_close(s);
	s = open_shard(dir, false, DRIFT_WAL_NONE);
	static float v[DIM];
	for (uint64_t i = 0; i < N; i++) {
		int rv = drift_shard_get(s, i, v);
		cr_assert_eq(rv, i % 4 == 0 ? 0 : DRIFT_ENOENT, "id %llu",
			     (unsigned long long)i);
		if (rv == 0)
			cr_assert_eq(memcmp(v, row(i), sizeof(v)), 0);
	}
	drift_shard_close(s);
	drift_test_rmtree(dir);
}

struct race {
	drift_shard *s;
	atomic_bool stop;
	atomic_ullong searches, bad;
};

/* Ids >= 3000 are written then deleted by the writer; a search must never
 * return one whose delete was acknowledged before the search began. */
static _Atomic uint64_t deleted_below; /* ids 3000..this-1 are deleted */

static void *searcher(void *arg)
{
	struct race *rc = arg;
	drift_shard_search_opts so = {.k = 10, .nprobe = 4};
	int q = 0;
	while (!atomic_load(&rc->stop)) {
		uint64_t gone = atomic_load(&deleted_below);
		const float *qv = data + (size_t)(N + (q++ % 100)) * DIM;
		drift_hit h[10];
		size_t nh;
		if (drift_shard_search(rc->s, qv, &so, h, &nh) != 0) {
			atomic_fetch_add(&rc->bad, 1);
			continue;
		}
		for (size_t i = 0; i < nh; i++) {
			bool sorted = i == 0 || !drift_hit_less(h[i], h[i - 1]);
			bool alive = !(h[i].id >= 3000 && h[i].id < gone);
			bool known = h[i].id < 3000 + 20000;
			if (!sorted || !alive || !known ||
			    !isfinite(h[i].distance))
				atomic_fetch_add(&rc->bad, 1);
		}
		atomic_fetch_add(&rc->searches, 1);
	}
	return NULL;
}

DRIFT_TEST(shard, searches_during_writes_flushes_and_maintenance)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	struct race rc = {0};
	rc.s = open_shard(dir, true, DRIFT_WAL_NONE);
	upsert_range(rc.s, 0, 3000, 0);
	atomic_store(&deleted_below, 3000);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, searcher, &rc);
	/* Write ids 3000.. in batches, deleting each batch after the next
	 * one is written: flushes and maintenance run under the searches. */
	uint64_t next = 3000;
	uint64_t until = drift_now_ns() + 2000000000ull;
	static float v[100 * DIM];
	uint64_t ids[100], prev[100];
	size_t nprev = 0;
	while (drift_now_ns() < until && next + 100 < 3000 + 20000) {
		for (int i = 0; i < 100; i++) {
			ids[i] = next + (uint64_t)i;
			memcpy(v + i * DIM, row(ids[i]), DIM * sizeof(float));
		}
		cr_assert_eq(drift_shard_upsert(rc.s, ids, v, 100, NULL), 0);
		if (nprev > 0) {
			cr_assert_eq(drift_shard_delete(rc.s, prev, nprev, NULL,
							NULL),
				     0);
			atomic_store(&deleted_below, prev[nprev - 1] + 1);
		}
		memcpy(prev, ids, sizeof(ids));
		nprev = 100;
		next += 100;
	}
	atomic_store(&rc.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(atomic_load(&rc.bad), 0, "%llu bad results",
		     (unsigned long long)atomic_load(&rc.bad));
	cr_assert_gt(atomic_load(&rc.searches), 20);
	drift_shard_stats st;
	drift_shard_stats_get(rc.s, &st);
	cr_assert_gt(st.flushes, 2);
	drift_shard_close(rc.s);
	drift_test_rmtree(dir);
}

/* ---- Replication ---- */

struct apply_job {
	drift_shard *to;
	drift_shard_record *recs;
	size_t from, n, step; /* recs[from], recs[from + step], ... */
	int failures;
};

static void *apply_main(void *arg)
{
	struct apply_job *j = arg;
	for (size_t i = j->from; i < j->n; i += j->step) {
		drift_err err;
		drift_err_clear(&err);
		const drift_shard_record *r = &j->recs[i];
		if (drift_shard_apply(j->to, r->seq, r->type, r->payload,
				      r->len, drift_now_ns() + 5000000000ull,
				      &err) != 0)
			j->failures++;
	}
	return NULL;
}

struct tail {
	drift_shard *to;
	uint64_t last;
};

static int tail_fn(void *ctx, uint64_t seq, uint32_t type, const void *p,
		   size_t len)
{
	struct tail *t = ctx;
	t->last = seq;
	int rv = drift_shard_apply(t->to, seq, type, p, len, drift_now_ns(),
				   NULL);
	return rv == DRIFT_EEXIST ? 0 : rv;
}

/* A replica that applies the primary's records, two threads at once and
 * out of order, ends with the same contents under the same sequence
 * numbers, through rotations; duplicates and gaps are told apart; a
 * replica that missed records catches up from the primary's log tail. */
DRIFT_TEST(shard, replica_applies_the_primarys_records_in_its_order)
{
	char pd[256], rd[256], td[256];
	drift_test_tmpdir(pd, sizeof(pd));
	drift_test_tmpdir(rd, sizeof(rd));
	drift_test_tmpdir(td, sizeof(td));
	drift_shard *p = open_shard(pd, false, DRIFT_WAL_BATCH);
	drift_shard *r = open_shard(rd, false, DRIFT_WAL_BATCH);
	drift_shard_hold_log(p, 0); /* keep the whole log */
	enum { W = 60 };
	drift_shard_record recs[W];
	uint64_t ids[20];
	for (size_t w = 0; w < W; w++) {
		drift_err err;
		for (size_t i = 0; i < 20; i++)
			ids[i] = (w * 7 + i) % 300; /* ids written again */
		float vecs[20 * DIM];
		for (size_t i = 0; i < 20; i++)
			memcpy(vecs + i * DIM, row(w * 20 + i),
			       sizeof(float) * DIM);
		int rv = w % 5 == 4 ? drift_shard_delete_rec(p, ids, 5, NULL,
							     &recs[w], &err)
				    : drift_shard_upsert_rec(p, ids, vecs, 20,
							     &recs[w], &err);
		cr_assert_eq(rv, 0, "%s", err.msg);
		cr_assert_eq(recs[w].seq, w + 1);
	}
	/* Odd records from one thread, even from the other. */
	struct apply_job a = {r, recs, 1, W, 2, 0}, b = {r, recs, 0, W, 2, 0};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, apply_main, &a);
	pthread_create(&tb, NULL, apply_main, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	cr_assert_eq(a.failures + b.failures, 0);
	cr_assert_eq(drift_shard_last_seq(r), W);
	float x[DIM], y[DIM];
	for (uint64_t id = 0; id < 320; id++) {
		int gp = drift_shard_get(p, id, x),
		    gr = drift_shard_get(r, id, y);
		cr_assert_eq(gp, gr, "id %llu", (unsigned long long)id);
		if (gp == 0)
			cr_assert(memcmp(x, y, sizeof(x)) == 0);
	}
	drift_err err;
	cr_assert_eq(drift_shard_apply(r, 3, recs[2].type, recs[2].payload,
				       recs[2].len, drift_now_ns(), &err),
		     DRIFT_EEXIST, "a duplicate");
	/* The next record after a gap waits, then says what is missing. */
	drift_shard *t = open_shard(td, false, DRIFT_WAL_BATCH);
	uint64_t t0 = drift_now_ns();
	cr_assert_eq(drift_shard_apply(t, 5, recs[4].type, recs[4].payload,
				       recs[4].len, t0 + 50000000, &err),
		     DRIFT_ESTALE);
	cr_assert(drift_now_ns() - t0 >= 50000000);
	cr_assert(strstr(err.msg, "did not arrive") != NULL, "%s", err.msg);
	cr_assert_eq(drift_shard_apply(t, 1, 99, recs[0].payload, recs[0].len,
				       drift_now_ns(), &err),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_shard_last_seq(t), 0, "nothing was written");
	/* Catch-up from the primary's log: everything after 0. */
	struct tail tl = {t, 0};
	cr_assert_eq(drift_shard_read_log(p, 0, SIZE_MAX, tail_fn, &tl, &err),
		     0, "%s", err.msg);
	cr_assert_eq(tl.last, W);
	for (uint64_t id = 0; id < 320; id++) {
		int gp = drift_shard_get(p, id, x),
		    gt = drift_shard_get(t, id, y);
		cr_assert_eq(gp, gt, "id %llu", (unsigned long long)id);
	}
	/* A flush retires the log (so the tail is gone) unless it is held. */
	drift_shard_hold_log(p, 10);
	cr_assert_eq(drift_shard_flush(p, &err), 0, "%s", err.msg);
	tl.last = 0;
	tl.to = r;
	cr_assert_eq(drift_shard_read_log(p, 10, 1, tail_fn, &tl, &err), 0);
	cr_assert_eq(tl.last, 11, "max_bytes stops after the first record");
	drift_shard_hold_log(p, DRIFT_WAL_NO_HOLD);
	drift_shard_record rec;
	ids[0] = 1;
	cr_assert_eq(drift_shard_upsert_rec(p, ids, row(0), 1, &rec, &err), 0);
	drift_shard_record_free(&rec);
	cr_assert_eq(drift_shard_flush(p, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_shard_read_log(p, 10, SIZE_MAX, tail_fn, &tl, &err),
		     DRIFT_ENOENT, "retired after the hold went");
	for (size_t w = 0; w < W; w++)
		drift_shard_record_free(&recs[w]);
	drift_shard_close(p);
	drift_shard_close(r);
	drift_shard_close(t);
}
