/* x86-64 boot state: e820 map, initrd placement, zero page, PVH start info and boot_setup(). */
#include "vmm/x86/boot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/x86/boot_cpu.h"
#include "vmm/x86/bootparam.h"
#include "vmm/log.h"

#define PAGE_SIZE 0x1000ULL

static int e820_add(struct e820_entry *out, unsigned max, unsigned *n, uint64_t addr, uint64_t size,
                    uint32_t type)
{
    if (*n >= max)
        return -ENOSPC;
    out[*n] = (struct e820_entry){.addr = addr, .size = size, .type = type};
    (*n)++;
    return 0;
}

int boot_e820_build(const struct guest_mem *m, struct e820_entry *out, unsigned max)
{
    uint64_t low = mem_low_size(m);
    unsigned n = 0;
    int rc = 0;

    if (low <= LAYOUT_HIGH_RAM)
        return -EINVAL;
    rc |= e820_add(out, max, &n, 0, LAYOUT_EBDA_START, E820_RAM);
    rc |= e820_add(out, max, &n, LAYOUT_EBDA_START, LAYOUT_HIGH_RAM - LAYOUT_EBDA_START,
                   E820_RESERVED);
    rc |= e820_add(out, max, &n, LAYOUT_HIGH_RAM, low - LAYOUT_HIGH_RAM, E820_RAM);
    rc |= e820_add(out, max, &n, LAYOUT_IOAPIC, PAGE_SIZE, E820_RESERVED);
    rc |= e820_add(out, max, &n, LAYOUT_LAPIC, PAGE_SIZE, E820_RESERVED);
    for (unsigned i = 1; i < m->nregions; i++)
        rc |= e820_add(out, max, &n, m->region[i].gpa, m->region[i].size, E820_RAM);
    return rc ? -ENOSPC : (int)n;
}

int boot_load_initrd(struct guest_mem *m, const struct kernel_info *k, const uint8_t *data,
                     size_t len, uint64_t *gpa_out)
{
    if (!data || len == 0)
        return -EINVAL;
    uint64_t top = mem_low_size(m);
    if (k->initrd_addr_max < top - 1)
        top = k->initrd_addr_max + 1;
    if (len > top)
        return -ENOSPC;
    uint64_t gpa = (top - len) & ~(PAGE_SIZE - 1);
    /* Below it: the kernel (and its decompression space) and the boot data under 1 MiB. */
    if (gpa < k->load_end || gpa < LAYOUT_HIGH_RAM)
        return -ENOSPC;
    if (mem_write(m, gpa, data, len) < 0)
        return -ENOSPC;
    *gpa_out = gpa;
    return 0;
}

/* Check the initrd range the caller hands to boot_setup(). */
static int check_initrd(const struct guest_mem *m, const struct kernel_info *k, uint64_t gpa,
                        uint64_t len, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    uint64_t end;
    if (__builtin_add_overflow(gpa, len, &end) || end > UINT32_MAX || !mem_ptr(m, gpa, len))
        return errmsg(err, errlen, -EINVAL,
                      "initrd at 0x%" PRIx64 "+0x%" PRIx64 " is not in low guest RAM", gpa, len);
    if (end - 1 > k->initrd_addr_max)
        return errmsg(err, errlen, -EINVAL, "initrd ends above the kernel's limit 0x%" PRIx64,
                      k->initrd_addr_max);
    if (gpa < k->load_end && k->load_addr < end)
        return errmsg(err, errlen, -EINVAL, "initrd overlaps the kernel");
    return 0;
}

static int write_cmdline(struct guest_mem *m, const struct kernel_info *k, const char *cmdline,
                         char *err, size_t errlen)
{
    size_t len = strlen(cmdline);
    uint64_t max =
        k->cmdline_max < LAYOUT_CMDLINE_MAX - 1 ? k->cmdline_max : LAYOUT_CMDLINE_MAX - 1;
    if (len > max)
        return errmsg(err, errlen, -E2BIG,
                      "command line is %zu bytes but the kernel takes at most %" PRIu64, len, max);
    if (mem_write(m, LAYOUT_CMDLINE, cmdline, len + 1) < 0)
        return errmsg(err, errlen, -EFAULT, "guest RAM too small for the command line");
    return 0;
}

/* A setup header for an ELF vmlinux entered at startup_64, which has none of its own. */
static void synth_setup_header(struct bp_setup_header *h, const struct kernel_info *k)
{
    h->boot_flag = 0xAA55;
    memcpy(&h->header, "HdrS", 4);
    h->version = KERNEL_MIN_BOOT_VERSION;
    h->loadflags = BP_LOADED_HIGH;
    h->kernel_alignment = 0x200000;
    h->initrd_addr_max = (uint32_t)k->initrd_addr_max;
    h->cmdline_size = (uint32_t)(k->cmdline_max < LAYOUT_CMDLINE_MAX - 1 ? k->cmdline_max
                                                                         : LAYOUT_CMDLINE_MAX - 1);
}

