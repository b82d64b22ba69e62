/* Unit tests for virtio device state in snapshots: a queue's used index across a restore. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/rng.h"
#include "devices/virtio/virtio_snap.h"
#include "tests/unit/virtio_test_ring.h"
#include "vmm/clock.h"
#include "vmm/log.h"

#define RAM_BYTES (4ULL << 20)

/* A device over its own guest RAM and loop, as a new amber process would have it. */
struct fix {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
};

static void fix_init(struct fix *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(mem_init(&f->mem, RAM_BYTES), 0);
    assert_int_equal(loop_init(&f->loop), 0);
}

static void fix_fini(struct fix *f)
{
    virtio_dev_destroy(&f->d);
    loop_destroy(&f->loop);
    mem_free(&f->mem);
}

/* The device's section as a snapshot file, opened by r; the caller frees the buffer. */
static uint8_t *save(struct virtio_dev *d, struct snap_reader *r)
{
    struct snap_writer w;
    snapw_init(&w);
    virtio_snap_save(d, 0, &w);
    uint8_t *buf;
    size_t len;
    assert_int_equal(snapw_finish(&w, "x", &buf, &len), 0);
    snapw_free(&w);
    char err[256];
    assert_int_equal(snapr_open(r, buf, len, err, sizeof(err)), 0);
    return buf;
}

/* Check and load r's section into d; the clock before and after the load in t[0], t[1]. */
static void restore(struct virtio_dev *d, const struct snap_reader *r, uint64_t t[2])
{
    const struct snap_entry *s = snapr_find(r, SNAP_SEC_VIRTIO, 0);
    char err[256] = "";
    assert_int_equal(virtio_snap_check(r, s, d, err, sizeof(err)), 0);
    t[0] = clock_now_ns();
    assert_int_equal(virtio_snap_load(d, r, s, err, sizeof(err)), 0);
    t[1] = clock_now_ns();
}

/* --- a queue's used index across a restore --- */

static void w32(struct virtio_dev *d, uint64_t off, uint32_t v)
{
    virtio_mmio_io(d, off, (uint8_t *)&v, 4, true);
}

/* Play the driver: features, queue 0 of 16 entries on the test ring, DRIVER_OK. */
static void bring_up(struct virtio_dev *d, struct test_ring *r, const struct guest_mem *mem)
{
    tr_init(r, mem, 16);
    w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    w32(d, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    w32(d, VIRTIO_MMIO_QUEUE_SEL, 0);
    w32(d, VIRTIO_MMIO_QUEUE_NUM, 16);
    w32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, TR_DESC);
    w32(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, TR_AVAIL);
    w32(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, TR_USED);
    w32(d, VIRTIO_MMIO_QUEUE_READY, 1);
    w32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

/* The driver offers one 64-byte buffer and kicks; the device serves it on the spot. */
static void request(struct virtio_dev *d, struct test_ring *r)
{
    uint16_t head = (uint16_t)(r->avail_idx % r->size);
    tr_desc(r, head, TR_DATA + 64 * (uint64_t)head, 64, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(r, head);
    pthread_mutex_lock(&d->lock);
    d->ops->queue_notify(d, 0);
    pthread_mutex_unlock(&d->lock);
}

/*
 * Saved after the used index has gone round the ring more than once, a queue restored into a
 * new process must take the next completion: the guest sees used->idx move on by one and the
 * element in the slot after the last. A device that does not know what it last published
 * thinks a whole ring of elements is still waiting and refuses the push.
 */
static void test_used_index_carries_on(void **state)
{
    (void)state;
    static struct fix a, b;
    fix_init(&a);
    fix_init(&b);
    assert_int_equal(rng_create(&a.d, &a.mem, &a.loop, 0xd0000000, 5), 0);
    assert_int_equal(rng_create(&b.d, &b.mem, &b.loop, 0xd0000000, 5), 0);
    struct test_ring ra;
    bring_up(&a.d, &ra, &a.mem);
    for (unsigned i = 0; i < 40; i++)
        request(&a.d, &ra);
    assert_int_equal(tr_used_idx(&ra), 40);
    assert_int_equal(a.d.vq[0].used_published, 40);

    /* Paused and saved; the new process maps the memory file (here: a copy of RAM). */
    struct snap_reader r;
    uint8_t *buf = save(&a.d, &r);
    memcpy(b.mem.map, a.mem.map, RAM_BYTES);
    uint64_t t[2];
    restore(&b.d, &r, t);

    struct test_ring rb = ra;
    rb.mem = &b.mem;
    request(&b.d, &rb);
    assert_int_equal(b.d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
    assert_int_equal(tr_used_idx(&rb), 41);
    assert_int_equal(tr_used_id(&rb, 40), 40 % 16);
    assert_int_equal(tr_used_len(&rb, 40), 64);
    assert_int_equal(tr_used_id(&rb, 39), 39 % 16); /* the element before is untouched */
    free(buf);
    fix_fini(&a);
    fix_fini(&b);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_used_index_carries_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
