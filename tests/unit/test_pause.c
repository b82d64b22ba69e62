/* Unit tests for vmm/pause.c, real threads standing in for vCPUs: barrier, withdrawal, races. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/pause.h"

#define MAX_VCPUS  8
#define SETTLE_MS  2000 /* how long a released thread may take to be seen running again */
#define TIMEOUT_MS 2000 /* pause_request's budget where every thread is expected to check in */

/*
 * A fake vCPU. Its "KVM_RUN" spins (counting) until immediate_exit is set, or for at most
 * 2 ms, the way a real one leaves KVM_RUN on a kick or on any exit; then it calls
 * pause_checkpoint as vcpu.c does. A deaf one stays inside "KVM_RUN" and ignores kicks: a
 * vCPU stuck below amber, which a pause must give up on.
 */
struct fake_vcpu {
    pthread_t thread;
    struct pause_barrier *barrier;
    volatile uint8_t immediate_exit;
    atomic_bool deaf;
    atomic_bool quit; /* leave the loop for good, as a vCPU does on an error or power-off */
    atomic_ulong spins;
    atomic_uint kicks;
    atomic_uint resumed;
    atomic_bool stopped;
};

struct fixture {
    struct pause_barrier barrier;
    struct fake_vcpu vcpus[MAX_VCPUS];
    unsigned n;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *vcpu_main(void *arg)
{
    struct fake_vcpu *v = arg;
    for (;;) {
        uint64_t until = now_ms() + 2;
        while (atomic_load(&v->deaf) || (!v->immediate_exit && now_ms() < until)) {
            atomic_fetch_add(&v->spins, 1);
            usleep(50);
            if (atomic_load(&v->quit))
                goto out;
        }
        enum pause_outcome out = pause_checkpoint(v->barrier, &v->immediate_exit);
        if (out == PAUSE_STOP)
            break;
        if (out == PAUSE_RESUMED)
            atomic_fetch_add(&v->resumed, 1);
    }
out:
    pause_leave(v->barrier);
    atomic_store(&v->stopped, true);
    return NULL;
}

/* The kick pause_request and pause_stop call under the barrier lock, as vm.c's kick_one. */
static void kick(void *arg, unsigned i)
{
    struct fixture *f = arg;
    f->vcpus[i].immediate_exit = 1;
    atomic_fetch_add(&f->vcpus[i].kicks, 1);
}

static void start(struct fixture *f, unsigned n)
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    assert_int_equal(pause_init(&f->barrier, n), 0);
    for (unsigned i = 0; i < n; i++) {
        f->vcpus[i].barrier = &f->barrier;
        assert_int_equal(pthread_create(&f->vcpus[i].thread, NULL, vcpu_main, &f->vcpus[i]), 0);
    }
}

static unsigned parked(struct fixture *f)
{
    pthread_mutex_lock(&f->barrier.lock);
    unsigned n = f->barrier.parked;
    pthread_mutex_unlock(&f->barrier.lock);
    return n;
}

/* True when every vCPU except `skip` (or all, for skip >= n) spins on within SETTLE_MS. */
static bool all_run(struct fixture *f, unsigned skip)
{
    unsigned long before[MAX_VCPUS];
    for (unsigned i = 0; i < f->n; i++)
        before[i] = atomic_load(&f->vcpus[i].spins);
    uint64_t deadline = now_ms() + SETTLE_MS;
    for (unsigned i = 0; i < f->n; i++) {
        while (i != skip && atomic_load(&f->vcpus[i].spins) < before[i] + 5) {
            if (now_ms() > deadline)
                return false;
            usleep(1000);
        }
    }
    return true;
}

/* Stop every thread; a thread still running after 3 s fails the test (it would hang it). */
static void stop(struct fixture *f)
{
    for (unsigned i = 0; i < f->n; i++)
        atomic_store(&f->vcpus[i].deaf, false);
    pause_stop(&f->barrier, f->n, kick, f);
    for (unsigned i = 0; i < f->n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 3;
        assert_int_equal(pthread_timedjoin_np(f->vcpus[i].thread, NULL, &ts), 0);
        assert_true(atomic_load(&f->vcpus[i].stopped));
    }
    assert_int_equal(f->barrier.members, 0);
    pause_destroy(&f->barrier);
}

/* A granted pause means every vCPU is parked and none runs; a release lets all of them go. */
static void test_barrier_stops_every_vcpu(void **state)
{
    (void)state;
    static struct fixture f;
    start(&f, 4);
    assert_true(all_run(&f, MAX_VCPUS));
    for (unsigned cycle = 1; cycle <= 20; cycle++) {
        assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, TIMEOUT_MS), 0);
        assert_int_equal(parked(&f), f.n);
        unsigned long spins[MAX_VCPUS];
        for (unsigned i = 0; i < f.n; i++)
            spins[i] = atomic_load(&f.vcpus[i].spins);
        usleep(20 * 1000);
        for (unsigned i = 0; i < f.n; i++)
            assert_int_equal(atomic_load(&f.vcpus[i].spins), spins[i]);
        pause_release(&f.barrier);
        assert_true(all_run(&f, MAX_VCPUS));
        for (unsigned i = 0; i < f.n; i++) {
            assert_int_equal(atomic_load(&f.vcpus[i].resumed), cycle);
            assert_true(atomic_load(&f.vcpus[i].kicks) >= cycle);
        }
    }
    assert_int_equal(parked(&f), 0);
    stop(&f);
}

/* A release followed at once by a new request: threads still waking from the first pause
 * must count as parked for the second, and every request is granted. */
