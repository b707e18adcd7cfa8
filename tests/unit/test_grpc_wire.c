/* Tests of common/grpc/wire and status: message framing fed in every split,
 * the refusals (too large, compressed, bad flag), grpc-timeout parsing and
 * formatting, grpc-message percent-encoding, status mapping. */
#include <string.h>

#include "common/alloc.h"
#include "common/grpc/status.h"
#include "common/grpc/wire.h"
#include "drift_test.h"

/* ---- Helpers ---- */

/* Frames n messages of sizes[i] bytes (content i + j) into out. */
static size_t frame_all(const size_t *sizes, size_t n, uint8_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		drift_grpc_prefix(out + o, (uint32_t)sizes[i]);
		o += DRIFT_GRPC_PREFIX;
		for (size_t j = 0; j < sizes[i]; j++)
			out[o++] = (uint8_t)(i + j);
	}
	return o;
}

/* ---- Cases ---- */

/* Every chunk size from 1 byte to the whole buffer gives the same
 * messages, with their exact bytes, and nothing leaks. */
DRIFT_TEST(grpc_wire, deframer_any_split)
{
	static const size_t sizes[] = {0, 1, 4, 5, 300, 0, 70000};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	static uint8_t buf[80000];
	size_t total = frame_all(sizes, N, buf);
	static const size_t chunks[] = {1, 2, 3, 5, 7, 4096, 80000};
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		drift_grpc_deframer d;
		drift_grpc_deframer_init(&d, 1 << 20);
		size_t got = 0;
		for (size_t pos = 0; pos < total;) {
			size_t len = total - pos < chunks[k] ? total - pos
							     : chunks[k];
			size_t off = 0;
			while (off < len) {
				size_t used = 0;
				drift_grpc_msg *m = NULL;
				int rv = drift_grpc_deframer_feed(
					&d, buf + pos + off, len - off, &used,
					&m);
				cr_assert_geq(rv, 0);
				off += used;
				if (rv == 1) {
					cr_assert_lt(got, N);
					cr_assert_eq(m->len, sizes[got]);
					for (size_t j = 0; j < m->len; j++)
						cr_assert_eq(
							m->data[j],
							(uint8_t)(got + j));
					drift_grpc_msg_free(m);
					got++;
				} else {
					cr_assert_eq(off, len);
				}
			}
			pos += len;
		}
		cr_assert_eq(got, N, "chunk %zu: %zu messages", chunks[k], got);
		cr_assert(drift_grpc_deframer_idle(&d));
		drift_grpc_deframer_free(&d);
	}
}

DRIFT_TEST(grpc_wire, deframer_refusals)
{
	uint8_t b[DRIFT_GRPC_PREFIX];
	size_t used;
	drift_grpc_msg *m = NULL;
	drift_grpc_deframer d;

	drift_grpc_deframer_init(&d, 100);
	drift_grpc_prefix(b, 101);
	cr_assert_eq(drift_grpc_deframer_feed(&d, b, 5, &used, &m),
		     DRIFT_ELIMIT);
	cr_assert_eq(d.announced, 101);
	drift_grpc_deframer_free(&d);

	drift_grpc_deframer_init(&d, 100);
	drift_grpc_prefix(b, 100);
	cr_assert_eq(drift_grpc_deframer_feed(&d, b, 5, &used, &m), 0);
	cr_assert(!drift_grpc_deframer_idle(&d), "mid-message");
	drift_grpc_deframer_free(&d);

	drift_grpc_deframer_init(&d, 100);
	drift_grpc_prefix(b, 1);
	b[0] = 1;
	cr_assert_eq(drift_grpc_deframer_feed(&d, b, 5, &used, &m),
		     DRIFT_ENOTSUP);
	drift_grpc_deframer_free(&d);

	drift_grpc_deframer_init(&d, 100);
	b[0] = 7;
	cr_assert_eq(drift_grpc_deframer_feed(&d, b, 5, &used, &m),
		     DRIFT_EPROTO);
	drift_grpc_deframer_free(&d);

	/* Out of memory for the message buffer. */
	drift_grpc_deframer_init(&d, 100);
	drift_grpc_prefix(b, 10);
	drift_failalloc_arm(1, 0);
	cr_assert_eq(drift_grpc_deframer_feed(&d, b, 5, &used, &m),
		     DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
	drift_grpc_deframer_free(&d);
}

DRIFT_TEST(grpc_wire, timeout_parse)
{
	uint64_t ns;
	cr_assert_eq(drift_grpc_timeout_parse("1S", 2, &ns), 0);
	cr_assert_eq(ns, 1000000000ull);
	cr_assert_eq(drift_grpc_timeout_parse("250m", 4, &ns), 0);
	cr_assert_eq(ns, 250000000ull);
	cr_assert_eq(drift_grpc_timeout_parse("7u", 2, &ns), 0);
	cr_assert_eq(ns, 7000ull);
	cr_assert_eq(drift_grpc_timeout_parse("0n", 2, &ns), 0);
	cr_assert_eq(ns, 0);
	cr_assert_eq(drift_grpc_timeout_parse("2M", 2, &ns), 0);
	cr_assert_eq(ns, 120000000000ull);
	cr_assert_eq(drift_grpc_timeout_parse("99999999H", 9, &ns), 0);
	cr_assert_eq(ns, UINT64_MAX, "saturated");
	static const char *bad[] = {"",	   "S",	  "1",	 "1s", "123456789S",
				    "-1S", "1 S", "1SS", "x1S"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ns = 42;
		cr_assert_eq(
			drift_grpc_timeout_parse(bad[i], strlen(bad[i]), &ns),
			DRIFT_EINVAL, "\"%s\"", bad[i]);
		cr_assert_eq(ns, 42);
	}
}

/* Formatting never shortens a deadline and always parses back. */
DRIFT_TEST(grpc_wire, timeout_format_round_trip)
{
	static const uint64_t vals[] = {0,
					1,
					999,
					99999999,
					100000000,
					1000000001,
					123456789012ull,
					3600ull * 1000000000ull * 200000000ull,
					UINT64_MAX};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		char buf[16];
		size_t n = drift_grpc_timeout_format(vals[i], buf);
		cr_assert_leq(n, 9);
		cr_assert_eq(strlen(buf), n);
		uint64_t back;
		cr_assert_eq(drift_grpc_timeout_parse(buf, n, &back), 0, "%s",
			     buf);
		/* Capped at 99999999 hours, else never below the value. */
		if (vals[i] <= 99999999ull * 3600 * 1000000000ull)
			cr_assert_geq(back, vals[i], "%s", buf);
	}
}

