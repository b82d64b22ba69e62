/* x86 vCPU state for snapshots: KVM_GET_* into records, checks, KVM_SET_* in order. */
#include "vmm/x86/cpu_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "vmm/log.h"

#define MSR_IA32_TSC          0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define CR0_PE                (1ull << 0)
#define CR0_PG                (1ull << 31)
#define CR4_PAE               (1ull << 5)
#define EFER_LME              (1ull << 8)
#define EFER_LMA              (1ull << 10)
#define XSAVE_LEGACY_BYTES    4096 /* sizeof(struct kvm_xsave) */

static int fail_errno(char *err, size_t errlen, unsigned index, const char *what)
{
    int ret = -errno;
    snprintf(err, errlen, "vcpu%u: %s: %s", index, what, strerror(errno));
    return ret;
}

/* Read one fixed-size structure with ioctl req and add it as record tag. */
static int save_one(int fd, unsigned long req, void *buf, uint32_t len, uint32_t tag,
                    struct snap_writer *w, unsigned index, const char *what, char *err,
                    size_t errlen)
{
    memset(buf, 0, len);
    if (ioctl(fd, req, buf) < 0)
        return fail_errno(err, errlen, index, what);
    snapw_record(w, tag, buf, len);
    return 0;
}

/* Every MSR KVM lists, less those this vCPU refuses to read (KVM_GET_MSRS stops at the first
 * one it cannot read: drop it and go on from there). */
static int save_msrs(int kvm_fd, int vcpu_fd, unsigned index, struct snap_writer *w, char *err,
                     size_t errlen)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return fail_errno(err, errlen, index, "KVM_GET_MSR_INDEX_LIST");
    uint32_t n = probe.nmsrs;
    if (n > CPU_STATE_MAX_MSRS)
        n = CPU_STATE_MAX_MSRS;
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + n * sizeof(uint32_t));
    struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));
    struct kvm_msrs *scratch = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));
    int ret = 0;
    if (!list || !msrs || !scratch) {
        ret = -ENOMEM;
        goto out;
    }
    list->nmsrs = n;
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        ret = fail_errno(err, errlen, index, "KVM_GET_MSR_INDEX_LIST");
        goto out;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < list->nmsrs && i < n; i++)
        msrs->entries[kept++].index = list->indices[i];
    uint32_t done = 0;
    while (done < kept) {
        /* Read entries [done, kept) through the scratch list. */
        scratch->nmsrs = kept - done;
        memcpy(scratch->entries, &msrs->entries[done],
               (kept - done) * sizeof(struct kvm_msr_entry));
        int got = ioctl(vcpu_fd, KVM_GET_MSRS, scratch);
        if (got < 0) {
            ret = fail_errno(err, errlen, index, "KVM_GET_MSRS");
            goto out;
        }
        memcpy(&msrs->entries[done], scratch->entries, (size_t)got * sizeof(struct kvm_msr_entry));
        done += (uint32_t)got;
        if (done < kept) {
            /* Unreadable on this vCPU: drop it. */
            memmove(&msrs->entries[done], &msrs->entries[done + 1],
                    (kept - done - 1) * sizeof(struct kvm_msr_entry));
            kept--;
        }
    }
    snapw_record(w, CPU_MSRS, msrs->entries, kept * (uint32_t)sizeof(struct kvm_msr_entry));
out:
    free(list);
    free(msrs);
    free(scratch);
    return ret;
}

static int save_cpuid(int vcpu_fd, unsigned index, struct snap_writer *w, char *err, size_t errlen)
{
    struct kvm_cpuid2 *c =
        calloc(1, sizeof(*c) + CPU_STATE_MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
    if (!c)
        return -ENOMEM;
    c->nent = CPU_STATE_MAX_CPUID;
    int ret = 0;
    if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) < 0)
        ret = fail_errno(err, errlen, index, "KVM_GET_CPUID2");
    else
        snapw_record(w, CPU_CPUID, c->entries, c->nent * (uint32_t)sizeof(c->entries[0]));
    free(c);
    return ret;
}

