/* Guest-visible boot structures: Linux boot_params (zero page) and Xen PVH hvm_start_info. */
#ifndef AMBER_VMM_X86_BOOTPARAM_H
#define AMBER_VMM_X86_BOOTPARAM_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/x86/boot.h"

/* setup_header.loadflags */
#define BP_LOADED_HIGH   0x01
#define BP_KEEP_SEGMENTS 0x40
#define BP_CAN_USE_HEAP  0x80

#define BP_LOADER_UNDEFINED 0xff /* type_of_loader for a boot loader without an assigned id */
#define BP_HEAP_END_PTR     0xfe00

/* The setup header, as in Documentation/arch/x86/boot.rst (offsets relative to boot_params). */
struct bp_setup_header {
    uint8_t setup_sects; /* 0x1f1 */
    uint16_t root_flags; /* 0x1f2 */
    uint32_t syssize;    /* 0x1f4 */
    uint16_t ram_size;   /* 0x1f8 */
    uint16_t vid_mode;   /* 0x1fa */
    uint16_t root_dev;   /* 0x1fc */
    uint16_t boot_flag;  /* 0x1fe */
    uint16_t jump;       /* 0x200 */
    uint32_t header;     /* 0x202 "HdrS" */
    uint16_t version;    /* 0x206 */
    uint32_t realmode_swtch;
    uint16_t start_sys_seg;
    uint16_t kernel_version;
    uint8_t type_of_loader; /* 0x210 */
    uint8_t loadflags;      /* 0x211 */
    uint16_t setup_move_size;
    uint32_t code32_start;  /* 0x214 */
    uint32_t ramdisk_image; /* 0x218 */
    uint32_t ramdisk_size;  /* 0x21c */
    uint32_t bootsect_kludge;
    uint16_t heap_end_ptr; /* 0x224 */
    uint8_t ext_loader_ver;
    uint8_t ext_loader_type;
    uint32_t cmd_line_ptr;    /* 0x228 */
    uint32_t initrd_addr_max; /* 0x22c */
    uint32_t kernel_alignment;
    uint8_t relocatable_kernel;
    uint8_t min_alignment;
    uint16_t xloadflags;   /* 0x236 */
    uint32_t cmdline_size; /* 0x238 */
    uint32_t hardware_subarch;
    uint64_t hardware_subarch_data;
    uint32_t payload_offset;
    uint32_t payload_length;
    uint64_t setup_data;
    uint64_t pref_address; /* 0x258 */
    uint32_t init_size;    /* 0x260 */
    uint32_t handover_offset;
    uint32_t kernel_info_offset; /* 0x268 */
} __attribute__((packed));

struct boot_params {
    uint8_t screen_info[0x40];
    uint8_t apm_bios_info[0x14];
    uint8_t _pad2[4];
    uint64_t tboot_addr;
    uint8_t ist_info[0x10];
    uint64_t acpi_rsdp_addr; /* 0x070 */
    uint8_t _pad3[8];
    uint8_t hd0_info[16];
    uint8_t hd1_info[16];
    uint8_t sys_desc_table[0x10];
    uint8_t olpc_ofw_header[0x10];
    uint32_t ext_ramdisk_image; /* 0x0c0 */
    uint32_t ext_ramdisk_size;
    uint32_t ext_cmd_line_ptr;
    uint8_t _pad4[112];
    uint32_t cc_blob_address;
    uint8_t edid_info[0x80];
    uint8_t efi_info[0x20];
    uint32_t alt_mem_k;
    uint32_t scratch;
    uint8_t e820_entries; /* 0x1e8 */
    uint8_t eddbuf_entries;
    uint8_t edd_mbr_sig_buf_entries;
    uint8_t kbd_status;
    uint8_t secure_boot;
    uint8_t _pad5[2];
    uint8_t sentinel; /* 0x1ef */
    uint8_t _pad6[1];
    struct bp_setup_header hdr; /* 0x1f1 */
    uint8_t _pad7[0x290 - 0x1f1 - sizeof(struct bp_setup_header)];
    uint32_t edd_mbr_sig_buffer[16];
    struct e820_entry e820_table[E820_MAX_ENTRIES]; /* 0x2d0 */
    uint8_t _pad8[48];
    uint8_t eddbuf[0x1ec];
    uint8_t _pad9[276];
} __attribute__((packed));

_Static_assert(sizeof(struct e820_entry) == 20, "e820 entry");
_Static_assert(sizeof(struct bp_setup_header) == KERNEL_SETUP_HDR_MAX, "setup header size");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, cc_blob_address) == 0x13c, "cc_blob_address");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(offsetof(struct boot_params, hdr.version) == 0x206, "version");
_Static_assert(offsetof(struct boot_params, hdr.type_of_loader) == 0x210, "type_of_loader");
_Static_assert(offsetof(struct boot_params, hdr.ramdisk_image) == 0x218, "ramdisk_image");
_Static_assert(offsetof(struct boot_params, hdr.heap_end_ptr) == 0x224, "heap_end_ptr");
_Static_assert(offsetof(struct boot_params, hdr.cmd_line_ptr) == 0x228, "cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, hdr.xloadflags) == 0x236, "xloadflags");
_Static_assert(offsetof(struct boot_params, hdr.pref_address) == 0x258, "pref_address");
_Static_assert(offsetof(struct boot_params, hdr.kernel_info_offset) == 0x268, "kernel_info");
_Static_assert(offsetof(struct boot_params, edd_mbr_sig_buffer) == 0x290, "edd_mbr_sig_buffer");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(offsetof(struct boot_params, eddbuf) == 0xd00, "eddbuf");
_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");

/* Xen's PVH start of day structure, version 1 (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr; /* version 1 */
    uint32_t memmap_entries;
    uint32_t reserved;
} __attribute__((packed));

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
} __attribute__((packed));

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* same values as e820 */
    uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "memmap_paddr");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");

/* Where the pieces of the PVH page go, relative to LAYOUT_PVH_INFO. */
#define PVH_MODLIST_OFFSET 0x40
#define PVH_MEMMAP_OFFSET  0x80
#define PVH_MEMMAP_MAX     ((0x1000 - PVH_MEMMAP_OFFSET) / sizeof(struct hvm_memmap_table_entry))

#endif
