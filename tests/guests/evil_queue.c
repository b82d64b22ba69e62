/* Evil test guests: virtqueues at the edge of and outside RAM, malformed descriptor chains, and
 * the closing sanity check that the devices still serve well-formed requests. */
#include "tests/guests/evil.h"

#define BUF      (EVIL_BUFS + 0x100000) /* data buffers the chains point at */
#define TABLE    (EVIL_BUFS + 0x200000) /* indirect tables */
#define ID_BLK   2
#define ID_RNG   4
#define ID_VSOCK 19

/* Reset, renegotiate and give every queue of device di a fresh well-formed ring. */
static void reinit(struct evil *e, unsigned di, struct vring *rings)
{
    const struct vdev *d = &e->dev[di];
    evil_dev_init(d);
    for (unsigned q = 0; q < d->nq && q < 8; q++)
        evil_vring_setup(e, di, q, &rings[q]);
    evil_dev_go(d);
}

void case_queue_edge(struct evil *e)
{
    uint64_t R = e->ram_end;
    const uint64_t place[][3] = {
        {R - 16, R - 16, R - 16},           /* every ring straddles the end of RAM */
        {R, R + 0x1000, R + 0x2000},        /* just past RAM */
        {R - 0x400, R - 0x100, R - 0x40},   /* used ring straddles the end */
        {R - 0x3f8, R - 0x600, R - 0x1000}, /* desc table 8 bytes over the end */
        {R - 0x400, R - 0x600, R - 0x1000}, /* legal, flush with the end of RAM */
        {EVIL_MMIO_BASE, EVIL_MMIO_BASE + 0x100, EVIL_MMIO_BASE + 0x200},      /* MMIO */
        {0xFEE00000ULL, 0xFEE00400ULL, 0xFEE01000ULL},                         /* the LAPIC */
        {0xFFFFFFFFFFFFFFF0ULL, 0xFFFFFFFFFFFFFFF8ULL, 0xFFFFFFFFFFFFFFFCULL}, /* wraps */
        {1ULL << 40, (1ULL << 40) + 0x1000, (1ULL << 40) + 0x2000},            /* far above */
        {0x100000000ULL, 0x100000400ULL, 0x100001000ULL},                   /* just above 4 GiB */
        {EVIL_RINGS + 0x80001, EVIL_RINGS + 0x80401, EVIL_RINGS + 0x81003}, /* misaligned */
        {EVIL_RINGS + 0x80000, EVIL_RINGS + 0x80000, EVIL_RINGS + 0x80000}, /* all overlap */
    };
    const uint32_t sizes[] = {0,    1,    3,      63,     65,      256,
                              1024, 2048, 0x8000, 0xffff, 0x10000, 0xffffffff};
    uint64_t accepted = 0, rejected = 0;
    for (unsigned di = 0; di < e->ndev; di++) {
        const struct vdev *d = &e->dev[di];
        for (unsigned q = 0; q < d->nq + 2; q++) {
            unsigned qq = q < d->nq ? q : q + 100 * (q - d->nq); /* and two that do not exist */
            for (unsigned p = 0; p < sizeof(place) / sizeof(place[0]); p++) {
                evil_dev_init(d);
                uint32_t ok =
                    evil_queue_raw(d, qq, EVIL_QSIZE, place[p][0], place[p][1], place[p][2]);
                evil_dev_go(d);
                mmio_w32(d->base + R_QNOTIFY, qq);
                ok ? accepted++ : rejected++;
                if (ok && p == 4) {
                    /* Legal ring at the edge: a buffer straddling the end, then a good one. */
                    struct vdesc *t = (struct vdesc *)place[p][0];
                    volatile uint16_t *av = (volatile uint16_t *)place[p][1];
                    t[0] = (struct vdesc){R - 8, 16, D_WRITE, 0};
                    t[1] = (struct vdesc){R - 0x2000, 64, D_WRITE, 0};
                    av[2] = 0;
                    av[3] = 1;
                    barrier();
                    av[1] = (uint16_t)(av[1] + 2);
                    mmio_w32(d->base + R_QNOTIFY, qq);
                }
                (void)evil_status(d);
                e->ops += 12;
            }
            for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                uint64_t b = EVIL_RINGS + 0x100000;
                evil_dev_init(d);
                uint32_t ok = evil_queue_raw(d, qq, sizes[s], b, b + 0x10000, b + 0x20000);
                evil_dev_go(d);
                mmio_w32(d->base + R_QNOTIFY, qq);
                ok ? accepted++ : rejected++;
                e->ops += 12;
            }
            evil_dev_reset(d);
        }
    }
    evil_report("queue_edge accepted", accepted);
    evil_report("queue_edge rejected", rejected);
}

