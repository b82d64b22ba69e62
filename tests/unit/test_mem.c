/* Unit tests for vmm/mem.c: checked GPA translation and the guard space around guest RAM. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/mem.h"

/* Run a write to p in a child; return the signal that ended it (0 if it exited normally). */
static int child_write(volatile uint8_t *p)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler is inherited */
        signal(SIGBUS, SIG_DFL);
        *p = 1;
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void test_guard_pages_fault(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, 1 << 20), 0);
    assert_int_equal(child_write(m.map), 0);
    assert_int_equal(child_write(m.map + (1 << 20) - 1), 0);
    assert_int_equal((uintptr_t)m.map % (2u << 20), 0); /* huge-page aligned for KVM */
    assert_int_equal(child_write(m.map - 1), SIGSEGV);
    assert_int_equal(child_write(m.map - (2u << 20)), SIGSEGV); /* the whole guard, not a sliver */
    assert_int_equal(child_write(m.map + (1 << 20)), SIGSEGV);
    assert_int_equal(child_write(m.map + (1 << 20) + 4096), SIGSEGV);
    mem_free(&m);
    assert_null(m.map);
}

static void test_mem_ptr_bounds(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, 1 << 20), 0);
    assert_ptr_equal(mem_ptr(&m, 0, 1 << 20), m.map);
    assert_null(mem_ptr(&m, 1, 1 << 20));
    assert_null(mem_ptr(&m, (1 << 20) - 8, 16));
    assert_null(mem_ptr(&m, UINT64_MAX - 4, 16));
    assert_null(mem_ptr(&m, 0, UINT64_MAX));
    mem_free(&m);
    mem_free(&m); /* harmless twice */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guard_pages_fault),
        cmocka_unit_test(test_mem_ptr_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
