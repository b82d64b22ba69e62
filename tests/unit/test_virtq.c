/* Unit tests for the split virtqueue library: well-formed chains and hostile guests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/virtq.h"
#include "tests/unit/virtio_test_ring.h"

#define RAM_BYTES (4ULL << 20)
#define QSIZE     16

struct fix {
    struct guest_mem mem;
    struct test_ring r;
    struct virtq q;
    struct virtq_chain c;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || mem_init(&f->mem, RAM_BYTES))
        return -1;
    tr_init(&f->r, &f->mem, QSIZE);
    tr_attach(&f->r, &f->q);
    f->q.indirect_desc = true; /* the driver negotiated VIRTIO_F_INDIRECT_DESC */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    mem_free(&f->mem);
    free(f);
    return 0;
}

/* Expect the next pop to be rejected and the queue position to stay put. */
static void expect_malformed(struct fix *f)
{
    uint16_t before = f->q.last_avail;
    assert_int_equal(virtq_pop(&f->q, &f->c), -EINVAL);
    assert_int_equal(f->q.last_avail, before);
}

static void test_validate(void **state)
{
    struct fix *f = *state;
    assert_int_equal(virtq_validate(&f->q, QSIZE), 0);

    struct virtq q = f->q;
    q.size = 12; /* not a power of two */
    assert_int_equal(virtq_validate(&q, 1024), -EINVAL);
    q.size = 0;
    assert_int_equal(virtq_validate(&q, 1024), -EINVAL);
    q.size = 32; /* above max */
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);

    q = f->q;
    q.desc_gpa = TR_DESC + 8; /* descriptors need 16-byte alignment */
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);
    q = f->q;
    q.avail_gpa = TR_AVAIL + 1;
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);
    q = f->q;
    q.used_gpa = TR_USED + 2;
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);

    q = f->q;
    q.used_gpa = RAM_BYTES - 64; /* used ring (6 + 8*16 bytes) runs off the end of RAM */
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);
    q = f->q;
    q.desc_gpa = UINT64_MAX - 15;
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);
    q = f->q;
    q.avail_gpa = RAM_BYTES + 0x1000;
    assert_int_equal(virtq_validate(&q, QSIZE), -EINVAL);
}

static void test_empty(void **state)
{
    struct fix *f = *state;
    assert_false(virtq_has_work(&f->q));
    assert_int_equal(virtq_pop(&f->q, &f->c), 0);
}

static void test_direct_chain(void **state)
{
    struct fix *f = *state;
    /* out: 4 + 6 bytes, in: 16 bytes, descriptors in scattered table order */
    tr_desc(&f->r, 3, TR_DATA, 4, VIRTQ_DESC_F_NEXT, 7);
    tr_desc(&f->r, 7, TR_DATA + 0x100, 6, VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
    mem_write(&f->mem, TR_DATA, "abcd", 4);
    mem_write(&f->mem, TR_DATA + 0x100, "efghij", 6);
    tr_publish(&f->r, 3);

    assert_true(virtq_has_work(&f->q));
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.head, 3);
    assert_int_equal(f->c.nout, 2);
    assert_int_equal(f->c.nin, 1);
    assert_int_equal(f->c.out_len, 10);
    assert_int_equal(f->c.in_len, 16);
    assert_ptr_equal(f->c.iov[2].iov_base, mem_ptr(&f->mem, TR_DATA + 0x200, 16));

    char buf[16] = {0};
    assert_int_equal(virtq_chain_read(&f->c, 0, buf, sizeof(buf)), 10);
    assert_memory_equal(buf, "abcdefghij", 10);
    assert_int_equal(virtq_chain_read(&f->c, 3, buf, 4), 4);
    assert_memory_equal(buf, "defg", 4);
    assert_int_equal(virtq_chain_write(&f->c, 10, "XYZ", 3), 3);
    assert_int_equal(virtq_chain_write(&f->c, 14, "XYZ", 3), 2); /* only 2 bytes left */
    assert_memory_equal(mem_ptr(&f->mem, TR_DATA + 0x20a, 3), "XYZ", 3);

    assert_int_equal(virtq_pop(&f->q, &f->c), 0);
    assert_false(virtq_has_work(&f->q));

    assert_int_equal(virtq_push(&f->q, 3, 16), 0);
    assert_int_equal(tr_used_idx(&f->r), 1);
    assert_int_equal(tr_used_id(&f->r, 0), 3);
    assert_int_equal(tr_used_len(&f->r, 0), 16);
    assert_int_equal(virtq_push(&f->q, QSIZE, 0), -EINVAL);
}

