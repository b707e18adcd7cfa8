/*
 * Full copies of a shard (see replica.h): the primary sends a checkpoint's
 * files with drift.peer.v1.Replica/Install, the replica installs them in
 * place of its copy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/member.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/grpc/status.h"
#include "common/log.h"
#include "node/replica/replica_internal.h"

#define CHUNK (1u << 20)

static _Atomic uint64_t copy_rate; /* bytes per second; 0: no limit */

void drift_replica_copy_rate(uint64_t bytes_per_s)
{
	atomic_store(&copy_rate, bytes_per_s);
}

/* Sleeps as long as sending `bytes` since t0 at the rate needs. */
static void throttle(uint64_t t0, uint64_t bytes)
{
	uint64_t rate = atomic_load(&copy_rate);
	if (rate == 0)
		return;
	uint64_t due = t0 + (uint64_t)((double)bytes / (double)rate * 1e9);
	uint64_t now = drift_now_ns();
	if (due > now)
		drift_clock_sleep(drift_clock_system(), due - now);
}
#define INSTALL_TIMEOUT_NS (600ull * 1000000000ull)

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rmtree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- The primary's side ---- */

/* The bytes of the files in dir (not below). */
static uint64_t dir_bytes(const char *dir)
{
	uint64_t sum = 0;
	DIR *d = opendir(dir);
	for (struct dirent *de; d != NULL && (de = readdir(d));) {
		struct stat st;
		if (de->d_name[0] != '.' &&
		    fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
		    S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	if (d != NULL)
		closedir(d);
	return sum;
}

/* Sends one file of the checkpoint in chunks. */
static int send_file(drift_grpc_ccall *call, const char *dir, const char *name,
		     uint64_t t0, uint64_t *bytes, struct repl_progress *prog,
		     drift_err *err)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return drift_err_errno(err, errno, "opening %s", path);
	uint8_t *buf = drift_malloc(CHUNK);
	size_t cap = CHUNK + 256;
	uint8_t *msg = drift_malloc(cap);
	int rv = buf != NULL && msg != NULL
			 ? 0
			 : drift_err_set(err, DRIFT_ENOMEM, "full copy");
	uint64_t off = 0;
	while (rv == 0) {
		ssize_t got = read(fd, buf, CHUNK);
		if (got < 0) {
			rv = drift_err_errno(err, errno, "reading %s", path);
			break;
		}
		if (got == 0 && off > 0)
			break;
		Drift__Peer__V1__InstallRequest m =
			DRIFT__PEER__V1__INSTALL_REQUEST__INIT;
		m.file = (char *)name;
		m.offset = off;
		m.data.data = buf;
		m.data.len = (size_t)got;
		size_t len = drift__peer__v1__install_request__pack(&m, msg);
		if (drift_grpc_ccall_send(call, msg, len) != 0) {
			rv = drift_err_set(err, DRIFT_EUNAVAIL,
					   "sending %s: the call ended", name);
			break;
		}
		off += (uint64_t)got;
		*bytes += (uint64_t)got;
		atomic_fetch_add(&prog->done, (uint64_t)got);
		throttle(t0, *bytes);
		if (got == 0)
			break; /* an empty file: sent once */
	}
	drift_free(buf);
	drift_free(msg);
	close(fd);
	return rv;
}

int repl_full_copy(drift_replica *r, const char *addr, drift_collection *col,
		   uint32_t shard, uint64_t epoch, struct repl_shard *e,
		   struct repl_progress *prog, uint64_t *last, drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/.ckpt-%u-%016llx",
		 drift_collection_dir(col), shard,
		 (unsigned long long)drift_now_ns());
	uint64_t t0 = drift_now_ns(), seq = 0, bytes = 0;
	drift_shard *sh = drift_collection_shard_enter(col, shard);
	int rv = sh != NULL ? drift_shard_checkpoint(sh, dir, &seq, err)
			    : drift_err_set(err, DRIFT_EINVAL, "no shard");
	drift_collection_shard_leave(col, shard);
	drift_grpc_client *cl = NULL;
	drift_grpc_ccall *call = NULL;
	if (rv == 0)
		rv = drift_rmap_client(r->peers, addr, &cl, err);
	if (rv == 0 &&
	    drift_grpc_ccall_start(cl, "/drift.peer.v1.Replica/Install",
				   INSTALL_TIMEOUT_NS, NULL, &call) != 0)
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "node at %s: cannot start the copy", addr);
	if (rv == 0) {
		Drift__Peer__V1__InstallRequest h =
			DRIFT__PEER__V1__INSTALL_REQUEST__INIT;
		h.collection = (char *)cfg->name;
		h.created_version = cfg->cluster_version;
		h.shard = shard;
		h.epoch = epoch;
		h.seq = seq;
		Drift__Peer__V1__EpochStart hs[DRIFT_EPOCHS_MAX],
			*hp[DRIFT_EPOCHS_MAX];
		pthread_mutex_lock(&e->mu);
		for (size_t i = 0; i < e->ep.n; i++) {
			drift__peer__v1__epoch_start__init(&hs[i]);
			hs[i].epoch = e->ep.h[i].epoch;
			hs[i].first_seq = e->ep.h[i].first_seq;
			hp[i] = &hs[i];
		}
		h.history = hp;
		h.n_history = e->ep.n;
		pthread_mutex_unlock(&e->mu);
		uint8_t buf[64 * (DRIFT_EPOCHS_MAX + 4) + 256];
		size_t len = drift__peer__v1__install_request__pack(&h, buf);
		if (drift_grpc_ccall_send(call, buf, len) != 0)
			rv = drift_err_set(err, DRIFT_EUNAVAIL,
					   "node at %s: the copy ended", addr);
	}
	char segdir[4300];
	snprintf(segdir, sizeof(segdir), "%s/seg", dir);
	struct stat stt;
	char man[4300];
	snprintf(man, sizeof(man), "%s/MANIFEST", dir);
	if (rv == 0) {
		uint64_t size = dir_bytes(segdir);
		if (stat(man, &stt) == 0)
			size += (uint64_t)stt.st_size;
		atomic_store(&prog->done, 0);
		atomic_store(&prog->total, size);
	}
	if (rv == 0 && stat(man, &stt) == 0)
		rv = send_file(call, dir, "MANIFEST", t0, &bytes, prog, err);
	DIR *d = rv == 0 ? opendir(segdir) : NULL;
	for (struct dirent *de; d != NULL && rv == 0 && (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		char name[300];
		snprintf(name, sizeof(name), "seg/%.256s", de->d_name);
		rv = send_file(call, dir, name, t0, &bytes, prog, err);
	}
	if (d != NULL)
		closedir(d);
	if (call != NULL) {
		drift_grpc_msg *m = NULL;
		int got = rv == 0 && drift_grpc_ccall_close_send(call) == 0
				  ? drift_grpc_ccall_recv(call, &m)
				  : -1;
		if (rv != 0)
			drift_grpc_ccall_cancel(call);
		drift_grpc_status st;
		memset(&st, 0, sizeof(st));
		drift_grpc_ccall_finish(call, &st);
		if (rv == 0 && (got != 1 || st.code != DRIFT_GRPC_OK))
			rv = drift_err_set(
				err,
				drift_grpc_err_from_code(
					st.code ? st.code
						: DRIFT_GRPC_INTERNAL),
				"node at %s: installing the copy: %s", addr,
				st.msg[0] ? st.msg : "no answer");
		if (rv == 0) {
			Drift__Peer__V1__InstallResponse *resp =
				drift__peer__v1__install_response__unpack(
					NULL, m->len, m->data);
			if (resp == NULL) {
				rv = drift_err_set(err, DRIFT_EPROTO,
						   "node at %s: a bad answer",
						   addr);
			} else {
				*last = resp->last_seq;
				drift__peer__v1__install_response__free_unpacked(
					resp, NULL);
			}
		}
		drift_grpc_msg_free(m);
	}
	rmtree(dir);
	if (rv == 0)
		DRIFT_INFO("replication: %s/%u: full copy to %s: %" PRIu64
			   " bytes up to record %" PRIu64 " in %.2f s",
			   cfg->name, shard, addr, bytes, seq,
			   (double)(drift_now_ns() - t0) / 1e9);
	return rv;
}

