/* Unit tests for kernel image parsing and loading: synthetic bzImage/ELF, hostile inputs, real
 * kernel. */
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
#include "vmm/x86/kernel.h"

#define MEM_BYTES (64ULL << 20)
#define IMG_MAX   (256 * 1024)

struct fx {
    struct guest_mem m;
    uint8_t img[IMG_MAX];
    struct kernel_info k;
    char err[160];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || mem_init(&f->m, MEM_BYTES) < 0)
        return -1;
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

static int load(struct fx *f, size_t len)
{
    return kernel_load(&f->m, f->img, len, &f->k, f->err, sizeof(f->err));
}

static void expect_fail(struct fx *f, size_t len, int rc, const char *msg)
{
    assert_int_equal(load(f, len), rc);
    if (!strstr(f->err, msg))
        fail_msg("error \"%s\" does not mention \"%s\"", f->err, msg);
}

static void test_bzimage_ok(void **state)
{
    struct fx *f = *state;
    size_t len = ti_bzimage(f->img, 0x020f, 0, 5000);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.kind, KERNEL_BZIMAGE);
    assert_int_equal(f->k.load_addr, 0x100000);
    assert_int_equal(f->k.entry, 0x100200);
    assert_int_equal(f->k.load_end, TI_PREF_ADDRESS + TI_INIT_SIZE);
    assert_int_equal(f->k.boot_version, 0x020f);
    assert_int_equal(f->k.cmdline_max, 2047);
    assert_int_equal(f->k.initrd_addr_max, 0x7fffffff);
    assert_int_equal(f->k.setup_header_len, KERNEL_SETUP_HDR_MAX);
    assert_memory_equal(f->k.setup_header, f->img + 0x1f1, KERNEL_SETUP_HDR_MAX);
    /* Protected-mode code starts after (4 + 1) * 512 bytes and lands at 1 MiB. */
    const uint8_t *g = mem_ptr(&f->m, 0x100000, 5000);
    assert_non_null(g);
    assert_memory_equal(g, f->img + 5 * 512, 5000);
    assert_int_equal(g[4999], TI_PM_BYTE(4999));
}

static void test_bzimage_setup_sects(void **state)
{
    struct fx *f = *state;
    size_t len = ti_bzimage(f->img, 0x020c, 30, 4096);
    assert_int_equal(load(f, len), 0);
    const uint8_t *g = mem_ptr(&f->m, 0x100000, 4096);
    assert_memory_equal(g, f->img + 31 * 512, 4096);
}

static void test_bzimage_non_relocatable(void **state)
{
    struct fx *f = *state;
    size_t len = ti_bzimage(f->img, 0x020f, 0, 4096);
    f->img[0x234] = 0;
    ti_put64(f->img + 0x258, 0x2000000);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.load_end, 0x2000000 + TI_INIT_SIZE);
}

static void test_bzimage_rejects(void **state)
{
    struct fx *f = *state;
    size_t len = ti_bzimage(f->img, 0x0206, 0, 4096);
    expect_fail(f, len, -ENOEXEC, "boot protocol 2.06 is too old (need 2.12)");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    memcpy(f->img + 0x202, "HdrX", 4);
    expect_fail(f, len, -ENOEXEC, "not a bzImage or ELF kernel");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    ti_put16(f->img + 0x236, 0);
    expect_fail(f, len, -ENOEXEC, "64-bit entry");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    f->img[0x211] = 0;
    expect_fail(f, len, -ENOEXEC, "zImage");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    ti_put16(f->img + 0x1fe, 0);
    expect_fail(f, len, -ENOEXEC, "boot flag");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    ti_put32(f->img + 0x230, 0x3000);
    expect_fail(f, len, -EINVAL, "kernel_alignment");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    f->img[0x201] = 0x20; /* header ends at 0x222: too short to hold init_size */
    expect_fail(f, len, -EINVAL, "setup header is too short");

    len = ti_bzimage(f->img, 0x020f, 0, 4096);
    ti_put64(f->img + 0x258, 0xfffffffffffff000ULL);
    expect_fail(f, len, -EINVAL, "out of range");
}