/* The stall report line: the driver's avail idx against ours, and "?" for a ring off RAM. */
static void test_describe(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 4, 0, 0);
    tr_publish(&f->r, 0);
    tr_publish(&f->r, 0);
    char line[200];
    virtq_describe(&f->q, line, sizeof(line));
    assert_non_null(strstr(line, "size 16 ready 1 avail 2 last_avail 0 used 0"));
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(virtq_push(&f->q, 0, 4), 0);
    virtq_describe(&f->q, line, sizeof(line));
    assert_non_null(strstr(line, "avail 2 last_avail 1 used 1 published 1"));

    struct virtq q = f->q;
    q.avail_gpa = RAM_BYTES + 0x1000; /* the driver pointed the ring outside RAM */
    virtq_describe(&q, line, sizeof(line));
    assert_non_null(strstr(line, " avail ? last_avail 1"));
    virtq_describe(&f->q, line, 12); /* truncated, still a string */
    assert_int_equal(strlen(line), 11);
}

static void test_indirect_chain(void **state)
{
    struct fix *f = *state;
    uint64_t table = 0x20000;
    tr_desc_at(&f->mem, table, 0, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 2);
    tr_desc_at(&f->mem, table, 2, TR_DATA + 0x100, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    tr_desc_at(&f->mem, table, 1, TR_DATA + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
    tr_desc(&f->r, 5, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 5);

    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.head, 5);
    assert_int_equal(f->c.nout, 1);
    assert_int_equal(f->c.nin, 2);
    assert_int_equal(f->c.out_len, 8);
    assert_int_equal(f->c.in_len, 96);
    assert_ptr_equal(f->c.iov[2].iov_base, mem_ptr(&f->mem, TR_DATA + 0x200, 64));
}

static void test_zero_length_buffer_skipped(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 0, VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.nout, 0);
    assert_int_equal(f->c.nin, 1);
}

static void test_no_interrupt_flag(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(virtq_push(&f->q, 0, 8), 0);
    tr_set_avail_flags(&f->r, VIRTQ_AVAIL_F_NO_INTERRUPT);
    assert_false(virtq_should_notify(&f->q));
    tr_set_avail_flags(&f->r, 0);
    assert_true(virtq_should_notify(&f->q));
}

static void test_event_idx(void **state)
{
    struct fix *f = *state;
    f->q.event_idx = true;
    for (unsigned i = 0; i < 8; i++)
        tr_desc(&f->r, i, TR_DATA + 0x100 * i, 8, VIRTQ_DESC_F_WRITE, 0);
    for (unsigned i = 0; i < 6; i++)
        tr_publish(&f->r, (uint16_t)i);

    /* Popping publishes avail_event = next entry we want a kick for. */
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(tr_avail_event(&f->r), 1);

    tr_set_used_event(&f->r, 9);
    assert_int_equal(virtq_push(&f->q, 0, 8), 0); /* used idx 1 */
    assert_true(virtq_should_notify(&f->q));      /* first one always, whatever used_event says */

    tr_set_used_event(&f->r, 4); /* driver wants an irq once entry 4 is used */
    for (unsigned i = 1; i < 4; i++) {
        assert_int_equal(virtq_pop(&f->q, &f->c), 1);
        assert_int_equal(virtq_push(&f->q, f->c.head, 8), 0);
        assert_false(virtq_should_notify(&f->q)); /* used idx 2, 3, 4: not past event 4 */
    }
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(virtq_push(&f->q, f->c.head, 8), 0); /* used idx 5 crosses event 4 */
    assert_true(virtq_should_notify(&f->q));
    assert_false(virtq_should_notify(&f->q)); /* nothing new since */

    /* Running dry re-arms avail_event at the current position. */
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(virtq_pop(&f->q, &f->c), 0);
    assert_int_equal(tr_avail_event(&f->r), 6);
}

/* A device that goes idle waiting for a kick must publish avail_event again at that moment:
 * the value its last pop stored may not be visible to the driver yet. */
static void test_has_work_or_arm(void **state)
{
    struct fix *f = *state;
    f->q.event_idx = true;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    assert_true(virtq_has_work_or_arm(&f->q));
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(tr_avail_event(&f->r), 1);

    tr_set_avail_event(&f->r, 0); /* stands for the pop's store still in a store buffer */
    assert_false(virtq_has_work(&f->q));
    assert_int_equal(tr_avail_event(&f->r), 0); /* a plain look arms nothing */
    assert_false(virtq_has_work_or_arm(&f->q));
    assert_int_equal(tr_avail_event(&f->r), 1); /* the driver's next entry will kick us */

    tr_publish(&f->r, 0);
    assert_true(virtq_has_work_or_arm(&f->q));

    /* Without EVENT_IDX there is nothing to publish: the driver kicks unless told not to. */
    f->q.event_idx = false;
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    tr_set_avail_event(&f->r, 7);
    assert_false(virtq_has_work_or_arm(&f->q));
    assert_int_equal(tr_avail_event(&f->r), 7);
}

