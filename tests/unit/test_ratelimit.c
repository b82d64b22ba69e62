/* Unit tests for the token-bucket rate limiter, on a clock the test moves by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/virtio/ratelimit.h"

#define MS 1000000ULL /* ns */

/* 1000 bytes per 100 ms (10 kB/s) and/or 10 ops per 100 ms. */
static struct rate_limiter make(uint64_t bw_size, uint64_t bw_burst, uint64_t ops_size,
                                uint64_t now)
{
    struct rl_config c = {.bandwidth = {.size = bw_size,
                                        .one_time_burst = bw_burst,
                                        .refill_time_ms = bw_size ? 100 : 0},
                          .ops = {.size = ops_size, .refill_time_ms = ops_size ? 100 : 0}};
    struct rate_limiter rl;
    rl_set(&rl, &c, ~0u, now);
    return rl;
}

static void test_unlimited(void **state)
{
    struct rate_limiter rl = make(0, 0, 0, 0);
    assert_false(rl_enabled(&rl));
    for (int i = 0; i < 1000; i++)
        assert_true(rl_consume(&rl, 0, 1u << 30, 1));
    assert_int_equal(rl_wait_ns(&rl, 0, UINT64_MAX, UINT64_MAX), 0);
    /* size without refill_time (or the reverse) is no limit either, as in Firecracker */
    struct rl_config c = {.bandwidth = {.size = 5}, .ops = {.refill_time_ms = 5}};
    rl_set(&rl, &c, ~0u, 0);
    assert_false(rl_enabled(&rl));
}

static void test_consume_and_refill(void **state)
{
    uint64_t t = 5 * MS;
    struct rate_limiter rl = make(1000, 0, 0, t);
    assert_true(rl_enabled(&rl));
    assert_true(rl_consume(&rl, t, 600, 1)); /* starts full */
    assert_true(rl_consume(&rl, t, 400, 1));
    assert_false(rl_consume(&rl, t, 1, 1)); /* empty */
    assert_int_equal(rl_wait_ns(&rl, t, 1, 1), 100 * MS / 1000);
    assert_int_equal(rl_wait_ns(&rl, t, 500, 1), 50 * MS);
    /* Half the refill time gives half the tokens, no more. */
    t += 50 * MS;
    assert_false(rl_consume(&rl, t, 501, 1));
    assert_true(rl_consume(&rl, t, 500, 1));
    assert_false(rl_consume(&rl, t, 1, 1));
    /* Refill stops at size: a long idle time does not bank more than one bucket. */
    t += 10000 * MS;
    assert_true(rl_consume(&rl, t, 1000, 1));
    assert_false(rl_consume(&rl, t, 1, 1));
}

static void test_fractions_are_not_lost(void **state)
{
    /* 1000 tokens per 100 ms = one per 100 us; step 30 us at a time, taking what is there. */
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 0, 0, t);
    assert_true(rl_consume(&rl, t, 1000, 1));
    uint64_t got = 0;
    for (int i = 0; i < 10000; i++) { /* 300 ms */
        t += 30000;
        while (rl_consume(&rl, t, 1, 1))
            got++;
    }
    assert_int_equal(got, 3000);
}

static void test_one_time_burst(void **state)
{
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 5000, 0, t);
    assert_true(rl_consume(&rl, t, 4000, 1)); /* from the burst */
    assert_true(rl_consume(&rl, t, 1500, 1)); /* 1000 burst + 500 budget */
    assert_true(rl_consume(&rl, t, 500, 1));
    assert_false(rl_consume(&rl, t, 1, 1));
    /* The burst never comes back; the budget does. */
    t += 1000 * MS;
    assert_true(rl_consume(&rl, t, 1000, 1));
    assert_false(rl_consume(&rl, t, 1, 1));
    /* A failed request takes nothing, from either part. */
    rl = make(1000, 300, 0, 0);
    assert_true(rl_consume(&rl, 0, 1000, 1));
    assert_false(rl_consume(&rl, 0, 301, 1));
    assert_true(rl_consume(&rl, 0, 300, 1));
}

