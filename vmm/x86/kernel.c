/* x86-64 kernel images: bzImage and ELF64 vmlinux parsing, validation and loading into guest RAM.
 */
#include "vmm/x86/kernel.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/log.h"

/* bzImage setup header offsets (Documentation/arch/x86/boot.rst). */
#define BZ_SETUP_SECTS    0x1f1
#define BZ_SYSSIZE        0x1f4
#define BZ_BOOT_FLAG      0x1fe
#define BZ_JUMP_LEN       0x201 /* second byte of the jump: header end = 0x202 + this */
#define BZ_HEADER         0x202
#define BZ_VERSION        0x206
#define BZ_LOADFLAGS      0x211
#define BZ_INITRD_MAX     0x22c
#define BZ_KERNEL_ALIGN   0x230
#define BZ_RELOCATABLE    0x234
#define BZ_XLOADFLAGS     0x236
#define BZ_CMDLINE_SIZE   0x238
#define BZ_PREF_ADDRESS   0x258
#define BZ_INIT_SIZE      0x260
#define BZ_NEEDED_HDR_END 0x264 /* through init_size: everything we read */

#define BZ_LOADED_HIGH    0x01
#define BZ_XLF_KERNEL_64  0x0001
#define BZ_ENTRY64_OFFSET 0x200

#define ELF_MAX_PHDRS            64
#define ELF_MAX_SHDRS            4096
#define XEN_ELFNOTE_PHYS32_ENTRY 18

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

const char *kernel_kind_name(enum kernel_kind kind)
{
    switch (kind) {
    case KERNEL_BZIMAGE:
        return "bzImage";
    case KERNEL_ELF_PVH:
        return "ELF (PVH)";
    case KERNEL_ELF64:
        return "ELF (64-bit)";
    }
    return "unknown";
}

/* Size in bytes of the real-mode setup code that precedes the protected-mode kernel. */
static size_t bz_setup_bytes(const uint8_t *img)
{
    unsigned sects = img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4;
    return (size_t)(sects + 1) * 512;
}

