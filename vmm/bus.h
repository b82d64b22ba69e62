/* One I/O bus for port I/O and MMIO: sorted ranges, base-relative offsets, checked accesses. */
#ifndef AMBER_VMM_BUS_H
#define AMBER_VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A device's access handler. offset is relative to the range's base, and offset+len is
 * guaranteed to lie inside the range. On a read the handler fills data[0..len); on a write it
 * consumes it. Handlers run on vCPU threads and must do their own locking.
 */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
                          bool is_write);

struct bus_range {
    uint64_t base;
    uint64_t len;
    bus_io_fn fn;
    void *opaque;
};

#define BUS_MAX_RANGES 64

struct bus {
    struct bus_range range[BUS_MAX_RANGES]; /* sorted by base, never overlapping */
    unsigned nranges;
};

/*
 * Add [base, base+len) to the bus. Returns 0, -EINVAL for an empty or wrapping range,
 * -EEXIST if it overlaps an existing range, or -ENOSPC when the bus is full. Registration
 * happens before vCPUs run, so lookups need no lock.
 */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque);

/*
 * Dispatch one access. Returns 0 if a range contained the whole access, -ENOENT otherwise
 * (then reads return all-ones in data and writes are dropped).
 */
int bus_dispatch(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
