# Seccomp filters and confinement (vmm/seccomp.c, vmm/jail.c), the syscall-name table the SIGSYS
# handler prints from, the test-hooks build of amber, and the seccomp unit test.
VMM_OBJS += vmm/seccomp.o vmm/jail.o

SYSCALL_NAMES_H := $(BUILD)/gen/amber_syscall_names.h

# "[nr] = "name"," for every x86-64 syscall the C library headers know.
$(SYSCALL_NAMES_H): vmm/security.mk | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	$(Q)echo '#include <sys/syscall.h>' | $(CC) -dM -E - | \
	  sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9][0-9]*\)$$/[\2] = "\1",/p' > $@.tmp
	$(Q)mv $@.tmp $@

$(BUILD)/vmm/seccomp.o: $(SYSCALL_NAMES_H)
$(BUILD)/vmm/seccomp.o: CFLAGS += -I$(BUILD)/gen

# build/test-hooks/amber: amber whose seccomp.c calls a forbidden syscall on request
# (--id seccomp-violate-vmm / seccomp-violate-vcpu), whose vcpu.c fails to start a vCPU on
# request (--id vcpu-start-fail-N), and whose vm.c stops kvmclock across a pause with
# AMBER_TEST_FREEZE_CLOCK=1 (issue 13's clock experiment). Never installed or shipped.
TEST_HOOKS_DIR := $(BUILD)/test-hooks
TEST_HOOKS_OBJS := vmm/seccomp.o vmm/vcpu.o vmm/vm.o
$(TEST_HOOKS_DIR)/vmm/seccomp.o: vmm/seccomp.c $(SYSCALL_NAMES_H) | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 0 ] && echo "  CC      $< (test hooks)" || true
	$(Q)$(CC) $(CFLAGS) -I$(BUILD)/gen -DAMBER_TEST_HOOKS -c -o $@ $<

$(TEST_HOOKS_DIR)/vmm/vcpu.o: vmm/vcpu.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 0 ] && echo "  CC      $< (test hooks)" || true
	$(Q)$(CC) $(CFLAGS) -DAMBER_TEST_HOOKS -c -o $@ $<

$(TEST_HOOKS_DIR)/vmm/vm.o: vmm/vm.c | $(SETUP_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 0 ] && echo "  CC      $< (test hooks)" || true
	$(Q)$(CC) $(CFLAGS) -DAMBER_TEST_HOOKS -c -o $@ $<

$(TEST_HOOKS_DIR)/amber: $$(addprefix $(BUILD)/,$$(filter-out $(TEST_HOOKS_OBJS),$$(VMM_OBJS)) board/main.o) \
                         $(addprefix $(TEST_HOOKS_DIR)/,$(TEST_HOOKS_OBJS))
	@[ "$(V)" = 0 ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_VMM)

ALL_BINS += $(TEST_HOOKS_DIR)/amber

$(eval $(call unit_test,test_seccomp,vmm/seccomp.o vmm/log.o $(CONFIG_ARGS_OBJS),-lseccomp))
$(BUILD)/tests/unit/test_seccomp.o: CFLAGS += -I$(BUILD)/gen

# test_vm_teardown links the whole VMM (vm_destroy reaches every device's teardown); the object
# list is complete only once every fragment is read, hence the second expansion.
UNIT_TESTS += $(BUILD)/tests/test_vm_teardown
$(BUILD)/tests/test_vm_teardown: $(BUILD)/tests/unit/test_vm_teardown.o \
                                 $$(addprefix $(BUILD)/,$$(VMM_OBJS))
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS_VMM)
