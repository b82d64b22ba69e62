/* Guest physical memory: anonymous mapping, region layout and checked address translation. */
#include "vmm/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* PROT_NONE guard space on each side of guest RAM: a device bug that strays just outside RAM
 * faults at once instead of reading or writing the monitor's own memory. */
#define MEM_GUARD_BYTES (2ULL << 20)
/* Guest RAM starts on a huge-page boundary: KVM maps a 2 MiB guest page with one 2 MiB host
 * page only when both addresses agree modulo 2 MiB. Unaligned, every 4 KiB page of a booting
 * guest costs its own nested page fault (about 2 s of a test-host boot). */
#define MEM_ALIGN_BYTES (2ULL << 20)

int mem_init(struct guest_mem *m, uint64_t size_bytes)
{
    memset(m, 0, sizeof(*m));
    if (size_bytes == 0 || (size_bytes & 0xfff))
        return -EINVAL;

    uint64_t total;
    if (__builtin_add_overflow(size_bytes, 2 * MEM_GUARD_BYTES + MEM_ALIGN_BYTES, &total))
        return -EINVAL;
    uint8_t *res = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        return -ENOMEM;
    uintptr_t start =
        ((uintptr_t)res + MEM_GUARD_BYTES + MEM_ALIGN_BYTES - 1) & ~(MEM_ALIGN_BYTES - 1);
    uint8_t *p = (uint8_t *)start;
    if (mprotect(p, size_bytes, PROT_READ | PROT_WRITE) < 0) {
        munmap(res, total);
        return -ENOMEM;
    }
    /* Guest RAM never belongs in a core dump of the monitor. */
    madvise(p, size_bytes, MADV_DONTDUMP);

    m->map = p;
    m->map_size = size_bytes;
    m->reserved = res;
    m->reserved_size = total;
    m->size = size_bytes;

    uint64_t low = size_bytes < MEM_GAP_START ? size_bytes : MEM_GAP_START;
    m->region[0] = (struct mem_region){.gpa = 0, .size = low, .host = m->map};
    m->nregions = 1;
    if (size_bytes > low) {
        m->region[1] =
            (struct mem_region){.gpa = MEM_GAP_END, .size = size_bytes - low, .host = m->map + low};
        m->nregions = 2;
    }
    return 0;
}

int mem_map_file(struct guest_mem *m, int fd)
{
    if (!m->map)
        return -EINVAL;
    /* MAP_FIXED over our own reservation: the guard pages and the layout stay as they are. */
    void *p = mmap(m->map, m->map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    madvise(p, m->map_size, MADV_DONTDUMP);
    m->file_backed = true;
    return 0;
}

int mem_track_dirty(struct guest_mem *m)
{
    if (m->dirty)
        return 0;
    uint64_t pages = m->map_size / MEM_PAGE_BYTES;
    m->dirty_words = (pages + 63) / 64;
    m->dirty = calloc(m->dirty_words, sizeof(uint64_t));
    if (!m->dirty) {
        m->dirty_words = 0;
        return -ENOMEM;
    }
    return 0;
}

void mem_dirty_take(const struct guest_mem *m, uint64_t *out)
{
    for (uint64_t i = 0; m->dirty && i < m->dirty_words; i++)
        out[i] |= __atomic_exchange_n(&m->dirty[i], 0, __ATOMIC_RELAXED);
}

void mem_dirty_put_back(const struct guest_mem *m, const uint64_t *bits)
{
    for (uint64_t i = 0; m->dirty && i < m->dirty_words; i++) {
        if (bits[i])
            __atomic_fetch_or(&m->dirty[i], bits[i], __ATOMIC_RELAXED);
    }
}

/* Mark the pages of [host, host+len) (inside map) as touched by amber. */
static void mark_dirty(const struct guest_mem *m, const uint8_t *host, uint64_t len)
{
    uint64_t first = (uint64_t)(host - m->map) / MEM_PAGE_BYTES;
    uint64_t last = ((uint64_t)(host - m->map) + len - 1) / MEM_PAGE_BYTES;
    for (uint64_t pg = first; pg <= last; pg++) {
        uint64_t bit = 1ULL << (pg % 64);
        /* A plain load first: most calls hit pages already marked (rings, the same buffers). */
        if (!(__atomic_load_n(&m->dirty[pg / 64], __ATOMIC_RELAXED) & bit))
            __atomic_fetch_or(&m->dirty[pg / 64], bit, __ATOMIC_RELAXED);
    }
}

void mem_free(struct guest_mem *m)
{
    free(m->dirty);
    if (m->reserved)
        munmap(m->reserved, m->reserved_size);
    memset(m, 0, sizeof(*m));
}

void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        len = 1;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct mem_region *r = &m->region[i];
        if (gpa < r->gpa)
            continue;
        uint64_t off = gpa - r->gpa;
        /* off < size and len <= size - off: no addition that could wrap. */
        if (off < r->size && len <= r->size - off) {
            if (m->dirty)
                mark_dirty(m, r->host + off, len);
            return r->host + off;
        }
    }
    return NULL;
}

int mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
    void *dst = mem_ptr(m, gpa, len);
    if (!dst)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

int mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
    const void *src = mem_ptr(m, gpa, len);
    if (!src)
        return -EFAULT;
    memcpy(dst, src, len);
    return 0;
}

uint64_t mem_low_size(const struct guest_mem *m)
{
    return m->nregions ? m->region[0].size : 0;
}
