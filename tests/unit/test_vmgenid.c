/* Unit tests for the VM generation ID device: IDs in guest memory, the edge, saved state checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "devices/vmgenid.h"
#include "vmm/layout.h"

#define RAM_BYTES (2ULL << 20)

/* Every interrupt line change the device made, in order. */
struct irq_log {
    unsigned n;
    unsigned gsi[8];
    int level[8];
};

static void irq_cb(void *opaque, unsigned gsi, int level)
{
    struct irq_log *l = opaque;
    if (l->n < 8) {
        l->gsi[l->n] = gsi;
        l->level[l->n] = level;
    }
    l->n++;
}

/* A scripted random source: each draw returns the next byte pattern (0 = fail with -EAGAIN). */
static uint8_t draws[8];
static unsigned ndraws, next_draw;

static int scripted_random(void *buf, size_t len)
{
    if (next_draw >= ndraws || draws[next_draw] == 0)
        return -EAGAIN;
    memset(buf, draws[next_draw++], len);
    return 0;
}

static void script(const uint8_t *patterns, unsigned n)
{
    memcpy(draws, patterns, n);
    ndraws = n;
    next_draw = 0;
}

static void test_boot_id_is_random_and_in_guest_memory(void **state)
{
    (void)state;
    struct guest_mem m;
    struct irq_log l = {0};
    struct vmgenid *a, *b;
    uint8_t ida[VMGENID_ID_BYTES], idb[VMGENID_ID_BYTES], zero[VMGENID_ID_BYTES] = {0};
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);

    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, GSI_ACPI_GED, irq_cb, &l, NULL, &a), 0);
    vmgenid_get(a, ida);
    assert_memory_equal(mem_ptr(&m, LAYOUT_VMGENID, VMGENID_ID_BYTES), ida, VMGENID_ID_BYTES);
    assert_memory_not_equal(ida, zero, VMGENID_ID_BYTES);
    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, GSI_ACPI_GED, irq_cb, &l, NULL, &b), 0);
    vmgenid_get(b, idb);
    assert_memory_not_equal(ida, idb, VMGENID_ID_BYTES); /* getrandom, not a constant */
    assert_int_equal(l.n, 0);                            /* boot raises nothing */
    vmgenid_destroy(a);
    vmgenid_destroy(b);
    vmgenid_destroy(NULL);
    mem_free(&m);
}

static void test_create_rejects(void **state)
{
    (void)state;
    struct guest_mem m;
    struct irq_log l = {0};
    struct vmgenid *v = (struct vmgenid *)&l;
    assert_int_equal(mem_init(&m, 512 << 10), 0); /* RAM ends below the BIOS area */
    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, GSI_ACPI_GED, irq_cb, &l, NULL, &v),
                     -EFAULT);
    assert_null(v);
    assert_int_equal(vmgenid_create(&m, 0x1004, GSI_ACPI_GED, irq_cb, &l, NULL, &v), -EINVAL);
    script((const uint8_t[]){0}, 1);
    assert_int_equal(vmgenid_create(&m, 0x1000, GSI_ACPI_GED, irq_cb, &l, scripted_random, &v),
                     -EAGAIN);
    assert_null(v);
    mem_free(&m);
}