static int probe_bzimage(const uint8_t *img, size_t len, uint64_t low, struct kernel_info *k,
                         char *err, size_t errlen)
{
    size_t hdr_end = BZ_HEADER + (size_t)img[BZ_JUMP_LEN];
    /* The version field sits just past the magic: it must be inside the file whatever the
     * jump byte claims (a fuzzed image read two bytes past the end here). */
    if (hdr_end > len || len < BZ_VERSION + 2)
        return errmsg(err, errlen, -EINVAL, "bzImage truncated inside its setup header");

    uint16_t version = rd16(img + BZ_VERSION);
    if (version < KERNEL_MIN_BOOT_VERSION)
        return errmsg(err, errlen, -ENOEXEC, "boot protocol %u.%02u is too old (need 2.12)",
                      version >> 8, version & 0xff);
    if (hdr_end < BZ_NEEDED_HDR_END)
        return errmsg(err, errlen, -EINVAL, "bzImage setup header is too short (%zu bytes)",
                      hdr_end - KERNEL_SETUP_HDR_OFFSET);
    if (rd16(img + BZ_BOOT_FLAG) != 0xAA55)
        return errmsg(err, errlen, -ENOEXEC, "bzImage boot flag is not 0xAA55");
    if (!(img[BZ_LOADFLAGS] & BZ_LOADED_HIGH))
        return errmsg(err, errlen, -ENOEXEC, "zImage (loads below 1 MiB) is not supported");
    if (!(rd16(img + BZ_XLOADFLAGS) & BZ_XLF_KERNEL_64))
        return errmsg(err, errlen, -ENOEXEC,
                      "kernel has no 64-bit entry point (not XLF_KERNEL_64)");

    size_t setup = bz_setup_bytes(img);
    if (setup >= len)
        return errmsg(err, errlen, -EINVAL,
                      "bzImage truncated: %zu bytes of setup code but the image has %zu", setup,
                      len);
    uint64_t pm_len = len - setup;
    uint64_t sys_bytes = (uint64_t)rd32(img + BZ_SYSSIZE) * 16;
    if (sys_bytes > pm_len + 15)
        return errmsg(err, errlen, -EINVAL,
                      "bzImage truncated: kernel is %" PRIu64 " bytes, header says %" PRIu64,
                      pm_len, sys_bytes);

    uint64_t load = LAYOUT_HIGH_RAM;
    uint64_t pref = rd64(img + BZ_PREF_ADDRESS);
    uint64_t align = rd32(img + BZ_KERNEL_ALIGN);
    uint64_t init_size = rd32(img + BZ_INIT_SIZE);
    /* The 64-bit entry decompresses to pref_address (non-relocatable), or to the load address
     * rounded up to kernel_alignment but never below pref_address (relocatable). */
    uint64_t runtime = pref ? pref : load;
    if (img[BZ_RELOCATABLE]) {
        if (align == 0 || (align & (align - 1)))
            return errmsg(err, errlen, -EINVAL,
                          "bzImage kernel_alignment 0x%" PRIx64 " is not a power of two", align);
        uint64_t aligned = (load + align - 1) & ~(align - 1);
        runtime = aligned > pref ? aligned : pref;
    }
    uint64_t end = load + pm_len, rt_end;
    if (__builtin_add_overflow(runtime, init_size, &rt_end) || rt_end > UINT32_MAX)
        return errmsg(err, errlen, -EINVAL, "bzImage pref_address/init_size out of range");
    if (rt_end > end)
        end = rt_end;
    if (end > low)
        return errmsg(err, errlen, -EINVAL,
                      "kernel needs %" PRIu64 " MiB of low RAM but the guest has %" PRIu64 " MiB",
                      (end + (1 << 20) - 1) >> 20, low >> 20);

    k->kind = KERNEL_BZIMAGE;
    k->entry = load + BZ_ENTRY64_OFFSET;
    k->load_addr = load;
    k->load_end = end;
    k->boot_version = version;
    k->initrd_addr_max = rd32(img + BZ_INITRD_MAX);
    k->cmdline_max = rd32(img + BZ_CMDLINE_SIZE);
    size_t keep = (hdr_end < KERNEL_SETUP_HDR_OFFSET + KERNEL_SETUP_HDR_MAX)
                      ? hdr_end - KERNEL_SETUP_HDR_OFFSET
                      : KERNEL_SETUP_HDR_MAX;
    memcpy(k->setup_header, img + KERNEL_SETUP_HDR_OFFSET, keep);
    k->setup_header_len = keep;
    return 0;
}

/* Look for a Xen PHYS32_ENTRY note in notes[0..size). Returns 1 and sets *entry if found, 0 if
 * not, -EINVAL for a malformed note. */
static int find_pvh_note(const uint8_t *notes, uint64_t size, uint64_t *entry)
{
    uint64_t off = 0;
    while (size - off >= 12) {
        uint64_t namesz = rd32(notes + off), descsz = rd32(notes + off + 4);
        uint32_t type = rd32(notes + off + 8);
        off += 12;
        uint64_t name_pad = (namesz + 3) & ~3ULL, desc_pad = (descsz + 3) & ~3ULL;
        if (name_pad > size - off)
            return -EINVAL;
        const uint8_t *name = notes + off;
        off += name_pad;
        if (descsz > size - off)
            return -EINVAL;
        const uint8_t *desc = notes + off;
        off += desc_pad < size - off ? desc_pad : size - off;
        if (type != XEN_ELFNOTE_PHYS32_ENTRY || namesz != 4 || memcmp(name, "Xen", 4) != 0)
            continue;
        if (descsz == 4)
            *entry = rd32(desc);
        else if (descsz == 8 && rd64(desc) <= UINT32_MAX)
            *entry = rd64(desc);
        else
            return -EINVAL;
        return 1;
    }
    return 0;
}

