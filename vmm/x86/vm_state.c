/* x86 VM-wide state for snapshots: both PICs, the IOAPIC, PIT2 and kvmclock. */
#include "vmm/x86/vm_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int vm_fail(char *err, size_t errlen, const char *what)
{
    int ret = -errno;
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
    return ret;
}

int vm_state_save(int vm_fd, struct snap_writer *w, char *err, size_t errlen)
{
    snapw_begin(w, SNAP_SEC_VM, 0);
    int ret = 0;
    for (uint32_t chip = 0; chip < 3 && !ret; chip++) {
        struct kvm_irqchip ic = {.chip_id = chip};
        if (ioctl(vm_fd, KVM_GET_IRQCHIP, &ic) < 0)
            ret = vm_fail(err, errlen, "KVM_GET_IRQCHIP");
        else
            snapw_record(w, VMS_PIC_MASTER + chip, &ic, sizeof(ic));
    }
    struct kvm_pit_state2 pit;
    memset(&pit, 0, sizeof(pit));
    if (!ret && ioctl(vm_fd, KVM_GET_PIT2, &pit) < 0)
        ret = vm_fail(err, errlen, "KVM_GET_PIT2");
    if (!ret)
        snapw_record(w, VMS_PIT2, &pit, sizeof(pit));
    struct kvm_clock_data clk;
    memset(&clk, 0, sizeof(clk));
    if (!ret && ioctl(vm_fd, KVM_GET_CLOCK, &clk) < 0)
        ret = vm_fail(err, errlen, "KVM_GET_CLOCK");
    if (!ret) {
        uint64_t now = realtime_ns();
        snapw_record(w, VMS_CLOCK, &clk, sizeof(clk));
        snapw_u64(w, VMS_REALTIME_NS, now);
    }
    snapw_end(w);
    return ret;
}

int vm_state_check(const struct snap_reader *r, const struct snap_entry *s, char *err,
                   size_t errlen)
{
    static const struct {
        uint32_t tag, size;
    } want[] = {
        {VMS_PIC_MASTER, sizeof(struct kvm_irqchip)}, {VMS_PIC_SLAVE, sizeof(struct kvm_irqchip)},
        {VMS_IOAPIC, sizeof(struct kvm_irqchip)},     {VMS_PIT2, sizeof(struct kvm_pit_state2)},
        {VMS_CLOCK, sizeof(struct kvm_clock_data)},   {VMS_REALTIME_NS, 8},
    };
    if (!s) {
        snprintf(err, errlen, "snapshot file: no VM section");
        return -EBADMSG;
    }
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const void *d;
        uint32_t len;
        if (snapr_record(r, s, want[i].tag, &d, &len) || len != want[i].size) {
            snprintf(err, errlen, "snapshot file: VM record %u missing or of the wrong size",
                     want[i].tag);
            return -EBADMSG;
        }
    }
    for (uint32_t chip = 0; chip < 3; chip++) {
        struct kvm_irqchip ic;
        snapr_get(r, s, VMS_PIC_MASTER + chip, &ic, sizeof(ic));
        if (ic.chip_id != chip) {
            snprintf(err, errlen, "snapshot file: irqchip record %u has chip id %u", chip,
                     ic.chip_id);
            return -EBADMSG;
        }
    }
    return 0;
}

uint64_t vm_state_clock_value(uint64_t saved_clock, uint64_t saved_realtime_ns,
                              uint64_t now_realtime_ns, enum clock_mode mode)
{
    if (mode == KVMCLOCK_KEEP || now_realtime_ns <= saved_realtime_ns)
        return saved_clock;
    uint64_t v;
    if (__builtin_add_overflow(saved_clock, now_realtime_ns - saved_realtime_ns, &v))
        return saved_clock;
    return v;
}

int vm_state_restore(int vm_fd, const struct snap_reader *r, const struct snap_entry *s, char *err,
                     size_t errlen)
{
    for (uint32_t chip = 0; chip < 3; chip++) {
        struct kvm_irqchip ic;
        snapr_get(r, s, VMS_PIC_MASTER + chip, &ic, sizeof(ic));
        if (ioctl(vm_fd, KVM_SET_IRQCHIP, &ic) < 0)
            return vm_fail(err, errlen, "KVM_SET_IRQCHIP");
    }
    struct kvm_pit_state2 pit;
    snapr_get(r, s, VMS_PIT2, &pit, sizeof(pit));
    if (ioctl(vm_fd, KVM_SET_PIT2, &pit) < 0)
        return vm_fail(err, errlen, "KVM_SET_PIT2");
    return 0;
}

int vm_state_restore_clock(int vm_fd, const struct snap_reader *r, const struct snap_entry *s,
                           enum clock_mode mode, bool *used_native, char *err, size_t errlen)
{
    *used_native = false;
    struct kvm_clock_data saved, now_clk, set;
    uint64_t saved_real = 0;
    snapr_get(r, s, VMS_CLOCK, &saved, sizeof(saved));
    snapr_u64(r, s, VMS_REALTIME_NS, &saved_real);
    memset(&now_clk, 0, sizeof(now_clk));
    memset(&set, 0, sizeof(set));
    bool host_has =
        ioctl(vm_fd, KVM_GET_CLOCK, &now_clk) == 0 && (now_clk.flags & KVM_CLOCK_REALTIME);
    if (mode == KVMCLOCK_MOVE && host_has && (saved.flags & KVM_CLOCK_REALTIME)) {
        /* KVM adds the realtime elapsed since saved.realtime itself, in one step. */
        set.clock = saved.clock;
        set.realtime = saved.realtime;
        set.flags = KVM_CLOCK_REALTIME;
        *used_native = true;
    } else {
        set.clock = vm_state_clock_value(saved.clock, saved_real, realtime_ns(),
                                         mode == KVMCLOCK_KEEP ? KVMCLOCK_KEEP : KVMCLOCK_MOVE_SW);
    }
    if (ioctl(vm_fd, KVM_SET_CLOCK, &set) < 0)
        return vm_fail(err, errlen, "KVM_SET_CLOCK");
    return 0;
}

uint64_t vm_state_saved_realtime(const struct snap_reader *r, const struct snap_entry *s)
{
    uint64_t v = 0;
    snapr_u64(r, s, VMS_REALTIME_NS, &v);
    return v;
}
