/* ACPI tables for a hardware-reduced x86 microVM: RSDP, XSDT, FADT, MADT and DSDT (ACPI 6.x). */
#include "vmm/x86/acpi.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/aml.h"
#include "vmm/log.h"

#define ACPI_OEM_ID       "AMBER "
#define ACPI_OEM_TABLE_ID "AMBERVM "
#define ACPI_CREATOR_ID   "AMBR"
#define ACPI_ALIGN        16

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    char creator_id[4];
    uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum; /* over the first 20 bytes */
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt_address;
    uint32_t length;
    uint64_t xsdt_address;
    uint8_t extended_checksum; /* over all 36 bytes */
    uint8_t reserved[3];
} __attribute__((packed));

struct acpi_gas {
    uint8_t space_id; /* 1 = System I/O */
    uint8_t bit_width;
    uint8_t bit_offset;
    uint8_t access_size; /* 1 = byte */
    uint64_t address;
} __attribute__((packed));

/* FADT, revision 6 layout (276 bytes). Fields a hardware-reduced platform leaves 0 are padding. */
struct acpi_fadt {
    struct acpi_header h;
    uint32_t firmware_ctrl;
    uint32_t dsdt;
    uint8_t legacy1[109 - 44];
    uint16_t iapc_boot_arch; /* 109 */
    uint8_t reserved1;
    uint32_t flags; /* 112 */
    struct acpi_gas reset_reg;
    uint8_t reset_value;
    uint16_t arm_boot_arch;
    uint8_t minor_revision; /* 131 */
    uint64_t x_firmware_ctrl;
    uint64_t x_dsdt; /* 140 */
    struct acpi_gas legacy_x_blocks[8];
    struct acpi_gas sleep_control; /* 244 */
    struct acpi_gas sleep_status;  /* 256 */
    char hypervisor_vendor[8];     /* 268 */
} __attribute__((packed));

_Static_assert(sizeof(struct acpi_header) == 36, "ACPI header");
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");
_Static_assert(offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT iapc_boot_arch");
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT x_dsdt");
_Static_assert(offsetof(struct acpi_fadt, sleep_control) == 244, "FADT sleep control");
_Static_assert(offsetof(struct acpi_fadt, hypervisor_vendor) == 268, "FADT hypervisor id");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT rev 6 size");

#define FADT_PWR_BUTTON  (1u << 4)
#define FADT_SLP_BUTTON  (1u << 5)
#define FADT_HW_REDUCED  (1u << 20)
#define BOOT_ARCH_8042   (1u << 1)
#define BOOT_ARCH_NO_VGA (1u << 2)
#define BOOT_ARCH_NO_MSI (1u << 3)
#define BOOT_ARCH_NO_RTC (1u << 5)

#define MADT_LAPIC     0
#define MADT_IOAPIC    1
#define MADT_ISO       2
#define MADT_LAPIC_NMI 4
#define MADT_ENABLED   1
#define MPS_EDGE_HIGH  0x0005 /* polarity 01 active high, trigger 01 edge */

uint8_t acpi_checksum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + b[i]);
    return (uint8_t)(0 - sum);
}

static void header_init(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(h->signature, sig, 4);
    h->length = len;
    h->revision = rev;
    h->checksum = 0;
    memcpy(h->oem_id, ACPI_OEM_ID, 6);
    memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
    h->oem_revision = 1;
    memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
    h->creator_revision = 1;
}

/* Finish a table written at buf: set its length and checksum. */
static void table_seal(uint8_t *buf, size_t len)
{
    struct acpi_header h;
    memcpy(&h, buf, sizeof(h));
    h.length = (uint32_t)len;
    h.checksum = 0;
    memcpy(buf, &h, sizeof(h));
    buf[offsetof(struct acpi_header, checksum)] = acpi_checksum(buf, len);
}

static void dsdt_crs_begin(struct aml *a, size_t *buf_mark)
{
    aml_name(a, "_CRS");
    *buf_mark = aml_buffer_begin(a);
}

static void dsdt_crs_end(struct aml *a, size_t buf_mark)
{
    aml_res_end(a);
    aml_buffer_end(a, buf_mark);
}

