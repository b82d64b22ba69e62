/* virtio-net device: features and offloads, config space, TX path, back-end watches, pause. */
#include "devices/virtio/net_priv.h"

#include <endian.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include "devices/virtio/tap.h"
#include "vmm/clock.h"
#include "vmm/log.h"

#define NET_CONFIG_SIZE 10 /* mac, status, max_virtqueue_pairs */
#define BIT(b)          (1ULL << (b))

static const uint64_t OFFLOAD_FEATURES =
    BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4) |
    BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6);

uint64_t net_features_offered(bool tap_offloads)
{
    uint64_t f = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF);
    return tap_offloads ? f | OFFLOAD_FEATURES : f;
}

unsigned net_tun_offload_flags(uint64_t guest_features)
{
    unsigned flags = 0;
    if (!(guest_features & BIT(VIRTIO_NET_F_GUEST_CSUM)))
        return 0; /* TSO frames always carry partial checksums */
    flags |= TUN_F_CSUM;
    if (guest_features & BIT(VIRTIO_NET_F_GUEST_TSO4))
        flags |= TUN_F_TSO4;
    if (guest_features & BIT(VIRTIO_NET_F_GUEST_TSO6))
        flags |= TUN_F_TSO6;
    return flags;
}

int net_tx_hdr_check(const uint8_t hdr[NET_HDR_LEN], uint64_t features)
{
    uint8_t flags = hdr[0], gso = hdr[1];
    if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM)
        return -EINVAL;
    if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !(features & BIT(VIRTIO_NET_F_CSUM)))
        return -EINVAL;
    switch (gso) {
    case VIRTIO_NET_HDR_GSO_NONE:
        return 0;
    case VIRTIO_NET_HDR_GSO_TCPV4:
        return features & BIT(VIRTIO_NET_F_HOST_TSO4) ? 0 : -EINVAL;
    case VIRTIO_NET_HDR_GSO_TCPV6:
        return features & BIT(VIRTIO_NET_F_HOST_TSO6) ? 0 : -EINVAL;
    default:
        return -EINVAL; /* UFO, ECN and unknown types were never offered */
    }
}

static struct net *net_of(struct virtio_dev *d)
{
    return d->priv;
}

static void tap_event(void *opaque, uint32_t events);

/* Make the loop watch match what we wait for. Loop thread only. */
static void update_watch(struct net *n)
{
    uint32_t want = 0;
    if (!n->paused && !n->broken)
        want = (n->rx_armed ? EPOLLIN : 0) | (n->tx_blocked ? EPOLLOUT : 0);
    if (n->watched && want == n->watch_events)
        return;
    int rc = 0;
    if (want == 0) {
        if (n->watched)
            loop_del(n->d->loop, n->fd);
        n->watched = false;
    } else if (n->watched) {
        rc = loop_mod(n->d->loop, n->fd, want);
    } else {
        rc = loop_add(n->d->loop, n->fd, want, tap_event, n);
        n->watched = rc == 0;
    }
    if (rc < 0)
        log_warn("%s: cannot watch the back-end: %s", n->name, strerror(-rc));
    n->watch_events = want;
}

/*
 * Loop side of activate: give the TAP the offloads the driver negotiated before any frame is
 * read for it. Every loop entry point calls this first, with d->lock held.
 */
static void net_sync(struct net *n)
{
    if (!n->offload_pending || !net_running(n))
        return;
    n->offload_pending = false;
    int rc = tap_set_offload(n->fd, n->offload_flags);
    if (rc < 0) {
        log_warn("%s: TUNSETOFFLOAD %#x failed: %s", n->name, n->offload_flags, strerror(-rc));
        virtio_set_needs_reset(n->d, "TAP refused the negotiated offloads");
    }
}

