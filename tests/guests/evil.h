/* Evil test guests: freestanding helpers shared by the attack cases (port/MMIO access, virtio). */
#ifndef AMBER_TESTS_GUESTS_EVIL_H
#define AMBER_TESTS_GUESTS_EVIL_H

#include <stddef.h>
#include <stdint.h>

/* Guest physical layout (identity-mapped, 64-bit mode at entry). */
#define EVIL_CMDLINE      0x20000ULL    /* amber's LAYOUT_CMDLINE */
#define EVIL_ZERO_PAGE    0x7000ULL     /* boot_params: e820 table */
#define EVIL_MMIO_BASE    0xD0000000ULL /* virtio-mmio slot n at BASE + n * SLOT */
#define EVIL_MMIO_SLOT    0x1000ULL
#define EVIL_MMIO_SLOTS   19           /* GSI 5..23 */
#define EVIL_RINGS        0x1000000ULL /* 16 MiB: well-formed rings, 64 KiB per device */
#define EVIL_BUFS         0x1800000ULL /* 24 MiB: buffers */
#define EVIL_GARBAGE      0x2000000ULL /* 32 MiB: 1 MiB of random bytes for the random case */
#define EVIL_GARBAGE_SIZE 0x100000ULL
#define EVIL_QSIZE        64 /* queue size used for well-formed rings */

/* virtio-mmio registers and bits (virtio 1.2, 4.2.2). */
#define R_MAGIC     0x000
#define R_DEVICE_ID 0x008
#define R_DEV_FEAT  0x010
#define R_DEV_FSEL  0x014
#define R_DRV_FEAT  0x020
#define R_DRV_FSEL  0x024
#define R_QSEL      0x030
#define R_QNUM_MAX  0x034
#define R_QNUM      0x038
#define R_QREADY    0x044
#define R_QNOTIFY   0x050
#define R_ISR       0x060
#define R_ISR_ACK   0x064
#define R_STATUS    0x070
#define R_QDESC_LO  0x080
#define R_QDESC_HI  0x084
#define R_QAVAIL_LO 0x090
#define R_QAVAIL_HI 0x094
#define R_QUSED_LO  0x0a0
#define R_QUSED_HI  0x0a4
#define R_CONFIG    0x100
#define S_ACK       1
#define S_DRIVER    2
#define S_DRIVER_OK 4
#define S_FEAT_OK   8
#define S_NEEDS_RST 64
#define S_FAILED    128
#define F_INDIRECT  28
#define F_VERSION_1 32
#define D_NEXT      1
#define D_WRITE     2
#define D_INDIRECT  4

struct vdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* One device found by probing the slots. */
struct vdev {
    uint64_t base;
    uint32_t id;   /* 2 blk, 4 rng, 19 vsock */
    unsigned nq;   /* queues with a non-zero QueueNumMax */
    uint64_t feat; /* offered features */
};

/* A well-formed split ring of EVIL_QSIZE entries owned by the guest. */
struct vring {
    struct vdesc *desc;
    volatile uint16_t *avail; /* flags, idx, ring[QSIZE], used_event */
    volatile uint16_t *used;  /* flags, idx, then {u32 id, u32 len}[QSIZE] */
    uint16_t next_avail;
    uint16_t last_used;
};

struct evil {
    struct vdev dev[EVIL_MMIO_SLOTS];
    unsigned ndev;
    uint64_t ram_end;  /* end of the highest e820 RAM range below 4 GiB */
    uint64_t rng;      /* xorshift state */
    unsigned long ops; /* attack operations done */
};

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void mmio_w32(uint64_t a, uint32_t v)
{
    *(volatile uint32_t *)a = v;
}
static inline uint32_t mmio_r32(uint64_t a)
{
    return *(volatile uint32_t *)a;
}
static inline void barrier(void)
{
    __asm__ volatile("mfence" ::: "memory");
}

/* An access of 1, 2, 4 or 8 bytes at a (read when is_write is 0); returns what was read. */
uint64_t evil_access(uint64_t a, unsigned width, int is_write, uint64_t val);

/* Load an empty IDT and execute ud2 at evil_fault_rip (evil_start.S): the guest triple-faults. */
void evil_triple_fault(void) __attribute__((noreturn));

void evil_puts(const char *s);
void evil_puthex(uint64_t v);
/* "evil: <what> <hex>\n" */
void evil_report(const char *what, uint64_t v);
uint64_t evil_rand(struct evil *e);
void evil_memset(void *p, int c, size_t n);

/* Virtio helpers. evil_dev_init resets the device, negotiates VERSION_1 (and INDIRECT when
 * offered) and reports whether FEATURES_OK stuck (0) or not (-1). */
int evil_dev_init(const struct vdev *d);
void evil_dev_reset(const struct vdev *d);
/* Set DRIVER_OK (after evil_dev_init and queue setup). */
void evil_dev_go(const struct vdev *d);
/* Index of the first device with this id, or -1. */
int evil_find(const struct evil *e, uint32_t id);
/* Program queue q with raw addresses and size, then QueueReady=1; returns QueueReady. */
uint32_t evil_queue_raw(const struct vdev *d, unsigned q, uint32_t size, uint64_t desc,
                        uint64_t avail, uint64_t used);
/* A well-formed ring for (device index di, queue q) in EVIL_RINGS, programmed and ready. */
void evil_vring_setup(const struct evil *e, unsigned di, unsigned q, struct vring *r);
/* Put head on the avail ring, publish it and notify queue q. */
void evil_vring_post(const struct vdev *d, unsigned q, struct vring *r, uint16_t head);
/* Poll until the used index moves or NEEDS_RESET shows, at most `polls` register reads.
 * Returns 1 used, 2 needs reset, 0 neither. */
int evil_vring_wait(const struct vdev *d, struct vring *r, unsigned polls);
uint32_t evil_status(const struct vdev *d);

/* The attack cases; each returns normally (the caller prints "evil: done"). */
void case_regs(struct evil *e);
void case_random(struct evil *e);
void case_queue_edge(struct evil *e);
void case_chains(struct evil *e);
void case_notify(struct evil *e);
void case_status(struct evil *e);
void case_unmapped(struct evil *e);
void case_legacy(struct evil *e);
void case_reset_storm(struct evil *e);

/* After every case: the rng and blk devices still serve well-formed requests. */
void evil_sanity(struct evil *e);

#endif
