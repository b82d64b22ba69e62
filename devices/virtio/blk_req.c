/* virtio-blk request parsing: turns a popped chain into a validated request, touching no fd. */
#include "devices/virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <string.h>

#define BLK_HDR_LEN 16
#define BLK_SEG_LEN 16

/* The request header as the guest lays it out (little-endian). */
struct blk_hdr_le {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

/* One discard / write-zeroes segment as the guest lays it out. */
struct blk_seg_le {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

static bool has_feature(const struct blk_limits *lim, unsigned bit)
{
    return (lim->features >> bit) & 1;
}

/*
 * Copy into out[] the iovecs covering bytes [skip, skip+len) of src[0..n). Returns the number
 * of iovecs written, or -E2BIG if more than max would be needed (or src is too short).
 */
static int iov_slice(const struct iovec *src, unsigned n, uint64_t skip, uint64_t len,
                     struct iovec *out, unsigned max)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && len > 0; i++) {
        uint64_t l = src[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        uint64_t take = l - skip;
        if (take > len)
            take = len;
        if (k == max)
            return -E2BIG;
        out[k].iov_base = (uint8_t *)src[i].iov_base + skip;
        out[k].iov_len = take;
        k++;
        len -= take;
        skip = 0;
    }
    return len ? -E2BIG : (int)k;
}

/* True if [sector, sector + bytes/512) lies inside the drive. Overflow-safe. */
static bool range_ok(const struct blk_limits *lim, uint64_t sector, uint64_t bytes)
{
    if (sector > lim->capacity_sectors)
        return false;
    return bytes / BLK_SECTOR_SIZE <= lim->capacity_sectors - sector;
}

/* The status byte: the last byte of the last non-empty writable iovec. */
static uint8_t *find_status(const struct virtq_chain *c)
{
    for (unsigned i = c->nout + c->nin; i > c->nout; i--) {
        const struct iovec *v = &c->iov[i - 1];
        if (v->iov_len)
            return (uint8_t *)v->iov_base + v->iov_len - 1;
    }
    return NULL;
}

static int parse_rw(const struct virtq_chain *c, const struct blk_limits *lim, uint64_t sector,
                    struct blk_req *r)
{
    bool is_read = r->type == VIRTIO_BLK_T_IN;
    uint64_t out_data = c->out_len - BLK_HDR_LEN, in_data = c->in_len - 1;
    if (is_read ? out_data != 0 : in_data != 0)
        return VIRTIO_BLK_S_IOERR; /* data buffers in the wrong direction */
    if (!is_read && lim->read_only)
        return VIRTIO_BLK_S_IOERR;
    uint64_t len = is_read ? in_data : out_data;
    if (len % BLK_SECTOR_SIZE || !range_ok(lim, sector, len))
        return VIRTIO_BLK_S_IOERR;
    int n = is_read ? iov_slice(c->iov + c->nout, c->nin, 0, len, r->iov, BLK_SEG_MAX)
                    : iov_slice(c->iov, c->nout, BLK_HDR_LEN, len, r->iov, BLK_SEG_MAX);
    if (n < 0)
        return VIRTIO_BLK_S_IOERR;
    r->niov = (unsigned)n;
    r->offset_bytes = sector * BLK_SECTOR_SIZE;
    r->data_len = len;
    return VIRTIO_BLK_S_OK;
}

static int parse_ranges(const struct virtq_chain *c, const struct blk_limits *lim,
                        struct blk_req *r)
{
    bool discard = r->type == VIRTIO_BLK_T_DISCARD;
    if (!has_feature(lim, discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
        return VIRTIO_BLK_S_UNSUPP;
    if (lim->read_only)
        return VIRTIO_BLK_S_IOERR;
    uint64_t len = c->out_len - BLK_HDR_LEN;
    if (len == 0 || len % BLK_SEG_LEN || len / BLK_SEG_LEN > BLK_MAX_DISCARD_SEG)
        return VIRTIO_BLK_S_IOERR;
    r->nranges = (unsigned)(len / BLK_SEG_LEN);
    for (unsigned i = 0; i < r->nranges; i++) {
        struct blk_seg_le s;
        if (virtq_chain_read(c, BLK_HDR_LEN + (uint64_t)i * BLK_SEG_LEN, &s, sizeof(s)) !=
            sizeof(s))
            return VIRTIO_BLK_S_IOERR;
        uint64_t sector = le64toh(s.sector);
        uint32_t nsect = le32toh(s.num_sectors), flags = le32toh(s.flags);
        /* Discard takes no flags; write-zeroes only UNMAP (5.2.6.2). */
        uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        if (flags & ~allowed)
            return VIRTIO_BLK_S_UNSUPP;
        if (nsect == 0 || nsect > BLK_MAX_DISCARD_SECTS)
            return VIRTIO_BLK_S_IOERR;
        uint64_t bytes = (uint64_t)nsect * BLK_SECTOR_SIZE;
        if (!range_ok(lim, sector, bytes))
            return VIRTIO_BLK_S_IOERR;
        r->range[i] = (struct blk_range){
            .offset_bytes = sector * BLK_SECTOR_SIZE,
            .len_bytes = bytes,
            .unmap = discard || (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP),
        };
    }
    return VIRTIO_BLK_S_OK;
}

int blk_parse_request(const struct virtq_chain *c, const struct blk_limits *lim, struct blk_req *r)
{
    r->type = 0;
    r->niov = 0;
    r->nranges = 0;
    r->data_len = 0;
    r->offset_bytes = 0;
    r->status = find_status(c);
    if (!r->status)
        return -EINVAL;

    struct blk_hdr_le h;
    if (c->out_len < BLK_HDR_LEN || virtq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h))
        return VIRTIO_BLK_S_IOERR;
    r->type = le32toh(h.type);
    uint64_t sector = le64toh(h.sector);

    switch (r->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT:
        return parse_rw(c, lim, sector, r);
    case VIRTIO_BLK_T_FLUSH:
        return has_feature(lim, VIRTIO_BLK_F_FLUSH) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_UNSUPP;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t len = c->in_len - 1;
        if (len == 0)
            return VIRTIO_BLK_S_IOERR;
        if (len > VIRTIO_BLK_ID_BYTES)
            len = VIRTIO_BLK_ID_BYTES;
        int n = iov_slice(c->iov + c->nout, c->nin, 0, len, r->iov, BLK_SEG_MAX);
        if (n < 0)
            return VIRTIO_BLK_S_IOERR;
        r->niov = (unsigned)n;
        r->data_len = len;
        return VIRTIO_BLK_S_OK;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return parse_ranges(c, lim, r);
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}
