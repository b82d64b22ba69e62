/* Unit tests for the virtio-mmio transport: registers, status machine, kicks, irqs, pause. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/virtio.h"
#include "tests/unit/virtio_test_ring.h"

#define RAM_BYTES (4ULL << 20)

/* A fake device that records which hooks ran. */
struct fake {
    int activate_calls, reset_calls, quiesce_calls, resume_calls;
    int notify_calls[VIRTIO_MAX_QUEUES];
    int activate_ret;
    uint8_t config[8];
    struct virtq_chain chain;
};

struct fix {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    struct fake fake;
    struct test_ring r;
};

static void fake_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct fake *f = d->priv;
    memcpy(data, f->config + off, len);
}

static void fake_config_write(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len)
{
    struct fake *f = d->priv;
    memcpy(f->config + off, data, len);
}

static int fake_activate(struct virtio_dev *d)
{
    struct fake *f = d->priv;
    f->activate_calls++;
    return f->activate_ret;
}

/* Serve every chain with 0 bytes written and interrupt, as a trivial device would. */
static void fake_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct fake *f = d->priv;
    f->notify_calls[q]++;
    int got;
    bool pushed = false;
    while ((got = virtq_pop(&d->vq[q], &f->chain)) == 1) {
        virtq_push(&d->vq[q], f->chain.head, 0);
        pushed = true;
    }
    if (got < 0)
        virtio_set_needs_reset(d, "test");
    if (pushed)
        virtio_notify_used(d, q);
}

static void fake_reset(struct virtio_dev *d)
{
    ((struct fake *)d->priv)->reset_calls++;
}

static int fake_quiesce(struct virtio_dev *d, unsigned timeout_ms)
{
    ((struct fake *)d->priv)->quiesce_calls++;
    return 0;
}

static void fake_resume(struct virtio_dev *d)
{
    ((struct fake *)d->priv)->resume_calls++;
}

static const struct virtio_dev_ops fake_ops = {
    .name = "fake",
    .device_id = 42,
    .num_queues = 2,
    .queue_max = 64,
    .features = 1ULL << 3,
    .config_size = 8,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .activate = fake_activate,
    .queue_notify = fake_queue_notify,
    .reset = fake_reset,
    .quiesce = fake_quiesce,
    .resume = fake_resume,
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || mem_init(&f->mem, RAM_BYTES) || loop_init(&f->loop))
        return -1;
    if (virtio_dev_init(&f->d, &fake_ops, &f->fake, &f->mem, &f->loop, 0xd0000000, 5))
        return -1;
    tr_init(&f->r, &f->mem, 16);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    virtio_dev_destroy(&f->d);
    loop_destroy(&f->loop);
    mem_free(&f->mem);
    free(f);
    return 0;
}

static void w32(struct fix *f, uint64_t off, uint32_t v)
{
    virtio_mmio_io(&f->d, off, (uint8_t *)&v, 4, true);
}

static uint32_t r32(struct fix *f, uint64_t off)
{
    uint32_t v = 0xdeadbeef;
    virtio_mmio_io(&f->d, off, (uint8_t *)&v, 4, false);
    return v;
}

/* Interrupts signalled since the last call (the irqfd counter). */
static uint64_t irqs(struct fix *f)
{
    uint64_t v = 0;
    if (read(f->d.irq_fd, &v, sizeof(v)) < 0)
        return 0;
    return v;
}

static void pump(struct fix *f)
{
    while (loop_run_once(&f->loop, 0) > 0) {
    }
}

