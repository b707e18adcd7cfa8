/*
 * Fuzz target: arbitrary bytes as a client's side of an HTTP/2 connection
 * to a gRPC server of common/grpc (one server for the whole run, on
 * 127.0.0.1). Each input is sent on a fresh connection, the write side is
 * shut, and the server's answer is read to the end: the server must neither
 * crash, nor hang, nor leak. The seeds (tests/fuzz/corpus/grpc_server/) are
 * well-formed sessions: unary, streaming, deadlines, unknown methods,
 * oversized and compressed messages, HTTP-level refusals.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/grpc/server.h"
#include "common/log.h"

static int port;

static void echo(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	drift_grpc_msg *m;
	int rv;
	unsigned n = 0;
	while ((rv = drift_grpc_call_recv(c, &m)) == 1) {
		/* The first byte picks a behaviour, so that the fuzzer reaches
		 * statuses and multi-message replies. */
		int code = m->len > 0 ? m->data[0] % 17 : 0;
		if (drift_grpc_call_send(c, m->data, m->len) != 0) {
			drift_grpc_msg_free(m);
			return;
		}
		drift_grpc_msg_free(m);
		n++;
		if (code != 0) {
			drift_grpc_call_finish(c, code, "code %d after %u",
					       code, n);
			return;
		}
	}
	if (rv == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	drift_log_set_level(DRIFT_LOG_OFF);
	drift_grpc_server *s;
	drift_grpc_server_opts o = {.max_recv_msg = 1 << 20, .workers = 2};
	if (drift_grpc_server_new(&o, &s, NULL) != 0 ||
	    drift_grpc_server_add(s, "/drift.test.Echo/Unary", DRIFT_GRPC_UNARY,
				  echo, NULL) != 0 ||
	    drift_grpc_server_add(s, "/drift.test.Echo/ServerStream",
				  DRIFT_GRPC_SERVER_STREAM, echo, NULL) != 0 ||
	    drift_grpc_server_add(s, "/drift.test.Echo/ClientStream",
				  DRIFT_GRPC_CLIENT_STREAM, echo, NULL) != 0 ||
	    drift_grpc_server_add(s, "/drift.test.Echo/Bidi", DRIFT_GRPC_BIDI,
				  echo, NULL) != 0 ||
	    drift_grpc_server_listen(s, "127.0.0.1:0", NULL) != 0 ||
	    drift_grpc_server_start(s, NULL) != 0)
		abort();
	port = drift_grpc_server_port(s);
	/* The server lives for the whole run (libFuzzer exits the process). */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return 0;
	}
	for (size_t off = 0; off < size;) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	char buf[65536];
	while (recv(fd, buf, sizeof(buf), 0) > 0) {
	}
	close(fd);
	return 0;
}
