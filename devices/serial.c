/* The 16550A UART model: registers, interrupt priorities, loopback, and the console output ring. */
#include "devices/serial.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/log.h"

/* Register offsets (DLAB = 0 unless noted). */
#define REG_RBR_THR 0 /* DLL when DLAB */
#define REG_IER     1 /* DLM when DLAB */
#define REG_IIR_FCR 2
#define REG_LCR     3
#define REG_MCR     4
#define REG_LSR     5
#define REG_MSR     6
#define REG_SCR     7

#define IER_RDI  0x01 /* receive data available */
#define IER_THRI 0x02 /* transmit holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI  0x08 /* modem status */
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI    0x00
#define IIR_THRI   0x02
#define IIR_RDI    0x04
#define IIR_RLSI   0x06
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80
#define MSR_DELTA 0x0f

struct serial {
    pthread_mutex_t lock;

    /* Registers. */
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    bool fifo_enabled;
    bool overrun;      /* LSR.OE, cleared by reading LSR */
    bool thre_pending; /* THR-empty interrupt latched, cleared by IIR read or THR write */
    uint8_t msr_delta; /* MSR bits 0-3 */

    /* Receive FIFO (a ring); depth is 1 with the FIFO disabled (16450 mode). */
    uint8_t rx[SERIAL_RX_FIFO_BYTES];
    size_t rx_head, rx_count;
    bool rx_wait; /* the host was told there is no space: call rx_ready when there is */

    /* Interrupt line. */
    irq_line_fn irq;
    void *irq_opaque;
    unsigned gsi;
    int irq_level;

    dev_notify_fn rx_ready;
    void *rx_ready_opaque;

    /*
     * Output ring. A vCPU only copies bytes in, under the lock and without a syscall; the loop
     * writes them out in serial_drain(). tx_head and tx_tail are running byte counts (the ring
     * holds [tx_head, tx_tail), indexed modulo its size), so a drain that copied [start, end)
     * out can tell afterwards how far a full ring pushed tx_head past it meanwhile.
     */
    uint8_t tx[SERIAL_TX_RING_BYTES];
    uint64_t tx_head, tx_tail;
    uint64_t tx_inflight_end; /* serial_drain is writing [tx_head, this); 0 when idle */
    uint64_t tx_accepted;     /* guest bytes admitted, against out_max_bytes */
    bool tx_pending;          /* tx_ready fired; cleared when serial_drain empties the ring */
    bool tx_notify;           /* under the lock: call tx_ready once it is released */
    dev_notify_fn tx_ready;
    void *tx_ready_opaque;

    int out_fd;
    uint64_t out_max_bytes;
    bool truncated;
    bool out_stopped; /* a write failed: everything from now on is dropped */
    struct serial_stats stats;
};

struct serial *serial_create(int out_fd, uint64_t out_max_bytes, irq_line_fn irq, void *irq_opaque,
                             unsigned gsi)
{
    struct serial *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->out_fd = out_fd;
    s->out_max_bytes = out_max_bytes;
    s->irq = irq;
    s->irq_opaque = irq_opaque;
    s->gsi = gsi;
    s->dll = 0x0c; /* 9600 baud, as firmware leaves it */
    return s;
}

void serial_set_rx_ready(struct serial *s, dev_notify_fn fn, void *opaque)
{
    pthread_mutex_lock(&s->lock);
    s->rx_ready = fn;
    s->rx_ready_opaque = opaque;
    pthread_mutex_unlock(&s->lock);
}

void serial_set_tx_ready(struct serial *s, dev_notify_fn fn, void *opaque)
{
    pthread_mutex_lock(&s->lock);
    s->tx_ready = fn;
    s->tx_ready_opaque = opaque;
    pthread_mutex_unlock(&s->lock);
}

void serial_destroy(struct serial *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static size_t rx_capacity(const struct serial *s)
{
    return s->fifo_enabled ? SERIAL_RX_FIFO_BYTES : 1;
}

static size_t rx_free(const struct serial *s)
{
    size_t cap = rx_capacity(s);
    return s->rx_count >= cap ? 0 : cap - s->rx_count;
}

/* Push one received byte; a full FIFO loses it and flags an overrun. */
static void rx_push(struct serial *s, uint8_t byte)
{
    if (rx_free(s) == 0) {
        s->overrun = true;
        s->stats.rx_overruns++;
        return;
    }
    s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO_BYTES] = byte;
    s->rx_count++;
}

