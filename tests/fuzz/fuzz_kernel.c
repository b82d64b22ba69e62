/* libFuzzer target: the input is a kernel image; load it into a 2 MiB guest and build boot state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/layout.h"
#include "vmm/mem.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/kernel.h"

/*
 * Guest RAM is one 2 MiB heap block at GPA 0 (kernels go in [1 MiB, 2 MiB)), sized exactly so
 * that ASan flags any write past its end. A successful load is followed by initrd placement and
 * boot_setup(), which must also stay inside guest RAM and keep the loader's promises.
 */
#define RAM_BYTES (2u << 20)

static uint8_t *ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ram)
        ram = malloc(RAM_BYTES);
    struct guest_mem m = {
        .region = {{.gpa = 0, .size = RAM_BYTES, .host = ram}},
        .nregions = 1,
        .size = RAM_BYTES,
        .map = ram,
        .map_size = RAM_BYTES,
    };
    struct kernel_info k;
    char err[128];

    int rc = kernel_load(&m, data, size, &k, err, sizeof(err));
    if (memchr(err, '\0', sizeof(err)) == NULL)
        abort();
    if (rc < 0)
        return 0;
    if (k.load_addr < LAYOUT_HIGH_RAM || k.load_end > RAM_BYTES || k.load_addr >= k.load_end)
        abort();
    if (k.kind != KERNEL_BZIMAGE && (k.entry < k.load_addr || k.entry >= k.load_end))
        abort();
    if (k.setup_header_len > sizeof(k.setup_header))
        abort();

    static const uint8_t initrd[4096] = {1};
    uint64_t rd_gpa = 0, rd_len = 0;
    if (boot_load_initrd(&m, &k, initrd, sizeof(initrd), &rd_gpa) == 0) {
        rd_len = sizeof(initrd);
        if (rd_gpa < k.load_end || rd_gpa + rd_len > RAM_BYTES)
            abort();
    }
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    memset(&sregs, 0, sizeof(sregs));
    boot_setup(&m, &k, "console=ttyS0", rd_gpa, rd_len, &regs, &sregs, err, sizeof(err));
    return 0;
}