int net_tx_iov(const struct virtq_chain *c, const uint8_t hdr[NET_HDR_LEN], struct iovec *iov)
{
    int n = 0;
    iov[n++] = (struct iovec){.iov_base = (void *)hdr, .iov_len = NET_HDR_LEN};
    size_t skip = NET_HDR_LEN;
    for (unsigned i = 0; i < c->nout; i++) {
        size_t len = c->iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        iov[n++] =
            (struct iovec){.iov_base = (uint8_t *)c->iov[i].iov_base + skip, .iov_len = len - skip};
        skip = 0;
    }
    return n;
}

/* True if the TX limiter lets frame c go now; else c goes back to the ring and the timer is
 * armed for when the buckets can pay for it. */
static bool tx_admit(struct net *n, const struct virtq_chain *c)
{
    if (!rl_enabled(&n->tx_rl))
        return true;
    uint64_t now = clock_now_ns();
    uint64_t bytes = c->out_len > NET_HDR_LEN ? c->out_len - NET_HDR_LEN : 0;
    if (rl_consume(&n->tx_rl, now, bytes, 1))
        return true;
    virtq_unpop(&n->d->vq[NET_TXQ]);
    n->tx_throttled = true;
    rl_timer_arm(&n->rl_timer, rl_wait_ns(&n->tx_rl, now, bytes, 1));
    return false;
}

/* Send TX chains to the back-end until the queue is empty or the back-end is full. */
static void tx_process(struct net *n)
{
    struct virtio_dev *d = n->d;
    struct virtq *q = &d->vq[NET_TXQ];
    bool pushed = false;
    while (net_running(n) && !n->broken && q->ready && !n->tx_blocked && !n->tx_throttled) {
        struct virtq_chain *c = &n->tx_chain;
        if (!n->tx_pending) {
            int rc = virtq_pop(q, c);
            if (rc == 0)
                break;
            if (rc < 0) {
                virtio_set_needs_reset(d, "virtio-net: malformed TX chain");
                break;
            }
            if (!tx_admit(n, c))
                break;
            n->tx_pending = true;
        }
        /* The header is checked on a copy and the copy is what goes out (net_tx_iov). */
        uint8_t hdr[NET_HDR_LEN];
        struct iovec iov[VIRTQ_MAX_IOV + 1];
        bool ok = c->out_len > NET_HDR_LEN &&
                  virtq_chain_read(c, 0, hdr, sizeof(hdr)) == sizeof(hdr) &&
                  net_tx_hdr_check(hdr, d->driver_features) == 0;
        if (ok && writev(n->fd, iov, net_tx_iov(c, hdr, iov)) < 0) {
            if (errno == EAGAIN || errno == ENOBUFS) {
                n->tx_blocked = true; /* keep the chain; retry on EPOLLOUT */
                break;
            }
            log_debug_rl("%s: back-end refused a frame: %s", n->name, strerror(errno));
        }
        if (virtq_push_elem(q, c->head, 0) < 0) {
            virtio_set_needs_reset(d, "virtio-net: TX used ring");
            n->tx_pending = false;
            break;
        }
        n->tx_pending = false;
        pushed = true;
    }
    if (pushed) {
        virtq_publish(q); /* one index store for the whole batch */
        virtio_notify_used(d, NET_TXQ);
    }
}

static void tap_event(void *opaque, uint32_t events)
{
    struct net *n = opaque;
    pthread_mutex_lock(&n->d->lock);
    net_sync(n);
    if ((events & (EPOLLERR | EPOLLHUP)) && !n->broken) {
        log_warn("%s: back-end hung up or failed; the link is dead", n->name);
        n->broken = true;
    }
    if (events & EPOLLOUT) {
        n->tx_blocked = false;
        tx_process(n);
    }
    if (events & EPOLLIN)
        net_rx_process(n);
    update_watch(n);
    pthread_mutex_unlock(&n->d->lock);
}

