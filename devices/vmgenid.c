/* The VM generation ID device: a random 128-bit ID in reserved guest memory and its notify line. */
#include "devices/vmgenid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "vmm/log.h"

/* A random source that keeps returning the saved ID is broken, not unlucky (2^-128 a draw). */
#define VMGENID_DRAWS 4

struct vmgenid {
    struct guest_mem *mem;
    uint64_t gpa;
    unsigned gsi;
    irq_line_fn irq;
    void *opaque;
    vmgenid_random_fn random;
    uint8_t id[VMGENID_ID_BYTES];
};

static int random_getrandom(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Draw an ID that differs from avoid (when given) and write it where the guest reads it. */
static int renew(struct vmgenid *v, const uint8_t *avoid)
{
    uint8_t id[VMGENID_ID_BYTES];
    for (int i = 0; i < VMGENID_DRAWS; i++) {
        int ret = v->random(id, sizeof(id));
        if (ret)
            return ret;
        if (avoid && memcmp(id, avoid, sizeof(id)) == 0)
            continue;
        if (mem_write(v->mem, v->gpa, id, sizeof(id)) < 0)
            return -EFAULT;
        memcpy(v->id, id, sizeof(id));
        return 0;
    }
    return -EIO;
}

int vmgenid_create(struct guest_mem *m, uint64_t gpa, unsigned gsi, irq_line_fn irq, void *opaque,
                   vmgenid_random_fn random, struct vmgenid **out)
{
    *out = NULL;
    if (gpa & 7)
        return -EINVAL;
    struct vmgenid *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    *v = (struct vmgenid){.mem = m,
                          .gpa = gpa,
                          .gsi = gsi,
                          .irq = irq,
                          .opaque = opaque,
                          .random = random ? random : random_getrandom};
    int ret = renew(v, NULL);
    if (ret) {
        free(v);
        return ret;
    }
    *out = v;
    return 0;
}

void vmgenid_destroy(struct vmgenid *v)
{
    free(v);
}

void vmgenid_get(const struct vmgenid *v, uint8_t id[VMGENID_ID_BYTES])
{
    memcpy(id, v->id, VMGENID_ID_BYTES);
}

void vmgenid_save(const struct vmgenid *v, struct vmgenid_state *s)
{
    memset(s, 0, sizeof(*s));
    s->version = VMGENID_STATE_VERSION;
    s->gsi = v->gsi;
    s->gpa = v->gpa;
    memcpy(s->id, v->id, sizeof(s->id));
}

int vmgenid_check(const struct vmgenid *v, const struct vmgenid_state *s, char *err, size_t errlen)
{
    if (s->version != VMGENID_STATE_VERSION) {
        snprintf(err, errlen,
                 "snapshot file: VM generation ID state version %u, this amber reads %u",
                 s->version, VMGENID_STATE_VERSION);
        return -EBADMSG;
    }
    if (s->gpa != v->gpa || s->gsi != v->gsi) {
        snprintf(err, errlen,
                 "snapshot file: VM generation ID at 0x%llx on GSI %u, this amber has it at "
                 "0x%llx on GSI %u",
                 (unsigned long long)s->gpa, s->gsi, (unsigned long long)v->gpa, v->gsi);
        return -EBADMSG;
    }
    return 0;
}

int vmgenid_restore(struct vmgenid *v, const struct vmgenid_state *s)
{
    int ret = renew(v, s->id);
    if (ret)
        return ret;
    /* An edge: the guest's GED line is edge-triggered, so raise and drop it at once. */
    v->irq(v->opaque, v->gsi, 1);
    v->irq(v->opaque, v->gsi, 0);
    log_debug("vmgenid: new generation ID, GED line %u raised", v->gsi);
    return 0;
}
