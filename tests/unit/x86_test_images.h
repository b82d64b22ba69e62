/* Synthetic kernel images (minimal bzImage and ELF64 vmlinux) for the x86 boot unit tests. */
#ifndef AMBER_TESTS_X86_TEST_IMAGES_H
#define AMBER_TESTS_X86_TEST_IMAGES_H

#include <elf.h>
#include <stdint.h>
#include <string.h>

#define TI_PREF_ADDRESS 0x1000000ULL
#define TI_INIT_SIZE    0x800000ULL
#define TI_PM_BYTE(i)   ((uint8_t)(0x5a ^ (i)))

static inline void ti_put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static inline void ti_put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void ti_put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/*
 * A bzImage with setup_sects sectors of setup (0 means 4) followed by pm_len bytes of
 * "protected-mode code" (a byte pattern). buf must hold the whole image; returns its length.
 */
static inline size_t ti_bzimage(uint8_t *buf, uint16_t version, uint8_t setup_sects, size_t pm_len)
{
    size_t setup = (size_t)((setup_sects ? setup_sects : 4) + 1) * 512;
    memset(buf, 0, setup);
    buf[0x1f1] = setup_sects;
    ti_put32(buf + 0x1f4, (uint32_t)(pm_len / 16));
    ti_put16(buf + 0x1fe, 0xAA55);
    buf[0x200] = 0xeb;
    buf[0x201] = 0x6a; /* header ends at 0x26c */
    memcpy(buf + 0x202, "HdrS", 4);
    ti_put16(buf + 0x206, version);
    buf[0x211] = 0x01 | 0x40;               /* LOADED_HIGH, KEEP_SEGMENTS (must be cleared) */
    ti_put32(buf + 0x22c, 0x7fffffff);      /* initrd_addr_max */
    ti_put32(buf + 0x230, 0x200000);        /* kernel_alignment */
    buf[0x234] = 1;                         /* relocatable */
    ti_put16(buf + 0x236, 0x0001 | 0x0002); /* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
    ti_put32(buf + 0x238, 2047);            /* cmdline_size */
    ti_put64(buf + 0x258, TI_PREF_ADDRESS); /* pref_address */
    ti_put32(buf + 0x260, (uint32_t)TI_INIT_SIZE);
    for (size_t i = 0; i < pm_len; i++)
        buf[setup + i] = TI_PM_BYTE(i);
    return setup + pm_len;
}

/* ELF layout used by ti_elf(): two PT_LOAD segments and a note. */
#define TI_ELF_SEG0_PADDR 0x1000000ULL
#define TI_ELF_SEG0_VADDR 0xffffffff81000000ULL
#define TI_ELF_SEG0_FILE  0x2000ULL
#define TI_ELF_SEG0_MEM   0x3000ULL
#define TI_ELF_SEG1_PADDR 0x2000000ULL
#define TI_ELF_SEG1_VADDR 0xffffffff82000000ULL
#define TI_ELF_PVH_ENTRY  0x1000123ULL
#define TI_ELF_SIZE       0x5000

enum ti_note { TI_NOTE_NONE, TI_NOTE_PHDR, TI_NOTE_SHDR };

/* An ELF64 vmlinux-like image of TI_ELF_SIZE bytes with e_entry as given, and (optionally) a
 * Xen PHYS32_ENTRY note after a GNU note, found through a PT_NOTE or only through a section. */
static inline size_t ti_elf(uint8_t *buf, uint64_t e_entry, enum ti_note note)
{
    memset(buf, 0, TI_ELF_SIZE);
    Elf64_Ehdr eh = {0};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = e_entry;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 3;

    Elf64_Phdr ph[3] = {
        {.p_type = PT_LOAD,
         .p_offset = 0x1000,
         .p_vaddr = TI_ELF_SEG0_VADDR,
         .p_paddr = TI_ELF_SEG0_PADDR,
         .p_filesz = TI_ELF_SEG0_FILE,
         .p_memsz = TI_ELF_SEG0_MEM},
        {.p_type = PT_LOAD,
         .p_offset = 0x3000,
         .p_vaddr = TI_ELF_SEG1_VADDR,
         .p_paddr = TI_ELF_SEG1_PADDR,
         .p_filesz = 0x1000,
         .p_memsz = 0x1000},
        {.p_type = PT_NULL},
    };
    for (size_t i = 0x1000; i < 0x4000; i++)
        buf[i] = TI_PM_BYTE(i);

    /* Notes at 0x4000: a GNU build-id style note, then Xen PHYS32_ENTRY with an 8-byte desc. */
    uint8_t *n = buf + 0x4000;
    ti_put32(n, 4);
    ti_put32(n + 4, 20);
    ti_put32(n + 8, 3);
    memcpy(n + 12, "GNU", 4);
    size_t off = 12 + 4 + 20;
    ti_put32(n + off, 4);
    ti_put32(n + off + 4, 8);
    ti_put32(n + off + 8, 18);
    memcpy(n + off + 12, "Xen", 4);
    ti_put64(n + off + 16, TI_ELF_PVH_ENTRY);
    size_t notes_len = off + 24;

    if (note == TI_NOTE_PHDR) {
        ph[2] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x4000, .p_filesz = notes_len};
    } else if (note == TI_NOTE_SHDR) {
        Elf64_Shdr sh[2] = {{0}, {.sh_type = SHT_NOTE, .sh_offset = 0x4000, .sh_size = notes_len}};
        eh.e_shoff = 0x4800;
        eh.e_shentsize = sizeof(Elf64_Shdr);
        eh.e_shnum = 2;
        memcpy(buf + 0x4800, sh, sizeof(sh));
    } else {
        memset(n, 0, notes_len);
    }
    memcpy(buf, &eh, sizeof(eh));
    memcpy(buf + sizeof(eh), ph, sizeof(ph));
    return TI_ELF_SIZE;
}

/* Pointer to program header i of an image built by ti_elf(). */
static inline Elf64_Phdr *ti_phdr(uint8_t *buf, unsigned i)
{
    return (Elf64_Phdr *)(buf + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

#endif
