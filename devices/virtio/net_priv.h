/* virtio-net internals shared by net.c (device, TX, watches) and net_rx.c (receive path). */
#ifndef AMBER_DEVICES_VIRTIO_NET_PRIV_H
#define AMBER_DEVICES_VIRTIO_NET_PRIV_H

#include "devices/virtio/net.h"
#include "devices/virtio/ratelimit.h"

struct net {
    struct virtio_dev *d;
    struct virtio_dev_ops ops; /* features depend on the TAP */
    char name[CONFIG_ID_MAX + 32];
    int fd;
    bool is_tap, tap_offloads;
    uint8_t mac[6];

    /* Loop watch on fd; only touched on the loop thread. */
    bool watched;
    uint32_t watch_events;
    bool paused;     /* quiesced: no watch, no queue access */
    bool rx_armed;   /* read the back-end when readable (the guest has RX buffers) */
    bool tx_blocked; /* the back-end said EAGAIN: wait for EPOLLOUT */
    bool broken;     /* the back-end hung up or failed: stop watching it */

    /* TUN_F_* flags the driver negotiated, set by activate on a vCPU thread (whose seccomp
     * filter forbids the ioctl) and applied by the loop before it next touches the TAP. */
    bool offload_pending;
    unsigned offload_flags;

    /* TX chain popped but not yet accepted by the back-end. */
    bool tx_pending;
    struct virtq_chain tx_chain;

    /* rx_rate_limiter and tx_rate_limiter. A TX chain the buckets cannot pay for goes back to
     * the ring; RX leaves frames in the TAP while its buckets are empty and charges each frame
     * once read. Either sets its throttled flag (no EPOLLIN, no TX kicks) until rl_timer. */
    struct rate_limiter rx_rl, tx_rl;
    struct rl_timer rl_timer;
    bool rx_throttled, tx_throttled;

    /* RX frame read from the back-end, possibly partly placed into guest buffers. */
    bool rx_have;
    uint32_t rx_len, rx_placed;
    unsigned rx_nheads;
    uint16_t rx_heads[NET_QUEUE_SIZE];
    uint32_t rx_lens[NET_QUEUE_SIZE];
    struct virtq_chain rx_first, rx_cur;
    uint8_t rx_buf[NET_HDR_LEN + NET_FRAME_MAX];
};

/* True while the guest driver runs the device and we are not paused. d->lock held. Inline, so
 * that net_rx.c needs nothing from net.c (net.c calls net_rx.c, never the other way). */
static inline bool net_running(const struct net *n)
{
    uint32_t s = n->d->status;
    return !n->paused && (s & VIRTIO_STATUS_DRIVER_OK) && !(s & VIRTIO_STATUS_NEEDS_RESET);
}

/* Move frames from the back-end into RX buffers until one side runs dry. d->lock held. */
void net_rx_process(struct net *n);

/* Forget a partly placed frame (reset); a frame not yet placed anywhere is kept. */
void net_rx_reset(struct net *n);

#endif