/* Build attack k on ring r (descriptors, maybe an indirect table); returns the head to post,
 * or -1 when k is past the last attack. May move r->next_avail. */
static int chain_attack(struct evil *e, unsigned k, struct vring *r)
{
    struct vdesc *d = r->desc;
    struct vdesc *t = (struct vdesc *)TABLE;
    uint64_t R = e->ram_end;
    evil_memset(d, 0, sizeof(*d) * 4);
    switch (k) {
    case 0:
        d[0] = (struct vdesc){BUF, 16, D_NEXT, 0};
        return 0; /* self loop */
    case 1:
        d[0] = (struct vdesc){BUF, 16, D_NEXT, 1};
        d[1] = (struct vdesc){BUF, 16, D_NEXT, 0};
        return 0;
    case 2:
        for (unsigned i = 0; i < EVIL_QSIZE; i++)
            d[i] = (struct vdesc){BUF + i * 16, 16, D_NEXT, (uint16_t)((i + 1) % EVIL_QSIZE)};
        return 5;
    case 3:
        d[0] = (struct vdesc){BUF, 16, D_NEXT, 1000};
        return 0; /* next >= size */
    case 4:
        d[0] = (struct vdesc){BUF, 0xffffffff, 0, 0};
        return 0; /* huge, read */
    case 5:
        d[0] = (struct vdesc){BUF, 0xffffffff, D_WRITE, 0};
        return 0; /* huge, write */
    case 6:
        d[0] = (struct vdesc){0xfffffffffffff000ULL, 0x2000, D_WRITE, 0};
        return 0;
    case 7:
        d[0] = (struct vdesc){R, 512, D_WRITE, 0};
        return 0;
    case 8:
        d[0] = (struct vdesc){R - 8, 16, D_WRITE, 0};
        return 0;
    case 9:
        d[0] = (struct vdesc){EVIL_MMIO_BASE, 0x100, D_WRITE, 0};
        return 0;
    case 10:
        d[0] = (struct vdesc){TABLE, 16, D_INDIRECT, 0};
        t[0] = (struct vdesc){TABLE, 16, D_INDIRECT, 0}; /* nested, pointing at itself */
        return 0;
    case 11:
        d[0] = (struct vdesc){TABLE, 17, D_INDIRECT, 0};
        return 0;
    case 12:
        d[0] = (struct vdesc){TABLE, 0, D_INDIRECT, 0};
        return 0;
    case 13:
        evil_memset(t, 0, 0x1000);
        d[0] = (struct vdesc){TABLE, 0x100000, D_INDIRECT, 0}; /* 65536 entries */
        return 0;
    case 14:
        d[0] = (struct vdesc){TABLE, 32, D_INDIRECT | D_NEXT, 1};
        d[1] = (struct vdesc){BUF, 16, D_WRITE, 0};
        t[0] = (struct vdesc){BUF, 16, D_WRITE, 0};
        t[1] = (struct vdesc){BUF, 16, D_WRITE, 0};
        return 0;
    case 15:
        d[0] = (struct vdesc){TABLE, 32, D_INDIRECT, 0};
        t[0] = (struct vdesc){BUF, 16, D_WRITE | D_NEXT, 1};
        t[1] = (struct vdesc){BUF, 16, D_WRITE | D_NEXT, 0}; /* loop inside the table */
        return 0;
    case 16:
        d[0] = (struct vdesc){R - 8, 16, D_INDIRECT, 0};
        return 0;
    case 17:
        d[0] = (struct vdesc){BUF, 16, D_WRITE, 0};
        r->next_avail = (uint16_t)(r->next_avail + 0x7fff); /* avail idx leaps ahead */
        return 0;
    case 18:
        return 0xffff; /* head >= size */
    case 19:
        for (unsigned i = 0; i < EVIL_QSIZE; i++)
            d[i] = (struct vdesc){BUF, 0, (uint16_t)(i + 1 < EVIL_QSIZE ? D_NEXT : 0),
                                  (uint16_t)(i + 1)};
        return 0;
    case 20:
        d[0] = (struct vdesc){BUF, 16, D_WRITE | D_NEXT, 1}; /* readable after writable */
        d[1] = (struct vdesc){BUF, 16, 0, 0};
        return 0;
    case 21:
        d[0] = (struct vdesc){(uint64_t)r->desc, 0x400, D_WRITE, 0}; /* writes over the table */
        return 0;
    case 22:
        d[0] = (struct vdesc){(uint64_t)r->used, 0x200, D_WRITE, 0}; /* over the used ring */
        return 0;
    case 23:
        /* 1025 chained indirect entries: one more than the longest chain. */
        for (unsigned i = 0; i < 1025; i++)
            t[i] = (struct vdesc){BUF + (i % 64) * 16, 16,
                                  (uint16_t)(D_WRITE | (i < 1024 ? D_NEXT : 0)), (uint16_t)(i + 1)};
        d[0] = (struct vdesc){TABLE, 1025 * 16, D_INDIRECT, 0};
        return 0;
    case 24:
        r->avail[0] = 0xffff; /* garbage flags and used_event */
        r->avail[2 + EVIL_QSIZE] = 0xffff;
        d[0] = (struct vdesc){BUF, 16, D_WRITE, 0};
        return 0;
    default:
        return -1;
    }
}

