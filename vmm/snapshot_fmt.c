/* The snapshot file format: section/record encoder, checked decoder and CRC32C. */
#include "vmm/snapshot_fmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_HDR_BYTES 8

/* --- CRC32C, reflected polynomial 0x82F63B78, one table (written here: no library needed
 * for a state file of a few kilobytes) --- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len)
{
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
        crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* --- little-endian helpers --- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* --- writer --- */

void snapw_init(struct snap_writer *w)
{
    memset(w, 0, sizeof(*w));
}

static void grow(struct snap_writer *w, size_t more)
{
    if (w->err)
        return;
    if (more > SNAP_MAX_FILE_BYTES || w->len + more > SNAP_MAX_FILE_BYTES) {
        w->err = -E2BIG;
        return;
    }
    if (w->len + more <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) {
        w->err = -ENOMEM;
        return;
    }
    w->buf = b;
    w->cap = cap;
}

void snapw_begin(struct snap_writer *w, uint32_t type, uint32_t instance)
{
    if (w->err)
        return;
    if (w->open || w->n >= SNAP_MAX_SECTIONS) {
        w->err = w->open ? -EINVAL : -E2BIG;
        return;
    }
    w->open = true;
    w->table[w->n] = (struct snap_entry){.type = type, .instance = instance, .offset = w->len};
}

void snapw_record(struct snap_writer *w, uint32_t tag, const void *data, uint32_t len)
{
    if (!w->err && !w->open)
        w->err = -EINVAL;
    size_t total = REC_HDR_BYTES + pad8(len);
    grow(w, total);
    if (w->err)
        return;
    uint8_t *p = w->buf + w->len;
    memset(p, 0, total);
    put32(p, tag);
    put32(p + 4, len);
    if (len)
        memcpy(p + REC_HDR_BYTES, data, len);
    w->len += total;
}

void snapw_u32(struct snap_writer *w, uint32_t tag, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    snapw_record(w, tag, b, sizeof(b));
}

void snapw_u64(struct snap_writer *w, uint32_t tag, uint64_t v)
{
    uint8_t b[8];
    put64(b, v);
    snapw_record(w, tag, b, sizeof(b));
}

void snapw_end(struct snap_writer *w)
{
    if (w->err)
        return;
    if (!w->open) {
        w->err = -EINVAL;
        return;
    }
    struct snap_entry *e = &w->table[w->n++];
    e->length = w->len - e->offset;
    e->crc = snap_crc32c(0, w->buf + e->offset, e->length);
    w->open = false;
}

int snapw_finish(struct snap_writer *w, const char *amber_version, uint8_t **out, size_t *out_len)
{
    if (!w->err && w->open)
        w->err = -EINVAL;
    if (w->err)
        return w->err;
    size_t head = SNAP_HEADER_BYTES + (size_t)w->n * SNAP_ENTRY_BYTES;
    size_t total = head + w->len;
    if (total > SNAP_MAX_FILE_BYTES)
        return -E2BIG;
    uint8_t *b = calloc(1, total);
    if (!b)
        return -ENOMEM;
    memcpy(b, SNAP_MAGIC, 8);
    put32(b + 8, SNAP_FORMAT_VERSION);
    put32(b + 12, SNAP_ARCH_X86_64);
    strncpy((char *)b + 16, amber_version, 16);
    put32(b + 32, w->n);
    put64(b + 40, total);
    for (unsigned i = 0; i < w->n; i++) {
        uint8_t *e = b + SNAP_HEADER_BYTES + (size_t)i * SNAP_ENTRY_BYTES;
        put32(e, w->table[i].type);
        put32(e + 4, w->table[i].instance);
        put64(e + 8, w->table[i].offset + head);
        put64(e + 16, w->table[i].length);
        put32(e + 24, w->table[i].crc);
    }
    put32(b + 36, snap_crc32c(0, b, head));
    if (w->len)
        memcpy(b + head, w->buf, w->len);
    *out = b;
    *out_len = total;
    return 0;
}

