/* x86 vCPU state for snapshots: read from KVM, checked, and written back in order. */
#ifndef AMBER_VMM_X86_CPU_STATE_H
#define AMBER_VMM_X86_CPU_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/snapshot_fmt.h"

/* Record tags of a SNAP_SEC_VCPU section (values are KVM's own structures, x86-64 UAPI). */
enum cpu_state_tag {
    CPU_REGS = 1,      /* struct kvm_regs */
    CPU_SREGS = 2,     /* struct kvm_sregs */
    CPU_FPU = 3,       /* struct kvm_fpu */
    CPU_XSAVE = 4,     /* struct kvm_xsave, or KVM_GET_XSAVE2's larger area */
    CPU_XCRS = 5,      /* struct kvm_xcrs */
    CPU_LAPIC = 6,     /* struct kvm_lapic_state */
    CPU_EVENTS = 7,    /* struct kvm_vcpu_events */
    CPU_DEBUGREGS = 8, /* struct kvm_debugregs */
    CPU_MP_STATE = 9,  /* struct kvm_mp_state */
    CPU_MSRS = 10,     /* struct kvm_msr_entry[] */
    CPU_CPUID = 11,    /* struct kvm_cpuid_entry2[] */
};

#define CPU_STATE_MAX_MSRS  1024
#define CPU_STATE_MAX_CPUID 256
#define CPU_STATE_MAX_XSAVE (64u << 10)

/*
 * Write one SNAP_SEC_VCPU section (instance index) for a vCPU that is out of KVM_RUN: every
 * record above. The MSRs are every index KVM_GET_MSR_INDEX_LIST (on kvm_fd) names that this
 * vCPU can read. Returns 0 or a negative errno with err set.
 */
int cpu_state_save(int kvm_fd, int vcpu_fd, unsigned index, struct snap_writer *w, char *err,
                   size_t errlen);

/*
 * Check a vCPU section before anything reaches KVM: every record present with the size KVM's
 * structures have, MSR/CPUID counts within bounds, an MP state KVM knows, and control
 * registers that agree (paging needs protection, long mode needs paging and PAE). Pure.
 * Returns 0 or -EBADMSG with err set.
 */
int cpu_state_check(const struct snap_reader *r, const struct snap_entry *s, char *err,
                    size_t errlen);

/*
 * Load a checked vCPU section into a vCPU created but not yet run: CPUID, then sregs, regs,
 * XSAVE (or FPU), XCRs, debug registers, the MSRs, the LAPIC, the TSC deadline (ignored by
 * KVM until the LAPIC timer is in deadline mode), MP state, and the pending events last.
 * Returns 0 or a negative errno with err naming the step.
 */
int cpu_state_restore(int vcpu_fd, const struct snap_reader *r, const struct snap_entry *s,
                      char *err, size_t errlen);

/*
 * Move a restored vCPU's TSC on by delta_ns (at this vCPU's TSC frequency), so a guest whose
 * clocksource is the TSC sees the real time that passed, as kvmclock does. Call after
 * cpu_state_restore. Returns 0 or a negative errno with err set.
 */
int cpu_state_advance_tsc(int vcpu_fd, const struct snap_reader *r, const struct snap_entry *s,
                          uint64_t delta_ns, char *err, size_t errlen);

#endif
