/* Unit tests for the AML encoder and the ACPI tables: encodings, checksums, MADT/FADT, iasl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/x86/acpi.h"
#include "vmm/x86/aml.h"

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void cfg_default(struct acpi_config *c, unsigned nvcpus, unsigned nvirtio)
{
    memset(c, 0, sizeof(*c));
    c->nvcpus = nvcpus;
    c->nvirtio = nvirtio;
    for (unsigned i = 0; i < nvirtio; i++) {
        c->virtio[i].base = LAYOUT_VIRTIO_MMIO_BASE + i * LAYOUT_VIRTIO_MMIO_SLOT;
        c->virtio[i].gsi = GSI_VIRTIO_FIRST + i;
    }
}

/* ---- AML encoder ---- */

static void test_aml_names(void **state)
{
    (void)state;
    uint8_t b[64];
    struct aml a;
    aml_init(&a, b, sizeof(b));
    aml_name_string(&a, "_S5");
    assert_int_equal(a.len, 4);
    assert_memory_equal(b, "_S5_", 4);

    aml_init(&a, b, sizeof(b));
    aml_name_string(&a, "\\_SB");
    assert_memory_equal(b, "\\_SB_", 5);

    aml_init(&a, b, sizeof(b));
    aml_name_string(&a, "\\_SB.COM1");
    assert_int_equal(a.len, 10);
    assert_memory_equal(b, "\\\x2e_SB_COM1", 10);

    aml_init(&a, b, sizeof(b));
    aml_name_string(&a, "A.B.C");
    assert_int_equal(a.len, 14);
    assert_memory_equal(b,
                        "\x2f\x03"
                        "A___B___C___",
                        14);

    const char *bad[] = {"", "TOOLONG", "1ABC", "a", "A..B", "A.", "A-B"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        aml_init(&a, b, sizeof(b));
        aml_name_string(&a, bad[i]);
        if (a.err != -EINVAL && !(bad[i][0] == '\0' && a.err == 0 && b[0] == 0))
            fail_msg("name \"%s\" accepted", bad[i]);
    }
}

static void test_aml_integers(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t len;
        uint8_t enc[9];
    } cases[] = {
        {0, 1, {0x00}},
        {1, 1, {0x01}},
        {5, 2, {0x0a, 5}},
        {0xff, 2, {0x0a, 0xff}},
        {0x100, 3, {0x0b, 0x00, 0x01}},
        {0x12345678, 5, {0x0c, 0x78, 0x56, 0x34, 0x12}},
        {0x100000000ULL, 9, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t b[16];
        struct aml a;
        aml_init(&a, b, sizeof(b));
        aml_integer(&a, cases[i].v);
        assert_int_equal(a.err, 0);
        assert_int_equal(a.len, cases[i].len);
        assert_memory_equal(b, cases[i].enc, cases[i].len);
    }
}

static void test_aml_eisaid_string(void **state)
{
    (void)state;
    uint8_t b[32];
    struct aml a;
    aml_init(&a, b, sizeof(b));
    aml_eisaid(&a, "PNP0501");
    assert_int_equal(a.len, 5);
    assert_memory_equal(b, "\x0c\x41\xd0\x05\x01", 5);
    aml_eisaid(&a, "pnp0501");
    assert_int_equal(a.err, -EINVAL);

    aml_init(&a, b, sizeof(b));
    aml_string(&a, "LNRO0005");
    assert_int_equal(a.len, 10);
    assert_memory_equal(b, "\x0dLNRO0005\0", 10);
}

/* PkgLength: 1 byte up to 63, then 2 bytes (low nibble first) up to 4095, then 3 bytes. */
static void check_pkg(size_t body, size_t nbytes, const uint8_t *enc)
{
    static uint8_t b[0x20000];
    struct aml a;
    aml_init(&a, b, sizeof(b));
    size_t mark = aml_package_begin(&a, 0);
    for (size_t i = 1; i < body; i++) /* NumElements already gave one byte of body */
        aml_byte(&a, 0);
    aml_block_end(&a, mark);
    assert_int_equal(a.err, 0);
    assert_int_equal(a.len, 1 + nbytes + body);
    assert_memory_equal(b + 1, enc, nbytes);
}