static void test_bzimage_truncated(void **state)
{
    struct fx *f = *state;
    size_t len = ti_bzimage(f->img, 0x020f, 0, 8192);
    expect_fail(f, 0x100, -ENOEXEC, "not a bzImage");
    expect_fail(f, 0x250, -EINVAL, "truncated inside its setup header");
    expect_fail(f, 5 * 512, -EINVAL, "setup code");
    expect_fail(f, len - 4096, -EINVAL, "bzImage truncated: kernel is");

    /* Huge setup_sects: the setup code alone would run past the end of the image. */
    len = ti_bzimage(f->img, 0x020f, 0, 8192);
    f->img[0x1f1] = 255;
    expect_fail(f, len, -EINVAL, "setup code");
}

static void test_bzimage_too_big_for_ram(void **state)
{
    struct fx *f = *state;
    struct guest_mem small;
    assert_int_equal(mem_init(&small, 16ULL << 20), 0);
    size_t len = ti_bzimage(f->img, 0x020f, 0, 4096);
    int rc = kernel_load(&small, f->img, len, &f->k, f->err, sizeof(f->err));
    mem_free(&small);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(f->err, "needs 24 MiB of low RAM but the guest has 16 MiB"));
}

static void test_not_a_kernel(void **state)
{
    struct fx *f = *state;
    memset(f->img, 0, 4096);
    strcpy((char *)f->img, "#!/bin/sh\necho this is not a kernel\n");
    expect_fail(f, 4096, -ENOEXEC, "not a bzImage or ELF kernel");
    expect_fail(f, 0, -ENOEXEC, "not a bzImage or ELF kernel");
    expect_fail(f, 3, -ENOEXEC, "not a bzImage or ELF kernel");
    assert_int_equal(kernel_load(&f->m, NULL, 10, &f->k, f->err, sizeof(f->err)), -EINVAL);
    /* A NULL error buffer is allowed. */
    assert_int_equal(kernel_load(&f->m, f->img, 4096, &f->k, NULL, 0), -ENOEXEC);
}

static void test_elf_pvh(void **state)
{
    struct fx *f = *state;
    uint8_t *bss = mem_ptr(&f->m, TI_ELF_SEG0_PADDR, TI_ELF_SEG0_MEM);
    memset(bss, 0xee, TI_ELF_SEG0_MEM);
    size_t len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.kind, KERNEL_ELF_PVH);
    assert_int_equal(f->k.entry, TI_ELF_PVH_ENTRY);
    assert_int_equal(f->k.load_addr, TI_ELF_SEG0_PADDR);
    assert_int_equal(f->k.load_end, TI_ELF_SEG1_PADDR + 0x1000);
    assert_int_equal(f->k.setup_header_len, 0);
    assert_memory_equal(bss, f->img + 0x1000, TI_ELF_SEG0_FILE);
    for (size_t i = TI_ELF_SEG0_FILE; i < TI_ELF_SEG0_MEM; i++)
        assert_int_equal(bss[i], 0);
    assert_memory_equal(mem_ptr(&f->m, TI_ELF_SEG1_PADDR, 0x1000), f->img + 0x3000, 0x1000);
}

static void test_elf_pvh_from_section(void **state)
{
    struct fx *f = *state;
    size_t len = ti_elf(f->img, 0x1000100, TI_NOTE_SHDR);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.kind, KERNEL_ELF_PVH);
    assert_int_equal(f->k.entry, TI_ELF_PVH_ENTRY);
}

static void test_elf64_entry(void **state)
{
    struct fx *f = *state;
    size_t len = ti_elf(f->img, TI_ELF_SEG0_VADDR + 0x100, TI_NOTE_NONE);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.kind, KERNEL_ELF64);
    assert_int_equal(f->k.entry, TI_ELF_SEG0_PADDR + 0x100);

    len = ti_elf(f->img, TI_ELF_SEG1_PADDR + 0x10, TI_NOTE_NONE);
    assert_int_equal(load(f, len), 0);
    assert_int_equal(f->k.entry, TI_ELF_SEG1_PADDR + 0x10);

    len = ti_elf(f->img, 0xffffffff90000000ULL, TI_NOTE_NONE);
    expect_fail(f, len, -EINVAL, "not inside any loaded segment");
}