static void test_both_buckets(void **state)
{
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 0, 10, t);
    for (int i = 0; i < 10; i++)
        assert_true(rl_consume(&rl, t, 10, 1));
    /* bytes left, ops gone: refused, and the bytes stay */
    assert_false(rl_consume(&rl, t, 10, 1));
    assert_int_equal(rl_wait_ns(&rl, t, 10, 1), 10 * MS);
    t += 10 * MS;
    assert_true(rl_consume(&rl, t, 900, 1));
    /* ops there, bytes short: refused, and the op stays */
    t += 10 * MS;
    assert_false(rl_consume(&rl, t, 500, 1));
    assert_int_equal(rl_wait_ns(&rl, t, 500, 1), 30 * MS); /* 200 there, 300 to come */
    t += 30 * MS;
    assert_true(rl_consume(&rl, t, 500, 1));
    /* The wait is the longer of the two. */
    rl = make(1000, 0, 10, 0);
    assert_true(rl_consume(&rl, 0, 1000, 10));
    assert_int_equal(rl_wait_ns(&rl, 0, 100, 5), 50 * MS);
}

static void test_oversized_request(void **state)
{
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 0, 0, t);
    /* Larger than the bucket: passes once the bucket is full and leaves a debt. */
    assert_true(rl_consume(&rl, t, 3000, 1));
    assert_false(rl_consume(&rl, t, 1, 1));
    /* The debt of 2000 and one more token: 200 ms + 100 us. */
    assert_int_equal(rl_wait_ns(&rl, t, 1, 1), 200 * MS + 100000);
    /* The next oversized one waits for a full bucket again: 300 ms in all. */
    assert_int_equal(rl_wait_ns(&rl, t, 5000, 1), 300 * MS);
    t += 299 * MS;
    assert_false(rl_consume(&rl, t, 5000, 1));
    assert_int_equal(rl_wait_ns(&rl, t, 5000, 1), 1 * MS);
    t += 1 * MS;
    assert_true(rl_consume(&rl, t, 5000, 1));
    /* Average rate holds: 8000 bytes went in 300 ms, the next 1000 only at 800 ms + 100 ms. */
    assert_int_equal(rl_wait_ns(&rl, t, 1000, 1), 500 * MS);
}

static void test_charge_after_the_fact(void **state)
{
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 0, 0, t);
    assert_int_equal(rl_wait_ns(&rl, t, 1, 1), 0);
    rl_charge(&rl, t, 1500, 1); /* a frame longer than what was left */
    assert_int_equal(rl_wait_ns(&rl, t, 1, 1), 50 * MS + 100000);
    /* Absurd charges saturate instead of wrapping into a full bucket. */
    rl_charge(&rl, t, UINT64_MAX, 1);
    rl_charge(&rl, t, UINT64_MAX, 1);
    assert_false(rl_consume(&rl, t + 3600000 * MS, 1, 1));
    assert_true(rl_wait_ns(&rl, t, 1, 1) > 3600000 * MS);
}

static void test_clock_going_backwards_is_ignored(void **state)
{
    struct rate_limiter rl = make(1000, 0, 0, 100 * MS);
    assert_true(rl_consume(&rl, 100 * MS, 1000, 1));
    assert_false(rl_consume(&rl, 50 * MS, 1, 1));
    assert_int_equal(rl_wait_ns(&rl, 50 * MS, 1, 1), 100000);
    assert_true(rl_consume(&rl, 100 * MS + 100000, 1, 1));
}

