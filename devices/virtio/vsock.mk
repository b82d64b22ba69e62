# virtio-vsock: the device glue, the pure connection engine and wire format, their tests.
VMM_OBJS += devices/virtio/vsock.o devices/virtio/vsock_mux.o devices/virtio/vsock_proto.o

VSOCK_PURE_OBJS := devices/virtio/vsock_mux.o devices/virtio/vsock_proto.o vmm/log.o
$(eval $(call unit_test,test_vsock,$(VSOCK_PURE_OBJS)))
$(eval $(call fuzz_target,fuzz_vsock,devices/virtio/vsock_mux.c devices/virtio/vsock_proto.c vmm/log.c))
