# The board and the process (board/): main(), the VMM process and the devices it wires to the
# VM. The top Makefile links build/amber from VMM_OBJS plus board/main.o.
VMM_OBJS += board/devices.o board/process.o

# Snapshot and restore of the whole board (docs/snapshot.md): state file, memory file, restore.
VMM_OBJS += board/snapshot.o board/snapshot_mem.o board/snapshot_boot.o
SNAP_TEST_OBJS := board/snapshot.o board/snapshot_mem.o vmm/snapshot_fmt.o vmm/x86/cpu_state.o \
                  vmm/x86/vm_state.o devices/virtio/virtio_snap.o devices/virtio/rng.o devices/virtio/ratelimit.o \
                  devices/virtio/mmio.o devices/virtio/virtq.o devices/serial.o devices/i8042.o \
                  devices/vmgenid.o \
                  config/config.o config/args.o config/specs.o vmm/mem.o vmm/loop.o vmm/log.o \
                  ctl/snapshot_merge.o \
                  $(API_CORE_OBJS) \
                  $(API_CONFIG_OBJS)
$(eval $(call unit_test,test_snapshot,$(SNAP_TEST_OBJS),-ljson-c))

# The snapshot memory copy with 1..N threads, measured without KVM (docs/snapshot.md, Memory).
$(BUILD)/bench/snapshot-copy: $(BUILD)/tests/snapshot_copy_bench.o $(BUILD)/board/snapshot_mem.o \
                              $(BUILD)/vmm/mem.o $(BUILD)/vmm/snapshot_fmt.o $(BUILD)/vmm/log.o
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lpthread
