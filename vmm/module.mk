# The KVM core and the ground floor (log, loop, memory, buses, pause). Config, device, API and
# board fragments append their objects to VMM_OBJS too; the top Makefile links build/amber.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o vmm/pause.o vmm/vcpu.o vmm/vcpu_stats.o \
            vmm/vm.o vmm/loader.o
ALL_BINS += $(BUILD)/amber

$(eval $(call unit_test,test_pause,vmm/pause.o,))
$(eval $(call unit_test,test_vcpu_stats,vmm/vcpu_stats.o,))

# Snapshot and restore, KVM side (docs/snapshot.md): the file format and x86 CPU/VM state. The
# board (board/board.mk) saves and loads the devices and drives both.
VMM_OBJS += vmm/snapshot_fmt.o vmm/x86/cpu_state.o vmm/x86/vm_state.o
$(eval $(call fuzz_target,fuzz_snapshot,vmm/snapshot_fmt.c vmm/x86/cpu_state.c vmm/x86/vm_state.c \
  devices/virtio/virtio_snap.c devices/virtio/ratelimit.c devices/virtio/virtq.c devices/virtio/mmio.c vmm/mem.c \
  vmm/loop.c vmm/log.c,))
