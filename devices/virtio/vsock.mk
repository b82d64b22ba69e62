# virtio-vsock: the device glue, the pure connection engine and wire format, their tests.
VSOCK_OBJS := devices/virtio/vsock.o devices/virtio/vsock_host.o devices/virtio/vsock_mux.o devices/virtio/vsock_proto.o
VMM_OBJS += $(VSOCK_OBJS)

$(eval $(call unit_test,test_vsock,$(VSOCK_OBJS) devices/virtio/mmio.o devices/virtio/virtq.o vmm/mem.o vmm/loop.o vmm/log.o))
$(eval $(call unit_test,test_vsock_mux,devices/virtio/vsock_mux.o devices/virtio/vsock_proto.o vmm/log.o))
$(eval $(call fuzz_target,fuzz_vsock,devices/virtio/vsock_mux.c devices/virtio/vsock_proto.c vmm/log.c))
$(eval $(call unit_test,test_vsock_pause,$(VSOCK_OBJS) devices/virtio/mmio.o devices/virtio/virtq.o vmm/mem.o vmm/loop.o vmm/log.o))
$(eval $(call unit_test,test_vsock_snap,$(VSOCK_OBJS) devices/virtio/virtio_snap.o devices/virtio/ratelimit.o vmm/snapshot_fmt.o devices/virtio/mmio.o devices/virtio/virtq.o vmm/mem.o vmm/loop.o vmm/log.o))
