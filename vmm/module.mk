# The KVM core. Device and API fragments append their objects to VMM_OBJS; the top Makefile
# links build/amber from VMM_OBJS plus vmm/main.o.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o
ALL_BINS += $(BUILD)/amber