void snapw_free(struct snap_writer *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

/* --- reader --- */

static int fail(char *err, size_t errlen, int code, const char *what)
{
    snprintf(err, errlen, "snapshot file: %s", what);
    return code;
}

/* Records must tile the section exactly. */
static bool framing_ok(const uint8_t *p, uint64_t len)
{
    uint64_t off = 0;
    while (off < len) {
        if (len - off < REC_HDR_BYTES)
            return false;
        uint64_t rl = get32(p + off + 4);
        uint64_t total = REC_HDR_BYTES + ((rl + 7) & ~7ull);
        if (total > len - off)
            return false;
        off += total;
    }
    return true;
}

int snapr_open(struct snap_reader *r, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (len < SNAP_HEADER_BYTES)
        return fail(err, errlen, -EBADMSG, "truncated (shorter than its header)");
    if (memcmp(buf, SNAP_MAGIC, 8) != 0)
        return fail(err, errlen, -EBADMSG, "not an amber snapshot (bad magic)");
    r->version = get32(buf + 8);
    if (r->version != SNAP_FORMAT_VERSION) {
        snprintf(err, errlen, "snapshot file: format version %u, this amber reads version %u",
                 r->version, SNAP_FORMAT_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (get32(buf + 12) != SNAP_ARCH_X86_64)
        return fail(err, errlen, -EPROTONOSUPPORT, "made for another architecture");
    memcpy(r->amber_version, buf + 16, 16);
    r->amber_version[16] = '\0';
    uint32_t n = get32(buf + 32);
    if (n > SNAP_MAX_SECTIONS)
        return fail(err, errlen, -E2BIG, "too many sections");
    uint64_t file_size = get64(buf + 40);
    if (file_size != len) {
        snprintf(err, errlen, "snapshot file: truncated or extended (%zu bytes, header says %llu)",
                 len, (unsigned long long)file_size);
        return -EBADMSG;
    }
    size_t head = SNAP_HEADER_BYTES + (size_t)n * SNAP_ENTRY_BYTES;
    if (head > len)
        return fail(err, errlen, -EBADMSG, "truncated (section table cut off)");
    uint32_t want = get32(buf + 36);
    uint8_t hdr[SNAP_HEADER_BYTES];
    memcpy(hdr, buf, sizeof(hdr));
    put32(hdr + 36, 0);
    uint32_t crc = snap_crc32c(0, hdr, sizeof(hdr));
    crc = snap_crc32c(crc, buf + SNAP_HEADER_BYTES, head - SNAP_HEADER_BYTES);
    if (crc != want)
        return fail(err, errlen, -EBADMSG, "header checksum mismatch");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + SNAP_HEADER_BYTES + (size_t)i * SNAP_ENTRY_BYTES;
        struct snap_entry s = {.type = get32(e),
                               .instance = get32(e + 4),
                               .offset = get64(e + 8),
                               .length = get64(e + 16),
                               .crc = get32(e + 24)};
        if (s.offset < head || s.offset > len || s.length > len - s.offset || (s.offset & 7)) {
            snprintf(err, errlen, "snapshot file: section %u lies outside the file", i);
            return -EBADMSG;
        }
        if (snap_crc32c(0, buf + s.offset, s.length) != s.crc) {
            snprintf(err, errlen, "snapshot file: section %u (type %u) checksum mismatch", i,
                     s.type);
            return -EBADMSG;
        }
        if (!framing_ok(buf + s.offset, s.length)) {
            snprintf(err, errlen, "snapshot file: section %u has broken record framing", i);
            return -EBADMSG;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (r->table[j].type == s.type && r->table[j].instance == s.instance) {
                snprintf(err, errlen, "snapshot file: section type %u instance %u twice", s.type,
                         s.instance);
                return -EBADMSG;
            }
        }
        r->table[i] = s;
    }
    r->buf = buf;
    r->len = len;
    r->n = n;
    return 0;
}

const struct snap_entry *snapr_find(const struct snap_reader *r, uint32_t type, uint32_t instance)
{
    for (unsigned i = 0; i < r->n; i++)
        if (r->table[i].type == type && r->table[i].instance == instance)
            return &r->table[i];
    return NULL;
}

unsigned snapr_count(const struct snap_reader *r, uint32_t type)
{
    unsigned c = 0;
    for (unsigned i = 0; i < r->n; i++)
        c += r->table[i].type == type;
    return c;
}

int snapr_record(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag,
                 const void **data, uint32_t *len)
{
    if (!s)
        return -ENOENT;
    const uint8_t *p = r->buf + s->offset;
    uint64_t off = 0;
    while (off + REC_HDR_BYTES <= s->length) {
        uint32_t t = get32(p + off), rl = get32(p + off + 4);
        if (t == tag) {
            *data = p + off + REC_HDR_BYTES;
            *len = rl;
            return 0;
        }
        off += REC_HDR_BYTES + ((rl + 7ull) & ~7ull);
    }
    return -ENOENT;
}

int snapr_get(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, void *out,
              uint32_t len)
{
    const void *d;
    uint32_t l;
    int ret = snapr_record(r, s, tag, &d, &l);
    if (ret)
        return ret;
    if (l != len)
        return -EBADMSG;
    memcpy(out, d, len);
    return 0;
}

int snapr_u32(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, uint32_t *v)
{
    uint8_t b[4];
    int ret = snapr_get(r, s, tag, b, sizeof(b));
    if (!ret)
        *v = get32(b);
    return ret;
}

int snapr_u64(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag, uint64_t *v)
{
    uint8_t b[8];
    int ret = snapr_get(r, s, tag, b, sizeof(b));
    if (!ret)
        *v = get64(b);
    return ret;
}
