/* Unit tests for the i8042 (Linux's probe, keyboard commands, reset, Ctrl-Alt-Del) and pm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "devices/i8042.h"
#include "devices/pm.h"
#include "vmm/layout.h"

#define STS_OBF 0x01

struct events {
    int irq_calls;
    int level;
    int rises; /* 0 -> 1 transitions */
    unsigned gsi;
    int resets;
    int poweroffs;
};

static void irq_cb(void *opaque, unsigned gsi, int level)
{
    struct events *e = opaque;
    if (level && !e->level)
        e->rises++;
    e->irq_calls++;
    e->level = level;
    e->gsi = gsi;
}

static void reset_cb(void *opaque)
{
    ((struct events *)opaque)->resets++;
}

static void poweroff_cb(void *opaque)
{
    ((struct events *)opaque)->poweroffs++;
}

struct fixture {
    struct i8042 *k;
    struct events ev;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->k = i8042_create(irq_cb, &f->ev, GSI_I8042, reset_cb, &f->ev);
    assert_non_null(f->k);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    i8042_destroy(f->k);
    free(f);
    return 0;
}

static uint8_t status(struct i8042 *k)
{
    uint8_t v;
    i8042_io(k, 4, &v, 1, false);
    return v;
}

static uint8_t data(struct i8042 *k)
{
    uint8_t v;
    i8042_io(k, 0, &v, 1, false);
    return v;
}

static void cmd(struct i8042 *k, uint8_t c)
{
    i8042_io(k, 4, &c, 1, true);
}

static void put(struct i8042 *k, uint8_t d)
{
    i8042_io(k, 0, &d, 1, true);
}

/* Read one byte the way Linux does: wait for OBF, then read the data port. */
static uint8_t get(struct i8042 *k)
{
    assert_true(status(k) & STS_OBF);
    return data(k);
}

static void expect_empty(struct i8042 *k)
{
    assert_int_equal(status(k) & STS_OBF, 0);
}

/* Run the controller part of Linux's probe with interrupts off, as i8042_controller_init does. */
static void test_linux_probe(void **state)
{
    struct fixture *f = *state;
    struct i8042 *k = f->k;

    expect_empty(k);
    cmd(k, 0x20);
    uint8_t ctr = get(k);
    assert_true(ctr & 0x40); /* translation on, as firmware leaves it */
    cmd(k, 0x20);
    assert_int_equal(get(k), ctr); /* stable CTR read */
    ctr = (uint8_t)((ctr | 0x10) & ~0x03);
    cmd(k, 0x60);
    put(k, ctr);
    cmd(k, 0x20);
    assert_int_equal(get(k), ctr);
    expect_empty(k);
    assert_int_equal(f->ev.level, 0);
    int rises = f->ev.rises; /* the firmware CTR had the interrupt on: Linux just cleared it */

    cmd(k, 0xaa);
    assert_int_equal(get(k), 0x55);
    cmd(k, 0xab);
    assert_int_equal(get(k), 0x00);
    assert_int_equal(status(k) & 0x08, 0x08); /* last write was a command */

    /* Aux probe: loopback comes back without the aux flag, the interface test fails. */
    cmd(k, 0xd3);
    put(k, 0x5a);
    uint8_t st = status(k);
    assert_true(st & STS_OBF);
    assert_int_equal(st & 0x20, 0);
    assert_int_equal(data(k), 0x5a);
    cmd(k, 0xa9);
    uint8_t aux = get(k);
    assert_true(aux != 0 && aux != 0xfa && aux != 0xff);

    cmd(k, 0xa7);
    cmd(k, 0x20);
    assert_true(get(k) & 0x20);
    cmd(k, 0xa8);
    cmd(k, 0x20);
    assert_int_equal(get(k) & 0x20, 0);
    cmd(k, 0xad);
    cmd(k, 0x20);
    assert_true(get(k) & 0x10);
    cmd(k, 0xae);
    cmd(k, 0x20);
    assert_int_equal(get(k) & 0x10, 0);

    /* Interrupts stayed off (CTR bit 0 clear) since. */
    assert_int_equal(f->ev.rises, rises);
    assert_int_equal(f->ev.resets, 0);
}

static void enable_kbd_irq(struct i8042 *k)
{
    cmd(k, 0x60);
    put(k, 0x47); /* XLATE | SYS | KBDINT, aux disabled ... */
}

static void test_keyboard_commands(void **state)
{
    struct fixture *f = *state;
    struct i8042 *k = f->k;
    enable_kbd_irq(k);
    cmd(k, 0x20);
    assert_int_equal(data(k), 0x47);

    put(k, 0xff); /* reset */
    assert_int_equal(f->ev.level, 1);
    assert_int_equal(f->ev.gsi, GSI_I8042);
    assert_int_equal(get(k), 0xfa);
    assert_int_equal(f->ev.level, 1);
    assert_int_equal(get(k), 0xaa);
    assert_int_equal(f->ev.level, 0);
    assert_int_equal(status(k) & 0x08, 0); /* last write was data */

    put(k, 0xf2); /* identify, translated */
    assert_int_equal(get(k), 0xfa);
    assert_int_equal(get(k), 0xab);
    assert_int_equal(get(k), 0x41);

    put(k, 0xf5);
    assert_int_equal(get(k), 0xfa);
    put(k, 0xed); /* LEDs + parameter */
    assert_int_equal(get(k), 0xfa);
    put(k, 0x07);
    assert_int_equal(get(k), 0xfa);
    put(k, 0xf3); /* typematic + parameter */
    assert_int_equal(get(k), 0xfa);
    put(k, 0x20);
    assert_int_equal(get(k), 0xfa);
    put(k, 0xf0); /* get scan set */
    assert_int_equal(get(k), 0xfa);
    put(k, 0x00);
    assert_int_equal(get(k), 0xfa);
    assert_int_equal(get(k), 0x41);
    put(k, 0xf4);
    assert_int_equal(get(k), 0xfa);
    put(k, 0xee);
    assert_int_equal(get(k), 0xee);
    expect_empty(k);
    assert_int_equal(f->ev.level, 0);
    /* An empty output buffer reads back the last byte. */
    assert_int_equal(data(k), 0xee);
}