static int write_zero_page(struct guest_mem *m, const struct kernel_info *k, uint64_t initrd_gpa,
                           uint64_t initrd_len, const struct e820_entry *e820, unsigned n)
{
    struct boot_params *bp = mem_ptr(m, LAYOUT_ZERO_PAGE, sizeof(*bp));
    if (!bp)
        return -EFAULT;
    memset(bp, 0, sizeof(*bp));
    if (k->kind == KERNEL_BZIMAGE)
        memcpy(&bp->hdr, k->setup_header, k->setup_header_len);
    else
        synth_setup_header(&bp->hdr, k);

    bp->hdr.type_of_loader = BP_LOADER_UNDEFINED;
    bp->hdr.loadflags = (uint8_t)((bp->hdr.loadflags | BP_CAN_USE_HEAP) & ~BP_KEEP_SEGMENTS);
    bp->hdr.heap_end_ptr = BP_HEAP_END_PTR;
    bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
    bp->hdr.ramdisk_image = (uint32_t)initrd_gpa;
    bp->hdr.ramdisk_size = (uint32_t)initrd_len;
    bp->acpi_rsdp_addr = LAYOUT_ACPI;
    memcpy(bp->e820_table, e820, n * sizeof(*e820));
    bp->e820_entries = (uint8_t)n;
    return 0;
}

static int write_pvh_info(struct guest_mem *m, uint64_t initrd_gpa, uint64_t initrd_len,
                          const struct e820_entry *e820, unsigned n)
{
    uint8_t *page = mem_ptr(m, LAYOUT_PVH_INFO, PAGE_SIZE);
    if (!page || n > PVH_MEMMAP_MAX)
        return -EFAULT;
    memset(page, 0, PAGE_SIZE);

    struct hvm_start_info si = {
        .magic = HVM_START_MAGIC,
        .version = 1,
        .cmdline_paddr = LAYOUT_CMDLINE,
        .rsdp_paddr = LAYOUT_ACPI,
        .memmap_paddr = LAYOUT_PVH_INFO + PVH_MEMMAP_OFFSET,
        .memmap_entries = n,
    };
    if (initrd_len) {
        struct hvm_modlist_entry mod = {.paddr = initrd_gpa, .size = initrd_len};
        memcpy(page + PVH_MODLIST_OFFSET, &mod, sizeof(mod));
        si.nr_modules = 1;
        si.modlist_paddr = LAYOUT_PVH_INFO + PVH_MODLIST_OFFSET;
    }
    memcpy(page, &si, sizeof(si));
    for (unsigned i = 0; i < n; i++) {
        struct hvm_memmap_table_entry e = {
            .addr = e820[i].addr, .size = e820[i].size, .type = e820[i].type};
        memcpy(page + PVH_MEMMAP_OFFSET + i * sizeof(e), &e, sizeof(e));
    }
    return 0;
}

int boot_setup(struct guest_mem *m, const struct kernel_info *k, const char *cmdline,
               uint64_t initrd_gpa, uint64_t initrd_len, struct kvm_regs *regs,
               struct kvm_sregs *sregs, char *err, size_t errlen)
{
    struct e820_entry e820[E820_MAX_ENTRIES];
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (k->kind != KERNEL_BZIMAGE && k->kind != KERNEL_ELF_PVH && k->kind != KERNEL_ELF64)
        return errmsg(err, errlen, -EINVAL, "no kernel loaded");
    int n = boot_e820_build(m, e820, E820_MAX_ENTRIES);
    if (n < 0)
        return errmsg(err, errlen, -EINVAL, "guest RAM is too small to boot (%" PRIu64 " bytes)",
                      mem_low_size(m));
    if ((rc = check_initrd(m, k, initrd_gpa, initrd_len, err, errlen)) < 0)
        return rc;
    if ((rc = write_cmdline(m, k, cmdline ? cmdline : "", err, errlen)) < 0)
        return rc;

    bool pvh = k->kind == KERNEL_ELF_PVH;
    if (pvh)
        rc = write_pvh_info(m, initrd_gpa, initrd_len, e820, (unsigned)n);
    else
        rc = write_zero_page(m, k, initrd_gpa, initrd_len, e820, (unsigned)n);
    if (rc < 0)
        return errmsg(err, errlen, rc, "guest RAM too small for the boot information");

    rc = boot_cpu_setup(m, pvh ? BOOT_CPU_PROTECTED32 : BOOT_CPU_LONG64, k->entry,
                        pvh ? LAYOUT_PVH_INFO : LAYOUT_ZERO_PAGE, regs, sregs);
    if (rc < 0)
        return errmsg(err, errlen, rc, "guest RAM too small for page tables and GDT");
    return 0;
}
