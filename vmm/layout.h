/* The fixed x86-64 guest physical memory map shared by the boot code, ACPI and devices. */
#ifndef AMBER_VMM_LAYOUT_H
#define AMBER_VMM_LAYOUT_H

/* Low memory used while booting (all below 1 MiB). */
#define LAYOUT_GDT         0x0500ULL /* boot GDT */
#define LAYOUT_PVH_INFO    0x6000ULL /* hvm_start_info + module list + memmap (PVH) */
#define LAYOUT_ZERO_PAGE   0x7000ULL /* struct boot_params */
#define LAYOUT_PML4        0x9000ULL /* identity page tables: PML4, PDPT, 4 PDs */
#define LAYOUT_PDPT        0xA000ULL
#define LAYOUT_PD          0xB000ULL /* 4 pages: identity-maps the first 4 GiB */
#define LAYOUT_BOOT_STACK  0x8FF0ULL
#define LAYOUT_CMDLINE     0x20000ULL
#define LAYOUT_CMDLINE_MAX 0x10000ULL /* 64 KiB */
#define LAYOUT_EBDA_START  0x9FC00ULL /* RAM stops here in the e820 map ... */
#define LAYOUT_ACPI        0xE0000ULL /* ... ACPI tables live in the BIOS area, RSDP first */
#define LAYOUT_ACPI_MAX    0x1F000ULL /* ... up to the VM generation ID's page */
#define LAYOUT_VMGENID     0xFF000ULL /* 16-byte VM generation ID (reserved BIOS area, last page) */
#define LAYOUT_HIGH_RAM    0x100000ULL /* kernel loads at 1 MiB */

/* 32-bit MMIO gap contents. */
#define LAYOUT_VIRTIO_MMIO_BASE 0xD0000000ULL /* one 4 KiB slot per virtio-mmio device */
#define LAYOUT_VIRTIO_MMIO_SLOT 0x1000ULL
#define LAYOUT_IOAPIC           0xFEC00000ULL
#define LAYOUT_LAPIC            0xFEE00000ULL

/* ACPI hardware-reduced sleep registers (I/O ports), handled by the power device. */
#define LAYOUT_ACPI_SLEEP_CTL 0x3C0
#define LAYOUT_ACPI_SLEEP_STS 0x3C1

/* Interrupt lines on the in-kernel IOAPIC. */
#define GSI_I8042          1
#define GSI_ACPI_GED       3 /* the ACPI Generic Event Device: a new VM generation ID */
#define GSI_COM1           4
#define GSI_VIRTIO_FIRST   5
#define GSI_VIRTIO_LAST    23
#define VIRTIO_MAX_DEVICES (GSI_VIRTIO_LAST - GSI_VIRTIO_FIRST + 1)

_Static_assert(LAYOUT_ACPI + LAYOUT_ACPI_MAX <= LAYOUT_VMGENID, "ACPI tables overlap the VMGenID");
_Static_assert(LAYOUT_VMGENID >= LAYOUT_EBDA_START && LAYOUT_VMGENID + 0x1000 <= LAYOUT_HIGH_RAM,
               "the VM generation ID must sit in the e820-reserved BIOS area");

#endif
