/* The virtio-mmio v2 transport: register window, status machine, kicks, interrupts, pause. */
#include "devices/virtio/virtio.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/log.h"

#define TRANSPORT_FEATURES                                                                         \
    ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_F_EVENT_IDX))

static void eventfd_signal(int fd)
{
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* Only a saturated counter fails, and then the reader is already due to wake. */
    }
}

static uint16_t queue_max_of(const struct virtio_dev *d)
{
    return d->ops->queue_max ? d->ops->queue_max : 256;
}

/* Interrupts reach the guest through irq_fd (an irqfd). While paused, remember instead. */
static void raise_irq(struct virtio_dev *d, uint32_t isr_bit)
{
    d->isr |= isr_bit;
    if (d->quiesced)
        d->pending_irq = true;
    else
        eventfd_signal(d->irq_fd);
}

static bool queue_runnable(const struct virtio_dev *d, unsigned q)
{
    return q < d->ops->num_queues && d->vq[q].ready && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
    return bit < 64 && (d->status & VIRTIO_STATUS_FEATURES_OK) &&
           (d->driver_features & (1ULL << bit));
}

void virtio_notify_used(struct virtio_dev *d, unsigned q)
{
    if (q >= d->ops->num_queues || !d->vq[q].ready)
        return;
    virtq_publish(&d->vq[q]); /* a device that batched and forgot still gets seen */
    if (virtq_should_notify(&d->vq[q]))
        raise_irq(d, VIRTIO_ISR_USED);
}

void virtio_notify_config(struct virtio_dev *d)
{
    d->config_generation++;
    raise_irq(d, VIRTIO_ISR_CONFIG);
}

void virtio_set_needs_reset(struct virtio_dev *d, const char *why)
{
    if (d->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    log_warn_rl("virtio-%s@%#llx: device needs reset: %s", d->ops->name ? d->ops->name : "?",
                (unsigned long long)d->mmio_base, why);
    d->status |= VIRTIO_STATUS_NEEDS_RESET;
    /* Spec 2.1.2: the driver learns of it through a configuration change interrupt. */
    raise_irq(d, VIRTIO_ISR_CONFIG);
}

static void queue_clear(struct virtio_dev *d, unsigned q)
{
    struct virtq *vq = &d->vq[q];
    virtq_reset(vq);
    vq->mem = d->mem;
    vq->size = queue_max_of(d);
    vq->event_idx = false;
    vq->indirect_desc = false;
    vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
}

/* Status 0: back to the state right after virtio_dev_init. */
static void dev_reset(struct virtio_dev *d)
{
    if (d->ops->reset)
        d->ops->reset(d);
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        queue_clear(d, q);
    d->status = 0;
    d->driver_features = 0;
    d->host_features_sel = d->driver_features_sel = 0;
    d->queue_sel = 0;
    d->isr = 0;
    d->pending_kicks = 0;
    d->pending_irq = false;
}

static bool features_acceptable(const struct virtio_dev *d)
{
    if (!(d->driver_features & (1ULL << VIRTIO_F_VERSION_1))) {
        log_warn_rl("virtio-%s: driver did not accept VERSION_1 (legacy drivers unsupported)",
                    d->ops->name);
        return false;
    }
    if (d->driver_features & ~d->host_features) {
        log_warn_rl("virtio-%s: driver accepted unoffered features %#llx", d->ops->name,
                    (unsigned long long)(d->driver_features & ~d->host_features));
        return false;
    }
    return true;
}

static void status_write(struct virtio_dev *d, uint32_t val)
{
    if (val == 0) {
        dev_reset(d);
        return;
    }
    val &= 0xff;
    if (d->status & ~val & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET) {
        log_warn_rl("virtio-%s: driver tried to clear status bits (%#x -> %#x), ignored",
                    d->ops->name, d->status, val);
        return;
    }
    uint32_t added = val & ~d->status & ~(uint32_t)VIRTIO_STATUS_NEEDS_RESET;

    if (added & VIRTIO_STATUS_FEATURES_OK) {
        if (!features_acceptable(d)) {
            added &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK; /* the driver sees it did not stick */
        } else {
            bool ev = d->driver_features & (1ULL << VIRTIO_F_EVENT_IDX);
            bool ind = d->driver_features & (1ULL << VIRTIO_F_INDIRECT_DESC);
            for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
                d->vq[q].event_idx = ev;
                d->vq[q].indirect_desc = ind;
            }
        }
    }
    if ((added & VIRTIO_STATUS_DRIVER_OK) && !((d->status | added) & VIRTIO_STATUS_FEATURES_OK)) {
        log_warn_rl("virtio-%s: DRIVER_OK without FEATURES_OK, ignored", d->ops->name);
        added &= ~(uint32_t)VIRTIO_STATUS_DRIVER_OK;
    }
    d->status |= added;

    if (!(added & VIRTIO_STATUS_DRIVER_OK) || (d->status & VIRTIO_STATUS_NEEDS_RESET))
        return;
    /* activate runs here, on the vCPU thread, with d->lock held (see virtio.h). */
    int err = d->ops->activate ? d->ops->activate(d) : 0;
    if (err) {
        log_warn_rl("virtio-%s: activate failed: %s", d->ops->name, strerror(-err));
        virtio_set_needs_reset(d, "activation failed");
        return;
    }
    /* Start the device on the loop: a kick per live queue runs queue_notify there, which
     * takes buffers the driver made available before DRIVER_OK (their kicks were dropped)
     * and arms back-end watches. Only eventfd writes here: nothing is posted that could
     * outlive the device. */
    for (unsigned q = 0; q < d->ops->num_queues; q++)
        if (d->vq[q].ready)
            eventfd_signal(d->kick_fd[q]);
}