/*
 * The VM generation ID (Microsoft's "Virtual Machine Generation ID" spec; Linux's vmgenid driver
 * matches VMGENCTR or the _CID, which ACPICA upper-cases) and the Generic Event Device that
 * tells the guest it changed: the device-specific notification 0x80.
 */
static void dsdt_vmgenid(struct aml *a, uint64_t gpa, unsigned gsi)
{
    size_t dev = aml_device_begin(a, "VGEN");
    aml_name(a, "_HID");
    aml_string(a, "VMGENCTR");
    aml_name(a, "_CID");
    aml_string(a, "VM_Gen_Counter");
    aml_name(a, "_DDN");
    aml_string(a, "VM_Gen_Counter");
    aml_name(a, "ADDR");
    size_t pkg = aml_package_begin(a, 2);
    aml_integer(a, gpa & 0xffffffffu);
    aml_integer(a, gpa >> 32);
    aml_block_end(a, pkg);
    aml_block_end(a, dev);

    size_t crs;
    dev = aml_device_begin(a, "GED0");
    aml_name(a, "_HID");
    aml_string(a, "ACPI0013");
    aml_name(a, "_UID");
    aml_integer(a, 0);
    dsdt_crs_begin(a, &crs);
    aml_res_ext_irq_edge(a, gsi);
    dsdt_crs_end(a, crs);
    /* Linux's GED driver runs _EVT(gsi) from its threaded handler when no _Exx method exists. */
    size_t evt = aml_method_begin(a, "_EVT", 1);
    aml_notify(a, "\\_SB.VGEN", 0x80);
    aml_block_end(a, evt);
    aml_block_end(a, dev);
}

int acpi_build_dsdt(const struct acpi_config *cfg, uint8_t *buf, size_t cap)
{
    struct aml a;
    size_t dev, crs;

    if (cap < sizeof(struct acpi_header))
        return -ENOSPC;
    aml_init(&a, buf, cap);
    struct acpi_header h;
    header_init(&h, "DSDT", 0, 2); /* revision 2: 64-bit integers */
    aml_bytes(&a, &h, sizeof(h));

    size_t sb = aml_scope_begin(&a, "\\_SB");

    dev = aml_device_begin(&a, "COM1");
    aml_name(&a, "_HID");
    aml_eisaid(&a, "PNP0501");
    aml_name(&a, "_UID");
    aml_integer(&a, 0);
    dsdt_crs_begin(&a, &crs);
    aml_res_io(&a, 0x3f8, 8);
    aml_res_irq_noflags(&a, GSI_COM1);
    dsdt_crs_end(&a, crs);
    aml_block_end(&a, dev);

    dev = aml_device_begin(&a, "PS2K");
    aml_name(&a, "_HID");
    aml_eisaid(&a, "PNP0303");
    dsdt_crs_begin(&a, &crs);
    aml_res_io(&a, 0x60, 1);
    aml_res_io(&a, 0x64, 1);
    aml_res_irq_noflags(&a, GSI_I8042);
    dsdt_crs_end(&a, crs);
    aml_block_end(&a, dev);

    for (unsigned i = 0; i < cfg->nvirtio; i++) {
        char name[8];
        snprintf(name, sizeof(name), "VR%02u", i);
        dev = aml_device_begin(&a, name);
        aml_name(&a, "_HID");
        aml_string(&a, "LNRO0005");
        aml_name(&a, "_UID");
        aml_integer(&a, i);
        dsdt_crs_begin(&a, &crs);
        aml_res_mem32_fixed(&a, (uint32_t)cfg->virtio[i].base, LAYOUT_VIRTIO_MMIO_SLOT, true);
        aml_res_ext_irq_edge(&a, cfg->virtio[i].gsi);
        dsdt_crs_end(&a, crs);
        aml_block_end(&a, dev);
    }
    if (cfg->vmgenid.gpa)
        dsdt_vmgenid(&a, cfg->vmgenid.gpa, cfg->vmgenid.gsi);
    aml_block_end(&a, sb);

    /* Name(_S5, Package() {5, 0}): SLP_TYP for power-off through the sleep control register. */
    aml_name(&a, "_S5");
    size_t pkg = aml_package_begin(&a, 2);
    aml_integer(&a, 5);
    aml_integer(&a, 0);
    aml_block_end(&a, pkg);

    if (a.err)
        return a.err;
    table_seal(buf, a.len);
    return (int)a.len;
}