static void test_restore_renews_and_raises_an_edge(void **state)
{
    (void)state;
    struct guest_mem m;
    struct irq_log l = {0};
    struct vmgenid *v;
    struct vmgenid_state s;
    uint8_t id[VMGENID_ID_BYTES];
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, GSI_ACPI_GED, irq_cb, &l, NULL, &v), 0);
    vmgenid_save(v, &s);
    assert_int_equal(s.version, VMGENID_STATE_VERSION);
    assert_int_equal(s.gpa, LAYOUT_VMGENID);
    assert_int_equal(s.gsi, GSI_ACPI_GED);
    vmgenid_get(v, id);
    assert_memory_equal(s.id, id, VMGENID_ID_BYTES);
    assert_int_equal(sizeof(s), 32);

    /* The guest scribbles on its copy; the restore writes a new one regardless. */
    memset(mem_ptr(&m, LAYOUT_VMGENID, VMGENID_ID_BYTES), 0xee, VMGENID_ID_BYTES);
    char err[160] = "";
    assert_int_equal(vmgenid_check(v, &s, err, sizeof(err)), 0);
    assert_int_equal(vmgenid_restore(v, &s), 0);
    vmgenid_get(v, id);
    assert_memory_not_equal(id, s.id, VMGENID_ID_BYTES);
    assert_memory_equal(mem_ptr(&m, LAYOUT_VMGENID, VMGENID_ID_BYTES), id, VMGENID_ID_BYTES);
    /* One edge on the GED's line: up, then down. */
    assert_int_equal(l.n, 2);
    assert_int_equal(l.gsi[0], GSI_ACPI_GED);
    assert_int_equal(l.level[0], 1);
    assert_int_equal(l.gsi[1], GSI_ACPI_GED);
    assert_int_equal(l.level[1], 0);

    /* Two restores of one snapshot give two different IDs. */
    uint8_t first[VMGENID_ID_BYTES];
    memcpy(first, id, sizeof(first));
    assert_int_equal(vmgenid_restore(v, &s), 0);
    vmgenid_get(v, id);
    assert_memory_not_equal(id, first, VMGENID_ID_BYTES);
    assert_memory_not_equal(id, s.id, VMGENID_ID_BYTES);
    vmgenid_destroy(v);
    mem_free(&m);
}

static void test_restore_never_repeats_the_saved_id(void **state)
{
    (void)state;
    struct guest_mem m;
    struct irq_log l = {0};
    struct vmgenid *v;
    struct vmgenid_state s;
    uint8_t id[VMGENID_ID_BYTES];
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    script((const uint8_t[]){0x11, 0x11, 0x22}, 3);
    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, 3, irq_cb, &l, scripted_random, &v), 0);
    vmgenid_save(v, &s);
    /* The source repeats the saved ID once: the device draws again. */
    assert_int_equal(vmgenid_restore(v, &s), 0);
    vmgenid_get(v, id);
    assert_int_equal(id[0], 0x22);
    assert_int_equal(l.n, 2);

    /* A source stuck on the saved ID is an error, and the guest is told nothing. */
    vmgenid_save(v, &s);
    script((const uint8_t[]){0x22, 0x22, 0x22, 0x22, 0x22}, 5);
    l.n = 0;
    assert_int_equal(vmgenid_restore(v, &s), -EIO);
    assert_int_equal(l.n, 0);
    vmgenid_destroy(v);
    mem_free(&m);
}

static void test_check_rejects_foreign_state(void **state)
{
    (void)state;
    struct guest_mem m;
    struct irq_log l = {0};
    struct vmgenid *v;
    struct vmgenid_state s, bad;
    char err[160];
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    assert_int_equal(vmgenid_create(&m, LAYOUT_VMGENID, GSI_ACPI_GED, irq_cb, &l, NULL, &v), 0);
    vmgenid_save(v, &s);

    bad = s;
    bad.version = 2;
    assert_int_equal(vmgenid_check(v, &bad, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "version 2"));
    bad = s;
    bad.gpa = 0x1000;
    assert_int_equal(vmgenid_check(v, &bad, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "0x1000"));
    bad = s;
    bad.gsi = 9;
    assert_int_equal(vmgenid_check(v, &bad, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "GSI 9"));
    assert_int_equal(l.n, 0);
    vmgenid_destroy(v);
    mem_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boot_id_is_random_and_in_guest_memory),
        cmocka_unit_test(test_create_rejects),
        cmocka_unit_test(test_restore_renews_and_raises_an_edge),
        cmocka_unit_test(test_restore_never_repeats_the_saved_id),
        cmocka_unit_test(test_check_rejects_foreign_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