/* Queue registers other than QueueSel: writable only while the queue is off, before
 * DRIVER_OK (spec 4.2.2.3). */
static struct virtq *queue_for_setup(struct virtio_dev *d)
{
    if (d->queue_sel >= d->ops->num_queues)
        return NULL;
    struct virtq *vq = &d->vq[d->queue_sel];
    if (vq->ready || (d->status & VIRTIO_STATUS_DRIVER_OK)) {
        log_debug_rl("virtio-%s: queue %u register write while live, ignored", d->ops->name,
                     d->queue_sel);
        return NULL;
    }
    return vq;
}

static void set_lo(uint64_t *v, uint32_t lo)
{
    *v = (*v & 0xffffffff00000000ULL) | lo;
}

static void set_hi(uint64_t *v, uint32_t hi)
{
    *v = (*v & 0xffffffffULL) | ((uint64_t)hi << 32);
}

static void queue_ready_write(struct virtio_dev *d, uint32_t val)
{
    if (d->queue_sel >= d->ops->num_queues)
        return;
    struct virtq *vq = &d->vq[d->queue_sel];
    if (val == 0) {
        /* Drivers turn queues off at teardown; the ring contents are forgotten. */
        virtq_reset(vq);
        return;
    }
    vq = queue_for_setup(d);
    if (!vq)
        return;
    vq->mem = d->mem;
    vq->event_idx = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
    vq->indirect_desc = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
    if (virtq_validate(vq, queue_max_of(d))) {
        virtio_set_needs_reset(d, "invalid queue configuration");
        return;
    }
    virtq_reset(vq);
    vq->ready = true;
}

static void reg_write(struct virtio_dev *d, uint64_t off, uint32_t val)
{
    struct virtq *vq;
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        d->host_features_sel = val;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (d->status & VIRTIO_STATUS_FEATURES_OK) {
            log_debug_rl("virtio-%s: feature write after FEATURES_OK, ignored", d->ops->name);
        } else if (d->driver_features_sel == 0) {
            set_lo(&d->driver_features, val);
        } else if (d->driver_features_sel == 1) {
            set_hi(&d->driver_features, val);
        }
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        d->driver_features_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        d->queue_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if ((vq = queue_for_setup(d)))
            vq->size = val > 0xffff ? 0 : (uint16_t)val; /* validated at QueueReady */
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        queue_ready_write(d, val);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Same path as the ioeventfd: the loop thread does the work. */
        if (val < d->ops->num_queues)
            eventfd_signal(d->kick_fd[val]);
        else
            log_debug_rl("virtio-%s: notify of queue %u ignored", d->ops->name, val);
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        d->isr &= ~val;
        break;
    case VIRTIO_MMIO_STATUS:
        status_write(d, val);
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
    case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
    case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
    case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
    case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: {
        if (!(vq = queue_for_setup(d)))
            break;
        uint64_t *gpa = off < VIRTIO_MMIO_QUEUE_DRIVER_LOW   ? &vq->desc_gpa
                        : off < VIRTIO_MMIO_QUEUE_DEVICE_LOW ? &vq->avail_gpa
                                                             : &vq->used_gpa;
        if (off & 4)
            set_hi(gpa, val);
        else
            set_lo(gpa, val);
        break;
    }
    case VIRTIO_MMIO_SHM_SEL:
        break;
    default:
        log_debug_rl("virtio-%s: write to read-only/unknown register %#llx", d->ops->name,
                     (unsigned long long)off);
        break;
    }
}

