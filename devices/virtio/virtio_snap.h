/* Snapshot state of one virtio-mmio device: transport registers, features, queues, config. */
#ifndef AMBER_DEVICES_VIRTIO_VIRTIO_SNAP_H
#define AMBER_DEVICES_VIRTIO_VIRTIO_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/ratelimit.h"
#include "devices/virtio/virtio.h"
#include "vmm/snapshot_fmt.h"

/* Record tags of a SNAP_SEC_VIRTIO section. */
enum virtio_snap_tag {
    VSNAP_TRANSPORT = 1, /* struct virtio_snap_transport */
    VSNAP_CONFIG = 2,    /* the device's config space as the driver read it (diagnostics) */
    VSNAP_RATELIMIT = 3, /* struct virtio_snap_ratelimit; absent in files from before it */
};

/* Layout of the VSNAP_RATELIMIT record: a reader refuses any other. */
#define VSNAP_RATELIMIT_VERSION 1

/* The bucket levels of the device's rate limiters (ops->rate_limiters order). */
struct virtio_snap_ratelimit {
    uint32_t version; /* VSNAP_RATELIMIT_VERSION */
    uint32_t count;   /* limiters the device has; entries past it are zero */
    struct rl_snap rl[VIRTIO_MAX_LIMITERS];
};

struct virtio_snap_queue {
    uint16_t size;
    uint8_t ready;
    uint8_t signalled_valid;
    uint16_t last_avail;
    uint16_t used_idx;
    uint16_t signalled_used;
    uint16_t pad[3];
    uint64_t desc_gpa, avail_gpa, used_gpa;
};

struct virtio_snap_transport {
    uint32_t device_id;
    uint32_t num_queues;
    uint32_t status;
    uint32_t isr;
    uint64_t host_features;
    uint64_t driver_features;
    uint32_t host_features_sel, driver_features_sel;
    uint32_t queue_sel;
    uint32_t config_generation;
    uint32_t pending_irq; /* an interrupt withheld by the pause, delivered after restore */
    uint32_t pad;
    struct virtio_snap_queue q[VIRTIO_MAX_QUEUES];
};

/* Write a SNAP_SEC_VIRTIO section (instance slot) for a quiesced device: the transport, the
 * config space, and the rate limiters' bucket levels if it has any. Takes d->lock. */
void virtio_snap_save(struct virtio_dev *d, unsigned slot, struct snap_writer *w);

/*
 * Check a device section against the device that will receive it (ops: id, queue count and
 * maximum, offered features) and guest RAM: status bits a driver can reach, acked features
 * offered, every ready queue's size a power of two within the maximum and its three rings
 * inside RAM, and ring indices no further apart than the queue size; a rate limiter record
 * of this layout for exactly the device's limiters, each bucket sane against the limiter the
 * configuration gave the device (rl_snap_check), or none at all. Pure. Returns 0 or
 * -EBADMSG with err naming the device and field.
 */
int virtio_snap_check(const struct snap_reader *r, const struct snap_entry *s,
                      const struct virtio_dev *d, char *err, size_t errlen);

/*
 * Load a checked section into a freshly created device (no vCPU has run): registers and
 * queues and the rate limiters' bucket levels (kept full as configured when the file has
 * none), then, if the driver had reached DRIVER_OK, activate the back-end, let the device
 * finish (ops->restored), kick every ready queue and re-raise a withheld interrupt. Runs on
 * the loop thread; takes d->lock. Returns 0 or a negative errno with err set.
 */
int virtio_snap_load(struct virtio_dev *d, const struct snap_reader *r, const struct snap_entry *s,
                     char *err, size_t errlen);

#endif
