/* Unit tests for virtio device state in snapshots: rate limiter levels, a queue's used index. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/blk_priv.h"
#include "devices/virtio/net_priv.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/virtio_snap.h"
#include "tests/unit/virtio_test_ring.h"
#include "tests/unit/virtio_test_snap.h"
#include "vmm/clock.h"
#include "vmm/log.h"

#define RAM_BYTES (4ULL << 20)
#define HOUR_MS   3600000ULL /* the slowest refill: levels hardly move while a test runs */

/* A device over its own guest RAM and loop, as a new amber process would have it. */
struct fix {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    char path[64]; /* the drive file (blk) */
    int peer;      /* the socket standing in for the TAP (net) */
};

static void fix_init(struct fix *f)
{
    memset(f, 0, sizeof(*f));
    f->peer = -1;
    assert_int_equal(mem_init(&f->mem, RAM_BYTES), 0);
    assert_int_equal(loop_init(&f->loop), 0);
}

static void fix_fini(struct fix *f)
{
    virtio_dev_destroy(&f->d);
    loop_destroy(&f->loop);
    mem_free(&f->mem);
    if (f->path[0])
        unlink(f->path);
    if (f->peer >= 0)
        close(f->peer);
}

static void make_blk(struct fix *f, const struct rl_config *rl)
{
    fix_init(f);
    snprintf(f->path, sizeof(f->path), "/tmp/amber-test-snapdev-XXXXXX");
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);
    struct drive_config cfg = {.rl = *rl};
    snprintf(cfg.id, sizeof(cfg.id), "drive0");
    snprintf(cfg.path, sizeof(cfg.path), "%s", f->path);
    char err[256] = "";
    assert_int_equal(blk_create(&f->d, &cfg, &f->mem, &f->loop, 0xd0000000, 5, err, sizeof(err)),
                     0);
}