/* Device-specific payloads: blk requests and vsock packets with hostile header fields. */
static int payload_attack(struct evil *e, const struct vdev *dv, unsigned k, struct vring *r)
{
    struct vdesc *d = r->desc;
    volatile uint8_t *b = (volatile uint8_t *)BUF;
    evil_memset((void *)BUF, 0, 0x1000);
    if (dv->id == ID_BLK) {
        static const uint32_t type[] = {0, 1, 8, 11, 13, 4, 0xdeadbeef, 0, 1};
        if (k >= sizeof(type) / sizeof(type[0]))
            return -1;
        *(volatile uint32_t *)b = type[k];
        *(volatile uint64_t *)(b + 8) = k == 7 ? 0 : 0xffffffffffffffffULL - k; /* sector */
        /* discard/write-zeroes segment: huge sector and count */
        *(volatile uint64_t *)(b + 0x100) = 0xfffffffffffffff0ULL;
        *(volatile uint32_t *)(b + 0x108) = 0xffffffff;
        d[0] = (struct vdesc){BUF, k == 8 ? 8 : 16, D_NEXT, 1}; /* k 8: short header */
        d[1] =
            (struct vdesc){BUF + 0x100, k == 7 ? 0x7fffffff : 512,
                           (uint16_t)(D_NEXT | (type[k] == 1 || type[k] == 11 ? 0 : D_WRITE)), 2};
        d[2] = (struct vdesc){BUF + 0x800, k == 6 ? 0 : 1, (uint16_t)(k == 5 ? 0 : D_WRITE), 0};
        return 0;
    }
    if (dv->id == ID_VSOCK) {
        if (k >= 6)
            return -1;
        /* struct virtio_vsock_hdr: src_cid, dst_cid (le64), src_port, dst_port, len (le32),
         * type, op (le16), flags, buf_alloc, fwd_cnt (le32): 44 bytes. */
        *(volatile uint64_t *)b = k == 3 ? 0xffffffffffffffffULL : 3;
        *(volatile uint64_t *)(b + 8) = k == 4 ? 77 : 2;
        *(volatile uint32_t *)(b + 16) = 1000 + k;
        *(volatile uint32_t *)(b + 20) = 1234;
        *(volatile uint32_t *)(b + 24) = k == 1 ? 0xffffffff : 0;
        *(volatile uint16_t *)(b + 28) = k == 5 ? 2 : 1;
        *(volatile uint16_t *)(b + 30) = (uint16_t)(k == 0 ? 1 : k == 1 ? 5 : k + 1); /* op */
        *(volatile uint32_t *)(b + 36) = 0xffffffff;
        *(volatile uint32_t *)(b + 40) = 0xffffffff;
        if (k == 2) { /* header split over two descriptors */
            d[0] = (struct vdesc){BUF, 11, D_NEXT, 1};
            d[1] = (struct vdesc){BUF + 11, 33, 0, 0};
        } else {
            d[0] = (struct vdesc){BUF, 44, D_NEXT, 1};
            d[1] = (struct vdesc){BUF + 0x100, 100, 0, 0};
        }
        (void)e;
        return 0;
    }
    return -1;
}