static void test_enable_notify(void **state)
{
    struct fix *f = *state;
    virtq_enable_notify(&f->q, false);
    assert_int_equal(tr_used_flags(&f->r), VIRTQ_USED_F_NO_NOTIFY);
    virtq_enable_notify(&f->q, true);
    assert_int_equal(tr_used_flags(&f->r), 0);

    f->q.event_idx = true;
    f->q.last_avail = 9;
    virtq_enable_notify(&f->q, true);
    assert_int_equal(tr_avail_event(&f->r), 9);
}

static void test_index_wraparound(void **state)
{
    struct fix *f = *state;
    /* Start both sides just below the u16 wrap. */
    f->q.last_avail = 0xfffe;
    f->q.used_idx = 0xfffe;
    f->q.used_published = 0xfffe;
    tr_set_avail_idx(&f->r, 0xfffe);
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    for (unsigned i = 0; i < 4; i++)
        tr_publish(&f->r, 0);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(virtq_pop(&f->q, &f->c), 1);
        assert_int_equal(virtq_push(&f->q, 0, 8), 0);
    }
    assert_int_equal(virtq_pop(&f->q, &f->c), 0);
    assert_int_equal(tr_used_idx(&f->r), 2);
}

/* Elements pushed without publishing stay invisible until one index store shows them all. */
static void test_push_elem_batch(void **state)
{
    struct fix *f = *state;
    for (unsigned i = 0; i < 3; i++) {
        tr_desc(&f->r, i, TR_DATA + 0x100 * i, 8, VIRTQ_DESC_F_WRITE, 0);
        tr_publish(&f->r, (uint16_t)i);
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(virtq_pop(&f->q, &f->c), 1);
        assert_int_equal(virtq_push_elem(&f->q, f->c.head, 10 + i), 0);
        assert_int_equal(tr_used_idx(&f->r), 0); /* the driver sees nothing yet */
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(tr_used_id(&f->r, (uint16_t)i), i);
        assert_int_equal(tr_used_len(&f->r, (uint16_t)i), 10 + i);
    }
    virtq_publish(&f->q);
    assert_int_equal(tr_used_idx(&f->r), 3);
    virtq_publish(&f->q); /* nothing new: no change */
    assert_int_equal(tr_used_idx(&f->r), 3);
    assert_int_equal(virtq_push_elem(&f->q, QSIZE, 0), -EINVAL);

    /* A device bug cannot overwrite unpublished elements: a full ring is the limit. */
    for (unsigned i = 0; i < QSIZE; i++)
        assert_int_equal(virtq_push_elem(&f->q, 0, 0), 0);
    assert_int_equal(virtq_push_elem(&f->q, 0, 0), -ENOSPC);
    virtq_publish(&f->q);
    assert_int_equal(tr_used_idx(&f->r), 3 + QSIZE);

    /* virtq_reset forgets the unpublished position too. */
    assert_int_equal(virtq_push_elem(&f->q, 0, 0), 0);
    virtq_reset(&f->q);
    f->q.ready = true;
    virtq_publish(&f->q);
    assert_int_equal(tr_used_idx(&f->r), 3 + QSIZE);
}

/* Interrupt suppression looks at what the driver can see, not at unpublished elements. */
static void test_notify_counts_published_only(void **state)
{
    struct fix *f = *state;
    f->q.event_idx = true;
    tr_set_used_event(&f->r, 0);             /* interrupt once entry 0 is used */
    assert_true(virtq_should_notify(&f->q)); /* the first decision is always yes */
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(virtq_push_elem(&f->q, 0, 8), 0);
    assert_false(virtq_should_notify(&f->q)); /* not published: nothing to tell */
    virtq_publish(&f->q);
    assert_true(virtq_should_notify(&f->q));
}

/* ---- hostile guests ---- */