static uint32_t reg_read(struct virtio_dev *d, uint64_t off)
{
    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION:
        return 2;
    case VIRTIO_MMIO_DEVICE_ID:
        return d->ops->device_id;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        if (d->host_features_sel > 1)
            return 0;
        return (uint32_t)(d->host_features >> (32 * d->host_features_sel));
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return d->queue_sel < d->ops->num_queues ? queue_max_of(d) : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return d->queue_sel < d->ops->num_queues && d->vq[d->queue_sel].ready;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return d->isr;
    case VIRTIO_MMIO_STATUS:
        return d->status;
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
        return 0xffffffff; /* no shared memory regions */
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return d->config_generation;
    default:
        return 0; /* write-only or unknown */
    }
}

static void config_access(struct virtio_dev *d, uint64_t off, uint8_t *data, uint32_t len,
                          bool is_write)
{
    bool ok = (len == 1 || len == 2 || len == 4 || len == 8) && off <= d->ops->config_size &&
              len <= d->ops->config_size - off;
    if (!ok) {
        log_debug_rl("virtio-%s: config access %#llx+%u out of bounds", d->ops->name,
                     (unsigned long long)off, len);
        if (!is_write)
            memset(data, 0, len);
        return;
    }
    if (is_write) {
        if (d->ops->config_write)
            d->ops->config_write(d, (uint32_t)off, data, len);
    } else {
        memset(data, 0, len);
        if (d->ops->config_read)
            d->ops->config_read(d, (uint32_t)off, data, len);
    }
}

void virtio_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct virtio_dev *d = opaque;
    pthread_mutex_lock(&d->lock);
    if (offset >= VIRTIO_MMIO_CONFIG) {
        config_access(d, offset - VIRTIO_MMIO_CONFIG, data, len, is_write);
    } else if (len != 4 || (offset & 3)) {
        if (!d->logged_bad_access) {
            d->logged_bad_access = true;
            log_debug_rl("virtio-%s: %u-byte register access at %#llx ignored", d->ops->name, len,
                         (unsigned long long)offset);
        }
        if (!is_write)
            memset(data, 0, len);
    } else if (is_write) {
        uint32_t val;
        memcpy(&val, data, 4);
        reg_write(d, offset, val);
    } else {
        uint32_t val = reg_read(d, offset);
        memcpy(data, &val, 4);
    }
    pthread_mutex_unlock(&d->lock);
}

/* A kick arrived on queue q's eventfd (ioeventfd or a QueueNotify write). */
static void kick_cb(void *opaque, uint32_t events)
{
    struct virtio_kick *k = opaque;
    struct virtio_dev *d = k->d;
    uint64_t v;
    if (read(d->kick_fd[k->q], &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_debug_rl("virtio-%s: kick read: %s", d->ops->name, strerror(errno));

    pthread_mutex_lock(&d->lock);
    if (d->quiesced)
        d->pending_kicks |= 1u << k->q; /* replayed by virtio_dev_resume */
    else if (queue_runnable(d, k->q))
        d->ops->queue_notify(d, k->q);
    pthread_mutex_unlock(&d->lock);
}

int virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
                    const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                    unsigned gsi)
{
    memset(d, 0, sizeof(*d));
    d->irq_fd = -1;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        d->kick_fd[q] = -1;
    if (!ops || !ops->queue_notify || ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES ||
        (ops->queue_max && (ops->queue_max & (ops->queue_max - 1))) ||
        ops->queue_max > VIRTQ_MAX_SIZE)
        return -EINVAL;

    d->ops = ops;
    d->priv = priv;
    d->mem = mem;
    d->loop = loop;
    d->mmio_base = mmio_base;
    d->gsi = gsi;
    d->host_features = ops->features | TRANSPORT_FEATURES;
    pthread_mutex_init(&d->lock, NULL);
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        queue_clear(d, q);

    int err;
    d->irq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->irq_fd < 0) {
        err = -errno;
        goto err_fds;
    }
    for (unsigned q = 0; q < ops->num_queues; q++) {
        d->kick[q] = (struct virtio_kick){.d = d, .q = q};
        d->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->kick_fd[q] < 0) {
            err = -errno;
            goto err_fds;
        }
        if (loop) {
            err = loop_add(loop, d->kick_fd[q], EPOLLIN, kick_cb, &d->kick[q]);
            if (err) {
                close(d->kick_fd[q]);
                d->kick_fd[q] = -1;
                goto err_fds;
            }
        }
    }
    return 0;

