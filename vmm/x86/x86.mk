# x86-64 boot builders: kernel loading, zero page/e820/PVH/page tables, ACPI tables and CPUID.
X86_OBJS := vmm/x86/kernel.o vmm/x86/boot.o vmm/x86/boot_cpu.o vmm/x86/aml.o vmm/x86/acpi.o vmm/x86/cpuid.o
VMM_OBJS += $(X86_OBJS)

$(eval $(call unit_test,test_kernel,vmm/x86/kernel.o vmm/mem.o vmm/log.o,))
$(eval $(call unit_test,test_boot,vmm/x86/kernel.o vmm/x86/boot.o vmm/x86/boot_cpu.o vmm/mem.o vmm/log.o,))
$(eval $(call unit_test,test_acpi,vmm/x86/aml.o vmm/x86/acpi.o vmm/mem.o vmm/log.o,))
$(eval $(call unit_test,test_cpuid,vmm/x86/cpuid.o,))

$(eval $(call fuzz_target,fuzz_kernel,vmm/x86/kernel.c vmm/x86/boot.c vmm/x86/boot_cpu.c vmm/mem.c vmm/log.c,))
