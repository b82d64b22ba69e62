/* Guest CPUID (topology, hypervisor and KVM leaves) and the MSRs every vCPU starts with. */
#include "vmm/x86/cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define LEAF1_ECX_HYPERVISOR   (1u << 31)
#define LEAF1_ECX_TSC_DEADLINE (1u << 24)
#define LEAF1_EDX_HTT          (1u << 28)
#define LEAF6_EAX_ARAT         (1u << 2)
#define TOPO_LEVEL_SMT         1
#define TOPO_LEVEL_CORE        2
#define CPUID_MAX_VCPUS        255

#define MSR_IA32_SYSENTER_CS    0x00000174
#define MSR_IA32_SYSENTER_ESP   0x00000175
#define MSR_IA32_SYSENTER_EIP   0x00000176
#define MSR_IA32_MISC_ENABLE    0x000001a0
#define MSR_MTRR_DEF_TYPE       0x000002ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1
#define MTRR_ENABLE_WB          0x806 /* E (bit 11) | default type 6 (write-back) */

unsigned cpuid_core_shift(unsigned nvcpus)
{
    unsigned shift = 0;
    while ((1u << shift) < nvcpus)
        shift++;
    return shift;
}

/* What fix_leaf needs to know: the vCPU's place in the topology, and the cpuid_build flags. */
struct topo {
    unsigned index, nvcpus, shift;
    bool tsc_deadline;
};

static int push(struct kvm_cpuid2 *out, unsigned max, const struct kvm_cpuid_entry2 *e)
{
    if (out->nent >= max)
        return -ENOSPC;
    out->entries[out->nent++] = *e;
    return 0;
}

