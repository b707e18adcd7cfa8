# Drift: the two commands of SPEC section 6 and their helpers.
#
#   make deps    install every missing Debian package (apt-get, as root)
#   make build   release build into build/ (no tests)
#   make test    deps, build, whole suite: release + ASan/UBSan + fuzz smoke
#   make run     deps, build, start what exists
#   make bench   benchmarks (full); make bench-quick for the subset
#   make bench-placement  shard placement schemes side by side (seconds)
#   make fuzz    each fuzz target for FUZZ_SECONDS (default 60)
#   make test-cluster-long  the cluster's fault rounds at length
#   make test-chaos  fault rounds under load, the history checked (tests/chaos)
#   make format  clang-format over the tree
#   make image   the container image (deploy/build-image.sh)
#   make test-image  build it and start drift-node (and drift-router) from it

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Build and unit-test tools and libraries.
DEPS_BUILD := gcc g++ meson ninja-build pkg-config python3 \
	libxxhash-dev libcriterion-dev
# The gRPC layer: event loop, HTTP/2, protobuf (C and the protoc plugin).
DEPS_GRPC := libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler \
	protobuf-compiler
# Interoperability tests and load: stock Python gRPC, h2load.
DEPS_INTEROP := python3-grpcio python3-grpc-tools python3-protobuf \
	nghttp2-client
# The Python SDK (sdk/python) and its tests: numpy, pytest, mypy.
DEPS_SDK := python3-numpy python3-pytest python3-mypy
# Real data for codec and index tests (Fashion-MNIST, 30 MB).
DEPS_DATA := dataset-fashion-mnist
# Asynchronous disk I/O for L1 segments.
DEPS_STORAGE := liburing-dev
# Fuzzing (libFuzzer ships with clang) and leak checks.
DEPS_FUZZ := clang libclang-rt-14-dev llvm
# Formatting.
DEPS_FORMAT := clang-format
# From bookworm-backports: the Raft library of the metadata group (bookworm's
# 0.15 lacks canonical/raft#220, committing entries of earlier terms).
DEPS_BACKPORTS := libraft-dev>=0.22.1
# Deployment checks (tests/deploy/): YAML, the Kubernetes API models for
# the manifests' schema, and the container image's tools (mmdebstrap makes
# the root from Debian packages, buildah/podman build and run the image).
DEPS_DEPLOY := python3-yaml python3-kubernetes mmdebstrap buildah podman \
	uidmap

DEPS := $(DEPS_BUILD) $(DEPS_GRPC) $(DEPS_INTEROP) $(DEPS_SDK) $(DEPS_DATA) \
	$(DEPS_STORAGE) $(DEPS_FUZZ) $(DEPS_FORMAT) $(DEPS_DEPLOY)
BENCH_PACKAGES := tests/bench/packages.txt

MESON_OPTS := -Dwerror=true
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5

.PHONY: deps deps-bench build build-asan build-fuzz test test-cluster-long \
	test-chaos \
	run bench \
	bench-quick bench-placement bench-cluster bench-repl bench-router fuzz format \
	clean image test-image

deps:
	@tests/install-deps.sh $(DEPS)
	@tests/install-deps.sh --backports '$(DEPS_BACKPORTS)'
	@# kubectl renders the manifests (kubectl kustomize). Debian's comes in
	@# kubernetes-client; a kubectl installed otherwise is used as it is
	@# (the two packages would fight over /usr/bin/kubectl).
	@command -v kubectl >/dev/null || tests/install-deps.sh kubernetes-client

deps-bench: deps
	@if [ -f $(BENCH_PACKAGES) ]; then \
	  tests/install-deps.sh $$(sed -e 's/#.*//' $(BENCH_PACKAGES)); fi

build/build.ninja:
	meson setup build --buildtype=release $(MESON_OPTS)

build: deps build/build.ninja
	meson compile -C build

build-asan/build.ninja:
	meson setup build-asan --buildtype=debug -Dsanitize=true $(MESON_OPTS)

build-asan: deps build-asan/build.ninja
	meson compile -C build-asan

build-fuzz/build.ninja:
	CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dfuzz=true \
	  $(MESON_OPTS)

build-fuzz: deps build-fuzz/build.ninja
	meson compile -C build-fuzz

test: build build-asan build-fuzz
	@tests/run-all.sh build build-asan build-fuzz $(FUZZ_SMOKE_SECONDS)

# The cluster's fault rounds at length (make test runs 3 of each):
# CLUSTER_ROUNDS kill -9 rounds of the Raft leader.
CLUSTER_ROUNDS ?= 20
test-cluster-long: build
	DRIFT_NODE=$(CURDIR)/build/node/drift-node DRIFT_PROTO_DIR=$(CURDIR)/proto \
	  DRIFT_CLUSTER_ROUNDS=$(CLUSTER_ROUNDS) \
	  /usr/bin/python3 tests/cluster/test_cluster.py

# Fault rounds under load (make test runs 3): CHAOS_ROUNDS rounds of kill -9
# of a node, SIGSTOP of a node and kill -9 of the router while
# tests/chaos/loadgen.py runs through the router, then the history checked
# (tests/chaos/checker.py); CHAOS_RF is the collection's replication factor.
CHAOS_ROUNDS ?= 20
CHAOS_RF ?= 3
test-chaos: build
	/usr/bin/python3 tests/chaos/test_checker.py
	DRIFT_NODE=$(CURDIR)/build/node/drift-node \
	  DRIFT_ROUTER=$(CURDIR)/build/router/drift-router \
	  DRIFT_PROTO_DIR=$(CURDIR)/proto DRIFT_CHAOS_ROUNDS=$(CHAOS_ROUNDS) \
	  DRIFT_CHAOS_RF=$(CHAOS_RF) /usr/bin/python3 tests/chaos/test_chaos.py

# drift-router's cost and fan-out (docs/cluster.md).
bench-router: build
	/usr/bin/python3 tests/bench/router_bench.py --build build

# The Raft metadata group's figures (docs/cluster.md).
bench-cluster: build
	/usr/bin/python3 tests/bench/cluster_bench.py --node build/node/drift-node

bench-repl: build
	/usr/bin/python3 tests/bench/repl_bench.py --node build/node/drift-node

fuzz: build-fuzz
	@tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

run: build
	@deploy/run-local.sh build

bench: deps-bench build
	@tests/bench/run.sh

bench-quick: deps-bench build
	@tests/bench/run.sh --quick

# docs/placement.md's tables (a simulation: no data, no network).
bench-placement: build
	@build/tests/bench/placement-bench

format: deps
	@git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cpp' \
	  | xargs -r clang-format -i

# The container image from the release build (needs root; downloads the
# Debian packages of its root from this machine's apt sources).
image: build
	deploy/build-image.sh --build build

# Builds the image and starts drift-node (and drift-router) from it; not in
# make test (a minute or two, and the Debian archive).
test-image: build
	DRIFT_BUILD=build DRIFT_PROTO_DIR=proto /usr/bin/python3 \
	  tests/deploy/test_image.py

clean:
	rm -rf build build-asan build-fuzz
