/* Unit tests for the x86 boot builders: e820, initrd placement, zero page, PVH info, vCPU state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/x86_test_images.h"
#include "vmm/layout.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/boot_cpu.h"
#include "vmm/x86/bootparam.h"

#define MEM_BYTES (64ULL << 20)

struct fx {
    struct guest_mem m;
    uint8_t img[64 * 1024];
    struct kernel_info k;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    char err[160];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || mem_init(&f->m, MEM_BYTES) < 0)
        return -1;
    /* Registers as KVM reports them after reset: CD|NW|ET, and some junk to be overwritten. */
    f->sregs.cr0 = 0x60000010;
    f->sregs.tr.type = 11;
    f->sregs.tr.present = 1;
    f->regs.rax = 0x1234;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mem_free(&f->m);
    free(f);
    return 0;
}

static void load_bz(struct fx *f)
{
    size_t len = ti_bzimage(f->img, 0x020f, 0, 4096);
    assert_int_equal(kernel_load(&f->m, f->img, len, &f->k, f->err, sizeof(f->err)), 0);
}

static int do_setup(struct fx *f, const char *cmdline, uint64_t initrd, uint64_t initrd_len)
{
    return boot_setup(&f->m, &f->k, cmdline, initrd, initrd_len, &f->regs, &f->sregs, f->err,
                      sizeof(f->err));
}

static void assert_entry(const struct e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
    assert_int_equal(e->addr, addr);
    assert_int_equal(e->size, size);
    assert_int_equal(e->type, type);
}

static void test_e820_low_only(void **state)
{
    struct fx *f = *state;
    struct e820_entry e[E820_MAX_ENTRIES];
    assert_int_equal(boot_e820_build(&f->m, e, E820_MAX_ENTRIES), 5);
    assert_entry(&e[0], 0, 0x9fc00, E820_RAM);
    assert_entry(&e[1], 0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED);
    assert_entry(&e[2], 0x100000, MEM_BYTES - 0x100000, E820_RAM);
    assert_entry(&e[3], LAYOUT_IOAPIC, 0x1000, E820_RESERVED);
    assert_entry(&e[4], LAYOUT_LAPIC, 0x1000, E820_RESERVED);
    assert_int_equal(boot_e820_build(&f->m, e, 4), -ENOSPC);
}

static void test_e820_high(void **state)
{
    (void)state;
    struct guest_mem m;
    struct e820_entry e[E820_MAX_ENTRIES];
    assert_int_equal(mem_init(&m, 5ULL << 30), 0); /* 3 GiB low + 2 GiB from 4 GiB */
    int n = boot_e820_build(&m, e, E820_MAX_ENTRIES);
    assert_int_equal(n, 6);
    assert_entry(&e[2], 0x100000, MEM_GAP_START - 0x100000, E820_RAM);
    assert_entry(&e[5], MEM_GAP_END, 2ULL << 30, E820_RAM);
    for (int i = 1; i < n; i++) /* sorted, not overlapping */
        assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
    mem_free(&m);

    assert_int_equal(mem_init(&m, 1ULL << 20), 0);
    assert_int_equal(boot_e820_build(&m, e, E820_MAX_ENTRIES), -EINVAL);
    mem_free(&m);
}

static void test_initrd_placement(void **state)
{
    struct fx *f = *state;
    load_bz(f);
    static uint8_t rd[10000];
    memset(rd, 0x77, sizeof(rd));
    uint64_t gpa = 0;
    assert_int_equal(boot_load_initrd(&f->m, &f->k, rd, sizeof(rd), &gpa), 0);
    assert_int_equal(gpa & 0xfff, 0);
    assert_true(gpa + sizeof(rd) <= MEM_BYTES);
    assert_true(gpa + sizeof(rd) > MEM_BYTES - 0x1000); /* as high as it goes */
    assert_memory_equal(mem_ptr(&f->m, gpa, sizeof(rd)), rd, sizeof(rd));

    /* initrd_addr_max keeps it lower. */
    struct kernel_info k = f->k;
    k.initrd_addr_max = 0x1ffffff;
    assert_int_equal(boot_load_initrd(&f->m, &k, rd, sizeof(rd), &gpa), 0);
    assert_true(gpa + sizeof(rd) - 1 <= 0x1ffffff);
    assert_true(gpa >= 0x1ffffff - 0x1000 - sizeof(rd));

    /* Does not fit above the kernel, or is empty. */
    size_t big = MEM_BYTES - f->k.load_end + 0x1000;
    uint8_t *huge = calloc(1, big);
    assert_int_equal(boot_load_initrd(&f->m, &f->k, huge, big, &gpa), -ENOSPC);
    free(huge);
    assert_int_equal(boot_load_initrd(&f->m, &f->k, rd, 0, &gpa), -EINVAL);
}

