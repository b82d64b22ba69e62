/* Guest physical memory: allocation, layout and the one checked GPA-to-host translation. */
#ifndef AMBER_VMM_MEM_H
#define AMBER_VMM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 32-bit MMIO gap: RAM below it is "low RAM", RAM that does not fit continues at 4 GiB. */
#define MEM_GAP_START 0xC0000000ULL
#define MEM_GAP_END   0x100000000ULL

#define MEM_MAX_REGIONS 2

struct mem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct guest_mem {
    struct mem_region region[MEM_MAX_REGIONS];
    unsigned nregions;
    uint64_t size; /* total RAM bytes */
    uint8_t *map;  /* the single host mapping backing every region, 2 MiB aligned */
    uint64_t map_size;
    uint8_t *reserved; /* the whole reservation: guard space, alignment slack and map */
    uint64_t reserved_size;
    bool file_backed; /* restored: a private, copy-on-write map of a snapshot's memory file */
    /* Dirty tracking (mem_track_dirty): one bit per 4 KiB page of map, set by mem_ptr for every
     * page amber itself hands out (KVM's dirty log does not see the VMM's own writes). */
    uint64_t *dirty;
    uint64_t dirty_words;
};

#define MEM_PAGE_BYTES 4096ULL

/*
 * Map size_bytes of anonymous guest RAM (MAP_NORESERVE, MADV_DONTDUMP), starting on a 2 MiB
 * boundary so that transparent huge pages can back it and KVM can map them whole. Lay it out
 * as low RAM below MEM_GAP_START plus, if needed, a region from 4 GiB. size_bytes must be a
 * non-zero multiple of 4 KiB. Returns 0 or a negative errno (-ENOMEM if the host refuses the
 * mapping).
 */
int mem_init(struct guest_mem *m, uint64_t size_bytes);

/*
 * Replace the anonymous RAM of an initialised m with a MAP_PRIVATE (copy-on-write, lazily
 * loaded) mapping of fd, whose first m->size bytes are guest RAM in map order. The file is
 * never written. Returns 0 or a negative errno (m keeps its anonymous RAM then).
 */
int mem_map_file(struct guest_mem *m, int fd);

/*
 * Start tracking the pages amber touches on the guest's behalf: from now on every mem_ptr
 * (and so mem_read/mem_write and every device access) marks the 4 KiB pages of its range in
 * m->dirty, reads included (a superset is safe; a missed write is not). Returns 0 or -ENOMEM.
 */
int mem_track_dirty(struct guest_mem *m);

/*
 * OR the pages marked since the last call into out (m->dirty_words words, bit i = page i of
 * map order) and clear them, atomically per word. No-op without tracking.
 */
void mem_dirty_take(const struct guest_mem *m, uint64_t *out);

/* Mark again the pages set in bits (as mem_dirty_take gave them): a failed snapshot puts back
 * what it took, so the next Diff still holds them. No-op without tracking. */
void mem_dirty_put_back(const struct guest_mem *m, const uint64_t *bits);

/* Unmap guest RAM; safe on a zeroed or already freed struct. */
void mem_free(struct guest_mem *m);

/*
 * The only translation from guest physical address to host pointer: returns a pointer to
 * [gpa, gpa+len) if that whole range lies inside one RAM region, else NULL. Overflow-safe;
 * len 0 is treated as 1.
 */
void *mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy len bytes into / out of guest RAM. Returns 0, or -EFAULT if the range is not RAM. */
int mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);

/* Bytes of RAM below the MMIO gap (where the kernel, initrd and boot data must live). */
uint64_t mem_low_size(const struct guest_mem *m);

#endif