static void test_aml_pkglength(void **state)
{
    (void)state;
    check_pkg(10, 1, (const uint8_t[]){11});
    check_pkg(62, 1, (const uint8_t[]){63});
    check_pkg(63, 2, (const uint8_t[]){0x41, 0x04});         /* 65 = 0x041 */
    check_pkg(4093, 2, (const uint8_t[]){0x4f, 0xff});       /* 4095 */
    check_pkg(4094, 3, (const uint8_t[]){0x81, 0x00, 0x01}); /* 4097 = 0x1001 */
}

static void test_aml_buffer_and_overflow(void **state)
{
    (void)state;
    uint8_t b[64];
    struct aml a;
    aml_init(&a, b, sizeof(b));
    size_t m = aml_buffer_begin(&a);
    aml_res_irq_noflags(&a, 4);
    aml_res_end(&a);
    aml_buffer_end(&a, m);
    /* BufferOp, PkgLength 8 (itself + size + 5 bytes), BytePrefix 5, IRQNoFlags{4}, EndTag. */
    assert_int_equal(a.err, 0);
    assert_int_equal(a.len, 9);
    assert_memory_equal(b, "\x11\x08\x0a\x05\x22\x10\x00\x79\x00", 9);

    aml_res_irq_noflags(&a, 16);
    assert_int_equal(a.err, -EINVAL);

    aml_init(&a, b, 8);
    aml_bytes(&a, "0123456789", 10);
    assert_int_equal(a.err, -ENOSPC);
    aml_byte(&a, 1); /* sticky: nothing more is written */
    assert_int_equal(a.len, 0);
}

static void test_aml_method_notify(void **state)
{
    (void)state;
    uint8_t b[64];
    struct aml a;
    aml_init(&a, b, sizeof(b));
    size_t m = aml_method_begin(&a, "_EVT", 1);
    aml_notify(&a, "\\_SB.VGEN", 0x80);
    aml_block_end(&a, m);
    /* MethodOp, PkgLength 19 (itself + name 4 + flags 1 + Notify 13), "_EVT", 1 argument,
     * NotifyOp, \ DualNamePrefix "_SB_" "VGEN", BytePrefix 0x80. */
    assert_int_equal(a.err, 0);
    assert_int_equal(a.len, 20);
    assert_memory_equal(b, "\x14\x13_EVT\x01\x86\\\x2e_SB_VGEN\x0a\x80", 20);

    aml_init(&a, b, sizeof(b));
    aml_method_begin(&a, "_EVT", 8);
    assert_int_equal(a.err, -EINVAL);
}

/* ---- tables ---- */

struct tables {
    uint8_t buf[LAYOUT_ACPI_MAX];
    int len;
};

static const uint8_t *table_at(const struct tables *t, uint64_t gpa)
{
    assert_true(gpa >= LAYOUT_ACPI && gpa - LAYOUT_ACPI < (uint64_t)t->len);
    const uint8_t *p = t->buf + (gpa - LAYOUT_ACPI);
    assert_true(gpa - LAYOUT_ACPI + rd32(p + 4) <= (uint64_t)t->len);
    assert_int_equal(acpi_checksum(p, rd32(p + 4)), 0);
    return p;
}

static struct tables *build(const struct acpi_config *c)
{
    struct tables *t = calloc(1, sizeof(*t));
    char err[128];
    t->len = acpi_build_tables(c, LAYOUT_ACPI, t->buf, sizeof(t->buf), err, sizeof(err));
    if (t->len < 0)
        fail_msg("acpi_build_tables: %s", err);
    return t;
}

