/* x86-64 boot state: e820 map, zero page, PVH start info, identity page tables, GDT, registers. */
#ifndef AMBER_VMM_X86_BOOT_H
#define AMBER_VMM_X86_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm/mem.h"
#include "vmm/x86/boot_cpu.h"
#include "vmm/x86/kernel.h"

#define E820_RAM      1
#define E820_RESERVED 2

/* One e820 entry, laid out as in boot_params.e820_table. */
struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

/* Most entries the zero page holds (boot_params.e820_table). */
#define E820_MAX_ENTRIES 128

/*
 * Fill out[0..max) with the guest's memory map, sorted by address: RAM [0, EBDA), reserved
 * [EBDA, 1 MiB) (BIOS area holding the ACPI tables), RAM [1 MiB, end of low RAM), reserved
 * IOAPIC and LAPIC pages, and RAM from 4 GiB for the high region if any. Returns the number of
 * entries, or -ENOSPC if max is too small, or -EINVAL if guest RAM is smaller than 1 MiB.
 */
int boot_e820_build(const struct guest_mem *m, struct e820_entry *out, unsigned max);

/*
 * Place an initrd of len bytes at the highest page-aligned address in low RAM that stays below
 * the kernel's initrd_addr_max, and copy data there. It must not overlap the kernel
 * ([k->load_addr, k->load_end)). Sets *gpa_out. Returns 0, -EINVAL for an empty initrd, or
 * -ENOSPC when it does not fit.
 */
int boot_load_initrd(struct guest_mem *m, const struct kernel_info *k, const uint8_t *data,
                     size_t len, uint64_t *gpa_out);

/*
 * Write every boot structure for the kernel k (already loaded with kernel_load()) into guest RAM
 * and set the boot vCPU's registers:
 *  - command line at LAYOUT_CMDLINE (NUL-terminated; its length is checked against the kernel's
 *    cmdline_size and LAYOUT_CMDLINE_MAX), GDT at LAYOUT_GDT (0x10 code, 0x18 data);
 *  - bzImage / ELF64: zero page at LAYOUT_ZERO_PAGE (setup header, e820 map, initrd, command
 *    line, acpi_rsdp_addr = LAYOUT_ACPI), identity page tables for the first 4 GiB at
 *    LAYOUT_PML4/PDPT/PD, and 64-bit long mode: rip = entry, rsi = zero page;
 *  - ELF PVH: hvm_start_info (version 1, command line, initrd module, memory map,
 *    rsdp = LAYOUT_ACPI) at LAYOUT_PVH_INFO, 32-bit protected mode with paging off:
 *    rip = entry, rbx = LAYOUT_PVH_INFO.
 * initrd_gpa/initrd_len describe the initrd placed by boot_load_initrd() (0/0 for none).
 * sregs must hold the vCPU's current special registers (KVM_GET_SREGS); they are modified in
 * place, and *regs is overwritten. ACPI tables are not written here (see acpi_build()).
 * Returns 0, or -EINVAL / -E2BIG / -EFAULT with a reason in err.
 */
int boot_setup(struct guest_mem *m, const struct kernel_info *k, const char *cmdline,
               uint64_t initrd_gpa, uint64_t initrd_len, struct kvm_regs *regs,
               struct kvm_sregs *sregs, char *err, size_t errlen);

#endif
