# The virtio core: virtqueues, the virtio-mmio transport and virtio-rng, with their tests.
VMM_OBJS += devices/virtio/virtq.o devices/virtio/mmio.o devices/virtio/rng.o devices/virtio/ratelimit.o \
            devices/virtio/virtio_snap.o

VIRTIO_CORE_DEPS := vmm/mem.o vmm/log.o vmm/loop.o devices/virtio/ratelimit.o

$(eval $(call unit_test,test_virtq,devices/virtio/virtq.o vmm/mem.o vmm/log.o))
$(eval $(call unit_test,test_mmio,devices/virtio/mmio.o devices/virtio/virtq.o $(VIRTIO_CORE_DEPS)))
$(eval $(call unit_test,test_rng,devices/virtio/rng.o devices/virtio/mmio.o devices/virtio/virtq.o $(VIRTIO_CORE_DEPS)))
$(eval $(call fuzz_target,fuzz_virtq,devices/virtio/virtq.c vmm/mem.c vmm/log.c))

# Token-bucket rate limiters (drives, network interfaces, entropy).
$(eval $(call unit_test,test_ratelimit,devices/virtio/ratelimit.o vmm/loop.o vmm/log.o))
