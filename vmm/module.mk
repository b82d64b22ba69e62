# The KVM core. Device and API fragments append their objects to VMM_OBJS; the top Makefile
# links build/amber from VMM_OBJS plus vmm/main.o.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o vmm/pause.o vmm/vcpu.o vmm/vm.o \
            vmm/devices.o vmm/loader.o vmm/vmm.o
ALL_BINS += $(BUILD)/amber

# Snapshot and restore (docs/snapshot.md): the file format, x86 CPU/VM state, device state.
VMM_OBJS += vmm/snapshot_fmt.o vmm/snapshot.o vmm/snapshot_mem.o vmm/snapshot_boot.o \
            vmm/x86/cpu_state.o vmm/x86/vm_state.o \
            devices/virtio/virtio_snap.o

SNAP_TEST_OBJS := vmm/snapshot_fmt.o vmm/snapshot.o vmm/snapshot_mem.o vmm/x86/cpu_state.o \
                  vmm/x86/vm_state.o devices/virtio/virtio_snap.o devices/virtio/rng.o devices/virtio/mmio.o \
                  devices/virtio/virtq.o devices/serial.o devices/i8042.o vmm/config.o \
                  vmm/config_args.o vmm/config_specs.o vmm/mem.o vmm/loop.o vmm/log.o \
                  $(API_CORE_OBJS)
$(eval $(call unit_test,test_snapshot,$(SNAP_TEST_OBJS),-ljson-c))
$(eval $(call fuzz_target,fuzz_snapshot,vmm/snapshot_fmt.c vmm/x86/cpu_state.c vmm/x86/vm_state.c \
  devices/virtio/virtio_snap.c devices/virtio/virtq.c devices/virtio/mmio.c vmm/mem.c \
  vmm/loop.c vmm/log.c,))
