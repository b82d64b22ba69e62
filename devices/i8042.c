/* The i8042 model: a byte queue behind the output buffer, controller commands, a keyboard. */
#include "devices/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

/* Status register. */
#define STS_OBF    0x01
#define STS_SYS    0x04
#define STS_CMD    0x08 /* last write went to the command port */
#define STS_UNLOCK 0x10 /* keyboard not inhibited */

/* Controller command byte (CTR). */
#define CTR_KBDINT 0x01
#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40

/* Controller commands that take a data byte next. */
#define CMD_WRITE_CTR 0x60
#define CMD_WRITE_OUT 0xd1
#define CMD_WRITE_KBD 0xd2
#define CMD_WRITE_AUX 0xd3
#define CMD_SEND_AUX  0xd4

/* Keyboard commands that take a parameter. */
#define KBD_SET_LEDS  0xed
#define KBD_SCAN_SET  0xf0
#define KBD_TYPEMATIC 0xf3

#define KBD_ACK 0xfa

#define QUEUE_BYTES 32

struct i8042 {
    pthread_mutex_t lock;

    uint8_t ctr;
    uint8_t out_port;    /* bit 0: reset line (1 = running), bit 1: A20 */
    uint8_t pending_cmd; /* controller command waiting for its data byte, or 0 */
    uint8_t pending_kbd; /* keyboard command waiting for its parameter, or 0 */
    bool last_was_cmd;
    bool scanning;
    uint8_t last_data; /* what a read of an empty output buffer returns */
    uint8_t port61;

    uint8_t queue[QUEUE_BYTES];
    unsigned qhead, qcount;

    irq_line_fn irq;
    void *irq_opaque;
    unsigned gsi;
    int irq_level;

    dev_notify_fn reset;
    void *reset_opaque;
};

struct i8042 *i8042_create(irq_line_fn irq, void *irq_opaque, unsigned gsi, dev_notify_fn reset,
                           void *reset_opaque)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    /* What firmware leaves behind: translation on, system flag, keyboard interrupt on. */
    k->ctr = CTR_XLATE | CTR_SYS | CTR_KBDINT | CTR_AUXDIS;
    k->out_port = 0x03;
    k->scanning = true;
    k->irq = irq;
    k->irq_opaque = irq_opaque;
    k->gsi = gsi;
    k->reset = reset;
    k->reset_opaque = reset_opaque;
    return k;
}