int cpu_state_save(int kvm_fd, int vcpu_fd, unsigned index, struct snap_writer *w, char *err,
                   size_t errlen)
{
    union {
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        struct kvm_fpu fpu;
        struct kvm_xcrs xcrs;
        struct kvm_lapic_state lapic;
        struct kvm_vcpu_events events;
        struct kvm_debugregs dregs;
        struct kvm_mp_state mp;
    } u;
    snapw_begin(w, SNAP_SEC_VCPU, index);
    int ret = save_one(vcpu_fd, KVM_GET_REGS, &u, sizeof(u.regs), CPU_REGS, w, index,
                       "KVM_GET_REGS", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_SREGS, &u, sizeof(u.sregs), CPU_SREGS, w, index,
                       "KVM_GET_SREGS", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_FPU, &u, sizeof(u.fpu), CPU_FPU, w, index, "KVM_GET_FPU",
                       err, errlen);
    if (!ret) {
        int size = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
        uint32_t bytes = size > XSAVE_LEGACY_BYTES ? (uint32_t)size : XSAVE_LEGACY_BYTES;
        if (bytes > CPU_STATE_MAX_XSAVE)
            bytes = CPU_STATE_MAX_XSAVE;
        void *x = calloc(1, bytes);
        if (!x)
            return -ENOMEM;
        unsigned long req = bytes > XSAVE_LEGACY_BYTES ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
        ret = save_one(vcpu_fd, req, x, bytes, CPU_XSAVE, w, index, "KVM_GET_XSAVE", err, errlen);
        free(x);
    }
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_XCRS, &u, sizeof(u.xcrs), CPU_XCRS, w, index,
                       "KVM_GET_XCRS", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_LAPIC, &u, sizeof(u.lapic), CPU_LAPIC, w, index,
                       "KVM_GET_LAPIC", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_VCPU_EVENTS, &u, sizeof(u.events), CPU_EVENTS, w, index,
                       "KVM_GET_VCPU_EVENTS", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_DEBUGREGS, &u, sizeof(u.dregs), CPU_DEBUGREGS, w, index,
                       "KVM_GET_DEBUGREGS", err, errlen);
    if (!ret)
        ret = save_one(vcpu_fd, KVM_GET_MP_STATE, &u, sizeof(u.mp), CPU_MP_STATE, w, index,
                       "KVM_GET_MP_STATE", err, errlen);
    if (!ret)
        ret = save_msrs(kvm_fd, vcpu_fd, index, w, err, errlen);
    if (!ret)
        ret = save_cpuid(vcpu_fd, index, w, err, errlen);
    snapw_end(w);
    return ret;
}

static int bad(char *err, size_t errlen, unsigned index, const char *what)
{
    snprintf(err, errlen, "snapshot file: vcpu%u: %s", index, what);
    return -EBADMSG;
}

static int need(const struct snap_reader *r, const struct snap_entry *s, uint32_t tag,
                uint32_t size, const char *name, char *err, size_t errlen)
{
    const void *d;
    uint32_t len;
    if (snapr_record(r, s, tag, &d, &len) != 0 || len != size) {
        snprintf(err, errlen, "snapshot file: vcpu%u: %s record missing or of the wrong size",
                 s->instance, name);
        return -EBADMSG;
    }
    return 0;
}

