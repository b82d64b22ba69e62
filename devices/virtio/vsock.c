/* virtio-vsock device: virtqueues, timers, the virtio ops and creation (host sockets:
 * vsock_host.c). */
#include "devices/virtio/vsock_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

/* ---- queues ---- */

static bool queue_live(struct vsock_dev *dev, unsigned q)
{
    struct virtio_dev *d = dev->vdev;
    return !dev->quiesced && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(d->status & VIRTIO_STATUS_NEEDS_RESET) && d->vq[q].ready;
}

/* True once the driver has handled the transport reset sent at restore (it refilled the event
 * buffer), or had VSOCK_RESET_ACK_MAX_MS to; see reset_unacked. */
static bool vsock_reset_settled(struct vsock_dev *dev)
{
    if (!dev->reset_unacked)
        return true;
    uint16_t idx;
    uint64_t now = clock_now_ms();
    bool moved =
        virtq_avail_idx(&dev->vdev->vq[VSOCK_EVQ], &idx) == 0 && idx != dev->reset_avail_idx;
    if (!moved && now < dev->reset_ack_deadline_ms)
        return false;
    dev->reset_unacked = false;
    if (moved)
        log_info("vsock: the guest handled the transport reset %llu ms after the restore",
                 (unsigned long long)(now - dev->reset_sent_ms));
    else
        log_warn("vsock: the guest did not handle the transport reset within %u ms; host "
                 "connections go ahead",
                 VSOCK_RESET_ACK_MAX_MS);
    return true;
}

static void vsock_process_rx(struct vsock_dev *dev)
{
    struct virtio_dev *d = dev->vdev;
    struct virtq *q = &d->vq[VSOCK_RXQ];
    bool pushed = false;
    if (!queue_live(dev, VSOCK_RXQ) || !vsock_reset_settled(dev))
        return;
    while (vsock_mux_has_rx(&dev->mux)) {
        if (!dev->rx_held) {
            int r = virtq_pop(q, &dev->rx_chain);
            if (r < 0) {
                virtio_set_needs_reset(d, "vsock: bad rx chain");
                return;
            }
            if (r == 0)
                break;
            dev->rx_held = true;
        }
        if (dev->rx_chain.in_len < VSOCK_HDR_SIZE) {
            log_warn_rl("vsock: rx buffer of %llu bytes is too small, returned unused",
                        (unsigned long long)dev->rx_chain.in_len);
            virtq_push(q, dev->rx_chain.head, 0);
            dev->rx_held = false;
            pushed = true;
            continue;
        }
        size_t cap = dev->rx_chain.in_len < sizeof(dev->pkt) ? (size_t)dev->rx_chain.in_len
                                                             : sizeof(dev->pkt);
        size_t n = vsock_mux_rx(&dev->mux, dev->pkt, cap);
        if (n == 0)
            break; /* keep the chain for the next packet */
        virtq_chain_write(&dev->rx_chain, 0, dev->pkt, n);
        virtq_push(q, dev->rx_chain.head, (uint32_t)n);
        dev->rx_held = false;
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, VSOCK_RXQ);
}

static void process_tx(struct vsock_dev *dev)
{
    struct virtio_dev *d = dev->vdev;
    struct virtq *q = &d->vq[VSOCK_TXQ];
    struct virtq_chain *c = &dev->tx_chain;
    bool pushed = false;
    if (!queue_live(dev, VSOCK_TXQ))
        return;
    for (;;) {
        int r = virtq_pop(q, c);
        if (r < 0) {
            virtio_set_needs_reset(d, "vsock: bad tx chain");
            break;
        }
        if (r == 0)
            break;
        if (c->out_len < VSOCK_HDR_SIZE) {
            log_warn_rl("vsock: tx chain of %llu bytes has no header",
                        (unsigned long long)c->out_len);
        } else {
            size_t len = c->out_len < sizeof(dev->pkt) ? (size_t)c->out_len : sizeof(dev->pkt);
            len = (size_t)virtq_chain_read(c, 0, dev->pkt, len);
            vsock_mux_tx(&dev->mux, dev->pkt, len);
        }
        virtq_push(q, c->head, 0);
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, VSOCK_TXQ);
    vsock_process_rx(dev);
}

/*
 * The driver reset the device from a vCPU thread, where fds and watches must not be touched
 * (the loop may be about to call back into a connection). Every loop-thread entry point calls
 * this first, with d->lock held. Returns true if it tore the connections down just now.
 */
static bool vsock_finish_reset(struct vsock_dev *dev)
{
    if (!dev->reset_pending)
        return false;
    dev->reset_pending = false;
    vsock_mux_reset(&dev->mux); /* the guest forgot every socket: close the host ends */
    dev->rx_held = false;
    dev->reset_unacked = false; /* a driver that resets the device starts afresh */
    return true;
}

/* ---- timers: handshake and engine deadlines ---- */

