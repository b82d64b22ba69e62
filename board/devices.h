/* Assembling the VM's devices: legacy ports, virtio-mmio slots, their KVM wiring and pause. */
#ifndef AMBER_BOARD_DEVICES_H
#define AMBER_BOARD_DEVICES_H

#include <stddef.h>

#include "board/board.h"

struct vm;
struct virtio_dev;

/*
 * Create every device in vm->cfg: the UART (with console output and stdin), the i8042, the
 * ACPI power device, the VM generation ID (a fresh random ID at LAYOUT_VMGENID, announced on
 * GSI_ACPI_GED; see vm_add_vmgenid), then the virtio devices in slot order (root drive first,
 * other drives, network interfaces, vsock, entropy), each bound to KVM with an irqfd and one
 * ioeventfd per queue. Returns 0 or a negative errno with one line in err.
 * vm comes from vm_create; each virtio device is announced to it (vm_add_mmio_dev), and the
 * board's quiesce, resume and destroy hooks are registered on it first, so vm_destroy releases
 * whatever was made, on error too. vsock_listen_fd (a bound socket for the vsock device, or -1)
 * is taken in every case.
 */
int devices_create(struct board *b, struct vm *vm, int vsock_listen_fd, char *err, size_t errlen);

/* Log every virtio device's state ("state: ..." lines; the SIGUSR2 stall report). Loop thread. */
void devices_dump(struct board *b);

/* The virtio-blk device for drive id, or NULL. */
struct virtio_dev *devices_find_drive(struct board *b, const char *id);

/* The virtio-net device for interface id (vm->cfg->net order), or NULL. */
struct virtio_dev *devices_find_net(struct board *b, const char *id);

/* Queue Ctrl-Alt-Del on the i8042. Returns 0 or a negative errno. */
int devices_ctrl_alt_del(struct board *b);

#endif
