/* Snapshot save, check and load of a virtio-mmio device's transport and queue state. */
#include "devices/virtio/virtio_snap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

#define CONFIG_SNAP_MAX 256
#define STATUS_KNOWN                                                                               \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |                  \
     VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)

static uint16_t queue_max(const struct virtio_dev *d)
{
    return d->ops->queue_max ? d->ops->queue_max : 256;
}

/* The device's rate limiters into rl[] (VIRTIO_MAX_LIMITERS); how many. */
static unsigned limiters(const struct virtio_dev *d, struct rate_limiter **rl)
{
    if (!d->ops->rate_limiters)
        return 0;
    unsigned n = d->ops->rate_limiters(d, rl);
    return n < VIRTIO_MAX_LIMITERS ? n : VIRTIO_MAX_LIMITERS;
}

void virtio_snap_save(struct virtio_dev *d, unsigned slot, struct snap_writer *w)
{
    struct virtio_snap_transport t;
    memset(&t, 0, sizeof(t));
    uint8_t cfg[CONFIG_SNAP_MAX];
    uint32_t cfg_len = d->ops->config_size < CONFIG_SNAP_MAX ? d->ops->config_size : 0;
    pthread_mutex_lock(&d->lock);
    t.device_id = d->ops->device_id;
    t.num_queues = d->ops->num_queues;
    t.status = d->status;
    t.isr = d->isr;
    t.host_features = d->host_features;
    t.driver_features = d->driver_features;
    t.host_features_sel = d->host_features_sel;
    t.driver_features_sel = d->driver_features_sel;
    t.queue_sel = d->queue_sel;
    t.config_generation = d->config_generation;
    t.pending_irq = d->pending_irq;
    for (unsigned i = 0; i < d->ops->num_queues; i++) {
        const struct virtq *q = &d->vq[i];
        t.q[i] = (struct virtio_snap_queue){
            .size = q->size,
            .ready = q->ready,
            .signalled_valid = q->signalled_valid,
            .last_avail = q->last_avail,
            .used_idx = q->used_idx,
            .signalled_used = q->signalled_used,
            .desc_gpa = q->desc_gpa,
            .avail_gpa = q->avail_gpa,
            .used_gpa = q->used_gpa,
        };
    }
    if (cfg_len && d->ops->config_read)
        d->ops->config_read(d, 0, cfg, cfg_len);
    else
        cfg_len = 0;
    struct virtio_snap_ratelimit rls;
    memset(&rls, 0, sizeof(rls));
    struct rate_limiter *rl[VIRTIO_MAX_LIMITERS];
    unsigned nrl = limiters(d, rl);
    rls.version = VSNAP_RATELIMIT_VERSION;
    rls.count = nrl;
    uint64_t now = clock_now_ns();
    for (unsigned i = 0; i < nrl; i++)
        rl_snap_save(rl[i], now, &rls.rl[i]);
    pthread_mutex_unlock(&d->lock);

    snapw_begin(w, SNAP_SEC_VIRTIO, slot);
    snapw_record(w, VSNAP_TRANSPORT, &t, sizeof(t));
    snapw_record(w, VSNAP_CONFIG, cfg, cfg_len);
    if (d->ops->rate_limiters)
        snapw_record(w, VSNAP_RATELIMIT, &rls, sizeof(rls));
    snapw_end(w);
}

static int bad(char *err, size_t errlen, const struct virtio_dev *d, unsigned slot,
               const char *what)
{
    snprintf(err, errlen, "snapshot file: virtio-%s (slot %u): %s", d->ops->name, slot, what);
    return -EBADMSG;
}

/*
 * The rate limiter record, if any, into *out: 1 if present and sane for d, 0 if absent (a file
 * from an amber before it), or -EBADMSG with err set.
 */
