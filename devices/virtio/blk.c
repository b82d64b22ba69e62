/* virtio-blk device: backing file, config space, feature set, pause and backing swap. */
#include "devices/virtio/blk_priv.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

/* Config space we expose: everything up to (not including) the secure-erase fields. */
#define BLK_CONFIG_SIZE offsetof(struct virtio_blk_config, max_secure_erase_sectors)

/* An opened backing file before it is installed. */
struct blk_backing {
    int fd, fd_buffered;
    bool direct;
    uint64_t capacity_sectors;
};

static void backing_close(struct blk_backing *k)
{
    if (k->fd_buffered >= 0 && k->fd_buffered != k->fd)
        close(k->fd_buffered);
    if (k->fd >= 0)
        close(k->fd);
    k->fd = k->fd_buffered = -1;
}

/*
 * Open path and refuse anything but a regular file or a block device before any I/O. The open
 * is non-blocking so that a FIFO (whose read-only open waits for a writer) or a device node
 * cannot stall the caller, which is the event loop for PATCH /drives; O_NONBLOCK is cleared once
 * the type is known. Returns the fd, with *st filled, or a negative errno (-EINVAL for a type
 * that is refused).
 */
static int open_checked(const char *path, int flags, struct stat *st)
{
    int fd = open(path, flags | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int rc;
    if (fstat(fd, st) < 0) {
        rc = -errno;
        goto err_close;
    }
    if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
        rc = -EINVAL;
        goto err_close;
    }
    /* F_SETFL alone (the only fcntl the running filter allows) keeps O_DIRECT from flags. */
    if (fcntl(fd, F_SETFL, flags) < 0) {
        rc = -errno;
        goto err_close;
    }
    return fd;
err_close:
    close(fd);
    return rc;
}

static int backing_open(const char *id, const char *path, bool read_only, bool direct,
                        struct blk_backing *k, char *err, size_t errlen)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    *k = (struct blk_backing){.fd = -1, .fd_buffered = -1};
    struct stat st;
    int rc;
    if (direct) {
        rc = open_checked(path, flags | O_DIRECT, &st);
        if (rc >= 0) {
            k->fd = rc;
            k->direct = true;
        } else if (rc == -EINVAL && (rc = open_checked(path, flags, &st)) >= 0) {
            /* The type was fine, so it was O_DIRECT that the filesystem refused. */
            log_info("drive %s: %s refuses O_DIRECT, using the page cache", id, path);
            k->fd = rc;
        } else {
            goto fail;
        }
    }
    if (k->fd < 0) {
        rc = open_checked(path, flags, &st);
        if (rc < 0)
            goto fail;
        k->fd = rc;
    }
    k->fd_buffered = k->fd;
    if (k->direct) {
        struct stat st2;
        rc = open_checked(path, flags, &st2);
        if (rc < 0)
            goto fail;
        k->fd_buffered = rc;
        if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
            rc = -ESTALE; /* the path was replaced between the two opens */
            goto fail;
        }
    }
    uint64_t size_bytes;
    if (S_ISREG(st.st_mode)) {
        size_bytes = (uint64_t)st.st_size;
    } else if (ioctl(k->fd, BLKGETSIZE64, &size_bytes) < 0) {
        rc = -errno;
        goto fail;
    }
    k->capacity_sectors = size_bytes / BLK_SECTOR_SIZE;
    return 0;
fail:
    if (rc == -EINVAL)
        snprintf(err, errlen, "drive %s: %s is not a regular file or block device", id, path);
    else
        snprintf(err, errlen, "drive %s: cannot open %s: %s", id, path, strerror(-rc));
    backing_close(k);
    return rc;
}

