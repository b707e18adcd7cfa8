/* Fuzz target: arbitrary bytes as a config file, then the same bytes as the
 * value of every option type and as flags. Must never crash, leak, or leave
 * the struct in a state drift_cfg_free cannot release. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/config.h"

typedef struct conf {
	char *s;
	char *addr;
	int64_t i;
	uint64_t size;
	uint64_t dur;
	bool b;
	int e;
	double d;
} conf;

static const char *const names[] = {"always", "batch", "none", NULL};

static const drift_cfg_opt opts[] = {
	{.key = "a.s",
	 .flag = "s",
	 .type = DRIFT_CFG_STRING,
	 .offset = offsetof(conf, s),
	 .def = "x"},
	{.key = "a.addr",
	 .type = DRIFT_CFG_ADDR,
	 .offset = offsetof(conf, addr),
	 .def = "h:1"},
	{.key = "a.i",
	 .type = DRIFT_CFG_INT,
	 .offset = offsetof(conf, i),
	 .min = -5,
	 .max = 5},
	{.key = "b.size",
	 .type = DRIFT_CFG_SIZE,
	 .offset = offsetof(conf, size)},
	{.key = "b.dur",
	 .type = DRIFT_CFG_DURATION,
	 .offset = offsetof(conf, dur),
	 .min = 0,
	 .max = 1000},
	{.key = "b.b",
	 .flag = "b",
	 .type = DRIFT_CFG_BOOL,
	 .offset = offsetof(conf, b)},
	{.key = "c.e",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(conf, e),
	 .choices = names},
	{.key = "c.d",
	 .type = DRIFT_CFG_DOUBLE,
	 .offset = offsetof(conf, d),
	 .dmin = 0,
	 .dmax = 1},
};

static const drift_cfg_schema schema = {
	.program = "fuzz",
	.opts = opts,
	.nopts = sizeof(opts) / sizeof(opts[0]),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	conf c;
	memset(&c, 0, sizeof(c));
	if (drift_cfg_defaults(&schema, &c, NULL) != 0)
		__builtin_trap();
	drift_cfg_load_buffer(&schema, &c, "fuzz", (const char *)data, size,
			      NULL);

	/* The input as one NUL-terminated value, for each key and as flags. */
	char *text = drift_strndup((const char *)data, size);
	if (text != NULL) {
		for (size_t i = 0; i < schema.nopts; i++)
			drift_cfg_set(&schema, &c, opts[i].key, text, NULL);
		char *argv[] = {"fuzz", text, text, NULL};
		int first;
		if (strncmp(text, "--config", 8) != 0)
			drift_cfg_parse_args(&schema, &c, 3, argv, &first,
					     NULL);
		drift_free(text);
	}
	drift_cfg_free(&schema, &c);
	return 0;
}
