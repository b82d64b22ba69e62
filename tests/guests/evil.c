/* Evil test guests: entry, console output, device probing and the virtio helpers the cases use. */
#include "tests/guests/evil.h"

#define MMIO_MAGIC 0x74726976u

void evil_main(void);

void evil_memset(void *p, int c, size_t n)
{
    volatile uint8_t *b = p; /* volatile: keep the compiler from calling memset() */
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)c;
}

void evil_puts(const char *s)
{
    while (*s)
        outb(0x3f8, (uint8_t)*s++);
}

void evil_puthex(uint64_t v)
{
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    evil_puts(&buf[i]);
}

void evil_report(const char *what, uint64_t v)
{
    evil_puts("evil: ");
    evil_puts(what);
    evil_puts(" ");
    evil_puthex(v);
    evil_puts("\n");
}

uint64_t evil_rand(struct evil *e)
{
    uint64_t x = e->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e->rng = x;
    return x;
}

uint64_t evil_access(uint64_t a, unsigned width, int is_write, uint64_t val)
{
    switch (width) {
    case 1:
        if (is_write)
            *(volatile uint8_t *)a = (uint8_t)val;
        else
            return *(volatile uint8_t *)a;
        break;
    case 2:
        if (is_write)
            *(volatile uint16_t *)a = (uint16_t)val;
        else
            return *(volatile uint16_t *)a;
        break;
    case 8:
        if (is_write)
            *(volatile uint64_t *)a = val;
        else
            return *(volatile uint64_t *)a;
        break;
    default:
        if (is_write)
            *(volatile uint32_t *)a = (uint32_t)val;
        else
            return *(volatile uint32_t *)a;
        break;
    }
    return 0;
}

uint32_t evil_status(const struct vdev *d)
{
    return mmio_r32(d->base + R_STATUS);
}

void evil_dev_reset(const struct vdev *d)
{
    mmio_w32(d->base + R_STATUS, 0);
}

int evil_dev_init(const struct vdev *d)
{
    evil_dev_reset(d);
    mmio_w32(d->base + R_STATUS, S_ACK);
    mmio_w32(d->base + R_STATUS, S_ACK | S_DRIVER);
    uint64_t want = (1ULL << F_VERSION_1) | (d->feat & (1ULL << F_INDIRECT));
    mmio_w32(d->base + R_DRV_FSEL, 0);
    mmio_w32(d->base + R_DRV_FEAT, (uint32_t)want);
    mmio_w32(d->base + R_DRV_FSEL, 1);
    mmio_w32(d->base + R_DRV_FEAT, (uint32_t)(want >> 32));
    mmio_w32(d->base + R_STATUS, S_ACK | S_DRIVER | S_FEAT_OK);
    return (evil_status(d) & S_FEAT_OK) ? 0 : -1;
}

void evil_dev_go(const struct vdev *d)
{
    mmio_w32(d->base + R_STATUS, S_ACK | S_DRIVER | S_FEAT_OK | S_DRIVER_OK);
}

uint32_t evil_queue_raw(const struct vdev *d, unsigned q, uint32_t size, uint64_t desc,
                        uint64_t avail, uint64_t used)
{
    uint64_t b = d->base;
    mmio_w32(b + R_QSEL, q);
    mmio_w32(b + R_QNUM, size);
    mmio_w32(b + R_QDESC_LO, (uint32_t)desc);
    mmio_w32(b + R_QDESC_HI, (uint32_t)(desc >> 32));
    mmio_w32(b + R_QAVAIL_LO, (uint32_t)avail);
    mmio_w32(b + R_QAVAIL_HI, (uint32_t)(avail >> 32));
    mmio_w32(b + R_QUSED_LO, (uint32_t)used);
    mmio_w32(b + R_QUSED_HI, (uint32_t)(used >> 32));
    mmio_w32(b + R_QREADY, 1);
    return mmio_r32(b + R_QREADY);
}

void evil_vring_setup(const struct evil *e, unsigned di, unsigned q, struct vring *r)
{
    (void)e;
    uint64_t base = EVIL_RINGS + (uint64_t)di * 0x10000 + (uint64_t)q * 0x3000;
    evil_memset((void *)base, 0, 0x3000);
    r->desc = (struct vdesc *)base;
    r->avail = (volatile uint16_t *)(base + 0x400);
    r->used = (volatile uint16_t *)(base + 0x1000);
    r->next_avail = 0;
    r->last_used = 0;
    evil_queue_raw(&e->dev[di], q, EVIL_QSIZE, base, base + 0x400, base + 0x1000);
}

void evil_vring_post(const struct vdev *d, unsigned q, struct vring *r, uint16_t head)
{
    r->avail[2 + (r->next_avail % EVIL_QSIZE)] = head;
    barrier();
    r->next_avail++;
    r->avail[1] = r->next_avail;
    barrier();
    mmio_w32(d->base + R_QNOTIFY, q);
}

