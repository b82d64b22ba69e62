/* virtio-rng: fills each request's writable buffers from getrandom(), synchronously. */
#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "devices/virtio/ratelimit.h"
#include "vmm/clock.h"
#include "vmm/log.h"

/* Chains served per kick before yielding the loop to other work. */
#define RNG_CHAINS_PER_KICK 64

struct rng {
    struct virtio_dev *d;
    struct virtq_chain chain; /* big (one iovec per possible descriptor): kept off the stack */
    /* rate_limiter: a request the buckets cannot pay for goes back to the ring, and kicks are
     * ignored (throttled) until the timer says they can. */
    struct rate_limiter rl;
    struct rl_timer rl_timer;
    bool throttled;
    bool paused;
};

/* True if the limiter lets chain c (bytes it would get) go now; else c goes back to the ring
 * and the timer is armed for when the buckets can pay for it. */
static bool rng_admit(struct rng *r, struct virtq *vq, uint64_t bytes)
{
    if (!rl_enabled(&r->rl))
        return true;
    uint64_t now = clock_now_ns();
    if (rl_consume(&r->rl, now, bytes, 1))
        return true;
    virtq_unpop(vq);
    r->throttled = true;
    rl_timer_arm(&r->rl_timer, rl_wait_ns(&r->rl, now, bytes, 1));
    return false;
}

/* Fill [p, p+len) with random bytes. Returns bytes written (short only if getrandom fails). */
static size_t rng_fill(uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(p + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_warn("virtio-rng: getrandom: %s", strerror(errno));
            break;
        }
        done += (size_t)n;
    }
    return done;
}

static void rng_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct rng *r = d->priv;
    struct virtq *vq = &d->vq[q];
    bool pushed = false;
    unsigned served = 0;
    if (r->throttled)
        return; /* the limiter's timer comes back to the queue */

    for (;;) {
        if (served == RNG_CHAINS_PER_KICK) {
            /* Yield: kick ourselves so the loop comes back after other work. */
            uint64_t one = 1;
            if (write(d->kick_fd[q], &one, sizeof(one)) < 0) {
                /* saturated counter: a kick is pending anyway */
            }
            break;
        }
        int got = virtq_pop(vq, &r->chain);
        if (got < 0) {
            virtio_set_needs_reset(d, "malformed rng request");
            break;
        }
        if (got == 0)
            break;
        uint32_t written = 0;
        const struct virtq_chain *c = &r->chain;
        if (!rng_admit(r, vq,
                       c->in_len < RNG_MAX_REQUEST_BYTES ? c->in_len : RNG_MAX_REQUEST_BYTES))
            break;
        for (unsigned i = c->nout; i < c->nout + c->nin && written < RNG_MAX_REQUEST_BYTES; i++) {
            size_t want = c->iov[i].iov_len;
            if (want > RNG_MAX_REQUEST_BYTES - written)
                want = RNG_MAX_REQUEST_BYTES - written;
            size_t n = rng_fill(c->iov[i].iov_base, want);
            written += (uint32_t)n;
            if (n < want)
                break;
        }
        if (virtq_push(vq, c->head, written) < 0) {
            virtio_set_needs_reset(d, "rng used ring");
            break;
        }
        pushed = true;
        served++;
    }
    if (pushed)
        virtio_notify_used(d, q);
}

/* The limiter's timer: serve the queue again (queue 0, the only one). */
static void rng_rl_event(void *opaque, uint32_t events)
{
    struct rng *r = opaque;
    rl_timer_ack(&r->rl_timer);
    pthread_mutex_lock(&r->d->lock);
    if (!r->paused) { /* paused: rng_resume arms the timer again */
        r->throttled = false;
        if (r->d->vq[0].ready)
            rng_queue_notify(r->d, 0);
    }
    pthread_mutex_unlock(&r->d->lock);
}

/* Requests are served synchronously inside queue_notify, and a deferred one is still in the
 * ring, so nothing is ever in flight. */
static int rng_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    struct rng *r = d->priv;
    pthread_mutex_lock(&d->lock);
    r->paused = true;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void rng_resume(struct virtio_dev *d)
{
    struct rng *r = d->priv;
    pthread_mutex_lock(&d->lock);
    r->paused = false;
    if (r->throttled) /* its timer may have fired during the pause */
        rl_timer_arm(&r->rl_timer, 1);
    pthread_mutex_unlock(&d->lock);
}

static void rng_destroy(struct virtio_dev *d)
{
    struct rng *r = d->priv;
    if (!r)
        return;
    rl_timer_fini(&r->rl_timer, d->loop);
    free(r);
    d->priv = NULL;
}

static unsigned rng_rate_limiters(const struct virtio_dev *d, struct rate_limiter **rl)
{
    struct rng *r = d->priv;
    rl[0] = &r->rl;
    return 1;
}

static const struct virtio_dev_ops rng_ops = {
    .name = "rng",
    .device_id = VIRTIO_ID_RNG,
    .num_queues = 1,
    .queue_max = 256,
    .queue_notify = rng_queue_notify,
    .quiesce = rng_quiesce,
    .resume = rng_resume,
    .destroy = rng_destroy,
    .rate_limiters = rng_rate_limiters,
};

int rng_create(struct virtio_dev *d, const struct guest_mem *mem, struct loop *loop,
               uint64_t mmio_base, unsigned gsi)
{
    struct rng *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->d = d;
    r->rl_timer.fd = -1;
    int err = virtio_dev_init(d, &rng_ops, r, mem, loop, mmio_base, gsi);
    if (err) {
        free(r);
        return err;
    }
    return 0;
}

int rng_set_rate_limit(struct virtio_dev *d, const struct rl_config *rl)
{
    struct rng *r = d->priv;
    if (r->rl_timer.fd < 0) {
        int err = rl_timer_init(&r->rl_timer, d->loop, rng_rl_event, r);
        if (err)
            return err;
    }
    pthread_mutex_lock(&d->lock);
    rl_set(&r->rl, rl, RL_SET_BANDWIDTH | RL_SET_OPS, clock_now_ns());
    pthread_mutex_unlock(&d->lock);
    return 0;
}
