/* virtio-rng: fills each request's writable buffers from getrandom(), synchronously. */
#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "vmm/log.h"

/* Chains served per kick before yielding the loop to other work. */
#define RNG_CHAINS_PER_KICK 64

struct rng {
    struct virtq_chain chain; /* big (one iovec per possible descriptor): kept off the stack */
};

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

/* Requests are served synchronously inside queue_notify, so nothing is ever in flight. */
static int rng_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    return 0;
}

static void rng_resume(struct virtio_dev *d)
{
}

static void rng_destroy(struct virtio_dev *d)
{
    free(d->priv);
    d->priv = NULL;
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
};

int rng_create(struct virtio_dev *d, const struct guest_mem *mem, struct loop *loop,
               uint64_t mmio_base, unsigned gsi)
{
    struct rng *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int err = virtio_dev_init(d, &rng_ops, r, mem, loop, mmio_base, gsi);
    if (err) {
        free(r);
        return err;
    }
    return 0;
}