/* INDIRECT set although VIRTIO_F_INDIRECT_DESC was not negotiated (spec 2.7.5.3.1). */
static void test_indirect_not_negotiated(void **state)
{
    struct fix *f = *state;
    f->q.indirect_desc = false;
    tr_desc_at(&f->mem, 0x20000, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE, 0);
    tr_desc(&f->r, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
    /* Also when the indirect descriptor is not the head. */
    tr_desc(&f->r, 1, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
    tr_publish(&f->r, 1);
    f->q.last_avail = 1;
    expect_malformed(f);
    f->q.indirect_desc = true;
    f->q.last_avail = 0;
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.nin, 1);
}

static void test_loop(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_chain_longer_than_queue(void **state)
{
    struct fix *f = *state;
    /* Visits every descriptor once, then the 17th link goes back to the start. */
    for (unsigned i = 0; i < QSIZE; i++)
        tr_desc(&f->r, i, TR_DATA, 8, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % QSIZE));
    tr_publish(&f->r, 0);
    expect_malformed(f);

    /* Exactly QSIZE descriptors is fine. */
    tr_desc(&f->r, QSIZE - 1, TR_DATA, 8, 0, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
    assert_int_equal(f->c.nout, QSIZE);
}

static void test_next_out_of_range(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_head_out_of_range(void **state)
{
    struct fix *f = *state;
    tr_publish(&f->r, QSIZE);
    expect_malformed(f);
    tr_set_avail_idx(&f->r, 0);
    tr_publish(&f->r, 0xffff);
    expect_malformed(f);
}

static void test_avail_idx_jump(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, 0, 0);
    tr_set_avail_idx(&f->r, QSIZE + 1);
    expect_malformed(f);
    tr_set_avail_idx(&f->r, 0xffff); /* "behind" us, i.e. 65535 ahead */
    expect_malformed(f);
    tr_set_avail_idx(&f->r, QSIZE); /* a full ring is legal */
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

static void test_buffer_outside_ram(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, RAM_BYTES, 8, 0, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_buffer_wraps_address_space(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, UINT64_MAX - 0xfff, 0x2000, 0, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_buffer_straddles_end_of_ram(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, RAM_BYTES - 8, 16, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
    tr_desc(&f->r, 1, RAM_BYTES - 16, 16, VIRTQ_DESC_F_WRITE, 0); /* last 16 bytes: fine */
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

static void test_readable_after_writable(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, TR_DATA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA + 8, 8, 0, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_indirect_bad_length(void **state)
{
    struct fix *f = *state;
    tr_desc_at(&f->mem, 0x20000, 0, TR_DATA, 8, 0, 0);
    tr_publish(&f->r, 0);
    tr_desc(&f->r, 0, 0x20000, 17, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(f);
    tr_desc(&f->r, 0, 0x20000, 0, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(f);
    tr_desc(&f->r, 0, 0x20000, 16 * (VIRTQ_MAX_SIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(f);
    tr_desc(&f->r, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    assert_int_equal(virtq_pop(&f->q, &f->c), 1);
}

static void test_indirect_outside_ram(void **state)
{
    struct fix *f = *state;
    tr_desc(&f->r, 0, RAM_BYTES - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
    tr_desc(&f->r, 0, UINT64_MAX - 15, 32, VIRTQ_DESC_F_INDIRECT, 0);
    expect_malformed(f);
}

static void test_indirect_nested(void **state)
{
    struct fix *f = *state;
    tr_desc_at(&f->mem, 0x20000, 0, 0x21000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    tr_desc_at(&f->mem, 0x21000, 0, TR_DATA, 8, 0, 0);
    tr_desc(&f->r, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_indirect_with_next(void **state)
{
    struct fix *f = *state;
    tr_desc_at(&f->mem, 0x20000, 0, TR_DATA, 8, 0, 0);
    tr_desc(&f->r, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    tr_desc(&f->r, 1, TR_DATA, 8, 0, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

static void test_indirect_loop_and_range(void **state)
{
    struct fix *f = *state;
    tr_desc_at(&f->mem, 0x20000, 0, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 1);
    tr_desc_at(&f->mem, 0x20000, 1, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 0);
    tr_desc(&f->r, 0, 0x20000, 32, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
    tr_desc_at(&f->mem, 0x20000, 1, TR_DATA, 8, VIRTQ_DESC_F_NEXT, 2); /* past the table */
    expect_malformed(f);
}

static void test_chain_total_over_4gib(void **state)
{
    struct fix *f = *state;
    /* 1024 descriptors each covering all 4 MiB of RAM add up to exactly 2^32 bytes. */
    uint64_t table = 0x10000;
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++)
        tr_desc_at(&f->mem, table, i, 0, (uint32_t)RAM_BYTES,
                   i + 1 < VIRTQ_MAX_SIZE ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    tr_desc(&f->r, 0, table, 16 * VIRTQ_MAX_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
    tr_publish(&f->r, 0);
    expect_malformed(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_length_buffer_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_has_work_or_arm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_elem_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_counts_published_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_longer_than_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_outside_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_wraps_address_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_straddles_end_of_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_bad_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_outside_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_loop_and_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_total_over_4gib, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