/* Walk RSDP -> XSDT -> FADT/MADT -> DSDT, checking every checksum; returns the tables found. */
static void walk(const struct tables *t, const uint8_t **fadt, const uint8_t **madt,
                 const uint8_t **dsdt)
{
    const uint8_t *rsdp = t->buf;
    assert_memory_equal(rsdp, "RSD PTR ", 8);
    assert_int_equal(rsdp[15], 2);
    assert_int_equal(acpi_checksum(rsdp, 20), 0);
    assert_int_equal(acpi_checksum(rsdp, 36), 0);
    assert_int_equal(rd32(rsdp + 20), 36);
    const uint8_t *xsdt = table_at(t, rd64(rsdp + 24));
    assert_memory_equal(xsdt, "XSDT", 4);
    unsigned n = (rd32(xsdt + 4) - 36) / 8;
    *fadt = *madt = NULL;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *tb = table_at(t, rd64(xsdt + 36 + 8 * i));
        if (!memcmp(tb, "FACP", 4))
            *fadt = tb;
        else if (!memcmp(tb, "APIC", 4))
            *madt = tb;
    }
    assert_non_null(*fadt);
    assert_non_null(*madt);
    *dsdt = table_at(t, rd64(*fadt + 140));
    assert_memory_equal(*dsdt, "DSDT", 4);
}

static void test_tables_checksums_and_fadt(void **state)
{
    (void)state;
    struct acpi_config c;
    cfg_default(&c, 2, 3);
    struct tables *t = build(&c);
    const uint8_t *fadt, *madt, *dsdt;
    walk(t, &fadt, &madt, &dsdt);

    assert_int_equal(rd32(fadt + 4), 276);
    assert_int_equal(fadt[8], 6);
    assert_true(rd32(fadt + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
    /* Sleep control / status: System I/O, 8 bits, byte access. */
    assert_memory_equal(fadt + 244, "\x01\x08\x00\x01", 4);
    assert_int_equal(rd64(fadt + 248), LAYOUT_ACPI_SLEEP_CTL);
    assert_memory_equal(fadt + 256, "\x01\x08\x00\x01", 4);
    assert_int_equal(rd64(fadt + 260), LAYOUT_ACPI_SLEEP_STS);
    assert_memory_equal(fadt + 268, "AMBERVMM", 8);
    assert_int_equal(ACPI_SLEEP_CTL_S5_OFF, 0x34);
    free(t);
}

static void check_madt(unsigned nvcpus)
{
    struct acpi_config c;
    cfg_default(&c, nvcpus, 0);
    struct tables *t = build(&c);
    const uint8_t *fadt, *madt, *dsdt;
    walk(t, &fadt, &madt, &dsdt);

    assert_int_equal(rd32(madt + 36), LAYOUT_LAPIC);
    unsigned lapics = 0, ioapics = 0, isos = 0;
    uint32_t len = rd32(madt + 4);
    for (uint32_t off = 44; off < len;) {
        const uint8_t *e = madt + off;
        assert_true(e[1] >= 2 && off + e[1] <= len);
        switch (e[0]) {
        case 0:
            assert_int_equal(e[1], 8);
            assert_int_equal(e[2], lapics); /* processor UID */
            assert_int_equal(e[3], lapics); /* APIC id = vCPU index */
            assert_int_equal(rd32(e + 4), 1);
            lapics++;
            break;
        case 1:
            assert_int_equal(rd32(e + 4), LAYOUT_IOAPIC);
            assert_int_equal(rd32(e + 8), 0);
            ioapics++;
            break;
        case 2:
            assert_int_equal(e[2], 0);
            assert_int_equal(e[3], 0);
            assert_int_equal(rd32(e + 4), 2);
            assert_int_equal(e[8] | (e[9] << 8), 0x5);
            isos++;
            break;
        }
        off += e[1];
    }
    assert_int_equal(lapics, nvcpus);
    assert_int_equal(ioapics, 1);
    assert_int_equal(isos, 1);
    free(t);
}

static void test_madt(void **state)
{
    (void)state;
    check_madt(1);
    check_madt(4);
    check_madt(ACPI_MAX_VCPUS);
}

static void test_config_rejects(void **state)
{
    (void)state;
    static uint8_t buf[LAYOUT_ACPI_MAX];
    char err[128];
    struct acpi_config c;

    cfg_default(&c, 0, 0);
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    cfg_default(&c, ACPI_MAX_VCPUS + 1, 0);
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    cfg_default(&c, 1, 1);
    c.virtio[0].gsi = 4; /* COM1's line */
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "GSI 4"));
    cfg_default(&c, 1, 1);
    c.virtio[0].base = 0x100000000ULL;
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    c.virtio[0].base = 0xd0000800;
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    cfg_default(&c, 1, 1);
    c.nvirtio = VIRTIO_MAX_DEVICES + 1;
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, buf, sizeof(buf), err, sizeof(err)),
                     -EINVAL);
    cfg_default(&c, 1, 1);
    assert_true(acpi_build_tables(&c, LAYOUT_ACPI, buf, 200, err, sizeof(err)) == -ENOSPC);
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t len)
{
    return memmem(hay, n, needle, len);
}