static void test_elf_rejects(void **state)
{
    struct fx *f = *state;
    size_t len;

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 0)->p_paddr = 0x80000; /* over the boot data below 1 MiB */
    expect_fail(f, len, -EINVAL, "outside low guest RAM");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 1)->p_paddr = MEM_BYTES - 0x800; /* runs off the end of RAM */
    expect_fail(f, len, -EINVAL, "outside low guest RAM");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 1)->p_paddr = 0xfffffffffffff800ULL; /* paddr + memsz wraps */
    expect_fail(f, len, -EINVAL, "outside low guest RAM");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 0)->p_filesz = TI_ELF_SEG0_MEM + 1;
    expect_fail(f, len, -EINVAL, "file size exceeds memory size");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 1)->p_offset = 0xfffffffffffff000ULL;
    expect_fail(f, len, -EINVAL, "runs past the end");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 1)->p_paddr = TI_ELF_SEG0_PADDR + 0x2000;
    expect_fail(f, len, -EINVAL, "overlap");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 2)->p_filesz = 0x100000;
    expect_fail(f, len, -EINVAL, "note segment 2 lies outside");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put32(f->img + 0x4000 + 4, 0xfffffff0); /* descsz of the first note */
    expect_fail(f, len, -EINVAL, "malformed");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put64(f->img + 0x4000 + 36 + 16, 0x900000); /* PVH entry below the kernel */
    expect_fail(f, len, -EINVAL, "PVH entry 0x900000 is outside the kernel");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put64(f->img + 0x4000 + 36 + 16, 0x100000000ULL); /* not a 32-bit entry */
    expect_fail(f, len, -EINVAL, "malformed");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    f->img[EI_CLASS] = ELFCLASS32;
    expect_fail(f, len, -ENOEXEC, "not 64-bit");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put16(f->img + offsetof(Elf64_Ehdr, e_machine), EM_AARCH64);
    expect_fail(f, len, -ENOEXEC, "not an x86-64");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put16(f->img + offsetof(Elf64_Ehdr, e_phnum), 0);
    expect_fail(f, len, -EINVAL, "program header table");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_put64(f->img + offsetof(Elf64_Ehdr, e_phoff), len - 10);
    expect_fail(f, len, -EINVAL, "program headers run past the end");

    len = ti_elf(f->img, 0x1000100, TI_NOTE_PHDR);
    ti_phdr(f->img, 0)->p_type = PT_NULL;
    ti_phdr(f->img, 1)->p_type = PT_NULL;
    expect_fail(f, len, -EINVAL, "no loadable segments");

    expect_fail(f, 40, -EINVAL, "ELF truncated inside its header");
}

/* Read a whole file; returns NULL (and *len 0) when it does not exist. */
static uint8_t *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *len = b ? (size_t)n : 0;
    return b;
}

static void test_real_kernels(void **state, const char *path, int want_elf)
{
    (void)state;
    size_t len;
    uint8_t *img = slurp(path, &len);
    if (!img) {
        print_message("%s not built (make guest); skipping\n", path);
        skip();
    }
    struct guest_mem m;
    struct kernel_info k;
    char err[160] = "";
    assert_int_equal(mem_init(&m, 512ULL << 20), 0);
    int rc = kernel_load(&m, img, len, &k, err, sizeof(err));
    free(img);
    mem_free(&m);
    if (rc)
        fail_msg("%s: %s", path, err);
    print_message("%s: %s, entry 0x%llx, [0x%llx, 0x%llx)\n", path, kernel_kind_name(k.kind),
                  (unsigned long long)k.entry, (unsigned long long)k.load_addr,
                  (unsigned long long)k.load_end);
    if (want_elf) {
        assert_true(k.kind == KERNEL_ELF_PVH || k.kind == KERNEL_ELF64);
    } else {
        assert_int_equal(k.kind, KERNEL_BZIMAGE);
        assert_true(k.boot_version >= KERNEL_MIN_BOOT_VERSION);
        assert_int_equal(k.entry, 0x100200);
    }
}

static void test_real_bzimage(void **state)
{
    test_real_kernels(state, "build/guest/vmlinuz", 0);
}

static void test_real_vmlinux(void **state)
{
    test_real_kernels(state, "build/guest/vmlinux", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bzimage_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_setup_sects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_non_relocatable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bzimage_too_big_for_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_kernel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_pvh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_pvh_from_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf64_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elf_rejects, setup, teardown),
        cmocka_unit_test(test_real_bzimage),
        cmocka_unit_test(test_real_vmlinux),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