static void vsock_arm_timer(struct vsock_dev *dev)
{
    if (dev->quiesced)
        return;
    uint64_t next = vsock_mux_next_deadline(&dev->mux);
    uint64_t handshake = vsock_clients_next_deadline(dev);
    if (handshake && (!next || handshake < next))
        next = handshake;
    if (dev->reset_unacked && (!next || dev->reset_ack_deadline_ms < next))
        next = dev->reset_ack_deadline_ms;
    struct itimerspec its = {0};
    if (next) {
        uint64_t now = clock_now_ms();
        uint64_t delta = next > now ? next - now : 1;
        its.it_value.tv_sec = (time_t)(delta / 1000);
        its.it_value.tv_nsec = (long)(delta % 1000) * 1000000;
    }
    timerfd_settime(dev->timer_fd, 0, &its, NULL);
}

static void timer_event(void *opaque, uint32_t events)
{
    struct vsock_dev *dev = opaque;
    uint64_t ticks;
    if (read(dev->timer_fd, &ticks, sizeof(ticks)) < 0) {
        /* spurious wake-up after re-arming: nothing to do */
    }
    pthread_mutex_lock(&dev->vdev->lock);
    vsock_finish_reset(dev);
    if (!dev->quiesced) {
        uint64_t now = clock_now_ms();
        vsock_clients_expire(dev, now);
        dev->mux.now_ms = now;
        vsock_mux_expire(&dev->mux);
        vsock_process_rx(dev);
        vsock_arm_timer(dev);
    }
    pthread_mutex_unlock(&dev->vdev->lock);
}

/* ---- virtio ops ---- */

static void vsock_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct vsock_dev *dev = d->priv;
    uint8_t cfg[8];
    for (int i = 0; i < 8; i++)
        cfg[i] = (uint8_t)(dev->guest_cid >> (8 * i));
    if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
        memcpy(data, cfg + off, len);
}

static void vsock_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct vsock_dev *dev = d->priv;
    vsock_finish_reset(dev);
    dev->mux.now_ms = clock_now_ms();
    if (q == VSOCK_TXQ)
        process_tx(dev);
    else
        vsock_process_rx(dev); /* rx buffers, or (event queue) the driver handled a reset */
    vsock_arm_timer(dev);
}

/* Runs on a vCPU thread: defer the teardown to the loop, woken through the timer. */
static void vsock_reset(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    dev->reset_pending = true;
    dev->rx_held = false;
    struct itimerspec soon = {.it_value.tv_nsec = 1};
    timerfd_settime(dev->timer_fd, 0, &soon, NULL);
}

static int vsock_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    struct vsock_dev *dev = d->priv;
    pthread_mutex_lock(&d->lock);
    vsock_finish_reset(dev);
    dev->quiesced = true;
    dev->quiesced_at_ms = clock_now_ms();
    /* New connections wait in the listen backlog, data in the socket buffers. */
    vsock_host_quiesce(dev);
    struct itimerspec off = {0};
    timerfd_settime(dev->timer_fd, 0, &off, NULL);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void vsock_resume(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    pthread_mutex_lock(&d->lock); /* the transport calls resume without it */
    vsock_finish_reset(dev);
    if (!dev->quiesced) {
        pthread_mutex_unlock(&d->lock);
        return;
    }
    dev->quiesced = false;
    uint64_t paused_ms = clock_now_ms() - dev->quiesced_at_ms; /* not counted against timeouts */
    vsock_mux_shift_deadlines(&dev->mux, paused_ms);
    dev->reset_ack_deadline_ms += dev->reset_unacked ? paused_ms : 0;
    vsock_host_resume(dev, paused_ms);
    vsock_arm_timer(dev);
    pthread_mutex_unlock(&d->lock);
}

/* After a restore the host ends of every connection are gone: tell the driver with a
 * VIRTIO_VSOCK_EVENT_RESET on the event queue (virtio 1.2, 5.10.6.6), so the guest
 * resets its connected sockets (listeners stay) and re-reads the CID. */
static void vsock_restored(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    struct virtq *q = &d->vq[VSOCK_EVQ];
    /* A reset guest socket stays in the guest's table of connections until its owner closes
     * it, and answers a new request from the same (host port, guest port) with RST. Host ports
     * restart at VSOCK_EPHEMERAL_FIRST in a new process, so the first new connections would
     * reuse the ports of those open at the snapshot (the agent's, an exec still streaming):
     * start at a random point of the ephemeral range instead. */
    uint32_t start = 0;
    if (getrandom(&start, sizeof(start), GRND_NONBLOCK) != sizeof(start))
        start = (uint32_t)(clock_now_ns() / 1000);
    dev->mux.next_port = VSOCK_EPHEMERAL_FIRST + (start & ((1u << 29) - 1));
    if (!(d->status & VIRTIO_STATUS_DRIVER_OK) || (d->status & VIRTIO_STATUS_NEEDS_RESET) ||
        !q->ready)
        return;
    struct virtq_chain *c = &dev->tx_chain; /* idle: nothing runs before the vCPUs do */
    int r = virtq_pop(q, c);
    if (r < 0) {
        virtio_set_needs_reset(d, "vsock: bad event chain");
        return;
    }
    if (r == 0) {
        log_warn("vsock: no event buffer after restore: the guest was not told of the reset");
        return;
    }
    const uint8_t reset_event[4] = {VSOCK_EVENT_RESET, 0, 0, 0};
    uint32_t written = (uint32_t)virtq_chain_write(c, 0, reset_event, sizeof(reset_event));
    virtq_push(q, c->head, written);
    /* Hold the rx queue until the driver refills the event buffer (reset_unacked), and ask it
     * to kick the event queue when it does. */
    dev->reset_unacked = virtq_avail_idx_arm(q, &dev->reset_avail_idx) == 0;
    dev->reset_sent_ms = clock_now_ms();
    dev->reset_ack_deadline_ms = dev->reset_sent_ms + VSOCK_RESET_ACK_MAX_MS;
    virtio_notify_used(d, VSOCK_EVQ);
}