static void make_net(struct fix *f, const struct rl_config *rx, const struct rl_config *tx)
{
    fix_init(f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    f->peer = sv[1];
    struct net_config cfg = {.rx_rl = *rx, .tx_rl = *tx};
    snprintf(cfg.id, sizeof(cfg.id), "net0");
    snprintf(cfg.tap, sizeof(cfg.tap), "tap-test");
    char err[256] = "";
    assert_int_equal(net_create_with_fd(&f->d, &cfg, sv[0], false, &f->mem, &f->loop, 0xd0001000, 6,
                                        err, sizeof(err)),
                     0);
}

/* The section of src again, with rl (rl_len bytes) as its rate limiter record, or none. */
static uint8_t *resave(const struct snap_reader *src, const void *rl, uint32_t rl_len,
                       struct snap_reader *r)
{
    const struct snap_entry *s = snapr_find(src, SNAP_SEC_VIRTIO, 0);
    const void *t;
    uint32_t t_len;
    assert_int_equal(snapr_record(src, s, VSNAP_TRANSPORT, &t, &t_len), 0);
    struct snap_writer w;
    snapw_init(&w);
    snapw_begin(&w, SNAP_SEC_VIRTIO, 0);
    snapw_record(&w, VSNAP_TRANSPORT, t, t_len);
    if (rl)
        snapw_record(&w, VSNAP_RATELIMIT, rl, rl_len);
    snapw_end(&w);
    return virtio_test_snap_open(&w, r);
}

static struct virtio_snap_ratelimit saved_levels(const struct snap_reader *r)
{
    struct virtio_snap_ratelimit rls;
    assert_int_equal(
        snapr_get(r, snapr_find(r, SNAP_SEC_VIRTIO, 0), VSNAP_RATELIMIT, &rls, sizeof(rls)), 0);
    return rls;
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

/* The restored bucket holds what was saved, its refill counted from the save. */
static void assert_bucket(const struct token_bucket *b, const struct rl_snap_bucket *s,
                          const uint64_t t[2])
{
    assert_int_equal(b->size, s->size);
    assert_int_equal(b->refill_ns, s->refill_ns);
    assert_int_equal(b->budget, s->budget);
    assert_int_equal(b->burst, s->burst);
    assert_in_range(b->last_ns + s->elapsed_ns, t[0], t[1]);
}

static const struct rl_config blk_rl = {
    .bandwidth = {.size = 1 << 20, .one_time_burst = 4096, .refill_time_ms = HOUR_MS},
    .ops = {.size = 100, .refill_time_ms = HOUR_MS},
};

/* A drive's limiter keeps its level across a restore instead of starting full. */
static void test_blk_levels_round_trip(void **state)
{
    (void)state;
    static struct fix a, b;
    make_blk(&a, &blk_rl);
    struct blk *ab = a.d.priv;
    assert_true(rl_consume(&ab->rl, clock_now_ns(), 4096 + 300000, 7));
    struct snap_reader r;
    uint8_t *buf = virtio_test_snap(&a.d, &r);
    struct virtio_snap_ratelimit rls = saved_levels(&r);
    assert_int_equal(rls.version, VSNAP_RATELIMIT_VERSION);
    assert_int_equal(rls.count, 1);
    /* 300000 bytes and 7 ops spent (a token or two may have come back since). */
    assert_in_range(rls.rl[0].bw.budget, (1 << 20) - 300000, (1 << 20) - 299990);
    assert_int_equal(rls.rl[0].bw.burst, 0);
    assert_in_range(rls.rl[0].ops.budget, 93, 94);

    make_blk(&b, &blk_rl);
    struct blk *bb = b.d.priv;
    assert_int_equal(bb->rl.bw.budget, 1 << 20); /* fresh: full, with its burst */
    uint64_t t[2];
    restore(&b.d, &r, t);
    assert_bucket(&bb->rl.bw, &rls.rl[0].bw, t);
    assert_bucket(&bb->rl.ops, &rls.rl[0].ops, t);
    free(buf);
    fix_fini(&a);
    fix_fini(&b);
}

/* Both of an interface's limiters keep their levels, each on its own side. */
static void test_net_levels_round_trip(void **state)
{
    (void)state;
    static struct fix a, b;
    const struct rl_config rx = {.bandwidth = {.size = 2000000, .refill_time_ms = HOUR_MS}};
    const struct rl_config tx = {
        .ops = {.size = 50, .one_time_burst = 5, .refill_time_ms = HOUR_MS}};
    make_net(&a, &rx, &tx);
    struct net *an = a.d.priv;
    uint64_t now = clock_now_ns();
    rl_charge(&an->rx_rl, now, 1500, 1);
    assert_true(rl_consume(&an->tx_rl, now, 0, 8)); /* the burst of 5, then 3 */
    struct snap_reader r;
    uint8_t *buf = virtio_test_snap(&a.d, &r);
    struct virtio_snap_ratelimit rls = saved_levels(&r);
    assert_int_equal(rls.count, 2);
    assert_in_range(rls.rl[0].bw.budget, 2000000 - 1500, 2000000 - 1490);
    assert_int_equal(rls.rl[0].ops.size, 0);
    assert_int_equal(rls.rl[1].bw.size, 0);
    assert_int_equal(rls.rl[1].ops.budget, 47);
    assert_int_equal(rls.rl[1].ops.burst, 0);

    make_net(&b, &rx, &tx);
    struct net *bn = b.d.priv;
    uint64_t t[2];
    restore(&b.d, &r, t);
    assert_bucket(&bn->rx_rl.bw, &rls.rl[0].bw, t);
    assert_bucket(&bn->tx_rl.ops, &rls.rl[1].ops, t);
    assert_int_equal(bn->rx_rl.ops.size, 0);
    assert_int_equal(bn->tx_rl.bw.size, 0);
    free(buf);
    fix_fini(&a);
    fix_fini(&b);
}

/* A file from an amber before the record: the limiters stay as configured, full. */
static void test_levels_absent(void **state)
{
    (void)state;
    static struct fix a, b;
    make_blk(&a, &blk_rl);
    struct blk *ab = a.d.priv;
    assert_true(rl_consume(&ab->rl, clock_now_ns(), 4096 + 300000, 7));
    struct snap_reader r0, r;
    uint8_t *buf0 = virtio_test_snap(&a.d, &r0);
    uint8_t *buf = resave(&r0, NULL, 0, &r);
    make_blk(&b, &blk_rl);
    uint64_t t[2];
    restore(&b.d, &r, t);
    struct blk *bb = b.d.priv;
    assert_int_equal(bb->rl.bw.budget, 1 << 20);
    assert_int_equal(bb->rl.bw.burst, 4096);
    assert_int_equal(bb->rl.ops.budget, 100);
    free(buf0);
    free(buf);
    fix_fini(&a);
    fix_fini(&b);
}

/* Each hostile record gets its one-line error from the check, and from the load as well. */
static void test_hostile_levels_refused(void **state)
{
    (void)state;
    static struct fix a, b;
    make_blk(&a, &blk_rl);
    make_blk(&b, &blk_rl);
    a.d.isr = VIRTIO_ISR_USED;
    struct snap_reader r0;
    uint8_t *buf0 = virtio_test_snap(&a.d, &r0);
    const struct virtio_snap_ratelimit good = saved_levels(&r0);
    struct {
        struct virtio_snap_ratelimit rls;
        uint32_t len;
        const char *want;
    } cases[8];
    for (size_t i = 0; i < 8; i++) {
        cases[i].rls = good;
        cases[i].len = sizeof(good);
    }
    cases[0].rls.version = 2;
    cases[0].want = "virtio-blk (slot 0): rate limiter record version 2, this amber reads 1";
    cases[1].len = sizeof(good) - 8;
    cases[1].want = "rate limiter record of the wrong size";
    cases[2].rls.count = 2;
    cases[2].want = "2 rate limiters saved, the device has 1";
    cases[3].rls.rl[0].bw.budget = (1 << 20) + 1;
    cases[3].want = "rate limiter 0: bandwidth bucket budget 1048577 outside";
    cases[4].rls.rl[0].ops.elapsed_ns = 2 * HOUR_MS * 1000000;
    cases[4].want = "rate limiter 0: ops bucket elapsed time 7200000000000 ns";
    cases[5].rls.rl[0].bw.burst = 4097;
    cases[5].want = "one-time burst left 4097, more than the configured 4096";
    cases[6].rls.rl[0].ops.refill_ns = 1;
    cases[6].want = "ops bucket of 100 tokens per 1 ns, the configuration says 100 per";
    cases[7].rls.rl[1].bw.budget = 5; /* past the device's one limiter */
    cases[7].want = "rate limiter 1: bandwidth bucket is off but holds tokens or time";
    struct blk *bb = b.d.priv;
    for (size_t i = 0; i < 8; i++) {
        struct snap_reader r;
        uint8_t *buf = resave(&r0, &cases[i].rls, cases[i].len, &r);
        const struct snap_entry *s = snapr_find(&r, SNAP_SEC_VIRTIO, 0);
        char err[256] = "";
        assert_int_equal(virtio_snap_check(&r, s, &b.d, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        err[0] = 0;
        assert_int_equal(virtio_snap_load(&b.d, &r, s, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, cases[i].want));
        assert_int_equal(bb->rl.bw.budget, 1 << 20); /* nothing of it was taken */
        assert_int_equal(b.d.isr, 0);                /* nor of the transport */
        free(buf);
    }
    /* A device without rate limiters refuses the record. */
    struct virtio_dev_ops plain = *b.d.ops;
    plain.rate_limiters = NULL;
    struct virtio_dev other = {.ops = &plain, .mem = b.d.mem, .host_features = b.d.host_features};
    char err[256] = "";
    assert_int_equal(
        virtio_snap_check(&r0, snapr_find(&r0, SNAP_SEC_VIRTIO, 0), &other, err, sizeof(err)),
        -EBADMSG);
    assert_non_null(strstr(err, "rate limiter state for a device without limiters"));
    free(buf0);
    fix_fini(&a);
    fix_fini(&b);
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
    w32(d, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
            VIRTIO_STATUS_DRIVER_OK);
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
    uint8_t *buf = virtio_test_snap(&a.d, &r);
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
        cmocka_unit_test(test_blk_levels_round_trip), cmocka_unit_test(test_net_levels_round_trip),
        cmocka_unit_test(test_levels_absent),         cmocka_unit_test(test_hostile_levels_refused),
        cmocka_unit_test(test_used_index_carries_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
