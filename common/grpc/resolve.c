/* drift_grpc_resolve (declared in h2io.h): kept apart from server.c so a
 * client-only program links no server code. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/grpc/h2io.h"

int drift_grpc_split_addr(const char *addr, char *host, size_t hcap, int *port)
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL)
		return DRIFT_EINVAL;
	const char *h = addr;
	size_t hl = (size_t)(colon - addr);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hcap)
		return DRIFT_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
		return DRIFT_EINVAL;
	*port = (int)p;
	return 0;
}

int drift_grpc_resolve(const char *addr, struct sockaddr_storage *ss,
		       drift_err *err)
{
	char host[256];
	int port;
	if (drift_grpc_split_addr(addr, host, sizeof(host), &port) != 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "address \"%s\": expected HOST:PORT",
				     addr);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char ps[8];
	snprintf(ps, sizeof(ps), "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc != 0 || res == NULL)
		return drift_err_set(err, DRIFT_EINVAL, "address \"%s\": %s",
				     addr, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}
