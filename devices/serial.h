/* A 16550A UART (COM1) with a capped console output and a host input FIFO. */
#ifndef AMBER_DEVICES_SERIAL_H
#define AMBER_DEVICES_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/irq.h"

#define SERIAL_COM1_PORT     0x3f8
#define SERIAL_PORT_LEN      8    /* register the handler for [port, port + 8) */
#define SERIAL_RX_FIFO_BYTES 1024 /* receive FIFO depth when the FIFO is enabled */

struct serial;

struct serial_stats {
    uint64_t tx_bytes;    /* bytes written to the output fd */
    uint64_t tx_dropped;  /* bytes discarded: over the cap, EAGAIN or a write error */
    uint64_t rx_bytes;    /* bytes accepted from the host */
    uint64_t rx_overruns; /* bytes lost because the receive FIFO was full (sets LSR.OE) */
};

/*
 * Create a UART. Transmitted bytes go to out_fd (not owned, never closed; -1 discards them),
 * at most out_max_bytes of them (0 = no cap), after which one "output truncated" line is
 * written and the rest is dropped. irq(irq_opaque, gsi, level) reports the interrupt line
 * (level semantics, see devices/irq.h). Returns NULL when out of memory.
 */
struct serial *serial_create(int out_fd, uint64_t out_max_bytes, irq_line_fn irq, void *irq_opaque,
                             unsigned gsi);

/*
 * Set the callback run (on a vCPU thread, without the device lock) when receive space frees
 * up after serial_rx_space() returned 0 or serial_input() filled the FIFO, so the VMM can
 * resume reading stdin. Call before the vCPUs run.
 */
void serial_set_rx_ready(struct serial *s, dev_notify_fn fn, void *opaque);

/* Free the UART. out_fd is left open. NULL is accepted. */
void serial_destroy(struct serial *s);

/*
 * The bus handler (vmm/bus.h) for ports [SERIAL_COM1_PORT, +SERIAL_PORT_LEN); opaque is the
 * struct serial. Multi-byte accesses are treated as consecutive byte accesses.
 */
void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/*
 * Queue host input for the guest (event loop thread) and raise the receive interrupt if the
 * guest enabled it. Returns how many bytes were accepted; bytes beyond the free space are
 * lost as a receiver overrun (LSR.OE), so callers should read at most serial_rx_space().
 */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);

/*
 * Bytes the receive FIFO can take now: 0 while it is full or while the UART is in loopback
 * mode (the receive pin is then disconnected). Returning 0 arms the rx_ready callback.
 */
size_t serial_rx_space(struct serial *s);

/* Copy the counters into *out. */
void serial_get_stats(struct serial *s, struct serial_stats *out);

/* The guest-visible UART state a snapshot carries (registers and the receive FIFO, oldest
 * byte first). Console output settings and counters belong to the new process. */
struct serial_state {
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    uint8_t fifo_enabled, overrun, thre_pending, msr_delta;
    uint8_t pad[2];
    uint32_t rx_count;
    uint8_t rx[SERIAL_RX_FIFO_BYTES];
};

/* Copy the UART's guest-visible state into *out (any thread; takes the lock). */
void serial_save(struct serial *s, struct serial_state *out);

/*
 * Load *in (from a snapshot) into a UART the guest has not run on yet, after checking every
 * field (register bits, FIFO count against the FIFO depth in use), and report the interrupt
 * line it implies. Returns 0 or -EINVAL (nothing changed).
 */
int serial_load(struct serial *s, const struct serial_state *in);

#endif
