/* An i8042 keyboard controller: enough for Linux's probe, reset, and Ctrl-Alt-Del. */
#ifndef AMBER_DEVICES_I8042_H
#define AMBER_DEVICES_I8042_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/irq.h"

/*
 * One bus range covers the data port (0x60), port 0x61 (PC speaker / NMI status: reads give
 * 0x20 with the refresh bit 0x10 toggling, writes keep the low 4 bits), 0x62-0x63 (unused,
 * read 0xff) and the status/command port (0x64).
 */
#define I8042_PORT_BASE 0x60
#define I8042_PORT_LEN  5

struct i8042;

/*
 * Create the controller. irq(irq_opaque, gsi, level) drives the keyboard interrupt (level
 * semantics, pulsed low between bytes, see devices/irq.h); reset(reset_opaque) runs when the
 * guest pulses the CPU reset line (command 0xFE, or 0xD1 with bit 0 clear). There is no aux
 * (mouse) port: Linux's aux probe fails fast. Returns NULL when out of memory.
 */
struct i8042 *i8042_create(irq_line_fn irq, void *irq_opaque, unsigned gsi, dev_notify_fn reset,
                           void *reset_opaque);

/* Free the controller. NULL is accepted. */
void i8042_destroy(struct i8042 *k);

/* The bus handler (vmm/bus.h) for [I8042_PORT_BASE, +I8042_PORT_LEN); opaque is the i8042. */
void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/*
 * Queue the scancode-set-1 make and break codes of Ctrl-Alt-Del (what the guest sees with
 * the default translated set) and raise the keyboard interrupt if the guest enabled it.
 * Returns 0, or -ENOSPC if the output queue cannot take all eight bytes (nothing queued).
 */
int i8042_send_ctrl_alt_del(struct i8042 *k);

#define I8042_STATE_QUEUE_BYTES 32

/* The controller state a snapshot carries (the output queue oldest byte first). */
struct i8042_state {
    uint8_t ctr, out_port, pending_cmd, pending_kbd, last_was_cmd, scanning, last_data, port61;
    uint32_t qcount;
    uint8_t queue[I8042_STATE_QUEUE_BYTES];
};

/* Copy the controller's state into *out (takes the lock). */
void i8042_save(struct i8042 *k, struct i8042_state *out);

/* Load *in into a controller the guest has not run on yet, after checking qcount, and report
 * the interrupt line it implies. Returns 0 or -EINVAL (nothing changed). */
int i8042_load(struct i8042 *k, const struct i8042_state *in);

#endif