static int check_ratelimit_into(const struct snap_reader *r, const struct snap_entry *s,
                                const struct virtio_dev *d, struct virtio_snap_ratelimit *out,
                                char *err, size_t errlen)
{
    unsigned slot = s->instance;
    const void *data;
    uint32_t len;
    if (snapr_record(r, s, VSNAP_RATELIMIT, &data, &len) != 0)
        return 0;
    struct rate_limiter *rl[VIRTIO_MAX_LIMITERS];
    unsigned nrl = limiters(d, rl);
    char what[192];
    if (!d->ops->rate_limiters)
        return bad(err, errlen, d, slot, "rate limiter state for a device without limiters");
    if (len < sizeof(out->version))
        return bad(err, errlen, d, slot, "rate limiter record too short");
    memcpy(&out->version, data, sizeof(out->version));
    if (out->version != VSNAP_RATELIMIT_VERSION) {
        snprintf(what, sizeof(what), "rate limiter record version %u, this amber reads %u",
                 out->version, VSNAP_RATELIMIT_VERSION);
        return bad(err, errlen, d, slot, what);
    }
    if (len != sizeof(*out))
        return bad(err, errlen, d, slot, "rate limiter record of the wrong size");
    memcpy(out, data, sizeof(*out));
    if (out->count != nrl) {
        snprintf(what, sizeof(what), "%u rate limiters saved, the device has %u", out->count, nrl);
        return bad(err, errlen, d, slot, what);
    }
    for (unsigned i = 0; i < VIRTIO_MAX_LIMITERS; i++) {
        static const struct rate_limiter none;
        char why[160];
        if (rl_snap_check(i < nrl ? rl[i] : &none, &out->rl[i], why, sizeof(why)) != 0) {
            snprintf(what, sizeof(what), "rate limiter %u: %s", i, why);
            return bad(err, errlen, d, slot, what);
        }
    }
    return 1;
}

static int check_ratelimit(const struct snap_reader *r, const struct snap_entry *s,
                           const struct virtio_dev *d, char *err, size_t errlen)
{
    struct virtio_snap_ratelimit rls;
    int ret = check_ratelimit_into(r, s, d, &rls, err, errlen);
    return ret < 0 ? ret : 0;
}

int virtio_snap_check(const struct snap_reader *r, const struct snap_entry *s,
                      const struct virtio_dev *d, char *err, size_t errlen)
{
    unsigned slot = s->instance;
    struct virtio_snap_transport t;
    if (snapr_get(r, s, VSNAP_TRANSPORT, &t, sizeof(t)) != 0)
        return bad(err, errlen, d, slot, "transport record missing or of the wrong size");
    if (t.device_id != d->ops->device_id || t.num_queues != d->ops->num_queues)
        return bad(err, errlen, d, slot, "a different device type or queue count");
    if (t.status & ~(uint32_t)STATUS_KNOWN)
        return bad(err, errlen, d, slot, "unknown status bits");
    if (t.host_features != d->host_features)
        return bad(err, errlen, d, slot, "offered features differ from this amber's");
    if (t.driver_features & ~t.host_features)
        return bad(err, errlen, d, slot, "driver features that were never offered");
    if ((t.status & VIRTIO_STATUS_DRIVER_OK) && !(t.status & VIRTIO_STATUS_FEATURES_OK))
        return bad(err, errlen, d, slot, "DRIVER_OK without FEATURES_OK");
    if (t.isr & ~3u || t.host_features_sel > 1 || t.driver_features_sel > 1)
        return bad(err, errlen, d, slot, "bad ISR or feature selector");
    for (unsigned i = 0; i < t.num_queues; i++) {
        const struct virtio_snap_queue *sq = &t.q[i];
        if (sq->ready > 1 || sq->signalled_valid > 1)
            return bad(err, errlen, d, slot, "bad queue flag");
        if (!sq->ready)
            continue;
        struct virtq q = {.mem = d->mem,
                          .size = sq->size,
                          .desc_gpa = sq->desc_gpa,
                          .avail_gpa = sq->avail_gpa,
                          .used_gpa = sq->used_gpa};
        if (virtq_validate(&q, queue_max(d)) != 0) {
            char what[96];
            snprintf(what, sizeof(what), "queue %u: size or ring address outside guest RAM", i);
            return bad(err, errlen, d, slot, what);
        }
        /* The device never runs more than a ring ahead of what it consumed. */
        if ((uint16_t)(sq->last_avail - sq->used_idx) > sq->size) {
            char what[96];
            snprintf(what, sizeof(what), "queue %u: indices %u/%u more than a ring apart", i,
                     sq->last_avail, sq->used_idx);
            return bad(err, errlen, d, slot, what);
        }
    }
    return check_ratelimit(r, s, d, err, errlen);
}