static struct blk *blk_of(struct virtio_dev *d)
{
    return d->priv;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct blk *b = blk_of(d);
    struct virtio_blk_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.capacity = htole64(b->capacity_sectors);
    cfg.seg_max = htole32(BLK_SEG_MAX);
    cfg.blk_size = htole32(BLK_SECTOR_SIZE);
    cfg.max_discard_sectors = htole32(BLK_MAX_DISCARD_SECTS);
    cfg.max_discard_seg = htole32(BLK_MAX_DISCARD_SEG);
    cfg.discard_sector_alignment = htole32(8); /* 4 KiB: whole filesystem blocks */
    cfg.max_write_zeroes_sectors = htole32(BLK_MAX_DISCARD_SECTS);
    cfg.max_write_zeroes_seg = htole32(BLK_MAX_DISCARD_SEG);
    cfg.write_zeroes_may_unmap = 1;
    if (off > BLK_CONFIG_SIZE || len > BLK_CONFIG_SIZE - off)
        return;
    memcpy(data, (const uint8_t *)&cfg + off, len);
}

static void blk_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct blk *b = blk_of(d);
    if (q == 0 && !b->throttled) /* throttled: the limiter's timer comes back to the queue */
        blk_process_queue(b);
}

static void blk_reset(struct virtio_dev *d)
{
    struct blk *b = blk_of(d);
    /* Guest buffers may be reused after reset: no I/O may still target them. */
    b->dropping = true;
    blk_drain(b);
    b->dropping = false;
    b->paused = false;
}

static int blk_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    struct blk *b = blk_of(d);
    pthread_mutex_lock(&d->lock);
    b->paused = true;
    /* Results land in the used ring; the transport withholds the irq. On a timeout the rest
     * stays in flight and blk_resume's caller carries on as if no pause had been tried. */
    int rc = blk_drain_within(b, timeout_ms);
    if (rc)
        log_warn("drive %s: %u requests still in flight after %u ms", b->id, b->inflight,
                 timeout_ms);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static void blk_resume(struct virtio_dev *d)
{
    struct blk *b = blk_of(d);
    pthread_mutex_lock(&d->lock);
    b->paused = false;
    if (b->throttled) /* its timer may have fired during the pause and found the device paused */
        rl_timer_arm(&b->rl_timer, 1);
    pthread_mutex_unlock(&d->lock);
}

static unsigned blk_rate_limiters(const struct virtio_dev *d, struct rate_limiter **rl)
{
    struct blk *b = d->priv;
    rl[0] = &b->rl;
    return 1;
}

static void blk_free(struct blk *b)
{
    if (b->ring_ok) {
        b->dropping = true;
        blk_drain(b);
        io_uring_queue_exit(&b->ring);
    }
    if (b->ev_fd >= 0)
        close(b->ev_fd);
    struct blk_backing k = {.fd = b->fd, .fd_buffered = b->fd_buffered};
    backing_close(&k);
    free(b);
}

static void blk_destroy(struct virtio_dev *d)
{
    struct blk *b = blk_of(d);
    if (!b)
        return;
    if (b->ev_fd >= 0)
        loop_del(d->loop, b->ev_fd);
    rl_timer_fini(&b->rl_timer, d->loop);
    blk_free(b);
    d->priv = NULL;
}