DRIFT_TEST(grpc_wire, percent_encoding)
{
	const char in[] = "bad 100% \"x\"\n\xc3\xa9";
	char enc[64], dec[64];
	size_t n = drift_grpc_pct_encode(in, strlen(in), enc, sizeof(enc));
	cr_assert_str_eq(enc, "bad 100%25 \"x\"%0A%C3%A9");
	cr_assert_eq(n, strlen(enc));
	drift_grpc_pct_decode(enc, n, dec, sizeof(dec));
	cr_assert_str_eq(dec, in);
	/* Lenient decoding of broken escapes. */
	drift_grpc_pct_decode("50%", 3, dec, sizeof(dec));
	cr_assert_str_eq(dec, "50%");
	drift_grpc_pct_decode("%zz%4", 5, dec, sizeof(dec));
	cr_assert_str_eq(dec, "%zz%4");
	/* Truncation never splits an escape. */
	n = drift_grpc_pct_encode("a\nb", 3, enc, 4);
	cr_assert_str_eq(enc, "a");
	cr_assert_eq(n, 1);
}

DRIFT_TEST(grpc_wire, status_names_and_mapping)
{
	cr_assert_str_eq(drift_grpc_code_name(3), "INVALID_ARGUMENT");
	cr_assert_str_eq(drift_grpc_code_name(16), "UNAUTHENTICATED");
	cr_assert_str_eq(drift_grpc_code_name(99), "UNKNOWN");
	cr_assert_eq(drift_grpc_code_from_err(DRIFT_EINVAL),
		     DRIFT_GRPC_INVALID_ARGUMENT);
	cr_assert_eq(drift_grpc_code_from_err(DRIFT_ECORRUPT),
		     DRIFT_GRPC_DATA_LOSS);
	cr_assert_eq(drift_grpc_code_from_err(DRIFT_ESTALE),
		     DRIFT_GRPC_FAILED_PRECONDITION);
	cr_assert_eq(drift_grpc_code_from_err(DRIFT_ENOSPC),
		     DRIFT_GRPC_RESOURCE_EXHAUSTED);
	/* Codes that map one to one come back. */
	static const int errs[] = {0,
				   DRIFT_EINVAL,
				   DRIFT_ENOENT,
				   DRIFT_EEXIST,
				   DRIFT_ELIMIT,
				   DRIFT_ETIMEDOUT,
				   DRIFT_ESTALE,
				   DRIFT_ECORRUPT,
				   DRIFT_ENOTSUP,
				   DRIFT_EUNAVAIL};
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		cr_assert_eq(drift_grpc_err_from_code(
				     drift_grpc_code_from_err(errs[i])),
			     errs[i], "%s", drift_errname(errs[i]));
}