/* Is [off, off+size) inside the image? */
static int in_image(uint64_t off, uint64_t size, size_t len)
{
    return off <= len && size <= len - off;
}

static int elf_pvh_entry(const uint8_t *img, size_t len, const Elf64_Ehdr *eh, uint64_t *entry,
                         char *err, size_t errlen)
{
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, img + eh->e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_NOTE)
            continue;
        if (!in_image(ph.p_offset, ph.p_filesz, len))
            return errmsg(err, errlen, -EINVAL, "ELF note segment %u lies outside the file", i);
        int rc = find_pvh_note(img + ph.p_offset, ph.p_filesz, entry);
        if (rc < 0)
            return errmsg(err, errlen, rc, "ELF note segment %u is malformed", i);
        if (rc)
            return 1;
    }
    /* No PT_NOTE had it: try the SHT_NOTE sections, if the section table looks sane. */
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shnum > ELF_MAX_SHDRS ||
        !in_image(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr), len))
        return 0;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, img + eh->e_shoff + (uint64_t)i * sizeof(sh), sizeof(sh));
        if (sh.sh_type != SHT_NOTE || !in_image(sh.sh_offset, sh.sh_size, len))
            continue;
        if (find_pvh_note(img + sh.sh_offset, sh.sh_size, entry) == 1)
            return 1;
    }
    return 0;
}

static int probe_elf(const uint8_t *img, size_t len, uint64_t low, struct kernel_info *k, char *err,
                     size_t errlen)
{
    Elf64_Ehdr eh;
    if (len < sizeof(eh))
        return errmsg(err, errlen, -EINVAL, "ELF truncated inside its header");
    memcpy(&eh, img, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        return errmsg(err, errlen, -ENOEXEC, "ELF is not 64-bit (only ELF64 kernels boot)");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
        return errmsg(err, errlen, -ENOEXEC, "ELF is not an x86-64 image");
    if (eh.e_type != ET_EXEC)
        return errmsg(err, errlen, -ENOEXEC, "ELF is not an executable (e_type %u)", eh.e_type);
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > ELF_MAX_PHDRS)
        return errmsg(err, errlen, -EINVAL, "ELF program header table is malformed");
    if (!in_image(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), len))
        return errmsg(err, errlen, -EINVAL, "ELF truncated: program headers run past the end");

    uint64_t lo = UINT64_MAX, hi = 0;
    Elf64_Phdr ph[ELF_MAX_PHDRS];
    memcpy(ph, img + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        uint64_t end;
        if (p->p_filesz > p->p_memsz)
            return errmsg(err, errlen, -EINVAL, "ELF segment %u: file size exceeds memory size", i);
        if (!in_image(p->p_offset, p->p_filesz, len))
            return errmsg(err, errlen, -EINVAL, "ELF truncated: segment %u runs past the end", i);
        if (__builtin_add_overflow(p->p_paddr, p->p_memsz, &end) || p->p_paddr < LAYOUT_HIGH_RAM ||
            end > low)
            return errmsg(err, errlen, -EINVAL,
                          "ELF segment %u at 0x%" PRIx64 "+0x%" PRIx64
                          " is outside low guest RAM [1 MiB, %" PRIu64 " MiB)",
                          i, p->p_paddr, p->p_memsz, low >> 20);
        for (unsigned j = 0; j < i; j++) {
            const Elf64_Phdr *q = &ph[j];
            if (q->p_type == PT_LOAD && q->p_memsz && p->p_paddr < q->p_paddr + q->p_memsz &&
                q->p_paddr < end)
                return errmsg(err, errlen, -EINVAL, "ELF segments %u and %u overlap", j, i);
        }
        lo = p->p_paddr < lo ? p->p_paddr : lo;
        hi = end > hi ? end : hi;
    }
    if (hi == 0)
        return errmsg(err, errlen, -EINVAL, "ELF has no loadable segments");

    uint64_t entry = 0;
    int rc = elf_pvh_entry(img, len, &eh, &entry, err, errlen);
    if (rc < 0)
        return rc;
    if (rc) {
        if (entry < lo || entry >= hi)
            return errmsg(err, errlen, -EINVAL, "PVH entry 0x%" PRIx64 " is outside the kernel",
                          entry);
        k->kind = KERNEL_ELF_PVH;
    } else {
        /* e_entry may be virtual (0xffffffff8...): translate through the segment holding it. */
        int found = 0;
        for (unsigned i = 0; i < eh.e_phnum && !found; i++) {
            const Elf64_Phdr *p = &ph[i];
            if (p->p_type != PT_LOAD || p->p_memsz == 0)
                continue;
            if (eh.e_entry - p->p_vaddr < p->p_memsz) {
                entry = eh.e_entry - p->p_vaddr + p->p_paddr;
                found = 1;
            } else if (eh.e_entry - p->p_paddr < p->p_memsz) {
                entry = eh.e_entry;
                found = 1;
            }
        }
        if (!found)
            return errmsg(err, errlen, -EINVAL,
                          "ELF entry 0x%" PRIx64 " is not inside any loaded segment", eh.e_entry);
        k->kind = KERNEL_ELF64;
    }
    k->entry = entry;
    k->load_addr = lo;
    k->load_end = hi;
    k->boot_version = 0;
    k->initrd_addr_max = 0x7fffffff; /* what 64-bit bzImages of the same kernels declare */
    k->cmdline_max = LAYOUT_CMDLINE_MAX - 1;
    k->setup_header_len = 0;
    return 0;
}