int blk_create(struct virtio_dev *d, const struct drive_config *cfg, const struct guest_mem *mem,
               struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen)
{
    struct blk *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "drive %s: out of memory", cfg->id);
        return -ENOMEM;
    }
    b->ev_fd = -1;
    b->rl_timer.fd = -1;
    b->d = d;
    snprintf(b->id, sizeof(b->id), "%s", cfg->id);
    b->read_only = cfg->read_only;
    b->want_direct = cfg->direct;

    struct blk_backing k;
    int rc = backing_open(b->id, cfg->path, b->read_only, cfg->direct, &k, err, errlen);
    if (rc < 0) {
        free(b);
        return rc;
    }
    b->fd = k.fd;
    b->fd_buffered = k.fd_buffered;
    b->direct = k.direct;
    b->capacity_sectors = k.capacity_sectors;

    rc = blk_ring_init(b, err, errlen);
    if (rc < 0)
        goto fail;

    uint64_t features =
        1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH;
    if (b->read_only)
        features |= 1ULL << VIRTIO_BLK_F_RO;
    else
        features |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
    b->ops = (struct virtio_dev_ops){
        .name = "blk",
        .device_id = VIRTIO_ID_BLOCK,
        .num_queues = 1,
        .queue_max = BLK_QUEUE_SIZE,
        .features = features,
        .config_size = BLK_CONFIG_SIZE,
        .config_read = blk_config_read,
        .queue_notify = blk_queue_notify,
        .reset = blk_reset,
        .quiesce = blk_quiesce,
        .resume = blk_resume,
        .destroy = blk_destroy,
        .rate_limiters = blk_rate_limiters,
    };
    rc = virtio_dev_init(d, &b->ops, b, mem, loop, mmio_base, gsi);
    if (rc < 0) {
        snprintf(err, errlen, "drive %s: virtio transport setup failed: %s", b->id, strerror(-rc));
        goto fail;
    }
    rc = loop_add(loop, b->ev_fd, EPOLLIN, blk_ring_event, b);
    if (rc < 0) {
        snprintf(err, errlen, "drive %s: cannot watch the io_uring eventfd: %s", b->id,
                 strerror(-rc));
        virtio_dev_destroy(d); /* calls blk_destroy, which frees b */
        return rc;
    }
    rl_set(&b->rl, &cfg->rl, RL_SET_BANDWIDTH | RL_SET_OPS, clock_now_ns());
    rc = rl_timer_init(&b->rl_timer, loop, blk_rl_event, b);
    if (rc < 0) {
        snprintf(err, errlen, "drive %s: cannot create the rate limiter's timer: %s", b->id,
                 strerror(-rc));
        virtio_dev_destroy(d);
        return rc;
    }
    log_info("drive %s: %s, %llu sectors%s%s", b->id, cfg->path,
             (unsigned long long)b->capacity_sectors, b->read_only ? ", read-only" : "",
             b->direct ? ", O_DIRECT" : "");
    return 0;
fail:
    blk_free(b);
    return rc;
}

int blk_swap_backing(struct virtio_dev *d, const char *path, char *err, size_t errlen)
{
    struct blk *b = blk_of(d);
    struct blk_backing k;
    int rc = backing_open(b->id, path, b->read_only, b->want_direct, &k, err, errlen);
    if (rc < 0)
        return rc;

    pthread_mutex_lock(&d->lock);
    blk_drain(b); /* no request may straddle two files */
    int fds[2] = {k.fd, k.fd_buffered};
    rc = io_uring_register_files_update(&b->ring, 0, fds, 2);
    if (rc < 0) {
        pthread_mutex_unlock(&d->lock);
        snprintf(err, errlen, "drive %s: cannot install %s in the ring: %s", b->id, path,
                 strerror(-rc));
        backing_close(&k);
        return rc;
    }
    struct blk_backing old = {.fd = b->fd, .fd_buffered = b->fd_buffered};
    b->fd = k.fd;
    b->fd_buffered = k.fd_buffered;
    b->direct = k.direct;
    b->capacity_sectors = k.capacity_sectors;
    virtio_notify_config(d);
    /* Requests that arrived during the drain were left in the ring: take them now. */
    blk_process_queue(b);
    pthread_mutex_unlock(&d->lock);
    backing_close(&old);
    log_info("drive %s: backing file now %s, %llu sectors", b->id, path,
             (unsigned long long)k.capacity_sectors);
    return 0;
}

void blk_set_rate_limit(struct virtio_dev *d, const struct rl_config *rl, unsigned set)
{
    struct blk *b = blk_of(d);
    pthread_mutex_lock(&d->lock);
    rl_set(&b->rl, rl, set, clock_now_ns());
    if (b->throttled)
        rl_timer_arm(&b->rl_timer, 1); /* look at the deferred request under the new limits */
    pthread_mutex_unlock(&d->lock);
    log_info("drive %s: rate limiter updated", b->id);
}

uint64_t blk_capacity_sectors(struct virtio_dev *d)
{
    struct blk *b = blk_of(d);
    pthread_mutex_lock(&d->lock);
    uint64_t cap = b->capacity_sectors;
    pthread_mutex_unlock(&d->lock);
    return cap;
}