static void test_back_to_back_pauses(void **state)
{
    (void)state;
    static struct fixture f;
    start(&f, 4);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, TIMEOUT_MS), 0);
        assert_int_equal(parked(&f), f.n);
        if (i % 10 == 9) {
            /* Stragglers from the previous release have woken by now: still all parked? */
            unsigned long spins[MAX_VCPUS];
            usleep(5 * 1000);
            for (unsigned k = 0; k < f.n; k++)
                spins[k] = atomic_load(&f.vcpus[k].spins);
            usleep(5 * 1000);
            assert_int_equal(parked(&f), f.n);
            for (unsigned k = 0; k < f.n; k++)
                assert_int_equal(atomic_load(&f.vcpus[k].spins), spins[k]);
        }
        pause_release(&f.barrier);
    }
    assert_true(all_run(&f, MAX_VCPUS));
    stop(&f);
}

/* One vCPU never checks in: the request is withdrawn after its timeout, the others run on,
 * and when the late one finally checks in it is not parked by the withdrawn request. */
static void check_withdrawal(unsigned timeout_ms)
{
    static struct fixture f;
    start(&f, 3);
    assert_true(all_run(&f, MAX_VCPUS));
    atomic_store(&f.vcpus[2].deaf, true);
    uint64_t t0 = now_ms();
    assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, timeout_ms), -ETIMEDOUT);
    uint64_t took = now_ms() - t0;
    assert_true(took >= timeout_ms - 5);
    assert_true(took < timeout_ms + 1500);
    assert_false(f.barrier.requested);
    /* The two that did park are released by the withdrawal alone. */
    assert_true(all_run(&f, 2));
    assert_int_equal(parked(&f), 0);
    /* The late check-in: it runs on, and its immediate_exit is cleared. */
    atomic_store(&f.vcpus[2].deaf, false);
    assert_true(all_run(&f, MAX_VCPUS));
    assert_int_equal(f.vcpus[2].immediate_exit, 0);
    assert_int_equal(parked(&f), 0);
    /* The barrier is whole again: the next pause is granted. */
    assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, TIMEOUT_MS), 0);
    assert_int_equal(parked(&f), f.n);
    pause_release(&f.barrier);
    stop(&f);
}

static void test_withdrawal_short_timeout(void **state)
{
    (void)state;
    check_withdrawal(200);
}

/* The timeout amber's API uses. */
static void test_withdrawal_after_5s(void **state)
{
    (void)state;
    check_withdrawal(PAUSE_TIMEOUT_MS);
}

struct late {
    struct fake_vcpu *v;
    unsigned after_ms;
};

static void *wake_late(void *arg)
{
    struct late *l = arg;
    usleep(l->after_ms * 1000);
    atomic_store(&l->v->deaf, false);
    return NULL;
}

/* The late check-in lands right around the deadline: whichever wins, the request either is
 * granted with every vCPU parked, or is withdrawn with every vCPU running; never a vCPU
 * parked by a withdrawn request, never a hang. */
static void test_resume_races_late_checkin(void **state)
{
    (void)state;
    static struct fixture f;
    start(&f, 3);
    unsigned granted = 0, withdrawn = 0;
    for (unsigned i = 0; i < 30; i++) {
        atomic_store(&f.vcpus[1].deaf, true);
        struct late l = {.v = &f.vcpus[1], .after_ms = 40 + i % 20};
        pthread_t waker;
        assert_int_equal(pthread_create(&waker, NULL, wake_late, &l), 0);
        int ret = pause_request(&f.barrier, f.n, kick, &f, 50);
        pthread_join(waker, NULL);
        if (ret == 0) {
            granted++;
            assert_int_equal(parked(&f), f.n);
            pause_release(&f.barrier);
        } else {
            withdrawn++;
            assert_int_equal(ret, -ETIMEDOUT);
        }
        assert_true(all_run(&f, MAX_VCPUS));
        assert_int_equal(parked(&f), 0);
    }
    print_message("late check-in: %u granted, %u withdrawn\n", granted, withdrawn);
    assert_true(withdrawn > 0);
    stop(&f);
}

struct quitter {
    struct fake_vcpu *v;
    unsigned after_ms;
};

static void *quit_late(void *arg)
{
    struct quitter *q = arg;
    usleep(q->after_ms * 1000);
    atomic_store(&q->v->quit, true);
    return NULL;
}

/* A vCPU that leaves for good (error, guest power-off) while a request waits for it
 * completes the request at once, not at the timeout. */
static void test_leave_completes_request(void **state)
{
    (void)state;
    static struct fixture f;
    start(&f, 2);
    atomic_store(&f.vcpus[1].deaf, true);
    struct quitter q = {.v = &f.vcpus[1], .after_ms = 100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, quit_late, &q), 0);
    uint64_t t0 = now_ms();
    assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, TIMEOUT_MS), 0);
    assert_true(now_ms() - t0 < TIMEOUT_MS / 2);
    pthread_join(t, NULL);
    assert_int_equal(parked(&f), 1);
    pause_release(&f.barrier);
    stop(&f);
}

/* Teardown while paused: every parked vCPU leaves with PAUSE_STOP. */
static void test_stop_while_paused(void **state)
{
    (void)state;
    static struct fixture f;
    start(&f, 4);
    assert_int_equal(pause_request(&f.barrier, f.n, kick, &f, TIMEOUT_MS), 0);
    stop(&f);
    for (unsigned i = 0; i < f.n; i++)
        assert_int_equal(atomic_load(&f.vcpus[i].resumed), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barrier_stops_every_vcpu),
        cmocka_unit_test(test_back_to_back_pauses),
        cmocka_unit_test(test_withdrawal_short_timeout),
        cmocka_unit_test(test_withdrawal_after_5s),
        cmocka_unit_test(test_resume_races_late_checkin),
        cmocka_unit_test(test_leave_completes_request),
        cmocka_unit_test(test_stop_while_paused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