int evil_vring_wait(const struct vdev *d, struct vring *r, unsigned polls)
{
    for (unsigned i = 0; i < polls; i++) {
        barrier();
        if (r->used[1] != r->last_used) {
            r->last_used = r->used[1];
            return 1;
        }
        if (evil_status(d) & S_NEEDS_RST)
            return 2;
        __asm__ volatile("pause");
    }
    return 0;
}

static int word_is(const char *s, const char *w)
{
    while (*w && *s == *w) {
        s++;
        w++;
    }
    return *w == 0 && (*s == 0 || *s == ' ');
}

/* The value of "key=" on amber's command line, or NULL. */
static const char *cmdline_get(const char *key)
{
    const char *s = (const char *)EVIL_CMDLINE;
    for (size_t i = 0; s[i] && i < 4096; i++) {
        if (i > 0 && s[i - 1] != ' ')
            continue;
        size_t k = 0;
        while (key[k] && s[i + k] == key[k])
            k++;
        if (!key[k] && s[i + k] == '=')
            return s + i + k + 1;
    }
    return 0;
}

static uint64_t parse_u64(const char *s)
{
    uint64_t v = 0;
    while (s && *s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    return v;
}

static void find_ram(struct evil *e)
{
    uint8_t n = *(volatile uint8_t *)(EVIL_ZERO_PAGE + 0x1e8);
    const uint8_t *t = (const uint8_t *)(EVIL_ZERO_PAGE + 0x2d0);
    for (unsigned i = 0; i < n && i < 128; i++) {
        uint64_t addr = *(const uint64_t *)(t + i * 20);
        uint64_t size = *(const uint64_t *)(t + i * 20 + 8);
        uint32_t type = *(const uint32_t *)(t + i * 20 + 16);
        if (type == 1 && addr + size <= 0x100000000ULL && addr + size > e->ram_end)
            e->ram_end = addr + size;
    }
}

static void probe(struct evil *e)
{
    for (unsigned s = 0; s < EVIL_MMIO_SLOTS; s++) {
        uint64_t b = EVIL_MMIO_BASE + s * EVIL_MMIO_SLOT;
        if (mmio_r32(b + R_MAGIC) != MMIO_MAGIC)
            continue;
        struct vdev *d = &e->dev[e->ndev];
        d->base = b;
        d->id = mmio_r32(b + R_DEVICE_ID);
        mmio_w32(b + R_DEV_FSEL, 0);
        d->feat = mmio_r32(b + R_DEV_FEAT);
        mmio_w32(b + R_DEV_FSEL, 1);
        d->feat |= (uint64_t)mmio_r32(b + R_DEV_FEAT) << 32;
        for (d->nq = 0; d->nq < 16; d->nq++) {
            mmio_w32(b + R_QSEL, d->nq);
            if (mmio_r32(b + R_QNUM_MAX) == 0)
                break;
        }
        evil_puts("evil: device ");
        evil_puthex(d->id);
        evil_puts(" at ");
        evil_puthex(b);
        evil_puts(" queues ");
        evil_puthex(d->nq);
        evil_puts("\n");
        e->ndev++;
    }
}

static const struct {
    const char *name;
    void (*fn)(struct evil *);
} cases[] = {
    {"regs", case_regs},         {"random", case_random}, {"queue_edge", case_queue_edge},
    {"chains", case_chains},     {"notify", case_notify}, {"status", case_status},
    {"unmapped", case_unmapped}, {"legacy", case_legacy}, {"reset_storm", case_reset_storm},
    {"random2", case_random}, /* a second round, from where the first left the generator */
};

void evil_main(void)
{
    static struct evil e;
    evil_puts("amber-guest: ready\n");
    const char *seed = cmdline_get("seed");
    e.rng = seed ? parse_u64(seed) * 2654435761ULL + 1 : 0x9e3779b97f4a7c15ULL;
    find_ram(&e);
    evil_report("ram_end", e.ram_end);
    probe(&e);
    const char *name = cmdline_get("evil");
    if (name && word_is(name, "triple")) {
        evil_puts("evil: triple fault\n");
        evil_triple_fault(); /* does not return */
    }
    int all = name && word_is(name, "all"), found = 0;
    for (unsigned i = 0; name && i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!all && !word_is(name, cases[i].name))
            continue;
        evil_puts("evil: case ");
        evil_puts(cases[i].name);
        evil_puts("\n");
        cases[i].fn(&e);
        found = 1;
        /* After each case: every device reset, and the rng and blk still serve requests. */
        for (unsigned k = 0; k < e.ndev; k++)
            evil_dev_reset(&e.dev[k]);
        evil_sanity(&e);
    }
    if (!found)
        evil_puts("evil: no such case (give evil=NAME or evil=all on the command line)\n");
    evil_report("ops", e.ops);
    evil_puts("evil: done\n");
}

int evil_find(const struct evil *e, uint32_t id)
{
    for (unsigned i = 0; i < e->ndev; i++)
        if (e->dev[i].id == id)
            return (int)i;
    return -1;
}

/* The compiler may emit calls to these for struct copies and loops. */
void *memset(void *p, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);

void *memset(void *p, int c, size_t n)
{
    evil_memset(p, c, n);
    return p;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    volatile uint8_t *d = dst;
    const volatile uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
    return dst;
}
