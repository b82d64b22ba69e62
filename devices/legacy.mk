# Legacy devices (UART, i8042, ACPI power) and the command-line configuration, with their tests.
VMM_OBJS += devices/serial.o devices/i8042.o devices/pm.o vmm/config.o vmm/config_args.o vmm/config_specs.o

$(eval $(call unit_test,test_serial,devices/serial.o vmm/log.o,))
$(eval $(call unit_test,test_i8042,devices/i8042.o devices/pm.o vmm/log.o,))
$(eval $(call unit_test,test_config,vmm/config.o vmm/config_args.o vmm/config_specs.o,))
$(eval $(call fuzz_target,fuzz_config_args,vmm/config.c vmm/config_args.c vmm/config_specs.c,))