/* The rate limiters' timer: whichever side was throttled may go on. */
static void net_rl_event(void *opaque, uint32_t events)
{
    struct net *n = opaque;
    rl_timer_ack(&n->rl_timer);
    pthread_mutex_lock(&n->d->lock);
    if (!n->paused) { /* paused: net_resume arms the timer again */
        net_sync(n);
        n->tx_throttled = false;
        n->rx_throttled = false;
        tx_process(n);
        net_rx_process(n);
        update_watch(n);
    }
    pthread_mutex_unlock(&n->d->lock);
}

void net_set_rate_limit(struct virtio_dev *d, bool tx, const struct rl_config *rl, unsigned set)
{
    struct net *n = net_of(d);
    pthread_mutex_lock(&d->lock);
    rl_set(tx ? &n->tx_rl : &n->rx_rl, rl, set, clock_now_ns());
    if (n->tx_throttled || n->rx_throttled)
        rl_timer_arm(&n->rl_timer, 1); /* look again under the new limits */
    pthread_mutex_unlock(&d->lock);
    log_info("%s: %s rate limiter updated", n->name, tx ? "tx" : "rx");
}

static void net_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct net *n = net_of(d);
    net_sync(n);
    if (q == NET_RXQ && !n->rx_throttled)
        net_rx_process(n); /* new RX buffers: pending or queued frames can flow again */
    else if (q == NET_TXQ)
        tx_process(n);
    update_watch(n);
}

static void net_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct net *n = net_of(d);
    uint8_t cfg[NET_CONFIG_SIZE];
    uint16_t status = htole16(VIRTIO_NET_S_LINK_UP), pairs = htole16(1);
    memcpy(cfg, n->mac, 6);
    memcpy(cfg + 6, &status, 2);
    memcpy(cfg + 8, &pairs, 2);
    if (off <= sizeof(cfg) && len <= sizeof(cfg) - off)
        memcpy(data, cfg + off, len);
}

/*
 * DRIVER_OK, on a vCPU thread with d->lock held. The vCPU seccomp filter forbids the TAP ioctl,
 * so only note the offloads the driver negotiated: the loop applies them (net_sync) before it
 * next reads the TAP, and the transport's kick of every ready queue brings it there at once.
 */
static int net_activate(struct virtio_dev *d)
{
    struct net *n = net_of(d);
    if (n->is_tap && n->tap_offloads) {
        n->offload_flags = net_tun_offload_flags(d->driver_features);
        n->offload_pending = true;
    }
    return 0;
}

/*
 * Status 0, on a vCPU thread with d->lock held: forget the chains of the old queues. The loop
 * watch is left alone (loop-thread only); the next TAP event finds the device not running and
 * drops it.
 */
static void net_reset(struct virtio_dev *d)
{
    struct net *n = net_of(d);
    n->tx_pending = false;
    n->tx_blocked = false;
    n->rx_armed = false;
    n->offload_pending = false; /* the next activate sets them again */
    net_rx_reset(n);
}

static int net_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    struct net *n = net_of(d);
    pthread_mutex_lock(&d->lock);
    n->paused = true;
    update_watch(n); /* host frames stay queued in the kernel, unread */
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void net_resume(struct virtio_dev *d)
{
    struct net *n = net_of(d);
    pthread_mutex_lock(&d->lock);
    n->paused = false;
    net_sync(n);
    if (n->tx_throttled || n->rx_throttled) /* the timer may have fired during the pause */
        rl_timer_arm(&n->rl_timer, 1);
    else
        net_rx_process(n); /* re-arms EPOLLIN if the guest has buffers */
    update_watch(n);
    pthread_mutex_unlock(&d->lock);
}

static void net_dump(struct virtio_dev *d)
{
    struct net *n = net_of(d);
    log_info("state: %s: watched %d events %#x paused %d rx_armed %d tx_blocked %d broken %d "
             "tx_pending %d rx_have %d (%u of %u bytes placed in %u buffers) offload_pending %d",
             n->name, n->watched, n->watch_events, n->paused, n->rx_armed, n->tx_blocked, n->broken,
             n->tx_pending, n->rx_have, n->rx_placed, n->rx_len, n->rx_nheads, n->offload_pending);
}