int kernel_probe(const uint8_t *img, size_t len, uint64_t low_ram_bytes, struct kernel_info *out,
                 char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    if (!img)
        return errmsg(err, errlen, -EINVAL, "no kernel image");
    if (len >= BZ_HEADER + 4 && memcmp(img + BZ_HEADER, "HdrS", 4) == 0)
        return probe_bzimage(img, len, low_ram_bytes, out, err, errlen);
    if (len >= SELFMAG && memcmp(img, ELFMAG, SELFMAG) == 0)
        return probe_elf(img, len, low_ram_bytes, out, err, errlen);
    return errmsg(err, errlen, -ENOEXEC, "not a bzImage or ELF kernel");
}

int kernel_load(struct guest_mem *m, const uint8_t *img, size_t len, struct kernel_info *out,
                char *err, size_t errlen)
{
    int rc = kernel_probe(img, len, mem_low_size(m), out, err, errlen);
    if (rc < 0)
        return rc;

    if (out->kind == KERNEL_BZIMAGE) {
        size_t setup = bz_setup_bytes(img);
        if (mem_write(m, out->load_addr, img + setup, len - setup) < 0)
            return errmsg(err, errlen, -EFAULT, "kernel does not fit in guest RAM");
        return 0;
    }

    uint64_t phoff = rd64(img + offsetof(Elf64_Ehdr, e_phoff));
    unsigned phnum = rd16(img + offsetof(Elf64_Ehdr, e_phnum));
    for (unsigned i = 0; i < phnum; i++) {
        Elf64_Phdr p;
        memcpy(&p, img + phoff + (uint64_t)i * sizeof(p), sizeof(p));
        if (p.p_type != PT_LOAD || p.p_memsz == 0)
            continue;
        uint8_t *dst = mem_ptr(m, p.p_paddr, p.p_memsz);
        if (!dst)
            return errmsg(err, errlen, -EFAULT, "ELF segment %u does not fit in guest RAM", i);
        memcpy(dst, img + p.p_offset, p.p_filesz);
        memset(dst + p.p_filesz, 0, p.p_memsz - p.p_filesz);
    }
    return 0;
}
