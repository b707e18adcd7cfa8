// hnswlib peer for the benchmark harness (tests/bench/README.md, "system
// protocol"). Built by run.sh with g++ -O3 -march=native against Debian's
// header-only libhnswlib-dev, so it is not handicapped.
//
//   hnswlib_bench BASE.fvecs QUERY.fvecs GT.ivecs [--threads N] [--load-only]
//                 [--build-only] [--efs 10,16,...]
//
// Builds HNSW (M=16, efConstruction=200, L2) with N threads, then for each
// ef of the sweep measures recall@10 and QPS with one thread and with N
// (--build-only: stops after the build, for the ingest scenario).
//
//   hnswlib_bench churn BASE QUERY TRACE --results PREFIX [--seconds S]
//                 [--threads N] [--ef EF] [--queries Q]
//
// The churn scenario (tests/bench/churn.py): loads the trace's first rows,
// replays its rounds with one writer (addPoint, markDelete) while the
// other threads search, then deletes the trace's share of the live set.
// Prints one JSON line per measurement.
#include <hnswlib/hnswlib.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace
{

template <typename T>
std::vector<T> read_vecs(const char *path, size_t &rows, int &dim)
{
	std::ifstream f(path, std::ios::binary);
	if (!f)
		throw std::runtime_error(std::string("cannot open ") + path);
	f.seekg(0, std::ios::end);
	size_t size = f.tellg();
	f.seekg(0);
	int32_t d = 0;
	f.read(reinterpret_cast<char *>(&d), 4);
	dim = d;
	size_t row = 4 + sizeof(T) * d;
	rows = size / row;
	std::vector<T> out(rows * d);
	f.seekg(0);
	for (size_t i = 0; i < rows; i++) {
		f.read(reinterpret_cast<char *>(&d), 4);
		f.read(reinterpret_cast<char *>(&out[i * dim]),
		       sizeof(T) * dim);
	}
	return out;
}

double now()
{
	using namespace std::chrono;
	return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (every searching thread): on a shared
// machine it moves less than the wall time (drift-bench reports the same).
double cpu_seconds()
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

template <typename F> void parallel_for(size_t n, int threads, F fn)
{
	std::atomic<size_t> next(0);
	std::vector<std::thread> pool;
	for (int t = 0; t < threads; t++)
		pool.emplace_back([&] {
			for (;;) {
				size_t i = next.fetch_add(1);
				if (i >= n)
					return;
				fn(i);
			}
		});
	for (auto &th : pool)
		th.join();
}

// ---- churn (the trace format: tests/bench/shard_bench.c, cmd_churn) ----

uint64_t rss_bytes()
{
	unsigned long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

void report_space(const char *phase, size_t live)
{
	uint64_t rss = rss_bytes();
	malloc_trim(0);
	printf("{\"event\": \"space\", \"system\": \"hnswlib\", \"phase\": "
	       "\"%s\", \"live\": %zu, \"rss_bytes\": %llu, "
	       "\"rss_trimmed_bytes\": %llu}\n",
	       phase, live, (unsigned long long)rss,
	       (unsigned long long)rss_bytes());
	fflush(stdout);
}

void dump_results(hnswlib::HierarchicalNSW<float> &index,
		  const std::vector<float> &q, int dim, size_t nq,
		  const std::string &path)
{
	std::vector<int64_t> out(nq * 10, -1);
	for (size_t i = 0; i < nq; i++) {
		auto r = index.searchKnn(&q[i * dim], 10);
		size_t k = r.size();
		while (!r.empty()) {
			out[i * 10 + --k] = (int64_t)r.top().second;
			r.pop();
		}
	}
	FILE *f = fopen(path.c_str(), "wb");
	if (!f || fwrite(out.data(), 8, out.size(), f) != out.size() ||
	    fclose(f) != 0)
		throw std::runtime_error("cannot write " + path);
}

int churn(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
			"usage: %s churn BASE QUERY TRACE --results P "
			"[--seconds S] [--threads N] [--ef EF] "
			"[--queries Q]\n",
			argv[0]);
		return 2;
	}
	double seconds = 60;
	int threads = std::max(1u, std::thread::hardware_concurrency());
	int ef = 64;
	size_t nq = 1000;
	std::string results;
	for (int i = 5; i + 1 < argc; i += 2) {
		std::string a = argv[i];
		if (a == "--seconds")
			seconds = atof(argv[i + 1]);
		else if (a == "--threads")
			threads = atoi(argv[i + 1]);
		else if (a == "--ef")
			ef = atoi(argv[i + 1]);
		else if (a == "--queries")
			nq = (size_t)atol(argv[i + 1]);
		else if (a == "--results")
			results = argv[i + 1];
	}
	size_t n, nqa;
	int dim, qdim;
	auto base = read_vecs<float>(argv[2], n, dim);
	auto q = read_vecs<float>(argv[3], nqa, qdim);
	nq = std::min(nq, nqa);
	FILE *tf = fopen(argv[4], "rb");
	int64_t h[8];
	if (!tf || fread(h, 8, 8, tf) != 8 || h[0] != 0x4e52554843544644LL ||
	    h[1] != 1)
		throw std::runtime_error("not a churn trace");
	int64_t load = h[2], rounds = h[3], b = h[4], d = h[5], pct = h[7];
	std::vector<int64_t> tr(rounds * (2 * b + d));
	if (fread(tr.data(), 8, tr.size(), tf) != tr.size())
		throw std::runtime_error("short churn trace");
	fclose(tf);
	// Every new id takes a new slot (0.6.2 has no replace_deleted).
	size_t max_id = load + rounds * (b / 2);
	std::vector<int64_t> row_of(max_id, -1);
	report_space("data", 0); // the bench's own memory included
	hnswlib::L2Space space(dim);
	hnswlib::HierarchicalNSW<float> index(&space, max_id, 16, 200, 42);
	double t0 = now();
	index.addPoint(&base[0], 0);
	parallel_for(load - 1, threads, [&](size_t i) {
		index.addPoint(&base[(i + 1) * dim], i + 1);
	});
	double load_s = now() - t0;
	for (int64_t i = 0; i < load; i++)
		row_of[i] = i;
	size_t live = load;
	index.setEf(ef);
	report_space("loaded", live);

	std::atomic<bool> stop(false);
	int searchers = threads > 1 ? threads - 1 : 1;
	std::vector<std::vector<double>> lat(searchers);
	std::vector<std::thread> pool;
	for (int t = 0; t < searchers; t++)
		pool.emplace_back([&, t] {
			size_t i = nqa * t / searchers;
			while (!stop.load()) {
				double s0 = now();
				index.searchKnn(&q[i * dim], 10);
				lat[t].push_back(now() - s0);
				i = (i + 1) % nqa;
			}
		});
	int64_t done = 0;
	double up_s = 0, del_s = 0;
	double c0 = now();
	for (int64_t r = 0; r < rounds && now() - c0 < seconds; r++) {
		const int64_t *up = &tr[r * (2 * b + d)], *rows = up + b,
			      *del = rows + b;
		double a0 = now();
		for (int64_t i = 0; i < b; i++) {
			index.addPoint(&base[rows[i] * dim], up[i]);
			if (row_of[up[i]] < 0)
				live++;
			row_of[up[i]] = rows[i];
		}
		double a1 = now();
		for (int64_t i = 0; i < d; i++) {
			index.markDelete(del[i]);
			live--;
			row_of[del[i]] = -1;
		}
		up_s += a1 - a0;
		del_s += now() - a1;
		done = r + 1;
	}
	double window = now() - c0;
	stop = true;
	for (auto &th : pool)
		th.join();
	std::vector<double> all;
	for (auto &v : lat)
		all.insert(all.end(), v.begin(), v.end());
	std::sort(all.begin(), all.end());
	auto pc = [&](double p) {
		return all.empty() ? 0.0
				   : all[(size_t)(p * (all.size() - 1) + 0.5)];
	};
	report_space("churned", live);
	dump_results(index, q, dim, nq, results + ".end.i64");
	size_t live_end = live, nd = 0;
	double m0 = now();
	for (size_t id = 0; id < max_id; id++)
		if (row_of[id] >= 0 && (int64_t)(id % 100) < pct) {
			index.markDelete(id);
			row_of[id] = -1;
			nd++;
		}
	double mass_s = now() - m0;
	live -= nd;
	report_space("deleted", live);
	dump_results(index, q, dim, nq, results + ".settled.i64");
	printf("{\"event\": \"churn\", \"system\": \"hnswlib\", "
	       "\"load_rows\": %lld, \"load_s\": %.3f, \"seconds\": %.3f, "
	       "\"rounds\": %lld, \"trace_rounds\": %lld, \"upserts\": %lld, "
	       "\"deletes\": %lld, \"upserts_per_s\": %.1f, "
	       "\"deletes_per_s\": %.1f, \"upsert_busy_s\": %.3f, "
	       "\"delete_busy_s\": %.3f, \"searchers\": %d, "
	       "\"searches\": %zu, \"searches_per_s\": %.1f, "
	       "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"live_end\": %zu, "
	       "\"mass_deleted\": %zu, \"mass_delete_s\": %.3f, "
	       "\"live_settled\": %zu, \"settle_s\": 0, \"ef\": %d, "
	       "\"queries\": %zu}\n",
	       (long long)load, load_s, window, (long long)done,
	       (long long)rounds, (long long)(done * b), (long long)(done * d),
	       done * b / window, done * d / window, up_s, del_s, searchers,
	       all.size(), all.size() / window, 1e3 * pc(0.5), 1e3 * pc(0.99),
	       live_end, nd, mass_s, live, ef, nq);
	fflush(stdout);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "churn"))
		return churn(argc, argv);
	if (argc < 4) {
		fprintf(stderr,
			"usage: %s BASE QUERY GT [--threads N] "
			"[--load-only] [--build-only]\n",
			argv[0]);
		return 2;
	}
	int threads = std::max(1u, std::thread::hardware_concurrency());
	bool load_only = false, build_only = false;
	std::vector<int> efs = {10, 16,	 24,  32,  48,	64,
				96, 128, 192, 256, 384, 512};
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--efs") && i + 1 < argc) {
			efs.clear();
			for (char *t = strtok(argv[++i], ","); t;
			     t = strtok(nullptr, ","))
				efs.push_back(atoi(t));
		} else if (!strcmp(argv[i], "--load-only"))
			load_only = true;
		else if (!strcmp(argv[i], "--build-only"))
			build_only = true;
	}
	size_t n, nq, ng;
	int dim, qdim, gdim;
	auto base = read_vecs<float>(argv[1], n, dim);
	auto q = read_vecs<float>(argv[2], nq, qdim);
	auto gt = read_vecs<int32_t>(argv[3], ng, gdim);
	if (load_only)
		return 0;

	hnswlib::L2Space space(dim);
	hnswlib::HierarchicalNSW<float> index(&space, n, 16, 200, 42);
	double t0 = now();
	index.addPoint(&base[0], 0);
	parallel_for(n - 1, threads, [&](size_t i) {
		index.addPoint(&base[(i + 1) * dim], i + 1);
	});
	double build = now() - t0;
	printf("{\"event\": \"build\", \"system\": \"hnswlib\", \"n\": %zu, "
	       "\"build_s\": %.3f, \"threads\": %d}\n",
	       n, build, threads);
	fflush(stdout);
	if (build_only)
		return 0;

	std::vector<size_t> res(nq * 10);
	for (int ef : efs) {
		index.setEf(ef);
		for (int t : {1, threads}) {
			double s0 = now(), c0 = cpu_seconds();
			parallel_for(nq, t, [&](size_t i) {
				auto r = index.searchKnn(&q[i * dim], 10);
				size_t k = r.size();
				while (!r.empty()) {
					res[i * 10 + --k] = r.top().second;
					r.pop();
				}
			});
			double secs = now() - s0;
			double cpu = cpu_seconds() - c0;
			double rec = 0;
			for (size_t i = 0; i < nq; i++) {
				int hit = 0;
				for (int a = 0; a < 10; a++)
					for (int b = 0; b < 10; b++)
						if (res[i * 10 + b] ==
						    (size_t)gt[i * gdim + a]) {
							hit++;
							break;
						}
				rec += hit / 10.0;
			}
			printf("{\"event\": \"search\", \"system\": "
			       "\"hnswlib\", "
			       "\"param\": \"ef\", \"value\": %d, "
			       "\"threads\": %d, \"qps\": %.1f, "
			       "\"recall10\": %.4f, \"cpu_us\": %.1f}\n",
			       ef, t, nq / secs, rec / nq, cpu * 1e6 / nq);
			fflush(stdout);
			if (threads == 1)
				break;
		}
	}
	return 0;
}
