/* Boot vCPU state: identity page tables, the boot GDT and long-mode / 32-bit register setup. */
#ifndef AMBER_VMM_X86_BOOT_CPU_H
#define AMBER_VMM_X86_BOOT_CPU_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmm/mem.h"

enum boot_cpu_mode {
    BOOT_CPU_LONG64,      /* 64-bit mode, paging on with identity tables, arg in rsi */
    BOOT_CPU_PROTECTED32, /* 32-bit protected mode, paging off, arg in rbx (PVH) */
};

#define BOOT_GDT_ENTRIES 4 /* null, unused, code (0x10), data (0x18) */
/* GDT selectors the boot protocol expects (__BOOT_CS / __BOOT_DS). */
#define BOOT_GDT_CS 0x10
#define BOOT_GDT_DS 0x18

/* Control register bits used at boot. */
#define BOOT_CR0_PE   (1ULL << 0)
#define BOOT_CR0_ET   (1ULL << 4)
#define BOOT_CR0_PG   (1ULL << 31)
#define BOOT_CR4_PAE  (1ULL << 5)
#define BOOT_EFER_LME (1ULL << 8)
#define BOOT_EFER_LMA (1ULL << 10)

/*
 * Write identity page tables mapping the first 4 GiB with 2 MiB pages at LAYOUT_PML4,
 * LAYOUT_PDPT and the four pages from LAYOUT_PD. Returns 0 or -EFAULT if RAM is too small.
 */
int boot_cpu_page_tables(struct guest_mem *m);

/*
 * Write the boot GDT at LAYOUT_GDT for mode (0x10: flat code, 64-bit or 32-bit; 0x18: flat
 * data) and set up the vCPU: *regs is overwritten (rip = entry, rflags = 0x2, rsp = rbp =
 * LAYOUT_BOOT_STACK, rsi or rbx = arg); in sregs the segment registers, GDT, CR0/CR3/CR4 and
 * EFER are set for mode (page tables written too for BOOT_CPU_LONG64), the rest is left as
 * the caller read it from KVM. Returns 0 or -EFAULT.
 */
int boot_cpu_setup(struct guest_mem *m, enum boot_cpu_mode mode, uint64_t entry, uint64_t arg,
                   struct kvm_regs *regs, struct kvm_sregs *sregs);

#endif
