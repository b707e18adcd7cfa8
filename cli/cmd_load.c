/* drift-cli load: a vector file into a collection through one
 * UpsertStream, in bounded memory (one batch of vectors at a time; the ids,
 * 8 bytes a row, are read and checked whole before anything is sent). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "cli/progress.h"
#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/clock.h"

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))

/* Default batch: at most this many bytes of vectors per message, well
 * under the 64 MiB message limit and big enough to amortise a call. */
#define BATCH_BYTES (1u << 20)

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ---- Ids ---------------------------------------------------------------- */

static bool has_ext(const char *path, const char *ext)
{
	size_t n = strlen(path), e = strlen(ext);
	return n >= e && strcmp(path + n - e, ext) == 0;
}

/* Text ids: one unsigned decimal per line. */
static int ids_text(drift_cli *cli, const char *path, uint64_t rows,
		    uint64_t *ids)
{
	FILE *fp = fopen(path, "r");
	if (fp == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s: %s", path,
				      strerror(errno));
	char line[64];
	uint64_t n = 0;
	int rv = 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t len = strlen(line);
		while (len > 0 &&
		       (line[len - 1] == '\n' || line[len - 1] == '\r' ||
			line[len - 1] == ' '))
			line[--len] = '\0';
		char *end;
		errno = 0;
		unsigned long long v = strtoull(line, &end, 10);
		if (len == 0 || line[0] < '0' || line[0] > '9' ||
		    *end != '\0' || errno == ERANGE) {
			rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
					    "%s: line %" PRIu64
					    " is not an unsigned 64-bit id",
					    path, n + 1);
			goto out;
		}
		if (n == rows) {
			rv = drift_cli_fail(
				cli, DRIFT_CLI_EXIT_USAGE,
				"%s holds more ids than the %" PRIu64
				" vectors",
				path, rows);
			goto out;
		}
		ids[n++] = v;
	}
	if (ferror(fp)) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s: read error",
				    path);
		goto out;
	}
	if (n != rows)
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s holds %" PRIu64 " ids for %" PRIu64
				    " vectors",
				    path, n, rows);
out:
	fclose(fp);
	return rv;
}

/* ivecs or .npy ids: one integer per row. */
static int ids_vecfile(drift_cli *cli, const char *path, uint64_t rows,
		       uint64_t *ids)
{
	drift_vecfile *f = NULL;
	drift_err err;
	drift_err_clear(&err);
	int rv = 0;
	if (drift_vecfile_open(path, &f, &err) != 0)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s", err.msg);
	if (drift_vecfile_rows(f) != rows) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s holds %" PRIu64 " ids for %" PRIu64
				    " vectors",
				    path, drift_vecfile_rows(f), rows);
		goto out;
	}
	if (rows > 0 && drift_vecfile_dim(f) != 1) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s has %u values a row: an ids file has "
				    "one",
				    path, drift_vecfile_dim(f));
		goto out;
	}
	size_t n;
	if (drift_vecfile_read_u64(f, ids, (size_t)rows, &n, &err) != 0)
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s", err.msg);
out:
	drift_vecfile_close(f);
	return rv;
}

static int load_ids(drift_cli *cli, const char *path, uint64_t rows,
		    uint64_t **out)
{
	uint64_t *ids = drift_malloc(sizeof(*ids) * (rows > 0 ? rows : 1));
	if (ids == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "no memory for %" PRIu64 " ids", rows);
	int rv = has_ext(path, ".ivecs") || has_ext(path, ".npy")
			 ? ids_vecfile(cli, path, rows, ids)
			 : ids_text(cli, path, rows, ids);
	if (rv != 0) {
		drift_free(ids);
		return rv;
	}
	*out = ids;
	return 0;
}

/* ---- The stream --------------------------------------------------------- */

typedef struct load {
	drift_cli *cli;
	const char *name;
	drift_vecfile *f;
	const uint64_t *ids; /* NULL: row numbers */
	uint32_t dim;
	size_t batch;
	uint64_t sent;	  /* rows sent */
	uint64_t written; /* rows the server acknowledged */
} load;

