/* virtio-blk internals shared by blk.c (device, config, backing file) and blk_io.c (io_uring). */
#ifndef AMBER_DEVICES_VIRTIO_BLK_PRIV_H
#define AMBER_DEVICES_VIRTIO_BLK_PRIV_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/ratelimit.h"

/* Fixed-file slots in the ring: the main fd and a page-cached fd for misaligned O_DIRECT I/O. */
#define BLK_FIXED_MAIN     0
#define BLK_FIXED_BUFFERED 1

/* One in-flight request. The iovecs stay valid until the request completes. */
struct blk_slot {
    bool busy;
    bool failed;
    uint16_t head;
    uint32_t type;
    uint8_t *status;
    uint32_t written; /* bytes reported to the guest on success */
    uint64_t expect;  /* readv/writev: bytes the kernel must transfer */
    uint64_t offset_bytes;
    unsigned pending; /* SQEs not yet completed */
    unsigned niov;
    struct iovec iov[BLK_SEG_MAX];
    unsigned nranges;
    struct blk_range range[BLK_MAX_DISCARD_SEG];
};

struct blk {
    struct virtio_dev *d;
    struct virtio_dev_ops ops; /* per drive: features depend on read_only */
    char id[CONFIG_ID_MAX + 1];
    bool read_only;
    bool want_direct;
    bool direct;     /* the main fd is O_DIRECT */
    int fd;          /* main fd */
    int fd_buffered; /* == fd unless direct */
    uint64_t capacity_sectors;

    struct io_uring ring;
    bool ring_ok;
    int ev_fd;     /* registered with the ring; watched on the loop */
    bool paused;   /* quiesced: pop nothing */
    bool dropping; /* reset/destroy: complete without touching the guest */
    bool zero_range_unsupported;
    unsigned inflight;

    /* rate_limiter: a request the buckets cannot pay for stays in the avail ring (unpopped)
     * and throttled holds off kicks until rl_timer fires; nothing is in flight for it. */
    struct rate_limiter rl;
    struct rl_timer rl_timer;
    bool throttled;

    struct virtq_chain chain; /* scratch for virtq_pop */
    struct blk_req req;       /* scratch for blk_parse_request */
    struct blk_slot slot[BLK_QUEUE_SIZE];
};

/* Set up the restricted ring with fds as fixed files and ev_fd as its eventfd. */
int blk_ring_init(struct blk *b, char *err, size_t errlen);

/* Pop and start requests from the queue until it is empty or all slots are busy. d->lock held. */
void blk_process_queue(struct blk *b);

/* Handle every completion already posted. d->lock held. Returns true if any chain was pushed. */
bool blk_reap(struct blk *b);

/* Block until nothing is in flight, handling completions as they come. d->lock held. */
void blk_drain(struct blk *b);

/*
 * blk_drain for at most timeout_ms (pause keeps its bound even when the back-end stalls).
 * Returns 0 when nothing is in flight, or -ETIMEDOUT: the requests still in flight stay in
 * the ring and complete through blk_ring_event later, as if the drain had not been tried.
 * d->lock held.
 */
int blk_drain_within(struct blk *b, unsigned timeout_ms);

/* Loop callback for the rate limiter's timer: the buckets may pay for the next request now. */
void blk_rl_event(void *opaque, uint32_t events);

/* Loop callback for the ring's eventfd. */
void blk_ring_event(void *opaque, uint32_t events);

#endif
