/* x86 vCPU and VM state for snapshots: read from KVM, checked, and written back in order. */
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

/* Record tags of the SNAP_SEC_VM section. */
enum vm_state_tag {
    VMS_PIC_MASTER = 1,  /* struct kvm_irqchip, chip_id 0 */
    VMS_PIC_SLAVE = 2,   /* chip_id 1 */
    VMS_IOAPIC = 3,      /* chip_id 2 */
    VMS_PIT2 = 4,        /* struct kvm_pit_state2 */
    VMS_CLOCK = 5,       /* struct kvm_clock_data */
    VMS_REALTIME_NS = 6, /* u64: host CLOCK_REALTIME when the clock was read */
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

/* The host CLOCK_REALTIME the VM section recorded with kvmclock (0 if absent). */
uint64_t vm_state_saved_realtime(const struct snap_reader *r, const struct snap_entry *s);

/* Write the SNAP_SEC_VM section: both PICs, the IOAPIC, PIT2 and kvmclock with the host's
 * realtime. Returns 0 or a negative errno with err set. */
int vm_state_save(int vm_fd, struct snap_writer *w, char *err, size_t errlen);

/* Check the VM section (records present and sized). Pure. 0 or -EBADMSG with err set. */
int vm_state_check(const struct snap_reader *r, const struct snap_entry *s, char *err,
                   size_t errlen);

/* How kvmclock is set on restore (docs/snapshot.md, "Clock"). */
enum clock_mode {
    KVMCLOCK_KEEP,    /* clock_realtime false: the guest's clock resumes where it stopped */
    KVMCLOCK_MOVE,    /* move it on by the real time elapsed; KVM_CLOCK_REALTIME if offered */
    KVMCLOCK_MOVE_SW, /* the same, computed by amber (what hosts without it get) */
};

/*
 * The kvmclock value to set: saved_clock, plus now_realtime_ns - saved_realtime_ns when
 * moving on (never backwards: a host clock that went back keeps the saved value). Pure.
 */
uint64_t vm_state_clock_value(uint64_t saved_clock, uint64_t saved_realtime_ns,
                              uint64_t now_realtime_ns, enum clock_mode mode);

/* Load the VM section's irqchips and PIT2 (before the vCPUs' LAPICs). 0 or -errno, err set. */
int vm_state_restore(int vm_fd, const struct snap_reader *r, const struct snap_entry *s, char *err,
                     size_t errlen);

/*
 * Set kvmclock from the VM section per mode (last, just before the vCPUs run): KVMCLOCK_MOVE
 * uses KVM's KVM_CLOCK_REALTIME when both the saved data and this KVM carry it, else falls back
 * to KVMCLOCK_MOVE_SW. *used_native tells which. Returns 0 or a negative errno with err set.
 */
int vm_state_restore_clock(int vm_fd, const struct snap_reader *r, const struct snap_entry *s,
                           enum clock_mode mode, bool *used_native, char *err, size_t errlen);

#endif
