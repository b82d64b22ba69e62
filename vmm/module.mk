# The KVM core. Device and API fragments append their objects to VMM_OBJS; the top Makefile
# links build/amber from VMM_OBJS plus vmm/main.o.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o vmm/pause.o vmm/vcpu.o vmm/vm.o \
            vmm/devices.o vmm/loader.o vmm/vmm.o
ALL_BINS += $(BUILD)/amber

$(eval $(call unit_test,test_pause,vmm/pause.o,))