static size_t build_fadt(uint8_t *buf, uint64_t dsdt_gpa)
{
    struct acpi_fadt f;
    memset(&f, 0, sizeof(f));
    header_init(&f.h, "FACP", sizeof(f), 6);
    f.flags = FADT_HW_REDUCED | FADT_PWR_BUTTON | FADT_SLP_BUTTON;
    f.iapc_boot_arch = BOOT_ARCH_8042 | BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_MSI | BOOT_ARCH_NO_RTC;
    f.minor_revision = 0;
    f.x_dsdt = dsdt_gpa;
    f.sleep_control = (struct acpi_gas){
        .space_id = 1, .bit_width = 8, .access_size = 1, .address = LAYOUT_ACPI_SLEEP_CTL};
    f.sleep_status = (struct acpi_gas){
        .space_id = 1, .bit_width = 8, .access_size = 1, .address = LAYOUT_ACPI_SLEEP_STS};
    memcpy(f.hypervisor_vendor, "AMBERVMM", 8);
    memcpy(buf, &f, sizeof(f));
    table_seal(buf, sizeof(f));
    return sizeof(f);
}

/* Bytes the MADT needs for n vCPUs. */
static size_t madt_size(unsigned nvcpus)
{
    return sizeof(struct acpi_header) + 8 + 8 * (size_t)nvcpus + 12 + 10 + 6;
}

static size_t build_madt(uint8_t *buf, unsigned nvcpus)
{
    struct acpi_header h;
    header_init(&h, "APIC", 0, 5);
    uint8_t *p = buf;
    memcpy(p, &h, sizeof(h));
    p += sizeof(h);
    uint32_t lapic = (uint32_t)LAYOUT_LAPIC, flags = 0; /* no dual 8259 setup to describe */
    memcpy(p, &lapic, 4);
    memcpy(p + 4, &flags, 4);
    p += 8;
    for (unsigned i = 0; i < nvcpus; i++) {
        uint8_t e[8] = {MADT_LAPIC, 8, (uint8_t)i, (uint8_t)i, MADT_ENABLED, 0, 0, 0};
        memcpy(p, e, sizeof(e));
        p += sizeof(e);
    }
    uint8_t io[12] = {MADT_IOAPIC, 12, 0 /* id */, 0};
    uint32_t ioapic = (uint32_t)LAYOUT_IOAPIC, gsi_base = 0;
    memcpy(io + 4, &ioapic, 4);
    memcpy(io + 8, &gsi_base, 4);
    memcpy(p, io, sizeof(io));
    p += sizeof(io);
    /* ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2. */
    uint8_t iso[10] = {MADT_ISO, 10, 0 /* ISA */, 0 /* IRQ */, 2, 0, 0, 0, MPS_EDGE_HIGH, 0};
    memcpy(p, iso, sizeof(iso));
    p += sizeof(iso);
    /* NMI arrives on LINT1 of every local APIC. */
    uint8_t nmi[6] = {MADT_LAPIC_NMI, 6, 0xff, 0, 0, 1};
    memcpy(p, nmi, sizeof(nmi));
    p += sizeof(nmi);
    size_t len = (size_t)(p - buf);
    table_seal(buf, len);
    return len;
}