/* The VM generation ID and its GED, byte by byte where the guest's drivers look. */
static void test_dsdt_vmgenid(void **state)
{
    (void)state;
    static uint8_t buf[LAYOUT_ACPI_MAX];
    struct acpi_config c;
    cfg_default(&c, 1, 2);
    int plain = acpi_build_dsdt(&c, buf, sizeof(buf));
    assert_true(plain > 36);
    assert_null(find(buf, (size_t)plain, "VGEN", 4));
    assert_null(find(buf, (size_t)plain, "ACPI0013", 8));

    c.vmgenid.gpa = 0x123456789000ULL;
    c.vmgenid.gsi = GSI_ACPI_GED;
    int len = acpi_build_dsdt(&c, buf, sizeof(buf));
    assert_true(len > plain);
    assert_int_equal(acpi_checksum(buf, (size_t)len), 0);
    /* Name(_HID, "VMGENCTR") and Name(_CID, "VM_Gen_Counter") inside Device(VGEN). */
    const uint8_t *vgen = find(buf, (size_t)len, "VGEN", 4);
    assert_non_null(vgen);
    assert_memory_equal(vgen - 4, "\x5b\x82", 2); /* ExtOp DeviceOp, 2-byte PkgLength */
    assert_non_null(find(buf, (size_t)len, "\x08_HID\x0dVMGENCTR\0", 15));
    assert_non_null(find(buf, (size_t)len, "\x08_CID\x0dVM_Gen_Counter\0", 21));
    /* Name(ADDR, Package(2) {low dword, high dword}): Linux reads both as integers. */
    const uint8_t *addr = find(buf, (size_t)len,
                               "\x08"
                               "ADDR\x12",
                               6);
    assert_non_null(addr);
    assert_memory_equal(addr + 6, "\x0a\x02\x0c\x00\x90\x78\x56\x0b\x34\x12", 10);
    /* Device(GED0): Name(_HID, "ACPI0013"), Interrupt(Consumer, Edge, ActiveHigh){3}, and
     * Method(_EVT, 1) { Notify(\_SB.VGEN, 0x80) }. */
    const uint8_t *ged = find(buf, (size_t)len, "GED0", 4);
    assert_non_null(ged);
    assert_non_null(find(ged, (size_t)(buf + len - ged),
                         "\x08_HID\x0d"
                         "ACPI0013\0",
                         15));
    assert_non_null(find(ged, (size_t)(buf + len - ged), "\x89\x06\x00\x03\x01\x03\0\0\0", 9));
    assert_non_null(find(ged, (size_t)(buf + len - ged), "_EVT\x01\x86\\\x2e_SB_VGEN\x0a\x80", 17));

    /* Where it lands among the other tables, and what is refused. */
    static uint8_t all[LAYOUT_ACPI_MAX];
    char err[160];
    c.vmgenid.gpa = LAYOUT_VMGENID;
    assert_true(acpi_build_tables(&c, LAYOUT_ACPI, all, sizeof(all), err, sizeof(err)) > len);
    c.vmgenid.gpa = LAYOUT_VMGENID + 4;
    assert_int_equal(acpi_build_tables(&c, LAYOUT_ACPI, all, sizeof(all), err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "VM generation ID"));
    c.vmgenid.gpa = LAYOUT_VMGENID;
    const unsigned taken[] = {0, GSI_I8042, 2, GSI_COM1, GSI_VIRTIO_FIRST + 1, GSI_VIRTIO_LAST + 1};
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        c.vmgenid.gsi = taken[i];
        if (acpi_build_tables(&c, LAYOUT_ACPI, all, sizeof(all), err, sizeof(err)) != -EINVAL)
            fail_msg("the GED accepted GSI %u", taken[i]);
    }
}

