/* One vCPU's KVM counters from its binary stats fd: parse the descriptors once, pread values. */
#include "vmm/vcpu_stats.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char *const stat_names[VCPU_STAT_COUNT] = {
#define X(name) #name,
    VCPU_STATS_NAMES
#undef X
};

/* A descriptor block larger than this is not KVM's (6.x lists about 50 vCPU counters). */
#define STATS_DESC_MAX (1u << 20)
#define STATS_NAME_MAX 256u

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int vcpu_stats_parse(struct vcpu_stats *s, int stats_fd)
{
    memset(s, 0, sizeof(*s));
    struct kvm_stats_header h;
    int ret = pread_all(stats_fd, &h, sizeof(h), 0);
    if (ret)
        goto err_close;
    size_t desc_len = sizeof(struct kvm_stats_desc) + (size_t)h.name_size;
    ret = -EINVAL;
    if (h.name_size == 0 || h.name_size > STATS_NAME_MAX || h.num_desc == 0 ||
        (uint64_t)h.num_desc * desc_len > STATS_DESC_MAX)
        goto err_close;
    size_t total = (size_t)h.num_desc * desc_len;
    char *descs = malloc(total);
    ret = -ENOMEM;
    if (!descs)
        goto err_close;
    ret = pread_all(stats_fd, descs, total, h.desc_offset);
    if (ret)
        goto err_free;
    for (uint32_t i = 0; i < h.num_desc; i++) {
        struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + (size_t)i * desc_len);
        d->name[h.name_size - 1] = '\0'; /* KVM's names are terminated; a hostile file's not */
        for (unsigned k = 0; k < VCPU_STAT_COUNT; k++) {
            if (s->have[k] || d->size == 0 || strcmp(d->name, stat_names[k]) != 0)
                continue;
            s->have[k] = true;
            s->offset[k] = (uint64_t)h.data_offset + d->offset;
        }
    }
    free(descs);
    s->fd = stats_fd;
    s->open = true;
    return 0;

err_free:
    free(descs);
err_close:
    close(stats_fd);
    return ret;
}

int vcpu_stats_open(struct vcpu_stats *s, int vcpu_fd)
{
    int fd = ioctl(vcpu_fd, KVM_GET_STATS_FD, NULL);
    if (fd < 0) {
        memset(s, 0, sizeof(*s));
        return -errno;
    }
    return vcpu_stats_parse(s, fd);
}

int vcpu_stats_format(const struct vcpu_stats *s, char *out, size_t size)
{
    if (size == 0)
        return -EINVAL;
    out[0] = '\0';
    if (!s->open) {
        snprintf(out, size, "unavailable (no stats fd)");
        return -ENODEV;
    }
    size_t used = 0;
    for (unsigned k = 0; k < VCPU_STAT_COUNT; k++) {
        if (!s->have[k])
            continue;
        uint64_t v;
        int ret = pread_all(s->fd, &v, sizeof(v), s->offset[k]);
        if (ret) {
            snprintf(out, size, "unavailable (%s)", strerror(-ret));
            return ret;
        }
        int n = snprintf(out + used, size - used, "%s%s %llu", used ? " " : "", stat_names[k],
                         (unsigned long long)v);
        if (n < 0 || (size_t)n >= size - used) {
            out[used] = '\0'; /* whole counters only */
            return -ENOSPC;
        }
        used += (size_t)n;
    }
    return 0;
}

void vcpu_stats_close(struct vcpu_stats *s)
{
    if (s->open)
        close(s->fd);
    s->open = false;
}
