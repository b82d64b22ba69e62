/* virtio-net receive path: back-end frames into guest RX buffers, merged when negotiated. */
#include "devices/virtio/net_priv.h"

#include <endian.h>
#include <errno.h>
#include <linux/virtio_net.h>
#include <string.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

#define NET_RX_BUDGET 64 /* frames per call, so one busy TAP cannot starve the loop */

void net_rx_reset(struct net *n)
{
    if (n->rx_nheads) {
        /* The popped chains belong to a queue the driver just reset: the frame is lost. */
        n->rx_have = false;
    }
    n->rx_nheads = 0;
    n->rx_placed = 0;
}

/*
 * Write a used element for every chain of the frame, unpublished: net_rx_process publishes
 * whole frames with one used->idx store. A driver polling the used ring must never see the
 * first buffers of a merged frame without the rest (Linux drops it for a short num_buffers).
 */
static void rx_push_frame(struct net *n, bool with_lens)
{
    struct virtq *q = &n->d->vq[NET_RXQ];
    for (unsigned i = 0; i < n->rx_nheads; i++) {
        if (virtq_push_elem(q, n->rx_heads[i], with_lens ? n->rx_lens[i] : 0) < 0) {
            virtio_set_needs_reset(n->d, "virtio-net: RX used ring");
            break;
        }
    }
}

/* Publish the placed frame: num_buffers in the first header, then every used entry. */
static void rx_complete(struct net *n)
{
    uint16_t nb = htole16((uint16_t)n->rx_nheads);
    virtq_chain_write(&n->rx_first, NET_HDR_LEN - 2, &nb, sizeof(nb));
    rx_push_frame(n, true);
    n->rx_have = false;
    n->rx_nheads = 0;
    n->rx_placed = 0;
}

/* Give back every chain of a frame that cannot be delivered, with nothing written. */
static void rx_discard(struct net *n, const char *why)
{
    log_warn_rl("%s: dropping a %u-byte frame: %s", n->name, n->rx_len, why);
    rx_push_frame(n, false);
    n->rx_have = false;
    n->rx_nheads = 0;
    n->rx_placed = 0;
}

enum place_result { PLACED, NO_BUFFERS, FAILED };

/* Scatter the current frame into as many RX chains as it needs. */
static enum place_result rx_place(struct net *n, bool mrg)
{
    struct virtq *q = &n->d->vq[NET_RXQ];
    while (n->rx_placed < n->rx_len) {
        struct virtq_chain *c = n->rx_nheads == 0 ? &n->rx_first : &n->rx_cur;
        int rc = virtq_pop(q, c);
        if (rc < 0) {
            virtio_set_needs_reset(n->d, "virtio-net: malformed RX chain");
            return FAILED;
        }
        if (rc == 0)
            return NO_BUFFERS; /* the frame waits here until the guest adds buffers */
        if (c->nout != 0 || c->in_len < NET_HDR_LEN) {
            virtio_set_needs_reset(n->d, "virtio-net: RX buffer not writable or too small");
            return FAILED;
        }
        uint64_t take = n->rx_len - n->rx_placed;
        if (take > c->in_len)
            take = c->in_len;
        virtq_chain_write(c, 0, n->rx_buf + n->rx_placed, take);
        n->rx_heads[n->rx_nheads] = c->head;
        n->rx_lens[n->rx_nheads] = (uint32_t)take;
        n->rx_nheads++;
        n->rx_placed += (uint32_t)take;
        if (n->rx_placed < n->rx_len && (!mrg || n->rx_nheads == q->size)) {
            rx_discard(n, mrg ? "more buffers than the queue holds" : "RX buffer too small");
            return PLACED;
        }
    }
    rx_complete(n);
    return PLACED;
}

void net_rx_process(struct net *n)
{
    struct virtio_dev *d = n->d;
    struct virtq *q = &d->vq[NET_RXQ];
    if (!net_running(n) || n->broken || !q->ready) {
        n->rx_armed = false;
        return;
    }
    bool mrg = virtio_has_feature(d, VIRTIO_NET_F_MRG_RXBUF);
    bool pushed = false;
    n->rx_armed = true;
    for (unsigned budget = NET_RX_BUDGET; budget > 0; budget--) {
        if (!n->rx_have) {
            if (!virtq_has_work_or_arm(q)) {
                n->rx_armed = false; /* no buffers: leave frames in the kernel queue */
                break;
            }
            uint64_t now = clock_now_ns();
            if (rl_enabled(&n->rx_rl)) {
                uint64_t wait = rl_wait_ns(&n->rx_rl, now, 1, 1);
                if (wait) { /* frames stay in the TAP; no EPOLLIN until the timer */
                    n->rx_throttled = true;
                    n->rx_armed = false;
                    rl_timer_arm(&n->rl_timer, wait);
                    break;
                }
            }
            ssize_t len = read(n->fd, n->rx_buf, sizeof(n->rx_buf));
            if (len < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    log_warn_rl("%s: back-end read failed: %s", n->name, strerror(errno));
                    n->broken = true;
                }
                break;
            }
            if (len < NET_HDR_LEN)
                continue; /* nothing a guest could use */
            rl_charge(&n->rx_rl, now, (uint64_t)len - NET_HDR_LEN, 1);
            n->rx_have = true;
            n->rx_len = (uint32_t)len;
            n->rx_placed = 0;
            n->rx_nheads = 0;
        }
        enum place_result r = rx_place(n, mrg);
        if (r == PLACED)
            pushed = true;
        if (r == NO_BUFFERS) {
            n->rx_armed = false;
            break;
        }
        if (r == FAILED) {
            n->rx_armed = false;
            net_rx_reset(n);
            break;
        }
    }
    virtq_publish(q); /* whole frames only: a partly placed frame has pushed nothing */
    if (pushed)
        virtio_notify_used(d, NET_RXQ);
}