static unsigned net_rate_limiters(const struct virtio_dev *d, struct rate_limiter **rl)
{
    struct net *n = d->priv;
    rl[0] = &n->rx_rl;
    rl[1] = &n->tx_rl;
    return 2;
}

static void net_destroy(struct virtio_dev *d)
{
    struct net *n = net_of(d);
    if (!n)
        return;
    if (n->watched)
        loop_del(d->loop, n->fd);
    rl_timer_fini(&n->rl_timer, d->loop);
    close(n->fd);
    free(n);
    d->priv = NULL;
}

int net_create_with_fd(struct virtio_dev *d, const struct net_config *cfg, int fd, bool is_tap,
                       const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                       unsigned gsi, char *err, size_t errlen)
{
    struct net *n = calloc(1, sizeof(*n));
    if (!n) {
        close(fd);
        snprintf(err, errlen, "net %s: out of memory", cfg->id);
        return -ENOMEM;
    }
    n->d = d;
    n->fd = fd;
    n->rl_timer.fd = -1;
    n->is_tap = is_tap;
    snprintf(n->name, sizeof(n->name), "net %s (%s)", cfg->id, cfg->tap);
    if (cfg->has_mac) {
        memcpy(n->mac, cfg->mac, 6);
    } else {
        if (getrandom(n->mac, sizeof(n->mac), 0) != sizeof(n->mac))
            memcpy(n->mac, (uint8_t[6]){0, 0, 0, 0, 0, (uint8_t)getpid()}, 6);
        n->mac[0] = (uint8_t)((n->mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
    }
    if (is_tap) {
        n->tap_offloads = tap_set_offload(fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0;
        tap_set_offload(fd, 0); /* nothing offloaded until the guest says what it takes */
        if (!n->tap_offloads)
            log_info("%s: TAP refuses offloads, offering none", n->name);
    }
    n->ops = (struct virtio_dev_ops){
        .name = "net",
        .device_id = VIRTIO_ID_NET,
        .num_queues = 2,
        .queue_max = NET_QUEUE_SIZE,
        .features = net_features_offered(n->tap_offloads),
        .config_size = NET_CONFIG_SIZE,
        .config_read = net_config_read,
        .activate = net_activate,
        .queue_notify = net_queue_notify,
        .reset = net_reset,
        .quiesce = net_quiesce,
        .resume = net_resume,
        .destroy = net_destroy,
        .dump = net_dump,
        .rate_limiters = net_rate_limiters,
    };
    int rc = virtio_dev_init(d, &n->ops, n, mem, loop, mmio_base, gsi);
    if (rc < 0) {
        snprintf(err, errlen, "%s: virtio transport setup failed: %s", n->name, strerror(-rc));
        close(fd);
        free(n);
        return rc;
    }
    uint64_t now = clock_now_ns();
    rl_set(&n->rx_rl, &cfg->rx_rl, RL_SET_BANDWIDTH | RL_SET_OPS, now);
    rl_set(&n->tx_rl, &cfg->tx_rl, RL_SET_BANDWIDTH | RL_SET_OPS, now);
    rc = rl_timer_init(&n->rl_timer, loop, net_rl_event, n);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot create the rate limiters' timer: %s", n->name,
                 strerror(-rc));
        virtio_dev_destroy(d); /* calls net_destroy: closes fd, frees n */
        return rc;
    }
    return 0;
}

int net_create(struct virtio_dev *d, const struct net_config *cfg, const struct guest_mem *mem,
               struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen)
{
    int fd = tap_open(cfg->tap, err, errlen);
    if (fd < 0)
        return fd;
    return net_create_with_fd(d, cfg, fd, true, mem, loop, mmio_base, gsi, err, errlen);
}