/* Leaf 0xb / 0x1f: SMT level (1 thread, shift 0), core level (all vCPUs), then the end. */
static int push_x2apic_topology(struct kvm_cpuid2 *out, unsigned max, uint32_t leaf,
                                const struct topo *t)
{
    for (uint32_t sub = 0; sub < 3; sub++) {
        struct kvm_cpuid_entry2 e = {
            .function = leaf, .index = sub, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
        if (sub == 0) {
            e.eax = 0;
            e.ebx = 1;
            e.ecx = (TOPO_LEVEL_SMT << 8) | sub;
        } else if (sub == 1) {
            e.eax = t->shift;
            e.ebx = t->nvcpus;
            e.ecx = (TOPO_LEVEL_CORE << 8) | sub;
        } else {
            e.ecx = sub; /* level type 0: no more levels */
        }
        e.edx = t->index;
        int rc = push(out, max, &e);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void fix_leaf(struct kvm_cpuid_entry2 *e, const struct topo *t)
{
    uint32_t pkg_ids = 1u << t->shift;
    switch (e->function) {
    case 1:
        e->ebx = (e->ebx & 0x0000ffff) | ((pkg_ids & 0xff) << 16) | (t->index << 24);
        e->ecx |= LEAF1_ECX_HYPERVISOR;
        if (t->tsc_deadline)
            e->ecx |= LEAF1_ECX_TSC_DEADLINE;
        else
            e->ecx &= ~LEAF1_ECX_TSC_DEADLINE;
        if (t->nvcpus > 1)
            e->edx |= LEAF1_EDX_HTT;
        else
            e->edx &= ~LEAF1_EDX_HTT;
        break;
    case 4:
        if ((e->eax & 0x1f) == 0) /* no cache at this subleaf */
            break;
        {
            uint32_t cores = pkg_ids - 1 > 63 ? 63 : pkg_ids - 1;
            uint32_t level = (e->eax >> 5) & 7;
            uint32_t sharing = level >= 3 ? (pkg_ids - 1 > 0xfff ? 0xfff : pkg_ids - 1) : 0;
            e->eax = (e->eax & 0x3fff) | (sharing << 14) | (cores << 26);
        }
        break;
    case 6:
        e->eax &= LEAF6_EAX_ARAT;
        e->ebx = 0;
        e->ecx = 0;
        e->edx = 0;
        break;
    case CPUID_KVM_SIGNATURE:
        e->eax = CPUID_KVM_FEATURES;
        memcpy(&e->ebx, "KVMK", 4);
        memcpy(&e->ecx, "VMKV", 4);
        memcpy(&e->edx, "M\0\0\0", 4);
        break;
    case CPUID_KVM_FEATURES:
        e->eax |= KVM_FEAT_CLOCKSOURCE2 | KVM_FEAT_CLOCK_STABLE;
        break;
    case 0x80000008:
        /* AMD: NC (cores - 1) in ECX[7:0], ApicIdCoreIdSize in ECX[15:12]. */
        e->ecx = (e->ecx & ~0xf0ffu) | (t->shift << 12) | ((t->nvcpus - 1) & 0xff);
        break;
    case 0x8000001e:
        /* AMD: extended APIC id, core (compute unit) id with one thread, node 0. */
        e->eax = t->index;
        e->ebx = t->index & 0xff;
        e->ecx = 0;
        break;
    }
}

int cpuid_build(const struct kvm_cpuid2 *supported, unsigned vcpu_index, unsigned nvcpus,
                unsigned flags, struct kvm_cpuid2 *out, unsigned max_entries)
{
    if (!supported || !out || nvcpus == 0 || nvcpus > CPUID_MAX_VCPUS || vcpu_index >= nvcpus ||
        (flags & ~CPUID_F_TSC_DEADLINE))
        return -EINVAL;
    struct topo t = {.index = vcpu_index,
                     .nvcpus = nvcpus,
                     .shift = cpuid_core_shift(nvcpus),
                     .tsc_deadline = flags & CPUID_F_TSC_DEADLINE};
    uint32_t max_basic = 0;
    bool have_kvm_sig = false, have_kvm_feat = false, done_b = false, done_1f = false;
    int rc;

    for (uint32_t i = 0; i < supported->nent; i++) {
        const struct kvm_cpuid_entry2 *s = &supported->entries[i];
        if (s->function == 0)
            max_basic = s->eax;
        have_kvm_sig |= s->function == CPUID_KVM_SIGNATURE;
        have_kvm_feat |= s->function == CPUID_KVM_FEATURES;
    }

    out->nent = 0;
    for (uint32_t i = 0; i < supported->nent; i++) {
        const struct kvm_cpuid_entry2 *s = &supported->entries[i];
        if (s->function == 0xb || s->function == 0x1f) {
            /* Replaced as a whole by our own subleaves, emitted once. */
            bool *done = s->function == 0xb ? &done_b : &done_1f;
            if (!*done && (rc = push_x2apic_topology(out, max_entries, s->function, &t)) < 0)
                return rc;
            *done = true;
            continue;
        }
        struct kvm_cpuid_entry2 e = *s;
        fix_leaf(&e, &t);
        if ((rc = push(out, max_entries, &e)) < 0)
            return rc;
    }
    if (!done_b && max_basic >= 0xb && (rc = push_x2apic_topology(out, max_entries, 0xb, &t)) < 0)
        return rc;
    if (!have_kvm_sig) {
        struct kvm_cpuid_entry2 e = {.function = CPUID_KVM_SIGNATURE};
        fix_leaf(&e, &t);
        if ((rc = push(out, max_entries, &e)) < 0)
            return rc;
    }
    if (!have_kvm_feat) {
        struct kvm_cpuid_entry2 e = {.function = CPUID_KVM_FEATURES};
        fix_leaf(&e, &t);
        if ((rc = push(out, max_entries, &e)) < 0)
            return rc;
    }
    return 0;
}

size_t msr_boot_list(struct kvm_msr_entry *out, size_t max)
{
    static const struct kvm_msr_entry list[] = {
        {.index = MSR_IA32_SYSENTER_CS},
        {.index = MSR_IA32_SYSENTER_ESP},
        {.index = MSR_IA32_SYSENTER_EIP},
        {.index = MSR_STAR},
        {.index = MSR_LSTAR},
        {.index = MSR_CSTAR},
        {.index = MSR_SYSCALL_MASK},
        {.index = MSR_KERNEL_GS_BASE},
        {.index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING},
        {.index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE_WB},
    };
    size_t n = sizeof(list) / sizeof(list[0]);
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = list[i];
    return n;
}
