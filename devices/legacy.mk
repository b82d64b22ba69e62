# Legacy devices (UART, i8042, ACPI power) with their tests.
VMM_OBJS += devices/serial.o devices/i8042.o devices/pm.o devices/vmgenid.o

$(eval $(call unit_test,test_serial,devices/serial.o vmm/log.o,))
$(eval $(call unit_test,test_i8042,devices/i8042.o devices/pm.o vmm/log.o,))
$(eval $(call unit_test,test_vmgenid,devices/vmgenid.o vmm/mem.o vmm/log.o,))
