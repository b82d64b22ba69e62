/* The I/O bus: registration of sorted device ranges and bounds-checked dispatch. */
#include "vmm/bus.h"

#include <errno.h>
#include <string.h>

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque)
{
    if (len == 0 || base + len < base || !fn)
        return -EINVAL;
    if (b->nranges == BUS_MAX_RANGES)
        return -ENOSPC;

    unsigned pos = 0;
    while (pos < b->nranges && b->range[pos].base < base)
        pos++;
    if (pos > 0) {
        const struct bus_range *prev = &b->range[pos - 1];
        if (prev->base + prev->len > base)
            return -EEXIST;
    }
    if (pos < b->nranges && base + len > b->range[pos].base)
        return -EEXIST;

    memmove(&b->range[pos + 1], &b->range[pos], (b->nranges - pos) * sizeof(b->range[0]));
    b->range[pos] = (struct bus_range){.base = base, .len = len, .fn = fn, .opaque = opaque};
    b->nranges++;
    return 0;
}

int bus_dispatch(const struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
    unsigned lo = 0, hi = b->nranges;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        const struct bus_range *r = &b->range[mid];
        if (addr < r->base) {
            hi = mid;
        } else if (addr - r->base >= r->len) {
            lo = mid + 1;
        } else {
            uint64_t off = addr - r->base;
            if (len > r->len - off)
                break; /* straddles the end of the range */
            r->fn(r->opaque, off, data, len, is_write);
            return 0;
        }
    }
    if (!is_write)
        memset(data, 0xff, len);
    return -ENOENT;
}