void case_chains(struct evil *e)
{
    static struct vring rings[8];
    for (unsigned di = 0; di < e->ndev; di++) {
        const struct vdev *d = &e->dev[di];
        uint64_t resets = 0, used = 0, silent = 0;
        reinit(e, di, rings);
        for (unsigned q = 0; q < d->nq && q < 8; q++) {
            for (unsigned pass = 0; pass < 2; pass++) {
                for (unsigned k = 0;; k++) {
                    int head = pass == 0 ? chain_attack(e, k, &rings[q])
                                         : (q == (d->id == ID_VSOCK ? 1u : 0u)
                                                ? payload_attack(e, d, k, &rings[q])
                                                : -1);
                    if (head < 0)
                        break;
                    evil_vring_post(d, q, &rings[q], (uint16_t)head);
                    int w = evil_vring_wait(d, &rings[q], 400);
                    e->ops += 8;
                    if (w == 2 || (evil_status(d) & S_NEEDS_RST)) {
                        resets++;
                        reinit(e, di, rings);
                    } else if (w == 1) {
                        used++;
                    } else {
                        silent++;
                        reinit(e, di, rings); /* unanswered: start the next one clean */
                    }
                }
            }
        }
        evil_puts("evil: chains device ");
        evil_puthex(d->id);
        evil_puts(" needs_reset ");
        evil_puthex(resets);
        evil_puts(" used ");
        evil_puthex(used);
        evil_puts(" silent ");
        evil_puthex(silent);
        evil_puts("\n");
        evil_dev_reset(d);
    }
}

static void sanity_rng(struct evil *e, int di)
{
    static struct vring r;
    const struct vdev *d = &e->dev[di];
    evil_dev_init(d);
    evil_vring_setup(e, (unsigned)di, 0, &r);
    evil_dev_go(d);
    evil_memset((void *)BUF, 0, 64);
    r.desc[0] = (struct vdesc){BUF, 64, D_WRITE, 0};
    evil_vring_post(d, 0, &r, 0);
    int w = evil_vring_wait(d, &r, 200000);
    uint32_t len = *(volatile uint32_t *)&r.used[4];
    evil_puts(w == 1 && len > 0 && len <= 64 ? "evil: sanity rng ok\n"
                                             : "evil: sanity rng FAILED\n");
    evil_dev_reset(d);
}

static void sanity_blk(struct evil *e, int di)
{
    static struct vring r;
    const struct vdev *d = &e->dev[di];
    volatile uint8_t *hdr = (volatile uint8_t *)BUF;
    evil_dev_init(d);
    evil_vring_setup(e, (unsigned)di, 0, &r);
    evil_dev_go(d);
    evil_memset((void *)BUF, 0, 0x1000);
    hdr[0x800] = 0xff;
    r.desc[0] = (struct vdesc){BUF, 16, D_NEXT, 1}; /* VIRTIO_BLK_T_IN, sector 0 */
    r.desc[1] = (struct vdesc){BUF + 0x200, 512, D_WRITE | D_NEXT, 2};
    r.desc[2] = (struct vdesc){BUF + 0x800, 1, D_WRITE, 0};
    evil_vring_post(d, 0, &r, 0);
    int w = evil_vring_wait(d, &r, 200000);
    evil_puts(w == 1 && hdr[0x800] == 0 ? "evil: sanity blk ok\n" : "evil: sanity blk FAILED\n");
    evil_dev_reset(d);
}

void evil_sanity(struct evil *e)
{
    int rng = evil_find(e, ID_RNG), blk = evil_find(e, ID_BLK);
    if (rng >= 0)
        sanity_rng(e, rng);
    if (blk >= 0)
        sanity_blk(e, blk);
}