err_fds:
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (d->kick_fd[q] < 0)
            continue;
        if (loop)
            loop_del(loop, d->kick_fd[q]);
        close(d->kick_fd[q]);
        d->kick_fd[q] = -1;
    }
    if (d->irq_fd >= 0)
        close(d->irq_fd);
    d->irq_fd = -1;
    pthread_mutex_destroy(&d->lock);
    d->ops = NULL;
    return err;
}

void virtio_dev_destroy(struct virtio_dev *d)
{
    if (!d->ops)
        return;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (d->kick_fd[q] < 0)
            continue;
        if (d->loop)
            loop_del(d->loop, d->kick_fd[q]);
        close(d->kick_fd[q]);
        d->kick_fd[q] = -1;
    }
    if (d->irq_fd >= 0)
        close(d->irq_fd);
    d->irq_fd = -1;
    if (d->ops->destroy)
        d->ops->destroy(d);
    pthread_mutex_destroy(&d->lock);
    d->ops = NULL;
}

int virtio_dev_quiesce_within(struct virtio_dev *d, unsigned timeout_ms)
{
    /* Set the flag first so completions that ops->quiesce waits for park their interrupts
     * instead of injecting them into a paused guest. */
    pthread_mutex_lock(&d->lock);
    d->quiesced = true;
    pthread_mutex_unlock(&d->lock);
    return d->ops->quiesce ? d->ops->quiesce(d, timeout_ms) : 0;
}

void virtio_dev_quiesce(struct virtio_dev *d)
{
    virtio_dev_quiesce_within(d, UINT_MAX);
}

void virtio_dev_dump(struct virtio_dev *d)
{
    if (!d->ops)
        return;
    pthread_mutex_lock(&d->lock);
    log_info("state: virtio-%s @%#llx gsi %u: status %#x isr %#x features %#llx quiesced %d "
             "pending_kicks %#x pending_irq %d",
             d->ops->name, (unsigned long long)d->mmio_base, d->gsi, d->status, d->isr,
             (unsigned long long)d->driver_features, d->quiesced, d->pending_kicks, d->pending_irq);
    for (unsigned q = 0; q < d->ops->num_queues; q++) {
        char line[200];
        virtq_describe(&d->vq[q], line, sizeof(line));
        log_info("state: virtio-%s queue %u: %s", d->ops->name, q, line);
    }
    if (d->ops->dump)
        d->ops->dump(d);
    pthread_mutex_unlock(&d->lock);
}

void virtio_dev_resume(struct virtio_dev *d)
{
    if (d->ops->resume)
        d->ops->resume(d);
    pthread_mutex_lock(&d->lock);
    d->quiesced = false;
    uint32_t kicks = d->pending_kicks;
    d->pending_kicks = 0;
    for (unsigned q = 0; q < d->ops->num_queues; q++) {
        /* A kick may also have been coalesced into one we already consumed, so a queue with
         * unseen entries is replayed even without a recorded kick. */
        if (queue_runnable(d, q) && ((kicks & (1u << q)) || virtq_has_work(&d->vq[q])))
            d->ops->queue_notify(d, q);
    }
    if (d->pending_irq) {
        d->pending_irq = false;
        eventfd_signal(d->irq_fd);
    }
    pthread_mutex_unlock(&d->lock);
}
