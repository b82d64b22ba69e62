/* Assembling the VM's devices: legacy ports, virtio-mmio slots, their KVM wiring and pause. */
#ifndef AMBER_VMM_DEVICES_H
#define AMBER_VMM_DEVICES_H

#include <stddef.h>

struct vm;
struct virtio_dev;

/*
 * Create every device in vm->cfg: the UART (with console output and stdin), the i8042, the
 * ACPI power device, then the virtio devices in slot order (root drive first, other drives,
 * network interfaces, vsock, entropy), each bound to KVM with an irqfd and one ioeventfd per
 * queue. Returns 0 or a negative errno with one line in err.
 */
int devices_create(struct vm *vm, char *err, size_t errlen);

/*
 * Quiesce every device (the pause path, loop thread, vCPUs parked), all within timeout_ms.
 * Returns 0, or -ETIMEDOUT when a device still had work in flight at the bound: then every
 * device has been resumed again, so the caller only has to release the vCPUs.
 */
int devices_quiesce(struct vm *vm, unsigned timeout_ms);

/* Resume every device and replay missed notifications (loop thread, vCPUs still parked). */
void devices_resume(struct vm *vm);

/* Log every virtio device's state ("state: ..." lines; the SIGUSR2 stall report). Loop thread. */
void devices_dump(struct vm *vm);

/* Destroy every device; idempotent. */
void devices_destroy(struct vm *vm);

/* The virtio-blk device for drive id, or NULL. */
struct virtio_dev *devices_find_drive(struct vm *vm, const char *id);

/* Queue Ctrl-Alt-Del on the i8042. Returns 0 or a negative errno. */
int devices_ctrl_alt_del(struct vm *vm);

#endif
