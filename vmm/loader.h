/* Loading the guest: kernel and initrd files, the command line, ACPI and the boot vCPU. */
#ifndef AMBER_VMM_LOADER_H
#define AMBER_VMM_LOADER_H

#include <stddef.h>

#include "config/config.h"

struct vm;

#define LOADER_DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1 i8042.noaux"

/*
 * Compose the kernel command line from cfg (or the default), adding root=/dev/vda when a
 * drive is marked root and the line has no root= yet, and virtio_mmio.device= entries when
 * cfg->mmio_cmdline is set (bases[i]/gsis[i] for n devices). Pure. Returns 0 or -E2BIG.
 */
int loader_cmdline(const struct vm_config *cfg, const unsigned long long *bases,
                   const unsigned *gsis, unsigned n, char *out, size_t outlen);

/*
 * Read the kernel and initrd named in vm->cfg into guest RAM, write the command line, boot
 * data and ACPI tables, and set the boot vCPU's registers. Devices and vCPUs must exist.
 * Returns 0, or a negative errno with one line in err (-ENOENT/-EACCES unreadable file,
 * -ENOEXEC not a kernel, -EINVAL does not fit).
 */
int loader_boot(struct vm *vm, char *err, size_t errlen);

#endif
