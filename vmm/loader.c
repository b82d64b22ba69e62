/* Loading the guest: files into RAM, the command line, ACPI tables and boot registers. */
#include "vmm/loader.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/x86/acpi.h"
#include "vmm/x86/boot.h"
#include "vmm/x86/kernel.h"

#define LOADER_MAX_FILE (1ULL << 31) /* 2 GiB: no kernel or initrd is larger */

/* Read a whole regular file. Returns 0 with *buf (malloc'd) and *len, or -errno. */
static int read_file(const char *what, const char *path, uint8_t **buf, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int ret = -errno;
        snprintf(err, errlen, "cannot open %s '%s': %s", what, path, strerror(errno));
        return ret;
    }
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot stat %s '%s': %s", what, path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        snprintf(err, errlen, "%s '%s' is not a regular file", what, path);
        goto out;
    }
    if ((unsigned long long)st.st_size > LOADER_MAX_FILE) {
        ret = -EINVAL;
        snprintf(err, errlen, "%s '%s' is too large", what, path);
        goto out;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf) {
        ret = -ENOMEM;
        snprintf(err, errlen, "no memory to read %s '%s'", what, path);
        goto out;
    }
    size_t done = 0;
    while (done < *len) {
        ssize_t n = read(fd, *buf + done, *len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n < 0 ? -errno : -EIO;
            snprintf(err, errlen, "cannot read %s '%s': %s", what, path,
                     n < 0 ? strerror(errno) : "file shrank");
            free(*buf);
            *buf = NULL;
            goto out;
        }
        done += (size_t)n;
    }
out:
    close(fd);
    return ret;
}

static int append(char *out, size_t outlen, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int append(char *out, size_t outlen, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *pos, outlen - *pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen - *pos)
        return -E2BIG;
    *pos += (size_t)n;
    return 0;
}

int loader_cmdline(const struct vm_config *cfg, const unsigned long long *bases,
                   const unsigned *gsis, unsigned n, char *out, size_t outlen)
{
    size_t pos = 0;
    const char *base = cfg->cmdline_set ? cfg->cmdline : LOADER_DEFAULT_CMDLINE;
    if (outlen == 0)
        return -E2BIG;
    out[0] = '\0';
    int ret = append(out, outlen, &pos, "%s", base);

    const struct drive_config *root = NULL;
    for (unsigned i = 0; i < cfg->ndrives; i++)
        if (cfg->drive[i].root)
            root = &cfg->drive[i];
    bool has_root = strncmp(base, "root=", 5) == 0 || strstr(base, " root=") != NULL;
    if (!ret && root && !has_root)
        ret = append(out, outlen, &pos, " root=/dev/vda %s", root->read_only ? "ro" : "rw");
    for (unsigned i = 0; !ret && cfg->mmio_cmdline && i < n; i++)
        ret = append(out, outlen, &pos, " virtio_mmio.device=4K@%#llx:%u", bases[i], gsis[i]);
    return ret;
}

static int load_initrd(struct vm *vm, const struct kernel_info *k, uint64_t *gpa, uint64_t *len,
                       char *err, size_t errlen)
{
    *gpa = 0;
    *len = 0;
    if (!vm->cfg->initrd[0])
        return 0;
    uint8_t *data;
    size_t size;
    int ret = read_file("initrd", vm->cfg->initrd, &data, &size, err, errlen);
    if (ret)
        return ret;
    ret = boot_load_initrd(&vm->mem, k, data, size, gpa);
    if (ret)
        snprintf(err, errlen, "initrd '%s' (%zu bytes) does not fit in guest memory",
                 vm->cfg->initrd, size);
    *len = size;
    free(data);
    return ret;
}

int loader_boot(struct vm *vm, char *err, size_t errlen)
{
    uint8_t *img;
    size_t img_len;
    int ret = read_file("kernel", vm->cfg->kernel, &img, &img_len, err, errlen);
    if (ret)
        return ret;
    struct kernel_info k;
    char why[256] = "";
    ret = kernel_load(&vm->mem, img, img_len, &k, why, sizeof(why));
    free(img);
    if (ret) {
        snprintf(err, errlen, "kernel '%s': %s", vm->cfg->kernel, why);
        return ret;
    }

    uint64_t initrd_gpa, initrd_len;
    ret = load_initrd(vm, &k, &initrd_gpa, &initrd_len, err, errlen);
    if (ret)
        return ret;

    struct acpi_config acfg = {.nvcpus = vm->nvcpus};
    unsigned long long bases[VIRTIO_MAX_DEVICES];
    unsigned gsis[VIRTIO_MAX_DEVICES];
    for (unsigned i = 0; i < vm->nmmio_dev; i++) {
        acfg.virtio[i].base = vm->mmio_dev[i].base;
        acfg.virtio[i].gsi = vm->mmio_dev[i].gsi;
        bases[i] = vm->mmio_dev[i].base;
        gsis[i] = vm->mmio_dev[i].gsi;
    }
    acfg.nvirtio = vm->nmmio_dev;
    acfg.vmgenid.gpa = vm->vmgenid_gpa;
    acfg.vmgenid.gsi = vm->vmgenid_gsi;
    ret = acpi_build(&vm->mem, &acfg, why, sizeof(why));
    if (ret) {
        snprintf(err, errlen, "cannot build ACPI tables: %s", why);
        return ret;
    }

    char *cmdline = malloc(CONFIG_CMDLINE_MAX * 2);
    if (!cmdline)
        return -ENOMEM;
    ret = loader_cmdline(vm->cfg, bases, gsis, vm->nmmio_dev, cmdline, CONFIG_CMDLINE_MAX * 2);
    if (ret) {
        snprintf(err, errlen, "kernel command line is too long");
        free(cmdline);
        return -EINVAL;
    }

    struct kvm_regs regs;
    struct kvm_sregs sregs;
    memset(&regs, 0, sizeof(regs));
    ret = vcpu_get_sregs(&vm->vcpus[0], &sregs);
    if (!ret)
        ret = boot_setup(&vm->mem, &k, cmdline, initrd_gpa, initrd_len, &regs, &sregs, why,
                         sizeof(why));
    free(cmdline);
    if (ret) {
        snprintf(err, errlen, "cannot prepare boot: %s", why[0] ? why : strerror(-ret));
        return ret;
    }
    ret = vcpu_set_regs(&vm->vcpus[0], &regs, &sregs);
    if (ret)
        snprintf(err, errlen, "cannot set boot registers: %s", strerror(-ret));
    return ret;
}