static void vsock_dump(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    log_info("state: vsock: quiesced %d reset_pending %d rx_held %d listen_watched %d "
             "reset_unacked %d, %u host clients in the CONNECT handshake",
             dev->quiesced, dev->reset_pending, dev->rx_held, dev->listen_watched,
             dev->reset_unacked, dev->nclients);
    vsock_mux_dump(&dev->mux);
}

static void vsock_destroy(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    if (!dev)
        return;
    vsock_mux_reset(&dev->mux);
    vsock_host_close(dev);
    loop_del(dev->loop, dev->timer_fd);
    close(dev->timer_fd);
    free(dev);
    d->priv = NULL;
}

static const struct virtio_dev_ops vsock_ops = {
    .name = "vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .num_queues = VSOCK_NUM_QUEUES,
    .queue_max = VSOCK_QUEUE_SIZE,
    .features = 0, /* stream only, which needs no feature bit */
    .config_size = 8,
    .config_read = vsock_config_read,
    .queue_notify = vsock_queue_notify,
    .reset = vsock_reset,
    .quiesce = vsock_quiesce,
    .resume = vsock_resume,
    .destroy = vsock_destroy,
    .dump = vsock_dump,
    .restored = vsock_restored,
};

/* ---- creation ---- */

/* What vsock_host.c may call back into (it includes nothing of this file). */
static const struct vsock_dev_ops dev_ops = {
    .process_rx = vsock_process_rx,
    .finish_reset = vsock_finish_reset,
    .arm_timer = vsock_arm_timer,
};

int vsock_create_fd(struct virtio_dev *d, const struct vsock_config *cfg, int listen_fd,
                    const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                    unsigned gsi, char *err, size_t errlen)
{
    int e;
    if (cfg->cid < 3 || cfg->cid == UINT32_MAX) {
        snprintf(err, errlen, "vsock guest_cid %u is reserved (use 3 or more)", cfg->cid);
        e = -EINVAL;
        goto err_fd;
    }
    struct vsock_dev *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        snprintf(err, errlen, "out of memory for vsock");
        e = -ENOMEM;
        goto err_fd;
    }
    dev->vdev = d;
    dev->ops = &dev_ops;
    dev->loop = loop;
    dev->guest_cid = cfg->cid;
    dev->listen_fd = listen_fd;
    snprintf(dev->uds_path, sizeof(dev->uds_path), "%s", cfg->uds_path);
    vsock_mux_init(&dev->mux, cfg->cid, &vsock_unix_io, dev);
    dev->mux.prev_cid = cfg->prev_cid;
    dev->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (dev->timer_fd < 0) {
        e = -errno;
        snprintf(err, errlen, "vsock timerfd: %s", strerror(-e));
        goto err_dev;
    }
    e = loop_add(loop, dev->timer_fd, EPOLLIN, timer_event, dev);
    if (e < 0) {
        snprintf(err, errlen, "vsock timer watch: %s", strerror(-e));
        goto err_timer;
    }
    e = loop_add(loop, listen_fd, EPOLLIN, vsock_listen_event, dev);
    if (e < 0) {
        snprintf(err, errlen, "vsock listen watch: %s", strerror(-e));
        goto err_timer_watch;
    }
    dev->listen_watched = true;
    e = virtio_dev_init(d, &vsock_ops, dev, mem, loop, mmio_base, gsi);
    if (e < 0) {
        snprintf(err, errlen, "vsock transport: %s", strerror(-e));
        goto err_listen_watch;
    }
    return 0;
err_listen_watch:
    loop_del(loop, listen_fd);
err_timer_watch:
    loop_del(loop, dev->timer_fd);
err_timer:
    close(dev->timer_fd);
err_dev:
    free(dev);
err_fd:
    close(listen_fd);
    return e;
}

int vsock_create(struct virtio_dev *d, const struct vsock_config *cfg, const struct guest_mem *mem,
                 struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen)
{
    int fd = vsock_listen(cfg->uds_path, err, errlen);
    if (fd < 0)
        return fd;
    return vsock_create_fd(d, cfg, fd, mem, loop, mmio_base, gsi, err, errlen);
}
