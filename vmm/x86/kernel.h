/* x86-64 kernel images: parse and load a bzImage (boot protocol >= 2.12) or an ELF64 vmlinux. */
#ifndef AMBER_VMM_X86_KERNEL_H
#define AMBER_VMM_X86_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/mem.h"

enum kernel_kind {
    KERNEL_BZIMAGE = 1, /* enter at the 64-bit entry with a zero page in rsi */
    KERNEL_ELF_PVH,     /* enter at the Xen PHYS32_ENTRY in 32-bit mode, hvm_start_info in ebx */
    KERNEL_ELF64,       /* enter at e_entry (made physical) in 64-bit mode, zero page in rsi */
};

/* Setup header bytes kept from a bzImage: boot_params offsets 0x1f1 up to 0x26c (protocol 2.15). */
#define KERNEL_SETUP_HDR_OFFSET 0x1f1
#define KERNEL_SETUP_HDR_MAX    (0x26c - KERNEL_SETUP_HDR_OFFSET)

/* Lowest boot protocol version accepted for a bzImage (2.12: xloadflags, 64-bit entry). */
#define KERNEL_MIN_BOOT_VERSION 0x020c

struct kernel_info {
    enum kernel_kind kind;
    uint64_t entry;        /* guest physical entry point (64-bit entry, or the 32-bit PVH entry) */
    uint64_t load_addr;    /* lowest guest physical address the kernel occupies */
    uint64_t load_end;     /* first address past everything the kernel may use while booting
                            * (for a bzImage this covers init_size at the runtime address) */
    uint16_t boot_version; /* bzImage boot protocol version, e.g. 0x020f; 0 for ELF */
    uint64_t initrd_addr_max; /* highest address an initrd byte may occupy */
    uint64_t cmdline_max;     /* longest command line the kernel takes, without the NUL */
    uint8_t setup_header[KERNEL_SETUP_HDR_MAX]; /* bzImage only: image bytes from 0x1f1 */
    size_t setup_header_len;                    /* bytes valid in setup_header (0 for ELF) */
};

/*
 * Parse and validate a kernel image held in img[0..len) without touching guest memory.
 * low_ram_bytes is the size of guest RAM below the MMIO gap: every byte the kernel would occupy
 * must lie in [LAYOUT_HIGH_RAM, low_ram_bytes). Fills *out on success. Returns 0, or -ENOEXEC
 * (not a kernel we can boot: bad magic, wrong class/machine, old protocol, no 64-bit entry) or
 * -EINVAL (truncated or inconsistent image, or it does not fit), with a one-line reason in err.
 */
int kernel_probe(const uint8_t *img, size_t len, uint64_t low_ram_bytes, struct kernel_info *out,
                 char *err, size_t errlen);

/*
 * kernel_probe() and then copy the kernel into guest RAM: a bzImage's protected-mode code at
 * out->load_addr (1 MiB), an ELF's PT_LOAD segments at their p_paddr with the bss zeroed.
 * Returns 0 or a negative errno as kernel_probe(), with a reason in err.
 */
int kernel_load(struct guest_mem *m, const uint8_t *img, size_t len, struct kernel_info *out,
                char *err, size_t errlen);

/* A short name for a kernel kind ("bzImage", "ELF (PVH)", "ELF (64-bit)"). */
const char *kernel_kind_name(enum kernel_kind kind);

#endif