static void test_zero_page(void **state)
{
    struct fx *f = *state;
    load_bz(f);
    static uint8_t rd[5000];
    uint64_t rd_gpa;
    assert_int_equal(boot_load_initrd(&f->m, &f->k, rd, sizeof(rd), &rd_gpa), 0);
    const char *cmd = "console=ttyS0 reboot=k panic=1";
    assert_int_equal(do_setup(f, cmd, rd_gpa, sizeof(rd)), 0);

    const struct boot_params *bp = mem_ptr(&f->m, LAYOUT_ZERO_PAGE, sizeof(*bp));
    const uint8_t *raw = (const uint8_t *)bp;
    assert_int_equal(bp->hdr.boot_flag, 0xAA55);
    assert_memory_equal(&bp->hdr.header, "HdrS", 4);
    assert_int_equal(bp->hdr.version, 0x020f);
    assert_int_equal(raw[0x206], 0x0f); /* through the raw bytes, not only the struct */
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_true(bp->hdr.loadflags & BP_CAN_USE_HEAP);
    assert_true(bp->hdr.loadflags & BP_LOADED_HIGH);
    assert_false(bp->hdr.loadflags & BP_KEEP_SEGMENTS);
    assert_int_equal(bp->hdr.heap_end_ptr, 0xfe00);
    assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
    assert_int_equal(bp->hdr.ramdisk_image, rd_gpa);
    assert_int_equal(bp->hdr.ramdisk_size, sizeof(rd));
    assert_int_equal(bp->hdr.xloadflags & 1, 1);
    assert_int_equal(bp->acpi_rsdp_addr, LAYOUT_ACPI);
    assert_int_equal(raw[0x1ef], 0); /* sentinel */
    assert_string_equal((const char *)mem_ptr(&f->m, LAYOUT_CMDLINE, strlen(cmd) + 1), cmd);

    struct e820_entry e[E820_MAX_ENTRIES];
    int n = boot_e820_build(&f->m, e, E820_MAX_ENTRIES);
    assert_int_equal(bp->e820_entries, n);
    assert_int_equal(raw[0x1e8], n);
    assert_memory_equal(raw + 0x2d0, e, n * sizeof(e[0]));
}

static void test_long_mode_state(void **state)
{
    struct fx *f = *state;
    load_bz(f);
    assert_int_equal(do_setup(f, NULL, 0, 0), 0);

    assert_int_equal(f->regs.rip, 0x100200);
    assert_int_equal(f->regs.rsi, LAYOUT_ZERO_PAGE);
    assert_int_equal(f->regs.rflags, 2);
    assert_int_equal(f->regs.rsp, LAYOUT_BOOT_STACK);
    assert_int_equal(f->regs.rax, 0);
    assert_int_equal(f->sregs.cr0, BOOT_CR0_PE | BOOT_CR0_ET | BOOT_CR0_PG);
    assert_int_equal(f->sregs.cr4, BOOT_CR4_PAE);
    assert_int_equal(f->sregs.cr3, LAYOUT_PML4);
    assert_int_equal(f->sregs.efer, BOOT_EFER_LME | BOOT_EFER_LMA);
    assert_int_equal(f->sregs.cs.selector, BOOT_GDT_CS);
    assert_int_equal(f->sregs.cs.l, 1);
    assert_int_equal(f->sregs.cs.db, 0);
    assert_int_equal(f->sregs.cs.type, 11);
    assert_int_equal(f->sregs.cs.present, 1);
    assert_int_equal(f->sregs.cs.s, 1);
    assert_int_equal(f->sregs.cs.limit, 0xffffffff);
    assert_int_equal(f->sregs.ds.selector, BOOT_GDT_DS);
    assert_int_equal(f->sregs.ss.selector, BOOT_GDT_DS);
    assert_int_equal(f->sregs.ds.type, 3);
    assert_int_equal(f->sregs.gdt.base, LAYOUT_GDT);
    assert_int_equal(f->sregs.gdt.limit, 31);
    assert_int_equal(f->sregs.tr.type, 11); /* left as KVM had it */

    const uint64_t *gdt = mem_ptr(&f->m, LAYOUT_GDT, 32);
    assert_int_equal(gdt[0], 0);
    assert_int_equal(gdt[2], 0x00af9b000000ffffULL);
    assert_int_equal(gdt[3], 0x00cf93000000ffffULL);

    const uint64_t *pml4 = mem_ptr(&f->m, LAYOUT_PML4, 4096);
    const uint64_t *pdpt = mem_ptr(&f->m, LAYOUT_PDPT, 4096);
    const uint64_t *pd = mem_ptr(&f->m, LAYOUT_PD, 4 * 4096);
    assert_int_equal(pml4[0], LAYOUT_PDPT | 3);
    assert_int_equal(pml4[1], 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pdpt[i], (LAYOUT_PD + i * 4096ULL) | 3);
    assert_int_equal(pdpt[4], 0);
    assert_int_equal(pd[0], 0x83);
    assert_int_equal(pd[1], 0x200083);
    assert_int_equal(pd[2047], 0xffe00083ULL); /* last 2 MiB below 4 GiB */
}

