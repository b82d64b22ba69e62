/* Evil test guests: hostile virtio-mmio register traffic (sweeps, random, notifies, status order,
 * reset storms). */
#include "tests/guests/evil.h"

static const uint32_t vals[] = {
    0,    1,    2,     3,      4,       7,          8,          0xf,        0x40,      0x7f,
    0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
static const uint16_t regs[] = {R_DEV_FSEL,  R_DRV_FEAT, R_DRV_FSEL, R_QSEL,
                                R_QNUM,      R_QREADY,   R_QNOTIFY,  R_ISR_ACK,
                                R_STATUS,    R_QDESC_LO, R_QDESC_HI, R_QAVAIL_LO,
                                R_QAVAIL_HI, R_QUSED_LO, R_QUSED_HI, 0x0ac /* SHM_SEL */};
#define NVALS (sizeof(vals) / sizeof(vals[0]))
#define NREGS (sizeof(regs) / sizeof(regs[0]))

/* The devices plus the empty slot after the last one. */
static uint64_t target(const struct evil *e, unsigned i)
{
    return i < e->ndev ? e->dev[i].base : EVIL_MMIO_BASE + e->ndev * EVIL_MMIO_SLOT;
}

void case_regs(struct evil *e)
{
    for (unsigned i = 0; i <= e->ndev; i++) {
        uint64_t b = target(e, i);
        for (uint64_t off = 0; off < 0x100; off += 4) {
            for (unsigned v = 0; v < NVALS; v++) {
                mmio_w32(b + off, vals[v]);
                (void)mmio_r32(b + off);
            }
            e->ops += 2 * NVALS;
        }
        /* Wrong widths and misaligned offsets on the registers. */
        for (uint64_t off = 0; off < 0x100; off++) {
            evil_access(b + off, 1, 1, evil_rand(e));
            evil_access(b + off, 1, 0, 0);
            evil_access(b + (off & ~1ULL), 2, 1, evil_rand(e));
            if ((off & 7) == 0 || (off & 7) == 4) {
                evil_access(b + off, 8, 1, evil_rand(e));
                evil_access(b + off, 8, 0, 0);
            }
            e->ops += 4;
        }
        /* Configuration space, every width, and the last bytes of the window. */
        for (uint64_t off = 0x100; off < 0x140; off++) {
            static const unsigned w[] = {1, 2, 4, 8};
            for (unsigned k = 0; k < 4; k++) {
                evil_access(b + off, w[k], 1, evil_rand(e));
                evil_access(b + off, w[k], 0, 0);
            }
            e->ops += 8;
        }
        evil_access(b + 0xff8, 8, 0, 0);
        evil_access(b + 0xff8, 8, 1, ~0ULL);
        evil_access(b + 0xffc, 4, 1, ~0ULL);
        evil_access(b + 0xfff, 1, 1, ~0ULL);
        mmio_w32(b + R_STATUS, 0);
    }
}

static uint32_t rand_value(struct evil *e)
{
    uint64_t r = evil_rand(e);
    switch (r % 4) {
    case 0:
        return vals[(r >> 8) % NVALS];
    case 1:
        return (uint32_t)(EVIL_GARBAGE + ((r >> 8) % EVIL_GARBAGE_SIZE));
    case 2:
        return (uint32_t)(e->ram_end - ((r >> 8) & 0xfff));
    default:
        return (uint32_t)(r >> 32);
    }
}

/* Random bytes, with the first 64 KiB shaped like descriptors that point back into the area. */
static void fill_garbage(struct evil *e)
{
    uint64_t *p = (uint64_t *)EVIL_GARBAGE;
    for (uint64_t i = 0; i < EVIL_GARBAGE_SIZE / 8; i++)
        ((volatile uint64_t *)p)[i] = evil_rand(e);
    struct vdesc *d = (struct vdesc *)EVIL_GARBAGE;
    for (unsigned i = 0; i < 4096; i++) {
        uint64_t r = evil_rand(e);
        d[i].addr = EVIL_GARBAGE + (r % EVIL_GARBAGE_SIZE);
        d[i].len = (r >> 40) & 1 ? (uint32_t)(r >> 20) & 0xfff : (uint32_t)(r >> 32);
        d[i].flags = (uint16_t)((r >> 52) & 7);
        d[i].next = (uint16_t)((r >> 56) % 80);
    }
}

void case_random(struct evil *e)
{
    const char *seedmsg = "random seed";
    evil_report(seedmsg, e->rng);
    fill_garbage(e);
    for (unsigned n = 0; n < 6000; n++) {
        uint64_t r = evil_rand(e);
        unsigned kind = (unsigned)(r % 100);
        unsigned di = (unsigned)((r >> 8) % (e->ndev + 1));
        uint64_t b = (r >> 16) % 16 == 0 ? EVIL_MMIO_BASE + ((r >> 20) % 32) * EVIL_MMIO_SLOT
                                         : target(e, di);
        const struct vdev *d = di < e->ndev ? &e->dev[di] : 0;
        if (kind < 45) {
            uint64_t off = (r >> 24) & 1 ? regs[(r >> 25) % NREGS] : ((r >> 25) & 0xffc);
            mmio_w32(b + off, rand_value(e));
        } else if (kind < 65) {
            (void)mmio_r32(b + ((r >> 24) & 0xffc));
        } else if (kind < 75 && d) {
            /* A full bring-up with every queue in the garbage. */
            evil_dev_init(d);
            for (unsigned q = 0; q < d->nq; q++) {
                uint64_t s = evil_rand(e);
                static const uint32_t sizes[] = {64, 64, 16, 2, 1, 0, 1024, 0xffff};
                evil_queue_raw(d, q, sizes[s % 8], EVIL_GARBAGE + ((s >> 8) % 4096) * 16,
                               EVIL_GARBAGE + 0x10000 + ((s >> 20) % 0x8000) * 2,
                               EVIL_GARBAGE + 0x20000 + ((s >> 36) % 0x8000) * 4);
            }
            evil_dev_go(d);
            for (unsigned q = 0; q < d->nq; q++)
                mmio_w32(d->base + R_QNOTIFY, q);
        } else if (kind < 85) {
            mmio_w32(b + R_QNOTIFY, (uint32_t)((r >> 24) % 8));
        } else if (kind < 93) {
            static const unsigned w[] = {1, 2, 4, 8};
            evil_access(b + 0x100 + ((r >> 24) % 0xf00), w[(r >> 40) % 4], (r >> 42) & 1,
                        evil_rand(e));
        } else {
            mmio_w32(b + R_STATUS, (r >> 24) & 1 ? 0 : (uint32_t)(r >> 32) & 0xff);
        }
        if (n % 1000 == 999) /* the devices scribbled on it: reshape the descriptors */
            fill_garbage(e);
        e->ops++;
    }
}

void case_notify(struct evil *e)
{
    static struct vring r;
    for (unsigned i = 0; i <= e->ndev; i++) {
        uint64_t b = target(e, i);
        for (unsigned state = 0; state < 3; state++) {
            mmio_w32(b + R_STATUS, 0);
            if (i < e->ndev && state >= 1)
                evil_dev_init(&e->dev[i]);
            if (i < e->ndev && state == 2) {
                evil_vring_setup(e, i, 0, &r); /* only queue 0 is live */
                evil_dev_go(&e->dev[i]);
            }
            for (uint32_t q = 0; q < 40; q++)
                mmio_w32(b + R_QNOTIFY, q);
            static const uint32_t big[] = {0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff};
            for (unsigned k = 0; k < 5; k++)
                mmio_w32(b + R_QNOTIFY, big[k]);
            /* A storm on one queue with nothing in it. */
            for (unsigned k = 0; k < 300; k++)
                mmio_w32(b + R_QNOTIFY, 0);
            /* QueueReady=0 while running, then kicks for it. */
            mmio_w32(b + R_QSEL, 0);
            mmio_w32(b + R_QREADY, 0);
            for (unsigned k = 0; k < 20; k++)
                mmio_w32(b + R_QNOTIFY, k % 3);
            e->ops += 365;
        }
        mmio_w32(b + R_STATUS, 0);
    }
}

void case_status(struct evil *e)
{
    static const uint8_t seqs[][6] = {
        {S_DRIVER_OK},
        {S_FEAT_OK},
        {S_ACK, S_ACK | S_DRIVER_OK},
        {S_ACK, S_ACK | S_DRIVER, S_ACK | S_DRIVER | S_FEAT_OK}, /* no features written */
        {S_NEEDS_RST},
        {S_FAILED},
        {0xff},
        {S_ACK | S_DRIVER, S_ACK}, /* clearing a bit */
        {S_ACK, S_ACK | S_DRIVER, S_FAILED | S_ACK | S_DRIVER, S_ACK | S_DRIVER | S_DRIVER_OK},
        {S_ACK | S_DRIVER | S_FEAT_OK | S_DRIVER_OK},
        {S_DRIVER_OK, S_DRIVER_OK | S_FEAT_OK, S_DRIVER_OK | S_FEAT_OK | S_NEEDS_RST},
    };
    static struct vring r;
    for (unsigned i = 0; i < e->ndev; i++) {
        const struct vdev *d = &e->dev[i];
        uint64_t b = d->base;
        for (unsigned s = 0; s < sizeof(seqs) / sizeof(seqs[0]); s++) {
            mmio_w32(b + R_STATUS, 0);
            if (s >= 9) { /* with VERSION_1 written, so FEATURES_OK can stick */
                mmio_w32(b + R_DRV_FSEL, 1);
                mmio_w32(b + R_DRV_FEAT, 1);
            }
            for (unsigned k = 0; k < 6 && seqs[s][k]; k++) {
                mmio_w32(b + R_STATUS, seqs[s][k]);
                mmio_w32(b + R_QNOTIFY, 0);
                (void)mmio_r32(b + R_STATUS);
            }
            e->ops += 20;
        }
        /* A running device: features, queue registers and DRIVER_OK again, after the fact. */
        evil_dev_init(d);
        evil_vring_setup(e, i, 0, &r);
        evil_dev_go(d);
        mmio_w32(b + R_DRV_FSEL, 0);
        mmio_w32(b + R_DRV_FEAT, 0xffffffff);
        mmio_w32(b + R_DRV_FSEL, 0xffffffff);
        mmio_w32(b + R_DRV_FEAT, 0xffffffff);
        mmio_w32(b + R_DEV_FSEL, 0xffffffff);
        (void)mmio_r32(b + R_DEV_FEAT);
        evil_queue_raw(d, 0, 2, 0xFFFFFFFFFFFFFFF0ULL, 0, 0); /* live queue: must be ignored */
        mmio_w32(b + R_QSEL, 0xffffffff);
        (void)mmio_r32(b + R_QNUM_MAX);
        (void)mmio_r32(b + R_QREADY);
        mmio_w32(b + R_QREADY, 1);
        mmio_w32(b + R_STATUS, S_ACK | S_DRIVER | S_FEAT_OK | S_DRIVER_OK);
        mmio_w32(b + R_STATUS, 0xff);
        mmio_w32(b + R_ISR_ACK, 0xffffffff);
        (void)mmio_r32(b + 0x0fc);
        mmio_w32(b + R_QNOTIFY, 0);
        mmio_w32(b + R_STATUS, 0);
        mmio_w32(b + R_STATUS, 0);
        e->ops += 22;
    }
}

void case_reset_storm(struct evil *e)
{
    static struct vring rings[EVIL_MMIO_SLOTS];
    for (unsigned round = 0; round < 150; round++) {
        for (unsigned i = 0; i < e->ndev; i++) {
            const struct vdev *d = &e->dev[i];
            struct vring *r = &rings[i];
            evil_dev_init(d);
            if (round == 0) {
                evil_vring_setup(e, i, 0, r);
            } else {
                r->next_avail = 0;
                r->last_used = 0;
                r->avail[1] = 0;
                r->used[1] = 0;
                evil_queue_raw(d, 0, EVIL_QSIZE, (uint64_t)r->desc, (uint64_t)r->avail,
                               (uint64_t)r->used);
            }
            switch (round % 4) {
            case 0: /* reset right after a kick with work queued */
                evil_dev_go(d);
                for (unsigned k = 0; k < 8; k++) {
                    r->desc[k] = (struct vdesc){EVIL_BUFS + k * 512, 512, D_WRITE, 0};
                    evil_vring_post(d, 0, r, (uint16_t)k);
                }
                break;
            case 1: /* queue off while live, then kicks */
                evil_dev_go(d);
                mmio_w32(d->base + R_QREADY, 0);
                mmio_w32(d->base + R_QNOTIFY, 0);
                break;
            case 2: /* reset in the middle of feature negotiation */
                mmio_w32(d->base + R_STATUS, 0);
                mmio_w32(d->base + R_DRV_FEAT, 0xffffffff);
                break;
            default: /* double reset, then kicks to a reset device */
                evil_dev_go(d);
                mmio_w32(d->base + R_STATUS, 0);
                break;
            }
            mmio_w32(d->base + R_STATUS, 0);
            mmio_w32(d->base + R_QNOTIFY, 0);
            e->ops += 30;
        }
    }
}