static void test_acpi_build_guest(void **state)
{
    (void)state;
    struct guest_mem m;
    struct acpi_config c;
    char err[128];
    cfg_default(&c, 2, VIRTIO_MAX_DEVICES);
    assert_int_equal(mem_init(&m, 16ULL << 20), 0);
    assert_int_equal(acpi_build(&m, &c, err, sizeof(err)), 0);
    assert_memory_equal(mem_ptr(&m, LAYOUT_ACPI, 8), "RSD PTR ", 8);
    mem_free(&m);

    assert_int_equal(mem_init(&m, 512 << 10), 0); /* no BIOS area */
    assert_int_equal(acpi_build(&m, &c, err, sizeof(err)), -EFAULT);
    mem_free(&m);
}

static void test_dsdt_iasl(void **state)
{
    (void)state;
    if (system("command -v iasl >/dev/null 2>&1") != 0) {
        print_message("iasl not installed (acpica-tools); skipping\n");
        skip();
    }
    struct acpi_config c;
    cfg_default(&c, 1, VIRTIO_MAX_DEVICES - 1);
    c.vmgenid.gpa = LAYOUT_VMGENID;
    c.vmgenid.gsi = GSI_ACPI_GED;
    static uint8_t buf[LAYOUT_ACPI_MAX];
    int len = acpi_build_dsdt(&c, buf, sizeof(buf));
    assert_true(len > 36);
    assert_int_equal(acpi_checksum(buf, (size_t)len), 0);

    char dir[] = "/tmp/amber-dsdt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], cmd[512];
    snprintf(path, sizeof(path), "%s/dsdt.aml", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    snprintf(cmd, sizeof(cmd), "cd %s && iasl -d dsdt.aml >iasl.log 2>&1", dir);
    int rc = system(cmd);

    snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
    static char dsl[256 * 1024];
    size_t n = 0;
    fp = fopen(path, "r");
    if (fp) {
        n = fread(dsl, 1, sizeof(dsl) - 1, fp);
        fclose(fp);
    }
    dsl[n] = '\0';
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        print_message("could not remove %s\n", dir);

    assert_int_equal(rc, 0);
    assert_non_null(strstr(dsl, "LNRO0005"));
    assert_non_null(strstr(dsl, "PNP0501"));
    assert_non_null(strstr(dsl, "PNP0303"));
    assert_non_null(strstr(dsl, "Device (VR17)"));
    assert_non_null(strstr(dsl, "0xD0011000"));
    assert_non_null(strstr(dsl, "Device (VGEN)"));
    assert_non_null(strstr(dsl, "Name (_HID, \"VMGENCTR\")"));
    assert_non_null(strstr(dsl, "Name (_CID, \"VM_Gen_Counter\")"));
    assert_non_null(strstr(dsl, "0x000FF000, \n                Zero"));
    assert_non_null(strstr(dsl, "Name (_HID, \"ACPI0013\""));
    assert_non_null(strstr(dsl, "Method (_EVT, 1, NotSerialized)"));
    assert_non_null(strstr(dsl, "Notify (\\_SB.VGEN, 0x80)"));
    assert_non_null(strstr(dsl, "0x00000003,"));
    assert_non_null(strstr(dsl, "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"));
    assert_non_null(strstr(dsl, "Name (_S5, Package (0x02)"));
    assert_null(strstr(dsl, "Error"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aml_names),
        cmocka_unit_test(test_aml_integers),
        cmocka_unit_test(test_aml_eisaid_string),
        cmocka_unit_test(test_aml_pkglength),
        cmocka_unit_test(test_aml_buffer_and_overflow),
        cmocka_unit_test(test_aml_method_notify),
        cmocka_unit_test(test_tables_checksums_and_fadt),
        cmocka_unit_test(test_madt),
        cmocka_unit_test(test_config_rejects),
        cmocka_unit_test(test_dsdt_vmgenid),
        cmocka_unit_test(test_acpi_build_guest),
        cmocka_unit_test(test_dsdt_iasl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