int cpu_state_check(const struct snap_reader *r, const struct snap_entry *s, char *err,
                    size_t errlen)
{
    static const struct {
        uint32_t tag, size;
        const char *name;
    } fixed[] = {
        {CPU_REGS, sizeof(struct kvm_regs), "regs"},
        {CPU_SREGS, sizeof(struct kvm_sregs), "sregs"},
        {CPU_FPU, sizeof(struct kvm_fpu), "fpu"},
        {CPU_XCRS, sizeof(struct kvm_xcrs), "xcrs"},
        {CPU_LAPIC, sizeof(struct kvm_lapic_state), "lapic"},
        {CPU_EVENTS, sizeof(struct kvm_vcpu_events), "events"},
        {CPU_DEBUGREGS, sizeof(struct kvm_debugregs), "debugregs"},
        {CPU_MP_STATE, sizeof(struct kvm_mp_state), "mp_state"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        int ret = need(r, s, fixed[i].tag, fixed[i].size, fixed[i].name, err, errlen);
        if (ret)
            return ret;
    }
    const void *d;
    uint32_t len;
    unsigned index = s->instance;
    if (snapr_record(r, s, CPU_XSAVE, &d, &len) || len < XSAVE_LEGACY_BYTES ||
        len > CPU_STATE_MAX_XSAVE || len % 4)
        return bad(err, errlen, index, "xsave record missing or of a bad size");
    if (snapr_record(r, s, CPU_MSRS, &d, &len) || len % sizeof(struct kvm_msr_entry) ||
        len / sizeof(struct kvm_msr_entry) > CPU_STATE_MAX_MSRS)
        return bad(err, errlen, index, "MSR record missing or of a bad size");
    if (snapr_record(r, s, CPU_CPUID, &d, &len) || len % sizeof(struct kvm_cpuid_entry2) ||
        len == 0 || len / sizeof(struct kvm_cpuid_entry2) > CPU_STATE_MAX_CPUID)
        return bad(err, errlen, index, "CPUID record missing or of a bad size");

    struct kvm_mp_state mp;
    snapr_get(r, s, CPU_MP_STATE, &mp, sizeof(mp));
    if (mp.mp_state > KVM_MP_STATE_SUSPENDED)
        return bad(err, errlen, index, "unknown MP state");
    struct kvm_sregs sr;
    snapr_get(r, s, CPU_SREGS, &sr, sizeof(sr));
    if ((sr.cr0 & CR0_PG) && !(sr.cr0 & CR0_PE))
        return bad(err, errlen, index, "CR0 has paging without protection");
    if ((sr.efer & EFER_LMA) &&
        (!(sr.cr0 & CR0_PG) || !(sr.cr4 & CR4_PAE) || !(sr.efer & EFER_LME)))
        return bad(err, errlen, index, "long mode active without paging, PAE or LME");
    return 0;
}

/* Copy a record (sized by cpu_state_check) and hand it to ioctl req. */
static int load_one(int fd, unsigned long req, const struct snap_reader *r,
                    const struct snap_entry *s, uint32_t tag, void *buf, uint32_t len,
                    const char *what, char *err, size_t errlen)
{
    if (snapr_get(r, s, tag, buf, len) != 0)
        return bad(err, errlen, s->instance, what);
    if (ioctl(fd, req, buf) < 0)
        return fail_errno(err, errlen, s->instance, what);
    return 0;
}

/* KVM_SET_MSRS for the entries of the MSR record that match want_deadline (the TSC deadline
 * goes in after the LAPIC). */
static int load_msrs(int fd, const struct snap_reader *r, const struct snap_entry *s,
                     bool want_deadline, char *err, size_t errlen)
{
    const void *d;
    uint32_t len;
    snapr_record(r, s, CPU_MSRS, &d, &len);
    uint32_t n = len / (uint32_t)sizeof(struct kvm_msr_entry);
    struct kvm_msrs *m = calloc(1, sizeof(*m) + (n + 1) * sizeof(struct kvm_msr_entry));
    if (!m)
        return -ENOMEM;
    const struct kvm_msr_entry *src = d;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct kvm_msr_entry e;
        memcpy(&e, &src[i], sizeof(e));
        if ((e.index == MSR_IA32_TSC_DEADLINE) == want_deadline)
            m->entries[k++] = e;
    }
    /* KVM_SET_MSRS stops at the first MSR it refuses. One this KVM will not take back (a
     * feature MSR of another host, say) is named and skipped, as the guest would find it
     * reset after a reboot; everything after it is still loaded. */
    int ret = 0;
    uint32_t done = 0;
    struct kvm_msrs *part = calloc(1, sizeof(*m) + (n + 1) * sizeof(struct kvm_msr_entry));
    if (!part) {
        free(m);
        return -ENOMEM;
    }
    while (done < k && !ret) {
        part->nmsrs = k - done;
        memcpy(part->entries, &m->entries[done], (k - done) * sizeof(struct kvm_msr_entry));
        int got = ioctl(fd, KVM_SET_MSRS, part);
        if (got < 0) {
            ret = fail_errno(err, errlen, s->instance, "KVM_SET_MSRS");
            break;
        }
        done += (uint32_t)got;
        if (done < k) {
            log_warn("vcpu%u: KVM refused MSR %#x = %#llx from the snapshot; skipped", s->instance,
                     m->entries[done].index, (unsigned long long)m->entries[done].data);
            done++;
        }
    }
    free(part);
    free(m);
    return ret;
}

