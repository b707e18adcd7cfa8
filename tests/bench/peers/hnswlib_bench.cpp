// hnswlib peer for the benchmark harness (tests/bench/README.md, "system
// protocol"). Built by run.sh with g++ -O3 -march=native against Debian's
// header-only libhnswlib-dev, so it is not handicapped.
//
//   hnswlib_bench BASE.fvecs QUERY.fvecs GT.ivecs [--threads N] [--load-only]
//                 [--build-only]
//
// Builds HNSW (M=16, efConstruction=200, L2) with N threads, then for each
// ef of the sweep measures recall@10 and QPS with one thread and with N
// (--build-only: stops after the build, for the ingest scenario).
// Prints one JSON line per measurement.
#include <hnswlib/hnswlib.h>

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

} // namespace

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
			"usage: %s BASE QUERY GT [--threads N] "
			"[--load-only] [--build-only]\n",
			argv[0]);
		return 2;
	}
	int threads = std::max(1u, std::thread::hardware_concurrency());
	bool load_only = false, build_only = false;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--load-only"))
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
	const int efs[] = {10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512};
	for (int ef : efs) {
		index.setEf(ef);
		for (int t : {1, threads}) {
			double s0 = now();
			parallel_for(nq, t, [&](size_t i) {
				auto r = index.searchKnn(&q[i * dim], 10);
				size_t k = r.size();
				while (!r.empty()) {
					res[i * 10 + --k] = r.top().second;
					r.pop();
				}
			});
			double secs = now() - s0;
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
			       "\"recall10\": %.4f}\n",
			       ef, t, nq / secs, rec / nq);
			fflush(stdout);
			if (threads == 1)
				break;
		}
	}
	return 0;
}
