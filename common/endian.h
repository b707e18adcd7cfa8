/*
 * Little-endian loads and stores for on-disk and on-wire formats.
 *
 * Every Drift format is little endian, byte for byte, whatever the host; these
 * helpers read and write through byte pointers, so they need no alignment.
 * On x86-64 the compiler turns each into a single move.
 */
#ifndef DRIFT_COMMON_ENDIAN_H
#define DRIFT_COMMON_ENDIAN_H

#include <stdint.h>
#include <string.h>

static inline void drift_store_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline void drift_store_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static inline void drift_store_le64(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t drift_load_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}

static inline uint32_t drift_load_le32(const void *p)
{
	const uint8_t *b = p;
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static inline uint64_t drift_load_le64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}

static inline void drift_store_lef32(void *p, float f)
{
	uint32_t v;
	memcpy(&v, &f, sizeof(v));
	drift_store_le32(p, v);
}

static inline float drift_load_lef32(const void *p)
{
	uint32_t v = drift_load_le32(p);
	float f;
	memcpy(&f, &v, sizeof(f));
	return f;
}

#endif /* DRIFT_COMMON_ENDIAN_H */
