/* ACPI tables for a hardware-reduced x86 microVM: RSDP, XSDT, FADT, MADT and DSDT. */
#ifndef AMBER_VMM_X86_ACPI_H
#define AMBER_VMM_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/layout.h"
#include "vmm/mem.h"

/* xAPIC ids 0..254 (255 is broadcast): one MADT Local APIC entry per vCPU. */
#define ACPI_MAX_VCPUS 254

/* Sleep control value the guest writes to power off: SLP_TYP 5 (from _S5) | SLP_EN. */
#define ACPI_SLEEP_CTL_S5_OFF ((5 << 2) | (1 << 5))

struct acpi_config {
    unsigned nvcpus; /* 1..ACPI_MAX_VCPUS; APIC id = vCPU index */
    struct {
        uint64_t base; /* 4 KiB virtio-mmio window, below 4 GiB */
        unsigned gsi;  /* IOAPIC pin, GSI_VIRTIO_FIRST..GSI_VIRTIO_LAST */
    } virtio[VIRTIO_MAX_DEVICES];
    unsigned nvirtio;
    struct {
        uint64_t gpa; /* the 16-byte ID, 8-byte aligned; 0: no VM generation ID device */
        unsigned gsi; /* the GED's interrupt: an edge announces a new ID */
    } vmgenid;
};

/*
 * Build every table into guest RAM from LAYOUT_ACPI (RSDP first, so both acpi_rsdp_addr and a
 * scan of 0xE0000 find it), all within LAYOUT_ACPI_MAX bytes, all checksums valid. The DSDT
 * holds COM1 (PNP0501), the i8042 keyboard (PNP0303), one LNRO0005 device per virtio-mmio
 * transport (Memory32Fixed + edge-triggered Interrupt) and _S5 for power-off through the FADT
 * sleep control register at LAYOUT_ACPI_SLEEP_CTL. With vmgenid.gpa set it also holds the VM
 * generation ID device \_SB.VGEN (_HID "VMGENCTR", _CID "VM_Gen_Counter", ADDR = Package
 * {low 32 bits, high 32 bits} of the ID's address) and a Generic Event Device \_SB.GED0
 * (ACPI0013) whose edge-triggered Interrupt on vmgenid.gsi runs _EVT: Notify(VGEN, 0x80).
 * Returns 0, or -EINVAL (bad config) / -ENOSPC / -EFAULT with a reason in err.
 */
int acpi_build(struct guest_mem *m, const struct acpi_config *cfg, char *err, size_t errlen);

/*
 * The same tables, into buf[0..cap) for loading at guest address base_gpa (pure; used by
 * acpi_build and by tests). Returns the number of bytes used or a negative errno as above.
 */
int acpi_build_tables(const struct acpi_config *cfg, uint64_t base_gpa, uint8_t *buf, size_t cap,
                      char *err, size_t errlen);

/* Only the DSDT (header included) into buf[0..cap). Returns its length or a negative errno. */
int acpi_build_dsdt(const struct acpi_config *cfg, uint8_t *buf, size_t cap);

/* The byte that makes p[0..n) sum to zero when stored in its checksum field (which reads 0). */
uint8_t acpi_checksum(const void *p, size_t n);

#endif
