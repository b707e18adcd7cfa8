/*
 * upsert-direct: the reference of drift-cli load's benchmark
 * (tests/cli/load_bench.py). It reads the first ROWS rows of a vector file
 * into memory and packs every UpsertRequest before the clock starts, then
 * times one UpsertStream of them: the rate of the server and the
 * transport alone, what load would reach if reading, converting and
 * packing cost nothing.
 *
 *   upsert-direct HOST:PORT COLLECTION FILE ROWS BATCH
 *
 * Prints "written N seconds S rate R" on stdout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/client.h"
#include "drift/v1/drift.pb-c.h"

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: upsert-direct HOST:PORT COLLECTION "
				"FILE ROWS BATCH\n");
		return 2;
	}
	size_t rows = strtoull(argv[4], NULL, 10);
	size_t batch = strtoull(argv[5], NULL, 10);
	drift_err err;
	drift_err_clear(&err);
	drift_vecfile *f;
	if (drift_vecfile_open(argv[3], &f, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 2;
	}
	uint32_t dim = drift_vecfile_dim(f);
	float *v = drift_malloc(sizeof(float) * dim * rows);
	size_t n;
	if (v == NULL || drift_vecfile_read(f, v, rows, &n, &err) != 0) {
		fprintf(stderr, "reading: %s\n", err.msg);
		return 2;
	}
	drift_vecfile_close(f);
	size_t n_msgs = (n + batch - 1) / batch;
	uint8_t **msgs = drift_calloc(n_msgs, sizeof(*msgs));
	size_t *lens = drift_calloc(n_msgs, sizeof(*lens));
	Drift__V1__Point *pts = drift_calloc(batch, sizeof(*pts));
	Drift__V1__Point **pp = drift_calloc(batch, sizeof(*pp));
	for (size_t m = 0; m < n_msgs; m++) {
		size_t first = m * batch,
		       k = n - first < batch ? n - first : batch;
		for (size_t i = 0; i < k; i++) {
			drift__v1__point__init(&pts[i]);
			pts[i].id = first + i;
			pts[i].vector = v + (first + i) * dim;
			pts[i].n_vector = dim;
			pp[i] = &pts[i];
		}
		Drift__V1__UpsertRequest req = DRIFT__V1__UPSERT_REQUEST__INIT;
		req.collection = argv[2];
		req.points = pp;
		req.n_points = k;
		lens[m] = protobuf_c_message_get_packed_size(&req.base);
		msgs[m] = drift_malloc(lens[m]);
		protobuf_c_message_pack(&req.base, msgs[m]);
	}
	drift_grpc_client *c;
	if (drift_grpc_client_new(argv[1], NULL, &c, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 2;
	}
	uint64_t t0 = drift_now_ns();
	drift_grpc_ccall *call;
	drift_grpc_ccall_start(c, "/drift.v1.Drift/UpsertStream", 0, NULL,
			       &call);
	for (size_t m = 0; m < n_msgs; m++)
		if (drift_grpc_ccall_send(call, msgs[m], lens[m]) != 0)
			break;
	drift_grpc_ccall_close_send(call);
	drift_grpc_msg *r = NULL;
	uint64_t written = 0;
	if (drift_grpc_ccall_recv(call, &r) == 1) {
		Drift__V1__UpsertResponse *u =
			drift__v1__upsert_response__unpack(NULL, r->len,
							   r->data);
		if (u != NULL) {
			written = u->written;
			drift__v1__upsert_response__free_unpacked(u, NULL);
		}
		drift_grpc_msg_free(r);
	}
	drift_grpc_status st;
	int rv = drift_grpc_ccall_finish(call, &st);
	double secs = (double)(drift_now_ns() - t0) / 1e9;
	if (rv != 0)
		fprintf(stderr, "%s: %s\n", drift_grpc_code_name(st.code),
			st.msg);
	printf("written %" PRIu64 " seconds %.3f rate %.0f\n", written, secs,
	       (double)written / secs);
	drift_grpc_client_free(c);
	for (size_t m = 0; m < n_msgs; m++)
		drift_free(msgs[m]);
	drift_free(msgs);
	drift_free(lens);
	drift_free(pts);
	drift_free(pp);
	drift_free(v);
	return rv != 0;
}
