/* How legacy devices signal the VMM: interrupt lines and one-shot notifications. */
#ifndef AMBER_DEVICES_IRQ_H
#define AMBER_DEVICES_IRQ_H

/*
 * Set interrupt line gsi to level (1 = asserted, 0 = deasserted). Devices call it with their
 * own lock held and only when the level changes (the i8042 also pulses 0 then 1 to mark a new
 * byte), so the callback must not call back into the device. Turning levels into KVM_IRQ_LINE
 * calls (and edges for ISA pins) is the VMM's job.
 */
typedef void (*irq_line_fn)(void *opaque, unsigned gsi, int level);

/*
 * A device event with no payload (reset requested, power-off requested, input space free).
 * Devices call it without their lock held, so the callback may call back into the device.
 */
typedef void (*dev_notify_fn)(void *opaque);

#endif