/* Sends every batch; 0 or an exit code (reported). */
static int stream(load *l, drift_progress *bar)
{
	drift_cli *cli = l->cli;
	float *vecs = drift_malloc(sizeof(float) * l->dim * l->batch);
	Drift__V1__Point *pts = drift_calloc(l->batch, sizeof(*pts));
	Drift__V1__Point **pp = drift_calloc(l->batch, sizeof(*pp));
	uint8_t *buf = NULL;
	size_t cap = 0;
	drift_grpc_ccall *call = NULL;
	drift_grpc_client *c = NULL;
	int rv = 0;
	if (vecs == NULL || pts == NULL || pp == NULL) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "out of memory");
		goto out;
	}
	if ((rv = drift_cli_client(cli, &c)) != 0)
		goto out;
	/* No deadline: a big file takes as long as it takes. */
	if (drift_grpc_ccall_start(c, "/drift.v1.Drift/UpsertStream", 0, NULL,
				   &call) != 0) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < l->batch; i++) {
		drift__v1__point__init(&pts[i]);
		pp[i] = &pts[i];
	}
	while (!interrupted) {
		size_t n;
		drift_err err;
		drift_err_clear(&err);
		if (drift_vecfile_read(l->f, vecs, l->batch, &n, &err) != 0) {
			/* The file changed under us: stop, keep what the
			 * server has. */
			drift_grpc_ccall_cancel(call);
			drift_grpc_ccall_finish(call, NULL);
			call = NULL;
			rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
					    "%s (after %" PRIu64 " rows sent)",
					    err.msg, l->sent);
			goto out;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			pts[i].id = l->ids != NULL ? l->ids[l->sent + i]
						   : l->sent + i;
			pts[i].vector = vecs + i * l->dim;
			pts[i].n_vector = l->dim;
		}
		Drift__V1__UpsertRequest req = DRIFT__V1__UPSERT_REQUEST__INIT;
		req.collection = (char *)l->name;
		req.points = pp;
		req.n_points = n;
		size_t len = protobuf_c_message_get_packed_size(&req.base);
		if (len > cap) {
			drift_free(buf);
			cap = len;
			if ((buf = drift_malloc(cap)) == NULL) {
				rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
						    "out of memory");
				goto out;
			}
		}
		protobuf_c_message_pack(&req.base, buf);
		if (drift_grpc_ccall_send(call, buf, len) != 0)
			break; /* the call is over: finish says why */
		l->sent += n;
		drift_progress_update(bar, l->sent);
	}
	drift_grpc_ccall_close_send(call);
	drift_grpc_msg *m = NULL;
	int got = drift_grpc_ccall_recv(call, &m);
	Drift__V1__UpsertResponse *resp =
		got == 1 ? drift__v1__upsert_response__unpack(NULL, m->len,
							      m->data)
			 : NULL;
	drift_grpc_msg_free(m);
	drift_grpc_status st;
	int fin = drift_grpc_ccall_finish(call, &st);
	call = NULL;
	if (fin != 0) {
		drift_progress_end(bar, l->sent);
		rv = drift_cli_fail_status(cli, &st);
		goto out_resp;
	}
	if (resp == NULL) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_REFUSED,
				    "INTERNAL: the UpsertStream response does "
				    "not parse");
		goto out;
	}
	l->written = resp->written;
out_resp:
	if (resp != NULL)
		drift__v1__upsert_response__free_unpacked(resp, NULL);
out:
	if (call != NULL)
		drift_grpc_ccall_finish(call, NULL);
	drift_free(buf);
	drift_free(pp);
	drift_free(pts);
	drift_free(vecs);
	return rv;
}

int drift_cli_cmd_load(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {
		{"ids", "FILE", NULL, false},
		{"batch", "N", NULL, false},
	};
	char *pos[2];
	int np;
	int rv = drift_cli_parse(cli, "load NAME FILE [--ids FILE] [--batch N]",
				 opts, NOPTS(opts), argc, argv, pos, 2, 2, &np);
	if (rv != 0)
		return rv;
	load l = {.cli = cli, .name = pos[0]};
	uint64_t *ids = NULL;
	uint64_t batch = 0;
	if (opts[1].set && (rv = drift_cli_u64(cli, "--batch", opts[1].value, 1,
					       1000000, &batch)))
		return rv;
	drift_err err;
	drift_err_clear(&err);
	if (drift_vecfile_open(pos[1], &l.f, &err) != 0)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s", err.msg);
	if (drift_vecfile_format(l.f) == DRIFT_VECFILE_IVECS) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s: ivecs holds ids (ground truth), not "
				    "vectors",
				    pos[1]);
		goto out;
	}
	uint64_t rows = drift_vecfile_rows(l.f);
	if (opts[0].set && (rv = load_ids(cli, opts[0].value, rows, &ids)))
		goto out;
	l.ids = ids;
	uint32_t mrows;
	if ((rv = drift_cli_collection_dim(cli, pos[0], &l.dim, &mrows)))
		goto out;
	if (rows > 0 && drift_vecfile_dim(l.f) != l.dim) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s has dimension %u, collection %s has "
				    "%u: nothing sent",
				    pos[1], drift_vecfile_dim(l.f), pos[0],
				    l.dim);
		goto out;
	}
	if (batch > 0 && mrows > 0 && batch > mrows) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "--batch %" PRIu64
				    " is over collection %s's %u points per "
				    "write (memtable_rows)",
				    batch, pos[0], mrows);
		goto out;
	}
	if (batch == 0) {
		batch = BATCH_BYTES / (sizeof(float) * l.dim + 16);
		if (mrows > 0 && batch > mrows)
			batch = mrows;
		if (batch == 0)
			batch = 1;
	}
	l.batch = (size_t)batch;

	struct sigaction sa = {0}, old;
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	interrupted = 0;
	sigaction(SIGINT, &sa, &old);
	drift_progress bar;
	drift_progress_init(&bar, "rows", rows);
	uint64_t t0 = drift_now_ns();
	rv = stream(&l, &bar);
	double secs = (double)(drift_now_ns() - t0) / 1e9;
	sigaction(SIGINT, &old, NULL);
	if (rv != 0)
		goto out;
	drift_progress_end(&bar, l.sent);
	double rate = secs > 0 ? (double)l.written / secs : 0;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "collection");
		drift_json_str(&j, pos[0]);
		drift_json_key(&j, "file");
		drift_json_str(&j, pos[1]);
		drift_json_key(&j, "rows");
		drift_json_u64(&j, rows);
		drift_json_key(&j, "written");
		drift_json_u64(&j, l.written);
		drift_json_key(&j, "seconds");
		drift_json_f64(&j, secs);
		drift_json_key(&j, "rows_per_second");
		drift_json_f64(&j, rate);
		drift_json_key(&j, "interrupted");
		drift_json_bool(&j, interrupted != 0);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else if (!interrupted) {
		printf("loaded %" PRIu64 " rows into %s in %.2f s (%.0f "
		       "rows/s)\n",
		       l.written, pos[0], secs, rate);
	}
	if (interrupted)
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_INTERRUPTED,
				    "interrupted: %" PRIu64 " of %" PRIu64
				    " rows acknowledged",
				    l.written, rows);
out:
	drift_free(ids);
	drift_vecfile_close(l.f);
	return rv;
}
