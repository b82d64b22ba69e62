# The KVM core and the ground floor (log, loop, memory, buses, pause). Config, device, API and
# board fragments append their objects to VMM_OBJS too; the top Makefile links build/amber.
VMM_OBJS += vmm/mem.o vmm/bus.o vmm/loop.o vmm/log.o vmm/pause.o vmm/vcpu.o vmm/vm.o \
            vmm/loader.o
ALL_BINS += $(BUILD)/amber

$(eval $(call unit_test,test_pause,vmm/pause.o,))
