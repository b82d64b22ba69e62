/* virtio-rng: an entropy device backed by the host's getrandom(). */
#ifndef AMBER_DEVICES_VIRTIO_RNG_H
#define AMBER_DEVICES_VIRTIO_RNG_H

#include <stdint.h>

#include "config/config.h"
#include "devices/virtio/virtio.h"

/* Largest number of bytes given to one request; the rest of a bigger buffer stays unused. */
#define RNG_MAX_REQUEST_BYTES (64u * 1024)

/*
 * Set up d as a virtio-rng device (id 4, one queue) over the virtio-mmio transport at
 * mmio_base / gsi. The caller registers virtio_mmio_io on the bus for VIRTIO_MMIO_SIZE bytes
 * and binds d->kick_fd[0] / d->irq_fd to KVM. Undo with virtio_dev_destroy(d). Returns 0 or
 * -errno.
 */
int rng_create(struct virtio_dev *d, const struct guest_mem *mem, struct loop *loop,
               uint64_t mmio_base, unsigned gsi);

/*
 * Limit d (from rng_create) by rl, PUT /entropy's rate_limiter: requests the buckets cannot
 * pay for wait in the ring for a timer. The first call creates that timer on d's loop (before
 * seccomp: it makes an fd). Loop thread. Returns 0 or -errno.
 */
int rng_set_rate_limit(struct virtio_dev *d, const struct rl_config *rl);

#endif
