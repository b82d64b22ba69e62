/* Unit tests for vmm/log.c: line format, the per-site rate limit and the warning backstop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/log.h"

/* Run fn with stderr redirected to a temporary file; return the number of lines and keep
 * the text in out. */
static int capture(void (*fn)(void), char *out, size_t outlen)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = 0;
    fclose(tmp);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += out[i] == '\n';
    return lines;
}

static void flood_warnings(void)
{
    for (int i = 0; i < 5000; i++)
        log_warn("virtio-x: guest did something odd %d", i);
}

static void errors_and_infos(void)
{
    for (int i = 0; i < 200; i++)
        log_err("error %d", i);
    for (int i = 0; i < 200; i++)
        log_info("info %d", i);
}

static void one_warning(void)
{
    log_warn("after the flood");
}

static char buf[1 << 20];

static void test_warning_flood_is_capped(void **state)
{
    (void)state;
    int lines = capture(flood_warnings, buf, sizeof(buf));
    assert_true(lines >= 1);
    assert_true(lines <= 40); /* a burst of 32 (plus one refill) out of 5000 */
    assert_non_null(strstr(buf, "amber: warn: virtio-x: guest did something odd 0\n"));
}

static void test_errors_and_info_never_dropped(void **state)
{
    (void)state;
    assert_int_equal(capture(errors_and_infos, buf, sizeof(buf)), 400);
    assert_non_null(strstr(buf, "amber: error: error 199\n"));
    assert_non_null(strstr(buf, "amber: info: info 199\n"));
}

static void test_dropped_count_reported_after_refill(void **state)
{
    (void)state;
    capture(flood_warnings, buf, sizeof(buf));
    sleep(1); /* two tokens come back */
    capture(one_warning, buf, sizeof(buf));
    assert_non_null(strstr(buf, "warnings were dropped by the log rate limit"));
    assert_non_null(strstr(buf, "amber: warn: after the flood\n"));
}

/* The bucket alone, on a clock the test drives: a burst, refusals counted, one per interval. */
static void test_ratelimit_bucket(void **state)
{
    (void)state;
    struct log_ratelimit rl = {0};
    unsigned sup = 99;
    for (int i = 0; i < 3; i++) {
        assert_true(log_ratelimit_allow(&rl, 3, 100, 1000, &sup));
        assert_int_equal(sup, 0);
    }
    assert_false(log_ratelimit_allow(&rl, 3, 100, 1000, &sup));
    assert_false(log_ratelimit_allow(&rl, 3, 100, 1050, &sup));
    assert_false(log_ratelimit_allow(&rl, 3, 100, 1099, &sup));
    assert_true(log_ratelimit_allow(&rl, 3, 100, 1100, &sup)); /* one token back */
    assert_int_equal(sup, 3);
    assert_false(log_ratelimit_allow(&rl, 3, 100, 1100, &sup));
    /* Long quiet: the full burst is back, and no more than it. */
    for (int i = 0; i < 3; i++)
        assert_true(log_ratelimit_allow(&rl, 3, 100, 9000, &sup));
    assert_false(log_ratelimit_allow(&rl, 3, 100, 9000, &sup));
    /* A steady flood gets exactly one line per interval: at 9100, 9200, ..., 19000. */
    int allowed = 0;
    for (uint64_t t = 9001; t <= 19000; t++)
        allowed += log_ratelimit_allow(&rl, 3, 100, t, &sup);
    assert_int_equal(allowed, 100);
}

static void flood_info_one_site(void)
{
    for (int i = 0; i < 1000; i++)
        log_info_rl("vsock: guest connect to port %d: refused", i);
}

static void flood_debug_and_error_sites(void)
{
    for (int i = 0; i < 1000; i++)
        log_err_rl("site a %d", i);
    log_set_level(LOG_DEBUG);
    for (int i = 0; i < 1000; i++)
        log_debug_rl("site b %d", i);
    log_set_level(LOG_INFO);
}

static void one_more_info(void)
{
    for (int i = 0; i < 1; i++)
        flood_info_one_site();
}

/* A guest-triggered info line in a loop: one burst out of 1000, whatever the level. */
static void test_site_limit_caps_any_level(void **state)
{
    (void)state;
    assert_int_equal(capture(flood_info_one_site, buf, sizeof(buf)), LOG_RL_BURST);
    assert_non_null(strstr(buf, "amber: info: vsock: guest connect to port 0: refused\n"));
    assert_null(strstr(buf, "port 10:"));
    /* Sites have their own buckets, at every level. */
    int lines = capture(flood_debug_and_error_sites, buf, sizeof(buf));
    assert_int_equal(lines, 2 * LOG_RL_BURST);
    assert_non_null(strstr(buf, "site a 9\n"));
    assert_non_null(strstr(buf, "site b 9\n"));
    /* After a second, the next line says how many were suppressed. */
    sleep(1);
    lines = capture(one_more_info, buf, sizeof(buf));
    assert_int_equal(lines, 2); /* one token back: the summary and one line */
    assert_non_null(strstr(buf, "990 lines like \"vsock: guest connect to port %d: refused\" "
                                "suppressed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warning_flood_is_capped),
        cmocka_unit_test(test_errors_and_info_never_dropped),
        cmocka_unit_test(test_dropped_count_reported_after_refill),
        cmocka_unit_test(test_ratelimit_bucket),
        cmocka_unit_test(test_site_limit_caps_any_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
