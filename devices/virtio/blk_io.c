/* virtio-blk I/O: a restricted io_uring per drive; requests in, completions to the used ring. */
#include "devices/virtio/blk_priv.h"

#include <endian.h>
#include <errno.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

/* user_data: slot index, range index and what the SQE does (for retries). */
enum blk_op { OP_RW, OP_RW_BUFFERED, OP_FSYNC, OP_PUNCH, OP_ZERO };

static uint64_t ud_make(unsigned slot, unsigned range, enum blk_op op)
{
    return (uint64_t)slot | (uint64_t)range << 16 | (uint64_t)op << 32;
}

/* liburing 2.3 as packaged in Debian does not export the restriction helpers: call directly. */
static int ring_register(struct io_uring *r, unsigned op, void *arg, unsigned n)
{
    long rc = syscall(__NR_io_uring_register, r->ring_fd, op, arg, n);
    return rc < 0 ? -errno : 0;
}

int blk_ring_init(struct blk *b, char *err, size_t errlen)
{
    struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};
    int rc = io_uring_queue_init_params(BLK_QUEUE_SIZE, &b->ring, &p);
    if (rc < 0) {
        snprintf(err, errlen,
                 "drive %s: io_uring unavailable (%s); virtio-blk needs io_uring "
                 "(check kernel.io_uring_disabled and any seccomp policy)",
                 b->id, strerror(-rc));
        return rc;
    }
    b->ring_ok = true;
    int fds[2] = {b->fd, b->fd_buffered};
    rc = io_uring_register_files(&b->ring, fds, 2);
    if (rc < 0)
        goto fail;
    b->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->ev_fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = io_uring_register_eventfd(&b->ring, b->ev_fd);
    if (rc < 0)
        goto fail;

    /* Exactly the opcodes a drive uses, on registered files only; files may be swapped. */
    struct io_uring_restriction res[8];
    unsigned n = 0;
    memset(res, 0, sizeof(res));
    res[n].opcode = IORING_RESTRICTION_SQE_OP, res[n++].sqe_op = IORING_OP_READV;
    res[n].opcode = IORING_RESTRICTION_SQE_OP, res[n++].sqe_op = IORING_OP_FSYNC;
    if (!b->read_only) {
        res[n].opcode = IORING_RESTRICTION_SQE_OP, res[n++].sqe_op = IORING_OP_WRITEV;
        res[n].opcode = IORING_RESTRICTION_SQE_OP, res[n++].sqe_op = IORING_OP_FALLOCATE;
    }
    res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED, res[n++].sqe_flags = IOSQE_FIXED_FILE;
    res[n].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED, res[n++].sqe_flags = IOSQE_FIXED_FILE;
    res[n].opcode = IORING_RESTRICTION_REGISTER_OP;
    res[n++].register_op = IORING_REGISTER_FILES_UPDATE;
    rc = ring_register(&b->ring, IORING_REGISTER_RESTRICTIONS, res, n);
    if (rc < 0)
        goto fail;
    rc = ring_register(&b->ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "drive %s: io_uring setup failed: %s", b->id, strerror(-rc));
    return rc;
}

static struct io_uring_sqe *get_sqe(struct blk *b)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    if (!sqe) {
        io_uring_submit(&b->ring);
        sqe = io_uring_get_sqe(&b->ring);
    }
    return sqe;
}

static bool iov_aligned(const struct iovec *iov, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) % BLK_SECTOR_SIZE)
            return false;
    return true;
}