int cpu_state_restore(int vcpu_fd, const struct snap_reader *r, const struct snap_entry *s,
                      char *err, size_t errlen)
{
    const void *d;
    uint32_t len;
    snapr_record(r, s, CPU_CPUID, &d, &len);
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + len);
    if (!c)
        return -ENOMEM;
    c->nent = len / (uint32_t)sizeof(struct kvm_cpuid_entry2);
    memcpy(c->entries, d, len);
    int ret = ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0
                  ? fail_errno(err, errlen, s->instance, "KVM_SET_CPUID2")
                  : 0;
    free(c);
    if (ret)
        return ret;

    union {
        struct kvm_regs regs;
        struct kvm_sregs sregs;
        struct kvm_xcrs xcrs;
        struct kvm_lapic_state lapic;
        struct kvm_vcpu_events events;
        struct kvm_debugregs dregs;
        struct kvm_mp_state mp;
    } u;
    /* Special registers first: they set the mode (and APIC base) the others are read in. */
    ret = load_one(vcpu_fd, KVM_SET_SREGS, r, s, CPU_SREGS, &u, sizeof(u.sregs), "KVM_SET_SREGS",
                   err, errlen);
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_REGS, r, s, CPU_REGS, &u, sizeof(u.regs), "KVM_SET_REGS",
                       err, errlen);
    if (!ret) {
        snapr_record(r, s, CPU_XSAVE, &d, &len);
        void *x = calloc(1, len);
        if (!x)
            return -ENOMEM;
        memcpy(x, d, len);
        if (ioctl(vcpu_fd, KVM_SET_XSAVE, x) < 0)
            ret = fail_errno(err, errlen, s->instance, "KVM_SET_XSAVE");
        free(x);
    }
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_XCRS, r, s, CPU_XCRS, &u, sizeof(u.xcrs), "KVM_SET_XCRS",
                       err, errlen);
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_DEBUGREGS, r, s, CPU_DEBUGREGS, &u, sizeof(u.dregs),
                       "KVM_SET_DEBUGREGS", err, errlen);
    if (!ret)
        ret = load_msrs(vcpu_fd, r, s, false, err, errlen);
    /* The LAPIC after the APIC base (sregs) and MSRs, so its ID and mode read as saved. */
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_LAPIC, r, s, CPU_LAPIC, &u, sizeof(u.lapic),
                       "KVM_SET_LAPIC", err, errlen);
    /* KVM drops a TSC deadline written while the timer is not in deadline mode. */
    if (!ret)
        ret = load_msrs(vcpu_fd, r, s, true, err, errlen);
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_MP_STATE, r, s, CPU_MP_STATE, &u, sizeof(u.mp),
                       "KVM_SET_MP_STATE", err, errlen);
    /* Pending exceptions, interrupts and NMIs last: nothing after may clear them. */
    if (!ret)
        ret = load_one(vcpu_fd, KVM_SET_VCPU_EVENTS, r, s, CPU_EVENTS, &u, sizeof(u.events),
                       "KVM_SET_VCPU_EVENTS", err, errlen);
    return ret;
}

int cpu_state_advance_tsc(int vcpu_fd, const struct snap_reader *r, const struct snap_entry *s,
                          uint64_t delta_ns, char *err, size_t errlen)
{
    const void *d;
    uint32_t len;
    if (delta_ns == 0 || snapr_record(r, s, CPU_MSRS, &d, &len) != 0)
        return 0;
    int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0)
        return 0; /* no frequency to scale by: the guest's TSC resumes where it stopped */
    const struct kvm_msr_entry *src = d;
    for (uint32_t i = 0; i < len / (uint32_t)sizeof(*src); i++) {
        struct kvm_msr_entry e;
        memcpy(&e, &src[i], sizeof(e));
        if (e.index != MSR_IA32_TSC)
            continue;
        /* delta_ns * khz / 1e6 without overflow for any gap under a few centuries */
        uint64_t ticks = (delta_ns / 1000000u) * (uint64_t)khz +
                         (delta_ns % 1000000u) * (uint64_t)khz / 1000000u;
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } m = {.hdr.nmsrs = 1, .e = {.index = MSR_IA32_TSC, .data = e.data + ticks}};
        if (ioctl(vcpu_fd, KVM_SET_MSRS, &m) != 1)
            return fail_errno(err, errlen, s->instance, "KVM_SET_MSRS (TSC)");
        return 0;
    }
    return 0;
}