static void test_cmdline_limits(void **state)
{
    struct fx *f = *state;
    load_bz(f);
    char *cmd = malloc(LAYOUT_CMDLINE_MAX + 1);
    memset(cmd, 'a', 2047);
    cmd[2047] = '\0';
    assert_int_equal(do_setup(f, cmd, 0, 0), 0);
    cmd[2047] = 'a';
    cmd[2048] = '\0';
    assert_int_equal(do_setup(f, cmd, 0, 0), -E2BIG);
    assert_non_null(strstr(f->err, "2048 bytes"));

    /* An ELF kernel has no cmdline_size: LAYOUT_CMDLINE_MAX (with its NUL) is the limit. */
    size_t len = ti_elf(f->img, TI_ELF_SEG0_VADDR, TI_NOTE_NONE);
    assert_int_equal(kernel_load(&f->m, f->img, len, &f->k, f->err, sizeof(f->err)), 0);
    memset(cmd, 'b', LAYOUT_CMDLINE_MAX);
    cmd[LAYOUT_CMDLINE_MAX - 1] = '\0';
    assert_int_equal(do_setup(f, cmd, 0, 0), 0);
    cmd[LAYOUT_CMDLINE_MAX - 1] = 'b';
    cmd[LAYOUT_CMDLINE_MAX] = '\0';
    assert_int_equal(do_setup(f, cmd, 0, 0), -E2BIG);
    free(cmd);
}

static void test_bad_initrd_ranges(void **state)
{
    struct fx *f = *state;
    load_bz(f);
    assert_int_equal(do_setup(f, "", 0x1000000, 0x1000), -EINVAL); /* inside the kernel */
    assert_non_null(strstr(f->err, "overlaps the kernel"));
    assert_int_equal(do_setup(f, "", MEM_BYTES - 0x1000, 0x2000), -EINVAL);    /* past RAM */
    assert_int_equal(do_setup(f, "", 0xfffffffffffff000ULL, 0x2000), -EINVAL); /* wraps */
    f->k.initrd_addr_max = 0x2000000;
    assert_int_equal(do_setup(f, "", 0x3000000, 0x1000), -EINVAL);
    assert_non_null(strstr(f->err, "limit"));
    struct kernel_info none = {0};
    assert_int_equal(boot_setup(&f->m, &none, "", 0, 0, &f->regs, &f->sregs, NULL, 0), -EINVAL);
}

