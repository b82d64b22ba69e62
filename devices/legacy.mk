# Legacy devices (UART, i8042, ACPI power) and the command-line configuration, with their tests.
VMM_OBJS += devices/serial.o devices/i8042.o devices/pm.o config/config.o config/args.o config/specs.o

$(eval $(call unit_test,test_serial,devices/serial.o vmm/log.o,))
$(eval $(call unit_test,test_i8042,devices/i8042.o devices/pm.o vmm/log.o,))
$(eval $(call unit_test,test_config,config/config.o config/args.o config/specs.o,))
$(eval $(call fuzz_target,fuzz_config_args,config/config.c config/args.c config/specs.c,))