static void test_ctrl_alt_del(void **state)
{
    struct fixture *f = *state;
    struct i8042 *k = f->k;
    static const uint8_t seq[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};

    /* With the keyboard interrupt disabled, bytes wait without an interrupt. */
    cmd(k, 0x60);
    put(k, 0x44);
    assert_int_equal(i8042_send_ctrl_alt_del(k), 0);
    assert_int_equal(f->ev.rises, 0);
    assert_true(status(k) & STS_OBF);
    /* Enabling it raises the line for the waiting byte. */
    enable_kbd_irq(k);
    assert_int_equal(f->ev.rises, 1);
    for (size_t i = 0; i < sizeof(seq); i++) {
        assert_int_equal(f->ev.level, 1);
        assert_int_equal(get(k), seq[i]);
    }
    /* Every byte was its own edge. */
    assert_int_equal(f->ev.rises, 8);
    assert_int_equal(f->ev.level, 0);
    expect_empty(k);

    /* The queue holds four sequences (32 bytes); the fifth is refused whole. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(i8042_send_ctrl_alt_del(k), 0);
    assert_int_equal(i8042_send_ctrl_alt_del(k), -ENOSPC);
    for (int i = 0; i < 32; i++)
        assert_int_equal(data(k), seq[i % 8]);
    expect_empty(k);

    /* With only six bytes free, nothing of the sequence is queued. */
    put(k, 0xff); /* two reply bytes */
    for (int i = 0; i < 3; i++)
        assert_int_equal(i8042_send_ctrl_alt_del(k), 0);
    assert_int_equal(i8042_send_ctrl_alt_del(k), -ENOSPC);
    assert_int_equal(data(k), 0xfa);
    assert_int_equal(data(k), 0xaa);
    for (int i = 0; i < 24; i++)
        assert_int_equal(data(k), seq[i % 8]);
    expect_empty(k);
}

static void test_reset(void **state)
{
    struct fixture *f = *state;
    struct i8042 *k = f->k;
    cmd(k, 0xff); /* pulse nothing */
    cmd(k, 0xfd); /* pulse bits 1: no reset */
    assert_int_equal(f->ev.resets, 0);
    cmd(k, 0xd1); /* output port with reset high, A20 on */
    put(k, 0xdf);
    assert_int_equal(f->ev.resets, 0);
    cmd(k, 0xd0);
    assert_int_equal(get(k), 0xdf);
    cmd(k, 0xfe);
    assert_int_equal(f->ev.resets, 1);
    cmd(k, 0xd1);
    put(k, 0xde);
    assert_int_equal(f->ev.resets, 2);
}

static void test_port61_and_unused(void **state)
{
    struct fixture *f = *state;
    uint8_t a, b;
    i8042_io(f->k, 1, &a, 1, false);
    i8042_io(f->k, 1, &b, 1, false);
    assert_int_equal(a & 0x20, 0x20);
    assert_int_equal((a ^ b) & 0x10, 0x10);
    uint8_t w = 0x03;
    i8042_io(f->k, 1, &w, 1, true);
    i8042_io(f->k, 1, &a, 1, false);
    assert_int_equal(a & 0x0f, 0x03);
    i8042_io(f->k, 2, &a, 1, false);
    assert_int_equal(a, 0xff);
}

static void test_pm_poweroff(void **state)
{
    struct events ev = {0};
    struct pm *p = pm_create(poweroff_cb, &ev);
    assert_non_null(p);
    uint8_t v;

    v = 5 << 2; /* S5 without SLP_EN */
    pm_io(p, 0, &v, 1, true);
    v = 0x20 | (3 << 2); /* SLP_EN with S3 */
    pm_io(p, 0, &v, 1, true);
    v = 0x20; /* SLP_EN with S0 */
    pm_io(p, 0, &v, 1, true);
    v = 0x20 | (5 << 2); /* to the status register */
    pm_io(p, 1, &v, 1, true);
    assert_int_equal(ev.poweroffs, 0);

    v = 0x20 | (5 << 2);
    pm_io(p, 0, &v, 1, true);
    assert_int_equal(ev.poweroffs, 1);
    v = 0x20 | (5 << 2) | 0x03; /* other bits do not matter */
    pm_io(p, 0, &v, 1, true);
    assert_int_equal(ev.poweroffs, 2);

    uint8_t two[2] = {0xaa, 0xaa};
    pm_io(p, 0, two, 2, false);
    assert_int_equal(two[0], 0);
    assert_int_equal(two[1], 0);
    pm_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_linux_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctrl_alt_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port61_and_unused, setup, teardown),
        cmocka_unit_test(test_pm_poweroff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