void i8042_destroy(struct i8042 *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static unsigned queue_free(const struct i8042 *k)
{
    return QUEUE_BYTES - k->qcount;
}

/* Queue one byte for the guest; a full queue drops it (a real controller would too). */
static void queue_push(struct i8042 *k, uint8_t byte)
{
    if (k->qcount == QUEUE_BYTES) {
        log_debug_rl("i8042: output queue full, dropping 0x%02x", byte);
        return;
    }
    k->queue[(k->qhead + k->qcount) % QUEUE_BYTES] = byte;
    k->qcount++;
}

static void set_irq(struct i8042 *k, int level)
{
    if (level == k->irq_level)
        return;
    k->irq_level = level;
    if (k->irq)
        k->irq(k->irq_opaque, k->gsi, level);
}

/*
 * The keyboard line is high while the output buffer is full and CTR enables the interrupt.
 * After the guest takes a byte the line drops before the next one is presented, so every
 * byte is a fresh edge.
 */
static void update_irq(struct i8042 *k, bool byte_taken)
{
    if (byte_taken)
        set_irq(k, 0);
    set_irq(k, k->qcount > 0 && (k->ctr & CTR_KBDINT));
}

static uint8_t status_read(const struct i8042 *k)
{
    uint8_t v = STS_UNLOCK;
    if (k->qcount)
        v |= STS_OBF;
    if (k->ctr & CTR_SYS)
        v |= STS_SYS;
    if (k->last_was_cmd)
        v |= STS_CMD;
    return v;
}

static uint8_t data_read(struct i8042 *k)
{
    if (k->qcount == 0)
        return k->last_data;
    k->last_data = k->queue[k->qhead];
    k->qhead = (k->qhead + 1) % QUEUE_BYTES;
    k->qcount--;
    update_irq(k, true);
    return k->last_data;
}

/* A byte for the keyboard itself; it answers through the output buffer. */
static void kbd_write(struct i8042 *k, uint8_t val)
{
    uint8_t param_of = k->pending_kbd;
    k->pending_kbd = 0;
    if (param_of) {
        if (param_of == KBD_SCAN_SET && val == 0) {
            queue_push(k, KBD_ACK);
            queue_push(k, (k->ctr & CTR_XLATE) ? 0x41 : 0x02); /* set 2, as translated */
            return;
        }
        queue_push(k, KBD_ACK);
        return;
    }
    switch (val) {
    case 0xff: /* reset: ACK, then self-test passed */
        k->scanning = true;
        queue_push(k, KBD_ACK);
        queue_push(k, 0xaa);
        break;
    case 0xf2: /* identify: an MF2 keyboard */
        queue_push(k, KBD_ACK);
        queue_push(k, 0xab);
        queue_push(k, (k->ctr & CTR_XLATE) ? 0x41 : 0x83);
        break;
    case 0xee: /* echo */
        queue_push(k, 0xee);
        break;
    case 0xf4:
        k->scanning = true;
        queue_push(k, KBD_ACK);
        break;
    case 0xf5:
    case 0xf6:
        k->scanning = val == 0xf6;
        queue_push(k, KBD_ACK);
        break;
    case KBD_SET_LEDS:
    case KBD_SCAN_SET:
    case KBD_TYPEMATIC:
        k->pending_kbd = val;
        queue_push(k, KBD_ACK);
        break;
    default: /* everything else (set-3 key modes, resend) is acknowledged and ignored */
        queue_push(k, KBD_ACK);
        break;
    }
}

/* Returns true when the guest asked for a CPU reset. */
static bool data_write(struct i8042 *k, uint8_t val)
{
    uint8_t cmd = k->pending_cmd;
    k->pending_cmd = 0;

    switch (cmd) {
    case CMD_WRITE_CTR:
        k->ctr = val;
        break;
    case CMD_WRITE_OUT:
        k->out_port = val;
        if (!(val & 0x01))
            return true;
        break;
    case CMD_WRITE_KBD: /* as if the keyboard had sent it */
        queue_push(k, val);
        break;
    case CMD_WRITE_AUX:
        /* No aux port: the byte comes back without the aux flag, which Linux reads as
         * "no aux loopback" and moves on without waiting for a timeout. */
        queue_push(k, val);
        break;
    case CMD_SEND_AUX:
        break; /* nothing is attached */
    default:
        kbd_write(k, val);
        break;
    }
    return false;
}

static bool command_write(struct i8042 *k, uint8_t cmd)
{
    k->pending_cmd = 0;
    switch (cmd) {
    case 0x20: /* read CTR */
        queue_push(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUT:
    case CMD_WRITE_KBD:
    case CMD_WRITE_AUX:
    case CMD_SEND_AUX:
        k->pending_cmd = cmd;
        break;
    case 0xa7:
        k->ctr |= CTR_AUXDIS;
        break;
    case 0xa8:
        k->ctr &= ~CTR_AUXDIS;
        break;
    case 0xa9: /* aux interface test: "clock line stuck low", i.e. no aux port */
        queue_push(k, 0x01);
        break;
    case 0xaa: /* controller self-test */
        k->ctr |= CTR_SYS;
        queue_push(k, 0x55);
        break;
    case 0xab: /* keyboard interface test */
        queue_push(k, 0x00);
        break;
    case 0xad:
        k->ctr |= CTR_KBDDIS;
        break;
    case 0xae:
        k->ctr &= ~CTR_KBDDIS;
        break;
    case 0xc0: /* read input port */
        queue_push(k, 0x00);
        break;
    case 0xd0: /* read output port */
        queue_push(k, k->out_port);
        break;
    default:
        /* 0xf0-0xff pulse output lines low for the bits that are clear; bit 0 is reset. */
        if (cmd >= 0xf0 && !(cmd & 0x01))
            return true;
        if (cmd < 0xf0)
            log_debug_rl("i8042: ignoring command 0x%02x", cmd);
        break;
    }
    return false;
}

static uint8_t port61_read(struct i8042 *k)
{
    k->port61 ^= 0x10; /* DRAM refresh toggles on every read */
    return 0x20 | (k->port61 & 0x1f);
}

void i8042_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct i8042 *k = opaque;
    bool reset = false;

    pthread_mutex_lock(&k->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset + i;
        if (is_write) {
            if (port == 0) {
                k->last_was_cmd = false;
                reset |= data_write(k, data[i]);
            } else if (port == 1) {
                k->port61 = (uint8_t)((k->port61 & 0x10) | (data[i] & 0x0f));
            } else if (port == 4) {
                k->last_was_cmd = true;
                reset |= command_write(k, data[i]);
            }
            update_irq(k, false);
        } else {
            if (port == 0)
                data[i] = data_read(k);
            else if (port == 1)
                data[i] = port61_read(k);
            else if (port == 4)
                data[i] = status_read(k);
            else
                data[i] = 0xff;
        }
    }
    pthread_mutex_unlock(&k->lock);

    if (reset && k->reset)
        k->reset(k->reset_opaque);
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
    static const uint8_t seq[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};

    pthread_mutex_lock(&k->lock);
    if (queue_free(k) < sizeof(seq)) {
        pthread_mutex_unlock(&k->lock);
        return -ENOSPC;
    }
    for (size_t i = 0; i < sizeof(seq); i++)
        queue_push(k, seq[i]);
    update_irq(k, false);
    pthread_mutex_unlock(&k->lock);
    return 0;
}

/* --- snapshot state --- */

_Static_assert(I8042_STATE_QUEUE_BYTES == QUEUE_BYTES, "snapshot queue size");

void i8042_save(struct i8042 *k, struct i8042_state *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&k->lock);
    out->ctr = k->ctr;
    out->out_port = k->out_port;
    out->pending_cmd = k->pending_cmd;
    out->pending_kbd = k->pending_kbd;
    out->last_was_cmd = k->last_was_cmd;
    out->scanning = k->scanning;
    out->last_data = k->last_data;
    out->port61 = k->port61;
    out->qcount = k->qcount;
    for (unsigned i = 0; i < k->qcount; i++)
        out->queue[i] = k->queue[(k->qhead + i) % QUEUE_BYTES];
    pthread_mutex_unlock(&k->lock);
}

int i8042_load(struct i8042 *k, const struct i8042_state *in)
{
    if (in->qcount > QUEUE_BYTES || in->last_was_cmd > 1 || in->scanning > 1)
        return -EINVAL;
    pthread_mutex_lock(&k->lock);
    k->ctr = in->ctr;
    k->out_port = in->out_port;
    k->pending_cmd = in->pending_cmd;
    k->pending_kbd = in->pending_kbd;
    k->last_was_cmd = in->last_was_cmd;
    k->scanning = in->scanning;
    k->last_data = in->last_data;
    k->port61 = in->port61;
    k->qhead = 0;
    k->qcount = in->qcount;
    memcpy(k->queue, in->queue, in->qcount);
    update_irq(k, false);
    pthread_mutex_unlock(&k->lock);
    return 0;
}
