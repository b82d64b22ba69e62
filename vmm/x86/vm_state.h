/* x86 VM-wide state for snapshots: irqchips, PIT2 and kvmclock, saved, checked and loaded. */
#ifndef AMBER_VMM_X86_VM_STATE_H
#define AMBER_VMM_X86_VM_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/snapshot_fmt.h"

/* Record tags of the SNAP_SEC_VM section. */
enum vm_state_tag {
    VMS_PIC_MASTER = 1,  /* struct kvm_irqchip, chip_id 0 */
    VMS_PIC_SLAVE = 2,   /* chip_id 1 */
    VMS_IOAPIC = 3,      /* chip_id 2 */
    VMS_PIT2 = 4,        /* struct kvm_pit_state2 */
    VMS_CLOCK = 5,       /* struct kvm_clock_data */
    VMS_REALTIME_NS = 6, /* u64: host CLOCK_REALTIME when the clock was read */
};

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