/* ACKNOWLEDGE, DRIVER, the given features, FEATURES_OK. Returns Status read back. */
static uint32_t negotiate(struct fix *f, uint64_t features)
{
    w32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    w32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
    w32(f, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    return r32(f, VIRTIO_MMIO_STATUS);
}

static void setup_queue(struct fix *f, unsigned q, uint16_t num, uint64_t desc, uint64_t avail,
                        uint64_t used)
{
    w32(f, VIRTIO_MMIO_QUEUE_SEL, q);
    w32(f, VIRTIO_MMIO_QUEUE_NUM, num);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    w32(f, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
    w32(f, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
    w32(f, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
    w32(f, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
    w32(f, VIRTIO_MMIO_QUEUE_READY, 1);
}

#define V1 (1ULL << VIRTIO_F_VERSION_1)
#define ST_ALL                                                                                     \
    (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |                \
     VIRTIO_STATUS_DRIVER_OK)

/* Full bring-up with queue 0 on the default test ring. */
static void bring_up(struct fix *f, uint64_t features)
{
    assert_true(negotiate(f, features) & VIRTIO_STATUS_FEATURES_OK);
    setup_queue(f, 0, 16, TR_DESC, TR_AVAIL, TR_USED);
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_READY), 1);
    w32(f, VIRTIO_MMIO_STATUS, ST_ALL);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS) & ST_ALL, ST_ALL);
}

/* Publish one writable 8-byte buffer on queue 0. */
static void add_buffer(struct fix *f, uint16_t desc)
{
    tr_desc(&f->r, desc, TR_DATA + 0x100 * desc, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, desc);
}

static void test_identity(void **state)
{
    struct fix *f = *state;
    assert_int_equal(r32(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
    assert_int_equal(r32(f, VIRTIO_MMIO_VERSION), 2);
    assert_int_equal(r32(f, VIRTIO_MMIO_DEVICE_ID), 42);
    assert_int_equal(r32(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), 0);
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 2); /* past num_queues */
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    w32(f, VIRTIO_MMIO_MAGIC_VALUE, 0); /* read-only */
    assert_int_equal(r32(f, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
}

static void test_features(void **state)
{
    struct fix *f = *state;
    w32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t lo = r32(f, VIRTIO_MMIO_DEVICE_FEATURES);
    w32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint32_t hi = r32(f, VIRTIO_MMIO_DEVICE_FEATURES);
    w32(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_int_equal(r32(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
    assert_true(lo & (1u << 3));
    assert_true(lo & (1u << VIRTIO_F_INDIRECT_DESC));
    assert_true(lo & (1u << VIRTIO_F_EVENT_IDX));
    assert_true(hi & 1u); /* VERSION_1 is bit 32 */

    uint32_t st = negotiate(f, V1 | (1ULL << 3) | (1ULL << VIRTIO_F_EVENT_IDX));
    assert_true(st & VIRTIO_STATUS_FEATURES_OK);
    assert_true(virtio_has_feature(&f->d, 3));
    assert_true(virtio_has_feature(&f->d, VIRTIO_F_EVENT_IDX));
    assert_false(virtio_has_feature(&f->d, VIRTIO_F_INDIRECT_DESC));

    /* Once FEATURES_OK stuck, feature writes are ignored. */
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
    assert_true(virtio_has_feature(&f->d, 3));
}

static void test_legacy_driver_refused(void **state)
{
    struct fix *f = *state;
    uint32_t st = negotiate(f, 1ULL << 3); /* no VERSION_1 */
    assert_false(st & VIRTIO_STATUS_FEATURES_OK);
    assert_true(st & VIRTIO_STATUS_DRIVER);
    assert_false(virtio_has_feature(&f->d, 3));
    /* DRIVER_OK without FEATURES_OK does not activate the device. */
    w32(f, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    assert_false(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK);
    assert_int_equal(f->fake.activate_calls, 0);
}

static void test_unoffered_feature_refused(void **state)
{
    struct fix *f = *state;
    assert_false(negotiate(f, V1 | (1ULL << 5)) & VIRTIO_STATUS_FEATURES_OK);
}

static void test_queue_setup_and_lock(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    assert_int_equal(f->fake.activate_calls, 1);
    assert_true(f->d.vq[0].ready);
    assert_int_equal(f->d.vq[0].size, 16);
    assert_int_equal(f->d.vq[0].desc_gpa, TR_DESC);
    assert_int_equal(f->d.vq[0].avail_gpa, TR_AVAIL);
    assert_int_equal(f->d.vq[0].used_gpa, TR_USED);

    /* Live queue: its registers no longer change. */
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NUM, 8);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
    assert_int_equal(f->d.vq[0].size, 16);
    assert_int_equal(f->d.vq[0].desc_gpa, TR_DESC);
    /* After DRIVER_OK, unready queues are locked too. */
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 1);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
    assert_int_equal(f->d.vq[1].desc_gpa, 0);

    /* Status bits cannot be removed except by reset. */
    w32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), ST_ALL);
}

static void test_bad_queue_needs_reset(void **state)
{
    struct fix *f = *state;
    assert_true(negotiate(f, V1) & VIRTIO_STATUS_FEATURES_OK);
    irqs(f);
    setup_queue(f, 0, 16, RAM_BYTES - 0x10, TR_AVAIL, TR_USED); /* desc table off RAM */
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_true(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_ISR_CONFIG);
    assert_int_equal(irqs(f), 1);
}

static void test_bad_queue_size_needs_reset(void **state)
{
    struct fix *f = *state;
    negotiate(f, V1);
    setup_queue(f, 0, 128, TR_DESC, TR_AVAIL, TR_USED); /* > QueueNumMax 64 */
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_false(f->d.vq[0].ready);
}

static void test_reset_and_setup_again(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    w32(f, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(f->fake.reset_calls, 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), 0);
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_false(f->d.vq[0].ready);
    assert_int_equal(f->d.driver_features, 0);
    assert_int_equal(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

    /* A reset also clears NEEDS_RESET. */
    negotiate(f, V1);
    setup_queue(f, 0, 16, RAM_BYTES, TR_AVAIL, TR_USED);
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    w32(f, VIRTIO_MMIO_STATUS, 0);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), 0);

    tr_init(&f->r, &f->mem, 16);
    bring_up(f, V1);
    assert_int_equal(f->fake.activate_calls, 2);
    add_buffer(f, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_int_equal(f->fake.notify_calls[0], 1);
    assert_int_equal(tr_used_idx(&f->r), 1);
}

static void test_activate_failure(void **state)
{
    struct fix *f = *state;
    f->fake.activate_ret = -EIO;
    bring_up(f, V1);
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    /* A device needing reset does not process kicks. */
    add_buffer(f, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_int_equal(f->fake.notify_calls[0], 0);
}

static void test_config_space(void **state)
{
    struct fix *f = *state;
    memcpy(f->fake.config, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    uint64_t v8 = 0;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG, (uint8_t *)&v8, 8, false);
    assert_int_equal(v8, 0x0807060504030201ULL);
    uint16_t v2 = 0;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&v2, 2, false);
    assert_int_equal(v2, 0x0807);
    uint8_t v1 = 0;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 7, &v1, 1, false);
    assert_int_equal(v1, 8);

    /* Out of bounds or odd sizes read as zero and do not write. */
    uint32_t v4 = 0xffffffff;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&v4, 4, false);
    assert_int_equal(v4, 0);
    v4 = 0xffffffff;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 0x100, (uint8_t *)&v4, 4, false);
    assert_int_equal(v4, 0);
    uint8_t v3[3] = {9, 9, 9};
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG, v3, 3, false);
    assert_int_equal(v3[0] | v3[1] | v3[2], 0);
    v4 = 0xaabbccdd;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 6, (uint8_t *)&v4, 4, true);
    assert_int_equal(f->fake.config[6], 7);

    v2 = 0xbeef;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_CONFIG + 2, (uint8_t *)&v2, 2, true);
    assert_int_equal(f->fake.config[2], 0xef);
    assert_int_equal(f->fake.config[3], 0xbe);
}

