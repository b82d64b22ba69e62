/* virtio-blk: a raw image file served through io_uring, plus its pure request parser. */
#ifndef AMBER_DEVICES_VIRTIO_BLK_H
#define AMBER_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/virtq.h"
#include "config/config.h"

#define BLK_SECTOR_SIZE       512
#define BLK_QUEUE_SIZE        256       /* queue_max; also the in-flight request bound */
#define BLK_SEG_MAX           254       /* data segments per request (config seg_max) */
#define BLK_MAX_DISCARD_SEG   16        /* discard / write-zeroes segments per request */
#define BLK_MAX_DISCARD_SECTS 0x400000u /* 2 GiB per segment */

/* A discard or write-zeroes segment, already range-checked. */
struct blk_range {
    uint64_t offset_bytes;
    uint64_t len_bytes;
    bool unmap;
};

/* One parsed request: what to do, and where the guest's buffers are. */
struct blk_req {
    uint32_t type;         /* VIRTIO_BLK_T_* */
    uint8_t *status;       /* host pointer to the status byte; NULL if the chain has none */
    uint64_t offset_bytes; /* IN/OUT: sector * 512 */
    uint64_t data_len;     /* IN/OUT/GET_ID: bytes of guest data buffers */
    unsigned niov;         /* IN/OUT/GET_ID: data iovecs (sliced from the chain) */
    struct iovec iov[BLK_SEG_MAX];
    unsigned nranges; /* DISCARD/WRITE_ZEROES */
    struct blk_range range[BLK_MAX_DISCARD_SEG];
};

/* What the parser needs to know about the drive. */
struct blk_limits {
    uint64_t capacity_sectors;
    bool read_only;
    uint64_t features; /* negotiated VIRTIO_BLK_F_* bits (1ULL << bit) */
};

/*
 * Parse and validate the chain c as a virtio-blk request (virtio 1.x, 5.2.6). Pure: reads the
 * header and segments through the chain's iovecs, touches no fd. Fills *r and returns the
 * status to report: VIRTIO_BLK_S_OK (execute r), VIRTIO_BLK_S_IOERR (bad range, direction,
 * length, write to a read-only drive) or VIRTIO_BLK_S_UNSUPP (unknown or un-negotiated type,
 * bad flags). Returns -EINVAL if the chain has no writable status byte (r->status is NULL then)
 * and nothing at all may be reported.
 */
int blk_parse_request(const struct virtq_chain *c, const struct blk_limits *lim, struct blk_req *r);

/*
 * Create the virtio-blk device for drive cfg: open the file (O_RDONLY for read-only drives,
 * O_DIRECT if cfg->direct and the filesystem allows it), set up a restricted io_uring with the
 * file registered as a fixed file, and call virtio_dev_init. Returns 0 or -errno with a
 * message naming the drive in err.
 */
int blk_create(struct virtio_dev *d, const struct drive_config *cfg, const struct guest_mem *mem,
               struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen);

/*
 * PATCH /drives: open path with the drive's flags, wait for in-flight I/O to complete, swap the
 * fixed file, update the capacity and raise a config interrupt. Runs on the loop thread; takes
 * d->lock. A zero-byte file is valid (capacity 0). Returns 0 or -errno with err filled; on
 * error the old file stays in use.
 */
int blk_swap_backing(struct virtio_dev *d, const char *path, char *err, size_t errlen);

/*
 * PATCH /drives rate_limiter: set the buckets of rl named in set (RL_SET_*), full; a request
 * deferred by the old limits is looked at again. Loop thread; takes d->lock.
 */
void blk_set_rate_limit(struct virtio_dev *d, const struct rl_config *rl, unsigned set);

/* Current capacity in 512-byte sectors. */
uint64_t blk_capacity_sectors(struct virtio_dev *d);

#endif