static void test_elf64_zero_page(void **state)
{
    struct fx *f = *state;
    size_t len = ti_elf(f->img, TI_ELF_SEG0_VADDR, TI_NOTE_NONE);
    assert_int_equal(kernel_load(&f->m, f->img, len, &f->k, f->err, sizeof(f->err)), 0);
    assert_int_equal(do_setup(f, "root=/dev/vda", 0, 0), 0);
    const struct boot_params *bp = mem_ptr(&f->m, LAYOUT_ZERO_PAGE, sizeof(*bp));
    assert_int_equal(bp->hdr.boot_flag, 0xAA55);
    assert_memory_equal(&bp->hdr.header, "HdrS", 4);
    assert_int_equal(bp->hdr.type_of_loader, 0xff);
    assert_int_equal(bp->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
    assert_int_equal(bp->hdr.ramdisk_image, 0);
    assert_int_equal(f->regs.rip, TI_ELF_SEG0_PADDR);
    assert_int_equal(f->regs.rsi, LAYOUT_ZERO_PAGE);
    assert_int_equal(f->sregs.cs.l, 1);
}

static void test_pvh(void **state)
{
    struct fx *f = *state;
    size_t len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    assert_int_equal(kernel_load(&f->m, f->img, len, &f->k, f->err, sizeof(f->err)), 0);
    static uint8_t rd[3000];
    uint64_t rd_gpa;
    assert_int_equal(boot_load_initrd(&f->m, &f->k, rd, sizeof(rd), &rd_gpa), 0);
    assert_int_equal(do_setup(f, "console=hvc0", rd_gpa, sizeof(rd)), 0);

    const struct hvm_start_info *si = mem_ptr(&f->m, LAYOUT_PVH_INFO, sizeof(*si));
    assert_int_equal(si->magic, 0x336ec578);
    assert_int_equal(si->version, 1);
    assert_int_equal(si->cmdline_paddr, LAYOUT_CMDLINE);
    assert_int_equal(si->rsdp_paddr, LAYOUT_ACPI);
    assert_int_equal(si->nr_modules, 1);
    const struct hvm_modlist_entry *mod = mem_ptr(&f->m, si->modlist_paddr, sizeof(*mod));
    assert_non_null(mod);
    assert_int_equal(mod->paddr, rd_gpa);
    assert_int_equal(mod->size, sizeof(rd));

    struct e820_entry e[E820_MAX_ENTRIES];
    int n = boot_e820_build(&f->m, e, E820_MAX_ENTRIES);
    assert_int_equal(si->memmap_entries, n);
    const struct hvm_memmap_table_entry *mm = mem_ptr(&f->m, si->memmap_paddr, n * sizeof(*mm));
    assert_non_null(mm);
    for (int i = 0; i < n; i++) {
        assert_int_equal(mm[i].addr, e[i].addr);
        assert_int_equal(mm[i].size, e[i].size);
        assert_int_equal(mm[i].type, e[i].type);
    }

    assert_int_equal(f->regs.rip, TI_ELF_PVH_ENTRY);
    assert_int_equal(f->regs.rbx, LAYOUT_PVH_INFO);
    assert_int_equal(f->regs.rsi, 0);
    assert_int_equal(f->sregs.cr0, BOOT_CR0_PE | BOOT_CR0_ET);
    assert_int_equal(f->sregs.cr4, 0);
    assert_int_equal(f->sregs.efer, 0);
    assert_int_equal(f->sregs.cs.selector, BOOT_GDT_CS);
    assert_int_equal(f->sregs.cs.l, 0);
    assert_int_equal(f->sregs.cs.db, 1);
    assert_int_equal(f->sregs.cs.base, 0);
    assert_int_equal(f->sregs.cs.limit, 0xffffffff);
    assert_int_equal(f->sregs.es.db, 1);
    const uint64_t *gdt = mem_ptr(&f->m, LAYOUT_GDT, 32);
    assert_int_equal(gdt[2], 0x00cf9b000000ffffULL);

    /* Without an initrd there is no module list. */
    assert_int_equal(do_setup(f, "", 0, 0), 0);
    assert_int_equal(si->nr_modules, 0);
    assert_int_equal(si->modlist_paddr, 0);
}

/* Load the real kernels from `make guest` and build their full boot state in a 256 MiB guest. */
static void boot_real(const char *path, enum kernel_kind want_a, enum kernel_kind want_b)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        print_message("%s not built (make guest); skipping\n", path);
        skip();
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    rewind(fp);
    uint8_t *img = malloc((size_t)len);
    assert_int_equal(fread(img, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);

    struct guest_mem m;
    struct kernel_info k;
    struct kvm_regs regs;
    struct kvm_sregs sregs = {0};
    char err[160] = "";
    static uint8_t rd[1 << 20];
    uint64_t rd_gpa;
    assert_int_equal(mem_init(&m, 256ULL << 20), 0);
    int rc = kernel_load(&m, img, (size_t)len, &k, err, sizeof(err));
    free(img);
    if (rc)
        fail_msg("%s: %s", path, err);
    assert_true(k.kind == want_a || k.kind == want_b);
    assert_int_equal(boot_load_initrd(&m, &k, rd, sizeof(rd), &rd_gpa), 0);
    assert_true(rd_gpa >= k.load_end);
    rc = boot_setup(&m, &k, "console=ttyS0 reboot=k panic=1", rd_gpa, sizeof(rd), &regs, &sregs,
                    err, sizeof(err));
    if (rc)
        fail_msg("%s: boot_setup: %s", path, err);
    assert_int_equal(regs.rip, k.entry);
    if (k.kind == KERNEL_BZIMAGE) {
        const struct boot_params *bp = mem_ptr(&m, LAYOUT_ZERO_PAGE, sizeof(*bp));
        assert_true(bp->hdr.version >= 0x020c);
        assert_int_equal(bp->hdr.ramdisk_image, rd_gpa);
        assert_true(bp->hdr.xloadflags & 1);
    }
    mem_free(&m);
}

static void test_real_bzimage_boot(void **state)
{
    (void)state;
    boot_real("build/guest/vmlinuz", KERNEL_BZIMAGE, KERNEL_BZIMAGE);
}

static void test_real_vmlinux_boot(void **state)
{
    (void)state;
    boot_real("build/guest/vmlinux", KERNEL_ELF_PVH, KERNEL_ELF64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_e820_low_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e820_high, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initrd_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_mode_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmdline_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_initrd_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf64_zero_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pvh, setup, teardown),
        cmocka_unit_test(test_real_bzimage_boot),
        cmocka_unit_test(test_real_vmlinux_boot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
