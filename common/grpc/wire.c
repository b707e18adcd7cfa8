#include "common/grpc/wire.h"

#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

drift_grpc_msg *drift_grpc_msg_new(const void *data, size_t len)
{
	if (len > SIZE_MAX - sizeof(drift_grpc_msg))
		return NULL;
	drift_grpc_msg *m = drift_malloc(sizeof(*m) + len);
	if (m == NULL)
		return NULL;
	m->next = NULL;
	m->len = len;
	if (data != NULL && len > 0)
		memcpy(m->data, data, len);
	return m;
}

void drift_grpc_msg_free(drift_grpc_msg *m)
{
	drift_free(m);
}

void drift_grpc_prefix(uint8_t out[DRIFT_GRPC_PREFIX], uint32_t len)
{
	out[0] = 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

void drift_grpc_deframer_init(drift_grpc_deframer *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max;
}

void drift_grpc_deframer_free(drift_grpc_deframer *d)
{
	drift_grpc_msg_free(d->msg);
	d->msg = NULL;
}

bool drift_grpc_deframer_idle(const drift_grpc_deframer *d)
{
	return d->hdr_have == 0 && d->msg == NULL;
}

int drift_grpc_deframer_feed(drift_grpc_deframer *d, const uint8_t *data,
			     size_t len, size_t *used, drift_grpc_msg **out)
{
	size_t pos = 0;
	for (;;) {
		if (d->msg == NULL) {
			size_t take = DRIFT_GRPC_PREFIX - d->hdr_have;
			if (take > len - pos)
				take = len - pos;
			memcpy(d->hdr + d->hdr_have, data + pos, take);
			d->hdr_have += take;
			pos += take;
			if (d->hdr_have < DRIFT_GRPC_PREFIX) {
				*used = pos;
				return 0;
			}
			size_t n = (size_t)d->hdr[1] << 24 |
				   (size_t)d->hdr[2] << 16 |
				   (size_t)d->hdr[3] << 8 | d->hdr[4];
			d->announced = n;
			if (d->hdr[0] == 1)
				return DRIFT_ENOTSUP;
			if (d->hdr[0] != 0)
				return DRIFT_EPROTO;
			if (n > d->max)
				return DRIFT_ELIMIT;
			d->msg = drift_grpc_msg_new(NULL, n);
			if (d->msg == NULL)
				return DRIFT_ENOMEM;
			d->msg_have = 0;
		}
		size_t take = d->msg->len - d->msg_have;
		if (take > len - pos)
			take = len - pos;
		if (take > 0)
			memcpy(d->msg->data + d->msg_have, data + pos, take);
		d->msg_have += take;
		pos += take;
		if (d->msg_have == d->msg->len) {
			*out = d->msg;
			d->msg = NULL;
			d->hdr_have = 0;
			*used = pos;
			return 1;
		}
		*used = pos;
		return 0;
	}
}

int drift_grpc_timeout_parse(const char *s, size_t len, uint64_t *ns)
{
	if (len < 2 || len > 9)
		return DRIFT_EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return DRIFT_EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	uint64_t unit;
	switch (s[len - 1]) {
	case 'H':
		unit = 3600ull * 1000000000ull;
		break;
	case 'M':
		unit = 60ull * 1000000000ull;
		break;
	case 'S':
		unit = 1000000000ull;
		break;
	case 'm':
		unit = 1000000ull;
		break;
	case 'u':
		unit = 1000ull;
		break;
	case 'n':
		unit = 1;
		break;
	default:
		return DRIFT_EINVAL;
	}
	/* At most 99,999,999 hours: saturate rather than wrap. */
	*ns = v > UINT64_MAX / unit ? UINT64_MAX : v * unit;
	return 0;
}

size_t drift_grpc_timeout_format(uint64_t ns, char *buf)
{
	static const struct {
		uint64_t div;
		char unit;
	} units[] = {{1, 'n'},
		     {1000, 'u'},
		     {1000000, 'm'},
		     {1000000000, 'S'},
		     {60000000000ull, 'M'},
		     {3600000000000ull, 'H'}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		/* Round up: a deadline never comes earlier than asked. */
		uint64_t v = ns / units[i].div + (ns % units[i].div != 0);
		if (v <= 99999999 ||
		    i + 1 == sizeof(units) / sizeof(units[0])) {
			if (v > 99999999)
				v = 99999999;
			char tmp[12];
			size_t n = 0;
			do {
				tmp[n++] = (char)('0' + v % 10);
				v /= 10;
			} while (v > 0);
			for (size_t j = 0; j < n; j++)
				buf[j] = tmp[n - 1 - j];
			buf[n] = units[i].unit;
			buf[n + 1] = '\0';
			return n + 1;
		}
	}
	return 0; /* not reached */
}

size_t drift_grpc_pct_encode(const char *in, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x20 && c <= 0x7e && c != '%') {
			if (o + 1 >= cap)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= cap)
				break;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t drift_grpc_pct_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		int hi, lo;
		if (in[i] == '%' && i + 2 < len &&
		    (hi = hexval(in[i + 1])) >= 0 &&
		    (lo = hexval(in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	return o;
}