static int check_config(const struct acpi_config *cfg, char *err, size_t errlen)
{
    if (cfg->nvcpus == 0 || cfg->nvcpus > ACPI_MAX_VCPUS)
        return errmsg(err, errlen, -EINVAL, "%u vCPUs: ACPI tables support 1 to %u", cfg->nvcpus,
                      ACPI_MAX_VCPUS);
    if (cfg->nvirtio > VIRTIO_MAX_DEVICES)
        return errmsg(err, errlen, -EINVAL, "%u virtio devices: at most %u fit the IOAPIC",
                      cfg->nvirtio, (unsigned)VIRTIO_MAX_DEVICES);
    if (cfg->vmgenid.gpa) {
        unsigned gsi = cfg->vmgenid.gsi;
        bool taken = gsi == 0 || gsi == 2 || gsi == GSI_I8042 || gsi == GSI_COM1;
        for (unsigned i = 0; i < cfg->nvirtio && i < VIRTIO_MAX_DEVICES; i++)
            taken |= cfg->virtio[i].gsi == gsi;
        if ((cfg->vmgenid.gpa & 7) || gsi > GSI_VIRTIO_LAST || taken)
            return errmsg(err, errlen, -EINVAL,
                          "VM generation ID at 0x%llx on GSI %u: unaligned, or the line is taken",
                          (unsigned long long)cfg->vmgenid.gpa, gsi);
    }
    for (unsigned i = 0; i < cfg->nvirtio; i++) {
        uint64_t base = cfg->virtio[i].base;
        if ((base & (LAYOUT_VIRTIO_MMIO_SLOT - 1)) || base > (1ULL << 32) - LAYOUT_VIRTIO_MMIO_SLOT)
            return errmsg(err, errlen, -EINVAL, "virtio device %u: bad MMIO base 0x%llx", i,
                          (unsigned long long)base);
        if (cfg->virtio[i].gsi < GSI_VIRTIO_FIRST || cfg->virtio[i].gsi > GSI_VIRTIO_LAST)
            return errmsg(err, errlen, -EINVAL, "virtio device %u: GSI %u is outside %u-%u", i,
                          cfg->virtio[i].gsi, GSI_VIRTIO_FIRST, GSI_VIRTIO_LAST);
    }
    return 0;
}

static size_t align_up(size_t v)
{
    return (v + ACPI_ALIGN - 1) & ~(size_t)(ACPI_ALIGN - 1);
}

int acpi_build_tables(const struct acpi_config *cfg, uint64_t base_gpa, uint8_t *buf, size_t cap,
                      char *err, size_t errlen)
{
    int rc = check_config(cfg, err, errlen);
    if (rc < 0)
        return rc;

    size_t xsdt_off = align_up(sizeof(struct acpi_rsdp));
    size_t xsdt_len = sizeof(struct acpi_header) + 2 * 8;
    size_t fadt_off = align_up(xsdt_off + xsdt_len);
    size_t madt_off = align_up(fadt_off + sizeof(struct acpi_fadt));
    size_t dsdt_off = align_up(madt_off + madt_size(cfg->nvcpus));
    if (dsdt_off >= cap)
        return errmsg(err, errlen, -ENOSPC, "no room for the ACPI tables");
    memset(buf, 0, cap);

    int dsdt_len = acpi_build_dsdt(cfg, buf + dsdt_off, cap - dsdt_off);
    if (dsdt_len < 0)
        return errmsg(err, errlen, dsdt_len, "cannot build the DSDT (%s)", strerror(-dsdt_len));
    build_fadt(buf + fadt_off, base_gpa + dsdt_off);
    build_madt(buf + madt_off, cfg->nvcpus);

    struct acpi_header xh;
    header_init(&xh, "XSDT", 0, 1);
    memcpy(buf + xsdt_off, &xh, sizeof(xh));
    uint64_t entries[2] = {base_gpa + fadt_off, base_gpa + madt_off};
    memcpy(buf + xsdt_off + sizeof(xh), entries, sizeof(entries));
    table_seal(buf + xsdt_off, xsdt_len);

    struct acpi_rsdp r;
    memset(&r, 0, sizeof(r));
    memcpy(r.signature, "RSD PTR ", 8);
    memcpy(r.oem_id, ACPI_OEM_ID, 6);
    r.revision = 2;
    r.length = sizeof(r);
    r.xsdt_address = base_gpa + xsdt_off;
    r.checksum = acpi_checksum(&r, 20);
    r.extended_checksum = acpi_checksum(&r, sizeof(r));
    memcpy(buf, &r, sizeof(r));
    return (int)(dsdt_off + (size_t)dsdt_len);
}

int acpi_build(struct guest_mem *m, const struct acpi_config *cfg, char *err, size_t errlen)
{
    uint8_t *buf = calloc(1, LAYOUT_ACPI_MAX);
    if (!buf)
        return errmsg(err, errlen, -ENOMEM, "out of memory building ACPI tables");
    int len = acpi_build_tables(cfg, LAYOUT_ACPI, buf, LAYOUT_ACPI_MAX, err, errlen);
    int rc = len < 0 ? len : 0;
    if (rc == 0 && mem_write(m, LAYOUT_ACPI, buf, (uint64_t)len) < 0)
        rc = errmsg(err, errlen, -EFAULT, "guest RAM does not cover the ACPI area");
    free(buf);
    return rc;
}