/* The bucket levels, checked once more (the file may not have been checked against this
 * device); a file without them leaves the limiters full, as configured. d->lock held. */
static int load_ratelimit(struct virtio_dev *d, const struct snap_reader *r,
                          const struct snap_entry *s, char *err, size_t errlen)
{
    struct virtio_snap_ratelimit rls;
    int ret = check_ratelimit_into(r, s, d, &rls, err, errlen);
    if (ret < 0)
        return ret;
    struct rate_limiter *rl[VIRTIO_MAX_LIMITERS];
    unsigned nrl = limiters(d, rl);
    if (ret == 0) {
        for (unsigned i = 0; i < nrl; i++)
            if (rl_enabled(rl[i])) {
                log_info("virtio-%s (slot %u): the snapshot has no rate limiter levels (an older "
                         "amber): the buckets start full",
                         d->ops->name, s->instance);
                break;
            }
        return 0;
    }
    uint64_t now = clock_now_ns();
    for (unsigned i = 0; i < nrl; i++)
        rl_snap_load(rl[i], &rls.rl[i], now);
    return 0;
}

int virtio_snap_load(struct virtio_dev *d, const struct snap_reader *r, const struct snap_entry *s,
                     char *err, size_t errlen)
{
    struct virtio_snap_transport t;
    if (snapr_get(r, s, VSNAP_TRANSPORT, &t, sizeof(t)) != 0)
        return bad(err, errlen, d, s->instance, "transport record missing");
    pthread_mutex_lock(&d->lock);
    int rc = load_ratelimit(d, r, s, err, errlen); /* first: a refused record changes nothing */
    if (rc) {
        pthread_mutex_unlock(&d->lock);
        return rc;
    }
    d->status = t.status;
    d->isr = t.isr;
    d->driver_features = t.driver_features;
    d->host_features_sel = t.host_features_sel;
    d->driver_features_sel = t.driver_features_sel;
    d->queue_sel = t.queue_sel;
    d->config_generation = t.config_generation;
    bool ev = virtio_has_feature(d, VIRTIO_F_EVENT_IDX);
    bool ind = virtio_has_feature(d, VIRTIO_F_INDIRECT_DESC);
    for (unsigned i = 0; i < d->ops->num_queues; i++) {
        const struct virtio_snap_queue *sq = &t.q[i];
        struct virtq *q = &d->vq[i];
        q->mem = d->mem;
        q->size = sq->size;
        q->ready = sq->ready;
        q->event_idx = ev;
        q->indirect_desc = ind;
        q->desc_gpa = sq->desc_gpa;
        q->avail_gpa = sq->avail_gpa;
        q->used_gpa = sq->used_gpa;
        q->last_avail = sq->last_avail;
        q->used_idx = sq->used_idx;
        q->used_published = sq->used_idx; /* the pause published everything */
        q->signalled_used = sq->signalled_used;
        q->signalled_valid = sq->signalled_valid;
        q->notify_off = false;
    }
    int ret = 0;
    bool live = (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
    if (live && d->ops->activate) {
        ret = d->ops->activate(d);
        if (ret)
            snprintf(err, errlen, "virtio-%s (slot %u): cannot start the back-end: %s",
                     d->ops->name, s->instance, strerror(-ret));
    }
    if (!ret && live) {
        if (d->ops->restored)
            d->ops->restored(d);
        /* Buffers made available before the pause may never be kicked again: look at every
         * ready queue once, on the loop. */
        uint64_t one = 1;
        for (unsigned i = 0; i < d->ops->num_queues; i++)
            if (d->vq[i].ready && write(d->kick_fd[i], &one, sizeof(one)) < 0)
                log_debug("virtio-%s: kick after restore: counter saturated", d->ops->name);
    }
    if (!ret && t.pending_irq) {
        uint64_t one = 1;
        if (write(d->irq_fd, &one, sizeof(one)) < 0)
            log_debug("virtio-%s: irq after restore: counter saturated", d->ops->name);
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}
