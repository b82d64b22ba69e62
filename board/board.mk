# The board and the process (board/): main(), the VMM process and the devices it wires to the
# VM. The top Makefile links build/amber from VMM_OBJS plus board/main.o.
VMM_OBJS += board/devices.o board/process.o
