/* Evil test guests: MMIO to unmapped addresses, stray and string port I/O, and hostile UART and
 * i8042 register traffic. */
#include "tests/guests/evil.h"

#define COM1 0x3f8

void case_unmapped(struct evil *e)
{
    uint64_t R = e->ram_end;
    const uint64_t addrs[] = {
        R,
        R + 0x1000,
        R + 0x123456,
        0x10000000ULL,
        0xC0000000ULL,
        0xCFFFFFFCULL, /* 8-byte accesses here straddle into slot 0 */
        EVIL_MMIO_BASE + 0xffc,
        EVIL_MMIO_BASE + 0xff9,
        EVIL_MMIO_BASE + 19 * EVIL_MMIO_SLOT,
        EVIL_MMIO_BASE + 31 * EVIL_MMIO_SLOT + 0x70,
        0xDFFFFFF8ULL,
        0xFEBFF000ULL,
        0xFED00000ULL,
        0xFFFFFFF0ULL, /* +3, 8 bytes wide, still ends below 4 GiB (past it is unmapped) */
    };
    static const unsigned w[] = {1, 2, 4, 8};
    for (unsigned i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        for (unsigned k = 0; k < 4; k++) {
            evil_access(addrs[i], w[k], 0, 0);
            evil_access(addrs[i], w[k], 1, evil_rand(e));
            evil_access(addrs[i] + 1, w[k], 1, evil_rand(e));
            evil_access(addrs[i] + 3, w[k], 0, 0);
        }
        e->ops += 16;
    }
    for (unsigned s = e->ndev; s < 32; s++)
        (void)mmio_r32(EVIL_MMIO_BASE + s * EVIL_MMIO_SLOT);

    /* Ports nobody owns (reads everywhere, writes away from the ones that stop the VM and from
     * the in-kernel PIC/PIT, which are KVM's business). */
    for (uint32_t p = 0; p < 0x10000; p += 0x3d) {
        (void)inb((uint16_t)p);
        (void)inl((uint16_t)(p & ~3u));
        int owned =
            (p >= 0x20 && p <= 0xa1) || (p >= 0x3c0 && p <= 0x3ff) || p == 0x4d0 || p == 0x4d1;
        if (!owned) {
            outb((uint16_t)p, (uint8_t)evil_rand(e));
            outl((uint16_t)(p & ~3u), (uint32_t)evil_rand(e));
        }
        e->ops += 4;
    }
    /* String I/O: long rep ins/outs on an unowned port. */
    uint64_t buf = EVIL_BUFS;
    uint64_t n = 4096;
    __asm__ volatile("rep outsb" : "+S"(buf), "+c"(n) : "d"(0x1234) : "memory");
    buf = EVIL_BUFS, n = 4096;
    __asm__ volatile("rep insb" : "+D"(buf), "+c"(n) : "d"(0x1234) : "memory");
    buf = EVIL_BUFS, n = 1024;
    __asm__ volatile("rep insl" : "+D"(buf), "+c"(n) : "d"(0x1230) : "memory");
    /* Accesses wider than the device's range, straddling its ends. */
    outw(0x3ff, 0x4141);
    (void)inl(0x3fd);
    outw(0x63, 0x2000); /* offset 3, then command 0x20 (read command byte) */
    (void)inl(0x62);
    outw(0x3c1, 0); /* sleep status + the byte after it */
    e->ops += 9300;
}

static void uart_restore(void)
{
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 1);
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 1, 0);
    outb(COM1 + 2, 0);
    outb(COM1 + 4, 0);
}

void case_legacy(struct evil *e)
{
    /* UART: every value into every register (keeping the port usable for the report). */
    for (unsigned reg = 1; reg < 8; reg++) {
        for (unsigned v = 0; v < 256; v++) {
            outb((uint16_t)(COM1 + reg), (uint8_t)v);
            (void)inb((uint16_t)(COM1 + (v & 7)));
        }
        e->ops += 512;
    }
    uart_restore();
    /* Divisor 0, then loopback with a flood far past the FIFO, then read it all back. */
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0);
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0x07); /* FIFO on, clear both */
    outb(COM1 + 1, 0x0f); /* every interrupt */
    outb(COM1 + 4, 0x1f); /* loopback */
    for (unsigned i = 0; i < 2048; i++)
        outb(COM1, (uint8_t)i);
    for (unsigned i = 0; i < 2100; i++) {
        (void)inb(COM1 + 5);
        (void)inb(COM1);
        (void)inb(COM1 + 2);
    }
    e->ops += 8400;
    uart_restore();
    /* A burst of console output. */
    for (unsigned i = 0; i < 4096; i++)
        outb(COM1, (uint8_t)((i % 64) == 63 ? '\n' : 'A' + i % 26));
    evil_puts("\n");

    /* i8042: every controller command except those that pulse the reset line (0xf0-0xff) and
     * write-output-port (0xd1, whose data byte could clear the reset bit), each with a data
     * byte and reads of both ports. */
    for (unsigned c = 0; c < 0xf0; c++) {
        if (c == 0xd1)
            continue;
        outb(0x64, (uint8_t)c);
        (void)inb(0x64);
        outb(0x60, (uint8_t)evil_rand(e));
        (void)inb(0x60);
        (void)inb(0x60);
        e->ops += 5;
    }
    outb(0x64, 0xd1);
    outb(0x60, 0x03); /* output port: reset line high, A20 on */
    /* Keyboard commands as data bytes, then an output buffer flood via write-to-aux/kbd. */
    for (unsigned v = 0; v < 256; v++) {
        outb(0x60, (uint8_t)v);
        (void)inb(0x64);
    }
    for (unsigned i = 0; i < 300; i++) {
        outb(0x64, (uint8_t)(i & 1 ? 0xd2 : 0xd3));
        outb(0x60, (uint8_t)i);
    }
    for (unsigned i = 0; i < 400; i++)
        (void)inb(0x60);
    outb(0x64, 0x60); /* command byte: interrupts on */
    outb(0x60, 0x47);
    e->ops += 1600;
}
