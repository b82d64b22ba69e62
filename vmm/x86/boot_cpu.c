/* Boot vCPU state: identity page tables, the boot GDT and long-mode / 32-bit register setup. */
#include "vmm/x86/boot_cpu.h"

#include <errno.h>
#include <string.h>

#include "vmm/layout.h"

#define PT_PRESENT 0x1ULL
#define PT_RW      0x2ULL
#define PT_PS      0x80ULL /* 2 MiB page in a page directory entry */
#define PAGE_SIZE  0x1000ULL

/* Flat 4 GiB descriptors, accessed bit set so that the cached type matches the table. */
#define GDT_CODE64 0x00af9b000000ffffULL /* G, L, P, DPL0, execute/read */
#define GDT_CODE32 0x00cf9b000000ffffULL /* G, D, P, DPL0, execute/read */
#define GDT_DATA   0x00cf93000000ffffULL /* G, B, P, DPL0, read/write */

int boot_cpu_page_tables(struct guest_mem *m)
{
    uint64_t *pml4 = mem_ptr(m, LAYOUT_PML4, PAGE_SIZE);
    uint64_t *pdpt = mem_ptr(m, LAYOUT_PDPT, PAGE_SIZE);
    uint64_t *pd = mem_ptr(m, LAYOUT_PD, 4 * PAGE_SIZE);
    if (!pml4 || !pdpt || !pd)
        return -EFAULT;

    memset(pml4, 0, PAGE_SIZE);
    memset(pdpt, 0, PAGE_SIZE);
    pml4[0] = LAYOUT_PDPT | PT_PRESENT | PT_RW;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (LAYOUT_PD + i * PAGE_SIZE) | PT_PRESENT | PT_RW;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PT_PRESENT | PT_RW | PT_PS;
    return 0;
}

/* The cached (hidden) part of a segment register, decoded from its GDT descriptor. */
static struct kvm_segment seg_from_desc(uint64_t d, uint16_t selector)
{
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    uint8_t g = (d >> 55) & 1;
    return (struct kvm_segment){
        .base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000),
        .limit = g ? (limit << 12) | 0xfff : limit,
        .selector = selector,
        .type = (d >> 40) & 0xf,
        .s = (d >> 44) & 1,
        .dpl = (d >> 45) & 3,
        .present = (d >> 47) & 1,
        .avl = (d >> 52) & 1,
        .l = (d >> 53) & 1,
        .db = (d >> 54) & 1,
        .g = g,
    };
}

int boot_cpu_setup(struct guest_mem *m, enum boot_cpu_mode mode, uint64_t entry, uint64_t arg,
                   struct kvm_regs *regs, struct kvm_sregs *sregs)
{
    bool long64 = mode == BOOT_CPU_LONG64;
    uint64_t gdt[BOOT_GDT_ENTRIES] = {0, 0, long64 ? GDT_CODE64 : GDT_CODE32, GDT_DATA};
    if (mem_write(m, LAYOUT_GDT, gdt, sizeof(gdt)) < 0)
        return -EFAULT;
    if (long64 && boot_cpu_page_tables(m) < 0)
        return -EFAULT;

    struct kvm_segment code = seg_from_desc(gdt[BOOT_GDT_CS / 8], BOOT_GDT_CS);
    struct kvm_segment data = seg_from_desc(gdt[BOOT_GDT_DS / 8], BOOT_GDT_DS);
    sregs->cs = code;
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->gdt.base = LAYOUT_GDT;
    sregs->gdt.limit = sizeof(gdt) - 1;

    /* Set CR0 outright: the reset value has CD and NW (caches off), which the kernel does not
     * expect to inherit. */
    if (long64) {
        sregs->cr0 = BOOT_CR0_PE | BOOT_CR0_ET | BOOT_CR0_PG;
        sregs->cr3 = LAYOUT_PML4;
        sregs->cr4 = BOOT_CR4_PAE;
        sregs->efer = BOOT_EFER_LME | BOOT_EFER_LMA;
    } else {
        sregs->cr0 = BOOT_CR0_PE | BOOT_CR0_ET;
        sregs->cr3 = 0;
        sregs->cr4 = 0;
        sregs->efer = 0;
    }

    memset(regs, 0, sizeof(*regs));
    regs->rflags = 0x2;
    regs->rip = entry;
    regs->rsp = LAYOUT_BOOT_STACK;
    regs->rbp = LAYOUT_BOOT_STACK;
    if (long64)
        regs->rsi = arg;
    else
        regs->rbx = arg;
    return 0;
}
