/* virtio-net over a TAP: one RX and one TX queue, offloads when the TAP takes them. */
#ifndef AMBER_DEVICES_VIRTIO_NET_H
#define AMBER_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "devices/virtio/virtio.h"
#include "config/config.h"

#define NET_QUEUE_SIZE 256
#define NET_RXQ        0
#define NET_TXQ        1
#define NET_HDR_LEN    12    /* virtio_net_hdr_v1, num_buffers included */
#define NET_FRAME_MAX  65536 /* largest frame the TAP hands us after its header */

/* Device feature bits offered for a back-end that does (or does not) accept TAP offloads. */
uint64_t net_features_offered(bool tap_offloads);

/* TUN_F_* flags matching the negotiated guest features (GUEST_CSUM, GUEST_TSO4/6). */
unsigned net_tun_offload_flags(uint64_t guest_features);

/*
 * Check a TX header from the guest against the negotiated features: known flags only,
 * NEEDS_CSUM only with F_CSUM, GSO types only when the matching HOST_TSO was negotiated.
 * Returns 0 if the frame may go to the TAP, -EINVAL if it must be dropped.
 */
int net_tx_hdr_check(const uint8_t hdr[NET_HDR_LEN], uint64_t features);

/*
 * Build the iovec a TX frame is sent with: iov[0] is hdr, the header copy that
 * net_tx_hdr_check() passed, and the rest is the chain's driver-readable data after its first
 * NET_HDR_LEN bytes, so the guest cannot change the header between the check and the send.
 * iov must hold VIRTQ_MAX_IOV + 1 entries; c->out_len must exceed NET_HDR_LEN. Returns the
 * number of entries filled.
 */
int net_tx_iov(const struct virtq_chain *c, const uint8_t hdr[NET_HDR_LEN], struct iovec *iov);

/*
 * Create a virtio-net device on TAP cfg->tap (opened here) with MAC cfg->mac, or a random
 * locally administered one when !cfg->has_mac. Returns 0 or -errno with err naming the TAP.
 */
int net_create(struct virtio_dev *d, const struct net_config *cfg, const struct guest_mem *mem,
               struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen);

/*
 * The same over an already open, non-blocking packet fd that carries NET_HDR_LEN-byte
 * headers before each frame (a TAP, or a SOCK_SEQPACKET socket in tests). is_tap enables the
 * TUNSETOFFLOAD probe and updates. Takes ownership of fd, also on error.
 */
int net_create_with_fd(struct virtio_dev *d, const struct net_config *cfg, int fd, bool is_tap,
                       const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                       unsigned gsi, char *err, size_t errlen);

/*
 * PATCH /network-interfaces rx_rate_limiter (tx false) or tx_rate_limiter (tx true): set the
 * buckets of rl named in set (RL_SET_*), full; a throttled side is looked at again. Loop thread;
 * takes d->lock.
 */
void net_set_rate_limit(struct virtio_dev *d, bool tx, const struct rl_config *rl, unsigned set);

#endif