/* ---- The replica's side ---- */

/* Whether name is one a checkpoint holds (no way out of the directory). */
static bool file_ok(const char *name)
{
	if (strcmp(name, "MANIFEST") == 0)
		return true;
	if (strncmp(name, "seg/", 4) != 0 || strlen(name) != 4 + 20 + 6)
		return false;
	for (int i = 4; i < 24; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	return strcmp(name + 24, ".drift") == 0;
}

static int sync_path(const char *path, drift_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return drift_err_errno(err, errno, "opening %s", path);
	int rv = fsync(fd) == 0
			 ? 0
			 : drift_err_errno(err, errno, "syncing %s", path);
	close(fd);
	return rv;
}

int repl_install(drift_grpc_call *c, drift_collection *col,
		 struct repl_shard *e, const Drift__Peer__V1__InstallRequest *h,
		 uint64_t *last, drift_err *err)
{
	char staged[4200], path[4400];
	snprintf(staged, sizeof(staged), "%s/.install-shard-%u",
		 drift_collection_dir(col), h->shard);
	rmtree(staged);
	int rv = 0;
	const char *subs[] = {"", "/seg", "/wal"};
	for (int i = 0; i < 3 && rv == 0; i++) {
		snprintf(path, sizeof(path), "%s%s", staged, subs[i]);
		if (mkdir(path, 0755) != 0)
			rv = drift_err_errno(err, errno, "creating %s", path);
	}
	int fd = -1;
	char cur[64] = "";
	while (rv == 0) {
		ProtobufCMessage *m = NULL;
		int got = drift_grpc_call_recv_pb(
			c, &drift__peer__v1__install_request__descriptor, &m);
		if (got == 0)
			break;
		if (got < 0) {
			rv = drift_err_set(err, DRIFT_ECANCELED,
					   "the copy was cut off");
			break;
		}
		Drift__Peer__V1__InstallRequest *q = (void *)m;
		if (!file_ok(q->file)) {
			rv = drift_err_set(err, DRIFT_EINVAL,
					   "\"%.64s\" is not a file of a shard",
					   q->file);
		} else if (strcmp(q->file, cur) != 0) {
			if (fd >= 0 && fsync(fd) != 0)
				rv = drift_err_errno(err, errno, "syncing %s",
						     cur);
			if (fd >= 0)
				close(fd);
			snprintf(cur, sizeof(cur), "%s", q->file);
			snprintf(path, sizeof(path), "%s/%s", staged, cur);
			fd = open(path,
				  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				  0644);
			if (fd < 0 && rv == 0)
				rv = drift_err_errno(err, errno, "creating %s",
						     path);
		}
		if (rv == 0 && q->data.len > 0 &&
		    pwrite(fd, q->data.data, q->data.len, (off_t)q->offset) !=
			    (ssize_t)q->data.len)
			rv = drift_err_errno(err, errno, "writing %s", path);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	if (fd >= 0) {
		if (rv == 0 && fsync(fd) != 0)
			rv = drift_err_errno(err, errno, "syncing %s", cur);
		close(fd);
	}
	drift_epochs ep;
	memset(&ep, 0, sizeof(ep));
	for (size_t i = 0; i < h->n_history && i < DRIFT_EPOCHS_MAX; i++) {
		ep.h[ep.n].epoch = h->history[i]->epoch;
		ep.h[ep.n].first_seq = h->history[i]->first_seq;
		ep.n++;
	}
	pthread_mutex_lock(&e->mu);
	ep.fence = e->ep.fence > h->epoch ? e->ep.fence : h->epoch;
	pthread_mutex_unlock(&e->mu);
	if (rv == 0)
		rv = drift_epochs_save(staged, &ep, err);
	for (int i = 2; i >= 0 && rv == 0; i--) {
		snprintf(path, sizeof(path), "%s%s", staged, subs[i]);
		rv = sync_path(path, err);
	}
	if (rv == 0) {
		/* No record is applied while the files change. */
		pthread_rwlock_wrlock(&e->applying);
		rv = drift_collection_install_shard(col, h->shard, staged, err);
		if (rv == 0) {
			pthread_mutex_lock(&e->mu);
			e->ep = ep;
			pthread_mutex_unlock(&e->mu);
		}
		pthread_rwlock_unlock(&e->applying);
	}
	if (rv != 0)
		rmtree(staged);
	if (rv == 0)
		*last = repl_last_seq(col, h->shard);
	return rv;
}
