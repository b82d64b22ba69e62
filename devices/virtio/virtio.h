/* The virtio device interface and the virtio-mmio v2 transport that carries it. */
#ifndef AMBER_DEVICES_VIRTIO_VIRTIO_H
#define AMBER_DEVICES_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtq.h"
#include "vmm/loop.h"
#include "vmm/mem.h"

#define VIRTIO_MAX_QUEUES   4
#define VIRTIO_MAX_LIMITERS 2 /* rate limiters per device (net: rx and tx) */

/* Device status bits (virtio 1.x, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

/* Transport feature bits the transport itself offers. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

/* Device ids. */
#define VIRTIO_ID_NET   1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG   4
#define VIRTIO_ID_VSOCK 19

struct virtio_dev;
struct rate_limiter;

/*
 * What a device implements. Only device_id, num_queues and queue_notify are required; every
 * other hook may be NULL. Unless noted, hooks run on the event loop thread with d->lock held.
 *
 * Threads. activate and reset are driven by the driver's Status writes, so they run on the
 * vCPU thread that wrote Status, with d->lock held; the loop may be running this device's
 * other callbacks concurrently and blocks on d->lock meanwhile. In those two hooks a device
 * may change its state and set NEEDS_RESET. It may make only the syscalls the vCPU seccomp
 * filter allows (vmm/seccomp.c: eventfd reads/writes, timerfd_settime, io_uring_enter on its
 * own ring, futex; no ioctl on a back-end, no open/close), and it must NOT call
 * loop_add/loop_mod/loop_del/loop_post (the loop's structures are loop-thread only, and a
 * posted call could run after the device is destroyed). Work that needs the loop is noted in
 * device state and done on the loop's next callback for the device, which sees it under the
 * lock: after activate the transport kicks every ready queue, so queue_notify comes at once
 * (net applies its TAP offloads there); after reset, a device whose callbacks find it not
 * running drops its watches there, or wakes itself through an fd it owns (vsock's timer).
 * VM teardown stops the vCPUs before virtio_dev_destroy, so neither hook races with destroy.
 */
struct virtio_dev_ops {
    const char *name;
    uint32_t device_id;
    uint16_t num_queues;
    uint16_t queue_max; /* largest QueueNum accepted, power of two <= VIRTQ_MAX_SIZE */
    uint64_t features;  /* device-specific feature bits offered (transport adds its own) */

    /* Device config space: runs on a vCPU thread with d->lock held. off+len is checked
     * against config_size by the transport. */
    uint32_t config_size;
    void (*config_read)(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
    void (*config_write)(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len);

    /* The driver set DRIVER_OK: start the back-end. vCPU thread, d->lock held (see above).
     * Non-zero sets NEEDS_RESET. Afterwards the transport kicks every ready queue. */
    int (*activate)(struct virtio_dev *d);
    /* Queue q was kicked (ioeventfd or a QueueNotify write). */
    void (*queue_notify)(struct virtio_dev *d, unsigned q);
    /* The driver wrote 0 to Status: drop all in-flight state; the device may start again.
     * vCPU thread, d->lock held (see above); the queues are cleared right after it returns,
     * so no chain popped before the reset may be pushed afterwards. */
    void (*reset)(struct virtio_dev *d);
    /* Pause: finish or park in-flight work; afterwards touch neither guest memory nor
     * back-end fds until resume. Runs on the loop, d->lock NOT held (it may wait, at most
     * timeout_ms). Returns 0, or -ETIMEDOUT if work is still in flight: the pause is then
     * withdrawn and resume is called, so the device must be able to carry on from there. */
    int (*quiesce)(struct virtio_dev *d, unsigned timeout_ms);
    /* Undo quiesce: re-arm back-end watches. The transport replays kicks afterwards. */
    void (*resume)(struct virtio_dev *d);
    /* Free device-private state at VM teardown. */
    void (*destroy)(struct virtio_dev *d);
    /* Optional: log device-private state for a stall report. Loop thread, d->lock held. */
    void (*dump)(struct virtio_dev *d);
    /* Optional: the transport state was just loaded from a snapshot into a fresh process and
     * the back-end activated; tell the driver what could not cross the process change (vsock
     * sends a transport reset). Loop thread before the vCPUs run, d->lock held. */
    void (*restored)(struct virtio_dev *d);
    /* Optional: the device's rate limiters, whose bucket levels snapshots carry. Point rl[]
     * at them (at most VIRTIO_MAX_LIMITERS, always the same order: net rx then tx) and return
     * how many. Any thread, with d->lock held or before the device runs. */
    unsigned (*rate_limiters)(const struct virtio_dev *d, struct rate_limiter **rl);
};

/*
 * One virtio-mmio transport instance. Threads: MMIO register accesses come from vCPU
 * threads; kicks, back-end events and completions run on the loop. d->lock serialises the
 * two, which is why hooks run with it held.
 */
struct virtio_dev {
    const struct virtio_dev_ops *ops;
    void *priv;
    const struct guest_mem *mem;
    struct loop *loop;
    pthread_mutex_t lock;

