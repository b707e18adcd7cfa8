/*
 * The gRPC wire rules that do not depend on HTTP/2 framing: message
 * framing, grpc-timeout and grpc-message encoding
 * (doc/PROTOCOL-HTTP2.md of grpc/grpc).
 *
 * A message on a stream is a 5-byte prefix, then the message:
 *
 *     offset 0  uint8     compressed flag: 0 none, 1 compressed with the
 *                         stream's grpc-encoding
 *     offset 1  uint32 BE length of the message in bytes
 *     offset 5  bytes     the (serialized protobuf) message
 *
 * Messages may span DATA frames and a DATA frame may hold several; the
 * deframer below is fed whatever arrived and hands out whole messages.
 */
#ifndef DRIFT_COMMON_GRPC_WIRE_H
#define DRIFT_COMMON_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRIFT_GRPC_PREFIX 5

/* A whole message with its owner's list link. Allocated with drift_malloc in
 * one piece (header and data); freed with drift_grpc_msg_free. */
typedef struct drift_grpc_msg {
	struct drift_grpc_msg *next;
	size_t len;
	uint8_t data[];
} drift_grpc_msg;

/* A new message of len bytes (contents copied from data unless NULL), or
 * NULL when out of memory. */
drift_grpc_msg *drift_grpc_msg_new(const void *data, size_t len);
void drift_grpc_msg_free(drift_grpc_msg *m);

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void drift_grpc_prefix(uint8_t out[DRIFT_GRPC_PREFIX], uint32_t len);

/* Incremental decoder of one stream's message sequence. */
typedef struct drift_grpc_deframer {
	uint8_t hdr[DRIFT_GRPC_PREFIX];
	size_t hdr_have;
	drift_grpc_msg *msg; /* the message being filled, or NULL */
	size_t msg_have;
	size_t max;	  /* largest message accepted */
	size_t announced; /* the length of the last prefix read */
} drift_grpc_deframer;

/* max: the largest message length accepted. */
void drift_grpc_deframer_init(drift_grpc_deframer *d, size_t max);
void drift_grpc_deframer_free(drift_grpc_deframer *d);

/* Consumes bytes from data[0..len). Returns
 *   1  a message is complete: *out owns it (free with drift_grpc_msg_free),
 *      *used says how many bytes were taken; call again with the rest;
 *   0  every byte was taken (*used = len) and no message is complete yet;
 *   DRIFT_ELIMIT    the prefix announces more than max bytes (d->announced
 *                   has the length);
 *   DRIFT_ENOTSUP   the compressed flag is 1 (the caller knows whether an
 *                   encoding was agreed: this layer agrees none);
 *   DRIFT_EPROTO    the flag is neither 0 nor 1;
 *   DRIFT_ENOMEM.
 * After an error the deframer must not be fed again. */
int drift_grpc_deframer_feed(drift_grpc_deframer *d, const uint8_t *data,
			     size_t len, size_t *used, drift_grpc_msg **out);

/* Whether the deframer is between messages (a stream may end here). */
bool drift_grpc_deframer_idle(const drift_grpc_deframer *d);

/* Parses a grpc-timeout value ("1-8 ASCII digits" then one of H M S m u n)
 * into nanoseconds, saturating at UINT64_MAX. 0 or DRIFT_EINVAL. */
int drift_grpc_timeout_parse(const char *s, size_t len, uint64_t *ns);

/* Formats ns as a grpc-timeout value of at most 8 digits, rounding up to
 * the next unit that fits. buf holds at least 10 bytes; returns the length.
 */
size_t drift_grpc_timeout_format(uint64_t ns, char *buf);

/* Percent-encodes a grpc-message: bytes outside 0x20..0x7E and '%' become
 * %XX. Writes at most cap - 1 bytes and a NUL, never splitting an escape;
 * returns the length written. */
size_t drift_grpc_pct_encode(const char *in, size_t len, char *out, size_t cap);

/* Decodes a percent-encoded grpc-message; a '%' not followed by two hex
 * digits is kept as it is (the spec asks receivers to be lenient). Writes at
 * most cap - 1 bytes and a NUL; returns the length written. */
size_t drift_grpc_pct_decode(const char *in, size_t len, char *out, size_t cap);

#endif /* DRIFT_COMMON_GRPC_WIRE_H */
