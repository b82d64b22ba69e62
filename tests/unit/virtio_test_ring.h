/* Test helpers: play the guest driver's side of a split virtqueue over fake guest memory. */
#ifndef AMBER_TESTS_UNIT_VIRTIO_TEST_RING_H
#define AMBER_TESTS_UNIT_VIRTIO_TEST_RING_H

#include <stdint.h>
#include <string.h>

#include "devices/virtio/virtq.h"
#include "vmm/mem.h"

/* Default ring placement used by the tests (all inside a few MiB of RAM). */
#define TR_DESC  0x1000ULL
#define TR_AVAIL 0x2000ULL
#define TR_USED  0x3000ULL
#define TR_DATA  0x100000ULL /* buffers from 1 MiB */

/* The driver's view of one queue. */
struct test_ring {
    const struct guest_mem *mem;
    uint16_t size;
    uint64_t desc, avail, used;
    uint16_t avail_idx;
};

static inline void tr_init(struct test_ring *r, const struct guest_mem *mem, uint16_t size)
{
    *r = (struct test_ring){
        .mem = mem, .size = size, .desc = TR_DESC, .avail = TR_AVAIL, .used = TR_USED};
    memset(mem_ptr(mem, TR_DESC, 16 * (uint64_t)size), 0, 16 * (uint64_t)size);
    memset(mem_ptr(mem, TR_AVAIL, 6 + 2 * (uint64_t)size), 0, 6 + 2 * (uint64_t)size);
    memset(mem_ptr(mem, TR_USED, 6 + 8 * (uint64_t)size), 0, 6 + 8 * (uint64_t)size);
}

/* Point a device-side struct virtq at this ring. */
static inline void tr_attach(const struct test_ring *r, struct virtq *q)
{
    memset(q, 0, sizeof(*q));
    q->mem = r->mem;
    q->size = r->size;
    q->desc_gpa = r->desc;
    q->avail_gpa = r->avail;
    q->used_gpa = r->used;
    q->ready = true;
}

/* Write descriptor i of the table at table_gpa. */
static inline void tr_desc_at(const struct guest_mem *mem, uint64_t table_gpa, unsigned i,
                              uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t raw[16];
    memcpy(raw, &addr, 8);
    memcpy(raw + 8, &len, 4);
    memcpy(raw + 12, &flags, 2);
    memcpy(raw + 14, &next, 2);
    mem_write(mem, table_gpa + 16 * (uint64_t)i, raw, 16);
}

static inline void tr_desc(struct test_ring *r, unsigned i, uint64_t addr, uint32_t len,
                           uint16_t flags, uint16_t next)
{
    tr_desc_at(r->mem, r->desc, i, addr, len, flags, next);
}

static inline void tr_put16(const struct guest_mem *mem, uint64_t gpa, uint16_t v)
{
    mem_write(mem, gpa, &v, 2);
}

static inline uint16_t tr_get16(const struct guest_mem *mem, uint64_t gpa)
{
    uint16_t v = 0;
    mem_read(mem, gpa, &v, 2);
    return v;
}

static inline uint32_t tr_get32(const struct guest_mem *mem, uint64_t gpa)
{
    uint32_t v = 0;
    mem_read(mem, gpa, &v, 4);
    return v;
}

/* Make head available and publish the new avail idx. */
static inline void tr_publish(struct test_ring *r, uint16_t head)
{
    tr_put16(r->mem, r->avail + 4 + 2 * (uint64_t)(r->avail_idx % r->size), head);
    r->avail_idx++;
    tr_put16(r->mem, r->avail + 2, r->avail_idx);
}

static inline void tr_set_avail_idx(struct test_ring *r, uint16_t idx)
{
    r->avail_idx = idx;
    tr_put16(r->mem, r->avail + 2, idx);
}

static inline void tr_set_avail_flags(struct test_ring *r, uint16_t flags)
{
    tr_put16(r->mem, r->avail, flags);
}

static inline void tr_set_used_event(struct test_ring *r, uint16_t ev)
{
    tr_put16(r->mem, r->avail + 4 + 2 * (uint64_t)r->size, ev);
}

static inline uint16_t tr_used_idx(const struct test_ring *r)
{
    return tr_get16(r->mem, r->used + 2);
}

static inline uint16_t tr_used_flags(const struct test_ring *r)
{
    return tr_get16(r->mem, r->used);
}

static inline uint16_t tr_avail_event(const struct test_ring *r)
{
    return tr_get16(r->mem, r->used + 4 + 8 * (uint64_t)r->size);
}

/* Overwrite the device's avail_event (a test stands in for a store not yet visible). */
static inline void tr_set_avail_event(struct test_ring *r, uint16_t ev)
{
    tr_put16(r->mem, r->used + 4 + 8 * (uint64_t)r->size, ev);
}

/* Used element i: id and len. */
static inline uint32_t tr_used_id(const struct test_ring *r, uint16_t i)
{
    return tr_get32(r->mem, r->used + 4 + 8 * (uint64_t)(i % r->size));
}

static inline uint32_t tr_used_len(const struct test_ring *r, uint16_t i)
{
    return tr_get32(r->mem, r->used + 8 + 8 * (uint64_t)(i % r->size));
}

#endif
