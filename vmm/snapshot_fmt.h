/* The snapshot file format: a pure, checked encoder and decoder over memory buffers. */
#ifndef AMBER_VMM_SNAPSHOT_FMT_H
#define AMBER_VMM_SNAPSHOT_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Layout (all integers little-endian; docs/snapshot.md has the full specification):
 *   header (64 bytes): magic "AMBRSNAP", format version, architecture, amber version (16 bytes,
 *     NUL-padded), section count, header CRC32C, file size;
 *   section table: one 32-byte entry per section (type, instance, offset, length, CRC32C);
 *   sections, each 8-byte aligned: a sequence of records (tag u32, length u32, bytes, padding
 *     to 8).
 * The header CRC covers the header (with its CRC field zero) and the table; each section's
 * CRC covers its bytes. A reader checks every offset, length and CRC before it returns.
 */

#define SNAP_MAGIC          "AMBRSNAP"
#define SNAP_FORMAT_VERSION 1
#define SNAP_ARCH_X86_64    1
#define SNAP_HEADER_BYTES   64
#define SNAP_ENTRY_BYTES    32
#define SNAP_MAX_SECTIONS   128
#define SNAP_MAX_FILE_BYTES (64u << 20) /* a state file is kilobytes; refuse anything huge */

/* Section types. */
enum snap_section {
    SNAP_SEC_META = 1,   /* config JSON, memory size, vCPU count, clocks */
    SNAP_SEC_VCPU = 2,   /* one per vCPU, instance = vCPU index */
    SNAP_SEC_VM = 3,     /* irqchips, PIT2, kvmclock */
    SNAP_SEC_LEGACY = 4, /* serial, i8042, PM */
    SNAP_SEC_VIRTIO = 5, /* one per virtio-mmio slot, instance = slot */
};

struct snap_entry {
    uint32_t type;
    uint32_t instance;
    uint64_t offset;
    uint64_t length;
    uint32_t crc;
};

/* Build a file in memory. Errors are sticky: check snapw_finish's result only. */
struct snap_writer {
    uint8_t *buf; /* sections only; the header and table are prepended by snapw_finish */
    size_t len, cap;
    int err;
    bool open; /* a section is being written */
    unsigned n;
    struct snap_entry table[SNAP_MAX_SECTIONS];
};

/* Start an empty writer. */
void snapw_init(struct snap_writer *w);
/* Open a new section (closing nothing: call snapw_end first). */
void snapw_begin(struct snap_writer *w, uint32_t type, uint32_t instance);
/* Append one record to the open section. */
void snapw_record(struct snap_writer *w, uint32_t tag, const void *data, uint32_t len);
/* Append a u32 / u64 record. */
void snapw_u32(struct snap_writer *w, uint32_t tag, uint32_t v);
void snapw_u64(struct snap_writer *w, uint32_t tag, uint64_t v);
/* Close the open section and compute its CRC. */
void snapw_end(struct snap_writer *w);
/*
 * Assemble header + table + sections into one malloc'd buffer (*out, *out_len; the caller
 * frees it). Returns 0, or the first error met: -ENOMEM, -E2BIG (too many sections or too
 * large), -EINVAL (records outside a section, a section left open).
 */
int snapw_finish(struct snap_writer *w, const char *amber_version, uint8_t **out, size_t *out_len);
/* Free the writer's buffer. */
void snapw_free(struct snap_writer *w);

/* A checked view of a file held in memory (not copied: buf must outlive the reader). */
struct snap_reader {
    const uint8_t *buf;
    size_t len;
    uint32_t version;
    char amber_version[17];
    unsigned n;
    struct snap_entry table[SNAP_MAX_SECTIONS];
};

/*
 * Check a whole file: size, magic, format version, architecture, header CRC, every section's
 * bounds (inside the file, no overlap with the header or table), every section's CRC and
 * record framing, and no duplicate (type, instance). Returns 0, or -EBADMSG / -EPROTONOSUPPORT
 * (foreign version or architecture) / -E2BIG with a one-line reason in err.
 */
int snapr_open(struct snap_reader *r, const uint8_t *buf, size_t len, char *err, size_t errlen);
/* The section (type, instance), or NULL. */
const struct snap_entry *snapr_find(const struct snap_reader *r, uint32_t type, uint32_t instance);
/* How many sections of this type the file holds. */
unsigned snapr_count(const struct snap_reader *r, uint32_t type);
/*
 * Find record tag in section s: *data and *len point into the buffer. Returns 0, or -ENOENT.
 * (Framing was checked by snapr_open, so this cannot read out of bounds.)
 */
int snapr_record(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag,
                 const void **data, uint32_t *len);
/* Copy record tag, which must be exactly len bytes, into out. 0, -ENOENT or -EBADMSG. */
int snapr_get(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, void *out,
              uint32_t len);
/* snapr_get for a u32 / u64 record. */
int snapr_u32(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, uint32_t *v);
int snapr_u64(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, uint64_t *v);

/* CRC32C (Castagnoli), continuing from crc (start with 0). */
uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len);

#endif