/* Queue one SQE for slot s (range i where relevant). Returns false if the SQ is full. */
static bool submit_op(struct blk *b, unsigned idx, unsigned i, enum blk_op op)
{
    struct blk_slot *s = &b->slot[idx];
    struct io_uring_sqe *sqe = get_sqe(b);
    if (!sqe)
        return false;
    unsigned file = op == OP_RW_BUFFERED ? BLK_FIXED_BUFFERED : BLK_FIXED_MAIN;
    switch (op) {
    case OP_RW:
    case OP_RW_BUFFERED:
        if (s->type == VIRTIO_BLK_T_IN)
            io_uring_prep_readv(sqe, file, s->iov, s->niov, s->offset_bytes);
        else
            io_uring_prep_writev(sqe, file, s->iov, s->niov, s->offset_bytes);
        break;
    case OP_FSYNC:
        io_uring_prep_fsync(sqe, file, IORING_FSYNC_DATASYNC);
        break;
    case OP_PUNCH:
    case OP_ZERO: {
        int mode =
            FALLOC_FL_KEEP_SIZE | (op == OP_ZERO ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
        io_uring_prep_fallocate(sqe, file, mode, s->range[i].offset_bytes, s->range[i].len_bytes);
        break;
    }
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud_make(idx, i, op));
    s->pending++;
    return true;
}

static void complete_slot(struct blk *b, unsigned idx, bool *pushed)
{
    struct blk_slot *s = &b->slot[idx];
    if (!b->dropping) {
        *s->status = s->failed ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
        if (virtq_push(&b->d->vq[0], s->head, s->failed ? 1 : s->written) == 0)
            *pushed = true;
    }
    s->busy = false;
    b->inflight--;
}

/* Start an executable request in a free slot. Returns false if it could not be queued. */
static bool start_io(struct blk *b, const struct blk_req *r, uint16_t head)
{
    unsigned idx = 0;
    while (idx < BLK_QUEUE_SIZE && b->slot[idx].busy)
        idx++;
    if (idx == BLK_QUEUE_SIZE)
        return false;
    struct blk_slot *s = &b->slot[idx];
    /* Field by field: zeroing the whole slot would make its 4 KiB of iovecs resident. */
    s->busy = true;
    s->failed = false;
    s->head = head;
    s->type = r->type;
    s->status = r->status;
    s->pending = 0;
    s->offset_bytes = r->offset_bytes;
    s->expect = r->data_len;
    s->written = r->type == VIRTIO_BLK_T_IN ? (uint32_t)r->data_len + 1 : 1;
    s->niov = r->niov;
    memcpy(s->iov, r->iov, r->niov * sizeof(r->iov[0]));
    s->nranges = r->nranges;
    memcpy(s->range, r->range, r->nranges * sizeof(r->range[0]));
    b->inflight++;

    bool ok = true;
    if (r->type == VIRTIO_BLK_T_FLUSH) {
        ok = submit_op(b, idx, 0, OP_FSYNC);
    } else if (r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT) {
        bool buffered = b->direct && !iov_aligned(s->iov, s->niov);
        ok = submit_op(b, idx, 0, buffered ? OP_RW_BUFFERED : OP_RW);
    } else {
        for (unsigned i = 0; i < s->nranges && ok; i++) {
            bool zero = r->type == VIRTIO_BLK_T_WRITE_ZEROES && !s->range[i].unmap &&
                        !b->zero_range_unsupported;
            ok = submit_op(b, idx, i, zero ? OP_ZERO : OP_PUNCH);
        }
    }
    if (!ok) {
        s->failed = true;
        if (s->pending == 0) {
            bool pushed = false;
            complete_slot(b, idx, &pushed);
        }
    }
    return true;
}

/* Bytes a request moves, for the bandwidth bucket: the data of a read or write (the chain less
 * its 16-byte header and status byte); 0 for the other types. */
static uint64_t rl_bytes(const struct virtq_chain *c)
{
    uint32_t type = 0;
    if (virtq_chain_read(c, 0, &type, sizeof(type)) != sizeof(type))
        return 0;
    type = le32toh(type);
    if (type != VIRTIO_BLK_T_IN && type != VIRTIO_BLK_T_OUT)
        return 0;
    uint64_t total = c->out_len + c->in_len;
    return total > 17 ? total - 17 : 0;
}

/* True if the rate limiter lets chain c go now; else c goes back to the ring and the timer is
 * armed for when the buckets can pay for it. */
static bool rl_admit(struct blk *b, const struct virtq_chain *c)
{
    if (!rl_enabled(&b->rl))
        return true;
    uint64_t now = clock_now_ns(), bytes = rl_bytes(c);
    if (rl_consume(&b->rl, now, bytes, 1))
        return true;
    virtq_unpop(&b->d->vq[0]);
    b->throttled = true;
    rl_timer_arm(&b->rl_timer, rl_wait_ns(&b->rl, now, bytes, 1));
    return false;
}

/* Handle one chain. Returns true if it was completed (pushed) at once. */
static bool handle_chain(struct blk *b, const struct virtq_chain *c)
{
    struct virtio_dev *d = b->d;
    struct blk_limits lim = {.capacity_sectors = b->capacity_sectors, .read_only = b->read_only};
    static const unsigned bits[] = {VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD,
                                    VIRTIO_BLK_F_WRITE_ZEROES};
    for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        if (virtio_has_feature(d, bits[i]))
            lim.features |= 1ULL << bits[i];

    struct blk_req *r = &b->req;
    int st = blk_parse_request(c, &lim, r);
    if (st < 0) {
        log_warn_rl("drive %s: request without a status byte", b->id);
        virtq_push(&d->vq[0], c->head, 0);
        return true;
    }
    uint32_t written = 1;
    if (st == VIRTIO_BLK_S_OK && r->type == VIRTIO_BLK_T_GET_ID) {
        char id[VIRTIO_BLK_ID_BYTES] = {0};
        memcpy(id, b->id, strnlen(b->id, sizeof(id)));
        uint64_t off = 0;
        for (unsigned i = 0; i < r->niov; i++) {
            memcpy(r->iov[i].iov_base, id + off, r->iov[i].iov_len);
            off += r->iov[i].iov_len;
        }
        written += (uint32_t)r->data_len;
    } else if (st == VIRTIO_BLK_S_OK && r->type != VIRTIO_BLK_T_GET_ID &&
               !((r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT) && r->data_len == 0)) {
        if (start_io(b, r, c->head))
            return false;
        st = VIRTIO_BLK_S_IOERR;
    }
    *r->status = (uint8_t)st;
    virtq_push(&d->vq[0], c->head, written);
    return true;
}

void blk_process_queue(struct blk *b)
{
    struct virtio_dev *d = b->d;
    struct virtq *q = &d->vq[0];
    bool pushed = false;
    while (!b->paused && !b->dropping && q->ready && b->inflight < BLK_QUEUE_SIZE) {
        int rc = virtq_pop(q, &b->chain);
        if (rc == 0)
            break;
        if (rc < 0) {
            virtio_set_needs_reset(d, "virtio-blk: malformed descriptor chain");
            break;
        }
        if (!rl_admit(b, &b->chain))
            break;
        pushed |= handle_chain(b, &b->chain);
    }
    io_uring_submit(&b->ring);
    if (pushed)
        virtio_notify_used(d, 0);
}

static void handle_cqe(struct blk *b, uint64_t ud, int res, bool *pushed)
{
    unsigned idx = ud & 0xffff, i = (ud >> 16) & 0xffff;
    enum blk_op op = (enum blk_op)(ud >> 32);
    if (idx >= BLK_QUEUE_SIZE || !b->slot[idx].busy)
        return;
    struct blk_slot *s = &b->slot[idx];
    s->pending--;
    bool retry = false;
    if (op == OP_RW && res == -EINVAL && b->direct && !b->dropping) {
        /* The filesystem refused this O_DIRECT transfer: redo it through the page cache. */
        retry = true;
        op = OP_RW_BUFFERED;
    } else if (op == OP_ZERO && (res == -EOPNOTSUPP || res == -EINVAL) && !b->dropping) {
        if (!b->zero_range_unsupported)
            log_info_rl("drive %s: no FALLOC_FL_ZERO_RANGE here, zeroing by hole punch", b->id);
        b->zero_range_unsupported = true;
        retry = true;
        op = OP_PUNCH;
    } else if (op == OP_RW || op == OP_RW_BUFFERED) {
        if (res < 0 || (uint64_t)res != s->expect)
            s->failed = true; /* error or short transfer (e.g. past a truncated file's end) */
    } else if (res < 0) {
        s->failed = true;
    }
    if (retry) {
        if (submit_op(b, idx, i, op))
            io_uring_submit(&b->ring);
        else
            s->failed = true;
    }
    if (s->pending == 0)
        complete_slot(b, idx, pushed);
}

bool blk_reap(struct blk *b)
{
    bool pushed = false;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&b->ring, cqe);
        handle_cqe(b, ud, res, &pushed);
    }
    return pushed;
}

