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

int vcpu_sample_format(const struct vcpu_sample *s, char *out, size_t size)
{
    if (size == 0)
        return -EINVAL;
    char ev[96] = "event unknown";
    if (s->have_events) {
        if (s->exc_injected || s->exc_pending)
            snprintf(ev, sizeof(ev), "event exception %u %s error %#x", s->exc_nr,
                     s->exc_injected ? "injected" : "pending", s->exc_has_error ? s->exc_error : 0);
        else if (s->nmi_injected)
            snprintf(ev, sizeof(ev), "event nmi injected");
        else if (s->irq_injected)
            snprintf(ev, sizeof(ev), "event irq %u injected", s->irq_nr);
        else
            snprintf(ev, sizeof(ev), "event none");
    }
    int n = snprintf(out, size, "cr0 %#llx cr3 %#llx cr4 %#llx efer %#llx %s\n",
                     (unsigned long long)s->cr0, (unsigned long long)s->cr3,
                     (unsigned long long)s->cr4, (unsigned long long)s->efer, ev);
    if (n < 0 || (size_t)n >= size)
        return -ENOSPC;
    size_t used = (size_t)n;
    if (!s->rip_mapped)
        n = snprintf(out + used, size - used, "insn: rip not mapped in the guest's page tables");
    else if (s->insn_len == 0)
        n = snprintf(out + used, size - used, "insn at gpa %#llx: outside guest RAM",
                     (unsigned long long)s->rip_gpa);
    else
        n = snprintf(out + used, size - used, "insn at gpa %#llx:", (unsigned long long)s->rip_gpa);
    if (n < 0 || (size_t)n >= size - used)
        return -ENOSPC;
    used += (size_t)n;
    unsigned len = s->rip_mapped && s->insn_len <= VCPU_SAMPLE_INSN ? s->insn_len : 0;
    for (unsigned i = 0; i < len; i++) {
        n = snprintf(out + used, size - used, " %02x", s->insn[i]);
        if (n < 0 || (size_t)n >= size - used)
            return -ENOSPC;
        used += (size_t)n;
    }
    return 0;
}