    uint64_t mmio_base;
    unsigned gsi;

    uint32_t status;
    uint64_t host_features; /* ops->features | transport bits */
    uint64_t driver_features;
    uint32_t host_features_sel, driver_features_sel;
    uint32_t queue_sel;
    uint32_t isr; /* bit 0: used buffer, bit 1: config change */
    uint32_t config_generation;

    struct virtq vq[VIRTIO_MAX_QUEUES];
    int kick_fd[VIRTIO_MAX_QUEUES]; /* eventfds; the VMM binds them as ioeventfds */
    int irq_fd;                     /* eventfd; the VMM binds it as an irqfd on gsi */

    bool quiesced;
    uint32_t pending_kicks; /* bit per queue, kicks seen while quiesced */
    bool pending_irq;       /* interrupt withheld while quiesced */

    /* Transport-private (mmio.c). */
    struct virtio_kick {
        struct virtio_dev *d;
        unsigned q;
    } kick[VIRTIO_MAX_QUEUES]; /* loop watch context per kick fd */
    bool logged_bad_access;    /* odd-size register access already logged */
};

/* virtio-mmio v2 register offsets (virtio 1.x, 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100
#define VIRTIO_MMIO_SIZE                0x1000

#define VIRTIO_MMIO_MAGIC  0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x524d4241 /* "AMBR" */

/* InterruptStatus bits. */
#define VIRTIO_ISR_USED   1
#define VIRTIO_ISR_CONFIG 2

/*
 * Set up transport state for a device: eventfds, loop watches on the kick fds, features.
 * Does not touch KVM; the VMM binds kick_fd/irq_fd afterwards. Returns 0 or -errno.
 */
int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
                    const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                    unsigned gsi);

/* Tear down: loop watches, eventfds, then ops->destroy. */
void virtio_dev_destroy(struct virtio_dev *d);

/* The transport's bus handler for the 4 KiB virtio-mmio register window. */
void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* True once FEATURES_OK was accepted and the driver acked this feature bit. */
bool virtio_has_feature(const struct virtio_dev *d, unsigned bit);

/* After pushing used buffers on queue q: publish any elements written with virtq_push_elem,
 * then interrupt the guest if the queue wants it. Called with d->lock held. While quiesced
 * the interrupt is withheld and delivered on resume. */
void virtio_notify_used(struct virtio_dev *d, unsigned q);

/* Config space changed (e.g. a drive's capacity): bump generation, raise config irq.
 * Called with d->lock held (take it around the config update). */
void virtio_notify_config(struct virtio_dev *d);

/* The guest broke the protocol: log once, set NEEDS_RESET, tell the driver. Called with
 * d->lock held (as from queue_notify). */
void virtio_set_needs_reset(struct virtio_dev *d, const char *why);

/*
 * Pause support, called by the VMM on the loop thread with every vCPU parked. quiesce_within
 * stops the device, waiting at most timeout_ms for in-flight work: 0, or -ETIMEDOUT with work
 * still in flight (the device stays quiesced; call virtio_dev_resume to carry on).
 * virtio_dev_quiesce waits as long as it takes. virtio_dev_resume undoes either: the device
 * runs again, kicks seen meanwhile are replayed and a withheld interrupt is raised.
 */
int virtio_dev_quiesce_within(struct virtio_dev *d, unsigned timeout_ms);
void virtio_dev_quiesce(struct virtio_dev *d);
void virtio_dev_resume(struct virtio_dev *d);

/*
 * Log d's transport state (status, ISR, pause bookkeeping, every queue) and then the device's
 * own (ops->dump), as "state: virtio-NAME ..." lines at info level. Loop thread; takes d->lock.
 * For diagnosing a stalled device without stopping it (SIGUSR2, see board/process.c).
 */
void virtio_dev_dump(struct virtio_dev *d);

#endif
