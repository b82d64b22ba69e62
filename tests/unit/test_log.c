/* Unit tests for vmm/log.c: line format and the warning rate limit against guest-driven floods. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warning_flood_is_capped),
        cmocka_unit_test(test_errors_and_info_never_dropped),
        cmocka_unit_test(test_dropped_count_reported_after_refill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