static uint8_t rx_pop(struct serial *s)
{
    if (s->rx_count == 0)
        return 0;
    uint8_t byte = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO_BYTES;
    s->rx_count--;
    return byte;
}

static void rx_clear(struct serial *s)
{
    s->rx_head = 0;
    s->rx_count = 0;
}

/* The modem status lines: fixed "carrier up" normally, the MCR outputs in loopback. */
static uint8_t msr_lines(const struct serial *s)
{
    if (!(s->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t v = 0;
    if (s->mcr & MCR_DTR)
        v |= MSR_DSR;
    if (s->mcr & MCR_RTS)
        v |= MSR_CTS;
    if (s->mcr & MCR_OUT1)
        v |= MSR_RI;
    if (s->mcr & MCR_OUT2)
        v |= MSR_DCD;
    return v;
}

/* The highest-priority pending interrupt, as IIR bits 0-3. */
static uint8_t iir_cause(const struct serial *s)
{
    if ((s->ier & IER_RLSI) && s->overrun)
        return IIR_RLSI;
    if ((s->ier & IER_RDI) && s->rx_count > 0)
        return IIR_RDI;
    if ((s->ier & IER_THRI) && s->thre_pending)
        return IIR_THRI;
    if ((s->ier & IER_MSI) && (s->msr_delta & MSR_DELTA))
        return IIR_MSI;
    return IIR_NO_INT;
}

/* Report the interrupt line if its level changed. Called with the lock held. */
static void update_irq(struct serial *s)
{
    int level = iir_cause(s) != IIR_NO_INT;
    if (level == s->irq_level)
        return;
    s->irq_level = level;
    if (s->irq)
        s->irq(s->irq_opaque, s->gsi, level);
}

/* Queue one byte for the loop, dropping the oldest when the ring is full. Lock held. */
static void tx_push(struct serial *s, uint8_t byte)
{
    if (s->out_fd < 0 || s->out_stopped) {
        s->stats.tx_dropped++;
        return;
    }
    if (s->tx_tail - s->tx_head == SERIAL_TX_RING_BYTES) {
        /* A byte serial_drain is writing right now is not lost yet: it settles the count. */
        if (s->tx_head >= s->tx_inflight_end)
            s->stats.tx_dropped++;
        s->tx_head++;
    }
    s->tx[s->tx_tail % SERIAL_TX_RING_BYTES] = byte;
    s->tx_tail++;
    if (!s->tx_pending) {
        s->tx_pending = true;
        s->tx_notify = true;
    }
}

static void transmit(struct serial *s, uint8_t byte)
{
    if (s->out_fd < 0) {
        s->stats.tx_dropped++;
        return;
    }
    if (s->out_max_bytes && s->tx_accepted >= s->out_max_bytes) {
        if (!s->truncated) {
            char note[96];
            int n = snprintf(note, sizeof(note),
                             "\n[amber: console output truncated after %" PRIu64 " bytes]\n",
                             s->out_max_bytes);
            s->truncated = true;
            for (int i = 0; i < n && i < (int)sizeof(note) - 1; i++)
                tx_push(s, (uint8_t)note[i]);
        }
        s->stats.tx_dropped++;
        return;
    }
    s->tx_accepted++;
    tx_push(s, byte);
}

/* Drop what the ring holds and everything after it. Lock held, no drain in flight. */
static void stop_output_locked(struct serial *s)
{
    s->stats.tx_dropped += s->tx_tail - s->tx_head;
    s->tx_head = s->tx_tail;
    s->out_stopped = true;
    s->tx_pending = false;
}

void serial_stop_output(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    stop_output_locked(s);
    pthread_mutex_unlock(&s->lock);
}

int serial_drain(struct serial *s)
{
    uint8_t buf[4096];
    uint64_t written = 0;

    for (;;) {
        pthread_mutex_lock(&s->lock);
        uint64_t start = s->tx_head;
        uint64_t queued = s->tx_tail - start;
        if (queued == 0) {
            s->tx_pending = false;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        if (written >= SERIAL_TX_RING_BYTES) {
            pthread_mutex_unlock(&s->lock);
            return 1;
        }
        size_t len = queued < sizeof(buf) ? (size_t)queued : sizeof(buf);
        size_t off = (size_t)(start % SERIAL_TX_RING_BYTES);
        size_t first = len < SERIAL_TX_RING_BYTES - off ? len : SERIAL_TX_RING_BYTES - off;
        memcpy(buf, s->tx + off, first);
        memcpy(buf + first, s->tx, len - first);
        s->tx_inflight_end = start + len;
        int fd = s->out_fd;
        pthread_mutex_unlock(&s->lock);

        /* The write runs without the lock: a vCPU never waits on the console's reader. */
        ssize_t n;
        do {
            n = write(fd, buf, len);
        } while (n < 0 && errno == EINTR);
        int err = n < 0 ? errno : EAGAIN;

        pthread_mutex_lock(&s->lock);
        uint64_t done = start + (n > 0 ? (uint64_t)n : 0);
        /* What a full ring pushed out while in flight and the write did not cover is lost. */
        uint64_t lost_end = s->tx_head < s->tx_inflight_end ? s->tx_head : s->tx_inflight_end;
        if (lost_end > done)
            s->stats.tx_dropped += lost_end - done;
        s->tx_inflight_end = 0;
        if (s->tx_head < done)
            s->tx_head = done;
        if (n > 0) {
            s->stats.tx_bytes += (uint64_t)n;
            written += (uint64_t)n;
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        bool fatal = err != EAGAIN && err != EWOULDBLOCK;
        if (fatal)
            stop_output_locked(s);
        pthread_mutex_unlock(&s->lock);
        if (!fatal)
            return -EAGAIN; /* tx_pending stays set: the caller waits for EPOLLOUT */
        log_warn("serial: console write failed: %s; dropping output", strerror(err));
        return -err;
    }
}

static uint8_t reg_read(struct serial *s, unsigned reg)
{
    uint8_t v = 0;
    bool dlab = s->lcr & LCR_DLAB;

    switch (reg) {
    case REG_RBR_THR:
        if (dlab)
            return s->dll;
        v = rx_pop(s);
        break;
    case REG_IER:
        return dlab ? s->dlm : s->ier;
    case REG_IIR_FCR:
        v = iir_cause(s);
        if (v == IIR_THRI)
            s->thre_pending = false; /* reading IIR acknowledges a THRE interrupt */
        if (s->fifo_enabled)
            v |= IIR_FIFO;
        break;
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        /* Transmission is instant, so THR and the shift register are always empty. */
        v = LSR_THRE | LSR_TEMT;
        if (s->rx_count)
            v |= LSR_DR;
        if (s->overrun)
            v |= LSR_OE;
        s->overrun = false;
        break;
    case REG_MSR:
        v = msr_lines(s) | s->msr_delta;
        s->msr_delta = 0;
        break;
    case REG_SCR:
        return s->scr;
    }
    update_irq(s);
    return v;
}

static void mcr_write(struct serial *s, uint8_t val)
{
    uint8_t before = msr_lines(s);
    s->mcr = val & MCR_MASK;
    uint8_t after = msr_lines(s);
    uint8_t changed = before ^ after;
    if (changed & MSR_CTS)
        s->msr_delta |= MSR_DCTS;
    if (changed & MSR_DSR)
        s->msr_delta |= MSR_DDSR;
    if ((before & MSR_RI) && !(after & MSR_RI))
        s->msr_delta |= MSR_TERI;
    if (changed & MSR_DCD)
        s->msr_delta |= MSR_DDCD;
}

static void reg_write(struct serial *s, unsigned reg, uint8_t val)
{
    bool dlab = s->lcr & LCR_DLAB;

    switch (reg) {
    case REG_RBR_THR:
        if (dlab) {
            s->dll = val;
            return;
        }
        if (s->mcr & MCR_LOOP)
            rx_push(s, val);
        else
            transmit(s, val);
        /* The byte left at once, so THR is empty again: a new THRE event. */
        s->thre_pending = true;
        break;
    case REG_IER:
        if (dlab) {
            s->dlm = val;
            return;
        }
        /* Enabling THRI while THR is empty raises THRE at once (Linux's 8250 relies on it). */
        if ((val & IER_THRI) && !(s->ier & IER_THRI))
            s->thre_pending = true;
        if (!(val & IER_THRI))
            s->thre_pending = false;
        s->ier = val & IER_MASK;
        break;
    case REG_IIR_FCR: {
        bool enable = val & FCR_ENABLE;
        if (enable != s->fifo_enabled) {
            rx_clear(s); /* changing the FIFO mode resets both FIFOs */
            s->fifo_enabled = enable;
        }
        if (val & FCR_CLEAR_RX)
            rx_clear(s);
        /* FCR_CLEAR_TX: the transmit side holds nothing. */
        break;
    }
    case REG_LCR:
        s->lcr = val;
        return;
    case REG_MCR:
        mcr_write(s, val);
        break;
    case REG_LSR:
    case REG_MSR:
        return; /* read-only (factory test on real parts) */
    case REG_SCR:
        s->scr = val;
        return;
    }
    update_irq(s);
}

/* With the lock held: should rx_ready fire now? */
static bool take_rx_ready(struct serial *s)
{
    if (!s->rx_wait || !s->rx_ready || (s->mcr & MCR_LOOP) || rx_free(s) == 0)
        return false;
    s->rx_wait = false;
    return true;
}

void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct serial *s = opaque;

    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < len; i++) {
        unsigned reg = (unsigned)((offset + i) % SERIAL_PORT_LEN);
        if (is_write)
            reg_write(s, reg, data[i]);
        else
            data[i] = reg_read(s, reg);
    }
    bool notify = take_rx_ready(s);
    dev_notify_fn fn = s->rx_ready;
    void *fn_opaque = s->rx_ready_opaque;
    bool tx_notify = s->tx_notify && s->tx_ready;
    s->tx_notify = false;
    dev_notify_fn tx_fn = s->tx_ready;
    void *tx_opaque = s->tx_ready_opaque;
    pthread_mutex_unlock(&s->lock);

    if (notify)
        fn(fn_opaque);
    if (tx_notify)
        tx_fn(tx_opaque);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
    size_t accepted = 0;

    pthread_mutex_lock(&s->lock);
    if (s->mcr & MCR_LOOP) {
        /* The receive pin is disconnected in loopback: the bytes never arrive. */
        s->rx_wait = true;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (rx_free(s) == 0) {
            s->overrun = true;
            s->stats.rx_overruns += len - i;
            break;
        }
        rx_push(s, buf[i]);
        accepted++;
    }
    s->stats.rx_bytes += accepted;
    if (rx_free(s) == 0)
        s->rx_wait = true;
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return accepted;
}

size_t serial_rx_space(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    size_t space = (s->mcr & MCR_LOOP) ? 0 : rx_free(s);
    if (space == 0)
        s->rx_wait = true;
    pthread_mutex_unlock(&s->lock);
    return space;
}

void serial_get_stats(struct serial *s, struct serial_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

/* --- snapshot state --- */

void serial_save(struct serial *s, struct serial_state *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&s->lock);
    out->ier = s->ier;
    out->lcr = s->lcr;
    out->mcr = s->mcr;
    out->scr = s->scr;
    out->dll = s->dll;
    out->dlm = s->dlm;
    out->fifo_enabled = s->fifo_enabled;
    out->overrun = s->overrun;
    out->thre_pending = s->thre_pending;
    out->msr_delta = s->msr_delta;
    out->rx_count = (uint32_t)s->rx_count;
    for (size_t i = 0; i < s->rx_count; i++)
        out->rx[i] = s->rx[(s->rx_head + i) % SERIAL_RX_FIFO_BYTES];
    pthread_mutex_unlock(&s->lock);
}

int serial_load(struct serial *s, const struct serial_state *in)
{
    uint32_t depth = in->fifo_enabled ? SERIAL_RX_FIFO_BYTES : 1;
    if (in->ier & ~IER_MASK || in->mcr & ~MCR_MASK || in->msr_delta & ~MSR_DELTA ||
        in->fifo_enabled > 1 || in->overrun > 1 || in->thre_pending > 1 || in->rx_count > depth)
        return -EINVAL;
    pthread_mutex_lock(&s->lock);
    s->ier = in->ier;
    s->lcr = in->lcr;
    s->mcr = in->mcr;
    s->scr = in->scr;
    s->dll = in->dll;
    s->dlm = in->dlm;
    s->fifo_enabled = in->fifo_enabled;
    s->overrun = in->overrun;
    s->thre_pending = in->thre_pending;
    s->msr_delta = in->msr_delta;
    s->rx_head = 0;
    s->rx_count = in->rx_count;
    memcpy(s->rx, in->rx, in->rx_count);
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}