static void test_update_one_bucket(void **state)
{
    uint64_t t = 0;
    struct rate_limiter rl = make(1000, 0, 10, t);
    assert_true(rl_consume(&rl, t, 1000, 10));
    /* A PATCH that names only bandwidth: it is full again at its new size, ops untouched. */
    struct rl_config c = {.bandwidth = {.size = 4000, .refill_time_ms = 100}};
    rl_set(&rl, &c, RL_SET_BANDWIDTH, t);
    assert_false(rl_consume(&rl, t, 1, 1)); /* ops still empty */
    t += 10 * MS;
    assert_true(rl_consume(&rl, t, 4000, 1));
    /* Removing both limits. */
    struct rl_config none = {0};
    rl_set(&rl, &none, RL_SET_BANDWIDTH | RL_SET_OPS, t);
    assert_false(rl_enabled(&rl));
    assert_true(rl_consume(&rl, t, 1u << 30, 1000));
}

static void test_large_values_do_not_overflow(void **state)
{
    /* The largest accepted size and refill time, a day apart. */
    struct rl_config c = {.bandwidth = {.size = CONFIG_RL_SIZE_MAX,
                                        .one_time_burst = CONFIG_RL_SIZE_MAX,
                                        .refill_time_ms = CONFIG_RL_REFILL_MAX}};
    struct rate_limiter rl;
    rl_set(&rl, &c, ~0u, 0);
    assert_true(rl_consume(&rl, 0, 2 * CONFIG_RL_SIZE_MAX, 1));
    assert_false(rl_consume(&rl, 0, 1, 1));
    assert_int_equal(rl_wait_ns(&rl, 0, CONFIG_RL_SIZE_MAX, 1), CONFIG_RL_REFILL_MAX * MS);
    uint64_t day = 86400000ULL * MS;
    assert_true(rl_consume(&rl, day, CONFIG_RL_SIZE_MAX, 1));
}

/*
 * A snapshot carries each bucket's level: restored at another time, the limiter answers
 * exactly as the saved one would have, the refill counted from the moment of the save.
 */
static void test_snapshot_round_trip(void **state)
{
    (void)state;
    uint64_t t = 7 * MS;
    struct rate_limiter rl = make(1000, 300, 10, t); /* bw: 1000/100 ms + 300 burst */
    assert_true(rl_consume(&rl, t, 800, 3));         /* burst 300, then 500 of the budget */
    t += 25 * MS + 50000; /* 250 tokens and half of the next one's time */
    struct rl_snap s;
    rl_snap_save(&rl, t, &s);
    assert_int_equal(s.bw.size, 1000);
    assert_int_equal(s.bw.refill_ns, 100 * MS);
    assert_int_equal(s.bw.budget, 750);
    assert_int_equal(s.bw.burst, 0);
    assert_int_equal(s.bw.elapsed_ns, 50000);
    assert_int_equal(s.ops.budget, 9); /* 7 + the 2 whole ops of 2.505 earned */
    assert_int_equal(s.ops.elapsed_ns, 5 * MS + 50000);
    struct rate_limiter fresh = make(1000, 300, 10, 0);
    char why[160] = "";
    assert_int_equal(rl_snap_check(&fresh, &s, why, sizeof(why)), 0);

    /* Restore an hour later on the other clock: the same answers, one by one. */
    uint64_t t2 = 3600000 * MS;
    struct rate_limiter back = fresh;
    rl_snap_load(&back, &s, t2);
    assert_int_equal(rl_wait_ns(&back, t2, 1000, 1), 25 * MS - 50000);
    assert_int_equal(rl_wait_ns(&rl, t, 1000, 1), 25 * MS - 50000);
    assert_false(rl_consume(&back, t2, 751, 1));
    assert_true(rl_consume(&back, t2 + 50000, 751, 1)); /* the half token earned before */
    assert_false(rl_consume(&rl, t, 751, 1));
    assert_true(rl_consume(&rl, t + 50000, 751, 1));
    assert_memory_equal(&back.bw.budget, &rl.bw.budget, sizeof(rl.bw.budget));
    assert_int_equal(back.bw.last_ns - t2, rl.bw.last_ns - t);
    assert_int_equal(back.ops.budget, rl.ops.budget);
    assert_int_equal(back.ops.last_ns - t2, rl.ops.last_ns - t);
    /* A fresh limiter (what a restore gave before) would have let the 751 bytes through. */
    assert_true(rl_consume(&fresh, t2, 751, 1));

    /* An off bucket saves as all zero and is refused with anything in it. */
    struct rate_limiter off = make(0, 0, 0, 0);
    rl_snap_save(&off, t, &s);
    assert_int_equal(s.bw.size, 0);
    assert_int_equal(s.bw.elapsed_ns, 0);
    assert_int_equal(rl_snap_check(&off, &s, why, sizeof(why)), 0);
}

