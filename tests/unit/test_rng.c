/* Unit tests for virtio-rng over the mmio transport and fake guest memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "devices/virtio/rng.h"
#include "vmm/clock.h"
#include "tests/unit/virtio_test_ring.h"

#define RAM_BYTES (4ULL << 20)

struct fix {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    struct test_ring r;
};

static void w32(struct fix *f, uint64_t off, uint32_t v)
{
    virtio_mmio_io(&f->d, off, (uint8_t *)&v, 4, true);
}

static uint32_t r32(struct fix *f, uint64_t off)
{
    uint32_t v = 0;
    virtio_mmio_io(&f->d, off, (uint8_t *)&v, 4, false);
    return v;
}

/* Driver bring-up, as Linux does it, with queue 0 on the default test ring. */
static int bring_up(struct fix *f, uint16_t qsize)
{
    tr_init(&f->r, &f->mem, qsize);
    w32(f, VIRTIO_MMIO_STATUS, 0);
    w32(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(f, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    w32(f, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 0);
    w32(f, VIRTIO_MMIO_QUEUE_NUM, qsize);
    w32(f, VIRTIO_MMIO_QUEUE_DESC_LOW, TR_DESC);
    w32(f, VIRTIO_MMIO_QUEUE_DRIVER_LOW, TR_AVAIL);
    w32(f, VIRTIO_MMIO_QUEUE_DEVICE_LOW, TR_USED);
    w32(f, VIRTIO_MMIO_QUEUE_READY, 1);
    w32(f, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
            VIRTIO_STATUS_DRIVER_OK);
    return r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK ? 0 : -1;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || mem_init(&f->mem, RAM_BYTES) || loop_init(&f->loop))
        return -1;
    if (rng_create(&f->d, &f->mem, &f->loop, 0xd0000000, 5))
        return -1;
    tr_init(&f->r, &f->mem, 16);

    if (bring_up(f, 16))
        return -1;
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

static void kick(struct fix *f)
{
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    while (loop_run_once(&f->loop, 0) > 0) {
    }
}

static bool all_same(const uint8_t *p, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (p[i] != p[0])
            return false;
    return true;
}

static void test_identity(void **state)
{
    struct fix *f = *state;
    assert_int_equal(r32(f, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
    w32(f, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_int_equal(r32(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0); /* one queue only */
}

static void test_fills_buffers(void **state)
{
    struct fix *f = *state;
    /* Chain 0: two writable pieces; chain 1: one 4 KiB buffer. */
    tr_desc(&f->r, 0, TR_DATA, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA + 0x1000, 100, VIRTQ_DESC_F_WRITE, 0);
    tr_desc(&f->r, 2, TR_DATA + 0x2000, 4096, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    tr_publish(&f->r, 2);
    kick(f);

    assert_int_equal(tr_used_idx(&f->r), 2);
    assert_int_equal(tr_used_id(&f->r, 0), 0);
    assert_int_equal(tr_used_len(&f->r, 0), 164);
    assert_int_equal(tr_used_id(&f->r, 1), 2);
    assert_int_equal(tr_used_len(&f->r, 1), 4096);
    uint8_t *a = mem_ptr(&f->mem, TR_DATA, 64);
    uint8_t *b = mem_ptr(&f->mem, TR_DATA + 0x1000, 100);
    uint8_t *c = mem_ptr(&f->mem, TR_DATA + 0x2000, 4096);
    assert_false(all_same(a, 64));
    assert_false(all_same(b, 100));
    assert_false(all_same(c, 4096));
    assert_memory_not_equal(a, c, 64);
    assert_true(r32(f, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_ISR_USED);
}

static void test_request_capped(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 256 * 1024, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    kick(f);
    assert_int_equal(tr_used_len(&f->r, 0), RNG_MAX_REQUEST_BYTES);
    uint8_t *tail = mem_ptr(&f->mem, TR_DATA + RNG_MAX_REQUEST_BYTES, 4096);
    assert_true(all_same(tail, 4096) && tail[0] == 0); /* untouched */
}

static void test_many_requests_all_served(void **state)
{
    struct fix *f = *state;
    /* More than one batch's worth of requests across kicks (ring wraps several times). */
    for (unsigned round = 0; round < 10; round++) {
        for (unsigned i = 0; i < 16; i++) {
            tr_desc(&f->r, i, TR_DATA + 64 * i, 64, VIRTQ_DESC_F_WRITE, 0);
            tr_publish(&f->r, (uint16_t)i);
        }
        kick(f);
        assert_int_equal(tr_used_idx(&f->r), 16 * (round + 1));
    }
}

static void test_big_batch_yields_but_completes(void **state)
{
    struct fix *f = *state;
    assert_int_equal(bring_up(f, 128), 0);
    for (unsigned i = 0; i < 100; i++) {
        tr_desc(&f->r, i, TR_DATA + 64 * i, 64, VIRTQ_DESC_F_WRITE, 0);
        tr_publish(&f->r, (uint16_t)i);
    }
    w32(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_true(loop_run_once(&f->loop, 0) > 0);
    uint16_t first = tr_used_idx(&f->r);
    assert_true(first > 0 && first < 100);   /* served a batch, then yielded */
    while (loop_run_once(&f->loop, 0) > 0) { /* no new notify: the self-kick finishes it */
    }
    assert_int_equal(tr_used_idx(&f->r), 100);
}

static void test_malformed_request(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, RAM_BYTES - 8, 64, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    kick(f);
    assert_int_equal(tr_used_idx(&f->r), 0);
    assert_true(r32(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_quiesce_resume(void **state)
{
    struct fix *f = *state;
    virtio_dev_quiesce(&f->d);
    tr_desc(&f->r, 0, TR_DATA, 32, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    kick(f);
    assert_int_equal(tr_used_idx(&f->r), 0);
    virtio_dev_resume(&f->d);
    assert_int_equal(tr_used_idx(&f->r), 1);
    assert_int_equal(tr_used_len(&f->r, 0), 32);
}

/*
 * PUT /entropy's rate_limiter: one request per 100 ms. The first goes at once (the bucket starts
 * full); the others stay in the ring, extra kicks neither serve them nor make the loop spin, a
 * pause in between holds nothing in flight, and the limiter's timer serves them afterwards.
 */
static void test_rate_limited(void **state)
{
    struct fix *f = *state;
    struct rl_config rl = {.ops = {.size = 1, .refill_time_ms = 100}};
    assert_int_equal(rng_set_rate_limit(&f->d, &rl), 0);
    for (uint16_t i = 0; i < 3; i++) {
        tr_desc(&f->r, i, TR_DATA + i * 0x1000ULL, 16, VIRTQ_DESC_F_WRITE, 0);
        tr_publish(&f->r, i);
    }
    uint64_t t0 = clock_now_ns();
    kick(f);
    assert_int_equal(tr_used_idx(&f->r), 1);
    kick(f);
    kick(f);
    assert_int_equal(tr_used_idx(&f->r), 1);

    /* Paused across the timer's expiry: nothing is served, and nothing was in flight. */
    assert_int_equal(virtio_dev_quiesce_within(&f->d, 0), 0);
    assert_true(loop_run_once(&f->loop, 300) > 0); /* the timer */
    assert_int_equal(tr_used_idx(&f->r), 1);
    virtio_dev_resume(&f->d);

    unsigned wakeups = 0;
    while (tr_used_idx(&f->r) < 3 && clock_now_ns() - t0 < 5000000000ULL)
        if (loop_run_once(&f->loop, 50) > 0)
            wakeups++;
    assert_int_equal(tr_used_idx(&f->r), 3);
    assert_int_equal(tr_used_id(&f->r, 2), 2);
    /* Three requests at one per 100 ms cannot finish before 200 ms, and waiting took a handful
     * of timer expiries, not a busy loop. */
    assert_true(clock_now_ns() - t0 >= 200000000ULL);
    assert_true(wakeups <= 6);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_identity),
        T(test_fills_buffers),
        T(test_request_capped),
        T(test_many_requests_all_served),
        T(test_big_batch_yields_but_completes),
        T(test_malformed_request),
        T(test_quiesce_resume),
        T(test_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
