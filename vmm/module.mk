# The KVM core. Device and API fragments append their objects to VMM_OBJS; the top Makefile
# links build/amber from VMM_OBJS plus board/main.o.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o vmm/pause.o vmm/vcpu.o vmm/vm.o \
            board/devices.o vmm/loader.o board/process.o
ALL_BINS += $(BUILD)/amber