/* Each hostile value of a saved bucket is refused, naming the bucket and the field. */
static void test_snapshot_hostile_values(void **state)
{
    (void)state;
    struct rate_limiter cfg = make(1000, 300, 10, 0);
    struct rl_snap good;
    struct rate_limiter rl = cfg;
    rl_snap_save(&rl, 0, &good);
    struct {
        int field; /* which edit */
        int64_t v;
        const char *want;
    } cases[] = {
        {0, 1001, "bandwidth bucket of 1001 tokens per 100000000 ns, the configuration says 1000"},
        {1, 1, "bandwidth bucket of 1000 tokens per 1 ns"},
        {2, 1001, "bandwidth bucket budget 1001 outside -4398046511104..1000"},
        {2, -RL_SNAP_DEBT_MAX - 1, "bandwidth bucket budget -4398046511105 outside"},
        {2, INT64_MIN, "outside"},
        {3, 301, "bandwidth bucket one-time burst left 301, more than the configured 300"},
        {4, 100 * MS + 1, "bandwidth bucket elapsed time 100000001 ns, more than its refill"},
        {4, -1, "elapsed time 18446744073709551615 ns"},
        {5, 11, "ops bucket budget 11 outside"},
        {6, 1, "ops bucket one-time burst left 1, more than the configured 0"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rl_snap s = good;
        switch (cases[i].field) {
        case 0:
            s.bw.size = (uint64_t)cases[i].v;
            break;
        case 1:
            s.bw.refill_ns = (uint64_t)cases[i].v;
            break;
        case 2:
            s.bw.budget = cases[i].v;
            break;
        case 3:
            s.bw.burst = (uint64_t)cases[i].v;
            break;
        case 4:
            s.bw.elapsed_ns = (uint64_t)cases[i].v;
            break;
        case 5:
            s.ops.budget = cases[i].v;
            break;
        case 6:
            s.ops.burst = (uint64_t)cases[i].v;
            break;
        }
        char why[160] = "";
        assert_int_equal(rl_snap_check(&cfg, &s, why, sizeof(why)), -EBADMSG);
        if (!strstr(why, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].want);
    }
    /* The deepest debt allowed passes; an off bucket holding anything does not. */
    struct rl_snap s = good;
    s.bw.budget = -RL_SNAP_DEBT_MAX;
    char why[160] = "";
    assert_int_equal(rl_snap_check(&cfg, &s, why, sizeof(why)), 0);
    struct rate_limiter off = make(0, 0, 0, 0);
    struct rl_snap z;
    rl_snap_save(&off, 0, &z);
    z.ops.elapsed_ns = 1;
    assert_int_equal(rl_snap_check(&off, &z, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "ops bucket is off but holds tokens or time"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_consume_and_refill),
        cmocka_unit_test(test_fractions_are_not_lost),
        cmocka_unit_test(test_one_time_burst),
        cmocka_unit_test(test_both_buckets),
        cmocka_unit_test(test_oversized_request),
        cmocka_unit_test(test_charge_after_the_fact),
        cmocka_unit_test(test_clock_going_backwards_is_ignored),
        cmocka_unit_test(test_update_one_bucket),
        cmocka_unit_test(test_large_values_do_not_overflow),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_hostile_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
