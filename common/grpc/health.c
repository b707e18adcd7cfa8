#include "common/grpc/health.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/stream.h"
#include "grpc/health/v1/health.pb-c.h"

#define SERVICE_UNKNOWN                                                        \
	GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
#define NOT_SERVING                                                            \
	GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

/* A Watch re-checks its call this often while nothing changes, so it ends
 * soon after its client goes away. */
#define WATCH_POLL_NS (200 * 1000000ull)

struct entry {
	struct entry *next;
	int status;
	char name[];
};

struct drift_grpc_health {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct entry *entries;
	uint64_t version; /* bumped on every change */
	bool closed;
};

int drift_grpc_health_new(drift_grpc_health **out)
{
	drift_grpc_health *h = drift_calloc(1, sizeof(*h));
	if (h == NULL)
		return DRIFT_ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	drift_grpc_cond_init(&h->cv);
	*out = h;
	return 0;
}

void drift_grpc_health_free(drift_grpc_health *h)
{
	if (h == NULL)
		return;
	while (h->entries != NULL) {
		struct entry *e = h->entries;
		h->entries = e->next;
		drift_free(e);
	}
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	drift_free(h);
}

static struct entry *find(drift_grpc_health *h, const char *name)
{
	for (struct entry *e = h->entries; e != NULL; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

int drift_grpc_health_set(drift_grpc_health *h, const char *service, int status)
{
	pthread_mutex_lock(&h->mu);
	struct entry *e = find(h, service);
	if (e == NULL) {
		size_t n = strlen(service);
		e = drift_malloc(sizeof(*e) + n + 1);
		if (e == NULL) {
			pthread_mutex_unlock(&h->mu);
			return DRIFT_ENOMEM;
		}
		memcpy(e->name, service, n + 1);
		e->next = h->entries;
		h->entries = e;
	}
	if (h->closed)
		status = NOT_SERVING;
	e->status = status;
	h->version++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	return 0;
}

void drift_grpc_health_close(drift_grpc_health *h)
{
	pthread_mutex_lock(&h->mu);
	for (struct entry *e = h->entries; e != NULL; e = e->next)
		e->status = NOT_SERVING;
	h->closed = true;
	h->version++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* The requested service name, or NULL when the request was bad (the call
 * is then finished). *req is freed by the caller. */
static Grpc__Health__V1__HealthCheckRequest *recv_request(drift_grpc_call *c)
{
	ProtobufCMessage *m = NULL;
	int rv = drift_grpc_call_recv_pb(
		c, &grpc__health__v1__health_check_request__descriptor, &m);
	if (rv == 1)
		return (Grpc__Health__V1__HealthCheckRequest *)m;
	if (rv == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "no request message");
	return NULL;
}

static int send_status(drift_grpc_call *c, int status)
{
	Grpc__Health__V1__HealthCheckResponse resp =
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = status;
	return drift_grpc_call_send_pb(c, &resp.base);
}

static void check(drift_grpc_call *c, void *ctx)
{
	drift_grpc_health *h = ctx;
	Grpc__Health__V1__HealthCheckRequest *req = recv_request(c);
	if (req == NULL)
		return;
	pthread_mutex_lock(&h->mu);
	struct entry *e = find(h, req->service);
	int status = e != NULL ? e->status : -1;
	pthread_mutex_unlock(&h->mu);
	if (status < 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_NOT_FOUND,
				       "unknown service \"%s\"", req->service);
	} else if (send_status(c, status) == 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void watch(drift_grpc_call *c, void *ctx)
{
	drift_grpc_health *h = ctx;
	Grpc__Health__V1__HealthCheckRequest *req = recv_request(c);
	if (req == NULL)
		return;
	int last = -1;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		struct entry *e = find(h, req->service);
		int status = e != NULL ? e->status : SERVICE_UNKNOWN;
		bool closed = h->closed;
		if (status != last) {
			pthread_mutex_unlock(&h->mu);
			if (send_status(c, status) != 0)
				goto out;
			last = status;
			pthread_mutex_lock(&h->mu);
			continue;
		}
		if (closed) {
			pthread_mutex_unlock(&h->mu);
			drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
					       "server is shutting down");
			goto out;
		}
		if (drift_grpc_call_done(c))
			break;
		uint64_t seen = h->version;
		while (h->version == seen && !drift_grpc_call_done(c))
			drift_grpc_cond_wait(&h->cv, &h->mu,
					     drift_now_ns() + WATCH_POLL_NS);
	}
	pthread_mutex_unlock(&h->mu);
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

int drift_grpc_health_register(drift_grpc_health *h, drift_grpc_server *s)
{
	int rv = drift_grpc_server_add(s, "/grpc.health.v1.Health/Check",
				       DRIFT_GRPC_UNARY, check, h);
	if (rv == 0)
		rv = drift_grpc_server_add(s, "/grpc.health.v1.Health/Watch",
					   DRIFT_GRPC_SERVER_STREAM, watch, h);
	return rv;
}