static void test_odd_register_access(void **state)
{
    struct fix *f = *state;
    uint16_t v2 = 0xffff;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_MAGIC_VALUE, (uint8_t *)&v2, 2, false);
    assert_int_equal(v2, 0);
    uint32_t v4 = 0xffffffff;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_MAGIC_VALUE + 2, (uint8_t *)&v4, 4, false);
    assert_int_equal(v4, 0);
    uint8_t v1 = VIRTIO_STATUS_ACKNOWLEDGE;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_STATUS, &v1, 1, true);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), 0);
    uint64_t v8 = VIRTIO_STATUS_ACKNOWLEDGE;
    virtio_mmio_io(&f->d, VIRTIO_MMIO_STATUS, (uint8_t *)&v8, 8, true);
    assert_int_equal(r32(f, VIRTIO_MMIO_STATUS), 0);
}

static void test_notify_and_interrupt(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    irqs(f);
    add_buffer(f, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 7); /* out of range: ignored */
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_int_equal(f->fake.notify_calls[0], 1);
    assert_int_equal(f->fake.notify_calls[1], 0); /* not ready */
    assert_int_equal(tr_used_idx(&f->r), 1);
    assert_int_equal(irqs(f), 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_ISR_USED);
    w32(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_ISR_USED);
    assert_int_equal(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

    /* Kicking the unready queue does nothing. */
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    pump(f);
    assert_int_equal(f->fake.notify_calls[1], 0);

    /* A malformed chain puts the device into NEEDS_RESET with a config interrupt. */
    tr_publish(&f->r, 99);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
    assert_true(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_ISR_CONFIG);
    assert_int_equal(irqs(f), 1);
}

static void test_config_notify(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    irqs(f);
    uint32_t gen = r32(f, VIRTIO_MMIO_CONFIG_GENERATION);
    pthread_mutex_lock(&f->d.lock);
    virtio_notify_config(&f->d);
    pthread_mutex_unlock(&f->d.lock);
    assert_int_equal(r32(f, VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_ISR_CONFIG);
    assert_int_equal(irqs(f), 1);
}

static void test_quiesce_defers_kicks_and_irqs(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    irqs(f);

    virtio_dev_quiesce(&f->d);
    assert_int_equal(f->fake.quiesce_calls, 1);
    add_buffer(f, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_int_equal(f->fake.notify_calls[0], 0);
    assert_int_equal(tr_used_idx(&f->r), 0);

    /* A completion that lands while paused holds its interrupt. */
    pthread_mutex_lock(&f->d.lock);
    virtio_notify_config(&f->d);
    pthread_mutex_unlock(&f->d.lock);
    assert_int_equal(irqs(f), 0);

    virtio_dev_resume(&f->d);
    assert_int_equal(f->fake.resume_calls, 1);
    assert_int_equal(f->fake.notify_calls[0], 1);
    assert_int_equal(tr_used_idx(&f->r), 1);
    assert_true(irqs(f) >= 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_ISR_USED | VIRTIO_ISR_CONFIG);

    /* Back to normal: kicks are served at once. */
    add_buffer(f, 1);
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(f);
    assert_int_equal(f->fake.notify_calls[0], 2);
}

static void test_resume_replays_coalesced_work(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1);
    virtio_dev_quiesce(&f->d);
    add_buffer(f, 0); /* no kick at all: e.g. coalesced into one consumed before pause */
    virtio_dev_resume(&f->d);
    assert_int_equal(f->fake.notify_calls[0], 1);
    assert_int_equal(tr_used_idx(&f->r), 1);

    /* With nothing pending, resume does not call the device. */
    virtio_dev_quiesce(&f->d);
    virtio_dev_resume(&f->d);
    assert_int_equal(f->fake.notify_calls[0], 1);
}

static void test_event_idx_follows_negotiation(void **state)
{
    struct fix *f = *state;
    bring_up(f, V1 | (1ULL << VIRTIO_F_EVENT_IDX));
    assert_true(f->d.vq[0].event_idx);
    w32(f, VIRTIO_MMIO_STATUS, 0);
    bring_up(f, V1);
    assert_false(f->d.vq[0].event_idx);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity),
        T(test_features),
        T(test_legacy_driver_refused),
        T(test_unoffered_feature_refused),
        T(test_queue_setup_and_lock),
        T(test_bad_queue_needs_reset),
        T(test_bad_queue_size_needs_reset),
        T(test_reset_and_setup_again),
        T(test_activate_failure),
        T(test_config_space),
        T(test_odd_register_access),
        T(test_notify_and_interrupt),
        T(test_config_notify),
        T(test_quiesce_defers_kicks_and_irqs),
        T(test_resume_replays_coalesced_work),
        T(test_event_idx_follows_negotiation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
