# virtio-blk and virtio-net back-ends (io_uring block I/O, TAP networking) and their tests.
BLK_OBJS := devices/virtio/blk.o devices/virtio/blk_io.o devices/virtio/blk_req.o
NET_OBJS := devices/virtio/net.o devices/virtio/net_rx.o devices/virtio/tap.o
VMM_OBJS += $(BLK_OBJS) $(NET_OBJS)

BLKNET_CORE_OBJS := devices/virtio/virtq.o devices/virtio/mmio.o vmm/mem.o vmm/loop.o vmm/log.o \
                    devices/virtio/ratelimit.o

$(eval $(call unit_test,test_blk,$(BLK_OBJS) $(BLKNET_CORE_OBJS),-luring))
$(eval $(call unit_test,test_net,$(NET_OBJS) $(BLKNET_CORE_OBJS) vmm/seccomp.o,-lseccomp))
$(eval $(call fuzz_target,fuzz_blk_req,devices/virtio/blk_req.c devices/virtio/virtq.c vmm/mem.c vmm/log.c,))

# Device state in snapshots: rate limiter levels (blk, net) and a queue's used index (rng).
$(eval $(call unit_test,test_snapshot_devices,$(BLK_OBJS) $(NET_OBJS) devices/virtio/rng.o \
  devices/virtio/virtio_snap.o vmm/snapshot_fmt.o $(BLKNET_CORE_OBJS),-luring))
