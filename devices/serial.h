/* A 16550A UART (COM1) with a bounded console output ring and a host input FIFO. */
#ifndef AMBER_DEVICES_SERIAL_H
#define AMBER_DEVICES_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/irq.h"

#define SERIAL_COM1_PORT     0x3f8
#define SERIAL_PORT_LEN      8     /* register the handler for [port, port + 8) */
#define SERIAL_RX_FIFO_BYTES 1024  /* receive FIFO depth when the FIFO is enabled */
#define SERIAL_TX_RING_BYTES 65536 /* console output queued for the loop (oldest dropped) */

struct serial;

struct serial_stats {
    uint64_t tx_bytes;    /* bytes written to the output fd (the truncation note included) */
    uint64_t tx_dropped;  /* bytes discarded: over the cap, overwritten in a full ring, no fd,
                             or after a write error */
    uint64_t rx_bytes;    /* bytes accepted from the host */
    uint64_t rx_overruns; /* bytes lost because the receive FIFO was full (sets LSR.OE) */
};

/*
 * Create a UART. Transmitted bytes go into a ring of SERIAL_TX_RING_BYTES, never to a syscall
 * on the vCPU: serial_drain() writes them to out_fd (not owned, never closed; -1 discards
 * them) from the event loop. A full ring drops its oldest bytes. At most out_max_bytes (0 = no
 * cap) are accepted, then one "output truncated" line is queued and the rest is dropped.
 * irq(irq_opaque, gsi, level) reports the interrupt line (level semantics, see devices/irq.h).
 * Returns NULL when out of memory.
 */
struct serial *serial_create(int out_fd, uint64_t out_max_bytes, irq_line_fn irq, void *irq_opaque,
                             unsigned gsi);

/*
 * Set the callback run (on a vCPU thread, without the device lock) when receive space frees
 * up after serial_rx_space() returned 0 or serial_input() filled the FIFO, so the VMM can
 * resume reading stdin. Call before the vCPUs run.
 */
void serial_set_rx_ready(struct serial *s, dev_notify_fn fn, void *opaque);

/*
 * Set the callback run (on a vCPU thread, without the device lock) when output enters an
 * empty ring that no drain is pending for, so the VMM can schedule serial_drain() on its loop.
 * It runs once per drain: not again until serial_drain() returned 0. Call before the vCPUs run.
 */
void serial_set_tx_ready(struct serial *s, dev_notify_fn fn, void *opaque);

/*
 * Write what the output ring holds to out_fd, which should be non-blocking (event loop thread).
 * The device lock is not held across write(). Returns 0 once the ring is empty, 1 when it
 * wrote a ring's worth and more is waiting (call again later, so the loop is not monopolised),
 * -EAGAIN when out_fd is full (call again when it is writable), or another negative errno from
 * write(): output then stops, and this and all later output is counted as dropped.
 */
int serial_drain(struct serial *s);

/* Stop output for good: drop what the ring holds and all later output (counted). */
void serial_stop_output(struct serial *s);

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