/* Wait for one completion, until deadline_ns (0: no deadline). 0, -ETIME at the deadline, or
 * another negative errno. */
static int wait_one(struct blk *b, uint64_t deadline_ns)
{
    struct io_uring_cqe *cqe;
    /* Without EXT_ARG (Linux < 5.11) liburing would time the wait with an SQE the ring's
     * restrictions refuse: wait unbounded there. */
    if (!deadline_ns || !(b->ring.features & IORING_FEAT_EXT_ARG))
        return io_uring_wait_cqe(&b->ring, &cqe);
    uint64_t now = clock_now_ns();
    if (now >= deadline_ns)
        return -ETIME;
    uint64_t left = deadline_ns - now;
    struct __kernel_timespec ts = {.tv_sec = (long long)(left / 1000000000u),
                                   .tv_nsec = (long long)(left % 1000000000u)};
    return io_uring_wait_cqe_timeout(&b->ring, &cqe, &ts);
}

/* Reap until nothing is in flight or the deadline (0: none) passes. 0 or -ETIMEDOUT. */
static int drain_until(struct blk *b, uint64_t deadline_ns)
{
    bool pushed = blk_reap(b);
    int ret = 0;
    while (b->inflight > 0) {
        int rc = wait_one(b, deadline_ns);
        if (rc == -ETIME && deadline_ns && clock_now_ns() >= deadline_ns) {
            ret = -ETIMEDOUT;
            break;
        }
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -ETIME) {
            log_err("drive %s: waiting for in-flight I/O failed: %s", b->id, strerror(-rc));
            break;
        }
        pushed |= blk_reap(b);
    }
    uint64_t v;
    if (read(b->ev_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("drive %s: eventfd read: %s", b->id, strerror(errno));
    if (pushed && !b->dropping)
        virtio_notify_used(b->d, 0);
    return ret;
}

void blk_drain(struct blk *b)
{
    drain_until(b, 0);
}

int blk_drain_within(struct blk *b, unsigned timeout_ms)
{
    /* At least 1 ns: a deadline of 0 means none. */
    return drain_until(b, clock_now_ns() + (uint64_t)timeout_ms * 1000000u + 1);
}

void blk_rl_event(void *opaque, uint32_t events)
{
    struct blk *b = opaque;
    rl_timer_ack(&b->rl_timer);
    pthread_mutex_lock(&b->d->lock);
    if (!b->paused) { /* paused: blk_resume arms the timer again */
        b->throttled = false;
        blk_process_queue(b);
    }
    pthread_mutex_unlock(&b->d->lock);
}

void blk_ring_event(void *opaque, uint32_t events)
{
    struct blk *b = opaque;
    uint64_t v;
    if (read(b->ev_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    pthread_mutex_lock(&b->d->lock);
    bool was_full = b->inflight == BLK_QUEUE_SIZE;
    if (blk_reap(b))
        virtio_notify_used(b->d, 0);
    if (was_full)
        blk_process_queue(b);
    pthread_mutex_unlock(&b->d->lock);
}
